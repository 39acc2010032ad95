//! Delivery: the outbox worker, the inbox, and acks (docs/PROTOCOL.md, "Delivery").
//!
//! One task per running mesh. It owns the receiving end of the transport's link events
//! and follows discovery's peer events (for addresses and presence), and:
//!
//! - **outbox**: sends every due envelope on its peer's link (dialling when there is
//!   none), records each attempt — the store schedules the retry with backoff and
//!   jitter — and makes a peer's backlog due at once when its link comes up;
//! - **inbox**: verifies an envelope, applies it and records its id in the dedupe table
//!   in one transaction, then acks it (a duplicate is acked, not applied again); an
//!   envelope it can never accept is rejected with a reason instead;
//! - **acks**: an ack deletes the envelope from the outbox and marks its message
//!   delivered; a rejection stops its retries and marks it failed.
//!
//! Inbound envelopes and acks are handled concurrently (bounded), so their commits share
//! the store's group commit instead of paying one fsync each in a row.
//!
//! It reaches the store through [`crate::ports`] and the other nodes through
//! [`crate::links::Links`] only, so its unit tests (`tests.rs`) run it on
//! `crate::testing`'s in-memory ports and links, on paused time.

mod addresses;
mod clock;
mod quotas;
mod receipts;
mod reconcile;
mod sync;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::NodeId;
use chat_core::{
    ConversationId, ConversationTarget, EnvelopeId, GlobalGroupId, Message, MessageId,
    MessageStatus, OrderKey, UnixMs, UserId,
};
use tokio::sync::{broadcast, mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use addresses::AddressBook;
pub use clock::{now_ms, Clock, ClockOffsets};
pub use sync::SyncRequests;

use crate::discovery::PeerEvent;
use crate::envelope::{is_catch_up_kind, Envelope, EnvelopeError};
use crate::links::Links;
use crate::ports::{
    Arrival, GroupDelivery, InboundEffect, InboundOutcome, MeshStore, PortError, QueuedEnvelope,
    SendAttempt, Settled,
};
use crate::transport::{Ack, Frame, LinkEvent, PeerKeys, Reject, SendError, Transport};

/// Envelopes taken from the outbox per pass.
const OUTBOX_BATCH: u32 = 256;
/// The outbox is looked at least this often even without a wake-up (a safety net:
/// every path that makes something due also wakes the worker).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// How often the inbox dedupe table is pruned (entries live nine days; see
/// `storage::DEDUPE_RETENTION_MS`).
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);
/// Inbound envelopes and acks being stored at once.
const INBOUND_CONCURRENCY: usize = 128;
/// Group messages sent to one member per pass (its cursor's window).
const GROUP_BATCH: u32 = 256;
/// Early group acks kept per member (acks that overtook one for an older message).
const MAX_EARLY_ACKS: usize = 4096;

/// One member of one group, as group fan-out tracks it.
type GroupMember = (GlobalGroupId, NodeId);

/// DM envelopes the API just stored, handed to the worker so that it sends them at once
/// instead of reading them back from the outbox first (a store round trip on every
/// message's way out). Lost entries cost nothing: they are in the outbox anyway.
#[derive(Clone, Default)]
pub struct SendNow(Arc<Mutex<Vec<QueuedEnvelope>>>);

/// Entries kept while no worker takes them (the mesh is off): the outbox has them all.
const MAX_SEND_NOW: usize = 1024;
/// How soon the outbox is looked at again after a link's queue was full.
const BUSY_RETRY: Duration = Duration::from_millis(5);
/// How long an answer waits for room on a full control lane.
const REPLY_WAIT: Duration = Duration::from_secs(1);
/// Sent DM envelopes remembered for their ack; past this (peers away, acks never
/// coming) the memory is dropped and acks take the store's path.
const MAX_AWAITING_ACK: usize = 8192;

impl SendNow {
    pub fn push(&self, entry: QueuedEnvelope) {
        let mut queue = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() < MAX_SEND_NOW {
            queue.push(entry);
        }
    }

