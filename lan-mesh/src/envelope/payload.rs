//! The business payloads carried in envelopes, and how the outbox stores them.
//!
//! The outbox keeps `kind` and the payload bytes; the envelope around them (id,
//! sender, receiver, time, signature) is built when it is sent, from the outbox row.

use chat_core::{GlobalGroupId, GroupState, Message, MessageId};
use serde::{Deserialize, Serialize};

use super::{EnvelopeError, GroupStateWire};

/// An envelope's kind and payload as the outbox keeps them until it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub kind: &'static str,
    pub payload: Vec<u8>,
}

/// `dm.send`: one direct message, exactly as the sender stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmPayload {
    pub message_id: String,
    pub text: String,
    /// The sender's wall clock, Unix ms.
    pub sent_at: i64,
    /// The sender's hybrid logical clock stamp: the message's place in the conversation.
    pub hlc: u64,
    /// The author's Ed25519 signature of the message (128 hex digits; docs/PROTOCOL.md,
    /// "Signatures"), checked against the link's keys.
    pub sig: String,
}

/// A message's signature as sent: hex, or empty for a message stored unsigned (the
/// receiver refuses it as forged).
pub(crate) fn sig_text(message: &Message) -> String {
    message
        .signature
        .map(|s| chat_core::signing::hex(&s.sig))
        .unwrap_or_default()
}

pub const KIND_DM_SEND: &str = "dm.send";

impl DmPayload {
    pub fn from_message(message: &Message) -> Self {
        DmPayload {
            message_id: message.message_id.to_string(),
            text: message.body.clone(),
            sent_at: message.sent_at,
            hlc: message.hlc.raw(),
            sig: sig_text(message),
        }
    }

    pub fn message_id(&self) -> Result<MessageId, EnvelopeError> {
        self.message_id
            .parse()
            .map_err(|_| EnvelopeError::Invalid("message_id is not a ULID"))
    }
}

/// What the store puts in the outbox beside a new DM (the encoder of
/// `Store::send_message_queued`).
pub fn dm_outgoing(message: &Message) -> Outgoing {
    Outgoing {
        kind: KIND_DM_SEND,
        // Serialising a struct of strings and integers cannot fail.
        payload: serde_json::to_vec(&DmPayload::from_message(message)).unwrap_or_default(),
    }
}

pub const KIND_GROUP_UPSERT: &str = "group.upsert";
pub const KIND_GROUP_SEND: &str = "group.send";

/// What the store puts in the outbox for every member when a group is created or
/// edited (`Store::create_group` / `edit_group`'s encoder).
pub fn group_upsert_outgoing(state: &GroupState) -> Outgoing {
    Outgoing {
        kind: KIND_GROUP_UPSERT,
        // Strings, integers and a list of strings: serialising cannot fail.
        payload: serde_json::to_vec(&GroupStateWire::from_state(state)).unwrap_or_default(),
    }
}

/// `group.send`: one group message, exactly as its author stored it. Not kept in the
/// outbox: built from the message row for each member its delivery cursor owes it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSendPayload {
    pub global_group_id: String,
    pub message_id: String,
    pub text: String,
    pub sent_at: i64,
    pub hlc: u64,
    /// As `dm.send`'s.
    pub sig: String,
}

impl GroupSendPayload {
    pub fn from_message(group: &GlobalGroupId, message: &Message) -> Self {
        GroupSendPayload {
            global_group_id: group.to_string(),
            message_id: message.message_id.to_string(),
            text: message.body.clone(),
            sent_at: message.sent_at,
            hlc: message.hlc.raw(),
            sig: sig_text(message),
        }
    }

    pub fn global_group_id(&self) -> Result<GlobalGroupId, EnvelopeError> {
        self.global_group_id
            .parse()
            .map_err(|_| EnvelopeError::Invalid("global_group_id is not a ULID"))
    }

    pub fn message_id(&self) -> Result<MessageId, EnvelopeError> {
        self.message_id
            .parse()
            .map_err(|_| EnvelopeError::Invalid("message_id is not a ULID"))
    }
}
