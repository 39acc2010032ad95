//! Delivery and group catch-up driven end to end on paused time: real delivery tasks
//! on the in-memory ports and links (`crate::testing`), no sockets, no SQLite. Each
//! test asserts on the state the stores and the net end in, and on when things
//! happened on the virtual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::NodeId;
use chat_core::{
    ConversationId, EnvelopeId, GlobalGroupId, GroupState, Hlc, Message, MessageId, MessageStatus,
    Stamp, UnixMs, UserId, MAX_RETRY_AGE_MS,
};

use super::DeliveryEvent;
use crate::discovery::PeerEvent;
use crate::envelope::{
    DmPayload, Envelope, GroupStateWire, KIND_DM_SEND, KIND_GROUP_SEND, KIND_GROUP_UPSERT,
};
use crate::ports::SendAttempt;
use crate::testing::{
    node_id, run_for, until, Engine, MemoryNet, OutboxStatus, ScriptedPeer, TestClock, Verdict,
    START_MS,
};
use crate::transport::Frame;

const SECOND: Duration = Duration::from_secs(1);

fn setup() -> (MemoryNet, TestClock) {
    (MemoryNet::new(), TestClock::starting_at(START_MS))
}

/// The acks `from` wrote to `to`: (envelope id, outcome), in order.
fn acks(net: &MemoryNet, from: &NodeId, to: &NodeId) -> Vec<(String, String)> {
    net.sent_between(from, to)
        .into_iter()
        .filter_map(|s| match s.frame {
            Frame::Ack(ack) => Some((ack.envelope_id, ack.outcome)),
            _ => None,
        })
        .collect()
}

/// The envelopes `from` wrote to `to`, opened (sender and receiver checked) as `to` would.
fn envelopes(net: &MemoryNet, from: &NodeId, to: &NodeId) -> Vec<Envelope> {
    net.sent_between(from, to)
        .into_iter()
        .filter_map(|s| match s.frame {
            Frame::Envelope(bytes) => Some(Envelope::open(&bytes, from, to).expect("open")),
            _ => None,
        })
        .collect()
}

/// Brings a link up and lets both sides take it in (a link that comes up makes the
/// peer's backlog due: sending in the same instant would send twice).
async fn link(net: &MemoryNet, a: &NodeId, b: &NodeId) {
    assert!(net.link(a, b), "link {a} – {b}");
    run_for(Duration::from_millis(10)).await;
}

fn ms_since_start(clock_ms: UnixMs) -> i64 {
    clock_ms - START_MS
}

/// A DM envelope as `from`'s node would send it.
/// The author's signature of a message, with the test keys of `author`.
fn sign_message(
    author: &NodeId,
    scope: chat_core::MessageScope<'_>,
    id: &MessageId,
    sent_at: UnixMs,
    hlc: Hlc,
    text: &str,
) -> chat_core::MessageSignature {
    let keys = crate::testing::keys_of(author).expect("a test node");
    let statement = chat_core::message_statement(scope, id, author, sent_at, hlc, text);
    chat_core::MessageSignature {
        sig: keys.sign(&statement),
        keys: crate::envelope::author_keys(&keys.public()),
    }
}

fn dm_envelope(from: &NodeId, to: &NodeId, n: u128, message_id: MessageId, text: &str) -> Envelope {
    let hlc = Hlc::from_wall_ms(START_MS as u64);
    let signed = sign_message(
        from,
        chat_core::MessageScope::Direct { to },
        &message_id,
        START_MS,
        hlc,
        text,
    );
    let payload = DmPayload {
        message_id: message_id.to_string(),
        text: text.into(),
        sent_at: START_MS,
        hlc: hlc.raw(),
        sig: chat_core::signing::hex(&signed.sig),
    };
    Envelope {
        envelope_id: EnvelopeId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, n)),
        kind: KIND_DM_SEND.into(),
        from_peer_id: from.clone(),
        to_peer_id: to.clone(),
        ts: START_MS,
        payload: serde_json::to_value(payload).expect("payload"),
    }
}

/// A group message `author` wrote, as its node stores it.
/// A group message `author` wrote (signed), as its node stores it.
fn group_message(author: &NodeId, group: GlobalGroupId, n: u128, text: &str) -> Message {
    let at = START_MS + i64::try_from(n).expect("small");
    let message_id = MessageId::from_ulid(ulid::Ulid::from_parts(at as u64, n));
    let hlc = Hlc::from_wall_ms(at as u64);
    Message {
        message_id,
        conversation_id: ConversationId::group(&group),
        sender: UserId::lan(author),
        body: text.into(),
        sent_at: at,
        received_at: at,
        hlc,
        status: MessageStatus::Pending,
        sender_clock_offset_ms: None,
        signature: Some(sign_message(
            author,
            chat_core::MessageScope::Group(&group),
            &message_id,
            at,
            hlc,
            text,
        )),
    }
}

fn upsert_envelope(from: &NodeId, to: &NodeId, state: &GroupState, n: u128) -> Envelope {
    Envelope {
        envelope_id: EnvelopeId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, n)),
        kind: KIND_GROUP_UPSERT.into(),
        from_peer_id: from.clone(),
        to_peer_id: to.clone(),
        ts: START_MS,
        payload: serde_json::to_value(GroupStateWire::from_state(state)).expect("payload"),
    }
}

