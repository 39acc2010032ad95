//! The open conversation: a header, the history (day separators, sender names in
//! groups, per-message status with Retry, older pages on scroll-back) and the composer
//! (Enter sends, Shift+Enter is a newline, pasted lines stay lines; files are attached,
//! dropped on the conversation or pasted, see `upload`).

use api_types::{ConversationKind, MessageStatus, MessageView};
use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::api::UiError;
use crate::app::Lang;
use crate::attachments::{attachments_view, ImageViewer, Viewer};
use crate::chat_model::{
    self, byte_offset, complete_mention, composer_key, mention_candidates, mention_query,
    outgoing_text, utf16_offset, ComposerKey, MentionQuery, Row,
};
use crate::group_info::GroupInfo;
use crate::group_model;
use crate::group_state::Groups;
use crate::messenger::Chat;
use crate::notices::{NoticeKind, Notices};
use crate::rail::status_class;
use crate::time_text;
use crate::upload::{picked_files, Dropped, Uploads};

/// Older messages load when the history is scrolled to within this many pixels of its
/// top (a little before the end, so it feels continuous).
const LOAD_OLDER_MARGIN: i32 = 120;
/// Scrolled further than this from the newest message, new arrivals offer a jump back.
const JUMP_MARGIN: i32 = 160;
/// At most this many members are offered while an `@name` is typed.
const MENTION_CHOICES: usize = 6;

#[component]
pub fn ConversationPane() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let groups = expect_context::<Groups>();
    let open = Memo::new(move |_| chat.open_id());
    move || match open.get() {
        None => view! {
            <div class="placeholder" data-testid="no-conversation">
                <p class="big">{move || lang.t("chat.choose.title")}</p>
                <p class="muted">{move || lang.t("chat.choose.hint")}</p>
            </div>
        }
        .into_any(),
        Some(id) => {
            let is_group = id.starts_with("group:");
            let panel_id = id.clone();
            view! {
                <div class="conv-wrap">
                    <Conversation id=id/>
                    {move || (is_group && groups.info_open.get()).then(|| view! { <GroupInfo conversation_id=panel_id.clone()/> })}
                </div>
            }
            .into_any()
        }
    }
}

