//! A chat message and its place in a conversation: what every node agrees on.

use crate::hlc::Hlc;
use api_types::NodeId;

use crate::ids::{ConversationId, MessageId, UserId};

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

/// A group message as a member relays it: its author's fields, nothing of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedMessage {
    pub message_id: MessageId,
    /// The node that wrote it (stored as sender `lan:{author}`).
    pub author: NodeId,
    pub body: String,
    pub sent_at: UnixMs,
    pub hlc: Hlc,
}

impl RelayedMessage {
    pub fn order_key(&self) -> OrderKey {
        OrderKey {
            hlc: self.hlc,
            message_id: self.message_id,
        }
    }
}
