//! Groups: their state, the link from `global_group_id` to the local group and
//! conversation, and the merge that makes concurrent edits converge.

use api_types::NodeId;
use rusqlite::{params, Connection, OptionalExtension};

use crate::chat::{validate_name, MAX_PAGE};
use crate::error::{StoreError, StoreResult};
use crate::ids::{ConversationId, GlobalGroupId};
use crate::model::{
    Group, GroupEdit, GroupRevision, GroupState, NewGroup, OutgoingEnvelope, UnixMs,
    MAX_ANNOUNCEMENT_CHARS, MAX_GROUP_MEMBERS,
};
use crate::outbox;
use crate::peers;
use crate::rows;
use crate::writer::WriterState;

pub(crate) fn normalise_members(members: &[NodeId], also: &NodeId) -> StoreResult<Vec<NodeId>> {
    let mut list: Vec<NodeId> = members
        .iter()
        .cloned()
        .chain(std::iter::once(also.clone()))
        .collect();
    list.sort();
    list.dedup();
    if list.len() > MAX_GROUP_MEMBERS {
        return Err(StoreError::invalid(
            "members",
            format!("more than {MAX_GROUP_MEMBERS}"),
        ));
    }
    Ok(list)
}

fn validate_state(state: &mut GroupState) -> StoreResult<()> {
    state.name = validate_name("name", &state.name)?;
    if state.name.is_empty() {
        return Err(StoreError::invalid("name", "a group needs a name"));
    }
    if state.announcement.chars().count() > MAX_ANNOUNCEMENT_CHARS {
        return Err(StoreError::invalid(
            "announcement",
            format!("longer than {MAX_ANNOUNCEMENT_CHARS} characters"),
        ));
    }
    state.members = normalise_members(&state.members, &state.owner)?;
    Ok(())
}

pub(crate) fn group(conn: &Connection, id: &GlobalGroupId) -> StoreResult<Option<Group>> {
    let head = conn
        .prepare_cached(
            "SELECT g.group_id, g.name, g.announcement, g.owner_id, g.revision, g.revision_editor,
                    g.updated_at, l.conversation_id
             FROM groups g JOIN group_links l ON l.group_id = g.group_id
             WHERE g.global_group_id = ?1",
        )?
        .query_row([id.to_string()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                rows::parse::<NodeId>(row, 3)?,
                row.get::<_, i64>(4)?,
                rows::parse::<NodeId>(row, 5)?,
                row.get::<_, i64>(6)?,
                rows::parse::<ConversationId>(row, 7)?,
            ))
        })
        .optional()?;
    let Some((local_id, name, announcement, owner, revision, editor, updated_at, conversation_id)) =
        head
    else {
        return Ok(None);
    };
    let members = conn
        .prepare_cached(
            "SELECT member_id FROM group_members WHERE group_id = ?1 ORDER BY member_id",
        )?
        .query_map([&local_id], |row| rows::parse::<NodeId>(row, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(Group {
        local_id,
        conversation_id,
        state: GroupState {
            global_group_id: *id,
            name,
            announcement,
            owner,
            members,
            revision: GroupRevision {
                revision: u64::try_from(revision).unwrap_or(0),
                editor,
            },
        },
        updated_at,
    }))
}

