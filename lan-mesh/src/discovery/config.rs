//! What the discovery runtime is configured from: the settings block plus the knobs a
//! node or a test needs (explicit targets, fixed interface lists, budgets).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use api_types::{Cidr, LanMeshSettings, NodeId};
use thiserror::Error;

use super::packet::PublicKey;
use super::targets::LocalNetwork;

/// Unicast probes per heartbeat interval through routed subnets: at the default 15 s a
/// /24 is covered in half a minute and a /16 in about two hours, at ~8 packets/s — far
/// below anything an IDS or a switch notices.
pub const DEFAULT_PROBE_BUDGET: usize = 128;

pub use crate::secret::SharedSecret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastMode {
    /// Directed broadcast on every attached network that overlaps an allowed subnet.
    AttachedSubnets,
    /// Only explicit targets, manual addresses and probes (loopback tests: `lo` has no
    /// broadcast, and tests must not send onto a real LAN).
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkSource {
    /// Ask the OS at start and at every heartbeat (laptops change networks).
    System,
    /// A fixed list, for tests.
    Fixed(Vec<LocalNetwork>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub node_id: NodeId,
    /// Must already be valid (≤ 64 chars, no control characters); the node substitutes
    /// the host name for an empty setting before handing it here.
    pub display_name: String,
    /// The transport (WebSocket) port announced to peers.
    pub listen_port: u16,
    /// Where the discovery socket binds (`0.0.0.0:discovery_port` for a real node).
    pub bind: SocketAddr,
    /// Destination port of broadcasts and sweep probes: the port peers listen on.
    pub discovery_port: u16,
    pub heartbeat_interval: Duration,
    pub peer_ttl: Duration,
    /// Empty = this machine's IPv4 interface subnets.
    pub allowed_subnets: Vec<Cidr>,
    pub blocked_subnets: Vec<Cidr>,
    pub blocked_peers: Vec<NodeId>,
    /// The keys of the settings' shared secret, derived once (see [`crate::secret`]).
    pub shared_secret: SharedSecret,
    /// Extra `ip:port`s that get every hello/heartbeat/goodbye (e.g. loopback peers).
    pub announce_targets: Vec<SocketAddr>,
    /// Manually added peer addresses (routed subnets): probed every interval.
    pub peer_addresses: Vec<SocketAddr>,
    pub broadcast: BroadcastMode,
    pub networks: NetworkSource,
    pub probe_budget: usize,
    /// Announced in every packet once the transport gives nodes key pairs.
    pub public_key: Option<PublicKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("peer TTL ({ttl:?}) must be longer than the heartbeat interval ({heartbeat:?})")]
    Intervals { heartbeat: Duration, ttl: Duration },
    #[error("heartbeat interval must be at least 10 ms")]
    HeartbeatTooShort,
    #[error("display name cannot be announced: {0}")]
    DisplayName(String),
    #[error("node id cannot change while discovery runs")]
    NodeIdChanged,
    #[error("listen port 0 cannot be announced")]
    ListenPort,
}

impl DiscoveryConfig {
    /// The runtime configuration a node gets from its settings block and the keys of
    /// its shared secret (derived by the caller, once per secret: the KDF is slow on
    /// purpose).
    pub fn from_settings(s: &LanMeshSettings, shared_secret: SharedSecret) -> Self {
        DiscoveryConfig {
            node_id: s.node_id.clone(),
            display_name: s.display_name.clone(),
            listen_port: s.listen_port,
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), s.discovery_port),
            discovery_port: s.discovery_port,
            heartbeat_interval: Duration::from_secs(u64::from(s.heartbeat_interval_sec)),
            peer_ttl: Duration::from_secs(u64::from(s.peer_ttl_sec)),
            allowed_subnets: s.allowed_subnets.clone(),
            blocked_subnets: s.blocked_subnets.clone(),
            blocked_peers: s.blocked_peers.clone(),
            shared_secret,
            announce_targets: Vec::new(),
            peer_addresses: Vec::new(),
            broadcast: BroadcastMode::AttachedSubnets,
            networks: NetworkSource::System,
            probe_budget: DEFAULT_PROBE_BUDGET,
            public_key: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval < Duration::from_millis(10) {
            return Err(ConfigError::HeartbeatTooShort);
        }
        if self.peer_ttl <= self.heartbeat_interval {
            return Err(ConfigError::Intervals {
                heartbeat: self.heartbeat_interval,
                ttl: self.peer_ttl,
            });
        }
        if self.listen_port == 0 {
            return Err(ConfigError::ListenPort);
        }
        let name = &self.display_name;
        if name.chars().count() > super::packet::MAX_NAME_CHARS
            || name.len() > super::packet::MAX_NAME_BYTES
            || name.chars().any(char::is_control)
        {
            return Err(ConfigError::DisplayName(name.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_settings_uses_the_settings_block() {
        let id: NodeId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let mut s = LanMeshSettings::defaults(id);
        s.shared_secret = "hunter2 hunter2".into();
        let c = DiscoveryConfig::from_settings(&s, SharedSecret::derive(&s.shared_secret).unwrap());
        assert_eq!(c.bind, "0.0.0.0:19124".parse().unwrap());
        assert_eq!(c.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(c.peer_ttl, Duration::from_secs(45));
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(format!("{c:?}").contains("SharedSecret(..)"));
        let mut bad = c.clone();
        bad.peer_ttl = bad.heartbeat_interval;
        assert!(matches!(bad.validate(), Err(ConfigError::Intervals { .. })));
        bad = c;
        bad.display_name = "a\u{1}".into();
        assert!(matches!(bad.validate(), Err(ConfigError::DisplayName(_))));
    }
}
