//! Group catch-up (anti-entropy, docs/PROTOCOL.md "Group catch-up"): what a node has of
//! a group's history, summarised over ranges of order keys, and storing messages that a
//! member relays on behalf of their authors.
//!
//! A range is `[lo, hi)` over `(hlc, message_id)`, the order every node shows; its
//! fingerprint is the count of messages in it and the xor of a stable 64-bit hash of
//! each message id. Xor is order-independent and splits over sub-ranges, so two nodes
//! that hold the same messages compute the same fingerprint whatever order they
//! received them in. The key reads use the index `messages_in_order`
//! `(conversation_id, hlc, message_id)`, which covers them (no table lookups).

use std::collections::HashMap;

use api_types::NodeId;
use rusqlite::{params, Connection};

use crate::blocks;
use crate::chat;
use crate::error::{StoreError, StoreResult};
use crate::groups;
use crate::peers;
use crate::rows::HlcColumn;
use crate::rows::{self, MESSAGE_COLUMNS};
use crate::writer::WriterState;
use chat_core::Hlc;
use chat_core::{content_hash, message_statement, MessageScope};
use chat_core::{ConversationId, GlobalGroupId, MessageId, UserId};
use chat_core::{Fingerprint, KeyRange, Message, MessageStatus, OrderKey, RelayedMessage, UnixMs};

/// What applying a relayed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayOutcome {
    /// The messages stored now, in the batch's order.
    pub stored: Vec<Message>,
    /// Already held here (by id), authored by this node, or refused one by one
    /// (author blocked, stamp in the future, invalid body).
    pub skipped: usize,
    /// Of the skipped, ids held here with other content (`StoreError::Forged`).
    pub forged: usize,
}

