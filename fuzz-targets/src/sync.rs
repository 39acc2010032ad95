//! `sync_payload`: the group catch-up messages a member may send — `group.sync`
//! (range summaries, wants) and `group.relay` (messages passed on) — through their
//! strict decoders in `lan_mesh::envelope`.

use lan_mesh::envelope::RangeSummary;
use lan_mesh::envelope::{
    RelayMessage, RelayPayload, RelayedPayload, SyncMessage, SyncPayload, MAX_RELAY_MESSAGES,
    MAX_SYNC_RANGES, MAX_SYNC_ROUNDS, MAX_SYNC_WANT, SYNC_LEAF,
};

/// First byte even: the rest is a `group.sync` payload; odd: a `group.relay` one.
pub fn sync_payload(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(payload) = serde_json::from_slice::<SyncPayload>(rest) {
            if let Ok(message) = payload.decode() {
                check_sync(&message);
            }
        }
    } else if let Ok(payload) = serde_json::from_slice::<RelayPayload>(rest) {
        if let Ok(message) = payload.decode() {
            check_relay(&message);
        }
    }
}

/// A decoded `group.sync` keeps the limits and its ranges ascending and disjoint, and
/// encoding it gives a payload that decodes to the same message.
pub(crate) fn check_sync(message: &SyncMessage) {
    assert!(message.round <= MAX_SYNC_ROUNDS);
    assert!(!message.ranges.is_empty() || !message.want.is_empty());
    assert!(message.ranges.len() <= MAX_SYNC_RANGES);
    assert!(message.want.len() <= MAX_SYNC_WANT);
    for pair in message.ranges.windows(2) {
        let (a, b) = (&pair[0].range, &pair[1].range);
        assert!(
            a.hi.is_some_and(|hi| hi <= b.lo),
            "ranges overlap: {a:?} {b:?}"
        );
    }
    for r in &message.ranges {
        assert!(r.range.hi.is_none_or(|hi| r.range.lo < hi));
        if let RangeSummary::Ids(ids) = &r.summary {
            assert!(ids.len() <= SYNC_LEAF);
        }
    }
    let payload = message.to_payload();
    match payload.decode() {
        Ok(again) => assert_eq!(&again, message),
        Err(e) => panic!("an encoded group.sync does not decode: {e}"),
    }
    let json = match serde_json::to_vec(&payload) {
        Ok(json) => json,
        Err(e) => panic!("a group.sync serialises: {e}"),
    };
    match serde_json::from_slice::<SyncPayload>(&json) {
        Ok(read) => assert_eq!(read, payload),
        Err(e) => panic!("a serialised group.sync does not parse: {e}"),
    }
}

/// A decoded `group.relay` is not empty, keeps the limit, and re-encodes to a payload
/// that decodes to the same messages.
pub(crate) fn check_relay(message: &RelayMessage) {
    assert!(!message.messages.is_empty());
    assert!(message.messages.len() <= MAX_RELAY_MESSAGES);
    let payload = RelayPayload {
        global_group_id: message.group.to_string(),
        messages: message
            .messages
            .iter()
            .map(RelayedPayload::from_message)
            .collect(),
    };
    match payload.decode() {
        Ok(again) => assert_eq!(&again, message),
        Err(e) => panic!("an encoded group.relay does not decode: {e}"),
    }
}
