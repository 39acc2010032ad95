//! Read receipts on the delivery path: which inbound outcomes the node hears of.
//!
//! Receipts are ordinary outbox envelopes (durable, retried until acked, deduped by
//! the receiver), so delivery needs no receipt logic of its own beyond telling the
//! node what arrived: a moved read position (statuses to refresh) and a refused
//! receipt (counted: a node speaking of a conversation it is not in).

use api_types::NodeId;

use super::DeliveryEvent;
use crate::envelope::{Envelope, KIND_READ_RECEIPT};
use crate::ports::InboundOutcome;

/// The event for an applied inbound envelope, if it was a receipt that moved its
/// sender's read position.
pub(super) fn applied(peer: &NodeId, outcome: &InboundOutcome) -> Option<DeliveryEvent> {
    match outcome {
        InboundOutcome::ReadReceipt {
            conversation_id,
            up_to,
            moved: true,
        } => Some(DeliveryEvent::ReadReceipt {
            conversation_id: conversation_id.clone(),
            reader: peer.clone(),
            up_to: *up_to,
        }),
        _ => None,
    }
}

/// The event for an envelope the store refused, if it was a receipt.
pub(super) fn refused(peer: &NodeId, envelope: &Envelope) -> Option<DeliveryEvent> {
    (envelope.kind == KIND_READ_RECEIPT)
        .then(|| DeliveryEvent::ReceiptRefused { peer: peer.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::{ConversationId, EnvelopeId, Hlc, MessageId, OrderKey};

    fn peer() -> NodeId {
        "01HZZZZZZZZZZZZZZZZZZZZZ01".parse().unwrap()
    }

    #[test]
    fn only_a_moved_position_is_told_and_only_receipts_count_as_refused() {
        let up_to = OrderKey {
            hlc: Hlc::from_raw(9 << 16),
            message_id: MessageId::new(),
        };
        let conversation_id = ConversationId::dm(&peer());
        let moved = InboundOutcome::ReadReceipt {
            conversation_id: conversation_id.clone(),
            up_to,
            moved: true,
        };
        assert!(matches!(
            applied(&peer(), &moved),
            Some(DeliveryEvent::ReadReceipt { reader, .. }) if reader == peer()
        ));
        let stale = InboundOutcome::ReadReceipt {
            conversation_id,
            up_to,
            moved: false,
        };
        assert!(applied(&peer(), &stale).is_none());
        assert!(applied(&peer(), &InboundOutcome::Duplicate).is_none());

        let mut envelope = Envelope {
            envelope_id: EnvelopeId::new(),
            kind: KIND_READ_RECEIPT.into(),
            from_peer_id: peer(),
            to_peer_id: peer(),
            ts: 0,
            payload: serde_json::Value::Null,
        };
        assert!(refused(&peer(), &envelope).is_some());
        envelope.kind = "dm.send".into();
        assert!(refused(&peer(), &envelope).is_none());
    }
}