    fn take(&self) -> Vec<QueuedEnvelope> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The last `MAX_AWAITING_ACK` DMs announced `delivered`, oldest first out.
#[derive(Default)]
struct RecentlyDelivered {
    order: std::collections::VecDeque<MessageId>,
    set: std::collections::HashSet<MessageId>,
}

impl RecentlyDelivered {
    fn insert(&mut self, id: MessageId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > MAX_AWAITING_ACK {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// This node's group messages handed to links recently, with their group: an ack for
/// one of them goes straight to its member's cursor, without asking the store whether
/// the id is an outbox envelope and whose message it is (two store round trips per ack,
/// 63 acks per message in a 64-member group). Bounded; an ack for an id forgotten here
/// takes the store path, as before.
#[derive(Default)]
struct RecentGroupSends {
    order: std::collections::VecDeque<MessageId>,
    groups: HashMap<MessageId, GlobalGroupId>,
}

/// Group messages remembered by [`RecentGroupSends`]: a few batches for every group.
const MAX_RECENT_GROUP_SENDS: usize = 8192;

impl RecentGroupSends {
    fn insert(&mut self, id: MessageId, group: GlobalGroupId) {
        if self.groups.insert(id, group).is_none() {
            self.order.push_back(id);
            if self.order.len() > MAX_RECENT_GROUP_SENDS {
                if let Some(old) = self.order.pop_front() {
                    self.groups.remove(&old);
                }
            }
        }
    }

    fn group_of(&self, id: &MessageId) -> Option<GlobalGroupId> {
        self.groups.get(id).copied()
    }
}

/// Group acks not recorded yet. Acks arrive concurrently and out of order; one task at
/// a time records them (`flushing`), batching whatever came in meanwhile.
#[derive(Default)]
struct GroupAcks {
    /// Per member, acks not yet consumed by its cursor: new ones, and early ones that
    /// overtook the ack of a message still owed ahead of them.
    pending: HashMap<GroupMember, Vec<MessageId>>,
    /// Members with a new ack since the last round.
    dirty: std::collections::HashSet<GroupMember>,
    flushing: bool,
}

/// What delivery tells the node (for the local API's event stream).
#[derive(Debug, Clone)]
// A message with its signature (128 bytes) is the common case, not the rare one.
#[allow(clippy::large_enum_variant)]
pub enum DeliveryEvent {
    /// A message from a peer was stored.
    MessageReceived(Message),
    /// An outgoing message changed state.
    MessageStatus {
        message_id: MessageId,
        conversation_id: ConversationId,
        status: MessageStatus,
    },
    /// A node id showed other keys than the ones pinned: its link was refused.
    KeyMismatch { peer: NodeId },
    /// A `group.upsert` from a peer changed a group's state here.
    GroupUpdated(GlobalGroupId),
    /// ... and the announcement shown changed with it.
    GroupAnnouncement(GlobalGroupId),
    /// A member added this node to a group while auto-accept is off: an invitation.
    GroupInvitation(GlobalGroupId),
    /// `reader` has read `conversation_id` up to `up_to` (a `receipt.read` moved its
    /// read position here).
    ReadReceipt {
        conversation_id: ConversationId,
        reader: NodeId,
        up_to: OrderKey,
    },
    /// A `receipt.read` was refused (its sender is not in the conversation it names).
    ReceiptRefused { peer: NodeId },
}

/// What delivery runs on. `L` is the links to other nodes: the node's [`Transport`],
/// or a test's in-memory network (`testing::MemoryNet`).
pub struct DeliveryParts<L = Transport> {
    pub store: Arc<dyn MeshStore>,
    pub transport: L,
    pub local: NodeId,
    pub link_events: mpsc::Receiver<LinkEvent>,
    pub peer_events: broadcast::Receiver<PeerEvent>,
    pub addresses: AddressBook,
    pub wake: Arc<Notify>,
    pub events: broadcast::Sender<DeliveryEvent>,
    /// "Sync this group with its online members now" (group catch-up).
    pub sync_requests: SyncRequests,
    pub send_now: SendNow,
    pub cancel: CancellationToken,
    /// Peers' clock offsets known when delivery starts (delivery follows the peer
    /// events from then on).
    pub offsets: ClockOffsets,
    /// The wall clock: [`Clock::system`] in the node.
    pub clock: Clock,
}

struct Worker {
    store: Arc<dyn MeshStore>,
    transport: Arc<dyn Links>,
    local: NodeId,
    addresses: AddressBook,
    /// Each peer's clock offset, from discovery's peer events.
    offsets: ClockOffsets,
    clock: Clock,
    events: broadcast::Sender<DeliveryEvent>,
    inbound: Arc<Semaphore>,
    wake: Arc<Notify>,
    /// Per member, the last group message handed to its link since its cursor last
    /// moved: those are in flight, and a pass sends only what comes after them. The
    /// cursor's retry timer (the store's backoff) resends from the cursor if the acks
    /// do not come. Forgotten when the member's link goes down or comes up.
    group_in_flight: Mutex<HashMap<GroupMember, OrderKey>>,
    /// Group acks waiting to be recorded, and early ones (see `GroupAcks`).
    group_acks: Mutex<GroupAcks>,
    /// Own group messages sent recently (see `RecentGroupSends`).
    recent_group_sends: Mutex<RecentGroupSends>,
    /// DM envelopes to send before reading the outbox.
    send_now: SendNow,
    /// DM envelopes handed to a link and not acked yet: envelope → (receiver, message).
    /// An ack found here announces `delivered` at once — the receiver stored the
    /// message durably before acking — while the store records it.
    awaiting_ack: Mutex<HashMap<EnvelopeId, (NodeId, MessageId)>>,
    /// DMs recently announced `delivered`: a second send of one (the send-now path and
    /// an outbox pass can both pick a fresh envelope) must not say `sent` after it.
    delivered: Mutex<RecentlyDelivered>,
    /// Group catch-up (anti-entropy) sessions with other members.
    sync: Arc<sync::Syncer>,
    /// Every task started besides the two loops; joined at stop.
    tasks: tasks::OwnedTasks,
    /// What each peer may make this node store unasked (see `quotas`).
    quotas: quotas::PeerQuotas,
}

/// Starts the delivery task; it ends when `cancel` fires.
pub fn spawn<L: Links + 'static>(parts: DeliveryParts<L>) -> JoinHandle<()> {
    let offsets = parts.offsets;
    // One handle for both the worker and catch-up; behind a pointer so their code is
    // the same for the transport and a test's links.
    let transport: Arc<dyn Links> = Arc::new(parts.transport);
    let tasks = tasks::OwnedTasks::new(parts.cancel.clone());
    let syncer = Arc::new(sync::Syncer::new(
        Arc::clone(&parts.store),
        Arc::clone(&transport),
        parts.local.clone(),
        parts.addresses.clone(),
        parts.events.clone(),
        offsets.clone(),
        parts.clock.clone(),
        tasks.clone(),
    ));
    // Ends with the same token as the worker.
    let housekeeping = sync::spawn_housekeeping(
        Arc::clone(&syncer),
        parts.sync_requests,
        parts.cancel.clone(),
    );
    let worker = Arc::new(Worker {
        store: parts.store,
        transport,
        local: parts.local,
        addresses: parts.addresses,
        offsets,
        clock: parts.clock,
        events: parts.events,
        inbound: Arc::new(Semaphore::new(INBOUND_CONCURRENCY)),
        wake: Arc::clone(&parts.wake),
        group_in_flight: Mutex::new(HashMap::new()),
        group_acks: Mutex::new(GroupAcks::default()),
        recent_group_sends: Mutex::new(RecentGroupSends::default()),
        send_now: parts.send_now,
        awaiting_ack: Mutex::new(HashMap::new()),
        delivered: Mutex::new(RecentlyDelivered::default()),
        sync: syncer,
        tasks: tasks.clone(),
        quotas: quotas::PeerQuotas::default(),
    });
    tokio::spawn(async move {
        run(
            worker,
            parts.link_events,
            parts.peer_events,
            parts.wake,
            parts.cancel,
        )
        .await;
        let _ = housekeeping.await;
        tasks.join().await;
    })
}

/// Two loops, so neither waits for the other: the outbox pass awaits the store after
/// every send, and an ack arriving meanwhile must not sit behind it (stage stamps
/// showed ~75 µs of every DM's round trip spent there when this was one loop).
async fn run(
    worker: Arc<Worker>,
    link_events: mpsc::Receiver<LinkEvent>,
    peer_events: broadcast::Receiver<PeerEvent>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let events = tokio::spawn(receive(
        Arc::clone(&worker),
        link_events,
        peer_events,
        Arc::clone(&wake),
        cancel.clone(),
    ));
    send(worker, wake, cancel).await;
    let _ = events.await;
}

/// Link and peer events (frames are handled in tasks of their own); anything that
/// makes the outbox due wakes the send loop.
async fn receive(
    worker: Arc<Worker>,
    mut link_events: mpsc::Receiver<LinkEvent>,
    mut peer_events: broadcast::Receiver<PeerEvent>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Not `biased`: neither kind of event may starve the other.
        let due = tokio::select! {
            _ = cancel.cancelled() => break,
            event = link_events.recv() => match event {
                Some(event) => worker.on_link_event(event).await,
                None => break,
            },
            event = peer_events.recv() => match event {
                Ok(event) => worker.on_peer_event(event).await,
                // Missed presence changes: look at every peer's backlog again.
                Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = prune.tick() => {
                match worker.store.prune_inbox_dedupe(worker.clock.now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(n, "pruned old inbox dedupe entries"),
                    Err(e) => tracing::warn!("cannot prune the inbox dedupe table: {e}"),
                }
                false
            }
        };
        if due {
            wake.notify_one();
        }
    }
    // The send loop ends with the same token; make sure it is not left asleep.
    wake.notify_one();
}

/// The outbox pass: at once when woken (by the API, an ack, a link or a peer coming
/// up), otherwise when the earliest retry is due.
async fn send(worker: Arc<Worker>, wake: Arc<Notify>, cancel: CancellationToken) {
    let mut next_pass = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            // At once, not through the timer: tokio rounds every deadline up to its next
            // millisecond tick, which cost each message up to a millisecond or two
            // (docs/BENCHMARKS.md, "Direct messages").
            _ = wake.notified() => next_pass = worker.outbox_pass().await,
            _ = tokio::time::sleep_until(next_pass) => {
                next_pass = worker.outbox_pass().await;
            }
        }
    }
}

impl Worker {
    fn emit(&self, event: DeliveryEvent) {
        let _ = self.events.send(event);
    }

