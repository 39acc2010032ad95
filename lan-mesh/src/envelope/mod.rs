//! Envelopes: the unit of delivery between nodes (docs/PROTOCOL.md, "Envelopes").
//!
//! On the wire an envelope is its JSON body, inside a frame of an encrypted link. The
//! link authenticates every frame as its peer's (each is sealed under keys of a Noise
//! handshake that proved the peer's key-derived id), so the envelope carries no second
//! signature of its own; what travels further than one link — a message, a group
//! change — carries its author's signature (`sig`), checked on arrival
//! ([`Envelope::verified_effect`]). Decoding is strict: size, version, ids, sender (must
//! be the link's peer), receiver (must be us), then kind and payload; each failure has a
//! reason the sender can log.

mod group_wire;
mod payload;
mod receipt;
mod sync_payload;

use api_types::NodeId;
use chat_core::{EnvelopeId, GlobalGroupId, Hlc, Message};
use serde::{Deserialize, Serialize};

use crate::ports::{InboundEffect, IncomingMessage, QueuedEnvelope};
use crate::transport::{NodeKeys, PeerKeys};

pub use group_wire::GroupStateWire;

pub use payload::{
    dm_outgoing, group_upsert_outgoing, DmPayload, GroupSendPayload, Outgoing, KIND_DM_SEND,
    KIND_GROUP_SEND, KIND_GROUP_UPSERT,
};
pub use receipt::{read_receipt_outgoing, ReadReceiptPayload, KIND_READ_RECEIPT};
pub use sync_payload::{
    ephemeral, is_catch_up_kind, BoundPayload, RangePayload, RangeSummary, RelayMessage,
    RelayPayload, RelayedPayload, SyncMessage, SyncPayload, SyncRange, KIND_GROUP_RELAY,
    KIND_GROUP_SYNC, MAX_RELAY_MESSAGES, MAX_SYNC_RANGES, MAX_SYNC_ROUNDS, MAX_SYNC_WANT,
    SYNC_LEAF,
};

/// Envelope format version this build writes and reads. Version 1 appended an Ed25519
/// signature by the sender, which repeated what the link proves (docs/PROTOCOL.md,
/// "Envelopes"); a version-1 envelope is refused as unsupported.
pub const ENVELOPE_VERSION: u8 = 2;
/// A body can hold the largest message text (64 KiB) JSON-escaped, with room to spare.
pub const MAX_ENVELOPE_BYTES: usize = 200 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope too large")]
    TooLarge,
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    #[error("sender {0} is not the peer of this link")]
    WrongSender(String),
    #[error("addressed to {0}, not to this node")]
    WrongReceiver(String),
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    #[error("invalid payload: {0}")]
    Invalid(&'static str),
    /// A statement its author did not make: a signature that does not verify, keys
    /// that do not derive the author's id, or a group change its editor may not make.
    /// Rejected like `Invalid`, and counted apart (`envelopes_forged`).
    #[error("forged: {0}")]
    Forged(&'static str),
}

/// A business envelope, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub envelope_id: EnvelopeId,
    pub kind: String,
    pub from_peer_id: NodeId,
    pub to_peer_id: NodeId,
    /// The sender's clock when it first queued the envelope, Unix ms.
    pub ts: i64,
    pub payload: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u8,
    envelope_id: String,
    kind: String,
    from_peer_id: String,
    to_peer_id: String,
    ts: i64,
    payload: serde_json::Value,
}

impl Envelope {
    /// The envelope an outbox row stands for (its payload is the JSON the encoder stored).
    pub fn from_outbox(entry: &QueuedEnvelope, local: &NodeId) -> Result<Envelope, EnvelopeError> {
        Ok(Envelope {
            envelope_id: entry.envelope_id,
            kind: entry.kind.clone(),
            from_peer_id: local.clone(),
            to_peer_id: entry.peer_id.clone(),
            ts: entry.created_at,
            payload: serde_json::from_slice(&entry.payload)
                .map_err(|e| EnvelopeError::Malformed(format!("stored payload: {e}")))?,
        })
    }

