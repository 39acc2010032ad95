//! The records the store returns and accepts. Plain data: no SQL here.

use api_types::NodeId;
use chat_core::{
    ConversationId, EnvelopeId, GlobalGroupId, GroupState, Hlc, Message, MessageId, OrderKey,
    UnixMs, UserId,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdentity {
    pub node_id: NodeId,
    pub display_name: String,
    pub created_at: UnixMs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKind {
    Local,
    Lan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: UserId,
    pub kind: UserKind,
    pub display_name: String,
    /// Last address the peer was seen at (`ip`, `port`); none for the local user.
    pub last_address: Option<(String, u16)>,
    pub online: bool,
    pub blocked: bool,
}

/// What discovery learned about a peer: written on every hello or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSighting {
    pub peer_id: NodeId,
    pub display_name: String,
    pub ip: String,
    pub port: u16,
    /// Opaque to the store (lan-mesh's JSON list of feature names).
    pub capabilities: String,
    pub seen_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub peer_id: NodeId,
    pub display_name: String,
    pub last_ip: Option<String>,
    pub last_port: Option<u16>,
    pub online: bool,
    pub last_seen_at: Option<UnixMs>,
    pub capabilities: String,
    pub blocked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    Direct,
    Group,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub conversation_id: ConversationId,
    pub kind: ConversationKind,
    /// The peer's or the group's display name at the time of the query.
    pub name: String,
    pub last_message: Option<Message>,
    pub unread: u32,
    pub created_at: UnixMs,
}

/// A page of history, oldest first (newest last), and where the next older page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Pass as `before` to fetch the page of older messages; `None` at the beginning.
    pub older: Option<OrderKey>,
}

/// Which part of a conversation's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only messages strictly before this key; `None` for the newest page.
    pub before: Option<OrderKey>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// This node's own id for the group.
    pub local_id: String,
    pub conversation_id: ConversationId,
    pub state: GroupState,
    pub updated_at: UnixMs,
}

/// A change of this node's own standing in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAction {
    /// Any member but the owner.
    Leave,
    /// The owner, for everyone.
    Dissolve,
}

/// A group a member added this node to while auto-accept is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInvitation {
    pub state: GroupState,
    /// The member whose upsert brought it.
    pub from_peer_id: NodeId,
    pub received_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub name: String,
    pub announcement: String,
    /// Other members; the local node is added as owner and member.
    pub members: Vec<NodeId>,
}

/// A local edit; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupEdit {
    pub name: Option<String>,
    pub announcement: Option<String>,
    pub members: Option<Vec<NodeId>>,
}

/// An envelope to put in the outbox, as the caller's codec encoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEnvelope {
    pub kind: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Waiting for its next attempt or for an ack.
    Pending,
    /// Gave up (see `outbox::MAX_RETRY_AGE_MS`); kept so the user can see why.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub envelope_id: EnvelopeId,
    pub peer_id: NodeId,
    pub kind: String,
    pub payload: Vec<u8>,
    pub message_id: Option<MessageId>,
    pub status: OutboxStatus,
    pub retry_count: u32,
    pub next_retry_at: UnixMs,
    pub last_error: Option<String>,
    pub created_at: UnixMs,
}

/// An envelope the receiver answered for good (acked, or rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedEnvelope {
    pub envelope_id: EnvelopeId,
    pub peer_id: NodeId,
    /// The message it carried, whose status changed.
    pub message_id: Option<MessageId>,
}

/// What pinning a peer's link keys found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPin {
    /// First link with this peer: its keys are now pinned.
    Pinned,
    /// The keys pinned before.
    Matches,
    /// Other keys than those pinned: refuse the link.
    Mismatch,
}

/// What happened on one attempt to hand an envelope to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendAttempt {
    /// Written to the link; wait for the ack, retry if none comes.
    Sent,
    /// Could not be written (no link, link broke).
    Failed(String),
}

/// Group messages owed to one member: the local messages after its delivery cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDelivery {
    pub global_group_id: GlobalGroupId,
    pub peer_id: NodeId,
    pub retry_count: u32,
    /// Oldest first; send in this order.
    pub messages: Vec<Message>,
}

/// An envelope that arrived, as far as the store needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEnvelope {
    pub envelope_id: EnvelopeId,
    pub from_peer_id: NodeId,
    /// This node's wall clock on arrival.
    pub received_at: UnixMs,
    /// The sender's clock minus ours (discovery's measurement), `None` when not
    /// measured: the envelope's age is judged on the sender's clock with it.
    pub sender_clock_offset_ms: Option<i64>,
}

/// The effect of an inbound business envelope on the chat store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEffect {
    DirectMessage(InboundMessage),
    GroupMessage {
        global_group_id: GlobalGroupId,
        message: InboundMessage,
    },
    /// A member's `group.upsert`: its whole state, merged field by field.
    GroupUpsert(GroupState),
    /// Envelopes whose effect lives outside the store; only deduped.
    Nothing,
    /// `receipt.read`: the sender read the DM with us (`None`) or the group up to here.
    ReadReceipt {
        global_group_id: Option<GlobalGroupId>,
        up_to: OrderKey,
    },
}

/// Who has read how far in one conversation (`Store::read_state`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadState {
    /// Each reader's read position (this node's own included), by node id.
    pub positions: Vec<(NodeId, OrderKey)>,
    /// A group's present members (empty for a DM).
    pub members: Vec<NodeId>,
}

impl ReadState {
    pub fn position_of(&self, reader: &NodeId) -> Option<OrderKey> {
        self.positions
            .iter()
            .find(|(r, _)| r == reader)
            .map(|(_, key)| *key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub message_id: MessageId,
    pub body: String,
    pub sent_at: UnixMs,
    pub hlc: Hlc,
    /// The author's signature, already verified by the wire engine; kept for relays.
    pub signature: Option<chat_core::MessageSignature>,
}

/// What applying an inbound envelope did. In every case the sender may be acked.
#[derive(Debug, Clone, PartialEq, Eq)]
// A message with its signature (128 bytes) is the common case, not the rare one.
#[allow(clippy::large_enum_variant)]
pub enum InboundOutcome {
    /// Applied now; for a message stored now, the message as stored (`None` when its
    /// id was held already, under another envelope id).
    Applied(Option<Message>),
    /// Seen before: nothing was applied again.
    Duplicate,
    /// Older than the dedupe window: it may have been applied and pruned, so it is not
    /// applied (see `dedupe` for the rule).
    Expired,
    /// A group upsert that changed nothing (the state held already had it all).
    Stale,
    /// A group upsert changed the group's state here.
    GroupUpdated {
        /// The announcement shown changed: tell the user.
        announcement_changed: bool,
    },
    /// A group upsert for a group not joined yet while auto-accept is off: it is (still)
    /// an invitation.
    GroupInvitation,
    /// A read receipt was recorded; `moved` when it advanced its sender's position.
    ReadReceipt {
        conversation_id: ConversationId,
        up_to: OrderKey,
        moved: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub text: String,
    /// Continue after the last hit of the previous page.
    pub after: Option<SearchCursor>,
    pub limit: u32,
}

/// An opaque position in search results (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchCursor(pub(crate) i64);

/// The text a client gets and hands back (`after`); opaque to it.
impl std::fmt::Display for SearchCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for SearchCursor {
    type Err = crate::error::StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Positions are row ids, which start at 1.
        s.parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(SearchCursor)
            .ok_or_else(|| crate::error::StoreError::invalid("after", "not a search cursor"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Newest first.
    pub hits: Vec<Message>,
    pub next: Option<SearchCursor>,
}
