//! `GET /api/v1/settings` and `PUT /api/v1/settings` (a partial document: only the
//! keys sent change; the answer is the whole, normalised result, without the shared
//! secret), and `POST /api/v1/settings/secret` (a strong secret to offer the user).

use api_types::{GeneratedSecret, SettingsView};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use super::{json_body, ApiError, ApiState};

pub async fn get(State(state): State<ApiState>) -> Json<SettingsView> {
    Json(SettingsView::from(&state.settings().current()))
}

pub async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SettingsView>, ApiError> {
    let patch: serde_json::Value = json_body::parse(&headers, &body)?;
    let settings = state.settings().update(&patch).await?;
    Ok(Json(SettingsView::from(&settings)))
}

/// A new random secret (nothing is saved: the settings tab puts it into the field, the
/// user saves it and reads it to colleagues).
pub async fn generate_secret() -> Json<GeneratedSecret> {
    Json(GeneratedSecret {
        secret: lan_mesh::secret::generate(),
    })
}
