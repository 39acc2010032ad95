//! [`FileService`]: the node's files, between the API, the store, the blob store and
//! the file engine (which runs only while the mesh does).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use api_types::{
    AttachmentView, Event, FileContent, FileRef, FileState, FileStatusView, MessageView, NodeId,
    WaitingFor,
};
use lan_mesh::files::{FetchState, FileDescriptor, FileEvent, FilesHandle};
use storage::blobs::{BlobState, BlobStore};
use storage::{Attachment, Store, StoreError};
use storage::{ConversationTarget, Message};
use tokio::sync::broadcast;

use super::export::{ExportError, Exports};
use super::opener::{OpenError, Opener};
use crate::live_settings::LiveSettings;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No message here attached this file (or the id is not a file id).
    #[error("no such file")]
    NotFound,
    #[error("the file is not complete here yet")]
    NotComplete,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] storage::BlobError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("the file task failed: {0}")]
    Task(String),
}

/// Cheap to clone.
#[derive(Clone)]
pub struct FileService {
    inner: Arc<Inner>,
}

struct Inner {
    blobs: BlobStore,
    store: Store,
    settings: Arc<LiveSettings>,
    /// The engine while the mesh runs.
    engine: RwLock<Option<FilesHandle>>,
    /// Per download: the last states the engine reported, and a speed sample.
    downloads: Mutex<HashMap<String, Download>>,
    /// Complete files copied out as real files ("Open", "Show in folder").
    exports: Exports,
    opener: Opener,
}

#[derive(Debug, Clone, Default)]
struct Download {
    /// `None` until the engine said anything.
    state: Option<FetchState>,
    have_bytes: u64,
    /// Bytes per second, smoothed over the progress reports.
    rate: Option<u64>,
    last_sample: Option<(Instant, u64)>,
}

fn parse_file_id(file_id: &str) -> Result<storage::FileId, FileError> {
    file_id.parse().map_err(|_| FileError::NotFound)
}

fn descriptor(file: &FileRef) -> Option<FileDescriptor> {
    let id: storage::FileId = file.file_id.parse().ok()?;
    let manifest: storage::ManifestHash = file.manifest.parse().ok()?;
    Some(FileDescriptor {
        file_id: lan_mesh::files::FileId(*id.as_bytes()),
        manifest_hash: lan_mesh::files::ManifestHash(*manifest.as_bytes()),
        size: file.size,
        chunk_size: file.chunk_size,
    })
}

