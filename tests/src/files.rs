//! Files through a node's local API, for the process tests (issue 17): uploads into a
//! conversation, waiting for a file message, and a recording stand-in for the desktop's
//! opener (`LANCHAT_OPENER`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::ensure;
use api_types::MessageView;

use crate::chat::history;
use crate::{wait_until, NodeProcess};

/// `s` percent-encoded for a query value (unreserved characters kept).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `POST /api/v1/conversations/{conversation}/files?QUERY` with `bytes`: the status and
/// the body, whatever they are.
pub async fn upload_raw(
    node: &NodeProcess,
    conversation: &str,
    query: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    let path = format!("v1/conversations/{conversation}/files?{query}");
    let resp = node
        .http()
        .post(node.api_url(&path))
        .bearer_auth(&node.token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// Sends one file (`name`, in `folder` when given) from `node` into `conversation`:
/// the file message (`201` or an error).
pub async fn upload(
    node: &NodeProcess,
    conversation: &str,
    name: &str,
    folder: Option<&str>,
    bytes: Vec<u8>,
) -> anyhow::Result<MessageView> {
    let mut query = format!("name={}", urlencode(name));
    if let Some(folder) = folder {
        query.push_str(&format!("&path={}", urlencode(folder)));
    }
    let (status, body) = upload_raw(node, conversation, &query, bytes).await?;
    ensure!(status == 201, "upload {name}: {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// The file message with `file_id` once `node` has it in `conversation`.
pub async fn wait_file_message(
    node: &NodeProcess,
    conversation: &str,
    file_id: &str,
    limit: Duration,
) -> anyhow::Result<MessageView> {
    wait_until(limit, "the file message", || async {
        history(node, conversation)
            .await
            .ok()?
            .into_iter()
            .find(|m| m.attachments.iter().any(|a| a.file_id == file_id))
    })
    .await
}

/// A script in `dir` that appends one line per start to `record`: the argument count,
/// then each argument, separated by `|` (see [`opener_calls`]).
pub fn write_opener(dir: &Path, record: &Path) -> anyhow::Result<PathBuf> {
    let script = dir.join("opener.sh");
    write_recording_script(&script, record)?;
    Ok(script)
}

/// [`write_opener`]'s script at `script` exactly (e.g. an `xdg-open` first in `PATH`).
/// Each start is recorded with one write: the node starts the opener detached, so an
/// open and a reveal in a row can run at once, and a line written in parts came out
/// interleaved (`22|reveal|open|…`, seen in CI).
pub fn write_recording_script(script: &Path, record: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(
        script,
        format!(
            "#!/bin/sh\nline=\"$#\"\nfor a in \"$@\"; do line=\"$line|$a\"; done\nprintf '%s\\n' \"$line\" >> '{}'\n",
            record.display()
        ),
    )?;
    std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The opener's record, one start per line.
pub fn opener_calls(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}
