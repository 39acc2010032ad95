//! Group catch-up (anti-entropy, issue 6 §5) end to end: real `lanchat serve`
//! processes on 127.0.0.1 that find each other (each probes the others), driven only
//! through their local API — real discovery, encrypted links, SQLite.
//!
//! - `a_returning_member_gets_an_offline_authors_messages_from_another_member`: A
//!   creates a group with B and C; C is stopped; A and B send 50 each; once B holds all
//!   100, A is stopped for good; C comes back → C gets A's 50 from B (its `group.relay`;
//!   A's own cursor cannot deliver them) and B's 50; C's history equals B's (ids, in
//!   `order`), and A's messages show A as sender on C.
//!
//! - `an_added_member_gets_the_whole_history`: A creates a group with B and C, 30
//!   messages are sent (A 15, B 15); A adds D (`PUT /api/v1/groups/{id}` members) → D
//!   holds the group and all 30 earlier messages, in the same order as A.
//!
//! Short timers: heartbeat 1 s, TTL 3 s, retry backoff 200 ms to 1 s. Deadlines are
//! failure bounds, never measurements. Logs in
//! `target/test-artifacts/groups_sync_loopback/<test>/`.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use api_types::MessageView;
use lanchat_tests::chat::{
    create_group, group_conversation, ids, send_concurrently, summary, update_group, user,
    wait_contact_online, wait_count, wait_group,
};
use lanchat_tests::LoopbackMesh;

const SECRET: &str = "office";
const ONLINE: Duration = Duration::from_secs(20);
const DELIVERY: Duration = Duration::from_secs(60);

async fn nodes(test: &str, names: &[&str]) -> LoopbackMesh {
    LoopbackMesh::start(
        &format!("groups_sync_loopback/{test}"),
        names,
        SECRET,
        &[
            ("LANCHAT_RETRY_FIRST_MS", "200"),
            ("LANCHAT_RETRY_MAX_MS", "1000"),
        ],
    )
    .await
    .unwrap()
}

/// Waits until every running node in `which` lists every other one in `which` online.
async fn online(mesh: &LoopbackMesh, which: &[usize]) -> anyhow::Result<()> {
    for &i in which {
        for &j in which {
            if i != j {
                wait_contact_online(&mesh.nodes[i], &mesh.ids[j], true, ONLINE).await?;
            }
        }
    }
    Ok(())
}

