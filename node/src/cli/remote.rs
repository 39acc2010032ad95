//! `lanchat status|peers|send`: a client of the node that runs on a data directory. It
//! finds the node through `DATA_DIR/api.json` (`{url, token, pid}`, written by the
//! node at start, removed at a clean stop), checks that the process still lives, and
//! talks to the local API over loopback HTTP like any script would.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use api_types::{ApiErrorBody, ContactView, ConversationView, MessageView, PeerView, Status};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::resolve::{resolve, ResolveError};
use super::{Command, SendArgs};
use crate::node::API_FILE;

/// The local API answers in milliseconds; a node that takes this long is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// An upload takes as long as the file needs (the node stores it at disk speed): only
/// going this long without the node taking a byte means it is stuck.
const UPLOAD_STALL: Duration = Duration::from_secs(60);
/// Exit status when no node runs on the data directory (or it does not answer), so a
/// script can tell "start it first" from other failures (1) and usage errors (2).
pub const EXIT_NO_NODE: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no lanchat node is running for {dir}: {why}. Start one with `lanchat` (or `lanchat serve --data-dir {dir}`).")]
    NoNode { dir: String, why: String },
    #[error("the lanchat node for {dir} (pid {pid}, {url}) does not answer: {reason}")]
    Unreachable {
        dir: String,
        pid: u32,
        url: String,
        reason: String,
    },
    #[error("the node refused {what}: {message} ({code})")]
    Refused {
        what: String,
        code: String,
        message: String,
    },
    #[error("unexpected answer to {what}: {reason}")]
    BadAnswer { what: String, reason: String },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{0}")]
    Input(String),
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::NoNode { .. } | ClientError::Unreachable { .. } => EXIT_NO_NODE,
            _ => 1,
        }
    }
}

#[derive(Deserialize)]
struct ApiFile {
    url: String,
    token: String,
    pid: u32,
}

/// Never the token, even in a debug print.
impl std::fmt::Debug for ApiFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiFile")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("pid", &self.pid)
            .finish()
    }
}

/// Runs one client command against the node of `data_dir`, printing to stdout.
pub fn run(command: &Command, data_dir: &Path, json: bool) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Input(format!("cannot start the async runtime: {e}")))?;
    let node = RemoteNode::find(data_dir)?;
    let text = runtime.block_on(async {
        match command {
            Command::Status => status(&node, json).await,
            Command::Peers => peers(&node, json).await,
            Command::Send(args) => send(&node, args, json).await,
            Command::Serve | Command::Window | Command::WindowView => Ok(String::new()),
        }
    })?;
    println!("{}", text.trim_end());
    Ok(())
}

