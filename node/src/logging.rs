//! Logs go to stderr, filtered by `LANCHAT_LOG` (same syntax as `RUST_LOG`), `info` by
//! default; warnings and errors also go to the fault log (diagnostics), whatever the
//! filter. Secrets (API token, shared secret) are never logged anywhere. Colours (ANSI
//! escapes) only when stderr is a terminal: a log redirected to a file, a pipe or the
//! journal carries plain text.

use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub fn init() {
    let filter = EnvFilter::try_from_env("LANCHAT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(
            crate::fault_log::FaultLayer::new(crate::fault_log::global())
                .with_filter(LevelFilter::WARN),
        )
        .try_init();
}
