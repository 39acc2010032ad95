//! The application shell: top bar with the language switch, and the page body.

use std::rc::Rc;

use api_types::{Event, Language};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::json;

use crate::api::Client;
use crate::language;
use crate::peers_view::PeersTable;
use crate::settings_view::LanSettings;
use crate::status_view::StatusCard;

/// The language every component renders in; switching it re-renders live.
#[derive(Clone, Copy)]
pub struct Lang(pub RwSignal<Language>);

impl Lang {
    pub fn t(&self, key: &str) -> String {
        i18n::t(self.0.get(), key)
    }
}

/// Bumped whenever the node reports that peers or the mesh changed (or the event stream
/// reconnected); views that show them refetch.
#[derive(Clone, Copy)]
pub struct PeerChanges(pub RwSignal<u64>);

impl PeerChanges {
    pub fn bump(&self) {
        self.0.update(|n| *n += 1);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Status,
    Lan,
}

#[component]
pub fn App() -> impl IntoView {
    let client = Client::from_page();
    let browser_tag = web_sys::window().and_then(|w| w.navigator().language());
    let lang = Lang(RwSignal::new(language::choose(
        None,
        browser_tag.as_deref(),
    )));
    provide_context(lang);
    provide_context(client.clone());
    let changes = PeerChanges(RwSignal::new(0));
    provide_context(changes);
    let tab = RwSignal::new(Tab::Status);

    if let Some(token) = client.token() {
        crate::events::subscribe(
            token.to_string(),
            Rc::new(move |event: Event| match event {
                // Every event this UI shows today concerns peers or the mesh.
                Event::PeerOnline { .. }
                | Event::PeerOffline { .. }
                | Event::PeerUpdated { .. }
                | Event::PeerBlocked { .. }
                | Event::PeerUnblocked { .. }
                | Event::PeerRemoved { .. }
                | Event::PeerKeyMismatch { .. }
                | Event::MeshState { .. }
                | Event::Resync => changes.bump(),
                // Shown by the messenger views once they exist.
                Event::MessageNew { .. }
                | Event::MessageStatus { .. }
                | Event::ConversationRead { .. } => {}
            }),
        );
    }

    // The saved choice lives in the node's settings (the window's origin changes with
    // its port, so browser storage would forget it).
    spawn_local({
        let client = client.clone();
        async move {
            if let Ok(settings) = client.settings().await {
                if let Some(saved) = settings.ui.language {
                    lang.0.set(saved);
                }
            }
        }
    });

    Effect::new(move |_| {
        let tag = lang.0.get().tag();
        if let Some(root) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.document_element())
        {
            let _ = root.set_attribute("lang", tag);
        }
    });

    view! {
        <header class="topbar">
            <div class="brand">
                <h1 data-testid="app-title">{move || lang.t("app.title")}</h1>
                <span class="tagline">{move || lang.t("app.tagline")}</span>
            </div>
            <nav class="tabs" aria-label="sections">
                <button type="button" data-testid="tab-status" aria-pressed=move || (tab.get() == Tab::Status).to_string()
                    on:click=move |_| tab.set(Tab::Status)>{move || lang.t("tab.status")}</button>
                <button type="button" data-testid="tab-lan" aria-pressed=move || (tab.get() == Tab::Lan).to_string()
                    on:click=move |_| tab.set(Tab::Lan)>{move || lang.t("tab.lan")}</button>
            </nav>
            <LanguageSwitch/>
        </header>
        <main>
            {move || match tab.get() {
                Tab::Status => view! { <StatusCard/> }.into_any(),
                Tab::Lan => view! { <LanSettings/> <PeersTable/> }.into_any(),
            }}
        </main>
    }
}

#[component]
fn LanguageSwitch() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let choose = move |choice: Language| {
        lang.0.set(choice);
        let client = client.clone();
        spawn_local(async move {
            // A failed save only means the choice is not remembered; the switch itself
            // has already happened, so there is nothing to undo.
            let _ = client
                .update_settings(&json!({ "ui": { "language": choice.tag() } }))
                .await;
        });
    };
    view! {
        <nav class="lang-switch" aria-label=move || lang.t("lang.label")>
            <span class="label">{move || lang.t("lang.label")}</span>
            {Language::ALL
                .into_iter()
                .map(|choice| {
                    let choose = choose.clone();
                    view! {
                        <button
                            type="button"
                            data-testid=format!("lang-{}", choice.tag())
                            aria-pressed=move || (lang.0.get() == choice).to_string()
                            on:click=move |_| choose(choice)
                        >
                            {move || lang.t(&format!("lang.{}", choice.tag()))}
                        </button>
                    }
                })
                .collect_view()}
        </nav>
    }
}