pub(crate) fn groups(conn: &Connection) -> StoreResult<Vec<Group>> {
    let ids = conn
        .prepare_cached(
            "SELECT global_group_id FROM groups ORDER BY name COLLATE NOCASE, global_group_id",
        )?
        .query_map([], |row| rows::parse::<GlobalGroupId>(row, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut list = Vec::with_capacity(ids.len());
    for id in ids {
        list.extend(group(conn, &id)?);
    }
    Ok(list)
}

/// Writes a group state (new or replacing), its members, conversation and link, and
/// brings the delivery cursors in line with the members.
fn write_state(
    conn: &Connection,
    writer: &mut WriterState,
    state: &GroupState,
    now: UnixMs,
) -> StoreResult<Group> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let global = state.global_group_id.to_string();
    let revision = i64::try_from(state.revision.revision)
        .map_err(|_| StoreError::invalid("revision", "out of range"))?;
    let existing: Option<String> = conn
        .prepare_cached("SELECT group_id FROM groups WHERE global_group_id = ?1")?
        .query_row([&global], |r| r.get(0))
        .optional()?;
    let local_id = existing.unwrap_or_else(|| writer.next_ulid().to_string());
    conn.prepare_cached(
        "INSERT INTO groups (group_id, global_group_id, name, announcement, owner_id, revision,
                             revision_editor, updated_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (group_id) DO UPDATE SET name = excluded.name,
             announcement = excluded.announcement, owner_id = excluded.owner_id,
             revision = excluded.revision, revision_editor = excluded.revision_editor,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        local_id,
        global,
        state.name,
        state.announcement,
        state.owner.as_str(),
        revision,
        state.revision.editor.as_str(),
        now
    ])?;
    conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?
        .execute([&local_id])?;
    for member in &state.members {
        conn.prepare_cached("INSERT INTO group_members (group_id, member_id) VALUES (?1, ?2)")?
            .execute(params![local_id, member.as_str()])?;
        if *member != local {
            peers::ensure_peer(conn, writer, member)?;
        }
    }
    let conversation_id = ConversationId::group(&state.global_group_id);
    conn.prepare_cached(
        "INSERT INTO conversations (conversation_id, kind, group_id, created_at)
         VALUES (?1, 'group', ?2, ?3) ON CONFLICT DO NOTHING",
    )?
    .execute(params![conversation_id.as_str(), local_id, now])?;
    conn.prepare_cached(
        "INSERT INTO group_links (global_group_id, group_id, conversation_id, revision, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (global_group_id) DO UPDATE SET revision = excluded.revision,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        global,
        local_id,
        conversation_id.as_str(),
        revision,
        now
    ])?;
    sync_cursors(
        conn,
        writer,
        &conversation_id,
        &local_id,
        state.members.contains(&local),
        now,
    )?;
    group(conn, &state.global_group_id)?.ok_or_else(|| StoreError::not_found("group", global))
}

/// One cursor per other member while this node is a member. A new member's cursor
/// starts after everything stamped so far: it gets messages sent from now on, not the
/// backlog (`~` sorts after every ULID character).
fn sync_cursors(
    conn: &Connection,
    writer: &WriterState,
    conversation_id: &ConversationId,
    local_id: &str,
    local_is_member: bool,
    now: UnixMs,
) -> StoreResult<()> {
    let local = writer.local.as_ref().ok_or(StoreError::NoIdentity)?;
    if !local_is_member {
        conn.prepare_cached("DELETE FROM group_delivery WHERE conversation_id = ?1")?
            .execute([conversation_id.as_str()])?;
        return Ok(());
    }
    conn.prepare_cached(
        "DELETE FROM group_delivery WHERE conversation_id = ?1
           AND peer_id NOT IN (SELECT member_id FROM group_members WHERE group_id = ?2)",
    )?
    .execute(params![conversation_id.as_str(), local_id])?;
    conn.prepare_cached(
        "INSERT INTO group_delivery (conversation_id, peer_id, acked_hlc, acked_message_id, next_retry_at)
         SELECT ?1, member_id, ?3, '~', ?4 FROM group_members WHERE group_id = ?2 AND member_id <> ?5
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        conversation_id.as_str(),
        local_id,
        writer.clock.to_sql(),
        now,
        local.as_str()
    ])?;
    Ok(())
}

/// Tells every member (old and new, except this node) about the group's new state.
fn announce(
    conn: &Connection,
    writer: &mut WriterState,
    state: &GroupState,
    also: &[NodeId],
    envelope: &OutgoingEnvelope,
    now: UnixMs,
) -> StoreResult<()> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let mut targets: Vec<&NodeId> = state
        .members
        .iter()
        .chain(also)
        .filter(|m| **m != local)
        .collect();
    targets.sort();
    targets.dedup();
    for peer in targets {
        if peers::is_blocked(conn, peer)? {
            continue;
        }
        outbox::enqueue(conn, writer, peer, envelope, None, now)?;
    }
    Ok(())
}

