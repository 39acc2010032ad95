//! `GET /api/v1/diagnostics` and its export: what the user and IT need to see why a
//! colleague is unreachable — per-peer link details, drop counters by cause, recent
//! faults. Never holds a secret, the API token or any message text.

use serde::{Deserialize, Serialize};

use crate::peers::{DiscoveryCounters, TransportCounters};
use crate::status::{MeshState, Warning};

/// A peer's link as this node sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// An encrypted link is open.
    Up,
    /// A dial is under way.
    Connecting,
    /// Dials failed; the next waits for its backoff (see `last_error`).
    Retrying,
    /// Online in discovery, no link open: links open when there is something to send.
    Idle,
    /// Not heard from within the peer TTL (or never in this run).
    #[default]
    Offline,
    /// Blocked here: no link is allowed.
    Blocked,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Connecting => "connecting",
            LinkState::Retrying => "retrying",
            LinkState::Idle => "idle",
            LinkState::Offline => "offline",
            LinkState::Blocked => "blocked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Unix ms when this report was made.
    pub generated_at: u64,
    pub node: NodeDiagnostics,
    /// Every peer discovery knows, plus any the transport or outbox still holds state
    /// for; online first, then by name.
    pub peers: Vec<PeerDiagnostics>,
    /// Packets and frames dropped or refused, by plane and cause (every cause, zeros
    /// included, so a script can rely on the keys).
    pub drops: Vec<DropCount>,
    /// The raw counters (as in `GET /api/v1/status`); `null` while the mesh is off.
    pub discovery: Option<DiscoveryCounters>,
    pub transport: Option<TransportCounters>,
    /// Recent warnings and errors of this node, oldest first (bounded).
    pub faults: Vec<Fault>,
    /// Faults since the node started, including those no longer in `faults`.
    pub faults_total: u64,
    pub warnings: Vec<Warning>,
    /// Read receipts since the node started.
    #[serde(default)]
    pub receipts: ReceiptCounters,
    /// File transfer since the mesh last started (zeros while it is off).
    #[serde(default)]
    pub files: FileCounters,
}

/// File transfer since the mesh last started (docs/PROTOCOL.md, "File transfer").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCounters {
    /// Chunks sent to peers that asked for them.
    pub chunks_served: u64,
    /// Chunks received, verified and stored.
    pub chunks_stored: u64,
    /// Chunks a peer sent that did not match the manifest (refused, fetched elsewhere).
    pub chunks_rejected: u64,
    /// Manifests assembled from a peer's pages that did not hash to the signed one.
    pub manifests_rejected: u64,
    /// Chunk requests refused because the asking peer's serve queue was full.
    pub requests_over_quota: u64,
    /// Chunks and pages that arrived unasked (or after their request was given up).
    pub chunks_unsolicited: u64,
    /// Requests refused because this node's user stopped sending that file.
    #[serde(default)]
    pub requests_withdrawn: u64,
}

/// Read receipts since the node started (docs/PROTOCOL.md, "Read receipts").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptCounters {
    /// `receipt.read` envelopes this node queued: one per recipient each time a
    /// conversation is marked read with something new in it, however many messages.
    pub queued: u64,
    /// Receipts from peers that moved a read position here.
    pub applied: u64,
    /// Receipts refused: their sender is not in the conversation they name.
    pub refused: u64,
}

/// This node: identity, version, configuration that matters for reachability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDiagnostics {
    pub node_id: String,
    pub display_name: String,
    pub version: String,
    /// `linux x86_64` and the like.
    pub platform: String,
    /// Fingerprint of this node's link key (what peers pin).
    pub link_key: String,
    pub started_at: u64,
    pub mesh_enabled: bool,
    pub mesh_state: MeshState,
    pub mesh_error: Option<String>,
    /// Whether a shared secret is set (the secret itself is never shown).
    pub secret_set: bool,
    pub listen_port: u16,
    pub discovery_port: u16,
    /// Where the transport really listens while the mesh runs.
    pub listen_addr: Option<String>,
    pub heartbeat_interval_sec: u32,
    pub peer_ttl_sec: u32,
    pub allowed_subnets: Vec<String>,
    pub blocked_subnets: Vec<String>,
    pub peer_addresses: Vec<String>,
    pub blocked_peers: usize,
    /// This process's memory (absent in reports of older nodes).
    #[serde(default)]
    pub memory: Option<MemoryDiagnostics>,
}