#[component]
fn Conversation(id: String) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let groups = expect_context::<Groups>();
    let uploads = expect_context::<Uploads>();
    let notices = expect_context::<Notices>();
    let history_ref = NodeRef::<html::Div>::new();
    let composer_ref = NodeRef::<html::Textarea>::new();
    provide_context(Viewer(RwSignal::new(None)));

    let kind = {
        let id = id.clone();
        Memo::new(move |_| chat.kind_of(&id))
    };
    let name = {
        let id = id.clone();
        Memo::new(move |_| chat.name_of(&id))
    };
    let group = {
        let id = id.clone();
        Memo::new(move |_| groups.for_conversation(&id))
    };
    let announcement = Memo::new(move |_| {
        group.with(|g| {
            g.as_ref()
                .map(|g| g.announcement.clone())
                .filter(|a| !a.trim().is_empty())
        })
    });
    let composer_note = Memo::new(move |_| group.with(|g| group_model::composer_note(g.as_ref())));
    // The other members' names, in the member list's order, for `@name` completion.
    let mentionable = Memo::new(move |_| {
        group.with(|g| {
            g.as_ref().map_or_else(Vec::new, |g| {
                group_model::sorted_members(&g.members)
                    .into_iter()
                    .filter(|m| !m.is_self)
                    .map(|m| m.display_name)
                    .collect()
            })
        })
    });
    let subtitle = {
        let id = id.clone();
        move || {
            let l = lang.0.get();
            if kind.get() == ConversationKind::Group {
                return group.with(|g| match g {
                    // English counts "1 member", not "1 members".
                    Some(g) if g.members.len() == 1 => i18n::tf(
                        l,
                        "chat.header.group_one_member",
                        &[("online", &group_model::online_count(&g.members).to_string())],
                    ),
                    Some(g) => i18n::tf(
                        l,
                        "chat.header.group_members",
                        &[
                            ("count", &g.members.len().to_string()),
                            ("online", &group_model::online_count(&g.members).to_string()),
                        ],
                    ),
                    None => i18n::t(l, "chat.header.group"),
                });
            }
            match chat.contact_for(&id) {
                Some(c) if c.is_self => i18n::t(l, "chat.users.this_node"),
                Some(c) if c.online => i18n::tf(
                    l,
                    "chat.header.online",
                    &[("address", c.address.as_deref().unwrap_or(""))],
                ),
                Some(c) => match c.last_seen_at {
                    Some(ms) => i18n::tf(
                        l,
                        "chat.users.last_seen",
                        &[("when", &time_text::date_time(l, ms))],
                    ),
                    None => i18n::t(l, "peers.offline"),
                },
                None => String::new(),
            }
        }
    };
    let online = {
        let id = id.clone();
        move || chat.contact_for(&id).is_some_and(|c| c.online)
    };

    let rows = Memo::new(move |_| {
        let k = kind.get();
        chat.history.with(|h| {
            h.as_ref()
                .map(|h| {
                    let mut rows = chat_model::timeline(&h.messages, k, time_text::day_of);
                    chat_model::mark_unread(&mut rows, h.first_unread.as_deref());
                    rows
                })
                .unwrap_or_default()
        })
    });
    let loaded = move || chat.history.with(|h| h.as_ref().is_some_and(|h| h.loaded));
    let has_older = move || {
        chat.history
            .with(|h| h.as_ref().is_some_and(|h| h.older.is_some()))
    };
    let loading_older = move || {
        chat.history
            .with(|h| h.as_ref().is_some_and(|h| h.loading_older))
    };
    let empty = move || {
        chat.history.with(|h| {
            h.as_ref()
                .is_some_and(|h| h.loaded && h.messages.is_empty())
        })
    };
    let load_error = move || {
        chat.history
            .with(|h| h.as_ref().and_then(|h| h.error.clone()))
    };

    // "Jump to newest": messages that arrived while the user read further up.
    let away = RwSignal::new(false);
    let unseen = RwSignal::new(0u32);
    let newest = Memo::new(move |_| {
        chat.history.with(|h| {
            h.as_ref()
                .and_then(|h| h.messages.last().map(|m| m.id.clone()))
        })
    });
    Effect::new(move |previous: Option<Option<String>>| {
        let now = newest.get();
        if let Some(previous) = previous {
            if previous.is_some() && now != previous && away.get_untracked() {
                unseen.update(|n| *n += 1);
            }
        }
        now
    });
    let jump = move |_| {
        if let Some(el) = history_ref.get_untracked() {
            el.set_scroll_top(0);
        }
        away.set(false);
        unseen.set(0);
    };

    let on_scroll = move |_| {
        let Some(el) = history_ref.get() else {
            return;
        };
        let is_away = group_model::away_from_newest(el.scroll_top(), JUMP_MARGIN);
        if is_away != away.get_untracked() {
            away.set(is_away);
        }
        if !is_away && unseen.get_untracked() > 0 {
            unseen.set(0);
        }
        // The history is laid out bottom-up (column-reverse), so scrollTop is 0 at the
        // newest message and grows negative upwards in Chromium (positive in some
        // engines): measure the distance from the top either way.
        let from_top = el.scroll_height() - el.client_height() - el.scroll_top().abs();
        if from_top < LOAD_OLDER_MARGIN {
            chat.load_older();
        }
    };

    // A search hit: scroll it into view once it is rendered.
    Effect::new(move |_| {
        if let Some(target) = chat.highlight.get() {
            request_animation_frame(move || {
                if let Some(el) = web_sys::window()
                    .and_then(|w| w.document())
                    .and_then(|d| d.get_element_by_id(&format!("msg-{target}")))
                {
                    let options = web_sys::ScrollIntoViewOptions::new();
                    options.set_block(web_sys::ScrollLogicalPosition::Center);
                    el.scroll_into_view_with_scroll_into_view_options(&options);
                }
            });
        }
    });
    // The composer has the focus when a conversation opens (unless jumping to a hit).
    Effect::new(move |_| {
        if let Some(el) = composer_ref.get() {
            let _ = el.focus();
        }
    });

    // Files dragged over the conversation: a drop zone shows until they leave or drop.
    // Entering a child counts as entering again before leaving its parent, hence depth.
    let drag_depth = RwSignal::new(0i32);
    let can_drop =
        move |ev: &web_sys::DragEvent| composer_note.get_untracked().is_none() && carries_files(ev);
    let on_drop = {
        let id = id.clone();
        move |ev: web_sys::DragEvent| {
            drag_depth.set(0);
            if !carries_files(&ev) {
                return;
            }
            // Never let the browser open the dropped file instead.
            ev.prevent_default();
            if composer_note.get_untracked().is_some() {
                return;
            }
            let Some(dropped) = ev.data_transfer().map(|dt| Dropped::of(&dt)) else {
                return;
            };
            if dropped.is_empty() {
                return;
            }
            let id = id.clone();
            spawn_local(async move {
                match dropped.collect().await {
                    Ok(files) => uploads.send(&id, files),
                    Err(files) => {
                        uploads.send(&id, files);
                        notices.push(
                            NoticeKind::Warning,
                            "drop-folder".into(),
                            "files.folder_unreadable",
                            Vec::new(),
                        );
                    }
                }
            });
        }
    };

    view! {
        <section class="conv-view" data-testid="conversation" data-conversation-id=id.clone()
            on:dragenter=move |ev: web_sys::DragEvent| {
                if can_drop(&ev) {
                    ev.prevent_default();
                    drag_depth.update(|d| *d += 1);
                }
            }
            on:dragover=move |ev: web_sys::DragEvent| {
                if can_drop(&ev) {
                    ev.prevent_default();
                    if let Some(dt) = ev.data_transfer() {
                        dt.set_drop_effect("copy");
                    }
                }
            }
            on:dragleave=move |ev: web_sys::DragEvent| {
                if carries_files(&ev) {
                    drag_depth.update(|d| *d = (*d - 1).max(0));
                }
            }
            on:drop=on_drop>
            {move || (drag_depth.get() > 0).then(|| view! {
                <div class="drop-zone" data-testid="drop-zone" aria-hidden="true">
                    <p>{move || i18n::tf(lang.0.get(), "files.drop_here", &[("name", &name.get())])}</p>
                </div>
            })}
            <ImageViewer/>
            <header class="conv-head">
                {
                    let id = id.clone();
                    move || {
                        let n = name.get();
                        // A DM's avatar is its user's (`dm:lan:X` → `lan:X`), as in the lists.
                        let avatar_id = id.strip_prefix("dm:").unwrap_or(&id).to_string();
                        view! {
                            <span class=format!("avatar {}", chat_model::avatar_tone(&avatar_id)) aria-hidden="true">
                                {chat_model::initials(&n)}
                            </span>
                        }
                    }
                }
                <div class="conv-title">
                    <h2 data-testid="conversation-title">{name}</h2>
                    <p class="conv-sub" class:online=online data-testid="conversation-subtitle">{subtitle}</p>
                </div>
                <crate::desktop_prefs::MuteToggle conversation_id=id.clone()/>
                {move || (kind.get() == ConversationKind::Group).then(|| view! {
                    <button type="button" class="head-button" data-testid="group-info-button"
                        aria-controls="group-info"
                        aria-expanded=move || groups.info_open.get().to_string()
                        on:click=move |_| groups.info_open.update(|o| *o = !*o)>
                        {move || lang.t("group.info.open")}
                    </button>
                })}
            </header>
            {move || announcement.get().map(|text| view! {
                <div class="announcement" role="note" data-testid="announcement-banner"
                    aria-label=move || lang.t("group.field.announcement")>
                    <span class="announcement-label">{move || lang.t("group.field.announcement")}</span>
                    <p class="announcement-text">{text}</p>
                </div>
            })}
            <div class="history-wrap">
            <div class="history" node_ref=history_ref on:scroll=on_scroll data-testid="message-list"
                role="log" aria-live="polite" tabindex="0" aria-label=move || lang.t("chat.history.label")>
                <div class="history-inner">
                    {move || {
                        if has_older() {
                            view! {
                                <div class="history-top">
                                    <button type="button" class="link" data-testid="load-older"
                                        disabled=loading_older
                                        on:click=move |_| { chat.load_older(); }>
                                        {move || lang.t(if loading_older() { "status.loading" } else { "chat.history.older" })}
                                    </button>
                                </div>
                            }.into_any()
                        } else if loaded() && !empty() {
                            view! { <div class="history-top muted" data-testid="history-start">{lang.t("chat.history.start")}</div> }.into_any()
                        } else {
                            ().into_any()
                        }
                    }}
                    {move || (!loaded()).then(|| view! { <p class="muted center">{lang.t("status.loading")}</p> })}
                    {move || empty().then(|| view! {
                        <div class="history-empty" data-testid="history-empty">
                            // "Say hello" only where this node may send.
                            <p>{move || lang.t(if composer_note.get().is_some() { "chat.history.none" } else { "chat.history.empty" })}</p>
                        </div>
                    })}
                    <For each=move || rows.get() key=Row::key let:row>
                        {row_view(lang, chat, row)}
                    </For>
                </div>
            </div>
            {move || group_model::show_jump(away.get(), unseen.get()).then(|| view! {
                <button type="button" class="jump-newest" data-testid="jump-newest" on:click=jump>
                    {move || i18n::tf(lang.0.get(), "chat.jump_newest", &[("count", &unseen.get().to_string())])}
                </button>
            })}
            </div>
            {move || load_error().map(|e| view! {
                <p class="error inline" role="alert" data-testid="history-error">{e.message(lang.0.get())}</p>
            })}
            <Composer id=id.clone() composer_ref=composer_ref note=composer_note mentionable=mentionable/>
        </section>
    }
}

