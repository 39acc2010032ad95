//! Group rules across nodes (issue 6): permissions enforced by every member, leaving,
//! dissolving, invitations, convergence after a partition, and a skewed clock — three
//! real `lanchat serve` processes on 127.0.0.1, driven only through their local API.
//!
//! - `permissions_removal_leave_and_dissolve_hold_on_every_member`: B (a member) may
//!   neither rename nor change members (403: names are the owner's); A's rename reaches
//!   both; a removed member C gets nothing sent after its
//!   removal; re-added, it gets the current state; C leaves; A dissolves → every member
//!   shows it and nobody can send.
//! - `partitioned_edits_converge_after_healing`: B gets another shared secret (a real
//!   partition: discovery and links refuse each other); A renames and adds a member
//!   while B leaves; B gets the secret back → all three show the same name, members
//!   and revision.
//! - `invitations_wait_for_the_user_when_auto_accept_is_off`: C turns auto-accept off; a
//!   group with C waits as an invitation (event, list, not in the groups); a message to
//!   it meanwhile is refused and counted (`envelopes_rejected`); accepted, the group
//!   appears with that message; a declined one makes C leave it on A.
//! - `a_clock_five_minutes_ahead_does_not_change_the_order`: C's whole process runs 5
//!   minutes ahead (libfaketime, `lanchat_tests::faketime_env`); A, B and C send 20 each
//!   at once → the same order on all three, and a reply sent after seeing C's message
//!   sorts after it everywhere (C's own stamp shows its clock really is ahead).
//!
//! Short timers: heartbeat 1 s, TTL 3 s, retry backoff from 200 ms to 1 s. Deadlines
//! are failure bounds, never measurements. Logs in
//! `target/test-artifacts/group_rules_loopback/<test>/`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use api_types::{Event, GroupView};
use lanchat_tests::chat::{
    all_online, create_group, group_conversation, history, ids, post_action, refused,
    same_group_state, send_concurrently, send_dm, three_group_nodes, update_group, wait_count,
    wait_group, EventRecorder, GROUP_NODES_SECRET,
};
use lanchat_tests::{wait_until, LoopbackMesh, NodeProcess};

const ONLINE: Duration = Duration::from_secs(20);
const DELIVERY: Duration = Duration::from_secs(60);

async fn three_nodes(test: &str) -> LoopbackMesh {
    three_group_nodes(&format!("group_rules_loopback/{test}"))
        .await
        .unwrap()
}

fn member_ids(group: &GroupView) -> Vec<String> {
    group.members.iter().map(|m| m.peer_id.clone()).collect()
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut list: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    list.sort();
    list
}