    /// Returns true when the outbox should be looked at now.
    async fn on_link_event(self: &Arc<Self>, event: LinkEvent) -> bool {
        match event {
            LinkEvent::Up { peer } => {
                match self
                    .store
                    .outbox_due_now(peer.clone(), self.clock.now_ms())
                    .await
                {
                    Ok(n) if n > 0 => tracing::debug!(%peer, n, "link up: backlog due now"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%peer, "cannot reschedule the outbox: {e}"),
                }
                self.group_backlog_due(&peer).await;
                self.catch_up_with(peer);
                true
            }
            LinkEvent::Down { peer, end } => {
                tracing::debug!(%peer, ?end, "link down");
                self.forget_in_flight(&peer);
                false
            }
            LinkEvent::KeyMismatch { peer, .. } => {
                self.emit(DeliveryEvent::KeyMismatch { peer });
                false
            }
            LinkEvent::Frame { peer, keys, frame } => {
                // Backpressure: with every permit taken, the link readers wait here.
                let Ok(permit) = Arc::clone(&self.inbound).acquire_owned().await else {
                    return false;
                };
                let worker = Arc::clone(self);
                // Boxed: the handling of a frame is a large future (it holds the
                // store's and the link's calls), and tokio copies a task's future
                // whole when it spawns it and again when it finishes: a few percent of
                // a group member's CPU under a flood. A box is one copy, into the heap.
                let handling = Box::pin(async move { worker.on_frame(peer, keys, frame).await });
                self.tasks.spawn(async move {
                    handling.await;
                    drop(permit);
                });
                false
            }
        }
    }

