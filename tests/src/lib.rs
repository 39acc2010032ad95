//! Harness for workspace-level tests: start real `lanchat` processes and talk to them
//! only through their local API; drive a real Chromium over WebDriver.
//!
//! Every process a test starts is ended by PID when its handle drops; every wait is a
//! bounded `wait_until`, never a bare sleep standing in for an assertion; an absence is
//! checked with `holds_until`, up to an event or counter showing it could have ended.

pub mod attacker;
pub mod bench;
pub mod bench_worker;
pub mod chat;
pub mod fault_proxy;
pub mod files;
pub mod netns;
pub mod node;
pub mod scale;
pub mod webdriver;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

pub use node::{lanchat_bin, NodeProcess};

/// Polls `check` until it yields `Some`, or fails after `limit` naming `what`.
pub async fn wait_until<T, F, Fut>(limit: Duration, what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_until(limit, Duration::from_millis(50), what, check).await
}

/// [`wait_until`] with another pause between checks, for checks that are expensive
/// (reading a history of a thousand messages) and would only slow the nodes down.
pub async fn poll_until<T, F, Fut>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
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
        tokio::time::sleep(every).await;
    }
}

/// Checks that `holds` keeps holding until `reached` shows that the moment when it could
/// have stopped has passed: a drop counter saying the packets that would have changed it
/// arrived and were handled, a later message ordered after them having arrived. An
/// absence is shown by what happened instead, never by a fixed pause. `holds` is looked
/// at once more after `reached` came, so the last look is after that point. Fails with
/// `what` and `holds`' reason the first time it does not hold, or after `limit` if
/// `reached` never comes.
pub async fn holds_until<H, HFut, R, RFut>(
    limit: Duration,
    what: &str,
    mut holds: H,
    mut reached: R,
) -> anyhow::Result<()>
where
    H: FnMut() -> HFut,
    HFut: Future<Output = anyhow::Result<Result<(), String>>>,
    R: FnMut() -> RFut,
    RFut: Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    loop {
        let passed = reached().await?;
        if let Err(why) = holds().await? {
            anyhow::bail!("{what} stopped holding after {:?}: {why}", start.elapsed());
        }
        if passed {
            return Ok(());
        }
        if start.elapsed() >= limit {
            anyhow::bail!(
                "{what} held, but what shows it could have stopped never came within {limit:?}"
            );
        }
        // Each look is a few API calls: often enough, without loading the nodes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `len` bytes that do not repeat (xorshift from `seed`): file content whose every
/// chunk differs, the same for the same seed.
pub fn file_content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The environment that runs a process with its whole wall clock shifted by `offset`
/// (libfaketime's syntax: `+5m`, `-5m`, `+3h`, `+300s`) — Debian's `faketime`
/// (`scripts/setup.sh` installs it), without its wrapper: `faketime CMD` forks and
/// waits, so the PID a test holds would not be the node's. `LD_PRELOAD` of the library
/// is what the wrapper does too. Only `CLOCK_REALTIME` (Rust's `SystemTime`) is
/// shifted: `FAKETIME_DONT_FAKE_MONOTONIC` keeps tokio's timers on the real monotonic
/// clock, as a PC whose clock is merely set wrong has it.
pub fn faketime_env(offset: &str) -> anyhow::Result<Vec<(String, String)>> {
    Ok(vec![
        (
            "LD_PRELOAD".to_string(),
            libfaketime()?.to_string_lossy().into_owned(),
        ),
        ("FAKETIME".to_string(), offset.to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
    ])
}

/// Debian puts the library under `/usr/lib/<multiarch triplet>/faketime/`.
fn libfaketime() -> anyhow::Result<PathBuf> {
    let found = std::fs::read_dir("/usr/lib")?
        .filter_map(Result::ok)
        .map(|arch| arch.path().join("faketime").join("libfaketime.so.1"))
        .find(|lib| lib.is_file());
    found.context("libfaketime.so.1 not found: install Debian's faketime (scripts/setup.sh)")
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
///
/// Taken from below the kernel's ephemeral range: every node binds its local API to
/// port 0, and a port the kernel handed out for that cannot also be one a test chose
/// for a node's LAN listener (which would then fail to bind until the other ends).
pub fn free_port() -> anyhow::Result<u16> {
    unused_port(|port| std::net::TcpListener::bind(("0.0.0.0", port)).is_ok())
}

/// A UDP port that was free a moment ago, chosen like [`free_port`].
pub fn free_udp_port() -> anyhow::Result<u16> {
    unused_port(|port| std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok())
}

/// Ports tests hand out: above the well-known and common service ports, below the
/// ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default).
const TEST_PORTS_FROM: u16 = 20_000;
const PORT_TRIES: usize = 200;
/// Ports this process handed out. A port is only free until its node binds it, so
/// without this a mesh whose ports are all chosen before its nodes start could give
/// two nodes the same one (200 nodes drew three such pairs in one run).
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn unused_port(free: impl Fn(u16) -> bool) -> anyhow::Result<u16> {
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_from.saturating_sub(TEST_PORTS_FROM);
    anyhow::ensure!(
        span >= 1_000,
        "the ephemeral port range starts at {ephemeral_from}: no room for test ports below it"
    );
    // Randomly spread, so parallel tests (and test binaries) rarely even try the same one.
    let hasher = std::collections::hash_map::RandomState::new();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for attempt in 0..PORT_TRIES {
        let random = std::hash::BuildHasher::hash_one(&hasher, attempt);
        let port = TEST_PORTS_FROM + u16::try_from(random % u64::from(span)).unwrap_or(0);
        if !handed_out.contains(&port) && free(port) {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free port below {ephemeral_from} after {PORT_TRIES} tries")
}

/// Key files made by [`keyed_node_id`], by the node id they derive, until
/// [`write_settings`] puts them into a data directory.
static NODE_KEYS: std::sync::Mutex<Vec<(String, Vec<u8>)>> = std::sync::Mutex::new(Vec::new());

/// A node id known before the node first starts: a node's id is the one its keys
/// derive, so this makes the keys (kept until [`write_settings`] writes the settings
/// naming this id, which puts the key file beside them).
pub fn keyed_node_id() -> anyhow::Result<String> {
    let keys = lan_mesh::transport::NodeKeys::generate()?;
    let id = keys.public().node_id().to_string();
    NODE_KEYS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id.clone(), keys.to_bytes().to_vec()));
    Ok(id)
}

/// Writes `settings.json` into a data directory (created if needed) and, when its
/// `lan_mesh.node_id` came from [`keyed_node_id`], the node's key file, so the node
/// starts with exactly that id.
pub fn write_settings(dir: &Path, doc: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("settings.json"), doc.to_string())?;
    let id = doc["lan_mesh"]["node_id"].as_str().unwrap_or_default();
    let key = NODE_KEYS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(k, _)| k == id)
        .map(|(_, bytes)| bytes.clone());
    if let Some(bytes) = key {
        storage::private_file::write_atomic(&dir.join(storage::data_dir::NODE_KEY_FILE), &bytes)?;
    }
    Ok(())
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
    let id = keyed_node_id()?;
    let doc = serde_json::json!({"lan_mesh": {
        "enabled": true, "node_id": id, "display_name": name,
        "listen_port": free_port()?, "discovery_port": discovery_port,
        "heartbeat_interval_sec": 1, "peer_ttl_sec": 3,
        "allowed_subnets": ["127.0.0.0/8"], "shared_secret": secret,
        "peer_addresses": [format!("127.0.0.1:{other_discovery_port}")]
    }});
    Ok((id, doc))
}

/// One node of a [`LoopbackPair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Where a pair keeps its data directories and logs.
enum Root {
    /// Removed with the pair.
    Temp(tempfile::TempDir),
    /// Kept for a person to look at after the test (`target/test-artifacts/…`).
    Kept(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Root::Temp(t) => t.path(),
            Root::Kept(p) => p,
        }
    }
}

