//! Applying inbound envelopes exactly once, and the inbox dedupe table.
//!
//! # Dedupe pruning rule
//!
//! A sender retries an envelope until it is acked or until `MAX_RETRY_AGE_MS` after
//! the envelope was created (the time in its ULID, on the sender's clock); then it gives
//! up. Clocks of LAN machines may differ by days, so the envelope's age is judged on the
//! sender's clock too: its time now is our receipt time plus its measured offset
//! (`InboundEnvelope::sender_clock_offset_ms`, discovery's measurement). That
//! measurement is trusted to within `MAX_OFFSET_ERROR_MS` (it is made from packets a
//! few milliseconds old; a day covers a clock that was reset since).
//!
//! - An envelope more than `MAX_RETRY_AGE_MS + MAX_OFFSET_ERROR_MS` old on its sender's
//!   clock is **expired**: its sender has given up, so any copy still arriving is a
//!   late duplicate or a replay. It is not applied (reported `Expired`, to be acked).
//! - An envelope more than `MAX_OFFSET_ERROR_MS` in its sender's future is refused:
//!   the rule below could not keep its entry long enough.
//! - A dedupe entry is kept `DEDUPE_RETENTION_MS = MAX_RETRY_AGE_MS + 2 × error` after
//!   it was received. First receipt at our `r`, the sender's clock then `r + o` with
//!   `o` within the error of the measurement `m`: `created ≤ r + m + error`; the last
//!   retry comes when the sender's clock reads `created + MAX_RETRY_AGE_MS`, at our
//!   `≤ created − o + MAX_RETRY_AGE_MS ≤ r + DEDUPE_RETENTION_MS`. So every copy that is
//!   not expired finds its entry, and the table holds at most nine days of envelopes.
//! - With no measurement (the sender's packets not seen yet) neither rule is applied:
//!   guessing "same clock" would throw away the messages of a PC days off. That is
//!   safe because every effect is idempotent on its own — a message id is stored once
//!   for good, and a group state merges into the same state however often it comes —
//!   so the dedupe table only saves work there.
//!
//! Stamps (`hlc`) of messages and group changes are never refused for being ahead:
//! whether a stamp counts as "too far ahead" would depend on each receiver's clock,
//! and members would end with different histories. Each is stored as its author made
//! it; what a wrong clock may not do is drag this node's clock (`Hlc::observe`).

use rusqlite::{params, Connection};

use crate::blocks;
use crate::chat;
use crate::error::{StoreError, StoreResult};
use crate::groups;
use crate::model::{InboundEffect, InboundEnvelope, InboundMessage, InboundOutcome};
use crate::peers;
use crate::writer::WriterState;
use chat_core::Hlc;
use chat_core::{ConversationId, UserId};
use chat_core::{Message, MessageStatus, UnixMs};
use chat_core::{DEDUPE_RETENTION_MS, MAX_OFFSET_ERROR_MS, MAX_RETRY_AGE_MS};

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
    if let Some(offset) = envelope.sender_clock_offset_ms {
        let created = i64::try_from(envelope.envelope_id.timestamp_ms()).unwrap_or(i64::MAX);
        // The sender's clock now: its age rules are on that clock.
        let sender_now = envelope.received_at.saturating_add(offset);
        // Group messages are never given up by their sender (the member's delivery
        // cursor resends them however long it was away), and a message id is stored
        // once for good, so the expiry that bounds the dedupe table does not apply.
        let never_given_up = matches!(effect, InboundEffect::GroupMessage { .. });
        if !never_given_up
            && sender_now.saturating_sub(created) > MAX_RETRY_AGE_MS + MAX_OFFSET_ERROR_MS
        {
            return Ok(InboundOutcome::Expired);
        }
        if created.saturating_sub(sender_now) > MAX_OFFSET_ERROR_MS {
            return Err(StoreError::invalid(
                "envelope_id",
                "created in the future of its sender's own clock",
            ));
        }
    }
    if blocks::refuses(conn, writer, from)? {
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
        InboundEffect::Nothing => Ok(InboundOutcome::Applied(None)),
        InboundEffect::DirectMessage(message) => {
            let conversation = chat::open_dm(conn, from, now)?;
            store_message(conn, writer, &conversation, envelope, message)
                .map(InboundOutcome::Applied)
        }
        InboundEffect::GroupMessage {
            global_group_id,
            message,
        } => {
            // One keyed read; the group's state itself is not needed (nor parsed).
            let (exists, sender_is_member, local_is_member) =
                groups::membership_pair(conn, global_group_id, from, &local)?;
            if !exists {
                return Err(StoreError::not_found("group", global_group_id));
            }
            if !sender_is_member {
                return Err(StoreError::invalid(
                    "from_peer_id",
                    "sender is not a member of the group",
                ));
            }
            if !local_is_member {
                return Err(StoreError::invalid("group", "this node is not a member"));
            }
            let conversation = ConversationId::group(global_group_id);
            store_message(conn, writer, &conversation, envelope, message)
                .map(InboundOutcome::Applied)
        }
        InboundEffect::GroupUpsert(state) => groups::merge(conn, writer, from, state, now),
        InboundEffect::ReadReceipt {
            global_group_id,
            up_to,
        } => crate::receipts::apply(conn, envelope, global_group_id.as_ref(), up_to),
    }
}

fn store_message(
    conn: &Connection,
    writer: &mut WriterState,
    conversation: &ConversationId,
    envelope: &InboundEnvelope,
    message: &InboundMessage,
) -> StoreResult<Option<Message>> {
    // However far ahead the author's clock is, the message keeps its stamp (the same
    // order on every member); only this node's clock is kept from following it far.
    if !message.hlc.fits_sql() {
        return Err(StoreError::invalid("hlc", "beyond any clock"));
    }
    let now = u64::try_from(envelope.received_at).unwrap_or(0);
    writer.clock = Hlc::observe(writer.clock, message.hlc, now);
    let stored = Message {
        message_id: message.message_id,
        conversation_id: conversation.clone(),
        sender: UserId::lan(&envelope.from_peer_id),
        body: message.body.clone(),
        sent_at: message.sent_at,
        received_at: envelope.received_at,
        hlc: message.hlc,
        status: MessageStatus::Delivered,
        sender_clock_offset_ms: envelope.sender_clock_offset_ms,
        signature: message.signature,
    };
    // A message id already stored (resent under a new envelope id) is not stored twice.
    Ok(chat::insert_message(conn, &stored, true)?.then_some(stored))
}

/// Drops dedupe entries past the retention window; returns how many.
pub(crate) fn prune(conn: &Connection, now: UnixMs) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM inbox_dedupe WHERE received_at < ?1")?
        .execute([now.saturating_sub(DEDUPE_RETENTION_MS)])?)
}