    /// The `group.send` envelope that carries a local group message to one member.
    ///
    /// Its envelope id **is the message id**: stable across every resend (the receiver's
    /// inbox dedupe recognises a resend, even after a restart of either side), unique
    /// per receiver (each member dedupes in its own table), and an ack names the
    /// message it acknowledges without any table on the sender's side.
    pub fn group_send(
        local: &NodeId,
        peer: &NodeId,
        group: &GlobalGroupId,
        message: &Message,
    ) -> Result<Envelope, EnvelopeError> {
        let payload = serde_json::to_value(GroupSendPayload::from_message(group, message))
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        Ok(Envelope {
            envelope_id: EnvelopeId::from_ulid(message.message_id.ulid()),
            kind: KIND_GROUP_SEND.to_string(),
            from_peer_id: local.clone(),
            to_peer_id: peer.clone(),
            ts: message.sent_at,
            payload,
        })
    }

    /// The wire bytes, ready for a link frame.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let wire = Wire {
            v: ENVELOPE_VERSION,
            envelope_id: self.envelope_id.to_string(),
            kind: self.kind.clone(),
            from_peer_id: self.from_peer_id.to_string(),
            to_peer_id: self.to_peer_id.to_string(),
            ts: self.ts,
            payload: self.payload.clone(),
        };
        let bytes =
            serde_json::to_vec(&wire).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge);
        }
        Ok(bytes)
    }

    /// Decodes and checks an envelope that arrived on the link with `peer` (the link
    /// proved who sent it).
    pub fn open(bytes: &[u8], peer: &NodeId, local: &NodeId) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge);
        }
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if wire.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(wire.v));
        }
        let from: NodeId = wire
            .from_peer_id
            .parse()
            .map_err(|_| EnvelopeError::Malformed("from_peer_id".into()))?;
        if &from != peer {
            return Err(EnvelopeError::WrongSender(from.to_string()));
        }
        let to: NodeId = wire
            .to_peer_id
            .parse()
            .map_err(|_| EnvelopeError::Malformed("to_peer_id".into()))?;
        if &to != local {
            return Err(EnvelopeError::WrongReceiver(to.to_string()));
        }
        let envelope_id: EnvelopeId = wire
            .envelope_id
            .parse()
            .map_err(|_| EnvelopeError::Malformed("envelope_id".into()))?;
        Ok(Envelope {
            envelope_id,
            kind: wire.kind,
            from_peer_id: from,
            to_peer_id: to,
            ts: wire.ts,
            payload: wire.payload,
        })
    }

    /// What this envelope does to the chat store. Unknown kinds are refused here, with
    /// the reason sent back to the sender.
    pub fn effect(&self) -> Result<InboundEffect, EnvelopeError> {
        match self.kind.as_str() {
            KIND_DM_SEND => {
                let dm: DmPayload = serde_json::from_value(self.payload.clone())
                    .map_err(|_| EnvelopeError::Invalid("dm.send payload"))?;
                check_text(&dm.text)?;
                Ok(InboundEffect::DirectMessage(IncomingMessage {
                    message_id: dm.message_id()?,
                    body: dm.text,
                    sent_at: dm.sent_at,
                    hlc: Hlc::from_raw(dm.hlc),
                    signature: None,
                }))
            }
            KIND_GROUP_SEND => {
                let send: GroupSendPayload = serde_json::from_value(self.payload.clone())
                    .map_err(|_| EnvelopeError::Invalid("group.send payload"))?;
                check_text(&send.text)?;
                let message_id = send.message_id()?;
                // The envelope id is the message id (see `group_send`): a mismatch is a
                // forged or broken envelope, and would defeat the dedupe.
                if message_id.ulid() != self.envelope_id.ulid() {
                    return Err(EnvelopeError::Invalid(
                        "group.send envelope_id is not its message_id",
                    ));
                }
                Ok(InboundEffect::GroupMessage {
                    global_group_id: send.global_group_id()?,
                    message: IncomingMessage {
                        message_id,
                        body: send.text,
                        sent_at: send.sent_at,
                        hlc: Hlc::from_raw(send.hlc),
                        signature: None,
                    },
                })
            }
            KIND_GROUP_UPSERT => {
                let state: GroupStateWire = serde_json::from_value(self.payload.clone())
                    .map_err(|_| EnvelopeError::Invalid("group.upsert payload"))?;
                Ok(InboundEffect::GroupUpsert(state.into_state()?))
            }
            KIND_READ_RECEIPT => receipt::effect(&self.payload),
            other => Err(EnvelopeError::UnknownKind(other.chars().take(64).collect())),
        }
    }
}

