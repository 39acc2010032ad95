//! The discovery runtime: one actor task owns the socket, the receive filter and the
//! peer registry; `Discovery` is the cheap `Clone` handle everyone else holds.
//!
//! Stopping: cancelling the token (or `shutdown()`) says goodbye, saves peers and ends
//! the task; dropping the last handle ends it at once without goodbye, as a crash would.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use api_types::{Cidr, NodeId, Presence};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::DiscoveryKey;
use super::clock::{Clock, SystemClock};
use super::config::{BroadcastMode, ConfigError, DiscoveryConfig, NetworkSource};
use super::datagrams::{self, Inbound, Outbound, PumpCounters, RECEIVE_QUEUE, SEND_QUEUE};
use super::filter::{DropCounters, DropReason, FilterConfig, ReceiveFilter};
use super::packet::{InstanceId, Nonce, Packet, PacketKind};
use super::registry::{Peer, PeerEvent, PeerRegistry};
use super::replay::ReplayGuard;
use super::socket::bind_discovery_socket;
use super::store::{MemoryPeerStore, PeerStore};
use super::targets::{self, LocalNetwork, ProbeSweep};
use super::twins::{TwinSighting, TwinWatch};
use crate::rate_limit::AnswerLimit;

/// Broadcast is lossy (Wi-Fi drops multicast/broadcast first, and a switch port may
/// still be coming up at boot), so `hello` is repeated: four tries in three seconds
/// survive heavy loss, and answers come back by unicast, which is reliable enough.
pub const HELLO_SCHEDULE: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(3),
];
/// A presence change goes out at once as a heartbeat to every announce target, and
/// again after a second: one lost broadcast must not leave colleagues seeing the old
/// state for a whole heartbeat interval (15 s). Heartbeats are not answered, so this
/// costs two small packets per target, not a round of answers like `hello`.
pub const PRESENCE_SCHEDULE: [Duration; 2] = [Duration::ZERO, Duration::from_secs(1)];
/// Heartbeats are spread ±10% so nodes powered on together do not stay in lockstep.
const HEARTBEAT_JITTER: f64 = 0.1;
/// Events waiting for a slow subscriber; one that falls further behind sees `Lagged`
/// and should re-read `peers()`.
const EVENT_CAPACITY: usize = 256;
/// Twin suspicions waiting for the node (at most one per id per heartbeat).
const TWIN_CAPACITY: usize = 64;
const COMMAND_CAPACITY: usize = 64;
const STORE_QUEUE: usize = 256;
/// Answers are spread over a short random delay so that a newcomer is not hit by every
/// node's answer in the same millisecond (on a 256-node LAN, 255 answers to each of its
/// hellos): 2 ms per online peer, at most half a second — still far below a heartbeat,
/// and the newcomer lists everyone within that half second.
const ANSWER_SPREAD_PER_PEER: Duration = Duration::from_millis(2);
const ANSWER_SPREAD_MAX: Duration = Duration::from_millis(500);
/// Answers scheduled but not yet sent; one per source address at a time.
const MAX_PENDING_ANSWERS: usize = 4096;
/// How long a stopping node keeps trying to get its goodbyes out of a full send buffer.
const GOODBYE_FLUSH: Duration = Duration::from_secs(1);
/// Socket buffers asked for (the kernel caps them at `net.core.{r,w}mem_max`): room for
/// the bursts of a LAN of hundreds of nodes, so the pumps rarely find them full.
const SOCKET_BUFFER: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error("cannot bind the discovery socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("discovery has stopped")]
    Stopped,
}

/// Counters readable through the handle (the node's status / diagnostics endpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiscoveryStats {
    pub received: DropCounters,
    pub sent: u64,
    /// Packets the kernel refused for good (not sent, not retried).
    pub send_errors: u64,
    /// Times a send waited for room in the socket's send buffer, then went out (the
    /// kernel counts each as a `SndbufErrors`).
    pub send_waits: u64,
    /// Packets dropped because the send queue was full (counted, never silent).
    pub send_queue_full: u64,
    /// Datagrams dropped because the actor had fallen behind by a whole queue.
    pub receive_queue_full: u64,
    /// Answers not scheduled because too many were already waiting.
    pub answers_dropped: u64,
    pub peers_online: usize,
    /// Peers heard but never proven on a link, held in memory only (at most
    /// [`MAX_SIGHTINGS`](super::registry::MAX_SIGHTINGS)).
    pub sightings: usize,
    /// Such sightings dropped, least recently heard first, to make room for newer ones.
    pub sightings_evicted: u64,
}

