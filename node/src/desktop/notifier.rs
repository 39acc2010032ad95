//! Desktop notifications: follows the node's event stream in-process (the same events
//! `/api/v1/events` streams) and talks to the session's notification service over D-Bus
//! (`org.freedesktop.Notifications`). One notification per conversation: more messages
//! replace it (same id, with a count), reading the conversation closes it, clicking it
//! opens the conversation in the window.
//!
//! Talked to directly rather than through tauri-plugin-notification: on Linux that
//! plugin cannot tell the app that a notification was clicked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use api_types::{Event, Language, MessageView};
use futures_util::StreamExt;
use storage::Store;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use zbus::zvariant::Value;

use super::notify_policy::{self, Decision, Situation};
use super::presence::PresenceSetting;
use crate::live_settings::LiveSettings;

/// What the notifier needs from the window.
pub trait Shell: Send + Sync + 'static {
    /// The window is shown and focused: the user sees new messages arrive.
    fn attended(&self) -> bool;
    /// Shows the window with this conversation open (a notification was clicked).
    fn open_conversation(&self, conversation_id: &str);
}

#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications"
)]
trait Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;

    fn close_notification(&self, id: u32) -> zbus::Result<()>;

    #[zbus(signal)]
    fn action_invoked(&self, id: u32, action_key: String) -> zbus::Result<()>;

    #[zbus(signal)]
    fn notification_closed(&self, id: u32, reason: u32) -> zbus::Result<()>;
}

/// The action every notification carries: activating the notification itself.
const DEFAULT_ACTION: &str = "default";

struct Shown {
    id: u32,
    count: u32,
    /// The newest message in conversation order: messages may arrive out of order
    /// (an outbox retry), and the preview shows the newest, not the last to arrive.
    newest: MessageView,
}

#[derive(Default)]
struct Ledger {
    /// The notification shown for a conversation, and what it stands for.
    by_conversation: HashMap<String, Shown>,
    by_id: HashMap<u32, String>,
}

impl Ledger {
    fn forget_id(&mut self, id: u32) {
        if let Some(conversation) = self.by_id.remove(&id) {
            self.by_conversation.remove(&conversation);
        }
    }

    fn forget_conversation(&mut self, conversation: &str) -> Option<u32> {
        let shown = self.by_conversation.remove(conversation)?;
        self.by_id.remove(&shown.id);
        Some(shown.id)
    }
}

pub struct NotifierParts {
    pub settings: Arc<LiveSettings>,
    pub store: Store,
    pub events: broadcast::Receiver<Event>,
    pub presence: PresenceSetting,
    pub shell: Arc<dyn Shell>,
    pub stop: CancellationToken,
}

pub fn spawn(parts: NotifierParts) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(parts))
}

async fn run(mut parts: NotifierParts) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut bus: Option<NotificationsProxy<'static>> = None;
    loop {
        let event = tokio::select! {
            received = parts.events.recv() => match received {
                Ok(event) => event,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("notifier fell {n} events behind");
                    continue;
                }
                Err(RecvError::Closed) => break,
            },
            _ = parts.stop.cancelled() => break,
        };
        match event {
            Event::MessageNew { message } => {
                if let Err(e) = on_message(&parts, &ledger, &mut bus, &message).await {
                    // The service may come later (a session without one, a restart):
                    // connect again for the next message.
                    tracing::warn!("cannot show a desktop notification: {e}");
                    bus = None;
                }
            }
            Event::ConversationRead { conversation_id } => {
                let id = lock(&ledger).forget_conversation(&conversation_id);
                if let (Some(id), Some(proxy)) = (id, bus.as_ref()) {
                    let _ = proxy.close_notification(id).await;
                }
            }
            _ => {}
        }
    }
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

