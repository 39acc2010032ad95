//! Banners over every tab, from the status's warnings: while an identity is held by two
//! computers at once (`duplicate_identity`: this computer and a copy of it, or a
//! colleague's twins, whose messages wait until one of them is gone), and while the
//! mesh runs as an open LAN or on a weak secret (`open_lan`, `weak_secret`) — for as
//! long as that lasts, on every tab. On the computer that is a twin itself, the banner
//! offers "new identity for this computer" (`POST /api/v1/identity/new`), confirmed
//! first. A third banner says when the node cannot keep anything new (`disk_full`,
//! `storage_error`) or a hand edit of `settings.json` cannot be used (`settings_file`).

use std::time::Duration;

use api_types::{Warning, WarningCode};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::Client;
use crate::app::{Lang, PeerChanges};

/// How often the status is read again: twins are noticed within two heartbeats, and
/// peer events (which also refresh it) may not come with them.
const REFRESH: Duration = Duration::from_secs(5);

#[component]
pub fn IdentityBanner() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let changes = expect_context::<PeerChanges>();
    let tick = RwSignal::new(0u64);
    set_interval(move || tick.update(|t| *t = t.wrapping_add(1)), REFRESH);
    let status = LocalResource::new(move || {
        changes.0.track();
        tick.track();
        let client = client.clone();
        async move { client.status().await.ok() }
    });
    let of = move |codes: &'static [WarningCode]| -> Vec<Warning> {
        status
            .get()
            .flatten()
            .map(|s| {
                s.warnings
                    .into_iter()
                    .filter(|w| codes.contains(&w.code))
                    .collect()
            })
            .unwrap_or_default()
    };
    let banner = move |codes: &'static [WarningCode], class: &'static str, testid: &'static str| {
        move || {
            let warnings = of(codes);
            (!warnings.is_empty()).then(|| {
                view! {
                    <div class=class role="alert" data-testid=testid>
                        {warnings
                            .iter()
                            .map(|w| view! { <p class="warning">{crate::clock_text::warning(lang.0.get(), w)}</p> })
                            .collect_view()}
                    </div>
                }
            })
        }
    };
    // This computer's own twin warnings name one other address and no list.
    let own_twin = move || {
        of(&[WarningCode::DuplicateIdentity])
            .iter()
            .any(|w| w.addresses.is_empty())
    };
    let renewed = move || tick.update(|t| *t = t.wrapping_add(1));
    let outcome = RwSignal::new(None::<Result<String, String>>);
    view! {
        {banner(&[WarningCode::DuplicateIdentity], "identity-banner", "identity-banner")}
        <Show when=own_twin>
            <RenewIdentity outcome on_done=renewed />
        </Show>
        <RenewOutcome outcome />
        {banner(&[WarningCode::OpenLan, WarningCode::WeakSecret], "identity-banner access-banner", "access-banner")}
        {banner(&[WarningCode::DiskFull, WarningCode::StorageError, WarningCode::SettingsFile], "identity-banner storage-banner", "storage-banner")}
    }
}

/// "New identity for this computer", with a confirmation that says what it does.
#[component]
fn RenewIdentity(
    outcome: RwSignal<Option<Result<String, String>>>,
    on_done: impl Fn() + Clone + Send + Sync + 'static,
) -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let asking = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let confirm = move |_| {
        let client = client.clone();
        let on_done = on_done.clone();
        busy.set(true);
        spawn_local(async move {
            let result = client.new_identity().await;
            busy.set(false);
            asking.set(false);
            outcome.set(Some(match result {
                Ok(renewed) => Ok(renewed.node_id),
                Err(e) => Err(e.message(lang.0.get_untracked())),
            }));
            on_done();
        });
    };
    view! {
        <div class="identity-banner renew" data-testid="renew-identity">
            <Show
                when=move || asking.get()
                fallback=move || view! {
                    <button type="button" data-testid="new-identity" on:click=move |_| asking.set(true)>
                        {lang.t("identity.new")}
                    </button>
                }
            >
                <p>{lang.t("identity.new_explained")}</p>
                <button
                    type="button"
                    class="danger"
                    data-testid="new-identity-confirm"
                    disabled=move || busy.get()
                    on:click=confirm.clone()
                >
                    {lang.t("identity.new_confirm")}
                </button>
                <button type="button" on:click=move |_| asking.set(false)>
                    {lang.t("group.cancel")}
                </button>
            </Show>
        </div>
    }
}

/// What the last "new identity" did, shown after the twin banner is gone too.
#[component]
fn RenewOutcome(outcome: RwSignal<Option<Result<String, String>>>) -> impl IntoView {
    let lang = expect_context::<Lang>();
    move || {
        outcome.get().map(|r| match r {
            Ok(id) => view! {
                <p class="notice" data-testid="new-identity-done">
                    {i18n::tf(lang.0.get(), "identity.renewed", &[("id", &id)])}
                </p>
            }
            .into_any(),
            Err(e) => {
                view! { <p class="error" data-testid="new-identity-error">{e}</p> }.into_any()
            }
        })
    }
}
