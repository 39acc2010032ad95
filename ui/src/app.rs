//! The application shell: top bar (sections, this node's name, the language switch)
//! and the page body: the messenger by default, the status and LAN settings beside it.

use std::rc::Rc;

use api_types::{Event, Language};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::json;
use wasm_bindgen::JsCast;

use crate::api::Client;
use crate::chat_model::{document_title, unread_total};
use crate::conversation_view::ConversationPane;
use crate::desktop_prefs::{DesktopPrefs, DesktopSettingsCard};
use crate::diagnostics_view::DiagnosticsView;
use crate::file_settings::FileSettingsCard;
use crate::group_dialog::CreateGroupDialog;
use crate::group_model;
use crate::group_state::Groups;
use crate::identity_banner::IdentityBanner;
use crate::language;
use crate::messenger::Chat;
use crate::notices::{NoticeKind, Notices, Toasts};
use crate::peers_view::PeersTable;
use crate::rail::Rail;
use crate::search_view::SearchResults;
use crate::settings_view::LanSettings;
use crate::status_view::StatusCard;
use crate::switcher::ConversationSwitcher;
use crate::welcome::Welcome;

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
    Chat,
    Status,
    Lan,
    Diagnostics,
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
    let tab = RwSignal::new(Tab::Chat);
    let chat = Chat::new(client.clone());
    provide_context(chat);
    let groups = Groups::new(client.clone());
    provide_context(groups);
    let notices = Notices::new();
    provide_context(notices);
    provide_context(crate::upload::Uploads::new(chat, notices, lang));
    let prefs = DesktopPrefs::new();
    provide_context(prefs);
    prefs.load(client.clone());
    let mine = crate::presence_picker::Mine::new();
    provide_context(mine);
    mine.load(client.clone());
    crate::presence_picker::report_activity(client.clone());
    let switcher_open = RwSignal::new(false);
    // The first-start welcome: its settings and suggested name once both arrived,
    // until answered.
    let welcome = LocalResource::new({
        let client = client.clone();
        move || {
            let client = client.clone();
            async move {
                let settings = client.settings().await.ok()?;
                if settings.ui.welcome_done {
                    return None;
                }
                let suggested = client
                    .status()
                    .await
                    .map(|s| s.suggested_name)
                    .unwrap_or_default();
                Some((settings, suggested))
            }
        }
    });
    let welcome_done = RwSignal::new(false);
    // The desktop shell opens a conversation (a notification was clicked): a DOM event
    // for a running page, sessionStorage for a window it created for that.
    let open_from_shell = move |id: String| {
        tab.set(Tab::Chat);
        chat.open(&id);
    };
    if let Some(storage) = web_sys::window().and_then(|w| w.session_storage().ok().flatten()) {
        if let Ok(Some(id)) = storage.get_item("lanchat.open") {
            let _ = storage.remove_item("lanchat.open");
            open_from_shell(id);
        }
    }
    let _ = window_event_listener_untyped("lanchat:open", move |ev| {
        if let Some(id) = ev
            .dyn_ref::<web_sys::CustomEvent>()
            .and_then(|e| e.detail().as_string())
        {
            open_from_shell(id);
        }
    });

    if let Some(token) = client.token() {
        crate::events::subscribe(
            token.to_string(),
            Rc::new(move |event: Event| {
                match &event {
                    Event::PeerOnline { .. }
                    | Event::PeerOffline { .. }
                    | Event::PeerUpdated { .. }
                    | Event::PeerBlocked { .. }
                    | Event::PeerUnblocked { .. }
                    | Event::PeerRemoved { .. }
                    | Event::PeerKeyMismatch { .. }
                    | Event::MeshState { .. }
                    | Event::Resync => changes.bump(),
                    Event::PresenceChanged { presence } => mine.0.set(*presence),
                    Event::ConversationReceipt { .. } | Event::FileProgress { .. } => {}
                    Event::MessageNew { .. }
                    | Event::MessageStatus { .. }
                    | Event::ConversationRead { .. }
                    | Event::GroupUpdated { .. }
                    | Event::GroupAnnouncement { .. }
                    | Event::GroupInvitation { .. }
                    | Event::GroupInvitationClosed { .. } => {}
                }
                if let Event::PeerKeyMismatch { peer_id } = &event {
                    let name = chat.contacts.with_untracked(|c| match c {
                        Some(Ok(list)) => group_model::peer_name(list, peer_id),
                        _ => peer_id.clone(),
                    });
                    // Every refused dial repeats it: one warning per peer.
                    notices.push(
                        NoticeKind::Warning,
                        format!("key_mismatch:{peer_id}"),
                        "notice.key_mismatch",
                        vec![("name", name), ("peer_id", peer_id.clone())],
                    );
                }
                groups.on_event(&event, &chat, &notices);
                // The messenger follows messages, reads, peers and resyncs.
                chat.on_event(event);
            }),
        );
    }
    chat.resync();
    groups.resync();

    // Unread messages in the title, so a background tab or the taskbar shows them.
    Effect::new(move |_| {
        let total = chat.conversations.with(|list| unread_total(list));
        let title = document_title(total, &lang.t("app.title"));
        if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
            doc.set_title(&title);
        }
    });
    // Coming back to the messenger or the window marks the open conversation read.
    Effect::new(move |_| {
        chat.shown.set(tab.get() == Tab::Chat);
        chat.read_if_viewed();
    });
    let _ = window_event_listener_untyped("focus", move |_| chat.read_if_viewed());
    let _ = window_event_listener_untyped("visibilitychange", move |_| chat.read_if_viewed());
    // Ctrl+K (or Cmd+K) opens the conversation switcher; Ctrl+Shift+F searches the
    // history from anywhere; Escape leaves the search.
    let _ = window_event_listener(leptos::ev::keydown, move |ev| {
        if (ev.ctrl_key() || ev.meta_key()) && !ev.shift_key() && ev.key().eq_ignore_ascii_case("k")
        {
            ev.prevent_default();
            switcher_open.set(true);
        } else if (ev.ctrl_key() || ev.meta_key())
            && ev.shift_key()
            && ev.key().eq_ignore_ascii_case("f")
        {
            ev.prevent_default();
            tab.set(Tab::Chat);
            request_animation_frame(|| {
                if let Some(input) = web_sys::window()
                    .and_then(|w| w.document())
                    .and_then(|d| d.get_element_by_id("history-search"))
                    .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
                {
                    let _ = input.focus();
                }
            });
        } else if ev.key() == "Escape" && !chat.search.get_untracked().is_empty() {
            chat.search.set(String::new());
        }
    });
    let me = LocalResource::new({
        let client = client.clone();
        move || {
            changes.0.track();
            let client = client.clone();
            async move {
                client.status().await.ok().map(|s| {
                    (
                        s.display_name,
                        s.mesh_state == api_types::MeshState::Running,
                    )
                })
            }
        }
    });

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
                <button type="button" data-testid="tab-chat" aria-pressed=move || (tab.get() == Tab::Chat).to_string()
                    on:click=move |_| tab.set(Tab::Chat)>{move || lang.t("tab.chat")}
                    {move || {
                        let total = chat.conversations.with(|list| unread_total(list));
                        (total > 0).then(|| view! {
                            <span class="unread" data-testid="unread-total">{crate::chat_model::badge_text(total)}</span>
                        })
                    }}
                </button>
                <button type="button" data-testid="tab-status" aria-pressed=move || (tab.get() == Tab::Status).to_string()
                    on:click=move |_| tab.set(Tab::Status)>{move || lang.t("tab.status")}</button>
                <button type="button" data-testid="tab-lan" aria-pressed=move || (tab.get() == Tab::Lan).to_string()
                    on:click=move |_| tab.set(Tab::Lan)>{move || lang.t("tab.lan")}</button>
                <button type="button" data-testid="tab-diagnostics" aria-pressed=move || (tab.get() == Tab::Diagnostics).to_string()
                    on:click=move |_| tab.set(Tab::Diagnostics)>{move || lang.t("tab.diagnostics")}</button>
            </nav>
            {move || me.get().flatten().map(|(name, on_lan)| view! {
                <span class="me" data-testid="me-name" title=lang.t("chat.me")>
                    <span class=move || if on_lan { crate::presence_picker::dot_class(mine.0.get().presence) } else { "dot" }
                        data-testid="me-presence" data-presence=move || mine.0.get().presence.as_str()
                        aria-hidden="true"></span>{name}
                </span>
            })}
            <crate::presence_picker::PresencePicker/>
            <LanguageSwitch/>
        </header>
        <IdentityBanner/>
        <main class:messenger-main=move || tab.get() == Tab::Chat>
            {move || match tab.get() {
                Tab::Chat => view! { <Messenger/> }.into_any(),
                Tab::Status => view! { <StatusCard/> }.into_any(),
                Tab::Lan => view! { <LanSettings/> <DesktopSettingsCard/> <FileSettingsCard/> <PeersTable/> }.into_any(),
                Tab::Diagnostics => view! { <DiagnosticsView/> }.into_any(),
            }}
        </main>
        <Toasts/>
        {move || switcher_open.get().then(|| view! {
            <ConversationSwitcher open=switcher_open on_pick=Callback::new(open_from_shell)/>
        })}
        {move || (!welcome_done.get()).then(|| welcome.get().flatten().map(|(settings, suggested)| view! {
            <Welcome settings=settings suggested_name=suggested done=welcome_done/>
        }))}
    }
}

/// The messenger: the rail on the left; the open conversation, or the search results
/// while the search box has text, on the right.
#[component]
fn Messenger() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let groups = expect_context::<Groups>();
    let searching = Memo::new(move |_| chat.search.with(|q| !q.trim().is_empty()));
    // Leaving the search shows the open conversation again: it is read now.
    Effect::new(move |_| {
        if !searching.get() {
            chat.read_if_viewed();
        }
    });
    view! {
        <div class="messenger" data-testid="messenger">
            <Rail/>
            <div class="pane">
                {move || if searching.get() {
                    view! { <SearchResults/> }.into_any()
                } else {
                    view! { <ConversationPane/> }.into_any()
                }}
            </div>
            {move || groups.creating.get().then(|| view! { <CreateGroupDialog/> })}
        </div>
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
