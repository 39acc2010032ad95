//! Group fan-out benchmark of issue 6 (docs/BENCHMARKS.md, "Groups: fan-out"): one
//! group of N members (default 64), each a real `lanchat serve` process on loopback
//! (namespace hosts would cost a network namespace, a veth pair and a bridge port per
//! member for no difference on one kernel). Node 0 creates the group and sends.
//!
//! - **latency**: one message at a time; for each, the time from the `POST` at node 0
//!   until the *last* member's event stream shows it (`message.new`): p50/p99.
//! - **throughput**: `--flood` messages sent with 16 requests in flight; sustained group
//!   messages/s until every member holds every one (and member deliveries/s).
//! - **baselines, same run**: a raw WebSocket echo round trip on loopback (tokio-
//!   tungstenite, no encryption, no storage) and raw SQLite inserts (WAL, one
//!   transaction).
//!
//! Usage: `scripts/bench-group-fanout.sh [--members 64] [--messages 100] [--flood 300]
//! [--heartbeat-secs 1]` (members: up to 256).
//! Results: printed, and `target/test-artifacts/bench_group_fanout/results.json`.
//! Bounded: every wait has a deadline; the nodes are stopped by PID when it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use api_types::Event;
use futures_util::{SinkExt, StreamExt};
use lanchat_tests::bench::{clk_tck, cpu_ticks, fmt_summary, load_average, machine, summary};
use lanchat_tests::chat::{create_group, group_conversation, send_dm, wait_group};
use lanchat_tests::{artifacts_dir, wait_until, LoopbackMesh, NodeProcess};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SETTLE: Duration = Duration::from_secs(120);
const PER_MESSAGE: Duration = Duration::from_secs(30);
const FLOOD_LIMIT: Duration = Duration::from_secs(300);
/// How long the nodes are watched doing nothing, for the idle CPU taken out of the flood's.
const IDLE_WINDOW: Duration = Duration::from_secs(5);

