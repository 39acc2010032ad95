//! Envelopes: the unit of delivery between nodes (docs/PROTOCOL.md, "Envelopes").
//!
//! On the wire (inside an encrypted link frame) an envelope is its JSON body followed
//! by the sender's 64-byte Ed25519 signature over exactly those body bytes — the `sig`
//! of the design. Nothing is re-serialised before verifying. Decoding is strict: size,
//! version, ids, sender (must be the link's peer), receiver (must be us), signature,
//! then kind and payload; each failure has a reason the sender can log.

mod payload;

use api_types::NodeId;
use serde::{Deserialize, Serialize};
use storage::{EnvelopeId, Hlc, InboundEffect, InboundMessage, OutboxEntry, MAX_BODY_BYTES};

use crate::transport::{NodeKeys, PeerKeys};

pub use payload::{dm_outgoing, DmPayload, KIND_DM_SEND};

/// Envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
const SIG_LEN: usize = 64;
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
    #[error("bad signature")]
    BadSignature,
    #[error("sender {0} is not the peer of this link")]
    WrongSender(String),
    #[error("addressed to {0}, not to this node")]
    WrongReceiver(String),
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    #[error("invalid payload: {0}")]
    Invalid(&'static str),
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
    pub fn from_outbox(entry: &OutboxEntry, local: &NodeId) -> Result<Envelope, EnvelopeError> {
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

    /// Body ‖ signature, ready for a link frame.
    pub fn seal(&self, keys: &NodeKeys) -> Result<Vec<u8>, EnvelopeError> {
        let wire = Wire {
            v: ENVELOPE_VERSION,
            envelope_id: self.envelope_id.to_string(),
            kind: self.kind.clone(),
            from_peer_id: self.from_peer_id.to_string(),
            to_peer_id: self.to_peer_id.to_string(),
            ts: self.ts,
            payload: self.payload.clone(),
        };
        let mut bytes =
            serde_json::to_vec(&wire).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if bytes.len() + SIG_LEN > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge);
        }
        let sig = keys.sign(&bytes);
        bytes.extend_from_slice(&sig);
        Ok(bytes)
    }

    /// Decodes and checks an envelope that arrived on the link with `peer`.
    pub fn open(
        bytes: &[u8],
        peer: &NodeId,
        peer_keys: &PeerKeys,
        local: &NodeId,
    ) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge);
        }
        if bytes.len() <= SIG_LEN {
            return Err(EnvelopeError::Malformed("shorter than a signature".into()));
        }
        let (body, sig) = bytes.split_at(bytes.len() - SIG_LEN);
        let mut signature = [0u8; SIG_LEN];
        signature.copy_from_slice(sig);
        if !peer_keys.verify(body, &signature) {
            return Err(EnvelopeError::BadSignature);
        }
        let wire: Wire =
            serde_json::from_slice(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
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
                if dm.text.trim().is_empty() {
                    return Err(EnvelopeError::Invalid("empty text"));
                }
                if dm.text.len() > MAX_BODY_BYTES {
                    return Err(EnvelopeError::Invalid("text too long"));
                }
                Ok(InboundEffect::DirectMessage(InboundMessage {
                    message_id: dm.message_id()?,
                    body: dm.text,
                    sent_at: dm.sent_at,
                    hlc: Hlc::from_raw(dm.hlc),
                }))
            }
            other => Err(EnvelopeError::UnknownKind(other.chars().take(64).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                "sent_at": 1_700_000_000_000i64, "hlc": 42u64}),
        }
    }

    #[test]
    fn sealed_envelopes_open_only_for_the_right_peer_keys_and_receiver() {
        let keys = NodeKeys::generate().unwrap();
        let env = dm("你好 hello");
        let bytes = env.seal(&keys).unwrap();
        let opened = Envelope::open(&bytes, &id(1), &keys.public(), &id(2)).unwrap();
        assert_eq!(opened, env);
        assert!(
            matches!(opened.effect().unwrap(), InboundEffect::DirectMessage(m) if m.body == "你好 hello")
        );

        let other = NodeKeys::generate().unwrap();
        assert_eq!(
            Envelope::open(&bytes, &id(1), &other.public(), &id(2)),
            Err(EnvelopeError::BadSignature)
        );
        assert!(matches!(
            Envelope::open(&bytes, &id(3), &keys.public(), &id(2)),
            Err(EnvelopeError::WrongSender(_))
        ));
        assert!(matches!(
            Envelope::open(&bytes, &id(1), &keys.public(), &id(3)),
            Err(EnvelopeError::WrongReceiver(_))
        ));
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert_eq!(
            Envelope::open(&flipped, &id(1), &keys.public(), &id(2)),
            Err(EnvelopeError::BadSignature)
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

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let keys = NodeKeys::generate().unwrap();
            let _ = Envelope::open(&bytes, &id(1), &keys.public(), &id(2));
        }
    }
}
