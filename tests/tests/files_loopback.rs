//! Files end to end (issue 17) between real `lanchat serve` processes on 127.0.0.1,
//! driven through the local API only: real uploads into real blob stores, file
//! messages through the real outbox, content over the real encrypted links.
//!
//! - `a_file_sent_in_a_dm_arrives_verified_and_reads_back_byte_for_byte`: a 3 MB file
//!   (24 chunks) DM'd from A is downloaded by B by itself (under the auto-download
//!   size), B serves the same bytes, texts keep flowing, and the same content sent
//!   again is stored once.
//! - `a_file_above_the_auto_download_size_waits_for_a_click`: B's limit is 1000 bytes;
//!   a 300 KB file waits (`waiting_for: download`, content `409`) until B asks for it,
//!   then arrives; a cancel before then keeps it from fetching by itself.
//! - `unsafe_names_and_folders_are_refused_with_the_field`: traversal, separators,
//!   control characters, reserved names and a missing name are `400`s naming `name`
//!   or `path`; nothing is sent.
//! - `a_sender_that_stops_sending_keeps_the_file_from_the_receiver_across_a_restart`:
//!   A withdraws a file B has not fetched; B's click waits (`waiting_for: withdrawn`,
//!   nothing arrives) — still after A restarts —; A offers it again and B gets it.
//! - `a_blocked_peer_cannot_send_files`: A blocks B after a first file from B arrived;
//!   B's next file is refused at A's door (B's links are refused) — no message, no
//!   chunk, no status at A — while B keeps trying.
//! - `corrupted_chunks_from_the_sender_are_refused_and_fetched_again`: A (a debug
//!   build's fault hook) flips a byte in the first two chunks it serves; B refuses
//!   them (`chunks_rejected`), asks again after a pause, and gets the file byte for
//!   byte.
//! - `a_group_member_gets_a_file_from_another_member_after_the_sender_left`: alpha
//!   sends to a group; bravo downloads it; alpha stops; charlie (auto-download off)
//!   asks for it then and gets it — from bravo.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::{ensure, Context};
use api_types::{FileState, FileStatusView, MessageView, WaitingFor};
use lanchat_tests::chat::{
    create_group, dm, group_conversation, history, send_dm, three_group_nodes, wait_contact_online,
    wait_group,
};
use lanchat_tests::files::upload_raw;
use lanchat_tests::{wait_until, NodeProcess, PairPlan, Side};

async fn upload(
    node: &NodeProcess,
    conversation: &str,
    name: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<MessageView> {
    lanchat_tests::files::upload(node, conversation, name, None, bytes).await
}

/// The file message with `file_id` once `node` has it in `conversation`.
async fn wait_file_message(
    node: &NodeProcess,
    conversation: &str,
    file_id: &str,
) -> anyhow::Result<MessageView> {
    lanchat_tests::files::wait_file_message(node, conversation, file_id, TRANSFER).await
}

const SECRET: &str = "office-files";
const ONLINE: Duration = Duration::from_secs(15);
const TRANSFER: Duration = Duration::from_secs(60);

async fn file_status(node: &NodeProcess, file_id: &str) -> anyhow::Result<FileStatusView> {
    node.get_json(&format!("v1/files/{file_id}/status"))
        .await
        .and_then(|v| Ok(serde_json::from_value(v)?))
}

async fn wait_available(node: &NodeProcess, file_id: &str, what: &str) -> anyhow::Result<()> {
    wait_until(TRANSFER, what, || async {
        let s = file_status(node, file_id).await.ok()?;
        (s.state == FileState::Available).then_some(())
    })
    .await
}

async fn file_content(node: &NodeProcess, file_id: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let resp = node.get(&format!("v1/files/{file_id}")).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.bytes().await?.to_vec()))
}

