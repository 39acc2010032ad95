//! The lanchat desktop app: the window, the tray and notifications around a node.
//!
//! `lanchat` opens the desktop window when there is a display. Headless (`lanchat
//! serve`, or no display) it executes `lanchat-node` from beside itself, so that a
//! headless node maps no GTK or WebKit library; the client commands (`status`, `peers`,
//! `send`) run here. The node itself is the `lanchat_node` crate.

pub mod desktop;
pub mod window;

use std::path::PathBuf;

use lanchat_node::cli::{self, Cli, Mode};
use lanchat_node::node::NodeConfig;
use lanchat_node::shutdown_signal::ShutdownSignal;

/// The headless binary, installed beside `lanchat` (the .deb puts both in /usr/bin,
/// cargo both in its target directory).
pub const NODE_BINARY: &str = "lanchat-node";

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli::mode(cli.command.as_ref(), cli::has_display()) {
        Mode::Client => lanchat_node::run(cli),
        Mode::Headless { reason } => match node_binary() {
            Some(binary) => Err(exec_node(&binary)),
            None => {
                tracing::warn!(
                    "{NODE_BINARY} is not beside this program: the headless node runs in \
                     this process, which also maps the window's libraries"
                );
                lanchat_node::serve(lanchat_node::data_dir(&cli)?, cli.api_addr, reason)
            }
        },
        Mode::Window => {
            let config = NodeConfig {
                data_dir: lanchat_node::data_dir(&cli)?,
                api_addr: cli.api_addr,
            };
            let runtime = lanchat_node::node_runtime()?;
            let shutdown = runtime.block_on(async { ShutdownSignal::install() });
            // The window starts its node itself, after checking that no other window
            // runs on this data directory.
            window::run(runtime, config, shutdown, cli.hidden)
        }
    }
}

fn node_binary() -> Option<PathBuf> {
    let here = std::env::current_exe().ok()?;
    let binary = here.parent()?.join(NODE_BINARY);
    binary.is_file().then_some(binary)
}

/// Replaces this process with `lanchat-node` and the same arguments (the same process
/// id, so whoever started us still has the node's). Returns only when that failed.
fn exec_node(binary: &std::path::Path) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new(binary)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::Error::new(error).context(format!("cannot run {}", binary.display()))
}
