//! Received files as real files (issue 17, "Open" and "Show in folder"): a complete,
//! verified blob copied out of the content-addressed store into the folder for
//! received files, under the name (and, for a folder that was sent, the folder path)
//! its message gave it — each part made safe first, since a peer wrote it.
//!
//! - The folder is `files.save_dir` when the settings name one, else
//!   `$XDG_DOWNLOAD_DIR/lanchat`, the `Downloads` folder of the user's `user-dirs.dirs`
//!   plus `lanchat`, or `~/Downloads/lanchat` ([`default_root`]).
//! - A file there is never overwritten: a name in use by other content gives
//!   `name (1).ext`, `name (2).ext`, …; a file there with exactly this content (same
//!   size, same SHA-256) is the earlier export and is used again, also after a restart.
//!   The last export of each file is remembered (path, size, modification time, inode),
//!   so opening it again costs no hashing while nobody changed it.
//! - The copy is written to a hidden temporary file in the same folder, synced, then
//!   renamed into place without replacing anything (`RENAME_NOREPLACE`, or a hard link
//!   where the file system lacks it): nobody ever sees half a file under its name.
//! - A disk without room for the file is refused before anything is written
//!   ([`ExportError::DiskFull`]); one that fills up during the copy is the same error,
//!   and the temporary file is removed.
//!
//! Everything here blocks (file I/O, hashing): callers on tokio use `spawn_blocking`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use storage::blobs::file_name::{candidate, MAX_COPIES};
use storage::blobs::{sanitize_file_name, BlobError, BlobStore, FileId};

