//! The envelope decoder under a fuzzer: whatever a peer can put in a link frame, from
//! bytes that are no envelope at all to well-formed envelopes from the link's peer
//! around random contents (with author signatures where a kind needs one). Opening and
//! decoding return a value or a typed `EnvelopeError`, never panic, and an envelope
//! whose every part is right decodes to exactly what was put in it — so the path past
//! the header checks is exercised, not only the rejection of garbage.

use std::sync::OnceLock;

use chat_core::{GroupState, Hlc, MessageId, Stamp, MAX_BODY_BYTES};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::ports::{InboundEffect, IncomingMessage};

fn node(n: u8) -> NodeId {
    format!("01HZZZZZZZZZZZZZZZZZZZZZ{n:02}")
        .parse()
        .expect("a node id")
}

/// The link's peer: the author of what it sends, with the id its keys derive.
fn peer() -> NodeId {
    keys().public().node_id()
}

/// This node: the receiver.
fn local() -> NodeId {
    node(2)
}

/// The peer's keys: made once; what they sign is what varies.
fn keys() -> &'static NodeKeys {
    static KEYS: OnceLock<NodeKeys> = OnceLock::new();
    KEYS.get_or_init(|| NodeKeys::generate().expect("node keys"))
}

fn open(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    Envelope::open(bytes, &peer(), &local())
}

/// What the delivery task makes of an opened envelope's payload.
#[derive(Debug, Clone, PartialEq)]
enum Decoded {
    Effect(InboundEffect),
    Sync(SyncMessage),
    Relay(RelayMessage),
}

/// As the delivery task decodes: the catch-up kinds by their own decoders, every other
/// kind into what it does to the store (unknown kinds are refused there).
fn decode(envelope: &Envelope) -> Result<Decoded, EnvelopeError> {
    match envelope.kind.as_str() {
        KIND_GROUP_SYNC => envelope.group_sync().map(Decoded::Sync),
        KIND_GROUP_RELAY => envelope.group_relay().map(Decoded::Relay),
        _ => envelope.effect().map(Decoded::Effect),
    }
}

/// What a payload whose every part is right must decode to.
// Test-only values, built once per case: a box would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Expected {
    Effect(InboundEffect),
    /// Decodes, and encoding what it decoded gives this payload back.
    RoundTrip(Value),
}

impl Expected {
    fn check(&self, decoded: &Decoded) -> Result<(), TestCaseError> {
        match (self, decoded) {
            (Expected::Effect(want), Decoded::Effect(got)) => prop_assert_eq!(want, got),
            (Expected::RoundTrip(want), Decoded::Sync(sync)) => {
                let got = serde_json::to_value(sync.to_payload()).expect("a payload serialises");
                prop_assert_eq!(want, &got);
            }
            (Expected::RoundTrip(want), Decoded::Relay(relay)) => {
                let got = json!({
                    "global_group_id": relay.group.to_string(),
                    "messages": relay.messages.iter().map(RelayedPayload::from_message).collect::<Vec<_>>(),
                });
                prop_assert_eq!(want, &got);
            }
            (want, got) => prop_assert!(false, "expected {want:?}, decoded {got:?}"),
        }
        Ok(())
    }
}

/// A payload and its kind, as generated.
#[derive(Debug, Clone)]
struct Payload {
    kind: String,
    value: Value,
    /// `None`: some part of it is wrong, so decoding must fail with a reason.
    expect: Option<Expected>,
    /// The envelope id the payload is right with (a `group.send`'s is its message id).
    envelope_id: Option<String>,
}

/// One generated envelope body.
#[derive(Debug, Clone)]
struct Case {
    body: Value,
    /// Version, envelope id, sender and receiver right, no unknown field.
    header_ok: bool,
    expect: Option<Expected>,
}

/// Any JSON: what a confused or hostile peer may put anywhere. Keys are at most six
/// letters, so a random object never happens to be a whole valid payload.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn ulid_text(n: u128) -> String {
    ulid::Ulid::from(n).to_string()
}

fn ulid() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(ulid_text)
}

/// Never a ULID (spaces are not in Crockford's base32).
fn junk_id() -> impl Strategy<Value = String> {
    "\\PC{0,30}".prop_map(|s| format!("not an id {s}"))
}

