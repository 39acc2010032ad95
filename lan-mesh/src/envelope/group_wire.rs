//! `group.upsert`'s payload: a group's whole state as it travels (docs/PROTOCOL.md,
//! "Groups"). Its own type, so the wire format and the database's column can change
//! apart; `chat_core::GroupState` is what both convert to and from.

use api_types::NodeId;
use chat_core::signing::{hex, signature_from_hex, Signature};
use chat_core::{AuthorKeys, DissolvedStamp, GroupState, MemberEntry, Register};
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
    /// The editors' public keys (128 hex digits: X25519 then Ed25519), by node id.
    pub keys: Vec<KeysWire>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysWire {
    pub id: NodeId,
    pub keys: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterWire {
    pub hlc: u64,
    pub editor: NodeId,
    pub value: String,
    /// The editor's Ed25519 signature of the change, 128 hex digits.
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberWire {
    pub id: NodeId,
    pub present: bool,
    pub hlc: u64,
    pub editor: NodeId,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampWire {
    pub hlc: u64,
    pub editor: NodeId,
    pub sig: String,
}

impl GroupStateWire {
    pub fn from_state(state: &GroupState) -> Self {
        let registers = |rs: &[Register]| {
            rs.iter()
                .map(|r| RegisterWire {
                    hlc: r.hlc,
                    editor: r.editor.clone(),
                    value: r.value.clone(),
                    sig: sig_text(&r.sig),
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
                    sig: sig_text(&m.sig),
                })
                .collect(),
            dissolved: state.dissolved.as_ref().map(|d| StampWire {
                hlc: d.hlc,
                editor: d.editor.clone(),
                sig: sig_text(&d.sig),
            }),
            keys: state
                .keys
                .iter()
                .map(|(id, keys)| KeysWire {
                    id: id.clone(),
                    keys: keys.to_hex(),
                })
                .collect(),
        }
    }

    /// The state it carries, checked against the rules every member applies alike and
    /// every change against its editor's signature. A state that breaks a rule or
    /// carries a change its editor did not sign is `Forged`.
    pub fn into_state(self) -> Result<GroupState, EnvelopeError> {
        let bad = || EnvelopeError::Invalid("group.upsert payload");
        let registers = |rs: Vec<RegisterWire>| {
            rs.into_iter()
                .map(|r| {
                    Ok(Register {
                        hlc: r.hlc,
                        editor: r.editor,
                        value: r.value,
                        sig: Some(parse_sig(&r.sig)?),
                    })
                })
                .collect::<Result<Vec<_>, EnvelopeError>>()
        };
        let state = GroupState {
            global_group_id: self.global_group_id.parse().map_err(|_| bad())?,
            owner: self.owner,
            names: registers(self.names)?,
            announcements: registers(self.announcements)?,
            members: self
                .members
                .into_iter()
                .map(|m| {
                    Ok(MemberEntry {
                        id: m.id,
                        present: m.present,
                        hlc: m.hlc,
                        editor: m.editor,
                        sig: Some(parse_sig(&m.sig)?),
                    })
                })
                .collect::<Result<Vec<_>, EnvelopeError>>()?,
            dissolved: match self.dissolved {
                Some(d) => Some(DissolvedStamp {
                    hlc: d.hlc,
                    editor: d.editor,
                    sig: Some(parse_sig(&d.sig)?),
                }),
                None => None,
            },
            keys: self
                .keys
                .into_iter()
                .map(|k| Ok((k.id, AuthorKeys::from_hex(&k.keys).ok_or_else(bad)?)))
                .collect::<Result<Vec<_>, EnvelopeError>>()?,
        };
        state.check_received().map_err(|e| {
            if e.is_forgery() {
                EnvelopeError::Forged(e.0)
            } else {
                EnvelopeError::Invalid(e.0)
            }
        })?;
        Ok(state)
    }
}

fn sig_text(sig: &Option<Signature>) -> String {
    sig.as_ref().map(|s| hex(s)).unwrap_or_default()
}

fn parse_sig(text: &str) -> Result<Signature, EnvelopeError> {
    signature_from_hex(text).ok_or(EnvelopeError::Forged("an unsigned change"))
}
