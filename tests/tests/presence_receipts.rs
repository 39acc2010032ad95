//! Presence and read receipts between three nodes (issue 18, item 4): three real
//! `lanchat serve` processes on 127.0.0.1 that probe each other, driven only through
//! their local API — real discovery (presence rides in every signed announcement), real
//! encrypted links, real SQLite outboxes (receipts are outbox envelopes).
//!
//! - `presence_changes_reach_every_peer_and_a_killed_node_shows_offline`: alpha chooses
//!   busy, then away, then online (`PUT /api/v1/presence`) → bravo and charlie show each
//!   in `GET /api/v1/peers` and in their contacts; `offline` cannot be chosen (400
//!   naming `presence`); alpha, busy, stopped (bravo sees it offline) and started again
//!   → busy again, on itself and on bravo (the choice outlives a restart); charlie
//!   killed (SIGKILL, no goodbye) → offline on the others.
//!
//! - `dm_read_receipts_are_batched_and_follow_the_readers_setting`: alpha sends 50 DMs to
//!   bravo; bravo marks the DM read → all 50 turn `read` on alpha, bravo queued exactly
//!   one receipt envelope (diagnostics `receipts.queued`) and alpha applied one, and
//!   alpha's event stream says `conversation.receipt`; charlie turns
//!   `desktop.send_read_receipts` off and marks alpha's DMs read → it queues none, and
//!   with its outbox to alpha empty (nothing can still arrive), charlie's DMs stay
//!   `delivered` on alpha.
//!
//! - `group_messages_count_their_readers`: alpha's group with bravo and charlie; its 5
//!   messages show "read by 0 of 2", then 1 of 2 once bravo read, 2 of 2 once charlie
//!   did; each reader queued one receipt per other member, not one per message.
//!
//! Short timers: heartbeat 1 s, TTL 3 s, retry backoff from 200 ms to 1 s. Deadlines are
//! failure bounds, never measurements. Logs in
//! `target/test-artifacts/presence_receipts/<test>/`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Context;

use api_types::{
    ContactView, ConversationView, Diagnostics, Event, MessageStatus, MessageView, PeerView,
    Presence, ReceiptCounters,
};
use lanchat_tests::chat::{
    create_group, dm, get, group_conversation, history, refused, send_in_order, three_group_nodes,
    wait_all_delivered, wait_history, EventRecorder,
};
use lanchat_tests::node::NodeProcess;
use lanchat_tests::{holds_until, wait_until, LoopbackMesh};

const ONLINE: Duration = Duration::from_secs(20);
/// A presence change is announced at once (and again after a second); a heartbeat
/// (1 s here) would carry it anyway.
const PRESENCE: Duration = Duration::from_secs(10);
/// Receipts wait a second in the outbox (batching), then one round trip.
const RECEIPT: Duration = Duration::from_secs(20);
const DELIVERY: Duration = Duration::from_secs(60);

async fn three_nodes(test: &str) -> LoopbackMesh {
    three_group_nodes(&format!("presence_receipts/{test}"))
        .await
        .unwrap()
}

async fn peers(node: &NodeProcess) -> anyhow::Result<Vec<PeerView>> {
    get(node, "v1/peers").await
}

async fn receipts(node: &NodeProcess) -> anyhow::Result<ReceiptCounters> {
    Ok(get::<Diagnostics>(node, "v1/diagnostics").await?.receipts)
}

async fn set_presence(node: &NodeProcess, presence: &str) -> anyhow::Result<()> {
    let (status, body) = node
        .put_json("v1/presence", &serde_json::json!({ "presence": presence }))
        .await?;
    anyhow::ensure!(
        status.as_u16() == 200,
        "PUT presence {presence}: {status} {body}"
    );
    anyhow::ensure!(body["presence"] == presence, "answer {body}");
    Ok(())
}

/// The last message of `conversation` as `node`'s conversation list shows it.
async fn listed_last(node: &NodeProcess, conversation: &str) -> anyhow::Result<MessageView> {
    let list: Vec<ConversationView> = get(node, "v1/conversations").await?;
    list.into_iter()
        .find(|c| c.id == conversation)
        .and_then(|c| c.last_message)
        .with_context(|| format!("{conversation} has no last message in the list"))
}

