//! Logs go to stderr, filtered by `LANCHAT_LOG` (same syntax as `RUST_LOG`), `info` by
//! default. Secrets (API token, shared secret) are never logged anywhere.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("LANCHAT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
