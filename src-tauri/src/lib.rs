//! The lanchat desktop app and headless node.
//!
//! `lanchat` opens the desktop window when there is a display and otherwise runs
//! headless; `lanchat serve` always runs headless. Either way one node runs in this
//! process and serves the local API and the UI on loopback.

pub mod api;
pub mod blocks;
pub mod cli;
pub mod contact_book;
pub mod desktop;
pub mod fault_log;
pub mod files;
pub mod live_settings;
pub mod logging;
pub mod mesh;
pub mod new_identity;
pub mod node;
pub mod peer_store;
pub mod presence;
pub mod shutdown_signal;
pub mod window;

use anyhow::Context;

use cli::{Cli, Mode};
use node::{Node, NodeConfig};
use shutdown_signal::ShutdownSignal;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = match cli.data_dir {
        Some(dir) => dir,
        None => cli::default_data_dir()
            .context("cannot find a data directory for this user; pass --data-dir DIR")?,
    };
    let mode = cli::mode(cli.command.as_ref(), cli::has_display());
    if let (Mode::Client, Some(command)) = (&mode, &cli.command) {
        return cli::remote::run(command, &data_dir, cli.json).map_err(anyhow::Error::from);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lanchat-node")
        .build()
        .context("cannot start the async runtime")?;
    let config = NodeConfig {
        data_dir,
        api_addr: cli.api_addr,
    };
    let shutdown = runtime.block_on(async { ShutdownSignal::install() });
    match mode {
        Mode::Headless { reason } => {
            let node = runtime
                .block_on(Node::start(config))
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
        // The window starts its node itself, after checking that no other window runs
        // on this data directory.
        Mode::Window => window::run(runtime, config, shutdown, cli.hidden),
        Mode::Client => Ok(()),
    }
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

/// The name a node shows when its settings give none.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
