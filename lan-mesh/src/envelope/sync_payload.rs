//! The group catch-up payloads (docs/PROTOCOL.md, "Group catch-up (anti-entropy)"):
//! `group.sync` (range summaries of what a member holds of a group's history) and
//! `group.relay` (messages a member passes on for their authors). Both are ephemeral:
//! sent straight on a link, never kept in the outbox.
//!
//! Decoding is strict (`deny_unknown_fields`, ids, limits, ranges ordered and disjoint);
//! every refusal has a reason the receiver sends back in a `Reject`.

use std::collections::HashSet;

use api_types::NodeId;
use chat_core::{
    EnvelopeId, Fingerprint, GlobalGroupId, Hlc, KeyRange, MessageId, OrderKey, RelayedMessage,
};
use serde::{Deserialize, Serialize};

use super::{Envelope, EnvelopeError};

pub const KIND_GROUP_SYNC: &str = "group.sync";
pub const KIND_GROUP_RELAY: &str = "group.relay";

/// Sync rounds a session may take before it stops (round of the opening message is
/// 0). Range splitting by 16 reaches the leaves of a million-message history in 4
/// rounds, the id lists and wants take two more: 16 is ample, and a bound makes a
/// session end even against a peer that never agrees. The next trigger repairs the rest.
pub const MAX_SYNC_ROUNDS: u32 = 16;
/// Ranges in one `group.sync`. An answer splits each differing range in at most 16, so
/// the sender cuts longer answers into several envelopes; this bounds the receiver's
/// work per envelope.
pub const MAX_SYNC_RANGES: usize = 1024;
/// Ids listed for one range: a range at most this full is answered with its ids instead
/// of being split further. 64 ids are ~2 KiB of JSON — about what the 16 fingerprints
/// of a split cost — so below it listing is cheaper than another round.
pub const SYNC_LEAF: usize = 64;
/// Ids one `group.sync` may ask for (`want`).
pub const MAX_SYNC_WANT: usize = 4096;
/// Messages in one `group.relay` (the byte budget usually cuts a batch first).
pub const MAX_RELAY_MESSAGES: usize = 2048;

/// One end of a range: an order key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundPayload {
    pub hlc: u64,
    pub id: String,
}

impl BoundPayload {
    fn from_key(key: &OrderKey) -> Self {
        BoundPayload {
            hlc: key.hlc.raw(),
            id: key.message_id.to_string(),
        }
    }

    fn key(&self) -> Result<OrderKey, EnvelopeError> {
        Ok(OrderKey {
            hlc: Hlc::from_raw(self.hlc),
            message_id: self
                .id
                .parse()
                .map_err(|_| EnvelopeError::Invalid("range bound id is not a ULID"))?,
        })
    }
}

/// One range of a `group.sync`: either a fingerprint (`count` + `fp`) or the sender's
/// complete list of ids in it (`ids`), never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangePayload {
    pub lo: BoundPayload,
    /// `null`: unbounded above.
    pub hi: Option<BoundPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The xor of the message hashes, 16 lowercase hex digits (a JSON number would lose
    /// bits in readers that use doubles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// `group.sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncPayload {
    pub global_group_id: String,
    pub round: u32,
    pub ranges: Vec<RangePayload>,
    /// Ids the sender lacks and asks the receiver to relay.
    pub want: Vec<String>,
}

/// What a range says about the sender's messages in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeSummary {
    Fingerprint(Fingerprint),
    /// Every id the sender holds in the range.
    Ids(Vec<MessageId>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRange {
    pub range: KeyRange,
    pub summary: RangeSummary,
}

/// A checked `group.sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMessage {
    pub group: GlobalGroupId,
    pub round: u32,
    pub ranges: Vec<SyncRange>,
    pub want: Vec<MessageId>,
}

impl SyncMessage {
    pub fn to_payload(&self) -> SyncPayload {
        SyncPayload {
            global_group_id: self.group.to_string(),
            round: self.round,
            ranges: self.ranges.iter().map(range_payload).collect(),
            want: self.want.iter().map(ToString::to_string).collect(),
        }
    }
}