async fn put_settings(node: &NodeProcess, change: serde_json::Value) -> anyhow::Result<()> {
    let (status, body) = node.put_json("v1/settings", &change).await?;
    anyhow::ensure!(status.is_success(), "settings: {status}: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_removal_leave_and_dissolve_hold_on_every_member() {
    let mesh = three_nodes("permissions_removal_leave_and_dissolve_hold_on_every_member").await;
    let result = permissions(&mesh).await;
    mesh.explain(result).unwrap();
}

async fn permissions(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    let [a, b, c] = [&mesh.nodes[0], &mesh.nodes[1], &mesh.nodes[2]];
    let [a_id, b_id, c_id] = [&mesh.ids[0], &mesh.ids[1], &mesh.ids[2]];
    all_online(mesh, ONLINE).await?;
    let group = create_group(a, "规则 rules", &[b_id, c_id]).await?;
    let id = group.id.clone();
    let conv = group_conversation(&id);
    for node in [b, c] {
        wait_group(node, &id, DELIVERY, "the group on B and C", |g| {
            member_ids(g).len() == 3
        })
        .await?;
    }

    // B is a member: it may neither rename nor add or remove members.
    let b_view = wait_group(b, &id, DELIVERY, "B's view", |_| true).await?;
    anyhow::ensure!(
        !b_view.permissions.edit_info && !b_view.permissions.manage_members,
        "{b_view:?}"
    );
    let (status, error) = refused(
        b,
        reqwest::Method::PUT,
        &format!("v1/groups/{id}"),
        &serde_json::json!({"members": [b_id]}),
    )
    .await?;
    anyhow::ensure!(
        status == 403 && error.code == "forbidden" && error.field.as_deref() == Some("members"),
        "{status} {error:?}"
    );
    let (status, error) = refused(
        b,
        reqwest::Method::PUT,
        &format!("v1/groups/{id}"),
        &serde_json::json!({"name": "by bravo"}),
    )
    .await?;
    anyhow::ensure!(
        status == 403 && error.code == "forbidden" && error.field.as_deref() == Some("name"),
        "{status} {error:?}"
    );
    update_group(a, &id, &serde_json::json!({"name": "by alpha"})).await?;
    for node in [b, c] {
        wait_group(node, &id, DELIVERY, "A's rename", |g| g.name == "by alpha").await?;
    }

    // A removes C: C learns it, and gets nothing sent afterwards.
    update_group(a, &id, &serde_json::json!({"members": [b_id]})).await?;
    wait_group(c, &id, DELIVERY, "C removed, as C sees it", |g| {
        !g.is_member
    })
    .await?;
    wait_group(b, &id, DELIVERY, "C removed, as B sees it", |g| {
        member_ids(g) == sorted(&[a_id, b_id])
    })
    .await?;
    let after: Vec<String> = (0..5).map(|i| format!("after removal {i}")).collect();
    send_concurrently(a, &conv, &after, 4).await?;
    send_concurrently(b, &conv, &after, 4).await?;
    wait_count(a, &conv, 10, DELIVERY).await?;
    wait_count(b, &conv, 10, DELIVERY).await?;
    // Both senders' messages are delivered to every member they know (A and B) ...
    wait_until(DELIVERY, "A's and B's messages delivered", || async {
        let a_all = history(a, &conv).await.ok()?;
        let b_all = history(b, &conv).await.ok()?;
        let done = |h: &[api_types::MessageView]| {
            h.iter()
                .filter(|m| m.outgoing)
                .all(|m| m.status == api_types::MessageStatus::Delivered)
        };
        (done(&a_all) && done(&b_all)).then_some(())
    })
    .await?;
    // ... and C, removed, received none of them.
    let c_has = history(c, &conv).await?;
    anyhow::ensure!(c_has.is_empty(), "C got {c_has:?}");

    // Re-added, C gets the group's current state.
    update_group(a, &id, &serde_json::json!({"members": [b_id, c_id]})).await?;
    wait_group(c, &id, DELIVERY, "C back with the current name", |g| {
        g.is_member && g.name == "by alpha" && member_ids(g).len() == 3
    })
    .await?;

    // C leaves: every member shows it.
    let (status, left) = post_action(c, &format!("v1/groups/{id}/leave")).await?;
    anyhow::ensure!(
        status == 200 && left["is_member"] == false,
        "{status} {left}"
    );
    for node in [a, b] {
        wait_group(node, &id, DELIVERY, "C left", |g| {
            member_ids(g) == sorted(&[a_id, b_id])
        })
        .await?;
    }

    // Only the owner dissolves; then nobody sends.
    let (status, _) = post_action(b, &format!("v1/groups/{id}/dissolve")).await?;
    anyhow::ensure!(status == 403, "B dissolving: {status}");
    let (status, _) = post_action(a, &format!("v1/groups/{id}/dissolve")).await?;
    anyhow::ensure!(status == 200, "A dissolving: {status}");
    let on_b = wait_group(b, &id, DELIVERY, "dissolved on B", |g| g.dissolved).await?;
    anyhow::ensure!(!on_b.permissions.send, "{on_b:?}");
    let (status, error) = refused(
        b,
        reqwest::Method::POST,
        &format!("v1/conversations/{conv}/messages"),
        &serde_json::json!({"text": "too late"}),
    )
    .await?;
    anyhow::ensure!(
        status == 400 && error.field.as_deref() == Some("conversation_id"),
        "{status} {error:?}"
    );
    let on_a = wait_group(a, &id, DELIVERY, "A's view", |g| g.dissolved).await?;
    anyhow::ensure!(same_group_state(&on_a, &on_b), "{on_a:?}\n{on_b:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_edits_converge_after_healing() {
    let mesh = three_nodes("partitioned_edits_converge_after_healing").await;
    let result = partition(&mesh).await;
    mesh.explain(result).unwrap();
}

async fn partition(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    let [a, b, c] = [&mesh.nodes[0], &mesh.nodes[1], &mesh.nodes[2]];
    let [a_id, b_id, c_id] = [&mesh.ids[0], &mesh.ids[1], &mesh.ids[2]];
    all_online(mesh, ONLINE).await?;
    let group = create_group(a, "before", &[b_id, c_id]).await?;
    let id = group.id.clone();
    for node in [b, c] {
        wait_group(node, &id, DELIVERY, "the group", |g| {
            member_ids(g).len() == 3
        })
        .await?;
    }

    // B alone on another secret: nobody reaches it, it reaches nobody.
    put_settings(
        b,
        serde_json::json!({"lan_mesh": {"shared_secret": "elsewhere-secret"}}),
    )
    .await?;
    for node in [a, c] {
        lanchat_tests::chat::wait_contact_online(node, b_id, false, ONLINE).await?;
    }
    // Concurrent edits on both sides: a rename and a member added on A (the owner);
    // leaving on B (the only change a member makes).
    let newcomer = storage::MessageId::new().to_string();
    update_group(a, &id, &serde_json::json!({"name": "from A"})).await?;
    update_group(
        a,
        &id,
        &serde_json::json!({"members": [b_id, c_id, newcomer]}),
    )
    .await?;
    let (status, _) = post_action(b, &format!("v1/groups/{id}/leave")).await?;
    anyhow::ensure!(status == 200, "B leaving: {status}");
    wait_group(c, &id, DELIVERY, "A's edits on C", |g| g.name == "from A").await?;

    // Heal.
    put_settings(
        b,
        serde_json::json!({"lan_mesh": {"shared_secret": GROUP_NODES_SECRET}}),
    )
    .await?;
    let settled = wait_until(DELIVERY, "the same state on A, B and C", || async {
        let path = format!("v1/groups/{id}");
        let mut views: Vec<GroupView> = Vec::new();
        for node in [a, b, c] {
            views.push(lanchat_tests::chat::get(node, &path).await.ok()?);
        }
        (same_group_state(&views[0], &views[1]) && same_group_state(&views[1], &views[2]))
            .then(|| views[0].clone())
    })
    .await?;
    let mut expected = vec![a_id.clone(), c_id.clone(), newcomer];
    expected.sort();
    anyhow::ensure!(
        member_ids(&settled) == expected,
        "both member changes survive: {settled:?}"
    );
    anyhow::ensure!(
        settled.name == "from A",
        "the rename everywhere: {settled:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_wait_for_the_user_when_auto_accept_is_off() {
    let mesh = three_nodes("invitations_wait_for_the_user_when_auto_accept_is_off").await;
    let result = invitations(&mesh).await;
    mesh.explain(result).unwrap();
}

async fn invitations(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    let [a, c] = [&mesh.nodes[0], &mesh.nodes[2]];
    let [a_id, b_id, c_id] = [&mesh.ids[0], &mesh.ids[1], &mesh.ids[2]];
    all_online(mesh, ONLINE).await?;
    put_settings(
        c,
        serde_json::json!({"lan_mesh": {"auto_accept_group_sync": false}}),
    )
    .await?;
    all_online(mesh, ONLINE).await?;
    let c_events = EventRecorder::start(c).await?;

    let group = create_group(a, "邀请 invited", &[b_id, c_id]).await?;
    let id = group.id.clone();
    let conv = group_conversation(&id);
    let invitation = c_events
        .wait_for(DELIVERY, "group.invitation on C", |events| {
            events.iter().find_map(|e| match e {
                Event::GroupInvitation { invitation } if invitation.group.id == id => {
                    Some(invitation.clone())
                }
                _ => None,
            })
        })
        .await?;
    anyhow::ensure!(
        invitation.from_peer_id == *a_id && invitation.group.name == "邀请 invited",
        "{invitation:?}"
    );
    let listed: Vec<api_types::GroupInvitationView> =
        lanchat_tests::chat::get(c, "v1/group-invitations").await?;
    anyhow::ensure!(listed.len() == 1 && listed[0].group.id == id, "{listed:?}");
    let held: Vec<GroupView> = lanchat_tests::chat::groups(c).await?;
    anyhow::ensure!(held.is_empty(), "not joined before accepting: {held:?}");

    // Sent while C has not accepted yet: C refuses it (no such group here) and counts
    // that; it arrives once C joins.
    send_dm(a, &conv, "while invited").await?;
    wait_until(DELIVERY, "C counting the refused group message", || async {
        let counters = lanchat_tests::chat::transport(c).await.ok()?;
        (counters.envelopes_rejected >= 1).then_some(())
    })
    .await?;
    let (status, joined) = post_action(c, &format!("v1/group-invitations/{id}/accept")).await?;
    anyhow::ensure!(
        status == 200 && joined["is_member"] == true,
        "{status} {joined}"
    );
    let on_c = wait_count(c, &conv, 1, DELIVERY).await?;
    anyhow::ensure!(on_c[0].text == "while invited", "{on_c:?}");
    let listed: Vec<api_types::GroupInvitationView> =
        lanchat_tests::chat::get(c, "v1/group-invitations").await?;
    anyhow::ensure!(listed.is_empty(), "{listed:?}");

    // Declined: C leaves that group on A, and never joins it.
    let other = create_group(a, "declined", &[c_id]).await?;
    wait_until(DELIVERY, "the second invitation", || async {
        let listed: Vec<api_types::GroupInvitationView> =
            lanchat_tests::chat::get(c, "v1/group-invitations")
                .await
                .ok()?;
        listed.iter().any(|i| i.group.id == other.id).then_some(())
    })
    .await?;
    let (status, _) = post_action(c, &format!("v1/group-invitations/{}/decline", other.id)).await?;
    anyhow::ensure!(status == 204, "declining: {status}");
    wait_group(a, &other.id, DELIVERY, "C left the declined group", |g| {
        member_ids(g) == vec![a_id.clone()]
    })
    .await?;
    let held = lanchat_tests::chat::groups(c).await?;
    anyhow::ensure!(
        held.iter().all(|g| g.id != other.id),
        "a declined group is not joined: {held:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_five_minutes_ahead_does_not_change_the_order() {
    let mut mesh = three_nodes("a_clock_five_minutes_ahead_does_not_change_the_order").await;
    let env = lanchat_tests::faketime_env("+5m").unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    mesh.restart_with(2, &env).await.unwrap();
    let result = skew(&mesh).await;
    mesh.explain(result).unwrap();
}

async fn skew(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    let [a, b, c] = [&mesh.nodes[0], &mesh.nodes[1], &mesh.nodes[2]];
    let [b_id, c_id] = [&mesh.ids[1], &mesh.ids[2]];
    all_online(mesh, ONLINE).await?;
    let group = create_group(a, "skew", &[b_id, c_id]).await?;
    let id = group.id.clone();
    let conv = group_conversation(&id);
    for node in [b, c] {
        wait_group(node, &id, DELIVERY, "the group", |g| {
            member_ids(g).len() == 3
        })
        .await?;
    }
    // C's clock is ahead: its message is stamped five minutes after A's wall time, and
    // a reply A sends after seeing it still sorts after it.
    let first = send_dm(c, &conv, "from the future").await?;
    wait_count(a, &conv, 1, DELIVERY).await?;
    let reply = send_dm(a, &conv, "reply").await?;
    anyhow::ensure!(
        first.sent_at > reply.sent_at + 200_000,
        "C's clock runs ahead: {} vs {}",
        first.sent_at,
        reply.sent_at
    );
    let texts = |tag: &str| -> Vec<String> { (0..20).map(|i| format!("{tag} {i}")).collect() };
    let (ta, tb, tc) = (texts("a"), texts("b"), texts("c"));
    let (ra, rb, rc) = tokio::join!(
        send_concurrently(a, &conv, &ta, 4),
        send_concurrently(b, &conv, &tb, 4),
        send_concurrently(c, &conv, &tc, 4),
    );
    ra?;
    rb?;
    rc?;
    let on_a = wait_count(a, &conv, 62, DELIVERY).await?;
    let on_b = wait_count(b, &conv, 62, DELIVERY).await?;
    let on_c = wait_count(c, &conv, 62, DELIVERY).await?;
    anyhow::ensure!(
        ids(&on_a) == ids(&on_b) && ids(&on_b) == ids(&on_c),
        "the same order on every node"
    );
    let position = |text: &str| on_a.iter().position(|m| m.text == text);
    anyhow::ensure!(
        position("from the future") < position("reply"),
        "the reply sorts after what it answers"
    );
    Ok(())
}