/// Right (`true`) nine times in ten, otherwise wrong in some way (`false`): most
/// generated envelopes then get past the header, to their payload.
fn mostly<T>(
    right: impl Strategy<Value = T> + 'static,
    wrong: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<(T, bool)>
where
    T: std::fmt::Debug + Clone + 'static,
{
    prop_oneof![
        9 => right.prop_map(|v| (v, true)),
        1 => wrong.prop_map(|v| (v, false)),
    ]
    .boxed()
}

/// Message texts: ordinary ones, and the ones the text rule refuses.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "\\PC{1,80}",
        1 => Just(String::new()),
        1 => "[ \t\n]{1,4}",
        1 => Just("x".repeat(MAX_BODY_BYTES + 1)),
    ]
}

fn text_ok(text: &str) -> bool {
    chat_core::check_body(text).is_ok()
}

/// A change that makes a payload object wrong: a required field missing, or a field
/// the format does not have.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    DropField(usize),
    ExtraField(String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => Just(Mutation::None),
        1 => any::<usize>().prop_map(Mutation::DropField),
        1 => ("[a-z]{0,5}", any_json()).prop_map(|(k, v)| Mutation::ExtraField(format!("extra_{k}"), v)),
    ]
}

impl Mutation {
    /// Applies it to a payload object; whether it changed anything.
    fn apply(&self, value: &mut Value) -> bool {
        let Some(object) = value.as_object_mut() else {
            return false;
        };
        match self {
            Mutation::None => false,
            Mutation::DropField(i) => {
                let key = match object.len() {
                    0 => None,
                    n => object.keys().nth(i % n).cloned(),
                };
                key.is_some_and(|k| object.remove(&k).is_some())
            }
            Mutation::ExtraField(key, extra) => {
                object.insert(key.clone(), extra.clone());
                true
            }
        }
    }
}

fn dm_payload() -> impl Strategy<Value = Payload> {
    (
        mostly(ulid(), junk_id()),
        text(),
        any::<i64>(),
        any::<u64>(),
        mutation(),
    )
        .prop_map(|((id, id_ok), text, sent_at, hlc, mutation)| {
            let mut value = json!({ "message_id": id, "text": text, "sent_at": sent_at, "hlc": hlc,
                    "sig": "00".repeat(64) });
            let mutated = mutation.apply(&mut value);
            let expect = match id.parse::<MessageId>() {
                Ok(message_id) if id_ok && text_ok(&text) && !mutated => Some(Expected::Effect(
                    InboundEffect::DirectMessage(IncomingMessage {
                        message_id,
                        body: text,
                        sent_at,
                        hlc: Hlc::from_raw(hlc),
                        signature: None,
                    }),
                )),
                _ => None,
            };
            Payload {
                kind: KIND_DM_SEND.into(),
                value,
                expect,
                envelope_id: None,
            }
        })
}

fn group_send_payload() -> impl Strategy<Value = Payload> {
    (
        mostly(ulid(), junk_id()),
        any::<u128>(),
        text(),
        any::<i64>(),
        any::<u64>(),
        // Whether the envelope id is the message id, as it must be.
        mostly(Just(true), Just(false)),
        mutation(),
    )
        .prop_map(
            |((group, group_ok), message, text, sent_at, hlc, (id_is_message, _), mutation)| {
                let message_id = MessageId::from_ulid(ulid::Ulid::from(message));
                let mut value = json!({ "global_group_id": group, "message_id": message_id.to_string(),
                        "text": text, "sent_at": sent_at, "hlc": hlc, "sig": "00".repeat(64) });
                let mutated = mutation.apply(&mut value);
                let expect = match group.parse::<GlobalGroupId>() {
                    Ok(global_group_id) if group_ok && id_is_message && text_ok(&text) && !mutated => {
                        Some(Expected::Effect(InboundEffect::GroupMessage {
                            global_group_id,
                            message: IncomingMessage {
                                message_id,
                                body: text,
                                sent_at,
                                hlc: Hlc::from_raw(hlc),
                                signature: None,
                            },
                        }))
                    }
                    _ => None,
                };
                Payload {
                    kind: KIND_GROUP_SEND.into(),
                    value,
                    expect,
                    envelope_id: id_is_message.then(|| message_id.to_string()),
                }
            },
        )
}

