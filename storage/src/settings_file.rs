//! `settings.json` in the data directory.
//!
//! Read at start; a file that cannot be read, parsed or validated stops the node
//! with a message naming the problem and is never overwritten (it may hold an admin's
//! hand edits and the shared secret). Written atomically with mode 0600. While the node
//! runs, the node re-reads it (`parse`) to pick up hand edits (src-tauri's
//! `live_settings`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use api_types::{FieldError, NodeId, Settings};

use crate::data_dir::DataDir;
use crate::private_file;

pub const SETTINGS_FILE: &str = "settings.json";

#[derive(Debug, thiserror::Error)]
pub enum SettingsFileError {
    #[error("cannot read or write settings file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("settings file {path} is not valid JSON ({reason}); fix or move it away, it was left untouched")]
    Corrupt { path: PathBuf, reason: String },
    #[error("settings file {path} has a bad value: {error}; fix it, it was left untouched")]
    Invalid { path: PathBuf, error: FieldError },
}

pub fn path(dir: &DataDir) -> PathBuf {
    dir.join(SETTINGS_FILE)
}

/// Loads the settings, or creates them with defaults and a new node id on first start.
pub fn load_or_create(dir: &DataDir) -> Result<Settings, SettingsFileError> {
    load_or_create_preseeded(dir, &[])
}

/// Like `load_or_create`, but a first start applies the first of `preseeds` that
/// exists: a partial settings document an administrator placed there (the same shape
/// as `PUT /api/v1/settings`). A preseed that is not valid stops the first start with
/// a message naming it, like a bad settings file; later starts never read it.
pub fn load_or_create_preseeded(
    dir: &DataDir,
    preseeds: &[PathBuf],
) -> Result<Settings, SettingsFileError> {
    let path = path(dir);
    let node_id: NodeId =
        ulid::Ulid::new()
            .to_string()
            .parse()
            .map_err(|e| SettingsFileError::Corrupt {
                path: path.clone(),
                reason: format!("generated node id rejected: {e}"),
            })?;
    load_or_create_preseeded_as(dir, preseeds, node_id)
}

/// Like `load_or_create_preseeded`, with `node_id` as a first start's id (the node
/// passes the id its keys derive).
pub fn load_or_create_preseeded_as(
    dir: &DataDir,
    preseeds: &[PathBuf],
    node_id: NodeId,
) -> Result<Settings, SettingsFileError> {
    let path = path(dir);
    match fs::read(&path) {
        Ok(bytes) => parse(&path, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let settings = match read_preseed(preseeds)? {
                Some((preseed_path, doc)) => {
                    let settings = Settings::preseeded(node_id, &doc).map_err(|error| {
                        SettingsFileError::Invalid {
                            path: preseed_path.clone(),
                            error,
                        }
                    })?;
                    tracing::info!(preseed = %preseed_path.display(), "first start from a preseed");
                    settings
                }
                None => Settings::defaults(node_id),
            };
            save_to(&path, &settings)?;
            tracing::info!(path = %path.display(), "created settings with a new node id");
            Ok(settings)
        }
        Err(source) => Err(SettingsFileError::Io { path, source }),
    }
}

fn read_preseed(
    candidates: &[PathBuf],
) -> Result<Option<(PathBuf, serde_json::Value)>, SettingsFileError> {
    for candidate in candidates {
        match fs::read(candidate) {
            Ok(bytes) => {
                let doc =
                    serde_json::from_slice(&bytes).map_err(|e| SettingsFileError::Corrupt {
                        path: candidate.clone(),
                        reason: e.to_string(),
                    })?;
                return Ok(Some((candidate.clone(), doc)));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(SettingsFileError::Io {
                    path: candidate.clone(),
                    source,
                })
            }
        }
    }
    Ok(None)
}

/// Writes the settings; returns the bytes written (what the file holds now).
pub fn save(dir: &DataDir, settings: &Settings) -> Result<Vec<u8>, SettingsFileError> {
    save_to(&path(dir), settings)
}

/// Parses and validates the content of a settings file found at `path`.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Settings, SettingsFileError> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| SettingsFileError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Settings::from_document(&doc).map_err(|error| SettingsFileError::Invalid {
        path: path.to_path_buf(),
        error,
    })
}

fn save_to(path: &Path, settings: &Settings) -> Result<Vec<u8>, SettingsFileError> {
    let mut bytes = serde_json::to_vec_pretty(settings).map_err(|e| SettingsFileError::Io {
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    private_file::write_atomic(path, &bytes).map_err(|source| SettingsFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_creates_private_file_and_node_id_is_stable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let first = load_or_create(&dir).unwrap();
        let mode = fs::metadata(path(&dir)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&dir).unwrap();
        assert_eq!(first.lan_mesh.node_id, again.lan_mesh.node_id);
    }

    #[test]
    fn saved_changes_are_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let mut s = load_or_create(&dir).unwrap();
        s.lan_mesh.enabled = true;
        s.lan_mesh.open_lan = true;
        s.lan_mesh.display_name = "前台".into();
        save(&dir, &s).unwrap();
        assert_eq!(load_or_create(&dir).unwrap(), s);
    }

    #[test]
    fn a_first_start_takes_the_first_preseed_found_and_later_starts_ignore_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(&tmp.path().join("node")).unwrap();
        let missing = tmp.path().join("missing.json");
        let preseed = tmp.path().join("preseed.json");
        fs::write(
            &preseed,
            r#"{"lan_mesh": {"enabled": true, "shared_secret": "office"}, "ui": {"welcome_done": true}}"#,
        )
        .unwrap();
        let candidates = [missing, preseed.clone()];
        let first = load_or_create_preseeded(&dir, &candidates).unwrap();
        assert!(first.lan_mesh.enabled && first.ui.welcome_done);
        assert_eq!(first.lan_mesh.shared_secret, "office");
        fs::write(&preseed, r#"{"lan_mesh": {"listen_port": 0}}"#).unwrap();
        assert_eq!(load_or_create_preseeded(&dir, &candidates).unwrap(), first);

        let fresh = DataDir::open(&tmp.path().join("other")).unwrap();
        let err = load_or_create_preseeded(&fresh, &candidates).unwrap_err();
        assert!(err.to_string().contains("preseed.json"), "{err}");
        assert!(!path(&fresh).exists(), "a bad preseed writes no settings");
    }

    #[test]
    fn corrupt_or_invalid_file_is_refused_and_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        for (content, want_corrupt) in [
            ("{ not json", true),
            (
                r#"{"lan_mesh": {"node_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "listen_port": 0}}"#,
                false,
            ),
        ] {
            fs::write(path(&dir), content).unwrap();
            let err = load_or_create(&dir).unwrap_err();
            match err {
                SettingsFileError::Corrupt { .. } => assert!(want_corrupt),
                SettingsFileError::Invalid { ref error, .. } => {
                    assert!(!want_corrupt);
                    assert_eq!(error.field, "lan_mesh.listen_port");
                }
                other => panic!("unexpected {other}"),
            }
            assert!(err.to_string().contains("untouched"));
            assert_eq!(fs::read_to_string(path(&dir)).unwrap(), content);
        }
    }
}
