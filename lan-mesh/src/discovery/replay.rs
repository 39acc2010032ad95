//! Replay protection per sender: a packet is accepted at most once, judged only by what
//! that sender sent before — never by comparing its clock with ours, because office PCs
//! drift by minutes and some are hours or days off.
//!
//! Every packet carries the sender's instance id (random per process start) and a
//! sequence number that counts up per packet within the instance. Per sender we keep its
//! current instance, a sliding window of the sequence numbers accepted from it (as IPsec
//! and WireGuard do), and the last few instances it retired. So:
//!
//! - a packet whose sequence number was already accepted, or lies further behind the
//!   newest than the window reaches, is refused (`Replayed` / `Stale`);
//! - a packet of an instance the sender has already replaced is refused (`Stale`): a
//!   straggler or a replay of the sender's previous run;
//! - a packet of a new instance starts a fresh window: the sender restarted.
//!
//! Memory is bounded: at most [`DEFAULT_SENDER_CAPACITY`] unproven senders, the least
//! recently heard evicted first (an O(log n) index keeps that cheap). A sender's state
//! is small and holds no allocation (its id as 128 bits, a 64-packet window: a sender's
//! datagrams are a heartbeat each interval and the odd answer, never reordered by
//! dozens), so the table an insider can fill with made-up ids is ~0.85 MB with its
//! spare room and eviction index, not a scatter of small allocations that pins the
//! allocator's pages. Senders proven on
//! a link are *protected*: they leave the eviction order, so an insider announcing
//! thousands of made-up ids cannot evict a colleague's state and replay its packets.
//! They are as many as the node has linked peers. What this cannot know is a
//! sender it has no state for — the first packet after our own start, or after the
//! sender was evicted — so one captured packet can be replayed once then; the registry
//! ignores packets older than what it already heard from the peer, and the link
//! handshake is what proves who is at an address (docs/PROTOCOL.md, "Limits").
//!
//! Senders of an older version carry no sequence number; their timestamp (milliseconds,
//! monotonic in practice within a run) stands in for it.

use std::collections::{BTreeSet, HashMap, HashSet};

use api_types::NodeId;

use super::packet::InstanceId;
use crate::transport::replay_window::ReplayWindow;

/// Far more nodes than any office LAN segment has (256 desktops is a large one), at
/// ~80 bytes of state per sender, ~210 with the tables' spare room and the eviction
/// index (measured with a heap profile after a flood of made-up ids).
pub const DEFAULT_SENDER_CAPACITY: usize = 4096;
/// Restarts remembered per sender, so stragglers of the last few runs stay refused.
const RETIRED_INSTANCES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    Fresh,
    /// Behind the sender's window, or from an instance the sender has replaced.
    Stale,
    /// Already accepted from this sender.
    Replayed,
}

/// How far behind the newest of a sender's packets one may arrive, in 64-packet words.
const WINDOW_WORDS: usize = 1;

/// A sender's id as a fixed-size key ([`NodeId::to_bits`]).
type SenderKey = u128;

#[derive(Debug)]
struct SenderState {
    instance: InstanceId,
    window: ReplayWindow<WINDOW_WORDS>,
    retired: Vec<InstanceId>,
    /// Position in the eviction order (higher = heard more recently).
    touched: u64,
}