impl Envelope {
    /// [`Envelope::effect`], with a message's author signature checked: the sender is
    /// the author of a `dm.send` or `group.send`, and `sender_keys` are the keys its
    /// link proved. A missing or wrong signature is `Forged`. The message keeps the
    /// signature and keys, so it can be relayed with its proof.
    pub fn verified_effect(&self, sender_keys: &PeerKeys) -> Result<InboundEffect, EnvelopeError> {
        let mut effect = self.effect()?;
        let (scope, message) = match &mut effect {
            InboundEffect::DirectMessage(m) => (
                chat_core::MessageScope::Direct {
                    to: &self.to_peer_id,
                },
                m,
            ),
            InboundEffect::GroupMessage {
                global_group_id,
                message,
            } => (chat_core::MessageScope::Group(global_group_id), message),
            // A group state carries its own signatures (checked when merged); a read
            // receipt is about the proven sender itself and carries no author proof.
            InboundEffect::GroupUpsert(_) | InboundEffect::ReadReceipt { .. } => return Ok(effect),
        };
        let sig = self
            .payload
            .get("sig")
            .and_then(|s| s.as_str())
            .and_then(chat_core::signing::signature_from_hex)
            .ok_or(EnvelopeError::Forged("an unsigned message"))?;
        let statement = chat_core::message_statement(
            scope,
            &message.message_id,
            &self.from_peer_id,
            message.sent_at,
            message.hlc,
            &message.body,
        );
        if !sender_keys.verify(&statement, &sig) {
            return Err(EnvelopeError::Forged(
                "a message whose signature does not verify",
            ));
        }
        message.signature = Some(chat_core::MessageSignature {
            sig,
            keys: author_keys(sender_keys),
        });
        Ok(effect)
    }
}

/// The node's keys sign its group changes and messages (docs/PROTOCOL.md, "Signatures").
impl chat_core::Signer for NodeKeys {
    fn keys(&self) -> chat_core::AuthorKeys {
        author_keys(&self.public())
    }

    fn sign(&self, message: &[u8]) -> chat_core::Signature {
        NodeKeys::sign(self, message)
    }
}

/// A peer's keys as chat-core checks signatures with them.
pub fn author_keys(keys: &PeerKeys) -> chat_core::AuthorKeys {
    chat_core::AuthorKeys {
        noise: keys.noise,
        signing: keys.signing,
    }
}

