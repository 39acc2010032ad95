//! `/api/v1/peers`: the discovered peers, manually added addresses, and the node
//! blacklist. Blocks and addresses are persisted in the settings (so they survive
//! restarts and reach the mesh through the same live-apply path as any setting) and
//! are applied to the running discovery at once.

use std::collections::HashMap;

use api_types::{AddPeerAddress, BlockState, FieldError, NodeId, PeerView};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::json;

use super::{json_body, ApiError, ApiState};
use crate::mesh::peer_view;

fn node_id(text: &str) -> Result<NodeId, ApiError> {
    text.parse::<NodeId>()
        .map_err(|e| FieldError::new("peer_id", e.to_string()).into())
}

fn store_failed(e: storage::StoreError) -> ApiError {
    tracing::error!("peer store: {e}");
    ApiError::internal(e.to_string())
}

/// Every known peer: from the running discovery, or — with the mesh off — the ones
/// remembered in the database, all offline.
async fn known_peers(state: &ApiState) -> Result<Vec<PeerView>, ApiError> {
    if let Some(discovery) = state.mesh().discovery() {
        if let Ok(peers) = discovery.peers().await {
            return Ok(peers.iter().map(peer_view).collect());
        }
    }
    let stored = state.store().peers().await.map_err(store_failed)?;
    Ok(stored.into_iter().map(stored_peer_view).collect())
}

/// Makes a peer the user addresses (a DM) a contact: a peer discovery lists but that
/// never linked is only a sighting, held in memory; choosing to write to it records it
/// in the store (so its conversation has someone to belong to) and tells discovery to
/// keep it. A peer neither stored nor listed is left to the store's `404`.
pub(super) async fn ensure_contact(state: &ApiState, peer: &NodeId) -> Result<(), ApiError> {
    if state.store().peer(peer.clone()).await?.is_none() {
        record_listed_peer(state, peer).await?;
    }
    Ok(())
}

/// Records a peer discovery lists (a sighting) in the store and makes it a contact;
/// `false` when discovery does not list it.
pub(super) async fn record_listed_peer(state: &ApiState, peer: &NodeId) -> Result<bool, ApiError> {
    let Some(discovery) = state.mesh().discovery() else {
        return Ok(false);
    };
    let peers = discovery.peers().await.unwrap_or_default();
    let Some(listed) = peers.iter().find(|p| p.node_id == *peer && !p.blocked) else {
        return Ok(false);
    };
    let Some(sighting) = crate::peer_store::sighting_of(listed) else {
        return Ok(false);
    };
    let seen_at = sighting.seen_at;
    state.store().record_peer_sighting(sighting).await?;
    if !listed.online {
        state
            .store()
            .set_peer_offline(peer.clone(), seen_at)
            .await?;
    }
    discovery.confirm(peer.clone());
    Ok(true)
}

/// A peer as the database remembers it: offline until discovery sees it again.
pub(super) fn stored_peer_view(p: storage::Peer) -> PeerView {
    PeerView {
        address: match (&p.last_ip, p.last_port) {
            (Some(ip), Some(port)) => ip
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| std::net::SocketAddr::new(ip, port).to_string()),
            _ => None,
        },
        peer_id: p.peer_id.to_string(),
        display_name: p.display_name,
        online: false,
        last_seen_at: p.last_seen_at.and_then(|t| u64::try_from(t).ok()),
        blocked: p.blocked,
        clock_offset_ms: None,
        rtt_ms: None,
        link: if p.blocked {
            api_types::LinkState::Blocked
        } else {
            api_types::LinkState::Offline
        },
        key_fingerprint: None,
        presence: api_types::Presence::Offline,
        copy_of: None,
    }
}

/// `GET /api/v1/peers[?include_blocked=true]`: online first, then by name.
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<PeerView>>, ApiError> {
    let include_blocked = query.get("include_blocked").is_some_and(|v| v == "true");
    let blocked = state.settings().current().lan_mesh.blocked_peers;
    let mut peers: Vec<PeerView> = known_peers(&state)
        .await?
        .into_iter()
        .map(|mut p| {
            // The settings are the source of truth for blocks.
            p.blocked = blocked.iter().any(|b| b.as_str() == p.peer_id);
            if p.blocked {
                p.presence = api_types::Presence::Offline;
            }
            p
        })
        .filter(|p| include_blocked || !p.blocked)
        .collect();
    super::diagnostics::add_link_fields(&state, &mut peers);
    peers.sort_by(|a, b| {
        b.online
            .cmp(&a.online)
            .then_with(|| a.display_name.cmp(&b.display_name))
            .then_with(|| a.peer_id.cmp(&b.peer_id))
    });
    Ok(Json(peers))
}

