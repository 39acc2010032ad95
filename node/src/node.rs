//! One node: its data directory, settings and local API server, started and stopped
//! as a unit. The LAN mesh runtime will hang off this too.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lan_mesh::transport::NodeKeys;
use serde::Serialize;
use storage::{settings_file, DataDir, DataDirError, SettingsFileError, Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::live_settings::LiveSettings;
use crate::mesh::{Mesh, MeshParts, PeerStoreFactory};
use crate::peer_store::SqlitePeerStore;

/// Written into the data directory so scripts, tests and a second `lanchat` can find
/// the running node's API (removed again on a clean stop).
pub const API_FILE: &str = "api.json";
/// A first start applies the first of these that exists (see README, "Preseeding").
pub const PRESEED_FILE: &str = "preseed.json";
pub const SYSTEM_PRESEED: &str = "/etc/lanchat/preseed.json";
/// Open event streams and slow clients get this long to finish when the node stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the local API must listen on a loopback address, not {0}")]
    NotLoopback(SocketAddr),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot open the file store: {0}")]
    Blobs(storage::BlobError),
    #[error(transparent)]
    Settings(#[from] SettingsFileError),
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Environment(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    ApiFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Serialize)]
struct ApiFile<'a> {
    url: &'a str,
    token: &'a str,
    pid: u32,
}

pub struct Node {
    url: String,
    token: String,
    api_file: PathBuf,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    mesh: Mesh,
    store: Store,
    settings: Arc<LiveSettings>,
    data_dir: Arc<DataDir>,
    window_door: crate::desktop::WindowDoor,
}

