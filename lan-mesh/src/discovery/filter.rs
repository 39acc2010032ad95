//! The receive filter: every datagram on the discovery port passes here before anything
//! else sees it. Pure: a function of (bytes, source, config, replay state) — and of no
//! clock: a sender's clock may be off by days (see `replay`).
//!
//! Order (docs/PROTOCOL.md, "Receive filter"): structure (size, magic, length, version,
//! fields) → our own → blocked node → blocked subnet → outside allowed subnets → tag →
//! per-sender replay check. The policy checks come before the HMAC so that blocked and foreign
//! traffic is dropped without spending a hash on it, and the replay check comes last so
//! only authenticated packets can occupy the bounded per-sender table.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use api_types::{Cidr, NodeId};
use serde::Serialize;

use super::auth::DiscoveryKey;
use super::packet::{DecodeError, Packet};
use super::replay::{ReplayGuard, ReplayVerdict};
use crate::rate_limit::SourceRateLimit;

/// Why a datagram was dropped. Each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// More packets from this source IP than any real node sends (checked first,
    /// before any decoding or hashing).
    RateLimited,
    Oversized,
    Malformed,
    UnsupportedVersion,
    Own,
    BlockedPeer,
    BlockedSubnet,
    NotAllowed,
    MissingTag,
    BadTag,
    /// We have no secret but the packet is tagged: its sender's mesh is closed to us,
    /// so seeing it would only produce a peer we can never connect to.
    UnexpectedTag,
    Stale,
    Replayed,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::RateLimited,
        DropReason::Oversized,
        DropReason::Malformed,
        DropReason::UnsupportedVersion,
        DropReason::Own,
        DropReason::BlockedPeer,
        DropReason::BlockedSubnet,
        DropReason::NotAllowed,
        DropReason::MissingTag,
        DropReason::BadTag,
        DropReason::UnexpectedTag,
        DropReason::Stale,
        DropReason::Replayed,
    ];

    /// Drops that say the sender is misconfigured or hostile (worth one warning per
    /// source) rather than routine (our own echo, a blocked node still announcing).
    pub fn is_suspicious(self) -> bool {
        matches!(
            self,
            DropReason::RateLimited
                | DropReason::Oversized
                | DropReason::Malformed
                | DropReason::UnsupportedVersion
                | DropReason::MissingTag
                | DropReason::BadTag
                | DropReason::UnexpectedTag
                | DropReason::Stale
                | DropReason::Replayed
        )
    }
}

impl From<DecodeError> for DropReason {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Oversized(_) => DropReason::Oversized,
            DecodeError::UnsupportedVersion(_) => DropReason::UnsupportedVersion,
            _ => DropReason::Malformed,
        }
    }
}

/// Counts of dropped datagrams per reason, plus accepted ones (for ratios).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DropCounters {
    pub accepted: u64,
    pub rate_limited: u64,
    pub oversized: u64,
    pub malformed: u64,
    pub unsupported_version: u64,
    pub own: u64,
    pub blocked_peer: u64,
    pub blocked_subnet: u64,
    pub not_allowed: u64,
    pub missing_tag: u64,
    pub bad_tag: u64,
    pub unexpected_tag: u64,
    pub stale: u64,
    pub replayed: u64,
}

impl DropCounters {
    fn slot(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::RateLimited => &mut self.rate_limited,
            DropReason::Oversized => &mut self.oversized,
            DropReason::Malformed => &mut self.malformed,
            DropReason::UnsupportedVersion => &mut self.unsupported_version,
            DropReason::Own => &mut self.own,
            DropReason::BlockedPeer => &mut self.blocked_peer,
            DropReason::BlockedSubnet => &mut self.blocked_subnet,
            DropReason::NotAllowed => &mut self.not_allowed,
            DropReason::MissingTag => &mut self.missing_tag,
            DropReason::BadTag => &mut self.bad_tag,
            DropReason::UnexpectedTag => &mut self.unexpected_tag,
            DropReason::Stale => &mut self.stale,
            DropReason::Replayed => &mut self.replayed,
        }
    }

    pub fn record(&mut self, reason: DropReason) {
        let slot = self.slot(reason);
        *slot = slot.saturating_add(1);
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        let mut copy = *self;
        *copy.slot(reason)
    }

    pub fn dropped(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

/// The policy the filter applies; rebuilt whenever settings change.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub own_id: NodeId,
    pub blocked_peers: HashSet<NodeId>,
    pub blocked_subnets: Vec<Cidr>,
    /// The effective list: settings' `allowed_subnets`, or this machine's interface
    /// subnets when that is empty. An empty list here admits nobody.
    pub allowed_subnets: Vec<Cidr>,
    pub key: Option<DiscoveryKey>,
}