/// What this process holds in memory: enough to tell memory still in use (a leak, a
/// table full by design) from freed memory the allocator has not yet given back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryDiagnostics {
    /// The resident set size (`VmRSS`), libraries and all.
    pub resident_bytes: u64,
    /// Bytes in live allocations of the program; `null` where the allocator cannot tell
    /// (the window process runs on the system's).
    pub heap_allocated_bytes: Option<u64>,
    /// Bytes of the allocator's own pages that are resident: live allocations, freed
    /// pages not yet returned and its bookkeeping.
    pub heap_resident_bytes: Option<u64>,
}

/// One peer's reachability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerDiagnostics {
    pub peer_id: String,
    pub display_name: String,
    pub online: bool,
    pub blocked: bool,
    pub link: LinkState,
    /// Its transport address (`ip:port`) as discovery last saw it.
    pub address: Option<String>,
    /// Where its discovery packets come from.
    pub discovery_address: Option<String>,
    /// The other end of the open link (an accepted link shows the peer's source port).
    pub link_address: Option<String>,
    pub link_up_since: Option<u64>,
    pub last_seen_at: Option<u64>,
    /// Round trip of the link's last keepalive ping, in milliseconds.
    pub rtt_ms: Option<f64>,
    pub clock_offset_ms: Option<i64>,
    /// Fingerprint of the keys it proved on the link, or announced in discovery.
    pub key_fingerprint: Option<String>,
    /// Direct-message envelopes waiting in the outbox for it.
    pub outbox_depth: u64,
    /// Failed dials in a row (while `retrying`).
    pub dial_attempts: Option<u32>,
    /// Why its last link or dial ended, and when (Unix ms).
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    /// The outbox's last failed attempt for it ("peer offline", "link busy", …).
    pub outbox_last_error: Option<String>,
}

/// One drop counter: `plane` is `discovery` or `transport`; `cause` is the counter's
/// name in `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    pub plane: String,
    pub cause: String,
    pub count: u64,
}

/// A warning or error this node logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Unix ms.
    pub at: u64,
    /// `warn` or `error`.
    pub level: String,
    /// The module that logged it (`lan_mesh::transport::manager`, …).
    pub target: String,
    pub message: String,
}

impl DiscoveryCounters {
    /// Every counter that counts a packet lost, refused or not sent, by name.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("rate_limited", self.rate_limited),
            ("oversized", self.oversized),
            ("malformed", self.malformed),
            ("unsupported_version", self.unsupported_version),
            ("blocked_peer", self.blocked_peer),
            ("blocked_subnet", self.blocked_subnet),
            ("not_allowed", self.not_allowed),
            ("missing_tag", self.missing_tag),
            ("bad_tag", self.bad_tag),
            ("unexpected_tag", self.unexpected_tag),
            ("stale", self.stale),
            ("replayed", self.replayed),
            ("send_errors", self.send_errors),
            ("send_queue_full", self.send_queue_full),
            ("receive_queue_full", self.receive_queue_full),
            ("answers_dropped", self.answers_dropped),
            ("sightings_evicted", self.sightings_evicted),
        ]
    }
}

impl TransportCounters {
    /// Every counter that counts a connection, frame or envelope refused or lost.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("refused_address", self.refused_address),
            ("refused_capacity", self.refused_capacity),
            ("refused_rate", self.refused_rate),
            ("handshakes_evicted", self.handshakes_evicted),
            ("dials_deferred", self.dials_deferred),
            ("handshake_failed", self.handshake_failed),
            ("refused_blocked_peer", self.refused_blocked_peer),
            ("refused_key_mismatch", self.refused_key_mismatch),
            ("refused_identity", self.refused_identity),
            ("refused_twin", self.refused_twin),
            ("dials_failed", self.dials_failed),
            ("duplicate_links", self.duplicate_links),
            ("frames_undecryptable", self.frames_undecryptable),
            ("frames_malformed", self.frames_malformed),
            ("envelopes_dropped", self.envelopes_dropped),
            ("envelopes_rejected", self.envelopes_rejected),
            ("envelopes_forged", self.envelopes_forged),
            ("envelopes_over_quota", self.envelopes_over_quota),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_state_names_match_the_wire() {
        for state in [
            LinkState::Up,
            LinkState::Connecting,
            LinkState::Retrying,
            LinkState::Idle,
            LinkState::Offline,
            LinkState::Blocked,
        ] {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::String(state.as_str().into())
            );
        }
    }

    #[test]
    fn every_drop_cause_is_listed_once() {
        let d = DiscoveryCounters {
            stale: 3,
            ..Default::default()
        };
        let drops = d.drops();
        assert!(drops.contains(&("stale", 3)));
        let mut names: Vec<_> = drops.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), drops.len());
        assert_eq!(TransportCounters::default().drops().len(), 18);
    }
}
