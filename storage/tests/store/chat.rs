use storage::{
    ConversationId, ConversationKind, HistoryQuery, MessageStatus, Store, StoreError, UserId,
    UserKind, MAX_BODY_BYTES,
};

use crate::{db_path, dm_envelope, inbound_dm, node, now_ms, open_with_peers, send_dm};

#[tokio::test]
async fn a_dm_can_be_opened_before_any_message_and_lists_with_the_peer_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let id = store.open_direct(node(1), now_ms()).await.unwrap();
    assert_eq!(id.as_str(), format!("dm:lan:{}", node(1)));
    let list = store.conversations().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].kind, ConversationKind::Direct);
    assert_eq!(list[0].name, "Peer 1");
    assert_eq!(list[0].last_message, None);
    assert_eq!(list[0].unread, 0);
    let err = store.open_direct(node(9), now_ms()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "peer", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn users_are_the_local_user_and_virtual_lan_users() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let users = store.users().await.unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users[0].kind, UserKind::Local);
    assert_eq!(users[0].user_id, UserId::lan(&node(0)));
    assert_eq!(users[1].user_id.as_str(), format!("lan:{}", node(1)));
    assert_eq!(users[1].last_address, Some(("10.0.0.1".to_string(), 19123)));
    assert!(users[1].online);
    store.set_peer_offline(node(1), now_ms()).await.unwrap();
    let users = store.users().await.unwrap();
    assert!(!users[1].online);
    // Peers are offline after a restart until discovery sees them again.
    let path = store.path().to_path_buf();
    store.close().await.unwrap();
    let store = Store::open(&path).await.unwrap();
    assert!(store.peers().await.unwrap().iter().all(|p| !p.online));
}

#[tokio::test]
async fn sending_unread_and_mark_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let (sent, _) = send_dm(&store, node(1), "hi there".into(), now_ms())
        .await
        .unwrap();
    assert_eq!(sent.status, MessageStatus::Pending);
    assert_eq!(sent.sender, UserId::lan(&node(0)));
    let (via_id, entry) = store
        .send_message_queued(
            ConversationId::dm(&node(1)),
            "by conversation id".into(),
            now_ms(),
            dm_envelope,
        )
        .await
        .unwrap();
    assert_eq!(via_id.conversation_id, ConversationId::dm(&node(1)));
    assert_eq!(entry.map(|e| e.message_id), Some(Some(via_id.message_id)));
    assert_eq!(store.outbox_for_peer(node(1)).await.unwrap().len(), 2);
    for text in ["one", "two"] {
        let (env, effect) = inbound_dm(1, text);
        store.apply_inbound(env, effect).await.unwrap();
    }
    let list = store.conversations().await.unwrap();
    assert_eq!(list[0].unread, 2, "own messages are not unread");
    assert_eq!(list[0].last_message.as_ref().unwrap().body, "two");
    store
        .mark_read(list[0].conversation_id.clone())
        .await
        .unwrap();
    assert_eq!(store.conversations().await.unwrap()[0].unread, 0);
    let missing: ConversationId = format!("dm:lan:{}", node(7)).parse().unwrap();
    assert!(matches!(
        store.mark_read(missing).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn history_pages_newest_last_without_gaps_or_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let t0 = now_ms();
    for i in 0..23 {
        send_dm(&store, node(1), format!("m{i}"), t0 + i)
            .await
            .unwrap();
    }
    let conv = ConversationId::dm(&node(1));
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .history(conv.clone(), HistoryQuery { before, limit: 10 })
            .await
            .unwrap();
        let bodies: Vec<String> = page.messages.iter().map(|m| m.body.clone()).collect();
        seen.splice(0..0, bodies);
        match page.older {
            Some(key) => before = Some(key),
            None => break,
        }
    }
    let expected: Vec<String> = (0..23).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    for text in [
        "".to_string(),
        "   ".to_string(),
        "x".repeat(MAX_BODY_BYTES + 1),
    ] {
        let err = send_dm(&store, node(1), text, now_ms()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid { field: "text", .. }),
            "{err:?}"
        );
    }
    let err = send_dm(&store, node(5), "to nobody".into(), now_ms())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store
        .set_local_identity(node(3), "Impostor".into(), now_ms())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdentityMismatch { .. }),
        "{err:?}"
    );
    let err = store
        .record_peer_sighting(storage::PeerSighting {
            peer_id: node(0),
            display_name: "me again".into(),
            ip: "10.0.0.9".into(),
            port: 1,
            capabilities: "[]".into(),
            seen_at: now_ms(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(store.outbox_for_peer(node(1)).await.unwrap().is_empty());
    let page = store
        .history(
            ConversationId::dm(&node(1)),
            HistoryQuery {
                before: None,
                limit: 10,
            },
        )
        .await;
    // The DM was opened by the first attempt's transaction only if it committed: it did
    // not, so the conversation does not exist either.
    assert!(matches!(page, Err(StoreError::NotFound { .. })), "{page:?}");
}

#[tokio::test]
async fn sending_needs_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let err = send_dm(&store, node(1), "hi".into(), now_ms())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. } | StoreError::NoIdentity),
        "{err:?}"
    );
}

#[tokio::test]
async fn after_close_writes_are_refused_and_the_file_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open_with_peers(&path, 1).await;
    let other = store.clone();
    let (sent, _) = send_dm(&store, node(1), "before close".into(), now_ms())
        .await
        .unwrap();
    store.close().await.unwrap();
    let err = send_dm(&other, node(1), "after close".into(), now_ms())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    drop(other);
    let reopened = Store::open(&path).await.unwrap();
    assert_eq!(
        reopened
            .message(sent.message_id)
            .await
            .unwrap()
            .unwrap()
            .body,
        "before close"
    );
}