pub(crate) fn create(
    conn: &Connection,
    writer: &mut WriterState,
    new: &NewGroup,
    now: UnixMs,
    encode: impl FnOnce(&GroupState) -> OutgoingEnvelope,
) -> StoreResult<Group> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let mut state = GroupState {
        global_group_id: GlobalGroupId::from_ulid(writer.next_ulid()),
        name: new.name.clone(),
        announcement: new.announcement.clone(),
        owner: local.clone(),
        members: new.members.clone(),
        revision: GroupRevision {
            revision: 1,
            editor: local,
        },
    };
    validate_state(&mut state)?;
    let group = write_state(conn, writer, &state, now)?;
    announce(conn, writer, &state, &[], &encode(&state), now)?;
    Ok(group)
}

pub(crate) fn edit(
    conn: &Connection,
    writer: &mut WriterState,
    id: &GlobalGroupId,
    edit: &GroupEdit,
    now: UnixMs,
    encode: impl FnOnce(&GroupState) -> OutgoingEnvelope,
) -> StoreResult<Group> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let current = group(conn, id)?.ok_or_else(|| StoreError::not_found("group", id))?;
    if !current.state.members.contains(&local) {
        return Err(StoreError::invalid(
            "group",
            "this node is no longer a member",
        ));
    }
    let mut state = current.state.clone();
    if let Some(name) = &edit.name {
        state.name = name.clone();
    }
    if let Some(announcement) = &edit.announcement {
        state.announcement = announcement.clone();
    }
    if let Some(members) = &edit.members {
        // The owner stays a member: removing the owner would leave nobody who may
        // settle the membership.
        state.members = members.clone();
    }
    state.revision = GroupRevision {
        revision: current.state.revision.revision.saturating_add(1),
        editor: local,
    };
    validate_state(&mut state)?;
    let group = write_state(conn, writer, &state, now)?;
    announce(
        conn,
        writer,
        &state,
        &current.state.members,
        &encode(&state),
        now,
    )?;
    Ok(group)
}

/// Merges a `group.upsert` from `from`. The state with the higher `(revision, editor)`
/// wins, so every node ends with the same state whatever order the upserts arrive in.
/// Returns whether it changed anything.
///
/// Whether an upsert is accepted must not depend on what this node happens to hold
/// already, or nodes that saw upserts in different orders would keep different states
/// (the property test found exactly that with a "sender must be a current member"
/// rule). So the only check is one every node decides alike: the envelope comes from
/// the editor it names. Knowing a group's id is the capability to edit it; only its
/// present and past members learn it. A state that no longer lists this node is stored
/// too: the group then shows this node was removed, and nothing is delivered to or
/// from it.
pub(crate) fn merge(
    conn: &Connection,
    writer: &mut WriterState,
    from: &NodeId,
    incoming: &GroupState,
    now: UnixMs,
) -> StoreResult<bool> {
    let mut incoming = incoming.clone();
    validate_state(&mut incoming)?;
    if incoming.revision.editor != *from {
        return Err(StoreError::invalid(
            "revision",
            "an edit can only come from the node that made it",
        ));
    }
    if let Some(current) = group(conn, &incoming.global_group_id)? {
        if incoming.revision <= current.state.revision {
            return Ok(false);
        }
    }
    write_state(conn, writer, &incoming, now)?;
    Ok(true)
}

pub(crate) fn is_member(conn: &Connection, id: &GlobalGroupId, node: &NodeId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM groups g JOIN group_members m ON m.group_id = g.group_id
                            WHERE g.global_group_id = ?1 AND m.member_id = ?2)",
        )?
        .query_row(params![id.to_string(), node.as_str()], |r| r.get(0))?)
}

pub(crate) fn clamp_batch(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_PAGE))
}
