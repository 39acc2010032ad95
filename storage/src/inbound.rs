//! Applying inbound envelopes exactly once, and the inbox dedupe table.
//!
//! # Dedupe pruning rule
//!
//! A sender retries an envelope until it is acked or until `MAX_RETRY_AGE_MS` after
//! the envelope was created (the time in its ULID, on the sender's clock); then it gives
//! up. Clocks of LAN machines are assumed within `MAX_CLOCK_SKEW_MS` of each other.
//!
//! - An envelope whose ULID time is more than `MAX_RETRY_AGE_MS + MAX_CLOCK_SKEW_MS` in
//!   the past is **expired**: its sender has given up, so any copy still arriving is a
//!   late duplicate or a replay. It is not applied (reported `Expired`, to be acked).
//! - An envelope whose ULID time is more than `MAX_CLOCK_SKEW_MS` in the future is
//!   refused: the rule below could not keep its entry long enough.
//! - A dedupe entry is kept `DEDUPE_RETENTION_MS = MAX_RETRY_AGE_MS + 2 × skew` after it
//!   was received. First receipt `r ≥ created − skew`; the last retry arrives at
//!   `≤ created + MAX_RETRY_AGE_MS + skew ≤ r + DEDUPE_RETENTION_MS`. So every copy that
//!   is not expired finds its entry, and the table holds at most nine days of envelopes.

use rusqlite::{params, Connection};

use crate::chat;
use crate::error::{StoreError, StoreResult};
use crate::groups;
use crate::hlc::Hlc;
use crate::ids::{ConversationId, UserId};
use crate::model::{
    InboundEffect, InboundEnvelope, InboundMessage, InboundOutcome, Message, MessageStatus, UnixMs,
};
use crate::peers;
use crate::retry::MAX_RETRY_AGE_MS;
use crate::writer::WriterState;

/// Office machines sync time (NTP/AD); a day covers a badly set one.
pub const MAX_CLOCK_SKEW_MS: i64 = 24 * 60 * 60 * 1_000;
pub const DEDUPE_RETENTION_MS: i64 = MAX_RETRY_AGE_MS + 2 * MAX_CLOCK_SKEW_MS;

pub(crate) fn apply(
    conn: &Connection,
    writer: &mut WriterState,
    envelope: &InboundEnvelope,
    effect: &InboundEffect,
) -> StoreResult<InboundOutcome> {
    let local = writer.local.clone().ok_or(StoreError::NoIdentity)?;
    let from = &envelope.from_peer_id;
    if *from == local {
        return Err(StoreError::invalid(
            "from_peer_id",
            "an envelope from this node itself",
        ));
    }
    let created = i64::try_from(envelope.envelope_id.timestamp_ms()).unwrap_or(i64::MAX);
    // Group messages are never given up by their sender (the member's delivery cursor
    // resends them however long it was away), and a message id is stored once for
    // good, so the expiry that bounds the dedupe table does not apply to them.
    let never_given_up = matches!(effect, InboundEffect::GroupMessage { .. });
    if !never_given_up
        && envelope.received_at.saturating_sub(created) > MAX_RETRY_AGE_MS + MAX_CLOCK_SKEW_MS
    {
        return Ok(InboundOutcome::Expired);
    }
    if created.saturating_sub(envelope.received_at) > MAX_CLOCK_SKEW_MS {
        return Err(StoreError::invalid(
            "envelope_id",
            "created in the future beyond clock skew",
        ));
    }
    if peers::is_blocked(conn, from)? {
        return Err(StoreError::Blocked(from.to_string()));
    }
    let fresh = conn
        .prepare_cached(
            "INSERT INTO inbox_dedupe (envelope_id, from_peer_id, received_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            envelope.envelope_id.to_string(),
            from.as_str(),
            envelope.received_at
        ])?;
    if fresh == 0 {
        return Ok(InboundOutcome::Duplicate);
    }
    peers::ensure_peer(conn, writer, from)?;
    let now = envelope.received_at;
    match effect {
        InboundEffect::Nothing => Ok(InboundOutcome::Applied),
        InboundEffect::DirectMessage(message) => {
            let conversation = chat::open_dm(conn, from, now)?;
            store_message(conn, writer, &conversation, envelope, message)?;
            Ok(InboundOutcome::Applied)
        }
        InboundEffect::GroupMessage {
            global_group_id,
            message,
        } => {
            if groups::group(conn, global_group_id)?.is_none() {
                return Err(StoreError::not_found("group", global_group_id));
            }
            if !groups::is_member(conn, global_group_id, from)? {
                return Err(StoreError::invalid(
                    "from_peer_id",
                    "sender is not a member of the group",
                ));
            }
            if !groups::is_member(conn, global_group_id, &local)? {
                return Err(StoreError::invalid("group", "this node is not a member"));
            }
            let conversation = ConversationId::group(global_group_id);
            store_message(conn, writer, &conversation, envelope, message)?;
            Ok(InboundOutcome::Applied)
        }
        InboundEffect::GroupUpsert(state) => groups::merge(conn, writer, from, state, now),
    }
}

fn store_message(
    conn: &Connection,
    writer: &mut WriterState,
    conversation: &ConversationId,
    envelope: &InboundEnvelope,
    message: &InboundMessage,
) -> StoreResult<()> {
    // A stamp far ahead would drag this node's clock (and so the order of everything it
    // sends) into the future for good: refuse it like an envelope from the future.
    let limit = u64::try_from(envelope.received_at.saturating_add(MAX_CLOCK_SKEW_MS)).unwrap_or(0);
    if message.hlc.wall_ms() > limit {
        return Err(StoreError::invalid(
            "hlc",
            "stamped in the future beyond clock skew",
        ));
    }
    writer.clock = Hlc::observe(writer.clock, message.hlc);
    let stored = Message {
        message_id: message.message_id,
        conversation_id: conversation.clone(),
        sender: UserId::lan(&envelope.from_peer_id),
        body: message.body.clone(),
        sent_at: message.sent_at,
        received_at: envelope.received_at,
        hlc: message.hlc,
        status: MessageStatus::Delivered,
    };
    // A message id already stored (resent under a new envelope id) is not stored twice.
    chat::insert_message(conn, &stored, true)?;
    Ok(())
}

/// Drops dedupe entries past the retention window; returns how many.
pub(crate) fn prune(conn: &Connection, now: UnixMs) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM inbox_dedupe WHERE received_at < ?1")?
        .execute([now.saturating_sub(DEDUPE_RETENTION_MS)])?)
}