/// The folder of received files inside the user's downloads folder.
pub const SUBFOLDER: &str = "lanchat";
/// A file whose name is nothing once made safe (`...`) is saved under this one.
const FALLBACK_NAME: &str = "file";
/// A folder component that is nothing once made safe (`..`, `...`) becomes this.
const FALLBACK_FOLDER: &str = "_";
/// Another process taking a free name between our look and our rename: looked at again
/// this often before moving on to the next number.
const MAX_RACES: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no folder for received files: XDG_DOWNLOAD_DIR and HOME are unset")]
    NoFolder,
    #[error("the file is not complete here yet")]
    NotComplete,
    /// No room in the folder for received files (checked first, or ENOSPC / EDQUOT
    /// while copying); nothing is left behind.
    #[error("no room for the file in {dir}: {reason}")]
    DiskFull { dir: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no free name for {name} in {dir} up to \"({MAX_COPIES})\"")]
    NoFreeName { dir: PathBuf, name: String },
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl ExportError {
    /// An I/O failure at `path`: the disk is full, or something else went wrong.
    fn io(path: &Path, source: io::Error) -> ExportError {
        if is_disk_full(&source) {
            ExportError::DiskFull {
                dir: path.parent().unwrap_or(path).to_path_buf(),
                reason: source.to_string(),
            }
        } else {
            ExportError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// The folder for received files when the settings name none: `$XDG_DOWNLOAD_DIR`
/// (when absolute), else the user's configured downloads folder (`user-dirs.dirs`),
/// else `~/Downloads`; with [`SUBFOLDER`] below it.
pub fn default_root() -> Option<PathBuf> {
    let from_env = std::env::var_os("XDG_DOWNLOAD_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let downloads = from_env
        .or_else(dirs::download_dir)
        .or_else(|| dirs::home_dir().map(|h| h.join("Downloads")))?;
    Some(downloads.join(SUBFOLDER))
}

/// Where a received file goes below the folder for received files: its folder path
/// (`/`- or `\`-separated, empty parts skipped, at most `MAX_PATH_DEPTH` deep) and its
/// name, each part made safe with `storage::blobs::sanitize_file_name` — the rule the
/// sender's `checked_name` holds names to — so no part is `.`, `..`, absolute, hidden
/// or a device name. A part that is nothing once made safe becomes `_` (a folder) or
/// `file` (the name).
pub fn export_names(name: &str, folder: Option<&str>) -> (PathBuf, String) {
    let mut dir = PathBuf::new();
    for part in folder
        .unwrap_or_default()
        .split(['/', '\\'])
        .filter(|p| !p.is_empty())
        .take(api_types::files::MAX_PATH_DEPTH)
    {
        dir.push(sanitize_file_name(part).unwrap_or_else(|_| FALLBACK_FOLDER.to_string()));
    }
    let name = sanitize_file_name(name).unwrap_or_else(|_| FALLBACK_NAME.to_string());
    (dir, name)
}

/// A file written by an export, as it was then.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exported {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

impl Exported {
    fn of(path: PathBuf, meta: &fs::Metadata) -> Exported {
        Exported {
            path,
            len: meta.len(),
            modified: meta.modified().ok(),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// Still there, as written: the same file (not replaced), the same size, not
    /// modified since.
    fn unchanged(&self) -> bool {
        fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| meta.is_file() && Exported::of(self.path.clone(), &meta) == *self)
    }
}

/// The node's exports: what each file was last exported as.
#[derive(Debug, Default)]
pub struct Exports {
    done: Mutex<HashMap<FileId, Exported>>,
}

impl Exports {
    fn remembered(&self, id: FileId) -> Option<Exported> {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn remember(&self, id: FileId, exported: Exported) {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, exported);
    }

    /// The complete file `id` as a real file below `root` (see the module's notes):
    /// the path of the earlier export if it still holds this content, else of a new
    /// copy under a free name. Blocking.
    pub fn export(
        &self,
        root: &Path,
        blobs: &BlobStore,
        id: FileId,
        name: &str,
        folder: Option<&str>,
    ) -> Result<PathBuf, ExportError> {
        let (relative, name) = export_names(name, folder);
        let dir = root.join(relative);
        if let Some(done) = self.remembered(id) {
            if done.path.parent() == Some(dir.as_path()) && done.unchanged() {
                return Ok(done.path);
            }
        }
        let size = match blobs.open_content(id)? {
            Some(file) => file
                .metadata()
                .map_err(|e| ExportError::Blob(BlobError::Source(e)))?
                .len(),
            None => return Err(ExportError::NotComplete),
        };
        fs::create_dir_all(&dir).map_err(|e| ExportError::io(&dir.join("."), e))?;
        let mut copy = 0;
        let mut races = 0;
        while copy <= MAX_COPIES {
            let path = dir.join(candidate(&name, copy));
            match fs::symlink_metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match write_new(&dir, &path, blobs, id, size)? {
                        Some(exported) => {
                            tracing::info!(file = %id, path = %path.display(), "file exported");
                            self.remember(id, exported);
                            return Ok(path);
                        }
                        // Taken meanwhile: look at what is there now (it may be this
                        // very content, exported by a concurrent request).
                        None if races < MAX_RACES => {
                            races += 1;
                            continue;
                        }
                        None => {}
                    }
                }
                Err(e) => return Err(ExportError::io(&path, e)),
                Ok(meta) if meta.is_file() && meta.len() == size && holds(&path, id) => {
                    tracing::debug!(file = %id, path = %path.display(), "an earlier export is used again");
                    self.remember(id, Exported::of(path.clone(), &meta));
                    return Ok(path);
                }
                Ok(_) => {}
            }
            copy += 1;
        }
        Err(ExportError::NoFreeName { dir, name })
    }
}

/// Whether the file at `path` holds exactly the content `id` (an unreadable one does
/// not).
fn holds(path: &Path, id: FileId) -> bool {
    match File::open(path).and_then(FileId::of_reader) {
        Ok(found) => found == id,
        Err(e) => {
            tracing::debug!(path = %path.display(), "cannot read an earlier file: {e}");
            false
        }
    }
}

/// Copies blob `id` (`size` bytes) to `path`, which must not exist: through a hidden
/// temporary file in `dir`, synced, then renamed into place without replacing
/// anything. `None` when `path` appeared meanwhile (nothing written there).
fn write_new(
    dir: &Path,
    path: &Path,
    blobs: &BlobStore,
    id: FileId,
    size: u64,
) -> Result<Option<Exported>, ExportError> {
    check_room(dir, size)?;
    let Some(mut source) = blobs.open_content(id)? else {
        return Err(ExportError::NotComplete);
    };
    let (temp, mut out) = create_temp(dir, id)?;
    let copied = io::copy(&mut source, &mut out).and_then(|n| {
        if n == size {
            out.sync_all()
        } else {
            Err(io::Error::other(format!(
                "copied {n} bytes of the stored {size}"
            )))
        }
    });
    drop(out);
    let placed = copied.and_then(|()| rename_noreplace(&temp, path));
    match placed {
        Ok(()) => {
            sync_dir(dir);
            let meta = fs::symlink_metadata(path).map_err(|e| ExportError::io(path, e))?;
            Ok(Some(Exported::of(path.to_path_buf(), &meta)))
        }
        Err(e) => {
            if let Err(r) = fs::remove_file(&temp) {
                tracing::warn!(path = %temp.display(), "cannot remove a temporary file: {r}");
            }
            if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(None)
            } else {
                Err(ExportError::io(path, e))
            }
        }
    }
}

/// Free space for `size` bytes in `dir`'s file system (a file system that cannot say
/// is given the benefit of the doubt: the copy itself still fails cleanly).
fn check_room(dir: &Path, size: u64) -> Result<(), ExportError> {
    let Ok(stat) = rustix::fs::statvfs(dir) else {
        return Ok(());
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free >= size {
        return Ok(());
    }
    Err(ExportError::DiskFull {
        dir: dir.to_path_buf(),
        reason: format!(
            "the file needs {} MB, {} MB are free",
            size.div_ceil(1_000_000),
            free / 1_000_000
        ),
    })
}

/// A new hidden file in `dir` for the copy in progress, named so that nobody mistakes
/// it for the file (`.lanchat-<id>-<pid>-<n>.part`).
fn create_temp(dir: &Path, id: FileId) -> Result<(PathBuf, File), ExportError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = id.to_string();
    let short = id.get(..16).unwrap_or(&id);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".lanchat-{short}-{}-{n}.part", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ExportError::io(&temp, e)),
        }
    }
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then): `renameat2` with
/// `RENAME_NOREPLACE`, or, on a file system without it, a hard link (which never
/// replaces either) and the removal of `from`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::OPNOTSUPP => {
            fs::hard_link(from, to)?;
            if let Err(e) = fs::remove_file(from) {
                tracing::warn!(path = %from.display(), "cannot remove a temporary file: {e}");
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes a rename in `dir` durable (best effort: the file's own data is synced).
fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), "cannot sync the folder: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    fn names(name: &str, folder: Option<&str>) -> (String, String) {
        let (dir, name) = export_names(name, folder);
        (dir.to_string_lossy().into_owned(), name)
    }

    #[test]
    fn names_and_folders_keep_what_is_safe() {
        assert_eq!(
            names("季度报告 Q3.pdf", Some("项目/2026")),
            ("项目/2026".into(), "季度报告 Q3.pdf".into())
        );
        assert_eq!(names("a.txt", None), (String::new(), "a.txt".into()));
        assert_eq!(names("a.txt", Some("")), (String::new(), "a.txt".into()));
        assert_eq!(
            names("a.txt", Some("/x//y/")),
            ("x/y".into(), "a.txt".into())
        );
    }

    #[test]
    fn traversal_hidden_and_device_names_are_made_safe() {
        assert_eq!(
            names("../../.bashrc", Some("../../etc")),
            ("_/_/etc".into(), "_.._.bashrc".into())
        );
        assert_eq!(names("...", Some(". .. ...")), ("_".into(), "file".into()));
        assert_eq!(
            names("CON", Some(".ssh/NUL")),
            ("ssh/_NUL".into(), "_CON".into())
        );
        assert_eq!(
            names("a.txt", Some("..\\..\\x")),
            ("_/_/x".into(), "a.txt".into())
        );
        assert_eq!(
            names("invoice\u{202E}fdp.exe", Some("a\u{0}b")),
            ("a_b".into(), "invoice_fdp.exe".into())
        );
        let deep = vec!["d"; 100].join("/");
        assert_eq!(
            export_names("a", Some(&deep)).0.components().count(),
            api_types::files::MAX_PATH_DEPTH
        );
    }

    #[test]
    fn every_part_is_a_plain_component() {
        let hostile = [
            "..",
            ".",
            "/",
            "/etc/passwd",
            "a/../../b",
            "\\\\server\\share",
            "~",
            "~/x",
            " .. ",
            "a/./b",
            "C:\\Windows",
            "\u{202E}..",
            "\0",
        ];
        for folder in hostile {
            for name in hostile {
                let (dir, name) = export_names(name, Some(folder));
                assert!(
                    dir.components().all(|c| matches!(c, Component::Normal(_))),
                    "{folder:?} → {dir:?}"
                );
                let name_path = Path::new(&name);
                assert!(
                    name_path.components().count() == 1
                        && matches!(name_path.components().next(), Some(Component::Normal(_))),
                    "{name:?}"
                );
            }
        }
    }

    struct Fixture {
        _data: tempfile::TempDir,
        downloads: tempfile::TempDir,
        blobs: BlobStore,
    }

    fn fixture() -> Fixture {
        let data = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(&data.path().join("blobs")).unwrap();
        Fixture {
            _data: data,
            downloads: tempfile::tempdir().unwrap(),
            blobs,
        }
    }

    impl Fixture {
        fn store(&self, bytes: &[u8]) -> FileId {
            self.blobs.import(bytes).unwrap().0
        }

        fn root(&self) -> PathBuf {
            self.downloads.path().join(SUBFOLDER)
        }

        /// The files in `dir` below the root, hidden ones included, sorted.
        fn listing(&self, dir: &str) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(self.root().join(dir))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    #[test]
    fn a_file_is_exported_once_and_used_again() {
        let f = fixture();
        let exports = Exports::default();
        let id = f.store(b"first content");
        let path = exports
            .export(&f.root(), &f.blobs, id, "报告.txt", Some("项目/2026"))
            .unwrap();
        assert_eq!(path, f.root().join("项目/2026/报告.txt"));
        assert_eq!(fs::read(&path).unwrap(), b"first content");
        let again = exports
            .export(&f.root(), &f.blobs, id, "报告.txt", Some("项目/2026"))
            .unwrap();
        assert_eq!(again, path);
        // Forgotten (a restart): found again by its content.
        let fresh = Exports::default();
        let found = fresh
            .export(&f.root(), &f.blobs, id, "报告.txt", Some("项目/2026"))
            .unwrap();
        assert_eq!(found, path);
        assert_eq!(
            f.listing("项目/2026"),
            ["报告.txt"],
            "no temporary file is left"
        );
    }

    #[test]
    fn other_content_under_the_same_name_gets_a_number_and_is_never_overwritten() {
        let f = fixture();
        let exports = Exports::default();
        let first = f.store(b"version one");
        let second = f.store(b"version two");
        let p1 = exports
            .export(&f.root(), &f.blobs, first, "a.txt", None)
            .unwrap();
        let p2 = exports
            .export(&f.root(), &f.blobs, second, "a.txt", None)
            .unwrap();
        assert_eq!(p1, f.root().join("a.txt"));
        assert_eq!(p2, f.root().join("a (1).txt"));
        assert_eq!(fs::read(&p1).unwrap(), b"version one");
        assert_eq!(fs::read(&p2).unwrap(), b"version two");

        // The user edits the first copy (same size): it is theirs now; the file is
        // exported again beside it, and their edit stays.
        fs::write(&p1, b"version 1!!").unwrap();
        // (File times tick coarsely: an edit in the same tick as the export is dated
        // like it. A user's edit comes later.)
        File::options()
            .write(true)
            .open(&p1)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            .unwrap();
        let p3 = exports
            .export(&f.root(), &f.blobs, first, "a.txt", None)
            .unwrap();
        assert_eq!(p3, f.root().join("a (2).txt"));
        assert_eq!(fs::read(&p1).unwrap(), b"version 1!!");
        assert_eq!(fs::read(&p3).unwrap(), b"version one");

        // A folder or a link in the way is skipped too.
        let third = f.store(b"three");
        fs::create_dir(f.root().join("b.txt")).unwrap();
        std::os::unix::fs::symlink(f.root().join("a.txt"), f.root().join("b (1).txt")).unwrap();
        let p4 = exports
            .export(&f.root(), &f.blobs, third, "b.txt", None)
            .unwrap();
        assert_eq!(p4, f.root().join("b (2).txt"));
        assert_eq!(fs::read(f.root().join("a.txt")).unwrap(), b"version 1!!");
    }

    #[test]
    fn a_moved_or_deleted_export_is_written_again() {
        let f = fixture();
        let exports = Exports::default();
        let id = f.store(b"content");
        let path = exports
            .export(&f.root(), &f.blobs, id, "x.bin", None)
            .unwrap();
        fs::remove_file(&path).unwrap();
        let again = exports
            .export(&f.root(), &f.blobs, id, "x.bin", None)
            .unwrap();
        assert_eq!(again, path);
        assert_eq!(fs::read(&again).unwrap(), b"content");
    }

    #[test]
    fn an_incomplete_file_is_not_exported() {
        let f = fixture();
        let id = FileId::of_content(b"never stored");
        assert!(matches!(
            Exports::default().export(&f.root(), &f.blobs, id, "x", None),
            Err(ExportError::NotComplete)
        ));
        assert!(!f.root().exists(), "nothing created");
    }

    #[test]
    fn renames_never_replace() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, "a").unwrap();
        fs::write(&b, "b").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"b");
        rename_noreplace(&a, &dir.path().join("c")).unwrap();
        assert!(!a.exists());
    }

    #[test]
    fn a_full_disk_is_its_own_error() {
        let e = ExportError::io(Path::new("/d/x"), io::Error::from_raw_os_error(28));
        assert!(
            matches!(&e, ExportError::DiskFull { dir, .. } if dir == Path::new("/d")),
            "{e:?}"
        );
        let e = ExportError::io(Path::new("/d/x"), io::Error::from_raw_os_error(13));
        assert!(matches!(e, ExportError::Io { .. }), "{e:?}");
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            check_room(dir.path(), u64::MAX),
            Err(ExportError::DiskFull { .. })
        ));
        assert!(check_room(dir.path(), 1).is_ok());
    }
}
