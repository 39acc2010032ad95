//! A chat message and its place in a conversation: what every node agrees on.

use crate::hlc::Hlc;
use api_types::NodeId;

use crate::ids::{ConversationId, GlobalGroupId, MessageId, UserId};
use crate::signing::{AuthorKeys, Signature, Statement};

/// Milliseconds since the Unix epoch. Callers pass `now` in so tests control time.
pub type UnixMs = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    Pending,
    Sent,
    Delivered,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => MessageStatus::Pending,
            "sent" => MessageStatus::Sent,
            "delivered" => MessageStatus::Delivered,
            "failed" => MessageStatus::Failed,
            _ => return None,
        })
    }
}

/// The position of a message in its conversation, the same on every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    pub hlc: Hlc,
    pub message_id: MessageId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub sender: UserId,
    pub body: String,
    /// The sender's wall clock when it was sent: the author's own stamp, kept as it is
    /// for everything that goes back on the wire (relays, catch-up).
    pub sent_at: UnixMs,
    /// This node's wall clock when it was stored.
    pub received_at: UnixMs,
    pub hlc: Hlc,
    pub status: MessageStatus,
    /// The author's clock minus this node's when the message arrived (discovery's
    /// measurement, positive = the author is ahead); `None` for this node's own
    /// messages and when it was not known.
    pub sender_clock_offset_ms: Option<i64>,
    /// The author's signature of the message ([`message_statement`]) with the author's
    /// keys; `None` for a message stored before messages were signed.
    pub signature: Option<MessageSignature>,
}

/// An author's signature of a message and the keys it verifies under (which derive
/// the author's id): what lets any member relay the message, unchanged, for its author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSignature {
    pub sig: Signature,
    pub keys: AuthorKeys,
}

impl MessageSignature {
    /// `sig ‖ keys` (128 bytes): the store's column.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.sig.to_vec();
        out.extend_from_slice(&self.keys.to_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<MessageSignature> {
        if bytes.len() != 128 {
            return None;
        }
        Some(MessageSignature {
            sig: bytes[..64].try_into().ok()?,
            keys: AuthorKeys::from_bytes(&bytes[64..])?,
        })
    }

    /// Whether `author` signed `statement`: the keys derive its id and the signature
    /// verifies.
    pub fn verifies(&self, author: &NodeId, statement: &[u8]) -> bool {
        self.keys.verify_as(author, statement, &self.sig)
    }
}

/// Measured offsets smaller than this are left out of `Message::shown_at`: they are the
/// measurement's own noise (a packet's one-way delay) and NTP's error, and leaving them
/// out makes nodes with good clocks show a message at the very same time.
pub const MIN_SHOWN_CORRECTION_MS: i64 = 1_000;

impl Message {
    /// When the message was sent, on this node's clock: the author's `sent_at`
    /// corrected by its measured offset, and never after it arrived here (a clock
    /// ahead that was not measured would otherwise show it hours in the future).
    pub fn shown_at(&self) -> UnixMs {
        let offset = self
            .sender_clock_offset_ms
            .filter(|o| o.abs() >= MIN_SHOWN_CORRECTION_MS)
            .unwrap_or(0);
        self.sent_at.saturating_sub(offset).min(self.received_at)
    }

    pub fn order_key(&self) -> OrderKey {
        OrderKey {
            hlc: self.hlc,
            message_id: self.message_id,
        }
    }
}

/// A group message as a member relays it: its author's fields and signature, nothing
/// of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedMessage {
    pub message_id: MessageId,
    /// The node that wrote it (stored as sender `lan:{author}`).
    pub author: NodeId,
    pub body: String,
    pub sent_at: UnixMs,
    pub hlc: Hlc,
    /// The author's signature ([`message_statement`]) and public keys, checked by
    /// whoever receives the relay.
    pub signature: Option<MessageSignature>,
}

impl RelayedMessage {
    /// The bytes its author signed in `group`.
    pub fn statement(&self, group: &GlobalGroupId) -> Vec<u8> {
        message_statement(
            MessageScope::Group(group),
            &self.message_id,
            &self.author,
            self.sent_at,
            self.hlc,
            &self.body,
        )
    }
}

/// The conversation a message was written in, as its author signs it: the DM's
/// recipient, or the group.
#[derive(Debug, Clone, Copy)]
pub enum MessageScope<'a> {
    Direct { to: &'a NodeId },
    Group(&'a GlobalGroupId),
}

const MESSAGE_DOMAIN: &str = "lanchat/message/v1";

/// The bytes an author signs for a message: the conversation (a DM's recipient or the
/// group), the message id, the author, its `sent_at` and `hlc`, and the text — so a
/// signature is good for that one message, unchanged, in that one conversation.
pub fn message_statement(
    scope: MessageScope<'_>,
    message_id: &MessageId,
    author: &NodeId,
    sent_at: UnixMs,
    hlc: Hlc,
    body: &str,
) -> Vec<u8> {
    let mut s = Statement::new(MESSAGE_DOMAIN);
    match scope {
        MessageScope::Direct { to } => s.text("dm").text(to.as_str()),
        MessageScope::Group(group) => s.text("group").text(&group.to_string()),
    };
    s.text(&message_id.to_string())
        .text(author.as_str())
        // The sign bit travels as is: a stamp before 1970 is still one stamp.
        .number(sent_at.cast_unsigned())
        .number(hlc.raw())
        .text(body);
    s.bytes().to_vec()
}

/// The 64-bit content hash of a message for catch-up fingerprints: the first 8 bytes of
/// SHA-256 over its signed statement — equal only for the same message with the same
/// content, so two members holding one id with different texts see a difference.
pub fn content_hash(statement: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(statement);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl RelayedMessage {
    pub fn order_key(&self) -> OrderKey {
        OrderKey {
            hlc: self.hlc,
            message_id: self.message_id,
        }
    }
}
