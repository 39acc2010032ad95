//! The messenger's left rail: the history search box and three always-visible sections,
//! Users (contacts with online state, a filter), Groups and Chats (conversations by
//! activity with unread badges). Rows are buttons: Tab reaches them, Enter opens,
//! the arrow keys move between rows of a list.

use api_types::{ContactView, ConversationKind, ConversationView, MessageStatus, Presence};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::app::Lang;
use crate::chat_model::{self, avatar_tone, badge_text, initials, preview};
use crate::group_state::Groups;
use crate::invitations::Invitations;
use crate::messenger::Chat;
use crate::time_text;

#[component]
pub fn Rail() -> impl IntoView {
    view! {
        <aside class="rail" data-testid="rail">
            <SearchBox/>
            <UsersSection/>
            <GroupsSection/>
            <ChatsSection/>
        </aside>
    }
}

#[component]
fn SearchBox() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    view! {
        <div class="search-box" role="search">
            <input
                type="search"
                id="history-search"
                data-testid="search-input"
                autocomplete="off"
                placeholder=move || lang.t("chat.search.placeholder")
                aria-label=move || lang.t("chat.search.label")
                prop:value=move || chat.search.get()
                on:input=move |ev| chat.search.set(event_target_value(&ev))
                on:keydown=move |ev: web_sys::KeyboardEvent| {
                    if ev.key() == "Escape" {
                        ev.prevent_default();
                        chat.search.set(String::new());
                    }
                }
            />
        </div>
    }
}

/// ArrowDown/ArrowUp move the focus to the next/previous row button of the list.
fn arrow_keys(ev: web_sys::KeyboardEvent) {
    let forward = match ev.key().as_str() {
        "ArrowDown" => true,
        "ArrowUp" => false,
        _ => return,
    };
    let Some(item) = ev
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .and_then(|e| e.closest("li").ok().flatten())
    else {
        return;
    };
    let next = if forward {
        item.next_element_sibling()
    } else {
        item.previous_element_sibling()
    };
    if let Some(button) = next
        .and_then(|li| li.query_selector("button").ok().flatten())
        .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
    {
        ev.prevent_default();
        let _ = button.focus();
    }
}

/// A round avatar with initials, and a presence dot (online, away, busy, offline)
/// when it is known.
pub fn avatar(id: &str, name: &str, presence: Option<Presence>) -> impl IntoView {
    let class = format!("avatar {}", avatar_tone(id));
    let dot = presence.map(|p| {
        view! { <span class=crate::presence_picker::dot_class(p) data-presence=p.as_str() aria-hidden="true"></span> }
    });
    view! {
        <span class=class aria-hidden="true">
            {initials(name)}
            {dot}
        </span>
    }
}

#[component]
fn UsersSection() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let filter = RwSignal::new(String::new());
    let online = move || {
        chat.contacts.with(|c| match c {
            Some(Ok(list)) => list.iter().filter(|c| c.online && !c.is_self).count(),
            _ => 0,
        })
    };
    view! {
        <section class="rail-section users" aria-labelledby="users-heading" data-testid="users-section">
            <header class="section-head">
                <h2 id="users-heading">{move || lang.t("chat.users")}</h2>
                <span class="count" title=move || lang.t("chat.users.online_count")>{online}</span>
            </header>
            <input
                type="search"
                class="filter"
                data-testid="user-filter"
                autocomplete="off"
                placeholder=move || lang.t("chat.users.filter")
                aria-label=move || lang.t("chat.users.filter")
                prop:value=move || filter.get()
                on:input=move |ev| filter.set(event_target_value(&ev))
                on:keydown=move |ev: web_sys::KeyboardEvent| {
                    if ev.key() == "Escape" {
                        filter.set(String::new());
                    }
                }
            />
            <div class="section-body">
                {move || match chat.contacts.get() {
                    None => view! { <p class="muted empty">{lang.t("status.loading")}</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error empty">{e.message(lang.0.get())}</p> }.into_any(),
                    Some(Ok(list)) => {
                        let shown = chat_model::filter_contacts(&list, &filter.get());
                        let note = if !list.iter().any(|c| !c.is_self) {
                            Some("chat.users.empty")
                        } else if shown.is_empty() {
                            Some("chat.users.no_match")
                        } else {
                            None
                        };
                        view! {
                            <ul class="list" data-testid="users-list" on:keydown=arrow_keys>
                                {shown.into_iter().map(|c| contact_row(lang, chat, c)).collect_view()}
                            </ul>
                            {note.map(|k| view! { <p class="muted empty" data-testid="users-empty">{lang.t(k)}</p> })}
                        }.into_any()
                    }
                }}
            </div>
        </section>
    }
}

