//! Read positions and read receipts (docs/STORAGE.md, "Read receipts").

use chat_core::receipts::RECEIPT_DELAY_MS;
use storage::{
    ConversationId, EnvelopeId, GlobalGroupId, GroupState, Hlc, InboundEffect, InboundEnvelope,
    InboundOutcome, MessageId, NewGroup, OrderKey, OutgoingEnvelope, Store, StoreError,
};

use crate::{db_path, inbound_dm, node, now_ms, open_with_peers, send_dm, send_group};

pub fn receipt_envelope(group: Option<&GlobalGroupId>, up_to: &OrderKey) -> OutgoingEnvelope {
    OutgoingEnvelope {
        kind: "receipt.read".into(),
        payload: format!(
            "{{\"group\":{:?},\"up_to\":\"{}\"}}",
            group.map(|g| g.to_string()),
            up_to.message_id
        )
        .into_bytes(),
    }
}

fn upsert_envelope(_: &GroupState) -> OutgoingEnvelope {
    OutgoingEnvelope {
        kind: "group.upsert".into(),
        payload: b"{}".to_vec(),
    }
}

fn receipt(
    from: u8,
    group: Option<GlobalGroupId>,
    up_to: OrderKey,
) -> (InboundEnvelope, InboundEffect) {
    (
        InboundEnvelope {
            envelope_id: EnvelopeId::new(),
            from_peer_id: node(from),
            received_at: now_ms(),
            sender_clock_offset_ms: Some(0),
        },
        InboundEffect::ReadReceipt {
            global_group_id: group,
            up_to,
        },
    )
}

async fn receive_dm(store: &Store, from: u8, body: &str) {
    let (env, effect) = inbound_dm(from, body);
    store.apply_inbound(env, effect).await.unwrap();
}

async fn receipts_queued_for(store: &Store, peer: u8) -> Vec<storage::OutboxEntry> {
    store
        .outbox_for_peer(node(peer))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "receipt.read")
        .collect()
}

#[tokio::test]
async fn marking_read_queues_one_delayed_receipt_however_many_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let dm = ConversationId::dm(&node(1));
    receive_dm(&store, 1, "first").await;
    let now = now_ms();
    let marked = store
        .mark_read_with_receipts(dm.clone(), true, now, receipt_envelope)
        .await
        .unwrap();
    assert_eq!(marked.receipts_queued, 1);
    let queued = receipts_queued_for(&store, 1).await;
    assert_eq!(queued.len(), 1);
    // Debounced: not due before the delay.
    assert!(queued[0].next_retry_at >= now + RECEIPT_DELAY_MS);
    // Nothing new read: nothing queued.
    let again = store
        .mark_read_with_receipts(dm.clone(), true, now_ms(), receipt_envelope)
        .await
        .unwrap();
    assert_eq!((again.receipts_queued, again.moved_to), (0, None));

    // Fifty more, read at once: the waiting receipt is replaced by one that covers all.
    for i in 0..50 {
        receive_dm(&store, 1, &format!("message {i}")).await;
    }
    let marked = store
        .mark_read_with_receipts(dm.clone(), true, now_ms(), receipt_envelope)
        .await
        .unwrap();
    assert_eq!(marked.receipts_queued, 1);
    let queued = receipts_queued_for(&store, 1).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    let newest = store
        .history(
            dm.clone(),
            storage::HistoryQuery {
                before: None,
                limit: 1,
            },
        )
        .await
        .unwrap()
        .messages[0]
        .order_key();
    assert_eq!(marked.moved_to, Some(newest));
    let payload = String::from_utf8(queued[0].payload.clone()).unwrap();
    assert!(
        payload.contains(&newest.message_id.to_string()),
        "{payload}"
    );
    let state = store.read_state(dm).await.unwrap();
    assert_eq!(state.position_of(&node(0)), Some(newest));
}

#[tokio::test]
async fn with_receipts_off_the_position_moves_and_nothing_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let dm = ConversationId::dm(&node(1));
    receive_dm(&store, 1, "hello").await;
    let marked = store
        .mark_read_with_receipts(dm.clone(), false, now_ms(), receipt_envelope)
        .await
        .unwrap();
    assert_eq!(marked.receipts_queued, 0);
    assert!(marked.moved_to.is_some());
    assert!(receipts_queued_for(&store, 1).await.is_empty());
    assert_eq!(store.conversations().await.unwrap()[0].unread, 0);
}

