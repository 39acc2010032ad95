//! Direct-message benchmark of issue 5, on the network-namespace LAN of
//! `lanchat_tests::netns`.
//!
//! ```text
//! bench_dm [--messages 1000] [--batch 20] [--text-bytes 100] [--flood 5000]
//!          [--in-flight 32] [--flood-rounds 3]
//! ```
//!
//! Run as root (namespaces), with `lanchat` built next to this binary (or `LANCHAT_BIN`).
//! `scripts/bench-dm.sh` is the documented way to run it.
//!
//! A LAN of four namespace hosts: `a` and `b` run release `lanchat serve` nodes (mesh on,
//! the same shared secret), `iptux` runs iptux under Xvfb, `probe` speaks IPMsg to it.
//! The measuring is done by this binary's subcommands, started inside the namespaces
//! (`ip netns exec`) and driven over their stdin/stdout, one JSON line per command:
//!
//! - `dm-client` (in `a`): one keep-alive HTTP connection to a's API and a's events
//!   WebSocket. `lat K TAG` sends K messages to b one at a time, each timed from just
//!   before the POST to a's `message.status` `delivered` event (b stored it with fsync and
//!   acked). `flood M C TAG` sends M messages with C requests in flight, timed until a has
//!   seen `delivered` for every one.
//! - `listen` (in `b`): b's events WebSocket; stamps each received `message.new` with
//!   CLOCK_MONOTONIC (one clock for every namespace of the kernel), keyed by the text's
//!   first word, so the orchestrator joins them with the sender's send times.
//! - `echo` (in `b`) and `ws-client` (in `a`): the raw WebSocket baseline, a
//!   tokio-tungstenite echo of binary messages as large as one chat envelope.
//! - `ipmsg` (in `probe`): the iptux baseline, `IPMSG_SENDMSG | IPMSG_SENDCHECKOPT` to UDP
//!   2425 timed until iptux's `IPMSG_RECVMSG` for that packet number.
//!
//! The latency rounds alternate lanchat, raw WebSocket and iptux in batches (the order
//! rotating every round), so the machine's load falls on all three alike. The throughput
//! rounds alternate a flood with the raw SQLite baseline (rusqlite, WAL, one transaction,
//! on the disk holding the nodes' data directories).
//!
//! Every process it starts is ended by PID; every loop is bounded in count and time;
//! traffic goes only to loopback and to the benchmark's own hosts in 198.51.100.0/24.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use lanchat_tests::bench::{
    api_of, clk_tck, cpu_ticks, drain_udp, fmt_summary, load_average, machine, start_iptux,
    summary, wait_udp_answer, IPMSG_PORT,
};
use lanchat_tests::bench_worker::{
    check_lan, current_thread, events_socket, mono_ns, ns_to_ms, read_token, stdin_lines, text_of,
    Worker, WORKER_LIFETIME,
};
use lanchat_tests::netns::{Lan, NodeSettings};
use lanchat_tests::{artifacts_dir, wait_until};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const IPMSG_BR_ENTRY: u32 = 0x1;
const IPMSG_ANSENTRY: u32 = 0x3;
const IPMSG_SENDMSG: u32 = 0x20;
const IPMSG_RECVMSG: u32 = 0x21;
const IPMSG_SENDCHECKOPT: u32 = 0x100;
/// How long one iptux message waits for its RECVMSG before counting it lost.
const IPMSG_WAIT: Duration = Duration::from_millis(500);
/// How long one lanchat message or one echo waits before counting it lost.
const MESSAGE_WAIT: Duration = Duration::from_secs(10);
/// How long a flood may take to be delivered, in all.
const FLOOD_LIMIT: Duration = Duration::from_secs(300);
/// A flood stops sending after this many failed requests.
const FLOOD_MAX_ERRORS: usize = 100;
/// The echo server's port on b.
const ECHO_PORT: u16 = 19200;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("dm-client") => current_thread(dm_client_main(rest)),
        Some("listen") => current_thread(listen_main(rest)),
        Some("echo") => current_thread(echo_main(rest)),
        Some("ws-client") => current_thread(ws_client_main(rest)),
        Some("ipmsg") => ipmsg_main(rest),
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
// Options

#[derive(Debug, Clone)]
struct Options {
    messages: usize,
    batch: usize,
    text_bytes: usize,
    flood: usize,
    in_flight: usize,
    flood_rounds: usize,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut o = Options {
            messages: 1000,
            batch: 20,
            text_bytes: 100,
            flood: 5000,
            in_flight: 32,
            flood_rounds: 3,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let n: usize = value
                .parse()
                .with_context(|| format!("{flag}: a whole number"))?;
            match flag.as_str() {
                "--messages" => o.messages = n,
                "--batch" => o.batch = n,
                "--text-bytes" => o.text_bytes = n,
                "--flood" => o.flood = n,
                "--in-flight" => o.in_flight = n,
                "--flood-rounds" => o.flood_rounds = n,
                _ => bail!("unknown option {flag}"),
            }
        }
        if !(1..=100_000).contains(&o.messages) || !(1..=1000).contains(&o.batch) {
            bail!("--messages 1..=100000, --batch 1..=1000");
        }
        if !(16..=60_000).contains(&o.text_bytes) {
            bail!("--text-bytes 16..=60000");
        }
        if o.flood > 100_000 || !(1..=256).contains(&o.in_flight) || o.flood_rounds > 20 {
            bail!("--flood ≤ 100000, --in-flight 1..=256, --flood-rounds ≤ 20");
        }
        Ok(o)
    }
}

