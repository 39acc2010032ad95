//! Group fan-out by delivery cursor: a group message is one row, and each member has a
//! cursor at the last local message it acked. Measured against one outbox row per
//! recipient in `benches/store.rs` (see docs/BENCHMARKS.md): sending costs one insert
//! whatever the group size, and an offline member's backlog is just "after the cursor".

use api_types::NodeId;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{StoreError, StoreResult};
use crate::groups;
use crate::model::{GroupDelivery, SendAttempt};
use crate::rows::{self, MESSAGE_COLUMNS};
use crate::writer::WriterState;
use chat_core::{ConversationId, GlobalGroupId, MessageId, UserId};
use chat_core::{Message, MessageStatus, UnixMs};

struct Cursor {
    conversation_id: ConversationId,
    peer_id: NodeId,
    acked_hlc: i64,
    acked_message_id: String,
    retry_count: u32,
}

fn local_user(writer: &WriterState) -> StoreResult<UserId> {
    writer
        .local
        .as_ref()
        .map(UserId::lan)
        .ok_or(StoreError::NoIdentity)
}

fn pending_after(
    conn: &Connection,
    sender: &UserId,
    cursor: &Cursor,
    limit: i64,
) -> StoreResult<Vec<Message>> {
    let list = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.conversation_id = ?1 AND (m.hlc, m.message_id) > (?2, ?3) AND m.sender_id = ?4
             ORDER BY m.hlc, m.message_id LIMIT ?5"
        ))?
        .query_map(
            params![
                cursor.conversation_id.as_str(),
                cursor.acked_hlc,
                cursor.acked_message_id,
                sender.as_str(),
                limit
            ],
            |row| rows::message(row, 0),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(list)
}

fn cursor(
    conn: &Connection,
    conversation_id: &ConversationId,
    peer: &NodeId,
) -> StoreResult<Option<Cursor>> {
    conn.prepare_cached(
        "SELECT acked_hlc, acked_message_id, retry_count FROM group_delivery
         WHERE conversation_id = ?1 AND peer_id = ?2",
    )?
    .query_row(params![conversation_id.as_str(), peer.as_str()], |row| {
        Ok(Cursor {
            conversation_id: conversation_id.clone(),
            peer_id: peer.clone(),
            acked_hlc: row.get(0)?,
            acked_message_id: row.get(1)?,
            retry_count: row.get(2)?,
        })
    })
    .optional()
    .map_err(Into::into)
}

