//! Errors of the SQLite store. Each says what happened to the user's data, because the
//! node shows them to people who must decide whether to restore a backup.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this lanchat understands \
         (up to {supported}); it was written by a newer version and was left untouched"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "database {path} is corrupt or not a lanchat database ({reason}); it was left untouched"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("database is corrupt: {0}; the file was left untouched")]
    CorruptPage(String),
    #[error("cannot migrate the database to schema version {version}: {source}")]
    Migration {
        version: i64,
        source: rusqlite::Error,
    },
    #[error("this database belongs to node {stored}, not to node {requested}")]
    IdentityMismatch { stored: String, requested: String },
    #[error("no local identity yet: set it before sending")]
    NoIdentity,
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The change is well formed, but this node may not make it (group permissions).
    #[error("not permitted to change {field}: {reason}")]
    Forbidden { field: &'static str, reason: String },
    #[error("peer {0} is blocked")]
    Blocked(String),
    /// A statement its author did not make: a group state in another owner's name for
    /// a group held here, a known message id with other content (docs/PROTOCOL.md,
    /// "Signatures"). Refused like `Invalid`, counted apart.
    #[error("forged: {0}")]
    Forged(String),
    /// Only a message whose delivery was given up can be queued again.
    #[error("message {message_id} is {status}, not failed; only a failed message can be retried")]
    NotFailed {
        message_id: String,
        status: &'static str,
    },
    #[error("stored data is malformed: {0}")]
    Malformed(String),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("the write was not committed: {0}")]
    Commit(String),
    #[error("the store is closed")]
    Closed,
    #[error("cannot start the store's threads: {0}")]
    Start(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // Corruption found while running, not at open: report it as such so the node
        // stops and says so instead of retrying a write that can never succeed.
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                StoreError::CorruptPage(e.to_string())
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

impl From<chat_core::IdError> for StoreError {
    fn from(e: chat_core::IdError) -> Self {
        StoreError::Invalid {
            field: e.what,
            reason: e.reason,
        }
    }
}

impl StoreError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
