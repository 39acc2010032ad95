//! One download in progress: `partial/<id>.data` (the content, pre-sized and sparse),
//! `partial/<id>.manifest` (the manifest it follows) and `partial/<id>.chunks` (the log of
//! verified chunks, `chunk_log`).
//!
//! The order of every write is the crash-safety argument: a chunk is verified, written
//! and fsynced, and only then recorded; so a crash at any point leaves the log naming
//! only chunks whose bytes are on disk (docs/STORAGE.md, "Files (blobs)").

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use super::chunk_log::{self, ChunkSet, Loaded};
use super::fs_util::{create_private, remove_if_present, sync_dir};
use super::store::Inner;
use super::{sha256, BlobError, FileId, Manifest, ManifestHash};
use crate::private_file::write_atomic;

/// The files of one partial download.
#[derive(Debug, Clone)]
pub(crate) struct PartialPaths {
    pub(crate) data: PathBuf,
    pub(crate) manifest: PathBuf,
    pub(crate) log: PathBuf,
}

/// What a download shares with the store while it is open, so chunks it has verified
/// can be served to other peers (`BlobStore::read_chunk`) before it is complete.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) data: File,
    pub(crate) data_path: PathBuf,
    pub(crate) chunks: RwLock<ChunkSet>,
}

impl Shared {
    pub(crate) fn stored(&self) -> std::sync::RwLockReadGuard<'_, ChunkSet> {
        self.chunks.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A download of one file, made by [`BlobStore::begin_download`](super::BlobStore::begin_download).
/// At most one per file at a time; dropping it keeps everything verified so far, and a
/// later `begin_download` of the same manifest resumes from there.
#[derive(Debug)]
pub struct PartialBlob {
    store: Arc<Inner>,
    shared: Arc<Shared>,
    paths: PartialPaths,
    log: File,
    /// Where the next record goes: the end of the last whole record.
    log_end: u64,
    /// The whole-file SHA-256 over chunks `0..hashed`, fed as they are stored, so that
    /// `finish` reads back only what it has not seen (see [`WholeHash`]). Boxed: a
    /// hasher's state would make every `Download` as large as itself.
    whole: Box<WholeHash>,
}

/// The whole-file hash of a download, advanced in file order as chunks are stored:
/// from the bytes of the batch being stored while they are still in memory, and from
/// disk (each chunk checked again) for chunks stored earlier out of order or before a
/// restart — at most [`CATCH_UP_CHUNKS`] of those per batch, so one batch never reads
/// back half a file. `finish` reads back what is still unhashed (nothing, for a
/// download that arrived in order in one run of the node).
#[derive(Debug, Clone)]
struct WholeHash {
    hasher: Sha256,
    /// Chunks `0..hashed` are in `hasher`.
    hashed: u32,
}

/// Chunks read back from disk per stored batch to move the whole-file hash on.
const CATCH_UP_CHUNKS: u32 = 64;

impl WholeHash {
    /// Feeds the hash the stored chunks that follow what it has, in order: from `batch`
    /// when a chunk is there, else read back from `data` and checked (at most
    /// `read_back` of those). `Ok(Err(refusal))` when a chunk read back no longer matches
    /// its hash.
    fn advance(
        &mut self,
        manifest: &Manifest,
        data: &File,
        data_path: &std::path::Path,
        stored: impl Fn(u32) -> bool,
        batch: &BTreeMap<u32, &[u8]>,
        mut read_back: u32,
    ) -> Result<Result<(), BlobError>, BlobError> {
        let mut buf = Vec::new();
        loop {
            let index = self.hashed;
            if index >= manifest.chunk_count() || !stored(index) {
                return Ok(Ok(()));
            }
            if let Some(bytes) = batch.get(&index) {
                // Checked against the manifest before it was written.
                self.hasher.update(bytes);
            } else {
                if read_back == 0 {
                    return Ok(Ok(()));
                }
                read_back -= 1;
                let (Some(offset), Some(len)) =
                    (manifest.chunk_offset(index), manifest.chunk_len(index))
                else {
                    return Ok(Ok(()));
                };
                buf.resize(len as usize, 0);
                data.read_exact_at(&mut buf, offset)
                    .map_err(|e| BlobError::io(data_path, e))?;
                if Some(&sha256(&buf)) != manifest.chunk_hash(index) {
                    return Ok(Err(BlobError::corrupt(
                        data_path,
                        format!("chunk {index} changed on disk after it was verified; the download was discarded"),
                    )));
                }
                self.hasher.update(&buf);
            }
            self.hashed += 1;
        }
    }
}

impl PartialBlob {
    /// Opens the download of `manifest`, resuming the one on disk if it follows the same
    /// manifest, else starting over. The caller has reserved the file id in the store.
    pub(crate) fn open(store: Arc<Inner>, manifest: Manifest) -> Result<PartialBlob, BlobError> {
        let file_id = manifest.file_id();
        let hash = manifest.hash();
        let paths = store.partial_paths(file_id);
        let resumed = match resume(&paths, &manifest, &hash)? {
            Ok(resumed) => Some(resumed),
            Err(reason) => {
                if reason != NOTHING_ON_DISK {
                    tracing::warn!(
                        %file_id,
                        reason,
                        "the partial download on disk cannot be resumed; starting it over"
                    );
                }
                None
            }
        };
        let (data, log, set, log_end) = match resumed {
            Some(r) => r,
            None => start(&store, &paths, &manifest, &hash)?,
        };
        Ok(PartialBlob {
            store,
            shared: Arc::new(Shared {
                manifest: Arc::new(manifest),
                data,
                data_path: paths.data.clone(),
                chunks: RwLock::new(set),
            }),
            paths,
            log,
            log_end,
            whole: Box::new(WholeHash {
                hasher: Sha256::new(),
                hashed: 0,
            }),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.shared.manifest
    }

    pub fn file_id(&self) -> FileId {
        self.shared.manifest.file_id()
    }

    /// Stores chunk `index` after checking it against the manifest; returns whether it
    /// was new (a chunk already stored is not written again). See [`Self::put_chunks`].
    pub fn put_chunk(&mut self, index: u32, bytes: &[u8]) -> Result<bool, BlobError> {
        self.put_chunks(&[(index, bytes)]).map(|n| n == 1)
    }

    /// Stores several chunks with one fsync; returns how many were new.
    ///
    /// Every chunk is checked first (length, then SHA-256): one that does not match its
    /// manifest entry fails the whole call with [`BlobError::ChunkMismatch`] and nothing
    /// is written (a transfer that takes chunks from several peers checks each with
    /// [`Manifest::verify_chunk`] before batching). Then the new chunks are written at
    /// their offsets, the data file is fsynced, and only then are they recorded in the
    /// log and counted as stored. On an error after the checks (a full disk) none of
    /// this call's chunks is counted; calling again with the same chunks once there is
    /// space stores them.
    pub fn put_chunks(&mut self, chunks: &[(u32, &[u8])]) -> Result<u32, BlobError> {
        let manifest = Arc::clone(&self.shared.manifest);
        for (index, bytes) in chunks {
            manifest.verify_chunk(*index, bytes)?;
        }
        let new: BTreeMap<u32, &[u8]> = {
            let have = self.shared.stored();
            chunks
                .iter()
                .filter(|(index, _)| !have.contains(*index))
                .map(|(index, bytes)| (*index, *bytes))
                .collect()
        };
        if new.is_empty() {
            return Ok(0);
        }
        let data_err = |e| BlobError::io(&self.paths.data, e);
        for (&index, bytes) in &new {
            // Some: verify_chunk above checked the index.
            let offset = manifest.chunk_offset(index).unwrap_or(0);
            self.shared
                .data
                .write_all_at(bytes, offset)
                .map_err(data_err)?;
        }
        // The data is durable before any record names it: the one ordering that matters.
        // The whole-file hash moves on meanwhile (the flush waits for the disk, not the
        // CPU), into a copy kept only if the flush succeeds.
        let mut whole = (*self.whole).clone();
        let data = &self.shared.data;
        let (synced, hashed) = std::thread::scope(|scope| {
            // No thread to spare (a process at its limit): the flush runs here first.
            let flushing = std::thread::Builder::new()
                .name("blob-flush".into())
                .spawn_scoped(scope, || data.sync_data())
                .map_err(|_| data.sync_data());
            let hashed = {
                let have = self.shared.stored();
                whole.advance(
                    &manifest,
                    data,
                    &self.paths.data,
                    |index| have.contains(index) || new.contains_key(&index),
                    &new,
                    CATCH_UP_CHUNKS,
                )
            };
            let synced = match flushing {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the flush failed"))),
                Err(synced_here) => synced_here,
            };
            (synced, hashed)
        });
        synced.map_err(data_err)?;
        let records: Vec<u8> = new
            .keys()
            .flat_map(|&index| chunk_log::record(&manifest, index))
            .collect();
        if let Err(e) = self.log.write_all_at(&records, self.log_end) {
            // Records already written name durable chunks, so they may stay; the next
            // append starts at the same place and overwrites a torn one.
            let _ = self.log.set_len(self.log_end);
            return Err(BlobError::io(&self.paths.log, e));
        }
        self.log_end += records.len() as u64;
        let mut have = self
            .shared
            .chunks
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for &index in new.keys() {
            have.insert(index, manifest.chunk_len(index).unwrap_or(0));
        }
        drop(have);
        // Stored and counted whatever the hash found: a read-back that failed (or a chunk
        // damaged on disk) leaves the rest to `finish`, which reads it again.
        match hashed {
            Ok(Ok(())) => *self.whole = whole,
            Ok(Err(e)) | Err(e) => {
                tracing::debug!(file_id = %self.file_id(), "the whole-file hash waits for finish: {e}");
            }
        }
        Ok(u32::try_from(new.len()).unwrap_or(u32::MAX))
    }

    /// The chunks not stored yet, in file order.
    pub fn missing_chunks(&self) -> Vec<u32> {
        self.shared.stored().missing()
    }

    /// Bytes of the chunks stored so far.
    pub fn have_bytes(&self) -> u64 {
        self.shared.stored().have_bytes()
    }

    pub fn is_complete(&self) -> bool {
        self.shared.stored().is_full()
    }

    /// Completes the download: checks the whole-file SHA-256 against the file id — fed as
    /// chunks were stored in order, the rest read back from disk with every chunk
    /// checked again — and moves it into the complete blobs
    /// (rename, directory fsynced). Before every chunk is in: [`BlobError::Incomplete`],
    /// and the partial download stays on disk. A whole-file mismatch
    /// ([`BlobError::WholeHashMismatch`]: the manifest lied) or a chunk that changed on
    /// disk ([`BlobError::Corrupt`]) discards the partial download.
    pub fn finish(mut self) -> Result<FileId, BlobError> {
        let file_id = self.file_id();
        let missing = self.shared.stored().missing_count();
        if missing > 0 {
            return Err(BlobError::Incomplete { file_id, missing });
        }
        if let Err(refused) = self.verify_content()? {
            self.remove_files()?;
            return Err(refused);
        }
        let _publishing = self.store.publish_lock();
        let dest = self.store.complete_path(file_id);
        if dest.exists() {
            // The same content was imported meanwhile: one copy is enough.
            self.remove_files()?;
            return Ok(file_id);
        }
        let manifest_path = self.store.complete_manifest_path(file_id);
        write_atomic(&manifest_path, &self.shared.manifest.encode())
            .map_err(|e| BlobError::io(&manifest_path, e))?;
        fs::rename(&self.paths.data, &dest).map_err(|e| BlobError::io(&dest, e))?;
        sync_dir(&self.store.complete).map_err(|e| BlobError::io(&self.store.complete, e))?;
        // Complete and durable. What is left is the log and the manifest copy: a crash
        // before they are gone leaves them to `BlobStore::open`, which removes partials of
        // complete files.
        for path in [&self.paths.log, &self.paths.manifest] {
            if let Err(e) = remove_if_present(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a finished download's file");
            }
        }
        Ok(file_id)
    }

    /// Cancels the download: its files are removed (the log first, so nothing on disk
    /// claims a chunk any more).
    pub fn discard(self) -> Result<(), BlobError> {
        self.remove_files()
    }

    fn remove_files(&self) -> Result<(), BlobError> {
        for path in [&self.paths.log, &self.paths.data, &self.paths.manifest] {
            remove_if_present(path).map_err(|e| BlobError::io(path, e))?;
        }
        sync_dir(&self.store.partial).map_err(|e| BlobError::io(&self.store.partial, e))
    }

    /// `Ok(Ok(()))` when the content is the file; `Ok(Err(refusal))` when it is not;
    /// `Err` when it could not be read.
    fn verify_content(&mut self) -> Result<Result<(), BlobError>, BlobError> {
        let manifest = Arc::clone(&self.shared.manifest);
        let have = self.shared.stored();
        let advanced = self.whole.advance(
            &manifest,
            &self.shared.data,
            &self.paths.data,
            |index| have.contains(index),
            &BTreeMap::new(),
            u32::MAX,
        );
        drop(have);
        if let Err(refused) = advanced? {
            return Ok(Err(refused));
        }
        if self.whole.hashed != manifest.chunk_count() {
            // Every chunk is stored (checked by `finish`), so the hash reached the end.
            return Err(BlobError::Incomplete {
                file_id: manifest.file_id(),
                missing: manifest.chunk_count() - self.whole.hashed,
            });
        }
        let found = FileId::from_bytes(self.whole.hasher.clone().finalize().into());
        if found != manifest.file_id() {
            return Ok(Err(BlobError::WholeHashMismatch {
                file_id: manifest.file_id(),
                found,
            }));
        }
        Ok(Ok(()))
    }
}

impl Drop for PartialBlob {
    fn drop(&mut self) {
        self.store.release(self.file_id());
    }
}

const NOTHING_ON_DISK: &str = "no partial download on disk";

type Opened = (File, File, ChunkSet, u64);

/// The download on disk, if it follows `manifest` and its files are whole; otherwise
/// why not (`Ok(Err(reason))`).
fn resume(
    paths: &PartialPaths,
    manifest: &Manifest,
    hash: &ManifestHash,
) -> Result<Result<Opened, String>, BlobError> {
    let log = match OpenOptions::new().read(true).write(true).open(&paths.log) {
        Ok(log) => log,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(NOTHING_ON_DISK.into())),
        Err(e) => return Err(BlobError::io(&paths.log, e)),
    };
    let (set, end) =
        match chunk_log::load(&log, manifest, hash).map_err(|e| BlobError::io(&paths.log, e))? {
            Loaded::Chunks { set, end } => (set, end),
            Loaded::Unusable(reason) => return Ok(Err(format!("chunk log: {reason}"))),
        };
    let data = match OpenOptions::new().read(true).write(true).open(&paths.data) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Err("the content file is missing".into()))
        }
        Err(e) => return Err(BlobError::io(&paths.data, e)),
    };
    let len = data
        .metadata()
        .map_err(|e| BlobError::io(&paths.data, e))?
        .len();
    if len != manifest.size() {
        return Ok(Err(format!(
            "the content file has {len} bytes, not {}",
            manifest.size()
        )));
    }
    // The manifest copy serves other peers while this is not open; keep it right.
    let encoded = manifest.encode();
    if fs::read(&paths.manifest).ok().as_deref() != Some(encoded.as_slice()) {
        write_atomic(&paths.manifest, &encoded).map_err(|e| BlobError::io(&paths.manifest, e))?;
    }
    Ok(Ok((data, log, set, end)))
}

