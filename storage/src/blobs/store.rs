//! `<data_dir>/blobs/`: complete files named by their SHA-256, downloads in progress, and
//! imports being written.
//!
//! ```text
//! blobs/                      0700
//!   complete/                 0700
//!     <file id>               0600  the content, verified; never changed once here
//!     <file id>.manifest      0600  its manifest (served to peers, pages and chunks)
//!   partial/                  0700
//!     <file id>.data          0600  content being downloaded (sparse, full size)
//!     <file id>.manifest      0600  the manifest it follows
//!     <file id>.chunks        0600  log of verified chunks (`chunk_log`)
//!   tmp/                      0700
//!     <random>.import         0600  an import being written; emptied at open
//! ```
//!
//! A file is complete when `complete/<id>` exists: its manifest is written (and synced)
//! before the content is renamed there, so a complete file always has its manifest.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::chunk_log::{self, ChunkSet, Loaded};
use super::fs_util::{create_private, private_dir, remove_if_present, sync_dir};
use super::partial::{PartialBlob, PartialPaths, Shared};
use super::{sha256, BlobError, FileId, Manifest, CHUNK_SIZE, MAX_FILE_SIZE};
use crate::data_dir::DataDir;
use crate::private_file::write_atomic;

/// The blob store's directory inside the data directory.
pub const BLOBS_DIR: &str = "blobs";
const COMPLETE_DIR: &str = "complete";
const PARTIAL_DIR: &str = "partial";
const TMP_DIR: &str = "tmp";
const MANIFEST_EXT: &str = "manifest";
/// Manifests of complete files kept in memory for serving chunks (each read verifies
/// the chunk against it). Bounded: past this the cache is emptied and refilled.
const MANIFEST_CACHE: usize = 64;

/// Whether a file's content is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// Complete and verified: `open_content` reads it.
    Complete,
    /// A download has begun; `have_bytes` of it are verified.
    Partial,
    Absent,
}

impl BlobState {
    /// The API's spelling (`GET /api/v1/files/{id}/status`).
    pub fn as_str(self) -> &'static str {
        match self {
            BlobState::Complete => "complete",
            BlobState::Partial => "partial",
            BlobState::Absent => "absent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobStatus {
    pub state: BlobState,
    /// Verified bytes: the size when complete, 0 when absent.
    pub have_bytes: u64,
    /// The file's size, known from its manifest; `None` when absent.
    pub size: Option<u64>,
}

/// What `begin_download` found.
#[derive(Debug)]
pub enum Download {
    /// The content is already here (downloaded or imported before): nothing to fetch.
    Complete,
    /// A download to feed with chunks, resumed if one was on disk.
    Partial(PartialBlob),
}

/// The store: a cheap `Clone` handle. Open one per data directory (the node does, next to
/// its `DataDir`, whose lock keeps other processes out) and clone it; two stores opened
/// on one directory would not see each other's downloads.
///
/// Every method blocks (file I/O, SHA-256): run them on a blocking thread
/// (`tokio::task::spawn_blocking`).
#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    root: PathBuf,
    pub(crate) complete: PathBuf,
    pub(crate) partial: PathBuf,
    tmp: PathBuf,
    /// Downloads open in this process: one `PartialBlob` per file at a time, and their
    /// verified chunks readable by `read_chunk`.
    downloads: Mutex<HashMap<FileId, Slot>>,
    /// Held while a file is moved into `complete/` (import or finished download), so the
    /// check "already complete?" and the move are one step.
    publish: Mutex<()>,
    manifests: Mutex<HashMap<FileId, Arc<Manifest>>>,
}

#[derive(Debug)]
enum Slot {
    /// `begin_download` is opening it.
    Starting,
    Open(Arc<Shared>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(crate) fn complete_path(&self, id: FileId) -> PathBuf {
        self.complete.join(id.to_string())
    }

    pub(crate) fn complete_manifest_path(&self, id: FileId) -> PathBuf {
        self.complete.join(format!("{id}.{MANIFEST_EXT}"))
    }

    pub(crate) fn partial_paths(&self, id: FileId) -> PartialPaths {
        PartialPaths {
            data: self.partial.join(format!("{id}.data")),
            manifest: self.partial.join(format!("{id}.{MANIFEST_EXT}")),
            log: self.partial.join(format!("{id}.chunks")),
        }
    }

    pub(crate) fn publish_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.publish)
    }

    /// A `PartialBlob` is gone: its file may be downloaded again.
    pub(crate) fn release(&self, id: FileId) {
        lock(&self.downloads).remove(&id);
    }

    fn open_download(&self, id: FileId) -> Option<Arc<Shared>> {
        match lock(&self.downloads).get(&id) {
            Some(Slot::Open(shared)) => Some(Arc::clone(shared)),
            _ => None,
        }
    }
}

