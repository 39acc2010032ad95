//! Per-peer quotas on what a linked peer can make this node store without the user
//! asking for it. A link proves who a peer is, not that it is well-behaved: an insider
//! could invent groups with this node as a member as fast as envelopes go. Over a quota
//! an envelope is left unanswered (and counted), so an honest sender's outbox simply
//! resends it later, when the quota has refilled; nothing is rejected for good.

use crate::rate_limit::KeyedRateLimit;
use api_types::NodeId;
use std::sync::Mutex;
use std::time::Instant;

/// New groups (and invitations) one peer may bring here: a burst of 32, then one a
/// minute. An owner setting up a team's groups in one sitting stays within the burst;
/// an insider inventing groups gets 60 an hour, not thousands a second.
pub const NEW_GROUPS_BURST: f64 = 32.0;
pub const NEW_GROUPS_PER_SEC: f64 = 1.0 / 60.0;
/// Peers whose quota is tracked; linked peers are bounded by the transport's
/// connection cap (512), so this is never the limit in practice.
pub const MAX_TRACKED_PEERS: usize = 4096;

#[derive(Debug)]
pub struct PeerQuotas {
    new_groups: Mutex<KeyedRateLimit<NodeId>>,
}

impl Default for PeerQuotas {
    fn default() -> Self {
        PeerQuotas {
            new_groups: Mutex::new(KeyedRateLimit::new(
                NEW_GROUPS_BURST,
                NEW_GROUPS_PER_SEC,
                MAX_TRACKED_PEERS,
            )),
        }
    }
}

impl PeerQuotas {
    /// Whether `peer` may bring one more group this node did not know.
    pub fn allow_new_group(&self, peer: &NodeId, now: Instant) -> bool {
        self.new_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(peer, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn new_groups_have_a_burst_then_one_a_minute_per_peer() {
        let quotas = PeerQuotas::default();
        let a: NodeId = "01JD4Q0000000000000000000A".parse().unwrap();
        let b: NodeId = "01JD4Q0000000000000000000B".parse().unwrap();
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| quotas.allow_new_group(&a, t0)).count();
        assert_eq!(allowed, NEW_GROUPS_BURST as usize);
        assert!(quotas.allow_new_group(&b, t0), "peers have separate quotas");
        assert!(!quotas.allow_new_group(&a, t0 + Duration::from_secs(59)));
        assert!(quotas.allow_new_group(&a, t0 + Duration::from_secs(61)));
    }
}