fn row_view(lang: Lang, chat: Chat, row: Row) -> AnyView {
    match row {
        Row::Day { day, first_ms } => view! {
            <div class="day-sep" role="separator" data-testid="day-separator">
                <span>{move || time_text::day_label(lang.0.get(), day, first_ms)}</span>
            </div>
        }
        .into_any(),
        Row::Unread => view! {
            <div class="unread-sep" role="separator" data-testid="unread-separator">
                <span>{move || lang.t("chat.history.new")}</span>
            </div>
        }
        .into_any(),
        Row::Message {
            message,
            show_sender,
        } => message_view(lang, chat, message, show_sender).into_any(),
    }
}

fn message_view(lang: Lang, chat: Chat, m: MessageView, show_sender: bool) -> impl IntoView {
    let id = m.id.clone();
    let highlighted = {
        let id = id.clone();
        move || chat.highlight.get().as_deref() == Some(id.as_str())
    };
    let retry_error = RwSignal::new(None::<UiError>);
    let failed = m.outgoing && m.status == MessageStatus::Failed;
    let retry = {
        let m = m.clone();
        move |_| {
            let m = m.clone();
            spawn_local(async move {
                if let Err(e) = chat.retry(&m).await {
                    retry_error.set(Some(e));
                }
            });
        }
    };
    let status = m.status;
    let sent_at = m.sent_at;
    let status_key = match status {
        MessageStatus::Pending => "chat.status.pending",
        MessageStatus::Sent => "chat.status.sent",
        MessageStatus::Delivered => "chat.status.delivered",
        MessageStatus::Failed => "chat.status.failed",
        MessageStatus::Read => "chat.status.read",
    };
    // Ticks for the usual states, words for the ones that need attention.
    let status_label = move || match status {
        MessageStatus::Sent => "✓".to_string(),
        MessageStatus::Delivered | MessageStatus::Read => "✓✓".to_string(),
        MessageStatus::Pending | MessageStatus::Failed => lang.t(status_key),
    };
    // A group message of mine: "read by k of n" once someone has read it.
    let read_by = m.read_by.filter(|r| m.outgoing && r.of > 0);
    view! {
        <div
            id=format!("msg-{id}")
            class="message"
            class:outgoing=m.outgoing
            class:incoming=!m.outgoing
            class:highlight=highlighted
            data-testid=format!("message-{id}")
            data-status=status_class(status)
            data-outgoing=m.outgoing.to_string()
        >
            {show_sender.then(|| view! { <div class="sender">{m.sender_name.clone()}</div> })}
            <div class="bubble">
                {attachments_view(&m)}
                // Empty for a file message (and then not shown).
                <div class="text" data-testid="message-text">{m.text.clone()}</div>
                <div class="meta">
                    <time title=move || time_text::date_time(lang.0.get(), sent_at)>
                        {move || time_text::time_of_day(lang.0.get(), sent_at)}
                    </time>
                    {m.outgoing.then(|| view! {
                        <span class=format!("state {}", status_class(status)) data-testid=format!("status-{id}")
                            title=move || lang.t(status_key) aria-label=move || lang.t(status_key)>
                            {status_label}
                        </span>
                    })}
                    {read_by.map(|r| view! {
                        <span class="read-by" class:all=r.count == r.of data-testid=format!("read-by-{id}")
                            data-count=r.count.to_string() data-of=r.of.to_string()>
                            {move || i18n::tf(lang.0.get(), "chat.read_by", &[
                                ("count", &r.count.to_string()), ("of", &r.of.to_string())])}
                        </span>
                    })}
                </div>
            </div>
            {failed.then(|| view! {
                <div class="failed-row">
                    <button type="button" class="link danger" data-testid=format!("retry-{id}") on:click=retry>
                        {move || lang.t("chat.retry")}
                    </button>
                    {move || retry_error.get().map(|e| view! { <span class="error small">{e.message(lang.0.get())}</span> })}
                </div>
            })}
        </div>
    }
}

