//! The group info panel beside a group conversation: where this node stands, the name
//! and announcement (editable with `edit_info`), the members with presence and the
//! owner's badge (added and removed with `manage_members`), and leaving or dissolving
//! behind a confirmation. It offers exactly what `permissions` allows, so whatever it
//! sends the members accept; it follows `group.updated` live.

use std::collections::BTreeSet;

use api_types::UpdateGroup;
use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::UiError;
use crate::app::Lang;
use crate::group_dialog::{focus_testid, FieldErrors, MemberPicker};
use crate::group_model::{self, FormField, PanelActions, Standing};
use crate::group_state::Groups;
use crate::messenger::Chat;
use crate::rail::avatar;

/// What waits for the user's confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confirm {
    Leave,
    Dissolve,
}

#[component]
pub fn GroupInfo(conversation_id: String) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let groups = expect_context::<Groups>();
    let group_id = conversation_id
        .strip_prefix("group:")
        .unwrap_or(&conversation_id)
        .to_string();
    // Fresh presence when the panel opens; events keep it current afterwards.
    groups.refresh_one(group_id.clone());

    let group = Memo::new(move |_| groups.for_conversation(&conversation_id));
    let name = Memo::new(move |_| group.with(|g| g.as_ref().map(|g| g.name.clone())));
    let announcement = Memo::new(move |_| {
        group.with(|g| {
            g.as_ref()
                .map(|g| g.announcement.clone())
                .unwrap_or_default()
        })
    });
    let actions = Memo::new(move |_| {
        group.with(|g| {
            g.as_ref()
                .map(group_model::panel_actions)
                .unwrap_or_default()
        })
    });
    let standing = Memo::new(move |_| group.with(|g| g.as_ref().map(group_model::standing)));

    let error = RwSignal::new(None::<UiError>);
    let busy = RwSignal::new(false);
    let renaming = RwSignal::new(false);
    let name_draft = RwSignal::new(String::new());
    let editing_announcement = RwSignal::new(false);
    let announcement_draft = RwSignal::new(String::new());
    let adding = RwSignal::new(false);
    let add_filter = RwSignal::new(String::new());
    let add_picked = RwSignal::new(BTreeSet::<String>::new());
    let confirm = RwSignal::new(None::<Confirm>);

    // Every change goes through here: one request at a time, the answer applied at
    // once (its `group.updated` event follows and changes nothing more), errors kept
    // for the field they name. `done` runs on success.
    let run = {
        let group_id = group_id.clone();
        move |body: Change, done: Box<dyn FnOnce()>| {
            if busy.get_untracked() {
                return;
            }
            busy.set(true);
            error.set(None);
            let id = group_id.clone();
            spawn_local(async move {
                let client = groups.client();
                let answer = match body {
                    Change::Update(update) => client.update_group(&id, &update).await,
                    Change::Action(action) => client.group_action(&id, action).await,
                };
                match answer {
                    Ok(g) => {
                        groups.apply(g, &chat);
                        done();
                    }
                    Err(e) => error.set(Some(e)),
                }
                busy.set(false);
            });
        }
    };

    let fields = FieldErrors { error, lang };
    let edited = move |which: FormField| fields.edited(which);
    let field_error = move |which: FormField, testid: &'static str| fields.view(which, testid);

    let close = move || {
        groups.info_open.set(false);
        request_animation_frame(|| focus_testid("group-info-button"));
    };

    // --- name ---
    let name_input = NodeRef::<html::Input>::new();
    Effect::new(move |_| {
        if let Some(el) = name_input.get() {
            let _ = el.focus();
            el.select();
        }
    });
    let save_name = {
        let run = run.clone();
        move || {
            let update = UpdateGroup {
                name: Some(name_draft.get_untracked().trim().to_string()),
                ..UpdateGroup::default()
            };
            run(
                Change::Update(update),
                Box::new(move || {
                    renaming.set(false);
                    focus_testid("group-rename");
                }),
            );
        }
    };
    let name_section = move || {
        if renaming.get() {
            let save_name = save_name.clone();
            view! {
                <form class="inline-form" on:submit=move |ev| { ev.prevent_default(); save_name(); }>
                    <input type="text" node_ref=name_input data-testid="group-rename-input" maxlength="128"
                        aria-label=move || lang.t("group.field.name")
                        prop:value=move || name_draft.get()
                        on:input=move |ev| { name_draft.set(event_target_value(&ev)); edited(FormField::Name); }
                        on:keydown=move |ev: web_sys::KeyboardEvent| {
                            if ev.key() == "Escape" {
                                ev.prevent_default();
                                ev.stop_propagation();
                                renaming.set(false);
                                error.set(None);
                            }
                        }/>
                    <div class="inline-actions">
                        <button type="submit" class="primary" data-testid="group-rename-save" disabled=move || busy.get()>
                            {move || lang.t("group.save")}
                        </button>
                        <button type="button" on:click=move |_| { renaming.set(false); error.set(None); }>
                            {move || lang.t("group.cancel")}
                        </button>
                    </div>
                    {field_error(FormField::Name, "group-info-error-name")}
                </form>
            }
            .into_any()
        } else {
            view! {
                <div class="info-title-row">
                    <span class="info-name" data-testid="group-info-name">{move || name.get().unwrap_or_default()}</span>
                    {move || actions.get().rename.then(|| view! {
                        <button type="button" class="link" data-testid="group-rename"
                            on:click=move |_| {
                                name_draft.set(name.get_untracked().unwrap_or_default());
                                error.set(None);
                                renaming.set(true);
                            }>
                            {move || lang.t("group.rename")}
                        </button>
                    })}
                </div>
            }
            .into_any()
        }
    };

    // --- announcement ---
    let announcement_input = NodeRef::<html::Textarea>::new();
    Effect::new(move |_| {
        if let Some(el) = announcement_input.get() {
            let _ = el.focus();
        }
    });
    let save_announcement = {
        let run = run.clone();
        move || {
            let update = UpdateGroup {
                announcement: Some(announcement_draft.get_untracked().trim().to_string()),
                ..UpdateGroup::default()
            };
            run(
                Change::Update(update),
                Box::new(move || {
                    editing_announcement.set(false);
                    focus_testid("group-edit-announcement");
                }),
            );
        }
    };
    let announcement_section = move || {
        if editing_announcement.get() {
            let save = save_announcement.clone();
            view! {
                <form class="inline-form" on:submit=move |ev| { ev.prevent_default(); save(); }>
                    <textarea node_ref=announcement_input data-testid="group-announcement-input" rows="4"
                        aria-label=move || lang.t("group.field.announcement")
                        prop:value=move || announcement_draft.get()
                        on:input=move |ev| { announcement_draft.set(event_target_value(&ev)); edited(FormField::Announcement); }
                        on:keydown=move |ev: web_sys::KeyboardEvent| {
                            if ev.key() == "Escape" {
                                ev.prevent_default();
                                ev.stop_propagation();
                                editing_announcement.set(false);
                                error.set(None);
                            }
                        }></textarea>
                    <div class="inline-actions">
                        <button type="submit" class="primary" data-testid="group-announcement-save" disabled=move || busy.get()>
                            {move || lang.t("group.save")}
                        </button>
                        <button type="button" on:click=move |_| { editing_announcement.set(false); error.set(None); }>
                            {move || lang.t("group.cancel")}
                        </button>
                    </div>
                    {field_error(FormField::Announcement, "group-info-error-announcement")}
                </form>
            }
            .into_any()
        } else {
            view! {
                {move || {
                    let text = announcement.get();
                    if text.is_empty() {
                        view! { <p class="muted small" data-testid="group-info-announcement">{lang.t("group.announcement.none")}</p> }.into_any()
                    } else {
                        view! { <p class="info-announcement" data-testid="group-info-announcement">{text}</p> }.into_any()
                    }
                }}
                {move || actions.get().edit_announcement.then(|| view! {
                    <button type="button" class="link" data-testid="group-edit-announcement"
                        on:click=move |_| {
                            announcement_draft.set(announcement.get_untracked());
                            error.set(None);
                            editing_announcement.set(true);
                        }>
                        {move || lang.t("group.announcement.edit")}
                    </button>
                })}
            }
            .into_any()
        }
    };

    // --- members ---
    let members = Memo::new(move |_| {
        group.with(|g| {
            g.as_ref()
                .map(|g| group_model::sorted_members(&g.members))
                .unwrap_or_default()
        })
    });
    let remove_member = {
        let run = run.clone();
        move |peer_id: String| {
            let Some(list) = group.with_untracked(|g| {
                g.as_ref()
                    .map(|g| group_model::members_without(g, &peer_id))
            }) else {
                return;
            };
            let update = UpdateGroup {
                members: Some(list),
                ..UpdateGroup::default()
            };
            run(Change::Update(update), Box::new(|| {}));
        }
    };
    let add_members = {
        let run = run.clone();
        move || {
            let picked = add_picked.get_untracked();
            let Some(list) =
                group.with_untracked(|g| g.as_ref().map(|g| group_model::members_with(g, &picked)))
            else {
                return;
            };
            let update = UpdateGroup {
                members: Some(list),
                ..UpdateGroup::default()
            };
            run(
                Change::Update(update),
                Box::new(move || {
                    adding.set(false);
                    add_picked.set(BTreeSet::new());
                    add_filter.set(String::new());
                }),
            );
        }
    };
    let add_candidates = Signal::derive(move || {
        let exclude = group.with(|g| g.as_ref().map(group_model::member_ids).unwrap_or_default());
        chat.contacts.with(|c| match c {
            Some(Ok(list)) => group_model::member_candidates(list, &exclude, &add_filter.get()),
            _ => Vec::new(),
        })
    });
    let member_rows = move || {
        let l = lang.0.get();
        members
            .get()
            .into_iter()
            .map(|m| {
                let removable =
                    group.with(|g| g.as_ref().is_some_and(|g| group_model::can_remove(g, &m)));
                let remove = remove_member.clone();
                let peer = m.peer_id.clone();
                let name = if m.is_self {
                    i18n::tf(l, "chat.users.you", &[("name", &m.display_name)])
                } else {
                    m.display_name.clone()
                };
                let remove_label = i18n::tf(l, "group.member.remove", &[("name", &m.display_name)]);
                // The contact list follows presence live (peer events); the group's own
                // copy is as fresh as its last fetch.
                let presence = chat.contacts.with(|c| match c {
                    Some(Ok(list)) => list.iter().find(|c| c.peer_id == m.peer_id).map(|c| c.presence),
                    _ => None,
                }).unwrap_or_else(|| api_types::Presence::shown(m.online, m.presence));
                view! {
                    <li class="member" class:offline=!m.online data-testid=format!("member-{}", m.peer_id)
                        data-online=m.online.to_string() data-presence=presence.as_str()>
                        {avatar(&m.user_id, &m.display_name, Some(presence))}
                        <span class="row-main">
                            <span class="row-title">{name}</span>
                            <span class="row-sub">{i18n::t(l, crate::presence_picker::label_key(presence))}</span>
                        </span>
                        {m.is_owner.then(|| view! {
                            <span class="badge owner" data-testid="owner-badge">{i18n::t(l, "group.owner")}</span>
                        })}
                        {removable.then(|| view! {
                            <button type="button" class="link danger remove" data-testid=format!("remove-member-{peer}")
                                title=remove_label.clone() aria-label=remove_label
                                disabled=move || busy.get()
                                on:click=move |_| remove(peer.clone())>{i18n::t(l, "group.member.remove_short")}</button>
                        })}
                    </li>
                }
            })
            .collect_view()
    };

    // --- leave / dissolve ---
    let confirm_action = {
        let run = run.clone();
        move |what: Confirm| {
            let action = match what {
                Confirm::Leave => "leave",
                Confirm::Dissolve => "dissolve",
            };
            run(Change::Action(action), Box::new(move || confirm.set(None)));
        }
    };
    let danger_zone = move || {
        let a: PanelActions = actions.get();
        if !a.leave && !a.dissolve {
            return None;
        }
        let confirm_action = confirm_action.clone();
        Some(view! {
            <section class="info-section danger-zone">
                {move || match confirm.get() {
                    None => view! {
                        <div class="inline-actions">
                            {a.leave.then(|| view! {
                                <button type="button" class="danger" data-testid="group-leave"
                                    on:click=move |_| confirm.set(Some(Confirm::Leave))>{move || lang.t("group.leave")}</button>
                            })}
                            {a.dissolve.then(|| view! {
                                <button type="button" class="danger" data-testid="group-dissolve"
                                    on:click=move |_| confirm.set(Some(Confirm::Dissolve))>{move || lang.t("group.dissolve")}</button>
                            })}
                        </div>
                    }.into_any(),
                    Some(what) => {
                        let (question, yes) = match what {
                            Confirm::Leave => ("group.leave.confirm", "group.leave"),
                            Confirm::Dissolve => ("group.dissolve.confirm", "group.dissolve"),
                        };
                        let confirm_action = confirm_action.clone();
                        view! {
                            <div class="confirm" role="alertdialog" aria-labelledby="group-confirm-text" data-testid="group-confirm">
                                <p id="group-confirm-text">{move || i18n::tf(lang.0.get(), question, &[("name", &name.get().unwrap_or_default())])}</p>
                                <div class="inline-actions">
                                    <button type="button" class="danger solid" data-testid="group-confirm-yes"
                                        disabled=move || busy.get()
                                        on:click=move |_| confirm_action(what)>{move || lang.t(yes)}</button>
                                    <button type="button" data-testid="group-confirm-no" autofocus=true
                                        on:click=move |_| confirm.set(None)>{move || lang.t("group.cancel")}</button>
                                </div>
                            </div>
                        }.into_any()
                    }
                }}
            </section>
        })
    };

    let standing_note = move || {
        let key = match standing.get()? {
            Standing::Member => return None,
            Standing::NotMember => "group.note.not_member",
            Standing::Dissolved => "group.note.dissolved",
        };
        Some(
            view! { <p class="standing-note" role="status" data-testid="group-standing">{move || lang.t(key)}</p> },
        )
    };

    view! {
        <aside class="group-info" id="group-info" data-testid="group-info" aria-labelledby="group-info-heading"
            on:keydown=move |ev: web_sys::KeyboardEvent| {
                if ev.key() == "Escape" && !renaming.get_untracked() && !editing_announcement.get_untracked() {
                    ev.prevent_default();
                    close();
                }
            }>
            <header class="info-head">
                <h2 id="group-info-heading">{move || lang.t("group.info.title")}</h2>
                <button type="button" class="link close" data-testid="group-info-close"
                    aria-label=move || lang.t("group.close")
                    on:click=move |_| close()>"×"</button>
            </header>
            <div class="info-body">
                {move || group.with(|g| g.is_none()).then(|| view! { <p class="muted">{lang.t("status.loading")}</p> })}
                {standing_note}
                <section class="info-section">
                    <h3>{move || lang.t("group.field.name")}</h3>
                    {name_section}
                </section>
                <section class="info-section">
                    <h3>{move || lang.t("group.field.announcement")}</h3>
                    {announcement_section}
                </section>
                <section class="info-section">
                    <h3>
                        {move || {
                            let list = members.get();
                            i18n::tf(lang.0.get(), "group.members.heading", &[
                                ("count", &list.len().to_string()),
                                ("online", &group_model::online_count(&list).to_string()),
                            ])
                        }}
                    </h3>
                    <ul class="members" data-testid="group-members">{member_rows}</ul>
                    {field_error(FormField::Members, "group-info-error-members")}
                    {move || actions.get().add_members.then(|| {
                        let add_members = add_members.clone();
                        if adding.get() {
                            view! {
                                <div class="add-members" data-testid="group-add-panel">
                                    <input type="search" class="filter" data-testid="group-add-filter" autocomplete="off"
                                        placeholder=move || lang.t("group.field.member_filter")
                                        aria-label=move || lang.t("group.field.member_filter")
                                        prop:value=move || add_filter.get()
                                        on:input=move |ev| add_filter.set(event_target_value(&ev))/>
                                    <MemberPicker candidates=add_candidates picked=add_picked/>
                                    {move || add_candidates.with(|c| c.is_empty()).then(|| view! {
                                        <p class="muted small">{lang.t("group.pick.no_more")}</p>
                                    })}
                                    <div class="inline-actions">
                                        <button type="button" class="primary" data-testid="group-add-save"
                                            disabled=move || busy.get() || add_picked.with(|p| p.is_empty())
                                            on:click=move |_| add_members()>
                                            {move || i18n::tf(lang.0.get(), "group.members.add_count", &[("count", &add_picked.with(|p| p.len()).to_string())])}
                                        </button>
                                        <button type="button" on:click=move |_| { adding.set(false); add_picked.set(BTreeSet::new()); }>
                                            {move || lang.t("group.cancel")}
                                        </button>
                                    </div>
                                </div>
                            }.into_any()
                        } else {
                            view! {
                                <button type="button" class="link" data-testid="group-add-members"
                                    on:click=move |_| adding.set(true)>{move || lang.t("group.members.add")}</button>
                            }.into_any()
                        }
                    })}
                </section>
                {danger_zone}
                {field_error(FormField::Other, "group-info-error")}
            </div>
        </aside>
    }
}

/// A request the panel makes: a partial `PUT`, or `leave` / `dissolve`.
enum Change {
    Update(UpdateGroup),
    Action(&'static str),
}
