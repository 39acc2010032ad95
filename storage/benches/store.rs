//! Storage benchmark: `cargo bench -p storage --bench store`.
//!
//! Every store figure is printed beside a raw rusqlite baseline measured in the same
//! run on the same machine (WAL, synchronous=NORMAL, prepared statements). Counts are
//! fixed so a run takes about a minute; `LANCHAT_BENCH_MESSAGES` overrides the size of
//! the history database (default 200 000).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api_types::NodeId;
use rusqlite::{params, Connection};
use storage::{
    ConversationId, GlobalGroupId, HistoryQuery, NewGroup, OutgoingEnvelope, PeerSighting,
    SendAttempt, Store,
};

const SINGLE: usize = 2_000;
const BATCHED: usize = 20_000;
/// Writes in flight at once for the batched store path; the writer's batch is 256.
const IN_FLIGHT: usize = 256;
const ROUND_TRIPS: usize = 1_000;
const GROUP_MEMBERS: u8 = 200;
const GROUP_SENDS: usize = 2_000;
const PAGE_QUERIES: usize = 2_000;
const PAGE: u32 = 50;
const CONVERSATIONS: usize = 50;
const OPENS: usize = 10;

fn node(n: u32) -> NodeId {
    let s = format!("01HZZZZZZZZZZZZZZZZZZZ{n:04}");
    s.parse().unwrap()
}

/// The DM conversation with `node(n)`.
fn dm(n: u32) -> ConversationId {
    ConversationId::dm(&node(n))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn envelope(m: &storage::Message) -> OutgoingEnvelope {
    OutgoingEnvelope {
        kind: "dm.send".into(),
        payload: format!("{{\"id\":\"{}\",\"text\":{:?}}}", m.message_id, m.body).into_bytes(),
    }
}

fn body(i: usize) -> String {
    format!(
        "message {i}: 今天下午三点开会 meeting at three, room {}",
        i % 17
    )
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The baseline: a table shaped like `messages`, same index, no store around it.
fn raw_db(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE,
            conversation_id TEXT NOT NULL, sender_id TEXT NOT NULL, body TEXT NOT NULL,
            sent_at INTEGER NOT NULL, received_at INTEGER NOT NULL, hlc INTEGER NOT NULL,
            status TEXT NOT NULL) STRICT;
         CREATE INDEX messages_in_order ON messages (conversation_id, hlc, message_id);
         CREATE TABLE outbox (envelope_id TEXT PRIMARY KEY, peer_id TEXT NOT NULL, kind TEXT NOT NULL,
            payload BLOB NOT NULL, status TEXT NOT NULL, retry_count INTEGER NOT NULL DEFAULT 0,
            next_retry_at INTEGER NOT NULL) STRICT;",
    )
    .unwrap();
    conn
}

fn raw_insert(conn: &Connection, i: usize, conversation: &str) {
    conn.prepare_cached(
        "INSERT INTO messages (message_id, conversation_id, sender_id, body, sent_at, received_at, hlc, status)
         VALUES (?1, ?2, 'lan:me', ?3, ?4, ?4, ?5, 'pending')",
    )
    .unwrap()
    .execute(params![ulid::Ulid::new().to_string(), conversation, body(i), now_ms(), (i as i64) << 16])
    .unwrap();
}

async fn store_with_peers(path: &Path, peers: u32) -> Store {
    let store = Store::open(path).await.unwrap();
    store
        .set_local_identity(node(0), "Bench".into(), now_ms())
        .await
        .unwrap();
    for n in 1..=peers {
        store
            .record_peer_sighting(PeerSighting {
                peer_id: node(n),
                display_name: format!("Peer {n}"),
                ip: "10.0.0.1".into(),
                port: 19123,
                capabilities: "[]".into(),
                seen_at: now_ms(),
            })
            .await
            .unwrap();
    }
    store
}

