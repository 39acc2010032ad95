//! Harness for workspace-level tests: start real `lanchat` processes and talk to them
//! only through their local API; drive a real Chromium over WebDriver.
//!
//! Every process a test starts is ended by PID when its handle drops; every wait is a
//! bounded `wait_until`, never a bare sleep standing in for an assertion.

pub mod bench;
pub mod fault_proxy;
pub mod netns;
pub mod node;
pub mod webdriver;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use node::{lanchat_bin, NodeProcess};

/// Polls `check` until it yields `Some`, or fails after `limit` naming `what`.
pub async fn wait_until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `<workspace>/target/test-artifacts/<name>`: screenshots and logs a person can look at,
/// in the clone's own `target/` even when CARGO_TARGET_DIR points elsewhere.
pub fn artifacts_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-artifacts")
        .join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A TCP port that was free a moment ago (for programs that need a port number given).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A UDP port that was free a moment ago on loopback.
pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A settings document for a node on loopback with the LAN mesh on and short intervals
/// (heartbeat 1 s, TTL 3 s) that probes `other_discovery_port` (loopback has no
/// broadcast). Returns the node id and the document to write as `settings.json`.
pub fn loopback_mesh_settings(
    name: &str,
    discovery_port: u16,
    other_discovery_port: u16,
    secret: &str,
) -> anyhow::Result<(String, serde_json::Value)> {
    let id = ulid::Ulid::new().to_string();
    let doc = serde_json::json!({"lan_mesh": {
        "enabled": true, "node_id": id, "display_name": name,
        "listen_port": free_port()?, "discovery_port": discovery_port,
        "heartbeat_interval_sec": 1, "peer_ttl_sec": 3,
        "allowed_subnets": ["127.0.0.0/8"], "shared_secret": secret,
        "peer_addresses": [format!("127.0.0.1:{other_discovery_port}")]
    }});
    Ok((id, doc))
}

/// Two nodes on loopback that find each other (when their secrets match).
pub struct LoopbackPair {
    pub a: NodeProcess,
    pub b: NodeProcess,
    pub a_id: String,
    pub b_id: String,
    _tmp: tempfile::TempDir,
}

impl LoopbackPair {
    pub async fn start(secret_a: &str, secret_b: &str) -> anyhow::Result<LoopbackPair> {
        let tmp = tempfile::tempdir()?;
        let (da, db) = (free_udp_port()?, free_udp_port()?);
        let (a_id, sa) = loopback_mesh_settings("alpha", da, db, secret_a)?;
        let (b_id, sb) = loopback_mesh_settings("bravo", db, da, secret_b)?;
        for (dir, doc) in [("a", &sa), ("b", &sb)] {
            std::fs::create_dir_all(tmp.path().join(dir))?;
            std::fs::write(tmp.path().join(dir).join("settings.json"), doc.to_string())?;
        }
        let a = NodeProcess::serve(&tmp.path().join("a")).await?;
        let b = NodeProcess::serve(&tmp.path().join("b")).await?;
        Ok(LoopbackPair {
            a,
            b,
            a_id,
            b_id,
            _tmp: tmp,
        })
    }
}
