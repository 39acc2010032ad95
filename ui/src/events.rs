//! The node's event stream (`/api/v1/events`), kept open for the page's lifetime:
//! reconnects with backoff when it drops, and tells its listener to resync after every
//! (re)connect, so the page never needs a manual refresh.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use api_types::Event;
use leptos::prelude::set_timeout;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, WebSocket};

/// First retry after half a second, doubling up to half a minute: quick after a node
/// restart, quiet while it is down for long.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

pub type Listener = Rc<dyn Fn(Event)>;

pub fn subscribe(token: String, listener: Listener) {
    connect(Rc::new(token), listener, Rc::new(Cell::new(FIRST_RETRY)));
}

fn connect(token: Rc<String>, listener: Listener, retry: Rc<Cell<Duration>>) {
    let Some(location) = web_sys::window().map(|w| w.location()) else {
        return;
    };
    let host = location.host().unwrap_or_default();
    let url = format!("ws://{host}/api/v1/events");
    let protocols = js_sys::Array::of2(
        &"lanchat.v1".into(),
        &format!("lanchat.bearer.{token}").into(),
    );
    let Ok(socket) = WebSocket::new_with_str_sequence(&url, &protocols) else {
        schedule_reconnect(token, listener, retry);
        return;
    };

    let on_open = {
        let listener = Rc::clone(&listener);
        let retry = Rc::clone(&retry);
        Closure::<dyn FnMut()>::new(move || {
            retry.set(FIRST_RETRY);
            listener(Event::Resync);
        })
    };
    let on_message = {
        let listener = Rc::clone(&listener);
        Closure::<dyn FnMut(MessageEvent)>::new(move |msg: MessageEvent| {
            if let Some(text) = msg.data().as_string() {
                if let Ok(event) = serde_json::from_str::<Event>(&text) {
                    listener(event);
                }
            }
        })
    };
    let on_close = Closure::<dyn FnMut()>::new(move || {
        schedule_reconnect(Rc::clone(&token), Rc::clone(&listener), Rc::clone(&retry));
    });
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    // The handlers live as long as the socket; one set per connection.
    on_open.forget();
    on_message.forget();
    on_close.forget();
}

fn schedule_reconnect(token: Rc<String>, listener: Listener, retry: Rc<Cell<Duration>>) {
    let wait = retry.get();
    retry.set((wait * 2).min(MAX_RETRY));
    set_timeout(move || connect(token, listener, retry), wait);
}