/// What the runtime needs from its surroundings; tests replace the clock, the seed and
/// the store.
pub struct DiscoveryEnv {
    pub clock: Arc<dyn Clock>,
    /// `None` = seeded from the OS. Fixed seeds make instance ids and nonces repeatable.
    pub rng_seed: Option<u64>,
    pub store: Box<dyn PeerStore>,
    /// Cancelling it stops discovery cleanly (goodbye sent). A node passes a child of
    /// its root token.
    pub cancel: CancellationToken,
    /// What this node announces at start (`Discovery::set_presence` changes it).
    pub presence: Presence,
}

impl Default for DiscoveryEnv {
    fn default() -> Self {
        DiscoveryEnv {
            clock: Arc::new(SystemClock),
            rng_seed: None,
            store: Box::new(MemoryPeerStore::new()),
            cancel: CancellationToken::new(),
            presence: Presence::Online,
        }
    }
}

enum Command {
    Peers(oneshot::Sender<Vec<Peer>>),
    Stats(oneshot::Sender<DiscoveryStats>),
    LocalAddr(oneshot::Sender<SocketAddr>),
    Block(NodeId, oneshot::Sender<()>),
    Unblock(NodeId, oneshot::Sender<()>),
    Forget(NodeId, oneshot::Sender<()>),
    Confirm(NodeId),
    AddPeerAddress(SocketAddr, oneshot::Sender<()>),
    RemovePeerAddress(SocketAddr, oneshot::Sender<()>),
    SetPresence(Presence, oneshot::Sender<()>),
    Reconfigure(
        Box<DiscoveryConfig>,
        oneshot::Sender<Result<(), DiscoveryError>>,
    ),
}

