use storage::{SearchQuery, Store};

use crate::{db_path, inbound_dm, node, now_ms, open_with_peers, send_dm};

async fn find(store: &Store, text: &str) -> Vec<String> {
    store
        .search(SearchQuery {
            text: text.into(),
            after: None,
            limit: 50,
        })
        .await
        .unwrap()
        .hits
        .into_iter()
        .map(|m| m.body)
        .collect()
}

#[tokio::test]
async fn finds_chinese_and_english_including_short_terms() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    for body in [
        "你好世界",
        "hello",
        "Say Hello to 世界",
        "world peace",
        "50% off_sale",
        "unrelated",
    ] {
        let (env, effect) = inbound_dm(1, body);
        store.apply_inbound(env, effect).await.unwrap();
    }
    assert_eq!(
        find(&store, "世界").await,
        ["Say Hello to 世界", "你好世界"]
    );
    assert_eq!(find(&store, "好世界").await, ["你好世界"]);
    assert_eq!(find(&store, "hell").await, ["Say Hello to 世界", "hello"]);
    assert_eq!(find(&store, "HELLO 世界").await, ["Say Hello to 世界"]);
    assert_eq!(find(&store, "he").await, ["Say Hello to 世界", "hello"]);
    assert_eq!(
        find(&store, "%").await,
        ["50% off_sale"],
        "LIKE wildcards are literal"
    );
    assert_eq!(find(&store, "f_s").await, ["50% off_sale"]);
    assert!(
        find(&store, "\"OR\" NEAR(").await.is_empty(),
        "query syntax is literal text"
    );
    assert!(find(&store, "   ").await.is_empty());
    assert!(find(&store, "absent").await.is_empty());
}

#[tokio::test]
async fn results_page_newest_first_without_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    for i in 0..57 {
        send_dm(&store, node(1), format!("report {i:03}"), now_ms())
            .await
            .unwrap();
        send_dm(&store, node(1), format!("noise {i}"), now_ms())
            .await
            .unwrap();
    }
    for text in ["report", "re"] {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .search(SearchQuery {
                    text: text.into(),
                    after,
                    limit: 20,
                })
                .await
                .unwrap();
            all.extend(page.hits.into_iter().map(|m| m.body));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = (0..57).rev().map(|i| format!("report {i:03}")).collect();
        assert_eq!(all, expected, "query {text:?}");
    }
}

/// Rows of the search index that match `text`, read with a connection of its own.
fn indexed(path: &std::path::Path, text: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM message_search WHERE message_search MATCH ?1",
        [format!("\"{text}\"")],
        |r| r.get(0),
    )
    .unwrap()
}

async fn wait_indexed(path: &std::path::Path, text: &str, expected: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = indexed(path, text);
        if n == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{text:?}: {n} indexed, expected {expected}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stored_messages_are_in_the_search_index_without_a_search() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open_with_peers(&path, 1).await;
    for i in 0..5 {
        let (env, effect) = inbound_dm(1, &format!("quarterly figures {i}"));
        store.apply_inbound(env, effect).await.unwrap();
    }
    send_dm(&store, node(1), "quarterly plan".into(), now_ms())
        .await
        .unwrap();
    wait_indexed(&path, "quarterly", 6).await;
    store.integrity_check().await.unwrap();
}

#[tokio::test]
async fn messages_a_crash_left_unindexed_are_indexed_by_the_first_write_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open_with_peers(&path, 1).await;
    for body in ["会议纪要 minutes", "午饭 lunch minutes", "unrelated"] {
        let (env, effect) = inbound_dm(1, body);
        store.apply_inbound(env, effect).await.unwrap();
    }
    store.close().await.unwrap();
    // What a crash between a batch's commit and its indexing leaves: messages stored,
    // the index and its progress behind them.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO message_search (message_search) VALUES ('delete-all');
             UPDATE search_progress SET last_indexed_id = 0;",
        )
        .unwrap();
    }
    assert_eq!(indexed(&path, "minutes"), 0);

    // Opening records the peers: a write, whose batch indexes what was left behind.
    let store = open_with_peers(&path, 1).await;
    wait_indexed(&path, "minutes", 2).await;
    assert_eq!(indexed(&path, "会议纪"), 1);
    assert_eq!(
        find(&store, "minutes").await,
        ["午饭 lunch minutes", "会议纪要 minutes"]
    );
    store.integrity_check().await.unwrap();
}
