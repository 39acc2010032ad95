//! Notification and desktop settings (`desktop.*`): a card of switches, and the mute
//! button of a conversation. The node applies them: it shows the notifications and
//! writes the autostart entry; the page only edits the settings.

use api_types::DesktopSettings;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::json;

use crate::api::{Client, UiError};
use crate::app::Lang;

/// The `desktop` settings as last read or saved; `None` until the first answer.
#[derive(Clone, Copy)]
pub struct DesktopPrefs {
    pub current: RwSignal<Option<DesktopSettings>>,
    pub error: RwSignal<Option<UiError>>,
}

impl DesktopPrefs {
    pub fn new() -> DesktopPrefs {
        DesktopPrefs {
            current: RwSignal::new(None),
            error: RwSignal::new(None),
        }
    }

    pub fn load(self, client: Client) {
        spawn_local(async move {
            match client.settings().await {
                Ok(s) => self.current.set(Some(s.desktop)),
                Err(e) => self.error.set(Some(e)),
            }
        });
    }

    /// Saves one `desktop` field; the node's answer becomes the shown state.
    pub fn save(self, client: Client, field: &'static str, value: serde_json::Value) {
        spawn_local(async move {
            match client
                .update_settings(&json!({ "desktop": { field: value } }))
                .await
            {
                Ok(s) => {
                    self.current.set(Some(s.desktop));
                    self.error.set(None);
                }
                Err(e) => self.error.set(Some(e)),
            }
        });
    }

    pub fn is_muted(self, conversation_id: &str) -> bool {
        self.current
            .with(|d| d.as_ref().is_some_and(|d| d.is_muted(conversation_id)))
    }
}

/// The muted list with `conversation_id` toggled.
pub fn toggled(muted: &[String], conversation_id: &str) -> Vec<String> {
    if muted.iter().any(|c| c == conversation_id) {
        muted
            .iter()
            .filter(|c| *c != conversation_id)
            .cloned()
            .collect()
    } else {
        let mut next = muted.to_vec();
        next.push(conversation_id.to_string());
        next
    }
}

/// The bell in a conversation's header: mutes or unmutes its notifications.
#[component]
pub fn MuteToggle(conversation_id: String) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let prefs = expect_context::<DesktopPrefs>();
    let id = StoredValue::new(conversation_id);
    let muted = move || id.with_value(|id| prefs.is_muted(id));
    let toggle = move |_| {
        let Some(list) = prefs
            .current
            .with_untracked(|d| d.as_ref().map(|d| d.muted_conversations.clone()))
        else {
            return;
        };
        let next = id.with_value(|id| toggled(&list, id));
        prefs.save(client.clone(), "muted_conversations", json!(next));
    };
    view! {
        <button type="button" class="link mute" data-testid="mute-toggle"
            aria-pressed=move || muted().to_string()
            title=move || lang.t(if muted() { "mute.unmute" } else { "mute.mute" })
            on:click=toggle>
            <span class="small">{move || lang.t(if muted() { "mute.muted" } else { "mute.mute" })}</span>
        </button>
    }
}

/// The card of switches on the settings page.
#[component]
pub fn DesktopSettingsCard() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let prefs = expect_context::<DesktopPrefs>();
    let number_client = client.clone();
    let switch = move |field: &'static str, get: fn(&DesktopSettings) -> bool| {
        let client = client.clone();
        view! {
            <label class="switch-row">
                <input type="checkbox" data-testid=format!("desktop-{field}")
                    disabled=move || prefs.current.with(|d| d.is_none())
                    prop:checked=move || prefs.current.with(|d| d.as_ref().is_some_and(get))
                    on:change=move |ev| prefs.save(client.clone(), field, json!(event_target_checked(&ev)))/>
                <span class="row-main">
                    <span class="row-title">{move || lang.t(&format!("desktop.{field}"))}</span>
                    <span class="row-sub">{move || lang.t(&format!("desktop.{field}.hint"))}</span>
                </span>
            </label>
        }
    };
    view! {
        <section class="card desktop-settings" data-testid="desktop-settings">
            <h2>{move || lang.t("desktop.title")}</h2>
            {switch("notifications", |d| d.notifications)}
            {switch("notification_previews", |d| d.notification_previews)}
            {switch("notification_sound", |d| d.notification_sound)}
            {switch("do_not_disturb", |d| d.do_not_disturb)}
            {switch("close_to_tray", |d| d.close_to_tray)}
            {switch("autostart", |d| d.autostart)}
            {switch("send_read_receipts", |d| d.send_read_receipts)}
            <label class="switch-row">
                <input type="number" min="0" max=api_types::settings::MAX_AUTO_AWAY_MINUTES.to_string()
                    class="minutes" data-testid="desktop-auto_away_minutes"
                    disabled=move || prefs.current.with(|d| d.is_none())
                    prop:value=move || prefs.current.with(|d| d.as_ref().map(|d| d.auto_away_minutes.to_string()).unwrap_or_default())
                    on:change={
                        let client = number_client;
                        move |ev| {
                            // The node validates; its 400 is shown below.
                            let text = event_target_value(&ev);
                            let value = text.trim().parse::<u64>().map(|n| json!(n)).unwrap_or(json!(text));
                            prefs.save(client.clone(), "auto_away_minutes", value);
                        }
                    }/>
                <span class="row-main">
                    <span class="row-title">{move || lang.t("desktop.auto_away_minutes")}</span>
                    <span class="row-sub">{move || lang.t("desktop.auto_away_minutes.hint")}</span>
                </span>
            </label>
            {move || prefs.error.get().map(|e| view! {
                <p class="field-error" role="alert" data-testid="desktop-error">{e.message(lang.0.get())}</p>
            })}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggling_adds_and_removes() {
        let list = vec!["group:A".to_string()];
        assert_eq!(toggled(&list, "dm:lan:B"), ["group:A", "dm:lan:B"]);
        assert!(toggled(&list, "group:A").is_empty());
    }
}
