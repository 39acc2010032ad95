//! What the wire engine needs from persistence, in its own types (docs/ARCHITECTURE.md,
//! "Ports"). `lan-mesh` knows no database: the node implements these traits over its
//! store (`src-tauri`'s `mesh_store` adapter over `storage::Store`), and tests may
//! implement them in memory.
//!
//! Every method is one durable step — when its future resolves `Ok`, the change is
//! committed — and may run concurrently with any other: implementations serialise
//! writes themselves (the SQLite store batches them into group commits).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use api_types::NodeId;
use chat_core::{
    EnvelopeId, Fingerprint, GlobalGroupId, GroupState, Hlc, KeyRange, Message, MessageId,
    MessageSignature, OrderKey, RelayedMessage, UnixMs,
};

/// A port's answer: boxed, so the traits stay object safe (`Arc<dyn MeshStore>`).
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PortError>> + Send + 'a>>;

/// Why persistence did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The request can never succeed (invalid, blocked sender, unknown group): an
    /// envelope that asked for it is rejected with this reason.
    #[error("{0}")]
    Refused(String),
    /// Refused for good as a forgery (a group state in another owner's name, a known
    /// message id with other content): rejected like `Refused`, and counted.
    #[error("{0}")]
    Forged(String),
    /// Nothing was stored (disk full, database closed, …); the sender retries.
    #[error("{0}")]
    Unavailable(String),
}

/// An envelope waiting in the outbox for its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEnvelope {
    pub envelope_id: EnvelopeId,
    pub peer_id: NodeId,
    pub kind: String,
    /// The payload as encoded when it was queued (`envelope::dm_outgoing`, …).
    pub payload: Vec<u8>,
    /// The message it carries, whose status follows its delivery.
    pub message_id: Option<MessageId>,
    /// Attempts so far: 0 until it was first handed to a link.
    pub retry_count: u32,
    /// The sender's clock when it was queued: the envelope's `ts`.
    pub created_at: UnixMs,
}

/// One attempt to hand an envelope (or a member's group messages) to a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendAttempt {
    /// Written to the link; wait for the ack, retry if none comes.
    Sent,
    /// Could not be written (no link, link broke, busy, cannot encode).
    Failed(String),
}

/// An outbox envelope the receiver answered for good (acked or rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub peer_id: NodeId,
    /// The message it carried, whose status changed.
    pub message_id: Option<MessageId>,
}

/// An envelope that arrived, as far as persistence needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub envelope_id: EnvelopeId,
    pub from: NodeId,
    /// This node's wall clock on arrival.
    pub received_at: UnixMs,
    /// The sender's clock minus ours (discovery's measurement), `None` when not
    /// measured: the envelope's age is judged on the sender's clock with it.
    pub sender_clock_offset_ms: Option<i64>,
}

/// A message as its author sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub message_id: MessageId,
    pub body: String,
    pub sent_at: UnixMs,
    pub hlc: Hlc,
    /// The author's signature, verified on receipt, with the keys it verified under:
    /// kept so the message can be relayed with its proof.
    pub signature: Option<MessageSignature>,
}

/// What an inbound envelope asks persistence to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEffect {
    DirectMessage(IncomingMessage),
    GroupMessage {
        global_group_id: GlobalGroupId,
        message: IncomingMessage,
    },
    /// A member's `group.upsert`: its whole state, to merge.
    GroupUpsert(GroupState),
    /// `receipt.read`: the sender has read the DM with us (`None`) or the group up to
    /// `up_to`.
    ReadReceipt {
        global_group_id: Option<GlobalGroupId>,
        up_to: OrderKey,
    },
}

