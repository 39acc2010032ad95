//! `envelope`: what a linked peer may put in an envelope frame, through
//! `Envelope::open` (size, header) and the decoders of every kind, group operations
//! (`group.upsert`) and author signatures included.
//!
//! The structure-aware property tests of the envelope format itself live next to it,
//! in `lan-mesh/src/envelope/fuzz.rs`; this body is what the fuzzer drives. The first
//! byte picks what the rest is:
//!
//! | mode | the rest is |
//! |---|---|
//! | 0 | the frame's bytes as they arrive (an envelope body) |
//! | 1 | a kind selector byte and a payload, in a correct header |

use api_types::NodeId;
use lan_mesh::envelope::{
    Envelope, EnvelopeError, GroupStateWire, ENVELOPE_VERSION, KIND_DM_SEND, KIND_GROUP_RELAY,
    KIND_GROUP_SEND, KIND_GROUP_SYNC, KIND_GROUP_UPSERT, KIND_READ_RECEIPT,
};
use lan_mesh::ports::InboundEffect;
use lan_mesh::transport::{NodeKeys, PeerKeys};
use serde_json::{json, Value};

use crate::sync::{check_relay, check_sync};
use crate::{node_id, node_keys};

/// The kinds a selector byte picks from; past the end, a kind nobody knows.
pub const KINDS: [&str; 6] = [
    KIND_DM_SEND,
    KIND_GROUP_SEND,
    KIND_GROUP_UPSERT,
    KIND_READ_RECEIPT,
    KIND_GROUP_SYNC,
    KIND_GROUP_RELAY,
];
const UNKNOWN_KIND: &str = "x.unknown";

/// The link's peer, the author of what it sends (node 0).
pub fn peer_keys() -> &'static NodeKeys {
    node_keys(0)
}

pub fn peer() -> NodeId {
    node_id(0).clone()
}

/// This node, the receiver (node 1).
pub fn local() -> NodeId {
    node_id(1).clone()
}

/// An envelope body with a correct header around `payload`.
pub fn body(kind: &str, payload: &Value) -> Value {
    // A `group.send`'s envelope id is its message id; any other's is free.
    let envelope_id = payload
        .get("message_id")
        .and_then(Value::as_str)
        .filter(|id| ulid::Ulid::from_string(id).is_ok())
        .map_or_else(|| ulid::Ulid::from(1u128).to_string(), str::to_string);
    json!({ "v": ENVELOPE_VERSION, "envelope_id": envelope_id, "kind": kind,
        "from_peer_id": peer().to_string(), "to_peer_id": local().to_string(), "ts": 0,
        "payload": payload })
}

fn open(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    Envelope::open(bytes, node_id(0), node_id(1))
}

fn peer_public() -> PeerKeys {
    peer_keys().public()
}

/// Opening never panics, and a correct header always opens; what opens is decoded as
/// the delivery task decodes it.
pub fn envelope(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 2 {
        0 => {
            if let Ok(envelope) = open(rest) {
                decode(&envelope);
            }
        }
        _ => {
            let Some((selector, payload)) = rest.split_first() else {
                return;
            };
            let kind = KINDS
                .get(usize::from(*selector))
                .copied()
                .unwrap_or(UNKNOWN_KIND);
            let Ok(payload) = serde_json::from_slice::<Value>(payload) else {
                return;
            };
            let body = match serde_json::to_vec(&body(kind, &payload)) {
                Ok(bytes) => bytes,
                Err(e) => panic!("a JSON value serialises: {e}"),
            };
            // The payload as sent: a JSON number need not survive a trip through `f64`
            // digit for digit, and the envelope carries what was sent.
            let sent: Value = match serde_json::from_slice(&body) {
                Ok(sent) => sent,
                Err(e) => panic!("a serialised body does not parse: {e}"),
            };
            let opened = match open(&body) {
                Ok(envelope) => envelope,
                // Only a body over the size limit may fail with a right header.
                Err(EnvelopeError::TooLarge) => return,
                Err(e) => panic!("a correct header refused: {e}"),
            };
            assert_eq!(opened.kind, kind);
            assert_eq!(opened.payload, sent["payload"]);
            decode(&opened);
        }
    }
}

/// As the delivery task decodes: catch-up kinds by their own decoders, every other
/// kind into what it does to the store.
fn decode(envelope: &Envelope) {
    match envelope.kind.as_str() {
        KIND_GROUP_SYNC => {
            if let Ok(message) = envelope.group_sync() {
                check_sync(&message);
            }
        }
        KIND_GROUP_RELAY => {
            if let Ok(message) = envelope.group_relay() {
                check_relay(&message);
            }
        }
        _ => check_effect(envelope, &peer_public()),
    }
}

fn check_effect(envelope: &Envelope, sender: &PeerKeys) {
    let effect = envelope.effect();
    let verified = envelope.verified_effect(sender);
    if let Ok(verified) = &verified {
        // Proven is a stronger claim than decoded: it cannot hold where decoding fails.
        assert!(effect.is_ok(), "verified but not decoded: {verified:?}");
    }
    if let Ok(InboundEffect::GroupUpsert(state)) = &effect {
        // A group operation that decodes passed every rule and signature check, and
        // travels again as the same state.
        assert_eq!(state.check_received(), Ok(()));
        match GroupStateWire::from_state(state).into_state() {
            Ok(again) => assert_eq!(&again, state),
            Err(e) => panic!("a received group state does not re-encode: {e}"),
        }
    }
}
