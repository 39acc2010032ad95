//! Command line: `lanchat [--data-dir DIR] [--api-addr ADDR] [serve|window]` runs a
//! node; `lanchat [--data-dir DIR] [--json] status|peers|send` talks to the node that
//! runs on that data directory, through its local API (see [`remote`]).

pub mod remote;
mod resolve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "lanchat", version, about = "Serverless LAN messenger")]
pub struct Cli {
    /// Where this node keeps its settings, token and chats
    /// (default: $XDG_DATA_HOME/lanchat, usually ~/.local/share/lanchat).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Loopback address of the local API and UI; port 0 picks a free port.
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        default_value = "127.0.0.1:0"
    )]
    pub api_addr: SocketAddr,

    /// Print what the running node answered as JSON (status, peers, send).
    #[arg(long, global = true)]
    pub json: bool,
    /// Start in the tray without showing the window (as the autostart entry does).
    #[arg(long, global = true)]
    pub hidden: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run headless: serve the local API and the UI on loopback, print the URL, and stop
    /// on SIGINT/SIGTERM.
    Serve,
    /// Open the desktop window (the default when a display is available).
    Window,
    /// Show the running node's status (exit status 3 when no node runs).
    Status,
    /// List the peers the running node knows, online first.
    Peers,
    /// Send a message through the running node.
    Send(SendArgs),
    /// The desktop window's own process, started by the desktop node (`lanchat window`)
    /// with the node's address on its standard input; not for people to run.
    #[command(name = "window-view", hide = true)]
    WindowView,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// A display name, a peer id, a group id or a conversation id (`dm:lan:…`,
    /// `group:…`). A name several contacts or groups share is refused with the list.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub to: String,
    /// The message; several words are joined with spaces; `-` reads it from stdin.
    /// May be left out when files are sent.
    #[arg(required_unless_present = "files", value_name = "TEXT")]
    pub text: Vec<String>,
    /// A file to send (repeat for several): each goes as a file message, streamed to
    /// the node, which stores it and sends it like the app does.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    Window,
    /// The window's process, a child of the desktop node (`crate::desktop::window`).
    WindowView,
    Headless {
        reason: Option<&'static str>,
    },
    /// A client of the running node: no node starts in this process.
    Client,
}

pub fn mode(command: Option<&Command>, display: bool) -> Mode {
    match command {
        Some(Command::Serve) => Mode::Headless { reason: None },
        Some(Command::Window) => Mode::Window,
        Some(Command::WindowView) => Mode::WindowView,
        Some(Command::Status | Command::Peers | Command::Send(_)) => Mode::Client,
        None if display => Mode::Window,
        None => Mode::Headless {
            reason: Some(
                "No display found (DISPLAY and WAYLAND_DISPLAY are unset): running headless.",
            ),
        },
    }
}

pub fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("lanchat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_command_then_display() {
        assert_eq!(
            mode(Some(&Command::Serve), true),
            Mode::Headless { reason: None }
        );
        assert_eq!(mode(Some(&Command::Window), false), Mode::Window);
        assert_eq!(mode(None, true), Mode::Window);
        assert_eq!(mode(Some(&Command::Peers), true), Mode::Client);
        assert!(matches!(
            mode(None, false),
            Mode::Headless { reason: Some(_) }
        ));
    }

    #[test]
    fn parses_serve_with_options() {
        let cli = Cli::try_parse_from([
            "lanchat",
            "serve",
            "--data-dir",
            "/tmp/x",
            "--api-addr",
            "127.0.0.1:8080",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Serve)));
        assert_eq!(cli.data_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(cli.api_addr.port(), 8080);
        assert!(Cli::try_parse_from(["lanchat", "--api-addr", "nonsense"]).is_err());
    }

    #[test]
    fn parses_client_commands() {
        let cli =
            Cli::try_parse_from(["lanchat", "send", "--to", "bob", "hello", "there", "--json"])
                .unwrap();
        assert!(cli.json);
        match cli.command {
            Some(Command::Send(args)) => {
                assert_eq!(args.to, "bob");
                assert_eq!(args.text, ["hello", "there"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["lanchat", "send", "hello"]).is_err());
        assert!(Cli::try_parse_from(["lanchat", "send", "--to", "bob"]).is_err());
        let cli = Cli::try_parse_from([
            "lanchat", "send", "--to", "bob", "--file", "a.pdf", "--file", "b.png",
        ])
        .unwrap();
        let Some(Command::Send(args)) = cli.command else {
            panic!("not a send: {cli:?}");
        };
        assert_eq!(args.files, [PathBuf::from("a.pdf"), PathBuf::from("b.png")]);
        assert!(args.text.is_empty());
        let cli = Cli::try_parse_from(["lanchat", "--data-dir", "/d", "peers"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Peers)));
    }
}
