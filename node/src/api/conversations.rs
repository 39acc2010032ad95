//! `/api/v1/conversations`: the conversation list, history pages, sending, marking
//! read and retrying a failed message.
//!
//! A DM's id is derived from its peer (`dm:lan:{peer_id}`), so a client may read or
//! mark read a DM that has no message yet; the store creates it on the first send.

use api_types::{
    ConversationView, Event, FieldError, MessagePageView, MessageStatus, MessageView, SendMessage,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use mesh_store::{dm_envelope, read_receipt_envelope};
use storage::{
    ConversationId, ConversationTarget, HistoryQuery, MessageId, MessagePage, StoreError,
    MAX_BODY_BYTES, MAX_PAGE,
};

use super::params::{Params, Segments};
use super::views::{self, Names};
use super::{identity, json_body, now_ms, ApiError, ApiState};

/// A screenful and some: the UI asks for more as the user scrolls up.
const DEFAULT_PAGE: u32 = 50;

pub(super) fn conversation_id(text: &str) -> Result<ConversationId, ApiError> {
    text.parse::<ConversationId>().map_err(|_| {
        FieldError::new(
            "conversation_id",
            format!("{text:?} is neither dm:lan:{{peer_id}} nor group:{{group_id}}"),
        )
        .into()
    })
}

fn is_direct(conversation: &ConversationId) -> bool {
    matches!(conversation.target(), ConversationTarget::Direct(_))
}

/// The text as it will be stored: surrounding whitespace (the Enter that sent it)
/// dropped, everything between — inner newlines, indentation — kept as typed.
fn message_text(text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(FieldError::new("text", "a message cannot be empty").into());
    }
    if text.len() > MAX_BODY_BYTES {
        return Err(FieldError::new(
            "text",
            format!(
                "a message is at most {MAX_BODY_BYTES} bytes (UTF-8); this one has {}",
                text.len()
            ),
        )
        .into());
    }
    if text.starts_with('\u{1}') {
        // Reserved for file messages (`api_types::FILE_MESSAGE_PREFIX`): files are sent
        // with `POST …/files`.
        return Err(FieldError::new("text", "a message cannot begin with U+0001").into());
    }
    Ok(text.to_string())
}

/// Refuses what the settings forbid before the store is asked: messages to this
/// node itself, and to a peer the settings block (the settings are the source of
/// truth for blocks; the store refuses them too).
fn refuse_unreachable(state: &ApiState, conversation: &ConversationId) -> Result<(), ApiError> {
    let ConversationTarget::Direct(peer) = conversation.target() else {
        return Ok(());
    };
    let mesh = state.settings().current().lan_mesh;
    if *peer == mesh.node_id {
        return Err(FieldError::new(
            "conversation_id",
            "that is this node itself; messages go to other nodes",
        )
        .into());
    }
    if mesh.blocked_peers.contains(peer) {
        return Err(StoreError::Blocked(peer.to_string()).into());
    }
    Ok(())
}

/// Whether the DM peer of `conversation` was a sighting now recorded as a contact.
async fn recorded(state: &ApiState, conversation: &ConversationId) -> Result<bool, ApiError> {
    match conversation.target() {
        ConversationTarget::Direct(peer) => super::peers::record_listed_peer(state, peer).await,
        ConversationTarget::Group(_) => Ok(false),
    }
}

/// `GET /api/v1/conversations`: most recent activity first.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<ConversationView>>, ApiError> {
    let conversations = state.store().conversations().await?;
    let names = Names::load(&state).await?;
    let mut views: Vec<ConversationView> = conversations
        .iter()
        .map(|c| views::conversation_view(c, &names))
        .collect();
    apply_last_receipts(&state, &conversations, &mut views).await;
    // Already in this order by full HLC; a stable sort keeps that tie-break.
    views.sort_by_key(|v| std::cmp::Reverse(v.last_activity_at));
    for view in &mut views {
        if let Some(last) = view.last_message.as_mut() {
            state
                .files()
                .fill_attachments(std::slice::from_mut(last))
                .await;
        }
    }
    Ok(Json(views))
}

