//! Group catch-up support: range keys and fingerprints, relay reads, relayed apply.

use storage::{
    ConversationId, EnvelopeId, Fingerprint, GlobalGroupId, GroupState, Hlc, InboundEffect,
    InboundEnvelope, InboundMessage, InboundOutcome, KeyRange, MessageId, MessageStatus, OrderKey,
    RelayedMessage, Stamp, Store, StoreError, UserId, MAX_OFFSET_ERROR_MS,
};

use crate::{block_only, db_path, node, now_ms, open_with_peers, send_group};

/// A group `node(1)` made with `members` (node 0 is this store), applied by upsert.
pub async fn group_with(store: &Store, members: Vec<api_types::NodeId>) -> GlobalGroupId {
    let gid = GlobalGroupId::new();
    let founded = Stamp {
        hlc: Hlc::from_wall_ms(u64::try_from(now_ms()).unwrap()).raw(),
        editor: node(1),
    };
    let state = GroupState::create(gid, &founded, "Team", "", &members);
    let envelope = InboundEnvelope {
        envelope_id: EnvelopeId::new(),
        from_peer_id: node(1),
        received_at: now_ms(),
        sender_clock_offset_ms: Some(0),
    };
    let outcome = store
        .apply_inbound(envelope, InboundEffect::GroupUpsert(state))
        .await
        .unwrap();
    assert!(
        matches!(outcome, InboundOutcome::GroupUpdated { .. }),
        "{outcome:?}"
    );
    gid
}

pub fn relayed(author: u8, hlc: u64, text: &str) -> RelayedMessage {
    RelayedMessage {
        signature: None,
        message_id: MessageId::new(),
        author: node(author),
        body: text.into(),
        sent_at: now_ms(),
        hlc: Hlc::from_raw(hlc),
    }
}

fn key_of(m: &RelayedMessage) -> OrderKey {
    m.order_key()
}

#[tokio::test]
async fn fingerprints_count_and_xor_the_messages_of_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 3).await;
    let gid = group_with(&store, vec![node(0), node(1), node(2)]).await;
    let base = (now_ms() as u64) << 16;
    let batch: Vec<RelayedMessage> = (0..20)
        .map(|i| relayed(1 + (i % 2) as u8, base + i, &format!("m{i}")))
        .collect();
    let outcome = store
        .apply_relayed(node(1), gid, batch.clone(), Default::default(), now_ms())
        .await
        .unwrap();
    assert_eq!(outcome.stored.len(), 20);
    // A message of another conversation never counts.
    let other = group_with(&store, vec![node(0), node(1)]).await;
    store
        .apply_relayed(
            node(1),
            other,
            vec![relayed(1, base + 5, "elsewhere")],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap();

    let all = store.group_sync_keys(gid, KeyRange::all()).await.unwrap();
    let expected: Vec<OrderKey> = batch.iter().map(key_of).collect();
    assert_eq!(all, expected);
    let fp_all = store.group_fingerprint(gid, KeyRange::all()).await.unwrap();
    assert_eq!(fp_all, content_fp(gid, &batch));
    assert_eq!(fp_all.count, 20);

    // [5, 12): seven messages; the two halves xor to the whole.
    let mid = KeyRange {
        lo: key_of(&batch[5]),
        hi: Some(key_of(&batch[12])),
    };
    let keys = store.group_sync_keys(gid, mid).await.unwrap();
    assert_eq!(keys, expected[5..12].to_vec());
    let fp_mid = store.group_fingerprint(gid, mid).await.unwrap();
    assert_eq!(fp_mid, content_fp(gid, &batch[5..12]));
    let below = KeyRange {
        lo: storage::min_key(),
        hi: Some(key_of(&batch[10])),
    };
    let above = KeyRange {
        lo: key_of(&batch[10]),
        hi: None,
    };
    let (b, a) = (
        store.group_fingerprint(gid, below).await.unwrap(),
        store.group_fingerprint(gid, above).await.unwrap(),
    );
    assert_eq!((b.count, a.count), (10, 10));
    assert_eq!(b.xor ^ a.xor, fp_all.xor);
    // The hash is stable across builds and platforms: the first 8 bytes of SHA-256 of
    // the 16 raw id bytes (computed independently, with Python's hashlib).
    let fixed = MessageId::from_ulid(ulid::Ulid(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef));
    assert_eq!(storage::message_hash(&fixed), 0x223e0a160af9da0a);

    // Relay reads only return this group's messages, with their authors.
    let mut ids: Vec<MessageId> = batch[..3].iter().map(|m| m.message_id).collect();
    ids.push(MessageId::new());
    let read = store.group_messages_for_relay(gid, ids).await.unwrap();
    assert_eq!(read, batch[..3].to_vec());
    let elsewhere = store
        .group_messages_for_relay(other, vec![batch[0].message_id])
        .await
        .unwrap();
    assert!(elsewhere.is_empty());
}