/// Handle to a running discovery plane. Cheap to clone.
#[derive(Clone)]
pub struct Discovery {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<PeerEvent>,
    twins: broadcast::Sender<TwinSighting>,
    instance_id: InstanceId,
    cancel: CancellationToken,
    stopped: CancellationToken,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Binds the socket, loads remembered peers and starts the actor, which says hello
    /// at once. Must be called inside a tokio runtime.
    pub async fn start(config: DiscoveryConfig, env: DiscoveryEnv) -> Result<Self, DiscoveryError> {
        config.validate()?;
        let socket = bind(config.bind)?;
        let DiscoveryEnv {
            clock,
            rng_seed,
            mut store,
            cancel,
            presence,
        } = env;
        let (store, remembered) = tokio::task::spawn_blocking(move || {
            let peers = store.load_peers();
            (store, peers)
        })
        .await
        .map_err(|_| DiscoveryError::Stopped)?;
        let remembered = remembered.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot load remembered peers; starting with none");
            Vec::new()
        });

        let mut rng = match rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let instance_id = InstanceId(rng.random());
        let (commands, inbox) = mpsc::channel(COMMAND_CAPACITY);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (twins, _) = broadcast::channel(TWIN_CAPACITY);
        let cancel = cancel.child_token();
        let stopped = CancellationToken::new();
        let (store_tx, store_rx) = mpsc::channel(STORE_QUEUE);
        let writer = tokio::spawn(write_store(store, store_rx));

        let mut registry = PeerRegistry::new(config.peer_ttl);
        for id in &config.blocked_peers {
            registry.block(id);
        }
        let mut replay = ReplayGuard::default();
        for peer in &remembered {
            replay.protect(&peer.node_id);
        }
        registry.restore(remembered);
        let key = config.shared_secret.discovery_key();
        let filter = ReceiveFilter::new(
            FilterConfig {
                own_id: config.node_id.clone(),
                blocked_peers: HashSet::new(),
                blocked_subnets: Vec::new(),
                allowed_subnets: Vec::new(),
                key: key.clone(),
            },
            replay,
        );
        let now = Instant::now();
        let counters = Arc::new(PumpCounters::default());
        let (inbound_tx, inbound) = mpsc::channel(RECEIVE_QUEUE);
        let receiver = tokio::spawn(datagrams::receive(
            Arc::clone(&socket),
            Arc::clone(&clock),
            inbound_tx.clone(),
            Arc::clone(&counters),
        ));
        let (outbound, outbound_rx) = mpsc::channel(SEND_QUEUE);
        let senders = TaskTracker::new();
        senders.spawn(datagrams::send(
            Arc::clone(&socket),
            outbound_rx,
            Arc::clone(&counters),
        ));
        let (config_ttl, config_heartbeat) = (config.peer_ttl, config.heartbeat_interval);
        let mut actor = Actor {
            config,
            socket,
            receiver,
            senders: senders.clone(),
            inbound_tx,
            outbound,
            counters,
            seq: 0,
            answers: BTreeSet::new(),
            answering: HashSet::new(),
            answers_dropped: 0,
            filter,
            registry,
            key,
            clock,
            rng,
            instance_id,
            local: Vec::new(),
            broadcast: Vec::new(),
            sweep: ProbeSweep::default(),
            sweep_inputs: None,
            hello_due: Vec::new(),
            presence,
            presence_due: Vec::new(),
            next_heartbeat: now,
            answered: AnswerLimit::default(),
            events: events.clone(),
            store: store_tx,
            twin_watch: TwinWatch::new(config_ttl, config_heartbeat),
            twins: twins.clone(),
        };
        actor.replan();
        actor.schedule_hellos(now);
        let next = actor.config.heartbeat_interval;
        actor.next_heartbeat = now + actor.jittered(next);
        tracing::info!(node = %actor.config.node_id, instance = %instance_id,
            addr = ?actor.socket.local_addr().ok(), "discovery started");

        let task_cancel = cancel.clone();
        let task_stopped = stopped.clone();
        tokio::spawn(async move {
            let _stopped = task_stopped.drop_guard();
            actor.run(inbox, inbound, task_cancel).await;
            actor.receiver.abort();
            // Closing the send queue lets the sender finish what is queued (goodbyes)
            // and end (and a rebind's retired sender its own queue); a send buffer that
            // stays full must not hold the stop for long.
            drop(actor);
            senders.close();
            if tokio::time::timeout(GOODBYE_FLUSH, senders.wait())
                .await
                .is_err()
            {
                tracing::warn!("discovery packets still queued at stop were dropped");
            }
            // Let the writer finish queued saves before reporting "stopped".
            if writer.await.is_err() {
                tracing::warn!("peer store writer ended abnormally");
            }
        });
        Ok(Discovery {
            commands,
            events,
            twins,
            instance_id,
            cancel,
            stopped,
        })
    }

    /// Suspected twins: one id announced by two live instances (see [`TwinWatch`]),
    /// for the transport to prove or dismiss.
    pub fn subscribe_twins(&self) -> broadcast::Receiver<TwinSighting> {
        self.twins.subscribe()
    }

    /// This process's instance id (what peers use to notice a restart).
    pub fn instance_id(&self) -> InstanceId {
        self.instance_id
    }

    /// Peer events from now on. A receiver that lags gets `RecvError::Lagged` and should
    /// re-read `peers()`.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    /// Every known peer, blocked ones included (flagged), sorted by node id.
    pub async fn peers(&self) -> Result<Vec<Peer>, DiscoveryError> {
        self.ask(Command::Peers).await
    }

    pub async fn stats(&self) -> Result<DiscoveryStats, DiscoveryError> {
        self.ask(Command::Stats).await
    }

    /// The bound discovery address (useful with port 0).
    pub async fn local_addr(&self) -> Result<SocketAddr, DiscoveryError> {
        self.ask(Command::LocalAddr).await
    }

    /// Hides the peer and drops its packets from now on. Takes effect before this
    /// returns. The node must also persist it in `blocked_peers` (a later
    /// `reconfigure` makes the settings list the truth).
    pub async fn block(&self, id: NodeId) -> Result<(), DiscoveryError> {
        self.ask(|tx| Command::Block(id, tx)).await
    }

    /// Lists the peer again (offline) and probes its last address so it is back online
    /// within a round trip if it is up.
    pub async fn unblock(&self, id: NodeId) -> Result<(), DiscoveryError> {
        self.ask(|tx| Command::Unblock(id, tx)).await
    }

    /// Removes a peer from the registry and the store (it returns if it announces).
    pub async fn forget(&self, id: NodeId) -> Result<(), DiscoveryError> {
        self.ask(|tx| Command::Forget(id, tx)).await
    }

    /// Tells discovery that `id` proved itself on a link: from now on it is remembered
    /// across restarts and never evicted for newer sightings. Without waiting; a
    /// confirmation lost to a full queue comes again with the peer's next link.
    pub fn confirm(&self, id: NodeId) {
        let _ = self.commands.try_send(Command::Confirm(id));
    }

    /// Adds a manually entered peer address (routed subnets); probed at once and every
    /// heartbeat interval.
    pub async fn add_peer_address(&self, addr: SocketAddr) -> Result<(), DiscoveryError> {
        self.ask(|tx| Command::AddPeerAddress(addr, tx)).await
    }

    pub async fn remove_peer_address(&self, addr: SocketAddr) -> Result<(), DiscoveryError> {
        self.ask(|tx| Command::RemovePeerAddress(addr, tx)).await
    }

    /// Announces this user's presence from now on (extension 3 of every packet); a
    /// change is sent at once to every announce target (`PRESENCE_SCHEDULE`).
    /// `Offline` is announced as `online`: a node that sends is there.
    pub async fn set_presence(&self, presence: Presence) -> Result<(), DiscoveryError> {
        self.ask(|tx| Command::SetPresence(presence, tx)).await
    }

    /// Applies new settings at once: filter, blocks, intervals, targets; rebinds if the
    /// bind address changed; peers now out of reach go offline; hello is re-sent.
    /// On error nothing changed.
    ///
    /// The new config replaces the old one entirely: its `blocked_peers`,
    /// `peer_addresses` and `announce_targets` become the lists, whatever `block()` or
    /// `add_peer_address()` did since — so the node builds it from its persisted
    /// settings *and* its persisted manual peer addresses.
    pub async fn reconfigure(&self, config: DiscoveryConfig) -> Result<(), DiscoveryError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Reconfigure(Box::new(config), tx))
            .await
            .map_err(|_| DiscoveryError::Stopped)?;
        rx.await.map_err(|_| DiscoveryError::Stopped)?
    }

    /// Says goodbye, saves peers, and returns once the task and its helpers have ended.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.stopped.cancelled().await;
    }

    /// Whether the actor has ended (after shutdown, cancellation or last-handle drop).
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_cancelled()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DiscoveryError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| DiscoveryError::Stopped)?;
        rx.await.map_err(|_| DiscoveryError::Stopped)
    }
}

