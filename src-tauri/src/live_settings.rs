//! The node's current settings: read by everyone, changed only through `update`, which
//! validates, writes the file, then publishes. Subscribers (the LAN mesh runtime) see
//! each accepted change on a `watch` channel and apply it live.

use std::sync::Arc;

use api_types::settings::NodeIdRule;
use api_types::{FieldError, Settings};
use serde_json::Value;
use storage::{settings_file, DataDir, SettingsFileError};
use tokio::sync::{watch, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Save(#[from] SettingsFileError),
    #[error("the settings writer stopped unexpectedly")]
    WriterGone,
}

pub struct LiveSettings {
    dir: Arc<DataDir>,
    current: watch::Sender<Settings>,
    /// Serialises updates so that two concurrent PUTs cannot interleave validate and save.
    writer: Mutex<()>,
}

impl LiveSettings {
    pub fn new(dir: Arc<DataDir>, initial: Settings) -> Self {
        LiveSettings {
            dir,
            current: watch::Sender::new(initial),
            writer: Mutex::new(()),
        }
    }

    pub fn current(&self) -> Settings {
        self.current.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Settings> {
        self.current.subscribe()
    }

    /// The data directory the settings file lives in.
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// Writes a new node id (a new identity: the id its new keys derive), which no
    /// settings patch may change. Saved first, then published.
    pub async fn set_node_id(&self, id: api_types::NodeId) -> Result<Settings, UpdateError> {
        let _writer = self.writer.lock().await;
        let mut next = self.current();
        next.lan_mesh.node_id = id;
        let dir = Arc::clone(&self.dir);
        let to_save = next.clone();
        tokio::task::spawn_blocking(move || settings_file::save(&dir, &to_save))
            .await
            .map_err(|_| UpdateError::WriterGone)??;
        self.current.send_replace(next.clone());
        Ok(next)
    }

    /// Applies a partial settings document. Nothing changes (in memory or on disk)
    /// unless the whole patch is valid and the file was written.
    pub async fn update(&self, patch: &Value) -> Result<Settings, UpdateError> {
        let _writer = self.writer.lock().await;
        let current = self.current();
        let next = current.patched(patch, NodeIdRule::ReadOnly)?;
        if next == current {
            return Ok(next);
        }
        let dir = Arc::clone(&self.dir);
        let to_save = next.clone();
        tokio::task::spawn_blocking(move || settings_file::save(&dir, &to_save))
            .await
            .map_err(|_| UpdateError::WriterGone)??;
        self.current.send_replace(next.clone());
        Ok(next)
    }
}
