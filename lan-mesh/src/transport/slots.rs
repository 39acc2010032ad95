//! Inbound connection slots: how many connections each source address and the node
//! hold, and which of them have not proven anything yet. A pure table; the manager
//! holds it under its lock.
//!
//! With every slot taken, a new connection does not lose to the ones already waiting:
//! it takes the slot of the **oldest handshake still pending** (which is told to stop
//! through its token). A flood from many addresses then only cycles through its own
//! pending slots — an honest handshake finishes in milliseconds, long before hundreds of
//! newer connections would make it the oldest — while links that proved their peer are
//! never evicted. Only when every slot holds a link is a connection refused.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use tokio_util::sync::CancellationToken;

/// One slot's number, in the order slots were taken (so the smallest is the oldest).
pub(super) type SlotId = u64;

/// What [`SlotTable::admit`] decided.
#[derive(Debug)]
pub(super) enum Admission {
    /// A slot is taken. When `evicted` is set, a pending handshake lost its slot for
    /// this one and must be stopped with this token.
    Admitted {
        id: SlotId,
        evicted: Option<CancellationToken>,
    },
    /// Every slot holds an established link.
    Full,
}

#[derive(Debug)]
pub(super) struct SlotTable {
    capacity: usize,
    per_ip_limit: usize,
    /// Every slot held: its source address.
    held: HashMap<SlotId, IpAddr>,
    /// Slots whose handshake has not finished, oldest first: the token stops it.
    pending: BTreeMap<SlotId, CancellationToken>,
    per_ip: HashMap<IpAddr, usize>,
    next: SlotId,
}

impl SlotTable {
    pub(super) fn new(capacity: usize, per_ip_limit: usize) -> Self {
        Self {
            capacity,
            per_ip_limit,
            held: HashMap::new(),
            pending: BTreeMap::new(),
            per_ip: HashMap::new(),
            next: 0,
        }
    }

    /// Whether `ip` already holds as many slots as one address may. Loopback has no
    /// such limit (as it has no handshake rate): every node on this machine dials
    /// from it, so a few hundred nodes on one host (tests, benchmarks) would otherwise
    /// link to only eight of their colleagues each; the total still bounds it.
    pub(super) fn ip_is_full(&self, ip: IpAddr) -> bool {
        !ip.is_loopback() && self.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_ip_limit
    }

    /// Takes a slot for a connection from `ip` whose handshake `token` stops. The
    /// per-address limit is the caller's to check first ([`Self::ip_is_full`]), so that
    /// a refused connection costs no rate token.
    pub(super) fn admit(&mut self, ip: IpAddr, token: CancellationToken) -> Admission {
        let mut evicted = None;
        if self.held.len() >= self.capacity {
            let Some((oldest, stop)) = self.pending.pop_first() else {
                return Admission::Full;
            };
            self.forget(oldest);
            evicted = Some(stop);
        }
        let id = self.next;
        self.next += 1;
        self.held.insert(id, ip);
        self.pending.insert(id, token);
        *self.per_ip.entry(ip).or_insert(0) += 1;
        Admission::Admitted { id, evicted }
    }

    /// The handshake in slot `id` finished: the slot is a link's now and is never
    /// evicted. False if the slot was already given to a newer connection.
    pub(super) fn establish(&mut self, id: SlotId) -> bool {
        self.pending.remove(&id);
        self.held.contains_key(&id)
    }

    /// The connection in slot `id` ended (a no-op if it was evicted).
    pub(super) fn release(&mut self, id: SlotId) {
        self.pending.remove(&id);
        self.forget(id);
    }

    fn forget(&mut self, id: SlotId) {
        let Some(ip) = self.held.remove(&id) else {
            return;
        };
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn admitted(a: Admission) -> (SlotId, Option<CancellationToken>) {
        match a {
            Admission::Admitted { id, evicted } => (id, evicted),
            Admission::Full => panic!("refused with pending handshakes to evict"),
        }
    }

    #[test]
    fn a_full_table_evicts_the_oldest_pending_handshake_and_never_a_link() {
        let mut table = SlotTable::new(4, 8);
        let tokens: Vec<CancellationToken> = (0..4).map(|_| CancellationToken::new()).collect();
        let ids: Vec<SlotId> = tokens
            .iter()
            .map(|t| admitted(table.admit(ip(1), t.clone())).0)
            .collect();
        // The oldest one proves its peer: it is a link now.
        assert!(table.establish(ids[0]));

        let (_, evicted) = admitted(table.admit(ip(2), CancellationToken::new()));
        let evicted = evicted.expect("a pending handshake is evicted");
        evicted.cancel();
        assert!(
            tokens[1].is_cancelled(),
            "the oldest *pending* one (not the link)"
        );
        assert!(!tokens[0].is_cancelled() && !tokens[2].is_cancelled());
        assert_eq!(table.held(), 4);
        // The evicted handshake finishing late does not get its slot back, and its
        // release frees nothing that another connection holds.
        assert!(!table.establish(ids[1]));
        table.release(ids[1]);
        assert_eq!(table.held(), 4);
    }

    #[test]
    fn only_a_table_of_links_refuses() {
        let mut table = SlotTable::new(3, 8);
        for _ in 0..3 {
            let (id, _) = admitted(table.admit(ip(1), CancellationToken::new()));
            assert!(table.establish(id));
        }
        assert!(matches!(
            table.admit(ip(2), CancellationToken::new()),
            Admission::Full
        ));
        assert_eq!(table.held(), 3);
    }

    #[test]
    fn the_per_address_limit_counts_held_slots_and_frees_with_them() {
        let mut table = SlotTable::new(16, 2);
        let (a, _) = admitted(table.admit(ip(1), CancellationToken::new()));
        assert!(!table.ip_is_full(ip(1)));
        let (_b, _) = admitted(table.admit(ip(1), CancellationToken::new()));
        assert!(table.ip_is_full(ip(1)));
        assert!(!table.ip_is_full(ip(2)));
        table.release(a);
        assert!(!table.ip_is_full(ip(1)));
    }

    #[test]
    fn loopback_is_bounded_only_by_the_total() {
        let mut table = SlotTable::new(4, 2);
        let loopback = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..4 {
            assert!(!table.ip_is_full(loopback));
            admitted(table.admit(loopback, CancellationToken::new()));
        }
        assert!(!table.ip_is_full(loopback));
        let (_, evicted) = admitted(table.admit(loopback, CancellationToken::new()));
        assert!(evicted.is_some(), "the total still holds");
    }

    #[test]
    fn an_evicted_address_gives_back_its_count() {
        let mut table = SlotTable::new(2, 2);
        admitted(table.admit(ip(1), CancellationToken::new()));
        admitted(table.admit(ip(1), CancellationToken::new()));
        assert!(table.ip_is_full(ip(1)));
        let (_, evicted) = admitted(table.admit(ip(2), CancellationToken::new()));
        assert!(evicted.is_some());
        assert!(!table.ip_is_full(ip(1)), "ip 1 holds one slot now");
        assert_eq!(table.held(), 2);
    }
}
