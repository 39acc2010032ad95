//! The node's current settings: read by everyone, changed only through `update`, which
//! validates, writes the file, then publishes. Subscribers (the LAN mesh runtime) see
//! each accepted change on a `watch` channel and apply it live.
//!
//! `settings.json` may also be edited by hand while the node runs (an administrator,
//! a deployment script). The node notices (`sync_from_disk`: every second from
//! `watch_file`, and before every save):
//!
//! - a valid edit is applied live, exactly as if it had come through
//!   `PUT /api/v1/settings`, and later saves build on it;
//! - an edit that does not parse or validate is reported (a log line, and the
//!   `settings_file` status warning) and left as it is: the node keeps the settings it
//!   had, and refuses to save over the file (`UpdateError::HandEdited`) until it is
//!   fixed or removed. Nothing of a hand edit is ever silently overwritten.
//!
//! The node id cannot be edited by hand (it is the id the node's keys derive): an edit
//! that changes it is refused like an invalid one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use api_types::settings::NodeIdRule;
use api_types::{FieldError, Settings};
use serde_json::Value;
use storage::{settings_file, DataDir, SettingsFileError};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

/// How often `watch_file` looks at the file (one small read).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Save(#[from] SettingsFileError),
    /// The file was edited by hand into something the node cannot use: it is not
    /// saved over (that would throw the edit away) until it is fixed.
    #[error("{0}; not saved over: fix the file by hand (or remove it to save from here)")]
    HandEdited(String),
    #[error("the settings writer stopped unexpectedly")]
    WriterGone,
}

/// What the file held when the node last read or wrote it, and what is wrong with
/// what it holds now, if anything.
#[derive(Default)]
struct Disk {
    /// `None`: unknown or missing (nothing to protect).
    known: Option<Vec<u8>>,
    problem: Option<String>,
}

pub struct LiveSettings {
    dir: Arc<DataDir>,
    current: watch::Sender<Settings>,
    /// Serialises updates so that two concurrent PUTs cannot interleave validate and save.
    writer: Mutex<()>,
    disk: std::sync::Mutex<Disk>,
}

impl LiveSettings {
    pub fn new(dir: Arc<DataDir>, initial: Settings) -> Self {
        // The file was just loaded (or written) into `initial`.
        let known = std::fs::read(settings_file::path(&dir)).ok();
        LiveSettings {
            dir,
            current: watch::Sender::new(initial),
            writer: Mutex::new(()),
            disk: std::sync::Mutex::new(Disk {
                known,
                problem: None,
            }),
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

    /// What is wrong with a hand edit of the settings file that the node could not
    /// apply, while it is so (for the status warning).
    pub fn file_problem(&self) -> Option<String> {
        self.lock_disk().problem.clone()
    }

    fn lock_disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a new node id (a new identity: the id its new keys derive), which no
    /// settings patch may change. Saved first, then published.
    pub async fn set_node_id(&self, id: api_types::NodeId) -> Result<Settings, UpdateError> {
        let _writer = self.writer.lock().await;
        self.sync_locked().await?;
        let mut next = self.current();
        next.lan_mesh.node_id = id;
        self.save(next).await
    }

    /// Applies a partial settings document. Nothing changes (in memory or on disk)
    /// unless the whole patch is valid and the file was written. A hand edit of the
    /// file is taken in first, so the patch applies on top of it.
    pub async fn update(&self, patch: &Value) -> Result<Settings, UpdateError> {
        let _writer = self.writer.lock().await;
        self.sync_locked().await?;
        let current = self.current();
        let next = current.patched(patch, NodeIdRule::ReadOnly)?;
        if next == current {
            return Ok(next);
        }
        self.save(next).await
    }

    async fn save(&self, next: Settings) -> Result<Settings, UpdateError> {
        let dir = Arc::clone(&self.dir);
        let to_save = next.clone();
        let bytes = tokio::task::spawn_blocking(move || settings_file::save(&dir, &to_save))
            .await
            .map_err(|_| UpdateError::WriterGone)??;
        self.lock_disk().known = Some(bytes);
        self.current.send_replace(next.clone());
        Ok(next)
    }

    /// Takes in a hand edit of the file, if there is one: applied when valid, else
    /// reported (once per distinct content) and returned as `HandEdited`.
    pub async fn sync_from_disk(&self) -> Result<(), UpdateError> {
        let _writer = self.writer.lock().await;
        self.sync_locked().await
    }

    async fn sync_locked(&self) -> Result<(), UpdateError> {
        let path = settings_file::path(&self.dir);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Removed: nothing to protect; the next save writes it again.
                let mut disk = self.lock_disk();
                disk.known = None;
                disk.problem = None;
                return Ok(());
            }
            Err(source) => return Err(SettingsFileError::Io { path, source }.into()),
        };
        if self.lock_disk().known.as_deref() == Some(&bytes[..]) {
            return Ok(());
        }
        match self.read_edit(&path, &bytes) {
            Ok(edited) => {
                let changed = edited != self.current();
                {
                    let mut disk = self.lock_disk();
                    disk.known = Some(bytes);
                    disk.problem = None;
                }
                if changed {
                    tracing::info!(path = %path.display(), "settings.json was edited by hand; the change is applied");
                    self.current.send_replace(edited);
                }
                Ok(())
            }
            Err(problem) => {
                let mut disk = self.lock_disk();
                if disk.problem.as_deref() != Some(&problem) {
                    tracing::warn!(
                        "{problem}; the node keeps running on the settings it had and will \
                         not save over the file until it is fixed"
                    );
                    disk.problem = Some(problem.clone());
                }
                Err(UpdateError::HandEdited(problem))
            }
        }
    }

