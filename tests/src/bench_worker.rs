//! The worker processes of the namespace benchmarks (`src/bin/bench_dm.rs`,
//! `src/bin/bench_files.rs`): the orchestrator starts its own binary with a subcommand
//! inside a namespace host and drives it over stdin/stdout, one command line in, one
//! JSON line out; the worker side reads its API token from stdin, stamps events with
//! CLOCK_MONOTONIC (one clock for every namespace of the kernel) and refuses any
//! destination off the benchmark LAN.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::netns::{NetNs, SUBNET};

/// A worker that outlives this is stuck: it ends itself.
pub const WORKER_LIFETIME: Duration = Duration::from_secs(3600);

/// A subcommand process inside a namespace: one command line in, one JSON line out.
pub struct Worker {
    what: String,
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Worker {
    /// Starts this binary with `args` in `ns`, writes `secret` (an API token) as the
    /// first line of its stdin (never the command line `ps` shows) and waits for its
    /// `ready`.
    pub async fn start(
        ns: &NetNs,
        what: &str,
        args: &[String],
        secret: Option<&str>,
    ) -> anyhow::Result<Worker> {
        let exe = std::env::current_exe()?;
        let mut cmd = ns.command(&exe);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let mut stdin = child.stdin.take().context("worker stdin")?;
        if let Some(s) = secret {
            stdin.write_all(format!("{s}\n").as_bytes()).await?;
        }
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut w = Worker {
            what: what.to_string(),
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        let first = w.line(Duration::from_secs(30)).await?;
        if first != "ready" {
            bail!("{what}: {first}");
        }
        Ok(w)
    }

    async fn line(&mut self, limit: Duration) -> anyhow::Result<String> {
        tokio::time::timeout(limit, self.lines.next_line())
            .await
            .map_err(|_| anyhow!("{} said nothing in {limit:?}", self.what))??
            .with_context(|| format!("{} exited", self.what))
    }

    /// Its next JSON line (an `error` field in it is an error).
    pub async fn json_line(&mut self, limit: Duration) -> anyhow::Result<Value> {
        let line = self.line(limit).await?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: not JSON: {line}", self.what))?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            bail!("{} failed: {e}", self.what);
        }
        Ok(v)
    }

    /// Sends `command` and waits for its answer.
    pub async fn ask(&mut self, command: &str, limit: Duration) -> anyhow::Result<Value> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        self.json_line(limit)
            .await
            .with_context(|| format!("`{command}`"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // kill_on_drop is set by NetNs::command; be explicit anyway (by PID).
        let _ = self.child.start_kill();
    }
}

/// Workers run one thread: no cross-core wake-ups between the socket and the clock.
pub fn current_thread(
    f: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            tokio::time::timeout(WORKER_LIFETIME, f)
                .await
                .map_err(|_| anyhow!("worker lifetime over"))?
        })
}

/// CLOCK_MONOTONIC in ns: the same clock in every network namespace of this kernel.
pub fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

pub fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// A message text: `tag` (no spaces), a space, then `x` up to `bytes`.
pub fn text_of(tag: &str, bytes: usize) -> String {
    let mut t = format!("{tag} ");
    while t.len() < bytes {
        t.push('x');
    }
    t
}

/// Stdin's lines, read by a thread of their own (tokio's stdin needs a feature the
/// workspace does not build).
pub fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line of stdin: an API token.
pub async fn read_token(lines: &mut tokio::sync::mpsc::Receiver<String>) -> anyhow::Result<String> {
    let token = lines.recv().await.unwrap_or_default();
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("no API token on stdin");
    }
    Ok(token)
}

pub type EventStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The node's events WebSocket (the token as a subprotocol, like the browser UI).
pub async fn events_socket(api_url: &str, token: &str) -> anyhow::Result<EventStream> {
    let url = format!("{}api/v1/events", api_url.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("lanchat.v1, lanchat.bearer.{token}").parse()?,
    );
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

/// Refuses any destination that is not on the benchmark LAN.
pub fn check_lan(host_port: &str) -> anyhow::Result<()> {
    let ip: Ipv4Addr = host_port
        .split(':')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("{host_port}: not an IPv4 address"))?;
    let o = ip.octets();
    if !SUBNET.starts_with(&format!("{}.{}.{}.", o[0], o[1], o[2])) {
        bail!("{ip} is not on the benchmark LAN {SUBNET}");
    }
    Ok(())
}