fn contact_row(lang: Lang, chat: Chat, c: ContactView) -> impl IntoView {
    let l = lang.0.get();
    let presence = Presence::shown(c.online, c.presence);
    let sub = if c.is_self {
        i18n::t(l, "chat.users.this_node")
    } else if matches!(presence, Presence::Away | Presence::Busy) {
        i18n::t(l, crate::presence_picker::label_key(presence))
    } else if c.online {
        c.address
            .clone()
            .unwrap_or_else(|| i18n::t(l, "peers.online"))
    } else {
        match c.last_seen_at {
            Some(ms) => i18n::tf(
                l,
                "chat.users.last_seen",
                &[("when", &time_text::date_time(l, ms))],
            ),
            None => i18n::t(l, "peers.offline"),
        }
    };
    let title = match (&c.address, c.online) {
        (Some(a), _) => format!("{} · {a}", c.display_name),
        (None, _) => c.display_name.clone(),
    };
    let name = if c.is_self {
        i18n::tf(l, "chat.users.you", &[("name", &c.display_name)])
    } else {
        c.display_name.clone()
    };
    let conv = c.conversation_id.clone();
    let current = {
        let conv = conv.clone();
        move || (chat.open_id().as_deref() == Some(conv.as_str())).then_some("true")
    };
    let inner = view! {
        {avatar(&c.user_id, &c.display_name, Some(presence))}
        <span class="row-main">
            <span class="row-title">{name}</span>
            <span class="row-sub">{sub}</span>
        </span>
    };
    if c.is_self {
        view! {
            <li>
                <div class="row contact self" data-testid="user-self" title=title>{inner}</div>
            </li>
        }
        .into_any()
    } else {
        view! {
            <li>
                <button
                    type="button"
                    class="row contact"
                    class:offline=!c.online
                    data-testid=format!("user-{}", c.peer_id)
                    data-online=c.online.to_string()
                    data-presence=presence.as_str()
                    title=title
                    aria-current=current
                    on:click=move |_| chat.open(&conv)
                >
                    {inner}
                </button>
            </li>
        }
        .into_any()
    }
}

#[component]
fn GroupsSection() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let group_state = expect_context::<Groups>();
    let groups = Memo::new(move |_| chat.conversations.with(|l| chat_model::groups(l)));
    view! {
        <section class="rail-section groups" aria-labelledby="groups-heading" data-testid="groups-section">
            <header class="section-head">
                <h2 id="groups-heading">{move || lang.t("chat.groups")}</h2>
                <button type="button" class="link new-group" data-testid="new-group"
                    aria-haspopup="dialog"
                    on:click=move |_| group_state.creating.set(true)>
                    {move || lang.t("group.create.open")}
                </button>
            </header>
            <div class="section-body">
                <Invitations/>
                {move || {
                    let list = groups.get();
                    if list.is_empty() {
                        view! { <p class="muted empty" data-testid="groups-empty">{lang.t("chat.groups.empty")}</p> }.into_any()
                    } else {
                        view! {
                            <ul class="list" data-testid="groups-list" on:keydown=arrow_keys>
                                {list.into_iter().map(|c| conversation_row(lang, chat, c, "group")).collect_view()}
                            </ul>
                        }.into_any()
                    }
                }}
            </div>
        </section>
    }
}

