//! How a group's state is kept in `groups.state` (docs/STORAGE.md): JSON in the
//! store's own types. Its text equals what schema v4 and v5 databases hold — which
//! happened to be the wire's `group.upsert` payload then — and the two may now change
//! apart (a migration here, a protocol version there).

use api_types::NodeId;
use chat_core::{DissolvedStamp, GroupState, MemberEntry, Register};
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
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterColumn {
    hlc: u64,
    editor: NodeId,
    value: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberColumn {
    id: NodeId,
    present: bool,
    hlc: u64,
    editor: NodeId,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StampColumn {
    hlc: u64,
    editor: NodeId,
}

pub(crate) fn encode(state: &GroupState) -> String {
    let registers = |rs: &[Register]| {
        rs.iter()
            .map(|r| RegisterColumn {
                hlc: r.hlc,
                editor: r.editor.clone(),
                value: r.value.clone(),
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
            })
            .collect(),
        dissolved: state.dissolved.as_ref().map(|d| StampColumn {
            hlc: d.hlc,
            editor: d.editor.clone(),
        }),
    };
    // Ids, integers and strings: serialising cannot fail.
    serde_json::to_string(&column).unwrap_or_default()
}

pub(crate) fn decode(text: &str) -> Result<GroupState, String> {
    let column: StateColumn = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let registers = |rs: Vec<RegisterColumn>| {
        rs.into_iter()
            .map(|r| Register {
                hlc: r.hlc,
                editor: r.editor,
                value: r.value,
            })
            .collect()
    };
    Ok(GroupState {
        global_group_id: column
            .global_group_id
            .parse()
            .map_err(|_| "global_group_id is not a ULID".to_string())?,
        owner: column.owner,
        names: registers(column.names),
        announcements: registers(column.announcements),
        members: column
            .members
            .into_iter()
            .map(|m| MemberEntry {
                id: m.id,
                present: m.present,
                hlc: m.hlc,
                editor: m.editor,
            })
            .collect(),
        dissolved: column.dissolved.map(|d| DissolvedStamp {
            hlc: d.hlc,
            editor: d.editor,
        }),
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
}