impl FileService {
    pub fn new(
        blobs: BlobStore,
        store: Store,
        settings: Arc<LiveSettings>,
        opener: Opener,
    ) -> FileService {
        FileService {
            inner: Arc::new(Inner {
                blobs,
                store,
                settings,
                engine: RwLock::new(None),
                downloads: Mutex::default(),
                exports: Exports::default(),
                opener,
            }),
        }
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    fn engine(&self) -> Option<FilesHandle> {
        self.inner
            .engine
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn downloads(&self) -> std::sync::MutexGuard<'_, HashMap<String, Download>> {
        self.inner
            .downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The mesh started an engine: every download this node chose and has not
    /// finished resumes on it.
    pub async fn attach(&self, engine: FilesHandle) {
        *self.inner.engine.write().unwrap_or_else(|p| p.into_inner()) = Some(engine);
        let wanted = match self.inner.store.wanted_downloads().await {
            Ok(wanted) => wanted,
            Err(e) => {
                tracing::warn!("cannot list the downloads to resume: {e}");
                return;
            }
        };
        for attachment in wanted {
            if let Err(e) = self.fetch(&attachment.file.file_id).await {
                tracing::warn!(file = %attachment.file.file_id, "cannot resume a download: {e}");
            }
        }
    }

    /// The mesh stopped: downloads wait for the next engine.
    pub fn detach(&self) {
        *self.inner.engine.write().unwrap_or_else(|p| p.into_inner()) = None;
        for download in self.downloads().values_mut() {
            download.state = None;
            download.rate = None;
        }
    }

    /// A file message arrived: its files within the auto-download size (and not
    /// declined before) are fetched; those already fetched get the new message's
    /// peers as sources too.
    pub async fn on_received(&self, message: &Message) {
        let Ok(content) = FileContent::parse(&message.body) else {
            return;
        };
        let limit = self.inner.settings.current().files.auto_download_max_bytes;
        for file in &content.files {
            let decided = match self.inner.store.download_wanted(file.file_id.clone()).await {
                Ok(decided) => decided,
                Err(e) => {
                    tracing::warn!(file = %file.file_id, "cannot read the download choice: {e}");
                    continue;
                }
            };
            let fetch = match decided {
                Some(wanted) => wanted,
                None => file.size <= limit,
            };
            if fetch {
                if let Err(e) = self.fetch(&file.file_id).await {
                    tracing::warn!(file = %file.file_id, "cannot start a download: {e}");
                }
            }
        }
    }

    /// Downloads `file_id` (or adds sources to its download): chosen, kept across
    /// restarts, fetched from every peer that may have it.
    pub async fn fetch(&self, file_id: &str) -> Result<(), FileError> {
        let id = parse_file_id(file_id)?;
        let attachments = self.inner.store.attachments_of_file(id.to_string()).await?;
        let Some(first) = attachments.first() else {
            return Err(FileError::NotFound);
        };
        let desc = descriptor(&first.file).ok_or(FileError::NotFound)?;
        let status = self.inner.blobs.status(id)?;
        self.inner
            .store
            .set_download_wanted(id.to_string(), true, lan_mesh::delivery::now_ms())
            .await?;
        if status.state == BlobState::Complete {
            return Ok(());
        }
        let needed = first.file.size.saturating_sub(status.have_bytes);
        if let Err(reason) = self.room_for(needed) {
            tracing::warn!(file = %id, "not downloading: {reason}");
            self.downloads().entry(id.to_string()).or_default().state =
                Some(FetchState::Failed(reason));
            return Ok(());
        }
        let peers = self.sources(&attachments).await;
        {
            let mut downloads = self.downloads();
            let d = downloads.entry(id.to_string()).or_default();
            if matches!(d.state, Some(FetchState::Failed(_))) {
                d.state = None;
            }
        }
        // The engine starts a failed download over (a retry) and widens a running one.
        if let Some(engine) = self.engine() {
            engine.fetch(desc, peers).await;
        }
        Ok(())
    }

    /// Whether the blob store's file system has room for `needed` more bytes and a
    /// margin (the database and other downloads need some too): checked before a
    /// download starts, so a file that cannot fit fails at once with a clear reason
    /// instead of filling the disk. A disk that fills anyway mid-transfer stops storing
    /// chunks (nothing is corrupted) and goes on when there is room again.
    fn room_for(&self, needed: u64) -> Result<(), String> {
        const MARGIN: u64 = 64 * 1024 * 1024;
        let Ok(stat) = rustix::fs::statvfs(self.inner.blobs.path()) else {
            return Ok(());
        };
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free >= needed.saturating_add(MARGIN) {
            Ok(())
        } else {
            Err(format!(
                "not enough disk space: the file needs {} MB more, {} MB are free",
                needed.div_ceil(1_000_000),
                free / 1_000_000
            ))
        }
    }

    /// `file_id` parsed, when some message here attached it (`NotFound` otherwise).
    async fn attached(&self, file_id: &str) -> Result<storage::FileId, FileError> {
        let id = parse_file_id(file_id)?;
        if self
            .inner
            .store
            .attachments_of_file(id.to_string())
            .await?
            .is_empty()
        {
            return Err(FileError::NotFound);
        }
        Ok(id)
    }

    /// Stops downloading `file_id`; its verified chunks stay, and a later fetch goes on
    /// from them. It is not fetched by itself again.
    pub async fn cancel(&self, file_id: &str) -> Result<(), FileError> {
        let id = self.attached(file_id).await?;
        self.inner
            .store
            .set_download_wanted(id.to_string(), false, lan_mesh::delivery::now_ms())
            .await?;
        if let Some(engine) = self.engine() {
            engine.cancel(lan_mesh::files::FileId(*id.as_bytes())).await;
        }
        self.downloads().remove(&id.to_string());
        Ok(())
    }

    /// Stops serving `file_id` to anyone (the sender's "cancel": its upload stops; what
    /// members already have they still share). Kept across restarts until
    /// [`FileService::offer`]. Receivers asking for it see it withdrawn.
    pub async fn withdraw(&self, file_id: &str) -> Result<(), FileError> {
        self.set_withdrawn(file_id, true).await
    }

    /// Serves `file_id` again after [`FileService::withdraw`]: receivers waiting for it
    /// go on by themselves (they ask again every 30 s).
    pub async fn offer(&self, file_id: &str) -> Result<(), FileError> {
        self.set_withdrawn(file_id, false).await
    }

    async fn set_withdrawn(&self, file_id: &str, withdrawn: bool) -> Result<(), FileError> {
        let id = self.attached(file_id).await?;
        // Stored first: a crash between the two must not leave it served after a
        // restart that the user stopped.
        self.inner
            .store
            .set_file_withdrawn(id.to_string(), withdrawn, lan_mesh::delivery::now_ms())
            .await?;
        if let Some(engine) = self.engine() {
            let id = lan_mesh::files::FileId(*id.as_bytes());
            if withdrawn {
                engine.withdraw(id).await;
            } else {
                engine.offer(id).await;
            }
        }
        Ok(())
    }

    /// The files this node's user withdrew, for a new engine to start with.
    pub async fn withdrawn(&self) -> std::collections::HashSet<lan_mesh::files::FileId> {
        let ids = match self.inner.store.withdrawn_files().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("cannot read the withdrawn files: {e}");
                return Default::default();
            }
        };
        ids.iter()
            .filter_map(|id| id.parse::<storage::FileId>().ok())
            .map(|id| lan_mesh::files::FileId(*id.as_bytes()))
            .collect()
    }