#[component]
fn ChatsSection() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    view! {
        <section class="rail-section chats" aria-labelledby="chats-heading" data-testid="chats-section">
            <header class="section-head">
                <h2 id="chats-heading">{move || lang.t("chat.chats")}</h2>
            </header>
            <div class="section-body">
                {move || chat.conversations_error.get().map(|e| view! {
                    <p class="error empty">{e.message(lang.0.get())}</p>
                })}
                {move || {
                    let list = chat.conversations.get();
                    // The rows show each DM peer's online state.
                    chat.contacts.track();
                    if list.is_empty() {
                        view! { <p class="muted empty" data-testid="chats-empty">{lang.t("chat.chats.empty")}</p> }.into_any()
                    } else {
                        view! {
                            <ul class="list" data-testid="chats-list" on:keydown=arrow_keys>
                                {list.into_iter().map(|c| conversation_row(lang, chat, c, "chat")).collect_view()}
                            </ul>
                        }.into_any()
                    }
                }}
            </div>
        </section>
    }
}

fn status_mark(status: MessageStatus) -> (&'static str, &'static str) {
    match status {
        MessageStatus::Pending => ("…", "chat.status.pending"),
        MessageStatus::Sent => ("✓", "chat.status.sent"),
        MessageStatus::Delivered => ("✓✓", "chat.status.delivered"),
        MessageStatus::Failed => ("!", "chat.status.failed"),
        MessageStatus::Read => ("✓✓", "chat.status.read"),
    }
}

pub fn status_class(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Pending => "pending",
        MessageStatus::Sent => "sent",
        MessageStatus::Delivered => "delivered",
        MessageStatus::Failed => "failed",
        MessageStatus::Read => "read",
    }
}

/// A conversation in the Groups or Chats list; `prefix` keeps test ids unique.
fn conversation_row(
    lang: Lang,
    chat: Chat,
    c: ConversationView,
    prefix: &'static str,
) -> impl IntoView {
    let l = lang.0.get();
    let online = match (c.kind, &c.peer_id) {
        (ConversationKind::Dm, Some(peer)) => chat.contacts.with_untracked(|list| match list {
            Some(Ok(list)) => list
                .iter()
                .find(|x| &x.peer_id == peer)
                .map(|x| Presence::shown(x.online, x.presence)),
            _ => None,
        }),
        _ => None,
    };
    let avatar_id = match &c.peer_id {
        Some(peer) => format!("lan:{peer}"),
        None => c.id.clone(),
    };
    let (preview_text, mark) = match &c.last_message {
        Some(m) => {
            let text = preview(&crate::files_model::message_summary(m), 60);
            let text = if m.outgoing {
                i18n::tf(l, "chat.preview.you", &[("text", &text)])
            } else if c.kind == ConversationKind::Group {
                format!("{}: {text}", m.sender_name)
            } else {
                text
            };
            let mark = m.outgoing.then(|| {
                let (symbol, key) = status_mark(m.status);
                view! {
                    <span class=format!("tick {}", status_class(m.status)) title=i18n::t(l, key)>{symbol}</span>
                }
            });
            (text, mark)
        }
        None => (i18n::t(l, "chat.preview.none"), None),
    };
    let when = c
        .last_message
        .as_ref()
        .map(|m| m.sent_at)
        .unwrap_or(c.last_activity_at);
    let time = (when > 0).then(|| time_text::list_time(l, when));
    let unread = (c.unread > 0).then(|| {
        let label = i18n::tf(l, "chat.unread", &[("count", &c.unread.to_string())]);
        view! {
            <span class="unread" data-testid="unread-badge" aria-label=label>{badge_text(c.unread)}</span>
        }
    });
    let has_unread = c.unread > 0;
    let id = c.id.clone();
    let current = {
        let id = id.clone();
        move || (chat.open_id().as_deref() == Some(id.as_str())).then_some("true")
    };
    view! {
        <li>
            <button
                type="button"
                class="row conversation"
                class:has-unread=has_unread
                data-testid=format!("{prefix}-{}", c.id)
                data-unread=c.unread.to_string()
                aria-current=current
                on:click=move |_| chat.open(&id)
            >
                {avatar(&avatar_id, &c.name, online)}
                <span class="row-main">
                    <span class="row-line">
                        <span class="row-title">{c.name.clone()}</span>
                        <span class="row-time">{time}</span>
                    </span>
                    <span class="row-line">
                        <span class="row-sub" data-testid="preview">{mark}{preview_text}</span>
                        {unread}
                    </span>
                </span>
            </button>
        </li>
    }
}
