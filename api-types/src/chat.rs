//! Contacts, conversations and messages as the local API shows them, and the requests
//! that create them (`/api/v1/contacts`, `/conversations`, `/search`).

use serde::{Deserialize, Serialize};

/// A user the local user can talk to: every LAN peer is the virtual user
/// `lan:{peer_id}`; the local user is listed too (`is_self`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactView {
    /// `lan:{node_id}`.
    pub user_id: String,
    pub peer_id: String,
    pub display_name: String,
    pub online: bool,
    /// `ip:port` as last seen.
    pub address: Option<String>,
    pub last_seen_at: Option<u64>,
    pub blocked: bool,
    pub is_self: bool,
    /// `online|away|busy|offline` (this node's own, for `is_self`).
    #[serde(default)]
    pub presence: crate::presence::Presence,
    /// The DM conversation id (`dm:lan:{peer_id}`), usable before any message exists.
    pub conversation_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Dm,
    Group,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    /// `dm:lan:{peer_id}` or `group:{global_group_id}`.
    pub id: String,
    pub kind: ConversationKind,
    pub name: String,
    pub last_message: Option<MessageView>,
    pub unread: u32,
    /// Unix ms of the last message, or of creation: the list is sorted by it, newest first.
    pub last_activity_at: u64,
    /// For a DM: the peer, so a client can show its online state.
    pub peer_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Stored here, not yet acknowledged by the receiving node.
    Pending,
    /// Written to the link, no ack yet.
    Sent,
    /// Acknowledged by the receiving node (for a received message: stored here).
    Delivered,
    /// Given up; `POST .../messages/{id}/retry` queues it again.
    Failed,
    /// An outgoing DM its recipient has read (its read receipt arrived).
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub id: String,
    pub conversation_id: String,
    /// `lan:{node_id}` of the author.
    pub sender: String,
    pub sender_name: String,
    /// True when the local node wrote it.
    pub outgoing: bool,
    pub text: String,
    pub status: MessageStatus,
    /// When it was sent, Unix ms on this node's clock: a received message's author time
    /// corrected by the author's measured clock offset, never after its arrival.
    pub sent_at: u64,
    /// Position in the conversation, the same on every node: sort by it (as a string
    /// it sorts correctly too). Also the `before` cursor of history paging.
    pub order: String,
    /// For this node's own group messages: how many of the other members have read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_by: Option<ReadBy>,
    /// The files of a file message (its `text` is then empty); empty for text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::files::AttachmentView>,
}

/// "Read by `count` of `of`": members other than the author whose read position has
/// passed the message, of the members other than the author now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadBy {
    pub count: u32,
    pub of: u32,
}

/// `GET /api/v1/conversations/{id}/messages?before=ORDER&limit=N`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePageView {
    pub messages: Vec<MessageView>,
    /// Pass as `before` for the previous page; absent at the beginning of history.
    pub older: Option<String>,
}

/// `POST /api/v1/conversations/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    pub text: String,
}

/// `GET /api/v1/search?q=TEXT[&after=CURSOR&limit=N]`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResults {
    pub hits: Vec<MessageView>,
    pub next: Option<String>,
}
