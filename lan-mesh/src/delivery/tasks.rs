//! The tasks delivery starts besides its two loops (a frame's handling, status events,
//! catch-up sessions): each is owned, ends when delivery is cancelled, and is waited
//! for before `delivery::spawn`'s handle completes, so nothing of a stopped mesh keeps
//! running against the store or the links of the next one.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub(crate) struct OwnedTasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl OwnedTasks {
    pub(crate) fn new(cancel: CancellationToken) -> OwnedTasks {
        OwnedTasks {
            tracker: TaskTracker::new(),
            cancel,
        }
    }

    /// Runs `work` until it ends or delivery is cancelled. Dropping it at an await is
    /// safe: every store call is one atomic job, and whatever was not acked is resent.
    pub(crate) fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            cancel.run_until_cancelled_owned(work).await;
        });
    }

    /// After cancellation: waits until every task has ended (promptly: each stops at
    /// its next await once cancelled).
    pub(crate) async fn join(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn tasks_end_at_cancel_and_join_waits_for_them() {
        let cancel = CancellationToken::new();
        let tasks = OwnedTasks::new(cancel.clone());
        let finished = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&finished);
        tasks.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            flag.store(true, Ordering::SeqCst);
        });
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        tasks.spawn(async move {
            flag.store(true, Ordering::SeqCst);
        });
        tokio::task::yield_now().await;
        cancel.cancel();
        tasks.join().await;
        assert!(ran.load(Ordering::SeqCst));
        assert!(
            !finished.load(Ordering::SeqCst),
            "a cancelled task stops at its await"
        );
        assert!(tasks.tracker.is_empty());
    }
}