/// What applying an inbound envelope did. In every case the sender may be acked.
#[derive(Debug, Clone, PartialEq, Eq)]
// A message with its signature (128 bytes) is the common case, not the rare one.
#[allow(clippy::large_enum_variant)]
pub enum InboundOutcome {
    /// Stored now: for a message, the message as stored (no read back needed).
    Applied(Option<Message>),
    /// Seen before: nothing was applied again.
    Duplicate,
    /// Older than the dedupe window: not applied.
    Expired,
    /// A group upsert that changed nothing.
    Stale,
    /// A group upsert changed the group's state here.
    GroupUpdated { announcement_changed: bool },
    /// A group upsert for a group not joined yet while auto-accept is off.
    GroupInvitation,
    /// A read receipt was recorded; `moved` when it advanced the sender's position
    /// (false: it said nothing new — a resend or an older receipt).
    ReadReceipt {
        conversation_id: chat_core::ConversationId,
        up_to: OrderKey,
        moved: bool,
    },
}

impl InboundOutcome {
    /// The outcome an ack names on the wire.
    pub fn wire_name(&self) -> &'static str {
        match self {
            InboundOutcome::Applied(_)
            | InboundOutcome::GroupUpdated { .. }
            | InboundOutcome::GroupInvitation => "applied",
            InboundOutcome::ReadReceipt { moved: true, .. } => "applied",
            InboundOutcome::Duplicate => "duplicate",
            InboundOutcome::Expired => "expired",
            InboundOutcome::Stale | InboundOutcome::ReadReceipt { moved: false, .. } => "stale",
        }
    }
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

/// Acks recorded for one member of one group.
pub type MemberAcks = (GlobalGroupId, NodeId, Vec<MessageId>);

/// What storing a relayed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayOutcome {
    /// The messages stored now, in the batch's order.
    pub stored: Vec<Message>,
    /// Already held, authored by this node, or refused one by one.
    pub skipped: usize,
    /// Of the skipped, ids held with other content (counted as forged).
    pub forged: usize,
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

/// DM envelopes waiting for their peers, with their retry schedule.
pub trait Outbox: Send + Sync {
    /// Envelopes whose next attempt is due at `now`, oldest first.
    fn due_outbox(&self, now: UnixMs, limit: u32) -> PortFuture<'_, Vec<QueuedEnvelope>>;
    /// When the earliest pending envelope is due, if any.
    fn next_outbox_due_at(&self) -> PortFuture<'_, Option<UnixMs>>;
    /// Records attempts (the implementation schedules the retries with backoff) and
    /// returns the messages whose delivery was given up now.
    fn record_outbox_attempts(
        &self,
        attempts: Vec<(EnvelopeId, SendAttempt)>,
        now: UnixMs,
    ) -> PortFuture<'_, Vec<MessageId>>;
    /// `peer` acked the envelope: it leaves the outbox, its message is delivered.
    /// `None` when no such envelope waits for that peer (a group ack, or a late one).
    fn outbox_acked(&self, envelope: EnvelopeId, peer: NodeId) -> PortFuture<'_, Option<Settled>>;
    /// `peer` rejected the envelope (or it cannot be encoded): no more retries, its
    /// message failed.
    fn outbox_rejected(
        &self,
        envelope: EnvelopeId,
        peer: NodeId,
        reason: String,
    ) -> PortFuture<'_, Option<Settled>>;
    /// `peer` is reachable: its whole backlog is due now. Returns how many.
    fn outbox_due_now(&self, peer: NodeId, now: UnixMs) -> PortFuture<'_, usize>;
}

/// Applying inbound envelopes exactly once, and the messages they stored.
pub trait Inbox: Send + Sync {
    /// Applies the effect and records the envelope id for dedupe, in one commit that
    /// is durable before the future resolves (the sender is acked after it).
    fn apply_inbound(
        &self,
        arrival: Arrival,
        effect: InboundEffect,
    ) -> PortFuture<'_, InboundOutcome>;
    /// Forgets dedupe entries no sender can still retry. Returns how many.
    fn prune_inbox_dedupe(&self, now: UnixMs) -> PortFuture<'_, usize>;
    fn message(&self, id: MessageId) -> PortFuture<'_, Option<Message>>;
}

