//! The few file-system steps the blob store repeats: private directories, private new
//! files, and syncing a directory so a rename or a new name in it survives a power cut.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::data_dir::DIR_MODE;
use crate::private_file::PRIVATE_MODE;

/// Creates `dir` (0700) if missing, and narrows a wider mode back to 0700: the blobs
/// hold whatever colleagues sent, only this user may list them.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
        tracing::warn!(
            path = %dir.display(),
            old_mode = format_args!("{mode:04o}"),
            "repaired the permissions of a blob directory (only this user may read it)"
        );
    }
    Ok(())
}

/// A new file (never an existing one: `create_new`), 0600, open for reading and writing.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .open(path)
}

/// Makes the names in `dir` (a new file, a rename, a removal) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes `path`; a file that is already gone is fine.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
