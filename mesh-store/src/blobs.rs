//! The file engine's [`BlobPort`] over [`storage::blobs::BlobStore`]. Every store call
//! blocks (file I/O, SHA-256), so each runs on tokio's blocking pool. Downloads begun
//! here stay open in this adapter (one `PartialBlob` per file) until finished, so
//! `holding` can list their verified chunks. Manifests fetched as pages are assembled
//! here too (one `ManifestAssembly` per download that asked), and stored by beginning
//! the download once they hash right.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lan_mesh::files::{
    BlobFuture, BlobPort, BlobPortError, FileDescriptor, FileId, HeldChunks, Holding, ManifestHash,
    ManifestOutcome, PutOutcome, ServedPage,
};
use storage::blobs::{
    self, BlobError, BlobState, BlobStore, Download, Manifest, ManifestAssembly, ManifestError,
    PartialBlob, MANIFEST_PAGE_HASHES,
};

/// The node's blob store as the file engine sees it. Cheap to clone.
#[derive(Clone)]
pub struct BlobPorts {
    store: BlobStore,
    /// Open downloads; taken out while a blocking call uses one.
    open: Arc<Mutex<HashMap<FileId, PartialBlob>>>,
    /// Manifests being assembled from peers' pages.
    assemblies: Arc<Mutex<HashMap<FileId, ManifestAssembly>>>,
    /// Chunk hashes per manifest page, served and expected.
    per_page: u32,
    /// Chunks still to be served corrupted (a fault for tests, see
    /// [`BlobPorts::corrupt_next_reads`]).
    corrupt_next: Arc<AtomicU64>,
    /// Files known complete, and their manifest hash and chunk count: `holding` is
    /// asked on every request a node serves, and a complete file stays complete (the
    /// store never removes one), so it is answered from here without the blocking pool.
    complete: Arc<Mutex<HashMap<FileId, (ManifestHash, u32)>>>,
}

/// Complete files remembered by [`BlobPorts`]; above it the memory starts over.
const COMPLETE_MEMORY: usize = 4096;

impl BlobPorts {
    pub fn new(store: BlobStore) -> Self {
        BlobPorts::with_page_hashes(store, MANIFEST_PAGE_HASHES)
    }

    /// With `per_page` chunk hashes per manifest page instead of storage's
    /// `MANIFEST_PAGE_HASHES`: pages are part of the protocol, so only tests (which
    /// need many pages without a 600 MiB file) use another value, on both ends.
    pub fn with_page_hashes(store: BlobStore, per_page: u32) -> Self {
        BlobPorts {
            store,
            open: Arc::default(),
            assemblies: Arc::default(),
            per_page,
            corrupt_next: Arc::default(),
            complete: Arc::default(),
        }
    }

    /// A fault for tests: the next `n` chunks read to serve a peer have one byte
    /// flipped as they are read, so this node plays a peer that sends
    /// corrupt chunks (which receivers must refuse and fetch again).
    pub fn corrupt_next_reads(&self, n: u64) {
        self.corrupt_next.store(n, Ordering::SeqCst);
    }
}

