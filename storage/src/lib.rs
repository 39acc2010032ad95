//! `storage` owns every byte the node keeps: the data directory and its lock, the
//! settings file, private files (API token), and the SQLite chat and mesh store.
//! It does no networking, and no SQL exists outside it.
//!
//! File content lives apart from the database, in `blobs` ([`BlobStore`]: stored once
//! per SHA-256, downloaded chunk by chunk with every chunk verified).
//!
//! The store is [`Store`]: a cheap `Clone` handle whose async methods run on a
//! dedicated writer thread (group commit) and reader threads. See docs/STORAGE.md.

pub mod blobs;
pub mod data_dir;
pub mod private_file;
pub mod settings_file;

mod attachments;
mod blocks;
mod chat;
mod database;
mod error;
mod group_column;
mod group_delivery;
mod group_sync;
mod groups;
mod health;
mod identity_change;
mod inbound;
mod migrations;
mod model;
mod name_cache;
mod outbox;
mod peers;
mod readers;
mod receipts;
mod rows;
mod search;
mod store;
mod writer;

pub use attachments::Attachment;
pub use blobs::{
    BlobError, BlobState, BlobStatus, BlobStore, Download, FileId, Manifest, ManifestHash,
    PartialBlob,
};
pub use blocks::{BlockList, NewlyBlocked};
pub use chat::MAX_PAGE;
pub use data_dir::{DataDir, DataDirError};
pub use error::{StoreError, StoreResult};
pub use group_sync::RelayOutcome;
pub use health::{describe as describe_write_fault, WriteFault, WriteFaultKind};
pub use identity_change::{LocalChange, PeerReattach};
pub use model::*;
pub use receipts::MarkedRead;
pub use search::MAX_SEARCH_PAGE;
pub use settings_file::SettingsFileError;
pub use store::{Store, DATABASE_FILE};

// The store's records are made of chat-core's types; its callers get them from here
// too, so that code which only talks to the store needs one import.
/// What "read" means (`chat_core::receipts`), for the API that shows it.
pub use chat_core::receipts as read_rules;
pub use chat_core::{
    content_hash, group_state::statement as group_statement, AuthorKeys, Change, MessageSignature,
    Signer,
};
pub use chat_core::{
    message_hash, min_key, retry_delay_ms, ConversationId, ConversationTarget, DissolvedStamp,
    EnvelopeId, Fingerprint, GlobalGroupId, GroupState, Hlc, InvalidGroupState, KeyRange,
    MemberEntry, Message, MessageId, MessageStatus, OrderKey, Register, RelayedMessage,
    RetryPolicy, Stamp, UnixMs, UserId, DEDUPE_RETENTION_MS, MAX_ADOPT_AHEAD_MS, MAX_BODY_BYTES,
    MAX_MEMBER_ENTRIES, MAX_OFFSET_ERROR_MS, MAX_REGISTERS, MAX_RETRY_AGE_MS,
};

/// The schema version this build writes (`PRAGMA user_version`).
pub fn schema_version() -> i64 {
    migrations::latest_version()
}
