//! The Diagnostics tab: each colleague's link (state, address, round trip, clock, key,
//! queue, last error), what was dropped and why, the recent faults, and the button that
//! saves the same report as one file for IT.

use api_types::{Diagnostics, Language, LinkState, MemoryDiagnostics, PeerDiagnostics};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::api::{Client, UiError};
use crate::app::{Lang, PeerChanges};
use crate::files_model::human_size;

#[component]
pub fn DiagnosticsView() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let client = expect_context::<Client>();
    let changes = expect_context::<PeerChanges>();
    let report = LocalResource::new({
        let client = client.clone();
        move || {
            changes.0.track();
            let client = client.clone();
            async move { client.diagnostics().await }
        }
    });
    let export_state: RwSignal<Option<Result<String, UiError>>> = RwSignal::new(None);
    let export = move |_| {
        let client = client.clone();
        spawn_local(async move {
            let saved = match client.diagnostics_export().await {
                Ok((name, body)) => save_file(&name, &body).map(|()| name),
                Err(e) => Err(e),
            };
            export_state.set(Some(saved));
        });
    };

    view! {
        <section class="card" aria-labelledby="diag-heading" data-testid="diagnostics">
            <h2 id="diag-heading">{move || lang.t("diag.heading")}</h2>
            <p class="muted">{move || lang.t("diag.intro")}</p>
            <div class="diag-actions">
                <button type="button" data-testid="diag-export" on:click=export>
                    {move || lang.t("diag.export")}
                </button>
                <button type="button" data-testid="diag-refresh" on:click=move |_| report.refetch()>
                    {move || lang.t("diag.refresh")}
                </button>
                {move || export_state.get().map(|state| match state {
                    Ok(name) => view! {
                        <span class="muted" data-testid="diag-exported">
                            {i18n::tf(lang.0.get(), "diag.exported", &[("file", &name)])}
                        </span>
                    }.into_any(),
                    Err(e) => view! { <span class="error">{e.message(lang.0.get())}</span> }.into_any(),
                })}
            </div>
            {move || match report.get() {
                None => view! { <p class="muted">{lang.t("status.loading")}</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error">{e.message(lang.0.get())}</p> }.into_any(),
                Some(Ok(d)) => body(lang, d).into_any(),
            }}
        </section>
    }
}

/// `31.4 MB resident, 4.4 MB in use` (the heap's live allocations, where the node's
/// allocator tells them).
fn memory_text(l: Language, m: MemoryDiagnostics) -> String {
    let resident = human_size(m.resident_bytes);
    match m.heap_allocated_bytes {
        Some(heap) => i18n::tf(
            l,
            "diag.memory.value",
            &[("resident", &resident), ("heap", &human_size(heap))],
        ),
        None => resident,
    }
}