/// Asks the desktop node already running on `data_dir` to show its window (a second
/// launch of the app). False when no node runs there; an error when one runs but
/// cannot show a window (it is headless) or does not answer.
pub fn show_window(data_dir: &Path) -> Result<bool, ClientError> {
    let node = match RemoteNode::find(data_dir) {
        Ok(node) => node,
        Err(ClientError::NoNode { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Input(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(node.post::<serde_json::Value>("window/show", &serde_json::json!({})))?;
    Ok(true)
}

struct RemoteNode {
    dir: PathBuf,
    api: ApiFile,
    http: reqwest::Client,
    /// For uploads: no overall timeout (see [`UPLOAD_STALL`]).
    uploads: reqwest::Client,
}

impl RemoteNode {
    fn find(data_dir: &Path) -> Result<RemoteNode, ClientError> {
        let dir = data_dir.display().to_string();
        let path = data_dir.join(API_FILE);
        let bytes = std::fs::read(&path).map_err(|e| ClientError::NoNode {
            dir: dir.clone(),
            why: if e.kind() == std::io::ErrorKind::NotFound {
                format!("{} does not exist", path.display())
            } else {
                format!("cannot read {}: {e}", path.display())
            },
        })?;
        let api: ApiFile = serde_json::from_slice(&bytes).map_err(|e| ClientError::NoNode {
            dir: dir.clone(),
            why: format!("{} is not a node's API file ({e})", path.display()),
        })?;
        if !process_alive(api.pid) {
            return Err(ClientError::NoNode {
                dir,
                why: format!(
                    "{} names process {}, which no longer runs (the node stopped without cleaning up)",
                    path.display(),
                    api.pid
                ),
            });
        }
        let client = |builder: reqwest::ClientBuilder| {
            builder
                .build()
                .map_err(|e| ClientError::Input(format!("cannot make an HTTP client: {e}")))
        };
        let http = client(reqwest::Client::builder().timeout(REQUEST_TIMEOUT))?;
        let uploads = client(
            reqwest::Client::builder()
                .connect_timeout(REQUEST_TIMEOUT)
                .read_timeout(UPLOAD_STALL),
        )?;
        Ok(RemoteNode {
            dir: data_dir.to_path_buf(),
            api,
            http,
            uploads,
        })
    }

    /// Streams the file at `path` to `POST …/conversations/{id}/files?name=`, never
    /// holding it in memory.
    async fn upload(
        &self,
        conversation_id: &str,
        path: &Path,
    ) -> Result<serde_json::Value, ClientError> {
        let name = sendable(path)?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::Input(format!("cannot read {}: {e}", path.display())))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| ClientError::Input(format!("cannot read {}: {e}", path.display())))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let request = self
            .uploads
            .post(self.url(&format!("conversations/{conversation_id}/files")))
            .query(&[("name", name)])
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, meta.len())
            .body(body);
        self.call(
            &format!("POST /api/v1/conversations/{conversation_id}/files ({name})"),
            request,
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}api/v1/{path}", self.api.url)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let request = self.http.get(self.url(path));
        self.call(&format!("GET /api/v1/{path}"), request).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ClientError> {
        let request = self.http.post(self.url(path)).json(body);
        self.call(&format!("POST /api/v1/{path}"), request).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request
            .bearer_auth(&self.api.token)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                dir: self.dir.display().to_string(),
                pid: self.api.pid,
                url: self.api.url.clone(),
                reason: error_chain(&e),
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| ClientError::BadAnswer {
            what: what.to_string(),
            reason: error_chain(&e),
        })?;
        if !status.is_success() {
            let error: Option<ApiErrorBody> = serde_json::from_slice(&body).ok();
            return Err(ClientError::Refused {
                what: what.to_string(),
                code: error
                    .as_ref()
                    .map_or_else(|| status.as_u16().to_string(), |e| e.code.clone()),
                message: error.map_or_else(
                    || String::from_utf8_lossy(&body).into_owned(),
                    |e| e.message,
                ),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer {
            what: what.to_string(),
            reason: e.to_string(),
        })
    }
}

/// reqwest's top-level error says little ("error sending request"); its causes say why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(target_os = "linux")]
fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(not(target_os = "linux"))]
fn process_alive(_pid: u32) -> bool {
    // Without /proc, the HTTP request is the test: a dead node does not answer.
    true
}

fn pretty(value: &impl serde::Serialize) -> Result<String, ClientError> {
    serde_json::to_string_pretty(value).map_err(|e| ClientError::Input(e.to_string()))
}

async fn status(node: &RemoteNode, json: bool) -> Result<String, ClientError> {
    if json {
        let raw: serde_json::Value = node.get("status").await?;
        return pretty(&raw);
    }
    let s: Status = node.get("status").await?;
    let peers: Vec<PeerView> = node.get("peers").await?;
    let online = peers.iter().filter(|p| p.online).count();
    let mut out = format!(
        "Node:        {} ({})\nVersion:     {}\nLAN mesh:    {}{}\nPorts:       link {}, discovery {}, local API {}\nLink key:    {}\nPeers:       {online} online, {} known\n",
        s.display_name,
        s.node_id,
        s.version,
        wire_name(&s.mesh_state),
        s.mesh_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        s.listen_port,
        s.discovery_port,
        node.api.url.trim_end_matches('/'),
        s.link_key,
        peers.len(),
    );
    for w in &s.warnings {
        out.push_str(&format!("Warning:     {}\n", w.message));
    }
    Ok(out)
}

async fn peers(node: &RemoteNode, json: bool) -> Result<String, ClientError> {
    if json {
        let raw: serde_json::Value = node.get("peers").await?;
        return pretty(&raw);
    }
    let peers: Vec<PeerView> = node.get("peers").await?;
    if peers.is_empty() {
        return Ok("No peers known yet.".to_string());
    }
    let rows: Vec<[String; 6]> = peers
        .iter()
        .map(|p| {
            [
                p.display_name.clone(),
                if p.online { "online" } else { "offline" }.to_string(),
                p.link.as_str().to_string(),
                p.address.clone().unwrap_or_else(|| "-".into()),
                p.rtt_ms.map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
                p.peer_id.clone(),
            ]
        })
        .collect();
    Ok(table(
        ["NAME", "PRESENCE", "LINK", "ADDRESS", "RTT", "PEER ID"],
        &rows,
    ))
}

fn table(head: [&str; 6], rows: &[[String; 6]]) -> String {
    let mut widths = head.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.push('\n');
        text
    };
    let mut out = line(head);
    for row in rows {
        out.push_str(&line([
            &row[0], &row[1], &row[2], &row[3], &row[4], &row[5],
        ]));
    }
    out
}

async fn send(node: &RemoteNode, args: &SendArgs, json: bool) -> Result<String, ClientError> {
    if !args.files.is_empty() {
        return send_files(node, args, json).await;
    }
    let text = message_text(args)?;
    let contacts: Vec<ContactView> = node.get("contacts").await?;
    let conversations: Vec<ConversationView> = node.get("conversations").await?;
    let target = resolve(&args.to, &contacts, &conversations)?;
    let path = format!("conversations/{}/messages", target.conversation_id);
    if json {
        let raw: serde_json::Value = node
            .post(&path, &serde_json::json!({ "text": text }))
            .await?;
        return pretty(&raw);
    }
    let message: MessageView = node
        .post(&path, &serde_json::json!({ "text": text }))
        .await?;
    Ok(format!(
        "Sent to {} ({}): message {}, {}",
        target.label,
        target.conversation_id,
        message.id,
        wire_name(&message.status)
    ))
}

/// `send --file …`: the text first when there is one, then each file as its own file
/// message, in order; stops at the first refusal (what was sent before it stays sent).
async fn send_files(node: &RemoteNode, args: &SendArgs, json: bool) -> Result<String, ClientError> {
    let text = if args.text.is_empty() {
        None
    } else {
        Some(message_text(args)?)
    };
    // Every file is looked at before anything is sent: a typo in the last path must
    // not leave the text and the first files sent.
    for path in &args.files {
        sendable(path)?;
    }
    let contacts: Vec<ContactView> = node.get("contacts").await?;
    let conversations: Vec<ConversationView> = node.get("conversations").await?;
    let target = resolve(&args.to, &contacts, &conversations)?;
    let mut sent = Vec::new();
    if let Some(text) = text {
        let path = format!("conversations/{}/messages", target.conversation_id);
        sent.push(
            node.post::<serde_json::Value>(&path, &serde_json::json!({ "text": text }))
                .await?,
        );
    }
    for file in &args.files {
        sent.push(node.upload(&target.conversation_id, file).await?);
    }
    if json {
        return pretty(&sent);
    }
    let mut lines = Vec::new();
    for raw in sent {
        let message: MessageView =
            serde_json::from_value(raw).map_err(|e| ClientError::BadAnswer {
                what: "a sent message".to_string(),
                reason: e.to_string(),
            })?;
        let what = match message.attachments.first() {
            Some(a) => format!("file {} ({} bytes)", a.name, a.size),
            None => "message".to_string(),
        };
        lines.push(format!(
            "Sent to {} ({}): {what}, message {}, {}",
            target.label,
            target.conversation_id,
            message.id,
            wire_name(&message.status)
        ));
    }
    Ok(lines.join("\n"))
}

/// The name a file at `path` is sent under, when it is a readable file.
fn sendable(path: &Path) -> Result<&str, ClientError> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        ClientError::Input(format!("{} has no file name in UTF-8", path.display()))
    })?;
    let meta = std::fs::metadata(path)
        .map_err(|e| ClientError::Input(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(ClientError::Input(format!(
            "{} is not a file (to send a folder, send its files, or use the app's folder button)",
            path.display()
        )));
    }
    Ok(name)
}

