//! File messages' attachments: recorded with the message however it arrives, found by
//! file, and this node's download choices kept.

use api_types::{FileContent, FileRef, Thumbnail};

use super::*;

fn file(name: &str, id_digit: char) -> FileRef {
    FileRef {
        file_id: id_digit.to_string().repeat(64),
        manifest: "b".repeat(64),
        size: 300_000,
        chunk_size: 131_072,
        name: name.into(),
        path: Some("报告/2026".into()),
        mime: "application/pdf".into(),
        thumbnail: None,
    }
}

fn file_text(files: Vec<FileRef>) -> String {
    FileContent { files }.to_text().unwrap()
}

#[tokio::test]
async fn sent_and_received_file_messages_are_found_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 2).await;
    let mut image = file("a.png", 'c');
    image.path = None;
    image.mime = "image/png".into();
    image.thumbnail = Some(Thumbnail {
        mime: "image/jpeg".into(),
        width: 2,
        height: 1,
        data: "AAAA".into(),
    });
    let (sent, _) = send_dm(
        &store,
        node(1),
        file_text(vec![file("季度.pdf", 'a'), image.clone()]),
        now_ms(),
    )
    .await
    .unwrap();
    let (envelope, effect) = inbound_dm(2, &file_text(vec![file("季度.pdf", 'a')]));
    store.apply_inbound(envelope, effect).await.unwrap();

    let found = store.attachments_of_file("a".repeat(64)).await.unwrap();
    assert_eq!(found.len(), 2, "one per message that attached it");
    assert_eq!(found[0].message_id, sent.message_id);
    assert_eq!(found[0].file.name, "季度.pdf");
    assert_eq!(found[0].file.path.as_deref(), Some("报告/2026"));
    assert_eq!(found[1].conversation_id, ConversationId::dm(&node(2)));
    let images = store.attachments_of_file("c".repeat(64)).await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].file, image, "the thumbnail is kept");
    assert!(store
        .attachments_of_file("d".repeat(64))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_text_that_only_looks_like_a_file_message_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_peers(&db_path(&dir), 1).await;
    let text = format!("{}{{\"files\":[]}}", api_types::FILE_MESSAGE_PREFIX);
    let (envelope, effect) = inbound_dm(1, &text);
    store.apply_inbound(envelope, effect).await.unwrap();
    assert!(store.wanted_downloads().await.unwrap().is_empty());
    let history = store
        .history(
            ConversationId::dm(&node(1)),
            storage::HistoryQuery {
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 1, "kept as a text");
}

#[tokio::test]
async fn download_choices_are_kept_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open_with_peers(&path, 1).await;
    let (envelope, effect) =
        inbound_dm(1, &file_text(vec![file("a.pdf", 'a'), file("b.pdf", 'e')]));
    store.apply_inbound(envelope, effect).await.unwrap();
    assert_eq!(store.download_wanted("a".repeat(64)).await.unwrap(), None);
    store
        .set_download_wanted("a".repeat(64), true, now_ms())
        .await
        .unwrap();
    store
        .set_download_wanted("e".repeat(64), true, now_ms())
        .await
        .unwrap();
    store
        .set_download_wanted("e".repeat(64), false, now_ms())
        .await
        .unwrap();
    store.close().await.unwrap();

    let store = Store::open(&path).await.unwrap();
    let wanted = store.wanted_downloads().await.unwrap();
    assert_eq!(wanted.len(), 1);
    assert_eq!(wanted[0].file.name, "a.pdf");
    assert_eq!(wanted[0].sender.to_string(), format!("lan:{}", node(1)));
    assert_eq!(
        store.download_wanted("e".repeat(64)).await.unwrap(),
        Some(false)
    );
}

#[tokio::test]
async fn a_withdrawal_is_kept_across_a_restart_until_the_file_is_offered_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    let (a, e) = ("a".repeat(64), "e".repeat(64));
    assert!(!store.file_choices(a.clone()).await.unwrap().1);
    store.set_file_withdrawn(a.clone(), true, 10).await.unwrap();
    store.set_file_withdrawn(e.clone(), true, 20).await.unwrap();
    // Withdrawing twice keeps the first time.
    store.set_file_withdrawn(a.clone(), true, 30).await.unwrap();
    store.close().await.unwrap();

    let store = Store::open(&path).await.unwrap();
    assert_eq!(
        store.withdrawn_files().await.unwrap(),
        [a.clone(), e.clone()]
    );
    assert_eq!(store.file_choices(a.clone()).await.unwrap(), (None, true));
    store
        .set_file_withdrawn(a.clone(), false, 40)
        .await
        .unwrap();
    assert!(!store.file_choices(a.clone()).await.unwrap().1);
    assert_eq!(store.withdrawn_files().await.unwrap(), [e]);
    // Both choices in one read.
    store
        .set_download_wanted(a.clone(), true, 50)
        .await
        .unwrap();
    assert_eq!(store.file_choices(a).await.unwrap(), (Some(true), false));
}
