//! The transport's key book over the store, with one addition: a peer that proves its
//! id in a link handshake becomes a **contact**. Discovery holds peers it merely heard
//! as sightings, in memory only (anyone with the secret can announce made-up ids); a
//! proven id is recorded in the store with the name and address discovery knows, and
//! discovery is told to keep it. This runs inside the handshake, before the link
//! carries its first envelope, so whatever the peer sends (an invitation, a message)
//! finds it stored under its name.

use api_types::NodeId;
use lan_mesh::discovery::Discovery;
use lan_mesh::ports::{KeyBook, KeyPin, PortFuture, Reattach};
use mesh_store::StorePorts;
use storage::Store;

pub struct ContactBook {
    ports: StorePorts,
    store: Store,
    discovery: Discovery,
}

impl ContactBook {
    pub fn new(store: Store, discovery: Discovery) -> Self {
        ContactBook {
            ports: StorePorts::new(store.clone()),
            store,
            discovery,
        }
    }

    async fn make_contact(&self, peer: &NodeId) {
        let peers = self.discovery.peers().await.unwrap_or_default();
        let listed = peers.iter().find(|p| p.node_id == *peer && !p.blocked);
        // Not listed yet (a link before the first discovery packet): the inbound path
        // stores the peer, and discovery's first sighting of a confirmed id saves its
        // name.
        if let Some(sighting) = listed.and_then(crate::peer_store::sighting_of) {
            if let Err(e) = self.store.record_peer_sighting(sighting).await {
                tracing::warn!(%peer, "cannot record a linked peer: {e}");
            }
        }
        self.discovery.confirm(peer.clone());
    }
}

impl KeyBook for ContactBook {
    fn pin_link_keys(&self, peer: NodeId, keys: [u8; 64]) -> PortFuture<'_, KeyPin> {
        Box::pin(async move {
            let pin = self.ports.pin_link_keys(peer.clone(), keys).await?;
            if pin != KeyPin::Mismatch {
                self.make_contact(&peer).await;
            }
            Ok(pin)
        })
    }

    fn reattach_identity(
        &self,
        old: NodeId,
        old_keys: [u8; 64],
        old_derived: bool,
        new: NodeId,
    ) -> PortFuture<'_, Reattach> {
        self.ports
            .reattach_identity(old, old_keys, old_derived, new)
    }
}
