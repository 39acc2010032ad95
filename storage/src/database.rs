//! Opening the SQLite file: refuse what is not ours or is too new before touching it,
//! then set the connection up and migrate.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use crate::error::StoreError;
use crate::migrations::{self, APPLICATION_ID};

/// Long enough to ride out a checkpoint or another connection's commit; short enough
/// that a wedged database surfaces as an error instead of a hung UI.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const HEADER_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The database header is the first 100 bytes of the file.
const HEADER_LEN: usize = 100;

/// What the file header says, read without SQLite so that nothing is written to a file
/// that is refused (opening it read-write could checkpoint or rewrite its WAL).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// Missing or empty: a new database.
    Fresh,
    Sqlite {
        user_version: i64,
        application_id: i32,
    },
}

pub(crate) fn read_header(path: &Path) -> Result<Header, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Header::Fresh),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut header = Vec::with_capacity(HEADER_LEN);
    file.by_ref()
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(|e| corrupt(format!("cannot read header: {e}")))?;
    if header.is_empty() {
        return Ok(Header::Fresh);
    }
    if header.len() < HEADER_LEN || &header[..16] != HEADER_MAGIC {
        return Err(corrupt("not an SQLite database".into()));
    }
    let be32 = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
    Ok(Header::Sqlite {
        user_version: i64::from(i32::from_be_bytes(be32(60))),
        application_id: i32::from_be_bytes(be32(68)),
    })
}

/// Checks the header, opens the writer connection and migrates it.
/// A new database file is created 0600 before SQLite opens it (SQLite would create it
/// 0644 minus the umask), so its `-wal` and `-shm` files, which SQLite creates with the
/// database file's mode whatever the umask, are private too.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::private_file::PRIVATE_MODE)
        .open(path)
        .map(drop)
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
}

pub(crate) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    match read_header(path)? {
        Header::Fresh => create_private(path)?,
        Header::Sqlite {
            user_version,
            application_id,
        } => {
            if user_version > migrations::latest_version() {
                return Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found: user_version,
                    supported: migrations::latest_version(),
                });
            }
            if application_id != APPLICATION_ID && (application_id != 0 || user_version != 0) {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("application id {application_id:#x} is not lanchat's"),
                });
            }
        }
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let at_path = |e: StoreError| match e {
        StoreError::CorruptPage(reason) => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        },
        StoreError::TooNew {
            found, supported, ..
        } => StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported,
        },
        other => other,
    };
    // A version written to the WAL but not yet to the header is caught here, before
    // any write; skipping the close-time checkpoint keeps the refused file as it was.
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| at_path(e.into()))?;
    if found > migrations::latest_version() {
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        return Err(at_path(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: migrations::latest_version(),
        }));
    }
    if found == 0 {
        // No lanchat schema yet: only an empty file may become one. Someone else's
        // database with tables of its own is refused, not migrated into.
        let objects: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| at_path(e.into()))?;
        if objects > 0 {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: "it holds tables but no lanchat schema version".into(),
            });
        }
    }
    configure(&conn, Role::Writer).map_err(|e| at_path(e.into()))?;
    let before = migrations::migrate(&mut conn).map_err(at_path)?;
    if before != migrations::latest_version() {
        tracing::info!(from = before, to = migrations::latest_version(), path = %path.display(), "schema upgraded");
    }
    Ok(conn)
}

/// Opens a read connection to a database the writer has already opened and migrated.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    configure(&conn, Role::Reader)?;
    Ok(conn)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
}

fn configure(conn: &Connection, role: Role) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    // One plan per statement, whatever is bound to it. Without this SQLite marks some
    // parameters (a join's `x = ?` terms among them) as able to change the plan, and a
    // cached statement bound to new values is compiled again at its next step: every
    // inbound group message re-parsed its membership query, 6 % of a member's CPU
    // (docs/BENCHMARKS.md, "Groups: fan-out", run 5). Our partial index is matched by
    // literals and our LIKE patterns start with `%`, so no plan here needs the values.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    match role {
        Role::Writer => {
            // WAL: readers never block the writer and a commit is one append. NORMAL
            // syncs at checkpoints only; commits that precede an ack raise it to FULL
            // for that commit (see `writer`).
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "database is not in WAL mode");
            }
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            // Every job runs in a savepoint, whose undo pages SQLite keeps in a temp
            // file by default; in memory they cost a copy, not a write (measured ~2x on
            // batched sends, docs/BENCHMARKS.md). A job touches a handful of pages.
            conn.pragma_update(None, "temp_store", "MEMORY")?;
            conn.pragma_update(None, "foreign_keys", true)?;
        }
        Role::Reader => {
            conn.pragma_update(None, "query_only", true)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::{params, StatementStatus};

    use super::*;

    /// A cached statement bound to new values runs the plan it was compiled with.
    #[test]
    fn new_bindings_never_recompile_a_cached_statement() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("t.db")).unwrap();
        let sql = "SELECT count(*) FROM groups g JOIN group_members m ON m.group_id = g.group_id
                   WHERE g.global_group_id = ?1 AND m.member_id = ?2";
        for i in 0..10 {
            let mut statement = conn.prepare_cached(sql).unwrap();
            let n: i64 = statement
                .query_row(params![format!("g{i}"), format!("m{i}")], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0);
            assert_eq!(
                statement.get_status(StatementStatus::RePrepare),
                0,
                "binding {i}"
            );
        }
    }
}