/// A [`LoopbackPair`] before it starts: node ids, settings and environment are chosen,
/// nothing runs yet — so a test can read a node's ports first (to put a fault proxy in
/// front of it) and give each node its own environment.
pub struct PairPlan {
    root: Root,
    ids: [String; 2],
    settings: [serde_json::Value; 2],
    env: [Vec<(String, String)>; 2],
}

impl PairPlan {
    /// Nodes "alpha" (A) and "bravo" (B) probing each other on loopback, heartbeat 1 s,
    /// TTL 3 s (see [`loopback_mesh_settings`]), in a temporary directory.
    pub fn new(secret_a: &str, secret_b: &str) -> anyhow::Result<PairPlan> {
        let (da, db) = (free_udp_port()?, free_udp_port()?);
        let (a_id, sa) = loopback_mesh_settings("alpha", da, db, secret_a)?;
        let (b_id, sb) = loopback_mesh_settings("bravo", db, da, secret_b)?;
        Ok(PairPlan {
            root: Root::Temp(tempfile::tempdir()?),
            ids: [a_id, b_id],
            settings: [sa, sb],
            env: [Vec::new(), Vec::new()],
        })
    }

    /// Keeps the data directories and logs in `target/test-artifacts/<name>/` (emptied
    /// first) instead of a temporary directory, so a failure can be looked into.
    pub fn keep_in_artifacts(mut self, name: &str) -> anyhow::Result<PairPlan> {
        let dir = artifacts_dir(name)?;
        std::fs::remove_dir_all(&dir)?;
        std::fs::create_dir_all(&dir)?;
        self.root = Root::Kept(dir);
        Ok(self)
    }

