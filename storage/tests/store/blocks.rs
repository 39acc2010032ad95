//! Blocks come from the settings only (`Store::apply_blocks`); `peers.blocked` mirrors
//! them. What a blocked node wrote, or a node last seen in a blocked subnet, is refused
//! directly and when relayed, and hidden from history and search while the block holds.

use api_types::Cidr;
use storage::{BlockList, ConversationId, HistoryQuery, SearchQuery, Store, StoreError};

use crate::group_sync::{group_with, relayed};
use crate::{block_only, db_path, inbound_dm, node, now_ms, open_with_peers};

async fn texts(store: &Store, conversation: ConversationId) -> Vec<String> {
    let page = store
        .history(
            conversation,
            HistoryQuery {
                before: None,
                limit: 50,
            },
        )
        .await
        .unwrap();
    page.messages.into_iter().map(|m| m.body).collect()
}

async fn found(store: &Store, text: &str) -> usize {
    store
        .search(SearchQuery {
            text: text.into(),
            limit: 50,
            after: None,
        })
        .await
        .unwrap()
        .hits
        .len()
}

#[tokio::test]
async fn the_settings_list_is_the_block_and_applying_it_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 3).await;
    let began = block_only(&store, &[node(2), node(9)]).await;
    let peers: Vec<_> = began.iter().map(|b| b.peer.clone()).collect();
    assert_eq!(peers, [node(2)]);
    assert!(block_only(&store, &[node(2), node(9)]).await.is_empty());
    // A node never seen is listed, blocked, so that it can be unblocked...
    let listed = store.peers().await.unwrap();
    assert!(listed.iter().any(|p| p.peer_id == node(9) && p.blocked));
    // ... and its first sighting keeps it blocked.
    store
        .record_peer_sighting(storage::PeerSighting {
            peer_id: node(9),
            display_name: "Later".into(),
            ip: "10.0.0.9".into(),
            port: 19123,
            capabilities: "[]".into(),
            seen_at: now_ms(),
        })
        .await
        .unwrap();
    let listed = store.peers().await.unwrap();
    let mut blocked: Vec<_> = listed
        .iter()
        .filter(|p| p.blocked)
        .map(|p| p.peer_id.clone())
        .collect();
    blocked.sort();
    assert_eq!(blocked, [node(2), node(9)]);
    let (envelope, effect) = inbound_dm(2, "while blocked");
    assert!(matches!(
        store.apply_inbound(envelope, effect).await,
        Err(StoreError::Blocked(_))
    ));
    // A list without it lifts the block: nothing else remembers it.
    assert!(block_only(&store, &[node(9)]).await.is_empty());
    let (envelope, effect) = inbound_dm(2, "after the block");
    store.apply_inbound(envelope, effect).await.unwrap();
}

#[tokio::test]
async fn a_blocked_subnet_refuses_its_nodes_directly_and_relayed() {
    let dir = tempfile::tempdir().unwrap();
    // Peers 1..3 were last seen at 10.0.0.1 .. 10.0.0.3.
    let store = open_with_peers(&db_path(&dir), 3).await;
    let gid = group_with(&store, vec![node(0), node(1), node(2), node(3)]).await;
    let began = store
        .apply_blocks(BlockList {
            peers: Vec::new(),
            subnets: vec!["10.0.0.3/32".parse::<Cidr>().unwrap()],
        })
        .await
        .unwrap();
    assert_eq!(began.len(), 1);
    assert_eq!(began[0].peer, node(3));
    let (envelope, effect) = inbound_dm(3, "from the blocked subnet");
    assert!(matches!(
        store.apply_inbound(envelope, effect).await,
        Err(StoreError::Blocked(_))
    ));
    let base = (now_ms() as u64) << 16;
    let outcome = store
        .apply_relayed(
            node(1),
            gid,
            vec![
                relayed(3, base + 1, "relayed from 3"),
                relayed(2, base + 2, "relayed from 2"),
            ],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!((outcome.stored.len(), outcome.skipped), (1, 1));
    assert_eq!(
        texts(&store, ConversationId::group(&gid)).await,
        ["relayed from 2"]
    );
}

#[tokio::test]
async fn what_a_blocked_node_wrote_is_hidden_while_the_block_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let gid = group_with(&store, vec![node(0), node(1), node(2)]).await;
    let base = (now_ms() as u64) << 16;
    store
        .apply_relayed(
            node(1),
            gid,
            vec![
                relayed(1, base + 1, "quarterly numbers"),
                relayed(2, base + 2, "quarterly spam"),
            ],
            Default::default(),
            now_ms(),
        )
        .await
        .unwrap();
    let (envelope, effect) = inbound_dm(2, "direct quarterly spam");
    store.apply_inbound(envelope, effect).await.unwrap();
    assert_eq!(found(&store, "quarterly").await, 3);

    block_only(&store, &[node(2)]).await;
    assert_eq!(
        texts(&store, ConversationId::group(&gid)).await,
        ["quarterly numbers"]
    );
    assert!(texts(&store, ConversationId::dm(&node(2))).await.is_empty());
    assert_eq!(found(&store, "quarterly").await, 1);
    let conversations = store.conversations().await.unwrap();
    let dm = conversations
        .iter()
        .find(|c| c.conversation_id == ConversationId::dm(&node(2)))
        .unwrap();
    assert!(dm.last_message.is_none(), "{:?}", dm.last_message);

    // Nothing was deleted: lifting the block shows it all again.
    block_only(&store, &[]).await;
    assert_eq!(texts(&store, ConversationId::group(&gid)).await.len(), 2);
    assert_eq!(found(&store, "quarterly").await, 3);
}

#[tokio::test]
async fn a_block_follows_the_blocked_node_to_its_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    block_only(&store, &[node(2)]).await;
    // Node 2 announces that it is now node 7 (its old keys signed that, elsewhere).
    assert!(store.reattach_peer(node(2), node(7)).await.unwrap());
    let (envelope, effect) = inbound_dm(7, "new id, same person");
    assert!(matches!(
        store.apply_inbound(envelope, effect).await,
        Err(StoreError::Blocked(_))
    ));
    // The settings still name the old id only; applying them keeps the new one blocked.
    assert!(block_only(&store, &[node(2)]).await.is_empty());
    let (envelope, effect) = inbound_dm(7, "still blocked");
    assert!(matches!(
        store.apply_inbound(envelope, effect).await,
        Err(StoreError::Blocked(_))
    ));
    block_only(&store, &[]).await;
    let (envelope, effect) = inbound_dm(7, "unblocked");
    store.apply_inbound(envelope, effect).await.unwrap();
}
