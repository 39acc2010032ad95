//! Whether the store can write: a write that failed because the disk is full or the
//! file system refused it is remembered here until a later write commits, so the node
//! can say so (`GET /api/v1/status`, warning `storage_error`) instead of only logging.
//! Nothing that failed was acknowledged: a reply means committed (see `writer`), and a
//! peer's envelope that was not stored is not acked, so the peer sends it again.

use std::sync::{Arc, Mutex};

/// Why writes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFaultKind {
    /// `SQLITE_FULL`: no space left on the data directory's file system.
    DiskFull,
    /// Any other refusal of the file system (I/O error, read-only, permissions).
    Io,
}

/// Writes are failing since `since_ms`; `message` is SQLite's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFault {
    pub kind: WriteFaultKind,
    pub message: String,
    pub since_ms: u64,
    /// Writes (batches) that failed since then.
    pub failures: u64,
}

/// Shared by the writer thread (which reports) and every `Store` clone (which reads).
#[derive(Debug, Clone, Default)]
pub(crate) struct Health(Arc<Mutex<Option<WriteFault>>>);

impl Health {
    pub(crate) fn current(&self) -> Option<WriteFault> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn failed(&self, kind: WriteFaultKind, message: String) {
        let mut fault = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match fault.as_mut() {
            Some(f) => {
                f.failures += 1;
                f.kind = kind;
                f.message = message;
            }
            None => {
                tracing::error!(
                    reason = %message,
                    "the database cannot be written ({}): nothing more is stored or \
                     acknowledged until it can; peers keep their messages and send them again",
                    describe(kind)
                );
                *fault = Some(WriteFault {
                    kind,
                    message,
                    since_ms: now_ms(),
                    failures: 1,
                });
            }
        }
    }

    /// A write committed: the fault, if any, is over.
    pub(crate) fn recovered(&self) {
        let mut fault = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = fault.take() {
            tracing::info!(
                failures = f.failures,
                "the database can be written again (it could not be: {})",
                describe(f.kind)
            );
        }
    }
}

pub fn describe(kind: WriteFaultKind) -> &'static str {
    match kind {
        WriteFaultKind::DiskFull => "the disk is full",
        WriteFaultKind::Io => "the file system refuses writes",
    }
}

/// The faults of the disk rather than of the write: they end when the disk recovers.
pub(crate) fn classify(e: &rusqlite::Error) -> Option<WriteFaultKind> {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code()? {
        ErrorCode::DiskFull => Some(WriteFaultKind::DiskFull),
        ErrorCode::SystemIoFailure
        | ErrorCode::ReadOnly
        | ErrorCode::CannotOpen
        | ErrorCode::PermissionDenied
        | ErrorCode::FileLockingProtocolFailed => Some(WriteFaultKind::Io),
        _ => None,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
