//! Big namespace LANs (issue 13): start a hundred or more `lanchat serve` hosts at once and
//! watch all of them cheaply from this one process.
//!
//! [`crate::netns::Host::call`] runs `ip netns exec … curl` per request: fine for a few
//! hosts, but 128 hosts polled every second would spend more CPU on curl than the nodes
//! spend on discovery. Here a TCP connection to each node's API is made **inside the
//! host's namespace** (a short-lived thread `setns`es into it, connects, and ends; the
//! socket stays in that namespace) and then kept: one keep-alive HTTP connection and one
//! event WebSocket per node, all in this process.
//!
//! The kernel's own view of each host comes from `/proc/<node pid>/net/…`, which shows
//! the namespace of that process: UDP counters (`snmp`), the discovery socket's queue and
//! drop count (`udp`), the interface counters (`dev`). The switch's ports are read with
//! one `ip -s -j link` in the switch namespace.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::netns::{Host, Lan, NetNs, NodeSettings};

/// Any one API request; the node answers in milliseconds even when busy.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// Largest API response accepted (a peer list of 256 peers is ~100 KB).
const MAX_BODY: usize = 16 << 20;

// ---------------------------------------------------------------------------------------
// Connections made inside a namespace

/// Connects to `addr` from inside the network namespace `ns` (`/run/netns/<ns>`). The
/// connecting thread enters the namespace and ends; the socket stays in it.
pub fn connect_in_netns(ns: &str, addr: SocketAddr) -> anyhow::Result<std::net::TcpStream> {
    let path = format!("/run/netns/{ns}");
    let handle = std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || -> anyhow::Result<std::net::TcpStream> {
            let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .with_context(|| format!("setns into {path}"))?;
            let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("connect to {addr} in {path}"))?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })?;
    handle
        .join()
        .map_err(|_| anyhow!("the namespace connect thread panicked"))?
}

async fn connect_async(ns: &str, addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let ns = ns.to_string();
    let std_stream = tokio::task::spawn_blocking(move || connect_in_netns(&ns, addr)).await??;
    std_stream.set_nonblocking(true)?;
    Ok(TcpStream::from_std(std_stream)?)
}

/// Where a host's API is: its namespace, `127.0.0.1:port` and the token (`api.json`).
#[derive(Debug, Clone)]
pub struct ApiTarget {
    pub ns: String,
    pub addr: SocketAddr,
    pub token: String,
}

impl ApiTarget {
    pub fn of(host: &Host) -> anyhow::Result<ApiTarget> {
        let v: Value = serde_json::from_slice(&std::fs::read(host.data_dir.join("api.json"))?)?;
        let url = v["url"].as_str().context("api.json url")?;
        let hostport = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let addr: SocketAddr = hostport
            .parse()
            .with_context(|| format!("api.json url {url}"))?;
        let token = v["token"].as_str().context("api.json token")?.to_string();
        Ok(ApiTarget {
            ns: host.ns.name.clone(),
            addr,
            token,
        })
    }
}

/// One keep-alive HTTP/1.1 connection to a node's API (GET only: all a watcher needs).
pub struct ApiConn {
    target: ApiTarget,
    conn: Option<BufReader<TcpStream>>,
}

impl ApiConn {
    pub fn new(target: ApiTarget) -> ApiConn {
        ApiConn { target, conn: None }
    }

