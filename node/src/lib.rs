//! The lanchat node without the window: the LAN mesh, the store, the local API with the
//! web UI, the desktop shell around it (tray, notifications; [`desktop`]) and the
//! command-line client of a running node.
//!
//! The `lanchat-node` binary maps no GTK or WebKit library. The desktop app's `lanchat`
//! executes it, headless for `lanchat serve` and with the desktop shell on a desktop;
//! the shell starts `lanchat window-view` for the window, the one process that loads
//! them.

pub mod api;
pub mod blocks;
pub mod cli;
pub mod contact_book;
pub mod desktop;
pub mod fault_log;
pub mod files;
pub mod live_settings;
pub mod logging;
pub mod memory;
pub mod mesh;
pub mod new_identity;
pub mod node;
pub mod peer_store;
pub mod presence;
pub mod shutdown_signal;
pub mod system_name;

use anyhow::Context;

use cli::{Cli, Mode};
use node::{Node, NodeConfig};
use shutdown_signal::ShutdownSignal;

/// What every binary that runs a node does first, before any thread exists: whatever
/// this process creates (database journals, temporary files, anything a library
/// writes) is this user's alone, whatever umask it was started with; the data directory
/// is also repaired at each start (`storage::data_dir`).
pub fn prepare_process() {
    let _previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// The data directory `--data-dir` names, else this user's default.
pub fn data_dir(cli: &Cli) -> anyhow::Result<std::path::PathBuf> {
    match &cli.data_dir {
        Some(dir) => Ok(dir.clone()),
        None => cli::default_data_dir()
            .context("cannot find a data directory for this user; pass --data-dir DIR"),
    }
}

/// `lanchat-node`: the headless node, or a client command. This binary has no window,
/// so without a command it runs headless whether or not there is a display.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = data_dir(&cli)?;
    let mode = cli::mode(cli.command.as_ref(), cli::has_display());
    match (mode, &cli.command) {
        (Mode::Client, Some(command)) => {
            cli::remote::run(command, &data_dir, cli.json).map_err(anyhow::Error::from)
        }
        (Mode::Window, _) => desktop::run(data_dir, cli.api_addr, cli.hidden),
        (Mode::WindowView, _) => anyhow::bail!(
            "the window is `lanchat window-view`, which the desktop node starts itself"
        ),
        (Mode::Headless { reason }, _) => serve(data_dir, cli.api_addr, reason),
        (Mode::Client, None) => serve(data_dir, cli.api_addr, None),
    }
}

/// Runs the node headless until SIGINT or SIGTERM, then stops it gracefully.
pub fn serve(
    data_dir: std::path::PathBuf,
    api_addr: std::net::SocketAddr,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let runtime = node_runtime()?;
    let shutdown = runtime.block_on(async { ShutdownSignal::install() });
    let node = runtime
        .block_on(Node::start(NodeConfig { data_dir, api_addr }))
        .context("cannot start the node")?;
    if let Some(reason) = reason {
        eprintln!("{reason}");
    }
    print_headless_banner(&node);
    runtime.block_on(async {
        shutdown.wait().await;
        node.stop().await;
    });
    Ok(())
}

/// The runtime a node runs on (headless, or beside the window).
pub fn node_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lanchat-node")
        .build()
        .context("cannot start the async runtime")
}

/// What a headless start prints. The link with the token only when stdout is a
/// terminal (a person reads it, as notebook servers do); a redirected stdout (a log
/// file, the journal, a pipe) gets the address and where the token is, never the token.
fn print_headless_banner(node: &node::Node) {
    use std::io::IsTerminal;
    println!("lanchat {} is running headless.", env!("CARGO_PKG_VERSION"));
    println!("Local API and UI: {}", node.url());
    if std::io::stdout().is_terminal() {
        println!(
            "Open in a browser on this machine: {}#token={}",
            node.url(),
            node.token()
        );
    } else {
        println!(
            "The API token is in {} (readable only by this user).",
            node.data_dir().join(node::API_FILE).display()
        );
    }
}

/// `name` in the folder of the running program, where the .deb and cargo put
/// `lanchat` and `lanchat-node` side by side.
pub fn binary_beside_this_one(name: &str) -> Option<std::path::PathBuf> {
    let here = std::env::current_exe().ok()?;
    let binary = here.parent()?.join(name);
    binary.is_file().then_some(binary)
}

/// The name a node shows when its settings give none.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Prints a failed run's error and picks the exit status: a client command says "no
/// node runs" with its own status, for scripts.
pub fn exit_with(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("lanchat: {e:#}");
    match e.downcast_ref::<cli::remote::ClientError>() {
        Some(client) => std::process::ExitCode::from(client.exit_code()),
        None => std::process::ExitCode::FAILURE,
    }
}
