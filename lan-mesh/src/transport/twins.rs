//! Twins: two live nodes holding the same keys (a copied data directory, a cloned VM).
//! Discovery only *suspects* them (one id, two interleaving instances); the evidence
//! kept here is proof — a handshake at an address in which the answering node proved
//! the id's keys ([`super::link::probe`]). A pure book: every call carries `now`.
//!
//! - A peer's id is twinned while two different addresses have proved it within their
//!   hold. The transport then refuses links with that id (see `Transport`), so messages
//!   for it wait in the sender's outbox instead of going to whichever twin linked last.
//! - This node's own id is twinned while any other address has proved it.
//!
//! Evidence expires after its hold: once one twin is gone (or has taken a new
//! identity), discovery stops suspecting, nobody probes again, and the id is usable.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use api_types::NodeId;
use tokio::time::Instant;

/// Addresses proven per id: far more than two nodes ever share one copied directory.
const MAX_ADDRESSES: usize = 16;
/// Ids with evidence at once (each a probe we made, so bounded by our own probing).
const MAX_IDS: usize = 1024;

/// One twinned id, as diagnostics and the status warnings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    pub node_id: NodeId,
    /// Link addresses at which a node proved this id's keys (for our own id: the
    /// other computers), sorted.
    pub addresses: Vec<SocketAddr>,
}

#[derive(Debug, Default)]
pub struct TwinBook {
    /// Per id, per address: until when the proof holds.
    proofs: HashMap<NodeId, BTreeMap<SocketAddr, Instant>>,
}

impl TwinBook {
    /// A node at `addr` proved `id`'s keys; the proof holds until `until`.
    pub fn prove(&mut self, id: &NodeId, addr: SocketAddr, until: Instant, now: Instant) {
        self.prune(now);
        if !self.proofs.contains_key(id) && self.proofs.len() >= MAX_IDS {
            return;
        }
        let addrs = self.proofs.entry(id.clone()).or_default();
        if addrs.len() < MAX_ADDRESSES || addrs.contains_key(&addr) {
            let held = addrs.entry(addr).or_insert(until);
            *held = (*held).max(until);
        }
    }

    /// Whether `id` is twinned now. `own` is this node's id (one other address is
    /// enough: this node is the other twin).
    pub fn is_twinned(&self, id: &NodeId, own: &NodeId, now: Instant) -> bool {
        let live = self.live(id, now).len();
        if id == own {
            live >= 1
        } else {
            live >= 2
        }
    }

    /// Every twinned id now, sorted by id.
    pub fn twins(&self, own: &NodeId, now: Instant) -> Vec<Twin> {
        let mut out: Vec<Twin> = self
            .proofs
            .keys()
            .filter(|id| self.is_twinned(id, own, now))
            .map(|id| Twin {
                node_id: id.clone(),
                addresses: self.live(id, now),
            })
            .collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }

    fn live(&self, id: &NodeId, now: Instant) -> Vec<SocketAddr> {
        self.proofs
            .get(id)
            .map(|addrs| {
                addrs
                    .iter()
                    .filter(|(_, until)| **until > now)
                    .map(|(addr, _)| *addr)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn prune(&mut self, now: Instant) {
        self.proofs.retain(|_, addrs| {
            addrs.retain(|_, until| *until > now);
            !addrs.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(n: u128) -> NodeId {
        ulid::Ulid::from(n).to_string().parse().unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_is_twinned_by_two_live_proofs_and_its_own_id_by_one() {
        let now = Instant::now();
        let hold = now + Duration::from_secs(6);
        let (own, peer) = (id(1), id(2));
        let mut book = TwinBook::default();
        book.prove(&peer, addr("10.0.0.2:1"), hold, now);
        assert!(
            !book.is_twinned(&peer, &own, now),
            "one address is just the peer"
        );
        book.prove(&peer, addr("10.0.0.2:1"), hold, now);
        assert!(!book.is_twinned(&peer, &own, now), "the same address twice");
        book.prove(&peer, addr("10.0.0.3:1"), hold, now);
        assert!(book.is_twinned(&peer, &own, now));
        book.prove(&own, addr("10.0.0.9:1"), hold, now);
        assert!(book.is_twinned(&own, &own, now));
        let twins = book.twins(&own, now);
        assert_eq!(twins.len(), 2);
        assert_eq!(
            twins.iter().find(|t| t.node_id == peer).unwrap().addresses,
            vec![addr("10.0.0.2:1"), addr("10.0.0.3:1")]
        );
    }

    #[test]
    fn proofs_expire_so_a_resolved_twin_is_usable_again() {
        let now = Instant::now();
        let (own, peer) = (id(1), id(2));
        let mut book = TwinBook::default();
        book.prove(
            &peer,
            addr("10.0.0.2:1"),
            now + Duration::from_secs(10),
            now,
        );
        book.prove(&peer, addr("10.0.0.3:1"), now + Duration::from_secs(2), now);
        assert!(book.is_twinned(&peer, &own, now + Duration::from_secs(1)));
        let later = now + Duration::from_secs(3);
        assert!(!book.is_twinned(&peer, &own, later));
        assert!(book.twins(&own, later).is_empty());
        // A new proof at the second address twins it again.
        book.prove(
            &peer,
            addr("10.0.0.3:1"),
            later + Duration::from_secs(2),
            later,
        );
        assert!(book.is_twinned(&peer, &own, later));
    }
}
