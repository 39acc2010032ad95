//! The one thread that writes. Async callers send it jobs; it commits them in batches
//! (group commit): while one transaction commits, the next jobs queue up and then share
//! the following commit, so many small writes cost one WAL append and at most one
//! fsync. Each job runs inside its own savepoint, so a job that fails rolls back alone
//! and the others in its batch still commit. A job's reply is sent only after the
//! commit that holds it succeeded: an `Ok` means the data is in the database.
//!
//! A job that panics (a bug) is a failed job like any other: its savepoint is rolled
//! back, its caller gets an error saying so, and the writer goes on with the next job.
//! The queue is never left without its writer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::thread;

use api_types::NodeId;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::chat;
use crate::database;
use crate::error::{StoreError, StoreResult};
use crate::health::{self, Health, WriteFaultKind};
use crate::peers;
use crate::rows::HlcColumn;
use crate::search;
use chat_core::Hlc;

/// Most jobs in one transaction: bounds the latency a job waits behind others, and is
/// far past the point where the fsync per commit stops dominating.
const MAX_BATCH: usize = 256;
/// Queued jobs before senders wait: back-pressure instead of unbounded memory.
pub(crate) const QUEUE_DEPTH: usize = 1024;

/// What the writer knows between jobs.
#[derive(Default)]
pub(crate) struct WriterState {
    pub local: Option<NodeId>,
    /// The HLC: at or after every stamp stored or seen.
    pub clock: Hlc,
    /// Ids made here are monotonic, so ids made in one millisecond still sort in
    /// creation order (outbox order) and insert at the end of their index.
    pub ids: ulid::Generator,
    /// The outbox and group delivery backoff.
    pub retry: chat_core::RetryPolicy,
    /// `auto_accept_group_sync` off: a group a member adds this node to waits as an
    /// invitation instead of being joined.
    pub manual_group_accept: bool,
    /// Signs this node's group changes and messages (its node keys); `None` until the
    /// node sets it, and in tests that need no signatures.
    pub signer: Option<std::sync::Arc<dyn chat_core::Signer>>,
    /// The settings' blocks (`blocks::apply`); `peers.blocked` mirrors them.
    pub blocks: crate::blocks::BlockList,
}

impl WriterState {
    pub fn next_ulid(&mut self) -> ulid::Ulid {
        // Overflow needs 2^80 ids in one millisecond; a random id is then still unique.
        self.ids.generate().unwrap_or_else(|_| ulid::Ulid::new())
    }
}

/// How durable the commit holding a job must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `synchronous=NORMAL`: survives a crash of the process; a power cut may lose the
    /// last commits since the previous checkpoint (never corrupts).
    Normal,
    /// `synchronous=FULL` for this commit: the WAL is fsynced before the reply, so the
    /// node may ack the sender and a power cut cannot take the data back.
    BeforeAck,
}

/// A write waiting for its turn: `run` inside the transaction, `finish` once the
/// transaction's fate is known.
pub(crate) trait Job: Send {
    /// Runs the write; false if it failed (its savepoint is then rolled back).
    fn run(&mut self, conn: &Connection, state: &mut WriterState) -> bool;
    /// The write panicked: its outcome is this error, whatever the commit does.
    fn panicked(&mut self, reason: String);
    fn finish(self: Box<Self>, commit: Result<(), String>);
    fn durability(&self) -> Durability;
    /// The job failed because the disk did (full, I/O error), not because of its input.
    fn disk_fault(&self) -> Option<WriteFaultKind> {
        None
    }
}

/// Runs on the writer's thread once a job's write is committed, before its reply: what
/// must follow a commit even when the caller stopped waiting (the name cache).
pub(crate) type AfterCommit<R> = Box<dyn FnOnce(&R) + Send>;

