//! Discovery benchmark of issue 4, on the network-namespace LAN of `lanchat_tests::netns`.
//!
//! ```text
//! bench_discovery [--parts joins,scale]
//!                 [--sizes 2,8,32] [--joins 20] [--idle-secs 60] [--probes 1000]
//!                 [--probe-gap-ms 40] [--poll-ms 25]
//!                 [--scale-sizes 32,64,128,256] [--heartbeat 15] [--ttl 45]
//!                 [--stable-secs 300] [--sample-secs 5] [--converge-secs 60]
//! ```
//!
//! Run as root (namespaces), with `lanchat` built next to this binary (or `LANCHAT_BIN`).
//! `scripts/bench-discovery.sh` is the documented way to run it.
//!
//! 1. **Discovery latency**, per LAN size: a LAN of N `lanchat serve` hosts (default
//!    heartbeat 15 s, TTL 45 s, so only hello/answer matter) meshes; then one host is
//!    stopped (SIGTERM: goodbye, the others list it offline) and started again, `--joins`
//!    times. A join's latency runs from just before the node is spawned to the moment the
//!    last of the other N−1 nodes lists it `online` in `GET /api/v1/peers`. Each observer
//!    is watched by a poller process inside its namespace (this binary, `poll`
//!    subcommand) that keeps one HTTP connection to the node's API and polls every
//!    `--poll-ms`: that is the resolution of the figure.
//! 2. **Idle load** on the largest LAN: `discovery.sent`/`accepted` counters from
//!    `GET /api/v1/status` and utime+stime from `/proc/PID/stat` over `--idle-secs`.
//! 3. **Answer time**: a probe host on the same LAN (this binary, `probe` subcommand,
//!    inside its namespace) alternates a signed lanchat `probe` to one node (encoded with
//!    the real codec, `lan_mesh::discovery::Packet`) and an IPMsg `BR_ENTRY` to `iptux`
//!    (under Xvfb in a namespace host of the same LAN), timing each request → answer.
//! 4. **Scale** (issue 13), per `--scale-sizes`: N hosts spawned at once (LANs over 250
//!    hosts use `netns::WIDE_SUBNET`); the time from the last node's `api.json` until
//!    every node lists every other (`discovery.peers_online`, every node read about
//!    every 0.1 s + one sweep); then `--stable-secs` of membership stability: every node
//!    read every `--sample-secs`, and every node's `peer.offline` events counted (its
//!    event WebSocket is recorded throughout, so a flap between two reads still counts);
//!    discovery packets sent/accepted per host per second (node counters) and the
//!    kernel's UDP datagrams in/out of each namespace; CPU (utime+stime) per node over
//!    the window; RSS and PSS (`/proc/PID/smaps_rollup`) per node; the kernel's UDP
//!    error counters, the switch's drops, softnet drops and the (machine-wide) ARP
//!    table. Every read is made from this process (`lanchat_tests::scale`). Each sample
//!    is printed as one line, so `--parts scale --scale-sizes 128 --heartbeat 5 --ttl 20
//!    --stable-secs 60 --sample-secs 2` is the lab for watching a LAN misbehave.
//!
//! Every process it starts is ended by PID; every loop is bounded; traffic goes only to
//! loopback and to the benchmark's own hosts in 198.51.100.0/24.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use api_types::NodeId;
use lan_mesh::discovery::{InstanceId, Nonce, Packet, PacketKind, UnixMillis};
use lanchat_tests::bench::{
    api_of, clk_tck, cpu_ticks, drain_udp, fmt_summary, machine, start_iptux, summary,
    wait_udp_answer, IPMSG_PORT,
};
use lanchat_tests::netns::{Host, Lan, NodeSettings, DISCOVERY_PORT, SUBNET, TEST_SECRET};
use lanchat_tests::{artifacts_dir, wait_until};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const IPMSG_BR_ENTRY: u32 = 0x1;
const IPMSG_ANSENTRY: u32 = 0x3;
/// How long one probe waits for its answer before counting it lost.
const ANSWER_WAIT: Duration = Duration::from_millis(500);
/// Source ports the lanchat probes rotate over (answers are limited per source address).
const PROBE_PORTS: usize = 8;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("poll") => poll_main(&args[1..]),
        Some("probe") => probe_main(&args[1..]),
        _ => {
            // The node binary is found beside this one (`lanchat_tests::lanchat_bin`),
            // or wherever `LANCHAT_BIN` says.
            let opts = Options::parse(&args)?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(bench(opts))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Options and statistics

#[derive(Debug, Clone)]
struct Options {
    /// Which parts run: `joins` (with `idle` and `answer` on the largest of `sizes`),
    /// `scale`.
    parts: Vec<String>,
    sizes: Vec<usize>,
    joins: usize,
    idle_secs: u64,
    probes: usize,
    probe_gap_ms: u64,
    poll_ms: u64,
    scale: ScaleOptions,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut o = Options {
            parts: vec!["joins".to_string(), "scale".to_string()],
            sizes: vec![2, 8, 32],
            joins: 20,
            idle_secs: 60,
            probes: 1000,
            probe_gap_ms: 40,
            poll_ms: 25,
            scale: ScaleOptions::default(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--sizes" => {
                    o.sizes = value
                        .split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--sizes: comma-separated host counts")?;
                }
                "--joins" => o.joins = value.parse()?,
                "--idle-secs" => o.idle_secs = value.parse()?,
                "--probes" => o.probes = value.parse()?,
                "--probe-gap-ms" => o.probe_gap_ms = value.parse()?,
                "--poll-ms" => o.poll_ms = value.parse()?,
                "--parts" => {
                    o.parts = value.split(',').map(|s| s.trim().to_string()).collect();
                    if let Some(p) = o
                        .parts
                        .iter()
                        .find(|p| !["joins", "scale"].contains(&p.as_str()))
                    {
                        bail!("--parts: joins and/or scale, not {p}");
                    }
                }
                "--scale-sizes" => {
                    o.scale.sizes = value
                        .split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--scale-sizes: comma-separated host counts")?;
                }
                "--heartbeat" => o.scale.heartbeat_sec = value.parse()?,
                "--ttl" => o.scale.ttl_sec = value.parse()?,
                "--stable-secs" => o.scale.stable_secs = value.parse()?,
                "--sample-secs" => o.scale.sample_secs = value.parse()?,
                "--converge-secs" => o.scale.converge_secs = value.parse()?,
                _ => bail!("unknown option {flag}"),
            }
        }
        if o.sizes.iter().any(|&n| !(2..=200).contains(&n)) {
            bail!("--sizes: each LAN needs 2..=200 hosts");
        }
        if o.joins == 0 || o.joins > 1000 || o.probes > 100_000 || o.idle_secs > 3600 {
            bail!("--joins 1..=1000, --probes ≤ 100000, --idle-secs ≤ 3600");
        }
        if o.poll_ms == 0 || o.probe_gap_ms == 0 {
            bail!("--poll-ms and --probe-gap-ms must be positive");
        }
        o.scale.check()?;
        Ok(o)
    }
}