    /// The peers that may have a file: each message's sender and, in a group, every
    /// member now — but never this node, nor a blocked peer.
    async fn sources(&self, attachments: &[Attachment]) -> Vec<NodeId> {
        let local = self.inner.settings.current().lan_mesh.node_id.clone();
        let mut peers = BTreeSet::new();
        for a in attachments {
            if let Some(sender) = a.sender.node_id() {
                peers.insert(sender.clone());
            }
            match a.conversation_id.target() {
                ConversationTarget::Direct(peer) => {
                    peers.insert(peer.clone());
                }
                ConversationTarget::Group(group) => {
                    if let Ok(Some(g)) = self.inner.store.group(*group).await {
                        peers.extend(g.state.member_ids());
                    }
                }
            }
        }
        peers.remove(&local);
        let mut allowed = Vec::with_capacity(peers.len());
        for peer in peers {
            let blocked =
                matches!(self.inner.store.peer(peer.clone()).await, Ok(Some(p)) if p.blocked);
            if !blocked {
                allowed.push(peer);
            }
        }
        allowed
    }

    /// The file as the first message here that attached it describes it.
    pub async fn attachment(&self, file_id: &str) -> Result<FileRef, FileError> {
        let id = parse_file_id(file_id)?;
        let attachments = self.inner.store.attachments_of_file(id.to_string()).await?;
        attachments
            .into_iter()
            .next()
            .map(|a| a.file)
            .ok_or(FileError::NotFound)
    }

    /// The complete content, or `None` while it is not complete here.
    pub fn open(&self, file_id: &str) -> Result<Option<std::fs::File>, FileError> {
        Ok(self.inner.blobs.open_content(parse_file_id(file_id)?)?)
    }