pub(crate) struct WriteJob<R, F> {
    durability: Durability,
    write: Option<F>,
    result: Option<StoreResult<R>>,
    after_commit: Option<AfterCommit<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<R, F> WriteJob<R, F>
where
    R: Send + 'static,
    F: FnOnce(&Connection, &mut WriterState) -> StoreResult<R> + Send + 'static,
{
    pub(crate) fn boxed(
        durability: Durability,
        write: F,
        after_commit: Option<AfterCommit<R>>,
        reply: oneshot::Sender<StoreResult<R>>,
    ) -> Box<dyn Job> {
        Box::new(WriteJob {
            durability,
            write: Some(write),
            result: None,
            after_commit,
            reply,
        })
    }
}

impl<R, F> Job for WriteJob<R, F>
where
    R: Send + 'static,
    F: FnOnce(&Connection, &mut WriterState) -> StoreResult<R> + Send + 'static,
{
    fn run(&mut self, conn: &Connection, state: &mut WriterState) -> bool {
        let Some(write) = self.write.take() else {
            return false;
        };
        let result = write(conn, state);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn panicked(&mut self, reason: String) {
        self.result = Some(Err(StoreError::Commit(reason)));
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let outcome = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(result), Ok(())) => result,
            (_, Err(reason)) => Err(StoreError::Commit(reason)),
            (None, Ok(())) => Err(StoreError::Commit("the write never ran".into())),
        };
        if let (Ok(committed), Some(after)) = (&outcome, self.after_commit) {
            after(committed);
        }
        // The caller may have stopped waiting; the outcome stands either way.
        let _ = self.reply.send(outcome);
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    fn disk_fault(&self) -> Option<WriteFaultKind> {
        match &self.result {
            Some(Err(StoreError::Sqlite(e))) => health::classify(e),
            _ => None,
        }
    }
}

pub(crate) enum Command {
    Write(Box<dyn Job>),
    Close(oneshot::Sender<()>),
}

/// Starts the writer thread; `ready` says whether the database opened.
pub(crate) fn spawn(
    path: PathBuf,
    health: Health,
) -> StoreResult<(mpsc::Sender<Command>, oneshot::Receiver<StoreResult<()>>)> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let (ready_tx, ready_rx) = oneshot::channel();
    thread::Builder::new()
        .name("storage-writer".into())
        .spawn(move || run(path, rx, ready_tx, health))
        .map_err(|e| StoreError::Start(e.to_string()))?;
    Ok((tx, ready_rx))
}

fn run(
    path: PathBuf,
    mut commands: mpsc::Receiver<Command>,
    ready: oneshot::Sender<StoreResult<()>>,
    health: Health,
) {
    let opened = database::open_writer(&path).and_then(|conn| {
        let state = load_state(&conn)?;
        Ok((conn, state))
    });
    let (conn, mut state) = match opened {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut closing: Option<oneshot::Sender<()>> = None;
    while let Some(first) = commands.blocking_recv() {
        match first {
            Command::Write(job) => batch.push(job),
            Command::Close(done) => closing = Some(done),
        }
        while closing.is_none() && batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(Command::Write(job)) => batch.push(job),
                Ok(Command::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit_batch(&conn, &mut state, std::mem::take(&mut batch), &health);
        }
        if closing.is_some() {
            break;
        }
    }
    // Jobs that raced with Close are refused, not dropped silently.
    commands.close();
    while let Ok(command) = commands.try_recv() {
        if let Command::Write(job) = command {
            job.finish(Err("the store was closing".into()));
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA optimize") {
        tracing::debug!(error = %e, "optimize on close failed");
    }
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

fn load_state(conn: &Connection) -> StoreResult<WriterState> {
    let local = chat::local_identity(conn)?.map(|i| i.node_id);
    // `conversations.last_hlc` is the newest stamp per conversation, so this reads a
    // handful of rows instead of scanning every message.
    let clock: Option<i64> = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(last_hlc) FROM conversations), 0),
                        COALESCE((SELECT MAX(revision) FROM groups), 0))",
        [],
        |r| r.get(0),
    )?;
    let offline = peers::set_all_offline(conn)?;
    tracing::debug!(offline, "peers reset to offline until seen again");
    Ok(WriterState {
        local,
        clock: restored_clock(clock.map(Hlc::from_sql).unwrap_or_default(), wall_now_ms()),
        ids: ulid::Generator::new(),
        retry: Default::default(),
        manual_group_accept: false,
        signer: None,
        blocks: Default::default(),
    })
}

/// The clock after a restart: the newest stamp stored, but no further ahead than a
/// remote stamp could have moved it while running (`Hlc::observe`). Stored stamps
/// include peers' stamps far ahead, kept as their authors made them; starting from them
/// would drag this node's clock after all. Its own events need no more: each is also
/// stamped after its conversation or group (`Hlc::tick_after`).
fn restored_clock(newest_stored: Hlc, now_ms: u64) -> Hlc {
    Hlc::observe(Hlc::default(), newest_stored, now_ms)
}

