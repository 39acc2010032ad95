//! This user's presence: the picker beside their name (online / away / busy), the
//! dot colours every list uses, and the activity reports that end an automatic `away`.

use api_types::{MyPresence, Presence, PresenceSource};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::Client;
use crate::app::Lang;

/// Input is reported at most this often: the node's idle limit is in minutes, so this
/// is precise enough and keeps typing from becoming a stream of requests.
const ACTIVITY_EVERY_MS: f64 = 30_000.0;

/// The node's presence as last heard (context; `presence.changed` events update it).
#[derive(Clone, Copy)]
pub struct Mine(pub RwSignal<MyPresence>);

impl Mine {
    pub fn new() -> Mine {
        Mine(RwSignal::new(MyPresence {
            presence: Presence::Online,
            source: PresenceSource::Manual,
        }))
    }

    /// Fetches it once (start, reconnect).
    pub fn load(self, client: Client) {
        spawn_local(async move {
            if let Ok(now) = client.presence().await {
                self.0.set(now);
            }
        });
    }
}

/// The CSS class of a presence dot.
pub fn dot_class(p: Presence) -> &'static str {
    match p {
        Presence::Online => "dot on",
        Presence::Away => "dot away",
        Presence::Busy => "dot busy",
        Presence::Offline => "dot off",
    }
}

/// The catalog key naming a presence.
pub fn label_key(p: Presence) -> &'static str {
    match p {
        Presence::Online => "presence.online",
        Presence::Away => "presence.away",
        Presence::Busy => "presence.busy",
        Presence::Offline => "presence.offline",
    }
}

/// The picker: a native `<select>` (keyboard and screen readers for free).
#[component]
pub fn PresencePicker() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let mine = expect_context::<Mine>();
    let client = expect_context::<Client>();
    let error = RwSignal::new(false);
    let choose = move |ev: leptos::ev::Event| {
        let Some(p) = Presence::parse(&event_target_value(&ev)) else {
            return;
        };
        let client = client.clone();
        spawn_local(async move {
            match client.set_presence(p).await {
                Ok(now) => {
                    mine.0.set(now);
                    error.set(false);
                }
                Err(_) => error.set(true),
            }
        });
    };
    view! {
        <select class="presence-picker" data-testid="presence-picker" class:error=move || error.get()
            aria-label=move || lang.t("presence.label") on:change=choose
            prop:value=move || mine.0.get().presence.as_str()>
            {[Presence::Online, Presence::Away, Presence::Busy].into_iter().map(|p| view! {
                <option value=p.as_str() selected=move || mine.0.get().presence == p>
                    {move || lang.t(label_key(p))}
                </option>
            }).collect_view()}
        </select>
    }
}

/// Reports the user's input to the node (throttled), so an automatic `away` ends
/// and the idle timer restarts. The first input is reported at once.
pub fn report_activity(client: Client) {
    let last = StoredValue::new(f64::NEG_INFINITY);
    let report = move |_: web_sys::Event| {
        let now = js_sys::Date::now();
        if now - last.get_value() < ACTIVITY_EVERY_MS {
            return;
        }
        last.set_value(now);
        let client = client.clone();
        spawn_local(async move {
            // A lost report is made up by the next input.
            let _ = client.report_activity().await;
        });
    };
    for event in ["keydown", "pointerdown", "pointermove", "wheel", "focus"] {
        let _ = window_event_listener_untyped(event, report.clone());
    }
}
