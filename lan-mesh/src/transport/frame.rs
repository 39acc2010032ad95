//! Link frames: what travels inside a link's encrypted session. One tag byte, then the
//! frame's bytes (docs/PROTOCOL.md, "Link frames").

use serde::{Deserialize, Serialize};

use crate::files::wire::FileFrame;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The responder accepted the handshake (its first frame; the initiator treats the
    /// link as up only after it, because only it proves the responder knows the secret).
    Ready,
    /// A signed envelope (body ‖ signature), see `envelope`.
    Envelope(Vec<u8>),
    /// The envelope was stored (or was a duplicate): stop resending it.
    Ack(Ack),
    /// The envelope will never be accepted (unknown kind, invalid): stop resending it.
    Reject(Reject),
    /// The sender closes the link, saying why (blocked, duplicate link, key mismatch).
    Close(Close),
    /// File transfer (tags 6 to 11): requests, answers and content, see
    /// `crate::files::wire` and docs/PROTOCOL.md, "File transfer".
    File(FileFrame),
}

/// Which of a link's three outgoing queues a frame waits in. The link's writer always
/// drains `Control` first, then `Bulk`, then `Files`: an answer never waits behind
/// queued envelopes, and an envelope never waits behind queued file content (at most
/// behind the one chunk being written). Local only: nothing on the wire says which
/// lane a frame took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Small frames that steer the link or another node's outbox: acks, rejects, close.
    Control,
    /// Envelopes: the data, as many as the peer keeps up with. Also the small
    /// file-transfer requests and answers (want, have, none, cancel): they steer
    /// content, so they go ahead of it, and they are few (bounded by the windows).
    Bulk,
    /// File content (chunks, manifest pages): sent only when nothing else waits.
    Files,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub envelope_id: String,
    /// `applied`, `duplicate`, `expired` or `stale`: for the sender's log only.
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    pub envelope_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Close {
    pub reason: String,
}

const TAG_READY: u8 = 1;
const TAG_ENVELOPE: u8 = 2;
const TAG_ACK: u8 = 3;
const TAG_REJECT: u8 = 4;
const TAG_CLOSE: u8 = 5;
/// Reasons are for logs: bounded so a peer cannot make us store novels.
const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
}

fn json<T: Serialize>(tag: u8, value: &T) -> Vec<u8> {
    let mut out = vec![tag];
    // Serialising these plain structs cannot fail; an empty body would be refused by
    // the peer, which is the safe outcome anyway.
    out.extend(serde_json::to_vec(value).unwrap_or_default());
    out
}

fn bounded(reason: &str) -> String {
    reason.chars().take(MAX_REASON_CHARS).collect()
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Ready => vec![TAG_READY],
            Frame::Envelope(bytes) => {
                let mut out = Vec::with_capacity(bytes.len() + 1);
                out.push(TAG_ENVELOPE);
                out.extend_from_slice(bytes);
                out
            }
            Frame::Ack(ack) => json(TAG_ACK, ack),
            Frame::Reject(r) => json(
                TAG_REJECT,
                &Reject {
                    envelope_id: r.envelope_id.clone(),
                    reason: bounded(&r.reason),
                },
            ),
            Frame::Close(c) => json(
                TAG_CLOSE,
                &Close {
                    reason: bounded(&c.reason),
                },
            ),
            Frame::File(f) => f.encode(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let (tag, body) = bytes.split_first().ok_or(FrameError::Empty)?;
        Ok(match *tag {
            TAG_READY if body.is_empty() => Frame::Ready,
            TAG_READY => return Err(FrameError::Malformed("ready")),
            TAG_ENVELOPE => Frame::Envelope(body.to_vec()),
            TAG_ACK => {
                Frame::Ack(serde_json::from_slice(body).map_err(|_| FrameError::Malformed("ack"))?)
            }
            TAG_REJECT => {
                let r: Reject =
                    serde_json::from_slice(body).map_err(|_| FrameError::Malformed("reject"))?;
                Frame::Reject(Reject {
                    envelope_id: r.envelope_id,
                    reason: bounded(&r.reason),
                })
            }
            TAG_CLOSE => {
                let c: Close =
                    serde_json::from_slice(body).map_err(|_| FrameError::Malformed("close"))?;
                Frame::Close(Close {
                    reason: bounded(&c.reason),
                })
            }
            tag if FileFrame::is_tag(tag) => Frame::File(FileFrame::decode(tag, body)?),
            other => return Err(FrameError::UnknownType(other)),
        })
    }

    pub fn lane(&self) -> Lane {
        match self {
            Frame::Envelope(_) => Lane::Bulk,
            Frame::File(f) if f.is_content() => Lane::Files,
            Frame::File(_) => Lane::Bulk,
            Frame::Ready | Frame::Ack(_) | Frame::Reject(_) | Frame::Close(_) => Lane::Control,
        }
    }

    pub fn close(reason: &str) -> Frame {
        Frame::Close(Close {
            reason: reason.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Ready,
            Frame::Envelope(vec![1, 2, 3]),
            Frame::Ack(Ack {
                envelope_id: "01H".into(),
                outcome: "applied".into(),
            }),
            Frame::Reject(Reject {
                envelope_id: "01H".into(),
                reason: "unknown kind".into(),
            }),
            Frame::close("blocked"),
        ];
        for f in frames {
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
    }

    #[test]
    fn bad_frames_are_errors_and_reasons_are_bounded() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[99]), Err(FrameError::UnknownType(99)));
        assert_eq!(
            Frame::decode(&[TAG_ACK, b'{']),
            Err(FrameError::Malformed("ack"))
        );
        let long = Frame::close(&"x".repeat(5000)).encode();
        match Frame::decode(&long).unwrap() {
            Frame::Close(c) => assert_eq!(c.reason.len(), MAX_REASON_CHARS),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Frame::decode(&bytes);
        }
    }
}
