//! What can go wrong with file content. A full disk is its own variant because it is a
//! state of the machine, not of the file: the same write works once space returns, and
//! the node shows it like the database's (`WriteFaultKind::DiskFull`).

use std::io;
use std::path::{Path, PathBuf};

use super::manifest::ChunkMismatch;
use super::FileId;
use crate::health::WriteFaultKind;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// ENOSPC or EDQUOT: nothing was marked as stored; the same call works once there is
    /// space again.
    #[error("no space left on the disk writing {path}: {source}")]
    DiskFull { path: PathBuf, source: io::Error },
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Reading the caller's content for an import failed (not a file of the store).
    #[error("cannot read the content to import: {0}")]
    Source(io::Error),
    #[error("the content is larger than {max} bytes, the most a file may have")]
    TooLarge { max: u64 },
    /// A chunk does not match the manifest (length or SHA-256): nothing was written.
    #[error(transparent)]
    ChunkMismatch(#[from] ChunkMismatch),
    #[error("file {file_id} has no chunk {index} (it has {count})")]
    NoSuchChunk {
        file_id: FileId,
        index: u32,
        count: u32,
    },
    /// Another `PartialBlob` of this store is downloading the same file.
    #[error("file {file_id} is already being downloaded")]
    InUse { file_id: FileId },
    /// `finish` before every chunk is in; the partial file is kept.
    #[error("file {file_id} is not complete: {missing} chunks are missing")]
    Incomplete { file_id: FileId, missing: u32 },
    /// Every chunk matched the manifest, but the whole content is another file: the
    /// manifest lied. The partial file was discarded.
    #[error(
        "the content downloaded for {file_id} has SHA-256 {found}: its manifest does not \
         describe that file; the download was discarded"
    )]
    WholeHashMismatch { file_id: FileId, found: FileId },
    /// A stored file is not what this store wrote (a damaged disk, a hand edit).
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl BlobError {
    /// An I/O error on one of the store's files, a full disk told apart.
    pub(crate) fn io(path: &Path, source: io::Error) -> BlobError {
        let path = path.to_path_buf();
        if is_disk_full(&source) {
            BlobError::DiskFull { path, source }
        } else {
            BlobError::Io { path, source }
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> BlobError {
        BlobError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Whether this is the disk's fault rather than the content's, in the terms the node
    /// already shows for the database (`GET /api/v1/status`, `disk_full` /
    /// `storage_error`).
    pub fn fault_kind(&self) -> Option<WriteFaultKind> {
        match self {
            BlobError::DiskFull { .. } => Some(WriteFaultKind::DiskFull),
            BlobError::Io { .. } => Some(WriteFaultKind::Io),
            _ => None,
        }
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_edquot_are_disk_full_and_the_rest_io() {
        let path = Path::new("/x");
        for errno in [28, 122] {
            let e = BlobError::io(path, io::Error::from_raw_os_error(errno));
            assert!(matches!(e, BlobError::DiskFull { .. }), "{errno}: {e:?}");
            assert_eq!(e.fault_kind(), Some(WriteFaultKind::DiskFull));
        }
        let e = BlobError::io(path, io::Error::from_raw_os_error(5)); // EIO
        assert!(matches!(e, BlobError::Io { .. }));
        assert_eq!(e.fault_kind(), Some(WriteFaultKind::Io));
    }
}