fn range_payload(r: &SyncRange) -> RangePayload {
    let (count, fp, ids) = match &r.summary {
        RangeSummary::Fingerprint(f) => (Some(f.count), Some(format!("{:016x}", f.xor)), None),
        RangeSummary::Ids(ids) => (
            None,
            None,
            Some(ids.iter().map(ToString::to_string).collect()),
        ),
    };
    RangePayload {
        lo: BoundPayload::from_key(&r.range.lo),
        hi: r.range.hi.as_ref().map(BoundPayload::from_key),
        count,
        fp,
        ids,
    }
}

fn parse_group(id: &str) -> Result<GlobalGroupId, EnvelopeError> {
    id.parse()
        .map_err(|_| EnvelopeError::Invalid("global_group_id is not a ULID"))
}

fn parse_fp(hex: &str) -> Result<u64, EnvelopeError> {
    let well_formed = hex.len() == 16
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(EnvelopeError::Invalid("fp is not 16 lowercase hex digits"));
    }
    u64::from_str_radix(hex, 16).map_err(|_| EnvelopeError::Invalid("fp is not hex"))
}

fn parse_ids(ids: &[String], what: &'static str) -> Result<Vec<MessageId>, EnvelopeError> {
    let mut seen = HashSet::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id: MessageId = id.parse().map_err(|_| EnvelopeError::Invalid(what))?;
        if !seen.insert(id) {
            return Err(EnvelopeError::Invalid("duplicate message id"));
        }
        out.push(id);
    }
    Ok(out)
}

impl SyncPayload {
    /// The message it carries, checked.
    pub fn decode(&self) -> Result<SyncMessage, EnvelopeError> {
        let group = parse_group(&self.global_group_id)?;
        if self.round > MAX_SYNC_ROUNDS {
            return Err(EnvelopeError::Invalid("sync round past the limit"));
        }
        if self.ranges.is_empty() && self.want.is_empty() {
            return Err(EnvelopeError::Invalid("empty group.sync"));
        }
        if self.ranges.len() > MAX_SYNC_RANGES {
            return Err(EnvelopeError::Invalid("too many ranges"));
        }
        if self.want.len() > MAX_SYNC_WANT {
            return Err(EnvelopeError::Invalid("too many wanted ids"));
        }
        let want = parse_ids(&self.want, "a wanted id is not a ULID")?;
        let mut ranges = Vec::with_capacity(self.ranges.len());
        // Ranges ascend and do not overlap: the answer to each is computed on its own,
        // and overlapping ones would only make the receiver do the same work twice.
        let mut floor: Option<OrderKey> = None;
        let mut unbounded_seen = false;
        for r in &self.ranges {
            let lo = r.lo.key()?;
            let hi = r.hi.as_ref().map(BoundPayload::key).transpose()?;
            if hi.is_some_and(|hi| hi <= lo) {
                return Err(EnvelopeError::Invalid("empty or inverted range"));
            }
            if unbounded_seen || floor.is_some_and(|f| lo < f) {
                return Err(EnvelopeError::Invalid("ranges overlap or are out of order"));
            }
            match hi {
                Some(hi) => floor = Some(hi),
                None => unbounded_seen = true,
            }
            let summary = match (&r.count, &r.fp, &r.ids) {
                (Some(count), Some(fp), None) => RangeSummary::Fingerprint(Fingerprint {
                    count: *count,
                    xor: parse_fp(fp)?,
                }),
                (None, None, Some(ids)) => {
                    if ids.len() > SYNC_LEAF {
                        return Err(EnvelopeError::Invalid("too many ids in a range"));
                    }
                    let ids = parse_ids(ids, "a listed id is not a ULID")?;
                    RangeSummary::Ids(ids)
                }
                _ => {
                    return Err(EnvelopeError::Invalid(
                        "a range needs either count and fp, or ids",
                    ))
                }
            };
            ranges.push(SyncRange {
                range: KeyRange { lo, hi },
                summary,
            });
        }
        Ok(SyncMessage {
            group,
            round: self.round,
            ranges,
            want,
        })
    }
}

/// One message of a `group.relay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayedPayload {
    pub message_id: String,
    /// The author's node id (the relay is the envelope's sender).
    pub author: String,
    pub text: String,
    pub sent_at: i64,
    pub hlc: u64,
    /// The author's Ed25519 signature of the message (128 hex digits). Missing or
    /// empty: an unsigned message, dropped as forged by the receiver.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sig: String,
    /// The author's public keys (128 hex digits: X25519 then Ed25519), which must
    /// derive `author`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keys: String,
}