    /// Sets an environment variable for one node (kept for its restarts).
    pub fn env(mut self, side: Side, key: &str, value: &str) -> PairPlan {
        self.env[side.index()].push((key.to_string(), value.to_string()));
        self
    }

    /// Changes one node's settings document before it starts (e.g. `doc["files"] = …`).
    pub fn settings(mut self, side: Side, change: impl FnOnce(&mut serde_json::Value)) -> PairPlan {
        change(&mut self.settings[side.index()]);
        self
    }

    /// Sets an environment variable for both nodes.
    pub fn env_both(self, key: &str, value: &str) -> PairPlan {
        self.env(Side::A, key, value).env(Side::B, key, value)
    }

    /// Where the node's data directory will be (created by `start`; a test may mount
    /// something there first).
    pub fn data_dir(&self, side: Side) -> PathBuf {
        self.root.path().join(side.dir_name())
    }

    /// The LAN port the node's transport will listen on.
    pub fn listen_port(&self, side: Side) -> anyhow::Result<u16> {
        self.settings[side.index()]["lan_mesh"]["listen_port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .context("the settings have no listen_port")
    }

    /// Writes both settings files and starts A, then B.
    pub async fn start(self) -> anyhow::Result<LoopbackPair> {
        for side in [Side::A, Side::B] {
            let dir = self.root.path().join(side.dir_name());
            write_settings(&dir, &self.settings[side.index()])?;
        }
        let a = start_node(&self.root.path().join("a"), &self.env[0]).await?;
        let b = start_node(&self.root.path().join("b"), &self.env[1]).await?;
        let [a_id, b_id] = self.ids;
        Ok(LoopbackPair {
            a,
            b,
            a_id,
            b_id,
            env: self.env,
            root: self.root,
        })
    }
}

async fn start_node(dir: &Path, env: &[(String, String)]) -> anyhow::Result<NodeProcess> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    NodeProcess::start(dir, &["serve"], &env).await
}

/// Two nodes on loopback that find each other (when their secrets match).
pub struct LoopbackPair {
    pub a: NodeProcess,
    pub b: NodeProcess,
    pub a_id: String,
    pub b_id: String,
    env: [Vec<(String, String)>; 2],
    root: Root,
}

impl LoopbackPair {
    pub async fn start(secret_a: &str, secret_b: &str) -> anyhow::Result<LoopbackPair> {
        PairPlan::new(secret_a, secret_b)?.start().await
    }

