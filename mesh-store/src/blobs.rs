//! The file engine's [`BlobPort`] over [`storage::blobs::BlobStore`]. Every store call
//! blocks (file I/O, SHA-256), so each runs on tokio's blocking pool. Downloads begun
//! here stay open in this adapter (one `PartialBlob` per file) until finished, so
//! `holding` can list their verified chunks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lan_mesh::files::{
    BlobFuture, BlobPort, BlobPortError, FileId, HeldChunks, Holding, ManifestHash, PutOutcome,
};
use storage::blobs::{self, BlobError, BlobState, BlobStore, Download, PartialBlob};

/// The node's blob store as the file engine sees it. Cheap to clone.
#[derive(Clone)]
pub struct BlobPorts {
    store: BlobStore,
    /// Open downloads; taken out while a blocking call uses one.
    open: Arc<Mutex<HashMap<FileId, PartialBlob>>>,
}

impl BlobPorts {
    pub fn new(store: BlobStore) -> Self {
        BlobPorts {
            store,
            open: Arc::default(),
        }
    }
}

fn lock(m: &Mutex<HashMap<FileId, PartialBlob>>) -> MutexGuard<'_, HashMap<FileId, PartialBlob>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        let store = self.store.clone();
        let open = Arc::clone(&self.open);
        Box::pin(blocking(move || {
            let Some(manifest) = store.manifest(id(file)).map_err(unavailable)? else {
                return Ok(None);
            };
            let manifest_hash = ManifestHash(*manifest.hash().as_bytes());
            let chunk_count = manifest.chunk_count();
            let status = store.status(id(file)).map_err(unavailable)?;
            let chunks = if status.state == BlobState::Complete {
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
        Box::pin(blocking(move || {
            match store.read_chunk(id(file), index) {
                Ok(chunk) => Ok(chunk),
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

    fn put_chunk(&self, file: FileId, index: u32, bytes: Vec<u8>) -> BlobFuture<'_, PutOutcome> {
        let open = Arc::clone(&self.open);
        Box::pin(blocking(move || {
            let Some(mut partial) = lock(&open).remove(&file) else {
                return Err(BlobPortError::NoManifest(file));
            };
            let outcome = match partial.put_chunk(index, &bytes) {
                Ok(true) => Ok(PutOutcome::Stored),
                Ok(false) => Ok(PutOutcome::Duplicate),
                Err(BlobError::ChunkMismatch(_)) => Ok(PutOutcome::Mismatch),
                Err(e) => Err(unavailable(e)),
            };
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
}
