//! Group catch-up (anti-entropy) between members: sessions of `group.sync` range
//! summaries and `group.relay` batches (docs/PROTOCOL.md, "Group catch-up
//! (anti-entropy)"). The reconciliation itself is `reconcile`; this module reads the
//! store, sends on links and paces sessions.
//!
//! Both kinds are ephemeral: sent straight on the link with fresh envelope ids, never
//! kept in the outbox. A lost one costs nothing lasting — the next trigger (link up,
//! peer seen again, a membership change, the periodic resync) starts a new session.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::NodeId;
use chat_core::{EnvelopeId, GlobalGroupId, KeyRange, MessageId, OrderKey};
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::reconcile;
use super::tasks::OwnedTasks;
use super::{AddressBook, Clock, ClockOffsets, DeliveryEvent};
use crate::envelope::{
    ephemeral, Envelope, EnvelopeError, RangeSummary, RelayMessage, RelayPayload, RelayedPayload,
    SyncMessage, SyncRange, KIND_GROUP_RELAY, KIND_GROUP_SYNC, MAX_RELAY_MESSAGES, MAX_SYNC_RANGES,
    MAX_SYNC_ROUNDS,
};
use crate::links::Links;
use crate::ports::{MeshStore, PortError};
use crate::rate_limit::KeyedRateLimit;
use crate::transport::{Ack, Frame, Reject, SendError};

/// Bytes of payload JSON per catch-up envelope: well under the 200 KiB envelope limit
/// (and the 256 KiB frame), so one relay batch is a few link chunks, and the link
/// queue (256 frames) holds many batches.
const ENVELOPE_BUDGET: usize = 96 * 1024;
/// Ids per wanted-list envelope (~29 bytes each in JSON: ~60 KiB).
const WANT_CHUNK: usize = 2048;
/// Ids read from the store per relay query.
const RELAY_READ: usize = 512;
/// What one sync request may make this node read and send: 4096 wanted ids of up to
/// 64 KiB each would be 256 MiB for the price of one small envelope. Past this the
/// answer stops; the asker's next round (or next catch-up) asks for the rest.
pub const MAX_RELAY_BYTES_PER_REQUEST: usize = 4 * 1024 * 1024;
/// What all of one peer's sync requests together may make this node relay: a burst of
/// 16 MiB, then 4 MiB/s. A member catching up on months of a busy group gets it within
/// seconds; a member asking again and again cannot keep this node's disk and link busy.
const RELAY_BYTES_BURST: f64 = 16.0 * 1024.0 * 1024.0;
const RELAY_BYTES_PER_SEC: f64 = 4.0 * 1024.0 * 1024.0;
/// A session (group, peer) with no sync message either way for this long is over; a
/// trigger during a session is remembered and run after it, not alongside it.
const SESSION_QUIET: Duration = Duration::from_secs(2);
/// How often quiet sessions are looked at.
const TICK: Duration = Duration::from_secs(1);
/// Every group is compared with its online members this often, besides the triggers:
/// repairs what a bounded or interrupted session left. Equal histories cost one
/// fingerprint each way.
const RESYNC_EVERY: Duration = Duration::from_secs(10 * 60);
/// How long a catch-up envelope waits for room on a full link before the rest of the
/// session is dropped (the next session resumes).
const BUSY_WAIT: Duration = Duration::from_secs(5);
/// Ids of catch-up envelopes awaiting their ack, remembered so their acks are
/// recognised without a store lookup; forgotten after this long (lost with a link).
const EPHEMERAL_TTL: Duration = Duration::from_secs(60);
const MAX_EPHEMERAL: usize = 8192;

/// "Sync this group with its online members now": many requests for one group before
/// the worker gets to it count as one. Outlives mesh restarts (the handle keeps it).
#[derive(Debug, Clone, Default)]
pub struct SyncRequests {
    groups: Arc<Mutex<HashSet<GlobalGroupId>>>,
    notify: Arc<Notify>,
}

impl SyncRequests {
    pub fn request(&self, group: GlobalGroupId) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group);
        self.notify.notify_one();
    }

    fn take(&self) -> Vec<GlobalGroupId> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect()
    }
}

struct Session {
    last: Instant,
    /// A trigger came while the session ran: start another once it is quiet.
    again: bool,
}

