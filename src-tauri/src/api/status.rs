//! `GET /api/v1/status`.

use api_types::{MeshState, Status};
use axum::extract::State;
use axum::Json;

use super::ApiState;

pub async fn get(State(state): State<ApiState>) -> Json<Status> {
    let settings = state.settings().current();
    let mesh = &settings.lan_mesh;
    let display_name = if mesh.display_name.is_empty() {
        gethostname::gethostname().to_string_lossy().into_owned()
    } else {
        mesh.display_name.clone()
    };
    // The LAN mesh runtime is not part of this build yet: say so rather than pretend.
    let (mesh_state, mesh_error) = if mesh.enabled {
        (
            MeshState::Failed,
            Some("the LAN mesh runtime is not available in this build yet".to_string()),
        )
    } else {
        (MeshState::Off, None)
    };
    Json(Status {
        node_id: mesh.node_id.to_string(),
        display_name,
        version: env!("CARGO_PKG_VERSION").to_string(),
        mesh_enabled: mesh.enabled,
        mesh_state,
        mesh_error,
        api_port: state.inner.local_addr.port(),
        listen_port: mesh.listen_port,
        discovery_port: mesh.discovery_port,
    })
}