#[tokio::test]
async fn relayed_messages_keep_their_author_and_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 3).await;
    let gid = group_with(&store, vec![node(0), node(1), node(2)]).await;
    let base = (now_ms() as u64) << 16;
    let from_1 = relayed(1, base + 1, "from node 1");
    let own = relayed(0, base + 2, "written here");
    // Stamped by a clock days ahead: kept with its stamp all the same (tests/store/clocks.rs).
    let future = relayed(
        1,
        ((now_ms() + MAX_OFFSET_ERROR_MS + 60_000) as u64) << 16,
        "later",
    );
    let beyond = relayed(1, u64::MAX, "beyond any clock");
    // Node 2 relays node 1's message: node 1 stays its sender.
    let outcome = store
        .apply_relayed(
            node(2),
            gid,
            vec![from_1.clone(), own.clone(), future.clone(), beyond],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.stored.len(), 2);
    assert_eq!(outcome.skipped, 2);
    let kept = store.message(future.message_id).await.unwrap().unwrap();
    assert_eq!(kept.hlc, future.hlc, "the author's stamp, as it made it");
    let stored = store.message(from_1.message_id).await.unwrap().unwrap();
    assert_eq!(stored.sender, UserId::lan(&node(1)));
    assert_eq!(stored.conversation_id, ConversationId::group(&gid));
    assert_eq!(stored.status, MessageStatus::Delivered);
    assert_eq!(stored.hlc, from_1.hlc);
    assert!(store.message(own.message_id).await.unwrap().is_none());

    // Relayed again (by anyone): skipped.
    let again = store
        .apply_relayed(
            node(1),
            gid,
            vec![from_1.clone()],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!((again.stored.len(), again.skipped), (0, 1));
    // The author's own resend is a duplicate (its envelope id is the message id).
    let resend = InboundEnvelope {
        envelope_id: EnvelopeId::from_ulid(from_1.message_id.ulid()),
        from_peer_id: node(1),
        received_at: now_ms(),
        sender_clock_offset_ms: Some(0),
    };
    let effect = InboundEffect::GroupMessage {
        global_group_id: gid,
        message: InboundMessage {
            signature: None,
            message_id: from_1.message_id,
            body: from_1.body.clone(),
            sent_at: from_1.sent_at,
            hlc: from_1.hlc,
        },
    };
    assert_eq!(
        store.apply_inbound(resend, effect).await.unwrap(),
        InboundOutcome::Duplicate
    );
    // A local message sent now sorts after what was relayed (the clock observed it).
    let mine = send_group(&store, gid, "after".into(), now_ms() - 10_000)
        .await
        .unwrap();
    assert!(mine.hlc > from_1.hlc);
}

#[tokio::test]
async fn relays_are_refused_unless_both_ends_are_members() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 3).await;
    let base = (now_ms() as u64) << 16;
    let unknown = store
        .apply_relayed(
            node(1),
            GlobalGroupId::new(),
            vec![relayed(1, base, "x")],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound { .. }),
        "{unknown:?}"
    );
    // A group this node was removed from (a new group without it is not joined at all).
    let without_me = group_with(&store, vec![node(0), node(1), node(2)]).await;
    let mut removed = store.group(without_me).await.unwrap().unwrap().state;
    let later = Stamp {
        hlc: removed.max_hlc() + 1,
        editor: node(1),
    };
    removed.set_member(&node(0), false, &later);
    let envelope = InboundEnvelope {
        envelope_id: EnvelopeId::new(),
        from_peer_id: node(1),
        received_at: now_ms(),
        sender_clock_offset_ms: Some(0),
    };
    store
        .apply_inbound(envelope, InboundEffect::GroupUpsert(removed))
        .await
        .unwrap();
    let err = store
        .apply_relayed(
            node(1),
            without_me,
            vec![relayed(1, base, "x")],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    let without_3 = group_with(&store, vec![node(0), node(1)]).await;
    let err = store
        .apply_relayed(
            node(3),
            without_3,
            vec![relayed(1, base, "x")],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(store
        .group_sync_keys(without_3, KeyRange::all())
        .await
        .unwrap()
        .is_empty());
    // A blocked relay is refused; a blocked author's messages are skipped.
    let group = group_with(&store, vec![node(0), node(1), node(2)]).await;
    block_only(&store, &[node(2)]).await;
    let err = store
        .apply_relayed(
            node(2),
            group,
            vec![relayed(1, base, "x")],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Blocked(_)), "{err:?}");
    let outcome = store
        .apply_relayed(
            node(1),
            group,
            vec![relayed(2, base, "x")],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!((outcome.stored.len(), outcome.skipped), (0, 1));
}

/// The fingerprint of `messages` over their content, as docs/PROTOCOL.md defines it.
fn content_fp(group: storage::GlobalGroupId, messages: &[RelayedMessage]) -> Fingerprint {
    let mut fp = Fingerprint::default();
    for m in messages {
        fp.add_hash(storage::content_hash(&m.statement(&group)));
    }
    fp
}
