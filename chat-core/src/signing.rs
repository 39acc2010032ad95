//! Author signatures: what a node signs so that a statement (a group change, a
//! message) can be checked by anyone who receives it, however many members relayed it
//! on the way (docs/PROTOCOL.md, "Signatures").
//!
//! A statement carries its author's public keys (or sits next to them); a receiver
//! accepts it only if the signature verifies under those keys **and** the keys derive
//! the author's node id (`AuthorKeys::node_id`). So nobody can sign as another node,
//! and nobody needs to have met the author before.
//!
//! The derivation is the one `lan_mesh::transport::PeerKeys::node_id` uses (a pinned
//! vector in both places keeps them equal): the first 128 bits of SHA-256 over a domain
//! tag, the Ed25519 key and the X25519 key, written as a ULID.

use std::fmt;
use std::str::FromStr;

use api_types::NodeId;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// An Ed25519 signature.
pub type Signature = [u8; 64];

const NODE_ID_DOMAIN: &[u8] = b"lanchat/node-id/v1";

/// A node's public keys: the X25519 key of its links and the Ed25519 key it signs
/// with. Together they derive its node id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthorKeys {
    pub noise: [u8; 32],
    pub signing: [u8; 32],
}

impl AuthorKeys {
    /// The node id these keys derive (see the module docs).
    pub fn node_id(&self) -> NodeId {
        let mut hash = Sha256::new();
        hash.update(NODE_ID_DOMAIN);
        hash.update(self.signing);
        hash.update(self.noise);
        let digest = hash.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        let text = ulid::Ulid::from(u128::from_be_bytes(first)).to_string();
        NodeId::from_str(&text).unwrap_or_else(|_| unreachable!("a ULID is a node id"))
    }

    /// Whether `signature` is these keys' signature of `message` (strict: no
    /// malleable encodings, no small-order keys).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.signing) else {
            return false;
        };
        key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }

    /// Whether `author` signed `message`: the keys derive `author`'s id and the
    /// signature verifies.
    pub fn verify_as(&self, author: &NodeId, message: &[u8], signature: &Signature) -> bool {
        self.node_id() == *author && self.verify(message, signature)
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.noise);
        out[32..].copy_from_slice(&self.signing);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<AuthorKeys> {
        if bytes.len() != 64 {
            return None;
        }
        let mut keys = AuthorKeys {
            noise: [0; 32],
            signing: [0; 32],
        };
        keys.noise.copy_from_slice(&bytes[..32]);
        keys.signing.copy_from_slice(&bytes[32..]);
        Some(keys)
    }

    /// Lowercase hex of `to_bytes` (128 digits): the keys' text form on the wire and in
    /// the store's JSON columns.
    pub fn to_hex(&self) -> String {
        hex(&self.to_bytes())
    }

    pub fn from_hex(text: &str) -> Option<AuthorKeys> {
        AuthorKeys::from_bytes(&unhex(text)?)
    }
}

impl fmt::Debug for AuthorKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorKeys({})", hex(&self.noise[..6]))
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex (either case) to bytes; `None` for an odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn signature_from_hex(text: &str) -> Option<Signature> {
    unhex(text)?.try_into().ok()
}

/// Who signs this node's statements: the node's own keys (`lan_mesh`'s `NodeKeys`
/// implements it; tests use [`SecretSigner`]).
pub trait Signer: Send + Sync {
    fn keys(&self) -> AuthorKeys;
    fn sign(&self, message: &[u8]) -> Signature;
    fn node_id(&self) -> NodeId {
        self.keys().node_id()
    }
}

/// A signer from an Ed25519 seed and an X25519 public key: enough to sign and to
/// derive an id (tests, tools). The node signs with its `NodeKeys` instead.
#[derive(Clone)]
pub struct SecretSigner {
    signing: SigningKey,
    noise: [u8; 32],
}

impl SecretSigner {
    pub fn new(seed: [u8; 32], noise_public: [u8; 32]) -> SecretSigner {
        SecretSigner {
            signing: SigningKey::from_bytes(&seed),
            noise: noise_public,
        }
    }

    /// A deterministic signer from one number (tests).
    pub fn from_number(n: u64) -> SecretSigner {
        let seed: [u8; 32] = Sha256::digest(n.to_be_bytes()).into();
        let noise: [u8; 32] = Sha256::digest(seed).into();
        SecretSigner::new(seed, noise)
    }
}

impl Signer for SecretSigner {
    fn keys(&self) -> AuthorKeys {
        AuthorKeys {
            noise: self.noise,
            signing: self.signing.verifying_key().to_bytes(),
        }
    }

    fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for SecretSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretSigner({:?})", self.keys())
    }
}

/// Builds the bytes a statement signs: a domain tag, then fields each written with
/// its length, so no two different statements share their bytes.
pub struct Statement(Vec<u8>);

impl Statement {
    pub fn new(domain: &str) -> Statement {
        let mut s = Statement(Vec::with_capacity(128));
        s.field(domain.as_bytes());
        s
    }

    pub fn field(&mut self, bytes: &[u8]) -> &mut Statement {
        // Lengths fit: every field is bounded far below 4 GiB (a message ≤ 64 KiB).
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    pub fn text(&mut self, text: &str) -> &mut Statement {
        self.field(text.as_bytes())
    }

    pub fn number(&mut self, n: u64) -> &mut Statement {
        self.field(&n.to_be_bytes())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_derive_as_the_transport_derives_them() {
        // The same pinned vector as `lan_mesh::transport::identity`.
        let fixed = AuthorKeys {
            noise: [1; 32],
            signing: [2; 32],
        };
        assert_eq!(fixed.node_id().as_str(), "0Z1BR3HB2JXE79ZVB0M6EHMWTG");
    }

    #[test]
    fn a_signature_counts_only_for_the_id_its_keys_derive() {
        let alice = SecretSigner::from_number(1);
        let bob = SecretSigner::from_number(2);
        let sig = alice.sign(b"statement");
        assert!(alice.keys().verify_as(&alice.node_id(), b"statement", &sig));
        assert!(!alice.keys().verify_as(&alice.node_id(), b"statemenT", &sig));
        assert!(!alice.keys().verify_as(&bob.node_id(), b"statement", &sig));
        assert!(!bob.keys().verify_as(&bob.node_id(), b"statement", &sig));
        let mut other_noise = alice.keys();
        other_noise.noise[0] ^= 1;
        assert!(!other_noise.verify_as(&alice.node_id(), b"statement", &sig));
    }

    #[test]
    fn keys_and_signatures_round_trip_as_hex() {
        let keys = SecretSigner::from_number(3).keys();
        assert_eq!(AuthorKeys::from_hex(&keys.to_hex()), Some(keys));
        assert_eq!(AuthorKeys::from_hex("abc"), None);
        assert_eq!(AuthorKeys::from_hex(&"zz".repeat(64)), None);
        let sig = SecretSigner::from_number(3).sign(b"x");
        assert_eq!(signature_from_hex(&hex(&sig)), Some(sig));
    }

    #[test]
    fn statements_with_moved_boundaries_differ() {
        let a = Statement::new("d").text("ab").text("c").bytes().to_vec();
        let b = Statement::new("d").text("a").text("bc").bytes().to_vec();
        assert_ne!(a, b);
    }
}