impl Node {
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        if !config.api_addr.ip().is_loopback() {
            return Err(NodeError::NotLoopback(config.api_addr));
        }
        let data_dir = Arc::new(DataDir::open(&config.data_dir)?);
        let preseeds = [
            config.data_dir.join(PRESEED_FILE),
            PathBuf::from(SYSTEM_PRESEED),
        ];
        let keys = data_dir.node_keys(NodeKeys::from_bytes, || {
            NodeKeys::generate().map(|k| k.to_bytes().to_vec())
        })?;
        // The node's id is the one its keys derive (docs/PROTOCOL.md, "Node ids"): a
        // first start takes it, and a data directory of the random-id era takes it now.
        let derived = keys.public().node_id();
        let mut settings =
            settings_file::load_or_create_preseeded_as(&data_dir, &preseeds, derived.clone())?;
        if settings.lan_mesh.node_id != derived {
            tracing::info!(old = %settings.lan_mesh.node_id, new = %derived,
                "the node id becomes the one its keys derive");
            settings.lan_mesh.node_id = derived.clone();
            settings_file::save(&data_dir, &settings)?;
        }
        let token = data_dir.api_token()?;
        let listener =
            TcpListener::bind(config.api_addr)
                .await
                .map_err(|source| NodeError::Bind {
                    addr: config.api_addr,
                    source,
                })?;
        let local = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.api_addr,
            source,
        })?;
        let url = format!("http://{local}/");
        let store = Store::open_in(&data_dir).await?;
        if let Some(policy) = retry_policy_from_env()? {
            tracing::info!(?policy, "outbox retry policy from the environment");
            store.set_retry_policy(policy).await?;
        }
        // A database kept under an earlier id moves to the derived one first (its own
        // rows: identity, user, messages it wrote, group memberships); the contacts
        // hear of it from the mesh (`identity.change`).
        // A copy that took a new identity (and stopped before its database followed)
        // keeps the old id's groups and earlier ids out of it.
        let change = crate::new_identity::local_change_at_start(data_dir.path(), &derived);
        if let Some(old) = store.change_local_identity(derived.clone(), change).await? {
            tracing::info!(%old, new = %derived, "this node's history moved to its derived id");
        }
        // The store stamps outgoing messages and checks inbound ones with this node's
        // id, so it is set before anything can send or receive.
        let name = api::identity::stored_name(&settings);
        store
            .set_local_identity(
                settings.lan_mesh.node_id.clone(),
                name,
                lan_mesh::delivery::now_ms(),
            )
            .await?;
        tracing::info!(link_key = %keys.public().fingerprint(), "node keys loaded");
        store.set_signer(Arc::new(keys.clone())).await?;
        // DMs queued under an earlier id of this node (or before messages were signed)
        // carry no valid signature for it: signed again before anything is sent.
        let resigned = store.resign_queued_direct(mesh_store::dm_envelope).await?;
        if resigned > 0 {
            tracing::info!(
                resigned,
                "queued direct messages signed again for this node's id"
            );
        }

        // The shared secret's keys (one Argon2id run, off the runtime's workers) before
        // the mesh starts: by the time the API is announced, the mesh comes up as fast
        // as it would with no KDF. Later changes derive in the mesh supervisor.
        let mut secrets = lan_mesh::secret::SecretCache::default();
        if settings.lan_mesh.enabled {
            if let Err(e) = secrets.keys(&settings.lan_mesh.shared_secret).await {
                // The supervisor tries again and reports the mesh as failed.
                tracing::warn!("cannot derive the shared secret's keys: {e}");
            }
        }
        let live = Arc::new(LiveSettings::new(Arc::clone(&data_dir), settings));
        let runtime = tokio::runtime::Handle::current();
        let peer_store = store.clone();
        let stores: PeerStoreFactory =
            Arc::new(move || Box::new(SqlitePeerStore::new(peer_store.clone(), runtime.clone())));
        let blobs = storage::BlobStore::open_in(&data_dir).map_err(NodeError::Blobs)?;
        let files = crate::files::FileService::new(
            blobs,
            store.clone(),
            Arc::clone(&live),
            crate::files::Opener::from_env(),
        );
        let presence_file = data_dir.join(crate::presence::CHOICE_FILE);
        let presence = match crate::presence::load_choice(&presence_file) {
            Some(chosen) => {
                tracing::info!(presence = chosen.as_str(), "the presence chosen last time");
                crate::presence::PresenceHandle::starting_as(chosen)
            }
            None => crate::presence::PresenceHandle::default(),
        };
        let mesh = Mesh::start(
            live.subscribe(),
            MeshParts {
                stores,
                store: store.clone(),
                files: files.clone(),
                keys,
                secrets,
                copy_of: crate::new_identity::copy_statement(data_dir.path(), &derived),
                presence: presence.clone(),
            },
        );
        let stop = CancellationToken::new();
        crate::presence::spawn_keeper(presence.subscribe(), presence_file, stop.clone());
        // Hand edits of settings.json are applied while the node runs.
        tokio::spawn(Arc::clone(&live).watch_file(stop.clone()));
        let window_door = crate::desktop::WindowDoor::default();
        let state = ApiState::new(api::ApiParts {
            local_addr: local,
            token: token.clone(),
            settings: Arc::clone(&live),
            mesh: mesh.handle(),
            store: store.clone(),
            files,
            stopping: stop.clone(),
            window_door: window_door.clone(),
        });
        let server = tokio::spawn(
            axum::serve(listener, api::router(state))
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );

        let api_file = data_dir.join(API_FILE);
        let body = serde_json::to_vec_pretty(&ApiFile {
            url: &url,
            token: &token,
            pid: std::process::id(),
        })
        .map_err(|e| NodeError::ApiFile {
            path: api_file.clone(),
            source: std::io::Error::other(e),
        })?;
        storage::private_file::write_atomic(&api_file, &body).map_err(|source| {
            NodeError::ApiFile {
                path: api_file.clone(),
                source,
            }
        })?;
        tracing::info!(%url, data_dir = %config.data_dir.display(), "node started");
        Ok(Node {
            url,
            token,
            api_file,
            stop,
            server,
            mesh,
            store,
            settings: live,
            data_dir,
            window_door,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The live settings, for the desktop shell (notifications, tray, autostart).
    pub fn settings(&self) -> Arc<LiveSettings> {
        Arc::clone(&self.settings)
    }

    /// The same events the local API streams at `/api/v1/events`.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<api_types::Event> {
        self.mesh.handle().subscribe()
    }

    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// This node's presence (the tray and the notifier use it).
    pub fn presence(&self) -> crate::presence::PresenceHandle {
        self.mesh.handle().presence().clone()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// Where `POST /api/v1/window/show` goes: the desktop shell opens it.
    pub fn window_door(&self) -> crate::desktop::WindowDoor {
        self.window_door.clone()
    }

    /// Says goodbye to the LAN, stops serving, waits (bounded) for requests in flight,
    /// closes the database and removes `api.json`.
    pub async fn stop(self) {
        self.mesh.stop().await;
        self.stop.cancel();
        match tokio::time::timeout(SHUTDOWN_GRACE, self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("local API server ended with an error: {e}"),
            Ok(Err(e)) => tracing::warn!("local API server task failed: {e}"),
            Err(_) => tracing::warn!(
                "local API connections still open after {SHUTDOWN_GRACE:?}; closing them"
            ),
        }
        if let Err(e) = self.store.close().await {
            tracing::warn!("closing the database: {e}");
        }
        if let Err(e) = std::fs::remove_file(&self.api_file) {
            tracing::warn!(path = %self.api_file.display(), "cannot remove api file: {e}");
        }
        tracing::info!("node stopped");
    }
}

/// Tests shorten the outbox backoff ("offline for an hour" in seconds) with
/// `LANCHAT_RETRY_FIRST_MS` and `LANCHAT_RETRY_MAX_MS`; unset, the product's schedule.
fn retry_policy_from_env() -> Result<Option<storage::RetryPolicy>, NodeError> {
    let read = |name: &str| -> Result<Option<i64>, NodeError> {
        match std::env::var(name) {
            Ok(v) => v
                .parse::<i64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Some)
                .ok_or_else(|| {
                    NodeError::Environment(format!(
                        "{name}={v:?} is not a positive number of milliseconds"
                    ))
                }),
            Err(_) => Ok(None),
        }
    };
    let (first, max) = (
        read("LANCHAT_RETRY_FIRST_MS")?,
        read("LANCHAT_RETRY_MAX_MS")?,
    );
    if first.is_none() && max.is_none() {
        return Ok(None);
    }
    let default = storage::RetryPolicy::default();
    let first = first.unwrap_or(default.first_delay_ms);
    Ok(Some(storage::RetryPolicy {
        first_delay_ms: first,
        max_delay_ms: max.unwrap_or(default.max_delay_ms).max(first),
    }))
}