async fn post(node: &NodeProcess, path: &str) -> anyhow::Result<u16> {
    let resp = node
        .http()
        .post(node.api_url(path))
        .bearer_auth(&node.token)
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

async fn pair(b_auto_download: Option<u64>) -> anyhow::Result<lanchat_tests::LoopbackPair> {
    let mut plan = PairPlan::new(SECRET, SECRET)?;
    if let Some(limit) = b_auto_download {
        plan = plan.settings(Side::B, |doc| {
            doc["files"] = serde_json::json!({ "auto_download_max_bytes": limit });
        });
    }
    let pair = plan.start().await?;
    wait_contact_online(pair.node(Side::A), pair.id(Side::B), true, ONLINE).await?;
    wait_contact_online(pair.node(Side::B), pair.id(Side::A), true, ONLINE).await?;
    Ok(pair)
}

#[tokio::test]
async fn a_file_sent_in_a_dm_arrives_verified_and_reads_back_byte_for_byte() -> anyhow::Result<()> {
    let pair = pair(None).await?;
    let result = async {
        let (a, b) = (pair.node(Side::A), pair.node(Side::B));
        let bytes = lanchat_tests::file_content(3_000_000, 7);
        let sent = upload(a, &dm(pair.id(Side::B)), "季度报告 Q3.bin", bytes.clone()).await?;
        ensure!(
            sent.text.is_empty(),
            "a file message shows no text: {sent:?}"
        );
        let attachment = sent.attachments.first().context("no attachment")?;
        ensure!(attachment.name == "季度报告 Q3.bin" && attachment.size == 3_000_000);
        ensure!(
            attachment.state == FileState::Available,
            "the sender has it: {attachment:?}"
        );
        let file_id = attachment.file_id.clone();

        let received = wait_file_message(b, &dm(pair.id(Side::A)), &file_id).await?;
        ensure!(received.attachments[0].sha256 == file_id);
        wait_available(b, &file_id, "B has the file").await?;
        let (status, got) = file_content(b, &file_id).await?;
        ensure!(status == 200, "GET on B: {status}");
        ensure!(got == bytes, "B's copy differs ({} bytes)", got.len());
        let resp = b.get(&format!("v1/files/{file_id}")).await?;
        let disposition = resp
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        ensure!(
            disposition.starts_with("attachment;") && disposition.contains("UTF-8''"),
            "{disposition}"
        );

        // Texts still flow both ways after (and the same content again is one blob).
        send_dm(b, &dm(pair.id(Side::A)), "收到了 got it").await?;
        let again = upload(a, &dm(pair.id(Side::B)), "copy.bin", bytes.clone()).await?;
        ensure!(
            again.attachments[0].file_id == file_id,
            "same content, same id"
        );
        let complete = pair.data_dir(Side::A).join("blobs").join("complete");
        let stored: Vec<String> = std::fs::read_dir(&complete)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&file_id))
            .collect();
        ensure!(
            stored.len() == 2,
            "the content and its manifest, once: {stored:?}"
        );
        Ok(())
    }
    .await;
    pair.explain(result)
}

#[tokio::test]
async fn a_file_above_the_auto_download_size_waits_for_a_click() -> anyhow::Result<()> {
    let pair = pair(Some(1000)).await?;
    let result = async {
        let (a, b) = (pair.node(Side::A), pair.node(Side::B));
        let bytes = lanchat_tests::file_content(300_000, 11);
        let sent = upload(a, &dm(pair.id(Side::B)), "big.bin", bytes.clone()).await?;
        let file_id = sent.attachments[0].file_id.clone();
        let received = wait_file_message(b, &dm(pair.id(Side::A)), &file_id).await?;
        let shown = &received.attachments[0];
        ensure!(
            shown.state == FileState::Waiting && shown.waiting_for == Some(WaitingFor::Download),
            "{shown:?}"
        );
        let (status, _) = file_content(b, &file_id).await?;
        ensure!(status == 409, "content before the download: {status}");
        // Cancelled: a later message with the same file does not fetch it either.
        ensure!(post(b, &format!("v1/files/{file_id}/cancel")).await? == 200);
        ensure!(file_status(b, &file_id).await?.waiting_for == Some(WaitingFor::Download));

        ensure!(post(b, &format!("v1/files/{file_id}/fetch")).await? == 202);
        wait_available(b, &file_id, "B has the file after the click").await?;
        ensure!(file_content(b, &file_id).await?.1 == bytes);
        ensure!(post(b, &format!("v1/files/{}/fetch", "0".repeat(64))).await? == 404);
        Ok(())
    }
    .await;
    pair.explain(result)
}

async fn requests_withdrawn(node: &NodeProcess) -> anyhow::Result<u64> {
    let d = node.get_json("v1/diagnostics").await?;
    d["files"]["requests_withdrawn"]
        .as_u64()
        .context("no files.requests_withdrawn in diagnostics")
}

