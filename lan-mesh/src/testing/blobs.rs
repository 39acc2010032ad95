//! [`MemoryBlobs`]: the file engine's blob port ([`crate::files::BlobPort`]) in
//! memory, honouring its contract (chunks checked against the manifest before they are
//! stored, the whole-file check at the end, a manifest assembled from pages checked
//! against its hash) — with switches that make it serve corrupted chunks or manifest
//! pages, to play a lying peer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::files::{
    BlobFuture, BlobPort, BlobPortError, FileDescriptor, FileId, HeldChunks, Holding, ManifestHash,
    ManifestOutcome, PutOutcome, ServedPage,
};

/// Chunk hashes per manifest page unless a test asks for fewer (storage's
/// `MANIFEST_PAGE_HASHES`).
pub const PAGE_HASHES: u32 = 4096;
/// The largest chunk count a descriptor may declare (storage's bound: 64 GiB at the
/// smallest chunk size).
const MAX_CHUNKS: u32 = 1 << 20;

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

    /// What the signed file message says of this file.
    pub fn descriptor(&self) -> FileDescriptor {
        FileDescriptor {
            file_id: self.file_id,
            manifest_hash: self.hash(),
            size: self.size as u64,
            chunk_size: u32::try_from(self.chunk_size).unwrap_or(u32::MAX),
        }
    }
}

/// A manifest being assembled from pages.
#[derive(Debug)]
struct Assembly {
    file: FileDescriptor,
    chunk_count: u32,
    page_count: u32,
    pages: BTreeMap<u32, Vec<u8>>,
}

impl Assembly {
    fn missing(&self) -> Vec<u32> {
        (0..self.page_count)
            .filter(|p| !self.pages.contains_key(p))
            .collect()
    }

    /// The hashes page `page` holds.
    fn page_len(&self, page: u32, per_page: u32) -> usize {
        let start = u64::from(page) * u64::from(per_page);
        let end = (start + u64::from(per_page)).min(u64::from(self.chunk_count));
        usize::try_from(end.saturating_sub(start)).unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    manifest: MemoryManifest,
    chunks: BTreeMap<u32, Vec<u8>>,
    complete: bool,
}

/// One node's blobs (see the module docs). Cheap to clone; clones share it.
#[derive(Clone)]
pub struct MemoryBlobs(Arc<Inner>);

struct Inner {
    files: Mutex<HashMap<FileId, Entry>>,
    assemblies: Mutex<HashMap<FileId, Assembly>>,
    per_page: u32,
    corrupt_reads: AtomicBool,
    corrupt_pages: AtomicBool,
    puts: AtomicU64,
    /// Chunk reads still to be corrupted (see `corrupt_next_reads`).
    corrupt_next: AtomicU64,
    /// How long reading a chunk for serving takes, in milliseconds.
    read_delay_ms: AtomicU64,
    /// How long storing a batch of chunks takes, in milliseconds.
    write_delay_ms: AtomicU64,
    /// The most chunks one `put_chunks` was given.
    largest_batch: AtomicU64,
}

impl Default for MemoryBlobs {
    fn default() -> Self {
        MemoryBlobs::paged(PAGE_HASHES)
    }
}

impl MemoryBlobs {
    pub fn new() -> MemoryBlobs {
        MemoryBlobs::default()
    }

    /// A store whose manifest pages hold `per_page` chunk hashes (tests use a few, so
    /// a small file has several pages; both ends of a transfer must agree).
    pub fn paged(per_page: u32) -> MemoryBlobs {
        MemoryBlobs(Arc::new(Inner {
            files: Mutex::default(),
            assemblies: Mutex::default(),
            per_page: per_page.max(1),
            corrupt_reads: AtomicBool::new(false),
            corrupt_pages: AtomicBool::new(false),
            puts: AtomicU64::new(0),
            read_delay_ms: AtomicU64::new(0),
            write_delay_ms: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
            corrupt_next: AtomicU64::new(0),
        }))
    }