fn ids(messages: &[Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.message_id).collect()
}

/// A DM goes out at once, is stored by the receiver before the ack leaves it, and is
/// `sent` then `delivered` on the sender, once; nothing is resent after the ack.
#[tokio::test(start_paused = true)]
async fn a_dm_is_stored_by_the_receiver_before_its_ack_and_delivered_once() {
    let (net, clock) = setup();
    let a = Engine::start(&net, node_id(1), &clock);
    let b = Engine::start(&net, node_id(2), &clock);
    // At the instant each ack leaves B: did B's store hold the envelope and message?
    let stored_at_ack: Arc<Mutex<Vec<(bool, usize)>>> = Arc::default();
    {
        let (store, seen, b_id) = (
            Arc::clone(&b.store),
            Arc::clone(&stored_at_ack),
            b.id.clone(),
        );
        let a_id = a.id.clone();
        net.set_filter(move |sent| {
            if let (Frame::Ack(ack), true) = (&sent.frame, sent.from == b_id) {
                let id: EnvelopeId = ack.envelope_id.parse().expect("envelope id");
                let held = store.history(&ConversationId::dm(&a_id)).len();
                seen.lock().expect("lock").push((store.has_seen(id), held));
            }
            Verdict::Deliver
        });
    }
    link(&net, &a.id, &b.id).await;

    let m = a.send_dm(&b.id, "你好\nsecond line");
    let took = until("A sees its DM delivered", SECOND, || {
        a.status_of(m.message_id) == Some(MessageStatus::Delivered)
    })
    .await;
    // No timer was waited for: the send-now path and the ack, no retry.
    assert!(took < Duration::from_millis(50), "took {took:?}");

    let history = b.store.history(&ConversationId::dm(&a.id));
    assert_eq!(ids(&history), vec![m.message_id]);
    assert_eq!(history[0].body, "你好\nsecond line");
    assert_eq!(history[0].sender, UserId::lan(&a.id));
    assert_eq!(history[0].hlc, m.hlc);
    assert_eq!(history[0].status, MessageStatus::Delivered);
    assert_eq!(ids(&b.received()), vec![m.message_id]);
    assert_eq!(*stored_at_ack.lock().expect("lock"), vec![(true, 1)]);
    assert_eq!(
        a.statuses(m.message_id),
        vec![MessageStatus::Sent, MessageStatus::Delivered]
    );
    assert!(a.store.outbox_rows().is_empty());

    // Long after: still one envelope, one ack.
    run_for(Duration::from_secs(600)).await;
    assert_eq!(envelopes(&net, &a.id, &b.id).len(), 1);
    assert_eq!(acks(&net, &b.id, &a.id).len(), 1);
    assert_eq!(ids(&b.received()), vec![m.message_id]);
}

/// A peer discovery does not see: every attempt fails and the next waits 2 s, 4 s,
/// 8 s, 16 s…; once discovery sees it, it is dialled and the backlog goes out at once,
/// not at the end of the grown backoff.
#[tokio::test(start_paused = true)]
async fn an_offline_peer_is_retried_with_backoff_and_gets_the_dm_once_it_is_seen() {
    let (net, clock) = setup();
    let a = Engine::start(&net, node_id(1), &clock);
    let b = Engine::start(&net, node_id(2), &clock);

    let m = a.send_dm(&b.id, "are you there?");
    let envelope = a.store.outbox_rows()[0].entry.envelope_id;
    run_for(Duration::from_secs(31)).await;

    let attempts = a.store.attempts_for(envelope);
    let times: Vec<i64> = attempts.iter().map(|(at, _)| ms_since_start(*at)).collect();
    assert_eq!(times, vec![0, 2_000, 6_000, 14_000, 30_000]);
    assert!(attempts
        .iter()
        .all(|(_, a)| *a == SendAttempt::Failed("peer offline".into())));
    let row = a.store.outbox_row(envelope).expect("still queued");
    assert_eq!(row.status, OutboxStatus::Pending);
    assert_eq!(row.entry.retry_count, 5);
    assert_eq!(ms_since_start(row.next_retry_at), 30_000 + 32_000);
    assert_eq!(a.status_of(m.message_id), Some(MessageStatus::Pending));
    assert!(net.dials().is_empty(), "no address, no dial");
    assert!(b.store.history(&ConversationId::dm(&a.id)).is_empty());

    let seen_at = a.now_ms();
    a.sees(&b.id, net.addr(&b.id).expect("address"));
    until("A's DM delivered once B is seen", SECOND, || {
        a.status_of(m.message_id) == Some(MessageStatus::Delivered)
    })
    .await;
    assert!(a.now_ms() - seen_at < 100, "waited for the backoff");
    assert_eq!(net.dials(), vec![(a.id.clone(), b.id.clone())]);
    let tail: Vec<SendAttempt> = a.store.attempts_for(envelope)[5..]
        .iter()
        .map(|(_, a)| a.clone())
        .collect();
    assert_eq!(
        tail,
        vec![
            SendAttempt::Failed("no link yet (dialling)".into()),
            SendAttempt::Sent
        ]
    );
    assert_eq!(
        ids(&b.store.history(&ConversationId::dm(&a.id))),
        vec![m.message_id]
    );
    assert!(a.store.outbox_rows().is_empty());
}

