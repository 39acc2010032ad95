//! Read positions and read receipts (docs/STORAGE.md, "Read receipts").
//!
//! `read_positions` holds, per conversation and reader, the order key of the newest
//! message the reader has read — this node's own (reader = the local node) and every
//! peer's from their `receipt.read` envelopes. A position only moves forward, so a
//! receipt applied twice or late changes nothing. Whether a DM is read, and how many
//! members have read a group message, are computed from these positions
//! (`chat_core::receipts`): no row per message and reader.
//!
//! Marking a conversation read queues one receipt per recipient in the outbox (so it is
//! durable and retried like any envelope), due `RECEIPT_DELAY_MS` later; a newer
//! receipt for the same conversation and recipient replaces one still waiting
//! (`receipt_outbox` remembers which envelope that is), so reading in bursts sends one.

use rusqlite::{params, Connection, OptionalExtension};

use crate::chat;
use crate::error::{StoreError, StoreResult};
use crate::groups;
use crate::model::{InboundEnvelope, InboundOutcome, OutgoingEnvelope, ReadState};
use crate::outbox;
use crate::peers;
use crate::rows::{self, HlcColumn};
use crate::writer::WriterState;
use chat_core::receipts::RECEIPT_DELAY_MS;
use chat_core::{ConversationId, ConversationTarget, GlobalGroupId, Hlc, MessageId, OrderKey};
use chat_core::{UnixMs, UserId};

use api_types::NodeId;

/// What marking a conversation read did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkedRead {
    /// This node's read position moved to here (`None`: nothing new was read).
    pub moved_to: Option<OrderKey>,
    /// Receipt envelopes queued (one per recipient; 0 with receipts off).
    pub receipts_queued: u32,
}

/// Moves `reader`'s position to `up_to` if that is further; returns whether it moved.
fn advance(
    conn: &Connection,
    conversation: &ConversationId,
    reader: &NodeId,
    up_to: &OrderKey,
    now: UnixMs,
) -> StoreResult<bool> {
    // Row values compare like the order key: (hlc, message id).
    let n = conn
        .prepare_cached(
            "INSERT INTO read_positions (conversation_id, reader_id, read_hlc, read_message_id, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (conversation_id, reader_id) DO UPDATE SET
                 read_hlc = excluded.read_hlc, read_message_id = excluded.read_message_id,
                 updated_at = excluded.updated_at
             WHERE (excluded.read_hlc, excluded.read_message_id) > (read_hlc, read_message_id)",
        )?
        .execute(params![
            conversation.as_str(),
            reader.as_str(),
            up_to.hlc.to_sql(),
            up_to.message_id.to_string(),
            now
        ])?;
    Ok(n > 0)
}

/// The newest message in the conversation written by someone else: what reading it
/// up to now has covered. Own messages need no receipt.
fn newest_from_others(
    conn: &Connection,
    conversation: &ConversationId,
    local: &NodeId,
) -> StoreResult<Option<OrderKey>> {
    Ok(conn
        .prepare_cached(
            "SELECT hlc, message_id FROM messages
             WHERE conversation_id = ?1 AND sender_id != ?2
             ORDER BY hlc DESC, message_id DESC LIMIT 1",
        )?
        .query_row(
            params![conversation.as_str(), UserId::lan(local).to_string()],
            |row| {
                Ok(OrderKey {
                    hlc: Hlc::from_sql(row.get(0)?),
                    message_id: rows::parse::<MessageId>(row, 1)?,
                })
            },
        )
        .optional()?)
}

/// Marks a conversation read: unread to 0, this node's read position to the newest
/// message from others, and — with `send_receipts` and a position that moved — one
/// `receipt.read` per recipient into the outbox, replacing one still waiting there.
pub(crate) fn mark_read<E>(
    conn: &Connection,
    writer: &mut WriterState,
    conversation: &ConversationId,
    send_receipts: bool,
    now: UnixMs,
    encode: E,
) -> StoreResult<MarkedRead>
where
    E: Fn(Option<&GlobalGroupId>, &OrderKey) -> OutgoingEnvelope,
{
    chat::mark_read(conn, conversation)?;
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let Some(newest) = newest_from_others(conn, conversation, &local)? else {
        return Ok(MarkedRead::default());
    };
    if !advance(conn, conversation, &local, &newest, now)? {
        return Ok(MarkedRead::default());
    }
    let mut marked = MarkedRead {
        moved_to: Some(newest),
        receipts_queued: 0,
    };
    if !send_receipts {
        return Ok(marked);
    }
    let (group, recipients) = match conversation.target() {
        ConversationTarget::Direct(peer) => (None, vec![peer.clone()]),
        ConversationTarget::Group(id) => {
            let Some(group) = groups::group(conn, id)? else {
                return Ok(marked);
            };
            // A receipt speaks to the members now; one who left, or a group this node
            // left or that was dissolved, hears nothing more.
            if !group.state.is_member(&local) || group.state.is_dissolved() {
                return Ok(marked);
            }
            let members = group.state.member_ids();
            (
                Some(*id),
                members.into_iter().filter(|m| *m != local).collect(),
            )
        }
    };
    let envelope = encode(group.as_ref(), &newest);
    for peer in recipients {
        if peers::is_blocked(conn, &peer)? {
            continue;
        }
        peers::ensure_peer(conn, writer, &peer)?;
        queue(conn, writer, conversation, &peer, &envelope, now)?;
        marked.receipts_queued += 1;
    }
    Ok(marked)
}

