//! What the file engine needs from the blob store, in lan-mesh's own types: the node
//! implements it over `storage::blobs::BlobStore` (`mesh-store`), tests in memory
//! (`testing::MemoryBlobs`). lan-mesh never sees the manifest's format: the store
//! checks every chunk against the manifest it holds, and says which chunks are
//! missing.

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
    /// Nothing was stored (disk full, I/O error); trying again later may work.
    #[error("{0}")]
    Unavailable(String),
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
    /// Chunk `index`, verified as it is read (from the complete file or a download in
    /// progress); `None` when not held.
    fn read_chunk(&self, file: FileId, index: u32) -> BlobFuture<'_, Option<Vec<u8>>>;
    /// Begins or resumes downloading `file` under the manifest `manifest_hash`: the
    /// chunks still missing, ascending (empty when complete). `NoManifest` when the
    /// store has no such manifest yet.
    fn begin(&self, file: FileId, manifest_hash: ManifestHash) -> BlobFuture<'_, Vec<u32>>;
    /// Checks chunk `index` against the manifest and stores it.
    fn put_chunk(&self, file: FileId, index: u32, bytes: Vec<u8>) -> BlobFuture<'_, PutOutcome>;
    /// Every chunk is in: checks the whole content against the file id and makes it
    /// complete.
    fn finish(&self, file: FileId) -> BlobFuture<'_, ()>;
}