/// An envelope that cannot be delivered is given up at the first attempt seven days
/// after it was queued (`MAX_RETRY_AGE_MS`), not before: its message fails, and it is
/// never tried again.
#[tokio::test(start_paused = true)]
async fn a_dm_is_given_up_after_seven_days_and_never_tried_again() {
    let (net, clock) = setup();
    let a = Engine::start(&net, node_id(1), &clock);
    let b = node_id(2);
    let m = a.send_dm(&b, "see you next week");
    let envelope = a.store.outbox_rows()[0].entry.envelope_id;
    run_for(SECOND).await;

    // A minute short of the limit (the laptop slept for a week: the wall clock jumps,
    // tokio's timers do not). Attempts at 2 s and 6 s still keep it.
    clock.jump(MAX_RETRY_AGE_MS - 60_000);
    run_for(Duration::from_secs(6)).await;
    assert_eq!(a.store.attempts_for(envelope).len(), 3);
    assert_eq!(
        a.store.outbox_row(envelope).map(|r| r.status),
        Some(OutboxStatus::Pending)
    );
    assert_eq!(a.status_of(m.message_id), Some(MessageStatus::Pending));

    clock.jump(60_000);
    until("the DM given up", Duration::from_secs(10), || {
        a.status_of(m.message_id) == Some(MessageStatus::Failed)
    })
    .await;
    let row = a.store.outbox_row(envelope).expect("row kept");
    assert_eq!(row.status, OutboxStatus::Failed);
    let (at, _) = *a.store.attempts_for(envelope).last().expect("attempts");
    assert!(at - row.entry.created_at >= MAX_RETRY_AGE_MS);
    assert_eq!(a.statuses(m.message_id), vec![MessageStatus::Failed]);
    assert!(a.events().iter().any(|e| matches!(
        e,
        DeliveryEvent::MessageStatus { message_id, conversation_id, status: MessageStatus::Failed }
            if *message_id == m.message_id && *conversation_id == ConversationId::dm(&b)
    )));

    let tried = a.store.attempts_for(envelope).len();
    run_for(Duration::from_secs(3_600)).await;
    assert_eq!(a.store.attempts_for(envelope).len(), tried);
}

/// B's ack is lost: A resends after its first backoff (2 s), B recognises the copy,
/// stores nothing twice and acks it again as a duplicate, and A is done.
#[tokio::test(start_paused = true)]
async fn a_lost_ack_brings_a_resend_that_is_deduped_and_acked_again() {
    let (net, clock) = setup();
    let a = Engine::start(&net, node_id(1), &clock);
    let b = Engine::start(&net, node_id(2), &clock);
    let dropped = Arc::new(Mutex::new(0));
    {
        let (dropped, b_id) = (Arc::clone(&dropped), b.id.clone());
        net.set_filter(move |sent| {
            let mut n = dropped.lock().expect("lock");
            if sent.from == b_id && matches!(sent.frame, Frame::Ack(_)) && *n == 0 {
                *n += 1;
                return Verdict::Drop;
            }
            Verdict::Deliver
        });
    }
    link(&net, &a.id, &b.id).await;

    let m = a.send_dm(&b.id, "once only");
    run_for(Duration::from_millis(500)).await;
    assert_eq!(*dropped.lock().expect("lock"), 1);
    assert_eq!(a.status_of(m.message_id), Some(MessageStatus::Sent));
    assert_eq!(b.received().len(), 1);

    until("delivered after the resend", Duration::from_secs(5), || {
        a.status_of(m.message_id) == Some(MessageStatus::Delivered)
    })
    .await;
    let sent = envelopes(&net, &a.id, &b.id);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].envelope_id, sent[1].envelope_id);
    let b_acks = acks(&net, &b.id, &a.id);
    let outcomes: Vec<&str> = b_acks.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(outcomes, vec!["applied", "duplicate"]);
    assert_eq!(
        ids(&b.store.history(&ConversationId::dm(&a.id))),
        vec![m.message_id]
    );
    assert_eq!(ids(&b.received()), vec![m.message_id]);
    assert!(a.store.outbox_rows().is_empty());
}

/// The same envelope twice, then the same message under a new envelope id (a manual
/// retry): each is acked, the message is stored and announced once.
#[tokio::test(start_paused = true)]
async fn copies_of_an_envelope_or_of_its_message_are_acked_but_stored_once() {
    let (net, clock) = setup();
    let b = Engine::start(&net, node_id(2), &clock);
    let mut a = ScriptedPeer::join(&net, node_id(1));
    link(&net, &a.id, &b.id).await;
    let message = MessageId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, 7));
    let first = dm_envelope(&a.id, &b.id, 1, message, "hello");
    let again = dm_envelope(&a.id, &b.id, 2, message, "hello");

    let mut outcomes = Vec::new();
    for envelope in [&first, &first, &again] {
        a.send_envelope(&b.id, envelope);
        let (_, frame) = a.next_frame().await;
        let Frame::Ack(ack) = frame else {
            panic!("expected an ack, got {frame:?}")
        };
        assert_eq!(ack.envelope_id, envelope.envelope_id.to_string());
        outcomes.push(ack.outcome);
    }
    assert_eq!(outcomes, vec!["applied", "duplicate", "applied"]);
    assert_eq!(
        ids(&b.store.history(&ConversationId::dm(&a.id))),
        vec![message]
    );
    assert_eq!(ids(&b.received()), vec![message]);
    assert!(b.store.has_seen(first.envelope_id) && b.store.has_seen(again.envelope_id));
}

