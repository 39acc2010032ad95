//! The outbox: envelopes written before they are sent, retried until acked.

use api_types::NodeId;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::chat;
use crate::error::{StoreError, StoreResult};
use crate::model::{AckedEnvelope, OutboxEntry, OutboxStatus, OutgoingEnvelope, SendAttempt};
use crate::peers;
use crate::rows;
use crate::writer::WriterState;
use chat_core::{ConversationId, ConversationTarget, EnvelopeId, MessageId, UserId};
use chat_core::{Message, MessageStatus, UnixMs};
use chat_core::{RetryPolicy, MAX_RETRY_AGE_MS};

/// Envelope kinds are short protocol names such as `dm.send`.
const MAX_KIND_BYTES: usize = 64;

const OUTBOX_COLUMNS: &str =
    "envelope_id, peer_id, kind, payload, message_id, status, retry_count, \
                              next_retry_at, last_error, created_at";

fn entry_row(row: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
    let status: String = row.get(5)?;
    Ok(OutboxEntry {
        envelope_id: rows::parse(row, 0)?,
        peer_id: rows::parse(row, 1)?,
        kind: row.get(2)?,
        payload: row.get(3)?,
        message_id: rows::parse_opt(row, 4)?,
        status: if status == "failed" {
            OutboxStatus::Failed
        } else {
            OutboxStatus::Pending
        },
        retry_count: row.get(6)?,
        next_retry_at: row.get(7)?,
        last_error: row.get(8)?,
        created_at: row.get(9)?,
    })
}

/// Queues an envelope for a peer, due at once.
pub(crate) fn enqueue(
    conn: &Connection,
    writer: &mut WriterState,
    peer: &NodeId,
    envelope: &OutgoingEnvelope,
    message_id: Option<&MessageId>,
    now: UnixMs,
) -> StoreResult<EnvelopeId> {
    if peers::is_blocked(conn, peer)? {
        return Err(StoreError::Blocked(peer.to_string()));
    }
    insert(conn, writer, peer, envelope, message_id, now)
}

/// `enqueue` for a caller that has already checked the peer.
pub(crate) fn insert(
    conn: &Connection,
    writer: &mut WriterState,
    peer: &NodeId,
    envelope: &OutgoingEnvelope,
    message_id: Option<&MessageId>,
    now: UnixMs,
) -> StoreResult<EnvelopeId> {
    if envelope.kind.is_empty() || envelope.kind.len() > MAX_KIND_BYTES {
        return Err(StoreError::invalid("kind", format!("{:?}", envelope.kind)));
    }
    let envelope_id = EnvelopeId::from_ulid(writer.next_ulid());
    conn.prepare_cached(
        "INSERT INTO outbox (envelope_id, peer_id, kind, payload, message_id, status, next_retry_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
    )?
    .execute(params![
        envelope_id.to_string(),
        peer.as_str(),
        envelope.kind,
        envelope.payload,
        message_id.map(ToString::to_string),
        now
    ])?;
    Ok(envelope_id)
}

/// A DM from the local user to `peer`: the message row and its outbox envelope, in the
/// caller's transaction. Returns the message and the new (pending, due now) entry.
pub(crate) fn send_direct(
    conn: &Connection,
    writer: &mut WriterState,
    peer: &NodeId,
    text: &str,
    now: UnixMs,
    encode: impl FnOnce(&Message) -> OutgoingEnvelope,
) -> StoreResult<(Message, OutboxEntry)> {
    peers::require_sendable(conn, peer)?;
    let conversation = chat::ensure_dm(conn, peer, now)?;
    let message = chat::insert_local_message(conn, writer, &conversation, text, now)?;
    let envelope = encode(&message);
    let envelope_id = insert(
        conn,
        writer,
        peer,
        &envelope,
        Some(&message.message_id),
        now,
    )?;
    let entry = OutboxEntry {
        envelope_id,
        peer_id: peer.clone(),
        kind: envelope.kind,
        payload: envelope.payload,
        message_id: Some(message.message_id),
        status: OutboxStatus::Pending,
        retry_count: 0,
        next_retry_at: now,
        last_error: None,
        created_at: now,
    };
    Ok((message, entry))
}

/// Envelopes due at `now`, earliest first (ties in creation order), skipping blocked peers.
pub(crate) fn due(conn: &Connection, now: UnixMs, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox
         WHERE status = 'pending' AND next_retry_at <= ?1
           AND peer_id NOT IN (SELECT peer_id FROM peers WHERE blocked = 1)
         ORDER BY next_retry_at, envelope_id LIMIT ?2"
    ))?;
    let list = stmt
        .query_map(params![now, limit.max(1)], entry_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(list)
}