/// The message of `send`: its words joined, or stdin for `-`; never empty.
fn message_text(args: &SendArgs) -> Result<String, ClientError> {
    let text = if args.text == ["-"] {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| ClientError::Input(format!("cannot read the message from stdin: {e}")))?;
        text
    } else {
        args.text.join(" ")
    };
    if text.trim().is_empty() {
        return Err(ClientError::Input("the message is empty".to_string()));
    }
    Ok(text)
}

/// A unit enum as the API spells it (`"running"`, `"delivered"`).
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_stale_api_file_means_no_node() {
        let dir = tempfile::tempdir().unwrap();
        let err = RemoteNode::find(dir.path()).err().unwrap();
        assert_eq!(err.exit_code(), EXIT_NO_NODE);
        assert!(err.to_string().contains("does not exist"), "{err}");

        // A PID above the kernel's limit (pid_max ≤ 2^22) never runs.
        std::fs::write(
            dir.path().join(API_FILE),
            r#"{"url": "http://127.0.0.1:9/", "token": "t", "pid": 99999999}"#,
        )
        .unwrap();
        let err = RemoteNode::find(dir.path()).err().unwrap();
        assert_eq!(err.exit_code(), EXIT_NO_NODE);
        assert!(err.to_string().contains("no longer runs"), "{err}");

        std::fs::write(dir.path().join(API_FILE), "garbage").unwrap();
        let err = RemoteNode::find(dir.path()).err().unwrap();
        assert!(err.to_string().contains("not a node's API file"), "{err}");
    }

    #[test]
    fn tables_align_columns() {
        let rows = [[
            "Bob".to_string(),
            "online".into(),
            "up".into(),
            "10.0.0.2:19123".into(),
            "1 ms".into(),
            "01AAA".into(),
        ]];
        let text = table(
            ["NAME", "PRESENCE", "LINK", "ADDRESS", "RTT", "PEER ID"],
            &rows,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].find("PRESENCE"), lines[1].find("online"));
        assert_eq!(lines[0].find("PEER ID"), lines[1].find("01AAA"));
    }
}
