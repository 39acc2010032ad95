//! Replay protection: a packet is accepted once, and only while its timestamp is within
//! the window around our clock. Memory is bounded: when the nonce cache is full the
//! oldest entry is evicted and the window's lower edge moves up past it, so a replay of
//! an evicted packet is refused as stale instead of slipping through.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use super::packet::{Nonce, UnixMillis};

/// Office PCs sync time by NTP/AD to well under a second, but laptops waking from sleep
/// and VMs drift; a minute each way tolerates that while keeping the replay cache small
/// (a 200-node LAN at 15 s heartbeats fills about 1,600 entries in two minutes).
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(60);
/// Several times the steady-state need above (burst of hellos after a power cut) at
/// ~40 bytes an entry.
pub const DEFAULT_NONCE_CAPACITY: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    Fresh,
    /// Timestamp outside the window (or below the raised floor after evictions).
    Stale,
    /// Nonce already accepted within the window.
    Replayed,
}

#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    capacity: usize,
    seen: HashSet<Nonce>,
    by_age: BTreeSet<(UnixMillis, Nonce)>,
    /// Highest timestamp evicted for lack of room; anything at or below is refused.
    floor: Option<UnixMillis>,
}

impl ReplayGuard {
    pub fn new(window: Duration, capacity: usize) -> Self {
        ReplayGuard {
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            capacity: capacity.max(1),
            seen: HashSet::new(),
            by_age: BTreeSet::new(),
            floor: None,
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Checks a packet and, when fresh, remembers its nonce.
    pub fn check(&mut self, ts: UnixMillis, nonce: Nonce, now: UnixMillis) -> ReplayVerdict {
        let oldest = now.saturating_sub_ms(self.window_ms);
        let newest = now.saturating_add_ms(self.window_ms);
        if ts < oldest || ts > newest || self.floor.is_some_and(|f| ts <= f) {
            return ReplayVerdict::Stale;
        }
        self.forget_older_than(oldest);
        if self.seen.contains(&nonce) {
            return ReplayVerdict::Replayed;
        }
        if self.seen.len() >= self.capacity {
            if let Some(evicted) = self.by_age.pop_first() {
                self.seen.remove(&evicted.1);
                self.floor = Some(self.floor.map_or(evicted.0, |f| f.max(evicted.0)));
                if ts <= evicted.0 {
                    return ReplayVerdict::Stale;
                }
            }
        }
        self.seen.insert(nonce);
        self.by_age.insert((ts, nonce));
        ReplayVerdict::Fresh
    }

    fn forget_older_than(&mut self, oldest: UnixMillis) {
        while let Some(&(ts, nonce)) = self.by_age.first() {
            if ts >= oldest {
                break;
            }
            self.by_age.pop_first();
            self.seen.remove(&nonce);
        }
        // Once the window has moved past the floor, the window check alone suffices.
        if self.floor.is_some_and(|f| f < oldest) {
            self.floor = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: UnixMillis = UnixMillis(1_000_000);

    fn guard() -> ReplayGuard {
        ReplayGuard::new(Duration::from_secs(60), 16)
    }

    #[test]
    fn window_edges_are_inclusive() {
        let mut g = guard();
        assert_eq!(
            g.check(UnixMillis(940_000), Nonce(1), NOW),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            g.check(UnixMillis(1_060_000), Nonce(2), NOW),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            g.check(UnixMillis(939_999), Nonce(3), NOW),
            ReplayVerdict::Stale
        );
        assert_eq!(
            g.check(UnixMillis(1_060_001), Nonce(4), NOW),
            ReplayVerdict::Stale
        );
    }

    #[test]
    fn a_nonce_is_accepted_once() {
        let mut g = guard();
        assert_eq!(g.check(NOW, Nonce(1), NOW), ReplayVerdict::Fresh);
        assert_eq!(g.check(NOW, Nonce(1), NOW), ReplayVerdict::Replayed);
        // Same nonce with another timestamp is still a replay within the window.
        assert_eq!(
            g.check(UnixMillis(999_000), Nonce(1), NOW),
            ReplayVerdict::Replayed
        );
    }

    #[test]
    fn expired_nonces_are_forgotten_and_their_replays_are_stale() {
        let mut g = guard();
        assert_eq!(g.check(NOW, Nonce(1), NOW), ReplayVerdict::Fresh);
        let later = NOW.saturating_add_ms(60_001);
        assert_eq!(g.check(later, Nonce(2), later), ReplayVerdict::Fresh);
        assert_eq!(g.len(), 1);
        assert_eq!(g.check(NOW, Nonce(1), later), ReplayVerdict::Stale);
    }

    #[test]
    fn a_full_cache_raises_the_floor_instead_of_forgetting_silently() {
        let mut g = ReplayGuard::new(Duration::from_secs(60), 2);
        assert_eq!(
            g.check(UnixMillis(990_000), Nonce(1), NOW),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            g.check(UnixMillis(995_000), Nonce(2), NOW),
            ReplayVerdict::Fresh
        );
        assert_eq!(g.check(NOW, Nonce(3), NOW), ReplayVerdict::Fresh);
        assert_eq!(g.len(), 2);
        // Nonce 1 was evicted; replaying it must not pass.
        assert_eq!(
            g.check(UnixMillis(990_000), Nonce(1), NOW),
            ReplayVerdict::Stale
        );
        assert_eq!(
            g.check(UnixMillis(995_000), Nonce(2), NOW),
            ReplayVerdict::Replayed
        );
    }

    proptest! {
        /// Whatever the order and size, the same packet (ts, nonce) is never accepted
        /// twice and memory stays within capacity.
        #[test]
        fn never_accepts_twice(
            events in prop::collection::vec((0u64..200_000, 0u128..64, 0u64..200_000), 1..300),
            cap in 1usize..32,
        ) {
            let mut g = ReplayGuard::new(Duration::from_secs(60), cap);
            let mut accepted = std::collections::HashSet::new();
            let mut now = 0u64;
            for (ts, nonce, step) in events {
                now += step % 1000;
                let verdict = g.check(UnixMillis(ts), Nonce(nonce), UnixMillis(now + 100_000));
                if verdict == ReplayVerdict::Fresh {
                    prop_assert!(accepted.insert((ts, nonce)), "({}, {}) accepted twice", ts, nonce);
                }
                prop_assert!(g.len() <= cap);
            }
        }
    }
}