impl BlobStore {
    /// The store in `<data_dir>/blobs`.
    pub fn open_in(data_dir: &DataDir) -> Result<BlobStore, BlobError> {
        BlobStore::open(&data_dir.join(BLOBS_DIR))
    }

    /// The store in `dir` (created 0700 with its subdirectories). Removes what a crash
    /// can leave behind: imports that were being written, temporary files of atomic
    /// writes, and the rest of downloads that had already been moved into place.
    pub fn open(dir: &Path) -> Result<BlobStore, BlobError> {
        let inner = Inner {
            root: dir.to_path_buf(),
            complete: dir.join(COMPLETE_DIR),
            partial: dir.join(PARTIAL_DIR),
            tmp: dir.join(TMP_DIR),
            downloads: Mutex::default(),
            publish: Mutex::default(),
            manifests: Mutex::default(),
        };
        for d in [&inner.root, &inner.complete, &inner.partial, &inner.tmp] {
            private_dir(d).map_err(|e| BlobError::io(d, e))?;
        }
        clean_up(&inner).map_err(|(path, e)| BlobError::io(&path, e))?;
        Ok(BlobStore {
            inner: Arc::new(inner),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// Imports content read from `reader` (e.g. an upload's body): it is streamed through
    /// a 128 KiB buffer into a temporary file while every chunk and the whole are hashed,
    /// then fsynced and renamed into place. Memory stays at the buffer plus 32 bytes per
    /// chunk, whatever the size. Content already stored is not stored again: the
    /// temporary file is dropped and the stored manifest returned.
    pub fn import(&self, mut reader: impl Read) -> Result<(FileId, Manifest), BlobError> {
        let tmp = self
            .inner
            .tmp
            .join(format!("{:016x}.import", rand::random::<u64>()));
        let file = create_private(&tmp).map_err(|e| BlobError::io(&tmp, e))?;
        let result = self.import_into(&mut reader, file, &tmp);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Imports the file at `path` (see [`Self::import`]).
    pub fn import_file(&self, path: &Path) -> Result<(FileId, Manifest), BlobError> {
        let file = File::open(path).map_err(BlobError::Source)?;
        self.import(file)
    }

    fn import_into(
        &self,
        reader: &mut impl Read,
        mut file: File,
        tmp: &Path,
    ) -> Result<(FileId, Manifest), BlobError> {
        let chunk_size = CHUNK_SIZE as usize;
        let mut buf = vec![0u8; chunk_size];
        let mut whole = Sha256::new();
        let mut chunks = Vec::new();
        let mut size = 0u64;
        loop {
            let n = fill(reader, &mut buf).map_err(BlobError::Source)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > MAX_FILE_SIZE {
                return Err(BlobError::TooLarge { max: MAX_FILE_SIZE });
            }
            let chunk = &buf[..n];
            whole.update(chunk);
            chunks.push(sha256(chunk));
            file.write_all(chunk).map_err(|e| BlobError::io(tmp, e))?;
            if n < chunk_size {
                break;
            }
        }
        file.sync_all().map_err(|e| BlobError::io(tmp, e))?;
        drop(file);
        let file_id = FileId::from_bytes(whole.finalize().into());
        let manifest = Manifest::new(size, CHUNK_SIZE, file_id, chunks)
            .map_err(|e| BlobError::corrupt(tmp, format!("computed manifest refused: {e}")))?;

        let _publishing = self.inner.publish_lock();
        let dest = self.inner.complete_path(file_id);
        if dest.exists() {
            remove_if_present(tmp).map_err(|e| BlobError::io(tmp, e))?;
            // The first manifest stored stays: peers may be fetching by it. One that
            // cannot be read is written anew below.
            match self.complete_manifest(file_id) {
                Ok(Some(stored)) => return Ok((file_id, Manifest::clone(&stored))),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%file_id, error = %e, "rewriting a complete file's manifest")
                }
            }
        }
        let manifest_path = self.inner.complete_manifest_path(file_id);
        write_atomic(&manifest_path, &manifest.encode())
            .map_err(|e| BlobError::io(&manifest_path, e))?;
        if !dest.exists() {
            fs::rename(tmp, &dest).map_err(|e| BlobError::io(&dest, e))?;
            sync_dir(&self.inner.complete).map_err(|e| BlobError::io(&self.inner.complete, e))?;
        }
        Ok((file_id, manifest))
    }

    /// Begins (or resumes) downloading the file `manifest` describes. The caller checked
    /// the manifest against the signed file message (`Manifest::check_describes`).
    /// [`BlobError::InUse`] while another `PartialBlob` of this store has the same file.
    pub fn begin_download(&self, manifest: Manifest) -> Result<Download, BlobError> {
        let file_id = manifest.file_id();
        {
            let mut downloads = lock(&self.inner.downloads);
            if downloads.contains_key(&file_id) {
                return Err(BlobError::InUse { file_id });
            }
            downloads.insert(file_id, Slot::Starting);
        }
        if self.inner.complete_path(file_id).exists() {
            self.inner.release(file_id);
            return Ok(Download::Complete);
        }
        match PartialBlob::open(Arc::clone(&self.inner), manifest) {
            Ok(partial) => {
                lock(&self.inner.downloads).insert(file_id, Slot::Open(partial.shared()));
                Ok(Download::Partial(partial))
            }
            // `open` failed before a PartialBlob existed to release the slot on drop.
            Err(e) => {
                self.inner.release(file_id);
                Err(e)
            }
        }
    }

    /// Chunk `index` of a file, for serving it to a peer: from the complete file, or from
    /// a download in progress if that chunk is verified. `None` when this node does not
    /// have it. Only chunks checked when they were stored are served, but they are not
    /// hashed again as they are read: every receiver checks every chunk against the
    /// manifest before it stores it (and refuses, and stops asking, a peer that sends a
    /// bad one), so a chunk damaged on disk since (a hardware fault) costs a retry, not
    /// a wrong file, while hashing each chunk a second time on the way out cost a
    /// serving node a third of its work per byte (docs/BENCHMARKS.md, "Files").
    pub fn read_chunk(&self, file_id: FileId, index: u32) -> Result<Option<Vec<u8>>, BlobError> {
        if let Some(shared) = self.inner.open_download(file_id) {
            let stored = shared.stored().contains(index);
            return self.read_stored(
                &shared.manifest,
                &shared.data,
                &shared.data_path,
                index,
                stored,
            );
        }
        if let Some(manifest) = self.complete_manifest(file_id)? {
            let path = self.inner.complete_path(file_id);
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(BlobError::io(&path, e)),
            };
            return self.read_stored(&manifest, &file, &path, index, true);
        }
        if let Some(on_disk) = self.partial_on_disk(file_id)? {
            let stored = on_disk.chunks.contains(index);
            let file = match File::open(&on_disk.data_path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(BlobError::io(&on_disk.data_path, e)),
            };
            return self.read_stored(&on_disk.manifest, &file, &on_disk.data_path, index, stored);
        }
        Ok(None)
    }

    fn read_stored(
        &self,
        manifest: &Manifest,
        file: &File,
        path: &Path,
        index: u32,
        stored: bool,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        let (Some(offset), Some(len)) = (manifest.chunk_offset(index), manifest.chunk_len(index))
        else {
            return Err(BlobError::NoSuchChunk {
                file_id: manifest.file_id(),
                index,
                count: manifest.chunk_count(),
            });
        };
        if !stored {
            return Ok(None);
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, offset)
            .map_err(|e| BlobError::io(path, e))?;
        Ok(Some(bytes))
    }

    /// The complete, verified content (for `GET /api/v1/files/{id}`); `None` unless the
    /// file is complete. The content never changes once complete.
    pub fn open_content(&self, file_id: FileId) -> Result<Option<File>, BlobError> {
        let path = self.inner.complete_path(file_id);
        match File::open(&path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::io(&path, e)),
        }
    }

