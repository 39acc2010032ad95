//! Query strings and path segments, read so that bad input is a JSON error like every
//! other (axum's own rejections are plain text).

use std::collections::HashMap;

use api_types::FieldError;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// The query string as name → value; a repeated name keeps its last value.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `limit=N`: `default` when absent; 1 or more, values above `max` are capped (a
    /// shorter page with a cursor is still a correct page).
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        let Some(text) = self.get("limit") else {
            return Ok(default);
        };
        match text.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n.min(max)),
            _ => Err(FieldError::new("limit", format!("a whole number from 1 to {max}")).into()),
        }
    }

    /// `name=true|false`, false when absent.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(FieldError::new(name, "true or false").into()),
        }
    }
}

/// Path segments (`{id}`), percent-decoded.
pub struct Segments<T>(pub T);

impl<S, T> FromRequestParts<S> for Segments<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Segments(t))
            .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
    }
}
