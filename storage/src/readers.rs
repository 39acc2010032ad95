//! Read connections on their own threads. WAL lets them read while the writer writes;
//! each read sees every write whose reply was received before it was sent.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::database;
use crate::error::{StoreError, StoreResult};

pub(crate) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Queued reads before callers wait.
const QUEUE_DEPTH: usize = 256;

/// Starts `count` reader threads sharing one queue; resolves once all have opened.
pub(crate) async fn spawn(path: PathBuf, count: usize) -> StoreResult<mpsc::Sender<ReadJob>> {
    let (tx, rx) = mpsc::channel::<ReadJob>(QUEUE_DEPTH);
    let rx = Arc::new(Mutex::new(rx));
    let mut opened = Vec::with_capacity(count);
    for index in 0..count.max(1) {
        let (ready_tx, ready_rx) = oneshot::channel();
        let rx = Arc::clone(&rx);
        let path = path.clone();
        thread::Builder::new()
            .name(format!("storage-reader-{index}"))
            .spawn(move || run(path, rx, ready_tx))
            .map_err(|e| StoreError::Start(e.to_string()))?;
        opened.push(ready_rx);
    }
    for ready in opened {
        ready.await.map_err(|_| StoreError::Closed)??;
    }
    Ok(tx)
}

fn run(
    path: PathBuf,
    jobs: Arc<Mutex<mpsc::Receiver<ReadJob>>>,
    ready: oneshot::Sender<StoreResult<()>>,
) {
    let conn = match database::open_reader(&path) {
        Ok(conn) => conn,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    loop {
        // Only one idle reader waits on the queue at a time; the others wait on the lock.
        let job = match jobs.lock() {
            Ok(mut queue) => queue.blocking_recv(),
            Err(_) => None,
        };
        match job {
            // A read that panics (a bug) drops its reply, so its caller gets an error;
            // this thread stays to serve the next reads instead of dying with it.
            Some(job) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn))).is_err() {
                    tracing::error!("a store read panicked");
                }
            }
            None => break,
        }
    }
}