/// Envelopes a node can never accept: an unknown kind and a group message for a group
/// it does not hold are rejected with their reason (and counted); one with a bad
/// signature is dropped unanswered (and counted). None is recorded as seen.
#[tokio::test(start_paused = true)]
async fn envelopes_that_can_never_be_accepted_are_rejected_or_dropped_and_counted() {
    let (net, clock) = setup();
    let b = Engine::start(&net, node_id(2), &clock);
    let mut a = ScriptedPeer::join(&net, node_id(1));
    link(&net, &a.id, &b.id).await;

    let mut unknown = dm_envelope(&a.id, &b.id, 1, MessageId::new(), "x");
    unknown.kind = "dm.bogus".into();
    let stranger_group = GlobalGroupId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, 99));
    let orphan = Envelope::group_send(
        &a.id,
        &b.id,
        &stranger_group,
        &group_message(&a.id, stranger_group, 3, "hi all"),
    )
    .expect("envelope");
    // Claims to come from another node than the link's peer: dropped unanswered.
    let impostor = dm_envelope(&node_id(9), &b.id, 4, MessageId::new(), "not from a");

    a.send_envelope(&b.id, &unknown);
    a.send_envelope(&b.id, &orphan);
    a.send(&b.id, Frame::Envelope(impostor.encode().expect("encode")));
    run_for(SECOND).await;

    let mut rejects: Vec<(String, String)> = a
        .frames_now()
        .into_iter()
        .map(|(_, frame)| match frame {
            Frame::Reject(r) => (r.envelope_id, r.reason),
            other => panic!("expected only rejects, got {other:?}"),
        })
        .collect();
    rejects.sort();
    let mut expected_ids = vec![
        unknown.envelope_id.to_string(),
        orphan.envelope_id.to_string(),
    ];
    expected_ids.sort();
    assert_eq!(
        rejects.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        expected_ids
    );
    let reason_of = |id: &EnvelopeId| {
        rejects
            .iter()
            .find(|(r, _)| *r == id.to_string())
            .map(|(_, reason)| reason.clone())
            .expect("rejected")
    };
    assert!(reason_of(&unknown.envelope_id).contains("unknown kind"));
    assert!(reason_of(&orphan.envelope_id).contains("not found"));
    let refusals = net.refusals(&b.id);
    assert_eq!((refusals.dropped, refusals.rejected), (1, 2));
    for envelope in [&unknown, &orphan, &impostor] {
        assert!(!b.store.has_seen(envelope.envelope_id));
    }
    assert!(b.received().is_empty());
}

/// The receiver rejects A's DM: the message fails, its envelope is never resent; an
/// ack or a reject from a node the envelope was not for changes nothing.
#[tokio::test(start_paused = true)]
async fn a_rejected_dm_fails_and_is_not_sent_again() {
    let (net, clock) = setup();
    let a = Engine::start(&net, node_id(1), &clock);
    let mut b = ScriptedPeer::join(&net, node_id(2));
    let c = ScriptedPeer::join(&net, node_id(3));
    link(&net, &a.id, &b.id).await;
    link(&net, &a.id, &c.id).await;

    let m = a.send_dm(&b.id, "for B");
    let envelope = b.next_envelope().await;
    assert_eq!(envelope.kind, KIND_DM_SEND);
    // Someone else answering for B is ignored.
    c.ack(&a.id, &envelope);
    c.reject(&a.id, &envelope, "not mine");
    run_for(Duration::from_millis(100)).await;
    assert_eq!(a.status_of(m.message_id), Some(MessageStatus::Sent));
    assert_eq!(
        a.store.outbox_row(envelope.envelope_id).map(|r| r.status),
        Some(OutboxStatus::Pending)
    );

    b.reject(&a.id, &envelope, "no thanks");
    until("the DM failed", SECOND, || {
        a.status_of(m.message_id) == Some(MessageStatus::Failed)
    })
    .await;
    let row = a.store.outbox_row(envelope.envelope_id).expect("row kept");
    assert_eq!(row.status, OutboxStatus::Failed);
    assert_eq!(row.last_error.as_deref(), Some("no thanks"));
    assert_eq!(
        a.statuses(m.message_id),
        vec![MessageStatus::Sent, MessageStatus::Failed]
    );

    run_for(Duration::from_secs(600)).await;
    assert!(b.frames_now().is_empty(), "resent after a rejection");
    assert_eq!(envelopes(&net, &a.id, &b.id).len(), 1);
}

