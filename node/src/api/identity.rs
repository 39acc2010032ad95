//! Who this node is, as the API shows it and as the store stamps outgoing messages.

use api_types::limits::MAX_DISPLAY_NAME_CHARS;
use api_types::Settings;

use api_types::NewIdentity;
use axum::extract::State;
use axum::Json;

use super::{now_ms, ApiError, ApiState};

/// The configured display name, or the host name when none is set (what `status`
/// shows and what discovery announces).
pub fn own_name(settings: &Settings) -> String {
    let name = &settings.lan_mesh.display_name;
    if name.is_empty() {
        crate::host_name()
    } else {
        name.clone()
    }
}

/// `own_name` as the store accepts it: ≤ 64 characters without control characters
/// (a host name can in principle be anything).
pub fn stored_name(settings: &Settings) -> String {
    own_name(settings)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DISPLAY_NAME_CHARS)
        .collect()
}

/// Makes sure the store knows this node's id and current name before it writes a
/// message from the local user (it stamps the sender with them). A read when nothing
/// changed; a write the first time and after a rename.
pub async fn ensure_local(state: &ApiState) -> Result<(), ApiError> {
    let settings = state.settings().current();
    let node_id = settings.lan_mesh.node_id.clone();
    // The store takes ≤ 64 characters without control characters; a host name can
    // in principle be anything.
    let name = stored_name(&settings);
    let wanted = (node_id, name.trim().to_string());
    if state.identity_stored().as_ref() == Some(&wanted) {
        return Ok(());
    }
    let stored = state.store().local_identity().await?;
    if !stored.is_some_and(|s| s.node_id == wanted.0 && s.display_name == wanted.1) {
        state
            .store()
            .set_local_identity(wanted.0.clone(), name, now_ms())
            .await?;
    }
    *state.identity_stored() = Some(wanted);
    Ok(())
}

/// `POST /api/v1/identity/new`: this computer takes a new identity (new keys, so a new
/// id), keeps its history, and tells its colleagues it is a copy of the old id's
/// computer (`crate::new_identity`). Meant for a copy whose twin keeps the old id.
pub async fn renew(State(state): State<ApiState>) -> Result<Json<NewIdentity>, ApiError> {
    // One at a time: a second click waits for the first and renews again.
    let _one = state.renewing().await;
    let renewed =
        crate::new_identity::take_new_identity(state.settings(), state.mesh(), state.store())
            .await
            .map_err(|e| {
                tracing::error!("cannot take a new identity: {e}");
                ApiError::internal(format!("cannot take a new identity: {e}"))
            })?;
    *state.identity_stored() = None;
    Ok(Json(renewed))
}
