//! What the desktop node and its window process (`lanchat window-view`) say to each
//! other: one JSON object per line, the node on the window's standard input, the window
//! on its standard output. The token travels only here, never on a command line or in
//! the environment (both are readable by other processes of the user).

use serde::{Deserialize, Serialize};

/// The first line to the window: where the UI is and how to open it.
#[derive(Serialize, Deserialize)]
pub struct Start {
    pub url: String,
    pub token: String,
    pub title: String,
    /// A conversation to open at once (a clicked notification).
    pub open: Option<String>,
}

/// Never the token, even in a debug print.
impl std::fmt::Debug for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Start")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("title", &self.title)
            .field("open", &self.open)
            .finish()
    }
}

/// Later lines to the window.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum ToWindow {
    /// Raise and focus the window, optionally opening a conversation.
    Show { open: Option<String> },
    /// The title with the unread count.
    Title { title: String },
}

/// Lines from the window.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "is", rename_all = "snake_case")]
pub enum FromWindow {
    /// Whether the user sees the window now (shown, focused, not minimised): the
    /// notifier stays quiet while they do.
    Attended { attended: bool },
}

/// The window process's exit status when the user closed the window (as opposed to
/// the node closing its input, or a crash).
pub const CLOSED_BY_USER: i32 = 0;

pub fn line(value: &impl Serialize) -> String {
    let mut line = serde_json::to_string(value).unwrap_or_default();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_the_token_is_never_printed() {
        let show = ToWindow::Show {
            open: Some("dm:lan:x".into()),
        };
        let text = line(&show);
        assert_eq!(text, "{\"do\":\"show\",\"open\":\"dm:lan:x\"}\n");
        assert_eq!(serde_json::from_str::<ToWindow>(&text).ok(), Some(show));
        let seen = FromWindow::Attended { attended: true };
        assert_eq!(
            serde_json::from_str::<FromWindow>(&line(&seen)).ok(),
            Some(seen)
        );
        let start = Start {
            url: "http://127.0.0.1:1/".into(),
            token: "secret-token".into(),
            title: "lanchat".into(),
            open: None,
        };
        assert!(!format!("{start:?}").contains("secret-token"));
    }
}
