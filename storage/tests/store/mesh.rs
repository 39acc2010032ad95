use storage::{
    ConversationId, EnvelopeId, GroupEdit, GroupState, HistoryQuery, Hlc, InboundEffect,
    InboundEnvelope, InboundOutcome, MessageStatus, NewGroup, OutboxStatus, OutgoingEnvelope,
    SendAttempt, Stamp, Store, StoreError, DEDUPE_RETENTION_MS, MAX_OFFSET_ERROR_MS,
    MAX_RETRY_AGE_MS,
};
use ulid::Ulid;

use crate::{
    block_only, db_path, dm_envelope, inbound_dm, member_acks, node, now_ms, open_with_peers,
    record_attempt, send_dm, send_group,
};

fn upsert_envelope(state: &GroupState) -> OutgoingEnvelope {
    OutgoingEnvelope {
        kind: "group.upsert".into(),
        payload: format!("{{\"rev\":{}}}", state.revision().hlc).into_bytes(),
    }
}

async fn history_len(store: &Store, conv: ConversationId) -> usize {
    store
        .history(
            conv,
            HistoryQuery {
                before: None,
                limit: 500,
            },
        )
        .await
        .unwrap()
        .messages
        .len()
}

#[tokio::test]
async fn a_duplicate_envelope_is_detected_and_not_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let (envelope, effect) = inbound_dm(1, "only once");
    assert!(matches!(
        store
            .apply_inbound(envelope.clone(), effect.clone())
            .await
            .unwrap(),
        InboundOutcome::Applied(_)
    ));
    for _ in 0..3 {
        assert_eq!(
            store
                .apply_inbound(envelope.clone(), effect.clone())
                .await
                .unwrap(),
            InboundOutcome::Duplicate
        );
    }
    // The same message resent under a new envelope id is stored once too.
    let again = InboundEnvelope {
        envelope_id: EnvelopeId::new(),
        ..envelope.clone()
    };
    assert!(matches!(
        store.apply_inbound(again, effect).await.unwrap(),
        InboundOutcome::Applied(_)
    ));
    let conv = ConversationId::dm(&node(1));
    assert_eq!(history_len(&store, conv).await, 1);
    assert_eq!(store.conversations().await.unwrap()[0].unread, 1);
}

#[tokio::test]
async fn dedupe_pruning_keeps_entries_for_as_long_as_a_sender_may_retry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let (envelope, effect) = inbound_dm(1, "retried for days");
    let first = envelope.received_at;
    store
        .apply_inbound(envelope.clone(), effect.clone())
        .await
        .unwrap();
    // Just inside retention: kept, so the sender's last retry is still a duplicate.
    let last_retry = first + MAX_RETRY_AGE_MS + MAX_OFFSET_ERROR_MS;
    assert_eq!(
        store
            .prune_inbox_dedupe(first + DEDUPE_RETENTION_MS)
            .await
            .unwrap(),
        0
    );
    let retry = InboundEnvelope {
        received_at: last_retry,
        ..envelope.clone()
    };
    assert_eq!(
        store.apply_inbound(retry, effect.clone()).await.unwrap(),
        InboundOutcome::Duplicate
    );
    // Past retention the entry goes, and a copy that old is expired, not re-applied.
    assert_eq!(
        store
            .prune_inbox_dedupe(first + DEDUPE_RETENTION_MS + 1)
            .await
            .unwrap(),
        1
    );
    let late = InboundEnvelope {
        received_at: first + DEDUPE_RETENTION_MS + 1,
        ..envelope
    };
    assert_eq!(
        store.apply_inbound(late, effect).await.unwrap(),
        InboundOutcome::Expired
    );
    assert_eq!(history_len(&store, ConversationId::dm(&node(1))).await, 1);
}