#[derive(Debug)]
pub struct ReplayGuard {
    capacity: usize,
    senders: HashMap<SenderKey, SenderState>,
    /// Unprotected senders by last use: the eviction order.
    by_touch: BTreeSet<(u64, SenderKey)>,
    /// Senders proven on a link: never evicted.
    protected: HashSet<SenderKey>,
    clock: u64,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_SENDER_CAPACITY)
    }
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            capacity: capacity.max(1),
            senders: HashMap::new(),
            by_touch: BTreeSet::new(),
            protected: HashSet::new(),
            clock: 0,
        }
    }

    /// Senders with state.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Checks a packet of `sender` and, when fresh, records it. Call only for packets
    /// whose tag (if any) verified, so only authentic packets occupy the table.
    pub fn check(&mut self, sender: &NodeId, instance: InstanceId, seq: u64) -> ReplayVerdict {
        self.clock += 1;
        let touched = self.clock;
        let sender = sender.to_bits();
        let Some(state) = self.senders.get_mut(&sender) else {
            self.insert(sender, instance, seq, touched);
            return ReplayVerdict::Fresh;
        };
        let verdict = if state.instance == instance {
            if state.window.may_accept(seq) {
                state.window.accept(seq);
                ReplayVerdict::Fresh
            } else if state.window.is_behind(seq) {
                ReplayVerdict::Stale
            } else {
                ReplayVerdict::Replayed
            }
        } else if state.retired.contains(&instance) {
            ReplayVerdict::Stale
        } else {
            if state.retired.len() == RETIRED_INSTANCES {
                state.retired.remove(0);
            }
            state.retired.push(state.instance);
            state.instance = instance;
            state.window = ReplayWindow::default();
            state.window.accept(seq);
            ReplayVerdict::Fresh
        };
        let before = std::mem::replace(&mut state.touched, touched);
        if !self.protected.contains(&sender) {
            self.by_touch.remove(&(before, sender));
            self.by_touch.insert((touched, sender));
        }
        verdict
    }

    /// Forgets a sender (e.g. after it was forgotten or blocked by the user).
    pub fn forget(&mut self, sender: &NodeId) {
        let sender = sender.to_bits();
        self.protected.remove(&sender);
        if let Some(state) = self.senders.remove(&sender) {
            self.by_touch.remove(&(state.touched, sender));
        }
    }

    /// Takes `sender` out of the eviction order for good (it proved itself on a link).
    pub fn protect(&mut self, sender: &NodeId) {
        let sender = sender.to_bits();
        if self.protected.insert(sender) {
            if let Some(state) = self.senders.get(&sender) {
                self.by_touch.remove(&(state.touched, sender));
            }
        }
    }

    fn insert(&mut self, sender: SenderKey, instance: InstanceId, seq: u64, touched: u64) {
        if !self.protected.contains(&sender) && self.by_touch.len() >= self.capacity {
            if let Some((_, oldest)) = self.by_touch.pop_first() {
                self.senders.remove(&oldest);
            }
        }
        let mut window = ReplayWindow::default();
        window.accept(seq);
        self.senders.insert(
            sender,
            SenderState {
                instance,
                window,
                retired: Vec::new(),
                touched,
            },
        );
        if !self.protected.contains(&sender) {
            self.by_touch.insert((touched, sender));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::packet::tests::node;
    use proptest::prelude::*;

    const A: InstanceId = InstanceId(1);
    const B: InstanceId = InstanceId(2);

    #[test]
    fn a_sequence_number_is_accepted_once_per_sender() {
        let mut g = ReplayGuard::default();
        let (x, y) = (node(1), node(2));
        assert_eq!(g.check(&x, A, 10), ReplayVerdict::Fresh);
        assert_eq!(g.check(&x, A, 10), ReplayVerdict::Replayed);
        // Another sender's numbers are its own.
        assert_eq!(g.check(&y, A, 10), ReplayVerdict::Fresh);
        // Late but inside the window: fine once.
        assert_eq!(g.check(&x, A, 12), ReplayVerdict::Fresh);
        assert_eq!(g.check(&x, A, 11), ReplayVerdict::Fresh);
        assert_eq!(g.check(&x, A, 11), ReplayVerdict::Replayed);
    }

    #[test]
    fn far_behind_the_window_is_stale() {
        let mut g = ReplayGuard::default();
        let x = node(1);
        assert_eq!(g.check(&x, A, 5), ReplayVerdict::Fresh);
        assert_eq!(g.check(&x, A, 100_000), ReplayVerdict::Fresh);
        assert_eq!(g.check(&x, A, 6), ReplayVerdict::Stale);
        // A sender's packets a little out of order are all taken, once.
        assert_eq!(g.check(&x, A, 100_000 - 63), ReplayVerdict::Fresh);
        assert_eq!(g.check(&x, A, 100_000 - 63), ReplayVerdict::Replayed);
        assert_eq!(g.check(&x, A, 100_000 - 65), ReplayVerdict::Stale);
    }

    #[test]
    fn a_restart_starts_over_and_the_old_run_stays_refused() {
        let mut g = ReplayGuard::default();
        let x = node(1);
        assert_eq!(g.check(&x, A, 1_000), ReplayVerdict::Fresh);
        // The restarted sender counts from 1 again (and its clock may be anywhere).
        assert_eq!(g.check(&x, B, 1), ReplayVerdict::Fresh);
        assert_eq!(g.check(&x, B, 2), ReplayVerdict::Fresh);
        assert_eq!(g.check(&x, A, 1_001), ReplayVerdict::Stale);
        assert_eq!(g.check(&x, B, 1), ReplayVerdict::Replayed);
    }

    #[test]
    fn the_least_recently_heard_sender_is_evicted_first() {
        let mut g = ReplayGuard::new(2);
        let (x, y, z) = (node(1), node(2), node(3));
        g.check(&x, A, 1);
        g.check(&y, A, 1);
        g.check(&x, A, 2); // x heard again: y is now the oldest
        g.check(&z, A, 1);
        assert_eq!(g.len(), 2);
        assert_eq!(g.check(&x, A, 2), ReplayVerdict::Replayed);
        // y was evicted, so its replay is what the module docs admit: accepted once.
        assert_eq!(g.check(&y, A, 1), ReplayVerdict::Fresh);
    }

    #[test]
    fn forgetting_a_sender_frees_its_state() {
        let mut g = ReplayGuard::default();
        let x = node(1);
        g.check(&x, A, 1);
        g.forget(&x);
        assert!(g.is_empty());
    }

    proptest! {
        /// Whatever the order, a (sender, instance, seq) is never accepted twice while
        /// the sender is remembered, and memory stays within capacity.
        #[test]
        fn never_accepts_twice(
            events in prop::collection::vec((0u128..4, 0u64..3, 0u64..3000), 1..400),
        ) {
            let mut g = ReplayGuard::new(8);
            let mut accepted = std::collections::HashSet::new();
            for (n, i, seq) in events {
                if g.check(&node(n), InstanceId(i), seq) == ReplayVerdict::Fresh {
                    prop_assert!(accepted.insert((n, i, seq)), "({}, {}, {}) accepted twice", n, i, seq);
                }
                prop_assert!(g.len() <= 8);
            }
        }
    }
}
