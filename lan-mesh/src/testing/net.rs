//! [`MemoryNet`]: links between nodes in one process, for tests — what the transport
//! does for delivery (frames to a linked peer, dials, closes), without sockets,
//! handshakes or timers of its own.
//!
//! Every node that [`joins`](MemoryNet::join) gets a [`MemoryLinks`] (its [`Links`])
//! and the receiving end of its `LinkEvent`s, exactly what `Transport::start` hands to
//! delivery. A frame one node sends on a link is queued on the other's events as
//! `LinkEvent::Frame` with the sender's keys; a link coming up or going down is an
//! `Up` / `Down` on both sides. The receiving end may be a delivery engine
//! ([`super::Engine`]) or a test playing a peer by hand ([`super::ScriptedPeer`]).
//!
//! A link exists only between two nodes that are both reachable: `connect` links them
//! a moment later (`DIAL_TIME`, from a task of its own, as a dial completes) when the
//! peer is reachable at that address, and does nothing otherwise (a dial that fails —
//! delivery's retries and discovery's events bring it back). Every frame sent is logged ([`MemoryNet::sent`]); a
//! [`filter`](MemoryNet::set_filter) may drop frames on the way (a lost ack) or look
//! at the world at the instant a frame leaves (was it stored before it was acked?).
//!
//! A peer's events queue holds `EVENTS_QUEUE` entries like the node's; a full one is
//! `Busy` for `send` and is waited on by `send_wait`, as a full link lane is.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use api_types::NodeId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::links::{Links, SendFuture};
use crate::transport::{Frame, LinkEnd, LinkEvent, PeerKeys, SendError};

/// A node's incoming events, as the node sizes its channel (src-tauri's mesh).
const EVENTS_QUEUE: usize = 1024;
/// How long a dial takes to become a link (a handshake on a LAN: about a millisecond).
const DIAL_TIME: Duration = Duration::from_millis(1);
/// The port every node "listens" on; each node gets an address of its own in
/// 192.0.2.0/24 (TEST-NET-1: documentation only, never routed), and nothing ever
/// connects to it — it is a name delivery hands back to `connect`.
const PORT: u16 = 19123;

/// What a filter decides about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    /// Lost on the way: the sender's `send` still succeeds (it was written).
    Drop,
}

/// A frame one node wrote on its link to another.
#[derive(Debug, Clone)]
pub struct SentFrame {
    pub from: NodeId,
    pub to: NodeId,
    pub frame: Frame,
    /// On tokio's clock (paused in tests).
    pub at: Instant,
    /// False when a filter dropped it.
    pub delivered: bool,
}

/// Decides each frame's fate; called without the network's lock held, so it may read
/// stores or anything else.
pub type Filter = Arc<dyn Fn(&SentFrame) -> Verdict + Send + Sync>;

/// Inbound envelopes a node refused, as the transport counts them for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    pub dropped: u64,
    pub rejected: u64,
    /// Of those, forged statements (`Links::count_envelope_forged`).
    pub forged: u64,
    /// Left unanswered: the sender was over a quota.
    pub over_quota: u64,
}

struct Node {
    events: mpsc::Sender<LinkEvent>,
    keys: PeerKeys,
    addr: SocketAddr,
    reachable: bool,
    refusals: Refusals,
}

#[derive(Default)]
struct NetState {
    nodes: BTreeMap<NodeId, Node>,
    /// Links, each pair once (lower id first).
    links: BTreeSet<(NodeId, NodeId)>,
    sent: Vec<SentFrame>,
    dials: Vec<(NodeId, NodeId)>,
    dialing: BTreeSet<(NodeId, NodeId)>,
    closes: Vec<(NodeId, NodeId, String)>,
    filter: Option<Filter>,
}

/// The in-process network (see the module docs). Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct MemoryNet(Arc<Mutex<NetState>>);

/// One node's [`Links`] on a [`MemoryNet`].
#[derive(Clone)]
pub struct MemoryLinks {
    net: MemoryNet,
    local: NodeId,
}