    /// Complete, partial (with the bytes verified so far) or absent.
    pub fn status(&self, file_id: FileId) -> Result<BlobStatus, BlobError> {
        let path = self.inner.complete_path(file_id);
        match fs::metadata(&path) {
            Ok(meta) => {
                return Ok(BlobStatus {
                    state: BlobState::Complete,
                    have_bytes: meta.len(),
                    size: Some(meta.len()),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(BlobError::io(&path, e)),
        }
        let partial = |manifest: &Manifest, chunks: &ChunkSet| BlobStatus {
            state: BlobState::Partial,
            have_bytes: chunks.have_bytes(),
            size: Some(manifest.size()),
        };
        if let Some(shared) = self.inner.open_download(file_id) {
            return Ok(partial(&shared.manifest, &shared.stored()));
        }
        if let Some(on_disk) = self.partial_on_disk(file_id)? {
            return Ok(partial(&on_disk.manifest, &on_disk.chunks));
        }
        Ok(BlobStatus {
            state: BlobState::Absent,
            have_bytes: 0,
            size: None,
        })
    }

    /// The manifest of a file this node has, complete or partly: what it can serve to a
    /// peer that wants the file (whole, or in pages with `Manifest::page`).
    pub fn manifest(&self, file_id: FileId) -> Result<Option<Arc<Manifest>>, BlobError> {
        if let Some(manifest) = self.complete_manifest(file_id)? {
            return Ok(Some(manifest));
        }
        if let Some(shared) = self.inner.open_download(file_id) {
            return Ok(Some(Arc::clone(&shared.manifest)));
        }
        Ok(self.partial_on_disk(file_id)?.map(|p| p.manifest))
    }

    /// The manifest of a complete file (`None` if it is not complete).
    fn complete_manifest(&self, file_id: FileId) -> Result<Option<Arc<Manifest>>, BlobError> {
        if let Some(m) = lock(&self.inner.manifests).get(&file_id) {
            return Ok(Some(Arc::clone(m)));
        }
        if !self.inner.complete_path(file_id).exists() {
            return Ok(None);
        }
        let path = self.inner.complete_manifest_path(file_id);
        let bytes = fs::read(&path).map_err(|e| BlobError::io(&path, e))?;
        let manifest =
            Manifest::decode(&bytes).map_err(|e| BlobError::corrupt(&path, e.to_string()))?;
        if manifest.file_id() != file_id {
            return Err(BlobError::corrupt(
                &path,
                format!("describes {}", manifest.file_id()),
            ));
        }
        let manifest = Arc::new(manifest);
        let mut cache = lock(&self.inner.manifests);
        if cache.len() >= MANIFEST_CACHE {
            cache.clear();
        }
        cache.insert(file_id, Arc::clone(&manifest));
        Ok(Some(manifest))
    }

    /// A download on disk that is not open here: its manifest and the chunks its log
    /// records. `None` when there is none, or its files do not fit together (it would be
    /// started over by the next `begin_download`).
    fn partial_on_disk(&self, file_id: FileId) -> Result<Option<OnDisk>, BlobError> {
        let paths = self.inner.partial_paths(file_id);
        let bytes = match fs::read(&paths.manifest) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BlobError::io(&paths.manifest, e)),
        };
        let Ok(manifest) = Manifest::decode(&bytes) else {
            return Ok(None);
        };
        if manifest.file_id() != file_id {
            return Ok(None);
        }
        let log = match File::open(&paths.log) {
            Ok(log) => log,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BlobError::io(&paths.log, e)),
        };
        match chunk_log::load(&log, &manifest, &manifest.hash())
            .map_err(|e| BlobError::io(&paths.log, e))?
        {
            Loaded::Chunks { set, .. } => Ok(Some(OnDisk {
                manifest: Arc::new(manifest),
                chunks: set,
                data_path: paths.data,
            })),
            Loaded::Unusable(_) => Ok(None),
        }
    }
}

