//! The "New group" dialog: a name, an optional announcement and members picked among
//! the contacts (a filter and checkboxes). A native modal `<dialog>` keeps the focus
//! inside and the rest of the page inert; Enter creates, Escape closes. The node
//! validates: its 400 is shown at the field it names. Created, the group opens.

use std::collections::BTreeSet;

use api_types::CreateGroup;
use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::api::UiError;
use crate::app::Lang;
use crate::chat_model::{composer_key, ComposerKey};
use crate::group_model::{self, form_field, FormField};
use crate::group_state::Groups;
use crate::messenger::Chat;
use crate::rail::avatar;

/// The node's complaint about one field of a form (a `400` naming it), shown next to
/// that field and taken back as soon as the user edits it. Shared by the create dialog
/// and the info panel.
#[derive(Clone, Copy)]
pub struct FieldErrors {
    pub error: RwSignal<Option<UiError>>,
    pub lang: Lang,
}

impl FieldErrors {
    pub fn edited(self, which: FormField) {
        let about_it = self
            .error
            .with_untracked(|e| e.as_ref().is_some_and(|e| form_field(e.field()) == which));
        if about_it {
            self.error.set(None);
        }
    }

    pub fn view(self, which: FormField, testid: &'static str) -> impl Fn() -> Option<AnyView> {
        move || {
            self.error
                .get()
                .filter(|e| form_field(e.field()) == which)
                .map(|e| {
                    view! {
                        <p class="field-error" role="alert" data-testid=testid>{e.message(self.lang.0.get())}</p>
                    }
                    .into_any()
                })
        }
    }
}

#[component]
pub fn CreateGroupDialog() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let groups = expect_context::<Groups>();
    let dialog_ref = NodeRef::<html::Dialog>::new();
    let name = RwSignal::new(String::new());
    let announcement = RwSignal::new(String::new());
    let filter = RwSignal::new(String::new());
    let picked = RwSignal::new(BTreeSet::<String>::new());
    let error = RwSignal::new(None::<UiError>);
    let busy = RwSignal::new(false);

    Effect::new(move |_| {
        if let Some(dialog) = dialog_ref.get() {
            if !dialog.open() {
                let _ = dialog.show_modal();
            }
        }
    });

    // Closing hands the focus back to the button that opened the dialog.
    let close = move || {
        groups.creating.set(false);
        request_animation_frame(|| focus_testid("new-group"));
    };

    let submit = move || {
        if busy.get_untracked() {
            return;
        }
        let text = announcement.get_untracked();
        let body = CreateGroup {
            name: name.get_untracked().trim().to_string(),
            members: picked.get_untracked().into_iter().collect(),
            announcement: (!text.trim().is_empty()).then(|| text.trim().to_string()),
        };
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match groups.client().create_group(&body).await {
                Ok(group) => {
                    let conversation = group.conversation_id.clone();
                    groups.apply(group, &chat);
                    groups.creating.set(false);
                    chat.open(&conversation);
                }
                Err(e) => {
                    let field = form_field(e.field());
                    error.set(Some(e));
                    focus_testid(match field {
                        FormField::Name | FormField::Other => "group-name",
                        FormField::Announcement => "group-announcement",
                        FormField::Members => "group-member-filter",
                    });
                }
            }
            busy.set(false);
        });
    };

    let on_keydown = move |ev: web_sys::KeyboardEvent| {
        if ev.key() == "Escape" {
            ev.prevent_default();
            close();
            return;
        }
        // Enter creates from any field (Shift+Enter is a newline in the announcement);
        // on a button, Enter is that button's own click.
        let on_button = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .is_some_and(|e| e.tag_name() == "BUTTON");
        let composing = ev.is_composing() || ev.key_code() == 229;
        if !on_button && composer_key(&ev.key(), ev.shift_key(), composing) == ComposerKey::Send {
            ev.prevent_default();
            submit();
        }
    };

    let fields = FieldErrors { error, lang };
    let edited = move |which: FormField| fields.edited(which);
    let field_error = move |which: FormField, testid: &'static str| fields.view(which, testid);

    let candidates = move || {
        chat.contacts.with(|c| match c {
            Some(Ok(list)) => group_model::member_candidates(list, &BTreeSet::new(), &filter.get()),
            _ => Vec::new(),
        })
    };
    let no_contacts = move || {
        chat.contacts.with(|c| match c {
            Some(Ok(list)) => !list.iter().any(|c| !c.is_self && !c.blocked),
            _ => true,
        })
    };

    view! {
        <dialog
            node_ref=dialog_ref
            class="modal"
            data-testid="create-group-dialog"
            aria-labelledby="create-group-heading"
            on:keydown=on_keydown
            on:close=move |_| close()
        >
            <form class="modal-form" on:submit=move |ev| { ev.prevent_default(); submit(); }>
                <header class="modal-head">
                    <h2 id="create-group-heading">{move || lang.t("group.create.title")}</h2>
                    <button type="button" class="link close" data-testid="create-group-close"
                        aria-label=move || lang.t("group.close")
                        on:click=move |_| close()>"×"</button>
                </header>
                <div class="field">
                    <label for="group-name">{move || lang.t("group.field.name")}</label>
                    <input type="text" id="group-name" data-testid="group-name" autofocus=true
                        autocomplete="off" maxlength="128"
                        placeholder=move || lang.t("group.field.name_placeholder")
                        aria-invalid=move || error.with(|e| e.as_ref().is_some_and(|e| form_field(e.field()) == FormField::Name)).to_string()
                        prop:value=move || name.get()
                        on:input=move |ev| { name.set(event_target_value(&ev)); edited(FormField::Name); }/>
                    {field_error(FormField::Name, "group-error-name")}
                </div>
                <div class="field">
                    <label for="group-announcement">{move || lang.t("group.field.announcement")}</label>
                    <textarea id="group-announcement" data-testid="group-announcement" rows="2"
                        placeholder=move || lang.t("group.field.announcement_placeholder")
                        prop:value=move || announcement.get()
                        on:input=move |ev| { announcement.set(event_target_value(&ev)); edited(FormField::Announcement); }></textarea>
                    {field_error(FormField::Announcement, "group-error-announcement")}
                </div>
                <fieldset class="field picker">
                    <legend>
                        {move || lang.t("group.field.members")}
                        <span class="muted picked-count" data-testid="picked-count">
                            {move || i18n::tf(lang.0.get(), "group.picked", &[("count", &picked.with(|p| p.len()).to_string())])}
                        </span>
                    </legend>
                    <input type="search" class="filter" data-testid="group-member-filter" id="group-member-filter"
                        autocomplete="off"
                        placeholder=move || lang.t("group.field.member_filter")
                        aria-label=move || lang.t("group.field.member_filter")
                        prop:value=move || filter.get()
                        on:input=move |ev| filter.set(event_target_value(&ev))/>
                    <MemberPicker candidates=Signal::derive(candidates) picked=picked/>
                    {move || {
                        let key = if no_contacts() { "group.pick.no_contacts" } else { "group.pick.no_match" };
                        candidates().is_empty().then(|| view! { <p class="muted empty">{lang.t(key)}</p> })
                    }}
                    {field_error(FormField::Members, "group-error-members")}
                </fieldset>
                {field_error(FormField::Other, "group-error")}
                <footer class="modal-actions">
                    <span class="muted small">{move || lang.t("group.create.hint")}</span>
                    <button type="button" data-testid="create-group-cancel" on:click=move |_| close()>
                        {move || lang.t("group.cancel")}
                    </button>
                    <button type="submit" class="primary" data-testid="create-group-submit" disabled=move || busy.get()>
                        {move || lang.t("group.create.submit")}
                    </button>
                </footer>
            </form>
        </dialog>
    }
}

