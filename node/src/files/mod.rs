//! Files in the node (issue 17): sending a file as a message, choosing what to
//! download, and showing where each file stands.
//!
//! - a sent file is imported into the blob store (hashed once, stored once per
//!   content) and described by a file message (`api_types::FileContent`), which travels
//!   like any message;
//! - a received file message is downloaded by itself when it is at most
//!   `files.auto_download_max_bytes` (else it waits for `POST /api/v1/files/{id}/fetch`);
//!   the choice is kept in the store (`file_downloads`) so downloads resume after a
//!   restart and after the mesh restarts;
//! - the content is fetched by the file engine (`lan_mesh::files`) from every peer that
//!   may have it: the sender and, in a group, every member;
//! - a complete file is copied out as a real file into the folder for received files
//!   (`export`) and opened or shown in its folder with the desktop's tools (`opener`).

mod content;
pub mod export;
pub mod opener;
mod service;

pub use content::{checked_name, describe, import_upload, UploadError};
pub use export::ExportError;
pub use opener::{OpenError, Opener};
pub use service::{FileError, FileService};

use api_types::{AttachmentView, FileContent, FileState, WaitingFor};

/// The attachments of a file message before this node's state of each is known:
/// waiting for a download. [`FileService::fill_attachments`] fills in the state.
pub fn attachment_views(content: &FileContent) -> Vec<AttachmentView> {
    content
        .files
        .iter()
        .map(|f| AttachmentView {
            file_id: f.file_id.clone(),
            name: f.name.clone(),
            path: f.path.clone(),
            size: f.size,
            sha256: f.file_id.clone(),
            mime: f.mime.clone(),
            state: FileState::Waiting,
            waiting_for: Some(WaitingFor::Download),
            have_bytes: 0,
            thumbnail: f
                .thumbnail
                .as_ref()
                .map(|t| format!("data:{};base64,{}", t.mime, t.data)),
            error: None,
            withdrawn: false,
        })
        .collect()
}
