//! `noise_handshake`: what a dialler may send a listener during the Noise handshake,
//! through `lan_mesh::transport::noise::Handshake` (the responder side).
//!
//! The open LAN's PSK is public, so anyone on the LAN can reach message 3 and put any
//! `Hello` in it: the harness plays such a dialler itself with `snow`. The first byte
//! picks what the rest is:
//!
//! | mode | the rest is |
//! |---|---|
//! | 0 | message 1, raw |
//! | 1 | message 3, raw, after a real message 1 and 2 |
//! | 2 | the payload of a well-formed message 1 (which must carry none) |
//! | 3 | the payload of a well-formed message 3 (the `Hello`) |
//! | 4 | a JSON object whose fields replace those of a valid `Hello` in message 3 |

use lan_mesh::secret::SharedSecret;
use lan_mesh::transport::noise::{Handshake, Hello, MAX_NOISE_MESSAGE};
use serde_json::Value;

use crate::{node_id, node_keys, noise_private, NOISE_PROLOGUE, NOISE_PROTOCOL};

const MODES: u8 = 5;

fn id(n: u8) -> String {
    node_id(n).to_string()
}

/// The listener (node 1) on the open LAN.
fn responder() -> Handshake {
    match Handshake::responder(node_keys(1), &SharedSecret::open_lan(), &id(1)) {
        Ok(hs) => hs,
        Err(e) => panic!("a responder: {e}"),
    }
}

/// A dialler (node 0) that knows the open LAN's PSK and writes what it likes.
fn raw_initiator() -> snow::HandshakeState {
    let params: snow::params::NoiseParams = match NOISE_PROTOCOL.parse() {
        Ok(p) => p,
        Err(e) => panic!("the Noise protocol name: {e}"),
    };
    let psk = SharedSecret::open_lan().link_psk();
    let private = noise_private(0);
    let built = snow::Builder::new(params)
        .prologue(NOISE_PROLOGUE)
        .and_then(|b| b.local_private_key(&private))
        .and_then(|b| b.psk(0, &psk))
        .and_then(|b| b.build_initiator());
    match built {
        Ok(hs) => hs,
        Err(e) => panic!("a raw initiator: {e}"),
    }
}

fn write(state: &mut snow::HandshakeState, payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; MAX_NOISE_MESSAGE];
    // A payload too large for one Noise message: nothing a dialler can send.
    let n = state.write_message(payload, &mut out).ok()?;
    out.truncate(n);
    Some(out)
}

/// A handshake the responder read every message of: it must finish, and whatever the
/// `Hello` said, the peer it proves is the dialler's keys and the id they derive.
fn check_finished(resp: Handshake) {
    assert!(resp.is_finished());
    let had_hello = resp.remote().is_some();
    match resp.finish() {
        Ok((_, remote)) => {
            assert_eq!(remote.keys, node_keys(0).public());
            assert_eq!(remote.hello.node_id, remote.keys.node_id().as_str());
            // The announced earlier ids are checked against the proven keys.
            let _ = remote.identity_changes();
        }
        Err(e) => assert!(!had_hello, "a proven peer does not finish: {e}"),
    }
}

/// A valid `Hello` of node 0 for a message 3 after `hash`, with the fields of `patch`
/// (a JSON object, else nothing) put over it. `None` when the patch changes nothing.
fn patched_hello(patch: &[u8], hash: &[u8]) -> (Vec<u8>, bool) {
    let hello = Hello::new(&id(0), node_keys(0), hash, false);
    let mut value = match serde_json::to_value(&hello) {
        Ok(v) => v,
        Err(e) => panic!("a hello serialises: {e}"),
    };
    let mut patched = false;
    if let (Ok(Value::Object(fields)), Some(object)) = (
        serde_json::from_slice::<Value>(patch),
        value.as_object_mut(),
    ) {
        for (key, v) in fields {
            patched |= object.get(&key) != Some(&v);
            object.insert(key, v);
        }
    }
    match serde_json::to_vec(&value) {
        Ok(bytes) => (bytes, patched),
        Err(e) => panic!("a hello serialises: {e}"),
    }
}

/// The responder never panics, whatever it is sent; what it accepts is the dialler.
pub fn noise_handshake(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let mut resp = responder();
    match mode % MODES {
        0 => {
            if resp.read(rest).is_ok() {
                assert!(
                    resp.write().is_ok(),
                    "message 2 after an accepted message 1"
                );
            }
        }
        1 => {
            let mut init =
                match Handshake::initiator(node_keys(0), &SharedSecret::open_lan(), &id(0)) {
                    Ok(hs) => hs,
                    Err(e) => panic!("an initiator: {e}"),
                };
            let m1 = init.write().ok();
            assert!(
                m1.is_some_and(|m1| resp.read(&m1).is_ok()),
                "a real message 1"
            );
            let m2 = resp.write().ok();
            assert!(
                m2.is_some_and(|m2| init.read(&m2).is_ok()),
                "a real message 2"
            );
            if resp.read(rest).is_ok() {
                check_finished(resp);
            }
        }
        2 => {
            let mut init = raw_initiator();
            let Some(m1) = write(&mut init, rest) else {
                return;
            };
            let read = resp.read(&m1);
            // Message 1 proves the PSK and says nothing: a payload there is refused.
            assert_eq!(read.is_ok(), rest.is_empty(), "{read:?}");
        }
        mode => {
            let mut init = raw_initiator();
            let m1 = write(&mut init, &[]);
            assert!(
                m1.is_some_and(|m1| resp.read(&m1).is_ok()),
                "a raw message 1"
            );
            let m2 = resp.write().ok();
            let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
            assert!(
                m2.is_some_and(|m2| init.read_message(&m2, &mut payload).is_ok()),
                "message 2 read by the raw initiator"
            );
            let (hello, must_link) = if mode == 3 {
                (rest.to_vec(), false)
            } else {
                let (hello, patched) = patched_hello(rest, init.get_handshake_hash());
                (hello, !patched)
            };
            let Some(m3) = write(&mut init, &hello) else {
                return;
            };
            let read = resp.read(&m3);
            assert!(
                read.is_ok() || !must_link,
                "a valid hello refused: {read:?}"
            );
            if read.is_ok() {
                check_finished(resp);
            }
        }
    }
}
