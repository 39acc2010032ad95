//! The discovery plane: nodes find each other by signed UDP broadcast and probes.
//!
//! Pure core — [`packet`] (codec), [`auth`] (HMAC key), [`replay`] (window + nonce
//! cache), [`rate_limit`], [`filter`] (receive filter and drop counters), [`registry`] (peer state
//! machine), [`targets`] (broadcast addresses and the probe sweep) — and a thin I/O
//! shell: [`socket`] and the [`runtime`] actor behind the [`Discovery`] handle.
//! The wire format is specified in `docs/PROTOCOL.md`.

pub mod auth;
pub mod clock;
pub mod config;
pub mod filter;
pub mod packet;
pub mod rate_limit;
pub mod registry;
pub mod replay;
pub mod runtime;
pub mod socket;
pub mod store;
pub mod targets;

pub use auth::DiscoveryKey;
pub use clock::{Clock, SystemClock, TokioClock};
pub use config::{BroadcastMode, ConfigError, DiscoveryConfig, NetworkSource, SharedSecret};
pub use filter::{DropCounters, DropReason, FilterConfig, ReceiveFilter};
pub use packet::{InstanceId, Nonce, Packet, PacketKind, PublicKey, UnixMillis};
pub use registry::{OfflineReason, Peer, PeerChanges, PeerEvent, PeerRegistry};
pub use replay::ReplayGuard;
pub use runtime::{Discovery, DiscoveryEnv, DiscoveryError, DiscoveryStats};
pub use store::{MemoryPeerStore, PeerStore, StoreError};
pub use targets::LocalNetwork;
