//! Per-source limits on what a datagram can cost us: how many we process from one IP,
//! and how often we answer one address. Pure: driven by the `now` passed in. Both are
//! bounded in memory whatever the number of (possibly spoofed) sources.

use std::collections::HashMap;
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
}

/// Token bucket per source IP.
#[derive(Debug)]
pub struct SourceRateLimit {
    burst: f64,
    per_sec: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Default for SourceRateLimit {
    fn default() -> Self {
        SourceRateLimit::new(INBOUND_BURST, INBOUND_PER_SEC)
    }
}

impl SourceRateLimit {
    pub fn new(burst: f64, per_sec: f64) -> Self {
        SourceRateLimit {
            burst,
            per_sec,
            buckets: HashMap::new(),
        }
    }

    /// Loopback sources are exempt: they are processes on this machine (several nodes
    /// on one host, tests), not a LAN flood, and share one address.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if ip.is_loopback() {
            return true;
        }
        if !self.buckets.contains_key(&ip) && !self.make_room(now) {
            // Table full of busy sources (a spoofed flood): newcomers wait, known
            // sources keep their budget.
            return false;
        }
        let (burst, per_sec) = (self.burst, self.per_sec);
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets sources whose bucket has refilled (they are idle: forgetting them loses
    /// nothing). `true` when there is room for one more.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.buckets.len() < MAX_TRACKED_SOURCES {
            return true;
        }
        let (burst, per_sec) = (self.burst, self.per_sec);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * per_sec < burst
        });
        self.buckets.len() < MAX_TRACKED_SOURCES
    }
}

/// Minimum gap between answers to one address.
#[derive(Debug, Default)]
pub struct AnswerLimit {
    last: HashMap<SocketAddr, Instant>,
}

impl AnswerLimit {
    pub fn allow(&mut self, to: SocketAddr, now: Instant) -> bool {
        if let Some(last) = self.last.get(&to) {
            if now.saturating_duration_since(*last) < ANSWER_MIN_GAP {
                return false;
            }
        }
        if self.last.len() >= MAX_TRACKED_SOURCES {
            retain_recent(&mut self.last, now, ANSWER_MIN_GAP);
            if self.last.len() >= MAX_TRACKED_SOURCES {
                return false;
            }
        }
        self.last.insert(to, now);
        true
    }
}

fn retain_recent<K: Eq + Hash>(map: &mut HashMap<K, Instant>, now: Instant, within: Duration) {
    map.retain(|_, t| now.saturating_duration_since(*t) < within);
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
        assert_eq!(limit.buckets.len(), MAX_TRACKED_SOURCES);
        assert!(limit.allow(ip(0), t0), "a known source keeps its budget");
        // Once the old sources are idle they are forgotten to make room.
        assert!(limit.allow(ip(u32::MAX), t0 + Duration::from_secs(10)));
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
