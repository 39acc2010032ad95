//! File transfer (issue 17): a file's content travels, after the signed file message
//! that describes it, as chunks fetched over the encrypted links — from any member
//! that has them, verified one by one, resumable (docs/PROTOCOL.md, "File transfer").
//!
//! - [`wire`]: the frames (binary, strict decoders);
//! - [`port`]: what the engine needs from the blob store ([`BlobPort`]), implemented
//!   by `mesh-store` over `storage::blobs` and by `testing::MemoryBlobs`;
//! - [`engine`]: one task per node that serves chunks and manifest pages to peers
//!   (bounded queue per peer) and runs this node's downloads (the manifest first when
//!   the store lacks it, then chunks; a window of requests per peer, spread over the
//!   peers that have the file, bad peers dropped, unlinked candidates dialled, resumed
//!   on link-up).
//!
//! The node hands the engine the link events that concern it: `Up`, `Down` and every
//! `Frame::File` (delivery ignores file frames).

pub mod engine;
pub mod port;
pub mod wire;

#[cfg(test)]
mod tests;

pub use engine::{
    spawn, FetchProgress, FetchState, FileCounters, FileCounts, FileEvent, FilesHandle, FilesParts,
    BAD_CHUNK_BACKOFF, DIAL_INTERVAL, MAX_BAD_CHUNKS, MAX_BUFFERED, PROGRESS_INTERVAL,
    SERVE_QUEUE_PER_PEER, STORE_RETRY, WINDOW, WITHDRAWN_RECHECK, WRITE_BATCH,
};
pub use port::{
    BlobFuture, BlobPort, BlobPortError, FileDescriptor, HeldChunks, Holding, ManifestOutcome,
    PutOutcome, ServedPage,
};
pub use wire::{ChunkRange, FileFrame, FileId, ManifestHash};