/// B cannot store (disk full): it does not ack, so A resends, and once B can store
/// again the resend is applied — as new, since nothing was recorded the first time.
#[tokio::test(start_paused = true)]
async fn a_receiver_that_cannot_store_does_not_ack_and_the_resend_is_applied() {
    let (net, clock) = setup();
    let a = Engine::start(&net, node_id(1), &clock);
    let b = Engine::start(&net, node_id(2), &clock);
    link(&net, &a.id, &b.id).await;
    b.store.set_unavailable(Some("disk full"));

    let m = a.send_dm(&b.id, "important");
    run_for(Duration::from_millis(1_500)).await;
    assert!(acks(&net, &b.id, &a.id).is_empty());
    assert_eq!(a.status_of(m.message_id), Some(MessageStatus::Sent));

    b.store.set_unavailable(None);
    until("delivered after B recovers", Duration::from_secs(5), || {
        a.status_of(m.message_id) == Some(MessageStatus::Delivered)
    })
    .await;
    assert!(envelopes(&net, &a.id, &b.id).len() >= 2);
    let outcomes: Vec<String> = acks(&net, &b.id, &a.id)
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert_eq!(outcomes, vec!["applied"]);
    assert_eq!(
        ids(&b.store.history(&ConversationId::dm(&a.id))),
        vec![m.message_id]
    );
}

/// Creates the group `[a, members…]` on `a`, and has each scripted member take and
/// ack its `group.upsert`. Returns the group's id.
async fn group_with(a: &Engine, members: &mut [&mut ScriptedPeer]) -> GlobalGroupId {
    let ids: Vec<NodeId> = members.iter().map(|m| m.id.clone()).collect();
    let state = a.create_group("team", &ids);
    for member in members.iter_mut() {
        let upsert = member.next_envelope().await;
        assert_eq!(upsert.kind, KIND_GROUP_UPSERT);
        member.ack(&a.id, &upsert);
    }
    state.global_group_id
}

/// Reads `n` group messages from `member`'s frames, in order.
async fn group_sends(member: &mut ScriptedPeer, n: usize) -> Vec<Envelope> {
    let mut out = Vec::new();
    while out.len() < n {
        let envelope = member.next_envelope().await;
        assert_eq!(envelope.kind, KIND_GROUP_SEND);
        out.push(envelope);
    }
    out
}

fn message_ids_of(envelopes: &[Envelope]) -> Vec<MessageId> {
    envelopes
        .iter()
        .map(|e| MessageId::from_ulid(e.envelope_id.ulid()))
        .collect()
}

/// Each member's cursor moves over what it acked, never past a message it has not:
/// an ack that overtook an earlier one is kept until the gap is filled. A message is
/// delivered once every member's cursor is past it.
#[tokio::test(start_paused = true)]
async fn group_cursors_advance_per_member_and_never_skip_a_message() {
    let (net, clock) = setup();
    let a = Engine::start(&net, node_id(1), &clock);
    let mut b = ScriptedPeer::join(&net, node_id(2));
    let mut c = ScriptedPeer::join(&net, node_id(3));
    link(&net, &a.id, &b.id).await;
    link(&net, &a.id, &c.id).await;
    let group = group_with(&a, &mut [&mut b, &mut c]).await;

    let m: Vec<Message> = ["one", "two", "three"]
        .iter()
        .map(|t| a.send_group(group, t))
        .collect();
    let to_b = group_sends(&mut b, 3).await;
    let to_c = group_sends(&mut c, 3).await;
    assert_eq!(message_ids_of(&to_b), ids(&m));
    assert_eq!(message_ids_of(&to_c), ids(&m));

    for envelope in &to_b {
        b.ack(&a.id, envelope);
    }
    // C acks the first and the third: the second is still owed.
    c.ack(&a.id, &to_c[0]);
    c.ack(&a.id, &to_c[2]);
    run_for(Duration::from_millis(100)).await;
    assert_eq!(
        a.store.cursor(group, &b.id).expect("cursor").acked,
        m[2].order_key()
    );
    assert_eq!(
        a.store.cursor(group, &c.id).expect("cursor").acked,
        m[0].order_key()
    );
    let statuses: Vec<_> = m.iter().map(|x| a.status_of(x.message_id)).collect();
    assert_eq!(
        statuses,
        vec![
            Some(MessageStatus::Delivered),
            Some(MessageStatus::Sent),
            Some(MessageStatus::Sent)
        ]
    );

    // The missing ack: the cursor moves over it and over the early one.
    c.ack(&a.id, &to_c[1]);
    until("every message delivered", SECOND, || {
        m.iter()
            .all(|x| a.status_of(x.message_id) == Some(MessageStatus::Delivered))
    })
    .await;
    assert_eq!(
        a.store.cursor(group, &c.id).expect("cursor").acked,
        m[2].order_key()
    );

    // Nothing more is owed: nothing is resent.
    run_for(Duration::from_secs(60)).await;
    assert!(b.frames_now().is_empty() && c.frames_now().is_empty());
}

