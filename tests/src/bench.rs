//! Helpers the benchmark binaries share (`src/bin/bench_*.rs`): nearest-rank
//! statistics, machine facts, and the iptux baseline (IP Messenger under Xvfb in a
//! namespace host of a test LAN).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::netns::{Host, NetNs};
use crate::wait_until;

/// The IPMsg port iptux listens on, and answers to (it replies to port 2425 of the
/// sender, whatever the source port was).
pub const IPMSG_PORT: u16 = 2425;

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`): the machine is shared.
pub fn load_average() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    json!(v)
}

/// Nearest-rank percentile of an ascending slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summary(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    json!({
        "n": v.len(),
        "min": v.first().copied().unwrap_or(f64::NAN),
        "p50": percentile(&v, 50.0),
        "p90": percentile(&v, 90.0),
        "p99": percentile(&v, 99.0),
        "max": v.last().copied().unwrap_or(f64::NAN),
    })
}

pub fn fmt_summary(v: &Value, unit: &str) -> String {
    let g = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    format!(
        "n={} min {:.3} p50 {:.3} p90 {:.3} p99 {:.3} max {:.3} {unit}",
        v.get("n").and_then(Value::as_u64).unwrap_or(0),
        g("min"),
        g("p50"),
        g("p90"),
        g("p99"),
        g("max")
    )
}

/// CPU, core count and kernel of this machine, for the results.
pub fn machine() -> anyhow::Result<Value> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|r| r.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Ok(json!({ "nproc": nproc, "cpu": model, "kernel": kernel.trim() }))
}

/// `api.json` of a running host: its API URL and token.
pub fn api_of(host: &Host) -> anyhow::Result<(String, String)> {
    let v: Value = serde_json::from_slice(&std::fs::read(host.data_dir.join("api.json"))?)?;
    let url = v["url"].as_str().context("api.json url")?.to_string();
    let token = v["token"].as_str().context("api.json token")?.to_string();
    Ok((url, token))
}

/// A process started by the benchmark outside the harness (Xvfb, iptux), killed by PID.
pub struct Owned {
    child: Child,
    what: &'static str,
}

impl Owned {
    pub fn spawn(mut cmd: Command, what: &'static str) -> anyhow::Result<Owned> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(Owned { child, what })
    }

    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.what)),
            _ => None,
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A display number no X server on this machine uses (lock files are global, even if
/// the abstract sockets are per network namespace).
pub fn free_display() -> anyhow::Result<u32> {
    (150..250)
        .find(|d| {
            !Path::new(&format!("/tmp/.X{d}-lock")).exists()
                && !Path::new(&format!("/tmp/.X11-unix/X{d}")).exists()
        })
        .context("no free X display number in :150–:249")
}

pub fn netns_command(ns: &NetNs, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, program])
        .stdin(Stdio::null());
    cmd
}

/// Starts Xvfb and iptux in `ns`; returns them once iptux listens on UDP 2425.
pub async fn start_iptux(ns: &NetNs, dir: &Path) -> anyhow::Result<(Owned, Owned)> {
    which("iptux").context(
        "iptux is not installed (Debian package `iptux`; scripts/bench-discovery.sh installs it)",
    )?;
    which("Xvfb").context("Xvfb is not installed (Debian package `xvfb`)")?;
    let display = free_display()?;
    let home = dir.join("iptux-home");
    std::fs::create_dir_all(&home)?;
    let log = std::fs::File::create(dir.join("iptux.log"))?;
    let mut x = netns_command(ns, "Xvfb");
    x.args([
        &format!(":{display}"),
        "-nolisten",
        "tcp",
        "-screen",
        "0",
        "800x600x24",
    ])
    .stdout(log.try_clone()?)
    .stderr(log.try_clone()?);
    let mut xvfb = Owned::spawn(x, "Xvfb")?;
    let sock = PathBuf::from(format!("/tmp/.X11-unix/X{display}"));
    wait_until(Duration::from_secs(15), "Xvfb's socket", || {
        let ready = sock.exists();
        async move { ready.then_some(()) }
    })
    .await?;
    if let Some(e) = xvfb.exited() {
        bail!("{e}");
    }
    let mut i = netns_command(ns, "env");
    i.arg(format!("DISPLAY=:{display}"))
        .arg(format!("HOME={}", home.display()))
        .arg("NO_AT_BRIDGE=1")
        .arg("iptux")
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut iptux = Owned::spawn(i, "iptux")?;
    let ns_name = ns.name.clone();
    let up = wait_until(Duration::from_secs(20), "iptux to bind UDP 2425", || {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns_name, "ss", "-lun"])
            .output();
        async move {
            let out = out.ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains(":2425 ")
                .then_some(())
        }
    })
    .await;
    if let Some(e) = iptux.exited() {
        bail!(
            "{e}: {}",
            std::fs::read_to_string(dir.join("iptux.log")).unwrap_or_default()
        );
    }
    up?;
    Ok((xvfb, iptux))
}

pub fn which(program: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} not found in PATH"))
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of [`cpu_ticks`].
pub fn clk_tck() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK")
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("/proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// Empties a UDP socket's receive queue (answers that came too late for the last round).
pub fn drain_udp(sock: &std::net::UdpSocket, buf: &mut [u8]) -> anyhow::Result<()> {
    sock.set_nonblocking(true)?;
    for _ in 0..1000 {
        if sock.recv_from(buf).is_err() {
            break;
        }
    }
    sock.set_nonblocking(false)?;
    Ok(())
}

/// Waits (at most `limit` after `t`) for a datagram that `wanted` accepts; its arrival
/// in ms after `t`, or `None` when none came in time.
pub fn wait_udp_answer(
    sock: &std::net::UdpSocket,
    buf: &mut [u8],
    t: std::time::Instant,
    limit: Duration,
    wanted: impl Fn(&[u8]) -> bool,
) -> anyhow::Result<Option<f64>> {
    for _ in 0..1000 {
        let left = limit.saturating_sub(t.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv_from(buf) {
            Ok((n, _)) => {
                let at = t.elapsed();
                if buf.get(..n).is_some_and(&wanted) {
                    return Ok(Some(at.as_secs_f64() * 1e3));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}
