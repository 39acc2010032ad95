//! The discovery plane's authentication key: HMAC-SHA256 over the exact bytes that travel.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of the HMAC-SHA256 tag that closes a signed packet.
pub const TAG_LEN: usize = 32;

/// The HMAC key, derived from the admin's shared secret (see [`crate::secret`]); the
/// secret itself is not kept.
#[derive(Clone)]
pub struct DiscoveryKey([u8; 32]);

impl DiscoveryKey {
    /// A key taken from the secret's KDF output ([`crate::secret::SharedSecret`]), or
    /// any 32 bytes in tests.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        DiscoveryKey(key)
    }

    pub fn tag(&self, signed: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = new_mac(&self.0);
        mac.update(signed);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check (through `Mac::verify_slice`), so timing reveals nothing
    /// about how many leading bytes of a forged tag were right.
    pub fn verify(&self, signed: &[u8], tag: &[u8]) -> bool {
        let mut mac = new_mac(&self.0);
        mac.update(signed);
        mac.verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for DiscoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoveryKey(..)")
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    #[allow(clippy::expect_used)]
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_verify_only_with_the_same_key() {
        let a = DiscoveryKey::from_bytes([1; 32]);
        let b = DiscoveryKey::from_bytes([2; 32]);
        let tag = a.tag(b"payload");
        assert!(a.verify(b"payload", &tag));
        assert!(!b.verify(b"payload", &tag));
        assert!(!a.verify(b"payloaD", &tag));
        assert!(!a.verify(b"payload", &tag[..31]));
    }
}
