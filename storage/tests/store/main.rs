//! Integration tests of the store on real SQLite files.

// clippy.toml allows unwrap in tests, but only inside `#[test]` functions: the helpers
// of this test crate are test code too.
#![allow(clippy::unwrap_used)]

mod atomicity;
mod chat;
mod clocks;
mod crash;
mod group_sync;
mod links;
mod mesh;
mod opening;
mod ordering;
mod search;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use api_types::NodeId;
use storage::{
    EnvelopeId, Hlc, InboundEffect, InboundEnvelope, InboundMessage, MessageId, OutgoingEnvelope,
    Store, UnixMs,
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
            .record_peer_sighting(storage::PeerSighting {
                peer_id: node(n),
                display_name: format!("Peer {n}"),
                ip: format!("10.0.0.{n}"),
                port: 19123,
                capabilities: "[]".into(),
                seen_at: now_ms(),
            })
            .await
            .unwrap();
    }
    store
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
            message_id: MessageId::new(),
            body: body.into(),
            sent_at: now,
            hlc: Hlc::from_raw(Hlc::from_wall_ms(now as u64).raw() + tick),
        }),
    )
}