async fn bench_inserts(dir: &Path) {
    println!("## Messages stored per second");
    let raw = raw_db(&dir.join("raw-insert.db"));
    let t = Instant::now();
    for i in 0..SINGLE {
        raw.execute_batch("BEGIN").unwrap();
        raw_insert(&raw, i, "dm:x");
        raw.execute_batch("COMMIT").unwrap();
    }
    let raw_single = rate(SINGLE, t.elapsed());
    let t = Instant::now();
    for chunk in 0..BATCHED / IN_FLIGHT {
        raw.execute_batch("BEGIN").unwrap();
        for i in 0..IN_FLIGHT {
            raw_insert(&raw, chunk * IN_FLIGHT + i, "dm:x");
        }
        raw.execute_batch("COMMIT").unwrap();
    }
    let raw_batched = rate(BATCHED / IN_FLIGHT * IN_FLIGHT, t.elapsed());

    // The same raw inserts into the store's own schema: its messages table with the
    // full-text index trigger, which every stored message pays for.
    let indexed_path = dir.join("raw-indexed.db");
    Store::open(&indexed_path)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let indexed = Connection::open(&indexed_path).unwrap();
    indexed
        .pragma_update(None, "synchronous", "NORMAL")
        .unwrap();
    indexed.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    // The store indexes new rows once per commit with one INSERT … SELECT; so does this.
    let index_new = |conn: &Connection| {
        conn.execute_batch(
            "INSERT INTO message_search (rowid, body) SELECT id, body FROM messages
               WHERE id > (SELECT last_indexed_id FROM search_progress);
             UPDATE search_progress SET last_indexed_id = (SELECT MAX(id) FROM messages);",
        )
        .unwrap()
    };
    let t = Instant::now();
    for i in 0..SINGLE {
        indexed.execute_batch("BEGIN").unwrap();
        raw_insert(&indexed, i, "dm:x");
        index_new(&indexed);
        indexed.execute_batch("COMMIT").unwrap();
    }
    let indexed_single = rate(SINGLE, t.elapsed());
    let t = Instant::now();
    for chunk in 0..BATCHED / IN_FLIGHT {
        indexed.execute_batch("BEGIN").unwrap();
        for i in 0..IN_FLIGHT {
            raw_insert(&indexed, chunk * IN_FLIGHT + i, "dm:x");
        }
        index_new(&indexed);
        indexed.execute_batch("COMMIT").unwrap();
    }
    let indexed_batched = rate(BATCHED / IN_FLIGHT * IN_FLIGHT, t.elapsed());

    // The same rows the store writes for a DM, written with plain rusqlite: message,
    // conversation update, outbox row, search index. Store / this = the cost of the
    // store itself (thread hop, savepoints, checks).
    indexed
        .execute_batch(&format!(
            "INSERT INTO peers (peer_id, display_name) VALUES ('{p}', 'p');
             INSERT INTO conversations (conversation_id, kind, peer_id, created_at) VALUES ('dm:y', 'dm', '{p}', 0);",
            p = node(1)
        ))
        .unwrap();
    let same_work = |conn: &Connection, i: usize| {
        raw_insert(conn, i, "dm:y");
        conn.prepare_cached(
            "UPDATE conversations SET last_message_id = ?2, last_hlc = ?3 WHERE conversation_id = ?1",
        )
        .unwrap()
        .execute(params!["dm:y", ulid::Ulid::new().to_string(), (i as i64) << 16])
        .unwrap();
        conn.prepare_cached(
            "INSERT INTO outbox (envelope_id, peer_id, kind, payload, message_id, status, next_retry_at, created_at)
             VALUES (?1, ?2, 'dm.send', ?3, ?4, 'pending', 0, 0)",
        )
        .unwrap()
        .execute(params![
            ulid::Ulid::new().to_string(),
            node(1).as_str(),
            body(i).into_bytes(),
            ulid::Ulid::new().to_string()
        ])
        .unwrap();
    };
    let t = Instant::now();
    for i in 0..SINGLE {
        indexed.execute_batch("BEGIN").unwrap();
        same_work(&indexed, i);
        index_new(&indexed);
        indexed.execute_batch("COMMIT").unwrap();
    }
    let same_single = rate(SINGLE, t.elapsed());
    let t = Instant::now();
    for chunk in 0..BATCHED / IN_FLIGHT {
        indexed.execute_batch("BEGIN").unwrap();
        for i in 0..IN_FLIGHT {
            same_work(&indexed, chunk * IN_FLIGHT + i);
        }
        index_new(&indexed);
        indexed.execute_batch("COMMIT").unwrap();
    }
    let same_batched = rate(BATCHED / IN_FLIGHT * IN_FLIGHT, t.elapsed());
    drop(indexed);

    let store = store_with_peers(&dir.join("store-insert.db"), 1).await;
    let t = Instant::now();
    for i in 0..SINGLE {
        store
            .send_message_queued(dm(1), body(i), now_ms(), envelope)
            .await
            .unwrap();
    }
    let store_single = rate(SINGLE, t.elapsed());
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(IN_FLIGHT);
    for worker in 0..IN_FLIGHT {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..BATCHED / IN_FLIGHT {
                store
                    .send_message_queued(dm(1), body(worker * 1_000 + i), now_ms(), envelope)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let store_batched = rate(BATCHED / IN_FLIGHT * IN_FLIGHT, t.elapsed());
    // Fixed cost of one write through the store: a job that only reads one row.
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..BATCHED / IN_FLIGHT {
                store.set_peer_offline(node(1), 0).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let trivial = rate(BATCHED / IN_FLIGHT * IN_FLIGHT, t.elapsed());
    println!("(a one-row update through the store, {IN_FLIGHT} in flight: {trivial:.0} writes/s)");
    println!("| path | A: raw, plain messages table (rows/s) | B: raw, messages + search index (rows/s) | C: raw, same rows as a store DM (msgs/s) | store send_message_queued, DM (msgs/s) | store / A | store / B | store / C |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| single (one commit each) | {raw_single:.0} | {indexed_single:.0} | {same_single:.0} | {store_single:.0} | {:.2} | {:.2} | {:.2} |",
        store_single / raw_single,
        store_single / indexed_single,
        store_single / same_single
    );
    println!(
        "| batched ({IN_FLIGHT} per commit / in flight) | {raw_batched:.0} | {indexed_batched:.0} | {same_batched:.0} | {store_batched:.0} | {:.2} | {:.2} | {:.2} |",
        store_batched / raw_batched,
        store_batched / indexed_batched,
        store_batched / same_batched
    );
    println!("(store: DM = message row + search index + conversation update + outbox row, one transaction)");
    store.close().await.unwrap();
}

async fn bench_round_trip(dir: &Path) {
    println!("\n## Outbox enqueue -> sent -> acked round trip");
    let raw = raw_db(&dir.join("raw-outbox.db"));
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS {
        let t = Instant::now();
        let id = ulid::Ulid::new().to_string();
        raw.execute_batch("BEGIN").unwrap();
        raw_insert(&raw, i, "dm:x");
        raw.prepare_cached(
            "INSERT INTO outbox (envelope_id, peer_id, kind, payload, status, next_retry_at) VALUES (?1, 'p', 'dm.send', x'00', 'pending', 0)",
        )
        .unwrap()
        .execute([&id])
        .unwrap();
        raw.execute_batch("COMMIT").unwrap();
        raw.prepare_cached("UPDATE outbox SET retry_count = retry_count + 1, next_retry_at = 1 WHERE envelope_id = ?1")
            .unwrap()
            .execute([&id])
            .unwrap();
        raw.prepare_cached("DELETE FROM outbox WHERE envelope_id = ?1")
            .unwrap()
            .execute([&id])
            .unwrap();
        samples.push(t.elapsed());
    }
    let raw_p50 = percentile(&mut samples, 0.5);
    let raw_p99 = percentile(&mut samples, 0.99);

    let store = store_with_peers(&dir.join("store-outbox.db"), 1).await;
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS {
        let t = Instant::now();
        let (_, entry) = store
            .send_message_queued(dm(1), body(i), now_ms(), envelope)
            .await
            .unwrap();
        let id = entry.unwrap().envelope_id;
        store
            .record_outbox_attempts(vec![(id, SendAttempt::Sent)], now_ms())
            .await
            .unwrap();
        assert!(store.outbox_ack(id, node(1)).await.unwrap().is_some());
        samples.push(t.elapsed());
    }
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    println!("| | raw rusqlite (3 commits) | store (3 calls) |");
    println!("| --- | ---: | ---: |");
    println!("| p50 | {:.3} ms | {:.3} ms |", ms(raw_p50), ms(p50));
    println!("| p99 | {:.3} ms | {:.3} ms |", ms(raw_p99), ms(p99));
    store.close().await.unwrap();
}

async fn bench_group_fan_out(dir: &Path) {
    println!("\n## Group fan-out, {GROUP_MEMBERS} members: one outbox row per recipient vs message + cursors");
    let raw = raw_db(&dir.join("raw-fanout.db"));
    let t = Instant::now();
    for i in 0..GROUP_SENDS {
        raw.execute_batch("BEGIN").unwrap();
        raw_insert(&raw, i, "group:x");
        for member in 1..=u32::from(GROUP_MEMBERS) {
            raw.prepare_cached(
                "INSERT INTO outbox (envelope_id, peer_id, kind, payload, status, next_retry_at) VALUES (?1, ?2, 'group.send', ?3, 'pending', 0)",
            )
            .unwrap()
            .execute(params![ulid::Ulid::new().to_string(), node(member).as_str(), body(i).into_bytes()])
            .unwrap();
        }
        raw.execute_batch("COMMIT").unwrap();
    }
    let per_recipient = rate(GROUP_SENDS, t.elapsed());

    let store = store_with_peers(&dir.join("store-fanout.db"), u32::from(GROUP_MEMBERS)).await;
    let group = store
        .create_group(
            NewGroup {
                name: "Everyone".into(),
                announcement: String::new(),
                members: (1..=u32::from(GROUP_MEMBERS)).map(node).collect(),
            },
            now_ms(),
            |_| OutgoingEnvelope {
                kind: "group.upsert".into(),
                payload: b"{}".to_vec(),
            },
        )
        .await
        .unwrap();
    let gid: GlobalGroupId = group.state.global_group_id;
    let t = Instant::now();
    for i in 0..GROUP_SENDS {
        store
            .send_message_queued(ConversationId::group(&gid), body(i), now_ms(), envelope)
            .await
            .unwrap();
    }
    let cursors = rate(GROUP_SENDS, t.elapsed());
    let t = Instant::now();
    let due = store.due_group_deliveries(now_ms(), 100).await.unwrap();
    let due_took = t.elapsed();
    println!("| scheme | sends/s (one commit each) |");
    println!("| --- | ---: |");
    println!("| raw: message + {GROUP_MEMBERS} outbox rows | {per_recipient:.0} |");
    println!("| store: message row + delivery cursors | {cursors:.0} |");
    println!(
        "(finding what is owed: {} members × 100 messages in {:.1} ms)",
        due.len(),
        ms(due_took)
    );
    store.close().await.unwrap();
}

/// Builds a store database with `total` messages over `CONVERSATIONS` DMs, written with
/// raw inserts into the store's own schema (its triggers keep the search index).
async fn build_history(path: &Path, total: usize) {
    let store = store_with_peers(path, CONVERSATIONS as u32).await;
    for n in 1..=CONVERSATIONS as u32 {
        store.open_direct(node(n), now_ms()).await.unwrap();
    }
    store.close().await.unwrap();
    let mut conn = Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    let base = now_ms() - total as i64;
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO messages (message_id, conversation_id, sender_id, body, sent_at, received_at, hlc, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, 'delivered')",
            )
            .unwrap();
        let mut generator = ulid::Generator::new();
        for i in 0..total {
            let peer = node(1 + (i % CONVERSATIONS) as u32);
            let conv = ConversationId::dm(&peer);
            let at = base + i as i64;
            stmt.execute(params![
                generator.generate().unwrap().to_string(),
                conv.as_str(),
                format!("lan:{peer}"),
                body(i),
                at,
                at << 16
            ])
            .unwrap();
        }
    }
    tx.execute_batch(
        "INSERT INTO message_search (rowid, body) SELECT id, body FROM messages
           WHERE id > (SELECT last_indexed_id FROM search_progress);
         UPDATE search_progress SET last_indexed_id = (SELECT MAX(id) FROM messages);",
    )
    .unwrap();
    tx.execute(
        "UPDATE conversations SET last_hlc = (SELECT MAX(hlc) FROM messages m WHERE m.conversation_id = conversations.conversation_id),
            last_message_id = (SELECT message_id FROM messages m WHERE m.conversation_id = conversations.conversation_id ORDER BY hlc DESC LIMIT 1)",
        [],
    )
    .unwrap();
    tx.commit().unwrap();
}

async fn bench_history_and_startup(dir: &Path) {
    let total: usize = std::env::var("LANCHAT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let path = dir.join("history.db");
    let t = Instant::now();
    build_history(&path, total).await;
    println!(
        "\n(built a {total}-message database in {:.1} s)",
        t.elapsed().as_secs_f64()
    );

    println!(
        "\n## History page ({PAGE} messages) on {total} messages, {CONVERSATIONS} conversations"
    );
    let raw = Connection::open(&path).unwrap();
    let per_conv = (total / CONVERSATIONS) as i64;
    let base_hlc = (now_ms() - total as i64) << 16;
    let pick = |i: usize| {
        // Deterministic spread: every conversation, positions from newest to oldest.
        let conv = ConversationId::dm(&node(1 + (i * 7 % CONVERSATIONS) as u32));
        let back = (i as i64 * 7_919) % per_conv.max(1);
        (conv, back)
    };
    let mut samples = Vec::with_capacity(PAGE_QUERIES);
    for i in 0..PAGE_QUERIES {
        let (conv, back) = pick(i);
        let before_hlc = base_hlc + ((total as i64 - back * CONVERSATIONS as i64) << 16);
        let t = Instant::now();
        let mut stmt = raw
            .prepare_cached(
                "SELECT message_id, conversation_id, sender_id, body, sent_at, received_at, hlc, status FROM messages
                 WHERE conversation_id = ?1 AND (hlc, message_id) < (?2, '~') ORDER BY hlc DESC, message_id DESC LIMIT ?3",
            )
            .unwrap();
        let rows: Vec<(String, String)> = stmt
            .query_map(params![conv.as_str(), before_hlc, PAGE + 1], |r| {
                Ok((r.get(0)?, r.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        std::hint::black_box(rows);
        samples.push(t.elapsed());
    }
    let raw_p50 = percentile(&mut samples, 0.5);
    let raw_p99 = percentile(&mut samples, 0.99);

    let store = Store::open(&path).await.unwrap();
    let mut samples = Vec::with_capacity(PAGE_QUERIES);
    let mut fetched = 0;
    for i in 0..PAGE_QUERIES {
        let (conv, back) = pick(i);
        // Page from the newest, or from an older position via a cursor taken just before.
        let before = if back == 0 {
            None
        } else {
            let hlc = storage::Hlc::from_raw(
                (base_hlc + ((total as i64 - back * CONVERSATIONS as i64) << 16)) as u64,
            );
            Some(storage::OrderKey {
                hlc,
                message_id: storage::MessageId::from_ulid(ulid::Ulid::from_parts(
                    u64::MAX >> 16,
                    u128::MAX,
                )),
            })
        };
        let t = Instant::now();
        let page = store
            .history(
                conv,
                HistoryQuery {
                    before,
                    limit: PAGE,
                },
            )
            .await
            .unwrap();
        samples.push(t.elapsed());
        fetched += page.messages.len();
    }
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    println!("| | raw rusqlite (same query) | store.history (async, reader thread) |");
    println!("| --- | ---: | ---: |");
    println!("| p50 | {:.3} ms | {:.3} ms |", ms(raw_p50), ms(p50));
    println!("| p99 | {:.3} ms | {:.3} ms |", ms(raw_p99), ms(p99));
    println!(
        "(average page: {:.1} messages)",
        fetched as f64 / PAGE_QUERIES as f64
    );
    let t = Instant::now();
    let hits = store
        .search(storage::SearchQuery {
            text: "开会 room".into(),
            after: None,
            limit: 50,
        })
        .await
        .unwrap();
    println!(
        "(search \"开会 room\": {} hits, first page in {:.1} ms)",
        hits.hits.len(),
        ms(t.elapsed())
    );
    store.close().await.unwrap();
    drop(raw);

    println!("\n## Startup on {total} messages: open + migrate check");
    let mut raw_samples = Vec::with_capacity(OPENS);
    let mut samples = Vec::with_capacity(OPENS);
    for _ in 0..OPENS {
        let t = Instant::now();
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        std::hint::black_box(v);
        raw_samples.push(t.elapsed());
        drop(conn);
        let t = Instant::now();
        let store = Store::open(&path).await.unwrap();
        samples.push(t.elapsed());
        store.close().await.unwrap();
    }
    let raw_p50 = percentile(&mut raw_samples, 0.5);
    let p50 = percentile(&mut samples, 0.5);
    let max = percentile(&mut samples, 1.0);
    println!("| | raw rusqlite (open + user_version) | Store::open (checks, migrate, writer + 2 readers) |");
    println!("| --- | ---: | ---: |");
    println!("| p50 | {:.2} ms | {:.2} ms |", ms(raw_p50), ms(p50));
    println!("| max of {OPENS} | | {:.2} ms |", ms(max));
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not support.
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    // `LANCHAT_BENCH_ONLY=inserts|round_trip|fan_out|history` runs one part.
    let only = std::env::var("LANCHAT_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    runtime.block_on(async {
        if run("inserts") {
            bench_inserts(dir.path()).await;
        }
        if run("round_trip") {
            bench_round_trip(dir.path()).await;
        }
        if run("fan_out") {
            bench_group_fan_out(dir.path()).await;
        }
        if run("history") {
            bench_history_and_startup(dir.path()).await;
        }
    });
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());
}
