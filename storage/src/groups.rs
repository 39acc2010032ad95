//! Groups: their replicated state (`group_state`), the link from `global_group_id` to
//! the local group and conversation, local changes with their permissions, merging
//! members' upserts, and invitations.

use api_types::NodeId;
use rusqlite::{params, Connection, OptionalExtension};

use crate::chat::{self, MAX_PAGE};
use crate::error::{StoreError, StoreResult};
use crate::group_column;
use crate::model::{
    Group, GroupAction, GroupEdit, GroupInvitation, InboundOutcome, NewGroup, OutgoingEnvelope,
};
use crate::outbox;
use crate::peers;
use crate::rows;
use crate::rows::HlcColumn;
use crate::writer::WriterState;
use chat_core::Hlc;
use chat_core::{ConversationId, GlobalGroupId};
use chat_core::{GroupState, Stamp};
use chat_core::{UnixMs, MAX_GROUP_MEMBERS};

/// The stamp of a change made here now to a group whose state is stamped up to
/// `after` (0 for a new group): the next clock reading, and after every change in the
/// state — so this edit wins over the ones it was made on, even when a member's clock
/// far ahead stamped those — with this node as editor. The node's clock moves only by
/// its own tick (see `Hlc::tick_after`).
fn next_stamp(writer: &mut WriterState, after: u64, now: UnixMs) -> StoreResult<Stamp> {
    let editor = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let now = u64::try_from(now).unwrap_or(0);
    writer.clock = Hlc::tick(writer.clock, now);
    let hlc = Hlc::tick_after(writer.clock, Hlc::from_raw(after), now);
    Ok(Stamp {
        hlc: hlc.raw(),
        editor,
    })
}

fn checked_name(name: &str) -> StoreResult<String> {
    chat_core::check_group_name(name)
        .map(str::to_string)
        .map_err(|e| chat::text_error("name", e))
}

fn checked_announcement(text: &str) -> StoreResult<&str> {
    chat_core::check_announcement(text).map_err(|e| chat::text_error("announcement", e))
}

/// A local change must leave a state every member accepts; it is signed here with
/// this node's keys (the changes it made are the unsigned ones).
fn checked(
    writer: &WriterState,
    mut state: GroupState,
    field: &'static str,
) -> StoreResult<GroupState> {
    if state.member_ids().len() > MAX_GROUP_MEMBERS {
        return Err(StoreError::invalid(
            "members",
            format!("more than {MAX_GROUP_MEMBERS}"),
        ));
    }
    state
        .validate()
        .map_err(|e| StoreError::invalid(field, e.0))?;
    if let Some(signer) = &writer.signer {
        state.sign_own(signer.as_ref());
    }
    Ok(state)
}

/// Reads a stored state; `None` when the text is empty (a group from before schema
/// v4, rebuilt from its columns by the caller).
fn parse_state(text: &str) -> StoreResult<Option<GroupState>> {
    if text.is_empty() {
        return Ok(None);
    }
    group_column::decode(text)
        .map(Some)
        .map_err(|e| StoreError::Malformed(format!("group state: {e}")))
}

fn state_text(state: &GroupState) -> String {
    group_column::encode(state)
}

struct GroupRow {
    local_id: String,
    conversation_id: ConversationId,
    updated_at: UnixMs,
    state: GroupState,
}

