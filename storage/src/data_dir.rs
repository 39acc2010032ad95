//! The node's data directory: created private (0700) and locked for the lifetime of the
//! node, because two nodes sharing one directory would corrupt each other's state and
//! present the same node id twice on the LAN.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::private_file;

const LOCK_FILE: &str = "lanchat.lock";
const TOKEN_FILE: &str = "api-token";
/// The node's long-lived link and signing keys (lan-mesh's format; 0600).
pub const NODE_KEY_FILE: &str = "node-key";
/// 256 bits: the token is the only thing between other local users and this node.
const TOKEN_BYTES: usize = 32;

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
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