    /// `GET /api/<path>` → the JSON body of a 200. One reconnect on a broken connection.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<Value> {
        let mut last = None;
        for _ in 0..2 {
            match tokio::time::timeout(REQUEST_LIMIT, self.get_once(path)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(anyhow!("no answer in {REQUEST_LIMIT:?}")),
            }
            self.conn = None;
        }
        Err(last.unwrap_or_else(|| anyhow!("no attempt")))
            .with_context(|| format!("GET /api/{path} in {}", self.target.ns))
    }

    async fn get_once(&mut self, path: &str) -> anyhow::Result<Value> {
        if self.conn.is_none() {
            let stream = connect_async(&self.target.ns, self.target.addr).await?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().context("no connection")?;
        let request = format!(
            "GET /api/{} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\r\n",
            path.trim_start_matches('/'),
            self.target.addr,
            self.target.token
        );
        conn.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        conn.read_line(&mut line).await?;
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("status line {line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        for _ in 0..100 {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                match k.as_str() {
                    "content-length" => length = Some(v.parse()?),
                    "transfer-encoding" => chunked = v.contains("chunked"),
                    "connection" => close = v.contains("close"),
                    _ => {}
                }
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            for _ in 0..100_000 {
                line.clear();
                conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("chunk size {line:?}"))?;
                if body.len() + size > MAX_BODY {
                    bail!("response over {MAX_BODY} bytes");
                }
                let mut chunk = vec![0u8; size + 2];
                conn.read_exact(&mut chunk).await?;
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            let n = length.context("response without a length")?;
            if n > MAX_BODY {
                bail!("response of {n} bytes");
            }
            let mut body = vec![0u8; n];
            conn.read_exact(&mut body).await?;
            body
        };
        if close {
            self.conn = None;
        }
        if code != 200 {
            bail!("{code}: {}", String::from_utf8_lossy(&body));
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

// ---------------------------------------------------------------------------------------
// Peer events

/// `peer.online` / `peer.offline` events one node pushed since the watch began.
#[derive(Debug, Default, Clone)]
pub struct PeerEvents {
    pub online: u64,
    pub offline: u64,
    /// `(when, peer id, reason)` of every `peer.offline`.
    pub offline_log: Vec<(Instant, String, String)>,
    /// Frames that were not JSON events (should stay 0).
    pub unparsed: u64,
    /// Set when the WebSocket ended (the node stopped, or an error).
    pub ended: Option<String>,
    pub resyncs: u64,
}

/// A node's event WebSocket, recorded by a task of its own.
pub struct EventWatch {
    events: Arc<Mutex<PeerEvents>>,
    task: JoinHandle<()>,
}

impl EventWatch {
    pub async fn start(target: &ApiTarget) -> anyhow::Result<EventWatch> {
        let stream = connect_async(&target.ns, target.addr).await?;
        let mut request = format!("ws://{}/api/v1/events", target.addr).into_client_request()?;
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {}", target.token).parse()?);
        let (mut socket, _) = tokio::time::timeout(
            REQUEST_LIMIT,
            tokio_tungstenite::client_async(request, stream),
        )
        .await
        .map_err(|_| anyhow!("event socket in {}: no handshake", target.ns))??;
        let events = Arc::new(Mutex::new(PeerEvents::default()));
        let shared = Arc::clone(&events);
        let task = tokio::spawn(async move {
            let lock = || shared.lock().unwrap_or_else(|p| p.into_inner());
            let ended = loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(v) = serde_json::from_str::<Value>(&text) else {
                            lock().unparsed += 1;
                            continue;
                        };
                        let mut e = lock();
                        match v["type"].as_str() {
                            Some("peer.online") => e.online += 1,
                            Some("peer.offline") => {
                                e.offline += 1;
                                let id = v["peer"]["peer_id"].as_str().unwrap_or("?").to_string();
                                let why = v["reason"].as_str().unwrap_or("?").to_string();
                                e.offline_log.push((Instant::now(), id, why));
                            }
                            Some("resync") => e.resyncs += 1,
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "closed".to_string(),
                }
            };
            lock().ended = Some(ended);
        });
        Ok(EventWatch { events, task })
    }

    fn lock(&self) -> MutexGuard<'_, PeerEvents> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> PeerEvents {
        self.lock().clone()
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Kernel and process counters

/// The `Udp:` line of `/proc/<pid>/net/snmp` (the namespace of `pid`), by field name:
/// `InDatagrams`, `NoPorts`, `InErrors`, `OutDatagrams`, `RcvbufErrors`, `SndbufErrors`,
/// `InCsumErrors`, `IgnoredMulti`, `MemErrors`.
pub fn udp_snmp(pid: u32) -> anyhow::Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/snmp"))?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let names = udp.next().context("no Udp header in snmp")?;
    let values = udp.next().context("no Udp values in snmp")?;
    let mut out = BTreeMap::new();
    for (k, v) in names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
    {
        out.insert(k.to_string(), v.parse()?);
    }
    Ok(out)
}

/// The discovery socket(s) bound to `port` in `/proc/<pid>/net/udp`: (summed `drops`,
/// largest `rx_queue` in bytes at this moment).
pub fn udp_socket(pid: u32, port: u16) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/udp"))?;
    let want = format!(":{port:04X}");
    let (mut drops, mut queue) = (0u64, 0u64);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1).is_some_and(|local| local.ends_with(&want)) {
            drops += f.get(12).and_then(|d| d.parse().ok()).unwrap_or(0);
            let rx = f
                .get(4)
                .and_then(|q| q.split_once(':'))
                .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok())
                .unwrap_or(0);
            queue = queue.max(rx);
        }
    }
    Ok((drops, queue))
}

