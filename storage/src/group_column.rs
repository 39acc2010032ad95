//! How a group's state is kept in `groups.state` (docs/STORAGE.md): JSON in the
//! store's own types. Its text equals what schema v4 and v5 databases hold — which
//! happened to be the wire's `group.upsert` payload then — and the two may now change
//! apart (a migration here, a protocol version there). Since group changes are
//! signed, each change may carry its editor's signature (`sig`, hex) and the state its editors' keys
//! (`keys`); both are optional so older texts still read (as unsigned changes).

use api_types::NodeId;
use chat_core::signing::{hex, signature_from_hex, Signature};
use chat_core::{AuthorKeys, DissolvedStamp, GroupState, MemberEntry, Register};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateColumn {
    global_group_id: String,
    owner: NodeId,
    names: Vec<RegisterColumn>,
    announcements: Vec<RegisterColumn>,
    members: Vec<MemberColumn>,
    dissolved: Option<StampColumn>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<KeysColumn>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysColumn {
    id: NodeId,
    keys: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterColumn {
    hlc: u64,
    editor: NodeId,
    value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberColumn {
    id: NodeId,
    present: bool,
    hlc: u64,
    editor: NodeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StampColumn {
    hlc: u64,
    editor: NodeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
}

fn sig_text(sig: &Option<Signature>) -> Option<String> {
    sig.as_ref().map(|s| hex(s))
}

fn parse_sig(text: Option<String>) -> Result<Option<Signature>, String> {
    text.map(|t| signature_from_hex(&t).ok_or_else(|| "a bad signature".to_string()))
        .transpose()
}

pub(crate) fn encode(state: &GroupState) -> String {
    let registers = |rs: &[Register]| {
        rs.iter()
            .map(|r| RegisterColumn {
                hlc: r.hlc,
                editor: r.editor.clone(),
                value: r.value.clone(),
                sig: sig_text(&r.sig),
            })
            .collect()
    };
    let column = StateColumn {
        global_group_id: state.global_group_id.to_string(),
        owner: state.owner.clone(),
        names: registers(&state.names),
        announcements: registers(&state.announcements),
        members: state
            .members
            .iter()
            .map(|m| MemberColumn {
                id: m.id.clone(),
                present: m.present,
                hlc: m.hlc,
                editor: m.editor.clone(),
                sig: sig_text(&m.sig),
            })
            .collect(),
        dissolved: state.dissolved.as_ref().map(|d| StampColumn {
            hlc: d.hlc,
            editor: d.editor.clone(),
            sig: sig_text(&d.sig),
        }),
        keys: state
            .keys
            .iter()
            .map(|(id, keys)| KeysColumn {
                id: id.clone(),
                keys: keys.to_hex(),
            })
            .collect(),
    };
    // Ids, integers and strings: serialising cannot fail.
    serde_json::to_string(&column).unwrap_or_default()
}

pub(crate) fn decode(text: &str) -> Result<GroupState, String> {
    let column: StateColumn = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let registers = |rs: Vec<RegisterColumn>| {
        rs.into_iter()
            .map(|r| {
                Ok(Register {
                    hlc: r.hlc,
                    editor: r.editor,
                    value: r.value,
                    sig: parse_sig(r.sig)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()
    };
    Ok(GroupState {
        global_group_id: column
            .global_group_id
            .parse()
            .map_err(|_| "global_group_id is not a ULID".to_string())?,
        owner: column.owner,
        names: registers(column.names)?,
        announcements: registers(column.announcements)?,
        members: column
            .members
            .into_iter()
            .map(|m| {
                Ok(MemberEntry {
                    id: m.id,
                    present: m.present,
                    hlc: m.hlc,
                    editor: m.editor,
                    sig: parse_sig(m.sig)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        dissolved: match column.dissolved {
            Some(d) => Some(DissolvedStamp {
                hlc: d.hlc,
                editor: d.editor,
                sig: parse_sig(d.sig)?,
            }),
            None => None,
        },
        keys: column
            .keys
            .into_iter()
            .map(|k| {
                AuthorKeys::from_hex(&k.keys)
                    .map(|keys| (k.id, keys))
                    .ok_or_else(|| "bad editor keys".to_string())
            })
            .collect::<Result<Vec<_>, String>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::{GlobalGroupId, Stamp};

    fn node(n: u8) -> NodeId {
        format!("01HZZZZZZZZZZZZZZZZZZZZZ{n:02}").parse().unwrap()
    }

    #[test]
    fn states_round_trip_and_unknown_fields_are_refused() {
        let stamp = |hlc| Stamp {
            hlc,
            editor: node(0),
        };
        let mut state =
            GroupState::create(GlobalGroupId::new(), &stamp(10), "团队", "", &[node(1)]);
        state.set_announcement("公告", &stamp(11));
        state.dissolve(&stamp(12));
        let text = encode(&state);
        assert_eq!(decode(&text), Ok(state));
        assert!(decode(&text.replacen('{', "{\"x\":1,", 1)).is_err());
    }

    #[test]
    fn signed_states_round_trip_with_their_signatures_and_keys() {
        let owner = chat_core::SecretSigner::from_number(7);
        let stamp = |hlc| Stamp {
            hlc,
            editor: chat_core::Signer::node_id(&owner),
        };
        let mut state =
            GroupState::create(GlobalGroupId::new(), &stamp(10), "团队", "公告", &[node(1)]);
        state.dissolve(&stamp(12));
        assert_eq!(state.sign_own(&owner), 5);
        let text = encode(&state);
        let back = decode(&text).unwrap();
        assert_eq!(back, state);
        back.check_received().unwrap();
    }
}