fn wall_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn set_synchronous(conn: &Connection, durability: Durability) {
    let level = match durability {
        Durability::Normal => "NORMAL",
        Durability::BeforeAck => "FULL",
    };
    if let Err(e) = conn.pragma_update(None, "synchronous", level) {
        tracing::warn!(error = %e, level, "cannot set synchronous");
    }
}

/// Remembers the first disk fault of a batch (for `Health`) and returns the error text.
fn observe(fault: &mut Option<(WriteFaultKind, String)>, e: &rusqlite::Error) -> String {
    let text = e.to_string();
    if fault.is_none() {
        *fault = health::classify(e).map(|kind| (kind, text.clone()));
    }
    text
}

fn commit_batch(
    conn: &Connection,
    state: &mut WriterState,
    batch: Vec<Box<dyn Job>>,
    health: &Health,
) {
    let mut fault: Option<(WriteFaultKind, String)> = None;
    let changes_before = conn.total_changes();
    let mut committed_ok = false;
    let durability = if batch
        .iter()
        .any(|j| j.durability() == Durability::BeforeAck)
    {
        Durability::BeforeAck
    } else {
        Durability::Normal
    };
    if durability == Durability::BeforeAck {
        set_synchronous(conn, durability);
    }
    let mut done: Vec<Box<dyn Job>> = Vec::with_capacity(batch.len());
    let mut began = conn
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| observe(&mut fault, &e));
    for mut job in batch {
        if let Err(reason) = &began {
            job.finish(Err(reason.clone()));
            continue;
        }
        if let Err(e) = exec_cached(conn, "SAVEPOINT job") {
            job.finish(Err(e.to_string()));
            continue;
        }
        let ok = run_guarded(job.as_mut(), conn, state);
        if let (None, Some(kind)) = (&fault, job.disk_fault()) {
            fault = Some((kind, "a write failed".into()));
        }
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error): the
            // earlier jobs of this batch are gone too. Say so, and start afresh.
            let reason = "the transaction was rolled back".to_string();
            forget_uncommitted(conn, state);
            finish_all(std::mem::take(&mut done), Err(reason.clone()));
            job.finish(Err(reason));
            began = conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| observe(&mut fault, &e));
            continue;
        }
        let closed = if ok {
            exec_cached(conn, "RELEASE job")
        } else {
            exec_cached(conn, "ROLLBACK TO job").and_then(|()| exec_cached(conn, "RELEASE job"))
        };
        match closed {
            Ok(()) => done.push(job),
            Err(e) => {
                tracing::error!(error = %e, "cannot close a job's savepoint");
                job.finish(Err(e.to_string()));
            }
        }
    }
    match began {
        Ok(()) => {
            let committed = search::index_new(conn)
                .map_err(|e| format!("cannot index new messages: {}", observe(&mut fault, &e)))
                .and_then(|_| {
                    conn.execute_batch("COMMIT")
                        .map_err(|e| observe(&mut fault, &e))
                });
            if let Err(reason) = &committed {
                tracing::error!(reason, "commit failed");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                forget_uncommitted(conn, state);
            }
            committed_ok = committed.is_ok();
            finish_all(done, committed);
        }
        Err(reason) => finish_all(done, Err(reason)),
    }
    if durability == Durability::BeforeAck {
        set_synchronous(conn, Durability::Normal);
    }
    match fault {
        Some((kind, message)) => health.failed(kind, message),
        // Only a commit that wrote something proves the disk takes writes again (one
        // that changed nothing writes nothing, and succeeds on a full disk too).
        None if committed_ok && conn.total_changes() > changes_before => health.recovered(),
        None => {}
    }
}

/// Runs a job, turning a panic into a failed job. The unwind may leave the job's own
/// writes half done: its savepoint is still open, and the caller rolls it back like
/// any failed job's. The state may hold something of it too, so it is reloaded as
/// after a rolled-back batch. That is all the job could touch, hence `AssertUnwindSafe`.
fn run_guarded(job: &mut dyn Job, conn: &Connection, state: &mut WriterState) -> bool {
    match catch_unwind(AssertUnwindSafe(|| job.run(conn, state))) {
        Ok(ok) => ok,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            tracing::error!(panic = %what, "a store write panicked; it was rolled back");
            job.panicked(format!("the write failed with an internal error ({what})"));
            forget_uncommitted(conn, state);
            false
        }
    }
}

