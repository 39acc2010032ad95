//! Pending group invitations (a node with `auto_accept_group_sync` off), at the top of
//! the rail's Groups section: who invited, Accept / Decline. Live from the events
//! `group.invitation` and `group.invitation_closed`; nothing shows while there are none.

use api_types::GroupInvitationView;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::UiError;
use crate::app::Lang;
use crate::group_model;
use crate::group_state::Groups;
use crate::messenger::Chat;

#[component]
pub fn Invitations() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let groups = expect_context::<Groups>();
    move || {
        let list = groups.invitations.get();
        let error = groups.invitations_error.get();
        if list.is_empty() && error.is_none() {
            return None;
        }
        Some(view! {
            <div class="invitations" data-testid="invitations" role="region" aria-labelledby="invitations-heading">
                <h3 id="invitations-heading">
                    {move || i18n::tf(lang.0.get(), "group.invitations.heading", &[("count", &groups.invitations.with(Vec::len).to_string())])}
                </h3>
                {error.map(|e| view! { <p class="error small">{e.message(lang.0.get())}</p> })}
                <ul class="list">
                    {list.into_iter().map(invitation_row).collect_view()}
                </ul>
            </div>
        })
    }
}

fn invitation_row(invitation: GroupInvitationView) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let groups = expect_context::<Groups>();
    let chat = expect_context::<Chat>();
    let group_id = invitation.group.id.clone();
    let error = RwSignal::new(None::<UiError>);
    let busy = RwSignal::new(false);
    let answer = {
        let group_id = group_id.clone();
        move |accept: bool| {
            if busy.get_untracked() {
                return;
            }
            busy.set(true);
            let id = group_id.clone();
            spawn_local(async move {
                match groups.client().answer_invitation(&id, accept).await {
                    Ok(group) => {
                        groups
                            .invitations
                            .update(|list| group_model::close_invitation(list, &id));
                        if let Some(group) = group {
                            groups.apply(group, &chat);
                        }
                    }
                    Err(e) => error.set(Some(e)),
                }
                busy.set(false);
            });
        }
    };
    let accept = answer.clone();
    let decline = answer;
    let members = invitation.group.members.len().to_string();
    let from = invitation.from_name.clone();
    view! {
        <li class="invitation" data-testid=format!("invitation-{group_id}")>
            <div class="row-main">
                <span class="row-title">{invitation.group.name.clone()}</span>
                <span class="row-sub">
                    {move || i18n::tf(lang.0.get(), "group.invitations.from", &[("name", &from), ("count", &members)])}
                </span>
            </div>
            <div class="inline-actions">
                <button type="button" class="primary small" data-testid=format!("accept-{group_id}")
                    disabled=move || busy.get() on:click=move |_| accept(true)>{move || lang.t("group.invitations.accept")}</button>
                <button type="button" class="small" data-testid=format!("decline-{group_id}")
                    disabled=move || busy.get() on:click=move |_| decline(false)>{move || lang.t("group.invitations.decline")}</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error small" role="alert">{e.message(lang.0.get())}</p> })}
        </li>
    }
}
