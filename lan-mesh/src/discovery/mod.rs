//! The discovery plane: nodes find each other by signed UDP broadcast and probes.
//!
//! Pure core — [`packet`] (codec), [`auth`] (HMAC key), [`replay`] (per-sender
//! sequence windows; no clock comparisons), [`rate_limit`](crate::rate_limit), [`filter`] (receive filter
//! and drop counters), [`registry`] (peer state machine, clock offsets), [`targets`]
//! (broadcast addresses and the probe sweep) — and a thin I/O shell: [`socket`], the
//! [`datagrams`] pumps (one task receiving, one sending) and the [`runtime`] actor behind
//! the [`Discovery`] handle.
//! The wire format is specified in `docs/PROTOCOL.md`.
//!
//! How a node runs it (only while `lan_mesh.enabled`):
//!
//! ```no_run
//! use lan_mesh::discovery::{Discovery, DiscoveryConfig, DiscoveryEnv, PeerEvent};
//! use lan_mesh::secret::SecretCache;
//!
//! # async fn node(settings: api_types::LanMeshSettings, host_name: String,
//! #     store: lan_mesh::discovery::MemoryPeerStore,
//! #     root: tokio_util::sync::CancellationToken) -> Result<(), Box<dyn std::error::Error>> {
//! // One Argon2id run per secret value, off the runtime; cached across changes.
//! let mut secrets = SecretCache::default();
//! let keys = secrets.keys(&settings.shared_secret).await?;
//! let mut config = DiscoveryConfig::from_settings(&settings, keys);
//! if config.display_name.is_empty() {
//!     config.display_name = host_name; // the status shows the same fallback
//! }
//! let env = DiscoveryEnv { store: Box::new(store), cancel: root.child_token(), ..Default::default() };
//! let discovery = Discovery::start(config, env).await?; // Err → mesh_state "failed"
//! let mut events = discovery.subscribe();
//! tokio::spawn(async move {
//!     while let Ok(event) = events.recv().await {
//!         match event {
//!             PeerEvent::Online(_peer) => { /* event to the UI; transport may dial */ }
//!             PeerEvent::Updated { changes, .. } if changes.restarted => { /* drop stale links */ }
//!             PeerEvent::Offline { .. } | PeerEvent::Blocked(_) => { /* close links */ }
//!             _ => {}
//!         }
//!     }
//! });
//! // PUT /api/v1/settings changed lan_mesh.* (still enabled):
//! let keys = secrets.keys(&settings.shared_secret).await?; // the cache: no KDF run
//! discovery.reconfigure(DiscoveryConfig::from_settings(&settings, keys)).await?;
//! // GET /api/v1/peers:
//! let _peers = discovery.peers().await?;
//! // Disabled or quitting: goodbye, then wait for the task to end.
//! discovery.shutdown().await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod clock;
pub mod config;
pub mod datagrams;
pub mod filter;
pub mod packet;
pub mod registry;
pub mod replay;
pub mod runtime;
pub mod socket;
pub mod store;
pub mod targets;
pub mod twins;

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
pub use twins::{TwinSighting, TwinWatch};
