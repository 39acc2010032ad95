//! The node's data directory: created private (0700) and locked for the lifetime of the
//! node, because two nodes sharing one directory would corrupt each other's state and
//! present the same node id twice on the LAN.
//!
//! Every open also *enforces* privacy: the directory is made 0700 and every regular file
//! in it 0600 again, each repair logged with the path and the mode it had (a restored
//! backup, a hand-copied file, a `chmod` by mistake all leave wider modes behind).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::private_file;

const LOCK_FILE: &str = "lanchat.lock";
const TOKEN_FILE: &str = "api-token";
/// The node's long-lived link and signing keys (lan-mesh's format; 0600).
pub const NODE_KEY_FILE: &str = "node-key";
/// 256 bits: the token is the only thing between other local users and this node.
const TOKEN_BYTES: usize = 32;
/// The data directory's own mode: only this user may list or enter it.
pub const DIR_MODE: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("data directory {path} is in use by another lanchat process")]
    Locked { path: PathBuf },
    #[error("cannot lock data directory {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is corrupt: {reason} (remove it to generate a new API token)")]
    CorruptToken { path: PathBuf, reason: String },
    #[error("{path} is corrupt: {reason} (restore it from a backup; removing it gives this node new keys, which its peers will refuse until they forget it)")]
    CorruptKeys { path: PathBuf, reason: String },
}

/// An open, locked data directory. The lock is released when this is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| DataDirError::Create {
                path: path.to_path_buf(),
                source,
            })?;
        enforce_private(path)?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(private_file::PRIVATE_MODE)
            .open(&lock_path)
            .map_err(|source| DataDirError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(DataDirError::Lock {
                    path: lock_path,
                    source,
                })
            }
        }
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The bearer token of the local API: generated on first start, then reused so a
    /// browser tab that already holds it keeps working across restarts.
    /// The node's key file: read and checked by `parse`, or created from `generate`
    /// on first start. A file that `parse` refuses is reported, never replaced: new keys
    /// would make every peer that pinned the old ones refuse this node.
    pub fn node_keys<T, E: std::fmt::Display>(
        &self,
        parse: impl Fn(&[u8]) -> Result<T, E>,
        generate: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<T, DataDirError> {
        let path = self.join(NODE_KEY_FILE);
        let corrupt = |path: PathBuf, e: E| DataDirError::CorruptKeys {
            path,
            reason: e.to_string(),
        };
        match fs::read(&path) {
            Ok(bytes) => parse(&bytes).map_err(|e| corrupt(path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let bytes = generate().map_err(|e| corrupt(path.clone(), e))?;
                private_file::write_atomic(&path, &bytes).map_err(|source| DataDirError::Io {
                    path: path.clone(),
                    source,
                })?;
                parse(&bytes).map_err(|e| corrupt(path, e))
            }
            Err(source) => Err(DataDirError::Io { path, source }),
        }
    }

    /// Replaces the node's key file (a new identity): written to a temporary file and
    /// renamed over the old one, so a crash leaves either the old keys or the new.
    pub fn replace_node_keys(&self, bytes: &[u8]) -> Result<(), DataDirError> {
        let path = self.join(NODE_KEY_FILE);
        private_file::write_atomic(&path, bytes).map_err(|source| DataDirError::Io { path, source })
    }

    pub fn api_token(&self) -> Result<String, DataDirError> {
        let path = self.join(TOKEN_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let token = text.trim();
                if token.len() == TOKEN_BYTES * 2 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(token.to_string())
                } else {
                    Err(DataDirError::CorruptToken {
                        path,
                        reason: "not a 64-digit hex token".into(),
                    })
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut bytes = [0u8; TOKEN_BYTES];
                rand::rng().fill_bytes(&mut bytes);
                let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                private_file::write_atomic(&path, token.as_bytes())
                    .map_err(|source| DataDirError::Io { path, source })?;
                Ok(token)
            }
            Err(source) => Err(DataDirError::Io { path, source }),
        }
    }
}

/// One file or directory whose mode was repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    pub path: PathBuf,
    pub old_mode: u32,
    pub new_mode: u32,
}

/// Makes `dir` 0700 and every regular file directly in it 0600, logging each repair.
/// Symbolic links and subdirectories are left alone (the node creates neither; a link
/// could point anywhere, and `chmod` would follow it). Returns what was repaired.
pub fn enforce_private(dir: &Path) -> Result<Vec<Repaired>, DataDirError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataDirError::Io { path, source }
    };
    let mut repaired = Vec::new();
    let meta = fs::symlink_metadata(dir).map_err(io_err(dir))?;
    if meta.is_dir() {
        repair(dir, &meta, DIR_MODE, &mut repaired).map_err(io_err(dir))?;
    }
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Removed meanwhile (a temporary file of another writer): nothing to do.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(DataDirError::Io { path, source }),
        };
        if meta.is_file() {
            repair(&path, &meta, private_file::PRIVATE_MODE, &mut repaired)
                .map_err(io_err(&path))?;
        }
    }
    Ok(repaired)
}

fn repair(
    path: &Path,
    meta: &fs::Metadata,
    mode: u32,
    repaired: &mut Vec<Repaired>,
) -> io::Result<()> {
    let old_mode = meta.mode() & 0o7777;
    if old_mode == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    tracing::warn!(
        path = %path.display(),
        old_mode = format_args!("{old_mode:04o}"),
        new_mode = format_args!("{mode:04o}"),
        "repaired the permissions of a file in the data directory (only this user may read it)"
    );
    repaired.push(Repaired {
        path: path.to_path_buf(),
        old_mode,
        new_mode: mode,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_repairs_the_directory_and_every_file_in_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data");
        drop(DataDir::open(&path).unwrap());
        for name in ["settings.json", "lanchat.db-wal", "anything"] {
            fs::write(path.join(name), "x").unwrap();
            fs::set_permissions(path.join(name), fs::Permissions::from_mode(0o644)).unwrap();
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let repaired = enforce_private(&path).unwrap();
        assert_eq!(repaired.len(), 4, "{repaired:?}");
        assert!(repaired
            .iter()
            .any(|r| r.path == path && r.old_mode == 0o755));
        fs::set_permissions(path.join("anything"), fs::Permissions::from_mode(0o666)).unwrap();
        drop(DataDir::open(&path).unwrap());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o700);
        for entry in fs::read_dir(&path).unwrap() {
            assert_eq!(mode(&entry.unwrap().path()), 0o600);
        }
        assert!(
            enforce_private(&path).unwrap().is_empty(),
            "nothing left to repair"
        );
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        assert!(matches!(
            DataDir::open(dir.path()),
            Err(DataDirError::Locked { .. })
        ));
        drop(first);
        DataDir::open(dir.path()).unwrap();
    }

    #[test]
    fn directory_is_private_and_token_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/data");
        let data = DataDir::open(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let token = data.api_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(data.api_token().unwrap(), token);
        let mode = fs::metadata(path.join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn corrupt_token_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        fs::write(dir.path().join(TOKEN_FILE), "garbage").unwrap();
        assert!(matches!(
            data.api_token(),
            Err(DataDirError::CorruptToken { .. })
        ));
        assert_eq!(
            fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap(),
            "garbage"
        );
    }
}