/// Per-member delivery cursors of the local node's group messages.
pub trait GroupCursors: Send + Sync {
    /// Per member, at most `per_member` messages after its cursor, for every member
    /// whose cursor is due at `now`.
    fn due_group_deliveries(
        &self,
        now: UnixMs,
        per_member: u32,
    ) -> PortFuture<'_, Vec<GroupDelivery>>;
    /// Records an attempt to a member (retry scheduled with backoff).
    fn record_group_attempt(
        &self,
        group: GlobalGroupId,
        member: NodeId,
        attempt: SendAttempt,
        now: UnixMs,
    ) -> PortFuture<'_, ()>;
    /// Moves each member's cursor over the acked messages it reaches; per entry, the
    /// acks consumed (those behind a gap stay for later).
    fn group_acks_recorded(
        &self,
        acks: Vec<MemberAcks>,
        now: UnixMs,
    ) -> PortFuture<'_, Vec<Vec<MessageId>>>;
    fn next_group_delivery_due_at(&self) -> PortFuture<'_, Option<UnixMs>>;
    /// `member` is reachable: every cursor that owes it something is due now.
    fn group_deliveries_due_now(&self, member: NodeId, now: UnixMs) -> PortFuture<'_, usize>;
}

/// Groups and their histories, for catch-up between members.
pub trait GroupLog: Send + Sync {
    /// Every group held here (joined, left or dissolved).
    fn groups(&self) -> PortFuture<'_, Vec<GroupState>>;
    fn group(&self, group: GlobalGroupId) -> PortFuture<'_, Option<GroupState>>;
    fn group_fingerprint(
        &self,
        group: GlobalGroupId,
        range: KeyRange,
    ) -> PortFuture<'_, Fingerprint>;
    /// The order keys of the group's messages in `range`, ascending.
    fn group_keys(&self, group: GlobalGroupId, range: KeyRange) -> PortFuture<'_, Vec<OrderKey>>;
    /// The messages with these ids, as their authors sent them.
    fn group_messages_for_relay(
        &self,
        group: GlobalGroupId,
        ids: Vec<MessageId>,
    ) -> PortFuture<'_, Vec<RelayedMessage>>;
    /// Stores messages a member relayed; `author_offsets` are the authors' measured
    /// clock offsets (for showing their times).
    fn apply_relayed(
        &self,
        from: NodeId,
        group: GlobalGroupId,
        messages: Vec<RelayedMessage>,
        author_offsets: HashMap<NodeId, i64>,
        now: UnixMs,
    ) -> PortFuture<'_, RelayOutcome>;
}

/// What re-attaching a colleague's earlier id did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reattach {
    /// Its contact, history, groups and queue moved to the new id.
    Moved,
    /// Nothing was known under the old id (or it was moved before).
    NothingKnown,
    /// The old id is of the random-id era and the keys pinned for it are not the ones
    /// that signed the statement (or none were pinned): not moved.
    Refused,
}

/// The link keys each peer showed first.
pub trait KeyBook: Send + Sync {
    fn pin_link_keys(&self, peer: NodeId, keys: [u8; 64]) -> PortFuture<'_, KeyPin>;

    /// A peer proved (a statement signed by `old_keys`) that its earlier id `old` is now
    /// `new`. With `old_derived` the old keys derive the old id, which settles it;
    /// otherwise the keys pinned for `old` must be `old_keys`. Moves what was known
    /// under `old` to `new` (docs/STORAGE.md, "Identity changes").
    fn reattach_identity(
        &self,
        old: NodeId,
        old_keys: [u8; 64],
        old_derived: bool,
        new: NodeId,
    ) -> PortFuture<'_, Reattach> {
        let _ = (old, old_keys, old_derived, new);
        Box::pin(async { Ok(Reattach::NothingKnown) })
    }
}

/// Everything delivery and the transport need from persistence.
pub trait MeshStore: Outbox + Inbox + GroupCursors + GroupLog + KeyBook {}

impl<T: Outbox + Inbox + GroupCursors + GroupLog + KeyBook> MeshStore for T {}