/// `eth0` in `/proc/<pid>/net/dev`: (rx packets, rx dropped, tx packets, tx dropped).
pub fn eth0_counters(pid: u32) -> anyhow::Result<[u64; 4]> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("eth0:"))
        .context("no eth0")?;
    let f: Vec<u64> = line
        .split_once(':')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop …
    Ok([
        f.get(1).copied().unwrap_or(0),
        f.get(3).copied().unwrap_or(0),
        f.get(9).copied().unwrap_or(0),
        f.get(11).copied().unwrap_or(0),
    ])
}

/// `/proc/net/softnet_stat` summed over CPUs (machine-wide, every namespace):
/// (processed, dropped because a CPU's backlog was over `netdev_max_backlog`, squeezed).
pub fn softnet() -> anyhow::Result<[u64; 3]> {
    let text = std::fs::read_to_string("/proc/net/softnet_stat")?;
    let mut sum = [0u64; 3];
    for line in text.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|x| u64::from_str_radix(x, 16).unwrap_or(0))
            .collect();
        for (i, s) in sum.iter_mut().enumerate() {
            *s += f.get(i).copied().unwrap_or(0);
        }
    }
    Ok(sum)
}

/// `/proc/net/stat/arp_cache`: the kernel's ARP table, which is **one table for all
/// namespaces** (its `gc_thresh*` limits too). `entries` is the current count; the others
/// are summed over CPUs: `res_failed`, `forced_gc_runs`, `unresolved_discards`,
/// `table_fulls`, …
pub fn arp_cache() -> anyhow::Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string("/proc/net/stat/arp_cache")?;
    let mut lines = text.lines();
    let names: Vec<&str> = lines
        .next()
        .context("arp_cache header")?
        .split_whitespace()
        .collect();
    let mut out = BTreeMap::new();
    for line in lines {
        for (k, v) in names.iter().zip(line.split_whitespace()) {
            let v = u64::from_str_radix(v, 16).unwrap_or(0);
            let e = out.entry((*k).to_string()).or_insert(0);
            if *k == "entries" {
                *e = v;
            } else {
                *e += v;
            }
        }
    }
    Ok(out)
}

