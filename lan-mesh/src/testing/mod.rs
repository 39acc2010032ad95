//! Test support for delivery and group catch-up: in-memory stand-ins for their two
//! edges, so their unit tests run deterministically on tokio's paused clock, without
//! sockets or SQLite (integration tests — `mesh-store/tests`, `tests/` — keep both).
//!
//! - [`MemoryStore`]: the persistence ports ([`crate::ports`]) in memory, honouring
//!   their contracts (dedupe, cursors, retry schedule, refusals);
//! - [`MemoryNet`] / [`MemoryLinks`]: the links ([`crate::links::Links`]) between
//!   nodes in one process, logging every frame, optionally losing some;
//! - [`TestClock`]: the injected wall clock ([`crate::delivery::Clock`]) following
//!   tokio's (paused) clock, which a test can also jump like a PC's clock;
//! - [`Engine`]: one node's delivery task wired to all three, with the handles the
//!   node would hold (wake-up, send-now, discovery's peer events) and its events;
//! - [`ScriptedPeer`]: a node on the net played by the test itself, frame by frame;
//! - [`MemoryBlobs`]: the file engine's blob port in memory.
//!
//! Compiled for this crate's tests and, with the `testing` feature, for other crates'
//! tests (`lan-mesh = { workspace = true, features = ["testing"] }` under
//! `[dev-dependencies]`); never in the product.
//!
//! Waiting: tests run with `#[tokio::test(start_paused = true)]`; [`until`] polls a
//! condition on virtual time, which advances only when every task is idle, so the
//! outcome is the same on every run and a test takes milliseconds of real time.

mod blobs;
mod net;
mod store;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::NodeId;
use chat_core::{GlobalGroupId, GroupState, Message, MessageId, MessageStatus, UnixMs};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use blobs::{MemoryBlobs, MemoryManifest};
pub use net::{MemoryLinks, MemoryNet, Refusals, SentFrame, Verdict};
pub use store::{AttemptRecord, AttemptTarget, Cursor, MemoryStore, OutboxRow, OutboxStatus};

use crate::delivery::{
    self, AddressBook, Clock, ClockOffsets, DeliveryEvent, DeliveryParts, SendNow, SyncRequests,
};
use crate::discovery::{Peer, PeerEvent};
use crate::envelope::{is_catch_up_kind, Envelope};
use crate::links::Links;
use crate::transport::{Ack, Frame, LinkEvent, NodeKeys, Reject};

/// 2023-11-14T22:13:20Z: a plausible wall clock for tests to start at.
pub const START_MS: UnixMs = 1_700_000_000_000;

/// A node id for tests: the id [`node_keys`]`(n)` derive, as every node's id is
/// (docs/PROTOCOL.md, "Signatures"). The same for the same `n` on every run, so orders
/// that depend on ids (cursors, sorted members) are the same too.
pub fn node_id(n: u8) -> NodeId {
    node_keys(n).public().node_id()
}

/// Test node `n`'s keys, made from a seed of `n`: the same on every run.
pub fn node_keys(n: u8) -> NodeKeys {
    test_keys()[usize::from(n)].clone()
}

/// The keys whose id is `id`, if it is one of [`node_id`]'s.
pub fn keys_of(id: &NodeId) -> Option<NodeKeys> {
    test_keys()
        .iter()
        .find(|k| k.public().node_id() == *id)
        .cloned()
}

fn test_keys() -> &'static [NodeKeys] {
    static KEYS: std::sync::OnceLock<Vec<NodeKeys>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| (0..=u8::MAX).map(seeded_keys).collect())
}

fn seeded_keys(n: u8) -> NodeKeys {
    use snow::resolvers::CryptoResolver;
    let mut private = [0x5a_u8; 32];
    private[0] = n;
    let mut dh = snow::resolvers::DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .unwrap_or_else(|| panic!("no X25519"));
    dh.set(&private);
    let mut bytes = [0u8; crate::transport::NODE_KEYS_LEN];
    bytes[..32].copy_from_slice(&private);
    bytes[32..64].copy_from_slice(dh.pubkey());
    bytes[64..].fill(n ^ 0xa5);
    bytes[95] = 7;
    NodeKeys::from_bytes(&bytes).unwrap_or_else(|e| panic!("test keys: {e}"))
}

/// `id`'s keys if it is a test id, else fresh ones (its signatures then verify under
/// no id: what a node with a made-up id gets).
fn keys_for(id: &NodeId) -> NodeKeys {
    keys_of(id).unwrap_or_else(|| NodeKeys::generate().unwrap_or_else(|e| panic!("test keys: {e}")))
}

/// The wall clock delivery and the store read: `start` plus the time tokio's clock has
/// moved since, plus any [`jump`](TestClock::jump). Under paused time it moves only
/// when the test advances it (or every task waits on a timer).
#[derive(Clone)]
pub struct TestClock(Arc<ClockState>);

struct ClockState {
    start_ms: UnixMs,
    started: Instant,
    jumped_ms: AtomicI64,
}

