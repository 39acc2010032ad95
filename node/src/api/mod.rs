//! The local API: JSON over HTTP on loopback, for the UI and for scripts and tests.
//! Every route sits behind `guard` (Host/Origin, bearer token); see docs/API.md.

mod assets;
mod contacts;
mod conversations;
pub(crate) mod diagnostics;
mod error;
mod events;
mod files;
pub(crate) mod groups;
mod guard;
pub mod identity;
mod json_body;
mod params;
mod peers;
mod presence;
mod search;
mod settings;
mod status;
pub(crate) mod views;
mod window;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use storage::Store;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::live_settings::LiveSettings;
use crate::mesh::MeshHandle;

/// Local API requests are small JSON documents; anything bigger is a mistake or abuse.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// A message may hold up to `storage::MAX_BODY_BYTES` of text, which JSON escaping can
/// make several times longer (`\u0001` is six bytes for one). Bodies up to this size
/// reach the handler, so a text that is too long gets a `400` naming `text` rather than
/// a bare `413`.
const SEND_BODY_BYTES: usize = 8 * storage::MAX_BODY_BYTES;

/// What handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    parts: ApiParts,
    /// The local identity (node id, name) this API last found or wrote in the store:
    /// sending checks it on every message, and the store's copy changes only through
    /// `identity::ensure_local`, so a match here spares a store read on that hot path.
    identity_stored: std::sync::Mutex<Option<(api_types::NodeId, String)>>,
    /// Unix ms when this node's API started (diagnostics).
    started_at: u64,
    /// Held while this node takes a new identity.
    renewing: tokio::sync::Mutex<()>,
}

/// What the API serves from, as the node started it.
pub struct ApiParts {
    pub local_addr: SocketAddr,
    pub token: String,
    pub settings: Arc<LiveSettings>,
    pub mesh: MeshHandle,
    pub store: Store,
    pub files: crate::files::FileService,
    /// Cancelled when the node stops, so long-lived event streams end at once.
    pub stopping: CancellationToken,
    /// Shows the desktop window, when this node has one.
    pub window_door: crate::desktop::WindowDoor,
}

impl ApiState {
    pub fn new(parts: ApiParts) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                parts,
                identity_stored: std::sync::Mutex::new(None),
                started_at: u64::try_from(now_ms()).unwrap_or(0),
                renewing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn settings(&self) -> &LiveSettings {
        &self.inner.parts.settings
    }

    fn mesh(&self) -> &MeshHandle {
        &self.inner.parts.mesh
    }

    fn store(&self) -> &Store {
        &self.inner.parts.store
    }

    fn files(&self) -> &crate::files::FileService {
        &self.inner.parts.files
    }

    fn window_door(&self) -> &crate::desktop::WindowDoor {
        &self.inner.parts.window_door
    }

    async fn renewing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.renewing.lock().await
    }

    fn identity_stored(&self) -> std::sync::MutexGuard<'_, Option<(api_types::NodeId, String)>> {
        self.inner
            .identity_stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// Wall-clock Unix milliseconds, as the store takes them: the same clock as delivery's
/// (including its test offset), so stamps and retry times agree.
fn now_ms() -> storage::UnixMs {
    lan_mesh::delivery::now_ms()
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/status", get(status::get))
        .route("/settings", get(settings::get).put(settings::put))
        .route("/settings/secret", post(settings::generate_secret))
        .route("/peers", get(peers::list).post(peers::add_address))
        .route("/peers/{peer_id}", delete(peers::forget))
        .route("/peers/{peer_id}/block", post(peers::block))
        .route("/peers/{peer_id}/unblock", post(peers::unblock))
        .route("/identity/new", post(identity::renew))
        .route("/presence", get(presence::get).put(presence::put))
        .route("/presence/activity", post(presence::activity))
        .route("/contacts", get(contacts::list))
        .route("/conversations", get(conversations::list))
        .route(
            "/conversations/{id}/messages",
            get(conversations::history)
                .post(conversations::send)
                .layer(DefaultBodyLimit::max(SEND_BODY_BYTES)),
        )
        .route("/conversations/{id}/read", post(conversations::read))
        .route(
            "/conversations/{id}/messages/{message_id}/retry",
            post(conversations::retry),
        )
        .route("/groups", get(groups::list).post(groups::create))
        .route("/groups/{id}", get(groups::get).put(groups::update))
        .route("/groups/{id}/leave", post(groups::leave))
        .route("/groups/{id}/dissolve", post(groups::dissolve))
        .route("/group-invitations", get(groups::invitations))
        .route("/group-invitations/{id}/accept", post(groups::accept))
        .route("/group-invitations/{id}/decline", post(groups::decline))
        .route(
            "/conversations/{id}/files",
            // A file is as large as the blob store takes (64 GiB): it streams to disk.
            post(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/files",
            post(files::store).layer(DefaultBodyLimit::disable()),
        )
        .route("/files/{file_id}", get(files::content))
        .route("/files/{file_id}/status", get(files::status))
        .route("/files/{file_id}/fetch", post(files::fetch))
        .route("/files/{file_id}/cancel", post(files::cancel))
        .route("/files/{file_id}/withdraw", post(files::withdraw))
        .route("/files/{file_id}/offer", post(files::offer))
        .route("/files/{file_id}/open", post(files::open))
        .route("/files/{file_id}/reveal", post(files::reveal))
        .route("/search", get(search::search))
        .route("/events", get(events::stream))
        .route("/diagnostics", get(diagnostics::get))
        .route("/diagnostics/export", get(diagnostics::export))
        .route("/window/show", post(window::show))
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
