//! Crash safety: a child process writes in a loop and is killed with SIGKILL; every
//! write it saw acknowledged must be in the database, which must pass integrity_check.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use storage::{MessageId, Store};

use crate::{db_path, inbound_dm, node, now_ms, open_with_peers, send_dm};

const CHILD_ENV: &str = "LANCHAT_STORAGE_CRASH_CHILD_DB";
/// Acknowledged writes to see before the kill: enough that the kill lands mid-stream.
const ACKS_BEFORE_KILL: usize = 400;

/// Not a test of its own: the body of the child process that `killed_writer_*` starts
/// (it does nothing unless that test set the environment variable).
#[test]
fn writer_child_process() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = open_with_peers(std::path::Path::new(&path), 2).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<MessageId>();
        // Several writers at once, so the kill also lands inside group commits.
        for worker in 0..4u8 {
            let store = store.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0u64.. {
                    let id = if worker % 2 == 0 {
                        send_dm(&store, node(1), format!("out {worker}/{i}"), now_ms())
                            .await
                            .unwrap()
                            .0
                            .message_id
                    } else {
                        let (envelope, effect) = inbound_dm(2, &format!("in {worker}/{i}"));
                        let storage::InboundEffect::DirectMessage(m) = &effect else {
                            unreachable!()
                        };
                        let id = m.message_id;
                        store.apply_inbound(envelope, effect).await.unwrap();
                        id
                    };
                    if tx.send(id).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut out = std::io::stdout().lock();
        while let Some(id) = rx.recv().await {
            writeln!(out, "ACK {id}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[tokio::test]
async fn killed_writer_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::writer_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(id.parse::<MessageId>().unwrap());
            }
        }
        acked
    });
    // Wait until enough writes were acknowledged, watching the database grow.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed = false;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let count = count_messages(&path);
        if count >= ACKS_BEFORE_KILL {
            // Only the child this test started, by its own handle: SIGKILL on Unix.
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the child ended or stalled before the kill: {status:?}"
    );
    let acked = reader.join().unwrap();
    eprintln!("{} writes acknowledged before SIGKILL", acked.len());
    assert!(
        acked.len() >= 100,
        "only {} acknowledged writes seen",
        acked.len()
    );

    let store = Store::open(&path).await.unwrap();
    store.integrity_check().await.unwrap();
    for id in &acked {
        assert!(
            store.message(*id).await.unwrap().is_some(),
            "acknowledged {id} is missing"
        );
    }
}

/// Rows visible to a separate reader; read-only so it cannot disturb the child.
fn count_messages(path: &std::path::Path) -> usize {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get::<_, i64>(0))
        .map(|n| n as usize)
        .unwrap_or(0)
}