#[tokio::test]
async fn a_receipt_moves_the_readers_position_forward_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let (first, _) = send_dm(&store, node(1), "one".into(), now_ms())
        .await
        .unwrap();
    let (second, _) = send_dm(&store, node(1), "two".into(), now_ms())
        .await
        .unwrap();
    let dm = ConversationId::dm(&node(1));
    let (env, effect) = receipt(1, None, second.order_key());
    let outcome = store.apply_inbound(env, effect).await.unwrap();
    assert_eq!(
        outcome,
        InboundOutcome::ReadReceipt {
            conversation_id: dm.clone(),
            up_to: second.order_key(),
            moved: true
        }
    );
    // The same position again (a resend under a new envelope id), or an older one that
    // arrived late: nothing moves.
    for key in [second.order_key(), first.order_key()] {
        let (env, effect) = receipt(1, None, key);
        assert!(matches!(
            store.apply_inbound(env, effect).await.unwrap(),
            InboundOutcome::ReadReceipt { moved: false, .. }
        ));
    }
    // A duplicate envelope is deduped like any other.
    let (env, effect) = receipt(1, None, second.order_key());
    store
        .apply_inbound(env.clone(), effect.clone())
        .await
        .unwrap();
    assert_eq!(
        store.apply_inbound(env, effect).await.unwrap(),
        InboundOutcome::Duplicate
    );
    let state = store.read_state(dm).await.unwrap();
    assert_eq!(state.position_of(&node(1)), Some(second.order_key()));
    assert!(state.members.is_empty());
}

#[tokio::test]
async fn receipts_for_conversations_the_sender_is_not_in_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 3).await;
    let key = OrderKey {
        hlc: Hlc::from_wall_ms(now_ms() as u64),
        message_id: MessageId::new(),
    };
    // No DM with node 2 here.
    let (env, effect) = receipt(2, None, key);
    assert!(matches!(
        store.apply_inbound(env, effect).await,
        Err(StoreError::Invalid { .. })
    ));
    // A group of 0, 1 and 2: node 3 is not a member; an unknown group is unknown.
    let group = store
        .create_group(
            NewGroup {
                name: "Team".into(),
                announcement: String::new(),
                members: vec![node(1), node(2)],
            },
            now_ms(),
            upsert_envelope,
        )
        .await
        .unwrap();
    let gid = group.state.global_group_id;
    let (env, effect) = receipt(3, Some(gid), key);
    assert!(matches!(
        store.apply_inbound(env, effect).await,
        Err(StoreError::Invalid { .. })
    ));
    let (env, effect) = receipt(1, Some(GlobalGroupId::new()), key);
    assert!(matches!(
        store.apply_inbound(env, effect).await,
        Err(StoreError::NotFound { .. })
    ));
    // Nothing was stored for them.
    let state = store.read_state(ConversationId::group(&gid)).await.unwrap();
    assert!(state.positions.is_empty());
    assert_eq!(state.members, vec![node(0), node(1), node(2)]);
    // A member's receipt is applied.
    let (env, effect) = receipt(2, Some(gid), key);
    assert!(matches!(
        store.apply_inbound(env, effect).await.unwrap(),
        InboundOutcome::ReadReceipt { moved: true, .. }
    ));
}

#[tokio::test]
async fn reading_a_group_queues_one_receipt_per_other_member() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let group = store
        .create_group(
            NewGroup {
                name: "Team".into(),
                announcement: String::new(),
                members: vec![node(1), node(2)],
            },
            now_ms(),
            upsert_envelope,
        )
        .await
        .unwrap();
    let gid = group.state.global_group_id;
    let conversation = ConversationId::group(&gid);
    // Only own messages: nothing to acknowledge.
    send_group(&store, gid, "mine".into(), now_ms())
        .await
        .unwrap();
    let marked = store
        .mark_read_with_receipts(conversation.clone(), true, now_ms(), receipt_envelope)
        .await
        .unwrap();
    assert_eq!(marked.receipts_queued, 0);
    // A member's message arrives; reading it tells both other members.
    let now = now_ms();
    store
        .apply_inbound(
            InboundEnvelope {
                envelope_id: EnvelopeId::new(),
                from_peer_id: node(1),
                received_at: now,
                sender_clock_offset_ms: Some(0),
            },
            InboundEffect::GroupMessage {
                global_group_id: gid,
                message: storage::InboundMessage {
                    message_id: MessageId::new(),
                    body: "theirs".into(),
                    sent_at: now,
                    hlc: Hlc::from_wall_ms(now as u64 + 1),
                    signature: None,
                },
            },
        )
        .await
        .unwrap();
    let marked = store
        .mark_read_with_receipts(conversation, true, now_ms(), receipt_envelope)
        .await
        .unwrap();
    assert_eq!(marked.receipts_queued, 2);
    assert_eq!(receipts_queued_for(&store, 1).await.len(), 1);
    assert_eq!(receipts_queued_for(&store, 2).await.len(), 1);
}
