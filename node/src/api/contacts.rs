//! `GET /api/v1/contacts[?include_blocked=true]`: the people the user can talk to —
//! this node's own user and the virtual user `lan:{peer_id}` of every peer it knows.
//!
//! Peers come from the database (so a contact stays after its peer was removed from
//! the discovered list, with its history) overlaid with the running discovery's view
//! (online state, current name and address). Blocks follow the settings, as in the
//! peers list.

use std::collections::BTreeMap;

use api_types::{ContactView, MeshState, NodeId, PeerView};
use axum::extract::State;
use axum::Json;
use storage::{ConversationId, UserId};

use super::params::Params;
use super::{identity, peers, ApiError, ApiState};
use crate::mesh::peer_view;

/// Self first, then online, then by name.
pub async fn list(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<Vec<ContactView>>, ApiError> {
    let include_blocked = params.flag("include_blocked")?;
    let settings = state.settings().current();
    let mut known: BTreeMap<NodeId, PeerView> = state
        .store()
        .peers()
        .await?
        .into_iter()
        .map(|p| (p.peer_id.clone(), peers::stored_peer_view(p)))
        .collect();
    if let Some(discovery) = state.mesh().discovery() {
        // If discovery does not answer (it is stopping), the stored view stands.
        for p in discovery.peers().await.unwrap_or_default() {
            known.insert(p.node_id.clone(), peer_view(&p));
        }
    }
    let blocked = &settings.lan_mesh.blocked_peers;
    let own_id = &settings.lan_mesh.node_id;
    let mut contacts: Vec<ContactView> = known
        .into_iter()
        .filter(|(id, _)| id != own_id)
        .map(|(id, p)| {
            let is_blocked = blocked.contains(&id);
            contact(&id, p, is_blocked)
        })
        .filter(|c| include_blocked || !c.blocked)
        .collect();
    // On the LAN, this node is reachable while its mesh runs.
    let on_lan = state.mesh().snapshot().state == MeshState::Running;
    contacts.push(ContactView {
        user_id: UserId::lan(own_id).to_string(),
        peer_id: own_id.to_string(),
        display_name: identity::own_name(&settings),
        online: on_lan,
        presence: api_types::Presence::shown(on_lan, state.mesh().presence().get().presence),
        address: None,
        last_seen_at: None,
        blocked: false,
        is_self: true,
        conversation_id: ConversationId::dm(own_id).to_string(),
    });
    contacts.sort_by(|a, b| {
        b.is_self
            .cmp(&a.is_self)
            .then_with(|| b.online.cmp(&a.online))
            .then_with(|| {
                a.display_name
                    .to_lowercase()
                    .cmp(&b.display_name.to_lowercase())
            })
            .then_with(|| a.peer_id.cmp(&b.peer_id))
    });
    Ok(Json(contacts))
}

fn contact(id: &NodeId, p: PeerView, blocked: bool) -> ContactView {
    ContactView {
        user_id: UserId::lan(id).to_string(),
        // A peer that never told its name (a group member not yet seen) shows its id.
        display_name: if p.display_name.is_empty() {
            p.peer_id.clone()
        } else {
            p.display_name
        },
        peer_id: p.peer_id,
        online: p.online && !blocked,
        presence: if blocked {
            api_types::Presence::Offline
        } else {
            p.presence
        },
        address: p.address,
        last_seen_at: p.last_seen_at,
        blocked,
        is_self: false,
        conversation_id: ConversationId::dm(id).to_string(),
    }
}