enum StoreOp {
    Save(Box<Peer>),
    Remove(NodeId),
}

/// Runs store calls off the async workers (SQLite must never block a tokio worker),
/// one at a time, in order.
async fn write_store(store: Box<dyn PeerStore>, mut ops: mpsc::Receiver<StoreOp>) {
    let mut store = Some(store);
    while let Some(op) = ops.recv().await {
        let Some(mut s) = store.take() else { break };
        let result = tokio::task::spawn_blocking(move || {
            let r = match &op {
                StoreOp::Save(p) => s.save_peer(p),
                StoreOp::Remove(id) => s.remove_peer(id),
            };
            (s, r)
        })
        .await;
        match result {
            Ok((s, r)) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot persist peer");
                }
                store = Some(s);
            }
            Err(_) => break,
        }
    }
}

/// Binds the discovery socket with room for LAN-sized bursts.
fn bind(addr: SocketAddr) -> Result<Arc<UdpSocket>, DiscoveryError> {
    bind_discovery_socket(addr, SOCKET_BUFFER)
        .map(Arc::new)
        .map_err(|source| DiscoveryError::Bind { addr, source })
}

struct Actor {
    config: DiscoveryConfig,
    socket: Arc<UdpSocket>,
    /// The receive pump of `socket` (replaced with the socket on a rebind).
    receiver: tokio::task::JoinHandle<()>,
    /// The send pumps: the current socket's, and a rebind's retired one while it
    /// finishes its queue. Waited for at stop.
    senders: TaskTracker,
    /// Kept to start a new receive pump after a rebind.
    inbound_tx: mpsc::Sender<Inbound>,
    outbound: mpsc::Sender<Outbound>,
    counters: Arc<PumpCounters>,
    /// The sequence number of the last packet sent (replay protection, per sender).
    seq: u64,
    /// Answers waiting for their (randomly spread) time, soonest first.
    answers: BTreeSet<(Instant, SocketAddr)>,
    /// The destinations in `answers`: one pending answer per address is enough.
    answering: HashSet<SocketAddr>,
    answers_dropped: u64,
    filter: ReceiveFilter,
    registry: PeerRegistry,
    key: Option<DiscoveryKey>,
    clock: Arc<dyn Clock>,
    rng: StdRng,
    instance_id: InstanceId,
    local: Vec<LocalNetwork>,
    broadcast: Vec<SocketAddr>,
    sweep: ProbeSweep,
    /// What `sweep` was built from (allowed, blocked, local networks).
    sweep_inputs: Option<(Vec<Cidr>, Vec<Cidr>, Vec<LocalNetwork>)>,
    /// Remaining hello times, soonest last.
    hello_due: Vec<Instant>,
    /// What every packet announces.
    presence: Presence,
    /// Remaining presence-change announcements, soonest last.
    presence_due: Vec<Instant>,
    next_heartbeat: Instant,
    answered: AnswerLimit,
    events: broadcast::Sender<PeerEvent>,
    store: mpsc::Sender<StoreOp>,
    twin_watch: TwinWatch,
    twins: broadcast::Sender<TwinSighting>,
}