/// Checkboxes for contacts: one row each, with presence. Used by the dialog and the
/// info panel's "Add members".
#[component]
pub fn MemberPicker(
    candidates: Signal<Vec<api_types::ContactView>>,
    picked: RwSignal<BTreeSet<String>>,
) -> impl IntoView {
    let lang = expect_context::<Lang>();
    view! {
        <ul class="pick-list" data-testid="member-picker">
            <For each=move || candidates.get() key=|c| (c.peer_id.clone(), c.online, c.display_name.clone()) let:c>
                {
                    let peer = c.peer_id.clone();
                    let checked = {
                        let peer = peer.clone();
                        move || picked.with(|p| p.contains(&peer))
                    };
                    let sub = move || lang.t(if c.online { "peers.online" } else { "peers.offline" });
                    view! {
                        <li>
                            <label class="pick" class:offline=!c.online>
                                <input type="checkbox" data-testid=format!("pick-{peer}")
                                    prop:checked=checked
                                    on:change={
                                        let peer = peer.clone();
                                        move |_| picked.update(|p| group_model::toggle_pick(p, &peer))
                                    }/>
                                {avatar(&c.user_id, &c.display_name, Some(api_types::Presence::shown(c.online, c.presence)))}
                                <span class="row-main">
                                    <span class="row-title">{c.display_name.clone()}</span>
                                    <span class="row-sub">{sub}</span>
                                </span>
                            </label>
                        </li>
                    }
                }
            </For>
        </ul>
    }
}

/// Moves the focus to the element with this `data-testid` (ids double as hooks for
/// keyboard flow: the opener of a dialog, the field an error names).
pub fn focus_testid(testid: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| {
            d.query_selector(&format!("[data-testid={testid}]"))
                .ok()
                .flatten()
        })
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = el.focus();
    }
}