/// When the earliest pending envelope is due, so the sender can sleep until then.
pub(crate) fn next_due_at(conn: &Connection) -> StoreResult<Option<UnixMs>> {
    Ok(conn
        .prepare_cached("SELECT MIN(next_retry_at) FROM outbox WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

pub(crate) fn entry(conn: &Connection, id: &EnvelopeId) -> StoreResult<Option<OutboxEntry>> {
    conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE envelope_id = ?1"
    ))?
    .query_row([id.to_string()], entry_row)
    .optional()
    .map_err(Into::into)
}

pub(crate) fn for_peer(conn: &Connection, peer: &NodeId) -> StoreResult<Vec<OutboxEntry>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE peer_id = ?1 ORDER BY envelope_id"
    ))?;
    let list = stmt
        .query_map([peer.as_str()], entry_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(list)
}

/// Records one attempt and schedules the next: after a send, the retry fires if no ack
/// came by then. An envelope older than `MAX_RETRY_AGE_MS` is given up and its message
/// marked failed. Returns the updated entry, or `None` if it was acked meanwhile.
pub(crate) fn record_attempt(
    conn: &Connection,
    policy: &RetryPolicy,
    id: &EnvelopeId,
    attempt: &SendAttempt,
    now: UnixMs,
    jitter: f64,
) -> StoreResult<Option<OutboxEntry>> {
    let Some(current) = entry(conn, id)? else {
        return Ok(None);
    };
    // A reject (or a give-up) can land between the send and this record: the attempt
    // must not bring a failed envelope back to life.
    if current.status != OutboxStatus::Pending {
        return Ok(Some(current));
    }
    let attempts = current.retry_count.saturating_add(1);
    let give_up = now.saturating_sub(current.created_at) >= MAX_RETRY_AGE_MS;
    let error = match attempt {
        SendAttempt::Sent => None,
        SendAttempt::Failed(e) => Some(e.chars().take(1_000).collect::<String>()),
    };
    conn.prepare_cached(
        "UPDATE outbox SET retry_count = ?2, next_retry_at = ?3, status = ?4,
             last_error = COALESCE(?5, last_error)
         WHERE envelope_id = ?1 AND status = 'pending'",
    )?
    .execute(params![
        id.to_string(),
        attempts,
        policy.next_retry_at(now, attempts, jitter),
        if give_up { "failed" } else { "pending" },
        error
    ])?;
    if let Some(message_id) = &current.message_id {
        if give_up {
            fail_message(conn, message_id)?;
        } else if *attempt == SendAttempt::Sent {
            chat::set_message_status(
                conn,
                message_id,
                MessageStatus::Sent,
                &[MessageStatus::Pending],
            )?;
        }
    }
    entry(conn, id)
}

/// The peer acked: the envelope is done and its message delivered. A second ack for the
/// same envelope finds nothing and returns `None`; an ack from another peer than the
/// envelope's receiver changes nothing either.
pub(crate) fn acked(
    conn: &Connection,
    id: &EnvelopeId,
    from: &NodeId,
) -> StoreResult<Option<AckedEnvelope>> {
    let row: Option<(NodeId, Option<String>)> = conn
        .prepare_cached(
            "DELETE FROM outbox WHERE envelope_id = ?1 AND peer_id = ?2
             RETURNING peer_id, message_id",
        )?
        .query_row(params![id.to_string(), from.as_str()], |r| {
            Ok((rows::parse(r, 0)?, r.get(1)?))
        })
        .optional()?;
    let Some((peer_id, message_id)) = row else {
        return Ok(None);
    };
    let message_id = message_id.map(|m| m.parse::<MessageId>()).transpose()?;
    let acked = AckedEnvelope {
        envelope_id: *id,
        peer_id,
        message_id,
    };
    if let Some(message_id) = message_id {
        chat::set_message_status(
            conn,
            &message_id,
            MessageStatus::Delivered,
            &[
                MessageStatus::Pending,
                MessageStatus::Sent,
                MessageStatus::Failed,
            ],
        )?;
    }
    Ok(Some(acked))
}

/// A peer came (back) within reach: its pending envelopes are due now instead of at the
/// end of a backoff grown while it was away. Returns how many.
pub(crate) fn due_now(conn: &Connection, peer: &NodeId, now: UnixMs) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE outbox SET next_retry_at = ?2
             WHERE peer_id = ?1 AND status = 'pending' AND next_retry_at > ?2",
        )?
        .execute(params![peer.as_str(), now])?)
}