/// The switch's ports (`ip -s -j link` in the switch namespace), summed:
/// `rx_dropped`, `tx_dropped`, `rx_packets`, `tx_packets` over every port and `br0`.
pub fn switch_counters(lan: &Lan) -> anyhow::Result<BTreeMap<String, u64>> {
    let sw = format!("{}-sw", lan.name());
    let out = std::process::Command::new("ip")
        .args(["-n", &sw, "-s", "-j", "link", "show"])
        .stdin(std::process::Stdio::null())
        .output()
        .context("ip -s -j link")?;
    if !out.status.success() {
        bail!(
            "ip -n {sw} -s link: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let links: Value = serde_json::from_slice(&out.stdout)?;
    let mut sum = BTreeMap::new();
    for link in links.as_array().into_iter().flatten() {
        for dir in ["rx", "tx"] {
            for k in ["packets", "dropped", "errors"] {
                let v = link["stats64"][dir][k].as_u64().unwrap_or(0);
                *sum.entry(format!("{dir}_{k}")).or_insert(0) += v;
            }
        }
    }
    Ok(sum)
}

/// Memory of a process: (RSS kB from `status`, PSS kB from `smaps_rollup`, threads).
pub fn memory_kb(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let rss = field(&status, "VmRSS:");
    let threads = field(&status, "Threads:");
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let pss = field(&rollup, "Pss:");
    Ok((rss, pss, threads))
}

/// `MemAvailable` of the machine, kB.
pub fn mem_available_kb() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("MemAvailable")
}

// ---------------------------------------------------------------------------------------
// Starting many hosts

/// How many nodes start at the same moment. Why not all: 256 node processes started at
/// once on a two-core machine pushed its load to ~15 and one of them missed the
/// 30 s limit for writing its `api.json` — a start-up race of the lab, not of the LAN
/// (real desktops start over minutes, each on its own CPU).
pub const STARTS_AT_ONCE: usize = 16;

/// Plugs `n` namespace hosts into `lan` (one after the other: `ip` commands are quick),
/// then starts a node in each, [`STARTS_AT_ONCE`] at a time, each start waiting for its
/// own `api.json`. Returns the hosts in order (`<prefix>0`, `<prefix>1`, …) and when the
/// last node had written its `api.json` (= "the last node started"), from which the
/// measurements count.
pub async fn start_hosts(
    lan: &Lan,
    n: usize,
    prefix: &str,
    settings: &NodeSettings,
) -> anyhow::Result<(Vec<Host>, Instant)> {
    use futures_util::{StreamExt, TryStreamExt};
    let mut nss: Vec<(NetNs, String)> = Vec::with_capacity(n);
    for i in 0..n {
        let role = format!("{prefix}{i}");
        nss.push((lan.add_ns(&role)?, role));
    }
    let all: Vec<NetNs> = nss.iter().map(|(ns, _)| ns.clone()).collect();
    static_neighbours(&all, broadcast_of(lan.subnet())?)?;
    let hosts: Vec<Host> = futures_util::stream::iter(nss)
        .map(|(ns, role)| async move { lan.start_host(ns, &role, settings.clone()).await })
        .buffered(STARTS_AT_ONCE)
        .try_collect()
        .await?;
    Ok((hosts, Instant::now()))
}

/// The broadcast address of a test LAN's subnet (`a.b.c.d/len`).
pub fn broadcast_of(subnet: &str) -> anyhow::Result<Ipv4Addr> {
    let (addr, len) = subnet.split_once('/').context("subnet without a prefix")?;
    let addr: Ipv4Addr = addr.parse()?;
    let len: u32 = len.parse()?;
    anyhow::ensure!(len <= 32, "prefix /{len}");
    let host_bits = u32::MAX.checked_shr(len).unwrap_or(0);
    Ok(Ipv4Addr::from(u32::from(addr) | host_bits))
}

/// Gives every namespace a static (`PERMANENT`) neighbour entry for every other host and
/// for the LAN's broadcast address.
///
/// Why: the kernel's ARP table is **one table for all namespaces**, limited by the
/// machine-wide `net.ipv4.neigh.default.gc_thresh3` (1024). A LAN of 128 namespaces needs
/// ~128 × 128 entries (every peer, and the broadcast address, which needs an entry too),
/// so creating one fails over and over; the kernel then drops the datagram and UDP
/// reports success (counted only as `SndbufErrors`). Measured: 84 % of 128 nodes' sends
/// lost that way, ARP `table_fulls` rising in step. A real office PC has a table of its
/// own and never gets there. Permanent entries are exempt from that limit and from
/// garbage collection, so the lab LAN behaves like a LAN of separate machines — without
/// changing any machine-wide setting. One `ip -batch` per namespace.
pub fn static_neighbours(hosts: &[NetNs], broadcast: Ipv4Addr) -> anyhow::Result<()> {
    use std::io::Write;
    let mut macs = Vec::with_capacity(hosts.len());
    for h in hosts {
        let out = std::process::Command::new("ip")
            .args(["-n", &h.name, "-j", "link", "show", "eth0"])
            .stdin(std::process::Stdio::null())
            .output()?;
        let v: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("ip link in {}", h.name))?;
        let mac = v[0]["address"]
            .as_str()
            .with_context(|| format!("no MAC of eth0 in {}", h.name))?
            .to_string();
        macs.push(mac);
    }
    for h in hosts {
        let mut script =
            format!("neigh replace {broadcast} lladdr ff:ff:ff:ff:ff:ff dev eth0 nud permanent\n");
        for (other, mac) in hosts.iter().zip(&macs) {
            if other.name != h.name {
                script.push_str(&format!(
                    "neigh replace {} lladdr {mac} dev eth0 nud permanent\n",
                    other.ip
                ));
            }
        }
        let mut child = std::process::Command::new("ip")
            .args(["-n", &h.name, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("ip stdin")?
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "static neighbours in {}: {}",
                h.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// One API connection and one event watch per host.
pub struct Watch {
    pub apis: Vec<ApiConn>,
    pub events: Vec<EventWatch>,
}

impl Watch {
    pub async fn start(hosts: &[Host]) -> anyhow::Result<Watch> {
        let mut apis = Vec::with_capacity(hosts.len());
        let mut events = Vec::with_capacity(hosts.len());
        for h in hosts {
            let target = ApiTarget::of(h)?;
            events.push(EventWatch::start(&target).await?);
            apis.push(ApiConn::new(target));
        }
        Ok(Watch { apis, events })
    }

    /// How many peers each node lists online (`peers_online` of `GET /api/v1/status`
    /// is the same number; the peer list is read so a missing peer can be named).
    pub async fn online_ids(&mut self) -> Vec<anyhow::Result<Vec<String>>> {
        let mut out = Vec::with_capacity(self.apis.len());
        for api in &mut self.apis {
            out.push(api.get("v1/peers").await.map(|v| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|p| p["online"].as_bool() == Some(true))
                            .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            }));
        }
        out
    }

    /// `status.discovery` of every node.
    pub async fn discovery(&mut self) -> Vec<anyhow::Result<Value>> {
        let mut out = Vec::with_capacity(self.apis.len());
        for api in &mut self.apis {
            out.push(api.get("v1/status").await.map(|s| s["discovery"].clone()));
        }
        out
    }

    pub fn offline_events(&self) -> Vec<u64> {
        self.events.iter().map(|e| e.snapshot().offline).collect()
    }
}

// ---------------------------------------------------------------------------------------
// One look at the whole LAN

/// Every node's and every namespace's counters at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// `discovery.peers_online` per node (`None`: the API did not answer).
    pub listed: Vec<Option<u64>>,
    /// `status.discovery` per node (`Null` when the API did not answer).
    pub discovery: Vec<Value>,
    /// The `Udp:` line of `/proc/<pid>/net/snmp` per node's namespace.
    pub kernel: Vec<BTreeMap<String, u64>>,
    /// The discovery socket per node: (kernel drop count, receive queue bytes now).
    pub socket: Vec<(u64, u64)>,
    /// `eth0` per node: rx packets, rx dropped, tx packets, tx dropped.
    pub eth0: Vec<[u64; 4]>,
    /// `peer.offline` events per node since its watch began.
    pub offline_events: Vec<u64>,
    /// The switch's ports summed.
    pub switch: BTreeMap<String, u64>,
    /// Machine-wide `softnet_stat`: processed, dropped, squeezed.
    pub softnet: [u64; 3],
    /// Machine-wide ARP table statistics ([`arp_cache`]).
    pub arp: BTreeMap<String, u64>,
    pub load: Value,
}

/// The discovery counters summed in the one-line report, in this order.
pub const NODE_KEYS: [&str; 7] = [
    "sent",
    "send_errors",
    "accepted",
    "rate_limited",
    "stale",
    "replayed",
    "malformed",
];
/// The kernel UDP counters summed in the one-line report, in this order.
pub const KERNEL_KEYS: [&str; 6] = [
    "OutDatagrams",
    "SndbufErrors",
    "InDatagrams",
    "RcvbufErrors",
    "InErrors",
    "NoPorts",
];

impl Sample {
    pub async fn take(watch: &mut Watch, hosts: &[Host], lan: &Lan, port: u16) -> Sample {
        let discovery: Vec<Value> = watch
            .discovery()
            .await
            .into_iter()
            .map(|r| r.unwrap_or(Value::Null))
            .collect();
        let listed = discovery
            .iter()
            .map(|d| d["peers_online"].as_u64())
            .collect();
        let mut kernel = Vec::with_capacity(hosts.len());
        let mut socket = Vec::with_capacity(hosts.len());
        let mut eth0 = Vec::with_capacity(hosts.len());
        for h in hosts {
            let pid = h.pid().unwrap_or(0);
            kernel.push(udp_snmp(pid).unwrap_or_default());
            socket.push(udp_socket(pid, port).unwrap_or_default());
            eth0.push(eth0_counters(pid).unwrap_or_default());
        }
        Sample {
            at: Instant::now(),
            listed,
            discovery,
            kernel,
            socket,
            eth0,
            offline_events: watch.offline_events(),
            switch: switch_counters(lan).unwrap_or_default(),
            softnet: softnet().unwrap_or_default(),
            arp: arp_cache().unwrap_or_default(),
            load: crate::bench::load_average(),
        }
    }

    pub fn node_sum(&self, key: &str) -> u64 {
        self.discovery.iter().filter_map(|d| d[key].as_u64()).sum()
    }

    pub fn kernel_sum(&self, key: &str) -> u64 {
        self.kernel.iter().filter_map(|k| k.get(key)).sum()
    }

    /// Nodes whose listed count is below `want` (or unknown).
    pub fn short(&self, want: u64) -> usize {
        self.listed
            .iter()
            .filter(|l| l.is_none_or(|l| l < want))
            .count()
    }

    /// (min, median, max) of the listed counts (unknown counts as 0).
    pub fn listed_spread(&self) -> (u64, u64, u64) {
        let mut v: Vec<u64> = self.listed.iter().map(|l| l.unwrap_or(0)).collect();
        v.sort_unstable();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        (at(0), at(v.len() / 2), at(v.len().saturating_sub(1)))
    }

    /// One line: listing spread, flaps, node and kernel counters (sums over all hosts).
    pub fn line(&self, since: Instant) -> String {
        let n = self.listed.len() as u64;
        let (min, mid, max) = self.listed_spread();
        let node: Vec<String> = NODE_KEYS
            .iter()
            .map(|k| format!("{k} {}", self.node_sum(k)))
            .collect();
        let kernel: Vec<String> = KERNEL_KEYS
            .iter()
            .map(|k| format!("{k} {}", self.kernel_sum(k)))
            .collect();
        let sock_drops: u64 = self.socket.iter().map(|s| s.0).sum();
        let rxq_max = self.socket.iter().map(|s| s.1).max().unwrap_or(0);
        let eth: [u64; 4] = self.eth0.iter().fold([0; 4], |mut a, e| {
            for (x, y) in a.iter_mut().zip(e) {
                *x += y;
            }
            a
        });
        format!(
            "t={:+7.1}s listed min/p50/max {min}/{mid}/{max} of {} ({} short) | offline events {} | node: {} | kernel: {} sockdrops {sock_drops} rxq_max {rxq_max}B | eth0 rx_drop {} tx_drop {} | switch rx_drop {} tx_drop {} | softnet drop {} squeeze {} | arp entries {} table_fulls {} unresolved_discards {} res_failed {} | load {}",
            signed_secs(self.at, since),
            n.saturating_sub(1),
            self.short(n.saturating_sub(1)),
            self.offline_events.iter().sum::<u64>(),
            node.join(", "),
            kernel.join(", "),
            eth[1],
            eth[3],
            self.switch.get("rx_dropped").copied().unwrap_or(0),
            self.switch.get("tx_dropped").copied().unwrap_or(0),
            self.softnet[1],
            self.softnet[2],
            self.arp.get("entries").copied().unwrap_or(0),
            self.arp.get("table_fulls").copied().unwrap_or(0),
            self.arp.get("unresolved_discards").copied().unwrap_or(0),
            self.arp.get("res_failed").copied().unwrap_or(0),
            self.load,
        )
    }

    /// One line per node: what it lists and its own and its kernel's counters.
    pub fn per_node(&self, hosts: &[Host]) -> String {
        let mut out = String::from(
            "node  listed  sent send_err accepted stale replayed rate_lim | k.out k.sndbuf k.in k.rcvbuf k.inerr sockdrops | offline_ev\n",
        );
        for (i, h) in hosts.iter().enumerate() {
            let d = &self.discovery[i];
            let k = &self.kernel[i];
            let g = |key: &str| d[key].as_u64().map_or("-".to_string(), |v| v.to_string());
            let kk = |key: &str| k.get(key).copied().unwrap_or(0);
            out.push_str(&format!(
                "{:<5} {:>6} {:>5} {:>8} {:>8} {:>5} {:>8} {:>8} | {:>5} {:>8} {:>5} {:>8} {:>7} {:>9} | {}\n",
                h.display_name,
                self.listed[i].map_or("-".to_string(), |v| v.to_string()),
                g("sent"),
                g("send_errors"),
                g("accepted"),
                g("stale"),
                g("replayed"),
                g("rate_limited"),
                kk("OutDatagrams"),
                kk("SndbufErrors"),
                kk("InDatagrams"),
                kk("RcvbufErrors"),
                kk("InErrors"),
                self.socket[i].0,
                self.offline_events[i],
            ));
        }
        out
    }
}

/// `at − since` in seconds, negative when `at` is earlier.
pub fn signed_secs(at: Instant, since: Instant) -> f64 {
    if at >= since {
        (at - since).as_secs_f64()
    } else {
        -(since - at).as_secs_f64()
    }
}
