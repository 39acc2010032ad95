//! Valid inputs for every target, built with the real encoders: the seed corpus
//! (`fuzz/corpus/<target>/`, written by the ignored test `write_the_seed_corpus`) and
//! the starting points the property tests mutate. Each target's seeds reach its
//! accepting path (`tests/properties.rs` checks that they still do).

use api_types::Presence;
use chat_core::{
    GlobalGroupId, GroupState, Hlc, KeyRange, MessageId, MessageScope, OrderKey, Stamp,
};
use lan_mesh::discovery::{InstanceId, Nonce, Packet, PacketKind, PublicKey, UnixMillis};
use lan_mesh::envelope::{
    Envelope, GroupStateWire, RangeSummary, SyncMessage, SyncRange, KIND_DM_SEND,
};
use lan_mesh::secret::SharedSecret;
use lan_mesh::transport::noise::Handshake;
use lan_mesh::transport::{Ack, Frame, Reject};
use serde_json::{json, Value};

use crate::envelope::{body, local, peer, peer_keys, KINDS};

fn with_mode(mode: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(rest);
    out
}

fn json_bytes(value: &Value) -> Vec<u8> {
    match serde_json::to_vec(value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a JSON value serialises: {e}"),
    }
}

fn ulid_text(n: u128) -> String {
    ulid::Ulid::from(n).to_string()
}

/// The seeds of the target named `target` (empty for an unknown name).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "discovery_packet" => discovery_packet(),
        "link_frame" => link_frame(),
        "noise_handshake" => noise_handshake(),
        "envelope" => envelope(),
        "sync_payload" => sync_payload(),
        "group_merge" => group_merge(),
        "settings_json" => settings_json(),
        "cidr" => cidr(),
        "api_bodies" => api_bodies(),
        "file_message" => file_message(),
        _ => Vec::new(),
    }
}

fn discovery_packet() -> Vec<Vec<u8>> {
    let key = crate::discovery::key();
    let packet = |kind, name: &str, seq, presence, public_key| Packet {
        kind,
        node_id: peer(),
        instance_id: InstanceId(0x0123_4567_89ab_cdef),
        ts: UnixMillis(1_764_000_000_000),
        nonce: Nonce(42),
        listen_port: 19123,
        display_name: name.to_string(),
        public_key,
        seq,
        presence,
    };
    let packets = [
        packet(
            PacketKind::Hello,
            "Alice",
            Some(1),
            Some(Presence::Online),
            None,
        ),
        packet(
            PacketKind::Heartbeat,
            "李雷",
            Some(2),
            Some(Presence::Away),
            None,
        ),
        packet(PacketKind::Answer, "", None, None, Some(PublicKey([9; 32]))),
        packet(
            PacketKind::Goodbye,
            "Bob",
            Some(3),
            Some(Presence::Busy),
            None,
        ),
    ];
    let mut out = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let with_key = (i % 2 == 0).then_some(&key);
        match p.encode(with_key) {
            Ok(bytes) => out.push(bytes),
            Err(e) => panic!("a seed packet encodes: {e}"),
        }
    }
    out
}

fn link_frame() -> Vec<Vec<u8>> {
    [
        Frame::Ready,
        Frame::Envelope(b"{}".to_vec()),
        Frame::Ack(Ack {
            envelope_id: ulid_text(1),
            outcome: "applied".into(),
        }),
        Frame::Reject(Reject {
            envelope_id: ulid_text(2),
            reason: "unknown kind".into(),
        }),
        Frame::close("blocked"),
    ]
    .iter()
    .map(Frame::encode)
    .collect()
}

