//! The Noise layer of a link, without I/O: `Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s`.
//!
//! ```text
//!   initiator (dialler)                          responder (listener)
//!   -> psk, e                                     (msg 1, empty payload, sealed)
//!   <- e, ee, s, es      + Hello(responder)       (msg 2)
//!   -> s, se             + Hello(initiator)       (msg 3)
//!   <- transport frame `Ready` (nonce 0)
//! ```
//!
//! The PSK is mixed in first (`psk0`), so every message is encrypted under keys that
//! need the shared secret: a dialler without it fails message 1 at the listener (which
//! answers nothing) and could not decrypt message 2 anyway, so it never learns the
//! listener's static key or `Hello` — its identity. (`XXpsk3`, before, sent the
//! listener's identity to anyone who dialled.) The PSK comes from the secret through
//! one Argon2id derivation ([`crate::secret::SharedSecret`]); an empty secret gives a
//! fixed, public PSK: the link is still encrypted with forward secrecy. The secret
//! never travels. Each side's static key is its long-lived [`NodeKeys`] Noise key; the
//! `Hello` payload names its node id and Ed25519 envelope key, and is authenticated by
//! that static key.
//!
//! Self-certifying identity (docs/PROTOCOL.md, "Node ids"): the Noise handshake proves
//! the static key; the `Hello` binds the Ed25519 key to it with a signature over the
//! handshake hash as it stood before the message that carries the `Hello` (so it cannot
//! be replayed into another handshake) and over the static key; and the id the `Hello`
//! claims must be the one both keys derive ([`PeerKeys::node_id`]). A peer failing any
//! of the three is refused ([`NoiseError::Identity`]), whatever any store remembers.
//!
//! After the handshake, messages carry an explicit 64-bit nonce (snow's stateless
//! transport) checked against a sliding replay window: a frame lost, repeated or
//! reordered below the link (as the fault proxy does in tests) costs that frame only,
//! never the link; the outbox resends what was not acked.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use snow::params::NoiseParams;
use snow::resolvers::CryptoResolver;

use super::identity::{IdentityChange, IdentityStatement, NodeKeys, PeerKeys};
use super::replay_window::ReplayWindow;
use crate::secret::SharedSecret;

#[allow(clippy::expect_used)]
pub(crate) static NOISE_PARAMS: LazyLock<NoiseParams> = LazyLock::new(|| {
    "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s"
        .parse()
        .expect("a valid Noise protocol name")
});

/// Bound into the handshake hash: a link of another protocol or version cannot be
/// mistaken for this one (v2: XXpsk0 with the Argon2id-derived PSK).
const PROLOGUE: &[u8] = b"lanchat link v2";
/// Noise's own limit for one message.
pub const MAX_NOISE_MESSAGE: usize = 65_535;
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 8;
/// Plaintext per sealed message: Noise's limit less the tag and our chunk flag byte.
const MAX_CHUNK: usize = MAX_NOISE_MESSAGE - TAG_LEN - 1;
/// Largest reassembled frame (a 64 KiB message body with its JSON envelope fits twice).
pub const MAX_FRAME_BYTES: usize = 256 * 1024;
/// Largest handshake payload (`Hello`); anything bigger is not a lanchat node. Room for
/// the `Hello` and [`MAX_PREVIOUS_IDS`] identity statements (~330 bytes each).
const MAX_HELLO_BYTES: usize = 2048;
/// Earlier ids a `Hello` announces, newest first.
pub const MAX_PREVIOUS_IDS: usize = 4;
/// The link protocol version of the `Hello`: 2 adds the key binding and derived ids.
pub const HELLO_VERSION: u8 = 2;
/// Domain label of the `Hello`'s binding signature (signed nowhere else).
const BINDING_DOMAIN: &[u8] = b"lanchat/link-binding/v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoiseError {
    /// Typically a different shared secret (the PSK does not match: message 1 fails at
    /// the listener, message 2 at the dialler), or garbage.
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("handshake message out of order")]
    OutOfOrder,
    #[error("bad hello: {0}")]
    Hello(&'static str),
    /// The peer's keys do not prove the id it claims: its Ed25519 key is not bound to
    /// its Noise key by a valid signature, or the two do not derive the claimed id.
    #[error("identity refused: {0}")]
    Identity(&'static str),
    #[error("cannot decrypt a frame (forged, corrupt or replayed)")]
    Decrypt,
    #[error("frame too large")]
    TooLarge,
    #[error("nonce space exhausted")]
    Exhausted,
}

fn snow_err(e: snow::Error) -> NoiseError {
    NoiseError::Handshake(e.to_string())
}

/// True if `public` is the X25519 public key of `private`.
pub(crate) fn public_key_matches(private: &[u8; 32], public: &[u8; 32]) -> bool {
    let Some(mut dh) = snow::resolvers::DefaultResolver.resolve_dh(&NOISE_PARAMS.dh) else {
        return false;
    };
    dh.set(private);
    dh.pubkey() == public
}

/// What each side says about itself inside the handshake (encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Link protocol version; this build speaks [`HELLO_VERSION`].
    pub v: u8,
    pub node_id: String,
    /// Hex Ed25519 public key that signs this node's envelopes.
    pub signing_key: String,
    /// Hex Ed25519 signature by `signing_key` over [`binding_message`]: the envelope key
    /// belongs to whoever holds the Noise static key, in this very handshake.
    pub binding: String,
    /// Set by a dialler that only checks who answers at an address (twin detection):
    /// the listener answers with a `Close` instead of `Ready` and makes no link.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
    /// This node's earlier ids, each "now this one", signed by the key that held it
    /// (docs/PROTOCOL.md, "Identity changes"), newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<IdentityStatement>,
}

