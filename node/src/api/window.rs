//! `POST /api/v1/window/show`: the desktop node shows its window (a second launch of
//! the app asks this instead of starting a second node). A headless node has no window
//! and says so.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::{json_body, ApiState};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowRequest {
    /// A conversation to open in it.
    #[serde(default)]
    pub conversation_id: Option<String>,
}

pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request: ShowRequest = if body.is_empty() {
        ShowRequest::default()
    } else {
        json_body::parse(&headers, &body)?
    };
    if state.window_door().open(request.conversation_id) {
        Ok(Json(serde_json::json!({"shown": true})))
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_window",
            "this node runs headless: it has no window to show (open its URL in a browser)",
        ))
    }
}
