//! Group catch-up benchmark (docs/BENCHMARKS.md, "Groups: catch-up").
//!
//! ```text
//! bench_group_catchup [--messages 10000] [--in-flight 32]
//! ```
//!
//! Three `lanchat serve` nodes on 127.0.0.1 (the loopback harness of the tests: each
//! probes the others; heartbeat 1 s, TTL 3 s). A creates a group with B and C; C is
//! stopped; A sends `--messages` messages to the group through its local API
//! (`--in-flight` requests open at once) and its cursor delivers them to B; once B holds
//! them all, A is stopped for good. C is started again on its data directory: the time
//! from that start to C holding every message is the catch-up (all of it relayed by B:
//! `group.sync` + `group.relay`). C's holding is read from `GET /api/v1/conversations`
//! (the group's unread count: every received message counts), polled every 20 ms.
//!
//! Baseline, in the same run: inserting the same number of rows (same text size) into a
//! fresh SQLite file in one transaction (rusqlite, WAL, `synchronous=NORMAL`), on the
//! disk holding the nodes' data directories.
//!
//! `scripts/bench-group-catchup.sh` is the documented way to run it. Every process it
//! starts is ended by the harness (by PID); traffic goes only to loopback.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lanchat_tests::bench::{load_average, machine};
use lanchat_tests::chat::{
    create_group, get, group_conversation, send_concurrently, wait_contact_online, wait_count,
    wait_group,
};
use lanchat_tests::{artifacts_dir, LoopbackMesh};
use serde_json::{json, Value};

const ONLINE: Duration = Duration::from_secs(30);
const SEND_LIMIT: Duration = Duration::from_secs(600);
const CATCH_UP_LIMIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(20);

struct Args {
    messages: usize,
    in_flight: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut out = Args {
        messages: 10_000,
        in_flight: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--messages" => out.messages = value.parse()?,
            "--in-flight" => out.in_flight = value.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let mut mesh = LoopbackMesh::start(
        "bench_group_catchup",
        &["alpha", "bravo", "charlie"],
        "office",
        &[],
    )
    .await?;
    let result = run(&mut mesh, &args).await;
    mesh.explain(result)
}

async fn run(mesh: &mut LoopbackMesh, args: &Args) -> anyhow::Result<()> {
    let load_start = load_average();
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                wait_contact_online(&mesh.nodes[i], &mesh.ids[j], true, ONLINE).await?;
            }
        }
    }
    let (b_id, c_id) = (mesh.ids[1].clone(), mesh.ids[2].clone());
    let group = create_group(&mesh.nodes[0], "catch-up bench", &[&b_id, &c_id]).await?;
    for i in [1, 2] {
        wait_group(&mesh.nodes[i], &group.id, ONLINE, "the group", |g| {
            g.is_member
        })
        .await?;
    }
    mesh.stop(2).await?;
    wait_contact_online(&mesh.nodes[0], &c_id, false, ONLINE).await?;

    let conversation = group_conversation(&group.id);
    // ~100 bytes, like the DM benchmark's texts.
    let texts: Vec<String> = (0..args.messages)
        .map(|i| format!("{i:05} {}", "x".repeat(94)))
        .collect();
    let sending = Instant::now();
    send_concurrently(&mesh.nodes[0], &conversation, &texts, args.in_flight).await?;
    let send_s = sending.elapsed().as_secs_f64();
    wait_count(&mesh.nodes[1], &conversation, args.messages, SEND_LIMIT).await?;
    mesh.stop(0).await?;

    let start = Instant::now();
    mesh.restart(2).await?;
    let started_s = start.elapsed().as_secs_f64();
    let mut held = 0;
    while start.elapsed() < CATCH_UP_LIMIT {
        held = unread(mesh, &conversation).await.unwrap_or(0);
        if held >= args.messages {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let catch_up_s = start.elapsed().as_secs_f64();
    if held < args.messages {
        bail!(
            "charlie holds {held} of {} messages after {catch_up_s:.1} s",
            args.messages
        );
    }
    let history = wait_count(&mesh.nodes[2], &conversation, args.messages, ONLINE).await?;
    if history.len() != args.messages {
        bail!("charlie holds {} messages", history.len());
    }

    let baseline_s = sqlite_baseline(args.messages)?;
    let results = json!({
        "machine": machine()?,
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "messages": args.messages,
        "in_flight": args.in_flight,
        "send_s": send_s,
        "charlie_process_start_s": started_s,
        "catch_up_s": catch_up_s,
        "catch_up_msgs_per_s": args.messages as f64 / catch_up_s,
        "baseline_sqlite_one_tx_s": baseline_s,
    });
    let dir = artifacts_dir("bench_group_catchup_results")?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&results)?);
    Ok(())
}

/// Messages C holds in the group: its unread count (nothing is read meanwhile).
async fn unread(mesh: &LoopbackMesh, conversation: &str) -> anyhow::Result<usize> {
    let list: Value = get(&mesh.nodes[2], "v1/conversations").await?;
    let items = list
        .as_array()
        .or_else(|| list.get("conversations").and_then(Value::as_array))
        .context("conversations list")?;
    Ok(items
        .iter()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(conversation))
        .and_then(|c| c.get("unread").and_then(Value::as_u64))
        .unwrap_or(0) as usize)
}

/// Seconds to insert `n` rows of ~100-byte text into a new SQLite file, one transaction.
fn sqlite_baseline(n: usize) -> anyhow::Result<f64> {
    let dir = artifacts_dir("bench_group_catchup_results")?;
    let path = dir.join("baseline.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE,
         conversation_id TEXT NOT NULL, sender_id TEXT NOT NULL, body TEXT NOT NULL,
         sent_at INTEGER NOT NULL, hlc INTEGER NOT NULL);
         CREATE INDEX messages_in_order ON messages (conversation_id, hlc, message_id);",
    )?;
    let start = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO messages (message_id, conversation_id, sender_id, body, sent_at, hlc)
             VALUES (?1, 'group:x', 'lan:a', ?2, ?3, ?4)",
        )?;
        for i in 0..n {
            let body = format!("{i:05} {}", "x".repeat(94));
            stmt.execute(rusqlite::params![
                ulid::Ulid::new().to_string(),
                body,
                i as i64,
                i as i64
            ])?;
        }
    }
    tx.commit()?;
    Ok(start.elapsed().as_secs_f64())
}
