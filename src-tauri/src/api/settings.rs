//! `GET /api/v1/settings` and `PUT /api/v1/settings` (a partial document: only the
//! keys sent change; the answer is the whole, normalised result).

use api_types::Settings;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use super::{json_body, ApiError, ApiState};

pub async fn get(State(state): State<ApiState>) -> Json<Settings> {
    Json(state.settings().current())
}

pub async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Settings>, ApiError> {
    let patch: serde_json::Value = json_body::parse(&headers, &body)?;
    Ok(Json(state.settings().update(&patch).await?))
}