#[tokio::test]
async fn envelopes_from_their_senders_future_or_blocked_peers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let (mut envelope, effect) = inbound_dm(1, "from the future");
    let future = (now_ms() + 2 * MAX_OFFSET_ERROR_MS) as u64;
    envelope.envelope_id = EnvelopeId::from_ulid(Ulid::from_parts(future, 1));
    assert!(matches!(
        store.apply_inbound(envelope, effect).await,
        Err(StoreError::Invalid { .. })
    ));
    // A stamp beyond what any clock (and SQLite) holds is refused; a stamp merely far
    // ahead is not (tests/store/clocks.rs).
    let (envelope, mut effect) = inbound_dm(1, "clock beyond any clock");
    if let InboundEffect::DirectMessage(m) = &mut effect {
        m.hlc = storage::Hlc::from_raw(u64::MAX);
    }
    assert!(matches!(
        store.apply_inbound(envelope, effect).await,
        Err(StoreError::Invalid { field: "hlc", .. })
    ));
    block_only(&store, &[node(2)]).await;
    let (envelope, effect) = inbound_dm(2, "blocked");
    assert!(matches!(
        store.apply_inbound(envelope.clone(), effect.clone()).await,
        Err(StoreError::Blocked(_))
    ));
    // Nothing was recorded: after unblocking, the same envelope applies.
    block_only(&store, &[]).await;
    assert!(matches!(
        store.apply_inbound(envelope, effect).await.unwrap(),
        InboundOutcome::Applied(_)
    ));
}

#[tokio::test]
async fn outbox_is_due_in_order_and_retries_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let t0 = now_ms();
    let mut ids = Vec::new();
    for (i, peer) in [1, 2, 1].into_iter().enumerate() {
        let (_, id) = send_dm(&store, node(peer), format!("m{i}"), t0)
            .await
            .unwrap();
        ids.push(id);
    }
    let due: Vec<EnvelopeId> = store
        .due_outbox(t0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.envelope_id)
        .collect();
    assert_eq!(due, ids, "same due time: creation order");
    assert_eq!(store.due_outbox(t0 - 1, 10).await.unwrap().len(), 0);

    // First fails (link down), second is sent and waits for its ack.
    let failed = record_attempt(&store, ids[0], SendAttempt::Failed("no link".into()), t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.retry_count, 1);
    assert_eq!(failed.last_error.as_deref(), Some("no link"));
    assert!(failed.next_retry_at >= t0 + 1_600 && failed.next_retry_at <= t0 + 2_400);
    let sent = record_attempt(&store, ids[1], SendAttempt::Sent, t0)
        .await
        .unwrap()
        .unwrap();
    let msg = store
        .message(sent.message_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.status, MessageStatus::Sent);
    let due: Vec<EnvelopeId> = store
        .due_outbox(t0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.envelope_id)
        .collect();
    assert_eq!(due, vec![ids[2]]);
    let later = t0 + 60_000;
    let due: Vec<EnvelopeId> = store
        .due_outbox(later, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.envelope_id)
        .collect();
    assert_eq!(due.len(), 3);
    let entries = store.due_outbox(later, 10).await.unwrap();
    assert_eq!(due[0], ids[2], "the untried one was due first");
    assert!(
        entries
            .windows(2)
            .all(|w| w[0].next_retry_at <= w[1].next_retry_at),
        "retries come in next_retry_at order"
    );
    assert_eq!(
        store.next_outbox_due_at().await.unwrap(),
        Some(t0),
        "the untried one is due at once"
    );

    // Repeated failures double the delay.
    let mut delays = Vec::new();
    let mut at = t0;
    for _ in 0..4 {
        let e = record_attempt(&store, ids[2], SendAttempt::Failed("x".into()), at)
            .await
            .unwrap()
            .unwrap();
        delays.push(e.next_retry_at - at);
        at = e.next_retry_at;
    }
    assert!(delays.windows(2).all(|w| w[1] > w[0]), "{delays:?}");

    // Ack (from its receiver): gone from the outbox, message delivered; a second ack is
    // harmless.
    assert!(store.outbox_ack(ids[1], node(2)).await.unwrap().is_some());
    assert!(store.outbox_ack(ids[1], node(2)).await.unwrap().is_none());
    assert!(store
        .outbox_for_peer(node(2))
        .await
        .unwrap()
        .iter()
        .all(|e| e.envelope_id != ids[1]));
    let msg = store.message(msg.message_id).await.unwrap().unwrap();
    assert_eq!(msg.status, MessageStatus::Delivered);
}

