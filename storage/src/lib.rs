//! `storage` owns every byte the node keeps: the data directory and its lock, the
//! settings file, private files (API token), and the SQLite chat and mesh store.
//! It does no networking, and no SQL exists outside it.
//!
//! The store is [`Store`]: a cheap `Clone` handle whose async methods run on a
//! dedicated writer thread (group commit) and reader threads. See docs/STORAGE.md.

pub mod data_dir;
pub mod private_file;
pub mod settings_file;

mod chat;
mod database;
mod error;
mod group_delivery;
mod group_state;
mod group_sync;
mod groups;
mod hlc;
mod ids;
mod inbound;
mod migrations;
mod model;
mod outbox;
mod peers;
mod readers;
mod retry;
mod rows;
mod search;
mod store;
mod writer;

pub use chat::MAX_PAGE;
pub use data_dir::{DataDir, DataDirError};
pub use error::{StoreError, StoreResult};
pub use group_state::{
    DissolvedStamp, InvalidGroupState, MemberEntry, Register, MAX_MEMBER_ENTRIES, MAX_REGISTERS,
};
pub use group_sync::{message_hash, min_key, Fingerprint, KeyRange, RelayOutcome, RelayedMessage};
pub use hlc::{Hlc, MAX_ADOPT_AHEAD_MS};
pub use ids::{ConversationId, ConversationTarget, EnvelopeId, GlobalGroupId, MessageId, UserId};
pub use inbound::{DEDUPE_RETENTION_MS, MAX_OFFSET_ERROR_MS};
pub use model::*;
pub use retry::{retry_delay_ms, RetryPolicy, MAX_RETRY_AGE_MS};
pub use search::MAX_SEARCH_PAGE;
pub use settings_file::SettingsFileError;
pub use store::{Store, DATABASE_FILE};

/// The schema version this build writes (`PRAGMA user_version`).
pub fn schema_version() -> i64 {
    migrations::latest_version()
}