fn group_row(conn: &Connection, id: &GlobalGroupId) -> StoreResult<Option<GroupRow>> {
    let head = conn
        .prepare_cached(
            "SELECT g.group_id, g.state, g.name, g.announcement, g.owner_id, g.revision,
                    g.revision_editor, g.updated_at, l.conversation_id
             FROM groups g JOIN group_links l ON l.group_id = g.group_id
             WHERE g.global_group_id = ?1",
        )?
        .query_row([id.to_string()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                rows::parse::<NodeId>(row, 4)?,
                row.get::<_, i64>(5)?,
                rows::parse::<NodeId>(row, 6)?,
                row.get::<_, i64>(7)?,
                rows::parse::<ConversationId>(row, 8)?,
            ))
        })
        .optional()?;
    let Some((local_id, text, name, announcement, owner, revision, _editor, updated_at, conv)) =
        head
    else {
        return Ok(None);
    };
    let mut state = match parse_state(&text)? {
        Some(state) => state,
        None => {
            let members = conn
                .prepare_cached("SELECT member_id FROM group_members WHERE group_id = ?1")?
                .query_map([&local_id], |row| rows::parse::<NodeId>(row, 0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            legacy_state(*id, &owner, &name, &announcement, &members, revision)
        }
    };
    // Before group changes were signed, members could rename: those registers no
    // longer count and would make every later change invalid.
    state.drop_members_registers();
    Ok(Some(GroupRow {
        local_id,
        conversation_id: conv,
        updated_at,
        state,
    }))
}

/// A group stored before schema v4 (whole-state revisions): its fields as the owner's
/// changes stamped with its old revision number.
fn legacy_state(
    id: GlobalGroupId,
    owner: &NodeId,
    name: &str,
    announcement: &str,
    members: &[NodeId],
    revision: i64,
) -> GroupState {
    let hlc = u64::try_from(revision).unwrap_or(1).max(1);
    let by_owner = Stamp {
        hlc,
        editor: owner.clone(),
    };
    // Names and announcements count as the owner's, whoever last changed them then:
    // only the owner writes them now.
    GroupState::create(id, &by_owner, name, announcement, members)
}

pub(crate) fn group(conn: &Connection, id: &GlobalGroupId) -> StoreResult<Option<Group>> {
    Ok(group_row(conn, id)?.map(|row| Group {
        local_id: row.local_id,
        conversation_id: row.conversation_id,
        state: row.state,
        updated_at: row.updated_at,
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

/// Writes a group state (new or replacing) with its projection (name, members, …),
/// conversation and link, and brings the delivery cursors in line with the members.
fn write_state(
    conn: &Connection,
    writer: &mut WriterState,
    state: &GroupState,
    now: UnixMs,
) -> StoreResult<Group> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let global = state.global_group_id.to_string();
    let revision = state.revision();
    let revision_hlc = Hlc::from_raw(revision.hlc).to_sql();
    let existing: Option<String> = conn
        .prepare_cached("SELECT group_id FROM groups WHERE global_group_id = ?1")?
        .query_row([&global], |r| r.get(0))
        .optional()?;
    let local_id = existing.unwrap_or_else(|| writer.next_ulid().to_string());
    conn.prepare_cached(
        "INSERT INTO groups (group_id, global_group_id, name, announcement, owner_id, revision,
                             revision_editor, updated_at, created_at, state, dissolved)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10)
         ON CONFLICT (group_id) DO UPDATE SET name = excluded.name,
             announcement = excluded.announcement, owner_id = excluded.owner_id,
             revision = excluded.revision, revision_editor = excluded.revision_editor,
             updated_at = excluded.updated_at, state = excluded.state,
             dissolved = excluded.dissolved",
    )?
    .execute(params![
        local_id,
        global,
        state.name(),
        state.announcement(),
        state.owner.as_str(),
        revision_hlc,
        revision.editor.as_str(),
        now,
        state_text(state),
        state.is_dissolved(),
    ])?;
    conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?
        .execute([&local_id])?;
    for member in state.member_ids() {
        conn.prepare_cached("INSERT INTO group_members (group_id, member_id) VALUES (?1, ?2)")?
            .execute(params![local_id, member.as_str()])?;
        if member != local {
            peers::ensure_peer(conn, writer, &member)?;
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
        revision_hlc,
        now
    ])?;
    sync_cursors(
        conn,
        writer,
        &conversation_id,
        &local_id,
        state.is_member(&local),
        now,
    )?;
    group(conn, &state.global_group_id)?.ok_or_else(|| StoreError::not_found("group", global))
}

/// One cursor per other member while this node is a member. A new member's cursor
/// starts after everything stamped so far: it gets messages sent from now on from the
/// cursors, and the history before from catch-up (anti-entropy); `~` sorts after every
/// ULID character.
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
    // "Stamped so far" includes this node's messages stamped after a peer's clock far
    // ahead (`Hlc::tick_after`), which the node's clock stays behind.
    let start = writer
        .clock
        .max(chat::conversation_floor(conn, conversation_id)?);
    conn.prepare_cached(
        "INSERT INTO group_delivery (conversation_id, peer_id, acked_hlc, acked_message_id, next_retry_at)
         SELECT ?1, member_id, ?3, '~', ?4 FROM group_members WHERE group_id = ?2 AND member_id <> ?5
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        conversation_id.as_str(),
        local_id,
        start.to_sql(),
        now,
        local.as_str()
    ])?;
    Ok(())
}

