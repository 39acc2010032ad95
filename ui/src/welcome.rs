//! The first-start welcome: a display name (offered from the system account), the
//! office's shared secret or an explicit open LAN, and the LAN mesh turned on, so a
//! newcomer sees colleagues within a minute. Shown while `ui.welcome_done` is false;
//! an administrator's preseed file fills in (or skips) the same answers.

use api_types::SettingsView;
use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::json;

use crate::api::{Client, UiError};
use crate::app::{Lang, PeerChanges};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Secret,
    Open,
}

/// How the welcome's user joins the office's chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joining<'a> {
    /// With this secret (typed, pasted or generated).
    Secret(&'a str),
    /// With the secret an administrator preseeded (never shown here).
    KeepSecret,
    /// The explicit open LAN.
    Open,
}

/// The patch the welcome saves.
pub fn answers(name: &str, joining: Joining<'_>) -> serde_json::Value {
    let mut patch = json!({
        "lan_mesh": {
            "display_name": name.trim(),
            "enabled": true,
            "open_lan": joining == Joining::Open,
        },
        "ui": { "welcome_done": true },
    });
    match joining {
        Joining::Secret(secret) => patch["lan_mesh"]["shared_secret"] = json!(secret),
        Joining::Open => patch["lan_mesh"]["shared_secret"] = json!(""),
        Joining::KeepSecret => {}
    }
    patch
}

/// Shown over the app until answered or put off.
#[component]
pub fn Welcome(
    settings: SettingsView,
    suggested_name: String,
    done: RwSignal<bool>,
) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let changes = expect_context::<PeerChanges>();
    let dialog_ref = NodeRef::<html::Dialog>::new();
    let preset_name = if settings.lan_mesh.display_name.is_empty() {
        suggested_name
    } else {
        settings.lan_mesh.display_name.clone()
    };
    let name = RwSignal::new(preset_name);
    // The node never shows a secret: an administrator's preseeded one is kept when the
    // field stays empty.
    let secret = RwSignal::new(String::new());
    let preseeded_secret = settings.lan_mesh.secret_set;
    // An admin who preseeded the open LAN (or an empty secret with the mesh on) chose it.
    let access = RwSignal::new(if settings.lan_mesh.open_lan {
        Access::Open
    } else {
        Access::Secret
    });
    let show_secret = RwSignal::new(false);
    let error = RwSignal::new(None::<UiError>);
    let missing_secret = RwSignal::new(false);
    let busy = RwSignal::new(false);

    Effect::new(move |_| {
        if let Some(dialog) = dialog_ref.get() {
            if !dialog.open() {
                let _ = dialog.show_modal();
            }
        }
    });

    let save = {
        let client = client.clone();
        move |patch: serde_json::Value| {
            let client = client.clone();
            busy.set(true);
            spawn_local(async move {
                match client.update_settings(&patch).await {
                    Ok(_) => {
                        done.set(true);
                        changes.bump();
                    }
                    Err(e) => error.set(Some(e)),
                }
                busy.set(false);
            });
        }
    };
    let submit = {
        let save = save.clone();
        move || {
            if busy.get_untracked() {
                return;
            }
            let secret_text = secret.get_untracked();
            let joining = match access.get_untracked() {
                Access::Open => Joining::Open,
                Access::Secret if secret_text.is_empty() && preseeded_secret => Joining::KeepSecret,
                Access::Secret if secret_text.is_empty() => {
                    missing_secret.set(true);
                    return;
                }
                Access::Secret => Joining::Secret(&secret_text),
            };
            save(answers(&name.get_untracked(), joining));
        }
    };
    let later = move || save(json!({ "ui": { "welcome_done": true } }));
    // The first computer of an office makes the secret the others will type.
    let generate = {
        let client = client.clone();
        move || {
            let client = client.clone();
            spawn_local(async move {
                match client.generate_secret().await {
                    Ok(generated) => {
                        secret.set(generated);
                        access.set(Access::Secret);
                        missing_secret.set(false);
                        show_secret.set(true);
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        }
    };
    let later_key = later.clone();

    view! {
        <dialog node_ref=dialog_ref class="modal welcome" data-testid="welcome-dialog"
            aria-labelledby="welcome-heading"
            on:keydown=move |ev: web_sys::KeyboardEvent| if ev.key() == "Escape" {
                ev.prevent_default();
                later_key();
            }>
            <form class="modal-form" on:submit={
                let submit = submit.clone();
                move |ev| { ev.prevent_default(); submit(); }
            }>
                <header class="modal-head">
                    <h2 id="welcome-heading">{move || lang.t("welcome.title")}</h2>
                </header>
                <p class="muted">{move || lang.t("welcome.intro")}</p>
                <div class="field">
                    <label for="welcome-name">{move || lang.t("welcome.name")}</label>
                    <input type="text" id="welcome-name" data-testid="welcome-name" autofocus=true
                        autocomplete="name" maxlength="64"
                        prop:value=move || name.get()
                        on:input=move |ev| name.set(event_target_value(&ev))/>
                </div>
                <fieldset class="field access">
                    <legend>{move || lang.t("welcome.access")}</legend>
                    <label class="choice">
                        <input type="radio" name="access" data-testid="welcome-secret-choice"
                            prop:checked=move || access.get() == Access::Secret
                            on:change=move |_| access.set(Access::Secret)/>
                        {move || lang.t("welcome.access.secret")}
                    </label>
                    <input type=move || if show_secret.get() { "text" } else { "password" }
                        data-testid="welcome-secret" autocomplete="off" spellcheck="false"
                        aria-label=move || lang.t("welcome.secret")
                        placeholder=move || lang.t("welcome.secret")
                        disabled=move || access.get() == Access::Open
                        aria-invalid=move || missing_secret.get().to_string()
                        prop:value=move || secret.get()
                        on:input=move |ev| { secret.set(event_target_value(&ev)); missing_secret.set(false); }/>
                    {preseeded_secret.then(|| view! {
                        <p class="muted small" data-testid="welcome-secret-kept">{move || lang.t("welcome.secret_kept")}</p>
                    })}
                    <button type="button" class="link" data-testid="welcome-generate"
                        disabled=move || access.get() == Access::Open
                        on:click=move |_| generate()>
                        {move || lang.t("welcome.generate")}
                    </button>
                    {move || missing_secret.get().then(|| view! {
                        <p class="field-error" role="alert" data-testid="welcome-secret-missing">{lang.t("welcome.secret_missing")}</p>
                    })}
                    <label class="choice">
                        <input type="radio" name="access" data-testid="welcome-open-choice"
                            prop:checked=move || access.get() == Access::Open
                            on:change=move |_| access.set(Access::Open)/>
                        {move || lang.t("welcome.access.open")}
                    </label>
                    <p class="muted small">{move || lang.t("welcome.access.open_hint")}</p>
                </fieldset>
                {move || error.get().map(|e| view! {
                    <p class="field-error" role="alert" data-testid="welcome-error">{e.message(lang.0.get())}</p>
                })}
                <footer class="modal-actions">
                    <button type="button" data-testid="welcome-later" on:click=move |_| later()>
                        {move || lang.t("welcome.later")}
                    </button>
                    <button type="submit" class="primary" data-testid="welcome-start" disabled=move || busy.get()>
                        {move || lang.t("welcome.start")}
                    </button>
                </footer>
            </form>
        </dialog>
    }
}