#[component]
fn Composer(
    id: String,
    composer_ref: NodeRef<html::Textarea>,
    /// A catalog key saying why this node cannot send here (left, dissolved).
    note: Memo<Option<&'static str>>,
    /// The names `@` completes to (the group's other members; none in a DM).
    mentionable: Memo<Vec<String>>,
) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let uploads = expect_context::<Uploads>();
    let file_ref = NodeRef::<html::Input>::new();
    let folder_ref = NodeRef::<html::Input>::new();
    let draft = RwSignal::new(chat.draft(&id));
    let error = RwSignal::new(None::<UiError>);
    let sending = RwSignal::new(false);
    {
        let id = id.clone();
        Effect::new(move |_| chat.keep_draft(&id, draft.get()));
    }
    // `@name` completion: the caret (a byte offset in the draft), the `@` whose list
    // Escape closed, and the highlighted choice.
    let caret = RwSignal::new(0usize);
    let dismissed = RwSignal::new(None::<usize>);
    let choice = RwSignal::new(0usize);
    let mention = Memo::new(move |_| {
        let names = mentionable.get();
        if names.is_empty() {
            return None;
        }
        let query = draft.with(|d| mention_query(d, caret.get()))?;
        if dismissed.get() == Some(query.at) {
            return None;
        }
        let choices = mention_candidates(&names, &query.query, MENTION_CHOICES);
        (!choices.is_empty()).then_some((query, choices))
    });
    Effect::new(move |_| {
        mention.track();
        choice.set(0);
    });
    let read_caret = move || {
        if let Some(el) = composer_ref.get_untracked() {
            let utf16 = el.selection_start().ok().flatten().unwrap_or(0) as usize;
            caret.set(draft.with_untracked(|d| byte_offset(d, utf16)));
        }
    };
    let complete = move |query: MentionQuery, name: String| {
        let (text, at) =
            draft.with_untracked(|d| complete_mention(d, &query, caret.get_untracked(), &name));
        if let Some(el) = composer_ref.get_untracked() {
            // The element first, so the reactive value set after it changes nothing and
            // the caret stays after the name.
            el.set_value(&text);
            let pos = utf16_offset(&text, at) as u32;
            let _ = el.set_selection_range(pos, pos);
            let _ = el.focus();
        }
        caret.set(at);
        draft.set(text);
    };

    let send = {
        let id = id.clone();
        move || {
            if note.get_untracked().is_some() {
                return;
            }
            let Some(text) = outgoing_text(&draft.get_untracked()) else {
                return;
            };
            draft.set(String::new());
            error.set(None);
            sending.set(true);
            let id = id.clone();
            spawn_local(async move {
                let sent = chat.send(&id, &text).await;
                if sent.is_ok() {
                    // Back to the newest message (the history is laid out bottom-up).
                    if let Some(history) =
                        web_sys::window().and_then(|w| w.document()).and_then(|d| {
                            d.query_selector("[data-testid=message-list]")
                                .ok()
                                .flatten()
                        })
                    {
                        history.set_scroll_top(0);
                    }
                }
                if let Err(e) = sent {
                    // Nothing is lost: the text comes back unless a new one was typed.
                    if draft.with_untracked(String::is_empty) {
                        draft.set(text);
                    }
                    error.set(Some(e));
                }
                sending.set(false);
            });
        }
    };
    let on_keydown = {
        let send = send.clone();
        move |ev: web_sys::KeyboardEvent| {
            // keyCode 229: WebKit's sign that an IME is still composing.
            let composing = ev.is_composing() || ev.key_code() == 229;
            if let Some((query, choices)) = mention.get_untracked() {
                let n = choices.len();
                let picked = || choices.get(choice.get_untracked()).cloned();
                match ev.key().as_str() {
                    "ArrowDown" => choice.set((choice.get_untracked() + 1) % n),
                    "ArrowUp" => choice.set((choice.get_untracked() + n - 1) % n),
                    "Tab" if !ev.shift_key() => {
                        if let Some(name) = picked() {
                            complete(query, name);
                        }
                    }
                    "Enter" if !ev.shift_key() && !composing => {
                        if let Some(name) = picked() {
                            complete(query, name);
                        }
                    }
                    "Escape" => {
                        dismissed.set(Some(query.at));
                        ev.stop_propagation();
                    }
                    _ => return,
                }
                ev.prevent_default();
                return;
            }
            if composer_key(&ev.key(), ev.shift_key(), composing) == ComposerKey::Send {
                ev.prevent_default();
                send();
            }
        }
    };
    let rows =
        move || draft.with(|d| d.lines().count().clamp(1, 8) + usize::from(d.ends_with('\n')));
    let picked = {
        let id = id.clone();
        move |input: NodeRef<html::Input>, folder: bool| {
            if let Some(el) = input.get_untracked() {
                uploads.send(&id, picked_files(&el, folder));
                // The same file can be picked again.
                el.set_value("");
            }
        }
    };
    let picked_folder = picked.clone();
    let on_paste = {
        let id = id.clone();
        move |ev: web_sys::ClipboardEvent| {
            if note.get_untracked().is_some() {
                return;
            }
            let images = ev
                .clipboard_data()
                .map(|dt| crate::upload::pasted_images(&dt))
                .unwrap_or_default();
            // Text pastes stay the text area's.
            if !images.is_empty() {
                ev.prevent_default();
                uploads.send(&id, images);
            }
        }
    };
    let uploading = {
        let id = id.clone();
        Memo::new(move |_| {
            uploads.rows.with(|rows| {
                rows.iter()
                    .filter(|r| r.conversation_id == id)
                    .cloned()
                    .collect::<Vec<_>>()
            })
        })
    };
    let placeholder = {
        let id = id.clone();
        move || {
            i18n::tf(
                lang.0.get(),
                "chat.composer.placeholder",
                &[("name", &chat.name_of(&id))],
            )
        }
    };

    view! {
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); send(); }>
            {move || error.get().map(|e| view! {
                <p class="error inline" role="alert" data-testid="send-error">{e.message(lang.0.get())}</p>
            })}
            {move || mention.get().map(|(query, choices)| {
                let options = choices.into_iter().enumerate().map(|(i, name)| {
                    let query = query.clone();
                    let shown = name.clone();
                    view! {
                        <li role="option" data-testid="mention-option"
                            class:active=move || choice.get() == i
                            aria-selected=move || (choice.get() == i).to_string()
                            // Keeps the focus in the text area.
                            on:mousedown=move |ev| ev.prevent_default()
                            on:click=move |_| complete(query.clone(), name.clone())>
                            "@" {shown}
                        </li>
                    }
                }).collect_view();
                view! {
                    <ul class="mention-list" role="listbox" data-testid="mention-list"
                        aria-label=move || lang.t("chat.mention.label")>
                        {options}
                    </ul>
                }
            })}
            {move || {
                let rows = uploading.get();
                (!rows.is_empty()).then(|| view! {
                    <ul class="uploads" data-testid="uploads" aria-live="polite">
                        {rows.into_iter().map(|r| upload_row(lang, r)).collect_view()}
                    </ul>
                })
            }}
            <div class="composer-row">
                <input type="file" multiple hidden node_ref=file_ref data-testid="file-input"
                    on:change=move |_| picked(file_ref, false)/>
                <input type="file" multiple hidden prop:webkitdirectory=true node_ref=folder_ref data-testid="folder-input"
                    on:change=move |_| picked_folder(folder_ref, true)/>
                <button type="button" class="attach" data-testid="attach-file"
                    disabled=move || note.get().is_some()
                    title=move || lang.t("files.attach") aria-label=move || lang.t("files.attach")
                    on:click=move |_| if let Some(el) = file_ref.get_untracked() { el.click(); }>
                    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" fill="none" stroke="currentColor"
                        stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
                        <path d="M21.44 11.05l-9.19 9.19a6 6 0 0 1-8.49-8.49l9.19-9.19a4 4 0 0 1 5.66 5.66l-9.2 9.19a2 2 0 0 1-2.83-2.83l8.49-8.48"/>
                    </svg>
                </button>
                <button type="button" class="attach" data-testid="attach-folder"
                    disabled=move || note.get().is_some()
                    title=move || lang.t("files.attach_folder") aria-label=move || lang.t("files.attach_folder")
                    on:click=move |_| if let Some(el) = folder_ref.get_untracked() { el.click(); }>
                    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" fill="none" stroke="currentColor"
                        stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
                        <path d="M22 19a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h5l2 3h9a2 2 0 0 1 2 2z"/>
                    </svg>
                </button>
                <textarea
                    on:paste=on_paste
                    node_ref=composer_ref
                    data-testid="composer"
                    disabled=move || note.get().is_some()
                    rows=move || rows().to_string()
                    placeholder=placeholder
                    aria-label=move || lang.t("chat.composer.label")
                    prop:value=move || draft.get()
                    on:input=move |ev| {
                        if let Some(t) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlTextAreaElement>().ok()) {
                            draft.set(t.value());
                        }
                        read_caret();
                    }
                    on:keyup=move |ev: web_sys::KeyboardEvent| {
                        // Caret moves (arrows, Home, End) change the `@name` it is in.
                        if !matches!(ev.key().as_str(), "ArrowDown" | "ArrowUp" | "Tab" | "Enter" | "Escape") {
                            read_caret();
                        }
                    }
                    on:click=move |_| read_caret()
                    on:blur=move |_| caret.set(0)
                    on:keydown=on_keydown
                ></textarea>
                <button type="submit" class="primary send" data-testid="send-button"
                    disabled=move || sending.get() || note.get().is_some() || draft.with(|d| outgoing_text(d).is_none())>
                    {move || lang.t("chat.send")}
                </button>
            </div>
            {move || match note.get() {
                Some(key) => view! { <p class="composer-note" role="status" data-testid="composer-note">{lang.t(key)}</p> }.into_any(),
                None => view! { <p class="composer-hint">{lang.t("chat.composer.hint")}</p> }.into_any(),
            }}
        </form>
    }
}

/// A file being sent (or waiting to be) in the composer.
fn upload_row(lang: Lang, r: crate::upload::UploadRow) -> impl IntoView {
    let pct = crate::files_model::percent(r.sent, r.size);
    let size = crate::files_model::human_size(r.size);
    let active = r.active;
    let text = move || {
        if active {
            i18n::tf(
                lang.0.get(),
                "files.uploading",
                &[("percent", &pct.to_string()), ("size", &size)],
            )
        } else {
            lang.t("files.upload_queued")
        }
    };
    view! {
        <li class="upload" data-testid="upload-row" data-active=active.to_string()>
            <span class="file-badge kind-upload" aria-hidden="true">"↑"</span>
            <span class="file-name">{r.label}</span>
            <span class="file-sub">{text}</span>
            <div class="progress" class:waiting=!active role="progressbar" aria-valuemin="0"
                aria-valuemax="100" aria-valuenow=pct.to_string()>
                <div class="bar" style=format!("width: {pct}%")></div>
            </div>
        </li>
    }
}

/// The drag carries files (not text or a link dragged within the page).
fn carries_files(ev: &web_sys::DragEvent) -> bool {
    ev.data_transfer()
        .is_some_and(|dt| dt.types().includes(&"Files".into(), 0))
}