pub(crate) struct Syncer {
    store: Arc<dyn MeshStore>,
    transport: Arc<dyn Links>,
    local: NodeId,
    addresses: AddressBook,
    events: broadcast::Sender<DeliveryEvent>,
    offsets: ClockOffsets,
    clock: Clock,
    ephemeral: Mutex<HashMap<EnvelopeId, Instant>>,
    sessions: Mutex<HashMap<(GlobalGroupId, NodeId), Session>>,
    /// The worker's owned tasks: sessions started by the housekeeping run there too.
    tasks: OwnedTasks,
    /// Bytes each peer may still have relayed to it (see `RELAY_BYTES_PER_SEC`).
    relay_budget: Mutex<KeyedRateLimit<NodeId>>,
}

/// Why a catch-up envelope was not taken.
enum Refusal {
    /// Answer with a `Reject` and this reason.
    Reject(String),
    /// Storage failed: no answer (nothing depends on it; the next session repeats it).
    Silent(String),
}

impl Syncer {
    // Each argument is one of the worker's shared handles, cloned once here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Arc<dyn MeshStore>,
        transport: Arc<dyn Links>,
        local: NodeId,
        addresses: AddressBook,
        events: broadcast::Sender<DeliveryEvent>,
        offsets: ClockOffsets,
        clock: Clock,
        tasks: OwnedTasks,
    ) -> Syncer {
        Syncer {
            store,
            transport,
            local,
            addresses,
            events,
            offsets,
            clock,
            ephemeral: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            tasks,
            relay_budget: Mutex::new(KeyedRateLimit::new(
                RELAY_BYTES_BURST,
                RELAY_BYTES_PER_SEC,
                super::quotas::MAX_TRACKED_PEERS,
            )),
        }
    }

    /// `peer` is reachable (link up, or seen online): compare every group both are in.
    pub(crate) async fn peer_reachable(&self, peer: &NodeId) {
        let groups = match self.store.groups().await {
            Ok(groups) => groups,
            Err(e) => {
                tracing::warn!("cannot list groups for catch-up: {e}");
                return;
            }
        };
        for state in groups {
            if state.is_member(&self.local) && state.is_member(peer) {
                self.start(state.global_group_id, peer).await;
            }
        }
    }

    /// Compares `group` with every member that is online now.
    pub(crate) async fn sync_group(&self, group: GlobalGroupId) {
        let state = match self.store.group(group).await {
            Ok(Some(state)) => state,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%group, "cannot read a group for catch-up: {e}");
                return;
            }
        };
        if !state.is_member(&self.local) {
            return;
        }
        for member in &state.member_ids() {
            let online = self.addresses.get(member).is_some() || self.transport.is_linked(member);
            if *member != self.local && online {
                self.start(group, member).await;
            }
        }
    }

    /// Every group this node is in, with its online members.
    async fn sync_all(&self) {
        match self.store.groups().await {
            Ok(groups) => {
                for state in groups {
                    self.sync_group(state.global_group_id).await;
                }
            }
            Err(e) => tracing::warn!("cannot list groups for catch-up: {e}"),
        }
    }

    /// Opens a session: one fingerprint over all of this node's messages of `group`.
    async fn start(&self, group: GlobalGroupId, peer: &NodeId) {
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(session) = sessions.get_mut(&(group, peer.clone())) {
                if session.last.elapsed() < SESSION_QUIET {
                    session.again = true;
                    return;
                }
            }
        }
        let fingerprint = match self.store.group_fingerprint(group, KeyRange::all()).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%group, "cannot summarise a group: {e}");
                return;
            }
        };
        let opening = SyncRange {
            range: KeyRange::all(),
            summary: RangeSummary::Fingerprint(fingerprint),
        };
        if self
            .send_sync(peer, group, 0, vec![opening], Vec::new())
            .await
        {
            tracing::debug!(%peer, %group, count = fingerprint.count, "group catch-up opened");
        }
    }

    fn touch(&self, group: GlobalGroupId, peer: &NodeId) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .entry((group, peer.clone()))
            .and_modify(|s| s.last = Instant::now())
            .or_insert(Session {
                last: Instant::now(),
                again: false,
            });
    }

    /// Ends quiet sessions; starts again those that were asked for meanwhile.
    async fn tick(&self) {
        let rerun: Vec<(GlobalGroupId, NodeId)> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let quiet: Vec<(GlobalGroupId, NodeId)> = sessions
                .iter()
                .filter(|(_, s)| s.last.elapsed() >= SESSION_QUIET)
                .map(|(k, _)| k.clone())
                .collect();
            let mut rerun = Vec::new();
            for key in quiet {
                if sessions.remove(&key).is_some_and(|s| s.again) {
                    rerun.push(key);
                }
            }
            rerun
        };
        for (group, peer) in rerun {
            self.start(group, &peer).await;
        }
        let mut ids = self.ephemeral.lock().unwrap_or_else(|p| p.into_inner());
        ids.retain(|_, sent| sent.elapsed() < EPHEMERAL_TTL);
    }

    /// True if `id` was one of our catch-up envelopes (its ack needs nothing else).
    pub(crate) fn owns_ack(&self, id: &EnvelopeId) -> bool {
        self.ephemeral
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .is_some()
    }

    /// True if `id` was one of our catch-up envelopes; the refusal is only logged (the
    /// peer may not know yet that we are a member; a later session tries again).
    pub(crate) fn owns_reject(&self, peer: &NodeId, id: &EnvelopeId, reason: &str) -> bool {
        let ours = self.owns_ack(id);
        if ours {
            tracing::debug!(%peer, envelope = %id, %reason, "the peer refused a group catch-up envelope");
        }
        ours
    }

    /// A `group.sync` or `group.relay` from `peer`: checked, acted on, then acked — or
    /// rejected with the reason.
    pub(crate) async fn on_envelope(&self, peer: NodeId, envelope: Envelope) {
        let result = if envelope.kind == KIND_GROUP_SYNC {
            match envelope.group_sync() {
                Ok(sync) => self.on_sync(&peer, &envelope.envelope_id, sync).await,
                Err(e) => Err(Refusal::Reject(e.to_string())),
            }
        } else {
            match envelope.group_relay() {
                Ok(relay) => self.on_relay(&peer, relay).await,
                Err(e) => Err(Refusal::Reject(e.to_string())),
            }
        };
        match result {
            // The sync answer was already acked before its (longer) work.
            Ok(()) if envelope.kind == KIND_GROUP_SYNC => {}
            Ok(()) => self.ack(&peer, &envelope.envelope_id),
            Err(Refusal::Reject(reason)) => {
                tracing::debug!(%peer, envelope = %envelope.envelope_id, kind = %envelope.kind, %reason, "refused a group catch-up envelope");
                self.reply(
                    &peer,
                    Frame::Reject(Reject {
                        envelope_id: envelope.envelope_id.to_string(),
                        reason,
                    }),
                );
            }
            Err(Refusal::Silent(reason)) => {
                tracing::warn!(%peer, kind = %envelope.kind, "cannot handle a group catch-up envelope: {reason}");
            }
        }
    }

    fn ack(&self, peer: &NodeId, id: &EnvelopeId) {
        self.reply(
            peer,
            Frame::Ack(Ack {
                envelope_id: id.to_string(),
                outcome: "applied".into(),
            }),
        );
    }

    fn reply(&self, peer: &NodeId, frame: Frame) {
        if matches!(frame, Frame::Reject(_)) {
            self.transport.count_envelope_refused(true);
        }
        if let Err(e) = self.transport.send(peer, frame) {
            tracing::debug!(%peer, "cannot answer a catch-up envelope: {e}");
        }
    }

    /// Both this node and `peer` must be members of `group` in this node's view.
    async fn check_members(&self, group: &GlobalGroupId, peer: &NodeId) -> Result<(), Refusal> {
        let state = match self.store.group(*group).await {
            Ok(Some(state)) => state,
            Ok(None) => return Err(Refusal::Reject(format!("group {group} does not exist"))),
            Err(e) => return Err(Refusal::Silent(e.to_string())),
        };
        if !state.is_member(&self.local) {
            return Err(Refusal::Reject("this node is not a member".into()));
        }
        if !state.is_member(peer) {
            return Err(Refusal::Reject("the sender is not a member".into()));
        }
        Ok(())
    }

    async fn on_sync(
        &self,
        peer: &NodeId,
        id: &EnvelopeId,
        sync: SyncMessage,
    ) -> Result<(), Refusal> {
        let group = sync.group;
        self.check_members(&group, peer).await?;
        self.ack(peer, id);
        self.touch(group, peer);
        let own = if sync.ranges.is_empty() {
            Vec::new()
        } else {
            let span = span(&sync.ranges);
            self.store
                .group_keys(group, span)
                .await
                .map_err(|e| Refusal::Silent(e.to_string()))?
        };
        let may_continue = sync.round < MAX_SYNC_ROUNDS;
        let answer = reconcile::answer(&own, &sync.ranges, may_continue);
        let mut push = answer.push;
        push.extend(sync.want);
        if !push.is_empty() {
            self.relay(peer, group, push).await;
        }
        if !answer.ranges.is_empty() || !answer.want.is_empty() {
            self.send_sync(peer, group, sync.round + 1, answer.ranges, answer.want)
                .await;
        }
        Ok(())
    }

    async fn on_relay(&self, peer: &NodeId, mut relay: RelayMessage) -> Result<(), Refusal> {
        let group = relay.group;
        self.touch(group, peer);
        // Each message must carry its author's signature, under keys that derive the
        // author's id: a relay can forward messages, not write or change them. Forged
        // ones are dropped and counted; the rest are stored.
        let before = relay.messages.len();
        relay.messages.retain(|m| {
            m.signature
                .is_some_and(|s| s.verifies(&m.author, &m.statement(&group)))
        });
        let forged = before - relay.messages.len();
        if forged > 0 {
            tracing::warn!(%peer, %group, forged, "relayed messages their authors did not sign");
            self.transport.count_envelope_forged(forged as u64);
        }
        if relay.messages.is_empty() {
            return Err(Refusal::Reject(
                "forged: relayed messages their authors did not sign".into(),
            ));
        }
        // Each author's measured offset, to show its messages on this node's clock.
        let offsets = self.offsets.of(relay.messages.iter().map(|m| &m.author));
        let outcome = self
            .store
            .apply_relayed(
                peer.clone(),
                group,
                relay.messages,
                offsets,
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                PortError::Refused(reason) | PortError::Forged(reason) => Refusal::Reject(reason),
                PortError::Unavailable(reason) => Refusal::Silent(reason),
            })?;
        tracing::debug!(%peer, %group, stored = outcome.stored.len(), skipped = outcome.skipped, "relayed group messages");
        if outcome.forged > 0 {
            self.transport.count_envelope_forged(outcome.forged as u64);
        }
        for message in outcome.stored {
            let _ = self.events.send(DeliveryEvent::MessageReceived(message));
        }
        Ok(())
    }

    /// Relays the messages of `group` among `ids` that this node holds, in batches.
    async fn relay(&self, peer: &NodeId, group: GlobalGroupId, mut ids: Vec<MessageId>) {
        let mut seen = HashSet::with_capacity(ids.len());
        ids.retain(|id| seen.insert(*id));
        let mut batch: Vec<RelayedPayload> = Vec::new();
        let mut bytes = 0;
        let mut served = 0;
        'read: for chunk in ids.chunks(RELAY_READ) {
            let messages = match self
                .store
                .group_messages_for_relay(group, chunk.to_vec())
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%group, "cannot read messages to relay: {e}");
                    return;
                }
            };
            for message in &messages {
                let item = RelayedPayload::from_message(message);
                let size = serde_json::to_vec(&item).map(|v| v.len() + 1).unwrap_or(0);
                served += size;
                if served > MAX_RELAY_BYTES_PER_REQUEST {
                    tracing::debug!(%peer, %group, "sync answer cut at its byte budget");
                    break 'read;
                }
                if !self.relay_allowed(peer, size) {
                    self.transport.count_envelope_over_quota();
                    tracing::debug!(%peer, %group, "sync answer cut: the peer's relay quota is spent");
                    break 'read;
                }
                if !batch.is_empty()
                    && (bytes + size > ENVELOPE_BUDGET || batch.len() >= MAX_RELAY_MESSAGES)
                {
                    if !self
                        .send_relay(peer, group, std::mem::take(&mut batch))
                        .await
                    {
                        return;
                    }
                    bytes = 0;
                }
                bytes += size;
                batch.push(item);
            }
        }
        if !batch.is_empty() {
            self.send_relay(peer, group, batch).await;
        }
    }

    fn relay_allowed(&self, peer: &NodeId, bytes: usize) -> bool {
        self.relay_budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(peer, bytes as f64, Instant::now().into_std())
    }

    async fn send_relay(
        &self,
        peer: &NodeId,
        group: GlobalGroupId,
        messages: Vec<RelayedPayload>,
    ) -> bool {
        let payload = RelayPayload {
            global_group_id: group.to_string(),
            messages,
        };
        match ephemeral(
            &self.local,
            peer,
            KIND_GROUP_RELAY,
            &payload,
            self.clock.now_ms(),
        ) {
            Ok(envelope) => self.send(peer, &envelope).await,
            Err(e) => {
                tracing::error!("cannot encode a group relay: {e}");
                false
            }
        }
    }

    /// Sends `ranges` and `want` as one or more `group.sync` of `round`, each within
    /// the byte budget and the receiver's limits. False if the link was not there.
    async fn send_sync(
        &self,
        peer: &NodeId,
        group: GlobalGroupId,
        round: u32,
        ranges: Vec<SyncRange>,
        want: Vec<MessageId>,
    ) -> bool {
        let mut messages = Vec::new();
        let mut current: Vec<SyncRange> = Vec::new();
        let mut bytes = 0;
        for range in ranges {
            let size = range_size(&range);
            if !current.is_empty()
                && (bytes + size > ENVELOPE_BUDGET || current.len() >= MAX_SYNC_RANGES)
            {
                messages.push((std::mem::take(&mut current), Vec::new()));
                bytes = 0;
            }
            bytes += size;
            current.push(range);
        }
        if !current.is_empty() {
            messages.push((current, Vec::new()));
        }
        for chunk in want.chunks(WANT_CHUNK) {
            messages.push((Vec::new(), chunk.to_vec()));
        }
        for (ranges, want) in messages {
            let sync = SyncMessage {
                group,
                round,
                ranges,
                want,
            };
            let sent = match ephemeral(
                &self.local,
                peer,
                KIND_GROUP_SYNC,
                &sync.to_payload(),
                self.clock.now_ms(),
            ) {
                Ok(envelope) => self.send(peer, &envelope).await,
                Err(e) => {
                    tracing::error!("cannot encode a group sync: {e}");
                    false
                }
            };
            if !sent {
                return false;
            }
            self.touch(group, peer);
        }
        true
    }

    /// Encodes and sends one catch-up envelope, waiting while the link queue is full.
    /// Without a link it dials (the link coming up starts a new session).
    async fn send(&self, peer: &NodeId, envelope: &Envelope) -> bool {
        let bytes = match envelope.encode() {
            Ok(b) => b,
            Err(EnvelopeError::TooLarge) => {
                // One message near the 64 KiB limit with much JSON escaping: it cannot
                // be relayed; its author's own cursor still delivers it.
                tracing::warn!(%peer, kind = %envelope.kind, "a catch-up envelope is too large; skipped");
                return true;
            }
            Err(e) => {
                tracing::error!("cannot encode a catch-up envelope: {e}");
                return false;
            }
        };
        self.remember(envelope.envelope_id);
        // Waits for room on the link (back-pressure), no sleep-and-retry.
        match self
            .transport
            .send_wait(peer, Frame::Envelope(bytes), BUSY_WAIT)
            .await
        {
            Ok(()) => return true,
            Err(SendError::Busy) => {
                tracing::debug!(%peer, "link stayed busy: group catch-up paused until the next session");
            }
            Err(SendError::NoLink) => {
                if let Some(addr) = self.addresses.get(peer) {
                    self.transport.connect(peer, addr);
                }
            }
        }
        self.owns_ack(&envelope.envelope_id);
        false
    }

    fn remember(&self, id: EnvelopeId) {
        let mut ids = self.ephemeral.lock().unwrap_or_else(|p| p.into_inner());
        if ids.len() >= MAX_EPHEMERAL {
            ids.retain(|_, sent| sent.elapsed() < EPHEMERAL_TTL);
            if ids.len() >= MAX_EPHEMERAL {
                // Acks that never came (a flood of sessions on dead links): forget them;
                // a late ack then takes the slower outbox lookup, which finds nothing.
                ids.clear();
            }
        }
        ids.insert(id, Instant::now());
    }
}

