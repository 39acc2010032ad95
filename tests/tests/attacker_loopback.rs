//! Insiders attacking a group (issue 15): two real `lanchat serve` processes on
//! 127.0.0.1 (A owns a group with B, Mallory and an absent member Carol) and an attack
//! tool in this process (`lanchat_tests::attacker`) that holds the shared secret and
//! keys of its own and speaks the real protocol: the Noise handshake, signed
//! envelopes.
//!
//! - `forged_group_changes_change_nothing_on_any_honest_node`: Mallory, a member, gets
//!   the group's real signed state from A, then sends A and B upserts that add a friend,
//!   remove Carol, rename, dissolve (each signed in her own name), a rename in A's name
//!   signed with her key, and a group made up in A's name; Oscar, an outsider with the
//!   secret, adds himself. Every one is rejected as forged and counted
//!   (`envelopes_forged`), and A and B show the group exactly as before (local API),
//!   with no trace of the made-up group (no group, no invitation).
//!
//! - `a_relaying_member_can_neither_rewrite_nor_invent_messages`: Mallory, a member,
//!   receives B's group message (with B's signature) and relays it to A with its text
//!   changed, together with a message "by B" she made up: A stores neither, answers
//!   `forged`, counts both, and A and B show B's words as B wrote them.
//!
//! Logs in `target/test-artifacts/attacker_loopback/<test>/`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use api_types::{GroupView, NodeId};
use lan_mesh::envelope::{
    author_keys, GroupSendPayload, GroupStateWire, RelayPayload, RelayedPayload, KIND_GROUP_RELAY,
    KIND_GROUP_SEND, KIND_GROUP_UPSERT,
};
use lanchat_tests::attacker::{link_addr, Answer, Attacker};
use lanchat_tests::chat::{
    all_online, create_group, group_conversation, groups, history, same_group_state, send_dm,
    wait_group, GROUP_NODES_SECRET,
};
use lanchat_tests::{wait_until, LoopbackMesh};
use storage::{Change, GlobalGroupId, GroupState, Stamp};

const ONLINE: Duration = Duration::from_secs(20);
const DELIVERY: Duration = Duration::from_secs(60);

