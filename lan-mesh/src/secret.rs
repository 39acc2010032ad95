//! The LAN's shared secret, turned into keys once (docs/PROTOCOL.md, "The shared
//! secret").
//!
//! An administrator's secret is a password: people choose, type and read it aloud, so
//! it may be guessable. Everything the mesh keys with it goes through one **Argon2id**
//! derivation (memory-hard: a guess costs an attacker [`KDF_MEMORY_KIB`] of memory and
//! [`KDF_PASSES`] passes over it), run when the settings change — never per packet or
//! per handshake — and off the async runtime ([`SharedSecret::derive_off_runtime`]).
//! Its output is split with HMAC-SHA256 under two labels into the discovery plane's
//! HMAC key and the links' Noise PSK, so neither can stand in for the other.
//!
//! Every node must derive the same keys from the same secret, so the salt is a fixed,
//! versioned domain string ([`KDF_SALT`]), not random: it separates lanchat's keys from
//! any other use of the same words, and a change of parameters is a new protocol
//! version.
//!
//! The empty secret is the explicit **open LAN** mode: no KDF (nothing to protect), no
//! discovery tag, and a fixed, public PSK, so links are still encrypted with forward
//! secrecy and ids still proven.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::discovery::DiscoveryKey;

/// Argon2id memory: 19 MiB (in KiB), with [`KDF_PASSES`] = 2 and one lane — OWASP's
/// recommended Argon2id setting. Measured (docs/PROTOCOL.md, "The shared secret"):
/// ~35 ms on a current server core, so a few hundred milliseconds at most on a slow
/// office PC; and 128 test nodes starting together on two cores spend ~2 s on it in all.
pub const KDF_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes over the memory.
pub const KDF_PASSES: u32 = 2;
/// Argon2id lanes: one, so the cost is the same on a single-core machine.
pub const KDF_LANES: u32 = 1;
/// The fixed salt: a versioned domain string (every node derives the same keys).
pub const KDF_SALT: &[u8] = b"lanchat/lan-secret/argon2id/v2";
/// Label of the discovery plane's HMAC key, taken from the KDF's output.
const DISCOVERY_LABEL: &[u8] = b"lanchat discovery v2";
/// Label of the links' Noise PSK, taken from the KDF's output.
const PSK_LABEL: &[u8] = b"lanchat link psk v2";
/// The open LAN's PSK: HMAC-SHA256 keyed by nothing over this label (public).
const OPEN_PSK_LABEL: &[u8] = b"lanchat open lan psk v2";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdfError {
    /// The parameters or the input were refused by Argon2 (a bug, or a secret longer
    /// than Argon2 accepts).
    #[error("cannot derive keys from the shared secret: {0}")]
    Argon2(String),
    /// The blocking task running the derivation panicked or was cancelled.
    #[error("the key derivation task stopped unexpectedly")]
    Task,
}

/// The keys a LAN's shared secret gives (or the open LAN's). The secret itself is not
/// kept. `Debug` shows only whether a secret is set, so configs can be logged; two
/// values are equal when their keys are (the same secret).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret {
    /// `None`: the open LAN.
    keys: Option<Arc<Derived>>,
}

#[derive(PartialEq, Eq)]
struct Derived {
    discovery: [u8; 32],
    psk: [u8; 32],
}

impl Default for SharedSecret {
    fn default() -> Self {
        SharedSecret::open_lan()
    }
}

impl SharedSecret {
    /// The open LAN: no secret, no discovery tag, the public PSK.
    pub fn open_lan() -> Self {
        SharedSecret { keys: None }
    }

    /// Derives the keys of `secret` (the empty secret is the open LAN, at no cost).
    /// **Blocking**: one Argon2id run, tens to hundreds of milliseconds and
    /// [`KDF_MEMORY_KIB`] of memory. From async code use [`Self::derive_off_runtime`].
    pub fn derive(secret: &str) -> Result<Self, KdfError> {
        if secret.is_empty() {
            return Ok(SharedSecret::open_lan());
        }
        let master = master_key(secret.as_bytes())?;
        Ok(SharedSecret {
            keys: Some(Arc::new(Derived {
                discovery: label_key(&master, DISCOVERY_LABEL),
                psk: label_key(&master, PSK_LABEL),
            })),
        })
    }

