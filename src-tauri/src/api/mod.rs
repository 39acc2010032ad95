//! The local API: JSON over HTTP on loopback, for the UI and for scripts and tests.
//! Every route sits behind `guard` (Host/Origin, bearer token); see docs/API.md.

mod assets;
mod error;
mod guard;
mod settings;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;

pub use error::ApiError;

use crate::live_settings::LiveSettings;

/// Local API requests are small JSON documents; anything bigger is a mistake or abuse.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    local_addr: SocketAddr,
    token: String,
    settings: Arc<LiveSettings>,
}

impl ApiState {
    pub fn new(local_addr: SocketAddr, token: String, settings: Arc<LiveSettings>) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                local_addr,
                token,
                settings,
            }),
        }
    }

    fn settings(&self) -> &LiveSettings {
        &self.inner.settings
    }
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/status", get(status::get))
        .route("/settings", get(settings::get).put(settings::put))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() });
    Router::new()
        .nest("/api/v1", api)
        .route("/api", get(|| async { ApiError::not_found() }))
        .fallback(assets::serve)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}