async fn two_nodes(test: &str) -> LoopbackMesh {
    LoopbackMesh::start(
        &format!("attacker_loopback/{test}"),
        &["alpha", "bravo"],
        GROUP_NODES_SECRET,
        &[
            ("LANCHAT_RETRY_FIRST_MS", "200"),
            ("LANCHAT_RETRY_MAX_MS", "1000"),
        ],
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_group_changes_change_nothing_on_any_honest_node() {
    let mesh = two_nodes("forged_group_changes_change_nothing_on_any_honest_node").await;
    let result = forged_group_changes(&mesh).await;
    mesh.explain(result).unwrap();
}

/// `state` with `change` made by `editor` and every unsigned change signed with
/// `keys` (whoever its editor: a forger signs what it likes).
fn forge(
    state: &GroupState,
    keys: &lan_mesh::transport::NodeKeys,
    change: impl FnOnce(&mut GroupState),
) -> GroupState {
    let mut forged = state.clone();
    change(&mut forged);
    let gid = forged.global_group_id;
    let sign = |bytes: Vec<u8>| Some(keys.sign(&bytes));
    for r in forged.names.iter_mut().filter(|r| r.sig.is_none()) {
        r.sig = sign(storage::group_statement(&gid, Change::Name(r)));
    }
    for r in forged.announcements.iter_mut().filter(|r| r.sig.is_none()) {
        r.sig = sign(storage::group_statement(&gid, Change::Announcement(r)));
    }
    for m in forged.members.iter_mut().filter(|m| m.sig.is_none()) {
        m.sig = sign(storage::group_statement(&gid, Change::Member(m)));
    }
    if let Some(d) = forged.dissolved.as_mut().filter(|d| d.sig.is_none()) {
        d.sig = sign(storage::group_statement(&gid, Change::Dissolved(d)));
    }
    let mine = (keys.public().node_id(), chat_keys(keys));
    if !forged.keys.iter().any(|(id, _)| *id == mine.0) {
        forged.keys.push(mine);
        forged.keys.sort();
    }
    forged
}

fn chat_keys(keys: &lan_mesh::transport::NodeKeys) -> storage::AuthorKeys {
    lan_mesh::envelope::author_keys(&keys.public())
}

async fn forged_group_changes(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    let [a, b] = [&mesh.nodes[0], &mesh.nodes[1]];
    let (a_id, b_id): (NodeId, NodeId) = (mesh.ids[0].parse()?, mesh.ids[1].parse()?);
    all_online(mesh, ONLINE).await?;
    let mallory = Attacker::new()?;
    let oscar = Attacker::new()?;
    let carol: NodeId = lanchat_tests::keyed_node_id()?.parse()?;
    let created = create_group(
        a,
        "团队 team",
        &[b_id.as_str(), mallory.id.as_str(), carol.as_str()],
    )
    .await?;
    let id = created.id.clone();
    let before_b = wait_group(b, &id, DELIVERY, "the group on B", |g| g.members.len() == 4).await?;
    let before_a: GroupView = lanchat_tests::chat::get(a, &format!("v1/groups/{id}")).await?;

    // Mallory is a member: A sends her the group's real, signed state once she links.
    let mut to_a = mallory
        .link(link_addr(a).await?, &a_id, GROUP_NODES_SECRET)
        .await?;
    let upsert = to_a.wait_envelope(KIND_GROUP_UPSERT).await?;
    let real: GroupState =
        serde_json::from_value::<GroupStateWire>(upsert.payload)?.into_state()?;
    anyhow::ensure!(real.global_group_id.to_string() == id, "{real:?}");
    let mut to_b = mallory
        .link(link_addr(b).await?, &b_id, GROUP_NODES_SECRET)
        .await?;

    let later = real.max_hlc() + (1 << 20);
    let by = |editor: &NodeId, n: u64| Stamp {
        hlc: later + n,
        editor: editor.clone(),
    };
    let friend: NodeId = lanchat_tests::keyed_node_id()?.parse()?;
    let made_up = GlobalGroupId::new();
    let mut fabricated = GroupState::create(
        made_up,
        &by(&a_id, 6),
        "free pizza",
        "",
        &[b_id.clone(), mallory.id.clone()],
    );
    fabricated.keys = real.keys.clone();
    let forgeries = [
        (
            "adds a friend",
            forge(&real, &mallory.keys, |g| {
                g.set_member(&friend, true, &by(&mallory.id, 1))
            }),
        ),
        (
            "removes Carol",
            forge(&real, &mallory.keys, |g| {
                g.set_member(&carol, false, &by(&mallory.id, 2))
            }),
        ),
        (
            "renames",
            forge(&real, &mallory.keys, |g| {
                g.set_name("mallory's", &by(&mallory.id, 3))
            }),
        ),
        (
            "dissolves",
            forge(&real, &mallory.keys, |g| g.dissolve(&by(&mallory.id, 4))),
        ),
        (
            "renames in A's name",
            forge(&real, &mallory.keys, |g| {
                g.set_name("A says so", &by(&a_id, 5))
            }),
        ),
        (
            "makes up a group in A's name",
            forge(&fabricated, &mallory.keys, |_| {}),
        ),
    ];
    for (what, state) in &forgeries {
        let payload = serde_json::to_value(GroupStateWire::from_state(state))?;
        for link in [&mut to_a, &mut to_b] {
            let envelope = link.envelope(KIND_GROUP_UPSERT, payload.clone());
            let answer = link.send(&envelope).await?;
            anyhow::ensure!(
                matches!(&answer, Answer::Rejected(reason) if reason.starts_with("forged")),
                "Mallory {what} on {}: {answer:?}",
                link.peer
            );
        }
    }
    // Oscar holds the secret but is no member: he adds himself.
    let mut oscar_to_b = oscar
        .link(link_addr(b).await?, &b_id, GROUP_NODES_SECRET)
        .await?;
    let joins = forge(&real, &oscar.keys, |g| {
        g.set_member(&oscar.id, true, &by(&oscar.id, 7))
    });
    let envelope = oscar_to_b.envelope(
        KIND_GROUP_UPSERT,
        serde_json::to_value(GroupStateWire::from_state(&joins))?,
    );
    let answer = oscar_to_b.send(&envelope).await?;
    anyhow::ensure!(
        matches!(&answer, Answer::Rejected(reason) if reason.starts_with("forged")),
        "Oscar adds himself: {answer:?}"
    );

    // Every honest node shows the group as it was, and nothing of the made-up one.
    for (node, before, forged) in [
        (a, &before_a, forgeries.len()),
        (b, &before_b, forgeries.len() + 1),
    ] {
        let now: GroupView = lanchat_tests::chat::get(node, &format!("v1/groups/{id}")).await?;
        anyhow::ensure!(
            same_group_state(before, &now),
            "changed: {before:?} → {now:?}"
        );
        anyhow::ensure!(
            now.name == "团队 team" && !now.dissolved && now.members.len() == 4,
            "{now:?}"
        );
        let all = groups(node).await?;
        anyhow::ensure!(all.len() == 1 && all[0].id == id, "groups: {all:?}");
        let invitations = node.get_json("v1/group-invitations").await?;
        anyhow::ensure!(
            invitations == serde_json::json!([]),
            "invitations: {invitations}"
        );
        let (status, _) = node
            .get(&format!("v1/groups/{made_up}"))
            .await
            .map(|r| (r.status().as_u16(), ()))?;
        anyhow::ensure!(status == 404, "the made-up group: {status}");
        let counted = wait_until(
            Duration::from_secs(5),
            "forged attempts counted",
            || async {
                let t = lanchat_tests::chat::transport(node).await.ok()?;
                (t.envelopes_forged >= forged as u64).then_some(t.envelopes_forged)
            },
        )
        .await?;
        anyhow::ensure!(counted == forged as u64, "counted {counted}, sent {forged}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaying_member_can_neither_rewrite_nor_invent_messages() {
    let mesh = two_nodes("a_relaying_member_can_neither_rewrite_nor_invent_messages").await;
    let result = rewritten_relays(&mesh).await;
    mesh.explain(result).unwrap();
}

async fn rewritten_relays(mesh: &LoopbackMesh) -> anyhow::Result<()> {
    let [a, b] = [&mesh.nodes[0], &mesh.nodes[1]];
    let (a_id, b_id): (NodeId, NodeId) = (mesh.ids[0].parse()?, mesh.ids[1].parse()?);
    all_online(mesh, ONLINE).await?;
    let mallory = Attacker::new()?;
    let created = create_group(a, "付款 payments", &[b_id.as_str(), mallory.id.as_str()]).await?;
    let id = created.id.clone();
    let conversation = group_conversation(&id);
    wait_group(b, &id, DELIVERY, "the group on B", |g| g.members.len() == 3).await?;

    // B writes; B's fan-out brings it to Mallory, with B's signature.
    let mut to_b = mallory
        .link(link_addr(b).await?, &b_id, GROUP_NODES_SECRET)
        .await?;
    let mut to_a = mallory
        .link(link_addr(a).await?, &a_id, GROUP_NODES_SECRET)
        .await?;
    let original = "pay 100 to Bob";
    send_dm(b, &conversation, original).await?;
    let sent = to_b.wait_envelope(KIND_GROUP_SEND).await?;
    let real: GroupSendPayload = serde_json::from_value(sent.payload)?;
    anyhow::ensure!(real.text == original && !real.sig.is_empty(), "{real:?}");
    let b_keys = author_keys(&to_b.peer_keys).to_hex();

    // She relays it to A with her own text, and one more "by B" that B never wrote
    // (signed by her, with her keys: they do not derive B's id).
    let invented_id = storage::MessageId::new();
    let group: GlobalGroupId = id.parse()?;
    let invented_statement = chat_core::message_statement(
        chat_core::MessageScope::Group(&group),
        &invented_id,
        &b_id,
        real.sent_at,
        chat_core::Hlc::from_raw(real.hlc + 1),
        "B: Mallory is right",
    );
    let relay = RelayPayload {
        global_group_id: id.clone(),
        messages: vec![
            RelayedPayload {
                message_id: real.message_id.clone(),
                author: b_id.to_string(),
                text: "pay 900 to Mallory".into(),
                sent_at: real.sent_at,
                hlc: real.hlc,
                sig: real.sig.clone(),
                keys: b_keys.clone(),
            },
            RelayedPayload {
                message_id: invented_id.to_string(),
                author: b_id.to_string(),
                text: "B: Mallory is right".into(),
                sent_at: real.sent_at,
                hlc: real.hlc + 1,
                sig: lanchat_tests::netns::hex_encode(&mallory.keys.sign(&invented_statement)),
                keys: author_keys(&mallory.keys.public()).to_hex(),
            },
        ],
    };
    let forged_before = lanchat_tests::chat::transport(a).await?.envelopes_forged;
    let envelope = to_a.envelope(KIND_GROUP_RELAY, serde_json::to_value(&relay)?);
    let answer = to_a.send(&envelope).await?;
    anyhow::ensure!(
        matches!(&answer, Answer::Rejected(reason) if reason.starts_with("forged")),
        "the rewritten relay: {answer:?}"
    );

    // A has B's message as B wrote it (directly from B), and nothing Mallory made.
    for node in [a, b] {
        let texts = wait_until(DELIVERY, "B's message on both", || async {
            let texts: Vec<String> = history(node, &conversation)
                .await
                .ok()?
                .into_iter()
                .map(|m| m.text)
                .collect();
            texts.contains(&original.to_string()).then_some(texts)
        })
        .await?;
        anyhow::ensure!(texts == [original], "{texts:?}");
    }
    let counted = wait_until(Duration::from_secs(5), "both forgeries counted", || async {
        let t = lanchat_tests::chat::transport(a).await.ok()?;
        (t.envelopes_forged >= forged_before + 2).then_some(t.envelopes_forged)
    })
    .await?;
    anyhow::ensure!(
        counted == forged_before + 2,
        "counted {}",
        counted - forged_before
    );
    Ok(())
}