fn group_upsert_payload() -> impl Strategy<Value = Payload> {
    (
        any::<u128>(),
        "[a-zA-Z0-9一-龥][a-zA-Z0-9 一-龥]{0,63}",
        "\\PC{0,200}",
        proptest::collection::vec(any::<u128>(), 0..20),
        1u64..u64::MAX / 2,
        // Only an unknown field: the state's optional fields may be left out.
        prop::option::weighted(0.15, ("[a-z]{0,5}", any_json())),
    )
        .prop_map(|(group, name, announcement, others, hlc, extra)| {
            let members: Vec<NodeId> = others
                .iter()
                .map(|n| ulid_text(*n).parse().expect("a ULID is a node id"))
                .collect();
            let stamp = |hlc| Stamp {
                hlc,
                editor: peer(),
            };
            let mut state = GroupState::create(
                GlobalGroupId::from_ulid(ulid::Ulid::from(group)),
                &stamp(hlc),
                &name,
                "",
                &members,
            );
            state.set_announcement(&announcement, &stamp(hlc + 1));
            state.sign_own(keys());
            let mut value = serde_json::to_value(GroupStateWire::from_state(&state))
                .expect("a group state serialises");
            let mutated = match extra {
                Some((key, extra)) => {
                    Mutation::ExtraField(format!("extra_{key}"), extra).apply(&mut value)
                }
                None => false,
            };
            Payload {
                kind: KIND_GROUP_UPSERT.into(),
                value,
                expect: (!mutated).then_some(Expected::Effect(InboundEffect::GroupUpsert(state))),
                envelope_id: None,
            }
        })
}

/// A range's summary as the wire has it: a fingerprint, or the ids in it.
fn summary() -> impl Strategy<Value = Value> {
    prop_oneof![
        (any::<u64>(), any::<u64>())
            .prop_map(|(count, xor)| json!({ "count": count, "fp": format!("{xor:016x}") })),
        proptest::collection::btree_set(any::<u128>(), 0..5).prop_map(|ids| {
            json!({ "ids": ids.into_iter().map(ulid_text).collect::<Vec<_>>() })
        }),
    ]
}

fn group_sync_payload() -> impl Strategy<Value = Payload> {
    (
        mostly(ulid(), junk_id()),
        0..=MAX_SYNC_ROUNDS + 3,
        // Distinct order keys, ascending: consecutive ones bound the ranges, the last
        // range is open above.
        proptest::collection::btree_set((any::<u64>(), any::<u128>()), 1..6),
        proptest::collection::vec(summary(), 6),
        proptest::collection::btree_set(any::<u128>(), 0..5),
        mutation(),
    )
        .prop_map(|((group, group_ok), round, keys, summaries, want, mutation)| {
            let bound = |(hlc, id): &(u64, u128)| json!({ "hlc": hlc, "id": ulid_text(*id) });
            let keys: Vec<_> = keys.into_iter().collect();
            let ranges: Vec<Value> = keys
                .iter()
                .enumerate()
                .zip(&summaries)
                .map(|((i, lo), summary)| {
                    let mut range = json!({ "lo": bound(lo), "hi": keys.get(i + 1).map(bound) });
                    if let (Some(range), Some(summary)) = (range.as_object_mut(), summary.as_object()) {
                        range.extend(summary.clone());
                    }
                    range
                })
                .collect();
            let want: Vec<String> = want.into_iter().map(ulid_text).collect();
            let mut value = json!({ "global_group_id": group, "round": round, "ranges": ranges, "want": want });
            let right = value.clone();
            let mutated = mutation.apply(&mut value);
            Payload {
                kind: KIND_GROUP_SYNC.into(),
                value,
                expect: (group_ok && round <= MAX_SYNC_ROUNDS && !mutated)
                    .then_some(Expected::RoundTrip(right)),
                envelope_id: None,
            }
        })
}

fn group_relay_payload() -> impl Strategy<Value = Payload> {
    let relayed = (
        mostly(ulid(), junk_id()),
        text(),
        any::<i64>(),
        any::<u64>(),
    );
    (
        mostly(ulid(), junk_id()),
        // Distinct message ids; none is an empty relay, which is refused.
        proptest::collection::btree_map(any::<u128>(), relayed, 0..4),
        mutation(),
    )
        .prop_map(|((group, group_ok), messages, mutation)| {
            let mut all_ok = group_ok && !messages.is_empty();
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|(id, ((author, author_ok), text, sent_at, hlc))| {
                    all_ok &= author_ok && text_ok(&text);
                    json!({ "message_id": ulid_text(id), "author": author, "text": text,
                        "sent_at": sent_at, "hlc": hlc })
                })
                .collect();
            let mut value = json!({ "global_group_id": group, "messages": messages });
            let right = value.clone();
            let mutated = mutation.apply(&mut value);
            Payload {
                kind: KIND_GROUP_RELAY.into(),
                value,
                expect: (all_ok && !mutated).then_some(Expected::RoundTrip(right)),
                envelope_id: None,
            }
        })
}

const KINDS: [&str; 5] = [
    KIND_DM_SEND,
    KIND_GROUP_SEND,
    KIND_GROUP_UPSERT,
    KIND_GROUP_SYNC,
    KIND_GROUP_RELAY,
];