async fn mark_read(node: &NodeProcess, conversation: &str) -> anyhow::Result<()> {
    let path = format!("v1/conversations/{conversation}/read");
    let (status, body) = lanchat_tests::chat::post_action(node, &path).await?;
    anyhow::ensure!(status == 204, "POST {path}: {status} {body}");
    Ok(())
}

/// Waits until `node` shows `peer_id` with `presence` in the peers list and contacts.
async fn wait_presence(
    node: &NodeProcess,
    name: &str,
    peer_id: &str,
    presence: Presence,
) -> anyhow::Result<()> {
    let what = format!("{name} sees {peer_id} {}", presence.as_str());
    wait_until(PRESENCE, &what, || async {
        let listed = peers(node).await.ok()?;
        let contacts: Vec<ContactView> = get(node, "v1/contacts").await.ok()?;
        let in_peers = listed
            .iter()
            .any(|p| p.peer_id == peer_id && p.presence == presence);
        let in_contacts = contacts
            .iter()
            .any(|c| c.peer_id == peer_id && c.presence == presence);
        (in_peers && in_contacts).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_changes_reach_every_peer_and_a_killed_node_shows_offline() {
    let mut mesh = three_nodes("presence_changes").await;
    let result = presence_scenario(&mut mesh).await;
    mesh.explain(result).unwrap();
}

async fn presence_scenario(mesh: &mut LoopbackMesh) -> anyhow::Result<()> {
    lanchat_tests::chat::all_online(mesh, ONLINE).await?;
    let a_id = mesh.ids[0].clone();
    let c_id = mesh.ids[2].clone();
    for (i, name) in [(1, "bravo"), (2, "charlie")] {
        wait_presence(&mesh.nodes[i], name, &a_id, Presence::Online).await?;
    }
    for presence in [Presence::Busy, Presence::Away, Presence::Online] {
        set_presence(&mesh.nodes[0], presence.as_str()).await?;
        let mine: serde_json::Value = mesh.nodes[0].get_json("v1/presence").await?;
        anyhow::ensure!(
            mine["presence"] == presence.as_str() && mine["source"] == "manual",
            "{mine}"
        );
        for (i, name) in [(1, "bravo"), (2, "charlie")] {
            wait_presence(&mesh.nodes[i], name, &a_id, presence).await?;
        }
    }
    // This node's own contact entry shows what it chose.
    set_presence(&mesh.nodes[0], "busy").await?;
    let own: Vec<ContactView> = get(&mesh.nodes[0], "v1/contacts").await?;
    anyhow::ensure!(
        own.iter()
            .any(|c| c.is_self && c.presence == Presence::Busy),
        "own contact: {own:?}"
    );
    let (status, error) = refused(
        &mesh.nodes[0],
        reqwest::Method::PUT,
        "v1/presence",
        &serde_json::json!({"presence": "offline"}),
    )
    .await?;
    anyhow::ensure!(
        status == 400 && error.field.as_deref() == Some("presence"),
        "{status} {error:?}"
    );

    // A restart keeps the choice: busy, not online, before and after anyone else hears.
    mesh.stop(0).await?;
    wait_presence(&mesh.nodes[1], "bravo", &a_id, Presence::Offline).await?;
    mesh.restart(0).await?;
    let mine: serde_json::Value = mesh.nodes[0].get_json("v1/presence").await?;
    anyhow::ensure!(
        mine["presence"] == "busy" && mine["source"] == "manual",
        "after a restart alpha is {mine}"
    );
    wait_presence(&mesh.nodes[1], "bravo", &a_id, Presence::Busy).await?;

    // Killed: no goodbye; its TTL (3 s) runs out on the others.
    mesh.nodes[2].kill()?;
    for (i, name) in [(0, "alpha"), (1, "bravo")] {
        wait_presence(&mesh.nodes[i], name, &c_id, Presence::Offline).await?;
        let listed = peers(&mesh.nodes[i]).await?;
        anyhow::ensure!(
            listed.iter().any(|p| p.peer_id == c_id && !p.online),
            "{name}: {listed:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_read_receipts_are_batched_and_follow_the_readers_setting() {
    let mesh = three_nodes("dm_receipts").await;
    let result = dm_scenario(&mesh).await;
    mesh.explain(result).unwrap();
}

fn all_have(messages: &[MessageView], ids: &[String], status: MessageStatus) -> bool {
    ids.iter()
        .all(|id| messages.iter().any(|m| &m.id == id && m.status == status))
}

async fn dm_scenario(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    let [a, b, c] = [&mesh.nodes[0], &mesh.nodes[1], &mesh.nodes[2]];
    let [a_id, b_id, c_id] = [&mesh.ids[0], &mesh.ids[1], &mesh.ids[2]];
    lanchat_tests::chat::all_online(mesh, ONLINE).await?;
    let a_events = EventRecorder::start(a).await?;

    // Fifty to bravo, delivered and not read yet.
    let texts: Vec<String> = (0..50).map(|i| format!("第 {i} 条 message")).collect();
    let sent = send_in_order(a, &dm(b_id), &texts).await?;
    let ids: Vec<String> = sent.iter().map(|m| m.id.clone()).collect();
    wait_all_delivered(a, &dm(b_id), &ids, DELIVERY).await?;
    wait_history(b, &dm(a_id), DELIVERY, "bravo holds the 50", |m| {
        m.len() == 50
    })
    .await?;
    let shown = history(a, &dm(b_id)).await?;
    anyhow::ensure!(
        all_have(&shown, &ids, MessageStatus::Delivered),
        "before reading: {shown:?}"
    );
    let last = listed_last(a, &dm(b_id)).await?;
    anyhow::ensure!(
        last.status == MessageStatus::Delivered,
        "the list before reading: {last:?}"
    );
    let (a_before, b_before) = (receipts(a).await?, receipts(b).await?);

    // Bravo reads the conversation: one receipt covers all fifty.
    mark_read(b, &dm(a_id)).await?;
    wait_history(a, &dm(b_id), RECEIPT, "all 50 read on alpha", |m| {
        all_have(m, &ids, MessageStatus::Read)
    })
    .await?;
    // The conversation list shows the last message read too, as the history does.
    let last = listed_last(a, &dm(b_id)).await?;
    anyhow::ensure!(
        last.status == MessageStatus::Read,
        "the list after bravo read: {last:?}"
    );
    let (a_after, b_after) = (receipts(a).await?, receipts(b).await?);
    anyhow::ensure!(
        b_after.queued - b_before.queued == 1,
        "bravo queued {} receipt envelopes for 50 messages",
        b_after.queued - b_before.queued
    );
    anyhow::ensure!(
        a_after.applied - a_before.applied == 1,
        "alpha applied {} receipts",
        a_after.applied - a_before.applied
    );
    anyhow::ensure!(a_after.refused == 0, "alpha refused receipts: {a_after:?}");
    a_events
        .wait_for(RECEIPT, "conversation.receipt on alpha", |events| {
            events
                .iter()
                .any(|e| {
                    matches!(e, Event::ConversationReceipt { conversation_id, reader, .. }
                        if *conversation_id == dm(b_id) && reader == b_id)
                })
                .then_some(())
        })
        .await?;
    // Reading again with nothing new sends nothing.
    mark_read(b, &dm(a_id)).await?;
    anyhow::ensure!(
        receipts(b).await?.queued == b_after.queued,
        "a second read queued a receipt"
    );

    // Charlie does not send receipts.
    let (status, body) = c
        .put_json(
            "v1/settings",
            &serde_json::json!({"desktop": {"send_read_receipts": false}}),
        )
        .await?;
    anyhow::ensure!(status.as_u16() == 200, "settings: {status} {body}");
    let to_c: Vec<String> = (0..3).map(|i| format!("to charlie {i}")).collect();
    let sent_c = send_in_order(a, &dm(c_id), &to_c).await?;
    let ids_c: Vec<String> = sent_c.iter().map(|m| m.id.clone()).collect();
    wait_all_delivered(a, &dm(c_id), &ids_c, DELIVERY).await?;
    wait_history(c, &dm(a_id), DELIVERY, "charlie holds the 3", |m| {
        m.len() == 3
    })
    .await?;
    let c_before = receipts(c).await?;
    mark_read(c, &dm(a_id)).await?;
    anyhow::ensure!(
        receipts(c).await?.queued == c_before.queued,
        "charlie queued a receipt"
    );
    // Receipts are outbox envelopes: with nothing queued and charlie's outbox to alpha
    // empty, no receipt can still be on its way, so alpha's view of charlie's DMs
    // holds from then on.
    holds_until(
        DELIVERY,
        "charlie's DMs are not read on alpha",
        || async {
            let on_a = history(a, &dm(c_id)).await?;
            Ok(if all_have(&on_a, &ids_c, MessageStatus::Delivered) {
                Ok(())
            } else {
                Err(lanchat_tests::chat::summary(&on_a))
            })
        },
        || async {
            let d: Diagnostics = get(c, "v1/diagnostics").await?;
            let queued = d.receipts.queued != c_before.queued;
            anyhow::ensure!(!queued, "charlie queued a receipt: {:?}", d.receipts);
            Ok(d.peers
                .iter()
                .any(|p| &p.peer_id == a_id && p.outbox_depth == 0))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_count_their_readers() {
    let mesh = three_nodes("group_read_by").await;
    let result = group_scenario(&mesh).await;
    mesh.explain(result).unwrap();
}

fn read_by_all(messages: &[MessageView], ids: &[String], count: u32, of: u32) -> bool {
    ids.iter().all(|id| {
        messages
            .iter()
            .any(|m| &m.id == id && m.read_by.is_some_and(|r| r.count == count && r.of == of))
    })
}

async fn group_scenario(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    let [a, b, c] = [&mesh.nodes[0], &mesh.nodes[1], &mesh.nodes[2]];
    let [b_id, c_id] = [&mesh.ids[1], &mesh.ids[2]];
    lanchat_tests::chat::all_online(mesh, ONLINE).await?;
    let group = create_group(a, "已读 team", &[b_id, c_id]).await?;
    let conversation = group_conversation(&group.id);
    let texts: Vec<String> = (0..5).map(|i| format!("group {i}")).collect();
    let sent = send_in_order(a, &conversation, &texts).await?;
    let ids: Vec<String> = sent.iter().map(|m| m.id.clone()).collect();
    wait_all_delivered(a, &conversation, &ids, DELIVERY).await?;
    for (node, name) in [(b, "bravo"), (c, "charlie")] {
        wait_history(
            node,
            &conversation,
            DELIVERY,
            &format!("{name} holds the 5"),
            |m| m.len() == 5,
        )
        .await?;
    }
    let shown = history(a, &conversation).await?;
    anyhow::ensure!(read_by_all(&shown, &ids, 0, 2), "before reading: {shown:?}");
    // Others' messages carry no count.
    let on_b = history(b, &conversation).await?;
    anyhow::ensure!(
        on_b.iter().all(|m| m.read_by.is_none()),
        "on bravo: {on_b:?}"
    );

    let b_before = receipts(b).await?;
    mark_read(b, &conversation).await?;
    wait_history(a, &conversation, RECEIPT, "read by 1 of 2", |m| {
        read_by_all(m, &ids, 1, 2)
    })
    .await?;
    // One receipt per other member (alpha and charlie), not per message.
    anyhow::ensure!(
        receipts(b).await?.queued - b_before.queued == 2,
        "bravo's receipts"
    );

    mark_read(c, &conversation).await?;
    wait_history(a, &conversation, RECEIPT, "read by 2 of 2", |m| {
        read_by_all(m, &ids, 2, 2)
    })
    .await?;
    let last = listed_last(a, &conversation).await?;
    anyhow::ensure!(
        last.read_by.is_some_and(|r| r.count == 2 && r.of == 2),
        "the list's last message: {last:?}"
    );
    Ok(())
}
