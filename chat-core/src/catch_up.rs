//! Group catch-up's summaries (docs/PROTOCOL.md, "Group catch-up"): ranges of order
//! keys and the fingerprint of the messages in one. Two nodes compute the same
//! fingerprint for the same set of messages, whatever order they got them in: a count
//! and the xor of a stable hash of each message id.

use sha2::{Digest, Sha256};

use crate::hlc::Hlc;
use crate::ids::MessageId;
use crate::message::OrderKey;

/// The stable 64-bit hash of a message id: the first 8 bytes (big-endian) of SHA-256
/// over its 16 raw ULID bytes. Stable across builds and platforms (std's hashers are
/// not), which two nodes comparing fingerprints need.
pub fn message_hash(id: &MessageId) -> u64 {
    let digest = Sha256::digest(id.ulid().to_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A summary of a set of messages: how many, and the xor of their hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub count: u64,
    pub xor: u64,
}

impl Fingerprint {
    pub fn add(&mut self, id: &MessageId) {
        self.add_hash(message_hash(id));
    }

    /// Adds a message by its content hash (`chat_core::content_hash` of its signed
    /// statement): what catch-up compares, so one id with two texts differs.
    pub fn add_hash(&mut self, hash: u64) {
        self.count += 1;
        self.xor ^= hash;
    }

    pub fn of<'a>(ids: impl IntoIterator<Item = &'a MessageId>) -> Fingerprint {
        let mut fp = Fingerprint::default();
        for id in ids {
            fp.add(id);
        }
        fp
    }
}

/// The smallest order key (the lower end of "everything").
pub fn min_key() -> OrderKey {
    OrderKey {
        hlc: Hlc::from_raw(0),
        message_id: MessageId::from_ulid(ulid::Ulid::nil()),
    }
}

/// `[lo, hi)` over order keys; `hi = None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRange {
    pub lo: OrderKey,
    pub hi: Option<OrderKey>,
}

impl KeyRange {
    /// Every possible key.
    pub fn all() -> KeyRange {
        KeyRange {
            lo: min_key(),
            hi: None,
        }
    }

    pub fn contains(&self, key: &OrderKey) -> bool {
        *key >= self.lo && self.hi.is_none_or(|hi| *key < hi)
    }
}
