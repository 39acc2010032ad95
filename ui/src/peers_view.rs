//! The discovered-nodes table of the LAN tab: live (refetched on every peer event),
//! with a block button per node.

use api_types::{Language, PeerView};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::Client;
use crate::app::{Lang, PeerChanges};

#[component]
pub fn PeersTable() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let changes = expect_context::<PeerChanges>();
    let peers = LocalResource::new({
        let client = client.clone();
        move || {
            changes.0.track();
            let client = client.clone();
            async move { client.peers().await }
        }
    });
    let block = move |peer_id: String| {
        let client = client.clone();
        spawn_local(async move {
            // Success and failure both show in the refetched list.
            let _ = client.set_blocked(&peer_id, true).await;
            changes.bump();
        });
    };

    view! {
        <section class="card" aria-labelledby="peers-heading">
            <h2 id="peers-heading">{move || lang.t("peers.heading")}</h2>
            {move || match peers.get() {
                None => view! { <p class="muted">{lang.t("status.loading")}</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error">{e.message(lang.0.get())}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => {
                    view! { <p class="muted" data-testid="peers-empty">{lang.t("peers.empty")}</p> }
                        .into_any()
                }
                Some(Ok(list)) => table(lang, list, block.clone()).into_any(),
            }}
        </section>
    }
}

fn table(
    lang: Lang,
    peers: Vec<PeerView>,
    block: impl Fn(String) + Clone + 'static,
) -> impl IntoView {
    let l = lang.0.get();
    view! {
        <table class="peers" data-testid="peers-table">
            <thead>
                <tr>
                    <th>{lang.t("peers.name")}</th>
                    <th>{lang.t("peers.id")}</th>
                    <th>{lang.t("peers.address")}</th>
                    <th>{lang.t("peers.state")}</th>
                    <th>{lang.t("peers.last_seen")}</th>
                    <th>{lang.t("peers.clock")}</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>
                {peers
                    .into_iter()
                    .map(|p| {
                        let block = block.clone();
                        let id = p.peer_id.clone();
                        let (badge, state) = if p.online {
                            ("badge on", lang.t("peers.online"))
                        } else {
                            ("badge off", lang.t("peers.offline"))
                        };
                        let (clock, clock_off) = crate::clock_text::peer_clock(l, p.clock_offset_ms);
                        let clock_title = clock_off.then(|| lang.t("clock.off_title"));
                        view! {
                            <tr data-testid=format!("peer-row-{}", p.peer_id)>
                                <td>
                                    {p.display_name.clone()}
                                    {p.copy_of.clone().map(|old| view! {
                                        <div class="small muted" data-testid=format!("peer-copy-of-{}", p.peer_id)>
                                            {i18n::tf(l, "peers.copy_of", &[("id", &old)])}
                                        </div>
                                    })}
                                </td>
                                <td class="mono small">{p.peer_id.clone()}</td>
                                <td class="mono small">{p.address.clone().unwrap_or_default()}</td>
                                <td><span class=badge>{state}</span></td>
                                <td class="small">{last_seen(l, p.last_seen_at)}</td>
                                <td
                                    class=if clock_off { "small clock-off" } else { "small" }
                                    title=clock_title
                                    data-testid=format!("peer-clock-{}", p.peer_id)
                                >
                                    {clock}
                                </td>
                                <td>
                                    <button
                                        type="button"
                                        class="danger"
                                        data-testid=format!("block-{}", p.peer_id)
                                        on:click=move |_| block(id.clone())
                                    >
                                        {lang.t("peers.block")}
                                    </button>
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// A date and time in the UI's language, as the browser formats it.
fn last_seen(lang: Language, unix_ms: Option<u64>) -> String {
    match unix_ms {
        Some(ms) => js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64))
            .to_locale_string(lang.tag(), &wasm_bindgen::JsValue::UNDEFINED)
            .into(),
        None => i18n::t(lang, "peers.never"),
    }
}
