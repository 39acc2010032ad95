use storage::{SearchQuery, Store};

use crate::{db_path, dm_envelope, inbound_dm, node, now_ms, open_with_peers};

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
        store
            .send_direct_message(node(1), format!("report {i:03}"), now_ms(), dm_envelope)
            .await
            .unwrap();
        store
            .send_direct_message(node(1), format!("noise {i}"), now_ms(), dm_envelope)
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