struct OnDisk {
    manifest: Arc<Manifest>,
    chunks: ChunkSet,
    data_path: PathBuf,
}

/// Reads until `buf` is full or the reader ends; returns how much was read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What a crash can leave: `tmp/` entirely (imports not yet in place), temporary files of
/// atomic writes (`.name.tmp-pid`, see `private_file`), and the log, manifest copy and
/// content of a download whose file is already complete (a crash in `finish` after the
/// rename).
fn clean_up(inner: &Inner) -> Result<(), (PathBuf, io::Error)> {
    let entries = |dir: &Path| -> Result<Vec<(PathBuf, String)>, (PathBuf, io::Error)> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))? {
            let entry = entry.map_err(|e| (dir.to_path_buf(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            out.push((entry.path(), name));
        }
        Ok(out)
    };
    let remove = |path: &Path| {
        tracing::info!(path = %path.display(), "removing what an interrupted write left in the blob store");
        remove_if_present(path).map_err(|e| (path.to_path_buf(), e))
    };
    for (path, _) in entries(&inner.tmp)? {
        remove(&path)?;
    }
    for (path, name) in entries(&inner.complete)? {
        if name.starts_with('.') {
            remove(&path)?;
        }
    }
    for (path, name) in entries(&inner.partial)? {
        let done = name
            .split_once('.')
            .and_then(|(id, _)| id.parse::<FileId>().ok())
            .is_some_and(|id| inner.complete_path(id).exists());
        if name.starts_with('.') || done {
            remove(&path)?;
        }
    }
    Ok(())
}
