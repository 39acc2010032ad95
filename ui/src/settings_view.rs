//! Settings → LAN: the mesh switch, name, ports, intervals, subnet lists, manual peer
//! addresses, the shared secret (never shown: typed or generated to replace it) or the
//! explicit open LAN, and the blocked nodes. Saving applies live; a value the node
//! rejects is shown next to its field.

use api_types::ApiErrorBody;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{Client, UiError};
use crate::app::{Lang, PeerChanges};
use crate::settings_form::{field_key, with_item, LanDraft};

type Draft = RwSignal<Option<LanDraft>>;
type Rejection = RwSignal<Option<ApiErrorBody>>;

#[derive(Clone, PartialEq)]
enum SaveState {
    Idle,
    Saving,
    Saved,
    Failed(UiError),
}

#[component]
pub fn LanSettings() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let changes = expect_context::<PeerChanges>();
    let draft: Draft = RwSignal::new(None);
    let rejected: Rejection = RwSignal::new(None);
    let save_state = RwSignal::new(SaveState::Idle);
    let show_secret = RwSignal::new(false);

    spawn_local({
        let client = client.clone();
        async move {
            match client.settings().await {
                Ok(s) => draft.set(Some(LanDraft::from_settings(&s.lan_mesh))),
                Err(e) => save_state.set(SaveState::Failed(e)),
            }
        }
    });
    // The blocked list follows the node (blocks come from the peers table too) without
    // touching the unsaved form.
    let blocked = LocalResource::new({
        let client = client.clone();
        move || {
            changes.0.track();
            let client = client.clone();
            async move { client.settings().await.map(|s| s.lan_mesh.blocked_peers) }
        }
    });

    let save = {
        let client = client.clone();
        move || {
            let Some(d) = draft.get_untracked() else {
                return;
            };
            let client = client.clone();
            save_state.set(SaveState::Saving);
            spawn_local(async move {
                match client.update_settings(&d.to_patch()).await {
                    Ok(s) => {
                        draft.set(Some(LanDraft::from_settings(&s.lan_mesh)));
                        rejected.set(None);
                        save_state.set(SaveState::Saved);
                        changes.bump();
                    }
                    Err(UiError::Api(body)) if body.field.is_some() => {
                        rejected.set(Some(body));
                        save_state.set(SaveState::Idle);
                    }
                    Err(e) => save_state.set(SaveState::Failed(e)),
                }
            });
        }
    };
    // The node generates the secret (its CSPRNG); shown in clear so it can be read
    // aloud or copied, and saved only with the form.
    let generate = {
        let client = client.clone();
        move || {
            let client = client.clone();
            spawn_local(async move {
                match client.generate_secret().await {
                    Ok(secret) => {
                        draft.update(|d| {
                            if let Some(d) = d {
                                d.shared_secret = secret;
                                d.open_lan = false;
                            }
                        });
                        show_secret.set(true);
                        rejected.set(None);
                    }
                    Err(e) => save_state.set(SaveState::Failed(e)),
                }
            });
        }
    };
    let unblock = move |peer_id: String| {
        let client = client.clone();
        spawn_local(async move {
            let _ = client.set_blocked(&peer_id, false).await;
            changes.bump();
        });
    };

    view! {
        <section class="card" aria-labelledby="settings-heading">
            <h2 id="settings-heading">{move || lang.t("settings.heading")}</h2>
            <form class="settings" on:submit=move |ev| { ev.prevent_default(); save(); }>
                <label class="switch">
                    <input
                        type="checkbox"
                        data-testid="input-enabled"
                        prop:checked=move || draft.with(|d| d.as_ref().is_some_and(|d| d.enabled))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            draft.update(|d| if let Some(d) = d { d.enabled = on });
                        }
                    />
                    <span>{move || lang.t("settings.enabled")}</span>
                </label>
                {text_field(lang, draft, rejected, "display_name", "text", |d| d.display_name.clone(), |d, v| d.display_name = v)}
                <div class="row">
                    {text_field(lang, draft, rejected, "listen_port", "number", |d| d.listen_port.clone(), |d, v| d.listen_port = v)}
                    {text_field(lang, draft, rejected, "discovery_port", "number", |d| d.discovery_port.clone(), |d, v| d.discovery_port = v)}
                </div>
                <div class="row">
                    {text_field(lang, draft, rejected, "heartbeat_interval_sec", "number", |d| d.heartbeat_interval_sec.clone(), |d, v| d.heartbeat_interval_sec = v)}
                    {text_field(lang, draft, rejected, "peer_ttl_sec", "number", |d| d.peer_ttl_sec.clone(), |d, v| d.peer_ttl_sec = v)}
                </div>
                {list_field(lang, draft, rejected, "allowed_subnets", "settings.subnet.placeholder", |d| &d.allowed_subnets, |d, v| d.allowed_subnets = v)}
                <p class="hint">{move || lang.t("settings.allowed_subnets.hint")}</p>
                {list_field(lang, draft, rejected, "blocked_subnets", "settings.subnet.placeholder", |d| &d.blocked_subnets, |d, v| d.blocked_subnets = v)}
                {list_field(lang, draft, rejected, "peer_addresses", "settings.address.placeholder", |d| &d.peer_addresses, |d, v| d.peer_addresses = v)}
                <div class="field" data-testid="secret-field">
                    <label for="secret">{move || lang.t("settings.shared_secret")}</label>
                    <div class="add-row">
                        <input
                            id="secret"
                            data-testid="input-shared_secret"
                            autocomplete="off"
                            spellcheck="false"
                            type=move || if show_secret.get() { "text" } else { "password" }
                            disabled=move || draft.with(|d| d.as_ref().is_some_and(|d| d.open_lan))
                            placeholder=move || lang.t(if draft.with(|d| d.as_ref().is_some_and(|d| d.secret_set)) {
                                "settings.secret.keep_placeholder"
                            } else {
                                "settings.secret.new_placeholder"
                            })
                            prop:value=move || draft.with(|d| d.as_ref().map(|d| d.shared_secret.clone()).unwrap_or_default())
                            on:input=move |ev| {
                                let v = event_target_value(&ev);
                                draft.update(|d| if let Some(d) = d { d.shared_secret = v });
                            }
                        />
                        <button type="button" data-testid="generate-secret"
                            disabled=move || draft.with(|d| d.as_ref().is_some_and(|d| d.open_lan))
                            on:click=move |_| generate()>
                            {move || lang.t("settings.secret.generate")}
                        </button>
                        <button type="button" on:click=move |_| show_secret.update(|s| *s = !*s)>
                            {move || lang.t(if show_secret.get() { "settings.secret.hide" } else { "settings.secret.show" })}
                        </button>
                    </div>
                    <p class="hint" data-testid="secret-hint">
                        {move || lang.t(if draft.with(|d| d.as_ref().is_some_and(|d| d.secret_set)) {
                            "settings.secret.set_hint"
                        } else {
                            "settings.secret.new_hint"
                        })}
                    </p>
                    {move || draft.with(|d| d.as_ref().is_some_and(|d| d.enabled && d.needs_access_choice())).then(|| view! {
                        <p class="hint" data-testid="secret-needed">{lang.t("welcome.secret_missing")}</p>
                    })}
                    {field_error(lang, rejected, "shared_secret")}
                    <label class="switch">
                        <input
                            type="checkbox"
                            data-testid="input-open_lan"
                            prop:checked=move || draft.with(|d| d.as_ref().is_some_and(|d| d.open_lan))
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                draft.update(|d| if let Some(d) = d {
                                    d.open_lan = on;
                                    if on {
                                        d.shared_secret.clear();
                                    }
                                });
                            }
                        />
                        <span>{move || lang.t("settings.open_lan")}</span>
                    </label>
                    <p class="hint">{move || lang.t("settings.open_lan.hint")}</p>
                    {field_error(lang, rejected, "open_lan")}
                    {move || draft.with(|d| d.as_ref().is_some_and(|d| d.open_lan)).then(|| view! {
                        <p class="warning" role="alert" data-testid="secret-warning">{lang.t("settings.secret.empty_warning")}</p>
                    })}
                </div>
                <div class="actions">
                    <button type="submit" class="primary" data-testid="save-settings" disabled=move || save_state.get() == SaveState::Saving>
                        {move || lang.t("settings.save")}
                    </button>
                    <span data-testid="save-status" role="status">
                        {move || match save_state.get() {
                            SaveState::Saved => lang.t("settings.saved"),
                            SaveState::Failed(e) => e.message(lang.0.get()),
                            _ => String::new(),
                        }}
                    </span>
                </div>
            </form>
            <h3>{move || lang.t("settings.blocked_peers")}</h3>
            {move || match blocked.get() {
                Some(Ok(list)) if !list.is_empty() => view! {
                    <ul class="blocked" data-testid="blocked-peers">
                        {list.into_iter().map(|id| {
                            let unblock = unblock.clone();
                            let target = id.to_string();
                            view! {
                                <li>
                                    <span class="mono small">{id.to_string()}</span>
                                    <button type="button" data-testid=format!("unblock-{id}") on:click=move |_| unblock(target.clone())>
                                        {lang.t("settings.unblock")}
                                    </button>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }.into_any(),
                _ => view! { <p class="muted">{lang.t("settings.blocked_peers.empty")}</p> }.into_any(),
            }}
        </section>
    }
}

fn field_error(lang: Lang, rejected: Rejection, key: &'static str) -> impl IntoView {
    move || {
        rejected
            .get()
            .filter(|e| e.field.as_deref().map(field_key) == Some(key))
            .map(|e| {
                view! {
                    <p class="field-error" role="alert" data-testid=format!("error-{key}")>
                        {UiError::Api(e).message(lang.0.get())}
                    </p>
                }
            })
    }
}

fn label_key(key: &str) -> String {
    match key {
        "heartbeat_interval_sec" => "settings.heartbeat".into(),
        "peer_ttl_sec" => "settings.ttl".into(),
        other => format!("settings.{other}"),
    }
}

fn text_field(
    lang: Lang,
    draft: Draft,
    rejected: Rejection,
    key: &'static str,
    kind: &'static str,
    get: fn(&LanDraft) -> String,
    set: fn(&mut LanDraft, String),
) -> impl IntoView {
    let id = format!("field-{key}");
    view! {
        <div class="field">
            <label for=id.clone()>{move || lang.t(&label_key(key))}</label>
            <input
                id=id
                type=kind
                data-testid=format!("input-{key}")
                placeholder=move || if key == "display_name" { lang.t("settings.display_name.placeholder") } else { String::new() }
                prop:value=move || draft.with(|d| d.as_ref().map(get).unwrap_or_default())
                on:input=move |ev| {
                    let v = event_target_value(&ev);
                    draft.update(|d| if let Some(d) = d { set(d, v) });
                }
            />
            {field_error(lang, rejected, key)}
        </div>
    }
}

fn list_field(
    lang: Lang,
    draft: Draft,
    rejected: Rejection,
    key: &'static str,
    placeholder: &'static str,
    get: fn(&LanDraft) -> &Vec<String>,
    set: fn(&mut LanDraft, Vec<String>),
) -> impl IntoView {
    let typed = RwSignal::new(String::new());
    let add = move || {
        let item = typed.get_untracked();
        draft.update(|d| {
            if let Some(d) = d {
                let next = with_item(get(d), &item);
                set(d, next);
            }
        });
        typed.set(String::new());
    };
    let items = move || draft.with(|d| d.as_ref().map(|d| get(d).clone()).unwrap_or_default());
    view! {
        <div class="field">
            <label for=format!("add-{key}")>{move || lang.t(&label_key(key))}</label>
            <ul class="chips" data-testid=format!("list-{key}")>
                {move || items().into_iter().map(|item| {
                    let gone = item.clone();
                    let label = i18n::tf(lang.0.get(), "settings.remove", &[("item", &item)]);
                    view! {
                        <li class="chip">
                            <span class="mono">{item.clone()}</span>
                            <button type="button" aria-label=label data-testid=format!("remove-{key}-{item}")
                                on:click=move |_| draft.update(|d| if let Some(d) = d {
                                    let next = get(d).iter().filter(|x| **x != gone).cloned().collect();
                                    set(d, next);
                                })>
                                "×"
                            </button>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <div class="add-row">
                <input
                    id=format!("add-{key}")
                    data-testid=format!("add-{key}")
                    placeholder=move || lang.t(placeholder)
                    prop:value=move || typed.get()
                    on:input=move |ev| typed.set(event_target_value(&ev))
                    on:keydown=move |ev: web_sys::KeyboardEvent| if ev.key() == "Enter" { ev.prevent_default(); add(); }
                />
                <button type="button" data-testid=format!("add-{key}-button") on:click=move |_| add()>
                    {move || lang.t("settings.add")}
                </button>
            </div>
            {field_error(lang, rejected, key)}
        </div>
    }
}
