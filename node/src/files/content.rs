//! A file sent from here: its bytes into the blob store, and the description its
//! file message carries (name, folder, type, thumbnail, hashes).

use std::io::Read;

use api_types::{FileRef, Thumbnail};
use base64::Engine as _;
use storage::blobs::{sanitize_file_name, BlobError, BlobStore, FileId, Manifest};

/// Images larger than this get no thumbnail: decoding them would cost the sender
/// seconds and hundreds of megabytes for a 16 KiB preview.
const MAX_THUMBNAIL_SOURCE_BYTES: u64 = 40 * 1024 * 1024;
/// What the type sniffer looks at.
const HEAD_BYTES: usize = media::SNIFF_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{field}: {reason}")]
    Name { field: &'static str, reason: String },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the blob task failed: {0}")]
    Task(String),
}

/// The name and folder a sender gave, checked: the name one plain component (made
/// safe the way a receiver would — `storage::blobs::sanitize_file_name` — and refused
/// when that changes it, so the sender sees what others will see), the folder plain
/// components separated by `/`.
pub fn checked_name(
    name: &str,
    path: Option<&str>,
) -> Result<(String, Option<String>), UploadError> {
    let name_error = |reason: &str| UploadError::Name {
        field: "name",
        reason: reason.to_string(),
    };
    if name.contains('/') || name.contains('\\') {
        return Err(name_error("a file name cannot contain / or \\"));
    }
    let clean = sanitize_file_name(name).map_err(|e| name_error(&e.to_string()))?;
    if clean != name {
        return Err(name_error(&format!(
            "not a safe file name (control characters, reserved names, trailing dots or spaces, or over 255 bytes); {clean:?} would be"
        )));
    }
    let path = match path.map(|p| p.trim_matches('/')) {
        None | Some("") => None,
        Some(p) => {
            let parts: Vec<&str> = p.split('/').collect();
            let plain = parts.len() <= api_types::files::MAX_PATH_DEPTH
                && parts.iter().all(|part| {
                    *part != "."
                        && *part != ".."
                        && !part.contains('\\')
                        && sanitize_file_name(part).is_ok_and(|c| c == *part)
                });
            if !plain {
                return Err(UploadError::Name {
                    field: "path",
                    reason: "a folder must be relative, plain names separated by /".into(),
                });
            }
            Some(p.to_string())
        }
    };
    Ok((clean, path))
}

/// Streams `reader` into the blob store (blocking: run it on the blocking pool).
pub fn import_upload(
    blobs: &BlobStore,
    reader: impl Read,
) -> Result<(FileId, Manifest), UploadError> {
    Ok(blobs.import(reader)?)
}

/// The file message's description of a stored file: its type sniffed from the
/// content (then the name), and a thumbnail for a raster image (blocking).
pub fn describe(
    blobs: &BlobStore,
    file_id: FileId,
    manifest: &Manifest,
    name: String,
    path: Option<String>,
) -> Result<FileRef, UploadError> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    if let Some(file) = blobs.open_content(file_id)? {
        file.take(HEAD_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(BlobError::Source)?;
    }
    let mime = media::mime_type(&name, &head);
    let thumbnail = if mime.starts_with("image/") && manifest.size() <= MAX_THUMBNAIL_SOURCE_BYTES {
        thumbnail_of(blobs, file_id)
    } else {
        None
    };
    Ok(FileRef {
        file_id: file_id.to_string(),
        manifest: manifest.hash().to_string(),
        size: manifest.size(),
        chunk_size: manifest.chunk_size(),
        name,
        path,
        mime: mime.to_string(),
        thumbnail,
    })
}

/// A preview, or none when the image cannot be read (the file is still sent).
fn thumbnail_of(blobs: &BlobStore, file_id: FileId) -> Option<Thumbnail> {
    let mut bytes = Vec::new();
    let file = blobs.open_content(file_id).ok()??;
    file.take(MAX_THUMBNAIL_SOURCE_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    match media::thumbnail(&bytes) {
        Ok(Some(t)) => Some(Thumbnail {
            mime: t.mime.to_string(),
            width: t.width,
            height: t.height,
            data: base64::engine::general_purpose::STANDARD.encode(&t.bytes),
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(%file_id, "no thumbnail: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_folders_are_checked_as_receivers_would_clean_them() {
        assert_eq!(
            checked_name("报告.pdf", Some("项目/2026/")).unwrap(),
            ("报告.pdf".to_string(), Some("项目/2026".to_string()))
        );
        assert_eq!(checked_name("a.txt", Some("")).unwrap().1, None);
        for bad in ["", "..", "a/b", "a\\b", "x\u{1}", "CON", "trailing. "] {
            assert!(checked_name(bad, None).is_err(), "{bad:?} accepted");
        }
        for bad in ["../etc", "a/../b", "a/./b", "a//b", "c:\\x"] {
            assert!(
                checked_name("a.txt", Some(bad)).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