#[tokio::test]
async fn a_sender_that_stops_sending_keeps_the_file_from_the_receiver_across_a_restart(
) -> anyhow::Result<()> {
    let mut pair = pair(Some(1000)).await?;
    let result = async {
        let bytes = lanchat_tests::file_content(600_000, 23);
        let a = pair.node(Side::A);
        let sent = upload(a, &dm(pair.id(Side::B)), "draft.bin", bytes.clone()).await?;
        let file_id = sent.attachments[0].file_id.clone();
        ensure!(!sent.attachments[0].withdrawn);
        wait_file_message(pair.node(Side::B), &dm(pair.id(Side::A)), &file_id).await?;

        ensure!(post(a, &format!("v1/files/{file_id}/withdraw")).await? == 200);
        ensure!(file_status(a, &file_id).await?.withdrawn);
        let mine = wait_file_message(a, &dm(pair.id(Side::B)), &file_id).await?;
        ensure!(mine.attachments[0].withdrawn, "{:?}", mine.attachments[0]);
        ensure!(post(a, &format!("v1/files/{}/withdraw", "0".repeat(64))).await? == 404);

        let b = pair.node(Side::B);
        ensure!(post(b, &format!("v1/files/{file_id}/fetch")).await? == 202);
        let refused = |b| {
            let file_id = file_id.clone();
            async move {
                let s = file_status(b, &file_id).await.ok()?;
                (s.waiting_for == Some(WaitingFor::Withdrawn) && s.have_bytes == 0).then_some(s)
            }
        };
        wait_until(TRANSFER, "B to see the file withdrawn", || refused(b)).await?;
        ensure!(file_content(b, &file_id).await?.0 == 409);

        // Kept across A's restart: B asks again when the link is back, and is refused.
        pair.restart(Side::A).await?;
        let a = pair.node(Side::A);
        ensure!(file_status(a, &file_id).await?.withdrawn);
        wait_until(
            TRANSFER,
            "A to refuse B's query after its restart",
            || async { (requests_withdrawn(a).await.ok()? > 0).then_some(()) },
        )
        .await?;
        let b = pair.node(Side::B);
        let s = file_status(b, &file_id).await?;
        ensure!(
            s.waiting_for == Some(WaitingFor::Withdrawn) && s.have_bytes == 0,
            "{s:?}"
        );

        // Sent again: B hears at once and completes.
        ensure!(post(a, &format!("v1/files/{file_id}/offer")).await? == 200);
        ensure!(!file_status(a, &file_id).await?.withdrawn);
        wait_available(b, &file_id, "B has the file once it is sent again").await?;
        ensure!(file_content(b, &file_id).await?.1 == bytes);
        Ok(())
    }
    .await;
    pair.explain(result)
}

async fn chunks_stored(node: &NodeProcess) -> anyhow::Result<u64> {
    let d = node.get_json("v1/diagnostics").await?;
    d["files"]["chunks_stored"]
        .as_u64()
        .context("no files.chunks_stored in diagnostics")
}

async fn refused_blocked(node: &NodeProcess) -> anyhow::Result<u64> {
    let s = node.get_json("v1/status").await?;
    Ok(s["transport"]["refused_blocked_peer"].as_u64().unwrap_or(0))
}

#[tokio::test]
async fn a_blocked_peer_cannot_send_files() -> anyhow::Result<()> {
    let pair = pair(None).await?;
    let result = async {
        let (a, b) = (pair.node(Side::A), pair.node(Side::B));
        let first = lanchat_tests::file_content(200_000, 31);
        let sent = upload(b, &dm(pair.id(Side::A)), "before.bin", first).await?;
        wait_available(a, &sent.attachments[0].file_id, "A has B's first file").await?;
        let stored = chunks_stored(a).await?;

        let resp = a
            .http()
            .post(a.api_url(&format!("v1/peers/{}/block", pair.id(Side::B))))
            .bearer_auth(&a.token)
            .send()
            .await?;
        ensure!(resp.status() == 200, "block: {}", resp.status());
        let refused = refused_blocked(a).await?;
        let second = lanchat_tests::file_content(300_000, 37);
        let sent = upload(b, &dm(pair.id(Side::A)), "after.bin", second).await?;
        let file_id = sent.attachments[0].file_id.clone();
        let conversation = dm(pair.id(Side::B));
        lanchat_tests::holds_until(
            TRANSFER,
            "nothing of B's second file reaches A",
            || async {
                let shown = history(a, &conversation)
                    .await?
                    .iter()
                    .any(|m| m.attachments.iter().any(|f| f.file_id == file_id));
                let status = a.get(&format!("v1/files/{file_id}/status")).await?.status();
                let chunks = chunks_stored(a).await?;
                Ok(if shown || status != 404 || chunks != stored {
                    Err(format!(
                        "shown {shown}, status {status}, chunks stored {chunks} (was {stored})"
                    ))
                } else {
                    Ok(())
                })
            },
            // B's outbox kept knocking and A refused it twice since the block.
            || async { Ok(refused_blocked(a).await? >= refused + 2) },
        )
        .await?;
        Ok(())
    }
    .await;
    pair.explain(result)
}