fn noise_handshake() -> Vec<Vec<u8>> {
    let id = peer().to_string();
    let m1 = Handshake::initiator(peer_keys(), &SharedSecret::open_lan(), &id)
        .and_then(|mut hs| hs.write())
        .unwrap_or_default();
    vec![
        with_mode(0, &m1),
        with_mode(1, &[0; 64]),
        with_mode(2, &[]),
        with_mode(
            3,
            &json_bytes(&json!({ "v": 2, "node_id": id, "signing_key": "00", "binding": "00" })),
        ),
        with_mode(4, b"{}"),
        with_mode(4, br#"{"probe":true}"#),
        with_mode(4, br#"{"previous":[]}"#),
    ]
}

/// A message of node 0 (the link's peer) signed as the protocol wants it.
fn message_payload(group: Option<&GlobalGroupId>) -> Value {
    let message_id = MessageId::from_ulid(ulid::Ulid::from(77u128));
    let (text, sent_at, hlc) = ("hello 你好", 1_764_000_000_000_i64, 1u64 << 20);
    let local = local();
    let scope = match group {
        Some(g) => MessageScope::Group(g),
        None => MessageScope::Direct { to: &local },
    };
    let statement = chat_core::message_statement(
        scope,
        &message_id,
        &peer(),
        sent_at,
        Hlc::from_raw(hlc),
        text,
    );
    let sig = chat_core::signing::hex(&peer_keys().sign(&statement));
    let mut payload = json!({ "message_id": message_id.to_string(), "text": text,
        "sent_at": sent_at, "hlc": hlc, "sig": sig });
    if let (Some(g), Some(object)) = (group, payload.as_object_mut()) {
        object.insert("global_group_id".into(), Value::from(g.to_string()));
    }
    payload
}

fn group() -> GlobalGroupId {
    GlobalGroupId::from_ulid(ulid::Ulid::from(5u128))
}

/// A group of node 0 with node 1, signed by node 0.
pub(crate) fn group_state() -> GroupState {
    let stamp = Stamp {
        hlc: 1 << 20,
        editor: peer(),
    };
    let mut state = GroupState::create(group(), &stamp, "Team", "Welcome", &[local()]);
    state.sign_own(peer_keys());
    state
}

fn sync_message() -> SyncMessage {
    let key = |hlc: u64, id: u128| OrderKey {
        hlc: Hlc::from_raw(hlc),
        message_id: MessageId::from_ulid(ulid::Ulid::from(id)),
    };
    SyncMessage {
        group: group(),
        round: 1,
        ranges: vec![
            SyncRange {
                range: KeyRange {
                    lo: key(0, 0),
                    hi: Some(key(1 << 20, 9)),
                },
                summary: RangeSummary::Fingerprint(chat_core::Fingerprint {
                    count: 3,
                    xor: 0xdead_beef,
                }),
            },
            SyncRange {
                range: KeyRange {
                    lo: key(1 << 20, 9),
                    hi: None,
                },
                summary: RangeSummary::Ids(vec![MessageId::from_ulid(ulid::Ulid::from(10u128))]),
            },
        ],
        want: vec![MessageId::from_ulid(ulid::Ulid::from(11u128))],
    }
}

fn relay_payload() -> Value {
    let mut message = message_payload(Some(&group()));
    if let Some(object) = message.as_object_mut() {
        object.remove("global_group_id");
        object.insert("author".into(), Value::from(peer().to_string()));
        object.insert(
            "keys".into(),
            Value::from(lan_mesh::envelope::author_keys(&peer_keys().public()).to_hex()),
        );
    }
    json!({ "global_group_id": group().to_string(), "messages": [message] })
}

/// One valid payload per kind, in the order of [`KINDS`].
fn payloads() -> Vec<Value> {
    let upsert = match serde_json::to_value(GroupStateWire::from_state(&group_state())) {
        Ok(v) => v,
        Err(e) => panic!("a group state serialises: {e}"),
    };
    let sync = match serde_json::to_value(sync_message().to_payload()) {
        Ok(v) => v,
        Err(e) => panic!("a group.sync serialises: {e}"),
    };
    vec![
        message_payload(None),
        message_payload(Some(&group())),
        upsert,
        json!({ "hlc": 1u64 << 20, "message_id": ulid_text(77) }),
        sync,
        relay_payload(),
    ]
}

fn envelope() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, (kind, payload)) in KINDS.iter().zip(payloads()).enumerate() {
        let body = json_bytes(&body(kind, &payload));
        if i == 0 {
            // Mode 0 takes the frame as it arrives: a real `dm.send`, as encoded.
            let encoded = Envelope {
                envelope_id: chat_core::EnvelopeId::from_ulid(ulid::Ulid::from(3u128)),
                kind: KIND_DM_SEND.into(),
                from_peer_id: peer(),
                to_peer_id: local(),
                ts: 0,
                payload: payload.clone(),
            }
            .encode()
            .unwrap_or_else(|_| body.clone());
            out.push(with_mode(0, &encoded));
        }
        out.push(with_mode(0, &body));
        let mut selected = vec![u8::try_from(i).unwrap_or_default()];
        selected.extend_from_slice(&json_bytes(&payload));
        out.push(with_mode(1, &selected));
    }
    out
}

