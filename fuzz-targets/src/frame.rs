//! `link_frame`: a decrypted link frame as a linked peer may send it, through
//! `Frame::decode`.

use lan_mesh::transport::Frame;

/// Bound of a `Reject`'s or `Close`'s reason (`frame.rs`: reasons are for logs).
const MAX_REASON_CHARS: usize = 200;

/// Decode never panics; reasons come out bounded; a decoded frame re-encodes to bytes
/// that decode to the same frame.
pub fn link_frame(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    match &frame {
        Frame::Reject(r) => assert!(r.reason.chars().count() <= MAX_REASON_CHARS),
        Frame::Close(c) => assert!(c.reason.chars().count() <= MAX_REASON_CHARS),
        Frame::Envelope(bytes) => assert_eq!(bytes.as_slice(), &data[1..]),
        // File frames are binary and strictly decoded: one encoding per frame.
        Frame::File(_) => assert_eq!(frame.encode(), data),
        Frame::Ready | Frame::Ack(_) => {}
    }
    let again = match Frame::decode(&frame.encode()) {
        Ok(again) => again,
        Err(e) => panic!("a decoded frame does not re-decode: {e} ({frame:?})"),
    };
    assert_eq!(again, frame);
}
