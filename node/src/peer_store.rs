//! Discovery's `PeerStore` over the SQLite store, so known peers (and their virtual
//! users) survive restarts and show as offline until seen again.
//!
//! Discovery calls these from a blocking thread, so waiting on the async store here
//! blocks no runtime worker.

use std::net::{IpAddr, SocketAddr};

use api_types::NodeId;
use lan_mesh::discovery::{self, Peer, PeerStore, UnixMillis};
use storage::{PeerSighting, Store};
use tokio::runtime::Handle;

pub struct SqlitePeerStore {
    store: Store,
    runtime: Handle,
}

impl SqlitePeerStore {
    pub fn new(store: Store, runtime: Handle) -> Self {
        SqlitePeerStore { store, runtime }
    }
}

fn failed(e: impl std::fmt::Display) -> discovery::StoreError {
    discovery::StoreError(e.to_string())
}

fn unix_ms(t: UnixMillis) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// What the store records of a peer discovery lists: its address and name.
pub fn sighting_of(peer: &Peer) -> Option<PeerSighting> {
    let addr = peer.listen_addr?;
    Some(PeerSighting {
        peer_id: peer.node_id.clone(),
        display_name: peer.display_name.clone(),
        ip: addr.ip().to_string(),
        port: addr.port(),
        capabilities: String::new(),
        seen_at: peer.last_seen_at.map(unix_ms).unwrap_or_default(),
    })
}

impl PeerStore for SqlitePeerStore {
    fn load_peers(&mut self) -> Result<Vec<Peer>, discovery::StoreError> {
        let stored = self.runtime.block_on(self.store.peers()).map_err(failed)?;
        Ok(stored
            .into_iter()
            .map(|p| {
                let listen_addr =
                    match (p.last_ip.as_deref().map(str::parse::<IpAddr>), p.last_port) {
                        (Some(Ok(ip)), Some(port)) => Some(SocketAddr::new(ip, port)),
                        _ => None,
                    };
                Peer {
                    node_id: p.peer_id,
                    display_name: p.display_name,
                    discovery_addr: None,
                    listen_addr,
                    instance_id: None,
                    public_key: None,
                    online: false,
                    last_seen_at: p
                        .last_seen_at
                        .and_then(|t| u64::try_from(t).ok())
                        .map(UnixMillis),
                    blocked: p.blocked,
                    clock_offset_ms: None,
                    presence: api_types::Presence::Online,
                }
            })
            .collect())
    }

    fn save_peer(&mut self, peer: &Peer) -> Result<(), discovery::StoreError> {
        let seen_at = peer.last_seen_at.map(unix_ms).unwrap_or_default();
        match sighting_of(peer).filter(|_| peer.online) {
            Some(sighting) => self
                .runtime
                .block_on(self.store.record_peer_sighting(sighting))
                .map(drop)
                .map_err(failed),
            None => self
                .runtime
                .block_on(self.store.set_peer_offline(peer.node_id.clone(), seen_at))
                .or_else(ignore_unknown)
                .map_err(failed),
        }
    }

    fn remove_peer(&mut self, node_id: &NodeId) -> Result<(), discovery::StoreError> {
        // The contact and its chat history stay: forgetting a peer only takes it out of
        // the discovered list. It is offline in the store from now on.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        self.runtime
            .block_on(self.store.set_peer_offline(node_id.clone(), now))
            .or_else(ignore_unknown)
            .map_err(failed)
    }
}

fn ignore_unknown(e: storage::StoreError) -> Result<(), storage::StoreError> {
    match e {
        storage::StoreError::NotFound { .. } => Ok(()),
        other => Err(other),
    }
}