/// The receiver refused the envelope for good (e.g. a kind it does not know): stop
/// retrying, keep the row with the reason, and mark its message failed.
pub(crate) fn rejected(
    conn: &Connection,
    id: &EnvelopeId,
    from: &NodeId,
    reason: &str,
) -> StoreResult<Option<AckedEnvelope>> {
    let row: Option<Option<String>> = conn
        .prepare_cached(
            "UPDATE outbox SET status = 'failed', last_error = ?3
             WHERE envelope_id = ?1 AND peer_id = ?2 AND status = 'pending'
             RETURNING message_id",
        )?
        .query_row(
            params![
                id.to_string(),
                from.as_str(),
                reason.chars().take(1_000).collect::<String>()
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(message_id) = row else {
        return Ok(None);
    };
    let message_id = message_id.map(|m| m.parse::<MessageId>()).transpose()?;
    if let Some(message_id) = &message_id {
        fail_message(conn, message_id)?;
    }
    Ok(Some(AckedEnvelope {
        envelope_id: *id,
        peer_id: from.clone(),
        message_id,
    }))
}

/// Queues a failed outgoing DM again: a new envelope for the same message, which goes
/// back to pending. The message keeps its id and clock stamp, so it keeps its place in
/// the conversation, and a copy that did reach the peer after all is not stored twice
/// there (the receiver stores a message id once). The given-up envelope is replaced.
pub(crate) fn retry_message<E>(
    conn: &Connection,
    writer: &mut WriterState,
    conversation: &ConversationId,
    message_id: &MessageId,
    now: UnixMs,
    encode: E,
) -> StoreResult<Message>
where
    E: FnOnce(&Message) -> OutgoingEnvelope,
{
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let not_found = || StoreError::not_found("outgoing direct message", message_id);
    // Group messages are never given up: their members' delivery cursors resend them.
    let ConversationTarget::Direct(peer) = conversation.target() else {
        return Err(not_found());
    };
    let message = chat::message(conn, message_id)?
        .filter(|m| &m.conversation_id == conversation && m.sender == UserId::lan(&local))
        .ok_or_else(not_found)?;
    if message.status != MessageStatus::Failed {
        return Err(StoreError::NotFailed {
            message_id: message_id.to_string(),
            status: message.status.as_str(),
        });
    }
    peers::require_sendable(conn, peer)?;
    conn.prepare_cached("DELETE FROM outbox WHERE peer_id = ?1 AND message_id = ?2")?
        .execute(params![peer.as_str(), message_id.to_string()])?;
    chat::set_message_status(
        conn,
        message_id,
        MessageStatus::Pending,
        &[MessageStatus::Failed],
    )?;
    let message = Message {
        status: MessageStatus::Pending,
        ..message
    };
    insert(conn, writer, peer, &encode(&message), Some(message_id), now)?;
    Ok(message)
}

/// Signs again every local DM still queued, for the ids the node and each receiver
/// have now, and re-encodes its payload (envelope id kept, so a receiver that already
/// applied it acks it as a duplicate). A DM's signature names its author and its
/// recipient (docs/PROTOCOL.md, "Signatures"): one queued before this node took its
/// derived id, before its receiver's id was re-attached, or before messages were signed
/// would be refused as forged. Returns how many payloads changed; none without a signer.
pub(crate) fn resign_queued_direct<E>(
    conn: &Connection,
    writer: &WriterState,
    encode: E,
) -> StoreResult<usize>
where
    E: Fn(&Message) -> OutgoingEnvelope,
{
    let Some(local) = writer.local.clone() else {
        return Ok(0);
    };
    if writer.signer.is_none() {
        return Ok(0);
    }
    let queued: Vec<(String, NodeId, MessageId)> = conn
        .prepare_cached(
            "SELECT envelope_id, peer_id, message_id FROM outbox
             WHERE status = 'pending' AND kind = 'dm.send' AND message_id IS NOT NULL",
        )?
        .query_map([], |r| {
            Ok((r.get(0)?, rows::parse(r, 1)?, rows::parse(r, 2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut changed = 0;
    for (envelope_id, peer, message_id) in queued {
        let Some(mut message) = chat::message(conn, &message_id)? else {
            continue;
        };
        if message.sender != UserId::lan(&local)
            || message.conversation_id != ConversationId::dm(&peer)
        {
            continue;
        }
        let signature = chat::sign_message(writer, &local, &message);
        if signature == message.signature {
            continue;
        }
        message.signature = signature;
        conn.prepare_cached("UPDATE messages SET signature = ?2 WHERE message_id = ?1")?
            .execute(params![
                message_id.to_string(),
                signature.map(|s| s.to_bytes())
            ])?;
        conn.prepare_cached("UPDATE outbox SET payload = ?2 WHERE envelope_id = ?1")?
            .execute(params![envelope_id, encode(&message).payload])?;
        changed += 1;
    }
    Ok(changed)
}

/// A message whose envelope will not be sent any more is failed (unless it was
/// delivered meanwhile).
fn fail_message(conn: &Connection, message_id: &MessageId) -> StoreResult<()> {
    chat::set_message_status(
        conn,
        message_id,
        MessageStatus::Failed,
        &[MessageStatus::Pending, MessageStatus::Sent],
    )
}