fn pair(a: &NodeId, b: &NodeId) -> (NodeId, NodeId) {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

impl NetState {
    fn linked(&self, a: &NodeId, b: &NodeId) -> bool {
        self.links.contains(&pair(a, b))
    }

    /// Queues an event for `node`. The queue is deep enough for any test's link events;
    /// a full one would be a test flooding a node, and loses the event like a crash.
    fn notify(&self, node: &NodeId, event: LinkEvent) {
        if let Some(n) = self.nodes.get(node) {
            if n.events.try_send(event).is_err() {
                tracing::warn!(%node, "a test node's link events are full; event lost");
            }
        }
    }

    fn up(&mut self, a: &NodeId, b: &NodeId) -> bool {
        let both = self.nodes.get(a).is_some_and(|n| n.reachable)
            && self.nodes.get(b).is_some_and(|n| n.reachable);
        if !both || a == b || !self.links.insert(pair(a, b)) {
            return false;
        }
        self.notify(a, LinkEvent::Up { peer: b.clone() });
        self.notify(b, LinkEvent::Up { peer: a.clone() });
        true
    }

    /// Takes the link down; `closer` closed it on purpose (it sees `Local`, the other
    /// `Remote`), or neither did (both see `Failed`).
    fn down(&mut self, a: &NodeId, b: &NodeId, closer: Option<&NodeId>, why: &str) -> bool {
        if !self.links.remove(&pair(a, b)) {
            return false;
        }
        for (me, other) in [(a, b), (b, a)] {
            let end = match closer {
                Some(c) if c == me => LinkEnd::Local(why.to_string()),
                Some(_) => LinkEnd::Remote(why.to_string()),
                None => LinkEnd::Failed(why.to_string()),
            };
            self.notify(
                me,
                LinkEvent::Down {
                    peer: other.clone(),
                    end,
                },
            );
        }
        true
    }
}

impl MemoryNet {
    pub fn new() -> MemoryNet {
        MemoryNet::default()
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a reachable node with the public half of its keys (what its links prove).
    /// Returns its links and its incoming events, for delivery or a scripted peer.
    pub fn join(&self, id: &NodeId, keys: PeerKeys) -> (MemoryLinks, mpsc::Receiver<LinkEvent>) {
        let (tx, rx) = mpsc::channel(EVENTS_QUEUE);
        let mut st = self.lock();
        let host = u8::try_from(st.nodes.len() % 250 + 1).unwrap_or(1);
        st.nodes.insert(
            id.clone(),
            Node {
                events: tx,
                keys,
                addr: SocketAddr::from((Ipv4Addr::new(192, 0, 2, host), PORT)),
                reachable: true,
                refusals: Refusals::default(),
            },
        );
        (
            MemoryLinks {
                net: self.clone(),
                local: id.clone(),
            },
            rx,
        )
    }

    /// The address a node "listens" on (what discovery would announce).
    pub fn addr(&self, id: &NodeId) -> Option<SocketAddr> {
        self.lock().nodes.get(id).map(|n| n.addr)
    }

    pub fn keys(&self, id: &NodeId) -> Option<PeerKeys> {
        self.lock().nodes.get(id).map(|n| n.keys)
    }

    /// Brings a link up between two reachable nodes (one of them dialled the other).
    /// False if it was up already or either is unreachable.
    pub fn link(&self, a: &NodeId, b: &NodeId) -> bool {
        self.lock().up(a, b)
    }

    /// The link breaks (a cable, a crash): both sides see `Down` with `Failed`.
    pub fn cut(&self, a: &NodeId, b: &NodeId) -> bool {
        self.lock().down(a, b, None, "cut")
    }

    /// An unreachable node loses every link and cannot be linked until it is
    /// reachable again (switched off, or behind a partition).
    pub fn set_reachable(&self, id: &NodeId, reachable: bool) {
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(id) {
            n.reachable = reachable;
        }
        if !reachable {
            let peers: Vec<(NodeId, NodeId)> = st
                .links
                .iter()
                .filter(|(a, b)| a == id || b == id)
                .cloned()
                .collect();
            for (a, b) in peers {
                st.down(&a, &b, None, "unreachable");
            }
        }
    }

    pub fn is_linked(&self, a: &NodeId, b: &NodeId) -> bool {
        self.lock().linked(a, b)
    }

    pub fn set_filter(&self, filter: impl Fn(&SentFrame) -> Verdict + Send + Sync + 'static) {
        self.lock().filter = Some(Arc::new(filter));
    }

    pub fn clear_filter(&self) {
        self.lock().filter = None;
    }

    /// Every frame written so far, in order.
    pub fn sent(&self) -> Vec<SentFrame> {
        self.lock().sent.clone()
    }

    /// The frames `from` wrote to `to`, in order.
    pub fn sent_between(&self, from: &NodeId, to: &NodeId) -> Vec<SentFrame> {
        self.lock()
            .sent
            .iter()
            .filter(|s| s.from == *from && s.to == *to)
            .cloned()
            .collect()
    }

    /// Every dial `connect` started: (dialler, peer).
    pub fn dials(&self) -> Vec<(NodeId, NodeId)> {
        self.lock().dials.clone()
    }

    /// Every `close_peer` call: (closer, peer, reason).
    pub fn closes(&self) -> Vec<(NodeId, NodeId, String)> {
        self.lock().closes.clone()
    }

    pub fn refusals(&self, id: &NodeId) -> Refusals {
        self.lock()
            .nodes
            .get(id)
            .map(|n| n.refusals)
            .unwrap_or_default()
    }

    /// Checks the link and asks the filter. The frame as it will be logged, and the
    /// peer's queue when it is to be delivered (`None`: dropped on the way).
    fn prepare(
        &self,
        from: &NodeId,
        to: &NodeId,
        frame: Frame,
    ) -> Result<(SentFrame, Option<mpsc::Sender<LinkEvent>>), SendError> {
        let (filter, target) = {
            let st = self.lock();
            if !st.linked(from, to) {
                return Err(SendError::NoLink);
            }
            let Some(target) = st.nodes.get(to) else {
                return Err(SendError::NoLink);
            };
            (st.filter.clone(), target.events.clone())
        };
        let mut sent = SentFrame {
            from: from.clone(),
            to: to.clone(),
            frame,
            at: Instant::now(),
            delivered: true,
        };
        if let Some(filter) = filter {
            sent.delivered = filter(&sent) == Verdict::Deliver;
        }
        let target = sent.delivered.then_some(target);
        Ok((sent, target))
    }

    /// The event a delivered frame is on its receiver's side.
    fn event(&self, sent: &SentFrame) -> Result<LinkEvent, SendError> {
        let keys = self.keys(&sent.from).ok_or(SendError::NoLink)?;
        Ok(LinkEvent::Frame {
            peer: sent.from.clone(),
            keys,
            frame: sent.frame.clone(),
        })
    }

    fn log(&self, sent: SentFrame) {
        self.lock().sent.push(sent);
    }
}

impl MemoryLinks {
    pub fn id(&self) -> &NodeId {
        &self.local
    }

    pub fn net(&self) -> &MemoryNet {
        &self.net
    }
}

impl Links for MemoryLinks {
    fn send(&self, peer: &NodeId, frame: Frame) -> Result<(), SendError> {
        let (sent, target) = self.net.prepare(&self.local, peer, frame)?;
        if let Some(target) = target {
            // A full queue refuses the frame, like a full lane: nothing was written.
            target
                .try_send(self.net.event(&sent)?)
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => SendError::Busy,
                    mpsc::error::TrySendError::Closed(_) => SendError::NoLink,
                })?;
        }
        self.net.log(sent);
        Ok(())
    }

    fn send_wait<'a>(&'a self, peer: &'a NodeId, frame: Frame, within: Duration) -> SendFuture<'a> {
        Box::pin(async move {
            let (sent, target) = self.net.prepare(&self.local, peer, frame)?;
            if let Some(target) = target {
                let event = self.net.event(&sent)?;
                match tokio::time::timeout(within, target.reserve()).await {
                    Ok(Ok(permit)) => permit.send(event),
                    Ok(Err(_closed)) => return Err(SendError::NoLink),
                    Err(_elapsed) => return Err(SendError::Busy),
                }
            }
            self.net.log(sent);
            Ok(())
        })
    }

    fn connect(&self, peer: &NodeId, addr: SocketAddr) {
        let key = (self.local.clone(), peer.clone());
        {
            let mut st = self.net.lock();
            // As the transport: no second dial while one is under way or linked.
            if st.linked(&self.local, peer) || !st.dialing.insert(key.clone()) {
                return;
            }
            st.dials.push(key.clone());
        }
        // The link comes up a handshake later, never inside the call (delivery must
        // cope with `NoLink` right after dialling, as with the transport).
        let net = self.net.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DIAL_TIME).await;
            let mut st = net.lock();
            st.dialing.remove(&key);
            // A dial reaches the peer only at its own address.
            if st.nodes.get(&key.1).is_some_and(|n| n.addr == addr) {
                st.up(&key.0, &key.1);
            }
        });
    }

    fn close_peer(&self, peer: &NodeId, reason: &str) {
        let mut st = self.net.lock();
        st.closes
            .push((self.local.clone(), peer.clone(), reason.to_string()));
        let local = self.local.clone();
        st.down(&local, peer, Some(&local), reason);
    }

    fn is_linked(&self, peer: &NodeId) -> bool {
        self.net.lock().linked(&self.local, peer)
    }

    fn count_envelope_refused(&self, rejected: bool) {
        let mut st = self.net.lock();
        if let Some(n) = st.nodes.get_mut(&self.local) {
            if rejected {
                n.refusals.rejected += 1;
            } else {
                n.refusals.dropped += 1;
            }
        }
    }

    fn count_envelope_forged(&self, count: u64) {
        let mut st = self.net.lock();
        if let Some(n) = st.nodes.get_mut(&self.local) {
            n.refusals.forged += count;
        }
    }

    fn count_envelope_over_quota(&self) {
        let mut st = self.net.lock();
        if let Some(n) = st.nodes.get_mut(&self.local) {
            n.refusals.over_quota += 1;
        }
    }
}
