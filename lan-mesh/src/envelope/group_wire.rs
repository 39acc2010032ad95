//! `group.upsert`'s payload: a group's whole state as it travels (docs/PROTOCOL.md,
//! "Groups"). Its own type, so the wire format and the database's column can change
//! apart; `chat_core::GroupState` is what both convert to and from.

use api_types::NodeId;
use chat_core::{DissolvedStamp, GroupState, MemberEntry, Register};
use serde::{Deserialize, Serialize};

use super::EnvelopeError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupStateWire {
    pub global_group_id: String,
    pub owner: NodeId,
    pub names: Vec<RegisterWire>,
    pub announcements: Vec<RegisterWire>,
    pub members: Vec<MemberWire>,
    pub dissolved: Option<StampWire>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterWire {
    pub hlc: u64,
    pub editor: NodeId,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberWire {
    pub id: NodeId,
    pub present: bool,
    pub hlc: u64,
    pub editor: NodeId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampWire {
    pub hlc: u64,
    pub editor: NodeId,
}

impl GroupStateWire {
    pub fn from_state(state: &GroupState) -> Self {
        let registers = |rs: &[Register]| {
            rs.iter()
                .map(|r| RegisterWire {
                    hlc: r.hlc,
                    editor: r.editor.clone(),
                    value: r.value.clone(),
                })
                .collect()
        };
        GroupStateWire {
            global_group_id: state.global_group_id.to_string(),
            owner: state.owner.clone(),
            names: registers(&state.names),
            announcements: registers(&state.announcements),
            members: state
                .members
                .iter()
                .map(|m| MemberWire {
                    id: m.id.clone(),
                    present: m.present,
                    hlc: m.hlc,
                    editor: m.editor.clone(),
                })
                .collect(),
            dissolved: state.dissolved.as_ref().map(|d| StampWire {
                hlc: d.hlc,
                editor: d.editor.clone(),
            }),
        }
    }

    /// The state it carries, checked against the rules every member applies alike.
    pub fn into_state(self) -> Result<GroupState, EnvelopeError> {
        let registers = |rs: Vec<RegisterWire>| {
            rs.into_iter()
                .map(|r| Register {
                    hlc: r.hlc,
                    editor: r.editor,
                    value: r.value,
                })
                .collect()
        };
        let state = GroupState {
            global_group_id: self
                .global_group_id
                .parse()
                .map_err(|_| EnvelopeError::Invalid("group.upsert payload"))?,
            owner: self.owner,
            names: registers(self.names),
            announcements: registers(self.announcements),
            members: self
                .members
                .into_iter()
                .map(|m| MemberEntry {
                    id: m.id,
                    present: m.present,
                    hlc: m.hlc,
                    editor: m.editor,
                })
                .collect(),
            dissolved: self.dissolved.map(|d| DissolvedStamp {
                hlc: d.hlc,
                editor: d.editor,
            }),
        };
        state.validate().map_err(|e| EnvelopeError::Invalid(e.0))?;
        Ok(state)
    }
}
