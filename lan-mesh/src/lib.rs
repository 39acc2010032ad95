//! `lan-mesh`: everything that crosses the LAN (discovery, peer registry, blacklists,
//! transport, envelopes, outbox delivery, group sync) and the runtime that starts and
//! stops it from settings. It knows nothing of SQLite, Tauri or Leptos: the store it
//! needs is a trait that `storage` implements.
//!
//! The discovery and transport planes are not built yet (see docs/ARCHITECTURE.md,
//! "Status"); the node reports the mesh as `off` or `failed` truthfully until they are.
