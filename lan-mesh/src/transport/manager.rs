//! The connection manager: the LAN listener, dialling, one link per peer, redial
//! backoff, and closing links on blocks and settings changes.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::ports::{KeyBook, KeyPin, Reattach};
use api_types::NodeId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{
    TransportConfig, HANDSHAKES_PER_SEC, HANDSHAKE_BURST, HANDSHAKE_TIMEOUT, LISTEN_BACKLOG,
    MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_DIALS, MAX_REDIAL_ENTRIES,
};
use super::frame::Frame;
use super::health::{self, Failures, LinkHealth, LinkPhase, LinkReport};
use super::identity::{ChangeKind, IdentityChange, IdentityStatement, NodeKeys, PeerKeys};
use super::link::{self, Lanes, LinkEnd, LinkError, Running, Ws};
use super::noise::{NoiseError, Session};
use super::slots::{Admission, SlotId, SlotTable};
use super::stats::Counters;
use super::twins::{Twin, TwinBook};
use crate::rate_limit::SourceRateLimit;

/// The reason a link with a twinned id is refused or closed (docs/PROTOCOL.md, "Twins").
pub const DUPLICATE_IDENTITY: &str = "duplicate identity";

/// What the transport tells its owner (the delivery worker).
#[derive(Debug)]
pub enum LinkEvent {
    Up {
        peer: NodeId,
    },
    Down {
        peer: NodeId,
        end: LinkEnd,
    },
    /// A frame from a peer, with the keys its link proved (to verify envelopes).
    Frame {
        peer: NodeId,
        keys: PeerKeys,
        frame: Frame,
    },
    /// A known node id showed other keys than the ones pinned: refused (and reported).
    KeyMismatch {
        peer: NodeId,
        addr: SocketAddr,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no link to the peer")]
    NoLink,
    /// `send`: the frame's queue on the link is full; `send_wait`: it stayed full.
    #[error("the link's queue is full")]
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct LinkEntry {
    id: u64,
    initiated_locally: bool,
    lanes: Lanes,
    cancel: CancellationToken,
    health: Arc<LinkHealth>,
}

impl LinkEntry {
    /// Asks the link to close, telling the peer `reason` (ahead of queued envelopes);
    /// with the control lane full, closes it without saying why.
    fn close(&self, reason: &str) {
        let frame = Frame::close(reason);
        if self.lanes.for_frame(&frame).try_send(frame).is_err() {
            self.cancel.cancel();
        }
    }
}

struct State {
    config: Arc<TransportConfig>,
    links: HashMap<NodeId, LinkEntry>,
    dialing: HashSet<NodeId>,
    /// Failed dials: attempts so far and the earliest next try.
    redial: HashMap<NodeId, (u32, Instant)>,
    /// When the full redial table was last swept (at most once a second: linear).
    redial_swept: Option<Instant>,
    /// Inbound connections held, per source address, and which are still pending.
    slots: SlotTable,
    /// Handshakes each source IP may start (a token bucket per IP, bounded).
    handshake_rate: SourceRateLimit,
    next_id: u64,
    /// Why each peer's last link or dial ended (diagnostics).
    failures: Failures,
    /// Ids proven at two addresses at once (or ours elsewhere): see [`TwinBook`].
    twins: TwinBook,
    /// Linked peers that proved they run on a copy of another id's computer (new id →
    /// the id it was copied from), for the peers list. Bounded: see [`MAX_COPIES`].
    copies: HashMap<NodeId, NodeId>,
}

/// Copy statements remembered: one per colleague that took a new identity after a
/// copy; beyond this many, new ones are not shown (nothing else depends on them).
const MAX_COPIES: usize = 4096;

struct Listener {
    addr: SocketAddr,
    cancel: CancellationToken,
}

struct Shared {
    state: Mutex<State>,
    listener: Mutex<Option<Listener>>,
    keys: NodeKeys,
    /// This node's earlier ids, announced in every `Hello` it sends.
    previous: Vec<IdentityStatement>,
    store: Arc<dyn KeyBook>,
    events: mpsc::Sender<LinkEvent>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// The handle. Cheap to clone; `shutdown` ends every link and the listener.
///
/// Every task the transport starts — the accept loop, each handshake, each link's
/// supervisor, writer and reader — runs on one `TaskTracker`, and `shutdown` waits for
/// all of them. The order: the transport's token is cancelled; the accept loop stops
/// accepting; handshakes in progress are dropped; each link's writer stops between
/// frames (or mid-frame if the peer stopped reading) and its reader stops; each
/// supervisor then sends `Close("closed")` within `CLOSE_GRACE` where the socket still
/// takes it, closes the WebSocket and ends. Nothing is left running when `shutdown`
/// returns.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
}

/// A reserved inbound connection slot, released when dropped.
struct Slot {
    shared: Arc<Shared>,
    id: SlotId,
}

impl Slot {
    /// The handshake is done: the slot can no longer be evicted. False if it already
    /// was (the handshake finished just as a newer connection took its slot).
    fn establish(&self) -> bool {
        self.shared.lock().slots.establish(self.id)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.lock().slots.release(self.id);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; the state stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn config(&self) -> Arc<TransportConfig> {
        Arc::clone(&self.lock().config)
    }
}

impl Transport {
    /// Binds the LAN listener and starts serving. Link events go to `events`.
    /// `previous_ids` are this node's earlier ids (newest first, each signed by the key
    /// that held it), announced from the very first handshake: a colleague that dials
    /// at once must not miss them, and each re-attaches what it knew under them.
    pub async fn start(
        config: TransportConfig,
        keys: NodeKeys,
        previous_ids: Vec<IdentityStatement>,
        store: Arc<dyn KeyBook>,
        events: mpsc::Sender<LinkEvent>,
        cancel: CancellationToken,
    ) -> Result<Transport, TransportError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                config: Arc::new(config.clone()),
                links: HashMap::new(),
                dialing: HashSet::new(),
                redial: HashMap::new(),
                redial_swept: None,
                slots: SlotTable::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP),
                handshake_rate: SourceRateLimit::new(HANDSHAKE_BURST, HANDSHAKES_PER_SEC),
                next_id: 0,
                failures: Failures::default(),
                twins: TwinBook::default(),
                copies: HashMap::new(),
            }),
            listener: Mutex::new(None),
            keys,
            previous: previous_ids,
            store,
            events,
            counters: Arc::new(Counters::default()),
            cancel,
            tasks: TaskTracker::new(),
        });
        let transport = Transport { shared };
        transport.listen(config.listen).await?;
        Ok(transport)
    }

    async fn listen(&self, addr: SocketAddr) -> Result<(), TransportError> {
        let listener =
            bind_listener(addr).map_err(|source| TransportError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| TransportError::Bind { addr, source })?;
        let cancel = self.shared.cancel.child_token();
        let previous = self
            .shared
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Listener {
                addr: bound,
                cancel: cancel.clone(),
            });
        if let Some(previous) = previous {
            previous.cancel.cancel();
        }
        let shared = Arc::clone(&self.shared);
        self.shared
            .tasks
            .spawn(accept_loop(shared, listener, cancel));
        tracing::info!(%bound, "LAN link listener up");
        Ok(())
    }

    /// The address the listener is bound to (its real port when 0 was asked).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| l.addr)
    }

    /// Counts an envelope delivery dropped (`rejected` false) or answered with `Reject`.
    pub fn count_envelope_refused(&self, rejected: bool) {
        let counters = &self.shared.counters;
        if rejected {
            counters.envelopes_rejected.inc();
        } else {
            counters.envelopes_dropped.inc();
        }
    }

    /// Counts an envelope left unanswered because its sender is over a quota.
    pub fn count_envelope_over_quota(&self) {
        self.shared.counters.envelopes_over_quota.inc();
    }

    /// Counts forged statements refused (see `Links::count_envelope_forged`).
    pub fn count_envelope_forged(&self, count: u64) {
        self.shared.counters.envelopes_forged.add(count);
    }

    pub fn counters(&self) -> api_types::TransportCounters {
        let mut c = self.shared.counters.snapshot();
        c.links_up = self.shared.lock().links.len() as u64;
        c
    }

    /// Every peer with a link, a dial, a backoff or a remembered failure (diagnostics).
    pub fn links(&self) -> Vec<LinkReport> {
        let st = self.shared.lock();
        let mut peers: HashSet<&NodeId> = st.links.keys().collect();
        peers.extend(st.dialing.iter());
        peers.extend(st.redial.keys());
        peers.extend(st.failures.peers());
        peers
            .into_iter()
            .map(|peer| {
                let link = st.links.get(peer);
                let phase = if link.is_some() {
                    LinkPhase::Up
                } else if st.dialing.contains(peer) {
                    LinkPhase::Dialling
                } else if let Some((attempts, _)) = st.redial.get(peer) {
                    LinkPhase::Backoff {
                        attempts: *attempts,
                    }
                } else {
                    LinkPhase::None
                };
                let health = link.map(|l| &l.health);
                LinkReport {
                    peer: peer.clone(),
                    phase,
                    addr: health.and_then(|h| h.addr),
                    rtt: health.and_then(|h| h.rtt()),
                    key_fingerprint: health.map(|h| h.keys.fingerprint()),
                    up_since_ms: health.map(|h| h.up_since_ms),
                    last_error: st.failures.get(peer).cloned(),
                    copy_of: st.copies.get(peer).cloned(),
                }
            })
            .collect()
    }

    /// Ids held by two live nodes at once, as proven by handshakes (this node's own
    /// id included, with the other computers' addresses).
    pub fn twins(&self) -> Vec<Twin> {
        let st = self.shared.lock();
        st.twins.twins(&st.config.node_id, Instant::now())
    }

    pub fn is_twinned(&self, peer: &NodeId) -> bool {
        let st = self.shared.lock();
        st.twins
            .is_twinned(peer, &st.config.node_id, Instant::now())
    }

    /// Checks who holds `expected`'s keys at `addr` (discovery suspects twins there):
    /// a probe handshake, no link. A proof is kept for `hold`; a peer proven at two
    /// addresses is twinned, its link closed and new ones refused until the proofs
    /// expire. An answer proving another id than discovery claimed is counted as a
    /// refused identity.
    pub fn check_identity_at(&self, expected: &NodeId, addr: SocketAddr, hold: Duration) {
        let config = self.shared.config();
        if !config.ip_is_admitted(addr.ip()) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let expected = expected.clone();
        self.shared.tasks.spawn(async move {
            let probed = tokio::select! {
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, link::probe(
                    addr, &shared.keys, &config.shared_secret, &config.node_id)) => r,
                _ = shared.cancel.cancelled() => return,
            };
            let proven = match probed {
                Ok(Ok((id, _))) => id,
                Ok(Err(e)) => {
                    count_identity_failure(&shared, &e);
                    tracing::debug!(%addr, "identity check failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            if proven != expected {
                shared.counters.refused_identity.inc();
                tracing::warn!(%addr, claimed = %expected, %proven,
                    "discovery announced an id that the node at this address does not hold");
                return;
            }
            let now = Instant::now();
            let mut st = shared.lock();
            let own = st.config.node_id.clone();
            let was = st.twins.is_twinned(&expected, &own, now);
            st.twins.prove(&expected, addr, now + hold, now);
            if !was && st.twins.is_twinned(&expected, &own, now) {
                let addresses = st.twins.twins(&own, now);
                tracing::warn!(node = %expected, ?addresses,
                    "two live nodes hold the same identity; links with it are refused until one is gone");
                if expected != own {
                    if let Some(link) = st.links.get(&expected) {
                        link.close(DUPLICATE_IDENTITY);
                    }
                }
            }
        });
    }

    pub fn is_linked(&self, peer: &NodeId) -> bool {
        self.shared.lock().links.contains_key(peer)
    }

    /// Queues a frame on the peer's link without waiting: envelopes on its bulk lane,
    /// acks, rejects and closes on its control lane (sent first). `NoLink` if there is
    /// none (dial with `connect`), `Busy` if that lane is full.
    pub fn send(&self, peer: &NodeId, frame: Frame) -> Result<(), SendError> {
        let st = self.shared.lock();
        let link = st.links.get(peer).ok_or(SendError::NoLink)?;
        link.lanes
            .for_frame(&frame)
            .try_send(frame)
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::Busy,
                mpsc::error::TrySendError::Closed(_) => SendError::NoLink,
            })
    }

    /// Queues a frame like `send`, but waits (up to `within`) for room on its lane
    /// instead of failing at once: the back-pressure of a peer that reads slowly.
    /// `Busy` if the lane stayed full for `within`; `NoLink` if there is no link, it
    /// went down while waiting, or the transport is shutting down.
    pub async fn send_wait(
        &self,
        peer: &NodeId,
        frame: Frame,
        within: Duration,
    ) -> Result<(), SendError> {
        let lane = {
            let st = self.shared.lock();
            let link = st.links.get(peer).ok_or(SendError::NoLink)?;
            link.lanes.for_frame(&frame).clone()
        };
        // The reservation holds the frame's place, so it goes out in the order the
        // waiting callers got room, and a caller that gives up leaves nothing queued.
        tokio::select! {
            reserved = tokio::time::timeout(within, lane.reserve()) => match reserved {
                Ok(Ok(permit)) => {
                    permit.send(frame);
                    Ok(())
                }
                Ok(Err(_closed)) => Err(SendError::NoLink),
                Err(_elapsed) => Err(SendError::Busy),
            },
            _ = self.shared.cancel.cancelled() => Err(SendError::NoLink),
        }
    }

    /// Tasks of this transport still running (the accept loop, handshakes, three per
    /// link). Zero once `shutdown` has returned.
    pub fn running_tasks(&self) -> usize {
        self.shared.tasks.len()
    }

    /// Dials `peer` at `addr` unless a link exists, a dial is under way, the peer or its
    /// address is not admitted, or its redial backoff has not run out.
    pub fn connect(&self, peer: &NodeId, addr: SocketAddr) {
        let config = {
            let mut st = self.shared.lock();
            let config = Arc::clone(&st.config);
            if st.twins.is_twinned(peer, &config.node_id, Instant::now()) {
                // Not dialled: which twin answered would decide who gets the messages.
                self.shared.counters.refused_twin.inc();
                return;
            }
            if st.links.contains_key(peer)
                || st.dialing.contains(peer)
                || *peer == config.node_id
                || config.peer_is_blocked(peer)
                || !config.ip_is_admitted(addr.ip())
                || st
                    .redial
                    .get(peer)
                    .is_some_and(|(_, at)| *at > Instant::now())
            {
                return;
            }
            if st.dialing.len() >= MAX_DIALS {
                // The next heartbeat, send or settings change asks again.
                self.shared.counters.dials_deferred.inc();
                return;
            }
            st.dialing.insert(peer.clone());
            config
        };
        let shared = Arc::clone(&self.shared);
        let peer = peer.clone();
        self.shared.tasks.spawn(async move {
            let result = tokio::select! {
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, dial_checked(&shared, &config, &peer, addr)) => r,
                _ = shared.cancel.cancelled() => return,
            };
            let outcome = match result {
                Ok(Ok(link)) => Ok(link),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("handshake timed out".to_string()),
            };
            {
                let mut st = shared.lock();
                st.dialing.remove(&peer);
                match &outcome {
                    Ok(_) => {
                        st.redial.remove(&peer);
                    }
                    Err(e) => {
                        st.failures.record(&peer, format!("dial to {addr} failed: {e}"));
                        let attempts = st.redial.get(&peer).map_or(0, |(n, _)| *n) + 1;
                        let delay = redial_delay(&config, attempts);
                        let now = Instant::now();
                        let sweep_due = st
                            .redial_swept
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
                        if st.redial.len() >= MAX_REDIAL_ENTRIES && sweep_due {
                            // Rare (thousands of unreachable ids): a backoff that ran
                            // out tells nothing, so those go first.
                            st.redial_swept = Some(now);
                            st.redial.retain(|_, (_, at)| *at > now);
                        }
                        if st.redial.len() < MAX_REDIAL_ENTRIES || st.redial.contains_key(&peer) {
                            st.redial.insert(peer.clone(), (attempts, Instant::now() + delay));
                        }
                    }
                }
            }
            match outcome {
                Ok((ws, session, keys)) => {
                    shared.counters.links_dialled.inc();
                    register(&shared, peer, true, addr, ws, session, keys, None).await;
                }
                Err(e) => {
                    shared.counters.dials_failed.inc();
                    tracing::debug!(%peer, %addr, "dial failed: {e}");
                }
            }
        });
    }

    /// Closes the link to `peer` (if any), telling it why.
    pub fn close_peer(&self, peer: &NodeId, reason: &str) {
        let st = self.shared.lock();
        if let Some(link) = st.links.get(peer) {
            link.close(reason);
        }
    }

    /// Applies new settings: rebinds the listener if its address changed, and closes
    /// every link, since the secret, blocks or subnets they were admitted under may have
    /// changed (peers redial at once; the outbox resends what was not acked).
    pub async fn reconfigure(&self, config: TransportConfig) -> Result<(), TransportError> {
        let old = self.shared.config();
        if *old == config {
            return Ok(());
        }
        if !old.same_listener(&config) {
            self.listen(config.listen).await?;
        }
        let mut st = self.shared.lock();
        st.config = Arc::new(config);
        st.redial.clear();
        for link in st.links.values() {
            link.close("settings changed");
        }
        Ok(())
    }

    /// Ends the listener and every link, and waits for every task the transport
    /// started (see [`Transport`] for the order).
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