/// The size of the `dm.send` envelope a text of `text_bytes` travels in: its JSON body
/// (the fields of `lan_mesh::envelope`, ULIDs and clocks at their real widths) plus the
/// 64-byte signature. The raw WebSocket baseline sends messages of this size.
fn envelope_bytes(text_bytes: usize) -> anyhow::Result<usize> {
    let id = ulid::Ulid::new().to_string();
    let body = json!({
        "v": 1, "envelope_id": id, "kind": "dm.send", "from_peer_id": id, "to_peer_id": id,
        "ts": 1_795_462_830_012_i64,
        "payload": {
            "message_id": id, "text": text_of("lat-00000-00000", text_bytes),
            "sent_at": 1_795_462_830_012_i64, "hlc": 0x0001_a1e2_c3d4_0000_u64 },
    });
    Ok(serde_json::to_vec(&body)?.len() + 64)
}

// ---------------------------------------------------------------------------------------
// The benchmark

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn bench_settings() -> NodeSettings {
    NodeSettings {
        // The product's defaults.
        heartbeat_interval_sec: 15,
        peer_ttl_sec: 45,
        ..NodeSettings::default()
    }
}

async fn bench(opts: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let envelope = envelope_bytes(opts.text_bytes)?;
    let mut results = json!({
        "options": {
            "messages": opts.messages, "batch": opts.batch, "text_bytes": opts.text_bytes,
            "envelope_bytes": envelope, "flood": opts.flood, "in_flight": opts.in_flight,
            "flood_rounds": opts.flood_rounds,
        },
        "machine": machine()?,
        "started_unix": SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        "load_average": { "start": load_average() },
    });
    println!("machine: {}", results["machine"]);
    println!("load average at start: {}", load_average());

    let lan = Lan::new("bench_dm")?;
    println!("LAN {}", lan.name());
    let a = lan.add_host("a", bench_settings()).await?;
    let b = lan.add_host("b", bench_settings()).await?;
    a.wait_mesh_running(Duration::from_secs(30)).await?;
    b.wait_mesh_running(Duration::from_secs(30)).await?;
    wait_until(
        Duration::from_secs(60),
        "a and b to list each other",
        || async { (a.lists(&b).await.ok()? && b.lists(&a).await.ok()?).then_some(()) },
    )
    .await?;
    println!("a {} and b {} see each other", a.ip(), b.ip());

    let iptux_ns = lan.add_ns("iptux")?;
    let probe_ns = lan.add_ns("probe")?;
    let (iptux_procs, iptux_error) = match start_iptux(&iptux_ns, lan.dir()).await {
        Ok(p) => (Some(p), None),
        Err(e) => {
            println!("iptux baseline unavailable: {e:#}");
            (None, Some(format!("{e:#}")))
        }
    };
    // Give iptux a moment past binding (its GTK start-up announces itself).
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (a_url, a_token) = api_of(&a)?;
    let (b_url, b_token) = api_of(&b)?;
    let mut listener = Worker::start(
        &b.ns,
        "listener",
        &["listen".into(), b_url],
        Some(b_token.as_str()),
    )
    .await?;
    let _echo = Worker::start(
        &b.ns,
        "echo",
        &["echo".into(), format!("{}:{ECHO_PORT}", b.ip())],
        None,
    )
    .await?;
    let mut dm = Worker::start(
        &a.ns,
        "dm-client",
        &[
            "dm-client".into(),
            a_url,
            b.node_id.clone(),
            opts.text_bytes.to_string(),
        ],
        Some(a_token.as_str()),
    )
    .await?;
    let mut ws = Worker::start(
        &a.ns,
        "ws-client",
        &[
            "ws-client".into(),
            format!("ws://{}:{ECHO_PORT}/", b.ip()),
            envelope.to_string(),
        ],
        None,
    )
    .await?;
    let mut ipmsg = match &iptux_procs {
        Some(_) => Some(
            Worker::start(
                &probe_ns,
                "ipmsg",
                &[
                    "ipmsg".into(),
                    iptux_ns.ip.to_string(),
                    opts.text_bytes.to_string(),
                ],
                None,
            )
            .await?,
        ),
        None => None,
    };

    // Warm-up: the first message dials the link; TCP and caches settle.
    let warm = 20;
    let t = Instant::now();
    dm.ask(&format!("lat {warm} warm"), Duration::from_secs(60))
        .await?;
    println!(
        "warm-up: {warm} lanchat messages in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    ws.ask(&format!("rtt {warm}"), Duration::from_secs(60))
        .await?;
    if let Some(w) = ipmsg.as_mut() {
        w.ask(&format!("rtt {warm}"), Duration::from_secs(60))
            .await?;
    }
    listener.ask("dump", Duration::from_secs(10)).await?;

    // Latency rounds.
    println!(
        "latency: {} messages of {} bytes (envelope ≈ {envelope} bytes), batches of {}",
        opts.messages, opts.text_bytes, opts.batch
    );
    let mut sends: Vec<Value> = Vec::new();
    let (mut ws_ms, mut ipmsg_ms) = (Vec::new(), Vec::new());
    let (mut lanchat_lost, mut ws_lost, mut ipmsg_lost) = (0u64, 0u64, 0u64);
    let rounds = opts.messages.div_ceil(opts.batch);
    let t = Instant::now();
    for r in 0..rounds {
        let k = opts.batch.min(opts.messages - r * opts.batch);
        for turn in 0..3 {
            match (turn + r) % 3 {
                0 => {
                    let v = dm
                        .ask(
                            &format!("lat {k} lat-{r:05}"),
                            MESSAGE_WAIT * k as u32 + Duration::from_secs(10),
                        )
                        .await?;
                    lanchat_lost += v["lost"].as_u64().unwrap_or(0);
                    sends.extend(v["samples"].as_array().cloned().unwrap_or_default());
                }
                1 => {
                    let v = ws
                        .ask(
                            &format!("rtt {k}"),
                            MESSAGE_WAIT * k as u32 + Duration::from_secs(10),
                        )
                        .await?;
                    ws_lost += v["lost"].as_u64().unwrap_or(0);
                    ws_ms.extend(f64s(&v["rtt_ms"]));
                }
                _ => {
                    if let Some(w) = ipmsg.as_mut() {
                        let v = w
                            .ask(
                                &format!("rtt {k}"),
                                IPMSG_WAIT * k as u32 + Duration::from_secs(10),
                            )
                            .await?;
                        ipmsg_lost += v["lost"].as_u64().unwrap_or(0);
                        ipmsg_ms.extend(f64s(&v["rtt_ms"]));
                    }
                }
            }
        }
    }
    let latency_secs = t.elapsed().as_secs_f64();
    results["load_average"]["after_latency"] = load_average();
    // b's `message.new` trails a's `delivered` (b emits it after acking): the last few
    // may still be on their way when the loop ends. Collect until all are in, ≤ 2 s.
    let mut received = serde_json::Map::new();
    let grace_end = Instant::now() + Duration::from_secs(2);
    loop {
        if let Value::Object(part) = listener.ask("dump", Duration::from_secs(30)).await? {
            received.extend(part);
        }
        let all_in = sends.iter().all(|s| {
            s["tag"]
                .as_str()
                .is_some_and(|tag| received.contains_key(tag))
        });
        if all_in || Instant::now() >= grace_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(listener);

    let (mut ack_ms, mut resp_ms, mut sent_ms, mut recv_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut recv_missing = 0u64;
    for s in &sends {
        let t0 = s["t0"].as_u64().unwrap_or(0);
        let ms = |k: &str| s[k].as_u64().map(ns_to_ms);
        if let Some(v) = ms("delivered_ns") {
            ack_ms.push(v);
        }
        if let Some(v) = ms("resp_ns") {
            resp_ms.push(v);
        }
        if let Some(v) = ms("sent_ns") {
            sent_ms.push(v);
        }
        match s["tag"]
            .as_str()
            .and_then(|tag| received.get(tag))
            .and_then(Value::as_u64)
        {
            Some(at) => recv_ms.push(ns_to_ms(at.saturating_sub(t0))),
            None => recv_missing += 1,
        }
    }
    let latency = json!({
        "rounds": rounds,
        "elapsed_secs": latency_secs,
        "lanchat_send_to_delivered_ms": summary(ack_ms),
        "lanchat_send_to_receiver_event_ms": summary(recv_ms),
        "lanchat_post_response_ms": summary(resp_ms),
        "lanchat_send_to_sent_ms": summary(sent_ms),
        "lanchat_lost": lanchat_lost,
        "lanchat_receiver_event_missing": recv_missing,
        "raw_ws_rtt_ms": summary(ws_ms),
        "raw_ws_lost": ws_lost,
        "iptux_sendmsg_to_recvmsg_ms": summary(ipmsg_ms),
        "iptux_lost": ipmsg_lost,
        "iptux_error": iptux_error,
    });
    println!(
        "lanchat send → delivered (a's event):  {}",
        fmt_summary(&latency["lanchat_send_to_delivered_ms"], "ms")
    );
    println!(
        "lanchat send → b's message.new:        {}",
        fmt_summary(&latency["lanchat_send_to_receiver_event_ms"], "ms")
    );
    println!(
        "lanchat POST → 201:                    {}",
        fmt_summary(&latency["lanchat_post_response_ms"], "ms")
    );
    println!(
        "raw WebSocket echo RTT:                {}",
        fmt_summary(&latency["raw_ws_rtt_ms"], "ms")
    );
    println!(
        "iptux SENDMSG → RECVMSG:               {}",
        fmt_summary(&latency["iptux_sendmsg_to_recvmsg_ms"], "ms")
    );
    println!(
        "lost: lanchat {lanchat_lost}, receiver events missing {recv_missing}, raw WS {ws_lost}, iptux {ipmsg_lost}"
    );
    results["latency"] = latency;
    drop(ipmsg);
    drop(iptux_procs);
    drop(ws);

    // Throughput rounds: raw SQLite, then a flood, alternating.
    let mut floods = Vec::new();
    let mut raws = Vec::new();
    let tck = clk_tck()?;
    for r in 0..opts.flood_rounds {
        let dir = lan.dir().to_path_buf();
        let (m, bytes) = (opts.flood, opts.text_bytes);
        let raw = tokio::task::spawn_blocking(move || raw_sqlite(&dir, r, m, bytes)).await??;
        println!(
            "round {r}: raw SQLite {} rows in one transaction: {:.0} rows/s; one fsynced commit per row: {:.0} rows/s",
            m,
            raw["single_transaction_rows_per_sec"].as_f64().unwrap_or(f64::NAN),
            raw["commit_per_row_rows_per_sec"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "round {r}: raw SQLite one fsynced one-row commit: {}",
            fmt_summary(&raw["commit_per_row_ms"], "ms")
        );
        raws.push(raw);
        if opts.flood == 0 {
            continue;
        }
        let pids = [a.pid(), b.pid()].map(|p| p.unwrap_or(0));
        let before = pids.map(|p| cpu_ticks(p).unwrap_or(0));
        let window = Instant::now();
        let v = dm
            .ask(
                &format!("flood {} {} flood-{r}", opts.flood, opts.in_flight),
                FLOOD_LIMIT + Duration::from_secs(30),
            )
            .await?;
        let window = window.elapsed().as_secs_f64();
        let after = pids.map(|p| cpu_ticks(p).unwrap_or(0));
        // CPU of each node over the flood (100 % = one core busy all the time).
        let cpu_pct =
            [0, 1].map(|i| after[i].saturating_sub(before[i]) as f64 / tck / window * 100.0);
        let elapsed = v["elapsed_ns"].as_u64().map(ns_to_ms).unwrap_or(f64::NAN) / 1e3;
        let delivered = v["delivered"].as_u64().unwrap_or(0);
        let rate = delivered as f64 / elapsed;
        let entry = json!({
            "messages": opts.flood,
            "in_flight": opts.in_flight,
            "posted": v["posted"],
            "post_errors": v["post_errors"],
            "delivered": delivered,
            "resyncs": v["resyncs"],
            "elapsed_secs": elapsed,
            "posted_secs": v["posted_ns"].as_u64().map(ns_to_ms).unwrap_or(f64::NAN) / 1e3,
            "delivered_per_sec": rate,
            "send_to_delivered_ms": summary(f64s(&v["latency_ms"])),
            "load_average": load_average(),
            "cpu_pct_a": cpu_pct[0],
            "cpu_pct_b": cpu_pct[1],
        });
        println!(
            "round {r}: lanchat {} messages, {} in flight: {delivered} delivered in {elapsed:.2} s = {rate:.0} msgs/s (all posted after {:.2} s; errors {}, resyncs {}); send → delivered {}",
            opts.flood,
            opts.in_flight,
            entry["posted_secs"].as_f64().unwrap_or(f64::NAN),
            entry["post_errors"],
            entry["resyncs"],
            fmt_summary(&entry["send_to_delivered_ms"], "ms"),
        );
        println!(
            "round {r}: CPU over the flood: a {:.0} %, b {:.0} % (100 % = one core)",
            cpu_pct[0], cpu_pct[1]
        );
        floods.push(entry);
    }
    let raw_rates: Vec<f64> = raws
        .iter()
        .filter_map(|r| r["single_transaction_rows_per_sec"].as_f64())
        .collect();
    let flood_rates: Vec<f64> = floods
        .iter()
        .filter_map(|f| f["delivered_per_sec"].as_f64())
        .collect();
    results["throughput"] = json!({
        "lanchat": floods,
        "raw_sqlite": raws,
        "lanchat_msgs_per_sec": summary(flood_rates),
        "raw_sqlite_single_transaction_rows_per_sec": summary(raw_rates),
    });
    results["load_average"]["end"] = load_average();

    // Targets.
    let g = |path: &[&str]| {
        let mut v = &results;
        for p in path {
            v = &v[*p];
        }
        v.as_f64().unwrap_or(f64::NAN)
    };
    let ack_p50 = g(&["latency", "lanchat_send_to_delivered_ms", "p50"]);
    let ack_p99 = g(&["latency", "lanchat_send_to_delivered_ms", "p99"]);
    let ws_p50 = g(&["latency", "raw_ws_rtt_ms", "p50"]);
    let iptux_p50 = g(&["latency", "iptux_sendmsg_to_recvmsg_ms", "p50"]);
    let tput = g(&["throughput", "lanchat_msgs_per_sec", "p50"]);
    let raw = g(&[
        "throughput",
        "raw_sqlite_single_transaction_rows_per_sec",
        "p50",
    ]);
    let targets = json!({
        "ack_p50_le_iptux_p50": ack_p50 <= iptux_p50,
        "ack_p50_le_ws_rtt_p50_plus_1ms": ack_p50 <= ws_p50 + 1.0,
        "ack_p99_le_10ms": ack_p99 <= 10.0,
        "throughput_ge_half_raw_sqlite": tput >= 0.5 * raw,
        "throughput_over_raw_sqlite": tput / raw,
    });
    println!("\ntargets:");
    println!(
        "  send → delivered p50 {ack_p50:.3} ms ≤ iptux p50 {iptux_p50:.3} ms: {}",
        targets["ack_p50_le_iptux_p50"]
    );
    println!(
        "  send → delivered p50 {ack_p50:.3} ms ≤ raw WS RTT p50 {ws_p50:.3} ms + 1 ms: {}",
        targets["ack_p50_le_ws_rtt_p50_plus_1ms"]
    );
    println!(
        "  send → delivered p99 {ack_p99:.3} ms ≤ 10 ms: {}",
        targets["ack_p99_le_10ms"]
    );
    println!(
        "  throughput (median of rounds) {tput:.0} msgs/s ≥ 0.5 × raw SQLite {raw:.0} rows/s: {} (ratio {:.3})",
        targets["throughput_ge_half_raw_sqlite"],
        tput / raw
    );
    results["targets"] = targets;
    results["elapsed_secs"] = json!(started.elapsed().as_secs_f64());
    drop(dm);
    drop(a);
    drop(b);
    drop(lan);
    let out = artifacts_dir("bench_dm")?.join("results.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&results)?)?;
    println!("\nresults: {}", out.display());
    Ok(())
}

/// The raw SQLite baseline: `m` rows shaped like a stored message (ULID ids, the same
/// text) into a fresh WAL database in `dir`: all in one transaction, then (for scale) a
/// tenth as many rows with one fsynced (`synchronous=FULL`) commit each.
fn raw_sqlite(dir: &Path, round: usize, m: usize, text_bytes: usize) -> anyhow::Result<Value> {
    let m = m.max(1);
    let path = dir.join(format!("raw-sqlite-{round}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE messages (id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, \
         sender TEXT NOT NULL, body TEXT NOT NULL, sent_at INTEGER NOT NULL, \
         hlc INTEGER NOT NULL); \
         CREATE INDEX messages_by_conversation ON messages (conversation_id, hlc);",
    )?;
    let conversation = format!("dm:lan:{}", ulid::Ulid::new());
    let sender = format!("lan:{}", ulid::Ulid::new());
    let rows: Vec<(String, String)> = (0..m)
        .map(|i| {
            (
                ulid::Ulid::new().to_string(),
                text_of(&format!("raw-{round}-{i:05}"), text_bytes),
            )
        })
        .collect();
    let insert = "INSERT INTO messages (id, conversation_id, sender, body, sent_at, hlc) \
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    let t = Instant::now();
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt = tx.prepare_cached(insert)?;
        for (i, (id, body)) in rows.iter().enumerate() {
            let i = i64::try_from(i)?;
            stmt.execute(rusqlite::params![
                id,
                conversation,
                sender,
                body,
                1_795_462_830_012_i64 + i,
                i
            ])?;
        }
    }
    tx.commit()?;
    let single = t.elapsed().as_secs_f64();
    let per_row = (m / 10).max(1);
    let mut commit_ms = Vec::with_capacity(per_row);
    let t = Instant::now();
    {
        let mut stmt = conn.prepare_cached(insert)?;
        for i in 0..per_row {
            let i = i64::try_from(i + m)?;
            let one = Instant::now();
            stmt.execute(rusqlite::params![
                ulid::Ulid::new().to_string(),
                conversation,
                sender,
                text_of(&format!("raw-{round}-{i:05}"), text_bytes),
                1_795_462_830_012_i64 + i,
                i
            ])?;
            commit_ms.push(one.elapsed().as_secs_f64() * 1e3);
        }
    }
    let each = t.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(json!({
        "rows": m,
        "single_transaction_secs": single,
        "single_transaction_rows_per_sec": m as f64 / single,
        "commit_per_row_rows": per_row,
        "commit_per_row_rows_per_sec": per_row as f64 / each,
        "commit_per_row_ms": summary(commit_ms),
    }))
}

// ---------------------------------------------------------------------------------------
// Subcommands run inside a namespace

/// What a's events said about outgoing messages, stamped on arrival.
enum StatusEvent {
    Status { id: String, status: String, at: u64 },
    Resync,
}

#[derive(Default)]
struct Seen {
    /// message id → (sent at, delivered at), CLOCK_MONOTONIC ns.
    by_id: HashMap<String, (Option<u64>, Option<u64>)>,
    resyncs: u64,
}

impl Seen {
    fn apply(&mut self, e: StatusEvent) {
        match e {
            StatusEvent::Status { id, status, at } => {
                let entry = self.by_id.entry(id).or_default();
                match status.as_str() {
                    "sent" => entry.0 = entry.0.or(Some(at)),
                    "delivered" => entry.1 = entry.1.or(Some(at)),
                    _ => {}
                }
            }
            StatusEvent::Resync => self.resyncs += 1,
        }
    }
}

/// `dm-client <api url> <peer id> <text bytes>`, the token on stdin; then commands
/// `lat K TAG`, `flood M C TAG`, `quit`.
async fn dm_client_main(args: &[String]) -> anyhow::Result<()> {
    let [url, peer, text_bytes] = args else {
        bail!("dm-client <api url> <peer id> <text bytes> (the token on stdin)");
    };
    let text_bytes: usize = text_bytes.parse()?;
    let mut stdin = stdin_lines();
    let token = read_token(&mut stdin).await?;
    let client = reqwest::Client::builder()
        .timeout(MESSAGE_WAIT)
        .no_proxy()
        .build()?;
    let post_url = format!("{url}api/v1/conversations/dm:lan:{peer}/messages");
    let socket = events_socket(url, &token).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StatusEvent>();
    tokio::spawn(async move {
        let (_sink, mut stream) = socket.split();
        while let Some(Ok(frame)) = stream.next().await {
            let at = mono_ns();
            let Message::Text(text) = frame else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let e = match v["type"].as_str() {
                Some("message.status") => StatusEvent::Status {
                    id: v["message_id"].as_str().unwrap_or_default().to_string(),
                    status: v["status"].as_str().unwrap_or_default().to_string(),
                    at,
                },
                Some("resync") => StatusEvent::Resync,
                _ => continue,
            };
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    let ctx = Arc::new(DmClient {
        client,
        post_url,
        token,
    });
    let mut seen = Seen::default();
    println!("ready");
    while let Some(line) = stdin.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let out = match words.as_slice() {
            ["lat", k, tag] => lat(&ctx, &mut seen, &mut rx, k.parse()?, tag, text_bytes).await,
            ["flood", m, c, tag] => {
                flood(
                    &ctx,
                    &mut seen,
                    &mut rx,
                    m.parse()?,
                    c.parse()?,
                    tag,
                    text_bytes,
                )
                .await
            }
            ["quit"] => break,
            _ => Err(anyhow!("unknown command {line:?}")),
        };
        let v = out.unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
        println!("{v}");
    }
    Ok(())
}

struct DmClient {
    client: reqwest::Client,
    post_url: String,
    token: String,
}

impl DmClient {
    /// POST one message; its id.
    async fn send(&self, text: &str) -> anyhow::Result<String> {
        let resp = self
            .client
            .post(&self.post_url)
            .bearer_auth(&self.token)
            .json(&json!({ "text": text }))
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if status.as_u16() != 201 {
            bail!("POST answered {status}: {v}");
        }
        Ok(v["id"].as_str().context("message without id")?.to_string())
    }
}

/// Sends `k` messages one at a time, each waiting for its `delivered`.
async fn lat(
    ctx: &DmClient,
    seen: &mut Seen,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<StatusEvent>,
    k: usize,
    tag: &str,
    text_bytes: usize,
) -> anyhow::Result<Value> {
    let mut samples = Vec::with_capacity(k);
    let mut lost = 0u64;
    for i in 0..k.min(100_000) {
        let word = format!("{tag}-{i:05}");
        let text = text_of(&word, text_bytes);
        let t0 = mono_ns();
        let id = ctx.send(&text).await?;
        let t_resp = mono_ns();
        let deadline = tokio::time::Instant::now() + MESSAGE_WAIT;
        let delivered = loop {
            if let Some((_, Some(at))) = seen.by_id.get(&id) {
                break Some(*at);
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => seen.apply(e),
                Ok(None) => bail!("the events stream ended"),
                Err(_) => break None,
            }
        };
        let (sent, _) = seen.by_id.remove(&id).unwrap_or_default();
        if delivered.is_none() {
            lost += 1;
        }
        samples.push(json!({
            "tag": word,
            "t0": t0,
            "resp_ns": t_resp - t0,
            "sent_ns": sent.map(|s| s.saturating_sub(t0)),
            "delivered_ns": delivered.map(|d| d.saturating_sub(t0)),
        }));
    }
    Ok(json!({ "samples": samples, "lost": lost, "resyncs": seen.resyncs }))
}

/// Sends `m` messages with `c` requests in flight; timed until every one is delivered.
async fn flood(
    ctx: &Arc<DmClient>,
    seen: &mut Seen,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<StatusEvent>,
    m: usize,
    c: usize,
    tag: &str,
    text_bytes: usize,
) -> anyhow::Result<Value> {
    let m = m.min(100_000);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let posted: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(Vec::with_capacity(m)));
    let t_start = mono_ns();
    let deadline = tokio::time::Instant::now() + FLOOD_LIMIT;
    let mut tasks = Vec::new();
    for _ in 0..c.clamp(1, 256) {
        let (ctx, next, errors, posted) = (
            Arc::clone(ctx),
            Arc::clone(&next),
            Arc::clone(&errors),
            Arc::clone(&posted),
        );
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= m
                    || errors.load(Ordering::Relaxed) >= FLOOD_MAX_ERRORS
                    || tokio::time::Instant::now() >= deadline
                {
                    break;
                }
                let text = text_of(&format!("{tag}-{i:05}"), text_bytes);
                let t0 = mono_ns();
                match ctx.send(&text).await {
                    Ok(id) => posted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((id, t0)),
                    Err(e) => {
                        eprintln!("flood: {e:#}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Take events in while the requests run, so the channel never holds them all.
    let mut joined = Box::pin(futures_util::future::join_all(tasks));
    loop {
        tokio::select! {
            _ = &mut joined => break,
            e = rx.recv() => match e {
                Some(e) => seen.apply(e),
                None => bail!("the events stream ended"),
            },
        }
    }
    let t_posted = mono_ns();
    let posted = std::mem::take(&mut *posted.lock().unwrap_or_else(|e| e.into_inner()));
    let mut waiting: HashSet<&str> = posted
        .iter()
        .filter(|(id, _)| !matches!(seen.by_id.get(id), Some((_, Some(_)))))
        .map(|(id, _)| id.as_str())
        .collect();
    while !waiting.is_empty() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => {
                if let StatusEvent::Status { id, status, .. } = &e {
                    if status == "delivered" {
                        waiting.remove(id.as_str());
                    }
                }
                seen.apply(e);
            }
            Ok(None) => bail!("the events stream ended"),
            Err(_) => break,
        }
    }
    let mut latency_ms = Vec::with_capacity(posted.len());
    let mut last = t_start;
    for (id, t0) in &posted {
        if let Some((_, Some(at))) = seen.by_id.remove(id) {
            latency_ms.push(ns_to_ms(at.saturating_sub(*t0)));
            last = last.max(at);
        }
    }
    Ok(json!({
        "posted": posted.len(),
        "post_errors": errors.load(Ordering::Relaxed),
        "delivered": latency_ms.len(),
        "elapsed_ns": last - t_start,
        "posted_ns": t_posted - t_start,
        "latency_ms": latency_ms,
        "resyncs": seen.resyncs,
    }))
}

/// `listen <api url>`, the token on stdin: stamps every received `message.new` (not
/// outgoing) by the first word of its text; `dump` prints and forgets them, `quit` ends.
async fn listen_main(args: &[String]) -> anyhow::Result<()> {
    let [url] = args else {
        bail!("listen <api url> (the token on stdin)");
    };
    let mut stdin = stdin_lines();
    let token = read_token(&mut stdin).await?;
    let socket = events_socket(url, &token).await?;
    let arrived: Arc<Mutex<serde_json::Map<String, Value>>> = Arc::default();
    let resyncs = Arc::new(AtomicUsize::new(0));
    let (store, resync_count) = (Arc::clone(&arrived), Arc::clone(&resyncs));
    tokio::spawn(async move {
        let (_sink, mut stream) = socket.split();
        while let Some(Ok(frame)) = stream.next().await {
            let at = mono_ns();
            let Message::Text(text) = frame else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            match v["type"].as_str() {
                Some("message.new") if v["message"]["outgoing"] == false => {
                    let word = v["message"]["text"]
                        .as_str()
                        .and_then(|t| t.split(' ').next())
                        .unwrap_or_default();
                    if word.starts_with("lat-") {
                        store
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(word.to_string())
                            .or_insert(json!(at));
                    }
                }
                Some("resync") => {
                    resync_count.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    println!("ready");
    while let Some(line) = stdin.recv().await {
        match line.trim() {
            "dump" => {
                let mut map =
                    std::mem::take(&mut *arrived.lock().unwrap_or_else(|e| e.into_inner()));
                map.insert(
                    "_resyncs".to_string(),
                    json!(resyncs.load(Ordering::Relaxed)),
                );
                println!("{}", Value::Object(map));
            }
            "quit" => break,
            other => println!(
                "{}",
                json!({ "error": format!("unknown command {other:?}") })
            ),
        }
    }
    Ok(())
}

/// `echo <ip:port>`: a raw WebSocket echo server (binary messages back as they came).
async fn echo_main(args: &[String]) -> anyhow::Result<()> {
    let [addr] = args else {
        bail!("echo <ip:port>");
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("ready");
    // Bounded: a handful of connections over the worker's lifetime.
    for _ in 0..16 {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(m)) = ws.next().await {
                if m.is_close() {
                    break;
                }
                if (m.is_binary() || m.is_text()) && ws.send(m).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// `ws-client <ws url> <bytes>`: `rtt K` sends K binary messages of `bytes`, one at a
/// time, each timed until its echo.
async fn ws_client_main(args: &[String]) -> anyhow::Result<()> {
    let [url, bytes] = args else {
        bail!("ws-client <ws url> <bytes>");
    };
    let bytes: usize = bytes.parse()?;
    let host = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_string();
    check_lan(&host)?;
    let tcp = tokio::net::TcpStream::connect(&host).await?;
    tcp.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp).await?;
    let mut stdin = stdin_lines();
    println!("ready");
    let payload = vec![b'x'; bytes];
    while let Some(line) = stdin.recv().await {
        let k = match rtt_command(&line)? {
            RttCommand::Rtt(k) => k,
            RttCommand::Quit => break,
            RttCommand::Unknown => continue,
        };
        let mut rtt_ms = Vec::with_capacity(k);
        let mut lost = 0u64;
        for _ in 0..k.min(100_000) {
            let t = Instant::now();
            ws.send(Message::Binary(payload.clone().into())).await?;
            let got = tokio::time::timeout(MESSAGE_WAIT, async {
                while let Some(m) = ws.next().await {
                    if matches!(m?, Message::Binary(_)) {
                        return anyhow::Ok(true);
                    }
                }
                Ok(false)
            })
            .await;
            match got {
                Ok(Ok(true)) => rtt_ms.push(t.elapsed().as_secs_f64() * 1e3),
                Ok(Ok(false)) => bail!("the echo server closed"),
                Ok(Err(e)) => return Err(e),
                Err(_) => lost += 1,
            }
        }
        println!("{}", json!({ "rtt_ms": rtt_ms, "lost": lost }));
    }
    Ok(())
}

/// The command number of an IPMsg packet `ver:packetno:user:host:command:extra`, and
/// its extra field (NULs trimmed).
fn ipmsg_fields(d: &[u8]) -> Option<(u32, String)> {
    let text = String::from_utf8_lossy(d);
    let mut parts = text.splitn(6, ':');
    let command = parts.nth(4)?.parse::<u32>().ok()?;
    let extra = parts
        .next()
        .unwrap_or_default()
        .trim_end_matches('\0')
        .to_string();
    Some((command, extra))
}

/// `ipmsg <iptux ip> <text bytes>`: announces itself (`BR_ENTRY`, so iptux knows the
/// sender as a pal, as a real IPMsg client would); then `rtt K` sends K
/// `SENDMSG | SENDCHECKOPT` messages one at a time, each timed until iptux's `RECVMSG`
/// carrying its packet number.
fn ipmsg_main(args: &[String]) -> anyhow::Result<()> {
    let [ip, text_bytes] = args else {
        bail!("ipmsg <iptux ip> <text bytes>");
    };
    let ip: Ipv4Addr = ip.parse()?;
    check_lan(&ip.to_string())?;
    let text_bytes: usize = text_bytes.parse()?;
    // iptux answers to port 2425 of the sender, so the probe sends from it.
    let sock = UdpSocket::bind(("0.0.0.0", IPMSG_PORT))?;
    let mut buf = [0u8; 8192];
    let mut packet_no: u64 = 1000;
    let mut entered = false;
    for _ in 0..5 {
        packet_no += 1;
        let msg = format!("1:{packet_no}:bench:probe:{IPMSG_BR_ENTRY}:bench\0");
        drain_udp(&sock, &mut buf)?;
        let t = Instant::now();
        sock.send_to(msg.as_bytes(), (ip, IPMSG_PORT))?;
        if wait_udp_answer(&sock, &mut buf, t, IPMSG_WAIT, |d| {
            ipmsg_fields(d).is_some_and(|(c, _)| c & 0xff == IPMSG_ANSENTRY)
        })?
        .is_some()
        {
            entered = true;
            break;
        }
    }
    if !entered {
        bail!("iptux never answered BR_ENTRY");
    }
    println!("ready");
    let command = IPMSG_SENDMSG | IPMSG_SENDCHECKOPT;
    let started = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        if std::io::stdin().read_line(&mut line)? == 0 || started.elapsed() > WORKER_LIFETIME {
            break;
        }
        let k = match rtt_command(&line)? {
            RttCommand::Rtt(k) => k,
            RttCommand::Quit => break,
            RttCommand::Unknown => continue,
        };
        let mut rtt_ms = Vec::with_capacity(k);
        let mut lost = 0u64;
        for _ in 0..k.min(100_000) {
            packet_no += 1;
            let no = packet_no.to_string();
            let text = text_of(&format!("ipmsg-{packet_no}"), text_bytes);
            let msg = format!("1:{packet_no}:bench:probe:{command}:{text}\0");
            drain_udp(&sock, &mut buf)?;
            let t = Instant::now();
            sock.send_to(msg.as_bytes(), (ip, IPMSG_PORT))?;
            match wait_udp_answer(&sock, &mut buf, t, IPMSG_WAIT, |d| {
                ipmsg_fields(d).is_some_and(|(c, extra)| c & 0xff == IPMSG_RECVMSG && extra == no)
            })? {
                Some(ms) => rtt_ms.push(ms),
                None => lost += 1,
            }
        }
        println!("{}", json!({ "rtt_ms": rtt_ms, "lost": lost }));
    }
    Ok(())
}

/// A line to the `ws-client` or `ipmsg` worker: `rtt K` measures K round trips.
enum RttCommand {
    Rtt(usize),
    Quit,
    /// Answered with an error line, then skipped.
    Unknown,
}

fn rtt_command(line: &str) -> anyhow::Result<RttCommand> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["rtt", k] => RttCommand::Rtt(k.parse()?),
        ["quit"] => RttCommand::Quit,
        _ => {
            println!(
                "{}",
                json!({ "error": format!("unknown command {line:?}") })
            );
            RttCommand::Unknown
        }
    })
}