/// Queues one receipt to `peer`, due after `RECEIPT_DELAY_MS`, replacing the one
/// still waiting for the same conversation (it said less) or refused for good (an
/// older peer that does not know receipts: one dead row per conversation, not one per
/// read). One already sent and pending is left to its ack; if that is lost, this one
/// says more anyway.
fn queue(
    conn: &Connection,
    writer: &mut WriterState,
    conversation: &ConversationId,
    peer: &NodeId,
    envelope: &OutgoingEnvelope,
    now: UnixMs,
) -> StoreResult<()> {
    let waiting: Option<String> = conn
        .prepare_cached(
            "SELECT envelope_id FROM receipt_outbox WHERE conversation_id = ?1 AND peer_id = ?2",
        )?
        .query_row(params![conversation.as_str(), peer.as_str()], |r| r.get(0))
        .optional()?;
    if let Some(old) = waiting {
        conn.prepare_cached(
            "DELETE FROM outbox WHERE envelope_id = ?1 AND (retry_count = 0 OR status = 'failed')",
        )?
        .execute([old])?;
    }
    let id = outbox::insert(conn, writer, peer, envelope, None, now)?;
    conn.prepare_cached("UPDATE outbox SET next_retry_at = ?2 WHERE envelope_id = ?1")?
        .execute(params![
            id.to_string(),
            now.saturating_add(RECEIPT_DELAY_MS)
        ])?;
    conn.prepare_cached(
        "INSERT INTO receipt_outbox (conversation_id, peer_id, envelope_id) VALUES (?1, ?2, ?3)
         ON CONFLICT (conversation_id, peer_id) DO UPDATE SET envelope_id = excluded.envelope_id",
    )?
    .execute(params![
        conversation.as_str(),
        peer.as_str(),
        id.to_string()
    ])?;
    Ok(())
}

/// Applies a `receipt.read` from `envelope.from_peer_id`. Refused (never stored) when
/// the sender is not in the conversation it names: a DM this node does not have with
/// it, or a group it is not a member of.
pub(crate) fn apply(
    conn: &Connection,
    envelope: &InboundEnvelope,
    group: Option<&GlobalGroupId>,
    up_to: &OrderKey,
) -> StoreResult<InboundOutcome> {
    let from = &envelope.from_peer_id;
    if !up_to.hlc.fits_sql() {
        return Err(StoreError::invalid("hlc", "beyond any clock"));
    }
    let conversation = match group {
        None => {
            let conversation = ConversationId::dm(from);
            if !conversation_exists(conn, &conversation)? {
                return Err(StoreError::invalid(
                    "conversation_id",
                    "a read receipt for a DM this node does not have",
                ));
            }
            conversation
        }
        Some(id) => {
            if groups::group(conn, id)?.is_none() {
                return Err(StoreError::not_found("group", id));
            }
            if !groups::is_member(conn, id, from)? {
                return Err(StoreError::invalid(
                    "from_peer_id",
                    "a read receipt from a node that is not a member of the group",
                ));
            }
            ConversationId::group(id)
        }
    };
    let moved = advance(conn, &conversation, from, up_to, envelope.received_at)?;
    Ok(InboundOutcome::ReadReceipt {
        conversation_id: conversation,
        up_to: *up_to,
        moved,
    })
}

fn conversation_exists(conn: &Connection, conversation: &ConversationId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM conversations WHERE conversation_id = ?1)")?
        .query_row([conversation.as_str()], |r| r.get(0))?)
}

/// Every reader's position in a conversation, and for a group its present members.
pub(crate) fn read_state(
    conn: &Connection,
    conversation: &ConversationId,
) -> StoreResult<ReadState> {
    let positions = conn
        .prepare_cached(
            "SELECT reader_id, read_hlc, read_message_id FROM read_positions
             WHERE conversation_id = ?1 ORDER BY reader_id",
        )?
        .query_map([conversation.as_str()], |row| {
            Ok((
                rows::parse::<NodeId>(row, 0)?,
                OrderKey {
                    hlc: Hlc::from_sql(row.get(1)?),
                    message_id: rows::parse::<MessageId>(row, 2)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let members = match conversation.target() {
        ConversationTarget::Direct(_) => Vec::new(),
        ConversationTarget::Group(id) => groups::group(conn, id)?
            .map(|g| g.state.member_ids())
            .unwrap_or_default(),
    };
    Ok(ReadState { positions, members })
}
