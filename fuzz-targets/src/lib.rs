//! The fuzz harness bodies (docs/SECURITY.md, "Fuzzing"): one `pub fn <target>(data:
//! &[u8])` per target, each feeding the bytes to the real decoder, verifier or merge
//! and asserting what must hold for *any* input — a value or a typed error, never a
//! panic, and where the format allows it a round trip (what decodes re-encodes to
//! something that decodes equal) or an algebraic law (the group-state merge).
//!
//! A failed assertion here **is** a finding: the bodies panic on purpose when an
//! invariant breaks, which is what libFuzzer (the `fuzz/` crate, nightly, run by
//! `scripts/fuzz.sh`) reports as a crash. On stable the same bodies run under
//! `proptest` (`tests/properties.rs`) with random bytes and with mutations of the
//! valid inputs [`seeds`] builds with the real encoders — the same inputs
//! `fuzz/corpus/` starts from.
//!
//! Inputs that need a secret the fuzzer cannot guess (a signature, the link PSK) are
//! completed by the harness: the first byte of such targets picks a *mode*, e.g. "sign
//! the rest as the link's peer", so the fuzzer reaches the decoder behind the check
//! instead of only its rejection of garbage.

pub mod api_bodies;
pub mod cidr;
pub mod discovery;
pub mod envelope;
pub mod files;
pub mod frame;
pub mod group_merge;
pub mod handshake;
pub mod seeds;
pub mod settings;
pub mod sync;

/// A fuzz target: its name (as in `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/`) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: [Target; 10] = [
    ("discovery_packet", discovery::discovery_packet),
    ("link_frame", frame::link_frame),
    ("noise_handshake", handshake::noise_handshake),
    ("envelope", envelope::envelope),
    ("sync_payload", sync::sync_payload),
    ("group_merge", group_merge::group_merge),
    ("settings_json", settings::settings_json),
    ("cidr", cidr::cidr),
    ("api_bodies", api_bodies::api_bodies),
    ("file_message", files::file_message),
];

/// Reads a fuzz input as a stream of small choices; past its end every choice is 0,
/// so any input (even an empty one) describes a complete value.
pub(crate) struct Choices<'a> {
    bytes: &'a [u8],
}

impl<'a> Choices<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Choices { bytes }
    }

    pub(crate) fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((b, rest)) => {
                self.bytes = rest;
                *b
            }
            None => 0,
        }
    }

    /// A number below `n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }
}

/// The link protocol as `lan_mesh::transport::noise` speaks it; the handshake target
/// dials with it directly, to put what it likes in the messages. Should the two drift
/// apart, the valid seeds stop linking and the property tests fail.
pub(crate) const NOISE_PROTOCOL: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";
pub(crate) const NOISE_PROLOGUE: &[u8] = b"lanchat link v2";

/// How many fixed nodes the harnesses use (0: the peer / dialler, 1: this node).
const NODES: u8 = 2;

/// Node `n`'s keys (`n` < 2), the same in every run (a crash reproduces from its input
/// alone): the X25519 private key and the Ed25519 seed are fixed bytes. Made once.
pub fn node_keys(n: u8) -> &'static lan_mesh::transport::NodeKeys {
    static KEYS: std::sync::OnceLock<Vec<lan_mesh::transport::NodeKeys>> =
        std::sync::OnceLock::new();
    let all = KEYS.get_or_init(|| (0..NODES).map(make_node_keys).collect());
    match all.get(usize::from(n)) {
        Some(keys) => keys,
        None => panic!("node {n}: the harnesses have {NODES} nodes"),
    }
}

/// Node `n`'s id, the one its keys derive. Made once.
pub fn node_id(n: u8) -> &'static api_types::NodeId {
    static IDS: std::sync::OnceLock<Vec<api_types::NodeId>> = std::sync::OnceLock::new();
    let all = IDS.get_or_init(|| {
        (0..NODES)
            .map(|n| node_keys(n).public().node_id())
            .collect()
    });
    match all.get(usize::from(n)) {
        Some(id) => id,
        None => panic!("node {n}: the harnesses have {NODES} nodes"),
    }
}

fn make_node_keys(n: u8) -> lan_mesh::transport::NodeKeys {
    let private = noise_private(n);
    let mut bytes = [0u8; lan_mesh::transport::NODE_KEYS_LEN];
    bytes[..32].copy_from_slice(&private);
    bytes[32..64].copy_from_slice(&x25519_public(&private));
    bytes[64..].copy_from_slice(&[n.wrapping_add(100); 32]);
    match lan_mesh::transport::NodeKeys::from_bytes(&bytes) {
        Ok(keys) => keys,
        Err(e) => panic!("fixed node keys: {e}"),
    }
}

/// Node `n`'s X25519 private key.
pub(crate) fn noise_private(n: u8) -> [u8; 32] {
    [n.wrapping_add(1); 32]
}

fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let params: snow::params::NoiseParams = match NOISE_PROTOCOL.parse() {
        Ok(p) => p,
        Err(e) => panic!("the Noise protocol name: {e}"),
    };
    let Some(mut dh) = DefaultResolver.resolve_dh(&params.dh) else {
        panic!("no X25519 in snow's default resolver");
    };
    dh.set(private);
    let mut out = [0u8; 32];
    out.copy_from_slice(dh.pubkey());
    out
}