/// A message text on the wire: the same rule as everywhere (`chat_core::check_body`).
pub(crate) fn check_text(text: &str) -> Result<(), EnvelopeError> {
    chat_core::check_body(text).map_err(|e| match e {
        chat_core::TextError::Empty => EnvelopeError::Invalid("empty text"),
        _ => EnvelopeError::Invalid("text too long"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::MAX_BODY_BYTES;
    use proptest::prelude::*;
    use serde_json::json;

    fn id(n: u8) -> NodeId {
        format!("01HZZZZZZZZZZZZZZZZZZZZZ{n:02}").parse().unwrap()
    }

    fn dm(text: &str) -> Envelope {
        Envelope {
            envelope_id: EnvelopeId::new(),
            kind: KIND_DM_SEND.into(),
            from_peer_id: id(1),
            to_peer_id: id(2),
            ts: 1_700_000_000_000,
            payload: json!({"message_id": ulid::Ulid::new().to_string(), "text": text,
                "sent_at": 1_700_000_000_000i64, "hlc": 42u64, "sig": "00".repeat(64)}),
        }
    }

    #[test]
    fn chat_core_derives_the_same_node_id_as_the_transport() {
        for _ in 0..8 {
            let keys = NodeKeys::generate().unwrap();
            assert_eq!(
                author_keys(&keys.public()).node_id(),
                keys.public().node_id()
            );
            assert_eq!(chat_core::Signer::node_id(&keys), keys.public().node_id());
        }
    }

    #[test]
    fn encoded_envelopes_open_only_from_their_sender_for_their_receiver() {
        let env = dm("你好 hello");
        let bytes = env.encode().unwrap();
        let opened = Envelope::open(&bytes, &id(1), &id(2)).unwrap();
        assert_eq!(opened, env);
        assert!(
            matches!(opened.effect().unwrap(), InboundEffect::DirectMessage(m) if m.body == "你好 hello")
        );
        // Exactly the JSON body: no signature of its own (the link proves the sender).
        assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
        assert!(matches!(
            Envelope::open(&bytes, &id(3), &id(2)),
            Err(EnvelopeError::WrongSender(_))
        ));
        assert!(matches!(
            Envelope::open(&bytes, &id(1), &id(3)),
            Err(EnvelopeError::WrongReceiver(_))
        ));
        // A version-1 envelope (body ‖ 64-byte signature) is not JSON, and a version-1
        // body alone is refused by its version.
        let mut v1 = bytes.clone();
        v1.extend_from_slice(&[0u8; 64]);
        assert!(matches!(
            Envelope::open(&v1, &id(1), &id(2)),
            Err(EnvelopeError::Malformed(_))
        ));
        let text = String::from_utf8(bytes)
            .unwrap()
            .replacen("\"v\":2", "\"v\":1", 1);
        assert_eq!(
            Envelope::open(text.as_bytes(), &id(1), &id(2)),
            Err(EnvelopeError::UnsupportedVersion(1))
        );
    }

    #[test]
    fn unknown_kinds_and_bad_payloads_are_refused_with_a_reason() {
        let mut env = dm("x");
        env.kind = "file.send".into();
        assert_eq!(
            env.effect(),
            Err(EnvelopeError::UnknownKind("file.send".into()))
        );
        let mut env = dm("x");
        env.payload = json!({"text": "x"});
        assert_eq!(env.effect(), Err(EnvelopeError::Invalid("dm.send payload")));
        let env = dm("   ");
        assert_eq!(env.effect(), Err(EnvelopeError::Invalid("empty text")));
        let mut env = dm("x");
        env.payload["message_id"] = json!("nope");
        assert!(env.effect().is_err());
        let mut env = dm("x");
        env.payload["extra"] = json!(1);
        assert!(env.effect().is_err());
    }

    /// Test node `n`'s keys; its id (`sid`) derives from them.
    fn signer(n: u8) -> chat_core::SecretSigner {
        chat_core::SecretSigner::from_number(u64::from(n))
    }

    fn sid(n: u8) -> NodeId {
        chat_core::Signer::node_id(&signer(n))
    }

    fn stamp(hlc: u64, editor: u8) -> chat_core::Stamp {
        chat_core::Stamp {
            hlc,
            editor: sid(editor),
        }
    }

    /// Owned by 1, with 2 and 3; renamed and left by 3, each signed by its editor.
    fn group_state() -> chat_core::GroupState {
        let mut state = chat_core::GroupState::create(
            GlobalGroupId::new(),
            &stamp(3, 1),
            "项目 team",
            "周五发布",
            &[sid(2), sid(3), id(4)],
        );
        state.set_name("项目 team v2", &stamp(5, 1));
        state.sign_own(&signer(1));
        state.set_member(&sid(3), false, &stamp(6, 3));
        state.sign_own(&signer(3));
        state
    }

    fn upsert(state: &chat_core::GroupState) -> Envelope {
        let out = group_upsert_outgoing(state);
        Envelope {
            envelope_id: EnvelopeId::new(),
            kind: out.kind.to_string(),
            from_peer_id: id(2),
            to_peer_id: id(3),
            ts: 1_700_000_000_000,
            payload: serde_json::from_slice(&out.payload).unwrap(),
        }
    }

    fn group_message(text: &str) -> (GlobalGroupId, Message) {
        let group = GlobalGroupId::new();
        let message = Message {
            message_id: chat_core::MessageId::new(),
            conversation_id: chat_core::ConversationId::group(&group),
            sender: chat_core::UserId::lan(&id(1)),
            body: text.into(),
            sent_at: 1_700_000_000_000,
            received_at: 1_700_000_000_000,
            hlc: Hlc::from_raw(7 << 16),
            status: chat_core::MessageStatus::Pending,
            sender_clock_offset_ms: None,
            signature: None,
        };
        (group, message)
    }

    #[test]
    fn group_upserts_round_trip_through_encode_and_open() {
        let state = group_state();
        let env = upsert(&state);
        assert_eq!(env.kind, KIND_GROUP_UPSERT);
        let bytes = env.encode().unwrap();
        let opened = Envelope::open(&bytes, &id(2), &id(3)).unwrap();
        assert_eq!(opened.effect(), Ok(InboundEffect::GroupUpsert(state)));
    }

    #[test]
    fn bad_group_upserts_are_refused_with_a_reason() {
        let state = group_state();
        let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut env = upsert(&state);
            edit(&mut env.payload);
            env.effect()
        };
        assert_eq!(bad(&|_| {}), Ok(InboundEffect::GroupUpsert(state.clone())));
        assert_eq!(
            bad(&|p| p["names"][0]["value"] = json!("  ")),
            Err(EnvelopeError::Invalid("bad group name"))
        );
        assert_eq!(
            bad(&|p| p["names"][0]["value"] = json!("a\u{7}b")),
            Err(EnvelopeError::Invalid("bad group name"))
        );
        assert_eq!(
            bad(&|p| p["names"][0]["value"] = json!("n".repeat(129))),
            Err(EnvelopeError::Invalid("bad group name"))
        );
        assert_eq!(
            bad(&|p| p["names"] = json!([])),
            Err(EnvelopeError::Invalid("a group needs a name"))
        );
        assert_eq!(
            bad(&|p| p["announcements"][0]["value"] = json!("a".repeat(4097))),
            Err(EnvelopeError::Invalid("announcement too long"))
        );
        let index = |p: &serde_json::Value, node: &NodeId| {
            p["members"]
                .as_array()
                .unwrap()
                .iter()
                .position(|m| m["id"] == json!(node.to_string()))
                .unwrap()
        };
        assert_eq!(
            bad(&|p| {
                let i = index(p, &sid(1));
                p["members"][i]["present"] = json!(false);
            }),
            Err(EnvelopeError::Invalid("the owner is not a member"))
        );
        // Changes in another node's name, or beyond the signer's rights: forged.
        assert_eq!(
            bad(&|p| {
                let i = index(p, &sid(2));
                p["members"][i]["editor"] = json!(sid(3).to_string());
            }),
            Err(EnvelopeError::Forged(
                "a member entry not written by the owner"
            ))
        );
        assert_eq!(
            bad(&|p| {
                let i = index(p, &sid(2));
                p["members"][i]["present"] = json!(false);
            }),
            Err(EnvelopeError::Forged(
                "a change whose signature does not verify"
            ))
        );
        assert_eq!(
            bad(&|p| p["names"][0]["value"] = json!("renamed on the way")),
            Err(EnvelopeError::Forged(
                "a change whose signature does not verify"
            ))
        );
        assert_eq!(
            bad(&|p| p["names"][0]["sig"] = json!("")),
            Err(EnvelopeError::Forged("an unsigned change"))
        );
        assert_eq!(
            bad(&|p| p["keys"] = json!([])),
            Err(EnvelopeError::Forged("a change by an editor without keys"))
        );
        assert_eq!(
            bad(&|p| p["keys"][0]["keys"] = json!(chat_core::Signer::keys(&signer(2)).to_hex())),
            Err(EnvelopeError::Forged(
                "keys that do not derive their node id"
            ))
        );
        assert_eq!(
            bad(&|p| {
                let i = index(p, &id(4));
                p["members"][i]["id"] = json!("nope");
            }),
            Err(EnvelopeError::Invalid("group.upsert payload"))
        );
        assert_eq!(
            bad(&|p| {
                let entry = p["members"][1].clone();
                p["members"].as_array_mut().unwrap().push(entry);
            }),
            Err(EnvelopeError::Invalid("not in canonical form"))
        );
        assert_eq!(
            bad(&|p| p["names"][0]["editor"] = json!(sid(2).to_string())),
            Err(EnvelopeError::Forged(
                "a name or announcement not written by the owner"
            ))
        );
        assert_eq!(
            bad(&|p| p["dissolved"] =
                json!({"hlc": 9, "editor": sid(2).to_string(), "sig": "00".repeat(64)})),
            Err(EnvelopeError::Forged(
                "dissolved by someone else than the owner"
            ))
        );
        assert_eq!(
            bad(&|p| p["names"][0]["hlc"] = json!(0)),
            Err(EnvelopeError::Invalid("a stamp of 0"))
        );
        assert_eq!(
            bad(&|p| p["global_group_id"] = json!("x")),
            Err(EnvelopeError::Invalid("group.upsert payload"))
        );
        assert_eq!(
            bad(&|p| p["extra"] = json!(1)),
            Err(EnvelopeError::Invalid("group.upsert payload"))
        );
        assert_eq!(
            bad(&|p| p["names"][0]["hlc"] = json!(-1)),
            Err(EnvelopeError::Invalid("group.upsert payload"))
        );
    }

    #[test]
    fn group_messages_round_trip_with_the_message_id_as_envelope_id() {
        let (group, message) = group_message("大家好\nhello");
        let env = Envelope::group_send(&id(1), &id(2), &group, &message).unwrap();
        assert_eq!(env.envelope_id.ulid(), message.message_id.ulid());
        // Every resend is the same envelope.
        assert_eq!(
            Envelope::group_send(&id(1), &id(2), &group, &message).unwrap(),
            env
        );
        let bytes = env.encode().unwrap();
        let opened = Envelope::open(&bytes, &id(1), &id(2)).unwrap();
        assert_eq!(
            opened.effect(),
            Ok(InboundEffect::GroupMessage {
                global_group_id: group,
                message: IncomingMessage {
                    message_id: message.message_id,
                    body: message.body.clone(),
                    sent_at: message.sent_at,
                    hlc: message.hlc,
                    signature: None,
                },
            })
        );
        // Unsigned (the row had no signature): refused as forged when verified.
        let keys = NodeKeys::generate().unwrap();
        assert_eq!(
            opened.verified_effect(&keys.public()),
            Err(EnvelopeError::Forged("an unsigned message"))
        );
    }

    #[test]
    fn bad_group_messages_are_refused_with_a_reason() {
        let (group, message) = group_message("x");
        let env = Envelope::group_send(&id(1), &id(2), &group, &message).unwrap();
        let bad = |edit: &dyn Fn(&mut Envelope)| {
            let mut e = env.clone();
            edit(&mut e);
            e.effect()
        };
        assert_eq!(
            bad(&|e| e.payload["text"] = json!(" \n ")),
            Err(EnvelopeError::Invalid("empty text"))
        );
        assert_eq!(
            bad(&|e| e.payload["text"] = json!("a".repeat(MAX_BODY_BYTES + 1))),
            Err(EnvelopeError::Invalid("text too long"))
        );
        assert_eq!(
            bad(&|e| e.envelope_id = EnvelopeId::new()),
            Err(EnvelopeError::Invalid(
                "group.send envelope_id is not its message_id"
            ))
        );
        assert_eq!(
            bad(&|e| e.payload["global_group_id"] = json!("nope")),
            Err(EnvelopeError::Invalid("global_group_id is not a ULID"))
        );
        assert_eq!(
            bad(&|e| e.payload["message_id"] = json!("nope")),
            Err(EnvelopeError::Invalid("message_id is not a ULID"))
        );
        assert_eq!(
            bad(&|e| e.payload["extra"] = json!(true)),
            Err(EnvelopeError::Invalid("group.send payload"))
        );
        assert_eq!(
            bad(&|e| {
                if let Some(p) = e.payload.as_object_mut() {
                    p.remove("hlc");
                }
            }),
            Err(EnvelopeError::Invalid("group.send payload"))
        );
    }

    proptest! {
        #[test]
        fn any_group_state_survives_the_codec(
            name in "[a-zA-Z0-9 一-龥]{1,64}",
            announcement in "\\PC{0,200}",
            others in proptest::collection::vec(any::<u128>(), 0..20),
            hlc in 1u64..u64::MAX / 2,
        ) {
            prop_assume!(!name.trim().is_empty());
            let members: Vec<NodeId> = others
                .iter()
                .map(|n| ulid::Ulid::from(*n).to_string().parse().unwrap())
                .collect();
            let mut state = chat_core::GroupState::create(
                GlobalGroupId::new(),
                &stamp(hlc, 1),
                &name,
                "",
                &members,
            );
            state.set_announcement(&announcement, &stamp(hlc + 1, 1));
            state.sign_own(&signer(1));
            prop_assert_eq!(upsert(&state).effect(), Ok(InboundEffect::GroupUpsert(state)));
        }
    }
}

/// What a peer can put in a link frame, signed and unsigned, under a fuzzer.
#[cfg(test)]
mod fuzz;