fn redial_delay(config: &TransportConfig, attempts: u32) -> Duration {
    let base = config
        .redial_first
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
        .min(config.redial_max);
    base.mul_f64(0.8 + 0.4 * rand::random::<f64>())
}

async fn dial_checked(
    shared: &Arc<Shared>,
    config: &TransportConfig,
    peer: &NodeId,
    addr: SocketAddr,
) -> Result<(Ws, Session, PeerKeys), LinkError> {
    let secret = &config.shared_secret;
    let (mut ws, mut session, keys, changes) = link::dial(
        addr,
        peer,
        &shared.keys,
        secret,
        &config.node_id,
        &shared.previous,
    )
    .await
    .inspect_err(|e| count_identity_failure(shared, e))?;
    let checked = if names_a_blocked_id(shared, config, &changes) {
        Err("blocked")
    } else {
        check_keys(shared, peer, &keys, addr).await
    };
    if let Err(reason) = checked {
        let _ = link::send_frame(&mut ws, &mut session, &Frame::close(reason)).await;
        return Err(LinkError::Refused(reason.to_string()));
    }
    reattach(shared, changes).await;
    Ok((ws, session, keys))
}

/// A peer whose identity statements say it was a blocked node is that node: a new
/// key does not lift a block (docs/PROTOCOL.md, "Node ids"). Counted as a blocked peer.
fn names_a_blocked_id(
    shared: &Shared,
    config: &TransportConfig,
    changes: &[IdentityChange],
) -> bool {
    let blocked = changes.iter().any(|c| config.peer_is_blocked(&c.old_id));
    if blocked {
        shared.counters.refused_blocked_peer.inc();
    }
    blocked
}