impl RelayedPayload {
    pub fn from_message(m: &RelayedMessage) -> Self {
        RelayedPayload {
            message_id: m.message_id.to_string(),
            author: m.author.to_string(),
            text: m.body.clone(),
            sent_at: m.sent_at,
            hlc: m.hlc.raw(),
            sig: m
                .signature
                .map(|s| chat_core::signing::hex(&s.sig))
                .unwrap_or_default(),
            keys: m.signature.map(|s| s.keys.to_hex()).unwrap_or_default(),
        }
    }
}

/// `group.relay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayPayload {
    pub global_group_id: String,
    pub messages: Vec<RelayedPayload>,
}

/// A checked `group.relay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMessage {
    pub group: GlobalGroupId,
    pub messages: Vec<RelayedMessage>,
}

impl RelayPayload {
    pub fn decode(&self) -> Result<RelayMessage, EnvelopeError> {
        let group = parse_group(&self.global_group_id)?;
        if self.messages.is_empty() {
            return Err(EnvelopeError::Invalid("empty group.relay"));
        }
        if self.messages.len() > MAX_RELAY_MESSAGES {
            return Err(EnvelopeError::Invalid("too many relayed messages"));
        }
        let mut seen = HashSet::with_capacity(self.messages.len());
        let mut messages = Vec::with_capacity(self.messages.len());
        for m in &self.messages {
            let message_id: MessageId = m
                .message_id
                .parse()
                .map_err(|_| EnvelopeError::Invalid("message_id is not a ULID"))?;
            if !seen.insert(message_id) {
                return Err(EnvelopeError::Invalid("duplicate message id"));
            }
            let author: NodeId = m
                .author
                .parse()
                .map_err(|_| EnvelopeError::Invalid("author is not a node id"))?;
            super::check_text(&m.text)?;
            // Checked against the author by the receiver (`delivery::sync`): a missing
            // or malformed signature is a forged message, dropped and counted there.
            let signature = chat_core::signing::signature_from_hex(&m.sig)
                .zip(chat_core::AuthorKeys::from_hex(&m.keys))
                .map(|(sig, keys)| chat_core::MessageSignature { sig, keys });
            messages.push(RelayedMessage {
                message_id,
                author,
                body: m.text.clone(),
                sent_at: m.sent_at,
                hlc: Hlc::from_raw(m.hlc),
                signature,
            });
        }
        Ok(RelayMessage { group, messages })
    }
}

/// An ephemeral envelope (fresh id, now) from `local` to `peer`.
pub fn ephemeral(
    local: &NodeId,
    peer: &NodeId,
    kind: &str,
    payload: &impl Serialize,
    now: i64,
) -> Result<Envelope, EnvelopeError> {
    Ok(Envelope {
        envelope_id: EnvelopeId::new(),
        kind: kind.to_string(),
        from_peer_id: local.clone(),
        to_peer_id: peer.clone(),
        ts: now,
        payload: serde_json::to_value(payload)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?,
    })
}

/// Whether an envelope of this kind is a catch-up one (handled apart from the inbox).
pub fn is_catch_up_kind(kind: &str) -> bool {
    kind == KIND_GROUP_SYNC || kind == KIND_GROUP_RELAY
}

impl Envelope {
    /// The `group.sync` this envelope carries.
    pub fn group_sync(&self) -> Result<SyncMessage, EnvelopeError> {
        let payload: SyncPayload = serde_json::from_value(self.payload.clone())
            .map_err(|_| EnvelopeError::Invalid("group.sync payload"))?;
        payload.decode()
    }

    /// The `group.relay` this envelope carries.
    pub fn group_relay(&self) -> Result<RelayMessage, EnvelopeError> {
        let payload: RelayPayload = serde_json::from_value(self.payload.clone())
            .map_err(|_| EnvelopeError::Invalid("group.relay payload"))?;
        payload.decode()
    }
}

#[cfg(test)]
mod tests {
    use chat_core::MAX_BODY_BYTES;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn node(n: u8) -> NodeId {
        format!("01HZZZZZZZZZZZZZZZZZZZZZ{n:02}").parse().unwrap()
    }

