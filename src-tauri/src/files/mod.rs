//! Files in the node (issue 17): file messages' attachments as the API shows them.

use api_types::{AttachmentView, FileContent, FileState, WaitingFor};

/// The attachments of a file message before this node's state of each is known:
/// waiting for a download. [`crate::api`] fills in the state from the blob store.
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
        })
        .collect()
}