#[tokio::test]
async fn corrupted_chunks_from_the_sender_are_refused_and_fetched_again() -> anyhow::Result<()> {
    let pair = PairPlan::new(SECRET, SECRET)?
        .env(Side::A, "LANCHAT_CORRUPT_SERVED_CHUNKS", "2")
        .start()
        .await?;
    wait_contact_online(pair.node(Side::A), pair.id(Side::B), true, ONLINE).await?;
    wait_contact_online(pair.node(Side::B), pair.id(Side::A), true, ONLINE).await?;
    let result = async {
        let (a, b) = (pair.node(Side::A), pair.node(Side::B));
        let bytes = lanchat_tests::file_content(2_000_000, 41);
        let sent = upload(a, &dm(pair.id(Side::B)), "flaky.bin", bytes.clone()).await?;
        let file_id = sent.attachments[0].file_id.clone();
        wait_available(b, &file_id, "B has the file despite the bad chunks").await?;
        ensure!(file_content(b, &file_id).await?.1 == bytes);
        let d = b.get_json("v1/diagnostics").await?;
        let rejected = d["files"]["chunks_rejected"].as_u64().unwrap_or(0);
        // Both bad chunks may be in one window: the second then arrives after the
        // first released the sender's requests, and is dropped unasked instead.
        ensure!(
            (1..=2).contains(&rejected),
            "chunks_rejected {rejected}: {d}"
        );
        Ok(())
    }
    .await;
    pair.explain(result)
}

#[tokio::test]
async fn unsafe_names_and_folders_are_refused_with_the_field() -> anyhow::Result<()> {
    let pair = pair(None).await?;
    let result = async {
        let a = pair.node(Side::A);
        let to = dm(pair.id(Side::B));
        for (query, field) in [
            ("name=..%2Fetc%2Fpasswd", "name"),
            ("name=a%5Cb.txt", "name"),
            ("name=..", "name"),
            ("name=x%01y", "name"),
            ("name=CON", "name"),
            ("name=", "name"),
            ("path=a", "name"),
            ("name=a.txt&path=..%2Fup", "path"),
            ("name=a.txt&path=a%2F..%2Fb", "path"),
        ] {
            let (status, body) = upload_raw(a, &to, query, b"x".to_vec()).await?;
            ensure!(status == 400, "{query}: {status} {body}");
            let error: api_types::ApiErrorBody = serde_json::from_str(&body)?;
            ensure!(error.field.as_deref() == Some(field), "{query}: {body}");
        }
        ensure!(
            history(a, &to).await?.is_empty(),
            "nothing was sent for refused names"
        );
        Ok(())
    }
    .await;
    pair.explain(result)
}

#[tokio::test]
async fn a_group_member_gets_a_file_from_another_member_after_the_sender_left() -> anyhow::Result<()>
{
    let mut mesh = three_group_nodes("files_loopback/group").await?;
    let result = async {
        lanchat_tests::chat::all_online(&mesh, ONLINE).await?;
        let (status, _) = mesh.nodes[2]
            .put_json(
                "v1/settings",
                &serde_json::json!({"files": {"auto_download_max_bytes": 0}}),
            )
            .await?;
        ensure!(status.is_success(), "charlie's setting: {status}");
        let group = create_group(&mesh.nodes[0], "files", &[&mesh.ids[1], &mesh.ids[2]]).await?;
        for i in [1, 2] {
            wait_group(&mesh.nodes[i], &group.id, TRANSFER, "the group", |g| {
                g.is_member
            })
            .await?;
        }
        let conversation = group_conversation(&group.id);
        let bytes = lanchat_tests::file_content(1_500_000, 23);
        let sent = upload(&mesh.nodes[0], &conversation, "设计稿.bin", bytes.clone()).await?;
        let file_id = sent.attachments[0].file_id.clone();
        wait_file_message(&mesh.nodes[1], &conversation, &file_id).await?;
        wait_available(&mesh.nodes[1], &file_id, "bravo has it").await?;
        let on_charlie = wait_file_message(&mesh.nodes[2], &conversation, &file_id).await?;
        ensure!(on_charlie.attachments[0].state == FileState::Waiting);

        mesh.stop(0).await?;
        ensure!(post(&mesh.nodes[2], &format!("v1/files/{file_id}/fetch")).await? == 202);
        wait_available(&mesh.nodes[2], &file_id, "charlie has it from bravo").await?;
        ensure!(file_content(&mesh.nodes[2], &file_id).await?.1 == bytes);
        Ok(())
    }
    .await;
    mesh.explain(result)
}