/// A member that is away: its cursor is retried with backoff while the other member
/// gets everything; when it is seen again it gets the group and the whole backlog at
/// once, in order, and its cursor catches up.
#[tokio::test(start_paused = true)]
async fn an_away_member_is_retried_with_backoff_and_gets_the_backlog_when_it_returns() {
    let (net, clock) = setup();
    let a = Engine::start(&net, node_id(1), &clock);
    let mut b = ScriptedPeer::join(&net, node_id(2));
    let mut c = ScriptedPeer::join(&net, node_id(3));
    net.set_reachable(&c.id, false);
    link(&net, &a.id, &b.id).await;

    let created_at = a.now_ms();
    let state = a.create_group("team", &[b.id.clone(), c.id.clone()]);
    let group = state.global_group_id;
    let upsert = b.next_envelope().await;
    b.ack(&a.id, &upsert);
    let m: Vec<Message> = ["one", "two"]
        .iter()
        .map(|t| a.send_group(group, t))
        .collect();
    let to_b = group_sends(&mut b, 2).await;
    for envelope in &to_b {
        b.ack(&a.id, envelope);
    }
    run_for(Duration::from_secs(7)).await;

    assert_eq!(
        a.store.cursor(group, &b.id).expect("cursor").acked,
        m[1].order_key()
    );
    let c_attempts = a.store.attempts_for_member(group, &c.id);
    let times: Vec<i64> = c_attempts.iter().map(|(at, _)| at - created_at).collect();
    assert_eq!(times, vec![0, 2_000, 6_000]);
    assert!(c_attempts
        .iter()
        .all(|(_, a)| *a == SendAttempt::Failed("peer offline".into())));
    let c_cursor = a.store.cursor(group, &c.id).expect("cursor");
    assert!(c_cursor.acked < m[0].order_key());
    assert_eq!(c_cursor.retry_count, 3);
    // Not delivered while C lacks them.
    assert!(m
        .iter()
        .all(|x| a.status_of(x.message_id) == Some(MessageStatus::Sent)));

    net.set_reachable(&c.id, true);
    let back_at = a.now_ms();
    a.sees(&c.id, net.addr(&c.id).expect("address"));
    let upsert = c.next_envelope().await;
    assert_eq!(upsert.kind, KIND_GROUP_UPSERT);
    c.ack(&a.id, &upsert);
    let to_c = group_sends(&mut c, 2).await;
    assert!(a.now_ms() - back_at < 100, "waited for the backoff");
    assert_eq!(message_ids_of(&to_c), ids(&m));
    for envelope in &to_c {
        c.ack(&a.id, envelope);
    }
    until("the backlog delivered", SECOND, || {
        m.iter()
            .all(|x| a.status_of(x.message_id) == Some(MessageStatus::Delivered))
    })
    .await;
    assert_eq!(
        a.store.cursor(group, &c.id).expect("cursor").acked,
        m[1].order_key()
    );
}

/// Two engines in a group whose author is away: each got a message the other did not.
/// When they link, catch-up compares their histories and relays what each lacks; both
/// end with the same history in the same order, each message under its author. The
/// author's own resend later is a duplicate.
#[tokio::test(start_paused = true)]
async fn catch_up_between_two_members_fetches_what_each_missed() {
    let (net, clock) = setup();
    let mut author = ScriptedPeer::join(&net, node_id(1));
    let b = Engine::start(&net, node_id(2), &clock);
    let c = Engine::start(&net, node_id(3), &clock);
    let group = GlobalGroupId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, 50));
    let stamp = Stamp {
        hlc: Hlc::from_wall_ms(START_MS as u64).raw(),
        editor: author.id.clone(),
    };
    let mut state = GroupState::create(group, &stamp, "team", "", &[b.id.clone(), c.id.clone()]);
    state.sign_own(&author.keys);

    // The author tells both members about the group.
    for (n, member) in [&b.id, &c.id].into_iter().enumerate() {
        net.link(&author.id, member);
        author.send_envelope(
            member,
            &upsert_envelope(&author.id, member, &state, n as u128),
        );
    }
    until("both members hold the group", SECOND, || {
        b.store.group_state(group).is_some() && c.store.group_state(group).is_some()
    })
    .await;

    // One message reaches only B, another only C.
    let m1 = group_message(&author.id, group, 11, "only B got this");
    let m2 = group_message(&author.id, group, 12, "only C got this");
    author.send_envelope(
        &b.id,
        &Envelope::group_send(&author.id, &b.id, &group, &m1).expect("m1"),
    );
    author.send_envelope(
        &c.id,
        &Envelope::group_send(&author.id, &c.id, &group, &m2).expect("m2"),
    );
    until("each holds its message", SECOND, || {
        b.store.history(&ConversationId::group(&group)).len() == 1
            && c.store.history(&ConversationId::group(&group)).len() == 1
    })
    .await;
    // The author goes away (its link to either member is gone, and it does not
    // answer their catch-up).
    net.set_reachable(&author.id, false);
    let _ = author.frames_now();

    assert!(net.link(&b.id, &c.id));
    until("both histories complete", Duration::from_secs(5), || {
        b.store.history(&ConversationId::group(&group)).len() == 2
            && c.store.history(&ConversationId::group(&group)).len() == 2
    })
    .await;
    let in_b = b.store.history(&ConversationId::group(&group));
    let in_c = c.store.history(&ConversationId::group(&group));
    assert_eq!(ids(&in_b), ids(&in_c));
    assert_eq!(ids(&in_b), vec![m1.message_id, m2.message_id]);
    for message in in_b.iter().chain(&in_c) {
        assert_eq!(
            message.sender,
            UserId::lan(&author.id),
            "stored under the relay"
        );
        assert_eq!(message.status, MessageStatus::Delivered);
    }
    assert_eq!(
        in_c[0].body, "only B got this",
        "C's copy of m1 is the author's text"
    );
    assert_eq!(ids(&c.received()), vec![m2.message_id, m1.message_id]);
    // Each relayed message is recorded as seen under its id (its group.send's id).
    assert!(c
        .store
        .has_seen(EnvelopeId::from_ulid(m1.message_id.ulid())));

    // The author returns and resends m1 to C: a duplicate, not a second message.
    net.set_reachable(&author.id, true);
    link(&net, &author.id, &c.id).await;
    author.send_envelope(
        &c.id,
        &Envelope::group_send(&author.id, &c.id, &group, &m1).expect("m1"),
    );
    let ack = loop {
        if let (_, Frame::Ack(ack)) = author.next_frame().await {
            if ack.envelope_id == m1.message_id.to_string() {
                break ack;
            }
        }
    };
    assert_eq!(ack.outcome, "duplicate");
    assert_eq!(c.store.history(&ConversationId::group(&group)).len(), 2);
    assert_eq!(c.received().len(), 2);
}