/// The order keys of a group's messages in `range`, ascending.
pub(crate) fn keys(
    conn: &Connection,
    group: &GlobalGroupId,
    range: &KeyRange,
) -> StoreResult<Vec<OrderKey>> {
    let conversation = ConversationId::group(group);
    let lo = range.lo;
    let map = |row: &rusqlite::Row<'_>| -> rusqlite::Result<OrderKey> {
        Ok(OrderKey {
            hlc: Hlc::from_sql(row.get(0)?),
            message_id: rows::parse(row, 1)?,
        })
    };
    let list = match range.hi {
        None => conn
            .prepare_cached(
                "SELECT hlc, message_id FROM messages
                 WHERE conversation_id = ?1 AND (hlc, message_id) >= (?2, ?3)
                 ORDER BY hlc, message_id",
            )?
            .query_map(
                params![
                    conversation.as_str(),
                    lo.hlc.to_sql(),
                    lo.message_id.to_string()
                ],
                map,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        Some(hi) => conn
            .prepare_cached(
                "SELECT hlc, message_id FROM messages
                 WHERE conversation_id = ?1 AND (hlc, message_id) >= (?2, ?3)
                   AND (hlc, message_id) < (?4, ?5)
                 ORDER BY hlc, message_id",
            )?
            .query_map(
                params![
                    conversation.as_str(),
                    lo.hlc.to_sql(),
                    lo.message_id.to_string(),
                    hi.hlc.to_sql(),
                    hi.message_id.to_string()
                ],
                map,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(list)
}

/// The range's fingerprint over the messages' content (docs/PROTOCOL.md, "Group
/// catch-up"): each message counts by the hash of the statement its author signed, so
/// one id held with two texts shows as a difference. Reads the bodies (not only the
/// index): the statement covers them.
pub(crate) fn fingerprint(
    conn: &Connection,
    group: &GlobalGroupId,
    range: &KeyRange,
) -> StoreResult<Fingerprint> {
    let conversation = ConversationId::group(group);
    let (hi_hlc, hi_id) = match range.hi {
        Some(hi) => (hi.hlc.to_sql(), hi.message_id.to_string()),
        None => (i64::MAX, "~".to_string()),
    };
    let mut fp = Fingerprint::default();
    let mut rows = conn.prepare_cached(
        "SELECT message_id, sender_id, body, sent_at, hlc FROM messages
             WHERE conversation_id = ?1 AND (hlc, message_id) >= (?2, ?3)
               AND (hlc, message_id) < (?4, ?5)",
    )?;
    let mut rows = rows.query(params![
        conversation.as_str(),
        range.lo.hlc.to_sql(),
        range.lo.message_id.to_string(),
        hi_hlc,
        hi_id
    ])?;
    while let Some(row) = rows.next()? {
        let id: MessageId = rows::parse(row, 0)?;
        let sender: UserId = rows::parse(row, 1)?;
        let author = sender
            .node_id()
            .ok_or_else(|| StoreError::Malformed(format!("group message {id} without a node")))?;
        let body: String = row.get(2)?;
        let statement = message_statement(
            MessageScope::Group(group),
            &id,
            &author,
            row.get(3)?,
            Hlc::from_sql(row.get(4)?),
            &body,
        );
        fp.add_hash(content_hash(&statement));
    }
    Ok(fp)
}

/// The messages among `ids` that this group's conversation holds, in order, as they
/// would be relayed. Ids of other conversations are ignored: a member can only fetch
/// what belongs to the group it asks about.
pub(crate) fn messages_for_relay(
    conn: &Connection,
    group: &GlobalGroupId,
    ids: &[MessageId],
) -> StoreResult<Vec<RelayedMessage>> {
    let conversation = ConversationId::group(group);
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Malformed(e.to_string()))?;
    let messages = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.conversation_id = ?1 AND m.message_id IN (SELECT value FROM json_each(?2))
             ORDER BY m.hlc, m.message_id"
        ))?
        .query_map(params![conversation.as_str(), ids], |row| {
            rows::message(row, 0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(messages
        .into_iter()
        .filter_map(|m| {
            // Every group message has a node as sender (`lan:{node}`, the local user
            // included); anything else would not be a group message.
            let author = m.sender.node_id()?;
            Some(RelayedMessage {
                message_id: m.message_id,
                author,
                body: m.body,
                sent_at: m.sent_at,
                hlc: m.hlc,
                signature: m.signature,
            })
        })
        .collect())
}

/// Stores messages of `group` relayed by the member `from`, in one transaction.
///
/// Refused as a whole (nothing stored) when the group is unknown here, or this node or
/// `from` is not a member of it in this node's view. Each message is stored with its
/// author as sender, not the relay; one already held (by id), authored by this node,
/// by a blocked author, stamped beyond what SQLite holds, or with an invalid body is
/// skipped; a stamp far ahead is kept as its author made it. The clock observes every
/// stored stamp (bounded, see `Hlc::observe`), like a normal receipt. `author_offsets`
/// are the authors' measured clock offsets, kept with each message to show it at a
/// sensible time (`Message::shown_at`). Each stored
/// id is also recorded in the inbox dedupe table, as its author's own `group.send`
/// would have been (whose envelope id is the message id): when the author later resends
/// it, the resend is acked as a duplicate instead of being announced again.
pub(crate) fn apply_relayed(
    conn: &Connection,
    writer: &mut WriterState,
    from: &NodeId,
    group: &GlobalGroupId,
    messages: &[RelayedMessage],
    author_offsets: &HashMap<NodeId, i64>,
    now: UnixMs,
) -> StoreResult<RelayOutcome> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    if *from == local {
        return Err(StoreError::invalid(
            "from_peer_id",
            "a relay from this node itself",
        ));
    }
    if blocks::refuses(conn, writer, from)? {
        return Err(StoreError::Blocked(from.to_string()));
    }
    if groups::group(conn, group)?.is_none() {
        return Err(StoreError::not_found("group", group));
    }
    if !groups::is_member(conn, group, &local)? {
        return Err(StoreError::invalid("group", "this node is not a member"));
    }
    if !groups::is_member(conn, group, from)? {
        return Err(StoreError::invalid(
            "from_peer_id",
            "the relaying node is not a member of the group",
        ));
    }
    let conversation = ConversationId::group(group);
    let now_wall = u64::try_from(now).unwrap_or(0);
    let mut outcome = RelayOutcome::default();
    for relayed in messages {
        let refused = relayed.author == local
            || !relayed.hlc.fits_sql()
            || chat::validate_body(&relayed.body).is_err()
            || blocks::refuses(conn, writer, &relayed.author)?;
        if refused {
            outcome.skipped += 1;
            continue;
        }
        let message = Message {
            message_id: relayed.message_id,
            conversation_id: conversation.clone(),
            sender: UserId::lan(&relayed.author),
            body: relayed.body.clone(),
            sent_at: relayed.sent_at,
            received_at: now,
            hlc: relayed.hlc,
            status: MessageStatus::Delivered,
            sender_clock_offset_ms: author_offsets.get(&relayed.author).copied(),
            signature: relayed.signature,
        };
        // The author may be a member this node never saw online: its user must exist
        // for the history to name it.
        peers::ensure_peer(conn, writer, &relayed.author)?;
        match chat::insert_message(conn, &message, true) {
            Ok(true) => {}
            Ok(false) => {
                outcome.skipped += 1;
                continue;
            }
            // A known id with other content: not stored, counted by the caller.
            Err(StoreError::Forged(reason)) => {
                tracing::warn!(%from, "relayed {reason}");
                outcome.skipped += 1;
                outcome.forged += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        writer.clock = Hlc::observe(writer.clock, relayed.hlc, now_wall);
        conn.prepare_cached(
            "INSERT INTO inbox_dedupe (envelope_id, from_peer_id, received_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            relayed.message_id.to_string(),
            relayed.author.as_str(),
            now
        ])?;
        outcome.stored.push(message);
    }
    Ok(outcome)
}