    /// The complete file as a real file in the folder for received files, under the
    /// name and folder its first message here gave it (`super::export`).
    async fn export_complete(
        &self,
        id: storage::FileId,
        file: FileRef,
    ) -> Result<std::path::PathBuf, FileError> {
        let root = super::export::default_root().ok_or(ExportError::NoFolder)?;
        let service = self.clone();
        tokio::task::spawn_blocking(move || {
            service.inner.exports.export(
                &root,
                &service.inner.blobs,
                id,
                &file.name,
                file.path.as_deref(),
            )
        })
        .await
        .map_err(|e| FileError::Task(e.to_string()))?
        .map_err(FileError::from)
    }

    /// Exports the file (see [`Self::export_complete`]) and opens it with the desktop's default
    /// application; `Open(NoDesktop)` — before anything is exported — on a node without
    /// a desktop session.
    pub async fn open_file(&self, file_id: &str) -> Result<std::path::PathBuf, FileError> {
        let (id, file) = self.complete_attachment(file_id).await?;
        self.inner.opener.check()?;
        let path = self.export_complete(id, file).await?;
        self.inner.opener.open(&path)?;
        tracing::info!(file = %id, "file opened");
        Ok(path)
    }

    /// Exports the file and shows it selected in its folder (like [`Self::open_file`]).
    pub async fn reveal_file(&self, file_id: &str) -> Result<std::path::PathBuf, FileError> {
        let (id, file) = self.complete_attachment(file_id).await?;
        self.inner.opener.check()?;
        let path = self.export_complete(id, file).await?;
        self.inner.opener.reveal(&path)?;
        tracing::info!(file = %id, "file shown in its folder");
        Ok(path)
    }

    /// The file's id and first attachment, once it is complete here.
    async fn complete_attachment(
        &self,
        file_id: &str,
    ) -> Result<(storage::FileId, FileRef), FileError> {
        let id = parse_file_id(file_id)?;
        let file = self.attachment(file_id).await?;
        if self.inner.blobs.status(id)?.state != BlobState::Complete {
            return Err(FileError::NotComplete);
        }
        Ok((id, file))
    }

    /// The running engine's counters (zeros while the mesh is off).
    pub fn counters(&self) -> api_types::FileCounters {
        let Some(engine) = self.engine() else {
            return api_types::FileCounters::default();
        };
        let c = engine.counters().snapshot();
        api_types::FileCounters {
            chunks_served: c.chunks_served,
            chunks_stored: c.chunks_stored,
            chunks_rejected: c.chunks_rejected,
            manifests_rejected: c.manifests_rejected,
            requests_over_quota: c.requests_over_quota,
            chunks_unsolicited: c.chunks_unsolicited,
            requests_withdrawn: c.requests_withdrawn,
        }
    }

    /// Where `file_id` stands here: `NotFound` unless some message here attached it.
    pub async fn status(&self, file_id: &str) -> Result<FileStatusView, FileError> {
        let id = parse_file_id(file_id)?;
        let attachments = self.inner.store.attachments_of_file(id.to_string()).await?;
        let Some(first) = attachments.first() else {
            return Err(FileError::NotFound);
        };
        self.status_of(&first.file.file_id, first.file.size).await
    }

