use std::fs;

use rusqlite::Connection;
use storage::{ConversationId, HistoryQuery, SearchQuery, Store, StoreError};

use crate::{db_path, node, send_dm};

#[tokio::test]
async fn a_fresh_file_is_created_at_the_latest_version_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    store.close().await.unwrap();
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, storage::schema_version());
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    let again = Store::open(&path).await.unwrap();
    again.integrity_check().await.unwrap();
}

#[tokio::test]
async fn every_earlier_schema_migrates_with_its_data() {
    // One fixture per earlier version; the latest needs none.
    let fixtures = [
        (1, include_str!("../fixtures/schema_v1.sql")),
        (2, include_str!("../fixtures/schema_v2.sql")),
        (3, include_str!("../fixtures/schema_v3.sql")),
        (4, include_str!("../fixtures/schema_v4.sql")),
        (5, include_str!("../fixtures/schema_v5.sql")),
        (6, include_str!("../fixtures/schema_v6.sql")),
        (7, include_str!("../fixtures/schema_v7.sql")),
        (8, include_str!("../fixtures/schema_v8.sql")),
        (9, include_str!("../fixtures/schema_v9.sql")),
        (10, include_str!("../fixtures/schema_v10.sql")),
    ];
    assert_eq!(fixtures.len() as i64, storage::schema_version() - 1);
    for (version, sql) in fixtures {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(sql).unwrap();
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(found, version);
        drop(conn);

        let store = Store::open(&path).await.unwrap();
        let me = store.local_identity().await.unwrap().unwrap();
        assert_eq!(me.node_id, node(0));
        let dm = ConversationId::dm(&node(1));
        let page = store
            .history(
                dm.clone(),
                HistoryQuery {
                    before: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        let bodies: Vec<_> = page.messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["hello from version one", "旧版本的消息你好世界"]);
        // Stored before clock offsets were kept: shown at the author's own time.
        assert!(page
            .messages
            .iter()
            .all(|m| m.sender_clock_offset_ms.is_none() && m.shown_at() <= m.received_at));
        // Search covers messages written before the index existed.
        let hits = store
            .search(SearchQuery {
                text: "version".into(),
                after: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(hits.hits.len(), 1);
        let hits = store
            .search(SearchQuery {
                text: "世界".into(),
                after: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(hits.hits.len(), 1);
        assert_eq!(store.outbox_for_peer(node(1)).await.unwrap().len(), 1);
        let conversations = store.conversations().await.unwrap();
        assert_eq!(conversations[0].unread, 1);
        assert_eq!(conversations[0].name, "Alice");
        if version >= 3 {
            // A group as whole-state revisions stored it reads as replicated state.
            let groups = store.groups().await.unwrap();
            assert_eq!(groups.len(), 1);
            let state = &groups[0].state;
            assert_eq!(state.name(), "旧的小组");
            assert_eq!(state.announcement(), "old news");
            assert_eq!(state.owner, node(1));
            assert_eq!(state.member_ids(), vec![node(0), node(1), node(2)]);
            state.validate().unwrap();
            assert!(store.group_invitations().await.unwrap().is_empty());
        }
        // Read receipts (v6) on an upgraded database: nothing read yet; marking the DM
        // read moves this node's position to Alice's message and queues one receipt.
        assert!(store
            .read_state(dm.clone())
            .await
            .unwrap()
            .positions
            .is_empty());
        let marked = store
            .mark_read_with_receipts(
                dm.clone(),
                true,
                crate::now_ms(),
                crate::receipts::receipt_envelope,
            )
            .await
            .unwrap();
        assert_eq!(marked.receipts_queued, 1);
        assert_eq!(
            marked.moved_to.map(|k| k.message_id.to_string()).as_deref(),
            Some("01HG0000000000000000000002")
        );
        store.integrity_check().await.unwrap();
        store.close().await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let now: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(now, storage::schema_version());
    }
}

/// Name and content hash of every file but `-shm`: the WAL index is a cache SQLite
/// rebuilds whenever anything opens the file, even read-only; it holds no data.
fn snapshot(dir: &std::path::Path) -> Vec<(String, u64)> {
    use std::hash::{Hash, Hasher};
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().ends_with("-shm"))
        .map(|e| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            fs::read(e.path()).unwrap().hash(&mut h);
            (e.file_name().to_string_lossy().into_owned(), h.finish())
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    Store::open(&path).await.unwrap().close().await.unwrap();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE from_the_future (x); PRAGMA user_version = 99;")
            .unwrap();
    }
    let before = snapshot(dir.path());
    match Store::open(&path).await {
        Err(StoreError::TooNew {
            found: 99,
            supported,
            ..
        }) => {
            assert_eq!(supported, storage::schema_version())
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn a_newer_version_still_in_the_wal_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    Store::open(&path).await.unwrap().close().await.unwrap();
    // A newer node that crashed before checkpointing: the bump lives only in the WAL.
    let newer = Connection::open(&path).unwrap();
    newer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    newer
        .set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .unwrap();
    let future = storage::schema_version() + 1;
    newer.pragma_update(None, "user_version", future).unwrap();
    drop(newer);
    let before = snapshot(dir.path());
    assert!(matches!(
        Store::open(&path).await,
        Err(StoreError::TooNew { found, .. }) if found == future
    ));
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn a_corrupt_or_foreign_file_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    fs::write(
        &path,
        b"this is not a database, it is a shopping list\n".repeat(100),
    )
    .unwrap();
    let before = fs::read(&path).unwrap();
    let err = Store::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("left untouched"));
    assert!(fs::read(&path).unwrap() == before);

    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id); INSERT INTO invoices VALUES (1);")
        .unwrap();
    let before = fs::read(&other).unwrap();
    // user_version 0 with tables of its own: not ours, not empty.
    let err = Store::open(&other).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { .. }),
        "a foreign database must not be migrated into: {err:?}"
    );
    assert!(fs::read(&other).unwrap() == before);
}

#[tokio::test]
async fn a_damaged_page_is_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let store = crate::open_with_peers(&path, 1).await;
        for i in 0..300 {
            let body = format!(
                "message number {i} with some padding to fill pages {}",
                "x".repeat(200)
            );
            send_dm(&store, node(1), body, crate::now_ms())
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    }
    let mut bytes = fs::read(&path).unwrap();
    let page = 4096;
    assert!(bytes.len() > page * 20);
    for b in &mut bytes[page * 10..page * 18] {
        *b = 0xA5;
    }
    fs::write(&path, &bytes).unwrap();
    let result = async {
        let store = Store::open(&path).await?;
        store.integrity_check().await?;
        store
            .history(
                ConversationId::dm(&node(1)),
                HistoryQuery {
                    before: None,
                    limit: 500,
                },
            )
            .await
    }
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { .. } | StoreError::CorruptPage(_)),
        "{err:?}"
    );
    // The damaged pages are reported, never "repaired" by overwriting or truncating.
    let after = fs::read(&path).unwrap();
    assert!(after.len() >= bytes.len());
    assert!(after[page * 10..page * 18] == bytes[page * 10..page * 18]);
}