/// Read receipts on the last messages this node sent (`read`, "read by k of n"), as the
/// history shows them: the read positions of those conversations, in one read. `views`
/// are in the order of `conversations`. A list without them is still a list.
async fn apply_last_receipts(
    state: &ApiState,
    conversations: &[storage::Conversation],
    views: &mut [ConversationView],
) {
    let sent_last: Vec<usize> = views
        .iter()
        .enumerate()
        .filter(|(_, v)| v.last_message.as_ref().is_some_and(|m| m.outgoing))
        .map(|(i, _)| i)
        .collect();
    if sent_last.is_empty() {
        return;
    }
    let ids = sent_last
        .iter()
        .map(|&i| conversations[i].conversation_id.clone())
        .collect();
    let reads = match state.store().read_states(ids).await {
        Ok(reads) => reads,
        Err(e) => {
            tracing::warn!("cannot read the read positions: {e}");
            return;
        }
    };
    let local = state.settings().current().lan_mesh.node_id;
    for (&i, read) in sent_last.iter().zip(&reads) {
        if let (Some(view), Some(message)) = (
            views[i].last_message.as_mut(),
            conversations[i].last_message.as_ref(),
        ) {
            views::apply_receipts(
                std::slice::from_mut(view),
                std::slice::from_ref(message),
                read,
                &local,
            );
        }
    }
}

/// `GET /api/v1/conversations/{id}/messages?before=ORDER&limit=N`: oldest first.
pub async fn history(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
    params: Params,
) -> Result<Json<MessagePageView>, ApiError> {
    let conversation = conversation_id(&id)?;
    let limit = params.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let before = match params.get("before") {
        None => None,
        Some(text) => Some(views::parse_order(text).ok_or_else(|| {
            FieldError::new(
                "before",
                "not a message order (take it from a message's `order`)",
            )
        })?),
    };
    let page = match state
        .store()
        .history(conversation.clone(), HistoryQuery { before, limit })
        .await
    {
        Ok(page) => page,
        // A DM exists before its first message (its id is derived from the peer).
        Err(StoreError::NotFound { .. }) if is_direct(&conversation) => MessagePage {
            messages: Vec::new(),
            older: None,
        },
        Err(e) => return Err(e.into()),
    };
    let names = Names::load(&state).await?;
    let mut messages: Vec<MessageView> = page
        .messages
        .iter()
        .map(|m| views::message_view(m, &names))
        .collect();
    if messages.iter().any(|m| m.outgoing) {
        // Statuses from the read positions; a history without them is still a history.
        match state.store().read_state(conversation).await {
            Ok(read) => {
                let local = state.settings().current().lan_mesh.node_id;
                views::apply_receipts(&mut messages, &page.messages, &read, &local);
            }
            Err(e) => tracing::warn!("cannot read the read positions: {e}"),
        }
    }
    state.files().fill_attachments(&mut messages).await;
    Ok(Json(MessagePageView {
        messages,
        older: page.older.map(views::order_text),
    }))
}

