//! The business payloads carried in envelopes, and how the outbox stores them.
//!
//! The outbox keeps `kind` and the payload bytes; the envelope around them (id,
//! sender, receiver, time, signature) is built when it is sent, from the outbox row.

use api_types::NodeId;
use serde::{Deserialize, Serialize};
use storage::{
    GlobalGroupId, GroupRevision, GroupState, Message, MessageId, OutgoingEnvelope,
    MAX_ANNOUNCEMENT_CHARS, MAX_GROUP_MEMBERS, MAX_NAME_CHARS,
};

use super::EnvelopeError;

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
}

pub const KIND_DM_SEND: &str = "dm.send";

impl DmPayload {
    pub fn from_message(message: &Message) -> Self {
        DmPayload {
            message_id: message.message_id.to_string(),
            text: message.body.clone(),
            sent_at: message.sent_at,
            hlc: message.hlc.raw(),
        }
    }

    pub fn message_id(&self) -> Result<MessageId, EnvelopeError> {
        self.message_id
            .parse()
            .map_err(|_| EnvelopeError::Invalid("message_id is not a ULID"))
    }
}

/// What the store puts in the outbox beside a new DM (`Store::send_message`'s encoder).
pub fn dm_outgoing(message: &Message) -> OutgoingEnvelope {
    OutgoingEnvelope {
        kind: KIND_DM_SEND.to_string(),
        // Serialising a struct of strings and integers cannot fail.
        payload: serde_json::to_vec(&DmPayload::from_message(message)).unwrap_or_default(),
    }
}

pub const KIND_GROUP_UPSERT: &str = "group.upsert";
pub const KIND_GROUP_SEND: &str = "group.send";

/// The merge version inside `group.upsert`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevisionPayload {
    pub revision: u64,
    pub editor: String,
}

/// `group.upsert`: a group's whole state at one revision (docs/PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUpsertPayload {
    pub global_group_id: String,
    pub name: String,
    pub announcement: String,
    pub owner: String,
    /// Every member's node id, the owner included; sorted, no duplicates.
    pub members: Vec<String>,
    pub revision: RevisionPayload,
}

impl GroupUpsertPayload {
    pub fn from_state(state: &GroupState) -> Self {
        GroupUpsertPayload {
            global_group_id: state.global_group_id.to_string(),
            name: state.name.clone(),
            announcement: state.announcement.clone(),
            owner: state.owner.to_string(),
            members: state.members.iter().map(ToString::to_string).collect(),
            revision: RevisionPayload {
                revision: state.revision.revision,
                editor: state.revision.editor.to_string(),
            },
        }
    }

    /// The state it carries, checked field by field.
    pub fn state(&self) -> Result<GroupState, EnvelopeError> {
        let global_group_id: GlobalGroupId = self
            .global_group_id
            .parse()
            .map_err(|_| EnvelopeError::Invalid("global_group_id is not a ULID"))?;
        let name = self.name.trim();
        if name.is_empty() {
            return Err(EnvelopeError::Invalid("empty group name"));
        }
        if self.name.chars().count() > MAX_NAME_CHARS || self.name.chars().any(char::is_control) {
            return Err(EnvelopeError::Invalid("bad group name"));
        }
        if self.announcement.chars().count() > MAX_ANNOUNCEMENT_CHARS {
            return Err(EnvelopeError::Invalid("announcement too long"));
        }
        let owner: NodeId = self
            .owner
            .parse()
            .map_err(|_| EnvelopeError::Invalid("owner is not a node id"))?;
        if self.members.is_empty() || self.members.len() > MAX_GROUP_MEMBERS {
            return Err(EnvelopeError::Invalid("bad member count"));
        }
        let mut members = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let id: NodeId = member
                .parse()
                .map_err(|_| EnvelopeError::Invalid("a member is not a node id"))?;
            members.push(id);
        }
        let count = members.len();
        members.sort();
        members.dedup();
        if members.len() != count {
            return Err(EnvelopeError::Invalid("duplicate members"));
        }
        if !members.contains(&owner) {
            return Err(EnvelopeError::Invalid("the owner is not a member"));
        }
        if self.revision.revision == 0 {
            return Err(EnvelopeError::Invalid("revision 0"));
        }
        let editor: NodeId = self
            .revision
            .editor
            .parse()
            .map_err(|_| EnvelopeError::Invalid("editor is not a node id"))?;
        Ok(GroupState {
            global_group_id,
            name: self.name.clone(),
            announcement: self.announcement.clone(),
            owner,
            members,
            revision: GroupRevision {
                revision: self.revision.revision,
                editor,
            },
        })
    }
}

/// What the store puts in the outbox for every member when a group is created or
/// edited (`Store::create_group` / `edit_group`'s encoder).
pub fn group_upsert_outgoing(state: &GroupState) -> OutgoingEnvelope {
    OutgoingEnvelope {
        kind: KIND_GROUP_UPSERT.to_string(),
        // Strings, integers and a list of strings: serialising cannot fail.
        payload: serde_json::to_vec(&GroupUpsertPayload::from_state(state)).unwrap_or_default(),
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
}

impl GroupSendPayload {
    pub fn from_message(group: &GlobalGroupId, message: &Message) -> Self {
        GroupSendPayload {
            global_group_id: group.to_string(),
            message_id: message.message_id.to_string(),
            text: message.body.clone(),
            sent_at: message.sent_at,
            hlc: message.hlc.raw(),
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
