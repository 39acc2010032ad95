//! `discovery_packet`: a UDP datagram as any host on the LAN may send it, through
//! `Packet::decode` and the HMAC check of a tagged packet.

use lan_mesh::discovery::auth::TAG_LEN;
use lan_mesh::discovery::packet::MAX_PACKET_LEN;
use lan_mesh::discovery::{DiscoveryKey, Packet};

/// The shared secret's discovery key the harness checks tags with (seeds are tagged
/// with it, so the accepting path is in the corpus).
pub fn key() -> DiscoveryKey {
    DiscoveryKey::from_bytes([7; 32])
}

/// Decode never panics; what decodes names exactly the bytes its tag covers, and
/// re-encodes (untagged and tagged) to a packet that decodes equal, whose tag verifies.
pub fn discovery_packet(data: &[u8]) {
    let key = key();
    let Ok(decoded) = Packet::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_PACKET_LEN);
    let tag_len = decoded.tag.map_or(0, <[u8]>::len);
    assert_eq!(decoded.signed.len() + tag_len, data.len());
    assert_eq!(decoded.signed, &data[..decoded.signed.len()]);
    if let Some(tag) = decoded.tag {
        assert_eq!(tag.len(), TAG_LEN);
        // Either answer is fine; it must only not panic.
        let _ = key.verify(decoded.signed, tag);
    }
    for with_key in [None, Some(&key)] {
        let bytes = match decoded.packet.encode(with_key) {
            Ok(bytes) => bytes,
            Err(e) => panic!("a decoded packet does not re-encode: {e} ({decoded:?})"),
        };
        let again = match Packet::decode(&bytes) {
            Ok(again) => again,
            Err(e) => panic!("a re-encoded packet does not decode: {e}"),
        };
        assert_eq!(again.packet, decoded.packet);
        match (with_key, again.tag) {
            (Some(key), Some(tag)) => assert!(key.verify(again.signed, tag)),
            (None, None) => {}
            (k, t) => panic!("tag {t:?} for key {k:?}"),
        }
    }
}
