//! `GET /api/v1/status`.

use api_types::{DiscoveryCounters, Status};
use axum::extract::State;
use axum::Json;

use super::ApiState;

pub async fn get(State(state): State<ApiState>) -> Json<Status> {
    let settings = state.settings().current();
    let mesh = &settings.lan_mesh;
    let display_name = super::identity::own_name(&settings);
    let snapshot = state.mesh().snapshot();
    let discovery = match &snapshot.discovery {
        Some(d) => d.stats().await.ok().map(|s| {
            let r = s.received;
            DiscoveryCounters {
                accepted: r.accepted,
                rate_limited: r.rate_limited,
                oversized: r.oversized,
                malformed: r.malformed,
                unsupported_version: r.unsupported_version,
                own: r.own,
                blocked_peer: r.blocked_peer,
                blocked_subnet: r.blocked_subnet,
                not_allowed: r.not_allowed,
                missing_tag: r.missing_tag,
                bad_tag: r.bad_tag,
                unexpected_tag: r.unexpected_tag,
                stale: r.stale,
                replayed: r.replayed,
                sent: s.sent,
                send_errors: s.send_errors,
                peers_online: s.peers_online as u64,
            }
        }),
        None => None,
    };
    Json(Status {
        node_id: mesh.node_id.to_string(),
        display_name,
        version: env!("CARGO_PKG_VERSION").to_string(),
        mesh_enabled: mesh.enabled,
        mesh_state: snapshot.state,
        mesh_error: snapshot.error,
        api_port: state.inner.local_addr.port(),
        listen_port: mesh.listen_port,
        discovery_port: mesh.discovery_port,
        discovery,
        transport: snapshot.transport.as_ref().map(|t| t.counters()),
        link_key: state.mesh().link_key().to_string(),
    })
}
