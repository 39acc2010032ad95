//! A node's long-lived keys: the Noise static key (X25519) that authenticates its links
//! and the Ed25519 key that signs its envelopes. Generated once, kept in the data
//! directory (0600) by the node. Its node id is the one the two public keys derive
//! ([`PeerKeys::node_id`]); an id that changes is announced by an [`IdentityStatement`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};

use api_types::NodeId;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::noise::NOISE_PARAMS;

/// Length of the stored form: X25519 private, X25519 public, Ed25519 seed.
pub const NODE_KEYS_LEN: usize = 96;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key file holds {0} bytes, expected {NODE_KEYS_LEN}")]
    Length(usize),
    #[error("cannot generate a key pair: {0}")]
    Generate(String),
    #[error("the stored public key does not belong to the stored private key")]
    Mismatch,
}

/// Domain separation for [`PeerKeys::node_id`]: these bytes are hashed nowhere else.
const NODE_ID_DOMAIN: &[u8] = b"lanchat/node-id/v1";

/// Domain separation for [`IdentityStatement`] signatures: a move ("is now") and a copy
/// ("was a copy of") sign different domains, so neither verifies as the other.
const STATEMENT_DOMAIN: &[u8] = b"lanchat/identity-change/v1";
const COPY_DOMAIN: &[u8] = b"lanchat/identity-copy/v1";

/// What an [`IdentityStatement`] says about its two ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangeKind {
    /// "The node that was `old_id` is now `new_id`": an upgrade from a random id (the
    /// keys stay, only the id changes). Colleagues move what they knew under the old
    /// id to the new one.
    #[default]
    Moved,
    /// "`new_id` runs on a computer that was a copy of `old_id`'s and took a new
    /// identity": the old id lives on elsewhere (its twin), so colleagues move nothing;
    /// they show the new id as a copy of the old one, and a block on the old id holds
    /// for the copy too.
    Copied,
}

/// A statement about this node's earlier id, signed by the key that held it: either
/// "`old_id` is now `new_id`" ([`ChangeKind::Moved`]) or "`new_id` was a copy of
/// `old_id`" ([`ChangeKind::Copied`], signed by the old key before the copy drops it).
/// Carried in the link `Hello` so every colleague hears it on its next link, however
/// long it was away.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityStatement {
    /// True for a copy statement (absent: a move).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy: bool,
    pub old_id: String,
    pub new_id: String,
    /// Hex public keys that held the old id (Noise, then Ed25519).
    pub old_noise_key: String,
    pub old_signing_key: String,
    /// Hex Ed25519 signature by `old_signing_key` over the domain, both ids and the new
    /// id's keys.
    pub signature: String,
}

/// A statement whose signature holds, for the new id the link proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityChange {
    pub old_id: NodeId,
    pub new_id: NodeId,
    pub old_keys: PeerKeys,
    /// The old id is the one the old keys derive (else it is of the random-id era, and
    /// only keys pinned for it earlier can vouch for it).
    pub old_id_derived: bool,
    pub kind: ChangeKind,
}

fn statement_message(kind: ChangeKind, old_id: &str, new_id: &str, new_keys: &PeerKeys) -> Vec<u8> {
    let domain = match kind {
        ChangeKind::Moved => STATEMENT_DOMAIN,
        ChangeKind::Copied => COPY_DOMAIN,
    };
    let mut out = Vec::with_capacity(domain.len() + 52 + 64);
    out.extend_from_slice(domain);
    out.extend_from_slice(old_id.as_bytes());
    out.extend_from_slice(new_id.as_bytes());
    out.extend_from_slice(&new_keys.to_bytes());
    out
}

impl IdentityStatement {
    /// Signs "`old_id` is now `new_keys`' id" with `old_keys` (the same keys for an
    /// upgrade from a random id).
    pub fn sign(old_id: &NodeId, old_keys: &NodeKeys, new_keys: &PeerKeys) -> Self {
        Self::sign_kind(ChangeKind::Moved, old_id, old_keys, new_keys)
    }

    /// Signs "`new_keys`' id runs on a copy of `old_keys`' computer" with the old keys,
    /// which the copy holds until it drops them for `new_keys`.
    pub fn sign_copy(old_keys: &NodeKeys, new_keys: &PeerKeys) -> Self {
        let old_id = old_keys.public().node_id();
        Self::sign_kind(ChangeKind::Copied, &old_id, old_keys, new_keys)
    }

