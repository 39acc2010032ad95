//! A message's files (issue 17): a row per file (type, name and folder, size, state,
//! progress with speed and time left while it downloads, Download / Retry / Cancel /
//! Save, and in the desktop window Open / Show in folder), an image's thumbnail
//! inline, and the full-size viewer. The page fetches a
//! file's content with the token (an `<img>` or a link cannot send it) and shows it
//! through an object URL, revoked once it is no longer shown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::{AttachmentView, FileState, MessageView};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::api::{js_error, Client, UiError};
use crate::app::Lang;
use crate::files_model::{
    action_of, display_path, duration_text, eta_secs, file_badge, file_kind, human_size,
    is_viewable_image, percent, sending_action, speed_text, state_name, FileAction, SendingAction,
};
use crate::messenger::Chat;

/// A saved file's object URL is revoked after this long (the browser has taken its
/// copy by then).
const SAVE_URL_LIFETIME: Duration = Duration::from_secs(60);

/// The image shown full size over the conversation, if any.
#[derive(Clone, Copy)]
pub struct Viewer(pub RwSignal<Option<AttachmentView>>);

/// The files of a message (nothing for a text message).
pub fn attachments_view(m: &MessageView) -> impl IntoView {
    (!m.attachments.is_empty()).then(|| {
        let rows = m
            .attachments
            .iter()
            .cloned()
            .map(|a| view! { <AttachmentRow attachment=a outgoing=m.outgoing/> })
            .collect_view();
        view! { <div class="attachments">{rows}</div> }
    })
}

