//! The Noise layer of a link, without I/O: `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s`.
//!
//! ```text
//!   initiator (dialler)                          responder (listener)
//!   -> e                                          (msg 1, no payload)
//!   <- e, ee, s, es      + Hello(responder)       (msg 2)
//!   -> s, se, psk        + Hello(initiator)       (msg 3: proves the secret)
//!   <- transport frame `Ready` (nonce 0)          (proves the secret the other way)
//! ```
//!
//! The PSK is derived from the shared secret (an empty secret gives a fixed, public PSK:
//! the link is still encrypted with forward secrecy, the peer is trusted on first use).
//! The secret never travels. Each side's static key is its long-lived [`NodeKeys`]
//! Noise key; the `Hello` payload names its node id and Ed25519 envelope key, and is
//! authenticated by that static key.
//!
//! After the handshake, messages carry an explicit 64-bit nonce (snow's stateless
//! transport) checked against a sliding replay window: a frame lost, repeated or
//! reordered below the link (as the fault proxy does in tests) costs that frame only,
//! never the link; the outbox resends what was not acked.

use std::sync::{Arc, LazyLock};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use snow::params::NoiseParams;
use snow::resolvers::CryptoResolver;

use super::identity::{NodeKeys, PeerKeys};
use super::replay_window::ReplayWindow;

#[allow(clippy::expect_used)]
pub(crate) static NOISE_PARAMS: LazyLock<NoiseParams> = LazyLock::new(|| {
    "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s"
        .parse()
        .expect("a valid Noise protocol name")
});

/// Bound into the handshake hash: a link of another protocol or version cannot be
/// mistaken for this one.
const PROLOGUE: &[u8] = b"lanchat link v1";
/// Domain label of the PSK (discovery derives its HMAC key with another label).
const PSK_LABEL: &[u8] = b"lanchat link psk v1";
/// Noise's own limit for one message.
pub const MAX_NOISE_MESSAGE: usize = 65_535;
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 8;
/// Plaintext per sealed message: Noise's limit less the tag and our chunk flag byte.
const MAX_CHUNK: usize = MAX_NOISE_MESSAGE - TAG_LEN - 1;
/// Largest reassembled frame (a 64 KiB message body with its JSON envelope fits twice).
pub const MAX_FRAME_BYTES: usize = 256 * 1024;
/// Largest handshake payload (`Hello`); anything bigger is not a lanchat node.
const MAX_HELLO_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoiseError {
    /// Typically a different shared secret (the PSK does not match), or garbage.
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("handshake message out of order")]
    OutOfOrder,
    #[error("bad hello: {0}")]
    Hello(&'static str),
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

pub(crate) fn link_psk(secret: &str) -> [u8; 32] {
    #[allow(clippy::expect_used)]
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(PSK_LABEL);
    mac.finalize().into_bytes().into()
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
    /// Link protocol version; this build speaks 1.
    pub v: u8,
    pub node_id: String,
    /// Hex Ed25519 public key that signs this node's envelopes.
    pub signing_key: String,
}

impl Hello {
    pub fn new(node_id: &str, keys: &PeerKeys) -> Self {
        Hello {
            v: 1,
            node_id: node_id.to_string(),
            signing_key: hex(&keys.signing),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Hello, NoiseError> {
        if bytes.len() > MAX_HELLO_BYTES {
            return Err(NoiseError::Hello("too large"));
        }
        let hello: Hello =
            serde_json::from_slice(bytes).map_err(|_| NoiseError::Hello("not a hello"))?;
        if hello.v != 1 {
            return Err(NoiseError::Hello("unsupported link version"));
        }
        Ok(hello)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
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

/// One side of a handshake in progress.
pub struct Handshake {
    state: snow::HandshakeState,
    hello: Vec<u8>,
    remote: Option<Hello>,
}

impl Handshake {
    fn build(
        keys: &NodeKeys,
        secret: &str,
        node_id: &str,
        initiator: bool,
    ) -> Result<Self, NoiseError> {
        let psk = link_psk(secret);
        let builder = snow::Builder::new(NOISE_PARAMS.clone())
            .prologue(PROLOGUE)
            .and_then(|b| b.local_private_key(keys.noise_private()))
            .and_then(|b| b.psk(3, &psk))
            .map_err(snow_err)?;
        let state = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(snow_err)?;
        let hello = serde_json::to_vec(&Hello::new(node_id, &keys.public()))
            .map_err(|_| NoiseError::Hello("cannot encode"))?;
        Ok(Handshake {
            state,
            hello,
            remote: None,
        })
    }

    pub fn initiator(keys: &NodeKeys, secret: &str, node_id: &str) -> Result<Self, NoiseError> {
        Handshake::build(keys, secret, node_id, true)
    }

    pub fn responder(keys: &NodeKeys, secret: &str, node_id: &str) -> Result<Self, NoiseError> {
        Handshake::build(keys, secret, node_id, false)
    }

    /// The next handshake message to send (message 1 and 3 for the initiator, 2 for
    /// the responder); our `Hello` rides on the first message that encrypts.
    pub fn write(&mut self) -> Result<Vec<u8>, NoiseError> {
        if !self.state.is_my_turn() || self.state.is_handshake_finished() {
            return Err(NoiseError::OutOfOrder);
        }
        // Message 1 (the initiator's, before it has heard the responder) carries no
        // payload: it is neither encrypted nor authenticated.
        let first = self.state.is_initiator() && self.remote.is_none();
        let payload: &[u8] = if first { &[] } else { &self.hello };
        let mut out = vec![0u8; MAX_NOISE_MESSAGE];
        let n = self
            .state
            .write_message(payload, &mut out)
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
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        let n = self
            .state
            .read_message(message, &mut payload)
            .map_err(snow_err)?;
        if n > 0 {
            self.remote = Some(Hello::decode(&payload[..n])?);
        }
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.state.is_handshake_finished()
    }

    /// The secure session and the proven peer, once all three messages have passed.
    pub fn finish(self) -> Result<(Session, RemoteIdentity), NoiseError> {
        if !self.state.is_handshake_finished() {
            return Err(NoiseError::OutOfOrder);
        }
        let hello = self.remote.ok_or(NoiseError::Hello("missing"))?;
        let noise: [u8; 32] = self
            .state
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or(NoiseError::Hello("no static key"))?;
        let signing = unhex32(&hello.signing_key).ok_or(NoiseError::Hello("bad signing key"))?;
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
            RemoteIdentity {
                hello,
                keys: PeerKeys { noise, signing },
            },
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

    fn handshake(secret_a: &str, secret_b: &str) -> Result<(Side, Side), NoiseError> {
        let (ka, kb) = (NodeKeys::generate().unwrap(), NodeKeys::generate().unwrap());
        let mut a = Handshake::initiator(&ka, secret_a, "A").unwrap();
        let mut b = Handshake::responder(&kb, secret_b, "B").unwrap();
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
        assert_eq!(ra.hello.node_id, "B");
        assert_eq!(rb.hello.node_id, "A");
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
        // Empty on both sides: an open LAN, still encrypted.
        assert!(handshake("", "").is_ok());
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
    fn garbage_handshake_messages_are_errors() {
        let kb = NodeKeys::generate().unwrap();
        let mut b = Handshake::responder(&kb, "s", "B").unwrap();
        assert!(b.read(&[1, 2, 3]).is_err());
        let mut b = Handshake::responder(&kb, "s", "B").unwrap();
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