/// After a rolled-back batch, what jobs put in the state may not be in the database:
/// read the identity back. The clock may stay ahead; it only has to be monotonic.
fn forget_uncommitted(conn: &Connection, state: &mut WriterState) {
    match chat::local_identity(conn) {
        Ok(identity) => state.local = identity.map(|i| i.node_id),
        Err(e) => tracing::error!(error = %e, "cannot reload the local identity"),
    }
}

/// Savepoint statements run once per job: prepared once, not parsed every time.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn finish_all(done: Vec<Box<dyn Job>>, outcome: Result<(), String>) {
    for job in done {
        job.finish(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn write<R, F>(writer: &mpsc::Sender<Command>, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> StoreResult<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        writer
            .send(Command::Write(WriteJob::boxed(
                Durability::Normal,
                f,
                None,
                tx,
            )))
            .await
            .unwrap();
        rx.await.unwrap()
    }

    fn set_note(conn: &Connection, key: &str) -> StoreResult<()> {
        conn.execute("CREATE TABLE IF NOT EXISTS note (k TEXT PRIMARY KEY)", [])?;
        conn.execute("INSERT INTO note (k) VALUES (?1)", [key])?;
        Ok(())
    }

    fn notes(conn: &Connection) -> StoreResult<Vec<String>> {
        let mut stmt = conn.prepare("SELECT k FROM note ORDER BY k")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    #[tokio::test]
    async fn a_job_that_panics_is_an_error_to_its_caller_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, ready) = spawn(dir.path().join("lanchat.db"), Health::default()).unwrap();
        ready.await.unwrap().unwrap();

        write(&writer, |c, _| set_note(c, "before")).await.unwrap();
        let panicked = write(&writer, |c, _| -> StoreResult<()> {
            set_note(c, "half done")?;
            panic!("a bug in a write");
        })
        .await;
        match panicked {
            Err(StoreError::Commit(reason)) => {
                assert!(reason.contains("a bug in a write"), "{reason}")
            }
            other => panic!("expected an error, got {other:?}"),
        }
        // The writer is still there, and the panicking job's half is not in the file.
        write(&writer, |c, _| set_note(c, "after")).await.unwrap();
        let stored = write(&writer, |c, _| notes(c)).await.unwrap();
        assert_eq!(stored, ["after", "before"]);
    }

    #[tokio::test]
    async fn the_after_commit_hook_runs_for_committed_writes_only() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, ready) = spawn(dir.path().join("lanchat.db"), Health::default()).unwrap();
        ready.await.unwrap().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for (key, fails) in [("first", false), ("second", true), ("third", false)] {
            let (tx, rx) = oneshot::channel();
            let record = std::sync::Arc::clone(&seen);
            let job = WriteJob::boxed(
                Durability::Normal,
                move |c: &Connection, _: &mut WriterState| -> StoreResult<String> {
                    set_note(c, key)?;
                    if fails {
                        return Err(StoreError::invalid("note", "refused"));
                    }
                    Ok(key.to_string())
                },
                Some(Box::new(move |k: &String| {
                    record.lock().unwrap().push(k.clone())
                })),
                tx,
            );
            writer.send(Command::Write(job)).await.unwrap();
            assert_eq!(rx.await.unwrap().is_ok(), !fails);
        }
        assert_eq!(*seen.lock().unwrap(), ["first", "third"]);
    }

    #[tokio::test]
    async fn a_panic_fails_only_its_own_job_in_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, ready) = spawn(dir.path().join("lanchat.db"), Health::default()).unwrap();
        ready.await.unwrap().unwrap();
        write(&writer, |c, _| set_note(c, "table")).await.unwrap();

        // Queued together, so they share one batch (the writer takes what is queued).
        let mut replies = Vec::new();
        for index in 0..5 {
            let (tx, rx) = oneshot::channel();
            let job = WriteJob::boxed(
                Durability::Normal,
                move |c: &Connection, _: &mut WriterState| -> StoreResult<()> {
                    if index == 2 {
                        panic!("job {index} panics");
                    }
                    set_note(c, &format!("job {index}"))
                },
                None,
                tx,
            );
            writer.send(Command::Write(job)).await.unwrap();
            replies.push(rx);
        }
        let mut outcomes = Vec::new();
        for rx in replies {
            outcomes.push(rx.await.unwrap().is_ok());
        }
        assert_eq!(outcomes, [true, true, false, true, true]);
        let stored = write(&writer, |c, _| notes(c)).await.unwrap();
        assert_eq!(stored, ["job 0", "job 1", "job 3", "job 4", "table"]);
    }
}
