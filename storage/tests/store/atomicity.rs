use rusqlite::Connection;
use storage::{ConversationId, HistoryQuery, InboundOutcome, StoreError};

use crate::{db_path, inbound_dm, node, now_ms, open_with_peers, send_dm};

/// Makes the database fail mid-transaction: a trigger installed from a second
/// connection aborts an insert into `table`, after earlier statements already ran.
fn inject_failure(path: &std::path::Path, table: &str) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TRIGGER injected_failure BEFORE INSERT ON {table}
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
    ))
    .unwrap();
    conn
}

fn heal(conn: &Connection) {
    conn.execute_batch("DROP TRIGGER injected_failure").unwrap();
}

#[tokio::test]
async fn a_failed_enqueue_leaves_no_message_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open_with_peers(&path, 1).await;
    store.open_direct(node(1), now_ms()).await.unwrap();
    let side = inject_failure(&path, "outbox");
    let err = send_dm(&store, node(1), "half written?".into(), now_ms())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let conv = ConversationId::dm(&node(1));
    let page = store
        .history(
            conv.clone(),
            HistoryQuery {
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(
        page.messages.is_empty(),
        "the message row was rolled back with the envelope"
    );
    assert_eq!(store.conversations().await.unwrap()[0].last_message, None);
    assert!(store.outbox_for_peer(node(1)).await.unwrap().is_empty());
    heal(&side);
    send_dm(&store, node(1), "now it works".into(), now_ms())
        .await
        .unwrap();
    assert_eq!(store.outbox_for_peer(node(1)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_apply_records_no_dedupe_entry_so_the_retry_applies() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open_with_peers(&path, 1).await;
    let side = inject_failure(&path, "messages");
    let (envelope, effect) = inbound_dm(1, "must not be lost");
    assert!(store
        .apply_inbound(envelope.clone(), effect.clone())
        .await
        .is_err());
    heal(&side);
    assert!(
        matches!(
            store
                .apply_inbound(envelope.clone(), effect.clone())
                .await
                .unwrap(),
            InboundOutcome::Applied(_)
        ),
        "the failed attempt left no dedupe entry that would swallow the retry"
    );
    assert_eq!(
        store.apply_inbound(envelope, effect).await.unwrap(),
        InboundOutcome::Duplicate
    );
}

#[tokio::test]
async fn a_failing_write_does_not_take_its_batch_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    // Fired together so the writer commits them in shared batches.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let text = if i % 10 == 0 {
            String::new()
        } else {
            format!("ok {i}")
        };
        tasks.push(tokio::spawn(async move {
            send_dm(&store, node(1), text, now_ms()).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Invalid { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 180);
    let page = store
        .history(
            ConversationId::dm(&node(1)),
            HistoryQuery {
                before: None,
                limit: 500,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 180);
    assert_eq!(store.outbox_for_peer(node(1)).await.unwrap().len(), 180);
}