/// The smallest range holding every range of a message (they ascend).
fn span(ranges: &[SyncRange]) -> KeyRange {
    let lo = ranges
        .iter()
        .map(|r| r.range.lo)
        .min()
        .unwrap_or_else(chat_core::min_key);
    let hi: Option<OrderKey> = if ranges.iter().any(|r| r.range.hi.is_none()) {
        None
    } else {
        ranges.iter().filter_map(|r| r.range.hi).max()
    };
    KeyRange { lo, hi }
}

/// About the JSON size of one range.
fn range_size(range: &SyncRange) -> usize {
    match &range.summary {
        RangeSummary::Fingerprint(_) => 160,
        RangeSummary::Ids(ids) => 140 + 29 * ids.len(),
    }
}

/// Runs requests ("sync this group now"), ends quiet sessions and resyncs every group
/// now and then, until `cancel`.
pub(crate) fn spawn_housekeeping(
    syncer: Arc<Syncer>,
    requests: SyncRequests,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval_at(Instant::now() + RESYNC_EVERY, RESYNC_EVERY);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = requests.notify.notified() => {
                    for group in requests.take() {
                        let session = Arc::clone(&syncer);
                        syncer.tasks.spawn(async move { session.sync_group(group).await });
                    }
                }
                _ = tick.tick() => syncer.tick().await,
                _ = resync.tick() => {
                    let session = Arc::clone(&syncer);
                    syncer.tasks.spawn(async move { session.sync_all().await });
                }
            }
        }
    })
}