#[tokio::test]
async fn an_envelope_is_given_up_after_the_retry_age_and_its_message_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let t0 = now_ms();
    let (message, id) = send_dm(&store, node(1), "into the void".into(), t0)
        .await
        .unwrap();
    let entry = record_attempt(
        &store,
        id,
        SendAttempt::Failed("timeout".into()),
        t0 + MAX_RETRY_AGE_MS,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(entry.status, OutboxStatus::Failed);
    assert!(store
        .due_outbox(t0 + 2 * MAX_RETRY_AGE_MS, 10)
        .await
        .unwrap()
        .is_empty());
    let message = store.message(message.message_id).await.unwrap().unwrap();
    assert_eq!(message.status, MessageStatus::Failed);
}

#[tokio::test]
async fn blocking_a_peer_drops_its_queue_and_refuses_new_sends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let t0 = now_ms();
    let (m1, _) = send_dm(&store, node(1), "a".into(), t0).await.unwrap();
    send_dm(&store, node(2), "b".into(), t0).await.unwrap();
    assert_eq!(
        block_only(&store, &[node(1)]).await,
        [storage::NewlyBlocked {
            peer: node(1),
            failed: vec![m1.message_id]
        }]
    );
    assert_eq!(store.due_outbox(t0, 10).await.unwrap().len(), 1);
    assert_eq!(
        store.message(m1.message_id).await.unwrap().unwrap().status,
        MessageStatus::Failed
    );
    assert!(matches!(
        send_dm(&store, node(1), "c".into(), t0).await,
        Err(StoreError::Blocked(_))
    ));
    // It sticks across restarts.
    let path = store.path().to_path_buf();
    store.close().await.unwrap();
    let store = Store::open(&path).await.unwrap();
    let peers = store.peers().await.unwrap();
    assert!(peers.iter().any(|p| p.peer_id == node(1) && p.blocked));
}

#[tokio::test]
async fn group_messages_fan_out_by_cursor_and_are_delivered_when_all_acked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let t0 = now_ms();
    let group = store
        .create_group(
            NewGroup {
                name: "Team".into(),
                announcement: String::new(),
                members: vec![node(1), node(2)],
            },
            t0,
            upsert_envelope,
        )
        .await
        .unwrap();
    let gid = group.state.global_group_id;
    assert_eq!(group.state.member_ids(), vec![node(0), node(1), node(2)]);
    assert_eq!(group.conversation_id, ConversationId::group(&gid));
    // The upsert is queued to both members.
    assert_eq!(store.due_outbox(t0, 10).await.unwrap().len(), 2);
    assert!(store.due_group_deliveries(t0, 10).await.unwrap().is_empty());

    let unknown = send_group(&store, storage::GlobalGroupId::new(), "lost".into(), t0)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound { .. }),
        "{unknown:?}"
    );
    let a = send_group(&store, gid, "first".into(), t0).await.unwrap();
    let b = send_group(&store, gid, "second".into(), t0 + 1)
        .await
        .unwrap();
    let due = store.due_group_deliveries(t0 + 1, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    for d in &due {
        let ids: Vec<_> = d.messages.iter().map(|m| m.message_id).collect();
        assert_eq!(ids, vec![a.message_id, b.message_id]);
    }
    store
        .record_group_attempt(gid, node(1), SendAttempt::Sent, t0 + 1)
        .await
        .unwrap();
    assert_eq!(
        store.message(a.message_id).await.unwrap().unwrap().status,
        MessageStatus::Sent
    );
    // Only node 2 is due now: node 1 waits for its acks.
    let due = store.due_group_deliveries(t0 + 1, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.peer_id.clone()).collect::<Vec<_>>(),
        vec![node(2)]
    );

    // Out of order ack is ignored; in order acks advance.
    let acked = |peer: u8, id: storage::MessageId, at: i64| {
        let store = store.clone();
        async move {
            member_acks(&store, gid, node(peer), vec![id], at)
                .await
                .unwrap()
        }
    };
    assert!(acked(1, b.message_id, t0 + 2).await.is_empty());
    assert_eq!(acked(1, a.message_id, t0 + 2).await, [a.message_id]);
    assert_eq!(acked(1, b.message_id, t0 + 2).await, [b.message_id]);
    assert_eq!(
        store.message(a.message_id).await.unwrap().unwrap().status,
        MessageStatus::Sent
    );
    assert_eq!(acked(2, a.message_id, t0 + 3).await, [a.message_id]);
    assert_eq!(
        store.message(a.message_id).await.unwrap().unwrap().status,
        MessageStatus::Delivered
    );
    assert_eq!(
        store.message(b.message_id).await.unwrap().unwrap().status,
        MessageStatus::Sent
    );
    let due = store.due_group_deliveries(t0 + 3, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].messages.len(), 1);

    // A member added later gets messages from then on, not the backlog.
    store
        .record_peer_sighting(storage::PeerSighting {
            peer_id: node(3),
            display_name: "Late".into(),
            ip: "10.0.0.3".into(),
            port: 1,
            capabilities: "[]".into(),
            seen_at: t0,
        })
        .await
        .unwrap();
    let edited = store
        .edit_group(
            gid,
            GroupEdit {
                members: Some(vec![node(1), node(2), node(3)]),
                ..GroupEdit::default()
            },
            t0 + 4,
            upsert_envelope,
        )
        .await
        .unwrap();
    assert!(edited.state.is_member(&node(3)));
    let c = send_group(&store, gid, "third".into(), t0 + 5)
        .await
        .unwrap();
    let due = store.due_group_deliveries(t0 + 5, 10).await.unwrap();
    let for3 = due.iter().find(|d| d.peer_id == node(3)).unwrap();
    assert_eq!(
        for3.messages
            .iter()
            .map(|m| m.message_id)
            .collect::<Vec<_>>(),
        vec![c.message_id]
    );
}