/// `POST /api/v1/files` (store only) → the file id.
async fn store_only(node: &NodeProcess, bytes: Vec<u8>) -> anyhow::Result<String> {
    let resp = node
        .http()
        .post(node.api_url("v1/files"))
        .bearer_auth(&node.token)
        .body(bytes)
        .send()
        .await?;
    ensure!(resp.status().as_u16() == 201, "store: {}", resp.status());
    let body: serde_json::Value = resp.json().await?;
    Ok(body["file_id"].as_str().context("file_id")?.to_string())
}

#[tokio::test]
async fn a_folder_of_a_thousand_files_arrives_with_its_tree() -> anyhow::Result<()> {
    let pair = pair(None).await?;
    let result = async {
        let (a, b) = (pair.node(Side::A), pair.node(Side::B));
        let to = dm(pair.id(Side::B));
        // project/{0..9}/{a,b,c}/file-N.txt, each with its own content.
        let tree: Vec<(String, String, Vec<u8>)> = (0..1000)
            .map(|i| {
                let path = format!("project/{}/{}", i % 10, ["a", "b", "c"][i % 3]);
                let name = format!("file-{i}.txt");
                let bytes = format!("file {i} of the folder\n")
                    .repeat(1 + i % 7)
                    .into_bytes();
                (path, name, bytes)
            })
            .collect();
        let mut entries = Vec::new();
        for (path, name, bytes) in &tree {
            let id = store_only(a, bytes.clone()).await?;
            entries.push(serde_json::json!({"file_id": id, "name": name, "path": path}));
        }
        // Sent as the UI does: messages of 64 files.
        let mut sent = 0;
        for batch in entries.chunks(api_types::files::MAX_FILES_PER_MESSAGE) {
            let resp = a
                .http()
                .post(a.api_url(&format!("v1/conversations/{to}/files")))
                .bearer_auth(&a.token)
                .json(&serde_json::json!({ "files": batch }))
                .send()
                .await?;
            ensure!(resp.status().as_u16() == 201, "batch: {}", resp.status());
            let message: MessageView = resp.json().await?;
            sent += message.attachments.len();
        }
        ensure!(sent == 1000, "{sent} files sent");

        let from = dm(pair.id(Side::A));
        let received = wait_until(
            TRANSFER,
            "the folder on B, every file available",
            || async {
                let messages = history(b, &from).await.ok()?;
                let files: Vec<_> = messages.into_iter().flat_map(|m| m.attachments).collect();
                (files.len() == 1000 && files.iter().all(|f| f.state == FileState::Available))
                    .then_some(files)
            },
        )
        .await?;
        ensure!(
            history(b, &from).await?.len() == 1000usize.div_ceil(64),
            "one message per 64 files"
        );
        for (path, name, bytes) in &tree {
            let file = received
                .iter()
                .find(|f| &f.name == name)
                .with_context(|| format!("{name} missing on B"))?;
            ensure!(
                file.path.as_deref() == Some(path.as_str()),
                "{name}: {:?}",
                file.path
            );
            ensure!(file.size == bytes.len() as u64);
        }
        // The contents too, for a sample across the tree.
        for i in (0..1000).step_by(37) {
            let (_, name, bytes) = &tree[i];
            let file = received
                .iter()
                .find(|f| &f.name == name)
                .context("listed")?;
            ensure!(
                file_content(b, &file.file_id).await?.1 == *bytes,
                "{name} differs"
            );
        }
        // A batch naming a file that was never stored is refused, naming the field.
        let resp = a
            .http()
            .post(a.api_url(&format!("v1/conversations/{to}/files")))
            .bearer_auth(&a.token)
            .json(&serde_json::json!({"files": [{"file_id": "0".repeat(64), "name": "x"}]}))
            .send()
            .await?;
        ensure!(
            resp.status().as_u16() == 400,
            "unknown file: {}",
            resp.status()
        );
        Ok(())
    }
    .await;
    pair.explain(result)
}
