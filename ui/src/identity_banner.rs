//! A banner over every tab while an identity is held by two computers at once (the
//! status's `duplicate_identity` warnings): this computer and a copy of it, or a
//! colleague's twins, whose messages wait until one of them is gone.

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
    move || {
        let twins: Vec<Warning> = status
            .get()
            .flatten()
            .map(|s| {
                s.warnings
                    .into_iter()
                    .filter(|w| w.code == WarningCode::DuplicateIdentity)
                    .collect()
            })
            .unwrap_or_default();
        (!twins.is_empty()).then(|| {
            view! {
                <div class="identity-banner" role="alert" data-testid="identity-banner">
                    {twins
                        .iter()
                        .map(|w| view! { <p class="warning">{crate::clock_text::warning(lang.0.get(), w)}</p> })
                        .collect_view()}
                </div>
            }
        })
    }
}