fn stamp(offset: u64, editor: u8) -> Stamp {
    Stamp {
        hlc: Hlc::from_wall_ms(u64::try_from(now_ms()).unwrap()).raw() / 1_000_000 * 1_000_000
            + offset,
        editor: node(editor),
    }
}

/// The group node 1 founded with nodes 0 (this store) and 2.
fn founded(gid: storage::GlobalGroupId) -> GroupState {
    GroupState::create(gid, &stamp(1, 1), "Base", "", &[node(0), node(2)])
}

async fn receive(store: &Store, from: u8, state: GroupState) -> Result<InboundOutcome, StoreError> {
    let envelope = InboundEnvelope {
        envelope_id: EnvelopeId::new(),
        from_peer_id: node(from),
        received_at: now_ms(),
        sender_clock_offset_ms: Some(0),
    };
    store
        .apply_inbound(envelope, InboundEffect::GroupUpsert(state))
        .await
}

#[tokio::test]
async fn concurrent_group_edits_converge_whatever_the_arrival_order() {
    let gid = storage::GlobalGroupId::new();
    let base = founded(gid);
    // Node 2 leaves while the owner renames and adds node 3.
    let mut from_two = base.clone();
    from_two.set_member(&node(2), false, &stamp(2, 2));
    let mut from_one = base.clone();
    from_one.set_name("From one", &stamp(2, 1));
    from_one.set_member(&node(3), true, &stamp(2, 1));
    let updates = [(1u8, base), (2u8, from_two), (1u8, from_one)];
    let mut finals = Vec::new();
    for order in [[0, 1, 2], [0, 2, 1], [2, 1, 0], [1, 2, 0]] {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with_peers(&db_path(&dir), 3).await;
        for i in order {
            let (from, s) = &updates[i];
            receive(&store, *from, s.clone()).await.unwrap();
        }
        finals.push(store.group(gid).await.unwrap().unwrap().state);
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]), "{finals:#?}");
    assert_eq!(finals[0].name(), "From one");
    assert!(!finals[0].is_member(&node(2)), "the leave survives");
    assert!(
        finals[0].is_member(&node(3)),
        "the concurrent member change survives"
    );
}

