//! What diagnostics read of each peer's link: whether one is up or being dialled, its
//! round-trip time (from the keepalive pings), the keys it proved, and why the last
//! link or dial ended. Read-only for everyone but the transport itself.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_types::NodeId;

use super::identity::PeerKeys;
use super::link::LinkEnd;

/// Peers whose last link failure is remembered. Only peers this node dialled or that
/// completed a handshake get an entry, so this bounds memory, not legitimate use.
const MAX_REMEMBERED_FAILURES: usize = 1024;
const RTT_UNKNOWN: u64 = u64::MAX;

/// Shared between a running link (which measures) and the manager (which reports).
#[derive(Debug)]
pub struct LinkHealth {
    pub addr: Option<SocketAddr>,
    pub keys: PeerKeys,
    pub up_since_ms: u64,
    rtt_micros: AtomicU64,
    /// When the unanswered keepalive ping went out (the writer sends, the reader hears
    /// the pong). An unanswered ping is not timed again: its pong may still come.
    ping_sent: std::sync::Mutex<Option<std::time::Instant>>,
}

impl LinkHealth {
    pub fn new(addr: Option<SocketAddr>, keys: PeerKeys) -> LinkHealth {
        LinkHealth {
            addr,
            keys,
            up_since_ms: unix_ms(),
            rtt_micros: AtomicU64::new(RTT_UNKNOWN),
            ping_sent: std::sync::Mutex::new(None),
        }
    }

    /// A keepalive ping went out.
    pub fn ping_sent(&self) {
        let mut sent = self.ping_sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.get_or_insert_with(std::time::Instant::now);
    }

    /// A pong came in: the round trip of the ping it answers.
    pub fn pong_received(&self) {
        let sent = self
            .ping_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(sent) = sent {
            self.record_rtt(sent.elapsed());
        }
    }

    /// A keepalive ping came back after `rtt`.
    pub fn record_rtt(&self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(RTT_UNKNOWN - 1);
        self.rtt_micros.store(micros, Ordering::Relaxed);
    }

    /// The last measured round trip, `None` before the first pong.
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt_micros.load(Ordering::Relaxed) {
            RTT_UNKNOWN => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }
}

/// Where a peer's link stands, as far as the transport knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPhase {
    Up,
    /// A dial is under way.
    Dialling,
    /// Dials failed; the next one waits for the backoff.
    Backoff {
        attempts: u32,
    },
    /// No link and nothing under way.
    None,
}

/// One peer's link as diagnostics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    pub peer: NodeId,
    pub phase: LinkPhase,
    /// The peer's address on the link while it is up.
    pub addr: Option<SocketAddr>,
    pub rtt: Option<Duration>,
    /// Fingerprint of the keys the peer proved on the link (as its `link_key`).
    pub key_fingerprint: Option<String>,
    pub up_since_ms: Option<u64>,
    pub last_error: Option<Failure>,
    /// The id whose computer this peer's runs on a copy of (its copy statement).
    pub copy_of: Option<NodeId>,
}

/// Why the last link or dial to a peer ended, and when (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub at_ms: u64,
}

/// The last failure per peer (bounded; the oldest is found through an index, so a
/// failure costs O(log n) however many peers failed).
#[derive(Debug, Default)]
pub struct Failures {
    last: HashMap<NodeId, Failure>,
    by_age: BTreeSet<(u64, NodeId)>,
}

impl Failures {
    pub fn record(&mut self, peer: &NodeId, reason: String) {
        if let Some(old) = self.last.get(peer) {
            self.by_age.remove(&(old.at_ms, peer.clone()));
        } else if self.last.len() >= MAX_REMEMBERED_FAILURES {
            // Forget the oldest: a peer that failed long ago matters least.
            if let Some((_, oldest)) = self.by_age.pop_first() {
                self.last.remove(&oldest);
            }
        }
        let at_ms = unix_ms();
        self.by_age.insert((at_ms, peer.clone()));
        self.last.insert(peer.clone(), Failure { reason, at_ms });
    }

    pub fn get(&self, peer: &NodeId) -> Option<&Failure> {
        self.last.get(peer)
    }

    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.last.keys()
    }
}

/// How a link's end reads in a report.
pub fn describe_end(end: &LinkEnd, dead_after: Duration) -> String {
    match end {
        LinkEnd::Local(reason) => format!("closed here: {reason}"),
        LinkEnd::Remote(reason) => format!("closed by the peer: {reason}"),
        LinkEnd::Dead => format!("no answer for {} s", dead_after.as_secs()),
        LinkEnd::Failed(reason) => format!("link failed: {reason}"),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        format!("01J0000000000000000000000{}", char::from(b'A' + n))
            .parse()
            .unwrap()
    }

    #[test]
    fn failures_are_bounded_and_the_oldest_goes_first() {
        let mut failures = Failures::default();
        let many = |n: usize| -> NodeId { format!("01J{:023}", n).parse().unwrap() };
        failures.record(&many(0), "first".into());
        failures.record(&many(1), "second".into());
        std::thread::sleep(Duration::from_millis(3));
        // Failing again makes a peer recent.
        failures.record(&many(0), "again".into());
        std::thread::sleep(Duration::from_millis(3));
        for n in 2..MAX_REMEMBERED_FAILURES + 1 {
            failures.record(&many(n), "later".into());
        }
        assert_eq!(failures.peers().count(), MAX_REMEMBERED_FAILURES);
        assert!(failures.get(&many(1)).is_none(), "the oldest was forgotten");
        assert_eq!(
            failures.get(&many(0)).map(|f| f.reason.as_str()),
            Some("again")
        );
        assert_eq!(failures.by_age.len(), MAX_REMEMBERED_FAILURES);
    }

    #[test]
    fn rtt_is_unknown_until_measured() {
        let health = LinkHealth::new(
            None,
            PeerKeys {
                noise: [1; 32],
                signing: [2; 32],
            },
        );
        assert_eq!(health.rtt(), None);
        health.record_rtt(Duration::from_micros(1500));
        assert_eq!(health.rtt(), Some(Duration::from_micros(1500)));
    }

    #[test]
    fn failures_keep_the_latest_per_peer() {
        let mut f = Failures::default();
        f.record(&id(0), "one".into());
        f.record(&id(0), "two".into());
        f.record(&id(1), "three".into());
        assert_eq!(f.get(&id(0)).map(|f| f.reason.as_str()), Some("two"));
        assert_eq!(f.peers().count(), 2);
    }

    #[test]
    fn ends_read_as_causes() {
        let after = Duration::from_secs(3);
        assert_eq!(describe_end(&LinkEnd::Dead, after), "no answer for 3 s");
        assert_eq!(
            describe_end(&LinkEnd::Remote("blocked".into()), after),
            "closed by the peer: blocked"
        );
    }
}