impl TestClock {
    /// Starts at `start_ms` now (call it inside the test's runtime).
    pub fn starting_at(start_ms: UnixMs) -> TestClock {
        TestClock(Arc::new(ClockState {
            start_ms,
            started: Instant::now(),
            jumped_ms: AtomicI64::new(0),
        }))
    }

    pub fn now_ms(&self) -> UnixMs {
        let elapsed = i64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.0
            .start_ms
            .saturating_add(elapsed)
            .saturating_add(self.0.jumped_ms.load(Ordering::SeqCst))
    }

    /// The wall clock jumps by `ms` while tokio's timers do not move: a week passing
    /// (a laptop asleep) or a clock set wrong, without running every timer in between.
    pub fn jump(&self, ms: i64) {
        self.0.jumped_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The clock as delivery takes it.
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Clock::from_fn(move || me.now_ms())
    }
}

/// Polls `condition` every 10 ms of (virtual) time until it holds; panics naming
/// `what` when `limit` passes first. Returns how long it took.
pub async fn until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if condition() {
            return start.elapsed();
        }
        if start.elapsed() >= limit {
            panic!("not within {limit:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lets every task that can run, run, and timers due within `d` fire: `d` of virtual
/// time passes.
pub async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

/// One node's delivery on a [`MemoryNet`], a [`MemoryStore`] and a [`TestClock`].
pub struct Engine {
    pub id: NodeId,
    pub keys: NodeKeys,
    pub store: Arc<MemoryStore>,
    pub links: MemoryLinks,
    pub clock: TestClock,
    pub addresses: AddressBook,
    pub offsets: ClockOffsets,
    pub sync_requests: SyncRequests,
    wake: Arc<Notify>,
    send_now: SendNow,
    peers: broadcast::Sender<PeerEvent>,
    events: Mutex<(broadcast::Receiver<DeliveryEvent>, Vec<DeliveryEvent>)>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Engine {
    /// Joins `net` as `id` and starts delivery.
    pub fn start(net: &MemoryNet, id: NodeId, clock: &TestClock) -> Engine {
        Engine::start_with(net, Arc::new(MemoryStore::new(id.clone())), clock)
    }

    /// Starts delivery on a store prepared beforehand (a policy, a scene).
    pub fn start_with(net: &MemoryNet, store: Arc<MemoryStore>, clock: &TestClock) -> Engine {
        let id = store.local().clone();
        let keys = keys_for(&id);
        let (links, link_events) = net.join(&id, keys.public());
        let (peers, peer_events) = broadcast::channel(256);
        let (events_tx, events_rx) = broadcast::channel(4096);
        let wake = Arc::new(Notify::new());
        let send_now = SendNow::default();
        let cancel = CancellationToken::new();
        let addresses = AddressBook::default();
        let offsets = ClockOffsets::default();
        let sync_requests = SyncRequests::default();
        let task = delivery::spawn(DeliveryParts {
            store: Arc::clone(&store) as Arc<dyn crate::ports::MeshStore>,
            transport: links.clone(),
            local: id.clone(),
            link_events,
            peer_events,
            addresses: addresses.clone(),
            wake: Arc::clone(&wake),
            events: events_tx,
            sync_requests: sync_requests.clone(),
            send_now: send_now.clone(),
            cancel: cancel.clone(),
            offsets: offsets.clone(),
            clock: clock.clock(),
        });
        Engine {
            id,
            keys,
            store,
            links,
            clock: clock.clone(),
            addresses,
            offsets,
            sync_requests,
            wake,
            send_now,
            peers,
            events: Mutex::new((events_rx, Vec::new())),
            cancel,
            task: Some(task),
        }
    }

    pub fn now_ms(&self) -> UnixMs {
        self.clock.now_ms()
    }

    /// What the API does for a DM: store it with its envelope, hand the envelope to
    /// the worker and wake it.
    pub fn send_dm(&self, peer: &NodeId, text: &str) -> Message {
        let (message, entry) = self
            .store
            .send_dm(peer, text, self.now_ms())
            .unwrap_or_else(|e| panic!("send_dm: {e}"));
        self.send_now.push(entry);
        self.wake.notify_one();
        message
    }

    /// What the API does for a new group: store it, queue its upserts, wake the worker.
    pub fn create_group(&self, name: &str, members: &[NodeId]) -> GroupState {
        let state = self
            .store
            .create_group(name, members, self.now_ms())
            .unwrap_or_else(|e| panic!("create_group: {e}"));
        self.wake.notify_one();
        state
    }

    /// What the API does for a group message: store it and wake the worker (the
    /// members' cursors carry it).
    pub fn send_group(&self, group: GlobalGroupId, text: &str) -> Message {
        let message = self
            .store
            .send_group_message(group, text, self.now_ms())
            .unwrap_or_else(|e| panic!("send_group_message: {e}"));
        self.wake.notify_one();
        message
    }

    /// Discovery sees `peer` online at `addr` (clock offset 0).
    pub fn sees(&self, peer: &NodeId, addr: std::net::SocketAddr) {
        let _ = self.peers.send(PeerEvent::Online(online_peer(peer, addr)));
    }

    /// Discovery lost `peer` (its TTL ran out).
    pub fn loses(&self, peer: &NodeId) {
        let mut gone = online_peer(peer, std::net::SocketAddr::from(([192, 0, 2, 0], 0)));
        gone.online = false;
        gone.listen_addr = None;
        let _ = self.peers.send(PeerEvent::Offline {
            peer: gone,
            reason: crate::discovery::OfflineReason::Expired,
        });
    }

    /// A discovery event as it is.
    pub fn peer_event(&self, event: PeerEvent) {
        let _ = self.peers.send(event);
    }

    /// Every event delivery emitted so far, in order.
    pub fn events(&self) -> Vec<DeliveryEvent> {
        let mut guard = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let (rx, seen) = &mut *guard;
        loop {
            match rx.try_recv() {
                Ok(event) => seen.push(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    panic!("a test lost {n} delivery events")
                }
                Err(_) => break,
            }
        }
        seen.clone()
    }

    /// The statuses announced for one message, in order.
    pub fn statuses(&self, message: MessageId) -> Vec<MessageStatus> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                DeliveryEvent::MessageStatus {
                    message_id, status, ..
                } if message_id == message => Some(status),
                _ => None,
            })
            .collect()
    }

    /// The messages announced as received, in order.
    pub fn received(&self) -> Vec<Message> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                DeliveryEvent::MessageReceived(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    pub fn status_of(&self, message: MessageId) -> Option<MessageStatus> {
        self.store.stored_message(message).map(|m| m.status)
    }

    /// Stops delivery and waits for it.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn online_peer(peer: &NodeId, addr: std::net::SocketAddr) -> Peer {
    Peer {
        node_id: peer.clone(),
        display_name: String::new(),
        discovery_addr: None,
        listen_addr: Some(addr),
        instance_id: None,
        public_key: None,
        online: true,
        last_seen_at: None,
        blocked: false,
        clock_offset_ms: Some(0),
        presence: api_types::Presence::Online,
    }
}

/// A node on the net that the test plays by hand: it reads the frames others send it
/// and writes frames back, signed with its own keys.
pub struct ScriptedPeer {
    pub id: NodeId,
    pub keys: NodeKeys,
    pub links: MemoryLinks,
    inbox: mpsc::Receiver<LinkEvent>,
}

impl ScriptedPeer {
    pub fn join(net: &MemoryNet, id: NodeId) -> ScriptedPeer {
        let keys = keys_for(&id);
        let (links, inbox) = net.join(&id, keys.public());
        ScriptedPeer {
            id,
            keys,
            links,
            inbox,
        }
    }

    /// The next frame sent to this peer (link ups and downs are skipped); panics if
    /// none comes within a minute of virtual time.
    pub async fn next_frame(&mut self) -> (NodeId, Frame) {
        let limit = Duration::from_secs(60);
        loop {
            match tokio::time::timeout(limit, self.inbox.recv()).await {
                Ok(Some(LinkEvent::Frame { peer, frame, .. })) => return (peer, frame),
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the net is gone"),
                Err(_) => panic!("{}: no frame within {limit:?}", self.id),
            }
        }
    }

    /// The next business envelope sent to this peer, opened and checked as a node
    /// would. Acks, rejects and catch-up envelopes (`group.sync`, `group.relay`) are
    /// skipped: a scripted peer takes no part in catch-up unless it reads frames itself.
    pub async fn next_envelope(&mut self) -> Envelope {
        loop {
            let (from, frame) = self.next_frame().await;
            if let Frame::Envelope(bytes) = frame {
                let envelope = self.open(&from, &bytes);
                if !is_catch_up_kind(&envelope.kind) {
                    return envelope;
                }
            }
        }
    }

    /// Every frame queued for this peer now (none waited for).
    pub fn frames_now(&mut self) -> Vec<(NodeId, Frame)> {
        let mut out = Vec::new();
        while let Ok(event) = self.inbox.try_recv() {
            if let LinkEvent::Frame { peer, frame, .. } = event {
                out.push((peer, frame));
            }
        }
        out
    }

    pub fn open(&self, from: &NodeId, bytes: &[u8]) -> Envelope {
        Envelope::open(bytes, from, &self.id).unwrap_or_else(|e| panic!("open: {e}"))
    }

    /// Sends an envelope over this peer's link.
    pub fn send_envelope(&self, to: &NodeId, envelope: &Envelope) {
        let bytes = envelope.encode().unwrap_or_else(|e| panic!("encode: {e}"));
        self.send(to, Frame::Envelope(bytes));
    }

    pub fn send(&self, to: &NodeId, frame: Frame) {
        self.links
            .send(to, frame)
            .unwrap_or_else(|e| panic!("{} → {to}: {e}", self.id));
    }

    pub fn ack(&self, to: &NodeId, envelope: &Envelope) {
        self.send(
            to,
            Frame::Ack(Ack {
                envelope_id: envelope.envelope_id.to_string(),
                outcome: "applied".into(),
            }),
        );
    }

    pub fn reject(&self, to: &NodeId, envelope: &Envelope, reason: &str) {
        self.send(
            to,
            Frame::Reject(Reject {
                envelope_id: envelope.envelope_id.to_string(),
                reason: reason.into(),
            }),
        );
    }
}
