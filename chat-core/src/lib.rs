//! The rules that both sides of the node share, written once: the wire engine
//! (`lan-mesh`) and the database (`storage`) depend on this crate, never on each other.
//!
//! Plain data and pure functions: no I/O, no SQL, no sockets, no serde wire or table
//! formats (each side has its own). Text limits live one crate lower, in
//! `api_types::limits`, because the UI enforces them too; they are re-exported here.

pub mod catch_up;
pub mod group_state;
pub mod hlc;
pub mod ids;
pub mod message;
pub mod receipts;
pub mod retry;
pub mod signing;

pub use api_types::limits::{
    check_announcement, check_body, check_display_name, check_group_name, TextError,
    MAX_ANNOUNCEMENT_CHARS, MAX_BODY_BYTES, MAX_DISPLAY_NAME_CHARS, MAX_GROUP_MEMBERS,
    MAX_GROUP_NAME_CHARS,
};
pub use catch_up::{message_hash, min_key, Fingerprint, KeyRange};
pub use group_state::{
    Change, DissolvedStamp, GroupState, InvalidGroupState, MemberEntry, Register, Stamp,
    MAX_MEMBER_ENTRIES, MAX_REGISTERS,
};
pub use hlc::{Hlc, MAX_ADOPT_AHEAD_MS};
pub use ids::{
    ConversationId, ConversationTarget, EnvelopeId, GlobalGroupId, IdError, MessageId, UserId,
};
pub use message::{
    content_hash, message_statement, Message, MessageScope, MessageSignature, MessageStatus,
    OrderKey, RelayedMessage, UnixMs, MIN_SHOWN_CORRECTION_MS,
};
pub use retry::{
    retry_delay_ms, RetryPolicy, DEDUPE_RETENTION_MS, MAX_OFFSET_ERROR_MS, MAX_RETRY_AGE_MS,
};
pub use signing::{AuthorKeys, SecretSigner, Signature, Signer};
