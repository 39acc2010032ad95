//! Moving a node id: this node's own, when it takes the id its keys derive (an upgrade
//! from random ids) or a new identity; and a peer's, when it announced such a change in
//! a statement signed by its key (docs/STORAGE.md, "Identity changes"). Nothing is
//! deleted that is not first moved: every row that named the old id names the new one.
//!
//! Ids are 26-character ULIDs; in the JSON of group states they appear only as whole
//! values, so replacing the text of the old id by the new one changes nothing else.

use api_types::NodeId;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{StoreError, StoreResult};
use crate::writer::WriterState;
use chat_core::{ConversationId, UserId};

/// Rows in group states and memberships that name `old`, renamed to `new` (both this
/// node's and a peer's change need it).
fn rename_in_groups(conn: &Connection, old: &NodeId, new: &NodeId) -> StoreResult<()> {
    let (old, new) = (old.as_str(), new.as_str());
    conn.execute(
        "UPDATE groups SET owner_id = ?2 WHERE owner_id = ?1",
        params![old, new],
    )?;
    conn.execute(
        "UPDATE groups SET revision_editor = ?2 WHERE revision_editor = ?1",
        params![old, new],
    )?;
    conn.execute(
        "UPDATE groups SET state = replace(state, ?1, ?2) WHERE instr(state, ?1) > 0",
        params![old, new],
    )?;
    // A member listed under both ids (cannot happen before the change) keeps one row.
    conn.execute(
        "DELETE FROM group_members WHERE member_id = ?1
           AND group_id IN (SELECT group_id FROM group_members WHERE member_id = ?2)",
        params![old, new],
    )?;
    conn.execute(
        "UPDATE group_members SET member_id = ?2 WHERE member_id = ?1",
        params![old, new],
    )?;
    conn.execute(
        "UPDATE group_invitations SET state = replace(state, ?1, ?2) WHERE instr(state, ?1) > 0",
        params![old, new],
    )?;
    conn.execute(
        "UPDATE group_invitations SET from_peer_id = ?2 WHERE from_peer_id = ?1",
        params![old, new],
    )?;
    Ok(())
}

fn rename_sender(conn: &Connection, old: &NodeId, new: &NodeId) -> StoreResult<()> {
    conn.execute(
        "UPDATE messages SET sender_id = ?2 WHERE sender_id = ?1",
        params![UserId::lan(old).as_str(), UserId::lan(new).as_str()],
    )?;
    Ok(())
}

/// How this node's id changes (`Store::change_local_identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalChange {
    /// The same node under a new id (the keys' derived id replacing a random one):
    /// everything moves, group memberships included, and the old id is announced as
    /// this node's earlier one.
    Moved,
    /// A copied data directory taking a new identity while the original keeps the old
    /// id: the history stays readable here (what this node wrote shows as its own),
    /// but the old id's group memberships and earlier ids belong to the original, so
    /// they are not taken along.
    Copied,
}