    fn assemblies(&self) -> MutexGuard<'_, HashMap<FileId, Assembly>> {
        self.0.assemblies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on every manifest page served has one byte flipped (the right length,
    /// the wrong hashes: found only when the manifest is complete).
    pub fn corrupt_pages(&self, on: bool) {
        self.0.corrupt_pages.store(on, Ordering::SeqCst);
    }

    /// Whether a manifest for `file` is known here (complete or not).
    pub fn knows(&self, file: FileId) -> bool {
        self.lock().contains_key(&file)
    }

    /// Manifest assemblies held (one per download fetching its manifest).
    pub fn assemblies_held(&self) -> usize {
        self.assemblies().len()
    }

    /// Gets or creates the assembly of `file`; `Refused` for a descriptor no manifest
    /// may have.
    fn with_assembly<T>(
        &self,
        file: FileDescriptor,
        f: impl FnOnce(&mut Assembly) -> T,
    ) -> Result<T, BlobPortError> {
        let per_page = self.0.per_page;
        let mut assemblies = self.assemblies();
        let assembly = match assemblies.entry(file.file_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let chunk_count =
                    file.chunk_count()
                        .filter(|&c| c <= MAX_CHUNKS)
                        .ok_or_else(|| {
                            BlobPortError::Refused(file.file_id, "impossible size".into())
                        })?;
                e.insert(Assembly {
                    file,
                    chunk_count,
                    page_count: chunk_count.div_ceil(per_page),
                    pages: BTreeMap::new(),
                })
            }
        };
        Ok(f(assembly))
    }

    /// Builds the manifest of a complete assembly: stored when it hashes right,
    /// discarded when not.
    fn complete_assembly(&self, file: FileId) -> ManifestOutcome {
        let Some(assembly) = self.assemblies().remove(&file) else {
            return ManifestOutcome::Missing(Vec::new());
        };
        let manifest = MemoryManifest {
            file_id: assembly.file.file_id,
            chunk_size: assembly.file.chunk_size as usize,
            size: usize::try_from(assembly.file.size).unwrap_or(usize::MAX),
            hashes: assembly
                .pages
                .values()
                .flat_map(|p| p.chunks_exact(32))
                .map(|h| {
                    let mut out = [0u8; 32];
                    out.copy_from_slice(h);
                    out
                })
                .collect(),
        };
        if manifest.hash() != assembly.file.manifest_hash {
            return ManifestOutcome::Mismatch;
        }
        self.know(&manifest);
        ManifestOutcome::Complete
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

    /// From now on reading a chunk for serving takes `delay` (a slow disk): a
    /// transfer lasts long enough to act on it halfway.
    pub fn delay_reads(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.0.read_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// From now on storing a batch of chunks takes `delay` (a disk slower than the
    /// network).
    pub fn delay_writes(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.0.write_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The most chunks one `put_chunks` was given so far.
    pub fn largest_batch(&self) -> u64 {
        self.0.largest_batch.load(Ordering::SeqCst)
    }

    /// The next `n` chunks read for serving have one byte flipped (a fault that
    /// passes), then they are read right again.
    pub fn corrupt_next_reads(&self, n: u64) {
        self.0.corrupt_next.store(n, Ordering::SeqCst);
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
        // A known manifest counts, chunks or not (as the real store: its pages can be
        // served).
        let held = self.lock().get(&file).map(|e| Holding {
            manifest_hash: e.manifest.hash(),
            chunk_count: e.manifest.chunk_count(),
            chunks: if e.complete {
                HeldChunks::Complete
            } else {
                HeldChunks::Some(e.chunks.keys().copied().collect())
            },
        });
        Box::pin(async move { Ok(held) })
    }

    fn read_chunk(&self, file: FileId, index: u32) -> BlobFuture<'_, Option<Vec<u8>>> {
        let mut chunk = self
            .lock()
            .get(&file)
            .and_then(|e| e.chunks.get(&index).cloned());
        let one_of_the_next = self
            .0
            .corrupt_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if self.0.corrupt_reads.load(Ordering::SeqCst) || one_of_the_next {
            if let Some(byte) = chunk.as_mut().and_then(|c| c.first_mut()) {
                *byte ^= 0xff;
            }
        }
        let delay = Duration::from_millis(self.0.read_delay_ms.load(Ordering::SeqCst));
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(chunk)
        })
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

    fn put_chunks(
        &self,
        file: FileId,
        chunks: Vec<(u32, Vec<u8>)>,
    ) -> BlobFuture<'_, Vec<PutOutcome>> {
        self.0
            .largest_batch
            .fetch_max(chunks.len() as u64, Ordering::SeqCst);
        let delay = Duration::from_millis(self.0.write_delay_ms.load(Ordering::SeqCst));
        let answer = match self.lock().get_mut(&file) {
            None => Err(BlobPortError::NoManifest(file)),
            Some(e) => Ok(chunks
                .into_iter()
                .map(
                    |(index, bytes)| match e.manifest.hashes.get(index as usize) {
                        Some(hash) if <[u8; 32]>::from(Sha256::digest(&bytes)) == *hash => {
                            if e.chunks.insert(index, bytes).is_some() {
                                PutOutcome::Duplicate
                            } else {
                                self.0.puts.fetch_add(1, Ordering::SeqCst);
                                PutOutcome::Stored
                            }
                        }
                        _ => PutOutcome::Mismatch,
                    },
                )
                .collect()),
        };
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            answer
        })
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

