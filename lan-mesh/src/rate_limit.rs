//! Per-source limits on what a stranger can cost us: how many datagrams we process
//! from one IP and how often we answer one address (discovery), how many handshakes
//! one IP may start (transport). Pure: driven by the `now` passed in. Both are
//! bounded in memory whatever the number of (possibly spoofed) sources.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Inbound packets per source IP: a burst of 64, refilled at 32/s. A real node sends a
/// hello burst of 4, one heartbeat per interval and a few answers, and several nodes may
/// share a host; anything beyond this is a flood, and dropping it before decoding keeps
/// a flood from costing one HMAC per packet.
pub const INBOUND_BURST: f64 = 64.0;
pub const INBOUND_PER_SEC: f64 = 32.0;
/// Distinct sources tracked; a real LAN has far fewer hosts.
pub const MAX_TRACKED_SOURCES: usize = 4096;

/// At most one answer per source address this often: a hello burst is four packets
/// over three seconds, so real peers are always answered, while a spoofed probe flood
/// gets at most five replies per second per address.
pub const ANSWER_MIN_GAP: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// When it will have refilled to the burst: from then on it is idle, and
    /// forgetting it loses nothing.
    full_at: Instant,
}

/// Token bucket per key (a source IP, a peer). Every operation is O(log n) in the
/// number of keys: an index by refill time finds an idle bucket to drop without
/// scanning the table, so a flood of new (spoofed) keys costs no more per event than
/// one key does, and memory stays at `max_keys` buckets.
#[derive(Debug)]
pub struct KeyedRateLimit<K> {
    burst: f64,
    per_sec: f64,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
    by_refill: BTreeSet<(Instant, K)>,
}

impl<K: Hash + Ord + Clone> KeyedRateLimit<K> {
    pub fn new(burst: f64, per_sec: f64, max_keys: usize) -> Self {
        KeyedRateLimit {
            burst,
            per_sec,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
            by_refill: BTreeSet::new(),
        }
    }

    /// Keys tracked now (at most `max_keys`).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one token from `key`'s bucket if it has one.
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        self.take(key, 1.0, now)
    }

    /// Takes `amount` tokens (bytes, say) from `key`'s bucket if it holds that many.
    pub fn take(&mut self, key: &K, amount: f64, now: Instant) -> bool {
        if !self.buckets.contains_key(key) && !self.make_room(now) {
            // Table full of busy keys (a spoofed flood): newcomers wait, known keys
            // keep their budget.
            return false;
        }
        let (burst, per_sec) = (self.burst, self.per_sec);
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
            full_at: now,
        });
        self.by_refill.remove(&(bucket.full_at, key.clone()));
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.at = now;
        let allowed = bucket.tokens >= amount;
        if allowed {
            bucket.tokens -= amount;
        }
        bucket.full_at = now + refill_time(burst - bucket.tokens, per_sec);
        self.by_refill.insert((bucket.full_at, key.clone()));
        allowed
    }

    /// Forgets the key that refilled first, if it has (it is idle). `true` when there
    /// is room for one more.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.buckets.len() < self.max_keys {
            return true;
        }
        match self.by_refill.first().cloned() {
            Some((full_at, key)) if full_at <= now => {
                self.by_refill.remove(&(full_at, key.clone()));
                self.buckets.remove(&key);
                true
            }
            _ => false,
        }
    }
}

/// Token bucket per source IP, at most [`MAX_TRACKED_SOURCES`] of them.
#[derive(Debug)]
pub struct SourceRateLimit(KeyedRateLimit<IpAddr>);

impl Default for SourceRateLimit {
    fn default() -> Self {
        SourceRateLimit::new(INBOUND_BURST, INBOUND_PER_SEC)
    }
}

impl SourceRateLimit {
    pub fn new(burst: f64, per_sec: f64) -> Self {
        SourceRateLimit(KeyedRateLimit::new(burst, per_sec, MAX_TRACKED_SOURCES))
    }

    /// Sources tracked now (at most [`MAX_TRACKED_SOURCES`]).
    pub fn tracked(&self) -> usize {
        self.0.tracked()
    }

    /// Loopback sources are exempt: they are processes on this machine (several nodes
    /// on one host, tests), not a LAN flood, and share one address.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        ip.is_loopback() || self.0.allow(&ip, now)
    }
}

