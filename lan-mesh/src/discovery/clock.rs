//! Wall-clock time for packet timestamps, injectable so tests can run under
//! `tokio::time::pause()` and replay windows can be tested at their edges.
//!
//! Timers (heartbeats, TTL) use tokio's monotonic clock, which `pause()` controls
//! directly; only the `ts` field on the wire needs the wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

use super::packet::UnixMillis;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixMillis;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        UnixMillis(ms)
    }
}

/// A wall clock that moves with tokio's (possibly paused) clock from a fixed start, so
/// tests that advance time see packet timestamps advance with it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_unix: UnixMillis,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(start_unix: UnixMillis) -> Self {
        TokioClock {
            start_unix,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> UnixMillis {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start_unix.saturating_add_ms(elapsed)
    }
}