/// Moves what the store knew under a linked peer's earlier ids to its id (before its
/// link is up, so its queued envelopes go out on it). A statement whose old keys do
/// not vouch for its old id is counted as a refused identity. A copy statement moves
/// nothing (the old id lives on at its twin): it is remembered for the peers list.
async fn reattach(shared: &Shared, changes: Vec<IdentityChange>) {
    for change in changes {
        if change.kind == ChangeKind::Copied {
            let mut st = shared.lock();
            if st.copies.len() < MAX_COPIES || st.copies.contains_key(&change.new_id) {
                tracing::info!(old = %change.old_id, new = %change.new_id,
                    "a colleague runs on a copy of another id's computer under a new identity");
                st.copies.insert(change.new_id, change.old_id);
            }
            continue;
        }
        let (old, new) = (change.old_id.clone(), change.new_id.clone());
        let result = shared
            .store
            .reattach_identity(
                change.old_id,
                change.old_keys.to_bytes(),
                change.old_id_derived,
                change.new_id,
            )
            .await;
        match result {
            Ok(Reattach::Moved) => {
                tracing::info!(%old, %new, "a colleague's earlier id re-attached to its new one");
            }
            Ok(Reattach::NothingKnown) => {}
            Ok(Reattach::Refused) => {
                shared.counters.refused_identity.inc();
                tracing::warn!(%old, %new,
                    "refused an identity change: the keys that signed it never held the old id");
            }
            Err(e) => tracing::warn!(%old, %new, "cannot re-attach an earlier id: {e}"),
        }
    }
}