/// `POST /api/v1/conversations/{id}/messages {"text": …}` → `201` and the message,
/// pending. The store writes it and its outbox envelope in one transaction; the
/// delivery worker is woken and every event stream hears of it.
pub async fn send(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let conversation = conversation_id(&id)?;
    let request: SendMessage = json_body::parse(&headers, &body)?;
    let text = message_text(&request.text)?;
    let view = send_text(&state, conversation, text).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Stores `text` (already checked) for sending to `conversation` and tells delivery and
/// every event stream: a text message's or a file message's way out.
pub(super) async fn send_text(
    state: &ApiState,
    conversation: ConversationId,
    text: String,
) -> Result<MessageView, ApiError> {
    refuse_unreachable(state, &conversation)?;
    identity::ensure_local(state).await?;
    let sent = state
        .store()
        .send_message_queued(conversation.clone(), text.clone(), now_ms(), dm_envelope)
        .await;
    let (message, entry) = match sent {
        // A peer discovery lists but nothing linked yet is not stored: writing to it
        // makes it a contact (checked only then, so a send to a contact costs no read).
        Err(StoreError::NotFound { what: "peer", .. })
            if recorded(state, &conversation).await? =>
        {
            state
                .store()
                .send_message_queued(conversation, text, now_ms(), dm_envelope)
                .await?
        }
        other => other?,
    };
    match entry {
        Some(entry) => state.mesh().send_now(entry),
        None => state.mesh().wake_outbox(),
    }
    let mut view = views::message_view(&message, &Names::local(state));
    state
        .files()
        .fill_attachments(std::slice::from_mut(&mut view))
        .await;
    tracing::debug!(message_id = %view.id, conversation = %view.conversation_id, "message stored for sending");
    state.mesh().publish(Event::MessageNew {
        message: view.clone(),
    });
    Ok(view)
}

/// `POST /api/v1/conversations/{id}/read` → `204`.
pub async fn read(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
) -> Result<StatusCode, ApiError> {
    let conversation = conversation_id(&id)?;
    let send_receipts = state.settings().current().desktop.send_read_receipts;
    let marked = state
        .store()
        .mark_read_with_receipts(
            conversation.clone(),
            send_receipts,
            now_ms(),
            read_receipt_envelope,
        )
        .await;
    match marked {
        Ok(marked) if marked.receipts_queued > 0 => {
            // Due after `RECEIPT_DELAY_MS`: the worker learns when from the outbox.
            state.mesh().receipts_queued(marked.receipts_queued);
            state.mesh().wake_outbox();
        }
        Ok(_) => {}
        // A DM without messages has nothing unread.
        Err(StoreError::NotFound { .. }) if is_direct(&conversation) => {}
        Err(e) => return Err(e.into()),
    }
    state.mesh().publish(Event::ConversationRead {
        conversation_id: conversation.to_string(),
    });
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/conversations/{id}/messages/{message_id}/retry` → the message,
/// pending again. Only an outgoing DM whose delivery was given up (`failed`).
pub async fn retry(
    State(state): State<ApiState>,
    Segments((id, message_id)): Segments<(String, String)>,
) -> Result<Json<MessageView>, ApiError> {
    let conversation = conversation_id(&id)?;
    let message_id: MessageId = message_id.parse().map_err(|_| {
        ApiError::from(FieldError::new(
            "message_id",
            format!("{message_id:?} is not a message id"),
        ))
    })?;
    refuse_unreachable(&state, &conversation)?;
    identity::ensure_local(&state).await?;
    let message = state
        .store()
        .retry_message(conversation, message_id, now_ms(), dm_envelope)
        .await?;
    state.mesh().wake_outbox();
    let mut view = views::message_view(&message, &Names::local(&state));
    state
        .files()
        .fill_attachments(std::slice::from_mut(&mut view))
        .await;
    state.mesh().publish(Event::MessageStatus {
        conversation_id: view.conversation_id.clone(),
        message_id: view.id.clone(),
        status: MessageStatus::Pending,
    });
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_is_trimmed_outside_and_kept_inside() {
        assert_eq!(
            message_text("\n  first\n\n  second\t \n").unwrap(),
            "first\n\n  second"
        );
        assert!(message_text(" \n\t ").is_err());
        assert!(message_text("").is_err());
        let at_limit = "字".repeat(MAX_BODY_BYTES / 3);
        assert!(message_text(&at_limit).is_ok());
        assert!(message_text(&"a".repeat(MAX_BODY_BYTES + 1)).is_err());
        assert!(message_text(&format!("{}{{}}", api_types::FILE_MESSAGE_PREFIX)).is_err());
    }
}
