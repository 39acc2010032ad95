//! `receipt.read`: "I have read this conversation up to here" (docs/PROTOCOL.md,
//! "Read receipts").
//!
//! One envelope per conversation and member covers every message up to a position
//! (`hlc`, `message_id`: the conversation's order key), so reading fifty messages costs
//! one envelope per member, not fifty. Positions only grow: applying one twice, or an
//! older one after a newer one, changes nothing, so resends and reordering are harmless.

use chat_core::{GlobalGroupId, Hlc, MessageId, OrderKey};
use serde::{Deserialize, Serialize};

use super::{EnvelopeError, Outgoing};
use crate::ports::InboundEffect;

pub const KIND_READ_RECEIPT: &str = "receipt.read";

/// The payload. `global_group_id` absent (or `null`) = the DM between the envelope's
/// sender and receiver; that is the only DM it can speak of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadReceiptPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_group_id: Option<String>,
    /// The read position: the newest message read, by its place in the conversation.
    pub hlc: u64,
    pub message_id: String,
}

/// What the store puts in the outbox when this node has read a conversation up to `up_to`.
pub fn read_receipt_outgoing(group: Option<&GlobalGroupId>, up_to: &OrderKey) -> Outgoing {
    let payload = ReadReceiptPayload {
        global_group_id: group.map(ToString::to_string),
        hlc: up_to.hlc.raw(),
        message_id: up_to.message_id.to_string(),
    };
    Outgoing {
        kind: KIND_READ_RECEIPT,
        // Strings and an integer: serialising cannot fail.
        payload: serde_json::to_vec(&payload).unwrap_or_default(),
    }
}

/// The effect of a `receipt.read` payload, checked.
pub(super) fn effect(payload: &serde_json::Value) -> Result<InboundEffect, EnvelopeError> {
    let receipt: ReadReceiptPayload = serde_json::from_value(payload.clone())
        .map_err(|_| EnvelopeError::Invalid("receipt.read payload"))?;
    let global_group_id = match &receipt.global_group_id {
        None => None,
        Some(text) => Some(
            text.parse::<GlobalGroupId>()
                .map_err(|_| EnvelopeError::Invalid("global_group_id is not a ULID"))?,
        ),
    };
    let message_id: MessageId = receipt
        .message_id
        .parse()
        .map_err(|_| EnvelopeError::Invalid("message_id is not a ULID"))?;
    if receipt.hlc == 0 {
        return Err(EnvelopeError::Invalid("receipt.read hlc 0"));
    }
    Ok(InboundEffect::ReadReceipt {
        global_group_id,
        up_to: OrderKey {
            hlc: Hlc::from_raw(receipt.hlc),
            message_id,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> OrderKey {
        OrderKey {
            hlc: Hlc::from_raw(42 << 16),
            message_id: MessageId::new(),
        }
    }

    #[test]
    fn receipts_round_trip_for_dms_and_groups() {
        let up_to = key();
        let dm = read_receipt_outgoing(None, &up_to);
        assert_eq!(dm.kind, KIND_READ_RECEIPT);
        let value: serde_json::Value = serde_json::from_slice(&dm.payload).unwrap();
        assert!(value.get("global_group_id").is_none(), "{value}");
        assert_eq!(
            effect(&value),
            Ok(InboundEffect::ReadReceipt {
                global_group_id: None,
                up_to
            })
        );
        let group = GlobalGroupId::new();
        let out = read_receipt_outgoing(Some(&group), &up_to);
        let value: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(
            effect(&value),
            Ok(InboundEffect::ReadReceipt {
                global_group_id: Some(group),
                up_to
            })
        );
    }

    #[test]
    fn bad_receipts_are_refused_with_a_reason() {
        let id = MessageId::new().to_string();
        for bad in [
            json!({"hlc": 5}),
            json!({"hlc": 5, "message_id": "nope"}),
            json!({"hlc": 0, "message_id": id}),
            json!({"hlc": -1, "message_id": id}),
            json!({"hlc": 5, "message_id": id, "global_group_id": "x"}),
            json!({"hlc": 5, "message_id": id, "extra": 1}),
        ] {
            assert!(effect(&bad).is_err(), "{bad}");
        }
        assert!(effect(&json!({"hlc": 5, "message_id": id, "global_group_id": null})).is_ok());
    }
}
