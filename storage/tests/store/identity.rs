//! Identity changes: this node's own id moving to the one its keys derive, and a
//! colleague's earlier id re-attached to its new one, on a database of an earlier
//! schema (the frozen v5 fixture: a DM with history, a queued envelope, a group).

use rusqlite::Connection;
use storage::{ConversationId, GlobalGroupId, HistoryQuery, LocalChange, PeerReattach, Store};

use crate::{db_path, node, now_ms, sighting};

fn id(text: &str) -> api_types::NodeId {
    text.parse().unwrap()
}

async fn fixture(dir: &tempfile::TempDir) -> Store {
    let path = db_path(dir);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(include_str!("../fixtures/schema_v5.sql"))
        .unwrap();
    drop(conn);
    Store::open(&path).await.unwrap()
}

async fn texts(store: &Store, peer: &api_types::NodeId) -> Vec<String> {
    store
        .history(
            ConversationId::dm(peer),
            HistoryQuery {
                before: None,
                limit: 50,
            },
        )
        .await
        .map(|page| page.messages.into_iter().map(|m| m.body).collect())
        // No conversation with that id (yet): no history.
        .unwrap_or_default()
}

#[tokio::test]
async fn this_nodes_rows_move_to_its_new_id_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(&dir).await;
    let new = id("7ZZZZZZZZZZZZZZZZZZZZZZZ00");
    assert_eq!(
        store
            .change_local_identity(new.clone(), LocalChange::Moved)
            .await
            .unwrap(),
        Some(node(0))
    );
    // Once is enough: the second start finds it done.
    assert_eq!(
        store
            .change_local_identity(new.clone(), LocalChange::Moved)
            .await
            .unwrap(),
        None
    );
    store
        .set_local_identity(new.clone(), "Me".into(), now_ms())
        .await
        .unwrap();
    assert_eq!(store.own_previous_ids().await.unwrap(), vec![node(0)]);
    let history = store
        .history(
            ConversationId::dm(&node(1)),
            HistoryQuery {
                before: None,
                limit: 50,
            },
        )
        .await
        .unwrap()
        .messages;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].sender.node_id(), Some(new.clone()));
    let group = store
        .group(
            "01HF0000000000000000000001"
                .parse::<GlobalGroupId>()
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(group.state.is_member(&new));
    assert!(!group.state.is_member(&node(0)));
}

#[tokio::test]
async fn a_copy_taking_a_new_identity_keeps_its_history_but_not_the_old_ids_groups() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(&dir).await;
    // The fixture's node upgrades first (as a copy of a random-era directory would).
    let derived = id("7ZZZZZZZZZZZZZZZZZZZZZZZ00");
    store
        .change_local_identity(derived.clone(), LocalChange::Moved)
        .await
        .unwrap();
    let copy = id("7YYYYYYYYYYYYYYYYYYYYYYY00");
    assert_eq!(
        store
            .change_local_identity(copy.clone(), LocalChange::Copied)
            .await
            .unwrap(),
        Some(derived.clone())
    );
    // The earlier ids were the original's: this node announces none.
    assert!(store.own_previous_ids().await.unwrap().is_empty());
    // The DM history is still here, what it wrote shown as its own.
    let history = store
        .history(
            ConversationId::dm(&node(1)),
            HistoryQuery {
                before: None,
                limit: 50,
            },
        )
        .await
        .unwrap()
        .messages;
    assert_eq!(history.len(), 2);
    let own: Vec<_> = history
        .iter()
        .filter(|m| m.sender.node_id() != Some(node(1)))
        .collect();
    assert!(!own.is_empty());
    assert!(own.iter().all(|m| m.sender.node_id() == Some(copy.clone())));
    assert_eq!(
        store.local_identity().await.unwrap().map(|i| i.node_id),
        Some(copy.clone())
    );
    // The group still lists the original's id, not the copy's: its owner never added it.
    let group = store
        .group(
            "01HF0000000000000000000001"
                .parse::<GlobalGroupId>()
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(group.state.is_member(&derived));
    assert!(!group.state.is_member(&copy));
}

#[tokio::test]
async fn a_colleagues_earlier_id_is_reattached_only_for_the_keys_pinned_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(&dir).await;
    let alice_keys = [7u8; 64];
    assert_eq!(
        store.pin_link_keys(node(1), alice_keys).await.unwrap(),
        storage::KeyPin::Pinned
    );
    let new_alice = id("7ZZZZZZZZZZZZZZZZZZZZZZZ01");
    // Someone else's keys cannot take Alice's history.
    assert_eq!(
        store
            .reattach_peer_checked(node(1), [8u8; 64], false, new_alice.clone())
            .await
            .unwrap(),
        PeerReattach::Refused
    );
    assert_eq!(texts(&store, &new_alice).await.len(), 0);
    assert_eq!(texts(&store, &node(1)).await.len(), 2);
    // Her own keys do: DM history, the queued envelope and the group follow her.
    assert_eq!(
        store
            .reattach_peer_checked(node(1), alice_keys, false, new_alice.clone())
            .await
            .unwrap(),
        PeerReattach::Moved
    );
    assert_eq!(
        texts(&store, &new_alice).await,
        ["hello from version one", "旧版本的消息你好世界"]
    );
    let queued = store.due_outbox(i64::MAX, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].peer_id, new_alice);
    let group = store
        .group(
            "01HF0000000000000000000001"
                .parse::<GlobalGroupId>()
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(group.state.is_member(&new_alice));
    assert!(!group.state.is_member(&node(1)));
    let conversations = store.conversations().await.unwrap();
    assert!(conversations
        .iter()
        .all(|c| c.conversation_id != ConversationId::dm(&node(1))));
    // Hearing it again (every link announces it) changes nothing.
    assert_eq!(
        store
            .reattach_peer_checked(node(1), alice_keys, false, new_alice.clone())
            .await
            .unwrap(),
        PeerReattach::NothingKnown
    );
    store.integrity_check().await.unwrap();
}

/// `user_display_name` is remembered between calls; every committed change of a name
/// (a sighting under a new name, a colleague's new id) shows in the next call.
#[tokio::test]
async fn a_remembered_display_name_follows_renames_and_new_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(&dir).await;
    let alice = storage::UserId::lan(&node(1));
    let name = |store: &Store, user: &storage::UserId| {
        let (store, user) = (store.clone(), user.clone());
        async move { store.user_display_name(user).await.unwrap() }
    };
    let first = name(&store, &alice).await;
    assert!(first.is_some());
    assert_eq!(name(&store, &alice).await, first, "the remembered name");
    store
        .record_peer_sighting(sighting(1, "Alice Renamed"))
        .await
        .unwrap();
    assert_eq!(name(&store, &alice).await.as_deref(), Some("Alice Renamed"));
    // Alice's history moves to her new id: her old user is gone.
    let alice_keys = [7u8; 64];
    store.pin_link_keys(node(1), alice_keys).await.unwrap();
    let new_alice = id("7ZZZZZZZZZZZZZZZZZZZZZZZ01");
    assert_eq!(
        store
            .reattach_peer_checked(node(1), alice_keys, false, new_alice.clone())
            .await
            .unwrap(),
        PeerReattach::Moved
    );
    assert_eq!(name(&store, &alice).await, None);
    assert_eq!(
        name(&store, &storage::UserId::lan(&new_alice))
            .await
            .as_deref(),
        Some("Alice Renamed")
    );
}
