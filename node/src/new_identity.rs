//! "New identity for this computer": what a copy of another computer's data directory
//! (a cloned disk or VM, a copied home) does once it learns it has a twin. It takes
//! new keys, so a new id; keeps its history readable; and tells every colleague, in a
//! statement signed by the old key, that it is a copy of the old id's computer — the
//! old id stays with the original (docs/PROTOCOL.md, "New identity for a copy").
//!
//! The steps are ordered so that a crash between any two leaves a node that starts
//! right: the statement is written before the keys are replaced (a start with the new
//! keys finds it and treats the database's old id as copied, not moved), and the
//! database follows the keys (a start finds the new keys and completes the change).

use std::path::Path;

use api_types::{NewIdentity, NodeId};
use lan_mesh::transport::{ChangeKind, IdentityStatement, NodeKeys};
use storage::{private_file, DataDir, LocalChange, Store};

use crate::live_settings::{LiveSettings, UpdateError};
use crate::mesh::MeshHandle;

/// The copy statement of this data directory's current keys, once it took a new
/// identity (mode 0600, beside `node-key`).
pub const COPY_STATEMENT_FILE: &str = "identity-copy.json";

#[derive(Debug, thiserror::Error)]
pub enum NewIdentityError {
    #[error("cannot generate new keys: {0}")]
    Keys(#[from] lan_mesh::transport::KeyError),
    #[error("cannot write {file}: {source}")]
    Write {
        file: &'static str,
        source: std::io::Error,
    },
    #[error("cannot replace the node's keys: {0}")]
    KeyFile(#[from] storage::DataDirError),
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshGone),
    #[error(transparent)]
    Store(#[from] storage::StoreError),
    #[error("cannot save the new node id: {0}")]
    Settings(#[from] UpdateError),
}

/// The copy statement to announce, if this data directory took a new identity whose
/// keys derive `own_id`. A statement for other keys (a crash before they were
/// replaced) or an unreadable file is not announced.
pub fn copy_statement(dir: &Path, own_id: &NodeId) -> Option<IdentityStatement> {
    let path = dir.join(COPY_STATEMENT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read the copy statement: {e}");
            return None;
        }
    };
    match serde_json::from_slice::<IdentityStatement>(&bytes) {
        Ok(s) if s.kind() == ChangeKind::Copied && s.new_id == own_id.as_str() => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring a damaged copy statement: {e}");
            None
        }
    }
}

/// How the database's id moves to `derived` at a start: as a copy when the copy
/// statement names these keys, else as the same node under a new id.
pub fn local_change_at_start(dir: &Path, derived: &NodeId) -> LocalChange {
    if copy_statement(dir, derived).is_some() {
        LocalChange::Copied
    } else {
        LocalChange::Moved
    }
}

/// Gives this computer a new identity (see the module docs), live: the mesh stops,
/// takes the new keys, and starts again under the new id.
pub async fn take_new_identity(
    settings: &LiveSettings,
    mesh: &MeshHandle,
    store: &Store,
) -> Result<NewIdentity, NewIdentityError> {
    let old_keys = mesh.keys();
    let previous_id = old_keys.public().node_id();
    let new_keys = NodeKeys::generate()?;
    let new_public = new_keys.public();
    let new_id = new_public.node_id();
    let statement = IdentityStatement::sign_copy(&old_keys, &new_public);
    let dir: &DataDir = settings.data_dir();
    write_statement(&dir.join(COPY_STATEMENT_FILE), &statement)?;
    dir.replace_node_keys(&new_keys.to_bytes())?;
    tracing::info!(old = %previous_id, new = %new_id, link_key = %new_public.fingerprint(),
        "this computer takes a new identity");
    mesh.renew_keys(new_keys.clone(), statement).await?;
    store.set_signer(std::sync::Arc::new(new_keys)).await?;
    store
        .change_local_identity(new_id.clone(), LocalChange::Copied)
        .await?;
    // DMs still queued (also any sent a moment ago, between the two writes above) were
    // signed for the old id: they leave as the new identity's.
    store.resign_queued_direct(mesh_store::dm_envelope).await?;
    settings.set_node_id(new_id.clone()).await?;
    Ok(NewIdentity {
        node_id: new_id.to_string(),
        previous_id: previous_id.to_string(),
        link_key: new_public.fingerprint(),
    })
}

fn write_statement(path: &Path, statement: &IdentityStatement) -> Result<(), NewIdentityError> {
    let body = serde_json::to_vec_pretty(statement).map_err(|e| NewIdentityError::Write {
        file: COPY_STATEMENT_FILE,
        source: std::io::Error::other(e),
    })?;
    private_file::write_atomic(path, &body).map_err(|source| NewIdentityError::Write {
        file: COPY_STATEMENT_FILE,
        source,
    })
}