    pub fn node(&self, side: Side) -> &NodeProcess {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    fn node_mut(&mut self, side: Side) -> &mut NodeProcess {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    pub fn id(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a_id,
            Side::B => &self.b_id,
        }
    }

    /// The node's data directory.
    pub fn data_dir(&self, side: Side) -> PathBuf {
        self.root.path().join(side.dir_name())
    }

    /// A clean stop (SIGTERM: goodbye, shutdown).
    pub async fn stop(&mut self, side: Side) -> anyhow::Result<()> {
        self.node_mut(side).stop().await.map(drop)
    }

    /// SIGKILL: the node gets no chance to say or save anything.
    pub fn kill(&mut self, side: Side) -> anyhow::Result<()> {
        self.node_mut(side).kill().map(drop)
    }

    /// Starts the node again on the same data directory (so the same settings, keys
    /// and database) with the same environment, after stopping it if it still runs.
    pub async fn restart(&mut self, side: Side) -> anyhow::Result<()> {
        if self.node_mut(side).is_running() {
            self.stop(side).await?;
        }
        let dir = self.root.path().join(side.dir_name());
        let node = start_node(&dir, &self.env[side.index()]).await?;
        *self.node_mut(side) = node;
        Ok(())
    }

    /// Stops the node and starts it again on the same data directory *and the same
    /// local API address*, so a page that was open on it can reconnect.
    pub async fn restart_on_same_api_port(&mut self, side: Side) -> anyhow::Result<()> {
        let url = self.node_mut(side).url.clone();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        if self.node_mut(side).is_running() {
            self.stop(side).await?;
        }
        let dir = self.root.path().join(side.dir_name());
        let env: Vec<(&str, &str)> = self.env[side.index()]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let node = NodeProcess::start(&dir, &["serve", "--api-addr", &addr], &env).await?;
        *self.node_mut(side) = node;
        Ok(())
    }

    /// `result`, with the end of both nodes' logs added to an error. (A test that
    /// panics instead gets them printed when the pair drops.)
    pub fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        result.map_err(|e| e.context(self.log_tails()))
    }

    /// Where the logs are, and their last lines.
    fn log_tails(&self) -> String {
        let tail = |node: &NodeProcess| {
            let log = node.log();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        };
        format!(
            "node logs in {}\n--- alpha (a.log), last lines ---\n{}\n--- bravo (b.log), last lines ---\n{}",
            self.root.path().display(),
            tail(&self.a),
            tail(&self.b)
        )
    }
}

impl Drop for LoopbackPair {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
    }
}

/// Lines of each node's log attached to a failing pair test.
const LOG_TAIL_LINES: usize = 40;

/// Several nodes on loopback that all find each other: each node's `peer_addresses`
/// lists every other node's discovery port (loopback has no broadcast), heartbeat 1 s,
/// TTL 3 s, like [`loopback_mesh_settings`]. Data directories and logs are kept in
/// `target/test-artifacts/<name>/<node name>/`.
pub struct LoopbackMesh {
    pub nodes: Vec<NodeProcess>,
    pub ids: Vec<String>,
    pub names: Vec<String>,
    env: Vec<(String, String)>,
    root: Root,
}

