//! Integration tests of the store on real SQLite files.

// clippy.toml allows unwrap in tests, but only inside `#[test]` functions: the helpers
// of this test crate are test code too.
#![allow(clippy::unwrap_used)]

mod atomicity;
mod attachments;
mod blocks;
mod chat;
mod clocks;
mod crash;
mod group_sync;
mod identity;
mod links;
mod mesh;
mod opening;
mod ordering;
mod receipts;
mod search;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use api_types::NodeId;
use storage::{
    ConversationId, EnvelopeId, GlobalGroupId, Hlc, InboundEffect, InboundEnvelope, InboundMessage,
    Message, MessageId, OutboxEntry, OutgoingEnvelope, SendAttempt, Store, StoreResult, UnixMs,
};

pub fn node(n: u8) -> NodeId {
    format!("01HZZZZZZZZZZZZZZZZZZZZZ{n:02}").parse().unwrap()
}

pub fn now_ms() -> UnixMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(storage::DATABASE_FILE)
}

/// A store with identity `node(0)` and peers `node(1..=peers)` seen online.
pub async fn open_with_peers(path: &Path, peers: u8) -> Store {
    let store = Store::open(path).await.unwrap();
    store
        .set_local_identity(node(0), "Me".into(), now_ms())
        .await
        .unwrap();
    for n in 1..=peers {
        store
            .record_peer_sighting(sighting(n, &format!("Peer {n}")))
            .await
            .unwrap();
    }
    store
}

/// Discovery seeing `node(n)` now under `name`.
pub fn sighting(n: u8, name: &str) -> storage::PeerSighting {
    storage::PeerSighting {
        peer_id: node(n),
        display_name: name.into(),
        ip: format!("10.0.0.{n}"),
        port: 19123,
        capabilities: "[]".into(),
        seen_at: now_ms(),
    }
}

/// Gives the store the settings' blocks: exactly these nodes, no subnets.
pub async fn block_only(store: &Store, peers: &[NodeId]) -> Vec<storage::NewlyBlocked> {
    store
        .apply_blocks(storage::BlockList {
            peers: peers.to_vec(),
            subnets: Vec::new(),
        })
        .await
        .unwrap()
}

pub fn dm_envelope(message: &storage::Message) -> OutgoingEnvelope {
    OutgoingEnvelope {
        kind: "dm.send".into(),
        payload: format!("{{\"id\":\"{}\"}}", message.message_id).into_bytes(),
    }
}

pub fn inbound_dm(from: u8, body: &str) -> (InboundEnvelope, InboundEffect) {
    // Messages made in one millisecond must still sort in the order they were made
    // (their ids are random within it): the logical part of the stamp counts up.
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = now_ms();
    let tick = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 0x8000;
    (
        InboundEnvelope {
            envelope_id: EnvelopeId::new(),
            from_peer_id: node(from),
            received_at: now,
            sender_clock_offset_ms: Some(0),
        },
        InboundEffect::DirectMessage(InboundMessage {
            signature: None,
            message_id: MessageId::new(),
            body: body.into(),
            sent_at: now,
            hlc: Hlc::from_raw(Hlc::from_wall_ms(now as u64).raw() + tick),
        }),
    )
}

// The store's one way to do each of these, in the shape most tests want.

/// A DM sent through `Store::send_message_queued`: the message and its envelope's id.
pub async fn send_dm(
    store: &Store,
    to: NodeId,
    text: String,
    now: UnixMs,
) -> StoreResult<(Message, EnvelopeId)> {
    let (message, entry) = store
        .send_message_queued(ConversationId::dm(&to), text, now, dm_envelope)
        .await?;
    let entry = entry.expect("a DM is queued in the outbox");
    Ok((message, entry.envelope_id))
}

/// A group message sent through `Store::send_message_queued` (no outbox entry: the
/// members' delivery cursors carry it, so the encoder is never called).
pub async fn send_group(
    store: &Store,
    group: GlobalGroupId,
    text: String,
    now: UnixMs,
) -> StoreResult<Message> {
    let (message, entry) = store
        .send_message_queued(ConversationId::group(&group), text, now, dm_envelope)
        .await?;
    assert!(entry.is_none(), "a group message has no outbox entry");
    Ok(message)
}

/// One send attempt, recorded as the delivery worker records a pass of them.
pub async fn record_attempt(
    store: &Store,
    envelope: EnvelopeId,
    attempt: SendAttempt,
    now: UnixMs,
) -> StoreResult<Option<OutboxEntry>> {
    let mut recorded = store
        .record_outbox_attempts(vec![(envelope, attempt)], now)
        .await?;
    Ok(recorded.pop().flatten())
}

/// One member's acks, recorded as the delivery worker records them: the ids that moved
/// its cursor.
pub async fn member_acks(
    store: &Store,
    group: GlobalGroupId,
    peer: NodeId,
    message_ids: Vec<MessageId>,
    now: UnixMs,
) -> StoreResult<Vec<MessageId>> {
    let recorded = store
        .group_acks_recorded(vec![(group, peer, message_ids)], now)
        .await?;
    Ok(recorded.concat())
}