/// Tells every member of `state` and every node in `also` (except this node) about
/// the group's new state.
fn announce(
    conn: &Connection,
    writer: &mut WriterState,
    state: &GroupState,
    also: &[NodeId],
    envelope: &OutgoingEnvelope,
    now: UnixMs,
) -> StoreResult<()> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let mut targets: Vec<NodeId> = state
        .member_ids()
        .into_iter()
        .chain(also.iter().cloned())
        .filter(|m| *m != local)
        .collect();
    targets.sort();
    targets.dedup();
    for peer in &targets {
        if peers::is_blocked(conn, peer)? {
            continue;
        }
        peers::ensure_peer(conn, writer, peer)?;
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
    let name = checked_name(&new.name)?;
    let announcement = checked_announcement(&new.announcement)?;
    let stamp = next_stamp(writer, 0, now)?;
    let id = GlobalGroupId::from_ulid(writer.next_ulid());
    let state = checked(
        writer,
        GroupState::create(id, &stamp, &name, announcement, &new.members),
        "members",
    )?;
    let group = write_state(conn, writer, &state, now)?;
    announce(conn, writer, &state, &[], &encode(&state), now)?;
    Ok(group)
}

/// The group as this node may change it: it must hold it, be a member, and the group
/// must not be dissolved.
fn changeable(
    conn: &Connection,
    writer: &WriterState,
    id: &GlobalGroupId,
) -> StoreResult<(GroupState, NodeId)> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let current = group(conn, id)?.ok_or_else(|| StoreError::not_found("group", id))?;
    if current.state.is_dissolved() {
        return Err(StoreError::invalid("group", "the group was dissolved"));
    }
    if !current.state.is_member(&local) {
        return Err(StoreError::invalid(
            "group",
            "this node is no longer a member",
        ));
    }
    Ok((current.state, local))
}

/// Writes a changed state and tells the members (and `also`, e.g. removed ones).
fn commit_change(
    conn: &Connection,
    writer: &mut WriterState,
    state: &GroupState,
    also: &[NodeId],
    now: UnixMs,
    encode: impl FnOnce(&GroupState) -> OutgoingEnvelope,
) -> StoreResult<Group> {
    let group = write_state(conn, writer, state, now)?;
    announce(conn, writer, state, also, &encode(state), now)?;
    Ok(group)
}

/// Names and announcements are the owner's (docs/PROTOCOL.md, the group state machine).
fn owner_only(state: &GroupState, local: &NodeId, field: &'static str) -> StoreResult<()> {
    if state.may_edit_info(local) {
        Ok(())
    } else {
        Err(StoreError::Forbidden {
            field,
            reason: "only the owner changes the group's name and announcement".into(),
        })
    }
}