/// Counts a handshake whose peer did not prove the id it claimed (its keys derive
/// another id, its signing key is not bound to its link key), or proved another id
/// than the one discovery announced at its address.
fn count_identity_failure(shared: &Shared, error: &LinkError) {
    if matches!(
        error,
        LinkError::Noise(NoiseError::Identity(_)) | LinkError::WrongPeer { .. }
    ) {
        shared.counters.refused_identity.inc();
        tracing::warn!("refused a peer whose keys do not prove its id: {error}");
    }
}

/// Records the keys a proven id showed. Ids are derived from keys, so they always match
/// for an id seen before; the book keeps which keys an id of an older (random-id)
/// version was seen with, which an identity change is checked against.
async fn check_keys(
    shared: &Arc<Shared>,
    peer: &NodeId,
    keys: &PeerKeys,
    addr: SocketAddr,
) -> Result<(), &'static str> {
    match shared
        .store
        .pin_link_keys(peer.clone(), keys.to_bytes())
        .await
    {
        Ok(KeyPin::Pinned) => {
            tracing::info!(%peer, keys = %keys.fingerprint(), "pinned the keys of a new peer");
            Ok(())
        }
        Ok(KeyPin::Matches) => Ok(()),
        Ok(KeyPin::Mismatch) => {
            shared.counters.refused_key_mismatch.inc();
            tracing::warn!(%peer, %addr, keys = %keys.fingerprint(),
                "refused a link: this node id showed other keys than the ones pinned");
            let _ = shared.events.try_send(LinkEvent::KeyMismatch {
                peer: peer.clone(),
                addr,
            });
            Err("key mismatch")
        }
        Err(e) => {
            tracing::warn!(%peer, "cannot check the peer's keys: {e}");
            Err("busy")
        }
    }
}

