//! What the transport runs from: the LAN settings plus the node's keys, and the limits
//! that replace tungstenite's (much larger) defaults.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use api_types::{Cidr, NodeId};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::discovery::SharedSecret;

/// Handshake (TCP + WebSocket upgrade + Noise + ready) must finish within this, or the
/// connection is dropped: a slow-loris peer cannot hold a slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections (links and handshakes) from one IP at once. A node needs one per peer
/// (two briefly while a simultaneous dial is resolved); several nodes may share a host.
pub const MAX_CONNECTIONS_PER_IP: usize = 8;
/// Connections in all; a LAN office is tens to a few hundred nodes.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections the kernel may hold completed for the listener before it accepts them
/// (capped by `net.core.somaxconn`, 4,096 on current Linux): room for a flood's burst
/// of reconnects (the held-open flood test sends about 2,000 at once) so that an honest
/// dial is not dropped while the accept loop catches up.
pub const LISTEN_BACKLOG: u32 = 4096;
/// Handshakes started by one IP: a burst of 16, then 4 a second. A node dials each
/// peer once and redials with backoff, so a real host stays far below; a flood of
/// connections costs us one `accept` each, not a Noise handshake (loopback is exempt:
/// those are nodes on this machine).
pub const HANDSHAKE_BURST: f64 = 16.0;
pub const HANDSHAKES_PER_SEC: f64 = 4.0;
/// Dials under way at once. Discovery may list up to a thousand unproven sightings
/// (an insider can announce made-up ids); past this, a dial waits for the next
/// reason to link instead of piling up sockets.
pub const MAX_DIALS: usize = 64;
/// Peers whose redial backoff is remembered; past this, entries whose backoff has run
/// out are dropped first.
pub const MAX_REDIAL_ENTRIES: usize = 4096;
/// One WebSocket message is one sealed Noise message (nonce + ≤ 64 KiB).
const MAX_WS_MESSAGE: usize = 70 * 1024;
/// How much a WebSocket reads at once. tungstenite zero-fills this much of its buffer
/// before every read, so it is resident for every open WebSocket: its default of
/// 128 KiB made each stalled handshake in a flood (up to `MAX_CONNECTIONS`) and each
/// link cost 128 KiB. A larger frame still gets the room it needs (it is read in
/// several reads).
const WS_READ_BUFFER: usize = 16 * 1024;
/// Envelopes queued for one link (its bulk lane) before `send` reports it busy and
/// `send_wait` waits.
pub const LINK_QUEUE: usize = 256;
/// File content frames (chunks, manifest pages) queued for one link (its files lane),
/// sent only when neither other lane has anything: 16 × 128 KiB = 2 MiB per link. The
/// file server never has more than this many chunks per peer queued
/// (`files::SERVE_QUEUE_PER_PEER`), so the lane fills only if the socket stalls.
pub const FILE_QUEUE: usize = 16;
/// Acks, rejects and close frames queued for one link (its control lane), sent before
/// any queued envelope. Each answers an envelope the peer sent, so the peer's own
/// sending (and the inbound budget) bounds how fast this fills.
pub const CONTROL_QUEUE: usize = 128;
/// How long a link closed here may take to tell the peer why (a `Close` frame and the
/// WebSocket close) before its socket is dropped anyway.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Undecryptable messages in a row after which a link is garbage, not a lossy path.
pub const MAX_BAD_MESSAGES_IN_A_ROW: u32 = 64;
/// The path the listener serves; anything else is refused before the upgrade. v2:
/// XXpsk0 with the Argon2id-derived PSK; a v1 dialler (an older node) gets a 404
/// before any cryptography (docs/PROTOCOL.md, "Compatibility").
pub const LINK_PATH: &str = "/lanchat/link/v2";

pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_WS_MESSAGE)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    pub node_id: NodeId,
    /// `listen_host:listen_port`.
    pub listen: SocketAddr,
    /// The keys of the settings' shared secret, derived once (see [`crate::secret`]).
    pub shared_secret: SharedSecret,
    /// The effective list (settings, or this machine's subnets when those are empty).
    pub allowed_subnets: Vec<Cidr>,
    pub blocked_subnets: Vec<Cidr>,
    pub blocked_peers: Vec<NodeId>,
    /// A ping goes out after this much quiet; a link silent for `dead_after` is closed.
    pub keepalive: Duration,
    pub dead_after: Duration,
    /// Redial backoff after a failed dial: doubles from `first`, capped at `max`, ±20 %.
    pub redial_first: Duration,
    pub redial_max: Duration,
}

impl TransportConfig {
    pub fn ip_is_blocked(&self, ip: IpAddr) -> bool {
        self.blocked_subnets.iter().any(|c| c.contains(ip))
    }

    /// Blocked subnet first (priority), then the allowed list.
    pub fn ip_is_admitted(&self, ip: IpAddr) -> bool {
        !self.ip_is_blocked(ip) && self.allowed_subnets.iter().any(|c| c.contains(ip))
    }

    pub fn peer_is_blocked(&self, peer: &NodeId) -> bool {
        self.blocked_peers.contains(peer)
    }

    /// Whether a change needs the listener rebound (others only close links).
    pub fn same_listener(&self, other: &TransportConfig) -> bool {
        self.listen == other.listen
    }
}