    fn key(hlc: u64, n: u128) -> OrderKey {
        OrderKey {
            hlc: Hlc::from_raw(hlc),
            message_id: MessageId::from_ulid(ulid::Ulid(n)),
        }
    }

    fn sync_json() -> serde_json::Value {
        let message = SyncMessage {
            group: GlobalGroupId::new(),
            round: 2,
            ranges: vec![
                SyncRange {
                    range: KeyRange {
                        lo: chat_core::min_key(),
                        hi: Some(key(10, 5)),
                    },
                    summary: RangeSummary::Fingerprint(Fingerprint {
                        count: 3,
                        xor: u64::MAX - 7,
                    }),
                },
                SyncRange {
                    range: KeyRange {
                        lo: key(10, 5),
                        hi: None,
                    },
                    summary: RangeSummary::Ids(vec![MessageId::new(), MessageId::new()]),
                },
            ],
            want: vec![MessageId::new()],
        };
        serde_json::to_value(message.to_payload()).unwrap()
    }

    fn decode_sync(value: serde_json::Value) -> Result<SyncMessage, EnvelopeError> {
        let envelope = ephemeral(&node(1), &node(2), KIND_GROUP_SYNC, &value, 1).unwrap();
        envelope.group_sync()
    }

    fn relay_json() -> serde_json::Value {
        json!({"global_group_id": GlobalGroupId::new().to_string(), "messages": [
            {"message_id": MessageId::new().to_string(), "author": node(3).to_string(),
             "text": "你好", "sent_at": 1_700_000_000_000i64, "hlc": 99u64}]})
    }

    fn decode_relay(value: serde_json::Value) -> Result<RelayMessage, EnvelopeError> {
        let envelope = ephemeral(&node(1), &node(2), KIND_GROUP_RELAY, &value, 1).unwrap();
        envelope.group_relay()
    }

    #[test]
    fn a_sync_round_trips_through_its_payload() {
        let value = sync_json();
        let decoded = decode_sync(value.clone()).unwrap();
        assert_eq!(serde_json::to_value(decoded.to_payload()).unwrap(), value);
        assert_eq!(decoded.ranges.len(), 2);
        assert_eq!(
            value["ranges"][0]["fp"],
            json!(format!("{:016x}", u64::MAX - 7))
        );
        assert!(value["ranges"][1].get("count").is_none());
    }

    #[test]
    fn every_bad_sync_is_refused_with_its_reason() {
        let refused = |edit: &dyn Fn(&mut serde_json::Value), reason: &str| {
            let mut value = sync_json();
            edit(&mut value);
            let got = decode_sync(value);
            assert!(
                matches!(&got, Err(e) if e.to_string().contains(reason)),
                "{reason}: {got:?}"
            );
        };
        refused(&|v| v["extra"] = json!(1), "group.sync payload");
        refused(
            &|v| v["ranges"][0]["extra"] = json!(1),
            "group.sync payload",
        );
        refused(
            &|v| v["ranges"][0]["lo"]["x"] = json!(1),
            "group.sync payload",
        );
        refused(&|v| v["global_group_id"] = json!("nope"), "global_group_id");
        refused(&|v| v["round"] = json!(MAX_SYNC_ROUNDS + 1), "round");
        refused(
            &|v| {
                v["ranges"] = json!([]);
                v["want"] = json!([]);
            },
            "empty group.sync",
        );
        refused(
            &|v| {
                let one = v["ranges"][0].clone();
                v["ranges"] = json!(vec![one; MAX_SYNC_RANGES + 1]);
            },
            "too many ranges",
        );
        refused(
            &|v| {
                let ids: Vec<String> = (0..=MAX_SYNC_WANT)
                    .map(|_| MessageId::new().to_string())
                    .collect();
                v["want"] = json!(ids);
            },
            "too many wanted",
        );
        refused(&|v| v["want"] = json!(["x"]), "wanted id");
        refused(
            &|v| {
                let id = MessageId::new().to_string();
                v["want"] = json!([id, id]);
            },
            "duplicate",
        );
        refused(&|v| v["ranges"][0]["lo"]["id"] = json!("x"), "bound");
        refused(
            &|v| v["ranges"][0]["hi"] = json!({"hlc": 0, "id": ulid::Ulid::nil().to_string()}),
            "inverted",
        );
        refused(
            &|v| v["ranges"].as_array_mut().unwrap().reverse(),
            "overlap",
        );
        refused(
            &|v| {
                let first = v["ranges"][1].clone();
                v["ranges"] = json!([first.clone(), first]);
            },
            "overlap",
        );
        refused(&|v| v["ranges"][0]["fp"] = json!("ABCDEF0123456789"), "fp");
        refused(&|v| v["ranges"][0]["fp"] = json!("abc"), "fp");
        refused(
            &|v| v["ranges"][0]["ids"] = json!([]),
            "either count and fp, or ids",
        );
        refused(
            &|v| {
                v["ranges"][1]["count"] = json!(2);
            },
            "either count and fp, or ids",
        );
        refused(
            &|v| {
                v["ranges"][0].as_object_mut().unwrap().remove("fp");
            },
            "either count and fp, or ids",
        );
        refused(
            &|v| {
                let ids: Vec<String> = (0..=SYNC_LEAF)
                    .map(|_| MessageId::new().to_string())
                    .collect();
                v["ranges"][1]["ids"] = json!(ids);
            },
            "too many ids",
        );
        refused(&|v| v["ranges"][1]["ids"] = json!(["x"]), "listed id");
    }