impl FilterConfig {
    pub fn source_is_blocked(&self, ip: IpAddr) -> bool {
        self.blocked_subnets.iter().any(|c| c.contains(ip))
    }
    pub fn source_is_allowed(&self, ip: IpAddr) -> bool {
        self.allowed_subnets.iter().any(|c| c.contains(ip))
    }
}

/// Runs the filter. On success the replay state has recorded the packet.
pub fn filter(
    bytes: &[u8],
    source: SocketAddr,
    config: &FilterConfig,
    replay: &mut ReplayGuard,
) -> Result<Packet, DropReason> {
    let decoded = Packet::decode(bytes)?;
    let packet = &decoded.packet;
    let ip = source.ip();
    if packet.node_id == config.own_id {
        return Err(DropReason::Own);
    }
    if config.blocked_peers.contains(&packet.node_id) {
        return Err(DropReason::BlockedPeer);
    }
    if config.source_is_blocked(ip) {
        return Err(DropReason::BlockedSubnet);
    }
    if !config.source_is_allowed(ip) {
        return Err(DropReason::NotAllowed);
    }
    match (&config.key, decoded.tag) {
        (Some(_), None) => return Err(DropReason::MissingTag),
        (Some(key), Some(tag)) if !key.verify(decoded.signed, tag) => {
            return Err(DropReason::BadTag)
        }
        (None, Some(_)) => return Err(DropReason::UnexpectedTag),
        _ => {}
    }
    match replay.check(&packet.node_id, packet.instance_id, packet.replay_seq()) {
        ReplayVerdict::Fresh => Ok(decoded.packet),
        ReplayVerdict::Stale => Err(DropReason::Stale),
        ReplayVerdict::Replayed => Err(DropReason::Replayed),
    }
}

/// Sources we have already warned about, so a misconfigured or hostile sender costs
/// one log line, not one per packet. Bounded: past the cap we stop adding (and say so
/// once) rather than grow without limit under a spoofed-source flood.
#[derive(Debug, Default)]
pub struct SourceWarnings {
    warned: HashMap<IpAddr, DropReason>,
    saturated: bool,
}

/// Enough distinct misbehaving hosts for any real office; small enough to never matter.
pub const MAX_WARNED_SOURCES: usize = 1024;

impl SourceWarnings {
    /// Whether this drop deserves a log line now.
    pub fn should_warn(&mut self, ip: IpAddr, reason: DropReason) -> WarnDecision {
        if !reason.is_suspicious() || self.warned.contains_key(&ip) {
            return WarnDecision::Quiet;
        }
        if self.warned.len() >= MAX_WARNED_SOURCES {
            if self.saturated {
                return WarnDecision::Quiet;
            }
            self.saturated = true;
            return WarnDecision::TooManySources;
        }
        self.warned.insert(ip, reason);
        WarnDecision::Warn
    }