/// Stores `chunks` with one flush: storage refuses a whole batch for one chunk that
/// does not match (naming it), so that one is marked and the rest tried again — a
/// batch from honest peers is checked once.
fn put_batch(
    partial: &mut PartialBlob,
    chunks: &[(u32, Vec<u8>)],
) -> Result<Vec<PutOutcome>, BlobPortError> {
    let missing: std::collections::BTreeSet<u32> = partial.missing_chunks().into_iter().collect();
    let mut outcomes: Vec<PutOutcome> = chunks
        .iter()
        .map(|(index, _)| {
            if missing.contains(index) {
                PutOutcome::Stored
            } else {
                PutOutcome::Duplicate
            }
        })
        .collect();
    loop {
        let batch: Vec<(u32, &[u8])> = chunks
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == PutOutcome::Stored)
            .map(|((index, bytes), _)| (*index, bytes.as_slice()))
            .collect();
        if batch.is_empty() {
            return Ok(outcomes);
        }
        match partial.put_chunks(&batch) {
            Ok(_) => return Ok(outcomes),
            Err(BlobError::ChunkMismatch(m)) => {
                let bad = m.index();
                let mut marked = false;
                for ((index, _), outcome) in chunks.iter().zip(outcomes.iter_mut()) {
                    if *index == bad && *outcome == PutOutcome::Stored {
                        *outcome = PutOutcome::Mismatch;
                        marked = true;
                    }
                }
                if !marked {
                    // Not one of this batch's new chunks: cannot happen, but never loop.
                    return Err(unavailable(BlobError::ChunkMismatch(m)));
                }
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Begins the download `manifest` describes, keeping it open: how a manifest fetched
/// as pages is stored (storage writes it beside the partial content).
fn store_manifest(
    store: &BlobStore,
    open: &Mutex<HashMap<FileId, PartialBlob>>,
    file: FileId,
    manifest: Manifest,
) -> Result<(), BlobPortError> {
    match store.begin_download(manifest).map_err(unavailable)? {
        Download::Complete => {}
        Download::Partial(partial) => {
            lock(open).insert(file, partial);
        }
    }
    Ok(())
}

/// Finishes a complete assembly: stored when it hashes to the descriptor's manifest
/// hash, discarded (`Mismatch`) when it does not.
fn finish_assembly(
    store: &BlobStore,
    open: &Mutex<HashMap<FileId, PartialBlob>>,
    file: FileId,
    assembly: ManifestAssembly,
) -> Result<ManifestOutcome, BlobPortError> {
    match assembly.finish() {
        Ok(manifest) => {
            store_manifest(store, open, file, manifest)?;
            Ok(ManifestOutcome::Complete)
        }
        // Every page was in: the hash (or the shape the hashes make, e.g. a one-chunk
        // file whose hash is not its id) condemns the pages, not the descriptor.
        Err(ManifestError::Incomplete { .. }) => Ok(ManifestOutcome::Missing(Vec::new())),
        Err(_) => Ok(ManifestOutcome::Mismatch),
    }
}

/// An empty assembly for `file`; storage checks the shape (size, chunk size, page size)
/// before anything is allocated for it.
fn new_assembly(file: FileDescriptor, per_page: u32) -> Result<ManifestAssembly, BlobPortError> {
    ManifestAssembly::new(
        blobs::FileId::from_bytes(file.file_id.0),
        file.size,
        file.chunk_size,
        blobs::ManifestHash::from_bytes(file.manifest_hash.0),
        per_page,
    )
    .map_err(|e| BlobPortError::Refused(file.file_id, e.to_string()))
}

/// The held manifest of `file`, checked against `manifest_hash`: `Ok(true)` when held
/// under it, `OtherManifest` when under another one.
fn held_under(
    store: &BlobStore,
    file: FileId,
    manifest_hash: ManifestHash,
) -> Result<bool, BlobPortError> {
    match store.manifest(id(file)).map_err(unavailable)? {
        None => Ok(false),
        Some(m) if *m.hash().as_bytes() == manifest_hash.0 => Ok(true),
        Some(_) => Err(BlobPortError::OtherManifest(file)),
    }
}

fn id(file: FileId) -> blobs::FileId {
    blobs::FileId::from_bytes(file.0)
}

fn unavailable(e: impl std::fmt::Display) -> BlobPortError {
    BlobPortError::Unavailable(e.to_string())
}

/// Runs a blocking store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobPortError> + Send + 'static,
) -> Result<T, BlobPortError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| unavailable(format!("blob task failed: {e}")))?
}

