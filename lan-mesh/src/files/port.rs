//! What the file engine needs from the blob store, in lan-mesh's own types: the node
//! implements it over `storage::blobs::BlobStore` (`mesh-store`), tests in memory
//! (`testing::MemoryBlobs`). lan-mesh never sees the manifest's format: the store
//! checks every chunk against the manifest it holds, and says which chunks are
//! missing; it also assembles a manifest fetched as pages and checks it against the
//! manifest hash the signed file message carries, so the engine only moves opaque
//! pages between peers and the store.

use std::future::Future;
use std::pin::Pin;

use super::wire::{FileId, ManifestHash};

/// A blob port's answer: boxed, so the trait stays object safe (`Arc<dyn BlobPort>`).
pub type BlobFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BlobPortError>> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobPortError {
    /// No manifest for this file here: it must come first (from the signed file
    /// message or as manifest pages from a peer).
    #[error("no manifest for file {0}")]
    NoManifest(FileId),
    /// The manifest here is not the one asked for.
    #[error("file {0} is held under another manifest")]
    OtherManifest(FileId),
    /// Every chunk was verified but the whole content does not hash to the file id
    /// (the manifest lied): the download was discarded.
    #[error("file {0} failed its whole-file check")]
    WholeFileMismatch(FileId),
    /// The descriptor names a file this node will not hold (too large, a chunk size
    /// out of range): refused before anything is allocated for its manifest.
    #[error("file {0} cannot be fetched: {1}")]
    Refused(FileId, String),
    /// Nothing was stored (disk full, I/O error); trying again later may work.
    #[error("{0}")]
    Unavailable(String),
}

/// What the author's signed file message says of a file: everything a receiver needs
/// to fetch and check the manifest (and through it the content) from anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDescriptor {
    pub file_id: FileId,
    pub manifest_hash: ManifestHash,
    pub size: u64,
    pub chunk_size: u32,
}

impl FileDescriptor {
    /// The chunks the content is cut into (`None` for a chunk size of 0, which no
    /// manifest may have).
    pub fn chunk_count(&self) -> Option<u32> {
        if self.chunk_size == 0 {
            return None;
        }
        u32::try_from(self.size.div_ceil(u64::from(self.chunk_size))).ok()
    }
}

/// What assembling a manifest from pages has reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestOutcome {
    /// These pages are still missing, ascending.
    Missing(Vec<u32>),
    /// Every page is in and the manifest hashes to the expected hash: it is stored, so
    /// [`BlobPort::begin`] now succeeds.
    Complete,
    /// Every page is in but the manifest does not hash to the expected hash (some page
    /// lied): the assembly was discarded and begins anew.
    Mismatch,
    /// Not a page of this manifest (its index, count or length do not fit): nothing
    /// was taken.
    BadPage,
}

/// A page of a held manifest, for serving.
#[derive(Clone, PartialEq, Eq)]
pub struct ServedPage {
    pub page_count: u32,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for ServedPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServedPage(of {}, {} bytes)",
            self.page_count,
            self.bytes.len()
        )
    }
}

/// What this node holds of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub manifest_hash: ManifestHash,
    pub chunk_count: u32,
    /// The verified chunks, ascending (every one when complete).
    pub chunks: HeldChunks,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldChunks {
    Complete,
    /// A download in progress: its verified chunks, ascending.
    Some(Vec<u32>),
}

/// What storing one chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Verified against the manifest and stored durably.
    Stored,
    /// Already stored (a duplicate answer): nothing written.
    Duplicate,
    /// Not the chunk the manifest describes (length or SHA-256): nothing written.
    Mismatch,
}

pub trait BlobPort: Send + Sync {
    /// What this node holds of `file` (complete, or a download's verified chunks);
    /// `None` when nothing.
    fn holding(&self, file: FileId) -> BlobFuture<'_, Option<Holding>>;
    /// Chunk `index`, if it was verified when stored (from the complete file or a download in
    /// progress); `None` when not held.
    fn read_chunk(&self, file: FileId, index: u32) -> BlobFuture<'_, Option<Vec<u8>>>;
    /// Begins or resumes downloading `file` under the manifest `manifest_hash`: the
    /// chunks still missing, ascending (empty when complete). `NoManifest` when the
    /// store has no such manifest yet.
    fn begin(&self, file: FileId, manifest_hash: ManifestHash) -> BlobFuture<'_, Vec<u32>>;
    /// Checks each chunk against the manifest and stores those that match, with one
    /// flush to disk for all of them (a download writes in batches: a flush per chunk
    /// would make the disk's sync time the transfer's speed). One outcome per chunk, in
    /// order. An error stores none of them (a full disk): they stay missing.
    fn put_chunks(
        &self,
        file: FileId,
        chunks: Vec<(u32, Vec<u8>)>,
    ) -> BlobFuture<'_, Vec<PutOutcome>>;
    /// [`BlobPort::put_chunks`] of one chunk.
    fn put_chunk(&self, file: FileId, index: u32, bytes: Vec<u8>) -> BlobFuture<'_, PutOutcome> {
        let stored = self.put_chunks(file, vec![(index, bytes)]);
        Box::pin(async move {
            let outcomes = stored.await?;
            Ok(outcomes.first().copied().unwrap_or(PutOutcome::Mismatch))
        })
    }
    /// Every chunk is in: checks the whole content against the file id and makes it
    /// complete.
    fn finish(&self, file: FileId) -> BlobFuture<'_, ()>;
    /// Page `page` of the manifest held for `file`, read from the stored (verified)
    /// manifest; `None` unless it is held under `manifest_hash` and has that page.
    fn manifest_page(
        &self,
        file: FileId,
        manifest_hash: ManifestHash,
        page: u32,
    ) -> BlobFuture<'_, Option<ServedPage>>;
    /// Begins (or goes on with) assembling the manifest `file` describes, after
    /// `begin` answered `NoManifest`: the pages still missing, or `Complete` when
    /// none is needed (an empty file has no page). `Refused` for a descriptor whose
    /// manifest storage would not accept, so nothing is allocated for it.
    fn begin_manifest(&self, file: FileDescriptor) -> BlobFuture<'_, ManifestOutcome>;
    /// Takes page `page` of `page_count` (as the peer sent it) into the assembly; once
    /// the last page is in, checks the manifest hash and stores the manifest.
    fn put_manifest_page(
        &self,
        file: FileDescriptor,
        page: u32,
        page_count: u32,
        bytes: Vec<u8>,
    ) -> BlobFuture<'_, ManifestOutcome>;
    /// Drops the assembly of `file`, if any (its download was cancelled): only active
    /// downloads hold one.
    fn forget_manifest(&self, file: FileId);
}