/// What a `Hello`'s binding signs: the domain label, the handshake hash before the
/// message that carries the `Hello`, and the sender's Noise static key.
fn binding_message(handshake_hash: &[u8], noise_static: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BINDING_DOMAIN.len() + handshake_hash.len() + 32);
    out.extend_from_slice(BINDING_DOMAIN);
    out.extend_from_slice(handshake_hash);
    out.extend_from_slice(noise_static);
    out
}

impl Hello {
    /// This node's `Hello` for a handshake whose hash is `handshake_hash` right before
    /// the message that will carry it.
    pub fn new(node_id: &str, keys: &NodeKeys, handshake_hash: &[u8], probe: bool) -> Self {
        let public = keys.public();
        let binding = keys.sign(&binding_message(handshake_hash, &public.noise));
        Hello {
            v: HELLO_VERSION,
            node_id: node_id.to_string(),
            signing_key: hex(&public.signing),
            binding: hex(&binding),
            probe,
            previous: Vec::new(),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Hello, NoiseError> {
        if bytes.len() > MAX_HELLO_BYTES {
            return Err(NoiseError::Hello("too large"));
        }
        let hello: Hello =
            serde_json::from_slice(bytes).map_err(|_| NoiseError::Hello("not a hello"))?;
        if hello.v != HELLO_VERSION {
            return Err(NoiseError::Hello("unsupported link version"));
        }
        Ok(hello)
    }

    /// The proven keys, once the Noise static key `noise` is known to be the sender's:
    /// checks the binding signature and that the keys derive the claimed id.
    fn verify(&self, noise: [u8; 32], handshake_hash: &[u8]) -> Result<PeerKeys, NoiseError> {
        let signing = unhex32(&self.signing_key).ok_or(NoiseError::Hello("bad signing key"))?;
        let binding = unhex64(&self.binding).ok_or(NoiseError::Hello("bad binding"))?;
        let keys = PeerKeys { noise, signing };
        if !keys.verify(&binding_message(handshake_hash, &noise), &binding) {
            return Err(NoiseError::Identity(
                "the signing key is not bound to the link key",
            ));
        }
        if keys.node_id().as_str() != self.node_id {
            return Err(NoiseError::Identity(
                "the node id is not the one its keys derive",
            ));
        }
        Ok(keys)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex32(text: &str) -> Option<[u8; 32]> {
    unhex::<32>(text)
}

pub(crate) fn unhex64(text: &str) -> Option<[u8; 64]> {
    unhex::<64>(text)
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// The peer as the finished handshake proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteIdentity {
    pub hello: Hello,
    pub keys: PeerKeys,
}

impl RemoteIdentity {
    /// The earlier ids it announced whose statements hold for its proven keys (the
    /// caller still checks that the old keys vouch for each old id).
    pub fn identity_changes(&self) -> Vec<IdentityChange> {
        self.hello
            .previous
            .iter()
            .take(MAX_PREVIOUS_IDS)
            .filter_map(|s| s.verify(&self.keys))
            .collect()
    }
}

/// One side of a handshake in progress.
pub struct Handshake {
    state: snow::HandshakeState,
    keys: NodeKeys,
    node_id: String,
    probe: bool,
    previous: Vec<IdentityStatement>,
    remote: Option<RemoteIdentity>,
}

impl Handshake {
    fn build(
        keys: &NodeKeys,
        secret: &SharedSecret,
        node_id: &str,
        initiator: bool,
    ) -> Result<Self, NoiseError> {
        let psk = secret.link_psk();
        let builder = snow::Builder::new(NOISE_PARAMS.clone())
            .prologue(PROLOGUE)
            .and_then(|b| b.local_private_key(keys.noise_private()))
            .and_then(|b| b.psk(0, &psk))
            .map_err(snow_err)?;
        let state = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(snow_err)?;
        Ok(Handshake {
            state,
            keys: keys.clone(),
            node_id: node_id.to_string(),
            probe: false,
            previous: Vec::new(),
            remote: None,
        })
    }

    /// Announces this node's earlier ids in its `Hello` (at most [`MAX_PREVIOUS_IDS`]).
    pub fn with_previous(mut self, previous: &[IdentityStatement]) -> Self {
        self.previous = previous.iter().take(MAX_PREVIOUS_IDS).cloned().collect();
        self
    }

    pub fn initiator(
        keys: &NodeKeys,
        secret: &SharedSecret,
        node_id: &str,
    ) -> Result<Self, NoiseError> {
        Handshake::build(keys, secret, node_id, true)
    }

    /// An initiator that only checks who answers (its `Hello` says `probe`).
    pub fn prober(
        keys: &NodeKeys,
        secret: &SharedSecret,
        node_id: &str,
    ) -> Result<Self, NoiseError> {
        let mut hs = Handshake::build(keys, secret, node_id, true)?;
        hs.probe = true;
        Ok(hs)
    }

    pub fn responder(
        keys: &NodeKeys,
        secret: &SharedSecret,
        node_id: &str,
    ) -> Result<Self, NoiseError> {
        Handshake::build(keys, secret, node_id, false)
    }

    /// The next handshake message to send (message 1 and 3 for the initiator, 2 for
    /// the responder); our `Hello` rides on the first message that encrypts.
    pub fn write(&mut self) -> Result<Vec<u8>, NoiseError> {
        if !self.state.is_my_turn() || self.state.is_handshake_finished() {
            return Err(NoiseError::OutOfOrder);
        }
        // Message 1 (the initiator's, before it has heard the responder) carries an
        // empty payload, sealed under the PSK: it proves the secret, nothing else.
        let first = self.state.is_initiator() && self.remote.is_none();
        let payload = if first {
            Vec::new()
        } else {
            let mut hello = Hello::new(
                &self.node_id,
                &self.keys,
                self.state.get_handshake_hash(),
                self.probe,
            );
            hello.previous.clone_from(&self.previous);
            serde_json::to_vec(&hello).map_err(|_| NoiseError::Hello("cannot encode"))?
        };
        let mut out = vec![0u8; MAX_NOISE_MESSAGE];
        let n = self
            .state
            .write_message(&payload, &mut out)
            .map_err(snow_err)?;
        out.truncate(n);
        Ok(out)
    }

    pub fn read(&mut self, message: &[u8]) -> Result<(), NoiseError> {
        if self.state.is_my_turn() || self.state.is_handshake_finished() {
            return Err(NoiseError::OutOfOrder);
        }
        if message.len() > MAX_NOISE_MESSAGE {
            return Err(NoiseError::TooLarge);
        }
        // What the sender's binding signed: the hash before this message.
        let before = self.state.get_handshake_hash().to_vec();
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        let n = self
            .state
            .read_message(message, &mut payload)
            .map_err(snow_err)?;
        if n > 0 {
            let hello = Hello::decode(&payload[..n])?;
            // The message carrying a `Hello` (2 or 3) also carries the sender's static
            // key, so it is known and proven here.
            let noise: [u8; 32] = self
                .state
                .get_remote_static()
                .and_then(|k| k.try_into().ok())
                .ok_or(NoiseError::Hello("no static key"))?;
            let keys = hello.verify(noise, &before)?;
            self.remote = Some(RemoteIdentity { hello, keys });
        }
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.state.is_handshake_finished()
    }

    /// The peer as proven so far: the listener once the dialler read message 2, the
    /// dialler once the listener read message 3. `None` before (and forever, for a
    /// dialler without the secret).
    pub fn remote(&self) -> Option<&RemoteIdentity> {
        self.remote.as_ref()
    }

    /// The secure session and the proven peer, once all three messages have passed.
    pub fn finish(self) -> Result<(Session, RemoteIdentity), NoiseError> {
        if !self.state.is_handshake_finished() {
            return Err(NoiseError::OutOfOrder);
        }
        let remote = self.remote.ok_or(NoiseError::Hello("missing"))?;
        let transport = self
            .state
            .into_stateless_transport_mode()
            .map_err(snow_err)?;
        let transport = Arc::new(transport);
        Ok((
            Session {
                sealer: Sealer {
                    transport: Arc::clone(&transport),
                    next_nonce: 0,
                },
                opener: Opener {
                    transport,
                    window: ReplayWindow::default(),
                    partial: None,
                },
            },
            remote,
        ))
    }
}

/// The encrypted session of a link: seals outgoing frames, opens incoming ones.
pub struct Session {
    sealer: Sealer,
    opener: Opener,
}

impl Session {
    /// Seals one frame into one or more wire messages (`nonce ‖ ciphertext`).
    pub fn seal(&mut self, frame: &[u8]) -> Result<Vec<Vec<u8>>, NoiseError> {
        self.sealer.seal(frame)
    }

    /// Opens one wire message; see [`Opener::open`].
    pub fn open(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, NoiseError> {
        self.opener.open(message)
    }

    /// The sending and the receiving half, for a link whose writer and reader are
    /// separate tasks. The two directions share no mutable state (each has its own
    /// cipher key and nonces; snow's stateless transport only reads its keys).
    pub fn split(self) -> (Sealer, Opener) {
        (self.sealer, self.opener)
    }
}

/// The sending half of a [`Session`].
pub struct Sealer {
    transport: Arc<snow::StatelessTransportState>,
    next_nonce: u64,
}

/// The receiving half of a [`Session`].
pub struct Opener {
    transport: Arc<snow::StatelessTransportState>,
    window: ReplayWindow,
    /// A frame split over several messages, being put together: (last nonce, bytes).
    partial: Option<(u64, Vec<u8>)>,
}

impl Sealer {
    /// Seals one frame into one or more wire messages (`nonce ‖ ciphertext`).
    pub fn seal(&mut self, frame: &[u8]) -> Result<Vec<Vec<u8>>, NoiseError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(NoiseError::TooLarge);
        }
        let mut out = Vec::with_capacity(frame.len() / MAX_CHUNK + 1);
        let mut chunks = frame.chunks(MAX_CHUNK).peekable();
        if frame.is_empty() {
            out.push(self.seal_chunk(&[], false)?);
        }
        while let Some(chunk) = chunks.next() {
            out.push(self.seal_chunk(chunk, chunks.peek().is_some())?);
        }
        Ok(out)
    }

    fn seal_chunk(&mut self, chunk: &[u8], more: bool) -> Result<Vec<u8>, NoiseError> {
        let nonce = self.next_nonce;
        self.next_nonce = nonce.checked_add(1).ok_or(NoiseError::Exhausted)?;
        let mut plain = Vec::with_capacity(chunk.len() + 1);
        plain.push(u8::from(more));
        plain.extend_from_slice(chunk);
        let mut out = vec![0u8; NONCE_LEN + plain.len() + TAG_LEN];
        out[..NONCE_LEN].copy_from_slice(&nonce.to_be_bytes());
        let n = self
            .transport
            .write_message(nonce, &plain, &mut out[NONCE_LEN..])
            .map_err(|_| NoiseError::TooLarge)?;
        out.truncate(NONCE_LEN + n);
        Ok(out)
    }
}

impl Opener {
    /// Opens one wire message. `Ok(Some(frame))` when a frame is complete, `Ok(None)`
    /// while a split frame waits for its next part. A forged, corrupt or replayed
    /// message is an error for that message only; the caller counts it and goes on.
    pub fn open(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, NoiseError> {
        if message.len() < NONCE_LEN + TAG_LEN + 1 || message.len() > NONCE_LEN + MAX_NOISE_MESSAGE
        {
            return Err(NoiseError::Decrypt);
        }
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(&message[..NONCE_LEN]);
        let nonce = u64::from_be_bytes(nonce_bytes);
        if !self.window.may_accept(nonce) {
            return Err(NoiseError::Decrypt);
        }
        let mut plain = vec![0u8; message.len()];
        let n = self
            .transport
            .read_message(nonce, &message[NONCE_LEN..], &mut plain)
            .map_err(|_| NoiseError::Decrypt)?;
        // Only an authentic message moves the window.
        self.window.accept(nonce);
        let (flag, chunk) = plain[..n].split_first().ok_or(NoiseError::Decrypt)?;
        let more = *flag == 1;
        // A part must follow its predecessor directly; anything else drops the partial
        // frame (its sender resends the whole envelope).
        let mut buffer = match self.partial.take() {
            Some((last, buffer)) if last.checked_add(1) == Some(nonce) => buffer,
            _ => Vec::new(),
        };
        if buffer.len() + chunk.len() > MAX_FRAME_BYTES {
            return Err(NoiseError::TooLarge);
        }
        buffer.extend_from_slice(chunk);
        if more {
            self.partial = Some((nonce, buffer));
            Ok(None)
        } else {
            Ok(Some(buffer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Side = (Session, RemoteIdentity);

    fn secret(text: &str) -> SharedSecret {
        crate::secret::derived_for_tests(text)
    }

    fn id(keys: &NodeKeys) -> String {
        keys.public().node_id().to_string()
    }

    fn handshake(secret_a: &str, secret_b: &str) -> Result<(Side, Side), NoiseError> {
        let (ka, kb) = (NodeKeys::generate().unwrap(), NodeKeys::generate().unwrap());
        let a = Handshake::initiator(&ka, &secret(secret_a), &id(&ka)).unwrap();
        let b = Handshake::responder(&kb, &secret(secret_b), &id(&kb)).unwrap();
        run(a, b, &ka, &kb)
    }

    fn run(
        mut a: Handshake,
        mut b: Handshake,
        ka: &NodeKeys,
        kb: &NodeKeys,
    ) -> Result<(Side, Side), NoiseError> {
        b.read(&a.write()?)?;
        a.read(&b.write()?)?;
        b.read(&a.write()?)?;
        assert!(a.is_finished() && b.is_finished());
        let (sa, ra) = a.finish()?;
        let (sb, rb) = b.finish()?;
        assert_eq!(ra.keys, kb.public());
        assert_eq!(rb.keys, ka.public());
        Ok(((sa, ra), (sb, rb)))
    }

    #[test]
    fn same_secret_links_and_frames_flow_both_ways() {
        let ((mut a, ra), (mut b, rb)) = handshake("office", "office").unwrap();
        assert_eq!(ra.hello.node_id, ra.keys.node_id().as_str());
        assert_eq!(rb.hello.node_id, rb.keys.node_id().as_str());
        assert_ne!(ra.hello.node_id, rb.hello.node_id);
        for msg in a.seal(b"hello B").unwrap() {
            assert_eq!(b.open(&msg).unwrap().unwrap(), b"hello B");
        }
        let big = vec![7u8; 150_000];
        let parts = b.seal(&big).unwrap();
        assert_eq!(parts.len(), 3);
        let mut got = None;
        for part in parts {
            got = a.open(&part).unwrap();
        }
        assert_eq!(got.unwrap(), big);
    }

    #[test]
    fn different_secrets_fail_the_handshake() {
        assert!(handshake("office", "other").is_err());
        assert!(handshake("office", "").is_err());
        assert!(handshake("", "office").is_err());
        // Empty on both sides: an open LAN, still encrypted.
        assert!(handshake("", "").is_ok());
    }

    /// XXpsk0: a dialler without the secret learns nothing about the listener. The
    /// listener refuses its message 1 (so never sends message 2), and even a message 2
    /// the listener wrote for someone else does not open without the secret.
    #[test]
    fn without_the_secret_the_listener_stays_anonymous() {
        let (kx, kb) = (NodeKeys::generate().unwrap(), NodeKeys::generate().unwrap());
        let listener =
            |keys: &NodeKeys| Handshake::responder(keys, &secret("office"), &id(keys)).unwrap();
        // An outsider dials with a guess: message 1 fails at the listener.
        let mut outsider = Handshake::initiator(&kx, &secret("guess"), &id(&kx)).unwrap();
        let mut b = listener(&kb);
        assert!(matches!(
            b.read(&outsider.write().unwrap()),
            Err(NoiseError::Handshake(_))
        ));
        assert!(b.remote.is_none() && b.state.get_remote_static().is_none());
        // The outsider records a message 2 the listener sent a colleague, and tries it
        // as the answer to its own message 1 (or replays the colleague's message 1):
        // both fail, and it holds no static key and no `Hello`.
        let ka = NodeKeys::generate().unwrap();
        let mut colleague = Handshake::initiator(&ka, &secret("office"), &id(&ka)).unwrap();
        let mut b = listener(&kb);
        let m1 = colleague.write().unwrap();
        b.read(&m1).unwrap();
        let m2 = b.write().unwrap();
        let mut outsider = Handshake::initiator(&kx, &secret("guess"), &id(&kx)).unwrap();
        outsider.write().unwrap();
        assert!(matches!(outsider.read(&m2), Err(NoiseError::Handshake(_))));
        assert!(outsider.remote.is_none() && outsider.state.get_remote_static().is_none());
        // The listener's static key does not appear in clear in message 2.
        let public = kb.public().noise;
        assert!(!m2.windows(32).any(|w| w == public));
        // The colleague with the secret reads the same message 2 and learns who it is.
        colleague.read(&m2).unwrap();
        assert_eq!(colleague.remote.as_ref().unwrap().keys, kb.public());
    }

    /// The open LAN's PSK is public: anyone can link (still only under the id its own
    /// keys derive), which is why the UI and status warn while it is on.
    #[test]
    fn the_open_lan_links_anyone_with_the_public_psk() {
        let open = SharedSecret::open_lan();
        let (ka, kb) = (NodeKeys::generate().unwrap(), NodeKeys::generate().unwrap());
        let a = Handshake::initiator(&ka, &open, &id(&ka)).unwrap();
        let b = Handshake::responder(&kb, &open, &id(&kb)).unwrap();
        assert!(run(a, b, &ka, &kb).is_ok());
    }

    #[test]
    fn replayed_forged_and_reordered_messages() {
        let ((mut a, _), (mut b, _)) = handshake("s", "s").unwrap();
        let m1 = a.seal(b"one").unwrap().remove(0);
        let m2 = a.seal(b"two").unwrap().remove(0);
        // Reordered: both still open, once each.
        assert_eq!(b.open(&m2).unwrap().unwrap(), b"two");
        assert_eq!(b.open(&m1).unwrap().unwrap(), b"one");
        assert_eq!(b.open(&m1), Err(NoiseError::Decrypt));
        let mut forged = a.seal(b"three").unwrap().remove(0);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(b.open(&forged), Err(NoiseError::Decrypt));
        assert_eq!(b.open(&[0u8; 5]), Err(NoiseError::Decrypt));
        // A forged message did not consume its nonce: the genuine one still opens.
        forged[last] ^= 1;
        assert_eq!(b.open(&forged).unwrap().unwrap(), b"three");
    }

    #[test]
    fn a_split_frame_with_a_lost_part_is_dropped_not_misassembled() {
        let ((mut a, _), (mut b, _)) = handshake("s", "s").unwrap();
        let big = vec![1u8; 100_000];
        let parts = a.seal(&big).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            b.open(&parts[1]).unwrap().unwrap(),
            vec![1u8; 100_000 - MAX_CHUNK]
        );
        // The first part alone waits; the next frame drops it.
        assert_eq!(b.open(&parts[0]).unwrap(), None);
        let next = a.seal(b"next").unwrap().remove(0);
        assert_eq!(b.open(&next).unwrap().unwrap(), b"next");
    }

    #[test]
    fn a_claimed_id_the_keys_do_not_derive_is_refused_both_ways() {
        let (ka, kb, kc) = (
            NodeKeys::generate().unwrap(),
            NodeKeys::generate().unwrap(),
            NodeKeys::generate().unwrap(),
        );
        // The initiator claims C's id with its own keys: the responder refuses it.
        let a = Handshake::initiator(&ka, &secret("s"), &id(&kc)).unwrap();
        let b = Handshake::responder(&kb, &secret("s"), &id(&kb)).unwrap();
        assert_eq!(
            run(a, b, &ka, &kb).err(),
            Some(NoiseError::Identity(
                "the node id is not the one its keys derive"
            ))
        );
        // The responder claims C's id: the initiator refuses it before answering.
        let a = Handshake::initiator(&ka, &secret("s"), &id(&ka)).unwrap();
        let b = Handshake::responder(&kb, &secret("s"), &id(&kc)).unwrap();
        assert!(matches!(run(a, b, &ka, &kb), Err(NoiseError::Identity(_))));
        // An id that is not even a ULID is refused the same way.
        let a = Handshake::initiator(&ka, &secret("s"), "A").unwrap();
        let b = Handshake::responder(&kb, &secret("s"), &id(&kb)).unwrap();
        assert!(matches!(run(a, b, &ka, &kb), Err(NoiseError::Identity(_))));
    }

    #[test]
    fn a_signing_key_not_bound_to_the_link_key_is_refused() {
        let (ka, kb, kc) = (
            NodeKeys::generate().unwrap(),
            NodeKeys::generate().unwrap(),
            NodeKeys::generate().unwrap(),
        );
        // A holds its own Noise key but presents C's signing key (signing with C's key
        // as if C's Noise key were its own): the binding does not cover A's link key.
        let mut a = Handshake::initiator(&ka, &secret("s"), &id(&kc)).unwrap();
        a.keys = kc.clone();
        let b = Handshake::responder(&kb, &secret("s"), &id(&kb)).unwrap();
        assert_eq!(
            run(a, b, &ka, &kb).err(),
            Some(NoiseError::Identity(
                "the signing key is not bound to the link key"
            ))
        );
    }

    #[test]
    fn earlier_ids_ride_in_the_hello_and_only_valid_statements_come_out() {
        let (ka, kb) = (NodeKeys::generate().unwrap(), NodeKeys::generate().unwrap());
        let random: api_types::NodeId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let good = IdentityStatement::sign(&random, &ka, &ka.public());
        // Signed for B's keys: not a statement about A.
        let stray = IdentityStatement::sign(&random, &kb, &kb.public());
        let a = Handshake::initiator(&ka, &secret("s"), &id(&ka))
            .unwrap()
            .with_previous(&[good, stray]);
        let b = Handshake::responder(&kb, &secret("s"), &id(&kb)).unwrap();
        let (_, (_, seen_by_b)) = run(a, b, &ka, &kb).unwrap();
        let changes = seen_by_b.identity_changes();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].old_id, random);
        assert_eq!(changes[0].new_id.as_str(), id(&ka));
        assert!(!changes[0].old_id_derived);
    }

    #[test]
    fn a_binding_is_valid_for_its_own_handshake_only() {
        let k = NodeKeys::generate().unwrap();
        let hello = Hello::new(&id(&k), &k, b"handshake one", false);
        assert_eq!(
            hello.verify(k.public().noise, b"handshake one"),
            Ok(k.public())
        );
        assert!(matches!(
            hello.verify(k.public().noise, b"handshake two"),
            Err(NoiseError::Identity(_))
        ));
        // Version 1 hellos (random ids, nothing bound) are not spoken any more.
        let old = br#"{"v":1,"node_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","signing_key":"00"}"#;
        assert_eq!(Hello::decode(old), Err(NoiseError::Hello("not a hello")));
    }

    #[test]
    fn garbage_handshake_messages_are_errors() {
        let kb = NodeKeys::generate().unwrap();
        let mut b = Handshake::responder(&kb, &secret("s"), "B").unwrap();
        assert!(b.read(&[1, 2, 3]).is_err());
        let mut b = Handshake::responder(&kb, &secret("s"), "B").unwrap();
        assert_eq!(b.write().unwrap_err(), NoiseError::OutOfOrder);
    }

    #[test]
    fn public_keys_are_checked_against_private_ones() {
        let k = NodeKeys::generate().unwrap();
        let bytes = k.to_bytes();
        let mut private = [0u8; 32];
        private.copy_from_slice(&bytes[..32]);
        assert!(public_key_matches(&private, &k.public().noise));
        assert!(!public_key_matches(&private, &[0u8; 32]));
    }
}
