//! Ctrl+K: jump to any conversation by typing part of its name. Arrow keys move, Enter
//! opens, Escape closes. Lists the conversations (most recent first), then contacts
//! not yet written to.

use api_types::{ContactView, ConversationView};
use leptos::html;
use leptos::prelude::*;

use crate::app::Lang;
use crate::messenger::Chat;
use crate::rail::avatar;

#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub conversation_id: String,
    pub name: String,
    pub unread: u32,
    /// For the avatar's colour and presence dot.
    pub avatar_id: String,
    pub online: Option<bool>,
}

/// What matches `query` (case-insensitive, anywhere in the name), in list order.
pub fn choices(
    conversations: &[ConversationView],
    contacts: &[ContactView],
    query: &str,
) -> Vec<Choice> {
    let query = query.trim().to_lowercase();
    let matches = |name: &str| query.is_empty() || name.to_lowercase().contains(&query);
    let online = |peer: &Option<String>| {
        peer.as_ref()
            .and_then(|p| contacts.iter().find(|c| &c.peer_id == p).map(|c| c.online))
    };
    let mut out: Vec<Choice> = conversations
        .iter()
        .filter(|c| matches(&c.name))
        .map(|c| Choice {
            conversation_id: c.id.clone(),
            name: c.name.clone(),
            unread: c.unread,
            avatar_id: c
                .peer_id
                .as_ref()
                .map(|p| format!("lan:{p}"))
                .unwrap_or_else(|| c.id.clone()),
            online: online(&c.peer_id),
        })
        .collect();
    for c in contacts {
        let listed = out.iter().any(|o| o.conversation_id == c.conversation_id)
            || conversations.iter().any(|o| o.id == c.conversation_id);
        if !c.is_self && !c.blocked && !listed && matches(&c.display_name) {
            out.push(Choice {
                conversation_id: c.conversation_id.clone(),
                name: c.display_name.clone(),
                unread: 0,
                avatar_id: c.user_id.clone(),
                online: Some(c.online),
            });
        }
    }
    out
}

#[component]
pub fn ConversationSwitcher(open: RwSignal<bool>, on_pick: Callback<String>) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let dialog_ref = NodeRef::<html::Dialog>::new();
    let query = RwSignal::new(String::new());
    let selected = RwSignal::new(0usize);

    Effect::new(move |_| {
        if let Some(dialog) = dialog_ref.get() {
            if !dialog.open() {
                let _ = dialog.show_modal();
            }
        }
    });
    let list = Memo::new(move |_| {
        let q = query.get();
        chat.conversations.with(|conversations| {
            chat.contacts.with(|contacts| {
                let contacts = match contacts {
                    Some(Ok(list)) => list.as_slice(),
                    _ => &[],
                };
                choices(conversations, contacts, &q)
            })
        })
    });
    let pick = move |id: String| {
        open.set(false);
        on_pick.run(id);
    };
    let on_keydown = move |ev: web_sys::KeyboardEvent| {
        let n = list.with_untracked(|l| l.len());
        match ev.key().as_str() {
            "Escape" => {
                ev.prevent_default();
                open.set(false);
            }
            "ArrowDown" if n > 0 => {
                ev.prevent_default();
                selected.update(|s| *s = (*s + 1) % n);
            }
            "ArrowUp" if n > 0 => {
                ev.prevent_default();
                selected.update(|s| *s = (*s + n - 1) % n);
            }
            "Enter" => {
                ev.prevent_default();
                let chosen = list.with_untracked(|l| {
                    l.get(selected.get_untracked())
                        .map(|c| c.conversation_id.clone())
                });
                if let Some(id) = chosen {
                    pick(id);
                }
            }
            _ => {}
        }
    };

    view! {
        <dialog node_ref=dialog_ref class="modal switcher" data-testid="switcher"
            aria-label=move || lang.t("switcher.title")
            on:keydown=on_keydown on:close=move |_| open.set(false)>
            <div class="modal-form">
                <input type="search" class="filter" data-testid="switcher-filter" autofocus=true
                    autocomplete="off"
                    placeholder=move || lang.t("switcher.placeholder")
                    aria-label=move || lang.t("switcher.placeholder")
                    prop:value=move || query.get()
                    on:input=move |ev| { query.set(event_target_value(&ev)); selected.set(0); }/>
                <ul class="pick-list switcher-list" role="listbox" data-testid="switcher-list">
                    {move || list.get().into_iter().enumerate().map(|(i, c)| {
                        let id = c.conversation_id.clone();
                        let testid = format!("switch-{}", c.conversation_id);
                        view! {
                            <li role="option" aria-selected=move || (selected.get() == i).to_string()
                                class:selected=move || selected.get() == i
                                data-testid=testid
                                on:mousemove=move |_| selected.set(i)
                                on:click=move |_| pick(id.clone())>
                                {avatar(&c.avatar_id, &c.name, c.online.map(|on| api_types::Presence::shown(on, api_types::Presence::Online)))}
                                <span class="row-main"><span class="row-title">{c.name.clone()}</span></span>
                                {(c.unread > 0).then(|| view! {
                                    <span class="unread">{crate::chat_model::badge_text(c.unread)}</span>
                                })}
                            </li>
                        }
                    }).collect_view()}
                </ul>
                {move || list.with(|l| l.is_empty()).then(|| view! {
                    <p class="muted empty">{lang.t("switcher.none")}</p>
                })}
                <p class="muted small">{move || lang.t("switcher.hint")}</p>
            </div>
        </dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::ConversationKind;

    fn conversation(id: &str, name: &str) -> ConversationView {
        ConversationView {
            id: id.into(),
            kind: ConversationKind::Dm,
            name: name.into(),
            last_message: None,
            unread: 2,
            last_activity_at: 0,
            peer_id: None,
        }
    }

    fn contact(peer: &str, name: &str) -> ContactView {
        ContactView {
            user_id: format!("lan:{peer}"),
            peer_id: peer.into(),
            display_name: name.into(),
            online: true,
            address: None,
            last_seen_at: None,
            blocked: false,
            is_self: false,
            presence: api_types::Presence::Online,
            conversation_id: format!("dm:lan:{peer}"),
        }
    }

    #[test]
    fn filters_by_name_and_adds_contacts_without_a_conversation() {
        let conversations = [
            conversation("dm:lan:A", "Alice"),
            conversation("group:G", "Team"),
        ];
        let contacts = [
            contact("A", "Alice"),
            contact("B", "Bob"),
            contact("C", "Carol"),
        ];
        let all = choices(&conversations, &contacts, "");
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Alice", "Team", "Bob", "Carol"]);
        let some = choices(&conversations, &contacts, " a ");
        let names: Vec<&str> = some.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Alice", "Team", "Carol"]);
    }
}