#[component]
fn AttachmentRow(attachment: AttachmentView, outgoing: bool) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let viewer = use_context::<Viewer>();
    let a = StoredValue::new(attachment.clone());
    let status = Memo::new(move |_| a.with_value(|a| chat.file_status(a)));
    let action_error = RwSignal::new(None::<UiError>);
    let busy = RwSignal::new(false);
    let file_id = attachment.file_id.clone();
    let name = attachment.name.clone();
    let shown_path = display_path(&attachment);
    let folder = attachment.path.clone().filter(|p| !p.is_empty());
    let badge = file_badge(&attachment.name);
    let kind = file_kind(&attachment.mime, &attachment.name);
    let size = attachment.size;

    let act = move |what: &'static str| {
        let id = a.with_value(|a| a.file_id.clone());
        action_error.set(None);
        busy.set(true);
        spawn_local(async move {
            match chat.client().file_action(&id, what).await {
                Ok(()) => chat.refresh_file(id),
                Err(e) => action_error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    // Open / Show in folder (desktop window): the node exports the file and starts the
    // desktop's opener; nothing to refresh here.
    let desktop = crate::api::in_desktop_window();
    let on_desktop = move |what: &'static str| {
        let id = a.with_value(|a| a.file_id.clone());
        action_error.set(None);
        busy.set(true);
        spawn_local(async move {
            if let Err(e) = chat.client().file_action(&id, what).await {
                action_error.set(Some(e));
            }
            busy.set(false);
        });
    };
    let save = move |_| {
        let (id, name) = a.with_value(|a| (a.file_id.clone(), a.name.clone()));
        action_error.set(None);
        busy.set(true);
        spawn_local(async move {
            let saved = match chat.client().file_blob(&id).await {
                Ok(blob) => save_blob(&blob, &name),
                Err(e) => Err(e),
            };
            if let Err(e) = saved {
                action_error.set(Some(e));
            }
            busy.set(false);
        });
    };

    let thumb = attachment
        .thumbnail
        .clone()
        .filter(|_| is_viewable_image(&attachment))
        .map(|src| {
            let open = move |_| {
                if let Some(v) = viewer {
                    v.0.set(Some(a.get_value()));
                }
            };
            view! {
                <button type="button" class="thumb" aria-label=move || lang.t("files.view") on:click=open>
                    <img data-testid="attachment-thumb" src=src alt=name.clone()/>
                </button>
            }
        });

    let progress = move || {
        let s = status.get();
        (s.state == FileState::Fetching).then(|| {
            let pct = percent(s.have_bytes, s.size);
            let l = lang.0.get();
            let text = match (
                s.bytes_per_sec.filter(|b| *b > 0),
                eta_secs(s.have_bytes, s.size, s.bytes_per_sec),
            ) {
                (Some(bps), Some(eta)) => i18n::tf(
                    l,
                    "files.progress",
                    &[
                        ("percent", &pct.to_string()),
                        ("speed", &speed_text(bps)),
                        ("eta", &duration_text(eta)),
                    ],
                ),
                _ => i18n::tf(l, "files.progress_plain", &[("percent", &pct.to_string())]),
            };
            view! {
                <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100"
                    aria-valuenow=pct.to_string() data-testid="attachment-progress">
                    <div class="bar" style=format!("width: {pct}%")></div>
                </div>
                <div class="file-progress">{text}</div>
            }
        })
    };

    let button = move || {
        let busy_now = busy.get();
        match action_of(&status.get()) {
            FileAction::Download => view! {
                <button type="button" class="link" data-testid="attachment-download" disabled=busy_now
                    on:click=move |_| act("fetch")>{move || lang.t("files.download")}</button>
            }
            .into_any(),
            FileAction::Retry => view! {
                <button type="button" class="link" data-testid="attachment-download" disabled=busy_now
                    on:click=move |_| act("fetch")>{move || lang.t("files.retry")}</button>
            }
            .into_any(),
            FileAction::Cancel => view! {
                <button type="button" class="link danger" data-testid="attachment-cancel" disabled=busy_now
                    on:click=move |_| act("cancel")>{move || lang.t("files.cancel")}</button>
            }
            .into_any(),
            FileAction::Save => view! {
                {desktop.then(|| view! {
                    <button type="button" class="link" data-testid="attachment-open" disabled=busy_now
                        on:click=move |_| on_desktop("open")>{move || lang.t("files.open")}</button>
                    <button type="button" class="link" data-testid="attachment-reveal" disabled=busy_now
                        on:click=move |_| on_desktop("reveal")>{move || lang.t("files.reveal")}</button>
                })}
                <button type="button" class="link" data-testid="attachment-save" disabled=busy_now
                    on:click=save>
                    {move || lang.t(if busy.get() { "files.saving" } else { "files.save" })}
                </button>
            }
            .into_any(),
            FileAction::WaitSender => ().into_any(),
        }
    };
    // The sender's own files: stop sending (receivers that do not have it yet stop
    // getting it from here), and send again.
    let sending = move || {
        let busy_now = busy.get();
        sending_action(outgoing, &status.get()).map(|action| match action {
            SendingAction::Withdraw => view! {
                <button type="button" class="link danger" data-testid="attachment-withdraw" disabled=busy_now
                    on:click=move |_| act("withdraw")>{move || lang.t("files.withdraw")}</button>
            }
            .into_any(),
            SendingAction::Offer => view! {
                <button type="button" class="link" data-testid="attachment-offer" disabled=busy_now
                    on:click=move |_| act("offer")>{move || lang.t("files.offer")}</button>
            }
            .into_any(),
        })
    };

    view! {
        <div class="attachment" data-testid="attachment" data-file-id=file_id
            data-state=move || state_name(&status.get())>
            {thumb}
            <div class="file-row">
                <span class=format!("file-badge kind-{kind}") aria-hidden="true">{badge}</span>
                <div class="file-main">
                    <div class="file-name" title=shown_path>{attachment.name.clone()}</div>
                    <div class="file-sub">
                        {folder.map(|p| view! { <span class="file-folder">{p}</span> " · " })}
                        <span>{human_size(size)}</span>
                        " · "
                        <span class="file-state" data-testid="attachment-state"
                            data-state=move || state_name(&status.get())>
                            {move || lang.t(&format!("files.state.{}", state_name(&status.get())))}
                        </span>
                        {move || status.get().withdrawn.then(|| view! {
                            " · "
                            <span class="file-withdrawn" data-testid="attachment-withdrawn">
                                {move || lang.t("files.withdrawn")}
                            </span>
                        })}
                    </div>
                    {progress}
                    {move || status.get().error.filter(|_| status.get().state == FileState::Failed).map(|e| view! {
                        <div class="error small">{e}</div>
                    })}
                    {move || action_error.get().map(|e| view! {
                        <div class="error small" role="alert">{e.message(lang.0.get())}</div>
                    })}
                </div>
                <div class="file-actions">{button}{sending}</div>
            </div>
        </div>
    }
}

/// Saves a blob as a download named `name` (an `<a download>` clicked once).
pub fn save_blob(blob: &web_sys::Blob, name: &str) -> Result<(), UiError> {
    let url = web_sys::Url::create_object_url_with_blob(blob).map_err(js_error)?;
    let clicked = click_download(&url, name);
    set_timeout(
        move || {
            let _ = web_sys::Url::revoke_object_url(&url);
        },
        SAVE_URL_LIFETIME,
    );
    clicked
}

fn click_download(url: &str, name: &str) -> Result<(), UiError> {
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| UiError::Network("no document".into()))?;
    let body = document
        .body()
        .ok_or_else(|| UiError::Network("no document body".into()))?;
    let link = document
        .create_element("a")
        .map_err(js_error)?
        .dyn_into::<web_sys::HtmlAnchorElement>()
        .map_err(|_| UiError::Network("no link element".into()))?;
    link.set_href(url);
    link.set_download(name);
    link.set_hidden(true);
    body.append_child(&link).map_err(js_error)?;
    link.click();
    link.remove();
    Ok(())
}