impl Actor {
    async fn run(
        &mut self,
        mut inbox: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
        cancel: CancellationToken,
    ) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    self.say_goodbye();
                    self.save_all();
                    tracing::info!(node = %self.config.node_id, "discovery stopped");
                    return;
                }
                cmd = inbox.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        tracing::info!(node = %self.config.node_id, "discovery handles dropped; stopping without goodbye");
                        self.save_all();
                        return;
                    }
                },
                // Timers before datagrams: under a flood there is always a datagram,
                // and heartbeats and expiry must still run.
                () = tokio::time::sleep_until(wake) => self.tick(),
                Some(datagram) = inbound.recv() => self.datagram(datagram),
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.next_heartbeat;
        if let Some(h) = self.hello_due.last() {
            wake = wake.min(*h);
        }
        if let Some(p) = self.presence_due.last() {
            wake = wake.min(*p);
        }
        if let Some((at, _)) = self.answers.first() {
            wake = wake.min(*at);
        }
        if let Some(e) = self.registry.next_expiry() {
            wake = wake.min(Instant::from_std(e));
        }
        wake
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        d.mul_f64(
            self.rng
                .random_range(1.0 - HEARTBEAT_JITTER..=1.0 + HEARTBEAT_JITTER),
        )
    }

    fn schedule_hellos(&mut self, now: Instant) {
        self.hello_due = HELLO_SCHEDULE.iter().rev().map(|d| now + *d).collect();
    }

    fn replan(&mut self) {
        if let NetworkSource::Fixed(nets) = &self.config.networks {
            self.local = nets.clone();
        } else {
            self.local = targets::system_networks();
        }
        let allowed = targets::effective_allowed(&self.config.allowed_subnets, &self.local);
        let blocked = &self.config.blocked_subnets;
        self.broadcast = match self.config.broadcast {
            BroadcastMode::AttachedSubnets => targets::broadcast_targets(
                &allowed,
                blocked,
                &self.local,
                self.config.discovery_port,
            ),
            BroadcastMode::Off => Vec::new(),
        };
        // Keep the cursor when nothing changed, so a refresh does not restart the round.
        let inputs = (allowed.clone(), blocked.clone(), self.local.clone());
        if self.sweep_inputs.as_ref() != Some(&inputs) {
            self.sweep = ProbeSweep::new(&allowed, blocked, &self.local);
            for subnet in ProbeSweep::unreachable(&allowed, &self.local) {
                tracing::warn!(%subnet, "allowed subnet is too large to probe; only manual peer addresses reach peers there");
            }
            self.sweep_inputs = Some(inputs);
        }
        self.filter.set_config(FilterConfig {
            own_id: self.config.node_id.clone(),
            blocked_peers: self.config.blocked_peers.iter().cloned().collect(),
            blocked_subnets: blocked.clone(),
            allowed_subnets: allowed,
            key: self.key.clone(),
        });
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let events = self.registry.expire(now.into_std());
        self.publish(events);
        self.twin_watch.expire(now.into_std());
        while let Some(&(at, to)) = self.answers.first() {
            if at > now {
                break;
            }
            self.answers.pop_first();
            self.answering.remove(&to);
            self.send(PacketKind::Answer, to);
        }
        if self.hello_due.last().is_some_and(|h| *h <= now) {
            // The first hello of a burst also starts the sweep, so routed peers are
            // found at start instead of one heartbeat later.
            let burst_start = self.hello_due.len() == HELLO_SCHEDULE.len();
            while self.hello_due.last().is_some_and(|h| *h <= now) {
                self.hello_due.pop();
            }
            self.announce(PacketKind::Hello);
            self.probe_manual_addresses();
            if burst_start {
                self.sweep_batch();
            }
        }
        if self.presence_due.last().is_some_and(|p| *p <= now) {
            while self.presence_due.last().is_some_and(|p| *p <= now) {
                self.presence_due.pop();
            }
            self.announce(PacketKind::Heartbeat);
        }
        if self.next_heartbeat <= now {
            if self.config.networks == NetworkSource::System {
                self.replan();
            }
            self.announce(PacketKind::Heartbeat);
            self.probe_manual_addresses();
            self.sweep_batch();
            let interval = self.config.heartbeat_interval;
            self.next_heartbeat = now + self.jittered(interval);
        }
    }

    fn sweep_batch(&mut self) {
        for ip in self.sweep.next_batch(self.config.probe_budget) {
            let to = SocketAddr::new(IpAddr::V4(ip), self.config.discovery_port);
            self.send(PacketKind::Probe, to);
        }
    }

    fn announce_targets(&self) -> Vec<SocketAddr> {
        let mut to: Vec<SocketAddr> = self.broadcast.clone();
        to.extend(&self.config.announce_targets);
        let local = &self.local;
        let broadcasting = !self.broadcast.is_empty();
        for peer in self.registry.online() {
            if let Some(addr) = peer.discovery_addr {
                let on_link = local
                    .iter()
                    .any(|n| n.broadcast.is_some() && n.network.contains(addr.ip()));
                if !(broadcasting && on_link) {
                    to.push(addr);
                }
            }
        }
        to.sort();
        to.dedup();
        to
    }

    fn announce(&mut self, kind: PacketKind) {
        for to in self.announce_targets() {
            self.send(kind, to);
        }
    }

    fn probe_manual_addresses(&mut self) {
        for to in self.config.peer_addresses.clone() {
            self.send(PacketKind::Probe, to);
        }
    }

    fn say_goodbye(&mut self) {
        let mut to = self.announce_targets();
        to.extend(&self.config.peer_addresses);
        to.sort();
        to.dedup();
        for addr in to {
            self.send(PacketKind::Goodbye, addr);
        }
    }

    /// Encodes a fresh packet per destination (own nonce and sequence number each), so
    /// a receiver on two of our subnets sees two packets, not a replay, and queues it
    /// for the send pump.
    fn send(&mut self, kind: PacketKind, to: SocketAddr) {
        if self.filter.config.source_is_blocked(to.ip()) {
            return;
        }
        self.seq += 1;
        let packet = Packet {
            kind,
            node_id: self.config.node_id.clone(),
            instance_id: self.instance_id,
            ts: self.clock.now(),
            nonce: Nonce(self.rng.random()),
            listen_port: self.config.listen_port,
            display_name: self.config.display_name.clone(),
            public_key: self.config.public_key,
            seq: Some(self.seq),
            presence: Some(self.presence),
        };
        let bytes = match packet.encode(self.key.as_ref()) {
            Ok(b) => b,
            Err(e) => {
                // validate() makes this unreachable for configs that went through it.
                tracing::error!(error = %e, "cannot encode discovery packet");
                return;
            }
        };
        if self.outbound.try_send(Outbound { bytes, to }).is_err() {
            PumpCounters::bump(&self.counters.send_queue_full);
        }
    }

    /// Schedules an answer to `to` after a random delay that grows with the LAN (see
    /// `ANSWER_SPREAD_PER_PEER`); at most one pending answer per address.
    fn schedule_answer(&mut self, to: SocketAddr, now: Instant) {
        if self.answering.contains(&to) {
            return;
        }
        if self.answering.len() >= MAX_PENDING_ANSWERS {
            self.answers_dropped = self.answers_dropped.saturating_add(1);
            return;
        }
        let peers = u32::try_from(self.registry.online_count()).unwrap_or(u32::MAX);
        let spread = ANSWER_SPREAD_PER_PEER
            .saturating_mul(peers)
            .min(ANSWER_SPREAD_MAX);
        let delay = spread.mul_f64(self.rng.random_range(0.0..=1.0));
        self.answering.insert(to);
        self.answers.insert((now + delay, to));
    }

    fn datagram(&mut self, datagram: Inbound) {
        let Inbound {
            bytes,
            source,
            at_unix,
            at,
        } = datagram;
        let packet = match self.filter.accept(&bytes, source, at.into_std()) {
            Ok(packet) => packet,
            Err(reason @ (DropReason::Own | DropReason::Stale)) => {
                // Dropped, but maybe a twin's: our id from another instance, or a
                // "replaced" instance that is still talking.
                let Some(packet) = self.filter.authentic(&bytes) else {
                    return;
                };
                let advances = self.twin_watch.advances(&packet);
                self.watch_twins(&packet, source, at.into_std());
                let gone = self.registry.get(&packet.node_id).is_none_or(|p| !p.online);
                if reason != DropReason::Stale || !advances || !gone {
                    return;
                }
                // The instance that replaced this one is gone (said goodbye, expired)
                // while this one still talks, newer in its own sequence: it was the
                // other of two twins, and is now the peer. Start its window afresh.
                self.filter.forget_sender(&packet.node_id);
                match self.filter.accept(&bytes, source, at.into_std()) {
                    Ok(packet) => packet,
                    Err(_) => return,
                }
            }
            Err(_) => return,
        };
        self.watch_twins(&packet, source, at.into_std());
        let events = self
            .registry
            .observe(&packet, source, at.into_std(), at_unix);
        let newly_seen = events.iter().any(|e| {
            matches!(e, PeerEvent::Online(_))
                || matches!(e, PeerEvent::Updated { changes, .. } if changes.restarted)
        });
        self.publish(events);
        // Answer hello/probe; and re-announce to a peer we just discovered through its
        // heartbeat, so it sees us without waiting for our next heartbeat.
        let answer =
            packet.kind.wants_answer() || (newly_seen && packet.kind == PacketKind::Heartbeat);
        if answer && self.answered.allow(source, at.into_std()) {
            self.schedule_answer(source, Instant::now());
        }
    }

    fn watch_twins(&mut self, packet: &Packet, source: SocketAddr, now: std::time::Instant) {
        if packet.kind == PacketKind::Goodbye {
            return;
        }
        let own = (&self.config.node_id, self.instance_id);
        if let Some(sighting) = self.twin_watch.observe(packet, source, own, now) {
            tracing::info!(node = %sighting.node_id, addresses = ?sighting.addresses,
                own = sighting.own, "one node id announced by two instances");
            // No subscriber is fine (a test without a transport).
            let _ = self.twins.send(sighting);
        }
    }

    fn stats(&self) -> DiscoveryStats {
        let c = &self.counters;
        DiscoveryStats {
            received: self.filter.counters(),
            sent: PumpCounters::get(&c.sent),
            send_errors: PumpCounters::get(&c.send_errors),
            send_waits: PumpCounters::get(&c.send_waits),
            send_queue_full: PumpCounters::get(&c.send_queue_full),
            receive_queue_full: PumpCounters::get(&c.receive_queue_full),
            answers_dropped: self.answers_dropped,
            peers_online: self.registry.online_count(),
            sightings: self.registry.sightings(),
            sightings_evicted: self.registry.evicted(),
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Peers(tx) => {
                let _ = tx.send(self.registry.peers());
            }
            Command::Stats(tx) => {
                let _ = tx.send(self.stats());
            }
            Command::LocalAddr(tx) => {
                if let Ok(addr) = self.socket.local_addr() {
                    let _ = tx.send(addr);
                }
            }
            Command::Block(id, tx) => {
                if !self.config.blocked_peers.contains(&id) {
                    self.config.blocked_peers.push(id.clone());
                }
                self.filter.config.blocked_peers.insert(id.clone());
                self.filter.forget_sender(&id);
                let events = self.registry.block(&id);
                self.publish(events);
                let _ = tx.send(());
            }
            Command::Unblock(id, tx) => {
                self.config.blocked_peers.retain(|b| *b != id);
                self.filter.config.blocked_peers.remove(&id);
                let events = self.registry.unblock(&id);
                let last_addr = self.registry.get(&id).and_then(|p| p.discovery_addr);
                self.publish(events);
                let _ = tx.send(());
                if let Some(addr) = last_addr {
                    self.send(PacketKind::Probe, addr);
                }
            }
            Command::Forget(id, tx) => {
                self.filter.forget_sender(&id);
                let events = self.registry.forget(&id);
                if !events.is_empty() {
                    self.persist(StoreOp::Remove(id.clone()));
                }
                self.publish(events);
                let _ = tx.send(());
            }
            Command::Confirm(id) => {
                self.filter.protect_sender(&id);
                if let Some(peer) = self.registry.confirm(&id) {
                    self.persist(StoreOp::Save(Box::new(peer)));
                }
            }
            Command::AddPeerAddress(addr, tx) => {
                if !self.config.peer_addresses.contains(&addr) {
                    self.config.peer_addresses.push(addr);
                }
                let _ = tx.send(());
                self.send(PacketKind::Probe, addr);
            }
            Command::RemovePeerAddress(addr, tx) => {
                self.config.peer_addresses.retain(|a| *a != addr);
                let _ = tx.send(());
            }
            Command::SetPresence(presence, tx) => {
                let presence = match presence {
                    Presence::Offline => Presence::Online,
                    p => p,
                };
                if presence != self.presence {
                    self.presence = presence;
                    let now = Instant::now();
                    self.presence_due = PRESENCE_SCHEDULE.iter().rev().map(|d| now + *d).collect();
                    tracing::debug!(presence = presence.as_str(), "announcing a presence change");
                }
                let _ = tx.send(());
            }
            Command::Reconfigure(config, tx) => {
                let result = self.reconfigure(*config);
                let ok = result.is_ok();
                let _ = tx.send(result);
                if ok {
                    // Hello at once (not after the reply's round trip through the
                    // scheduler), so the new settings are visible to peers quickly.
                    self.schedule_hellos(Instant::now());
                    self.tick();
                }
            }
        }
    }

    fn reconfigure(&mut self, config: DiscoveryConfig) -> Result<(), DiscoveryError> {
        config.validate()?;
        if config.node_id != self.config.node_id {
            return Err(ConfigError::NodeIdChanged.into());
        }
        if config.bind != self.config.bind {
            self.rebind(config.bind)?;
        }
        let secret_changed = config.shared_secret != self.config.shared_secret;
        if secret_changed {
            self.key = config.shared_secret.discovery_key();
        }
        if config.heartbeat_interval < self.config.heartbeat_interval {
            self.next_heartbeat = self
                .next_heartbeat
                .min(Instant::now() + config.heartbeat_interval);
        }
        self.registry.set_ttl(config.peer_ttl);
        self.twin_watch
            .set_timing(config.peer_ttl, config.heartbeat_interval);
        self.config = config;
        self.replan();
        let blocked: HashSet<NodeId> = self.config.blocked_peers.iter().cloned().collect();
        let mut events = self.registry.set_blocked(&blocked);
        let filter = &self.filter.config;
        // Peers that only the old secret or old subnets admitted cannot reach us now.
        events.extend(self.registry.exclude(
            |p| {
                !secret_changed
                    && p.discovery_addr.is_some_and(|a| {
                        !filter.source_is_blocked(a.ip()) && filter.source_is_allowed(a.ip())
                    })
            },
            Instant::now().into_std(),
        ));
        self.publish(events);
        tracing::info!(node = %self.config.node_id, "discovery reconfigured");
        Ok(())
    }

    /// Moves to a new socket: new pumps on it; the old sender finishes its queue on the
    /// old socket and ends.
    fn rebind(&mut self, addr: SocketAddr) -> Result<(), DiscoveryError> {
        let socket = bind(addr)?;
        self.receiver.abort();
        self.receiver = tokio::spawn(datagrams::receive(
            Arc::clone(&socket),
            Arc::clone(&self.clock),
            self.inbound_tx.clone(),
            Arc::clone(&self.counters),
        ));
        let (outbound, outbound_rx) = mpsc::channel(SEND_QUEUE);
        self.senders.spawn(datagrams::send(
            Arc::clone(&socket),
            outbound_rx,
            Arc::clone(&self.counters),
        ));
        self.outbound = outbound;
        self.socket = socket;
        Ok(())
    }

    fn publish(&mut self, events: Vec<PeerEvent>) {
        for event in events {
            match &event {
                // Stored by the forget command itself; a sighting evicted from the
                // table was never stored.
                PeerEvent::Forgotten(_) => {}
                // Only peers proven on a link are written: announcing fresh ids costs
                // an insider nothing, and must cost us no disk.
                other if self.registry.is_confirmed(other.node_id()) => {
                    if let Some(peer) = self.registry.get(other.node_id()) {
                        self.persist(StoreOp::Save(Box::new(peer.clone())));
                    }
                }
                _ => {}
            }
            tracing::debug!(?event, "peer event");
            // No subscriber is fine: events are also readable as state via peers().
            let _ = self.events.send(event);
        }
    }

    fn persist(&mut self, op: StoreOp) {
        if self.store.try_send(op).is_err() {
            tracing::warn!("peer store is not keeping up; a peer update was not saved");
        }
    }

    /// Saves every online peer's latest state (last seen) before stopping.
    fn save_all(&mut self) {
        let online: Vec<Peer> = self
            .registry
            .online()
            .filter(|p| self.registry.is_confirmed(&p.node_id))
            .cloned()
            .collect();
        for peer in online {
            self.persist(StoreOp::Save(Box::new(peer)));
        }
    }
}