/// Discovery blocks a peer: its link is closed at once, saying why.
#[tokio::test(start_paused = true)]
async fn a_blocked_peer_s_link_is_closed() {
    let (net, clock) = setup();
    let a = Engine::start(&net, node_id(1), &clock);
    let b = ScriptedPeer::join(&net, node_id(2));
    link(&net, &a.id, &b.id).await;
    a.peer_event(PeerEvent::Blocked(b.id.clone()));
    until("the link closed", SECOND, || !net.is_linked(&a.id, &b.id)).await;
    assert_eq!(
        net.closes(),
        vec![(a.id.clone(), b.id.clone(), "blocked".to_string())]
    );
}

/// A member that holds the shared secret and a link forges group changes: adding a
/// node, removing a member, renaming, dissolving, a change in the owner's name signed
/// with its own key, a group made up in the owner's name. Each is rejected with its
/// reason and counted as forged; the group stays as the owner made it and the made-up
/// group is neither joined nor held as an invitation. A replay of the owner's real
/// upsert changes nothing, and the member's own signed leave is applied.
#[tokio::test(start_paused = true)]
async fn forged_group_changes_are_rejected_counted_and_change_nothing() {
    let (net, clock) = setup();
    let mut owner = ScriptedPeer::join(&net, node_id(1));
    let b = Engine::start(&net, node_id(2), &clock);
    let mut mallory = ScriptedPeer::join(&net, node_id(3));
    let group = GlobalGroupId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, 60));
    let (owner_id, mallory_id, mallory_keys) =
        (owner.id.clone(), mallory.id.clone(), mallory.keys.clone());
    let at = |n: u64| Stamp {
        hlc: Hlc::from_wall_ms(START_MS as u64).raw() + n,
        editor: owner_id.clone(),
    };
    let mut state = GroupState::create(
        group,
        &at(0),
        "team",
        "",
        &[b.id.clone(), mallory.id.clone(), node_id(4)],
    );
    state.sign_own(&owner.keys);
    link(&net, &owner.id, &b.id).await;
    link(&net, &mallory.id, &b.id).await;
    owner.send_envelope(&b.id, &upsert_envelope(&owner.id, &b.id, &state, 1));
    until("B holds the group", SECOND, || {
        b.store.group_state(group).is_some()
    })
    .await;
    let _ = owner.frames_now();

    let by_mallory = |n: u64| Stamp {
        hlc: at(n).hlc,
        editor: mallory_id.clone(),
    };
    let signed_by_mallory = |change: &dyn Fn(&mut GroupState)| {
        let mut forged = state.clone();
        change(&mut forged);
        forged.sign_own(&mallory_keys);
        forged
    };
    let adds_a_friend = signed_by_mallory(&|g| g.set_member(&node_id(5), true, &by_mallory(10)));
    let removes_four = signed_by_mallory(&|g| g.set_member(&node_id(4), false, &by_mallory(11)));
    let renames = signed_by_mallory(&|g| g.set_name("mallory's", &by_mallory(12)));
    let dissolves = signed_by_mallory(&|g| g.dissolve(&by_mallory(13)));
    // In the owner's name, signed with Mallory's key (the owner's keys are in the
    // state, so the signature cannot verify).
    let mut as_owner = state.clone();
    as_owner.set_name("owner says so", &at(14));
    for r in as_owner.names.iter_mut().filter(|r| r.sig.is_none()) {
        r.sig = Some(mallory.keys.sign(&chat_core::group_state::statement(
            &group,
            chat_core::Change::Name(r),
        )));
    }
    // A group "owned" by the owner that it never made, with B as a member.
    let made_up_id = GlobalGroupId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, 61));
    let mut made_up = GroupState::create(
        made_up_id,
        &at(15),
        "free pizza",
        "",
        &[b.id.clone(), mallory.id.clone()],
    );
    made_up.sign_own(&mallory.keys);

    let forgeries = [
        adds_a_friend,
        removes_four,
        renames,
        dissolves,
        as_owner,
        made_up,
    ];
    for (n, forged) in forgeries.iter().enumerate() {
        mallory.send_envelope(
            &b.id,
            &upsert_envelope(&mallory.id, &b.id, forged, 100 + n as u128),
        );
    }
    run_for(SECOND).await;
    // Answers only (B also opens catch-up with its fellow member).
    let answers: Vec<_> = mallory
        .frames_now()
        .into_iter()
        .filter(|(_, f)| !matches!(f, Frame::Envelope(_)))
        .collect();
    assert_eq!(answers.len(), forgeries.len(), "{answers:?}");
    for (_, frame) in &answers {
        match frame {
            Frame::Reject(r) => assert!(r.reason.contains("forged"), "{r:?}"),
            other => panic!("expected a reject, got {other:?}"),
        }
    }
    let refusals = net.refusals(&b.id);
    assert_eq!(refusals.forged, forgeries.len() as u64);
    assert_eq!(b.store.group_state(group), Some(state.clone()));
    assert_eq!(b.store.group_state(made_up_id), None);
    assert_eq!(b.store.invitation(made_up_id), None);

    // A replay of the owner's real upsert: acked, nothing changes.
    mallory.send_envelope(&b.id, &upsert_envelope(&mallory.id, &b.id, &state, 200));
    // Mallory's own leave is hers to sign: applied.
    let leaves = signed_by_mallory(&|g| g.set_member(&mallory_id, false, &by_mallory(20)));
    mallory.send_envelope(&b.id, &upsert_envelope(&mallory.id, &b.id, &leaves, 201));
    run_for(SECOND).await;
    let acks: Vec<String> = mallory
        .frames_now()
        .into_iter()
        .filter(|(_, f)| !matches!(f, Frame::Envelope(_)))
        .map(|(_, frame)| match frame {
            Frame::Ack(a) => a.outcome,
            other => panic!("expected acks, got {other:?}"),
        })
        .collect();
    assert_eq!(acks, vec!["stale".to_string(), "applied".to_string()]);
    let held = b.store.group_state(group).expect("group");
    assert!(!held.is_member(&mallory.id) && held.is_member(&node_id(4)));
    assert_eq!(held.name(), "team");
    assert_eq!(net.refusals(&b.id).forged, forgeries.len() as u64);
}