    #[test]
    fn every_bad_relay_is_refused_with_its_reason() {
        let decoded = decode_relay(relay_json()).unwrap();
        assert_eq!(decoded.messages[0].author, node(3));
        assert_eq!(decoded.messages[0].hlc, Hlc::from_raw(99));
        let refused = |edit: &dyn Fn(&mut serde_json::Value), reason: &str| {
            let mut value = relay_json();
            edit(&mut value);
            let got = decode_relay(value);
            assert!(
                matches!(&got, Err(e) if e.to_string().contains(reason)),
                "{reason}: {got:?}"
            );
        };
        refused(&|v| v["extra"] = json!(1), "group.relay payload");
        refused(
            &|v| v["messages"][0]["from"] = json!("x"),
            "group.relay payload",
        );
        refused(&|v| v["global_group_id"] = json!("x"), "global_group_id");
        refused(&|v| v["messages"] = json!([]), "empty group.relay");
        refused(
            &|v| {
                let one = v["messages"][0].clone();
                let many: Vec<serde_json::Value> = (0..=MAX_RELAY_MESSAGES)
                    .map(|_| {
                        let mut m = one.clone();
                        m["message_id"] = json!(MessageId::new().to_string());
                        m
                    })
                    .collect();
                v["messages"] = json!(many);
            },
            "too many relayed",
        );
        refused(
            &|v| v["messages"][0]["message_id"] = json!("x"),
            "message_id",
        );
        refused(
            &|v| {
                let one = v["messages"][0].clone();
                v["messages"] = json!([one.clone(), one]);
            },
            "duplicate",
        );
        refused(&|v| v["messages"][0]["author"] = json!("lan:x"), "author");
        refused(&|v| v["messages"][0]["text"] = json!("  "), "empty text");
        refused(
            &|v| v["messages"][0]["text"] = json!("x".repeat(MAX_BODY_BYTES + 1)),
            "too long",
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any well-formed sync (ascending disjoint ranges) survives encoding.
        #[test]
        fn any_sync_round_trips(
            mut cuts in proptest::collection::btree_set((0u64..1_000_000, any::<u128>()), 1..40),
            round in 0u32..=MAX_SYNC_ROUNDS,
            fps in proptest::collection::vec(any::<(u64, u64, bool)>(), 40),
        ) {
            let bounds: Vec<OrderKey> = std::mem::take(&mut cuts).into_iter().map(|(h, n)| key(h, n)).collect();
            let mut ranges = Vec::new();
            for (i, lo) in bounds.iter().enumerate() {
                let (count, xor, as_ids) = fps[i];
                ranges.push(SyncRange {
                    range: KeyRange { lo: *lo, hi: bounds.get(i + 1).copied() },
                    summary: if as_ids {
                        RangeSummary::Ids(vec![MessageId::new()])
                    } else {
                        RangeSummary::Fingerprint(Fingerprint { count, xor })
                    },
                });
            }
            let message = SyncMessage { group: GlobalGroupId::new(), round, ranges, want: vec![] };
            let value = serde_json::to_value(message.to_payload()).unwrap();
            prop_assert_eq!(decode_sync(value).unwrap(), message);
        }
    }
}