fn unix_nanos() -> anyhow::Result<u128> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())
}

// ---------------------------------------------------------------------------------------
// The benchmark

async fn bench(opts: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut results = json!({
        "options": {
            "sizes": opts.sizes, "joins": opts.joins, "idle_secs": opts.idle_secs,
            "probes": opts.probes, "probe_gap_ms": opts.probe_gap_ms, "poll_ms": opts.poll_ms,
        },
        "machine": machine()?,
        "started_unix": SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    });
    println!("machine: {}", results["machine"]);
    let largest = opts.sizes.iter().copied().max().unwrap_or(2);
    let mut sizes = Vec::new();
    let joins_sizes: &[usize] = if opts.parts.iter().any(|p| p == "joins") {
        &opts.sizes
    } else {
        &[]
    };
    for &n in joins_sizes {
        let lan = Lan::new(&format!("bench_discovery_{n}"))?;
        println!("\n== LAN of {n} hosts ({})", lan.name());
        let hosts = start_mesh(&lan, n).await?;
        let joins = measure_joins(hosts, &opts).await?;
        let (mut entry, hosts) = joins;
        if n == largest {
            entry["idle"] = measure_idle(&hosts, opts.idle_secs).await?;
            if opts.probes > 0 {
                results["answer"] = measure_answers(&lan, &hosts, &opts).await?;
            }
        }
        sizes.push(entry);
        drop(hosts);
        drop(lan);
    }
    results["discovery"] = Value::Array(sizes);
    if opts.parts.iter().any(|p| p == "scale") {
        let mut scale = Vec::new();
        for &n in &opts.scale.sizes {
            scale.push(measure_scale(n, &opts.scale).await?);
            // Written after every size: a 256-host run takes a while.
            results["scale"] = Value::Array(scale.clone());
            let out = artifacts_dir("bench_discovery")?.join("results.json");
            std::fs::write(&out, serde_json::to_vec_pretty(&results)?)?;
        }
    }
    results["elapsed_secs"] = json!(started.elapsed().as_secs_f64());
    let out = artifacts_dir("bench_discovery")?.join("results.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&results)?)?;
    println!("\nresults: {}", out.display());
    Ok(())
}

fn bench_settings() -> NodeSettings {
    NodeSettings {
        // The product's defaults: only hello/answer can make a join fast.
        heartbeat_interval_sec: 15,
        peer_ttl_sec: 45,
        ..NodeSettings::default()
    }
}

/// Starts `n` hosts and waits until every one lists all the others online.
async fn start_mesh(lan: &Lan, n: usize) -> anyhow::Result<Vec<Host>> {
    let t = Instant::now();
    let mut hosts = Vec::with_capacity(n);
    for i in 0..n {
        hosts.push(lan.add_host(&format!("n{i}"), bench_settings()).await?);
    }
    println!("started {n} nodes in {:.1} s", t.elapsed().as_secs_f64());
    for h in &hosts {
        h.wait_mesh_running(Duration::from_secs(30)).await?;
    }
    wait_until(
        Duration::from_secs(60 + 2 * n as u64),
        "the full mesh",
        || async {
            for h in &hosts {
                let online = h.online_peer_ids().await.ok()?;
                let all = hosts
                    .iter()
                    .filter(|o| o.node_id != h.node_id)
                    .all(|o| online.contains(&o.node_id));
                if !all {
                    return None;
                }
            }
            Some(())
        },
    )
    .await?;
    println!("full mesh of {n} after {:.1} s", t.elapsed().as_secs_f64());
    Ok(hosts)
}

/// A `poll` process inside an observer's namespace.
struct Poller {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Poller {
    async fn start(observer: &Host, peer: &str, poll_ms: u64) -> anyhow::Result<Poller> {
        let (url, token) = api_of(observer)?;
        let exe = std::env::current_exe()?;
        let mut cmd = observer.ns.command(&exe);
        cmd.arg("poll")
            .arg(url)
            .arg(peer)
            .arg(poll_ms.to_string())
            .arg("20000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("cannot start the poller")?;
        // The token goes through stdin, never the command line `ps` shows.
        let mut stdin = child.stdin.take().context("poller stdin")?;
        tokio::io::AsyncWriteExt::write_all(&mut stdin, format!("{token}\n").as_bytes()).await?;
        drop(stdin);
        let stdout = child.stdout.take().context("poller stdout")?;
        let lines = BufReader::new(stdout).lines();
        Ok(Poller { child, lines })
    }

    async fn line(&mut self, limit: Duration) -> anyhow::Result<String> {
        tokio::time::timeout(limit, self.lines.next_line())
            .await
            .map_err(|_| anyhow!("the poller said nothing in {limit:?}"))??
            .context("the poller exited")
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // kill_on_drop is set by NetNs::command; be explicit anyway.
        let _ = self.child.start_kill();
    }
}

/// Stops and restarts the last host `opts.joins` times; latencies in ms.
async fn measure_joins(mut hosts: Vec<Host>, opts: &Options) -> anyhow::Result<(Value, Vec<Host>)> {
    let n = hosts.len();
    let mut joiner = hosts.pop().context("no hosts")?;
    let mut join_ms = Vec::new();
    let mut per_observer_ms = Vec::new();
    let mut api_up_ms = Vec::new();
    let mut failed = 0usize;
    for j in 0..opts.joins {
        joiner.stop().await?;
        wait_until(
            Duration::from_secs(60),
            "the others to list the stopped node offline",
            || async {
                for h in &hosts {
                    if h.lists(&joiner).await.ok()? {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await?;
        let mut pollers = Vec::with_capacity(hosts.len());
        for h in &hosts {
            pollers.push(Poller::start(h, &joiner.node_id, opts.poll_ms).await?);
        }
        for p in &mut pollers {
            let l = p.line(Duration::from_secs(20)).await?;
            if l != "ready" {
                bail!("poller: {l}");
            }
        }
        let t0 = unix_nanos()?;
        joiner.start().await?;
        let t_api = unix_nanos()?;
        let mut worst: Option<f64> = None;
        let mut ok = true;
        for p in &mut pollers {
            let l = p.line(Duration::from_secs(30)).await?;
            match l.strip_prefix("seen ") {
                Some(at) => {
                    let at: u128 = at.parse()?;
                    let ms = at.saturating_sub(t0) as f64 / 1e6;
                    per_observer_ms.push(ms);
                    worst = Some(worst.map_or(ms, |w: f64| w.max(ms)));
                }
                None => ok = false,
            }
        }
        drop(pollers);
        api_up_ms.push(t_api.saturating_sub(t0) as f64 / 1e6);
        match (ok, worst) {
            (true, Some(w)) => {
                join_ms.push(w);
                println!("join {j}: all {} others list it after {w:.1} ms", n - 1);
            }
            _ => {
                failed += 1;
                println!("join {j}: not seen by every other node within the poll limit");
            }
        }
        // Let the joiner's hello schedule (+0.25, +1, +3 s) run out before stopping it.
        tokio::time::sleep(Duration::from_millis(3500)).await;
    }
    let entry = json!({
        "hosts": n,
        "joins": opts.joins,
        "failed": failed,
        "join_ms": summary(join_ms.clone()),
        "per_observer_ms": summary(per_observer_ms),
        "api_up_ms": summary(api_up_ms),
        "join_ms_raw": join_ms,
    });
    println!(
        "{n} hosts: join → listed by all others: {}",
        fmt_summary(&entry["join_ms"], "ms")
    );
    println!(
        "{n} hosts: per observer:                {}",
        fmt_summary(&entry["per_observer_ms"], "ms")
    );
    println!(
        "{n} hosts: spawn → api.json written:    {}",
        fmt_summary(&entry["api_up_ms"], "ms")
    );
    hosts.push(joiner);
    Ok((entry, hosts))
}

async fn measure_idle(hosts: &[Host], secs: u64) -> anyhow::Result<Value> {
    println!(
        "idle: {} nodes, settling 5 s, then a {secs} s window",
        hosts.len()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let tck = clk_tck()?;
    let mut before = Vec::new();
    for h in hosts {
        before.push((h.counter("sent").await?, h.counter("accepted").await?));
    }
    let pids: Vec<u32> = hosts
        .iter()
        .map(|h| h.pid().context("a node is not running"))
        .collect::<anyhow::Result<_>>()?;
    let t0 = Instant::now();
    let cpu0: Vec<u64> = pids
        .iter()
        .map(|&p| cpu_ticks(p))
        .collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu1: Vec<u64> = pids
        .iter()
        .map(|&p| cpu_ticks(p))
        .collect::<anyhow::Result<_>>()?;
    let window = t0.elapsed().as_secs_f64();
    let mut sent = Vec::new();
    let mut accepted = Vec::new();
    for (h, (s0, a0)) in hosts.iter().zip(before) {
        sent.push(h.counter("sent").await?.saturating_sub(s0) as f64);
        accepted.push(h.counter("accepted").await?.saturating_sub(a0) as f64);
    }
    let cpu_pct: Vec<f64> = cpu0
        .iter()
        .zip(&cpu1)
        .map(|(a, b)| b.saturating_sub(*a) as f64 / tck / window * 100.0)
        .collect();
    // The counter reads happen outside the CPU window but inside the counter window;
    // they send no packets, so the packet rates use the same window.
    let per_s = |v: &[f64]| v.iter().map(|x| x / window).collect::<Vec<f64>>();
    let total_sent: f64 = sent.iter().sum();
    let cpu_ticks_total: u64 = cpu0
        .iter()
        .zip(&cpu1)
        .map(|(a, b)| b.saturating_sub(*a))
        .sum();
    let v = json!({
        "hosts": hosts.len(),
        "window_secs": window,
        "clk_tck": tck,
        "sent_per_node_per_s": summary(per_s(&sent)),
        "accepted_per_node_per_s": summary(per_s(&accepted)),
        "lan_sent_per_s": total_sent / window,
        "cpu_pct_per_node": summary(cpu_pct.clone()),
        "cpu_pct_mean": cpu_pct.iter().sum::<f64>() / cpu_pct.len().max(1) as f64,
        "cpu_ticks_total": cpu_ticks_total,
    });
    println!(
        "idle sent/node/s:     {}",
        fmt_summary(&v["sent_per_node_per_s"], "pkt/s")
    );
    println!(
        "idle accepted/node/s: {}",
        fmt_summary(&v["accepted_per_node_per_s"], "pkt/s")
    );
    println!("idle LAN total sent:  {:.3} pkt/s", total_sent / window);
    println!(
        "idle CPU/node:        {} (mean {:.4} %, {cpu_ticks_total} ticks in all over {window:.1} s)",
        fmt_summary(&v["cpu_pct_per_node"], "%"),
        v["cpu_pct_mean"].as_f64().unwrap_or(f64::NAN)
    );
    Ok(v)
}

// ---------------------------------------------------------------------------------------
// Answer time: lanchat probe vs iptux BR_ENTRY

async fn measure_answers(lan: &Lan, hosts: &[Host], opts: &Options) -> anyhow::Result<Value> {
    let target = hosts.first().context("no hosts")?;
    let iptux_ns = lan.add_ns("iptux")?;
    let probe_ns = lan.add_ns("probe")?;
    let dir = lan.dir().to_path_buf();
    let iptux = start_iptux(&iptux_ns, &dir).await;
    let (iptux_ip, _procs, iptux_error) = match iptux {
        Ok(p) => (Some(iptux_ns.ip), Some(p), None),
        Err(e) => {
            println!("iptux baseline unavailable: {e:#}");
            (None, None, Some(format!("{e:#}")))
        }
    };
    // Give iptux a moment past binding (its GTK start-up announces itself).
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "answer time: {} probes, one every {} ms, from {} to lanchat {} and iptux {}",
        opts.probes,
        opts.probe_gap_ms,
        probe_ns.ip,
        target.ip(),
        iptux_ip.map_or("-".to_string(), |i| i.to_string())
    );
    let exe = std::env::current_exe()?;
    let mut cmd = probe_ns.command(&exe);
    cmd.arg("probe")
        .arg(target.ip().to_string())
        .arg(&target.node_id)
        .arg(iptux_ip.map_or("-".to_string(), |i| i.to_string()))
        .arg(TEST_SECRET)
        .arg(opts.probes.to_string())
        .arg(opts.probe_gap_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let limit = Duration::from_millis(
        (opts.probes as u64) * (opts.probe_gap_ms + 2 * ANSWER_WAIT.as_millis() as u64) + 30_000,
    );
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| anyhow!("the probe did not finish in {limit:?}"))??;
    if !out.status.success() {
        bail!("the probe failed: {}", out.status);
    }
    let raw: Value = serde_json::from_slice(&out.stdout).context("probe output")?;
    let to_vec = |k: &str| -> Vec<f64> {
        raw[k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let v = json!({
        "probes": opts.probes,
        "gap_ms": opts.probe_gap_ms,
        "probe_source_ports": PROBE_PORTS,
        "lan_hosts": hosts.len(),
        "lanchat_ms": summary(to_vec("lanchat_ms")),
        "lanchat_lost": raw["lanchat_lost"],
        "iptux_ms": summary(to_vec("iptux_ms")),
        "iptux_lost": raw["iptux_lost"],
        "iptux_error": iptux_error,
    });
    println!(
        "lanchat probe → answer: {} (lost {})",
        fmt_summary(&v["lanchat_ms"], "ms"),
        v["lanchat_lost"]
    );
    println!(
        "iptux BR_ENTRY → ANSENTRY: {} (lost {})",
        fmt_summary(&v["iptux_ms"], "ms"),
        v["iptux_lost"]
    );
    Ok(v)
}

// ---------------------------------------------------------------------------------------
// Subcommands run inside a namespace

/// `poll <api url> <peer id> <every ms> <limit ms>`, the API token on stdin: prints `ready` after a
/// first successful `GET /api/v1/peers`, then `seen <unix ns>` the first time the peer is
/// listed online (or `timeout`).
fn poll_main(args: &[String]) -> anyhow::Result<()> {
    let [url, peer, every, limit] = args else {
        bail!("poll <url> <peer> <every ms> <limit ms> (the API token on stdin)");
    };
    let mut token = String::new();
    std::io::stdin().read_line(&mut token)?;
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("poll: no API token on stdin");
    }
    let every = Duration::from_millis(every.parse()?);
    let limit = Duration::from_millis(limit.parse()?);
    let url = format!("{}api/v1/peers", url);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .no_proxy()
                .build()?;
            let online = |v: &Value| {
                v.as_array().is_some_and(|a| {
                    a.iter().any(|p| {
                        p["peer_id"].as_str() == Some(peer.as_str())
                            && p["online"].as_bool() == Some(true)
                    })
                })
            };
            let get = || async {
                let v: Value = client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                anyhow::Ok(v)
            };
            get().await?;
            println!("ready");
            let deadline = Instant::now() + limit;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < deadline {
                tick.tick().await;
                if let Ok(v) = get().await {
                    if online(&v) {
                        println!("seen {}", unix_nanos()?);
                        return Ok(());
                    }
                }
            }
            println!("timeout");
            Ok(())
        })
}

/// `probe <lanchat ip> <lanchat node id> <iptux ip or -> <secret> <count> <gap ms>`:
/// alternates a lanchat probe and an iptux BR_ENTRY every `gap`; prints JSON.
fn probe_main(args: &[String]) -> anyhow::Result<()> {
    let [lanchat_ip, node_id, iptux_ip, secret, count, gap] = args else {
        bail!("probe <lanchat ip> <node id> <iptux ip|-> <secret> <count> <gap ms>");
    };
    let lanchat_ip: Ipv4Addr = lanchat_ip.parse()?;
    let target_id = NodeId::from_str(node_id).map_err(|e| anyhow!("{e}"))?;
    let iptux_ip: Option<Ipv4Addr> = (iptux_ip != "-").then(|| iptux_ip.parse()).transpose()?;
    for ip in std::iter::once(lanchat_ip).chain(iptux_ip) {
        if !SUBNET.starts_with(&format!(
            "{}.{}.{}.",
            ip.octets()[0],
            ip.octets()[1],
            ip.octets()[2]
        )) {
            bail!("{ip} is not on the benchmark LAN {SUBNET}");
        }
    }
    let key = lan_mesh::secret::SharedSecret::derive(secret)?.discovery_key();
    let count: usize = count.parse()?;
    let gap = Duration::from_millis(gap.parse()?);
    let me = NodeId::from_str(&ulid::Ulid::new().to_string()).map_err(|e| anyhow!("{e}"))?;
    let instance = InstanceId(ulid::Ulid::new().0 as u64);

    let lanchat_to = SocketAddr::from((lanchat_ip, lanchat_mesh_port()));
    let sockets: Vec<UdpSocket> = (0..PROBE_PORTS)
        .map(|_| UdpSocket::bind("0.0.0.0:0"))
        .collect::<Result<_, _>>()?;
    // iptux answers to port 2425 of the sender, so the baseline probe sends from it.
    let ipmsg = UdpSocket::bind(("0.0.0.0", IPMSG_PORT))?;

    let mut lanchat_ms = Vec::new();
    let mut iptux_ms = Vec::new();
    let (mut lanchat_lost, mut iptux_lost) = (0usize, 0usize);
    let mut buf = [0u8; 2048];
    for i in 0..count {
        let slot = Instant::now() + gap;
        let lanchat_first = i % 2 == 0;
        for turn in 0..2 {
            if (turn == 0) == lanchat_first {
                let sock = &sockets[i % PROBE_PORTS];
                let packet = Packet {
                    kind: PacketKind::Probe,
                    node_id: me.clone(),
                    instance_id: instance,
                    ts: UnixMillis(
                        u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())
                            .unwrap_or(u64::MAX),
                    ),
                    nonce: Nonce(ulid::Ulid::new().0),
                    listen_port: 9,
                    display_name: "bench-probe".to_string(),
                    public_key: None,
                    // One instance, counting up: each probe is new to the node.
                    seq: Some(u64::try_from(i).unwrap_or(u64::MAX) + 1),
                    presence: None,
                }
                .encode(key.as_ref())
                .map_err(|e| anyhow!("{e}"))?;
                drain_udp(sock, &mut buf)?;
                let t = Instant::now();
                sock.send_to(&packet, lanchat_to)?;
                match wait_udp_answer(sock, &mut buf, t, ANSWER_WAIT, |d| {
                    Packet::decode(d).is_ok_and(|p| {
                        p.packet.kind == PacketKind::Answer && p.packet.node_id == target_id
                    })
                })? {
                    Some(ms) => lanchat_ms.push(ms),
                    None => lanchat_lost += 1,
                }
            } else if let Some(ip) = iptux_ip {
                let packet_no = 100_000 + i;
                let msg = format!("1:{packet_no}:bench:probe:{IPMSG_BR_ENTRY}:bench\0");
                drain_udp(&ipmsg, &mut buf)?;
                let t = Instant::now();
                ipmsg.send_to(msg.as_bytes(), (ip, IPMSG_PORT))?;
                match wait_udp_answer(&ipmsg, &mut buf, t, ANSWER_WAIT, |d| {
                    // `ver:packetno:user:host:command:…`; the mode is the low byte.
                    let text = String::from_utf8_lossy(d);
                    text.split(':')
                        .nth(4)
                        .and_then(|c| c.parse::<u32>().ok())
                        .is_some_and(|c| c & 0xff == IPMSG_ANSENTRY)
                })? {
                    Some(ms) => iptux_ms.push(ms),
                    None => iptux_lost += 1,
                }
            }
        }
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
    }
    println!(
        "{}",
        json!({
            "lanchat_ms": lanchat_ms, "lanchat_lost": lanchat_lost,
            "iptux_ms": iptux_ms, "iptux_lost": iptux_lost,
        })
    );
    Ok(())
}

/// The node's discovery port (the settings the harness writes).
fn lanchat_mesh_port() -> u16 {
    lanchat_tests::netns::DISCOVERY_PORT
}

// ---------------------------------------------------------------------------------------
// Scale: 32 … 256 hosts started together (issue 13)

#[derive(Debug, Clone)]
struct ScaleOptions {
    sizes: Vec<usize>,
    heartbeat_sec: u32,
    ttl_sec: u32,
    /// The membership-stability window after the mesh formed.
    stable_secs: u64,
    /// How often every node is read during the window (and printed).
    sample_secs: u64,
    /// How long after the last start the full mesh may take before it counts as failed
    /// (the window then still runs, to show the flapping).
    converge_secs: u64,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            sizes: vec![32, 64, 128, 256],
            heartbeat_sec: 15,
            ttl_sec: 45,
            stable_secs: 300,
            sample_secs: 5,
            converge_secs: 60,
        }
    }
}

impl ScaleOptions {
    fn check(&self) -> anyhow::Result<()> {
        if self.sizes.iter().any(|&n| !(2..=500).contains(&n)) {
            bail!("--scale-sizes: each LAN needs 2..=500 hosts");
        }
        if self.heartbeat_sec == 0 || self.ttl_sec <= self.heartbeat_sec {
            bail!("--heartbeat must be positive and --ttl larger than it");
        }
        if self.sample_secs == 0 || self.stable_secs > 3600 || self.converge_secs > 600 {
            bail!("--sample-secs ≥ 1, --stable-secs ≤ 3600, --converge-secs ≤ 600");
        }
        Ok(())
    }
}

/// Time to a full mesh after the last node started, membership stability, traffic, CPU
/// and memory per node, and where the kernel counted losses, for one LAN of `n` hosts.
async fn measure_scale(n: usize, o: &ScaleOptions) -> anyhow::Result<Value> {
    use lanchat_tests::scale::{self, Sample, Watch};
    let lan = if n > 250 {
        Lan::new_wide(&format!("bench_scale_{n}"))?
    } else {
        Lan::new(&format!("bench_scale_{n}"))?
    };
    let settings = NodeSettings {
        heartbeat_interval_sec: o.heartbeat_sec,
        peer_ttl_sec: o.ttl_sec,
        allowed_subnets: vec![lan.subnet().to_string()],
        ..NodeSettings::default()
    };
    println!(
        "\n== scale: {n} hosts ({}, {}), heartbeat {} s, TTL {} s",
        lan.name(),
        lan.subnet(),
        o.heartbeat_sec,
        o.ttl_sec
    );
    let mem_before = scale::mem_available_kb()?;
    let softnet0 = scale::softnet()?;
    let t_spawn = Instant::now();
    let (hosts, last_up) = scale::start_hosts(&lan, n, "n", &settings).await?;
    let start_secs = last_up.duration_since(t_spawn).as_secs_f64();
    println!(
        "started {n} nodes in {start_secs:.1} s ({} at a time; until the last api.json)",
        scale::STARTS_AT_ONCE
    );
    let mut watch = Watch::start(&hosts).await?;
    let want = (n - 1) as u64;

    // 1. The full mesh: every node lists every other.
    let mut mesh_at: Option<Instant> = None;
    let mut node_mesh_at: Vec<Option<Instant>> = vec![None; n];
    let converge_limit = Duration::from_secs(o.converge_secs);
    let mut last_print = Instant::now() - Duration::from_secs(10);
    let mut sample = Sample::take(&mut watch, &hosts, &lan, DISCOVERY_PORT).await;
    for _ in 0..100_000 {
        for (i, l) in sample.listed.iter().enumerate() {
            if node_mesh_at[i].is_none() && *l == Some(want) {
                node_mesh_at[i] = Some(sample.at);
            }
        }
        if sample.short(want) == 0 {
            mesh_at = Some(sample.at);
            println!("{}", sample.line(last_up));
            break;
        }
        if sample.at.duration_since(last_up) > converge_limit {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            println!("{}", sample.line(last_up));
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        sample = Sample::take(&mut watch, &hosts, &lan, DISCOVERY_PORT).await;
    }
    let mesh_secs = mesh_at.map(|t| scale::signed_secs(t, last_up));
    match mesh_secs {
        Some(s) => println!("full mesh of {n}: {s:.2} s after the last node started"),
        None => println!(
            "NO full mesh of {n} within {} s of the last start:\n{}",
            o.converge_secs,
            sample.per_node(&hosts)
        ),
    }
    let node_mesh_secs: Vec<f64> = node_mesh_at
        .iter()
        .flatten()
        .map(|t| scale::signed_secs(*t, last_up))
        .collect();

    // 2. Stability: nobody may drop anybody while nobody leaves.
    let pids: Vec<u32> = hosts
        .iter()
        .map(|h| h.pid().context("a node is not running"))
        .collect::<anyhow::Result<_>>()?;
    let tck = clk_tck()?;
    let first = Sample::take(&mut watch, &hosts, &lan, DISCOVERY_PORT).await;
    let cpu0: Vec<u64> = pids
        .iter()
        .map(|&p| cpu_ticks(p))
        .collect::<anyhow::Result<_>>()?;
    let t0 = Instant::now();
    println!(
        "stability window: {} s, a look every {} s",
        o.stable_secs, o.sample_secs
    );
    let mut min_listed = vec![u64::MAX; n];
    let mut short_samples = 0usize;
    let mut samples = 0usize;
    let rounds = o.stable_secs / o.sample_secs + 1;
    let mut last = first.clone();
    for _ in 0..rounds {
        if t0.elapsed() >= Duration::from_secs(o.stable_secs) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(o.sample_secs)).await;
        last = Sample::take(&mut watch, &hosts, &lan, DISCOVERY_PORT).await;
        samples += 1;
        if last.short(want) > 0 {
            short_samples += 1;
        }
        for (m, l) in min_listed.iter_mut().zip(&last.listed) {
            *m = (*m).min(l.unwrap_or(0));
        }
        println!("{}", last.line(last_up));
    }
    let cpu1: Vec<u64> = pids
        .iter()
        .map(|&p| cpu_ticks(p))
        .collect::<anyhow::Result<_>>()?;
    let window = t0.elapsed().as_secs_f64();
    let mem: Vec<(u64, u64, u64)> = pids
        .iter()
        .map(|&p| scale::memory_kb(p))
        .collect::<anyhow::Result<_>>()?;
    let mem_after = scale::mem_available_kb()?;
    let softnet1 = scale::softnet()?;
    let per_node_rate = |f: &dyn Fn(&Sample, usize) -> u64| -> Vec<f64> {
        (0..n)
            .map(|i| f(&last, i).saturating_sub(f(&first, i)) as f64 / window)
            .collect()
    };
    let node =
        |key: &'static str| move |s: &Sample, i: usize| s.discovery[i][key].as_u64().unwrap_or(0);
    let kern =
        |key: &'static str| move |s: &Sample, i: usize| s.kernel[i].get(key).copied().unwrap_or(0);
    let offline_in_window: u64 = last
        .offline_events
        .iter()
        .zip(&first.offline_events)
        .map(|(b, a)| b.saturating_sub(*a))
        .sum();
    let flapped_nodes = last
        .offline_events
        .iter()
        .zip(&first.offline_events)
        .filter(|(b, a)| b > a)
        .count();
    let cpu_pct: Vec<f64> = cpu0
        .iter()
        .zip(&cpu1)
        .map(|(a, b)| b.saturating_sub(*a) as f64 / tck / window * 100.0)
        .collect();
    let kernel_totals: serde_json::Map<String, Value> = scale::KERNEL_KEYS
        .iter()
        .map(|k| (k.to_string(), json!(last.kernel_sum(k))))
        .collect();
    let node_totals: serde_json::Map<String, Value> = scale::NODE_KEYS
        .iter()
        .map(|k| (k.to_string(), json!(last.node_sum(k))))
        .collect();
    let min_listed_all = min_listed.iter().copied().min().unwrap_or(0);
    let v = json!({
        "hosts": n,
        "subnet": lan.subnet(),
        "heartbeat_sec": o.heartbeat_sec,
        "ttl_sec": o.ttl_sec,
        "start_secs": start_secs,
        "mesh_secs_after_last_start": mesh_secs,
        "node_mesh_secs": summary(node_mesh_secs),
        "nodes_meshed": node_mesh_at.iter().flatten().count(),
        "stable_window_secs": window,
        "samples": samples,
        "samples_with_a_node_short": short_samples,
        "offline_events_in_window": offline_in_window,
        "nodes_with_offline_events": flapped_nodes,
        "min_listed_in_window": min_listed_all,
        "sent_per_host_per_s": summary(per_node_rate(&node("sent"))),
        "accepted_per_host_per_s": summary(per_node_rate(&node("accepted"))),
        "kernel_out_per_host_per_s": summary(per_node_rate(&kern("OutDatagrams"))),
        "kernel_in_per_host_per_s": summary(per_node_rate(&kern("InDatagrams"))),
        "cpu_pct_per_node": summary(cpu_pct.clone()),
        "cpu_pct_sum": cpu_pct.iter().sum::<f64>(),
        "rss_kb": summary(mem.iter().map(|m| m.0 as f64).collect()),
        "pss_kb": summary(mem.iter().map(|m| m.1 as f64).collect()),
        "threads": summary(mem.iter().map(|m| m.2 as f64).collect()),
        "mem_available_drop_kb": mem_before.saturating_sub(mem_after),
        "node_totals": node_totals,
        "kernel_totals": kernel_totals,
        "switch": last.switch,
        "softnet_dropped": softnet1[1].saturating_sub(softnet0[1]),
        "arp_cache_end": last.arp,
        "load_end": last.load,
    });
    println!("{n} hosts: {}", serde_json::to_string(&v)?);
    if offline_in_window > 0 || mesh_secs.is_none() {
        println!("per node at the end:\n{}", last.per_node(&hosts));
    }
    drop(watch);
    drop(hosts);
    drop(lan);
    Ok(v)
}
