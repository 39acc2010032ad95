//! Peers as the local API shows them (`GET /api/v1/peers`) and the requests that
//! change them.

use serde::{Deserialize, Serialize};

/// A node discovered on the LAN (or remembered from earlier runs, then offline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub peer_id: String,
    pub display_name: String,
    /// Its transport address (`ip:port`) as last seen, if ever.
    pub address: Option<String>,
    pub online: bool,
    /// Unix milliseconds of the last packet accepted from it.
    pub last_seen_at: Option<u64>,
    pub blocked: bool,
    /// Its clock minus ours in milliseconds (positive = it is ahead), measured from its
    /// discovery packets; `null` until heard from in this run.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    /// Round trip of its link's last keepalive ping, in whole milliseconds rounded up
    /// (a LAN's sub-millisecond link shows 1); `null` without a link.
    #[serde(default)]
    pub rtt_ms: Option<u64>,
    /// Its link's state (`up`, `connecting`, `retrying`, `idle`, `offline`, `blocked`).
    #[serde(default)]
    pub link: crate::diagnostics::LinkState,
    /// Fingerprint of its link key (as its own status shows in `link_key`): the keys it
    /// proved on the open link, else the ones it announces in discovery.
    #[serde(default)]
    pub key_fingerprint: Option<String>,
    /// `online`, `away`, `busy` as the peer announces it while it is online;
    /// `offline` otherwise. Older nodes announce nothing and show `online`.
    #[serde(default)]
    pub presence: crate::presence::Presence,
    /// The id whose computer this peer runs on a copy of: it took a new identity after
    /// its data directory was copied, and proved the copy with the old id's key
    /// (docs/PROTOCOL.md, "New identity for a copy"). `null` for everyone else, and
    /// until its first link in this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<String>,
}

/// A peer whose clock differs from ours by more than this is flagged (the UI and the
/// status warnings): minutes of drift mean no working time sync on one of the two.
pub const CLOCK_OFFSET_WARNING_MS: i64 = 60_000;

impl PeerView {
    /// Whether its clock is far enough off to tell the user.
    pub fn clock_is_off(&self) -> bool {
        self.clock_offset_ms
            .is_some_and(|o| o.unsigned_abs() > CLOCK_OFFSET_WARNING_MS.unsigned_abs())
    }
}

/// `POST /api/v1/peers`: a peer's discovery address in a routed subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddPeerAddress {
    pub address: String,
}

/// The answer to `POST /api/v1/peers/{id}/block` and `/unblock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    pub peer_id: String,
    pub blocked: bool,
}

/// Discovery's counters: packets accepted, dropped per reason, sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryCounters {
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
    pub sent: u64,
    pub send_errors: u64,
    /// Sends that waited for room in the socket's send buffer, then went out.
    #[serde(default)]
    pub send_waits: u64,
    /// Packets dropped because the send queue was full.
    #[serde(default)]
    pub send_queue_full: u64,
    /// Datagrams dropped because the node fell a whole queue behind.
    #[serde(default)]
    pub receive_queue_full: u64,
    /// Answers not scheduled because too many were pending.
    #[serde(default)]
    pub answers_dropped: u64,
    pub peers_online: u64,
    /// Peers heard but never proven on a link, held in memory only (bounded).
    #[serde(default)]
    pub sightings: u64,
    /// Such sightings dropped, least recently heard first, for newer ones.
    #[serde(default)]
    pub sightings_evicted: u64,
}

/// The transport's counters: links, refusals per reason, frames.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportCounters {
    pub links_up: u64,
    pub links_accepted: u64,
    pub links_dialled: u64,
    pub links_closed: u64,
    pub refused_address: u64,
    pub refused_capacity: u64,
    /// Connections refused before the handshake: their IP started handshakes faster
    /// than the per-source rate.
    #[serde(default)]
    pub refused_rate: u64,
    /// Pending handshakes stopped because every connection slot was taken: the oldest
    /// pending one gives its slot to the newer connection.
    #[serde(default)]
    pub handshakes_evicted: u64,
    /// Dials not started because the cap on dials under way was reached.
    #[serde(default)]
    pub dials_deferred: u64,
    pub handshake_failed: u64,
    pub refused_blocked_peer: u64,
    pub refused_key_mismatch: u64,
    /// Peers whose keys did not prove the id they claimed (or another id answered at
    /// the address discovery announced for it): refused.
    #[serde(default)]
    pub refused_identity: u64,
    /// Links refused or closed because two live nodes hold the peer's id (twins).
    #[serde(default)]
    pub refused_twin: u64,
    pub dials_failed: u64,
    pub duplicate_links: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub frames_undecryptable: u64,
    pub frames_malformed: u64,
    pub frames_throttled: u64,
    /// Envelopes that failed verification: dropped.
    #[serde(default)]
    pub envelopes_dropped: u64,
    /// Envelopes answered with `Reject` (bad payload, forged or refused change).
    #[serde(default)]
    pub envelopes_rejected: u64,
    /// Statements refused as forged (a group change or message its author did not
    /// sign, a change its signer may not make, a known message id with other content).
    #[serde(default)]
    pub envelopes_forged: u64,
    /// Envelopes left unanswered because their sender is over a quota (new groups and
    /// invitations it may bring here per hour; it resends later), and catch-up answers
    /// cut because the asking peer spent its relay quota.
    #[serde(default)]
    pub envelopes_over_quota: u64,
}
