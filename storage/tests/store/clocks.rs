//! Clocks that differ by minutes, hours or days (issue 13): stamps far ahead are kept as
//! their authors made them but do not drag this node's clock; envelope ages are judged
//! on the sender's clock; the time shown is on this node's clock.

use storage::{
    ConversationId, EnvelopeId, GlobalGroupId, GroupState, Hlc, InboundEffect, InboundEnvelope,
    InboundMessage, InboundOutcome, MessageId, OutgoingEnvelope, RelayedMessage, Stamp, Store,
    UnixMs, MAX_ADOPT_AHEAD_MS,
};
use ulid::Ulid;

use crate::{db_path, node, now_ms, open_with_peers};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn wall(t: UnixMs) -> u64 {
    u64::try_from(t).unwrap()
}

/// A DM from `node(from)` whose clock reads `now + skew`, as measured (`offset`).
fn dm_from_skewed(
    from: u8,
    body: &str,
    skew: i64,
    offset: Option<i64>,
) -> (InboundEnvelope, InboundEffect) {
    let now = now_ms();
    let theirs = now + skew;
    (
        InboundEnvelope {
            envelope_id: EnvelopeId::from_ulid(Ulid::from_parts(wall(theirs), rand_bits())),
            from_peer_id: node(from),
            received_at: now,
            sender_clock_offset_ms: offset,
        },
        InboundEffect::DirectMessage(InboundMessage {
            signature: None,
            message_id: MessageId::from_ulid(Ulid::from_parts(wall(theirs), rand_bits())),
            body: body.into(),
            sent_at: theirs,
            hlc: Hlc::from_wall_ms(wall(theirs)),
        }),
    )
}

fn rand_bits() -> u128 {
    Ulid::new().random()
}

async fn send_dm(store: &Store, to: u8, text: &str) -> storage::Message {
    crate::send_dm(store, node(to), text.into(), now_ms())
        .await
        .unwrap()
        .0
}

fn upsert(_: &GroupState) -> OutgoingEnvelope {
    OutgoingEnvelope {
        kind: "group.upsert".into(),
        payload: b"{}".to_vec(),
    }
}

#[tokio::test]
async fn a_message_days_ahead_keeps_its_stamp_without_dragging_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open_with_peers(&path, 2).await;
    let (envelope, effect) = dm_from_skewed(1, "three days early", 3 * DAY, Some(3 * DAY));
    let InboundEffect::DirectMessage(sent) = &effect else {
        unreachable!()
    };
    let sent = sent.clone();
    let received_at = envelope.received_at;
    assert!(matches!(
        store.apply_inbound(envelope, effect).await.unwrap(),
        InboundOutcome::Applied(_)
    ));
    let stored = store.message(sent.message_id).await.unwrap().unwrap();
    assert_eq!(stored.hlc, sent.hlc, "stored as its author stamped it");
    assert_eq!(
        stored.sent_at, sent.sent_at,
        "the author's own time is kept"
    );
    assert_eq!(stored.sender_clock_offset_ms, Some(3 * DAY));
    // Shown on this node's clock: when it was sent, not three days from now.
    assert_eq!(stored.shown_at(), received_at);

    // Elsewhere this node stamps at its own time, at most the bounded step ahead.
    let elsewhere = send_dm(&store, 2, "to someone else").await;
    assert!(
        elsewhere.hlc.wall_ms() <= wall(now_ms()) + MAX_ADOPT_AHEAD_MS,
        "the clock stayed within a step of wall time: {:?}",
        elsewhere.hlc
    );
    // In the conversation, a reply still sorts after what it answers.
    let reply = send_dm(&store, 1, "reply").await;
    assert!(reply.hlc > stored.hlc, "a reply sorts after the message");
    let history = store
        .history(
            ConversationId::dm(&node(1)),
            storage::HistoryQuery {
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    let bodies: Vec<_> = history.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["three days early", "reply"]);

    // A restart starts from the stored stamps, but no further ahead than one step.
    store.close().await.unwrap();
    let store = Store::open(&path).await.unwrap();
    let after_restart = send_dm(&store, 2, "after a restart").await;
    assert!(
        after_restart.hlc > elsewhere.hlc,
        "still after its own messages"
    );
    assert!(after_restart.hlc.wall_ms() <= wall(now_ms()) + MAX_ADOPT_AHEAD_MS);
    let second_reply = send_dm(&store, 1, "second reply").await;
    assert!(second_reply.hlc > reply.hlc, "and after its conversation");
}

#[tokio::test]
async fn envelope_ages_are_judged_on_the_senders_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 4).await;
    // Ten days behind, measured: a fresh envelope on its clock, not an expired one.
    let (envelope, effect) = dm_from_skewed(1, "ten days behind", -10 * DAY, Some(-10 * DAY));
    assert!(matches!(
        store.apply_inbound(envelope, effect).await.unwrap(),
        InboundOutcome::Applied(_)
    ));
    // Three days ahead, measured: not from the future on its own clock.
    let (envelope, effect) = dm_from_skewed(2, "three days ahead", 3 * DAY, Some(3 * DAY));
    assert!(matches!(
        store.apply_inbound(envelope, effect).await.unwrap(),
        InboundOutcome::Applied(_)
    ));
    // Not measured yet: no age rule at all rather than a guess that loses messages.
    for (skew, text) in [
        (-10 * DAY, "behind, unmeasured"),
        (3 * DAY, "ahead, unmeasured"),
    ] {
        let (envelope, effect) = dm_from_skewed(3, text, skew, None);
        assert!(
            matches!(
                store.apply_inbound(envelope, effect).await.unwrap(),
                InboundOutcome::Applied(_)
            ),
            "{text}"
        );
    }
    // Nine days old on the sender's clock (it is three days ahead, the envelope was
    // made six days ago by ours): past the retry age and the error, its sender gave up.
    let now = now_ms();
    let (mut envelope, effect) = dm_from_skewed(4, "given up", 0, Some(3 * DAY));
    envelope.envelope_id =
        EnvelopeId::from_ulid(Ulid::from_parts(wall(now - 6 * DAY), rand_bits()));
    assert_eq!(
        store.apply_inbound(envelope, effect).await.unwrap(),
        InboundOutcome::Expired
    );
}