#[tokio::test]
async fn forged_and_outsider_group_edits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 3).await;
    let gid = storage::GlobalGroupId::new();
    // Node 3 is not a member of the state it sends.
    let err = receive(&store, 3, founded(gid)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "from_peer_id",
                ..
            }
        ),
        "{err:?}"
    );
    // Node 2, a member, adds node 3 itself: only the owner writes member entries.
    let mut forged = founded(gid);
    forged.set_member(&node(3), true, &stamp(5, 2));
    let err = receive(&store, 2, forged).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "group state",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(store.group(gid).await.unwrap().is_none());
    // Node 2 renames: only the owner writes names.
    let mut forged = founded(gid);
    forged.set_name("Mine now", &stamp(5, 2));
    assert!(receive(&store, 2, forged).await.is_err());
    assert!(store.group(gid).await.unwrap().is_none());
    // The owner's own state is taken; a state naming another owner for it is not.
    assert!(matches!(
        receive(&store, 1, founded(gid)).await.unwrap(),
        InboundOutcome::GroupUpdated { .. }
    ));
    let other_owner = GroupState::create(gid, &stamp(9, 2), "Mine", "", &[node(0), node(1)]);
    assert!(receive(&store, 2, other_owner).await.is_err());
    assert_eq!(
        store.group(gid).await.unwrap().unwrap().state.name(),
        "Base"
    );
}

#[tokio::test]
async fn removing_a_member_stops_its_deliveries_and_tells_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let t0 = now_ms();
    let group = store
        .create_group(
            NewGroup {
                name: "Pair".into(),
                announcement: "hello".into(),
                members: vec![node(1), node(2)],
            },
            t0,
            upsert_envelope,
        )
        .await
        .unwrap();
    let gid = group.state.global_group_id;
    for e in store.due_outbox(t0, 10).await.unwrap() {
        store.outbox_ack(e.envelope_id, e.peer_id).await.unwrap();
    }
    let edited = store
        .edit_group(
            gid,
            GroupEdit {
                members: Some(vec![node(1)]),
                announcement: Some("just us".into()),
                ..GroupEdit::default()
            },
            t0 + 1,
            upsert_envelope,
        )
        .await
        .unwrap();
    assert_eq!(edited.state.member_ids(), vec![node(0), node(1)]);
    assert_eq!(edited.state.announcement(), "just us");
    // Both the remaining and the removed member hear about the change.
    let told: Vec<_> = store
        .due_outbox(t0 + 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.peer_id, e.kind))
        .collect();
    assert_eq!(
        told,
        vec![
            (node(1), "group.upsert".to_string()),
            (node(2), "group.upsert".to_string())
        ]
    );
    send_group(&store, gid, "after".into(), t0 + 2)
        .await
        .unwrap();
    let due = store.due_group_deliveries(t0 + 2, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.peer_id.clone()).collect::<Vec<_>>(),
        vec![node(1)]
    );
    let conversations = store.conversations().await.unwrap();
    assert_eq!(conversations[0].name, "Pair");
    assert_eq!(
        conversations[0].last_message.as_ref().unwrap().body,
        "after"
    );
}

#[tokio::test]
async fn a_failed_message_is_queued_again_by_retry_under_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let t0 = now_ms();
    let conv = ConversationId::dm(&node(1));
    let (message, first) = send_dm(&store, node(1), "try again".into(), t0)
        .await
        .unwrap();
    // Still pending: nothing to retry.
    assert!(matches!(
        store
            .retry_message(conv.clone(), message.message_id, t0, dm_envelope)
            .await,
        Err(StoreError::NotFailed {
            status: "pending",
            ..
        })
    ));
    record_attempt(
        &store,
        first,
        SendAttempt::Failed("timeout".into()),
        t0 + MAX_RETRY_AGE_MS,
    )
    .await
    .unwrap();
    let failed = store.message(message.message_id).await.unwrap().unwrap();
    assert_eq!(failed.status, MessageStatus::Failed);

    let t1 = t0 + MAX_RETRY_AGE_MS + 1_000;
    let retried = store
        .retry_message(conv.clone(), message.message_id, t1, dm_envelope)
        .await
        .unwrap();
    assert_eq!(retried.status, MessageStatus::Pending);
    assert_eq!(retried.message_id, message.message_id);
    assert_eq!(
        retried.order_key(),
        message.order_key(),
        "keeps its place in the conversation"
    );
    assert_eq!(
        store.message(message.message_id).await.unwrap().unwrap(),
        retried,
        "stored as returned"
    );
    // The given-up envelope is replaced by one new envelope, due at once.
    let queued = store.outbox_for_peer(node(1)).await.unwrap();
    assert_eq!(queued.len(), 1);
    let again = &queued[0];
    assert_ne!(again.envelope_id, first);
    assert_eq!(again.message_id, Some(message.message_id));
    assert_eq!(again.status, OutboxStatus::Pending);
    assert_eq!(again.retry_count, 0);
    assert_eq!(again.created_at, t1);
    assert_eq!(again.payload, dm_envelope(&message).payload);
    let due = store.due_outbox(t1, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].envelope_id, again.envelope_id);
    // Its ack delivers the message.
    assert!(store
        .outbox_ack(again.envelope_id, node(1))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .message(message.message_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        MessageStatus::Delivered
    );
    assert!(matches!(
        store
            .retry_message(conv.clone(), message.message_id, t1, dm_envelope)
            .await,
        Err(StoreError::NotFailed {
            status: "delivered",
            ..
        })
    ));
}