/// The full-size image over the conversation, while one is chosen.
#[component]
pub fn ImageViewer() -> impl IntoView {
    let viewer = expect_context::<Viewer>();
    move || {
        viewer
            .0
            .get()
            .map(|a| view! { <ViewerOverlay attachment=a/> })
    }
}

#[component]
fn ViewerOverlay(attachment: AttachmentView) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let client = expect_context::<Client>();
    let viewer = expect_context::<Viewer>();
    let a = StoredValue::new(attachment.clone());
    let status = Memo::new(move |_| a.with_value(|a| chat.file_status(a)));
    let url = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<UiError>);
    // The object URL outlives nothing: revoked when the viewer closes, or at once if
    // the content arrives after that.
    let held: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let closed = Arc::new(AtomicBool::new(false));
    {
        let held = Arc::clone(&held);
        let closed = Arc::clone(&closed);
        on_cleanup(move || {
            closed.store(true, Ordering::SeqCst);
            if let Some(u) = held.lock().ok().and_then(|mut h| h.take()) {
                let _ = web_sys::Url::revoke_object_url(&u);
            }
        });
    }
    // Fetched once the file is here (at once, or when its download completes).
    Effect::new(move |fetched: Option<bool>| {
        if fetched == Some(true) || status.get().state != FileState::Available {
            return fetched.unwrap_or(false);
        }
        let client = client.clone();
        let id = a.with_value(|a| a.file_id.clone());
        let held = Arc::clone(&held);
        let closed = Arc::clone(&closed);
        spawn_local(async move {
            let got = client.file_blob(&id).await.and_then(|blob| {
                web_sys::Url::create_object_url_with_blob(&blob).map_err(js_error)
            });
            match got {
                Ok(u) => {
                    if closed.load(Ordering::SeqCst) {
                        let _ = web_sys::Url::revoke_object_url(&u);
                        return;
                    }
                    if let Ok(mut h) = held.lock() {
                        *h = Some(u.clone());
                    }
                    url.try_set(Some(u));
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
        });
        true
    });
    let close = move || viewer.0.set(None);
    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() == "Escape" {
            ev.prevent_default();
            close();
        }
    });
    on_cleanup(move || keys.remove());

    let name = attachment.name.clone();
    let thumbnail = attachment.thumbnail.clone().unwrap_or_default();
    let size = attachment.size;
    view! {
        <div class="viewer" data-testid="image-viewer" role="dialog" aria-modal="true"
            aria-label=attachment.name.clone()
            on:click=move |ev| {
                // A click beside the image closes; on it, nothing happens.
                if ev.target() == ev.current_target() {
                    close();
                }
            }>
            <figure class="viewer-figure">
                {move || match url.get() {
                    Some(src) => view! { <img data-testid="image-viewer-img" src=src alt=name.clone()/> }.into_any(),
                    None => view! { <img class="viewer-preview" src=thumbnail.clone() alt=""/> }.into_any(),
                }}
                <figcaption>
                    <span class="viewer-name">{attachment.name.clone()}</span>
                    " · " {human_size(size)}
                    {move || (url.with(Option::is_none) && error.with(Option::is_none)).then(|| {
                        let key = if status.get().state == FileState::Available { "status.loading" } else { "files.viewer.not_here" };
                        view! { " · " <span class="muted">{move || lang.t(key)}</span> }
                    })}
                    {move || error.get().map(|e| view! { " · " <span class="error">{e.message(lang.0.get())}</span> })}
                </figcaption>
            </figure>
            <button type="button" class="viewer-close" data-testid="image-viewer-close"
                aria-label=move || lang.t("files.viewer.close") on:click=move |_| close()>"×"</button>
        </div>
    }
}