impl BlobPort for BlobPorts {
    fn holding(&self, file: FileId) -> BlobFuture<'_, Option<Holding>> {
        if let Some(&(manifest_hash, chunk_count)) = lock(&self.complete).get(&file) {
            return Box::pin(async move {
                Ok(Some(Holding {
                    manifest_hash,
                    chunk_count,
                    chunks: HeldChunks::Complete,
                }))
            });
        }
        let store = self.store.clone();
        let open = Arc::clone(&self.open);
        let complete = Arc::clone(&self.complete);
        Box::pin(blocking(move || {
            let Some(manifest) = store.manifest(id(file)).map_err(unavailable)? else {
                return Ok(None);
            };
            let manifest_hash = ManifestHash(*manifest.hash().as_bytes());
            let chunk_count = manifest.chunk_count();
            let status = store.status(id(file)).map_err(unavailable)?;
            let chunks = if status.state == BlobState::Complete {
                let mut known = lock(&complete);
                if known.len() >= COMPLETE_MEMORY {
                    known.clear();
                }
                known.insert(file, (manifest_hash, chunk_count));
                HeldChunks::Complete
            } else if let Some(partial) = lock(&open).get(&file) {
                let missing: std::collections::BTreeSet<u32> =
                    partial.missing_chunks().into_iter().collect();
                HeldChunks::Some((0..chunk_count).filter(|i| !missing.contains(i)).collect())
            } else {
                // A partial download not open here: nothing claimed (it is opened, and
                // its chunks listed, when this node resumes it).
                HeldChunks::Some(Vec::new())
            };
            Ok(Some(Holding {
                manifest_hash,
                chunk_count,
                chunks,
            }))
        }))
    }

    fn read_chunk(&self, file: FileId, index: u32) -> BlobFuture<'_, Option<Vec<u8>>> {
        let store = self.store.clone();
        let corrupt_next = Arc::clone(&self.corrupt_next);
        Box::pin(blocking(move || {
            match store.read_chunk(id(file), index) {
                Ok(Some(mut chunk)) => {
                    let corrupt = corrupt_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if let Some(byte) = chunk.first_mut().filter(|_| corrupt) {
                        *byte ^= 0xff;
                    }
                    Ok(Some(chunk))
                }
                Ok(None) => Ok(None),
                // An index past the end is "not held", not a store failure.
                Err(BlobError::NoSuchChunk { .. }) => Ok(None),
                Err(e) => Err(unavailable(e)),
            }
        }))
    }

    fn begin(&self, file: FileId, manifest_hash: ManifestHash) -> BlobFuture<'_, Vec<u32>> {
        let store = self.store.clone();
        let open = Arc::clone(&self.open);
        Box::pin(blocking(move || {
            if let Some(partial) = lock(&open).get(&file) {
                return Ok(partial.missing_chunks());
            }
            let Some(manifest) = store.manifest(id(file)).map_err(unavailable)? else {
                return Err(BlobPortError::NoManifest(file));
            };
            if *manifest.hash().as_bytes() != manifest_hash.0 {
                return Err(BlobPortError::OtherManifest(file));
            }
            match store
                .begin_download((*manifest).clone())
                .map_err(unavailable)?
            {
                Download::Complete => Ok(Vec::new()),
                Download::Partial(partial) => {
                    let missing = partial.missing_chunks();
                    lock(&open).insert(file, partial);
                    Ok(missing)
                }
            }
        }))
    }

    fn put_chunks(
        &self,
        file: FileId,
        chunks: Vec<(u32, Vec<u8>)>,
    ) -> BlobFuture<'_, Vec<PutOutcome>> {
        let open = Arc::clone(&self.open);
        Box::pin(blocking(move || {
            let Some(mut partial) = lock(&open).remove(&file) else {
                return Err(BlobPortError::NoManifest(file));
            };
            let outcome = put_batch(&mut partial, &chunks);
            lock(&open).insert(file, partial);
            outcome
        }))
    }

    fn finish(&self, file: FileId) -> BlobFuture<'_, ()> {
        let open = Arc::clone(&self.open);
        let store = self.store.clone();
        Box::pin(blocking(move || {
            let Some(partial) = lock(&open).remove(&file) else {
                // Nothing open: done already when the content is here.
                let status = store.status(id(file)).map_err(unavailable)?;
                return if status.state == BlobState::Complete {
                    Ok(())
                } else {
                    Err(BlobPortError::NoManifest(file))
                };
            };
            match partial.finish() {
                Ok(_) => Ok(()),
                Err(BlobError::WholeHashMismatch { .. } | BlobError::Corrupt { .. }) => {
                    Err(BlobPortError::WholeFileMismatch(file))
                }
                Err(e) => Err(unavailable(e)),
            }
        }))
    }

    fn manifest_page(
        &self,
        file: FileId,
        manifest_hash: ManifestHash,
        page: u32,
    ) -> BlobFuture<'_, Option<ServedPage>> {
        let store = self.store.clone();
        let per_page = self.per_page;
        Box::pin(blocking(move || {
            let Some(manifest) = store.manifest(id(file)).map_err(unavailable)? else {
                return Ok(None);
            };
            if *manifest.hash().as_bytes() != manifest_hash.0 {
                return Ok(None);
            }
            // A page past the end (or a page size storage refuses) is "not held".
            let (Ok(page_count), Ok(bytes)) =
                (manifest.page_count(per_page), manifest.page(page, per_page))
            else {
                return Ok(None);
            };
            Ok(Some(ServedPage { page_count, bytes }))
        }))
    }

    fn begin_manifest(&self, file: FileDescriptor) -> BlobFuture<'_, ManifestOutcome> {
        let store = self.store.clone();
        let open = Arc::clone(&self.open);
        let assemblies = Arc::clone(&self.assemblies);
        let per_page = self.per_page;
        Box::pin(blocking(move || {
            let file_id = file.file_id;
            if held_under(&store, file_id, file.manifest_hash)? {
                return Ok(ManifestOutcome::Complete);
            }
            let mut all = lock(&assemblies);
            if let Some(assembly) = all.get(&file_id) {
                return Ok(ManifestOutcome::Missing(assembly.missing_pages()));
            }
            let assembly = new_assembly(file, per_page)?;
            if assembly.is_complete() {
                // No page at all: an empty file.
                drop(all);
                return finish_assembly(&store, &open, file_id, assembly);
            }
            let missing = assembly.missing_pages();
            all.insert(file_id, assembly);
            Ok(ManifestOutcome::Missing(missing))
        }))
    }

    fn put_manifest_page(
        &self,
        file: FileDescriptor,
        page: u32,
        page_count: u32,
        bytes: Vec<u8>,
    ) -> BlobFuture<'_, ManifestOutcome> {
        let store = self.store.clone();
        let open = Arc::clone(&self.open);
        let assemblies = Arc::clone(&self.assemblies);
        let per_page = self.per_page;
        Box::pin(blocking(move || {
            let file_id = file.file_id;
            if held_under(&store, file_id, file.manifest_hash)? {
                return Ok(ManifestOutcome::Complete);
            }
            let mut all = lock(&assemblies);
            let assembly = match all.entry(file_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(new_assembly(file, per_page)?),
            };
            if page_count != assembly.page_count() || assembly.add_page(page, &bytes).is_err() {
                return Ok(ManifestOutcome::BadPage);
            }
            if !assembly.is_complete() {
                return Ok(ManifestOutcome::Missing(assembly.missing_pages()));
            }
            let Some(assembly) = all.remove(&file_id) else {
                return Ok(ManifestOutcome::BadPage);
            };
            drop(all);
            finish_assembly(&store, &open, file_id, assembly)
        }))
    }

    fn forget_manifest(&self, file: FileId) {
        lock(&self.assemblies).remove(&file);
    }
}
