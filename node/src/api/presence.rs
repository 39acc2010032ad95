//! `/api/v1/presence`: this node's presence (online / away / busy), as colleagues see
//! it, and the UI's activity reports that end an automatic `away`.

use api_types::{MyPresence, SetPresence};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use super::{json_body, ApiError, ApiState};

/// `GET /api/v1/presence` → `{"presence", "source"}`.
pub async fn get(State(state): State<ApiState>) -> Json<MyPresence> {
    Json(state.mesh().presence().get())
}

/// `PUT /api/v1/presence {"presence": "online|away|busy"}` → the presence now. A choice
/// stays until changed (activity does not end a chosen `away`); colleagues see it
/// within a second (discovery announces it at once).
pub async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<MyPresence>, ApiError> {
    let request: SetPresence = json_body::parse(&headers, &body)?;
    let presence = request.chosen()?;
    if state.mesh().presence().choose(presence) {
        tracing::info!(presence = presence.as_str(), "presence chosen");
    }
    Ok(Json(state.mesh().presence().get()))
}

/// `POST /api/v1/presence/activity` → `204`: the user did something in the UI (the UI
/// reports input at most every 30 s). Restarts the idle timer and ends an automatic
/// `away`.
pub async fn activity(State(state): State<ApiState>) -> StatusCode {
    if state.mesh().presence().activity() {
        tracing::info!("input again: online");
    }
    StatusCode::NO_CONTENT
}