pub(crate) fn edit(
    conn: &Connection,
    writer: &mut WriterState,
    id: &GlobalGroupId,
    edit: &GroupEdit,
    now: UnixMs,
    encode: impl FnOnce(&GroupState) -> OutgoingEnvelope,
) -> StoreResult<Group> {
    let (mut state, local) = changeable(conn, writer, id)?;
    let before = state.member_ids();
    let stamp = next_stamp(writer, state.max_hlc(), now)?;
    if let Some(name) = &edit.name {
        let name = checked_name(name)?;
        if name != state.name() {
            owner_only(&state, &local, "name")?;
            state.set_name(&name, &stamp);
        }
    }
    if let Some(announcement) = &edit.announcement {
        let announcement = checked_announcement(announcement)?;
        if announcement != state.announcement() {
            owner_only(&state, &local, "announcement")?;
            state.set_announcement(announcement, &stamp);
        }
    }
    if let Some(members) = &edit.members {
        let mut wanted = members.clone();
        wanted.push(state.owner.clone());
        wanted.sort();
        wanted.dedup();
        if wanted != before {
            if !state.may_manage_members(&local) {
                return Err(StoreError::Forbidden {
                    field: "members",
                    reason: "only the owner adds and removes members".into(),
                });
            }
            for gone in before.iter().filter(|m| !wanted.contains(m)) {
                state.set_member(gone, false, &stamp);
            }
            for added in wanted.iter().filter(|m| !before.contains(m)) {
                state.set_member(added, true, &stamp);
            }
        }
    }
    let state = checked(writer, state, "members")?;
    commit_change(conn, writer, &state, &before, now, encode)
}

/// This node leaves (its own removal) or, as the owner, dissolves the group; told to
/// every member.
pub(crate) fn act(
    conn: &Connection,
    writer: &mut WriterState,
    id: &GlobalGroupId,
    action: GroupAction,
    now: UnixMs,
    encode: impl FnOnce(&GroupState) -> OutgoingEnvelope,
) -> StoreResult<Group> {
    let (mut state, local) = changeable(conn, writer, id)?;
    match action {
        GroupAction::Leave if !state.may_leave(&local) => {
            return Err(StoreError::invalid(
                "group",
                "the owner cannot leave; dissolve the group instead",
            ))
        }
        GroupAction::Dissolve if !state.may_dissolve(&local) => {
            return Err(StoreError::Forbidden {
                field: "group",
                reason: "only the owner dissolves the group".into(),
            })
        }
        _ => {}
    }
    let before = state.member_ids();
    let stamp = next_stamp(writer, state.max_hlc(), now)?;
    match action {
        GroupAction::Leave => state.set_member(&local, false, &stamp),
        GroupAction::Dissolve => state.dissolve(&stamp),
    }
    let state = checked(writer, state, "group")?;
    commit_change(conn, writer, &state, &before, now, encode)
}

/// Checks an upsert from `from` on its own terms, the same on every node: a valid
/// state, sent by a member of it (or by one leaving it), with stamps SQLite can hold.
/// How far ahead of this node's clock a stamp is never counts: that would depend on
/// each member's clock, and members would end in different states.
fn check_incoming(from: &NodeId, incoming: &GroupState) -> StoreResult<()> {
    incoming
        .validate()
        .map_err(|e| StoreError::invalid("group state", e.0))?;
    let sender_counts = *from == incoming.owner
        || incoming
            .members
            .iter()
            .any(|m| m.id == *from && (m.present || m.editor == *from));
    if !sender_counts {
        return Err(StoreError::invalid(
            "from_peer_id",
            "the sender is not a member of the group",
        ));
    }
    if !Hlc::from_raw(incoming.max_hlc()).fits_sql() {
        return Err(StoreError::invalid(
            "group state",
            "stamped beyond any clock",
        ));
    }
    Ok(())
}