    async fn status_of(&self, file_id: &str, size: u64) -> Result<FileStatusView, FileError> {
        let id = parse_file_id(file_id)?;
        let blob = self.inner.blobs.status(id)?;
        let (wanted, withdrawn) = self.inner.store.file_choices(file_id.to_string()).await?;
        let download = self.downloads().get(file_id).cloned().unwrap_or_default();
        let have_bytes = blob.have_bytes.max(download.have_bytes).min(size);
        let mut view = FileStatusView {
            file_id: file_id.to_string(),
            state: FileState::Waiting,
            waiting_for: None,
            have_bytes,
            size,
            bytes_per_sec: None,
            error: None,
            withdrawn,
        };
        if blob.state == BlobState::Complete {
            view.state = FileState::Available;
            view.have_bytes = size;
            return Ok(view);
        }
        match (wanted, download.state) {
            (Some(true), Some(FetchState::Failed(e))) => {
                view.state = FileState::Failed;
                view.error = Some(e);
            }
            (Some(true), Some(FetchState::Stalled(e))) => {
                // It goes on by itself when the store takes chunks again.
                view.state = FileState::Failed;
                view.error = Some(if e.contains("os error 28") {
                    "the disk is full: the download goes on when there is room".to_string()
                } else {
                    format!("cannot store the file ({e}): trying again")
                });
            }
            (Some(true), Some(FetchState::Fetching)) => {
                view.state = FileState::Fetching;
                view.bytes_per_sec = download.rate;
            }
            (Some(true), Some(FetchState::Withdrawn)) => {
                view.waiting_for = Some(WaitingFor::Withdrawn)
            }
            // Chosen, but nobody that has it is linked (or the mesh is off).
            (Some(true), _) => view.waiting_for = Some(WaitingFor::Sender),
            _ => view.waiting_for = Some(WaitingFor::Download),
        }
        Ok(view)
    }

    /// Fills in this node's state of every attachment of `views`.
    pub async fn fill_attachments(&self, views: &mut [MessageView]) {
        for view in views.iter_mut() {
            for attachment in &mut view.attachments {
                self.fill(attachment).await;
            }
        }
    }

    pub async fn fill(&self, attachment: &mut AttachmentView) {
        match self.status_of(&attachment.file_id, attachment.size).await {
            Ok(status) => {
                attachment.state = status.state;
                attachment.waiting_for = status.waiting_for;
                attachment.have_bytes = status.have_bytes;
                attachment.error = status.error;
                attachment.withdrawn = status.withdrawn;
            }
            Err(e) => {
                tracing::debug!(file = %attachment.file_id, "no state for an attachment: {e}")
            }
        }
    }

    /// The engine's report, turned into a `file.progress` event (progress at most as
    /// often as the engine reports it).
    pub async fn on_engine_event(&self, event: FileEvent) -> Option<Event> {
        let file_id = match &event {
            FileEvent::State { file_id, .. } | FileEvent::Progress { file_id, .. } => {
                file_id.to_string()
            }
        };
        {
            let mut downloads = self.downloads();
            let d = downloads.entry(file_id.clone()).or_default();
            match event {
                FileEvent::State { state, .. } => {
                    if state != FetchState::Fetching {
                        d.rate = None;
                        d.last_sample = None;
                    }
                    d.state = Some(state);
                }
                FileEvent::Progress { .. } => {
                    d.state = Some(FetchState::Fetching);
                    let now = Instant::now();
                    let have = self
                        .inner
                        .blobs
                        .status(file_id.parse().ok()?)
                        .map(|s| s.have_bytes)
                        .unwrap_or(d.have_bytes);
                    if let Some((at, before)) = d.last_sample {
                        let secs = now.duration_since(at).as_secs_f64();
                        if secs > 0.05 && have >= before {
                            let sample = ((have - before) as f64 / secs) as u64;
                            d.rate = Some(match d.rate {
                                Some(r) => (r * 3 + sample) / 4,
                                None => sample,
                            });
                        }
                    }
                    d.last_sample = Some((now, have));
                    d.have_bytes = have;
                }
            }
        }
        let status = self.status(&file_id).await.ok()?;
        Some(Event::FileProgress { file: status })
    }

    /// Forwards the engine's events to the API's event stream until either ends.
    pub async fn forward_events(
        self,
        mut events: broadcast::Receiver<FileEvent>,
        api: broadcast::Sender<Event>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break,
                event = events.recv() => event,
            };
            match event {
                Ok(event) => {
                    if let Some(event) = self.on_engine_event(event).await {
                        let _ = api.send(event);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}