    fn manifest_page(
        &self,
        file: FileId,
        manifest_hash: ManifestHash,
        page: u32,
    ) -> BlobFuture<'_, Option<ServedPage>> {
        let per_page = self.0.per_page as usize;
        let mut served = self.lock().get(&file).and_then(|e| {
            if e.manifest.hash() != manifest_hash {
                return None;
            }
            let page_count = e.manifest.chunk_count().div_ceil(self.0.per_page);
            let start = (page as usize).checked_mul(per_page)?;
            let hashes = e.manifest.hashes.get(start..)?;
            let hashes = &hashes[..hashes.len().min(per_page)];
            (page < page_count).then(|| ServedPage {
                page_count,
                bytes: hashes.concat(),
            })
        });
        if self.0.corrupt_pages.load(Ordering::SeqCst) {
            if let Some(byte) = served.as_mut().and_then(|p| p.bytes.first_mut()) {
                *byte ^= 0xff;
            }
        }
        Box::pin(async move { Ok(served) })
    }

    fn begin_manifest(&self, file: FileDescriptor) -> BlobFuture<'_, ManifestOutcome> {
        let answer = if self.knows(file.file_id) {
            Ok(ManifestOutcome::Complete)
        } else {
            self.with_assembly(file, |a| a.missing()).map(|missing| {
                if missing.is_empty() {
                    self.complete_assembly(file.file_id)
                } else {
                    ManifestOutcome::Missing(missing)
                }
            })
        };
        Box::pin(async move { answer })
    }

    fn put_manifest_page(
        &self,
        file: FileDescriptor,
        page: u32,
        page_count: u32,
        bytes: Vec<u8>,
    ) -> BlobFuture<'_, ManifestOutcome> {
        let per_page = self.0.per_page;
        let answer = if self.knows(file.file_id) {
            Ok(ManifestOutcome::Complete)
        } else {
            self.with_assembly(file, |a| {
                if page_count != a.page_count
                    || page >= a.page_count
                    || bytes.len() != a.page_len(page, per_page) * 32
                {
                    return None;
                }
                a.pages.insert(page, bytes);
                Some(a.missing())
            })
            .map(|missing| match missing {
                None => ManifestOutcome::BadPage,
                Some(m) if m.is_empty() => self.complete_assembly(file.file_id),
                Some(m) => ManifestOutcome::Missing(m),
            })
        };
        Box::pin(async move { answer })
    }

    fn forget_manifest(&self, file: FileId) {
        self.assemblies().remove(&file);
    }
}