    fn read_edit(&self, path: &Path, bytes: &[u8]) -> Result<Settings, String> {
        let edited = settings_file::parse(path, bytes).map_err(|e| e.to_string())?;
        let id = &self.current.borrow().lan_mesh.node_id;
        if &edited.lan_mesh.node_id != id {
            return Err(format!(
                "settings file {} was edited by hand with another lan_mesh.node_id; the node \
                 id is the one this node's keys derive ({id}) and cannot be edited",
                path.display()
            ));
        }
        Ok(edited)
    }

    /// Looks at the file every `WATCH_INTERVAL` until `stop`, applying hand edits.
    pub async fn watch_file(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.sync_from_disk().await {
                // Reported inside (once per content).
                Ok(()) | Err(UpdateError::HandEdited(_)) => {}
                Err(e) => tracing::debug!("cannot read the settings file: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn live() -> (tempfile::TempDir, Arc<LiveSettings>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(DataDir::open(tmp.path()).unwrap());
        let settings = settings_file::load_or_create(&dir).unwrap();
        (tmp, Arc::new(LiveSettings::new(dir, settings)))
    }

    fn edit(live: &LiveSettings, f: impl FnOnce(&mut Value)) {
        let path = settings_file::path(live.data_dir());
        let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        f(&mut doc);
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_valid_hand_edit_is_applied_and_kept_by_the_next_save() {
        let (_tmp, live) = live();
        let rx = live.subscribe();
        edit(&live, |doc| doc["lan_mesh"]["display_name"] = "前台".into());
        live.sync_from_disk().await.unwrap();
        assert!(rx.has_changed().unwrap(), "published like a PUT");
        assert_eq!(live.current().lan_mesh.display_name, "前台");

        edit(&live, |doc| doc["lan_mesh"]["listen_port"] = 45_001.into());
        // No sync in between: the save itself takes the edit in first.
        live.update(&serde_json::json!({"ui": {"welcome_done": true}}))
            .await
            .unwrap();
        let on_disk = settings_file::load_or_create(live.data_dir()).unwrap();
        assert_eq!(on_disk.lan_mesh.listen_port, 45_001);
        assert_eq!(on_disk.lan_mesh.display_name, "前台");
        assert!(on_disk.ui.welcome_done);
        assert!(live.file_problem().is_none());
    }

    #[tokio::test]
    async fn an_invalid_hand_edit_is_reported_and_never_saved_over() {
        let (_tmp, live) = live();
        let before = live.current();
        let path = settings_file::path(live.data_dir());
        let broken = b"{ \"lan_mesh\": { oops".to_vec();
        std::fs::write(&path, &broken).unwrap();
        assert!(matches!(
            live.sync_from_disk().await,
            Err(UpdateError::HandEdited(_))
        ));
        assert!(live.file_problem().unwrap().contains("settings.json"));
        let refused = live
            .update(&serde_json::json!({"ui": {"welcome_done": true}}))
            .await;
        assert!(
            matches!(refused, Err(UpdateError::HandEdited(_))),
            "{refused:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), broken, "left as it was");
        assert_eq!(live.current(), before, "the node keeps what it had");

        // Another node id is refused the same way.
        std::fs::remove_file(&path).unwrap();
        live.sync_from_disk().await.unwrap();
        assert!(
            live.file_problem().is_none(),
            "a removed file is no problem"
        );
        live.update(&serde_json::json!({"ui": {"welcome_done": true}}))
            .await
            .unwrap();
        edit(&live, |doc| {
            doc["lan_mesh"]["node_id"] = "01ARZ3NDEKTSV4RRFFQ69G5FAV".into()
        });
        assert!(matches!(
            live.sync_from_disk().await,
            Err(UpdateError::HandEdited(_))
        ));
    }
}