async fn on_message(
    parts: &NotifierParts,
    ledger: &Arc<Mutex<Ledger>>,
    bus: &mut Option<NotificationsProxy<'static>>,
    message: &MessageView,
) -> zbus::Result<()> {
    let settings = parts.settings.current();
    let my_name = crate::api::identity::own_name(&settings);
    // Asking the window blocks on its thread: only when the cheap checks pass.
    let quick = Situation {
        settings: &settings.desktop,
        presence: parts.presence.get(),
        attended: false,
        my_name: &my_name,
    };
    if let Decision::Skip(why) = notify_policy::decide(message, &quick) {
        tracing::debug!(?why, conversation = %message.conversation_id, "no notification");
        return Ok(());
    }
    let shell = Arc::clone(&parts.shell);
    let attended = tokio::task::spawn_blocking(move || shell.attended())
        .await
        .unwrap_or(false);
    let now = Situation { attended, ..quick };
    let mention = match notify_policy::decide(message, &now) {
        Decision::Skip(why) => {
            tracing::debug!(?why, conversation = %message.conversation_id, "no notification");
            return Ok(());
        }
        Decision::Notify { mention } => mention,
    };
    let proxy = match bus {
        Some(proxy) => proxy.clone(),
        None => {
            let proxy = connect(Arc::clone(ledger), Arc::clone(&parts.shell)).await?;
            *bus = Some(proxy.clone());
            proxy
        }
    };
    let name = if notify_policy::is_group(&message.conversation_id) {
        conversation_name(&parts.store, &message.conversation_id).await
    } else {
        message.sender_name.clone()
    };
    let (replaces, count, newest) = match lock(ledger).by_conversation.get(&message.conversation_id)
    {
        Some(shown) if shown.newest.order > message.order => {
            (shown.id, shown.count + 1, shown.newest.clone())
        }
        Some(shown) => (shown.id, shown.count + 1, message.clone()),
        None => (0, 1, message.clone()),
    };
    let lang = settings.ui.language.unwrap_or_else(system_language);
    let content = notify_policy::content(
        &newest,
        &name,
        count,
        settings.desktop.notification_previews,
        lang,
    );
    let open = i18n::t(lang, "notify.open");
    let mut hints: HashMap<&str, Value<'_>> = HashMap::new();
    hints.insert("desktop-entry", Value::from("lanchat"));
    hints.insert("category", Value::from("im.received"));
    hints.insert("urgency", Value::U8(if mention { 2 } else { 1 }));
    if settings.desktop.notification_sound {
        hints.insert("sound-name", Value::from("message-new-instant"));
    } else {
        hints.insert("suppress-sound", Value::from(true));
    }
    let id = proxy
        .notify(
            "lanchat",
            replaces,
            "lanchat",
            &content.summary,
            &content.body,
            &[DEFAULT_ACTION, &open],
            hints,
            -1,
        )
        .await?;
    let mut ledger = lock(ledger);
    if replaces != 0 && replaces != id {
        ledger.by_id.remove(&replaces);
    }
    ledger
        .by_conversation
        .insert(message.conversation_id.clone(), Shown { id, count, newest });
    ledger.by_id.insert(id, message.conversation_id.clone());
    tracing::info!(id, count, mention, conversation = %message.conversation_id, "notification shown");
    Ok(())
}

/// Connects to the session's notification service and follows its clicks and closes.
async fn connect(
    ledger: Arc<Mutex<Ledger>>,
    shell: Arc<dyn Shell>,
) -> zbus::Result<NotificationsProxy<'static>> {
    let connection = zbus::Connection::session().await?;
    let proxy = NotificationsProxy::new(&connection).await?;
    let mut actions = proxy.receive_action_invoked().await?;
    let mut closed = proxy.receive_notification_closed().await?;
    tokio::spawn(async move {
        // Ends when the connection does (the proxy and its streams hold it).
        loop {
            tokio::select! {
                Some(signal) = actions.next() => {
                    let Ok(args) = signal.args() else { continue };
                    let conversation = lock(&ledger).by_id.get(args.id()).cloned();
                    if let Some(conversation) = conversation {
                        tracing::info!(%conversation, action = %args.action_key(), "notification clicked");
                        let shell = Arc::clone(&shell);
                        tokio::task::spawn_blocking(move || shell.open_conversation(&conversation));
                    }
                }
                Some(signal) = closed.next() => {
                    if let Ok(args) = signal.args() {
                        lock(&ledger).forget_id(*args.id());
                    }
                }
                else => break,
            }
        }
    });
    Ok(proxy)
}

async fn conversation_name(store: &Store, conversation_id: &str) -> String {
    match store.conversations().await {
        Ok(list) => list
            .into_iter()
            .find(|c| c.conversation_id.as_str() == conversation_id)
            .map(|c| c.name)
            .unwrap_or_default(),
        Err(e) => {
            tracing::warn!("conversation name for a notification: {e}");
            String::new()
        }
    }
}

/// The session's language (`LANG`), for notifications shown before the UI chose one.
pub fn system_language() -> Language {
    ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find_map(|tag| Language::from_tag(&tag))
        .unwrap_or(Language::EnUs)
}