    fn sign_kind(
        kind: ChangeKind,
        old_id: &NodeId,
        old_keys: &NodeKeys,
        new_keys: &PeerKeys,
    ) -> Self {
        let new_id = new_keys.node_id();
        let old_public = old_keys.public();
        let signature = old_keys.sign(&statement_message(
            kind,
            old_id.as_str(),
            new_id.as_str(),
            new_keys,
        ));
        IdentityStatement {
            copy: kind == ChangeKind::Copied,
            old_id: old_id.to_string(),
            new_id: new_id.to_string(),
            old_noise_key: super::noise::hex(&old_public.noise),
            old_signing_key: super::noise::hex(&old_public.signing),
            signature: super::noise::hex(&signature),
        }
    }

    pub fn kind(&self) -> ChangeKind {
        if self.copy {
            ChangeKind::Copied
        } else {
            ChangeKind::Moved
        }
    }

    /// The change, if this statement is about `new_keys`' id and its signature holds.
    /// A copy must name the id its old keys derive (only a key-derived id can have been
    /// copied with its keys).
    pub fn verify(&self, new_keys: &PeerKeys) -> Option<IdentityChange> {
        let new_id = new_keys.node_id();
        if self.new_id != new_id.as_str() {
            return None;
        }
        let old_id: NodeId = self.old_id.parse().ok()?;
        if old_id == new_id {
            return None;
        }
        let old_keys = PeerKeys {
            noise: super::noise::unhex32(&self.old_noise_key)?,
            signing: super::noise::unhex32(&self.old_signing_key)?,
        };
        let signature = super::noise::unhex64(&self.signature)?;
        let kind = self.kind();
        let message = statement_message(kind, &self.old_id, &self.new_id, new_keys);
        if !old_keys.verify(&message, &signature) {
            return None;
        }
        let old_id_derived = old_keys.node_id() == old_id;
        if kind == ChangeKind::Copied && !old_id_derived {
            return None;
        }
        Some(IdentityChange {
            old_id_derived,
            old_id,
            new_id,
            old_keys,
            kind,
        })
    }
}

/// Ed25519 public keys already decompressed, by their bytes. Decompressing a key (a
/// square root in the field) costs about a sixth of a verification, and the same few
/// colleagues' keys check every envelope and message they send. Bounded: full, it
/// starts over, so keys that are only ever seen once cannot grow it.
static VERIFYING_KEYS: LazyLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
const VERIFYING_KEYS_MAX: usize = 4096;

fn verifying_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    let known = |keys: &HashMap<[u8; 32], VerifyingKey>| keys.get(bytes).copied();
    if let Some(key) = known(&VERIFYING_KEYS.lock().unwrap_or_else(|p| p.into_inner())) {
        return Some(key);
    }
    // Not under the lock: other envelopes' checks go on meanwhile.
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    let mut keys = VERIFYING_KEYS.lock().unwrap_or_else(|p| p.into_inner());
    if keys.len() >= VERIFYING_KEYS_MAX {
        keys.clear();
    }
    keys.insert(*bytes, key);
    Some(key)
}

/// The public half, as a peer proves it in the handshake and the store pins it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKeys {
    pub noise: [u8; 32],
    pub signing: [u8; 32],
}

impl PeerKeys {
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.noise);
        out[32..].copy_from_slice(&self.signing);
        out
    }

    /// Checks an Ed25519 signature by this peer (strict: no malleable encodings).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Some(key) = verifying_key(&self.signing) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        // `verify_strict` is the plain check plus the refusal of small-order points: one
        // verification, not two (~40 µs saved on every inbound envelope).
        key.verify_strict(message, &signature).is_ok()
    }

    /// The node id these keys derive: the first 128 bits of SHA-256 over a domain tag,
    /// the Ed25519 key and the X25519 key, written as a ULID (26 Crockford base32
    /// digits) so that every place that parses node ids keeps working. Whoever shows an
    /// id must hold the keys that hash to it, so an id cannot be claimed by anyone else.
    pub fn node_id(&self) -> NodeId {
        let mut hash = Sha256::new();
        hash.update(NODE_ID_DOMAIN);
        hash.update(self.signing);
        hash.update(self.noise);
        let digest = hash.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        let text = ulid::Ulid::from(u128::from_be_bytes(first)).to_string();
        // A u128 always encodes as a valid 26-digit id whose first digit is at most 7.
        NodeId::from_str(&text).unwrap_or_else(|_| unreachable!("a ULID is a node id"))
    }

    /// A short fingerprint for logs and reports (never the keys' secret halves).
    pub fn fingerprint(&self) -> String {
        self.noise[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKeys({})", self.fingerprint())
    }
}

