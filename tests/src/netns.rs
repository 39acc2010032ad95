//! A real LAN built from Linux network namespaces, for discovery tests.
//!
//! ```text
//!   ns lct-<pid>-<n>-sw          ns lct-<pid>-<n>-h1        ns lct-<pid>-<n>-h2
//!  ┌──────────────────────┐     ┌──────────────────┐       ┌──────────────────┐
//!  │ br0 ── h1 ───────────┼─veth┼─ eth0 198.51.100.1│       │                  │
//!  │     └─ h2 ───────────┼─veth┼──────────────────┼───────┼─ eth0 198.51.100.2│
//!  └──────────────────────┘     └──────────────────┘       └──────────────────┘
//! ```
//!
//! One [`Lan`] is one switch: a bridge in a namespace of its own (so the host's own
//! firewall and bridge-netfilter settings never see the test traffic), and one namespace
//! per host with a veth into the bridge, an address in 198.51.100.0/24 (TEST-NET-2, a
//! documentation range) and its own loopback. Both ends of every veth are created inside
//! namespaces, so nothing of a test ever appears in the root namespace except the
//! namespace names, which carry the test process's PID and a counter: tests in parallel
//! threads and test binaries in parallel processes never collide.
//!
//! Dropping the `Lan` kills (by PID) every process started through it, then deletes its
//! namespaces, which removes their veths, bridge and nftables tables with them. Leftovers
//! of a crashed earlier run are removed on first use, but only those whose owner PID is
//! dead.
//!
//! Traffic only ever goes to loopback or to the hosts of the `Lan` the test made.
//! A [`Host`] runs a real `lanchat serve` in its namespace and talks to its local API from
//! inside the namespace (with `curl`, since the API is on the namespace's own loopback).

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command as AsyncCommand;

use crate::{artifacts_dir, lanchat_bin, wait_until};

/// Every namespace a `Lan` makes starts with this, then `<owner pid>-<counter>-`.
pub const PREFIX: &str = "lct-";
/// The LAN's subnet: TEST-NET-2 (RFC 5737), never routed anywhere.
pub const SUBNET: &str = "198.51.100.0/24";
const SUBNET_BASE: [u8; 3] = [198, 51, 100];
pub const BROADCAST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 255);
/// The subnet of a [`Lan::new_wide`] LAN, for more hosts than a /24 holds (the 256-host
/// benchmark): 198.18.0.0/23, inside RFC 2544's range for benchmarking network devices
/// (198.18.0.0/15), which is never routed either. Only ever inside the test namespaces.
pub const WIDE_SUBNET: &str = "198.18.0.0/23";
/// The node's default discovery port (`lan_mesh.discovery_port`).
pub const DISCOVERY_PORT: u16 = 19124;

/// A node has this long to write `api.json` (a cold debug build on two busy cores).
const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(15);
/// Any one `ip`/`nft`/`curl` command; they take milliseconds.
const COMMAND_LIMIT: Duration = Duration::from_secs(10);
/// `curl -m`: the API answers in milliseconds; a hung node fails the call, not the test run.
const CURL_MAX_SECS: &str = "5";

static NEXT_LAN: AtomicU32 = AtomicU32::new(0);

// ---------------------------------------------------------------------------------------
// Commands

/// Runs a short command to completion (bounded), failing with its stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let deadline = Instant::now() + COMMAND_LIMIT;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{program} {}` did not finish in {COMMAND_LIMIT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// `nft -f -` with a script, inside a namespace.
fn nft_in(ns: &str, script: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start nft (is the `nftables` package installed?)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let deadline = Instant::now() + COMMAND_LIMIT;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("nft did not finish in {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft in {ns} failed: {}\nscript:\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn effective_uid() -> anyhow::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .context("cannot read the effective uid from /proc/self/status")
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes namespaces with our prefix whose owner process is gone (a crashed or killed
/// earlier run), after killing whatever still runs inside them. Namespaces of live
/// owners (other test binaries running now) are left alone. Once per process.
fn remove_stale_namespaces() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(list) = ip(&["netns", "list"]) else {
            return;
        };
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(owner) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if owner == std::process::id() || pid_alive(owner) {
                continue;
            }
            if let Ok(pids) = ip(&["netns", "pids", name]) {
                for pid in pids.split_whitespace() {
                    let _ = run("kill", &["-KILL", pid]);
                }
            }
            let _ = ip(&["netns", "del", name]);
        }
    });
}