fn body(lang: Lang, d: Diagnostics) -> impl IntoView {
    let l = lang.0.get();
    let drops: Vec<_> = d.drops.iter().filter(|c| c.count > 0).cloned().collect();
    let mut faults = d.faults.clone();
    faults.reverse();
    view! {
        <dl class="facts">
            <dt>{lang.t("status.node_id")}</dt>
            <dd class="mono">{d.node.node_id.clone()}</dd>
            <dt>{lang.t("diag.link_key")}</dt>
            <dd class="mono" data-testid="diag-link-key">{d.node.link_key.clone()}</dd>
            <dt>{lang.t("status.version")}</dt>
            <dd>{format!("{} ({})", d.node.version, d.node.platform)}</dd>
            {d.node.memory.map(|m| view! {
                <dt>{lang.t("diag.memory")}</dt>
                <dd data-testid="diag-memory">{memory_text(l, m)}</dd>
            })}
        </dl>
        <h3>{lang.t("diag.peers")}</h3>
        {if d.peers.is_empty() {
            view! { <p class="muted">{lang.t("diag.peers.empty")}</p> }.into_any()
        } else {
            peers_table(lang, d.peers).into_any()
        }}
        <h3>{lang.t("diag.drops")}</h3>
        {if drops.is_empty() {
            view! { <p class="muted" data-testid="diag-no-drops">{lang.t("diag.drops.none")}</p> }.into_any()
        } else {
            view! {
                <table class="peers" data-testid="diag-drops">
                    <tbody>
                        {drops.into_iter().map(|c| view! {
                            <tr>
                                <td>{i18n::t(l, &format!("diag.plane.{}", c.plane))}</td>
                                <td class="mono small">{c.cause}</td>
                                <td>{c.count}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
        <h3>{lang.t("diag.faults")}</h3>
        {if faults.is_empty() {
            view! { <p class="muted">{lang.t("diag.faults.none")}</p> }.into_any()
        } else {
            view! {
                <ul class="diag-faults" data-testid="diag-faults">
                    {faults.into_iter().map(|f| view! {
                        <li class=format!("fault {}", f.level)>
                            <span class="small">{time_text(l, f.at)}</span>
                            " "
                            <strong>{i18n::t(l, &format!("diag.level.{}", f.level))}</strong>
                            " "
                            <span class="mono small">{f.message}</span>
                        </li>
                    }).collect_view()}
                </ul>
            }.into_any()
        }}
    }
}

fn peers_table(lang: Lang, peers: Vec<PeerDiagnostics>) -> impl IntoView {
    let l = lang.0.get();
    view! {
        <table class="peers" data-testid="diag-peers">
            <thead>
                <tr>
                    <th>{lang.t("diag.col.name")}</th>
                    <th>{lang.t("diag.col.link")}</th>
                    <th>{lang.t("diag.col.address")}</th>
                    <th>{lang.t("diag.col.rtt")}</th>
                    <th>{lang.t("diag.col.clock")}</th>
                    <th>{lang.t("diag.col.key")}</th>
                    <th>{lang.t("diag.col.outbox")}</th>
                    <th>{lang.t("diag.col.error")}</th>
                </tr>
            </thead>
            <tbody>
                {peers.into_iter().map(|p| {
                    let (clock, clock_off) = crate::clock_text::peer_clock(l, p.clock_offset_ms);
                    let name = if p.display_name.is_empty() { p.peer_id.clone() } else { p.display_name.clone() };
                    view! {
                        <tr data-testid=format!("diag-peer-{}", p.peer_id)>
                            <td title=p.peer_id.clone()>{name}</td>
                            <td>
                                <span class=link_badge(p.link) data-testid=format!("diag-link-{}", p.peer_id)>
                                    {i18n::t(l, &format!("diag.link.{}", p.link.as_str()))}
                                </span>
                            </td>
                            <td class="mono small">{p.address.clone().unwrap_or_default()}</td>
                            <td class="small">{p.rtt_ms.map(|ms| i18n::tf(l, "diag.rtt.value", &[("ms", &format!("{ms:.1}"))]))}</td>
                            <td class=if clock_off { "small clock-off" } else { "small" }>{clock}</td>
                            <td class="mono small">{p.key_fingerprint.clone().unwrap_or_default()}</td>
                            <td>{p.outbox_depth}</td>
                            <td class="small">
                                {p.last_error.clone().map(|e| {
                                    let at = p.last_error_at.map(|t| time_text(l, t)).unwrap_or_default();
                                    format!("{e} ({at})")
                                })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

fn link_badge(state: LinkState) -> &'static str {
    match state {
        LinkState::Up => "badge on",
        LinkState::Connecting | LinkState::Idle | LinkState::Offline => "badge off",
        LinkState::Retrying | LinkState::Blocked => "badge failed",
    }
}

fn time_text(lang: Language, unix_ms: u64) -> String {
    js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_ms as f64))
        .to_locale_string(lang.tag(), &wasm_bindgen::JsValue::UNDEFINED)
        .into()
}

/// Offers `body` as a download named `name` (a data URL on a temporary link: no extra
/// browser APIs, and the report is small).
fn save_file(name: &str, body: &str) -> Result<(), UiError> {
    let fail = || UiError::Network("cannot offer the file for download".to_string());
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(fail)?;
    let link = document
        .create_element("a")
        .map_err(|_| fail())?
        .dyn_into::<web_sys::HtmlElement>()
        .map_err(|_| fail())?;
    let url = format!(
        "data:application/json;charset=utf-8,{}",
        String::from(js_sys::encode_uri_component(body))
    );
    link.set_attribute("href", &url).map_err(|_| fail())?;
    link.set_attribute("download", name).map_err(|_| fail())?;
    let body_element = document.body().ok_or_else(fail)?;
    body_element.append_child(&link).map_err(|_| fail())?;
    link.click();
    body_element.remove_child(&link).map_err(|_| fail())?;
    Ok(())
}
