//! Every failure leaves the API as `{code, message[, field]}` with a fitting status.

use api_types::{ApiErrorBody, FieldError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use storage::StoreError;

use crate::live_settings::UpdateError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ApiErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ApiErrorBody {
                code: code.into(),
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
    }

    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not accept that method",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// What the store refused, as the API says it. Only what a client can cause or fix
/// gets its own status; everything else is the node's failure (`500 internal`).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such {what}: {id}"),
            ),
            StoreError::Blocked(peer) => ApiError::forbidden(
                "peer_blocked",
                format!("peer {peer} is blocked; unblock it first"),
            ),
            StoreError::NotFailed { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_failed", e.to_string())
            }
            StoreError::Forbidden { field, reason } => {
                let mut error = ApiError::forbidden("forbidden", reason);
                error.body.field = Some(field.to_string());
                error
            }
            // The store names fields in words ("message id"); the API in snake_case.
            StoreError::Invalid { field, reason } => {
                FieldError::new(field.replace(' ', "_"), reason).into()
            }
            other => {
                tracing::error!("store: {other}");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: e.into(),
        }
    }
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Invalid(field) => field.into(),
            // Logged once by `LiveSettings`; the file is not saved over.
            e @ UpdateError::HandEdited(_) => {
                ApiError::new(StatusCode::CONFLICT, "settings_file_invalid", e.to_string())
            }
            other => {
                tracing::error!("settings update failed: {other}");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
