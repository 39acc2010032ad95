//! `GET /api/v1/settings` and `PUT /api/v1/settings` (a partial document: only the
//! keys sent change; the answer is the whole, normalised result).

use api_types::Settings;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;

use super::{ApiError, ApiState};

pub async fn get(State(state): State<ApiState>) -> Json<Settings> {
    Json(state.settings().current())
}

pub async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Settings>, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the settings as Content-Type: application/json",
        ));
    }
    let patch: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))?;
    Ok(Json(state.settings().update(&patch).await?))
}
