//! Settings → received files (`files.*`): the size up to which a file downloads by
//! itself, in MB (0 = never). Saved on change like the desktop card's fields.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::json;

use crate::api::{Client, UiError};
use crate::app::Lang;
use crate::files_model::{bytes_of_mb, mb_text};

#[component]
pub fn FileSettingsCard() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    // The field's text; `None` until the settings arrived.
    let text = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<UiError>);
    let not_a_number = RwSignal::new(false);
    spawn_local({
        let client = client.clone();
        async move {
            match client.settings().await {
                Ok(s) => text.set(Some(mb_text(s.files.auto_download_max_bytes))),
                Err(e) => error.set(Some(e)),
            }
        }
    });
    let save = move |typed: String| {
        let Some(bytes) = bytes_of_mb(&typed) else {
            not_a_number.set(true);
            return;
        };
        not_a_number.set(false);
        let client = client.clone();
        spawn_local(async move {
            match client
                .update_settings(&json!({ "files": { "auto_download_max_bytes": bytes } }))
                .await
            {
                Ok(s) => {
                    text.set(Some(mb_text(s.files.auto_download_max_bytes)));
                    error.set(None);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="card file-settings" data-testid="file-settings">
            <h2>{move || lang.t("files.settings.title")}</h2>
            <label class="switch-row">
                <input type="number" min="0" step="any" class="mb" data-testid="auto-download-mb"
                    disabled=move || text.with(Option::is_none)
                    prop:value=move || text.get().unwrap_or_default()
                    on:change=move |ev| save(event_target_value(&ev))/>
                <span class="row-main">
                    <span class="row-title">{move || lang.t("files.settings.auto_download")}</span>
                    <span class="row-sub">{move || lang.t("files.settings.auto_download.hint")}</span>
                </span>
            </label>
            {move || not_a_number.get().then(|| view! {
                <p class="field-error" role="alert" data-testid="auto-download-error">{move || lang.t("files.settings.not_a_number")}</p>
            })}
            {move || error.get().map(|e| view! {
                <p class="field-error" role="alert" data-testid="auto-download-error">{e.message(lang.0.get())}</p>
            })}
        </section>
    }
}
