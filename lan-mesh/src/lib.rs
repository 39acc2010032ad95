//! `lan-mesh`: everything that crosses the LAN (discovery, peer registry, blacklists,
//! transport, envelopes, outbox delivery, group sync) and the runtime that starts and
//! stops it from settings. It knows nothing of SQLite, Tauri or Leptos: the store it
//! needs is a trait that `storage` implements.
//!
//! Built so far: the discovery plane ([`discovery`]), as a library the node starts with
//! [`discovery::Discovery::start`]. The transport plane is not built yet.

pub mod delivery;
pub mod discovery;
pub mod envelope;
pub mod transport;