fn sync_payload() -> Vec<Vec<u8>> {
    let sync = match serde_json::to_value(sync_message().to_payload()) {
        Ok(v) => v,
        Err(e) => panic!("a group.sync serialises: {e}"),
    };
    vec![
        with_mode(0, &json_bytes(&sync)),
        with_mode(
            0,
            &json_bytes(&json!({ "global_group_id": group().to_string(), "round": 0,
                "ranges": [], "want": [ulid_text(1), ulid_text(2)] })),
        ),
        with_mode(1, &json_bytes(&relay_payload())),
    ]
}

fn group_merge() -> Vec<Vec<u8>> {
    let wire = match serde_json::to_value(GroupStateWire::from_state(&group_state())) {
        Ok(v) => v,
        Err(e) => panic!("a group state serialises: {e}"),
    };
    vec![
        with_mode(1, &json_bytes(&wire)),
        // Three small states: names, members, a dissolution, keys.
        with_mode(0, &[1, 1, 0, 1, 1, 2, 0, 0, 1, 0, 0, 3, 0, 1, 2, 1]),
        with_mode(
            0,
            &[9, 5, 3, 1, 2, 7, 4, 1, 1, 0, 2, 2, 8, 3, 0, 1, 6, 6, 6, 2],
        ),
    ]
}

fn settings_json() -> Vec<Vec<u8>> {
    let node = ulid_text(7);
    vec![
        json_bytes(&json!({ "lan_mesh": { "node_id": node, "enabled": true,
            "open_lan": true, "display_name": "Alice" } })),
        json_bytes(&json!({ "lan_mesh": { "enabled": true,
            "shared_secret": "correct horse battery staple",
            "allowed_subnets": ["10.0.0.0/8", "192.168.1.7", "fe80::1/64"],
            "blocked_subnets": ["10.9.0.0/16"], "peer_addresses": ["192.168.1.20:19123"],
            "heartbeat_interval_sec": 10, "peer_ttl_sec": 30 } })),
        json_bytes(
            &json!({ "ui": { "language": "zh-CN", "welcome_done": true },
            "desktop": { "notifications": false, "auto_away_minutes": 5,
                "muted_conversations": ["group:01ARZ3NDEKTSV4RRFFQ69G5FAV"] } }),
        ),
    ]
}

