use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than glibc's malloc: after a burst (a flood of connections or
/// datagrams, a big sync) glibc keeps the freed memory resident, scattered over its
/// arenas, for good; jemalloc's background thread gives it back over about 10 s
/// (docs/SECURITY.md § 7, `lan_floods` checks it).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Whatever this process creates (database journals, temporary files, anything a
    // library writes) is this user's alone, whatever umask it was started with; the
    // data directory is also repaired at each start (`storage::data_dir`).
    let _previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // The window's web view draws without accelerated compositing, unless whoever
    // started us chose otherwise: its web process then holds about 75 MB less (PSS 126
    // instead of 201 MB idle, docs/BENCHMARKS.md, "Desktop app"), and a chat's page has
    // nothing that needs the GPU. Set here, before any thread or WebKit exists; the
    // headless node never reads it.
    if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none() {
        std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
    }
    lanchat::logging::init();
    let cli = lanchat::cli::Cli::parse();
    match lanchat::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanchat: {e:#}");
            // A client command says "no node runs" with its own status, for scripts.
            match e.downcast_ref::<lanchat::cli::remote::ClientError>() {
                Some(client) => ExitCode::from(client.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
