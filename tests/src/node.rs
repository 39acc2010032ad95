//! A `lanchat` process under test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::wait_until;

/// A node has this long to come up (a cold debug build under load can be slow).
const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// The `lanchat` binary: `$LANCHAT_BIN`, else the one cargo built next to this test.
pub fn lanchat_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("LANCHAT_BIN") {
        return Ok(PathBuf::from(p));
    }
    // A test runs from target/<profile>/deps/, a scenario binary (a benchmark) from
    // target/<profile>/: the node binary sits in target/<profile>/ in both cases.
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("cannot locate the target directory")?;
    let bin = [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join("lanchat"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no lanchat binary beside {}: build it first (`cargo build --workspace`)",
                exe.display()
            )
        })?;
    Ok(bin)
}

#[derive(Debug, Deserialize)]
struct ApiFile {
    url: String,
    token: String,
    pid: u32,
}

pub struct NodeProcess {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub url: String,
    pub token: String,
    http: reqwest::Client,
}

impl NodeProcess {
    /// Starts `lanchat serve --data-dir DIR` and waits until its API answers.
    pub async fn serve(data_dir: &Path) -> anyhow::Result<NodeProcess> {
        Self::start(data_dir, &["serve"], &[]).await
    }

    /// Starts `lanchat ARGS --data-dir DIR` with extra environment, and waits until its
    /// API answers.
    pub async fn start(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<NodeProcess> {
        let bin = lanchat_bin()?;
        // Appended to, so a restarted node's log keeps what the earlier runs said.
        let log_path = data_dir.with_extension("log");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        writeln!(log, "=== lanchat {} ===", args.join(" "))?;
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let pid = child.id();
        let mut node = NodeProcess {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            log_path,
            url: String::new(),
            token: String::new(),
            http: reqwest::Client::new(),
        };
        let api_path = data_dir.join("api.json");
        let found = wait_until(START_LIMIT, "the node's api.json", || {
            let exited = node.try_exit_status();
            let api = std::fs::read(&api_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ApiFile>(&b).ok())
                .filter(|a| a.pid == pid);
            async move {
                match (api, exited) {
                    (Some(api), _) => Some(Ok(api)),
                    (None, Some(status)) => Some(Err(status)),
                    (None, None) => None,
                }
            }
        })
        .await;
        let api = match found {
            Ok(Ok(api)) => api,
            Ok(Err(status)) => bail!(
                "lanchat exited with {status} before serving:\n{}",
                node.log()
            ),
            Err(e) => bail!("{e}\n{}", node.log()),
        };
        node.url = api.url;
        node.token = api.token;
        Ok(node)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `url` + path, e.g. `api("v1/status")`.
    pub fn api_url(&self, path: &str) -> String {
        format!("{}api/{}", self.url, path.trim_start_matches('/'))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .get(self.api_url(path))
            .bearer_auth(&self.token)
            .send()
            .await?)
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let resp = self.get(path).await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    pub async fn put_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
        let resp = self
            .http
            .put(self.api_url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = resp.status();
        Ok((status, resp.json().await?))
    }

    /// Sends SIGKILL — no goodbye, no shutdown of any kind: a crash as the node sees it
    /// (what it wrote to its files stays, as after any process crash) — and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("node already stopped");
        };
        // `Child::kill` is SIGKILL to the child's PID on Unix; the PID cannot have been
        // reused, since the child is only reaped by the `wait` below.
        child.kill().context("kill -KILL")?;
        Ok(child.wait()?)
    }

    /// Whether the process is still running (not stopped, killed or exited).
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_exit_status().is_none()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(pid) = self.pid() else {
            bail!("node already stopped");
        };
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        let status = wait_until(STOP_LIMIT, "the node to exit after SIGTERM", || {
            let s = self.try_exit_status();
            async move { s }
        })
        .await?;
        self.child = None;
        Ok(status)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
