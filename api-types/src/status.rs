//! `GET /api/v1/status`.

use serde::{Deserialize, Serialize};

/// What the LAN mesh runtime is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeshState {
    /// Disabled in settings.
    Off,
    /// Enabled; the runtime is (re)starting.
    Starting,
    /// Enabled and running.
    Running,
    /// Enabled but could not start (port taken, …); see `mesh_error`.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node_id: String,
    /// The configured display name, or the host name when none is configured.
    pub display_name: String,
    /// A name for the first-start welcome to offer: the user's full name from the
    /// system account, else the login name, else the host name.
    #[serde(default)]
    pub suggested_name: String,
    pub version: String,
    pub mesh_enabled: bool,
    pub mesh_state: MeshState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_error: Option<String>,
    pub api_port: u16,
    pub listen_port: u16,
    pub discovery_port: u16,
    /// Discovery's packet counters while the mesh runs, else `null`.
    pub discovery: Option<crate::peers::DiscoveryCounters>,
    /// The transport's link and frame counters while the mesh runs, else `null`.
    #[serde(default)]
    pub transport: Option<crate::peers::TransportCounters>,
    /// A short fingerprint of this node's link key, to compare with what a peer pinned.
    #[serde(default)]
    pub link_key: String,
    /// What the user or IT should know about: an open LAN, a clock that is off, …
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// This node's presence, as `GET /api/v1/presence` answers it.
    #[serde(default)]
    pub presence: crate::presence::MyPresence,
}

/// One warning in `GET /api/v1/status`. `code` is stable (the UI localises by it);
/// `message` is an English sentence for scripts and logs; the other fields say what it
/// is about, when it is about something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: WarningCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// For clock warnings: the clock difference in milliseconds (for `clock_offset`,
    /// ours minus our colleagues'; for `peer_clock_offset`, the peer's minus ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<i64>,
    /// For `duplicate_identity`: the other computer's link address (`ip:port`); for a
    /// colleague's twins, the first of `addresses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// For `duplicate_identity` about a colleague: every address holding its id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningCode {
    /// The mesh runs without a shared secret (the explicit open LAN mode): anyone on
    /// the LAN can join and see who is online.
    OpenLan,
    /// The shared secret (from the settings file or a preseed) is shorter than the API
    /// accepts (12 characters): replace it with a generated one.
    WeakSecret,
    /// This computer's clock differs from most online colleagues' by over a minute.
    ClockOffset,
    /// One colleague's clock differs from ours by over a minute.
    PeerClockOffset,
    /// Two live computers hold one identity (a copied data directory, a cloned VM):
    /// this one and the one at `address` (`peer_id` is this node's id), or a
    /// colleague's (`peer_id`) at `addresses`. Links with a twinned colleague are
    /// refused, so messages for it wait instead of going to either twin.
    DuplicateIdentity,
    /// The data directory's disk is full: nothing more is stored (messages from
    /// colleagues wait on their computers, unacknowledged, and arrive once there is
    /// space). Gone with the next write that succeeds.
    DiskFull,
    /// The database cannot be written for another reason of the disk (I/O error,
    /// read-only file system, permissions); `message` has the system's words.
    StorageError,
    /// `settings.json` was edited by hand into something the node cannot use (not
    /// JSON, a bad value, another node id): the node keeps the settings it had and does
    /// not save over the file until it is fixed; `message` names the problem.
    SettingsFile,
}

/// The answer to `POST /api/v1/identity/new`: this computer's new identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIdentity {
    /// The id its new keys derive (as `status.node_id` shows from now on).
    pub node_id: String,
    /// The id it had, which stays with the computer it was copied from.
    pub previous_id: String,
    /// Fingerprint of the new link key (as `status.link_key`).
    pub link_key: String,
}
