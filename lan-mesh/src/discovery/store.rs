//! Where known peers live between runs. `lan-mesh` only declares what it needs; the
//! `storage` crate implements it over SQLite, and the node wires the two together.
//!
//! Calls are synchronous and may block (disk): the runtime makes them from a blocking
//! thread, never on an async worker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use api_types::NodeId;
use thiserror::Error;

use super::registry::Peer;

#[derive(Debug, Error)]
#[error("peer store: {0}")]
pub struct StoreError(pub String);

pub trait PeerStore: Send + 'static {
    /// Every remembered peer, as last saved.
    fn load_peers(&mut self) -> Result<Vec<Peer>, StoreError>;
    /// Inserts or replaces one peer (keyed by node id).
    fn save_peer(&mut self, peer: &Peer) -> Result<(), StoreError>;
    fn remove_peer(&mut self, node_id: &NodeId) -> Result<(), StoreError>;
}

/// In-memory store for tests and for nodes that keep nothing. Clones share contents,
/// so a test can keep one clone and look inside after the runtime stopped.
#[derive(Debug, Clone, Default)]
pub struct MemoryPeerStore {
    peers: Arc<Mutex<BTreeMap<NodeId, Peer>>>,
}

impl MemoryPeerStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_peers(peers: impl IntoIterator<Item = Peer>) -> Self {
        let store = Self::default();
        if let Ok(mut map) = store.peers.lock() {
            map.extend(peers.into_iter().map(|p| (p.node_id.clone(), p)));
        }
        store
    }

    pub fn snapshot(&self) -> Vec<Peer> {
        self.peers
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl PeerStore for MemoryPeerStore {
    fn load_peers(&mut self) -> Result<Vec<Peer>, StoreError> {
        Ok(self.snapshot())
    }

    fn save_peer(&mut self, peer: &Peer) -> Result<(), StoreError> {
        let mut map = self
            .peers
            .lock()
            .map_err(|_| StoreError("poisoned".into()))?;
        map.insert(peer.node_id.clone(), peer.clone());
        Ok(())
    }

    fn remove_peer(&mut self, node_id: &NodeId) -> Result<(), StoreError> {
        let mut map = self
            .peers
            .lock()
            .map_err(|_| StoreError("poisoned".into()))?;
        map.remove(node_id);
        Ok(())
    }
}
