//! `GET /api/v1/events`: a WebSocket that pushes every event as one JSON text frame.
//!
//! Browsers cannot put a bearer token on a WebSocket request, so the guard also takes
//! it as a subprotocol (`lanchat.bearer.<token>`, offered together with `lanchat.v1`,
//! which the server selects).

use api_types::Event;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

use super::ApiState;

pub const SUBPROTOCOL: &str = "lanchat.v1";
/// Clients only send pings and close frames; anything large is not a client of ours.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

pub async fn stream(State(state): State<ApiState>, ws: WebSocketUpgrade) -> Response {
    let events = state.mesh().subscribe();
    let stopping = state.inner.parts.stopping.clone();
    ws.protocols([SUBPROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| push(socket, events, stopping))
}

async fn push(
    mut socket: WebSocket,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    stopping: tokio_util::sync::CancellationToken,
) {
    loop {
        let event = tokio::select! {
            received = events.recv() => match received {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => Event::Resync,
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
            _ = stopping.cancelled() => break,
        };
        let Ok(text) = serde_json::to_string(&event) else {
            continue;
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
