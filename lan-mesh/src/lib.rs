//! `lan-mesh`: everything that crosses the LAN — discovery, the peer registry and
//! blacklists, the encrypted transport, envelopes and their delivery (group sync comes
//! with the groups issue). It knows nothing of Tauri, axum or Leptos, and runs no SQL:
//! discovery sees storage through its `PeerStore` trait, delivery and the transport
//! through `storage::Store`'s async methods.
//!
//! The node starts the planes side by side (see `src-tauri/src/mesh.rs`):
//! [`discovery::Discovery::start`], then [`transport::Transport::start`] (the LAN
//! listener), then [`delivery::spawn`] between them. Wire format: docs/PROTOCOL.md.

pub mod delivery;
pub mod discovery;
pub mod envelope;
pub mod transport;
