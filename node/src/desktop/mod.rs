//! The desktop shell, run by the node process itself (`lanchat-node window`, which
//! `lanchat` on a desktop becomes): the tray icon, desktop notifications, the unread
//! count, the autostart entry — and the window, which is a separate process
//! (`lanchat window-view`, the only one that loads GTK and WebKit), started when the
//! window is shown and ended when it is closed to the tray. Hidden, the app is one
//! small process; see docs/ARCHITECTURE.md, "Desktop".

pub mod autostart;
pub mod notifier;
pub mod notify_policy;
pub mod presence;
mod shell;
pub mod tray;
pub mod unread;
pub mod window;
pub mod window_protocol;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

pub use shell::run;

/// The desktop app's own binary, installed beside this one (the .deb puts both in
/// /usr/bin, cargo both in its target directory): the window process and what the
/// autostart entry starts.
pub const APP_BINARY: &str = "lanchat";

pub fn app_binary() -> Option<PathBuf> {
    crate::binary_beside_this_one(APP_BINARY)
}

/// How the local API asks the desktop shell to show its window (a second launch, or a
/// script). Closed on a headless node: nothing ever opens it.
#[derive(Clone, Default)]
pub struct WindowDoor(Arc<OnceLock<mpsc::UnboundedSender<Option<String>>>>);

impl WindowDoor {
    /// Connects the shell; requests then arrive on the returned receiver.
    pub(crate) fn connect(&self) -> Option<mpsc::UnboundedReceiver<Option<String>>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0.set(tx).ok().map(|()| rx)
    }

    /// Asks for the window, optionally with a conversation open. False when this node
    /// has no desktop shell (headless) or it has ended.
    pub fn open(&self, conversation_id: Option<String>) -> bool {
        self.0
            .get()
            .is_some_and(|tx| tx.send(conversation_id).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_door_opens_only_once_connected_and_while_the_shell_listens() {
        let door = WindowDoor::default();
        assert!(!door.open(None), "headless: no shell");
        let mut requests = door.connect().expect("the first shell connects");
        assert!(door.connect().is_none(), "one shell per node");
        assert!(door.open(Some("dm:x".into())));
        assert_eq!(requests.try_recv().ok(), Some(Some("dm:x".to_string())));
        drop(requests);
        assert!(!door.open(None), "the shell has ended");
    }
}