/// The link listener, with an accept queue as long as the kernel allows
/// ([`LISTEN_BACKLOG`]): tokio's `bind` asks for 1,024, which a port scanner's burst of
/// reconnects fills between two turns of the accept loop; the kernel then drops the
/// last step of every further TCP handshake (an honest dial included), and the dialler
/// waits for retransmissions instead of being refused or admitted at once.
fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted node may bind while old connections
    // of its previous run linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => break,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accepting a LAN connection failed: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = cancel.cancelled() => break,
                }
                continue;
            }
        };
        let Some((slot, evicted)) = reserve(&shared, addr.ip()) else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let tasks = shared.tasks.clone();
        tasks.spawn(async move {
            let result = tokio::select! {
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_checked(&shared, tcp, addr)) => r,
                _ = shared.cancel.cancelled() => return,
                _ = evicted.cancelled() => {
                    tracing::debug!(%addr, "pending inbound handshake evicted for a newer connection");
                    return;
                }
            };
            match result {
                Ok(Ok((ws, session, peer, keys))) => {
                    if !slot.establish() {
                        tracing::debug!(%addr, "inbound handshake finished after its slot was evicted");
                        return;
                    }
                    shared.counters.links_accepted.inc();
                    register(&shared, peer, false, addr, ws, session, keys, Some(slot)).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, "inbound link refused: {e}"),
                Err(_) => {
                    shared.counters.handshake_failed.inc();
                    tracing::debug!(%addr, "inbound handshake timed out");
                }
            }
        });
    }
}