#[tokio::test]
async fn group_edits_far_ahead_are_merged_and_a_later_local_edit_still_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let gid = GlobalGroupId::new();
    let ahead = wall(now_ms() + 3 * HOUR);
    let founded = Stamp {
        hlc: Hlc::from_wall_ms(ahead).raw(),
        editor: node(1),
    };
    let state = GroupState::create(
        gid,
        &founded,
        "Three hours early",
        "",
        &[node(0), node(1), node(2)],
    );
    let envelope = InboundEnvelope {
        envelope_id: EnvelopeId::new(),
        from_peer_id: node(1),
        received_at: now_ms(),
        sender_clock_offset_ms: Some(3 * HOUR),
    };
    let outcome = store
        .apply_inbound(envelope, InboundEffect::GroupUpsert(state))
        .await
        .unwrap();
    assert!(
        matches!(outcome, InboundOutcome::GroupUpdated { .. }),
        "{outcome:?}"
    );
    // This node (a member) leaves afterwards: its edit wins over the one it saw,
    // although that one was stamped three hours ahead of this node's clock.
    let renamed = store
        .group_action(gid, storage::GroupAction::Leave, now_ms(), upsert)
        .await
        .unwrap();
    assert!(!renamed.state.is_member(&node(0)));
    assert!(renamed.state.max_hlc() > founded.hlc);
    // And the node's clock did not follow the group three hours ahead.
    let elsewhere = send_dm(&store, 2, "elsewhere").await;
    assert!(elsewhere.hlc.wall_ms() <= wall(now_ms()) + MAX_ADOPT_AHEAD_MS);
}

#[tokio::test]
async fn relayed_messages_are_shown_on_this_nodes_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 3).await;
    let gid = GlobalGroupId::new();
    let founded = Stamp {
        hlc: Hlc::from_wall_ms(wall(now_ms())).raw(),
        editor: node(1),
    };
    let state = GroupState::create(gid, &founded, "Team", "", &[node(0), node(1), node(2)]);
    let envelope = InboundEnvelope {
        envelope_id: EnvelopeId::new(),
        from_peer_id: node(1),
        received_at: now_ms(),
        sender_clock_offset_ms: Some(0),
    };
    store
        .apply_inbound(envelope, InboundEffect::GroupUpsert(state))
        .await
        .unwrap();
    // Node 2 (five minutes behind) wrote it an hour ago; node 1 relays it now.
    let sent_at = now_ms() - HOUR - 5 * 60_000;
    let message = RelayedMessage {
        signature: None,
        message_id: MessageId::new(),
        author: node(2),
        body: "an hour ago".into(),
        sent_at,
        hlc: Hlc::from_wall_ms(wall(sent_at)),
    };
    let offsets = [(node(2), -5 * 60_000)].into_iter().collect();
    let outcome = store
        .apply_relayed(node(1), gid, vec![message.clone()], offsets, now_ms())
        .await
        .unwrap();
    assert_eq!(outcome.stored.len(), 1);
    let stored = store.message(message.message_id).await.unwrap().unwrap();
    assert_eq!(
        stored.sent_at, sent_at,
        "the author's stamp, for later relays"
    );
    assert_eq!(stored.shown_at(), sent_at + 5 * 60_000, "an hour ago here");
    let relayed = store
        .group_messages_for_relay(gid, vec![message.message_id])
        .await
        .unwrap();
    assert_eq!(
        relayed,
        vec![message],
        "relayed on exactly as the author made it"
    );
}

#[test]
fn the_time_shown_is_corrected_by_the_offset_and_never_after_arrival() {
    let at = |sent_at: UnixMs, offset: Option<i64>| {
        storage::Message {
            signature: None,
            message_id: MessageId::new(),
            conversation_id: ConversationId::dm(&node(1)),
            sender: storage::UserId::lan(&node(1)),
            body: "x".into(),
            sent_at,
            received_at: 1_000_000,
            hlc: Hlc::from_wall_ms(wall(sent_at)),
            status: storage::MessageStatus::Delivered,
            sender_clock_offset_ms: offset,
        }
        .shown_at()
    };
    // Five minutes behind, sent a minute before it arrived.
    assert_eq!(
        at(1_000_000 - 6 * 60_000, Some(-5 * 60_000)),
        1_000_000 - 60_000
    );
    // Three hours ahead: measured or not, never after its arrival.
    assert_eq!(
        at(1_000_000 + 3 * HOUR - 500, Some(3 * HOUR)),
        1_000_000 - 500
    );
    assert_eq!(at(1_000_000 + 3 * HOUR, None), 1_000_000);
    // A measured offset under a second is noise: the author's time as it is.
    assert_eq!(at(999_000, Some(-300)), 999_000);
    assert_eq!(at(999_000, None), 999_000);
}
