//! The lanchat desktop app's binary: the window, and the way into the node.
//!
//! `lanchat` on a desktop (or `lanchat window`) executes `lanchat-node` from beside
//! itself, which runs the node with the tray and notifications around it and starts
//! this binary again as `lanchat window-view` whenever the window is shown (see
//! `lanchat_node::desktop`). Headless (`lanchat serve`, or no display) it executes
//! `lanchat-node` too, which then maps no GTK or WebKit library either way. The client
//! commands (`status`, `peers`, `send`) run here.

pub mod window;

use std::path::PathBuf;

use lanchat_node::cli::{self, Cli, Mode};

/// The node's binary, installed beside `lanchat` (the .deb puts both in /usr/bin,
/// cargo both in its target directory).
pub const NODE_BINARY: &str = "lanchat-node";

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli::mode(cli.command.as_ref(), cli::has_display()) {
        Mode::Client => lanchat_node::run(cli),
        Mode::WindowView => window::run_view(),
        Mode::Headless { reason } => match node_binary() {
            Some(binary) => Err(exec_node(&binary, false)),
            None => {
                tracing::warn!(
                    "{NODE_BINARY} is not beside this program: the headless node runs in \
                     this process, which also maps the window's libraries"
                );
                lanchat_node::serve(lanchat_node::data_dir(&cli)?, cli.api_addr, reason)
            }
        },
        Mode::Window => match node_binary() {
            // `window` said explicitly: a display alone chose it for `lanchat`, and
            // `lanchat-node` decides the same way, but no later reader has to know that.
            Some(binary) => Err(exec_node(&binary, cli.command.is_none())),
            None => anyhow::bail!(
                "{NODE_BINARY} is not installed beside this program: the desktop app needs \
                 both (reinstall the package)"
            ),
        },
    }
}

fn node_binary() -> Option<PathBuf> {
    let here = std::env::current_exe().ok()?;
    let binary = here.parent()?.join(NODE_BINARY);
    binary.is_file().then_some(binary)
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