/// The node's own keys. `Debug` shows only the public fingerprint.
#[derive(Clone)]
pub struct NodeKeys {
    noise_private: [u8; 32],
    noise_public: [u8; 32],
    signing: SigningKey,
}

impl NodeKeys {
    pub fn generate() -> Result<NodeKeys, KeyError> {
        let pair = snow::Builder::new(NOISE_PARAMS.clone())
            .generate_keypair()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        let mut bytes = [0u8; NODE_KEYS_LEN];
        if pair.private.len() != 32 || pair.public.len() != 32 {
            return Err(KeyError::Generate("unexpected X25519 key length".into()));
        }
        bytes[..32].copy_from_slice(&pair.private);
        bytes[32..64].copy_from_slice(&pair.public);
        bytes[64..].copy_from_slice(&seed);
        NodeKeys::from_bytes(&bytes)
    }

    /// Reads the stored form. The public key is checked against the private one, so a
    /// damaged file is refused instead of producing a node nobody can verify.
    pub fn from_bytes(bytes: &[u8]) -> Result<NodeKeys, KeyError> {
        if bytes.len() != NODE_KEYS_LEN {
            return Err(KeyError::Length(bytes.len()));
        }
        let mut noise_private = [0u8; 32];
        let mut noise_public = [0u8; 32];
        let mut seed = [0u8; 32];
        noise_private.copy_from_slice(&bytes[..32]);
        noise_public.copy_from_slice(&bytes[32..64]);
        seed.copy_from_slice(&bytes[64..]);
        let keys = NodeKeys {
            noise_private,
            noise_public,
            signing: SigningKey::from_bytes(&seed),
        };
        if !super::noise::public_key_matches(&keys.noise_private, &keys.noise_public) {
            return Err(KeyError::Mismatch);
        }
        Ok(keys)
    }

    pub fn to_bytes(&self) -> [u8; NODE_KEYS_LEN] {
        let mut out = [0u8; NODE_KEYS_LEN];
        out[..32].copy_from_slice(&self.noise_private);
        out[32..64].copy_from_slice(&self.noise_public);
        out[64..].copy_from_slice(&self.signing.to_bytes());
        out
    }

    pub fn public(&self) -> PeerKeys {
        PeerKeys {
            noise: self.noise_public,
            signing: self.signing.verifying_key().to_bytes(),
        }
    }

    pub(crate) fn noise_private(&self) -> &[u8; 32] {
        &self.noise_private
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKeys({})", self.public().fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sign() {
        let keys = NodeKeys::generate().unwrap();
        let again = NodeKeys::from_bytes(&keys.to_bytes()).unwrap();
        assert_eq!(keys.public(), again.public());
        let sig = keys.sign(b"hello");
        assert!(keys.public().verify(b"hello", &sig));
        assert!(!keys.public().verify(b"hellO", &sig));
        let other = NodeKeys::generate().unwrap();
        assert!(!other.public().verify(b"hello", &sig));
        assert!(!format!("{keys:?}").contains(&format!("{:?}", keys.noise_private)));
    }

    #[test]
    fn a_copy_statement_is_not_a_move_and_a_move_is_not_a_copy() {
        let (old, new) = (NodeKeys::generate().unwrap(), NodeKeys::generate().unwrap());
        let copy = IdentityStatement::sign_copy(&old, &new.public());
        let change = copy.verify(&new.public()).expect("a valid copy statement");
        assert_eq!(change.kind, ChangeKind::Copied);
        assert_eq!(change.old_id, old.public().node_id());
        assert_eq!(change.new_id, new.public().node_id());
        assert!(change.old_id_derived);
        // Not about another node's keys.
        let other = NodeKeys::generate().unwrap();
        assert!(copy.verify(&other.public()).is_none());
        // The same signature read as a move (or a move read as a copy) does not hold.
        let as_move = IdentityStatement {
            copy: false,
            ..copy.clone()
        };
        assert!(as_move.verify(&new.public()).is_none());
        let moved = IdentityStatement::sign(&old.public().node_id(), &old, &new.public());
        assert_eq!(moved.verify(&new.public()).unwrap().kind, ChangeKind::Moved);
        let as_copy = IdentityStatement {
            copy: true,
            ..moved
        };
        assert!(as_copy.verify(&new.public()).is_none());
        // A copy of an id its keys do not derive (a random-era id) is not accepted.
        let random: NodeId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let odd = IdentityStatement::sign_kind(ChangeKind::Copied, &random, &old, &new.public());
        assert!(odd.verify(&new.public()).is_none());
        // The wire form of a move is unchanged (no `copy` field).
        let json =
            serde_json::to_string(&IdentityStatement::sign(&random, &old, &new.public())).unwrap();
        assert!(!json.contains("copy"), "{json}");
    }