/// A known kind around any JSON, or a kind this build does not know.
fn wrong_payload() -> impl Strategy<Value = Payload> {
    let kind = prop_oneof![
        proptest::sample::select(KINDS.to_vec()).prop_map(str::to_string),
        "\\PC{0,20}".prop_filter("an unknown kind", |k| !KINDS.contains(&k.as_str())),
    ];
    (kind, any_json()).prop_map(|(kind, value)| Payload {
        kind,
        value,
        expect: None,
        envelope_id: None,
    })
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        dm_payload(),
        group_send_payload(),
        group_upsert_payload(),
        group_sync_payload(),
        group_relay_payload(),
        wrong_payload(),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let version = mostly(
        Just(Value::from(ENVELOPE_VERSION)),
        prop_oneof![
            any::<u8>()
                .prop_filter("another version", |v| *v != ENVELOPE_VERSION)
                .prop_map(Value::from),
            any_json().prop_filter("not our version", |v| *v != ENVELOPE_VERSION),
        ],
    );
    let other_node = prop_oneof![ulid(), junk_id()];
    (
        version,
        mostly(ulid(), junk_id()),
        mostly(Just(peer().to_string()), other_node.clone()),
        mostly(Just(local().to_string()), other_node),
        any::<i64>(),
        payload(),
        prop::option::weighted(0.05, ("[a-z]{0,5}", any_json())),
    )
        .prop_map(
            |((v, v_ok), (id, id_ok), (from, from_ok), (to, to_ok), ts, payload, extra)| {
                let envelope_id = match (&payload.envelope_id, id_ok) {
                    (Some(required), true) => required.clone(),
                    _ => id,
                };
                let mut body = json!({ "v": v, "envelope_id": envelope_id, "kind": payload.kind,
                    "from_peer_id": from, "to_peer_id": to, "ts": ts, "payload": payload.value });
                if let (Some((key, extra)), Some(object)) = (&extra, body.as_object_mut()) {
                    object.insert(format!("extra_{key}"), extra.clone());
                }
                Case {
                    body,
                    // A random other node id is the peer or us once in 2^128.
                    header_ok: v_ok && id_ok && from_ok && to_ok && extra.is_none(),
                    expect: payload.expect,
                }
            },
        )
}

fn body_bytes(case: &Case) -> Vec<u8> {
    serde_json::to_vec(&case.body).expect("a JSON value serialises")
}

/// Opens and decodes one generated envelope from the link's peer.
fn check_envelope(case: &Case) -> Result<(), TestCaseError> {
    let body = body_bytes(case);
    let opened = open(&body);
    prop_assert_eq!(
        opened.is_ok(),
        case.header_ok,
        "{:?} for {}",
        opened,
        case.body
    );
    let Ok(envelope) = opened else {
        return Ok(());
    };
    // Compared with the bytes as sent, read back: JSON numbers need not survive a
    // round trip through `f64` digit for digit, and the envelope carries what was sent.
    let sent: Value = serde_json::from_slice(&body).expect("the body is JSON");
    prop_assert_eq!(
        Value::from(envelope.envelope_id.to_string()),
        sent["envelope_id"].clone()
    );
    prop_assert_eq!(Value::from(envelope.kind.clone()), sent["kind"].clone());
    prop_assert_eq!(&envelope.from_peer_id, &peer());
    prop_assert_eq!(&envelope.to_peer_id, &local());
    prop_assert_eq!(Value::from(envelope.ts), sent["ts"].clone());
    prop_assert_eq!(&envelope.payload, &sent["payload"]);
    let decoded = decode(&envelope);
    match (&case.expect, &decoded) {
        (Some(expected), Ok(decoded)) => expected.check(decoded)?,
        (Some(_), Err(e)) => {
            prop_assert!(
                false,
                "refused ({e}) but every part is right: {}",
                case.body
            )
        }
        (None, _) => prop_assert!(decoded.is_err(), "{:?} decoded from {}", decoded, case.body),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Envelopes from the link's peer, each part right or wrong at random.
    #[test]
    fn envelopes_decode_to_what_they_carry_or_fail_with_a_reason(case in case()) {
        check_envelope(&case)?;
    }

    /// An envelope cut short anywhere is malformed, never half read.
    #[test]
    fn a_truncated_envelope_is_malformed(case in case(), at in any::<prop::sample::Index>()) {
        let body = body_bytes(&case);
        let cut = at.index(body.len());
        prop_assert!(matches!(open(&body[..cut]), Err(EnvelopeError::Malformed(_))));
    }

    /// Any bytes at all: refused or decoded, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(envelope) = open(&bytes) {
            let _ = decode(&envelope);
        }
    }
}
