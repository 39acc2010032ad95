//! `lan-mesh`: everything that crosses the LAN — discovery, the peer registry and
//! blacklists, the encrypted transport, envelopes, their delivery and group catch-up.
//! It knows nothing of Tauri, axum or Leptos, and nothing of the database: discovery
//! sees persistence through its `PeerStore` trait, delivery and the transport through
//! the [`ports`] (implemented by the node over its store); delivery and catch-up send
//! on the [`links`] (implemented by the transport). `testing` (tests and the `testing`
//! feature only) has both in memory. Rules it shares with the
//! store (ids, clocks, the group state machine, text limits) come from `chat_core`.
//!
//! The node starts the planes side by side (see `src-tauri/src/mesh.rs`):
//! [`discovery::Discovery::start`], then [`transport::Transport::start`] (the LAN
//! listener), then [`delivery::spawn`] between them. Wire format: docs/PROTOCOL.md.

pub mod delivery;
pub mod discovery;
pub mod envelope;
pub mod files;
pub mod links;
pub mod ports;
pub mod rate_limit;
pub mod secret;
mod spare_room;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transport;