    /// Emits the status of each message, in order, from a task of its own: the reads
    /// they need stay off the outbox pass.
    fn emit_statuses(self: &Arc<Self>, messages: Vec<MessageId>) {
        if messages.is_empty() {
            return;
        }
        let worker = Arc::clone(self);
        self.tasks.spawn(async move {
            for message_id in messages {
                worker.emit_status(message_id).await;
            }
        });
    }

    /// Compares every group shared with `peer` (its own task: a session reads the
    /// store and may wait for a busy link).
    fn catch_up_with(&self, peer: NodeId) {
        let sync = Arc::clone(&self.sync);
        self.tasks
            .spawn(async move { sync.peer_reachable(&peer).await });
    }

    async fn on_peer_event(&self, event: PeerEvent) -> bool {
        self.note_clock_offset(&event);
        match event {
            PeerEvent::Online(peer) | PeerEvent::Updated { peer, .. } if peer.online => {
                let came_online = match peer.listen_addr {
                    Some(addr) => self.addresses.set(&peer.node_id, addr),
                    None => false,
                };
                if came_online {
                    let _ = self
                        .store
                        .outbox_due_now(peer.node_id.clone(), self.clock.now_ms())
                        .await;
                    self.group_backlog_due(&peer.node_id).await;
                    self.catch_up_with(peer.node_id.clone());
                }
                came_online
            }
            PeerEvent::Offline { peer, .. } => {
                self.addresses.remove(&peer.node_id);
                false
            }
            PeerEvent::Blocked(id) => {
                self.addresses.remove(&id);
                self.transport.close_peer(&id, "blocked");
                false
            }
            PeerEvent::Forgotten(id) => {
                self.addresses.remove(&id);
                false
            }
            _ => false,
        }
    }

    /// Keeps the peer's measured clock offset: envelope ages are judged on its clock,
    /// and its messages are shown on ours.
    fn note_clock_offset(&self, event: &PeerEvent) {
        match event {
            PeerEvent::Online(peer)
            | PeerEvent::Updated { peer, .. }
            | PeerEvent::Offline { peer, .. }
            | PeerEvent::Unblocked(peer) => {
                if let Some(offset) = peer.clock_offset_ms {
                    self.offsets.set(&peer.node_id, offset);
                }
            }
            PeerEvent::Forgotten(id) => self.offsets.remove(id),
            PeerEvent::Blocked(_) => {}
        }
    }