/// Admission before any byte is read: address policy, the per-address cap, the
/// per-address handshake rate, then a slot — the oldest pending handshake's when all are
/// taken ([`SlotTable`]). Returns the slot and the token that stops this handshake if a
/// newer connection takes its slot in turn.
fn reserve(shared: &Arc<Shared>, ip: IpAddr) -> Option<(Slot, CancellationToken)> {
    let mut st = shared.lock();
    if !st.config.ip_is_admitted(ip) {
        shared.counters.refused_address.inc();
        return None;
    }
    if st.slots.ip_is_full(ip) {
        shared.counters.refused_capacity.inc();
        return None;
    }
    if !st.handshake_rate.allow(ip, Instant::now().into_std()) {
        shared.counters.refused_rate.inc();
        return None;
    }
    let stop = CancellationToken::new();
    match st.slots.admit(ip, stop.clone()) {
        Admission::Admitted { id, evicted } => {
            if let Some(evicted) = evicted {
                evicted.cancel();
                shared.counters.handshakes_evicted.inc();
            }
            let slot = Slot {
                shared: Arc::clone(shared),
                id,
            };
            Some((slot, stop))
        }
        Admission::Full => {
            shared.counters.refused_capacity.inc();
            None
        }
    }
}

async fn accept_checked(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<(Ws, Session, NodeId, PeerKeys), LinkError> {
    let _ = tcp.set_nodelay(true);
    let config = shared.config();
    let accepted = match link::accept(
        tcp,
        &shared.keys,
        &config.shared_secret,
        &config.node_id,
        &shared.previous,
    )
    .await
    {
        Ok(ok) => ok,
        Err(e) => {
            shared.counters.handshake_failed.inc();
            count_identity_failure(shared, &e);
            return Err(e);
        }
    };
    let link::Accepted {
        mut ws,
        mut session,
        peer,
        keys,
        probe,
        changes,
    } = accepted;
    let twinned = {
        let st = shared.lock();
        st.twins.is_twinned(&peer, &config.node_id, Instant::now())
    };
    let refusal = if probe {
        // Its handshake proved who we are; that was all it asked.
        Some("identity checked")
    } else if peer == config.node_id {
        Some("that is this node's own id")
    } else if config.peer_is_blocked(&peer) {
        shared.counters.refused_blocked_peer.inc();
        Some("blocked")
    } else if names_a_blocked_id(shared, &config, &changes) {
        Some("blocked")
    } else if twinned {
        shared.counters.refused_twin.inc();
        Some(DUPLICATE_IDENTITY)
    } else {
        check_keys(shared, &peer, &keys, addr).await.err()
    };
    if let Some(reason) = refusal {
        let _ = link::send_frame(&mut ws, &mut session, &Frame::close(reason)).await;
        let _ = ws.close(None).await;
        return Err(LinkError::Refused(reason.to_string()));
    }
    reattach(shared, changes).await;
    link::send_frame(&mut ws, &mut session, &Frame::Ready).await?;
    Ok((ws, session, peer, keys))
}

/// Makes an established link the peer's link, or closes it if the peer already has the
/// preferred one. With two links (both sides dialled at once) both nodes keep the one
/// dialled by the smaller node id, so they agree without talking.
#[allow(clippy::too_many_arguments)]
async fn register(
    shared: &Arc<Shared>,
    peer: NodeId,
    initiated_locally: bool,
    addr: SocketAddr,
    mut ws: Ws,
    mut session: Session,
    keys: PeerKeys,
    slot: Option<Slot>,
) {
    let (lanes, outgoing) = link::lanes();
    let cancel = shared.cancel.child_token();
    let link_health = Arc::new(LinkHealth::new(Some(addr), keys));
    let (id, config, refused) = {
        let mut st = shared.lock();
        let config = Arc::clone(&st.config);
        let id = st.next_id;
        st.next_id += 1;
        let refused = if config.peer_is_blocked(&peer) {
            Some("blocked")
        } else if st.twins.is_twinned(&peer, &config.node_id, Instant::now()) {
            shared.counters.refused_twin.inc();
            Some(DUPLICATE_IDENTITY)
        } else {
            let preferred = initiated_locally == (config.node_id < peer);
            match st.links.get(&peer) {
                Some(existing) if existing.initiated_locally != initiated_locally && !preferred => {
                    shared.counters.duplicate_links.inc();
                    Some("duplicate link")
                }
                Some(existing) => {
                    // The new link wins (preferred, or a redial replacing a dying one).
                    if existing.initiated_locally != initiated_locally {
                        shared.counters.duplicate_links.inc();
                    }
                    existing.cancel.cancel();
                    None
                }
                None => None,
            }
        };
        if refused.is_none() {
            st.links.insert(
                peer.clone(),
                LinkEntry {
                    id,
                    initiated_locally,
                    lanes,
                    cancel: cancel.clone(),
                    health: Arc::clone(&link_health),
                },
            );
        }
        (id, config, refused)
    };
    if let Some(reason) = refused {
        let _ = link::send_frame(&mut ws, &mut session, &Frame::close(reason)).await;
        let _ = ws.close(None).await;
        return;
    }
    tracing::debug!(%peer, initiated_locally, "link up");
    let announced = tokio::select! {
        sent = shared.events.send(LinkEvent::Up { peer: peer.clone() }) => sent.is_ok(),
        _ = cancel.cancelled() => false,
    };
    if !announced {
        // The entry stays until this link's id is replaced or removed: take it out so
        // `send` does not queue on a link that never runs.
        let mut st = shared.lock();
        if st.links.get(&peer).is_some_and(|l| l.id == id) {
            st.links.remove(&peer);
        }
        return;
    }
    let running = Running {
        peer: peer.clone(),
        keys,
        outgoing,
        incoming: shared.events.clone(),
        cancel,
        keepalive: config.keepalive,
        dead_after: config.dead_after,
        counters: Arc::clone(&shared.counters),
        tasks: shared.tasks.clone(),
        health: link_health,
    };
    let shared = Arc::clone(shared);
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let end = link::run(ws, session, running).await;
        drop(slot);
        shared.counters.links_closed.inc();
        let removed = {
            let mut st = shared.lock();
            if st.links.get(&peer).is_some_and(|l| l.id == id) {
                st.links.remove(&peer);
                if !shared.cancel.is_cancelled() {
                    let reason = health::describe_end(&end, config.dead_after);
                    st.failures.record(&peer, reason);
                }
                true
            } else {
                false
            }
        };
        tracing::debug!(%peer, ?end, "link down");
        if removed {
            // Nobody waits for it once the transport is stopping.
            tokio::select! {
                _ = shared.events.send(LinkEvent::Down { peer, end }) => {}
                _ = shared.cancel.cancelled() => {}
            }
        }
    });
}
