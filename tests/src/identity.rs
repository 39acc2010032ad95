//! Node identities for the nodes tests start: a node's id is the one its keys derive
//! (docs/PROTOCOL.md, "Signatures"), so a harness that writes `settings.json` with a
//! node id before the first start also writes the keys (`node-key`) that id comes
//! from. Ids are made here and their keys kept until the data directory is written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use lan_mesh::transport::NodeKeys;

/// The data directory's key file (`storage::data_dir::NODE_KEY_FILE`).
const NODE_KEY_FILE: &str = "node-key";

static KEYS: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::new(BTreeMap::new());

/// A new node id, derived from freshly generated keys (kept for `write_node_key`).
pub fn new_node_id() -> anyhow::Result<String> {
    let keys = NodeKeys::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = keys.public().node_id().to_string();
    KEYS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), keys.to_bytes().to_vec());
    Ok(id)
}

/// Writes the keys of `node_id` (made by `new_node_id`) into `dir`, unless the
/// directory has keys already (a restart). Ids made elsewhere are left alone: the node
/// then makes keys of its own.
pub fn write_node_key(dir: &Path, node_id: &str) -> anyhow::Result<()> {
    let path = dir.join(NODE_KEY_FILE);
    if path.exists() {
        return Ok(());
    }
    let Some(bytes) = KEYS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(node_id)
        .cloned()
    else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
