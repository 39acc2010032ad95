//! What the transport needs from the store: key pins, acks that name their sender,
//! rejections, and a peer's backlog made due when its link comes up.

use storage::{KeyPin, MessageStatus, OutboxStatus, RetryPolicy, SendAttempt};

use crate::{db_path, node, now_ms, open_with_peers, record_attempt, send_dm};

#[tokio::test]
async fn link_keys_are_pinned_on_first_contact_and_checked_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let keys = [7u8; 64];
    assert_eq!(
        store.pin_link_keys(node(1), keys).await.unwrap(),
        KeyPin::Pinned
    );
    assert_eq!(
        store.pin_link_keys(node(1), keys).await.unwrap(),
        KeyPin::Matches
    );
    let mut other = keys;
    other[63] = 8;
    assert_eq!(
        store.pin_link_keys(node(1), other).await.unwrap(),
        KeyPin::Mismatch
    );
    // A node never discovered can still be pinned (it dialled us first).
    assert_eq!(
        store.pin_link_keys(node(9), keys).await.unwrap(),
        KeyPin::Pinned
    );
    // Unpinning accepts the next keys.
    assert!(store.unpin_link_keys(node(1)).await.unwrap());
    assert!(!store.unpin_link_keys(node(1)).await.unwrap());
    assert_eq!(
        store.pin_link_keys(node(1), other).await.unwrap(),
        KeyPin::Pinned
    );
    // The pin survives a restart.
    store.close().await.unwrap();
    let store = storage::Store::open(&db_path(&dir)).await.unwrap();
    assert_eq!(
        store.pin_link_keys(node(1), keys).await.unwrap(),
        KeyPin::Mismatch
    );
}

#[tokio::test]
async fn only_the_receiver_can_ack_and_a_rejection_fails_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let now = now_ms();
    let (m1, e1) = send_dm(&store, node(1), "one".into(), now).await.unwrap();
    assert!(store.outbox_ack(e1, node(2)).await.unwrap().is_none());
    let acked = store.outbox_ack(e1, node(1)).await.unwrap().unwrap();
    assert_eq!(acked.message_id, Some(m1.message_id));
    assert_eq!(acked.peer_id, node(1));
    assert!(store.outbox_ack(e1, node(1)).await.unwrap().is_none());
    let status = store.message(m1.message_id).await.unwrap().unwrap().status;
    assert_eq!(status, MessageStatus::Delivered);

    let (m2, e2) = send_dm(&store, node(1), "two".into(), now).await.unwrap();
    assert!(store
        .outbox_rejected(e2, node(2), "not yours".into())
        .await
        .unwrap()
        .is_none());
    let rejected = store
        .outbox_rejected(e2, node(1), "unknown kind".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rejected.message_id, Some(m2.message_id));
    let queued = store.outbox_for_peer(node(1)).await.unwrap();
    let entry = queued.iter().find(|e| e.envelope_id == e2).unwrap();
    assert_eq!(entry.status, OutboxStatus::Failed);
    assert_eq!(entry.last_error.as_deref(), Some("unknown kind"));
    let status = store.message(m2.message_id).await.unwrap().unwrap().status;
    assert_eq!(status, MessageStatus::Failed);
    // A failed envelope is not due any more.
    assert!(store
        .due_outbox(now + 10_000_000, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_attempt_recorded_after_a_reject_leaves_the_envelope_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let now = now_ms();
    let (m, e) = send_dm(&store, node(1), "raced".into(), now).await.unwrap();
    // The peer's reject overtakes the sender's record of its own send.
    store
        .outbox_rejected(e, node(1), "unknown kind".into())
        .await
        .unwrap()
        .unwrap();
    let entry = record_attempt(&store, e, SendAttempt::Sent, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.status, OutboxStatus::Failed);
    assert_eq!(entry.last_error.as_deref(), Some("unknown kind"));
    let status = store.message(m.message_id).await.unwrap().unwrap().status;
    assert_eq!(status, MessageStatus::Failed);
    assert!(store
        .due_outbox(now + 10_000_000, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_link_coming_up_makes_the_peers_backlog_due_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    store
        .set_retry_policy(RetryPolicy {
            first_delay_ms: 1_000,
            max_delay_ms: 1_000,
        })
        .await
        .unwrap();
    let now = now_ms();
    let mut envelopes = Vec::new();
    for peer in [1, 2] {
        let (_, e) = send_dm(&store, node(peer), "hi".into(), now).await.unwrap();
        let entry = record_attempt(&store, e, SendAttempt::Failed("no link".into()), now)
            .await
            .unwrap()
            .unwrap();
        // The policy set above: about a second (±20 %), not the default's two.
        assert!((800..=1_200).contains(&(entry.next_retry_at - now)));
        envelopes.push(e);
    }
    assert!(store.due_outbox(now, 10).await.unwrap().is_empty());
    assert_eq!(store.outbox_due_now(node(1), now).await.unwrap(), 1);
    let due = store.due_outbox(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].envelope_id, envelopes[0]);
}
