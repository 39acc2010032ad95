//! Stored messages as the local API shows them (`MessageView`), for the event stream.

use api_types::{MessageStatus as ApiStatus, MessageView};
use storage::{Message, MessageStatus, Store};

pub fn status(status: MessageStatus) -> ApiStatus {
    match status {
        MessageStatus::Pending => ApiStatus::Pending,
        MessageStatus::Sent => ApiStatus::Sent,
        MessageStatus::Delivered => ApiStatus::Delivered,
        MessageStatus::Failed => ApiStatus::Failed,
    }
}

/// Sorts like the store's order key: the HLC as fixed-width hex, then the message id.
pub fn order(message: &Message) -> String {
    format!("{:016x}-{}", message.hlc.raw(), message.message_id)
}

/// The view of a message; the sender's name comes from the store (empty if unknown).
pub async fn message_view(store: &Store, message: &Message) -> MessageView {
    let sender = message.sender.node_id();
    let local = store.local_identity().await.ok().flatten();
    let outgoing = match (&sender, &local) {
        (Some(s), Some(l)) => *s == l.node_id,
        _ => false,
    };
    let sender_name = match (&sender, &local) {
        (Some(_), Some(l)) if outgoing => l.display_name.clone(),
        (Some(s), _) => store
            .peer(s.clone())
            .await
            .ok()
            .flatten()
            .map(|p| p.display_name)
            .unwrap_or_default(),
        _ => String::new(),
    };
    MessageView {
        id: message.message_id.to_string(),
        conversation_id: message.conversation_id.to_string(),
        sender: message.sender.as_str().to_string(),
        sender_name,
        outgoing,
        text: message.body.clone(),
        status: status(message.status),
        sent_at: u64::try_from(message.sent_at).unwrap_or(0),
        order: order(message),
    }
}
