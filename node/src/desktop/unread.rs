//! The unread total for the window title and the tray: recounted from the store
//! whenever the event stream says messages arrived or were read.

use std::time::Duration;

use api_types::Event;
use storage::Store;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// A burst of messages is counted once, this long after its first event.
const SETTLE: Duration = Duration::from_millis(150);

/// As the UI's badge: at most "99+".
pub fn badge(total: u32) -> String {
    if total > 99 {
        "99+".to_string()
    } else {
        total.to_string()
    }
}

/// As the UI sets the page title, so the window and a browser tab read alike.
pub fn title(total: u32, app: &str) -> String {
    match total {
        0 => app.to_string(),
        n => format!("({}) {app}", badge(n)),
    }
}

pub async fn total(store: &Store) -> u32 {
    match store.conversations().await {
        Ok(list) => list.iter().map(|c| c.unread).sum(),
        Err(e) => {
            tracing::warn!("counting unread messages: {e}");
            0
        }
    }
}

fn changes_unread(event: &Event) -> bool {
    matches!(
        event,
        Event::MessageNew { .. }
            | Event::ConversationRead { .. }
            | Event::GroupUpdated { .. }
            | Event::Resync
    )
}

/// Calls `show` with the total now and after every change, until `stop`.
pub fn spawn(
    store: Store,
    mut events: broadcast::Receiver<Event>,
    show: impl Fn(u32) + Send + 'static,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shown = None;
        loop {
            let current = total(&store).await;
            if shown != Some(current) {
                show(current);
                shown = Some(current);
            }
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    _ = stop.cancelled() => return,
                };
                match event {
                    Ok(e) if changes_unread(&e) => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                }
            }
            tokio::time::sleep(SETTLE).await;
            while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = events.try_recv() {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_match_the_ui() {
        assert_eq!(title(0, "lanchat"), "lanchat");
        assert_eq!(title(3, "lanchat"), "(3) lanchat");
        assert_eq!(title(250, "lanchat"), "(99+) lanchat");
    }
}