/// Members owed messages at `now` (cursor behind and not backing off), each with up to
/// `per_peer` messages, oldest first. Blocked peers are skipped.
pub(crate) fn due(
    conn: &Connection,
    local: &NodeId,
    now: UnixMs,
    per_peer: u32,
) -> StoreResult<Vec<GroupDelivery>> {
    let sender = UserId::lan(local);
    let cursors = conn
        .prepare_cached(
            "SELECT d.conversation_id, d.peer_id, d.acked_hlc, d.acked_message_id, d.retry_count
             FROM group_delivery d
             WHERE d.next_retry_at <= ?1
               AND d.peer_id NOT IN (SELECT peer_id FROM peers WHERE blocked = 1)
               AND EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = d.conversation_id
                             AND (m.hlc, m.message_id) > (d.acked_hlc, d.acked_message_id)
                             AND m.sender_id = ?2)
             ORDER BY d.next_retry_at, d.conversation_id, d.peer_id",
        )?
        .query_map(params![now, sender.as_str()], |row| {
            Ok(Cursor {
                conversation_id: rows::parse(row, 0)?,
                peer_id: rows::parse(row, 1)?,
                acked_hlc: row.get(2)?,
                acked_message_id: row.get(3)?,
                retry_count: row.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut list = Vec::with_capacity(cursors.len());
    for cursor in cursors {
        let chat_core::ConversationTarget::Group(global_group_id) =
            *cursor.conversation_id.target()
        else {
            continue;
        };
        let messages = pending_after(conn, &sender, &cursor, groups::clamp_batch(per_peer))?;
        list.push(GroupDelivery {
            global_group_id,
            peer_id: cursor.peer_id,
            retry_count: cursor.retry_count,
            messages,
        });
    }
    Ok(list)
}

/// Records an attempt to send a member its pending messages and schedules the retry.
pub(crate) fn record_attempt(
    conn: &Connection,
    writer: &WriterState,
    group: &GlobalGroupId,
    peer: &NodeId,
    attempt: &SendAttempt,
    now: UnixMs,
    jitter: f64,
) -> StoreResult<()> {
    let conversation_id = ConversationId::group(group);
    let Some(cursor) = cursor(conn, &conversation_id, peer)? else {
        return Err(StoreError::not_found("group member", peer));
    };
    let attempts = cursor.retry_count.saturating_add(1);
    let error = match attempt {
        SendAttempt::Sent => None,
        SendAttempt::Failed(e) => Some(e.chars().take(1_000).collect::<String>()),
    };
    conn.prepare_cached(
        "UPDATE group_delivery SET retry_count = ?3, next_retry_at = ?4, last_error = COALESCE(?5, last_error)
         WHERE conversation_id = ?1 AND peer_id = ?2",
    )?
    .execute(params![
        conversation_id.as_str(),
        peer.as_str(),
        attempts,
        writer.retry.next_retry_at(now, attempts, jitter),
        error
    ])?;
    if *attempt == SendAttempt::Sent {
        // The repeated status term lets SQLite use the partial index
        // `messages_undelivered` (only owed messages), not the conversation's history.
        let sender = local_user(writer)?;
        conn.prepare_cached(
            "UPDATE messages SET status = 'sent'
             WHERE conversation_id = ?1 AND sender_id = ?2 AND status = 'pending'
               AND status IN ('pending', 'sent') AND (hlc, message_id) > (?3, ?4)",
        )?
        .execute(params![
            conversation_id.as_str(),
            sender.as_str(),
            cursor.acked_hlc,
            cursor.acked_message_id
        ])?;
    }
    Ok(())
}

/// The key of the next message of ours a cursor is owed, if any (the cursor's own
/// columns as stored): the index `messages_in_order` finds it without reading the
/// message.
fn next_owed(
    conn: &Connection,
    sender: &UserId,
    conversation_id: &ConversationId,
    after: &(i64, String),
) -> StoreResult<Option<(i64, String)>> {
    conn.prepare_cached(
        "SELECT hlc, message_id FROM messages
         WHERE conversation_id = ?1 AND (hlc, message_id) > (?2, ?3) AND sender_id = ?4
         ORDER BY hlc, message_id LIMIT 1",
    )?
    .query_row(
        params![conversation_id.as_str(), after.0, after.1, sender.as_str()],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .map_err(Into::into)
}

/// Several acks from one member, in any order: moves its cursor over every message it
/// was owed next that is among `message_ids`, as far as they reach without a gap (it
/// never skips one; an ack out of order waits, and the skipped message is sent again —
/// the receiver dedupes it). Returns the ids consumed; the others (acks that came
/// before a message still owed ahead of them) are for the caller to keep and pass
/// again with a later ack. When every member is past a message, it is delivered.
pub(crate) fn acked_many(
    conn: &Connection,
    writer: &WriterState,
    group: &GlobalGroupId,
    peer: &NodeId,
    message_ids: &[MessageId],
    now: UnixMs,
) -> StoreResult<Vec<MessageId>> {
    let conversation_id = ConversationId::group(group);
    let sender = local_user(writer)?;
    let Some(cursor) = cursor(conn, &conversation_id, peer)? else {
        return Ok(Vec::new());
    };
    let mut at = (cursor.acked_hlc, cursor.acked_message_id);
    let mut consumed = Vec::new();
    while let Some(next) = next_owed(conn, &sender, &conversation_id, &at)? {
        let Some(id) = next
            .1
            .parse::<MessageId>()
            .ok()
            .filter(|id| message_ids.contains(id))
        else {
            break;
        };
        consumed.push(id);
        at = next;
    }
    if consumed.is_empty() {
        return Ok(consumed);
    }
    let slowest_before = slowest_cursor(conn, &conversation_id)?;
    conn.prepare_cached(
        "UPDATE group_delivery SET acked_hlc = ?3, acked_message_id = ?4, retry_count = 0,
             next_retry_at = ?5, last_error = NULL
         WHERE conversation_id = ?1 AND peer_id = ?2",
    )?
    .execute(params![
        conversation_id.as_str(),
        peer.as_str(),
        at.0,
        at.1,
        now
    ])?;
    // Delivered = every member's cursor is at or past it: only what lies between the
    // slowest cursor before and after this move can change (the partial index
    // `messages_undelivered` holds just the messages still owed to someone).
    let slowest_after = slowest_cursor(conn, &conversation_id)?;
    if let Some((hlc, id)) = slowest_after.filter(|after| Some(after) != slowest_before.as_ref()) {
        conn.prepare_cached(
            "UPDATE messages SET status = ?5
             WHERE conversation_id = ?1 AND sender_id = ?2 AND status IN ('pending', 'sent')
               AND (hlc, message_id) <= (?3, ?4)",
        )?
        .execute(params![
            conversation_id.as_str(),
            sender.as_str(),
            hlc,
            id,
            MessageStatus::Delivered.as_str()
        ])?;
    }
    Ok(consumed)
}

/// The cursor of the member furthest behind in a group conversation.
fn slowest_cursor(
    conn: &Connection,
    conversation_id: &ConversationId,
) -> StoreResult<Option<(i64, String)>> {
    conn.prepare_cached(
        "SELECT acked_hlc, acked_message_id FROM group_delivery WHERE conversation_id = ?1
         ORDER BY acked_hlc, acked_message_id LIMIT 1",
    )?
    .query_row([conversation_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
    .map_err(Into::into)
}

/// When the next member that is owed messages may be sent them, if any.
pub(crate) fn next_due_at(conn: &Connection, local: &NodeId) -> StoreResult<Option<UnixMs>> {
    let sender = UserId::lan(local);
    Ok(conn
        .prepare_cached(
            "SELECT MIN(d.next_retry_at) FROM group_delivery d
             WHERE d.peer_id NOT IN (SELECT peer_id FROM peers WHERE blocked = 1)
               AND EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = d.conversation_id
                             AND (m.hlc, m.message_id) > (d.acked_hlc, d.acked_message_id)
                             AND m.sender_id = ?1)",
        )?
        .query_row([sender.as_str()], |r| r.get::<_, Option<i64>>(0))?)
}

/// A link to `peer` came up: whatever it is owed in every group is due now.
pub(crate) fn due_now(conn: &Connection, peer: &NodeId, now: UnixMs) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE group_delivery SET next_retry_at = ?2 WHERE peer_id = ?1 AND next_retry_at > ?2",
        )?
        .execute(params![peer.as_str(), now])?)
}
