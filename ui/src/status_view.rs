//! The status card: what this node is and whether its LAN mesh runs.

use api_types::{MeshState, Status};
use leptos::prelude::*;

use crate::api::Client;
use crate::app::{Lang, PeerChanges};

#[component]
pub fn StatusCard() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let changes = expect_context::<PeerChanges>();
    let status = LocalResource::new(move || {
        changes.0.track();
        let client = client.clone();
        async move { client.status().await }
    });

    view! {
        <section class="card" aria-labelledby="status-heading">
            <h2 id="status-heading" data-testid="status-heading">{move || lang.t("status.heading")}</h2>
            {move || match status.get() {
                None => view! { <p class="muted">{lang.t("status.loading")}</p> }.into_any(),
                Some(Err(e)) => view! {
                    <p class="error" data-testid="status-error">
                        {e.message(lang.0.get())}
                        <button type="button" on:click=move |_| status.refetch()>
                            {lang.t("status.retry")}
                        </button>
                    </p>
                }
                .into_any(),
                Some(Ok(s)) => facts(lang, s).into_any(),
            }}
        </section>
    }
}

fn facts(lang: Lang, s: Status) -> impl IntoView {
    let (badge_class, mesh_text) = mesh_badge(lang, &s);
    let ports = i18n::tf(
        lang.0.get(),
        "status.ports.value",
        &[
            ("api", &s.api_port.to_string()),
            ("listen", &s.listen_port.to_string()),
            ("discovery", &s.discovery_port.to_string()),
        ],
    );
    let warnings = s
        .warnings
        .iter()
        .map(|w| crate::clock_text::warning(lang.0.get(), w))
        .collect::<Vec<_>>();
    view! {
        {(!warnings.is_empty()).then(|| view! {
            <ul class="warnings" data-testid="status-warnings" aria-label=lang.t("status.warnings")>
                {warnings
                    .into_iter()
                    .map(|text| view! { <li class="warning">{text}</li> })
                    .collect_view()}
            </ul>
        })}
        <dl class="facts">
            <dt>{lang.t("status.node_id")}</dt>
            <dd class="mono" data-testid="node-id">{s.node_id}</dd>
            <dt>{lang.t("status.display_name")}</dt>
            <dd data-testid="display-name">{s.display_name}</dd>
            <dt>{lang.t("status.version")}</dt>
            <dd data-testid="version">{s.version}</dd>
            <dt>{lang.t("status.mesh")}</dt>
            <dd><span class=badge_class data-testid="mesh-state">{mesh_text}</span></dd>
            <dt>{lang.t("status.ports")}</dt>
            <dd data-testid="ports">{ports}</dd>
        </dl>
    }
}

fn mesh_badge(lang: Lang, s: &Status) -> (&'static str, String) {
    let l = lang.0.get();
    match s.mesh_state {
        MeshState::Off => ("badge off", i18n::t(l, "status.mesh.off")),
        MeshState::Starting => ("badge off", i18n::t(l, "status.mesh.starting")),
        MeshState::Running => ("badge on", i18n::t(l, "status.mesh.running")),
        MeshState::Failed => (
            "badge failed",
            i18n::tf(
                l,
                "status.mesh.failed",
                &[("reason", s.mesh_error.as_deref().unwrap_or(""))],
            ),
        ),
    }
}