    /// Forget everything (after a settings change, old warnings may no longer apply).
    pub fn clear(&mut self) {
        self.warned.clear();
        self.saturated = false;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarnDecision {
    Warn,
    Quiet,
    TooManySources,
}

/// The filter with its mutable state: per-source rate limit, replay cache, counters
/// and warned sources.
#[derive(Debug)]
pub struct ReceiveFilter {
    pub config: FilterConfig,
    rate: SourceRateLimit,
    replay: ReplayGuard,
    counters: DropCounters,
    warnings: SourceWarnings,
}

impl ReceiveFilter {
    pub fn new(config: FilterConfig, replay: ReplayGuard) -> Self {
        ReceiveFilter {
            config,
            rate: SourceRateLimit::default(),
            replay,
            counters: DropCounters::default(),
            warnings: SourceWarnings::default(),
        }
    }

    /// Rate limit, then [`filter`]. `now` drives the rate limit.
    pub fn accept(
        &mut self,
        bytes: &[u8],
        source: SocketAddr,
        now: Instant,
    ) -> Result<Packet, DropReason> {
        let verdict = if self.rate.allow(source.ip(), now) {
            filter(bytes, source, &self.config, &mut self.replay)
        } else {
            Err(DropReason::RateLimited)
        };
        match verdict {
            Ok(_) => self.counters.accepted = self.counters.accepted.saturating_add(1),
            Err(reason) => {
                self.counters.record(reason);
                match self.warnings.should_warn(source.ip(), reason) {
                    WarnDecision::Warn => tracing::warn!(
                        %source, ?reason,
                        "dropping discovery packets from this source (further drops are only counted)"
                    ),
                    WarnDecision::TooManySources => tracing::warn!(
                        "too many misbehaving discovery sources; no longer warning about new ones"
                    ),
                    WarnDecision::Quiet => {}
                }
            }
        }
        verdict
    }

    pub fn counters(&self) -> DropCounters {
        self.counters
    }

    /// The packet in `bytes` if it decodes and its tag (when the LAN has a secret)
    /// verifies, whatever replay protection and the other rules say: what twin
    /// detection looks at among the drops (our own id, a replaced instance).
    pub fn authentic(&self, bytes: &[u8]) -> Option<Packet> {
        let decoded = Packet::decode(bytes).ok()?;
        let authentic = match (&self.config.key, decoded.tag) {
            (Some(key), Some(tag)) => key.verify(decoded.signed, tag),
            (None, None) => true,
            _ => false,
        };
        authentic.then_some(decoded.packet)
    }

    /// Drops what replay protection remembers of a sender (forgotten or blocked).
    pub fn forget_sender(&mut self, sender: &NodeId) {
        self.replay.forget(sender);
    }

    /// Keeps a sender proven on a link out of replay state's eviction order, so ids
    /// made up by an insider cannot push it out (see `ReplayGuard::protect`).
    pub fn protect_sender(&mut self, sender: &NodeId) {
        self.replay.protect(sender);
    }

    pub fn set_config(&mut self, config: FilterConfig) {
        self.config = config;
        self.warnings.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::packet::tests::{node, sample};
    use crate::discovery::packet::{InstanceId, Nonce, PacketKind, UnixMillis};
    use proptest::prelude::*;

    const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn config(secret: &str) -> FilterConfig {
        FilterConfig {
            own_id: node(1),
            blocked_peers: HashSet::new(),
            blocked_subnets: vec![],
            allowed_subnets: vec![cidr("10.0.0.0/16")],
            key: test_key(secret),
        }
    }

    /// A stand-in for a secret's derived key (the KDF is tested in `crate::secret`).
    fn test_key(secret: &str) -> Option<DiscoveryKey> {
        (!secret.is_empty()).then(|| {
            let mut key = [0u8; 32];
            for (k, b) in key.iter_mut().zip(secret.bytes().cycle()) {
                *k = b;
            }
            DiscoveryKey::from_bytes(key)
        })
    }

    fn src(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 19124)
    }

    fn packet_from(n: u128, nonce: u128) -> Packet {
        let mut p = sample(PacketKind::Heartbeat);
        p.node_id = node(n);
        p.ts = NOW;
        p.nonce = Nonce(nonce);
        p.seq = Some(1_000 + u64::try_from(nonce).unwrap());
        p
    }

    fn guard() -> ReplayGuard {
        ReplayGuard::new(64)
    }

    fn run(
        bytes: &[u8],
        from: &str,
        cfg: &FilterConfig,
        g: &mut ReplayGuard,
    ) -> Result<Packet, DropReason> {
        filter(bytes, src(from), cfg, g)
    }

    #[test]
    fn a_good_packet_passes_once() {
        let cfg = config("s");
        let bytes = packet_from(2, 1).encode(cfg.key.as_ref()).unwrap();
        let mut g = guard();
        assert_eq!(
            run(&bytes, "10.0.1.2", &cfg, &mut g).unwrap(),
            packet_from(2, 1)
        );
        assert_eq!(
            run(&bytes, "10.0.1.2", &cfg, &mut g),
            Err(DropReason::Replayed)
        );
    }

    /// Each rule is tested with a packet that also breaks every later rule, so a wrong
    /// order shows up as a wrong reason.
    #[test]
    fn rules_apply_in_the_documented_order() {
        let mut cfg = config("s");
        cfg.blocked_peers.insert(node(3));
        cfg.blocked_subnets.push(cidr("10.0.9.0/24"));
        let wrong_key = test_key("other");
        let mut g = guard();
        // Node 4 was heard from a later run: packets of its earlier run are stale.
        g.check(&node(4), InstanceId(7), 1);
        g.check(&node(4), InstanceId(8), 1);
        let stale = packet_from(3, 5);

        let mut own = stale.clone();
        own.node_id = node(1);
        let own = own.encode(wrong_key.as_ref()).unwrap();
        assert_eq!(run(&own, "172.16.0.1", &cfg, &mut g), Err(DropReason::Own));

        let blocked = stale.encode(wrong_key.as_ref()).unwrap();
        assert_eq!(
            run(&blocked, "10.0.9.1", &cfg, &mut g),
            Err(DropReason::BlockedPeer)
        );

        let mut other = stale.clone();
        other.node_id = node(4);
        let other_bytes = other.encode(wrong_key.as_ref()).unwrap();
        assert_eq!(
            run(&other_bytes, "10.0.9.1", &cfg, &mut g),
            Err(DropReason::BlockedSubnet)
        );
        assert_eq!(
            run(&other_bytes, "172.16.0.1", &cfg, &mut g),
            Err(DropReason::NotAllowed)
        );
        assert_eq!(
            run(&other_bytes, "10.0.1.1", &cfg, &mut g),
            Err(DropReason::BadTag)
        );
        let untagged = other.encode(None).unwrap();
        assert_eq!(
            run(&untagged, "10.0.1.1", &cfg, &mut g),
            Err(DropReason::MissingTag)
        );
        let signed_stale = other.encode(cfg.key.as_ref()).unwrap();
        assert_eq!(
            run(&signed_stale, "10.0.1.1", &cfg, &mut g),
            Err(DropReason::Stale)
        );
        assert_eq!(g.len(), 1, "nothing rejected may enter the replay table");

        let open = config("");
        assert_eq!(
            run(&signed_stale, "10.0.1.1", &open, &mut g),
            Err(DropReason::UnexpectedTag)
        );
        assert_eq!(
            run(&untagged, "10.0.1.1", &open, &mut g),
            Err(DropReason::Stale)
        );
        assert_eq!(
            run(b"garbage", "10.0.1.1", &open, &mut g),
            Err(DropReason::Malformed)
        );
        assert_eq!(
            run(&[0; 1201], "10.0.1.1", &open, &mut g),
            Err(DropReason::Oversized)
        );
    }

    #[test]
    fn an_empty_allowed_list_admits_nobody() {
        let mut cfg = config("");
        cfg.allowed_subnets.clear();
        let bytes = packet_from(2, 1).encode(None).unwrap();
        assert_eq!(
            run(&bytes, "10.0.1.2", &cfg, &mut guard()),
            Err(DropReason::NotAllowed)
        );
    }

    #[test]
    fn counters_and_warnings() {
        let mut f = ReceiveFilter::new(config(""), guard());
        let t = Instant::now();
        for _ in 0..3 {
            let _ = f.accept(b"junk", src("10.0.0.7"), t);
        }
        let ok = packet_from(2, 9).encode(None).unwrap();
        assert!(f.accept(&ok, src("10.0.0.7"), t).is_ok());
        let c = f.counters();
        assert_eq!((c.malformed, c.accepted, c.dropped()), (3, 1, 3));
        assert_eq!(
            f.warnings
                .should_warn(src("10.0.0.7").ip(), DropReason::BadTag),
            WarnDecision::Quiet
        );
        assert_eq!(
            f.warnings
                .should_warn(src("10.0.0.8").ip(), DropReason::Own),
            WarnDecision::Quiet
        );
        assert_eq!(
            f.warnings
                .should_warn(src("10.0.0.8").ip(), DropReason::BadTag),
            WarnDecision::Warn
        );
    }

    #[test]
    fn a_flooding_source_is_cut_off_before_decoding() {
        let mut f = ReceiveFilter::new(config(""), guard());
        let t = Instant::now();
        for _ in 0..200 {
            let _ = f.accept(b"junk", src("10.0.0.7"), t);
        }
        let c = f.counters();
        assert_eq!(c.malformed, crate::rate_limit::INBOUND_BURST as u64);
        assert_eq!(c.rate_limited, 200 - c.malformed);
        // Another source is unaffected.
        let ok = packet_from(2, 9).encode(None).unwrap();
        assert!(f.accept(&ok, src("10.0.0.8"), t).is_ok());
    }

    #[test]
    fn warnings_are_bounded() {
        let mut w = SourceWarnings::default();
        for i in 0..MAX_WARNED_SOURCES as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            assert_eq!(w.should_warn(ip, DropReason::Malformed), WarnDecision::Warn);
        }
        let next = IpAddr::V4(std::net::Ipv4Addr::from(u32::MAX));
        assert_eq!(
            w.should_warn(next, DropReason::Malformed),
            WarnDecision::TooManySources
        );
        assert_eq!(
            w.should_warn(next, DropReason::Malformed),
            WarnDecision::Quiet
        );
        assert_eq!(w.warned.len(), MAX_WARNED_SOURCES);
    }

    proptest! {
        /// Flipping any bit of a signed packet never yields an accepted packet.
        #[test]
        fn any_flipped_bit_is_rejected(byte in 0usize..200, bit in 0u8..8) {
            let cfg = config("s");
            let bytes = packet_from(2, 1).encode(cfg.key.as_ref()).unwrap();
            let mut tampered = bytes.clone();
            let i = byte % tampered.len();
            tampered[i] ^= 1 << bit;
            prop_assert!(run(&tampered, "10.0.1.2", &cfg, &mut guard()).is_err());
        }

        #[test]
        fn arbitrary_datagrams_are_dropped_not_panicking(
            bytes in prop::collection::vec(any::<u8>(), 0..1500), ip: u32,
        ) {
            let cfg = config("s");
            let from = SocketAddr::new(IpAddr::V4(ip.into()), 1);
            prop_assert!(filter(&bytes, from, &cfg, &mut guard()).is_err());
        }
    }
}