fn cidr() -> Vec<Vec<u8>> {
    [
        "10.1.2.3/24",
        "fe80::1",
        "192.168.0.0/16\n10.0.0.1\n10.0.0.0/24",
        "192.168.1.20:19123",
        "::ffff:10.0.0.1/120",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn api_bodies() -> Vec<Vec<u8>> {
    [
        json!({ "text": "hello 你好" }),
        json!({ "name": "Team", "members": [peer().to_string()], "announcement": "Hi" }),
        json!({ "name": "New name", "members": [] }),
        json!({ "address": "192.168.1.20:19123" }),
        json!({ "presence": "away" }),
    ]
    .iter()
    .map(json_bytes)
    .collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest of `content` cut into `chunk_size` chunks, encoded.
fn manifest_of(content: &[u8], chunk_size: u32) -> Vec<u8> {
    let chunks: Vec<u8> = content
        .chunks(chunk_size as usize)
        .flat_map(sha256)
        .collect();
    crate::files::encode_manifest(content.len() as u64, chunk_size, &sha256(content), &chunks)
}

/// A file message's description of `content`, with its real hashes.
fn file_ref(content: &[u8], name: &str, path: Option<&str>, mime: &str) -> api_types::FileRef {
    api_types::FileRef {
        file_id: hex(&sha256(content)),
        manifest: hex(&sha256(&manifest_of(content, storage::blobs::CHUNK_SIZE))),
        size: content.len() as u64,
        chunk_size: storage::blobs::CHUNK_SIZE,
        name: name.into(),
        path: path.map(str::to_string),
        mime: mime.into(),
        thumbnail: None,
    }
}

/// Mode 0: message texts; 1: encoded manifests; 2: files described choice by choice
/// (`files::assembled`) and the pages peers send for them.
fn file_message() -> Vec<Vec<u8>> {
    use api_types::files::FILE_MESSAGE_PREFIX;
    use api_types::{FileContent, Thumbnail};
    let mut photo = file_ref(&[7; 300], "a.png", Some("photos/2026"), "image/png");
    photo.thumbnail = Some(Thumbnail {
        mime: "image/png".into(),
        width: 4,
        height: 3,
        data: "iVBORw0KGgo=".into(),
    });
    let content = FileContent {
        files: vec![
            file_ref(b"hello", "报告.pdf", None, "application/pdf"),
            photo,
        ],
    };
    let text = match content.to_text() {
        Ok(text) => text,
        Err(e) => panic!("a seed file message encodes: {e}"),
    };
    let json = match serde_json::to_vec(&FileContent {
        files: vec![file_ref(b"", "empty.txt", None, "text/plain")],
    }) {
        Ok(json) => json,
        Err(e) => panic!("a file content serialises: {e}"),
    };
    let traversal = text.replace("photos/2026", "../../etc");
    let chunk = storage::blobs::CHUNK_SIZE;
    let big: Vec<u8> = (0..2 * chunk + 10).map(|i| (i % 251) as u8).collect();
    let mut truncated = manifest_of(&big, chunk);
    truncated.pop();
    vec![
        with_mode(0, text.as_bytes()),
        with_mode(0, &json),
        with_mode(0, traversal.as_bytes()),
        with_mode(0, format!("{FILE_MESSAGE_PREFIX}hello").as_bytes()),
        with_mode(1, &manifest_of(b"", chunk)),
        with_mode(1, &manifest_of(b"hello", chunk)),
        with_mode(1, &manifest_of(&big, storage::blobs::MIN_CHUNK_SIZE)),
        with_mode(1, &truncated),
        // 5 chunks of 128 KiB, 2 hashes a page, every page right: assembles.
        with_mode(2, &[1, 5, 2, 0x12, 0x34, 1, 0, 1, 0, 1, 0, 7, 0, 1]),
        // 3 chunks of 192 KiB, a page each: page 2, a page too long, a page past the
        // end, then the rest: assembles.
        with_mode(
            2,
            &[2, 3, 0, 0, 1, 0, 1, 0, 9, 3, 2, 0, 0, 4, 5, 2, 0, 4, 0, 1],
        ),
        // An empty file: no page to fetch.
        with_mode(2, &[1, 0, 0, 2, 1, 0, 1, 0, 3, 0, 1]),
        // 4 chunks, a page each; one with a bit flipped: the hash refuses it.
        with_mode(2, &[1, 4, 1, 0, 1, 0, 1, 0, 5, 1, 1, 1, 3, 2, 1]),
    ]
}