/// This node's id becomes `new`: its identity row, its user and the messages it wrote;
/// for a move also its group memberships. Returns the previous id (`None` when it
/// already was `new`, or when the database has no identity yet).
pub(crate) fn change_local_identity(
    conn: &Connection,
    state: &mut WriterState,
    new: &NodeId,
    kind: LocalChange,
) -> StoreResult<Option<NodeId>> {
    let Some(old) = crate::chat::local_identity(conn)?.map(|i| i.node_id) else {
        return Ok(None);
    };
    if &old == new {
        return Ok(None);
    }
    if conn
        .query_row(
            "SELECT 1 FROM peers WHERE peer_id = ?1",
            params![new.as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some()
    {
        // A peer row under our own new id would mean another node claimed it.
        return Err(StoreError::IdentityMismatch {
            stored: old.to_string(),
            requested: new.to_string(),
        });
    }
    conn.execute(
        "UPDATE local_identity SET node_id = ?1",
        params![new.as_str()],
    )?;
    conn.execute(
        "UPDATE users SET user_id = ?2 WHERE user_id = ?1 AND kind = 'local'",
        params![UserId::lan(&old).as_str(), UserId::lan(new).as_str()],
    )?;
    rename_sender(conn, &old, new)?;
    match kind {
        LocalChange::Moved => {
            rename_in_groups(conn, &old, new)?;
            conn.execute(
                "INSERT INTO identity_changes (old_id, new_id, local, changed_at)
                 VALUES (?1, ?2, 1, strftime('%s', 'now') * 1000)
                 ON CONFLICT (old_id) DO UPDATE SET new_id = excluded.new_id",
                params![old.as_str(), new.as_str()],
            )?;
            tracing::info!(%old, %new, "this node's id changed; its history moved with it");
        }
        LocalChange::Copied => {
            // Statements about the old id's earlier ids are the original's to make:
            // this node's keys never held them.
            conn.execute("DELETE FROM identity_changes WHERE local = 1", [])?;
            tracing::info!(%old, %new,
                "this copy took a new identity; its history stays, the old id's groups do not");
        }
    }
    state.local = Some(new.clone());
    Ok(Some(old))
}

/// A peer proved that `old` is now `new` (its signed statement, checked by the
/// caller). Moves its contact, DM conversation (merged with one under the new id, if
/// any), messages, group memberships, group delivery cursors and outbox entries.
/// Returns whether anything was known under `old`.
pub(crate) fn reattach_peer(conn: &Connection, old: &NodeId, new: &NodeId) -> StoreResult<bool> {
    let known = conn
        .query_row(
            "SELECT 1 FROM peers WHERE peer_id = ?1",
            params![old.as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    conn.execute(
        "INSERT INTO identity_changes (old_id, new_id, local, changed_at)
         VALUES (?1, ?2, 0, strftime('%s', 'now') * 1000)
         ON CONFLICT (old_id) DO UPDATE SET new_id = excluded.new_id",
        params![old.as_str(), new.as_str()],
    )?;
    if !known {
        return Ok(false);
    }
    // Foreign keys are checked at the commit: rows move between parents in any order.
    conn.pragma_update(None, "defer_foreign_keys", true)?;
    // The contact: the new id's row (discovery may have created it) takes the old
    // row's block flag and keys; then the old one goes.
    conn.execute(
        "INSERT INTO peers (peer_id, display_name, last_ip, last_port, online, last_seen_at,
                            capabilities, blocked, link_keys)
         SELECT ?2, display_name, last_ip, last_port, 0, last_seen_at, capabilities, blocked,
                link_keys
         FROM peers WHERE peer_id = ?1
         ON CONFLICT (peer_id) DO UPDATE SET blocked = max(peers.blocked, excluded.blocked)",
        params![old.as_str(), new.as_str()],
    )?;
    let (old_user, new_user) = (UserId::lan(old), UserId::lan(new));
    conn.execute(
        "INSERT INTO users (user_id, kind, peer_id, display_name)
         SELECT ?2, 'lan', ?3, display_name FROM users WHERE user_id = ?1
         ON CONFLICT (user_id) DO NOTHING",
        params![old_user.as_str(), new_user.as_str(), new.as_str()],
    )?;
    // The DM: its messages move into the new id's conversation.
    let (old_dm, new_dm) = (ConversationId::dm(old), ConversationId::dm(new));
    conn.execute(
        "INSERT INTO conversations (conversation_id, kind, peer_id, group_id, last_message_id,
                                    last_hlc, unread, created_at)
         SELECT ?2, 'dm', ?3, NULL, last_message_id, last_hlc, unread, created_at
         FROM conversations WHERE conversation_id = ?1
         ON CONFLICT (conversation_id) DO UPDATE SET
             unread = conversations.unread + excluded.unread,
             created_at = min(conversations.created_at, excluded.created_at),
             last_message_id = CASE WHEN conversations.last_hlc IS NULL
                 OR (excluded.last_hlc, excluded.last_message_id)
                    > (conversations.last_hlc, conversations.last_message_id)
                 THEN excluded.last_message_id ELSE conversations.last_message_id END,
             last_hlc = CASE WHEN conversations.last_hlc IS NULL
                 OR (excluded.last_hlc, excluded.last_message_id)
                    > (conversations.last_hlc, conversations.last_message_id)
                 THEN excluded.last_hlc ELSE conversations.last_hlc END",
        params![old_dm.as_str(), new_dm.as_str(), new.as_str()],
    )?;
    conn.execute(
        "UPDATE messages SET conversation_id = ?2 WHERE conversation_id = ?1",
        params![old_dm.as_str(), new_dm.as_str()],
    )?;
    rename_sender(conn, old, new)?;
    rename_in_groups(conn, old, new)?;
    conn.execute(
        "DELETE FROM group_delivery WHERE peer_id = ?1 AND conversation_id IN
             (SELECT conversation_id FROM group_delivery WHERE peer_id = ?2)",
        params![old.as_str(), new.as_str()],
    )?;
    conn.execute(
        "UPDATE group_delivery SET peer_id = ?2 WHERE peer_id = ?1",
        params![old.as_str(), new.as_str()],
    )?;
    // Queued envelopes now go to the new id. A queued DM's signature still names the
    // old one: `outbox::resign_queued_direct` signs it again after the move.
    conn.execute(
        "UPDATE outbox SET peer_id = ?2 WHERE peer_id = ?1",
        params![old.as_str(), new.as_str()],
    )?;
    conn.execute(
        "DELETE FROM conversations WHERE conversation_id = ?1",
        params![old_dm.as_str()],
    )?;
    conn.execute(
        "DELETE FROM users WHERE user_id = ?1",
        params![old_user.as_str()],
    )?;
    conn.execute(
        "DELETE FROM peers WHERE peer_id = ?1",
        params![old.as_str()],
    )?;
    tracing::info!(%old, %new, "a colleague's id changed; its history moved with it");
    Ok(true)
}

/// What [`reattach_peer_checked`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerReattach {
    Moved,
    NothingKnown,
    /// The keys pinned for the old id are not the statement's (or none were).
    Refused,
}

/// [`reattach_peer`] after checking that `old_keys` held `old`: they derive it
/// (`old_derived`, checked by the caller), or they are the keys pinned for it.
pub(crate) fn reattach_peer_checked(
    conn: &Connection,
    old: &NodeId,
    old_keys: &[u8; 64],
    old_derived: bool,
    new: &NodeId,
) -> StoreResult<PeerReattach> {
    let moved_before: Option<String> = conn
        .query_row(
            "SELECT new_id FROM identity_changes WHERE old_id = ?1 AND local = 0",
            params![old.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    let known = conn
        .query_row(
            "SELECT 1 FROM peers WHERE peer_id = ?1",
            params![old.as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if moved_before.as_deref() == Some(new.as_str()) && !known {
        return Ok(PeerReattach::NothingKnown);
    }
    if !old_derived {
        match pinned_keys(conn, old)? {
            Some(pinned) if pinned.as_slice() == old_keys.as_slice() => {}
            // Never linked under the old id: nothing it could prove, nothing to move.
            None if !known => return Ok(PeerReattach::NothingKnown),
            _ => return Ok(PeerReattach::Refused),
        }
    }
    Ok(if reattach_peer(conn, old, new)? {
        PeerReattach::Moved
    } else {
        PeerReattach::NothingKnown
    })
}

/// The keys a peer's old (pre-derivation) id was pinned with, to check its statement.
pub(crate) fn pinned_keys(conn: &Connection, peer: &NodeId) -> StoreResult<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT link_keys FROM peers WHERE peer_id = ?1",
        params![peer.as_str()],
        |row| row.get::<_, Option<Vec<u8>>>(0),
    )
    .optional()
    .map(Option::flatten)
    .map_err(Into::into)
}

/// This node's own earlier ids, newest first: what its statement announces.
pub(crate) fn own_previous_ids(conn: &Connection) -> StoreResult<Vec<NodeId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT old_id FROM identity_changes WHERE local = 1 ORDER BY changed_at DESC",
    )?;
    let ids = stmt
        .query_map([], |row| crate::rows::parse(row, 0))?
        .collect::<Result<Vec<NodeId>, _>>()?;
    Ok(ids)
}
