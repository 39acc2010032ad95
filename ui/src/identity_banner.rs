//! Banners over every tab, from the status's warnings: while an identity is held by two
//! computers at once (`duplicate_identity`: this computer and a copy of it, or a
//! colleague's twins, whose messages wait until one of them is gone), and while the
//! mesh runs as an open LAN or on a weak secret (`open_lan`, `weak_secret`) — for as
//! long as that lasts, on every tab.

use std::time::Duration;

use api_types::{Warning, WarningCode};
use leptos::prelude::*;

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
    view! {
        {banner(&[WarningCode::DuplicateIdentity], "identity-banner", "identity-banner")}
        {banner(&[WarningCode::OpenLan, WarningCode::WeakSecret], "identity-banner access-banner", "access-banner")}
    }
}