/// How long `missing` tokens take to come back; a day at most (a bucket that slow is
/// as good as never idle, and the sum stays far from `Instant`'s limits).
fn refill_time(missing: f64, per_sec: f64) -> Duration {
    const CAP_SECS: f64 = 86_400.0;
    let secs = missing.max(0.0) / per_sec;
    Duration::from_secs_f64(if secs.is_finite() {
        secs.min(CAP_SECS)
    } else {
        CAP_SECS
    })
}

/// Minimum gap between answers to one address. O(log n) per answer: the oldest answer
/// is found through an index, not a scan.
#[derive(Debug, Default)]
pub struct AnswerLimit {
    last: HashMap<SocketAddr, Instant>,
    by_time: BTreeSet<(Instant, SocketAddr)>,
}

impl AnswerLimit {
    pub fn allow(&mut self, to: SocketAddr, now: Instant) -> bool {
        if let Some(last) = self.last.get(&to) {
            if now.saturating_duration_since(*last) < ANSWER_MIN_GAP {
                return false;
            }
        }
        // Entries older than the gap constrain nothing: drop them oldest first.
        while let Some((at, addr)) = self.by_time.first().copied() {
            if now.saturating_duration_since(at) < ANSWER_MIN_GAP {
                break;
            }
            self.by_time.remove(&(at, addr));
            self.last.remove(&addr);
        }
        if !self.last.contains_key(&to) && self.last.len() >= MAX_TRACKED_SOURCES {
            return false;
        }
        if let Some(previous) = self.last.insert(to, now) {
            self.by_time.remove(&(previous, to));
        }
        self.by_time.insert((now, to));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn a_burst_is_allowed_then_the_rate() {
        let mut limit = SourceRateLimit::new(4.0, 2.0);
        let t0 = Instant::now();
        assert_eq!((0..6).filter(|_| limit.allow(ip(1), t0)).count(), 4);
        assert!(limit.allow(ip(2), t0), "sources have separate buckets");
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!((0..100).all(|_| limit.allow(lo, t0)), "loopback is exempt");
        assert!(!limit.allow(ip(1), t0 + Duration::from_millis(400)));
        assert!(limit.allow(ip(1), t0 + Duration::from_millis(600)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| limit.allow(ip(1), later)).count(), 4);
    }

    #[test]
    fn a_flood_of_new_sources_cannot_grow_the_table_or_starve_known_ones() {
        let mut limit = SourceRateLimit::new(2.0, 1.0);
        let t0 = Instant::now();
        for n in 0..MAX_TRACKED_SOURCES as u32 {
            // Each source spends a token, so none is idle.
            assert!(limit.allow(ip(n), t0));
        }
        assert!(!limit.allow(ip(u32::MAX), t0));
        assert_eq!(limit.tracked(), MAX_TRACKED_SOURCES);
        assert!(limit.allow(ip(0), t0), "a known source keeps its budget");
        // Once the old sources are idle they are forgotten to make room.
        assert!(limit.allow(ip(u32::MAX), t0 + Duration::from_secs(10)));
    }

    #[test]
    fn amounts_are_taken_whole_or_not_at_all_per_key() {
        let mut bytes: KeyedRateLimit<&str> = KeyedRateLimit::new(100.0, 10.0, 2);
        let t0 = Instant::now();
        assert!(bytes.take(&"a", 60.0, t0));
        assert!(
            !bytes.take(&"a", 60.0, t0),
            "40 left: the whole 60 is refused"
        );
        assert!(bytes.take(&"a", 40.0, t0));
        assert!(bytes.take(&"b", 100.0, t0), "keys have separate budgets");
        // Both keys are busy, the table holds two: a third waits.
        assert!(!bytes.take(&"c", 1.0, t0));
        assert!(bytes.take(&"a", 20.0, t0 + Duration::from_secs(2)));
        // Once a key has refilled it is idle and makes room.
        assert!(bytes.take(&"c", 1.0, t0 + Duration::from_secs(20)));
        assert_eq!(bytes.tracked(), 2);
    }

    #[test]
    fn answers_keep_their_gap() {
        let mut limit = AnswerLimit::default();
        let to: SocketAddr = "10.0.0.1:19124".parse().unwrap();
        let t0 = Instant::now();
        assert!(limit.allow(to, t0));
        assert!(!limit.allow(to, t0 + Duration::from_millis(199)));
        assert!(limit.allow(to, t0 + Duration::from_millis(200)));
        assert!(limit.allow("10.0.0.2:19124".parse().unwrap(), t0));
    }
}
