//! Harness for workspace-level tests: start real `lanchat` processes and talk to them
//! only through their local API; drive a real Chromium over WebDriver.
//!
//! Every process a test starts is ended by PID when its handle drops; every wait is a
//! bounded `wait_until`, never a bare sleep standing in for an assertion.

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