fn line(history: &[MessageView]) -> Vec<(String, String, String)> {
    history
        .iter()
        .map(|m| (m.id.clone(), m.sender.clone(), m.order.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_member_gets_an_offline_authors_messages_from_another_member() {
    let mut mesh = nodes(
        "a_returning_member_gets_an_offline_authors_messages_from_another_member",
        &["alpha", "bravo", "charlie"],
    )
    .await;
    let result = author_gone(&mut mesh).await;
    mesh.explain(result).unwrap();
}

async fn author_gone(mesh: &mut LoopbackMesh) -> anyhow::Result<()> {
    online(mesh, &[0, 1, 2]).await?;
    let (a_id, b_id, c_id) = (
        mesh.ids[0].clone(),
        mesh.ids[1].clone(),
        mesh.ids[2].clone(),
    );
    let created = create_group(&mesh.nodes[0], "catch-up", &[&b_id, &c_id]).await?;
    for i in [1, 2] {
        wait_group(&mesh.nodes[i], &created.id, DELIVERY, "the group", |g| {
            g.revision == created.revision && g.is_member
        })
        .await?;
    }
    mesh.stop(2).await?;
    wait_contact_online(&mesh.nodes[0], &c_id, false, ONLINE).await?;
    wait_contact_online(&mesh.nodes[1], &c_id, false, ONLINE).await?;

    let conversation = group_conversation(&created.id);
    let ta: Vec<String> = (0..50).map(|i| format!("alpha {i:02} 离开前")).collect();
    let tb: Vec<String> = (0..50).map(|i| format!("bravo {i:02}")).collect();
    let (sa, sb) = tokio::try_join!(
        send_concurrently(&mesh.nodes[0], &conversation, &ta, 4),
        send_concurrently(&mesh.nodes[1], &conversation, &tb, 4),
    )?;
    wait_count(&mesh.nodes[1], &conversation, 100, DELIVERY).await?;
    // A leaves for good: only B can give C A's messages now.
    mesh.stop(0).await?;
    mesh.restart(2).await?;

    let c_history = wait_count(&mesh.nodes[2], &conversation, 100, DELIVERY).await?;
    let b_history = lanchat_tests::chat::history(&mesh.nodes[1], &conversation).await?;
    let sent: HashSet<String> = ids(&sa).into_iter().chain(ids(&sb)).collect();
    let held: HashSet<String> = ids(&c_history).into_iter().collect();
    anyhow::ensure!(
        c_history.len() == 100 && held == sent,
        "charlie holds {} messages (other than sent?): {}",
        c_history.len(),
        summary(&c_history)
    );
    anyhow::ensure!(
        line(&c_history) == line(&b_history),
        "histories differ:\nbravo {}\ncharlie {}",
        summary(&b_history),
        summary(&c_history)
    );
    let from_a: HashSet<String> = ids(&sa).into_iter().collect();
    let a_user = user(&a_id);
    anyhow::ensure!(
        c_history
            .iter()
            .filter(|m| from_a.contains(&m.id))
            .all(|m| m.sender == a_user && !m.outgoing),
        "A's messages on charlie are not A's: {}",
        summary(&c_history)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_member_gets_the_whole_history() {
    let mesh = nodes(
        "an_added_member_gets_the_whole_history",
        &["alpha", "bravo", "charlie", "delta"],
    )
    .await;
    let result = added_member(&mesh).await;
    mesh.explain(result).unwrap();
}

async fn added_member(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    online(mesh, &[0, 1, 2, 3]).await?;
    let (b_id, c_id, d_id) = (
        mesh.ids[1].clone(),
        mesh.ids[2].clone(),
        mesh.ids[3].clone(),
    );
    let created = create_group(&mesh.nodes[0], "before delta", &[&b_id, &c_id]).await?;
    for i in [1, 2] {
        wait_group(&mesh.nodes[i], &created.id, DELIVERY, "the group", |g| {
            g.revision == created.revision && g.is_member
        })
        .await?;
    }
    let conversation = group_conversation(&created.id);
    let ta: Vec<String> = (0..15).map(|i| format!("alpha {i:02}")).collect();
    let tb: Vec<String> = (0..15).map(|i| format!("bravo {i:02}")).collect();
    tokio::try_join!(
        send_concurrently(&mesh.nodes[0], &conversation, &ta, 2),
        send_concurrently(&mesh.nodes[1], &conversation, &tb, 2),
    )?;
    let a_history = wait_count(&mesh.nodes[0], &conversation, 30, DELIVERY).await?;

    let mut members: Vec<&str> = created.members.iter().map(|m| m.peer_id.as_str()).collect();
    members.push(&d_id);
    let added = update_group(
        &mesh.nodes[0],
        &created.id,
        &serde_json::json!({ "members": members }),
    )
    .await?;
    anyhow::ensure!(added.members.len() == 4, "members: {added:?}");
    wait_group(
        &mesh.nodes[3],
        &created.id,
        DELIVERY,
        "the group on delta",
        |g| g.revision == added.revision && g.is_member,
    )
    .await?;
    let d_history = wait_count(&mesh.nodes[3], &conversation, 30, DELIVERY).await?;
    anyhow::ensure!(
        d_history.len() == 30 && line(&d_history) == line(&a_history),
        "histories differ:\nalpha {}\ndelta {}",
        summary(&a_history),
        summary(&d_history)
    );
    Ok(())
}