#[tokio::test]
async fn retry_refuses_other_conversations_inbound_messages_and_blocked_peers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let t0 = now_ms();
    let (message, _) = send_dm(&store, node(2), "blocked later".into(), t0)
        .await
        .unwrap();
    // Blocking fails it; while blocked it cannot be queued again.
    block_only(&store, &[node(2)]).await;
    let conv = ConversationId::dm(&node(2));
    assert!(matches!(
        store
            .retry_message(conv.clone(), message.message_id, t0, dm_envelope)
            .await,
        Err(StoreError::Blocked(_))
    ));
    assert!(matches!(
        store
            .retry_message(
                ConversationId::dm(&node(1)),
                message.message_id,
                t0,
                dm_envelope
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .retry_message(conv.clone(), storage::MessageId::new(), t0, dm_envelope)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    block_only(&store, &[]).await;
    let retried = store
        .retry_message(conv, message.message_id, t0, dm_envelope)
        .await
        .unwrap();
    assert_eq!(retried.status, MessageStatus::Pending);
    assert_eq!(store.outbox_for_peer(node(2)).await.unwrap().len(), 1);

    // Somebody else's message is not ours to resend.
    let (envelope, effect) = inbound_dm(1, "from peer 1");
    store.apply_inbound(envelope, effect.clone()).await.unwrap();
    let InboundEffect::DirectMessage(inbound) = effect else {
        unreachable!()
    };
    assert!(matches!(
        store
            .retry_message(
                ConversationId::dm(&node(1)),
                inbound.message_id,
                t0,
                dm_envelope
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn acks_in_any_order_move_a_cursor_without_gaps_and_links_make_it_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let t0 = now_ms();
    let group = store
        .create_group(
            NewGroup {
                name: "Team".into(),
                announcement: String::new(),
                members: vec![node(1), node(2)],
            },
            t0,
            upsert_envelope,
        )
        .await
        .unwrap();
    let gid = group.state.global_group_id;
    assert_eq!(store.next_group_delivery_due_at().await.unwrap(), None);
    let mut sent = Vec::new();
    for i in 0..4 {
        let m = send_group(&store, gid, format!("m{i}"), t0 + i)
            .await
            .unwrap();
        sent.push(m.message_id);
    }
    assert!(store.next_group_delivery_due_at().await.unwrap().is_some());
    // Acks for 3 and 1 came first: nothing moves (0 is still owed).
    let consumed = member_acks(&store, gid, node(1), vec![sent[3], sent[1]], t0 + 5)
        .await
        .unwrap();
    assert!(consumed.is_empty());
    // 0 arrives: the cursor moves over 0 and 1, stops before the gap at 2.
    let consumed = member_acks(
        &store,
        gid,
        node(1),
        vec![sent[3], sent[1], sent[0]],
        t0 + 5,
    )
    .await
    .unwrap();
    assert_eq!(consumed, vec![sent[0], sent[1]]);
    let consumed = member_acks(&store, gid, node(1), vec![sent[3], sent[2]], t0 + 5)
        .await
        .unwrap();
    assert_eq!(consumed, vec![sent[2], sent[3]]);
    let due = store.due_group_deliveries(t0 + 5, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.peer_id.clone()).collect::<Vec<_>>(),
        vec![node(2)]
    );

    // Node 2 backs off after an attempt; its link coming up makes it due at once.
    store
        .record_group_attempt(gid, node(2), SendAttempt::Failed("offline".into()), t0 + 5)
        .await
        .unwrap();
    assert!(store
        .due_group_deliveries(t0 + 5, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .group_deliveries_due_now(node(2), t0 + 6)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.due_group_deliveries(t0 + 6, 10).await.unwrap().len(),
        1
    );
}

/// A member back after more than the dedupe window still gets the group messages its
/// cursor resent (a sender never gives them up), while an old DM envelope is expired.
#[tokio::test]
async fn old_group_messages_are_not_expired_like_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let now = now_ms();
    let gid = storage::GlobalGroupId::new();
    assert_eq!(
        receive(&store, 1, founded(gid)).await.unwrap(),
        InboundOutcome::GroupUpdated {
            announcement_changed: false
        }
    );
    let old = now - MAX_RETRY_AGE_MS - MAX_OFFSET_ERROR_MS - 60_000;
    let id = Ulid::from_parts(u64::try_from(old).unwrap(), 7);
    let message = storage::InboundMessage {
        signature: None,
        message_id: storage::MessageId::from_ulid(id),
        body: "from long ago".into(),
        sent_at: old,
        hlc: storage::Hlc::from_raw(u64::try_from(old).unwrap() << 16),
    };
    let envelope = InboundEnvelope {
        envelope_id: EnvelopeId::from_ulid(id),
        from_peer_id: node(1),
        received_at: now,
        sender_clock_offset_ms: Some(0),
    };
    let effect = InboundEffect::GroupMessage {
        global_group_id: gid,
        message,
    };
    assert!(matches!(
        store
            .apply_inbound(envelope.clone(), effect.clone())
            .await
            .unwrap(),
        InboundOutcome::Applied(_)
    ));
    assert_eq!(
        store.apply_inbound(envelope, effect).await.unwrap(),
        InboundOutcome::Duplicate
    );
    assert_eq!(history_len(&store, ConversationId::group(&gid)).await, 1);
}

/// With auto-accept off a new group waits as an invitation; declined, it stays out until
/// the owner adds this node again; accepted, it is joined with its latest state.
#[tokio::test]
async fn invitations_wait_close_on_decline_and_reopen_when_added_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 3).await;
    store.set_group_auto_accept(false).await.unwrap();
    let gid = storage::GlobalGroupId::new();
    let mut state = founded(gid);
    assert_eq!(
        receive(&store, 1, state.clone()).await.unwrap(),
        InboundOutcome::GroupInvitation
    );
    assert!(store.group(gid).await.unwrap().is_none());
    let open = store.group_invitations().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].from_peer_id, node(1));

    // Declined: this node's leaving goes to the members; later changes are ignored.
    store
        .decline_group_invitation(gid, now_ms(), upsert_envelope)
        .await
        .unwrap();
    assert!(store.group_invitations().await.unwrap().is_empty());
    let told: Vec<_> = store
        .due_outbox(now_ms(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.peer_id)
        .collect();
    assert_eq!(told, vec![node(1), node(2)]);
    state.set_name("renamed", &stamp(5, 1));
    assert_eq!(
        receive(&store, 1, state.clone()).await.unwrap(),
        InboundOutcome::Stale
    );
    assert!(store.group_invitations().await.unwrap().is_empty());

    // The owner adds this node again, after its leaving: open again.
    // (A stamp well after the leaving, which was stamped moments ago.)
    state.set_member(&node(0), true, &stamp(100_000_000, 1));
    assert_eq!(
        receive(&store, 1, state).await.unwrap(),
        InboundOutcome::GroupInvitation
    );
    let open = store.group_invitations().await.unwrap();
    assert_eq!(open.len(), 1);
    let group = store.accept_group_invitation(gid, now_ms()).await.unwrap();
    assert_eq!(group.state.name(), "renamed");
    assert!(group.state.is_member(&node(0)));
    assert!(store.group_invitations().await.unwrap().is_empty());
    assert!(store.accept_group_invitation(gid, now_ms()).await.is_err());
}