    /// [`Self::derive`] on tokio's blocking pool, so the runtime's workers keep
    /// serving packets, links and the API meanwhile.
    pub async fn derive_off_runtime(secret: String) -> Result<Self, KdfError> {
        tokio::task::spawn_blocking(move || SharedSecret::derive(&secret))
            .await
            .map_err(|_| KdfError::Task)?
    }

    /// True for the open LAN (no secret).
    pub fn is_open(&self) -> bool {
        self.keys.is_none()
    }

    /// The discovery plane's tag key; `None` on an open LAN (packets carry no tag).
    pub fn discovery_key(&self) -> Option<DiscoveryKey> {
        self.keys
            .as_ref()
            .map(|k| DiscoveryKey::from_bytes(k.discovery))
    }

    /// The Noise PSK of every link handshake.
    pub fn link_psk(&self) -> [u8; 32] {
        match &self.keys {
            Some(k) => k.psk,
            None => label_key(b"", OPEN_PSK_LABEL),
        }
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_open() {
            "SharedSecret(open LAN)"
        } else {
            "SharedSecret(..)"
        })
    }
}

/// The one Argon2id run: 32 bytes from the secret's UTF-8 bytes and the fixed salt.
fn master_key(secret: &[u8]) -> Result<[u8; 32], KdfError> {
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(KDF_MEMORY_KIB, KDF_PASSES, KDF_LANES, Some(32))
        .map_err(|e| KdfError::Argon2(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(secret, KDF_SALT, &mut out)
        .map_err(|e| KdfError::Argon2(e.to_string()))?;
    Ok(out)
}

/// HMAC-SHA256(key, label): one independent key per use of the master key.
fn label_key(key: &[u8], label: &[u8]) -> [u8; 32] {
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// Crockford's base32 alphabet: no I, L, O or U, so a secret reads aloud and types
/// back without "is that a one or an L?".
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// A generated secret: this many groups of [`GENERATED_GROUP_LEN`] characters.
pub const GENERATED_GROUPS: usize = 4;
pub const GENERATED_GROUP_LEN: usize = 5;

/// A new strong secret for the settings tab's "Generate": four groups of five
/// Crockford base32 characters joined by `-` (100 random bits from the thread's CSPRNG),
/// e.g. `PK3RT-9WQ2M-HX7VD-C4N8F` — easy to read aloud, type or paste.
pub fn generate() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let groups: Vec<String> = (0..GENERATED_GROUPS)
        .map(|_| {
            (0..GENERATED_GROUP_LEN)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect()
        })
        .collect();
    groups.join("-")
}

/// Remembers the last derivation, so a settings change that keeps the secret (a new
/// display name, a port) costs no KDF run. Keeps only a hash of the secret it was for.
#[derive(Default)]
pub struct SecretCache {
    last: Option<([u8; 32], SharedSecret)>,
}

impl SecretCache {
    /// The keys of `secret`: from the cache when it is the last one asked for, else
    /// derived off the runtime.
    pub async fn keys(&mut self, secret: &str) -> Result<SharedSecret, KdfError> {
        let fingerprint: [u8; 32] = Sha256::new()
            .chain_update(b"lanchat/secret-cache\0")
            .chain_update(secret.as_bytes())
            .finalize()
            .into();
        if let Some((seen, keys)) = &self.last {
            if *seen == fingerprint {
                return Ok(keys.clone());
            }
        }
        let keys = SharedSecret::derive_off_runtime(secret.to_string()).await?;
        self.last = Some((fingerprint, keys.clone()));
        Ok(keys)
    }

    /// Whether a derivation is cached; for tests.
    pub fn is_warm(&self) -> bool {
        self.last.is_some()
    }
}

/// The keys of `secret`, derived once per test binary (a real derivation, cached as a
/// node caches it), for tests that link or sign many times.
#[cfg(any(test, feature = "testing"))]
pub fn derived_for_tests(secret: &str) -> SharedSecret {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static DERIVED: LazyLock<Mutex<HashMap<String, SharedSecret>>> =
        LazyLock::new(Default::default);
    let mut derived = DERIVED.lock().unwrap_or_else(|e| e.into_inner());
    #[allow(clippy::expect_used)]
    derived
        .entry(secret.to_string())
        .or_insert_with(|| SharedSecret::derive(secret).expect("the KDF runs"))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Pinned: a change of parameters, salt or labels changes every key, which is a
    /// protocol change (bump the versions in docs/PROTOCOL.md, "The shared secret").
    /// The master key was checked against the reference implementation (Debian's
    /// `argon2` CLI): `printf 'correct horse battery staple' | argon2
    /// 'lanchat/lan-secret/argon2id/v2' -id -t 2 -k 19456 -p 1 -l 32 -r`; the labelled
    /// keys against Python's `hmac`.
    #[test]
    fn the_derivation_is_pinned() {
        let s = SharedSecret::derive("correct horse battery staple").unwrap();
        let master = master_key(b"correct horse battery staple").unwrap();
        assert_eq!(hex(&master), PINNED_MASTER);
        assert_eq!(hex(&s.link_psk()), PINNED_PSK);
        assert_eq!(hex(&label_key(&master, DISCOVERY_LABEL)), PINNED_DISCOVERY);
    }

    const PINNED_MASTER: &str = "734c6fbd769145bf417b359ccb1bdb060609ec8704fe79ed2a51d286dfd2ada8";
    const PINNED_PSK: &str = "53b4a0451f77e0989bb6cfefda1e7507ba2772db259519cd6275977e6ce8fc1e";
    const PINNED_DISCOVERY: &str =
        "2e04e9443acf8c19a69520484cf375ed6e7590801a9ba323d8361c84fccfe720";
    const PINNED_OPEN_PSK: &str =
        "0ee3a8c0ed4d80b762ce415de8bd220a59c4ac5ae425928c6451d9fbc984348c";

    #[test]
    fn the_open_lan_needs_no_kdf_and_has_a_fixed_public_psk() {
        let open = SharedSecret::derive("").unwrap();
        assert!(open.is_open() && open.discovery_key().is_none());
        assert_eq!(open, SharedSecret::open_lan());
        assert_eq!(hex(&open.link_psk()), PINNED_OPEN_PSK);
        assert_eq!(format!("{open:?}"), "SharedSecret(open LAN)");
    }

    #[test]
    fn keys_differ_per_secret_and_per_use_and_never_show() {
        let a = SharedSecret::derive("office secret one").unwrap();
        let b = SharedSecret::derive("office secret two").unwrap();
        assert_ne!(a, b);
        assert_ne!(a.link_psk(), b.link_psk());
        assert_ne!(a.link_psk(), SharedSecret::open_lan().link_psk());
        let tag = a.discovery_key().unwrap().tag(b"payload");
        assert!(!b.discovery_key().unwrap().verify(b"payload", &tag));
        // The two keys of one secret are unrelated to each other.
        assert_ne!(a.keys.as_ref().unwrap().discovery, a.link_psk());
        assert_eq!(a, SharedSecret::derive("office secret one").unwrap());
        assert_eq!(format!("{a:?}"), "SharedSecret(..)");
    }

    #[test]
    fn generated_secrets_are_four_groups_of_base32() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let s = generate();
            assert_eq!(s.len(), 23, "{s}");
            let groups: Vec<&str> = s.split('-').collect();
            assert_eq!(groups.len(), GENERATED_GROUPS);
            for g in groups {
                assert_eq!(g.len(), GENERATED_GROUP_LEN);
                assert!(g.bytes().all(|b| ALPHABET.contains(&b)), "{s}");
            }
            assert!(seen.insert(s));
        }
        // Every symbol turns up (a generator stuck on part of the alphabet would not).
        let all: std::collections::HashSet<char> = seen
            .iter()
            .flat_map(|s| s.chars())
            .filter(|c| *c != '-')
            .collect();
        assert_eq!(all.len(), 32);
    }

    #[tokio::test]
    async fn the_cache_derives_once_per_secret() {
        let mut cache = SecretCache::default();
        assert!(!cache.is_warm());
        let first = cache.keys("office secret one").await.unwrap();
        assert!(cache.is_warm());
        let t = std::time::Instant::now();
        let again = cache.keys("office secret one").await.unwrap();
        assert!(t.elapsed() < std::time::Duration::from_millis(5));
        assert_eq!(first, again);
        let other = cache.keys("office secret two").await.unwrap();
        assert_ne!(first, other);
        assert!(cache.keys("").await.unwrap().is_open());
    }
}