/// Removes data directories and logs of earlier runs (named after namespaces, so they
/// carry their owner's PID) from `dir`, leaving those of test processes still running.
fn remove_stale_files(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if owner.is_some_and(|pid| pid != std::process::id() && pid_alive(pid)) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            // Another test process cleaning up at the same moment.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other.with_context(|| format!("cannot remove {}", path.display()))?,
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The LAN

/// Processes started in a `Lan`'s namespaces, by PID; all are killed when it drops.
#[derive(Default)]
struct Processes(Mutex<HashMap<u32, Child>>);

impl Processes {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Child>> {
        // A panic while holding the lock leaves the map intact; keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, child: Child) -> u32 {
        let pid = child.id();
        self.lock().insert(pid, child);
        pid
    }

    /// `Some(status)` once the process has exited (and then forgets it).
    fn try_exit(&self, pid: u32) -> Option<ExitStatus> {
        let mut map = self.lock();
        let status = map.get_mut(&pid).and_then(|c| c.try_wait().ok().flatten());
        if status.is_some() {
            map.remove(&pid);
        }
        status
    }

    fn kill(&self, pid: u32) {
        if let Some(mut child) = self.lock().remove(&pid) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn kill_all(&self) {
        for (_, mut child) in self.lock().drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct LanShared {
    /// `lct-<pid>-<n>`
    name: String,
    switch: String,
    dir: PathBuf,
    namespaces: Mutex<Vec<String>>,
    next_host: AtomicU32,
    processes: Processes,
    /// On [`WIDE_SUBNET`] instead of [`SUBNET`].
    wide: bool,
}

impl Drop for LanShared {
    fn drop(&mut self) {
        self.processes.kill_all();
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in namespaces.iter().rev() {
            // Deleting a namespace removes its interfaces (the veth pair goes with either
            // end) and its nftables tables.
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

/// One switch and the hosts plugged into it. See the module docs.
pub struct Lan {
    shared: Arc<LanShared>,
}

/// A namespace host on a [`Lan`]: no processes of its own, just an address.
#[derive(Debug, Clone)]
pub struct NetNs {
    /// The namespace's name (`ip netns exec <name> …`).
    pub name: String,
    /// The host's address on the LAN.
    pub ip: Ipv4Addr,
    /// The switch-side end of its veth (in the switch namespace).
    port: String,
    switch: String,
}

/// What a loss rule drops, for [`Lan::set_loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// This percentage (0–100) of incoming UDP datagrams to `port`, chosen at random.
    Random { percent: u8, port: u16 },
    /// Every incoming link-layer broadcast (unicast still passes).
    AllBroadcast,
}

impl Lan {
    /// Creates the switch. `test` names the directory (under `target/test-artifacts/`)
    /// that holds the hosts' data directories and logs for a person to look at.
    ///
    /// Fails (never skips) when not root or when namespaces cannot be created.
    pub fn new(test: &str) -> anyhow::Result<Lan> {
        Lan::create(test, false)
    }

    /// A LAN on [`WIDE_SUBNET`] (up to 500 hosts) instead of [`SUBNET`]; its nodes need
    /// `allowed_subnets: [WIDE_SUBNET]` (see [`Lan::subnet`]).
    pub fn new_wide(test: &str) -> anyhow::Result<Lan> {
        Lan::create(test, true)
    }

    /// This LAN's subnet: [`SUBNET`] or [`WIDE_SUBNET`].
    pub fn subnet(&self) -> &'static str {
        if self.shared.wide {
            WIDE_SUBNET
        } else {
            SUBNET
        }
    }

    fn create(test: &str, wide: bool) -> anyhow::Result<Lan> {
        let euid = effective_uid()?;
        if euid != 0 {
            bail!(
                "network-namespace tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN to create \
                 namespaces, veths and bridges); running as uid {euid}. Run them as root, \
                 e.g. in the CI container or with `sudo -E cargo test -p lanchat-tests --test lan_discovery`."
            );
        }
        remove_stale_namespaces();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT_LAN.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{name}-sw");
        let dir = artifacts_dir(&format!("lan_discovery/{test}"))?;
        remove_stale_files(&dir)?;
        ip(&["netns", "add", &switch]).context(
            "`ip netns add` was refused: these tests need network namespaces \
             (root, and a kernel and container that allow them)",
        )?;
        let shared = Arc::new(LanShared {
            name,
            switch: switch.clone(),
            dir,
            namespaces: Mutex::new(Vec::new()),
            next_host: AtomicU32::new(1),
            processes: Processes::default(),
            wide,
        });
        ip(&["-n", &switch, "link", "set", "lo", "up"])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        // No STP and no forwarding delay: a port forwards as soon as it is up.
        ip(&[
            "-n",
            &switch,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        Ok(Lan { shared })
    }

    /// The directory for this test's files (data directories, logs).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Plugs a new namespace host into the switch; `role` is for people reading
    /// `ip netns list` (`a`, `attacker`, …).
    pub fn add_ns(&self, role: &str) -> anyhow::Result<NetNs> {
        let index = self.shared.next_host.fetch_add(1, Ordering::Relaxed);
        let (addr, prefix) = if self.shared.wide {
            let index = u16::try_from(index)
                .ok()
                .filter(|i| (1..=500).contains(i))
                .context("at most 500 hosts on one wide test LAN")?;
            let [hi, lo] = index.to_be_bytes();
            (Ipv4Addr::new(198, 18, hi, lo), 23)
        } else {
            let octet = u8::try_from(index)
                .ok()
                .filter(|o| (1..=250).contains(o))
                .context("at most 250 hosts on one test LAN")?;
            (
                Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], SUBNET_BASE[2], octet),
                24,
            )
        };
        let role: String = role
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let name = format!("{}-h{index}-{role}", self.shared.name);
        let switch = &self.shared.switch;
        let port = format!("h{index}");
        ip(&["netns", "add", &name])?;
        self.shared
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        // Both ends are born inside namespaces: nothing appears in the root namespace.
        ip(&[
            "-n", switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &name,
        ])?;
        ip(&["-n", switch, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", switch, "link", "set", &port, "up"])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{addr}/{prefix}"),
            "brd",
            "+",
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
        Ok(NetNs {
            name,
            ip: addr,
            port,
            switch: switch.clone(),
        })
    }

    /// Adds a namespace host and starts a `lanchat serve` node in it.
    pub async fn add_host(&self, role: &str, settings: NodeSettings) -> anyhow::Result<Host> {
        let ns = self.add_ns(role)?;
        self.start_host(ns, role, settings).await
    }

    /// Starts a `lanchat serve` node in a namespace host made with [`Lan::add_ns`] (for
    /// setting up its network first), with a fresh node id; returns once its API is up.
    /// One host per name with the default settings, returned once every host lists
    /// every other one (within `settle`).
    pub async fn add_hosts_listing_each_other(
        &self,
        names: &[&str],
        settle: Duration,
    ) -> anyhow::Result<Vec<Host>> {
        let mut hosts = Vec::new();
        for name in names {
            hosts.push(self.add_host(name, NodeSettings::default()).await?);
        }
        for h in &hosts {
            for other in hosts.iter().filter(|o| o.node_id != h.node_id) {
                wait_until(settle, "the hosts to list each other", || async {
                    h.lists(other).await.ok()?.then_some(())
                })
                .await?;
            }
        }
        Ok(hosts)
    }

    pub async fn start_host(
        &self,
        ns: NetNs,
        role: &str,
        settings: NodeSettings,
    ) -> anyhow::Result<Host> {
        self.start_host_with_env(ns, role, settings, &[]).await
    }

    /// [`Lan::start_host`] with extra environment from the node's first start on (e.g.
    /// [`crate::faketime_env`]: its whole process runs with a shifted clock).
    pub async fn start_host_with_env(
        &self,
        ns: NetNs,
        role: &str,
        settings: NodeSettings,
        env: &[(String, String)],
    ) -> anyhow::Result<Host> {
        let data_dir = self.shared.dir.join(&ns.name);
        let mut host = Host {
            ns,
            lan: Arc::clone(&self.shared),
            data_dir,
            node_id: crate::keyed_node_id()?,
            display_name: role.to_string(),
            pid: None,
            api: None,
            env: env.to_vec(),
        };
        host.write_settings(&settings)?;
        host.start().await?;
        Ok(host)
    }

    /// Starts a node in `ns` on a copy of `from`'s data directory (settings, keys,
    /// database): a cloned computer, the same identity. Stop `from` first, so the copy
    /// is of a closed database.
    pub async fn start_copy(&self, ns: NetNs, role: &str, from: &Host) -> anyhow::Result<Host> {
        let data_dir = self.shared.dir.join(&ns.name);
        copy_dir(&from.data_dir, &data_dir)?;
        let mut host = Host {
            ns,
            lan: Arc::clone(&self.shared),
            data_dir,
            node_id: from.node_id.clone(),
            display_name: role.to_string(),
            pid: None,
            api: None,
            env: from.env.clone(),
        };
        host.start().await?;
        Ok(host)
    }

    /// Starts a node in `ns` on a copy of the data directory `fixture` (its key file and
    /// database; its settings' node id is kept, the rest of `settings` is this LAN's):
    /// a node of an earlier version being upgraded. `node_id` is then the id the node
    /// runs with (read from its status), which may differ from the fixture's.
    pub async fn start_from_fixture(
        &self,
        ns: NetNs,
        role: &str,
        fixture: &Path,
        settings: NodeSettings,
        env: &[(String, String)],
    ) -> anyhow::Result<Host> {
        let data_dir = self.shared.dir.join(&ns.name);
        copy_dir(fixture, &data_dir)?;
        let stored: Value = serde_json::from_slice(&std::fs::read(fixture.join("settings.json"))?)?;
        let old_id = stored["lan_mesh"]["node_id"]
            .as_str()
            .context("the fixture's settings have no node id")?
            .to_string();
        let mut host = Host {
            ns,
            lan: Arc::clone(&self.shared),
            data_dir,
            node_id: old_id,
            display_name: role.to_string(),
            pid: None,
            api: None,
            env: env.to_vec(),
        };
        host.write_settings(&settings)?;
        host.start().await?;
        let status = host.status().await?;
        host.node_id = status["node_id"]
            .as_str()
            .context("the status has no node id")?
            .to_string();
        Ok(host)
    }

    /// Starts `tcpdump` on the switch's ports (every frame between the hosts), writing
    /// `<file>.pcap` in this LAN's directory; `filter` is a pcap filter such as
    /// `tcp port 19123`. Returns once the capture is listening.
    pub async fn capture(&self, file: &str, filter: &str) -> anyhow::Result<WireCapture> {
        let path = self.shared.dir.join(format!("{file}.pcap"));
        let _ = std::fs::remove_file(&path);
        let log = std::fs::File::create(self.shared.dir.join(format!("{file}.tcpdump.log")))?;
        let mut args = vec![
            "netns",
            "exec",
            &self.shared.switch,
            "tcpdump",
            "-i",
            "any",
            "--immediate-mode",
            "-U",
            "-n",
            "-w",
        ];
        let path_text = path.to_string_lossy().into_owned();
        args.push(&path_text);
        args.extend(filter.split_whitespace());
        // Immediate mode: without it the kernel hands packets over in blocks (up to a
        // second late), and a capture stopped soon after the traffic would miss them.
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start tcpdump (is it installed? scripts/setup.sh installs it)")?;
        let pid = self.shared.processes.insert(child);
        let log_path = self.shared.dir.join(format!("{file}.tcpdump.log"));
        // tcpdump says "listening on br0" once its socket is open.
        wait_until(COMMAND_LIMIT, "tcpdump to listen", || {
            let ready =
                std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("listening on"));
            let exited = self.shared.processes.try_exit(pid);
            async move {
                match exited {
                    Some(status) => Some(Err(anyhow!("tcpdump exited with {status}"))),
                    None => ready.then_some(Ok(())),
                }
            }
        })
        .await??;
        Ok(WireCapture {
            pid,
            path,
            lan: Arc::clone(&self.shared),
        })
    }

    /// `lct-<pid>-<n>`: every namespace of this LAN starts with it.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Cuts a host off the switch (its switch port down) or plugs it back in.
    pub fn set_partitioned(&self, ns: &NetNs, cut: bool) -> anyhow::Result<()> {
        ns.set_partitioned(cut)
    }

    /// Replaces the host's loss rule (an nftables table `lct_loss` in its namespace,
    /// input hook, so it drops what arrives at the host after the switch).
    pub fn set_loss(&self, ns: &NetNs, loss: Loss) -> anyhow::Result<()> {
        ns.set_loss(loss)
    }

    /// Removes the host's loss rule.
    pub fn clear_loss(&self, ns: &NetNs) -> anyhow::Result<()> {
        ns.clear_loss()
    }
}

impl fmt::Debug for Lan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lan")
            .field("name", &self.shared.name)
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl NetNs {
    /// `ip netns exec <ns> program args…`, ready to run.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> AsyncCommand {
        let mut cmd = AsyncCommand::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `program args…` in the namespace (a test tool that prints one line), for at
    /// most 30 s: its stdout, trimmed, or an error with its stderr.
    pub async fn output_of(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        const LIMIT: Duration = Duration::from_secs(30);
        let out = tokio::time::timeout(LIMIT, self.command(program).args(args).output())
            .await
            .with_context(|| format!("{program} {args:?} ran longer than {LIMIT:?}"))??;
        anyhow::ensure!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs `python3 -c script args…` in the namespace, bounded by `limit`; its stdout.
    pub async fn python(
        &self,
        script: &str,
        args: &[&str],
        limit: Duration,
    ) -> anyhow::Result<String> {
        let mut cmd = self.command("python3");
        cmd.arg("-c").arg(script).args(args);
        let out = tokio::time::timeout(limit, cmd.output())
            .await
            .map_err(|_| anyhow!("python3 in {} did not finish in {limit:?}", self.name))??;
        if !out.status.success() {
            bail!(
                "python3 in {} failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sends each datagram from this host to `to` (an address on the LAN, or its
    /// broadcast address), from an ephemeral port.
    pub async fn send_udp(
        &self,
        to: Ipv4Addr,
        port: u16,
        datagrams: &[Vec<u8>],
    ) -> anyhow::Result<()> {
        check_lan_destination(to)?;
        let hex: Vec<String> = datagrams.iter().map(|d| hex_encode(d)).collect();
        let mut args = vec![to.to_string(), port.to_string()];
        args.extend(hex);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.python(SEND_SCRIPT, &args, COMMAND_LIMIT).await?;
        Ok(())
    }

    /// Binds `0.0.0.0:port` in this namespace (sharing it, like the node does) and
    /// returns once the socket is bound; the listener then collects datagrams.
    pub async fn listen_udp(
        &self,
        port: u16,
        filter: Capture,
        limit: Duration,
    ) -> anyhow::Result<UdpListener> {
        let mut cmd = self.command("python3");
        let source = filter
            .from
            .map_or_else(|| "any".to_string(), |ip| ip.to_string());
        let kinds = if filter.kinds.is_empty() {
            "any".to_string()
        } else {
            filter
                .kinds
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        cmd.arg("-c")
            .arg(RECV_SCRIPT)
            .arg(port.to_string())
            .arg(source)
            .arg(kinds)
            .arg(filter.count.to_string())
            .arg(format!("{:.3}", limit.as_secs_f64()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start python3")?;
        let stdout = child.stdout.take().context("python3 stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(COMMAND_LIMIT, lines.next_line())
            .await
            .map_err(|_| anyhow!("the UDP listener in {} did not start", self.name))??;
        if first.as_deref() != Some("ready") {
            let err = match child.stderr.take() {
                Some(mut e) => {
                    let mut s = String::new();
                    let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut s).await;
                    s
                }
                None => String::new(),
            };
            bail!("the UDP listener in {} failed: {first:?} {err}", self.name);
        }
        Ok(UdpListener {
            child,
            lines,
            limit: limit + COMMAND_LIMIT,
        })
    }

    /// Gives this host one more address on the LAN (`198.51.100.<octet>`), for a test
    /// that needs several source IPs on one host (an attacker spreading its traffic
    /// over addresses). Use octets above the hosts' own (`add_ns` counts up from 1):
    /// 100–250 are never handed out to a host by the small LANs (under 100 hosts) that
    /// use this. Removed with the namespace.
    pub fn add_address(&self, octet: u8) -> anyhow::Result<Ipv4Addr> {
        anyhow::ensure!(
            (100..=250).contains(&octet),
            "extra addresses are 198.51.100.100–250, not .{octet}"
        );
        anyhow::ensure!(
            self.ip.octets()[..3] == SUBNET_BASE,
            "{} is not on {SUBNET}",
            self.name
        );
        let addr = Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], SUBNET_BASE[2], octet);
        ip(&[
            "-n",
            &self.name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        Ok(addr)
    }

    /// Tells `other` once and for all that `addrs` (this host's, from
    /// [`NetNs::add_address`]) are at this host's hardware address: permanent neighbour
    /// entries, so that `other` never has to find them by ARP. An attack test spreads
    /// its traffic over tens of addresses; whether each one gets resolved under that
    /// very flood (its ARP requests and replies queued behind the flood's packets), or
    /// fits in the kernel's neighbour table, which is shared by every namespace of the
    /// machine, would otherwise decide how many of them reach the node at all.
    pub fn introduce_addresses(&self, other: &NetNs, addrs: &[Ipv4Addr]) -> anyhow::Result<()> {
        let link = ip(&["-n", &self.name, "-br", "link", "show", "dev", "eth0"])?;
        let mac = link
            .split_whitespace()
            .nth(2)
            .filter(|m| m.len() == 17 && m.matches(':').count() == 5)
            .with_context(|| format!("no hardware address in {link:?}"))?
            .to_string();
        for addr in addrs {
            ip(&[
                "-n",
                &other.name,
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }

    /// The kernel's counters of this namespace's TCP listen queues: connections it
    /// completed or dropped because a listener's accept queue was full
    /// (`ListenOverflows`, `ListenDrops`) and SYN cookies it sent meanwhile. A listener
    /// that accepts too slowly for a flood shows here, not in the node's counters.
    pub async fn listen_queue_counters(&self) -> anyhow::Result<String> {
        const WANTED: [&str; 3] = ["ListenOverflows", "ListenDrops", "SyncookiesSent"];
        let netstat = self.output_of("cat", &["/proc/net/netstat"]).await?;
        let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) = lines
            .next()
            .zip(lines.next())
            .context("no TcpExt lines in /proc/net/netstat")?;
        Ok(names
            .split_whitespace()
            .zip(values.split_whitespace())
            .filter(|(n, _)| WANTED.contains(n))
            .map(|(n, v)| format!("{n} {v}"))
            .collect::<Vec<_>>()
            .join(", "))
    }

    pub fn set_partitioned(&self, cut: bool) -> anyhow::Result<()> {
        let state = if cut { "down" } else { "up" };
        ip(&["-n", &self.switch, "link", "set", &self.port, state])?;
        Ok(())
    }

    pub fn set_loss(&self, loss: Loss) -> anyhow::Result<()> {
        let rule = match loss {
            Loss::Random { percent, port } => {
                if percent > 100 {
                    bail!("loss of {percent} %");
                }
                format!("udp dport {port} numgen random mod 100 < {percent} counter drop")
            }
            Loss::AllBroadcast => "meta pkttype broadcast counter drop".to_string(),
        };
        // `add` then `delete` makes the replacement work whether or not a table exists.
        let script = format!(
            "add table inet lct_loss\ndelete table inet lct_loss\n\
             table inet lct_loss {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    {rule}\n  }}\n}}\n"
        );
        nft_in(&self.name, &script)
    }

    /// How many packets the host's loss rule has dropped so far (0 without a rule).
    pub fn loss_drops(&self) -> anyhow::Result<u64> {
        let Ok(table) = ip(&[
            "netns", "exec", &self.name, "nft", "list", "table", "inet", "lct_loss",
        ]) else {
            return Ok(0);
        };
        let mut total = 0;
        for part in table.split("counter packets ").skip(1) {
            let n = part.split_whitespace().next().unwrap_or("0");
            total += n
                .parse::<u64>()
                .with_context(|| format!("nft counter {n:?}"))?;
        }
        Ok(total)
    }

    pub fn clear_loss(&self) -> anyhow::Result<()> {
        nft_in(
            &self.name,
            "add table inet lct_loss\ndelete table inet lct_loss\n",
        )
    }
}

/// A running `tcpdump` on the switch, from [`Lan::capture`].
pub struct WireCapture {
    pid: u32,
    path: PathBuf,
    lan: Arc<LanShared>,
}

impl WireCapture {
    /// Stops the capture (SIGINT, so the file is complete) and returns the pcap bytes.
    pub async fn finish(self) -> anyhow::Result<Vec<u8>> {
        run("kill", &["-INT", &self.pid.to_string()])?;
        let lan = Arc::clone(&self.lan);
        let pid = self.pid;
        wait_until(STOP_LIMIT, "tcpdump to exit", || {
            let s = lan.processes.try_exit(pid);
            async move { s }
        })
        .await?;
        Ok(std::fs::read(&self.path)?)
    }
}

/// Which datagrams a [`UdpListener`] keeps.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Only from this source address.
    pub from: Option<Ipv4Addr>,
    /// Only discovery packets (`LNCH` magic) of these kinds (byte 5); empty = anything.
    pub kinds: Vec<u8>,
    /// Stop after this many (at least 1).
    pub count: usize,
}

/// A UDP receiver running in a namespace (python3), started by [`NetNs::listen_udp`].
pub struct UdpListener {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    limit: Duration,
}

/// One received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub from: Ipv4Addr,
    pub bytes: Vec<u8>,
}

impl UdpListener {
    /// Everything kept until the count was reached or the listener's time ran out.
    pub async fn finish(mut self) -> anyhow::Result<Vec<Datagram>> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + self.limit;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .map_err(|_| anyhow!("the UDP listener did not end in {:?}", self.limit))??;
            let Some(line) = line else { break };
            let (from, hex) = line
                .split_once(' ')
                .with_context(|| format!("listener output {line:?}"))?;
            got.push(Datagram {
                from: from.parse()?,
                bytes: hex_decode(hex)?,
            });
        }
        let status = tokio::time::timeout_at(deadline, self.child.wait())
            .await
            .map_err(|_| anyhow!("the UDP listener did not exit"))??;
        if !status.success() {
            bail!("the UDP listener failed: {status}");
        }
        Ok(got)
    }
}

/// `argv`: port, source ip or `any`, kinds (`1,2`) or `any`, count, seconds.
/// Prints `ready`, then `<source ip> <hex>` per kept datagram.
const RECV_SCRIPT: &str = r#"
import socket, sys, time
port, source, kinds, count, limit = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
kinds = None if kinds == "any" else {int(k) for k in kinds.split(",")}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("0.0.0.0", port))
print("ready", flush=True)
deadline = time.monotonic() + limit
got = 0
while got < count:
    left = deadline - time.monotonic()
    if left <= 0:
        break
    s.settimeout(left)
    try:
        data, src = s.recvfrom(65535)
    except socket.timeout:
        break
    if source != "any" and src[0] != source:
        continue
    if kinds is not None and not (len(data) > 5 and data[:4] == b"LNCH" and data[5] in kinds):
        continue
    print(src[0], data.hex(), flush=True)
    got += 1
"#;

/// `argv`: destination ip, port, hex datagrams…
const SEND_SCRIPT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for h in sys.argv[3:]:
    s.sendto(bytes.fromhex(h), (sys.argv[1], int(sys.argv[2])))
"#;

/// The hard rule: test traffic goes to the test LAN only.
fn check_lan_destination(to: Ipv4Addr) -> anyhow::Result<()> {
    let o = to.octets();
    if o[..3] != SUBNET_BASE {
        bail!("{to} is not on the test LAN {SUBNET}: refusing to send");
    }
    Ok(())
}

pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hex_decode(hex: &str) -> anyhow::Result<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        bail!("odd hex length");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .with_context(|| format!("bad hex at {i}"))
        })
        .collect()
}

/// Copies a data directory (files only: a node's directory has no subdirectories that
/// matter), leaving out the running node's `api.json`.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() && entry.file_name() != "api.json" {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// lanchat nodes

/// The `lan_mesh` block written to `settings.json` before a node's first start.
/// Only keys of the node's settings contract are written (it rejects unknown keys).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub heartbeat_interval_sec: u32,
    pub peer_ttl_sec: u32,
    /// Empty = open LAN (no tag).
    pub shared_secret: String,
    pub allowed_subnets: Vec<String>,
    pub blocked_subnets: Vec<String>,
    pub blocked_peers: Vec<String>,
}

/// The secret the test LANs use unless a test says otherwise.
pub const TEST_SECRET: &str = "s3cret";

impl Default for NodeSettings {
    /// Short timings so scenarios take seconds: heartbeat 1 s, TTL 3 s (= 3 heartbeats,
    /// the product's ratio), the test subnet allowed, the test secret.
    fn default() -> Self {
        NodeSettings {
            heartbeat_interval_sec: 1,
            peer_ttl_sec: 3,
            shared_secret: TEST_SECRET.to_string(),
            allowed_subnets: vec![SUBNET.to_string()],
            blocked_subnets: Vec::new(),
            blocked_peers: Vec::new(),
        }
    }
}

impl NodeSettings {
    pub fn with_secret(secret: &str) -> Self {
        NodeSettings {
            shared_secret: secret.to_string(),
            ..NodeSettings::default()
        }
    }

    fn document(&self, node_id: &str, display_name: &str) -> Value {
        json!({ "lan_mesh": {
            "enabled": true,
            "node_id": node_id,
            "display_name": display_name,
            "discovery_port": DISCOVERY_PORT,
            "heartbeat_interval_sec": self.heartbeat_interval_sec,
            "peer_ttl_sec": self.peer_ttl_sec,
            "allowed_subnets": self.allowed_subnets,
            "blocked_subnets": self.blocked_subnets,
            "blocked_peers": self.blocked_peers,
            "shared_secret": self.shared_secret,
        } })
    }
}

#[derive(Debug, Clone, Deserialize)]
struct ApiFile {
    url: String,
    token: String,
    pid: u32,
}

/// One entry of `GET /api/v1/peers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PeerView {
    pub peer_id: String,
    pub display_name: String,
    pub address: Option<String>,
    pub online: bool,
    pub last_seen_at: Option<u64>,
    pub blocked: bool,
    /// Its clock minus this node's, once measured (discovery).
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
}

/// An HTTP method for [`Host::call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// A namespace host running `lanchat serve`. The process is killed when the `Host` or
/// its `Lan` drops; the data directory stays (under the `Lan`'s directory) for restarts
/// and for people reading logs.
pub struct Host {
    pub ns: NetNs,
    lan: Arc<LanShared>,
    pub data_dir: PathBuf,
    /// Its node id: derived from the keys written beside its settings.
    pub node_id: String,
    pub display_name: String,
    pid: Option<u32>,
    api: Option<ApiFile>,
    /// Extra environment for the node's next start (test hooks).
    env: Vec<(String, String)>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("ns", &self.ns.name)
            .field("ip", &self.ns.ip)
            .field("node_id", &self.node_id)
            .field("pid", &self.pid)
            .finish()
    }
}

impl Host {
    fn write_settings(&self, settings: &NodeSettings) -> anyhow::Result<()> {
        let doc = settings.document(&self.node_id, &self.display_name);
        crate::write_settings(&self.data_dir, &doc)
    }

    /// Sets an environment variable for the node's next start (e.g. a test hook such as
    /// `LANCHAT_RETRY_FIRST_MS`, or [`crate::faketime_env`]'s); restart the node for it
    /// to take effect.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// The node's stdout and stderr over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The host's address on the LAN.
    pub fn ip(&self) -> Ipv4Addr {
        self.ns.ip
    }

    /// The lanchat PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Starts (or restarts, keeping the data directory) the node and waits until it has
    /// written `api.json` with its own PID.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.pid.is_some() {
            bail!("{} is already running", self.display_name);
        }
        let bin = lanchat_bin()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        // `ip netns exec` execs the program in place: the child's PID is lanchat's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns.name])
            .arg(&bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--api-addr", "127.0.0.1:0"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {} in {}", bin.display(), self.ns.name))?;
        let pid = self.lan.processes.insert(child);
        self.pid = Some(pid);
        self.api = None;
        let api_path = self.data_dir.join("api.json");
        let lan = Arc::clone(&self.lan);
        let found = wait_until(START_LIMIT, "the node's api.json", || {
            let exited = lan.processes.try_exit(pid);
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
        match found {
            Ok(Ok(api)) => {
                self.api = Some(api);
                Ok(())
            }
            Ok(Err(status)) => {
                self.pid = None;
                bail!(
                    "{} exited with {status} before serving:\n{}",
                    self.display_name,
                    self.log()
                )
            }
            Err(e) => bail!("{}: {e}\n{}", self.display_name, self.log()),
        }
    }

    /// SIGTERM (a clean stop: the node says goodbye), then waits for the exit.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.terminate()?;
        self.wait_exit().await
    }

    /// Sends SIGTERM and returns at once (see [`Host::wait_exit`]).
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.pid.context("the node is not running")?;
        run("kill", &["-TERM", &pid.to_string()])?;
        Ok(())
    }

    /// Waits (bounded) for the node to exit after [`Host::terminate`].
    pub async fn wait_exit(&mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.pid.context("the node is not running")?;
        let lan = Arc::clone(&self.lan);
        let status = wait_until(STOP_LIMIT, "the node to exit after SIGTERM", || {
            let s = lan.processes.try_exit(pid);
            async move { s }
        })
        .await
        .with_context(|| self.log())?;
        self.pid = None;
        self.api = None;
        Ok(status)
    }

    /// SIGKILL: the node vanishes without a goodbye.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let pid = self.pid.take().context("the node is not running")?;
        self.api = None;
        self.lan.processes.kill(pid);
        Ok(())
    }

    /// Clean stop, then start with the same data directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.start().await
    }

    /// Calls the node's local API from inside its namespace; `(HTTP status, JSON body)`
    /// (`Value::Null` for an empty body). `path` is under `/api/`, e.g. `v1/peers`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(body) = body {
            args.extend(
                ["-H", "Content-Type: application/json", "--data-binary"]
                    .map(std::ffi::OsString::from),
            );
            args.push(serde_json::to_string(body)?.into());
        }
        let (code, body) = self
            .curl(method, path, &args, CURL_MAX_SECS, COMMAND_LIMIT)
            .await?;
        let json = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body)
                .with_context(|| format!("{} {path}: {code}: not JSON: {body}", method.as_str()))?
        };
        Ok((code, json))
    }

    /// Sends the file at `file` (a path on this machine, which the namespace shares) to
    /// `conversation` through `POST …/files?name=` (`name` already URL-encoded); the
    /// answer's status and JSON. Bounded by `limit`.
    pub async fn upload_file(
        &self,
        conversation: &str,
        query: &str,
        file: &Path,
        limit: Duration,
    ) -> anyhow::Result<(u16, Value)> {
        // `-T` streams the file (`--data-binary @` would read it all into memory).
        let args = [
            "-H".into(),
            "Content-Type: application/octet-stream".into(),
            "-T".into(),
            file.as_os_str().to_owned(),
        ];
        let path = format!("v1/conversations/{conversation}/files?{query}");
        let secs = limit.as_secs().max(1).to_string();
        let (code, body) = self.curl(Method::Post, &path, &args, &secs, limit).await?;
        Ok((code, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    /// `GET /api/v1/files/{file_id}` into `dest`; the HTTP status.
    pub async fn download_file(
        &self,
        file_id: &str,
        dest: &Path,
        limit: Duration,
    ) -> anyhow::Result<u16> {
        let args = ["-o".into(), dest.as_os_str().to_owned()];
        let path = format!("v1/files/{file_id}");
        let secs = limit.as_secs().max(1).to_string();
        let (code, _) = self.curl(Method::Get, &path, &args, &secs, limit).await?;
        Ok(code)
    }

    /// Runs curl against the node's API in its namespace, the token through stdin;
    /// `(HTTP status, body printed)`.
    async fn curl(
        &self,
        method: Method,
        path: &str,
        extra: &[std::ffi::OsString],
        max_secs: &str,
        limit: Duration,
    ) -> anyhow::Result<(u16, String)> {
        let api = self.api.as_ref().context("the node is not running")?;
        let url = format!("{}api/{}", api.url, path.trim_start_matches('/'));
        let mut cmd = self.ns.command("curl");
        cmd.args([
            "-sS",
            "-m",
            max_secs,
            "-w",
            "\n%{http_code}",
            "-X",
            method.as_str(),
        ])
        // The token goes through stdin (`-H @-`), never the command line `ps` shows.
        .args(["-H", "@-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd.args(extra);
        cmd.arg(&url);
        let mut child = cmd.spawn().context("cannot run curl (is it installed?)")?;
        let header = format!("Authorization: Bearer {}\n", api.token);
        let mut stdin = child.stdin.take().context("curl stdin")?;
        tokio::io::AsyncWriteExt::write_all(&mut stdin, header.as_bytes()).await?;
        drop(stdin);
        let out = tokio::time::timeout(limit + Duration::from_secs(5), child.wait_with_output())
            .await
            .map_err(|_| anyhow!("curl {url} did not finish"))??;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "{} {url} on {}: curl failed ({}): {}",
                method.as_str(),
                self.display_name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let (body, code) = text
            .rsplit_once('\n')
            .context("curl printed no status code")?;
        let code: u16 = code.trim().parse().context("curl status code")?;
        Ok((code, body.to_string()))
    }

    /// A call that must answer `expect`; its body.
    pub async fn call_expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expect: u16,
    ) -> anyhow::Result<Value> {
        let (code, json) = self.call(method, path, body).await?;
        if code != expect {
            bail!(
                "{} {path} on {}: expected {expect}, got {code}: {json}",
                method.as_str(),
                self.display_name
            );
        }
        Ok(json)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call_expect(Method::Get, path, None, 200).await
    }

    /// The id of this node's DM with `with`.
    pub fn dm_with(&self, with: &Host) -> String {
        format!("dm:lan:{}", with.node_id)
    }

    /// Sends `text` to `to` as a DM (the API must take it: `201`); the stored message.
    pub async fn send_dm(&self, to: &Host, text: &str) -> anyhow::Result<Value> {
        let path = format!("v1/conversations/{}/messages", self.dm_with(to));
        let body = serde_json::json!({ "text": text });
        self.call_expect(Method::Post, &path, Some(&body), 201)
            .await
    }

    /// `GET /api/v1/peers` (blocked peers left out, as the node does by default).
    pub async fn peers(&self) -> anyhow::Result<Vec<PeerView>> {
        let v = self.get("v1/peers").await?;
        serde_json::from_value(v.clone())
            .with_context(|| format!("peers of {}: {v}", self.display_name))
    }

    /// `GET /api/v1/peers?include_blocked=true`.
    pub async fn all_peers(&self) -> anyhow::Result<Vec<PeerView>> {
        let v = self.get("v1/peers?include_blocked=true").await?;
        serde_json::from_value(v.clone())
            .with_context(|| format!("peers of {}: {v}", self.display_name))
    }

    /// The ids of the peers this node lists as online.
    pub async fn online_peer_ids(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .peers()
            .await?
            .into_iter()
            .filter(|p| p.online)
            .map(|p| p.peer_id)
            .collect())
    }

    /// "This node lists `other`": `other`'s id is in its peer list, online.
    pub async fn lists(&self, other: &Host) -> anyhow::Result<bool> {
        Ok(self.online_peer_ids().await?.contains(&other.node_id))
    }

    pub async fn status(&self) -> anyhow::Result<Value> {
        self.get("v1/status").await
    }

    /// `status.discovery.<name>`: one drop/traffic counter (0 when absent or null).
    pub async fn counter(&self, name: &str) -> anyhow::Result<u64> {
        Ok(self
            .counters()
            .await?
            .get(name)
            .and_then(Value::as_u64)
            .unwrap_or(0))
    }

    /// `status.transport.<name>`: one link/frame counter (0 when absent or null).
    pub async fn transport_counter(&self, name: &str) -> anyhow::Result<u64> {
        let status = self.status().await?;
        Ok(status["transport"][name].as_u64().unwrap_or(0))
    }

    /// `status.discovery` (fails when the mesh reports no discovery block).
    pub async fn counters(&self) -> anyhow::Result<serde_json::Map<String, Value>> {
        let status = self.status().await?;
        match status.get("discovery") {
            Some(Value::Object(m)) => Ok(m.clone()),
            _ => bail!(
                "{} reports no discovery counters: {status}",
                self.display_name
            ),
        }
    }

    /// Waits until the node's mesh reports `running`.
    pub async fn wait_mesh_running(&self, limit: Duration) -> anyhow::Result<()> {
        let what = format!("{}'s mesh to run", self.display_name);
        let r = wait_until(limit, &what, || async {
            let s = self.status().await.ok()?;
            (s.get("mesh_state").and_then(Value::as_str) == Some("running")).then_some(())
        })
        .await;
        if r.is_err() {
            let last = self
                .status()
                .await
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            return r.with_context(|| format!("last status: {last}\n{}", self.log()));
        }
        r
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            self.lan.processes.kill(pid);
        }
    }
}