/// A new download: the manifest copy, the sparse content file and the log's header, each
/// durable before the next, and the directory synced so their names are too.
fn start(
    store: &Inner,
    paths: &PartialPaths,
    manifest: &Manifest,
    hash: &ManifestHash,
) -> Result<Opened, BlobError> {
    for path in [&paths.log, &paths.data, &paths.manifest] {
        remove_if_present(path).map_err(|e| BlobError::io(path, e))?;
    }
    write_atomic(&paths.manifest, &manifest.encode())
        .map_err(|e| BlobError::io(&paths.manifest, e))?;
    let data = create_private(&paths.data).map_err(|e| BlobError::io(&paths.data, e))?;
    // Sparse: blocks are allocated as chunks arrive, so a large download does not claim
    // its whole size at once.
    data.set_len(manifest.size())
        .map_err(|e| BlobError::io(&paths.data, e))?;
    data.sync_all().map_err(|e| BlobError::io(&paths.data, e))?;
    write_atomic(&paths.log, &chunk_log::header(hash)).map_err(|e| BlobError::io(&paths.log, e))?;
    sync_dir(&store.partial).map_err(|e| BlobError::io(&store.partial, e))?;
    let log = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&paths.log)
        .map_err(|e| BlobError::io(&paths.log, e))?;
    Ok((
        data,
        log,
        ChunkSet::empty(manifest.chunk_count()),
        chunk_log::HEADER_LEN,
    ))
}
