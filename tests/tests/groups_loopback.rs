//! Groups across nodes (issue 6, first slice) end to end: three real `lanchat serve`
//! processes on 127.0.0.1 that all find each other (each probes the other two), driven
//! only through their local API and event WebSocket — real discovery, real encrypted
//! links, real SQLite outboxes, inboxes and group delivery cursors.
//!
//! - `a_group_reaches_every_member_and_keeps_one_history`: A creates a group with B
//!   and C → B and C show it with the same id, name, owner, members and revision, and
//!   their event streams say `group.updated`; A, B and C each send 20 messages
//!   (concurrently, all three at once) → all 60 are on every node, exactly once, in the
//!   identical order, and every sender sees its own 20 `delivered` (every member's
//!   cursor passed them); a rename on A reaches B and C (a newer revision, editor A).
//!
//! - `a_member_that_was_away_gets_what_the_others_sent_meanwhile`: C is stopped, A and
//!   B send 10 each to the group (their cursors for C keep retrying); C comes back on its
//!   data directory → C has all 20 exactly once, and all three histories are identical.
//!
//! - `a_member_away_when_the_group_was_made_gets_it_and_its_messages`: C is stopped, A
//!   creates the group and A and B send 5 each; C comes back → it holds the group (same
//!   state) and all 10 messages. B's messages may reach C before A's upsert: C rejects
//!   them (unknown group) and B's cursor resends them later.
//!
//! Short timers: heartbeat 1 s, TTL 3 s, retry backoff from 200 ms to 1 s. Deadlines
//! are failure bounds, never measurements. Logs in
//! `target/test-artifacts/groups_loopback/<test>/`.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use api_types::{Event, MessageStatus};
use lanchat_tests::chat::{
    create_group, group_conversation, groups, ids, same_group_state, send_concurrently, summary,
    update_group, wait_all_delivered, wait_contact_online, wait_count, wait_group, EventRecorder,
};
use lanchat_tests::LoopbackMesh;

const SECRET: &str = "office";
const ONLINE: Duration = Duration::from_secs(20);
const DELIVERY: Duration = Duration::from_secs(60);
const PER_NODE: usize = 20;

/// Three nodes (alpha, bravo, charlie) that probe each other, with a short outbox backoff;
/// data directories and logs under `target/test-artifacts/groups_loopback/<test>`.
async fn three_nodes(test: &str) -> LoopbackMesh {
    LoopbackMesh::start(
        &format!("groups_loopback/{test}"),
        &["alpha", "bravo", "charlie"],
        SECRET,
        &[
            ("LANCHAT_RETRY_FIRST_MS", "200"),
            ("LANCHAT_RETRY_MAX_MS", "1000"),
        ],
    )
    .await
    .unwrap()
}

