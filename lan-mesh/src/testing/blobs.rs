//! [`MemoryBlobs`]: the file engine's blob port ([`crate::files::BlobPort`]) in
//! memory, honouring its contract (chunks checked against the manifest before they are
//! stored, the whole-file check at the end) — with a switch that makes it serve
//! corrupted chunks, to play a lying peer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::files::{
    BlobFuture, BlobPort, BlobPortError, FileId, HeldChunks, Holding, ManifestHash, PutOutcome,
};

/// A manifest as this store keeps it: the chunk size and each chunk's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryManifest {
    pub file_id: FileId,
    pub chunk_size: usize,
    pub size: usize,
    pub hashes: Vec<[u8; 32]>,
}

impl MemoryManifest {
    pub fn of(content: &[u8], chunk_size: usize) -> MemoryManifest {
        MemoryManifest {
            file_id: FileId(Sha256::digest(content).into()),
            chunk_size,
            size: content.len(),
            hashes: content
                .chunks(chunk_size)
                .map(|c| Sha256::digest(c).into())
                .collect(),
        }
    }

    /// Stands for the encoded manifest's SHA-256.
    pub fn hash(&self) -> ManifestHash {
        let mut h = Sha256::new();
        h.update(self.file_id.0);
        h.update((self.chunk_size as u64).to_be_bytes());
        h.update((self.size as u64).to_be_bytes());
        for c in &self.hashes {
            h.update(c);
        }
        ManifestHash(h.finalize().into())
    }

    pub fn chunk_count(&self) -> u32 {
        u32::try_from(self.hashes.len()).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    manifest: MemoryManifest,
    chunks: BTreeMap<u32, Vec<u8>>,
    complete: bool,
}

/// One node's blobs (see the module docs). Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct MemoryBlobs(Arc<Inner>);

#[derive(Default)]
struct Inner {
    files: Mutex<HashMap<FileId, Entry>>,
    corrupt_reads: AtomicBool,
    puts: AtomicU64,
}

impl MemoryBlobs {
    pub fn new() -> MemoryBlobs {
        MemoryBlobs::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FileId, Entry>> {
        self.0.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Imports `content` as a complete file; returns its manifest.
    pub fn import(&self, content: &[u8], chunk_size: usize) -> MemoryManifest {
        let manifest = MemoryManifest::of(content, chunk_size);
        let chunks = content
            .chunks(chunk_size)
            .enumerate()
            .map(|(i, c)| (u32::try_from(i).unwrap_or(u32::MAX), c.to_vec()))
            .collect();
        self.lock().insert(
            manifest.file_id,
            Entry {
                manifest: manifest.clone(),
                chunks,
                complete: true,
            },
        );
        manifest
    }

    /// Learns a manifest (what the signed file message and manifest pages give a
    /// receiver) without any chunk.
    pub fn know(&self, manifest: &MemoryManifest) {
        self.lock()
            .entry(manifest.file_id)
            .or_insert_with(|| Entry {
                manifest: manifest.clone(),
                chunks: BTreeMap::new(),
                complete: false,
            });
    }

    /// Stores chunks directly (a download that got this far before).
    pub fn preload(
        &self,
        manifest: &MemoryManifest,
        content: &[u8],
        indices: impl IntoIterator<Item = u32>,
    ) {
        self.know(manifest);
        let mut files = self.lock();
        if let Some(entry) = files.get_mut(&manifest.file_id) {
            for i in indices {
                let start = i as usize * manifest.chunk_size;
                let end = (start + manifest.chunk_size).min(content.len());
                entry.chunks.insert(i, content[start..end].to_vec());
            }
        }
    }

    /// From now on every chunk read for serving has one byte flipped.
    pub fn corrupt_reads(&self, on: bool) {
        self.0.corrupt_reads.store(on, Ordering::SeqCst);
    }

    /// The content once complete.
    pub fn content(&self, file: FileId) -> Option<Vec<u8>> {
        let files = self.lock();
        let entry = files.get(&file)?;
        entry
            .complete
            .then(|| entry.chunks.values().flatten().copied().collect())
    }

    pub fn chunk_count_held(&self, file: FileId) -> usize {
        self.lock().get(&file).map_or(0, |e| e.chunks.len())
    }

    /// Chunks stored through `put_chunk` (new ones only).
    pub fn puts(&self) -> u64 {
        self.0.puts.load(Ordering::SeqCst)
    }
}

impl BlobPort for MemoryBlobs {
    fn holding(&self, file: FileId) -> BlobFuture<'_, Option<Holding>> {
        let held = self.lock().get(&file).and_then(|e| {
            if !e.complete && e.chunks.is_empty() {
                return None;
            }
            Some(Holding {
                manifest_hash: e.manifest.hash(),
                chunk_count: e.manifest.chunk_count(),
                chunks: if e.complete {
                    HeldChunks::Complete
                } else {
                    HeldChunks::Some(e.chunks.keys().copied().collect())
                },
            })
        });
        Box::pin(async move { Ok(held) })
    }

    fn read_chunk(&self, file: FileId, index: u32) -> BlobFuture<'_, Option<Vec<u8>>> {
        let mut chunk = self
            .lock()
            .get(&file)
            .and_then(|e| e.chunks.get(&index).cloned());
        if self.0.corrupt_reads.load(Ordering::SeqCst) {
            if let Some(byte) = chunk.as_mut().and_then(|c| c.first_mut()) {
                *byte ^= 0xff;
            }
        }
        Box::pin(async move { Ok(chunk) })
    }

    fn begin(&self, file: FileId, manifest_hash: ManifestHash) -> BlobFuture<'_, Vec<u32>> {
        let answer = match self.lock().get(&file) {
            None => Err(BlobPortError::NoManifest(file)),
            Some(e) if e.manifest.hash() != manifest_hash => {
                Err(BlobPortError::OtherManifest(file))
            }
            Some(e) => Ok((0..e.manifest.chunk_count())
                .filter(|i| !e.chunks.contains_key(i))
                .collect()),
        };
        Box::pin(async move { answer })
    }

    fn put_chunk(&self, file: FileId, index: u32, bytes: Vec<u8>) -> BlobFuture<'_, PutOutcome> {
        let answer = match self.lock().get_mut(&file) {
            None => Err(BlobPortError::NoManifest(file)),
            Some(e) => match e.manifest.hashes.get(index as usize) {
                Some(hash) if <[u8; 32]>::from(Sha256::digest(&bytes)) == *hash => {
                    if e.chunks.insert(index, bytes).is_some() {
                        Ok(PutOutcome::Duplicate)
                    } else {
                        self.0.puts.fetch_add(1, Ordering::SeqCst);
                        Ok(PutOutcome::Stored)
                    }
                }
                _ => Ok(PutOutcome::Mismatch),
            },
        };
        Box::pin(async move { answer })
    }

    fn finish(&self, file: FileId) -> BlobFuture<'_, ()> {
        let answer = match self.lock().get_mut(&file) {
            None => Err(BlobPortError::NoManifest(file)),
            Some(e) if e.complete => Ok(()),
            Some(e) if e.chunks.len() != e.manifest.hashes.len() => {
                Err(BlobPortError::Unavailable("chunks missing".into()))
            }
            Some(e) => {
                let mut h = Sha256::new();
                for c in e.chunks.values() {
                    h.update(c);
                }
                if FileId(h.finalize().into()) == file {
                    e.complete = true;
                    Ok(())
                } else {
                    e.chunks.clear();
                    Err(BlobPortError::WholeFileMismatch(file))
                }
            }
        };
        Box::pin(async move { answer })
    }
}
