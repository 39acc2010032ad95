//! The recent fault log: every warning and error the node logs, kept in a small ring
//! (diagnostics show it, the export carries it). A `tracing` layer, so nothing has to
//! report twice; log lines never hold secrets or message text (see `logging`), and the
//! export scrubs the secret and the token anyway.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use api_types::Fault;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Faults kept: enough for an afternoon of a flaky link, small enough to read.
pub const CAPACITY: usize = 200;
/// One fault's text is cut here (a peer's close reason is bounded, an I/O error short).
const MAX_MESSAGE_CHARS: usize = 500;

#[derive(Debug, Default)]
pub struct FaultLog {
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    faults: VecDeque<Fault>,
    total: u64,
}

impl FaultLog {
    pub fn push(&self, fault: Fault) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.faults.len() >= CAPACITY {
            ring.faults.pop_front();
        }
        ring.faults.push_back(fault);
        ring.total += 1;
    }

    /// The faults kept (oldest first) and how many there were in all.
    pub fn snapshot(&self) -> (Vec<Fault>, u64) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        (ring.faults.iter().cloned().collect(), ring.total)
    }
}

/// The process's fault log (one node per process).
pub fn global() -> &'static FaultLog {
    static LOG: OnceLock<FaultLog> = OnceLock::new();
    LOG.get_or_init(FaultLog::default)
}

/// Records WARN and ERROR events into a fault log ([`global`] in the node).
pub struct FaultLayer(&'static FaultLog);

impl FaultLayer {
    pub fn new(log: &'static FaultLog) -> FaultLayer {
        FaultLayer(log)
    }
}

impl<S: Subscriber> Layer<S> for FaultLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        self.0.push(Fault {
            at: lan_mesh::delivery::now_ms().try_into().unwrap_or(0),
            level: if level == Level::ERROR {
                "error"
            } else {
                "warn"
            }
            .to_string(),
            target: event.metadata().target().to_string(),
            message: text.0.chars().take(MAX_MESSAGE_CHARS).collect(),
        });
    }
}

/// `message key=value …`, as the console log shows an event.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn log() -> &'static FaultLog {
        Box::leak(Box::default())
    }

    #[test]
    fn keeps_warnings_and_errors_in_a_bounded_ring() {
        let log = log();
        let subscriber = tracing_subscriber::registry().with(FaultLayer::new(log));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not a fault");
            tracing::warn!(peer = "01ABC", "dial failed: {}", "refused");
            for i in 0..CAPACITY {
                tracing::error!(i, "burst");
            }
        });
        let (faults, total) = log.snapshot();
        assert_eq!(total, 1 + CAPACITY as u64);
        assert_eq!(faults.len(), CAPACITY);
        let last = faults.last().unwrap();
        assert_eq!(last.level, "error");
        assert_eq!(last.message, format!("burst i={}", CAPACITY - 1));
        assert!(last.target.contains("fault_log"));
    }

    #[test]
    fn formats_message_then_fields() {
        let log = log();
        let subscriber = tracing_subscriber::registry().with(FaultLayer::new(log));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(peer = "01XYZ", n = 3, "dial failed: {}", 7);
        });
        let (faults, _) = log.snapshot();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].message, "dial failed: 7 peer=01XYZ n=3");
    }
}
