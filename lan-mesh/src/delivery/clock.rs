//! What time it is for delivery, and how far each peer's clock is from ours.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use api_types::NodeId;
use chat_core::UnixMs;

/// The node's wall clock in Unix milliseconds: stamps, retry times, receipt times. The
/// local API uses it too, so every part of a node agrees on what time it is.
pub fn now_ms() -> UnixMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The wall clock delivery reads. The node passes [`Clock::system`]; unit tests pass
/// a clock of their own (a PC hours off, time that jumps) — end-to-end tests shift the
/// whole process's clock instead (libfaketime, see docs/ARCHITECTURE.md).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> UnixMs + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(now_ms))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> UnixMs + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now_ms(&self) -> UnixMs {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now_ms())
    }
}

/// Each peer's clock minus ours (positive = it is ahead), as discovery last measured
/// it. Kept while the peer is offline — a group member's messages relayed later are
/// still shown on our clock — and dropped when it is forgotten.
#[derive(Debug, Clone, Default)]
pub struct ClockOffsets(Arc<RwLock<HashMap<NodeId, i64>>>);

impl ClockOffsets {
    pub fn set(&self, peer: &NodeId, offset_ms: i64) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.clone(), offset_ms);
    }

    pub fn remove(&self, peer: &NodeId) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
    }

    /// `None` until discovery has measured it.
    pub fn get(&self, peer: &NodeId) -> Option<i64> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .copied()
    }

    /// The offsets of these peers that are known.
    pub fn of<'a>(&self, peers: impl IntoIterator<Item = &'a NodeId>) -> HashMap<NodeId, i64> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        peers
            .into_iter()
            .filter_map(|p| map.get(p).map(|o| (p.clone(), *o)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_injected_clock_is_what_delivery_reads() {
        let clock = Clock::from_fn(|| 1_700_000_000_000 + 3 * 3_600_000);
        assert_eq!(clock.now_ms(), 1_700_010_800_000);
        let real = Clock::system().now_ms();
        assert!((real - now_ms()).abs() < 60_000);
    }

    #[test]
    fn offsets_are_known_only_once_measured() {
        let offsets = ClockOffsets::default();
        let a: NodeId = "01HZZZZZZZZZZZZZZZZZZZZZ01".parse().unwrap();
        let b: NodeId = "01HZZZZZZZZZZZZZZZZZZZZZ02".parse().unwrap();
        assert_eq!(offsets.get(&a), None);
        offsets.set(&a, -300_000);
        assert_eq!(offsets.get(&a), Some(-300_000));
        assert_eq!(
            offsets.of([&a, &b]),
            [(a.clone(), -300_000)].into_iter().collect()
        );
        offsets.remove(&a);
        assert_eq!(offsets.get(&a), None);
    }
}
