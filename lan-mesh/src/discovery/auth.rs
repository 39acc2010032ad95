//! The discovery plane's authentication key: HMAC-SHA256 over the exact bytes that travel.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of the HMAC-SHA256 tag that closes a signed packet.
pub const TAG_LEN: usize = 32;

/// Domain label mixed into the key, so the same shared secret used by the transport
/// handshake (which derives its own key with another label) never yields a tag that is
/// valid in both places.
const KEY_LABEL: &[u8] = b"lanchat discovery v1";

/// A key derived from the admin's shared secret; the secret itself is not kept.
#[derive(Clone)]
pub struct DiscoveryKey([u8; 32]);

impl DiscoveryKey {
    /// `None` for an empty secret: an open LAN, where packets carry no tag.
    pub fn from_secret(secret: &str) -> Option<Self> {
        if secret.is_empty() {
            return None;
        }
        // HKDF-Extract in spirit: HMAC keyed by the secret over a fixed label gives a
        // uniform 32-byte key whatever the secret's length or alphabet.
        let mut mac = new_mac(secret.as_bytes());
        mac.update(KEY_LABEL);
        Some(DiscoveryKey(mac.finalize().into_bytes().into()))
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
    fn empty_secret_means_no_key() {
        assert!(DiscoveryKey::from_secret("").is_none());
    }

    #[test]
    fn tags_verify_only_with_the_same_secret() {
        let a = DiscoveryKey::from_secret("office").unwrap();
        let b = DiscoveryKey::from_secret("office2").unwrap();
        let tag = a.tag(b"payload");
        assert!(a.verify(b"payload", &tag));
        assert!(!b.verify(b"payload", &tag));
        assert!(!a.verify(b"payloaD", &tag));
        assert!(!a.verify(b"payload", &tag[..31]));
    }
}
