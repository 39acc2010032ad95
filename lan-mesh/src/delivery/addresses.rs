//! Where each online peer's transport listens, as discovery last saw it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use api_types::NodeId;

#[derive(Debug, Clone, Default)]
pub struct AddressBook(Arc<RwLock<HashMap<NodeId, SocketAddr>>>);

impl AddressBook {
    /// Records an address; true if the peer was not reachable before (it just came
    /// online), so its backlog should go out now.
    pub fn set(&self, peer: &NodeId, addr: SocketAddr) -> bool {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.insert(peer.clone(), addr).is_none()
    }

    pub fn remove(&self, peer: &NodeId) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.remove(peer);
        // Every sighting an insider makes up passes through here (online, then gone).
        crate::spare_room::shrink_if_sparse(&mut map);
    }

    pub fn get(&self, peer: &NodeId) -> Option<SocketAddr> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .copied()
    }
}