impl LoopbackMesh {
    /// Starts one node per name, all with the same `secret` and environment.
    pub async fn start(
        artifacts: &str,
        names: &[&str],
        secret: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<LoopbackMesh> {
        Self::start_paced(artifacts, names, secret, env, 1).await
    }

    /// [`LoopbackMesh::start`] with a discovery heartbeat of `heartbeat_sec` (TTL three
    /// heartbeats): every node sends one to every other each heartbeat, so hundreds of
    /// nodes on one machine need the product's slower default.
    pub async fn start_paced(
        artifacts: &str,
        names: &[&str],
        secret: &str,
        env: &[(&str, &str)],
        heartbeat_sec: u32,
    ) -> anyhow::Result<LoopbackMesh> {
        let dir = artifacts_dir(artifacts)?;
        std::fs::remove_dir_all(&dir)?;
        std::fs::create_dir_all(&dir)?;
        let root = Root::Kept(dir);
        let ports = names
            .iter()
            .map(|_| free_udp_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let mut ids = Vec::new();
        let mut docs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let others: Vec<u16> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| *p)
                .collect();
            let first = others.first().copied().context("a mesh needs two nodes")?;
            let (id, mut doc) = loopback_mesh_settings(name, ports[i], first, secret)?;
            doc["lan_mesh"]["heartbeat_interval_sec"] = heartbeat_sec.into();
            doc["lan_mesh"]["peer_ttl_sec"] = (3 * heartbeat_sec).into();
            doc["lan_mesh"]["peer_addresses"] = serde_json::json!(others
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>());
            ids.push(id);
            docs.push(doc);
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut nodes = Vec::new();
        for (name, doc) in names.iter().zip(&docs) {
            let node_dir = root.path().join(name);
            write_settings(&node_dir, doc)?;
            nodes.push(start_node(&node_dir, &env).await?);
        }
        Ok(LoopbackMesh {
            nodes,
            ids,
            names: names.iter().map(|n| n.to_string()).collect(),
            env,
            root,
        })
    }

    /// A clean stop (SIGTERM: goodbye, shutdown) of node `i`.
    pub async fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        node.stop().await.map(drop)
    }

    /// Starts node `i` again on its data directory (same settings, keys and database).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let name = self.names.get(i).context("no such node")?.clone();
        if self.nodes[i].is_running() {
            self.nodes[i].stop().await?;
        }
        let node = start_node(&self.root.path().join(name), &self.env).await?;
        self.nodes[i] = node;
        Ok(())
    }

    /// Starts node `i` again on its data directory with `extra` added to its
    /// environment (e.g. a test hook only that node honours).
    pub async fn restart_with(&mut self, i: usize, extra: &[(&str, &str)]) -> anyhow::Result<()> {
        let name = self.names.get(i).context("no such node")?.clone();
        if self.nodes[i].is_running() {
            self.nodes[i].stop().await?;
        }
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.nodes[i] = start_node(&self.root.path().join(name), &env).await?;
        Ok(())
    }

    /// `result`, with the end of every node's log added to an error.
    pub fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        result.map_err(|e| e.context(self.log_tails()))
    }

    fn log_tails(&self) -> String {
        let mut text = format!("node logs in {}", self.root.path().display());
        for (name, node) in self.names.iter().zip(&self.nodes) {
            let log = node.log();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!(
                "\n--- {name}, last lines ---\n{}",
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            ));
        }
        text
    }
}

impl Drop for LoopbackMesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn holds_until_looks_once_more_after_the_point_is_reached() {
        // The thing goes wrong exactly when the point is reached: only the last look,
        // after it, can see that.
        let ticks = AtomicU32::new(0);
        let result = holds_until(
            Duration::from_secs(5),
            "the absence",
            || async {
                Ok(if ticks.load(Ordering::SeqCst) >= 3 {
                    Err("it happened".to_string())
                } else {
                    Ok(())
                })
            },
            || async { Ok(ticks.fetch_add(1, Ordering::SeqCst) + 1 >= 3) },
        )
        .await;
        let err = result.expect_err("the last look saw it");
        assert!(err.to_string().contains("it happened"), "{err}");
    }

    #[tokio::test]
    async fn holds_until_fails_when_the_point_never_comes() {
        let result = holds_until(
            Duration::from_millis(300),
            "the absence",
            || async { Ok(Ok(())) },
            || async { Ok(false) },
        )
        .await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn holds_until_passes_once_the_point_is_reached() {
        let ticks = AtomicU32::new(0);
        holds_until(
            Duration::from_secs(5),
            "the absence",
            || async { Ok(Ok(())) },
            || async { Ok(ticks.fetch_add(1, Ordering::SeqCst) >= 2) },
        )
        .await
        .unwrap();
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
    }
}