/// Merges a member's `group.upsert`. The merge is field by field (see `group_state`),
/// so every node ends with the same state whatever order upserts arrive in. A group
/// not held yet is joined when this node is a member of it — or, with `auto_accept`
/// off, kept as an invitation. A state that no longer lists this node is stored too:
/// the group then shows this node was removed, and nothing is delivered to or from it.
pub(crate) fn merge(
    conn: &Connection,
    writer: &mut WriterState,
    from: &NodeId,
    incoming: &GroupState,
    now: UnixMs,
) -> StoreResult<InboundOutcome> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    check_incoming(from, incoming)?;
    writer.clock = Hlc::observe(
        writer.clock,
        Hlc::from_raw(incoming.max_hlc()),
        u64::try_from(now).unwrap_or(0),
    );
    if let Some(current) = group(conn, &incoming.global_group_id)? {
        if current.state.owner != incoming.owner {
            return Err(StoreError::Forged(
                "a group state in another owner's name".into(),
            ));
        }
        let mut merged = current.state.clone();
        merged.merge(incoming);
        if merged == current.state {
            return Ok(InboundOutcome::Stale);
        }
        let announcement_changed = merged.announcement() != current.state.announcement();
        write_state(conn, writer, &merged, now)?;
        return Ok(InboundOutcome::GroupUpdated {
            announcement_changed,
        });
    }
    if let Some((mut held, _status)) = invitation_row(conn, &incoming.global_group_id)? {
        if held.state.owner != incoming.owner {
            return Err(StoreError::Forged(
                "a group state in another owner's name".into(),
            ));
        }
        let before = held.state.clone();
        held.state.merge(incoming);
        if held.state == before {
            return Ok(InboundOutcome::Stale);
        }
        // Open while this node is a member of it: a declined one (this node left it)
        // opens again only if the owner adds it back later; one the owner took this
        // node out of before it answered closes.
        let pending = held.state.is_member(&local);
        put_invitation(conn, &held, pending)?;
        return Ok(if pending {
            InboundOutcome::GroupInvitation
        } else {
            InboundOutcome::Stale
        });
    }
    if !incoming.is_member(&local) {
        return Err(StoreError::invalid("group", "this node is not a member"));
    }
    if writer.manual_group_accept {
        put_invitation(
            conn,
            &GroupInvitation {
                state: incoming.clone(),
                from_peer_id: from.clone(),
                received_at: now,
            },
            true,
        )?;
        return Ok(InboundOutcome::GroupInvitation);
    }
    write_state(conn, writer, incoming, now)?;
    Ok(InboundOutcome::GroupUpdated {
        announcement_changed: !incoming.announcement().is_empty(),
    })
}

fn put_invitation(conn: &Connection, held: &GroupInvitation, pending: bool) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO group_invitations (global_group_id, from_peer_id, state, status, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (global_group_id) DO UPDATE SET state = excluded.state,
             status = excluded.status",
    )?
    .execute(params![
        held.state.global_group_id.to_string(),
        held.from_peer_id.as_str(),
        state_text(&held.state),
        if pending { "pending" } else { "declined" },
        held.received_at,
    ])?;
    Ok(())
}