async fn all_online(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    lanchat_tests::chat::all_online(mesh, ONLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reaches_every_member_and_keeps_one_history() {
    let mesh = three_nodes("a_group_reaches_every_member_and_keeps_one_history").await;
    let result = scenario(&mesh).await;
    mesh.explain(result).unwrap();
}

async fn scenario(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    let [a, b, c] = [&mesh.nodes[0], &mesh.nodes[1], &mesh.nodes[2]];
    let [a_id, b_id, c_id] = [&mesh.ids[0], &mesh.ids[1], &mesh.ids[2]];
    all_online(mesh).await?;
    let b_events = EventRecorder::start(b).await?;
    let c_events = EventRecorder::start(c).await?;

    // Create on A: B and C get the same group.
    let created = create_group(a, "发布小组 release", &[b_id, c_id]).await?;
    anyhow::ensure!(
        created.revision > 0 && created.owner == *a_id,
        "created: {created:?}"
    );
    anyhow::ensure!(
        created.conversation_id == group_conversation(&created.id),
        "conversation id {}",
        created.conversation_id
    );
    let mut expected_members = vec![a_id.clone(), b_id.clone(), c_id.clone()];
    expected_members.sort();
    let listed: Vec<String> = created.members.iter().map(|m| m.peer_id.clone()).collect();
    anyhow::ensure!(listed == expected_members, "members on A: {listed:?}");
    for (node, name) in [(b, "bravo"), (c, "charlie")] {
        let seen = wait_group(
            node,
            &created.id,
            DELIVERY,
            &format!("the group on {name}"),
            |g| same_group_state(g, &created),
        )
        .await?;
        anyhow::ensure!(seen.is_member, "{name} is not a member: {seen:?}");
        let all = groups(node).await?;
        anyhow::ensure!(all.len() == 1, "{name} lists {} groups", all.len());
    }
    for (events, name) in [(&b_events, "bravo"), (&c_events, "charlie")] {
        events
            .wait_for(DELIVERY, &format!("group.updated on {name}"), |events| {
                events
                    .iter()
                    .any(|e| matches!(e, Event::GroupUpdated { group } if group.id == created.id))
                    .then_some(())
            })
            .await?;
    }

    // Everyone sends 20 at once.
    let conversation = group_conversation(&created.id);
    let texts = |who: &str| -> Vec<String> {
        (0..PER_NODE)
            .map(|i| format!("{who} {i:02} 你好"))
            .collect()
    };
    let (ta, tb, tc) = (texts("alpha"), texts("bravo"), texts("charlie"));
    let (sa, sb, sc) = tokio::try_join!(
        send_concurrently(a, &conversation, &ta, 4),
        send_concurrently(b, &conversation, &tb, 4),
        send_concurrently(c, &conversation, &tc, 4),
    )?;
    let total = 3 * PER_NODE;
    let mut histories = Vec::new();
    for (node, own, name) in [(a, &sa, "alpha"), (b, &sb, "bravo"), (c, &sc, "charlie")] {
        wait_count(node, &conversation, total, DELIVERY).await?;
        let own_ids = ids(own);
        let history = wait_all_delivered(node, &conversation, &own_ids, DELIVERY)
            .await
            .map_err(|e| e.context(format!("{name}'s own messages delivered")))?;
        histories.push((name, history));
    }
    let all_sent: HashSet<String> = [&sa, &sb, &sc].iter().flat_map(|s| ids(s)).collect();
    anyhow::ensure!(all_sent.len() == total, "ids sent: {}", all_sent.len());
    let reference = &histories[0].1;
    for (name, history) in &histories {
        anyhow::ensure!(
            history.len() == total,
            "{name} has {} messages: {}",
            history.len(),
            summary(history)
        );
        let got: HashSet<String> = ids(history).into_iter().collect();
        anyhow::ensure!(
            got == all_sent,
            "{name} holds other messages than were sent"
        );
        let line = |h: &[api_types::MessageView]| -> Vec<(String, String, String, String)> {
            h.iter()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.sender.clone(),
                        m.text.clone(),
                        m.order.clone(),
                    )
                })
                .collect()
        };
        anyhow::ensure!(
            line(history) == line(reference),
            "{name}'s history differs from alpha's:\n{}\nvs\n{}",
            summary(history),
            summary(reference)
        );
        anyhow::ensure!(
            history
                .iter()
                .all(|m| m.outgoing || m.status == MessageStatus::Delivered),
            "{name}: a received message is not delivered"
        );
    }
    for (events, name) in [(&b_events, "bravo"), (&c_events, "charlie")] {
        let new: Vec<String> = events
            .new_messages()
            .into_iter()
            .filter(|m| m.conversation_id == conversation)
            .map(|m| m.id)
            .collect();
        let unique: HashSet<&String> = new.iter().collect();
        anyhow::ensure!(
            unique.len() == total,
            "{name} heard message.new for {} distinct messages",
            unique.len()
        );
    }

    // A rename on A reaches B and C.
    let renamed = update_group(a, &created.id, &serde_json::json!({"name": "发布小组 v2"})).await?;
    anyhow::ensure!(
        renamed.revision > created.revision
            && renamed.revision_editor == *a_id
            && renamed.name == "发布小组 v2",
        "renamed: {renamed:?}"
    );
    for (node, name) in [(b, "bravo"), (c, "charlie")] {
        wait_group(
            node,
            &created.id,
            DELIVERY,
            &format!("the rename on {name}"),
            |g| same_group_state(g, &renamed),
        )
        .await?;
    }
    for (events, name) in [(&b_events, "bravo"), (&c_events, "charlie")] {
        events
            .wait_for(DELIVERY, &format!("group.updated (renamed) on {name}"), |events| {
                events
                    .iter()
                    .any(|e| matches!(e, Event::GroupUpdated { group } if group.name == "发布小组 v2"))
                    .then_some(())
            })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_was_away_gets_what_the_others_sent_meanwhile() {
    let mut mesh = three_nodes("a_member_that_was_away_gets_what_the_others_sent_meanwhile").await;
    let result = away_scenario(&mut mesh).await;
    mesh.explain(result).unwrap();
}

async fn away_scenario(mesh: &mut LoopbackMesh) -> anyhow::Result<()> {
    all_online(mesh).await?;
    let (b_id, c_id) = (mesh.ids[1].clone(), mesh.ids[2].clone());
    let created = create_group(&mesh.nodes[0], "away", &[&b_id, &c_id]).await?;
    for i in [1, 2] {
        wait_group(&mesh.nodes[i], &created.id, DELIVERY, "the group", |g| {
            same_group_state(g, &created)
        })
        .await?;
    }
    mesh.stop(2).await?;
    wait_contact_online(&mesh.nodes[0], &c_id, false, ONLINE).await?;
    let conversation = group_conversation(&created.id);
    let ta: Vec<String> = (0..10)
        .map(|i| format!("alpha while C is away {i}"))
        .collect();
    let tb: Vec<String> = (0..10)
        .map(|i| format!("bravo while C is away {i}"))
        .collect();
    let (sa, sb) = tokio::try_join!(
        send_concurrently(&mesh.nodes[0], &conversation, &ta, 2),
        send_concurrently(&mesh.nodes[1], &conversation, &tb, 2),
    )?;
    // A and B have each other's messages; none is delivered (C owes its acks).
    for i in [0, 1] {
        wait_count(&mesh.nodes[i], &conversation, 20, DELIVERY).await?;
    }
    mesh.restart(2).await?;
    let c_history = wait_count(&mesh.nodes[2], &conversation, 20, DELIVERY).await?;
    let a_history = wait_all_delivered(&mesh.nodes[0], &conversation, &ids(&sa), DELIVERY).await?;
    let b_history = wait_all_delivered(&mesh.nodes[1], &conversation, &ids(&sb), DELIVERY).await?;
    let c_history = if c_history.len() == 20 {
        c_history
    } else {
        anyhow::bail!(
            "charlie has {} messages: {}",
            c_history.len(),
            summary(&c_history)
        );
    };
    let orders = |h: &[api_types::MessageView]| -> Vec<String> {
        h.iter().map(|m| m.order.clone()).collect()
    };
    anyhow::ensure!(
        orders(&a_history) == orders(&b_history) && orders(&b_history) == orders(&c_history),
        "histories differ:\nalpha {}\nbravo {}\ncharlie {}",
        summary(&a_history),
        summary(&b_history),
        summary(&c_history)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_away_when_the_group_was_made_gets_it_and_its_messages() {
    let mut mesh =
        three_nodes("a_member_away_when_the_group_was_made_gets_it_and_its_messages").await;
    let result = made_while_away(&mut mesh).await;
    mesh.explain(result).unwrap();
}

async fn made_while_away(mesh: &mut LoopbackMesh) -> anyhow::Result<()> {
    all_online(mesh).await?;
    let (b_id, c_id) = (mesh.ids[1].clone(), mesh.ids[2].clone());
    mesh.stop(2).await?;
    wait_contact_online(&mesh.nodes[0], &c_id, false, ONLINE).await?;
    wait_contact_online(&mesh.nodes[1], &c_id, false, ONLINE).await?;
    let created = create_group(&mesh.nodes[0], "made while C was away", &[&b_id, &c_id]).await?;
    wait_group(
        &mesh.nodes[1],
        &created.id,
        DELIVERY,
        "the group on bravo",
        |g| same_group_state(g, &created),
    )
    .await?;
    let conversation = group_conversation(&created.id);
    let ta: Vec<String> = (0..5).map(|i| format!("alpha {i}")).collect();
    let tb: Vec<String> = (0..5).map(|i| format!("bravo {i}")).collect();
    let (sa, sb) = tokio::try_join!(
        send_concurrently(&mesh.nodes[0], &conversation, &ta, 1),
        send_concurrently(&mesh.nodes[1], &conversation, &tb, 1),
    )?;
    mesh.restart(2).await?;
    wait_group(
        &mesh.nodes[2],
        &created.id,
        DELIVERY,
        "the group on charlie",
        |g| same_group_state(g, &created),
    )
    .await?;
    let a_history = wait_all_delivered(&mesh.nodes[0], &conversation, &ids(&sa), DELIVERY).await?;
    let b_history = wait_all_delivered(&mesh.nodes[1], &conversation, &ids(&sb), DELIVERY).await?;
    let c_history = wait_count(&mesh.nodes[2], &conversation, 10, DELIVERY).await?;
    let orders = |h: &[api_types::MessageView]| -> Vec<String> {
        h.iter().map(|m| m.order.clone()).collect()
    };
    anyhow::ensure!(
        c_history.len() == 10
            && orders(&a_history) == orders(&b_history)
            && orders(&b_history) == orders(&c_history),
        "histories differ:\nalpha {}\nbravo {}\ncharlie {}",
        summary(&a_history),
        summary(&b_history),
        summary(&c_history)
    );
    Ok(())
}