/// A linked insider invents groups with this node as a member. The first 32 are stored
/// (an owner setting up a team's groups in one sitting); past the quota an upsert is
/// left unanswered and counted, so nothing more is stored, and an honest sender's
/// resend lands once the quota has refilled (one a minute). Groups already joined
/// are never held back.
#[tokio::test(start_paused = true)]
async fn new_groups_past_a_peers_quota_wait_unanswered() {
    let (net, clock) = setup();
    let b = Engine::start(&net, node_id(2), &clock);
    let mut mallory = ScriptedPeer::join(&net, node_id(3));
    link(&net, &mallory.id, &b.id).await;
    let made_up = |n: u128| {
        let id = GlobalGroupId::from_ulid(ulid::Ulid::from_parts(START_MS as u64, 1000 + n));
        let stamp = Stamp {
            hlc: Hlc::from_wall_ms(START_MS as u64).raw() + 1,
            editor: mallory.id.clone(),
        };
        let mut state = GroupState::create(
            id,
            &stamp,
            &format!("group {n}"),
            "",
            std::slice::from_ref(&b.id),
        );
        state.sign_own(&mallory.keys);
        state
    };
    let groups: Vec<GroupState> = (0..40).map(made_up).collect();
    for (n, state) in groups.iter().enumerate() {
        mallory.send_envelope(
            &b.id,
            &upsert_envelope(&mallory.id, &b.id, state, n as u128),
        );
    }
    run_for(SECOND).await;
    let answered = |frames: Vec<(NodeId, Frame)>| {
        frames
            .into_iter()
            .filter(|(_, f)| matches!(f, Frame::Ack(_)))
            .count()
    };
    assert_eq!(answered(mallory.frames_now()), 32);
    let held = |g: &GroupState| {
        b.store.group_state(g.global_group_id).is_some()
            || b.store.invitation(g.global_group_id).is_some()
    };
    assert_eq!(groups.iter().filter(|g| held(g)).count(), 32);
    assert_eq!(net.refusals(&b.id).over_quota, 8);

    // A change to a group already joined is not held back by the quota.
    let joined = groups
        .iter()
        .find(|g| b.store.group_state(g.global_group_id).is_some())
        .expect("auto-accept joins the groups");
    let mut renamed = joined.clone();
    let stamp = Stamp {
        hlc: Hlc::from_wall_ms(START_MS as u64).raw() + 2,
        editor: mallory.id.clone(),
    };
    renamed.set_name("renamed", &stamp);
    renamed.sign_own(&mallory.keys);
    mallory.send_envelope(&b.id, &upsert_envelope(&mallory.id, &b.id, &renamed, 500));
    run_for(SECOND).await;
    assert_eq!(answered(mallory.frames_now()), 1);
    assert_eq!(
        b.store
            .group_state(joined.global_group_id)
            .map(|g| g.name().to_string()),
        Some("renamed".to_string())
    );

    // A minute later one more fits: the resend of a held-back upsert is stored.
    run_for(Duration::from_secs(61)).await;
    mallory.send_envelope(&b.id, &upsert_envelope(&mallory.id, &b.id, &groups[39], 39));
    run_for(SECOND).await;
    assert_eq!(answered(mallory.frames_now()), 1);
    assert!(held(&groups[39]));
    assert_eq!(net.refusals(&b.id).over_quota, 8);
}