struct Options {
    members: usize,
    messages: usize,
    flood: usize,
    /// Discovery heartbeat (TTL three of them). 1 s makes a small mesh quick to form;
    /// a few hundred processes sharing two cores need the product's default (15 s),
    /// else their heartbeats alone (members² packets a second) take the CPU.
    heartbeat_secs: u32,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        members: 64,
        messages: 100,
        flood: 300,
        heartbeat_secs: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value: usize = it
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag}: not a number"))?;
        match flag.as_str() {
            "--members" => o.members = value.clamp(2, 256),
            "--messages" => o.messages = value.clamp(1, 10_000),
            "--flood" => o.flood = value.clamp(1, 100_000),
            "--heartbeat-secs" => o.heartbeat_secs = value.clamp(1, 60) as u32,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

/// When each member's event stream first showed each message text.
type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// Follows one node's event stream, noting when each `message.new` arrives.
async fn follow(node: &NodeProcess, arrivals: Arrivals) -> anyhow::Result<()> {
    let url = format!("{}api/v1/events", node.url.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("lanchat.v1, lanchat.bearer.{}", node.token).parse()?,
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    tokio::spawn(async move {
        while let Some(Ok(frame)) = socket.next().await {
            let Message::Text(text) = frame else { continue };
            if let Ok(Event::MessageNew { message }) = serde_json::from_str::<Event>(&text) {
                let now = Instant::now();
                arrivals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(message.text)
                    .or_default()
                    .push(now);
            }
        }
    });
    Ok(())
}

fn arrived(arrivals: &Arrivals, text: &str) -> Vec<Instant> {
    arrivals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(text)
        .cloned()
        .unwrap_or_default()
}

/// Round trips of a small frame through a raw WebSocket echo on loopback.
async fn raw_ws_echo(rounds: usize) -> anyhow::Result<Vec<f64>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                while let Some(Ok(frame)) = ws.next().await {
                    if frame.is_binary() && ws.send(frame).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await?;
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..rounds + 20 {
        let start = Instant::now();
        ws.send(Message::Binary(vec![7u8; 200].into())).await?;
        tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await?
            .context("echo closed")??;
        if i >= 20 {
            rtts.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    server.abort();
    Ok(rtts)
}

/// Rows/s of `n` message-sized rows inserted in one transaction (WAL, synchronous FULL).
fn raw_sqlite(dir: &std::path::Path, n: usize) -> anyhow::Result<f64> {
    let path = dir.join("raw-sqlite.db");
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE m (id TEXT PRIMARY KEY, conv TEXT NOT NULL, body TEXT NOT NULL,
                         hlc INTEGER NOT NULL)",
    )?;
    let start = Instant::now();
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt = tx.prepare("INSERT INTO m VALUES (?1, ?2, ?3, ?4)")?;
        for i in 0..n {
            stmt.execute(rusqlite::params![
                ulid::Ulid::new().to_string(),
                "group:x",
                format!("flood {i}"),
                i64::try_from(i)?
            ])?;
        }
    }
    tx.commit()?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn bench(o: Options) -> anyhow::Result<serde_json::Value> {
    let names: Vec<String> = (0..o.members).map(|i| format!("m{i:03}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mesh = LoopbackMesh::start_paced(
        "bench_group_fanout/nodes",
        &name_refs,
        "bench",
        &[],
        o.heartbeat_secs,
    )
    .await?;
    eprintln!(
        "{} nodes started in {:.1} s",
        o.members,
        started.elapsed().as_secs_f64()
    );
    let sender = &mesh.nodes[0];
    let others: Vec<&str> = mesh.ids[1..].iter().map(String::as_str).collect();
    for id in &others {
        lanchat_tests::chat::wait_contact_online(sender, id, true, SETTLE).await?;
    }
    let group = create_group(sender, "fan-out", &others).await?;
    for node in &mesh.nodes[1..] {
        wait_group(node, &group.id, SETTLE, "the group on every member", |g| {
            g.members.len() == o.members
        })
        .await?;
    }
    let arrivals: Arrivals = Arc::default();
    for node in &mesh.nodes[1..] {
        follow(node, Arc::clone(&arrivals)).await?;
    }
    let conv = group_conversation(&group.id);
    let members = o.members - 1;

    // Warm-up: every link dialled, caches warm.
    for i in 0..5 {
        let text = format!("warm-up {i}");
        send_dm(sender, &conv, &text).await?;
        wait_until(PER_MESSAGE, "a warm-up message everywhere", || async {
            (arrived(&arrivals, &text).len() >= members).then_some(())
        })
        .await?;
    }

    let mut last_member_ms = Vec::with_capacity(o.messages);
    let mut first_member_ms = Vec::with_capacity(o.messages);
    for i in 0..o.messages {
        let text = format!("latency {i}");
        let start = Instant::now();
        send_dm(sender, &conv, &text).await?;
        let times = wait_until(PER_MESSAGE, "a message on every member", || async {
            let times = arrived(&arrivals, &text);
            (times.len() >= members).then_some(times)
        })
        .await?;
        let ms = |t: &Instant| t.duration_since(start).as_secs_f64() * 1e3;
        last_member_ms.push(times.iter().map(ms).fold(0.0, f64::max));
        first_member_ms.push(times.iter().map(ms).fold(f64::INFINITY, f64::min));
    }

    let texts: Vec<String> = (0..o.flood).map(|i| format!("flood {i}")).collect();
    let cpu = |mesh: &LoopbackMesh| -> (u64, u64) {
        let ticks = |n: &NodeProcess| n.pid().and_then(|p| cpu_ticks(p).ok()).unwrap_or(0);
        let sender = ticks(&mesh.nodes[0]);
        let members: u64 = mesh.nodes[1..].iter().map(ticks).sum();
        (sender, members)
    };
    // What the nodes spend doing nothing (heartbeats, pings), to take out of the flood's
    // CPU: the per-message cost is what the messages add.
    let idle_before = cpu(&mesh);
    let idle_start = Instant::now();
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_after = cpu(&mesh);
    let idle_s = idle_start.elapsed().as_secs_f64();
    let cpu_before = cpu(&mesh);
    let start = Instant::now();
    lanchat_tests::chat::send_concurrently(sender, &conv, &texts, 16).await?;
    let accepted_s = start.elapsed().as_secs_f64();
    wait_until(
        FLOOD_LIMIT,
        "every flood message on every member",
        || async {
            let done = {
                let map = arrivals.lock().unwrap_or_else(|p| p.into_inner());
                texts
                    .iter()
                    .all(|t| map.get(t).is_some_and(|v| v.len() >= members))
            };
            done.then_some(())
        },
    )
    .await?;
    let flood_s = start.elapsed().as_secs_f64();
    let cpu_after = cpu(&mesh);
    let tck = clk_tck()?;
    let sender_cpu_s = (cpu_after.0 - cpu_before.0) as f64 / tck;
    let members_cpu_s = (cpu_after.1 - cpu_before.1) as f64 / tck;
    let idle_sender_per_s = (idle_after.0 - idle_before.0) as f64 / tck / idle_s;
    let idle_members_per_s = (idle_after.1 - idle_before.1) as f64 / tck / idle_s;
    let sender_ms_per_message =
        (sender_cpu_s - idle_sender_per_s * flood_s).max(0.0) * 1e3 / o.flood as f64;
    let member_ms_per_received = (members_cpu_s - idle_members_per_s * flood_s).max(0.0) * 1e3
        / (o.flood as f64 * members as f64);

    let echo = raw_ws_echo(500).await?;
    let dir = artifacts_dir("bench_group_fanout/raw")?;
    let raw_rows = tokio::task::spawn_blocking(move || raw_sqlite(&dir, 10_000)).await??;

    let last = summary(last_member_ms);
    let first = summary(first_member_ms);
    let echo = summary(echo);
    let rate = o.flood as f64 / flood_s;
    eprintln!(
        "send → last of {members} members: {}",
        fmt_summary(&last, "ms")
    );
    eprintln!("send → first member:        {}", fmt_summary(&first, "ms"));
    eprintln!("raw WebSocket echo RTT:     {}", fmt_summary(&echo, "ms"));
    eprintln!(
        "flood: {} messages accepted in {accepted_s:.2} s, on all {members} members in \
         {flood_s:.2} s: {rate:.0} group messages/s = {:.0} member deliveries/s",
        o.flood,
        rate * members as f64
    );
    eprintln!(
        "flood CPU: sender {sender_cpu_s:.2} s, all {members} members together {members_cpu_s:.2} s"
    );
    eprintln!(
        "idle CPU ({idle_s:.1} s window): sender {:.2} %, members {:.2} % together",
        idle_sender_per_s * 100.0,
        idle_members_per_s * 100.0
    );
    eprintln!(
        "CPU beyond idle: sender {sender_ms_per_message:.3} ms per message, \
         {member_ms_per_received:.3} ms per message received per member"
    );
    eprintln!("raw SQLite, one transaction: {raw_rows:.0} rows/s");
    let p99 = last
        .get("p99")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(f64::NAN);
    Ok(json!({
        "machine": machine()?,
        "load_average": load_average(),
        "members": o.members,
        "placement": "processes on loopback",
        "send_to_last_member_ms": last,
        "send_to_first_member_ms": first,
        "raw_ws_echo_rtt_ms": echo,
        "flood": {"messages": o.flood, "accepted_s": accepted_s, "all_members_s": flood_s,
                  "group_messages_per_s": rate,
                  "member_deliveries_per_s": rate * members as f64,
                  "sender_cpu_s": sender_cpu_s, "members_cpu_s": members_cpu_s,
                  "idle_cpu_per_s": {"sender": idle_sender_per_s, "members": idle_members_per_s},
                  "sender_cpu_ms_per_message": sender_ms_per_message,
                  "member_cpu_ms_per_received_message": member_ms_per_received},
        "raw_sqlite_single_transaction_rows_per_s": raw_rows,
        "targets": {"p99_le_100ms": p99 <= 100.0},
    }))
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = runtime.block_on(bench(o))?;
    let dir = artifacts_dir("bench_group_fanout")?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&results)?);
    Ok(())
}