    /// Frames on the old link may be lost: what was in flight to `peer` is not.
    fn forget_in_flight(&self, peer: &NodeId) {
        self.group_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, member), _| member != peer);
    }

    /// `peer` is reachable (again): every group cursor that owes it is due now, and
    /// whatever was in flight is sent again.
    async fn group_backlog_due(&self, peer: &NodeId) {
        self.forget_in_flight(peer);
        if let Err(e) = self
            .store
            .group_deliveries_due_now(peer.clone(), self.clock.now_ms())
            .await
        {
            tracing::warn!(%peer, "cannot reschedule group deliveries: {e}");
        }
    }

    async fn on_frame(&self, peer: NodeId, keys: PeerKeys, frame: Frame) {
        match frame {
            Frame::Envelope(bytes) => self.on_envelope(peer, keys, &bytes).await,
            Frame::Ack(ack) => self.on_ack(peer, ack).await,
            Frame::Reject(reject) => self.on_reject(peer, reject).await,
            // File frames belong to the file engine (`crate::files`); the node routes
            // them there, and one that strays here is ignored.
            Frame::Ready | Frame::Close(_) | Frame::File(_) => {}
        }
    }

    async fn on_envelope(&self, peer: NodeId, keys: PeerKeys, bytes: &[u8]) {
        let envelope = match Envelope::open(bytes, &peer, &self.local) {
            Ok(e) => e,
            Err(e) => {
                // Without a trustworthy id there is nothing to answer; the sender's
                // retries end in its own give-up.
                tracing::warn!(%peer, "dropped an envelope: {e}");
                self.transport.count_envelope_refused(false);
                return;
            }
        };
        // Catch-up envelopes are ephemeral and idempotent: no dedupe table, own checks.
        if is_catch_up_kind(&envelope.kind) {
            self.sync.on_envelope(peer, envelope).await;
            return;
        }
        let effect = match envelope.verified_effect(&keys) {
            Ok(effect) => effect,
            Err(e) => {
                if matches!(e, EnvelopeError::Forged(_)) {
                    self.transport.count_envelope_forged(1);
                }
                tracing::warn!(%peer, envelope = %envelope.envelope_id, "rejected an envelope: {e}");
                self.reply(&peer, reject(&envelope.envelope_id, &e.to_string()))
                    .await;
                return;
            }
        };
        let arrival = Arrival {
            envelope_id: envelope.envelope_id,
            from: peer.clone(),
            received_at: self.clock.now_ms(),
            sender_clock_offset_ms: self.offsets.get(&peer),
        };
        let upserted = match &effect {
            InboundEffect::GroupUpsert(state) => Some(state.global_group_id),
            _ => None,
        };
        if let Some(group) = upserted {
            if !self.may_bring_group(&peer, group).await {
                // Unanswered: the sender's outbox resends it once the quota refills.
                self.transport.count_envelope_over_quota();
                tracing::debug!(%peer, %group, "a new group over the peer's quota: not stored yet");
                return;
            }
        }
        match self.store.apply_inbound(arrival, effect).await {
            Ok(outcome) => {
                self.reply(
                    &peer,
                    Frame::Ack(Ack {
                        envelope_id: envelope.envelope_id.to_string(),
                        outcome: outcome.wire_name().to_string(),
                    }),
                )
                .await;
                match (outcome, upserted) {
                    (InboundOutcome::Applied(Some(message)), _) => {
                        self.emit(DeliveryEvent::MessageReceived(message));
                    }
                    (
                        InboundOutcome::GroupUpdated {
                            announcement_changed,
                        },
                        Some(group),
                    ) => {
                        self.emit(DeliveryEvent::GroupUpdated(group));
                        if announcement_changed {
                            self.emit(DeliveryEvent::GroupAnnouncement(group));
                        }
                        // This node may have just joined, or members were added: the
                        // history is compared with every online member (a new member's
                        // snapshot). Equal histories cost one fingerprint each way.
                        let sync = Arc::clone(&self.sync);
                        self.tasks
                            .spawn(async move { sync.sync_group(group).await });
                    }
                    (InboundOutcome::GroupInvitation, Some(group)) => {
                        self.emit(DeliveryEvent::GroupInvitation(group));
                    }
                    (other, _) => {
                        if let Some(event) = receipts::applied(&peer, &other) {
                            self.emit(event);
                        }
                    }
                }
            }
            Err(e @ (PortError::Refused(_) | PortError::Forged(_))) => {
                if matches!(e, PortError::Forged(_)) {
                    self.transport.count_envelope_forged(1);
                }
                tracing::warn!(%peer, envelope = %envelope.envelope_id, "refused an envelope: {e}");
                if let Some(event) = receipts::refused(&peer, &envelope) {
                    self.emit(event);
                }
                self.reply(&peer, reject(&envelope.envelope_id, &e.to_string()))
                    .await;
            }
            Err(e) => {
                // Not stored: no ack, the sender resends.
                tracing::warn!(%peer, "cannot store an inbound envelope: {e}");
            }
        }
    }

    /// Whether `peer` may make this node store `group`: a group joined here always; any
    /// other (a new group, an invitation, a change to one held as an invitation) within
    /// the peer's quota.
    async fn may_bring_group(&self, peer: &NodeId, group: GlobalGroupId) -> bool {
        match self.store.group(group).await {
            Ok(Some(_)) => true,
            // A store error is the store's to report when the upsert is applied.
            Err(_) => true,
            Ok(None) => self
                .quotas
                .allow_new_group(peer, tokio::time::Instant::now().into_std()),
        }
    }

    /// Answers an envelope. Acks and rejects take the link's control lane, ahead of
    /// queued envelopes; a full lane is waited out (briefly): a dropped ack costs the
    /// sender a whole retransmission timeout.
    async fn reply(&self, peer: &NodeId, frame: Frame) {
        if matches!(frame, Frame::Reject(_)) {
            self.transport.count_envelope_refused(true);
        }
        if let Err(e) = self.transport.send_wait(peer, frame, REPLY_WAIT).await {
            // The sender resends and gets the ack then (a duplicate is acked too).
            tracing::debug!(%peer, "cannot answer: {e}");
        }
    }

    async fn on_ack(&self, peer: NodeId, ack: Ack) {
        let Ok(id) = ack.envelope_id.parse::<EnvelopeId>() else {
            return;
        };
        if self.sync.owns_ack(&id) {
            return;
        }
        let announced = self.announce_delivered(&id, &peer);
        if !announced {
            let message_id = MessageId::from_ulid(id.ulid());
            let group = self
                .recent_group_sends
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .group_of(&message_id);
            if let Some(group) = group {
                // A `group.send` of ours: its envelope id is its message id, never an
                // outbox envelope's.
                self.group_acked(peer, group, message_id).await;
                return;
            }
        }
        match self.store.outbox_acked(id, peer.clone()).await {
            Ok(Some(_)) if announced => {}
            Ok(Some(acked)) => self.emit_settled(&acked, MessageStatus::Delivered),
            // Not an outbox envelope: a `group.send`, whose envelope id is its message id.
            Ok(None) => {
                self.on_group_ack(peer, MessageId::from_ulid(id.ulid()))
                    .await
            }
            Err(e) => tracing::warn!("cannot record an ack: {e}"),
        }
    }

    /// `delivered` for a DM envelope sent in this run, if `peer` is its receiver: said
    /// before the store records the ack, which only this node's own bookkeeping needs.
    fn announce_delivered(&self, id: &EnvelopeId, peer: &NodeId) -> bool {
        let mut awaiting = self.awaiting_ack.lock().unwrap_or_else(|p| p.into_inner());
        match awaiting.get(id) {
            Some((receiver, message_id)) if receiver == peer => {
                let message_id = *message_id;
                awaiting.remove(id);
                drop(awaiting);
                let mut delivered = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
                delivered.insert(message_id);
                self.emit(DeliveryEvent::MessageStatus {
                    message_id,
                    conversation_id: ConversationId::dm(peer),
                    status: MessageStatus::Delivered,
                });
                true
            }
            _ => false,
        }
    }

    /// The local group message this node sent to `peer` under that envelope id, if any.
    async fn own_group_message(&self, message_id: MessageId) -> Option<(GlobalGroupId, Message)> {
        let message = self.store.message(message_id).await.ok()??;
        let ConversationTarget::Group(group) = *message.conversation_id.target() else {
            return None;
        };
        (message.sender == UserId::lan(&self.local)).then_some((group, message))
    }

    /// A member acked one of our group messages: its cursor moves over it, and over
    /// every earlier-arrived ack it now reaches.
    async fn on_group_ack(&self, peer: NodeId, message_id: MessageId) {
        let Some((group, _)) = self.own_group_message(message_id).await else {
            return;
        };
        self.group_acked(peer, group, message_id).await;
    }

    /// `peer` acked our message `message_id` of `group`.
    async fn group_acked(&self, peer: NodeId, group: GlobalGroupId, message_id: MessageId) {
        {
            let mut acks = self.lock_group_acks();
            let key = (group, peer);
            acks.pending
                .entry(key.clone())
                .or_default()
                .push(message_id);
            acks.dirty.insert(key);
            if acks.flushing {
                // The task flushing now takes this ack in its next round.
                return;
            }
            acks.flushing = true;
        }
        self.flush_group_acks().await;
    }

    fn lock_group_acks(&self) -> std::sync::MutexGuard<'_, GroupAcks> {
        self.group_acks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records every member's new acks in one store write, round after round, until no
    /// new ack came in meanwhile. A 64-member group answers each message with 63 acks:
    /// one write per ack, in a row, was what limited group throughput.
    async fn flush_group_acks(&self) {
        loop {
            let batch: Vec<(GlobalGroupId, NodeId, Vec<MessageId>)> = {
                let mut acks = self.lock_group_acks();
                if acks.dirty.is_empty() {
                    acks.flushing = false;
                    return;
                }
                let dirty = std::mem::take(&mut acks.dirty);
                dirty
                    .into_iter()
                    .filter_map(|key| {
                        let ids = acks.pending.get(&key)?.clone();
                        Some((key.0, key.1, ids))
                    })
                    .collect()
            };
            let consumed = match self
                .store
                .group_acks_recorded(batch.clone(), self.clock.now_ms())
                .await
            {
                Ok(consumed) => consumed,
                Err(e) => {
                    // Kept: the next ack of those members passes them again.
                    tracing::warn!("cannot record group acks: {e}");
                    self.lock_group_acks().flushing = false;
                    return;
                }
            };
            let mut moved: Vec<MessageId> = Vec::new();
            {
                let mut acks = self.lock_group_acks();
                for ((group, peer, _), consumed) in batch.into_iter().zip(consumed) {
                    let key = (group, peer);
                    if let Some(pending) = acks.pending.get_mut(&key) {
                        pending.retain(|id| !consumed.contains(id));
                        if pending.len() > MAX_EARLY_ACKS {
                            // Acks for messages already behind the cursor (duplicates)
                            // would pile up; the cursor's resends make up for any dropped.
                            pending.drain(..pending.len() - MAX_EARLY_ACKS);
                        }
                        if pending.is_empty() {
                            acks.pending.remove(&key);
                        }
                    }
                    moved.extend(consumed);
                }
            }
            if !moved.is_empty() {
                // Cursors moved: what comes after them is due now.
                self.wake.notify_one();
                moved.sort();
                moved.dedup();
                for id in moved {
                    self.emit_status(id).await;
                }
            }
        }
    }

    async fn on_reject(&self, peer: NodeId, reject: Reject) {
        let Ok(id) = reject.envelope_id.parse::<EnvelopeId>() else {
            return;
        };
        if self.sync.owns_reject(&peer, &id, &reject.reason) {
            return;
        }
        tracing::warn!(%peer, envelope = %id, reason = %reject.reason, "the peer rejected an envelope");
        match self
            .store
            .outbox_rejected(id, peer.clone(), reject.reason.clone())
            .await
        {
            Ok(Some(rejected)) => self.emit_settled(&rejected, MessageStatus::Failed),
            Ok(None) => {
                // A `group.send`: the member may not know the group (or this node as a
                // member) yet — its upsert can be behind. Group messages are never
                // given up: back off, the cursor resends it.
                if let Some((group, _)) = self
                    .own_group_message(MessageId::from_ulid(id.ulid()))
                    .await
                {
                    self.group_in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&(group, peer.clone()));
                    let attempt = SendAttempt::Failed(format!("rejected: {}", reject.reason));
                    if let Err(e) = self
                        .store
                        .record_group_attempt(group, peer, attempt, self.clock.now_ms())
                        .await
                    {
                        tracing::debug!("cannot record a group rejection: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot record a rejection: {e}"),
        }
    }

    /// The status an ack or a rejection just committed, without reading it back: an
    /// outbox row that carries a message is a DM (group messages travel by the members'
    /// delivery cursors), so its conversation is the DM with the envelope's peer.
    fn emit_settled(&self, settled: &Settled, status: MessageStatus) {
        if let Some(message_id) = settled.message_id {
            let mut delivered = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
            if status == MessageStatus::Delivered {
                delivered.insert(message_id);
            }
            self.emit(DeliveryEvent::MessageStatus {
                message_id,
                conversation_id: ConversationId::dm(&settled.peer_id),
                status,
            });
        }
    }

    async fn emit_status(&self, message_id: MessageId) {
        if let Ok(Some(message)) = self.store.message(message_id).await {
            self.emit(DeliveryEvent::MessageStatus {
                message_id,
                conversation_id: message.conversation_id,
                status: message.status,
            });
        }
    }

    /// Sends what is due; returns when to look again.
    async fn outbox_pass(self: &Arc<Self>) -> tokio::time::Instant {
        let start = tokio::time::Instant::now();
        let now = self.clock.now_ms();
        // Just stored by the API: out first, and recorded before the outbox is read, so
        // the read below no longer finds them due.
        let fresh = self.send_now.take();
        let mut busy = !fresh.is_empty() && self.send_and_record(&fresh, now).await;
        let due = match self.store.due_outbox(now, OUTBOX_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!("cannot read the outbox: {e}");
                return start + Duration::from_secs(1);
            }
        };
        let full = due.len() as u32 >= OUTBOX_BATCH;
        busy |= self.send_and_record(&due, now).await;
        let group_full = self.group_pass(now).await;
        if busy {
            // A link's queue is full: look again as soon as it may have drained.
            return start + BUSY_RETRY;
        }
        if full || group_full {
            return start;
        }
        let outbox_next = self.store.next_outbox_due_at().await.ok().flatten();
        let group_next = self.store.next_group_delivery_due_at().await.ok().flatten();
        let next = match outbox_next.into_iter().chain(group_next).min() {
            Some(at) => Duration::from_millis(u64::try_from(at - self.clock.now_ms()).unwrap_or(0)),
            None => MAX_IDLE,
        };
        start + next.min(MAX_IDLE)
    }

    /// Hands each envelope to its link, then records every attempt in one write (the
    /// store schedules the retries) and emits the statuses that changed.
    /// Returns whether some link was too busy to take its envelope.
    async fn send_and_record(self: &Arc<Self>, entries: &[QueuedEnvelope], now: UnixMs) -> bool {
        let mut attempts = Vec::with_capacity(entries.len());
        let mut busy_peers: Vec<&NodeId> = Vec::new();
        for entry in entries {
            if busy_peers.contains(&&entry.peer_id) {
                // Its link is full: later envelopes for it wait their turn (not yet encoded).
                continue;
            }
            let mut busy = false;
            let attempt = self.try_send(entry, &mut busy).await;
            if busy {
                busy_peers.push(&entry.peer_id);
            }
            let Some(attempt) = attempt else {
                continue;
            };
            if let (SendAttempt::Sent, Some(message_id)) = (&attempt, entry.message_id) {
                self.await_ack(entry, message_id);
                if entry.retry_count == 0 {
                    // Said now, before its ack can come back: `delivered` (announced
                    // from the ack, see `announce_delivered`) must not overtake it.
                    // Checked and said under the lock `delivered` is recorded under.
                    let delivered = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
                    if !delivered.set.contains(&message_id) {
                        self.emit(DeliveryEvent::MessageStatus {
                            message_id,
                            conversation_id: ConversationId::dm(&entry.peer_id),
                            status: MessageStatus::Sent,
                        });
                    }
                }
            }
            attempts.push((entry.envelope_id, attempt));
        }
        match self.store.record_outbox_attempts(attempts, now).await {
            Ok(gave_up) => self.emit_statuses(gave_up),
            Err(e) => tracing::warn!("cannot record send attempts: {e}"),
        }
        !busy_peers.is_empty()
    }

    /// Remembers a DM envelope handed to its link, for its ack.
    fn await_ack(&self, entry: &QueuedEnvelope, message_id: MessageId) {
        let mut awaiting = self.awaiting_ack.lock().unwrap_or_else(|p| p.into_inner());
        if awaiting.len() >= MAX_AWAITING_ACK {
            awaiting.clear();
        }
        awaiting.insert(entry.envelope_id, (entry.peer_id.clone(), message_id));
    }

    /// Sends every member what its group cursor owes it (after what is already in
    /// flight), one `group.send` per message, and records one attempt per member.
    /// Returns true when some member had a full batch (look again at once).
    async fn group_pass(self: &Arc<Self>, now: UnixMs) -> bool {
        let due = match self.store.due_group_deliveries(now, GROUP_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!("cannot read group deliveries: {e}");
                return false;
            }
        };
        let mut full = false;
        // A message sent to many members for the first time is announced `sent` once.
        let mut first_sent = std::collections::BTreeSet::new();
        for delivery in due {
            full |= delivery.messages.len() as u32 >= GROUP_BATCH;
            let (attempt, first_sends) = self.send_group_delivery(&delivery);
            let group = delivery.global_group_id;
            let peer = delivery.peer_id.clone();
            // Recorded before the next member's send, not all at once after the pass:
            // an attempt recorded after the member's ack would push its cursor's next
            // pass out by a retry delay (measured: p90 2.2 s in a 64-member group).
            if let Err(e) = self
                .store
                .record_group_attempt(group, peer.clone(), attempt, now)
                .await
            {
                tracing::warn!(%peer, "cannot record a group delivery attempt: {e}");
            }
            first_sent.extend(first_sends);
        }
        self.emit_statuses(first_sent.into_iter().collect());
        full
    }

    /// Hands one member's owed messages to its link. Returns the attempt and the
    /// messages that went out for the first time (their status is now `sent`).
    fn send_group_delivery(&self, delivery: &GroupDelivery) -> (SendAttempt, Vec<MessageId>) {
        let key = (delivery.global_group_id, delivery.peer_id.clone());
        let peer = &delivery.peer_id;
        // A retry (the timer fired without every ack) resends from the cursor.
        let in_flight = if delivery.retry_count == 0 {
            self.group_in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .copied()
        } else {
            None
        };
        let mut first_sends = Vec::new();
        let mut last_sent = None;
        let mut outcome = SendAttempt::Sent;
        for message in &delivery.messages {
            if in_flight.is_some_and(|k| message.order_key() <= k) {
                continue;
            }
            let encoded = crate::envelope::Envelope::group_send(
                &self.local,
                peer,
                &delivery.global_group_id,
                message,
            )
            .and_then(|e| e.encode());
            let bytes = match encoded {
                Ok(bytes) => bytes,
                Err(e) => {
                    // Cannot happen for a message the store accepted (≤ 64 KiB text);
                    // the cursor retries and the log says why.
                    tracing::error!(message = %message.message_id, "cannot encode a group message: {e}");
                    outcome = SendAttempt::Failed(format!("cannot encode: {e}"));
                    break;
                }
            };
            match self.transport.send(peer, Frame::Envelope(bytes)) {
                Ok(()) => {
                    last_sent = Some(message.order_key());
                    self.recent_group_sends
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(message.message_id, delivery.global_group_id);
                    if message.status == MessageStatus::Pending {
                        first_sends.push(message.message_id);
                    }
                }
                Err(SendError::NoLink) => {
                    outcome = match self.addresses.get(peer) {
                        Some(addr) => {
                            self.transport.connect(peer, addr);
                            SendAttempt::Failed("no link yet (dialling)".into())
                        }
                        None => SendAttempt::Failed("peer offline".into()),
                    };
                    break;
                }
                Err(SendError::Busy) => {
                    outcome = SendAttempt::Failed("link busy".into());
                    break;
                }
            }
        }
        if let Some(last) = last_sent {
            self.group_in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, last);
        }
        (outcome, first_sends)
    }

    /// Hands one envelope to its link (dialling if needed). `None` when it cannot be
    /// encoded at all (then it was failed here and needs no attempt recorded), or when
    /// the link's queue is full (`busy` set): backpressure, not a failure — the envelope
    /// stays due and the pass comes back in `BUSY_RETRY`, not after a retry backoff.
    async fn try_send(&self, entry: &QueuedEnvelope, busy: &mut bool) -> Option<SendAttempt> {
        let peer = &entry.peer_id;
        let encoded = Envelope::from_outbox(entry, &self.local).and_then(|e| e.encode());
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(e) => {
                // A row this build cannot turn into an envelope will never go out.
                tracing::error!(envelope = %entry.envelope_id, "cannot encode an outbox envelope: {e}");
                if let Ok(Some(failed)) = self
                    .store
                    .outbox_rejected(
                        entry.envelope_id,
                        peer.clone(),
                        format!("cannot encode: {e}"),
                    )
                    .await
                {
                    if let Some(m) = failed.message_id {
                        self.emit_status(m).await;
                    }
                }
                return None;
            }
        };
        Some(match self.transport.send(peer, Frame::Envelope(bytes)) {
            Ok(()) => SendAttempt::Sent,
            Err(SendError::NoLink) => match self.addresses.get(peer) {
                Some(addr) => {
                    self.transport.connect(peer, addr);
                    SendAttempt::Failed("no link yet (dialling)".into())
                }
                None => SendAttempt::Failed("peer offline".into()),
            },
            Err(SendError::Busy) => {
                *busy = true;
                return None;
            }
        })
    }
}

fn reject(id: &EnvelopeId, reason: &str) -> Frame {
    Frame::Reject(Reject {
        envelope_id: id.to_string(),
        reason: reason.to_string(),
    })
}