/// `POST /api/v1/peers {"address": "ip:port"}`: probe this discovery address every
/// heartbeat (peers in routed subnets that broadcast does not reach).
pub async fn add_address(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<AddPeerAddress>), ApiError> {
    let request: AddPeerAddress = json_body::parse(&headers, &body)?;
    let addr = api_types::settings::peer_address(&request.address)
        .map_err(|e| ApiError::from(FieldError::new("address", e)))?;
    let mut addresses = state.settings().current().lan_mesh.peer_addresses;
    addresses.push(addr);
    let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    state
        .settings()
        .update(&json!({"lan_mesh": {"peer_addresses": list}}))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AddPeerAddress {
            address: addr.to_string(),
        }),
    ))
}

/// `DELETE /api/v1/peers/{peer_id}`: takes a peer out of the list (and stops probing
/// its address if it was added by hand). Its contact and chats stay.
pub async fn forget(
    State(state): State<ApiState>,
    Path(peer_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = node_id(&peer_id)?;
    let Some(discovery) = state.mesh().discovery() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "mesh_off",
            "the LAN mesh is off; enable it to manage discovered peers",
        ));
    };
    let peers = discovery.peers().await.unwrap_or_default();
    let Some(peer) = peers.iter().find(|p| p.node_id == id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such peer",
        ));
    };
    if let Some(addr) = peer.discovery_addr {
        let mut addresses = state.settings().current().lan_mesh.peer_addresses;
        let before = addresses.len();
        addresses.retain(|a| *a != addr);
        if addresses.len() != before {
            let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            state
                .settings()
                .update(&json!({"lan_mesh": {"peer_addresses": list}}))
                .await?;
        }
    }
    discovery
        .forget(id.clone())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // Forgetting is also how an admin accepts a reinstalled machine's new link keys.
    if state
        .store()
        .unpin_link_keys(id.clone())
        .await
        .map_err(store_failed)?
    {
        tracing::info!(peer = %id, "forgot the peer's pinned link keys");
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn block(
    State(state): State<ApiState>,
    Path(peer_id): Path<String>,
) -> Result<Json<BlockState>, ApiError> {
    set_blocked(&state, node_id(&peer_id)?, true).await
}

pub async fn unblock(
    State(state): State<ApiState>,
    Path(peer_id): Path<String>,
) -> Result<Json<BlockState>, ApiError> {
    set_blocked(&state, node_id(&peer_id)?, false).await
}

/// Persists the block first (so it holds across restarts even if the node dies right
/// after answering), then drops the peer's queued envelopes and tells discovery, which
/// hides the peer and emits the event.
async fn set_blocked(
    state: &ApiState,
    id: NodeId,
    blocked: bool,
) -> Result<Json<BlockState>, ApiError> {
    let mut list = state.settings().current().lan_mesh.blocked_peers;
    list.retain(|b| *b != id);
    if blocked {
        list.push(id.clone());
    }
    let list: Vec<String> = list.iter().map(ToString::to_string).collect();
    state
        .settings()
        .update(&json!({"lan_mesh": {"blocked_peers": list}}))
        .await?;
    // The settings are the block; the store takes it now rather than when the mesh
    // supervisor sees the change, so nothing from the peer is stored after this answer.
    let mesh = state.mesh();
    crate::blocks::apply(
        state.store(),
        &state.settings().current().lan_mesh,
        |event| mesh.publish(event),
    )
    .await
    .map_err(store_failed)?;
    if let Some(discovery) = state.mesh().discovery() {
        let applied = if blocked {
            discovery.block(id.clone()).await
        } else {
            discovery.unblock(id.clone()).await
        };
        if let Err(e) = applied {
            // The settings change reaches discovery through the supervisor as well.
            tracing::warn!("discovery did not take the block change directly: {e}");
        }
    }
    Ok(Json(BlockState {
        peer_id: id.to_string(),
        blocked,
    }))
}