fn invitation_row(
    conn: &Connection,
    id: &GlobalGroupId,
) -> StoreResult<Option<(GroupInvitation, String)>> {
    let row = conn
        .prepare_cached(
            "SELECT from_peer_id, state, status, received_at FROM group_invitations
             WHERE global_group_id = ?1",
        )?
        .query_row([id.to_string()], |row| {
            Ok((
                rows::parse::<NodeId>(row, 0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((from_peer_id, text, status, received_at)) = row else {
        return Ok(None);
    };
    let state = parse_state(&text)?
        .ok_or_else(|| StoreError::Malformed("an invitation without a state".into()))?;
    Ok(Some((
        GroupInvitation {
            state,
            from_peer_id,
            received_at,
        },
        status,
    )))
}

/// Open invitations, newest first.
pub(crate) fn invitations(conn: &Connection) -> StoreResult<Vec<GroupInvitation>> {
    let ids = conn
        .prepare_cached(
            "SELECT global_group_id FROM group_invitations WHERE status = 'pending'
             ORDER BY received_at DESC, global_group_id",
        )?
        .query_map([], |row| rows::parse::<GlobalGroupId>(row, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut list = Vec::with_capacity(ids.len());
    for id in ids {
        list.extend(invitation_row(conn, &id)?.map(|(held, _)| held));
    }
    Ok(list)
}

fn pending_invitation(conn: &Connection, id: &GlobalGroupId) -> StoreResult<GroupInvitation> {
    match invitation_row(conn, id)? {
        Some((held, status)) if status == "pending" => Ok(held),
        _ => Err(StoreError::not_found("invitation", id)),
    }
}

/// Joins the group an invitation is for.
pub(crate) fn accept_invitation(
    conn: &Connection,
    writer: &mut WriterState,
    id: &GlobalGroupId,
    now: UnixMs,
) -> StoreResult<Group> {
    let held = pending_invitation(conn, id)?;
    conn.prepare_cached("DELETE FROM group_invitations WHERE global_group_id = ?1")?
        .execute([id.to_string()])?;
    write_state(conn, writer, &held.state, now)
}

/// Declines an invitation: it is kept as declined (later changes are ignored) and this
/// node's leaving is told to the members, so they stop sending to it.
pub(crate) fn decline_invitation(
    conn: &Connection,
    writer: &mut WriterState,
    id: &GlobalGroupId,
    now: UnixMs,
    encode: impl FnOnce(&GroupState) -> OutgoingEnvelope,
) -> StoreResult<()> {
    let mut held = pending_invitation(conn, id)?;
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let before = held.state.member_ids();
    let stamp = next_stamp(writer, held.state.max_hlc(), now)?;
    held.state.set_member(&local, false, &stamp);
    if let Some(signer) = &writer.signer {
        held.state.sign_own(signer.as_ref());
    }
    put_invitation(conn, &held, false)?;
    announce(
        conn,
        writer,
        &held.state,
        &before,
        &encode(&held.state),
        now,
    )
}

/// One indexed lookup on the sending path; the group itself is read only to tell "no
/// such group" from "not a member".
pub(crate) fn check_may_send(
    conn: &Connection,
    id: &GlobalGroupId,
    local: &NodeId,
) -> StoreResult<()> {
    let dissolved: Option<bool> = conn
        .prepare_cached(
            "SELECT g.dissolved FROM groups g JOIN group_members m ON m.group_id = g.group_id
             WHERE g.global_group_id = ?1 AND m.member_id = ?2",
        )?
        .query_row(params![id.to_string(), local.as_str()], |r| r.get(0))
        .optional()?;
    match dissolved {
        Some(false) => Ok(()),
        Some(true) => Err(StoreError::invalid(
            "conversation_id",
            "the group was dissolved",
        )),
        None if group(conn, id)?.is_none() => Err(StoreError::not_found("group", id)),
        None => Err(StoreError::invalid(
            "conversation_id",
            "this node is not a member of the group",
        )),
    }
}

/// Whether the group exists, and whether each of two nodes is a member of it: the
/// checks every inbound group message makes, in one statement.
pub(crate) fn membership_pair(
    conn: &Connection,
    id: &GlobalGroupId,
    first: &NodeId,
    second: &NodeId,
) -> StoreResult<(bool, bool, bool)> {
    Ok(conn
        .prepare_cached(
            "SELECT g.group_id IS NOT NULL,
                    EXISTS (SELECT 1 FROM group_members m
                            WHERE m.group_id = g.group_id AND m.member_id = ?2),
                    EXISTS (SELECT 1 FROM group_members m
                            WHERE m.group_id = g.group_id AND m.member_id = ?3)
             FROM (SELECT 1) LEFT JOIN groups g ON g.global_group_id = ?1",
        )?
        .query_row(
            params![id.to_string(), first.as_str(), second.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
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