    #[test]
    fn remembered_keys_check_as_freshly_decompressed_ones() {
        let keys = NodeKeys::generate().unwrap();
        let public = keys.public();
        let sig = keys.sign(b"hello");
        // The first check decompresses and remembers the key, the next ones reuse it:
        // each must still tell a good signature from a bad one.
        for _ in 0..3 {
            assert!(public.verify(b"hello", &sig));
            assert!(!public.verify(b"hellO", &sig));
        }
        // Bytes that are no curve point are refused every time, and never remembered.
        let not_a_point = (2u8..=255)
            .map(|b| [b; 32])
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("about half of all encodings are no point");
        let broken = PeerKeys {
            noise: public.noise,
            signing: not_a_point,
        };
        for _ in 0..2 {
            assert!(!broken.verify(b"hello", &sig));
        }
        assert!(!VERIFYING_KEYS.lock().unwrap().contains_key(&not_a_point));
        // Past the bound the memory starts over, and checks go on.
        for _ in 0..=VERIFYING_KEYS_MAX {
            let k = NodeKeys::generate().unwrap().public();
            assert!(verifying_key(&k.signing).is_some());
        }
        assert!(VERIFYING_KEYS.lock().unwrap().len() <= VERIFYING_KEYS_MAX);
        assert!(public.verify(b"hello", &sig));
    }

    #[test]
    fn node_ids_are_derived_from_both_public_keys() {
        let keys = NodeKeys::generate().unwrap().public();
        let id = keys.node_id();
        assert_eq!(id, keys.node_id(), "the derivation is deterministic");
        let mut other = keys;
        other.noise[0] ^= 1;
        assert_ne!(other.node_id(), id);
        let mut other = keys;
        other.signing[31] ^= 1;
        assert_ne!(other.node_id(), id);
        // Pinned vector: changing the derivation changes every node's id.
        let fixed = PeerKeys {
            noise: [1; 32],
            signing: [2; 32],
        };
        assert_eq!(fixed.node_id().as_str(), "0Z1BR3HB2JXE79ZVB0M6EHMWTG");
    }

    #[test]
    fn identity_statements_hold_for_their_new_keys_only() {
        let old = NodeKeys::generate().unwrap();
        let new = NodeKeys::generate().unwrap();
        // A new identity: the old derived id vouches for the new keys.
        let old_id = old.public().node_id();
        let statement = IdentityStatement::sign(&old_id, &old, &new.public());
        let change = statement.verify(&new.public()).unwrap();
        assert_eq!(change.old_id, old_id);
        assert_eq!(change.new_id, new.public().node_id());
        assert!(change.old_id_derived);
        assert_eq!(change.old_keys, old.public());
        // Not for anyone else's keys, and not once altered.
        assert_eq!(statement.verify(&old.public()), None);
        let mut forged = statement.clone();
        forged.old_id = NodeKeys::generate().unwrap().public().node_id().to_string();
        assert_eq!(forged.verify(&new.public()), None);
        // An upgrade from a random id: same keys, an id they do not derive.
        let random: NodeId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let upgrade = IdentityStatement::sign(&random, &new, &new.public());
        let change = upgrade.verify(&new.public()).unwrap();
        assert_eq!(change.old_id, random);
        assert!(!change.old_id_derived);
        // Someone else cannot sign one for an id it does not hold the keys of... it can
        // sign, but the statement names its own old keys, which must vouch for the old
        // id (derive it, or be pinned for it): see `manager::identity_changes`.
        let squat = IdentityStatement::sign(&old_id, &new, &new.public());
        assert!(!squat.verify(&new.public()).unwrap().old_id_derived);
    }

    #[test]
    fn damaged_key_files_are_refused() {
        let keys = NodeKeys::generate().unwrap();
        let mut bytes = keys.to_bytes();
        assert_eq!(
            NodeKeys::from_bytes(&bytes[..95]).unwrap_err(),
            KeyError::Length(95)
        );
        bytes[40] ^= 1;
        assert_eq!(
            NodeKeys::from_bytes(&bytes).unwrap_err(),
            KeyError::Mismatch
        );
    }
}
