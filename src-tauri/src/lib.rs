//! The lanchat desktop app's binary: the window, and the way into the node.
//!
//! Every command but the window's own executes `lanchat-node` from beside this binary
//! with the same arguments (the same process id): on a desktop (or `lanchat window`) it
//! runs the node with the tray and notifications around it and starts this binary
//! again as `lanchat window-view` whenever the window is shown (see
//! `lanchat_node::desktop`); headless (`lanchat serve`, or no display) it runs the node
//! alone; `status`, `peers` and `send` talk to a running node. So the node never maps
//! GTK or WebKit, and the window process carries none of the node's code.

pub mod window;

use std::path::PathBuf;

use lanchat_node::cli::{self, Cli, Mode};

/// The node's binary, installed beside `lanchat` (the .deb puts both in /usr/bin,
/// cargo both in its target directory).
pub const NODE_BINARY: &str = "lanchat-node";

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mode = cli::mode(cli.command.as_ref(), cli::has_display());
    if mode == Mode::WindowView {
        return window::run_view();
    }
    let Some(binary) = node_binary() else {
        anyhow::bail!(
            "{NODE_BINARY} is not installed beside this program: lanchat needs both \
             (reinstall the package, or `cargo build --workspace`)"
        );
    };
    // `window` said explicitly when a display alone chose it for `lanchat`:
    // `lanchat-node` would decide the same, but no later reader has to know that.
    Err(exec_node(
        &binary,
        mode == Mode::Window && cli.command.is_none(),
    ))
}

fn node_binary() -> Option<PathBuf> {
    lanchat_node::binary_beside_this_one(NODE_BINARY)
}

/// Replaces this process with `lanchat-node` and the same arguments (the same process
/// id, so whoever started us still has the node's). Returns only when that failed.
fn exec_node(binary: &std::path::Path, add_window: bool) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(binary);
    command.args(std::env::args_os().skip(1));
    if add_window {
        command.arg(window_command());
    }
    let error = command.exec();
    anyhow::Error::new(error).context(format!("cannot run {}", binary.display()))
}

fn window_command() -> &'static str {
    // Spelled as clap spells the subcommand, checked by the test below.
    "window"
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use lanchat_node::cli::Command;

    #[test]
    fn the_added_subcommand_is_the_window() {
        let cli = Cli::try_parse_from(["lanchat", "--hidden", window_command()]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Window)));
        assert!(cli.hidden);
    }
}
