//! Groups on a real LAN of network namespaces (issue 6): three `lanchat serve` hosts
//! that find each other by broadcast, driven only through their local API. Needs root
//! (see `lanchat_tests::netns`).
//!
//! - `a_group_on_the_lan_keeps_one_history_and_survives_a_partition`: A creates a group
//!   with B and C → the same state on B and C; A, B and C each send 100 messages at once
//!   → identical histories in identical order on all three. Then B is cut off the
//!   switch: A renames and adds a member while B leaves (a member cannot rename: 403); healed → the same
//!   name, members and revision everywhere. A adds B back and removes C: what A sends
//!   afterwards never reaches C; added again, C gets the current state.
//! - `a_returning_member_catches_up_from_whoever_is_online`: C is stopped while A and B
//!   send 25 each; then A is stopped for good; C comes back → it gets all 50 from B
//!   (group catch-up: A's messages relayed by B), and its history equals B's.
//! - `a_skewed_clock_and_an_invitation_on_the_lan`: C's whole process runs five minutes
//!   ahead (libfaketime, `lanchat_tests::faketime_env`) with auto-accept off: A's group waits as C's invitation
//!   until accepted; then A, B and C send 30 each at once → one order on all three, and
//!   a reply A sends after seeing C's message sorts after it.
//!
//! Timings: heartbeat 1 s, TTL 3 s (`NodeSettings::default()`), the product's backoff.

use std::time::Duration;

use lanchat_tests::netns::{Host, Lan, Method};
use lanchat_tests::{faketime_env, wait_until};
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(15);
const DELIVERY: Duration = Duration::from_secs(90);
const PER_HOST: usize = 100;

async fn mesh(lan: &Lan, names: &[&str]) -> anyhow::Result<Vec<Host>> {
    lan.add_hosts_listing_each_other(names, SETTLE).await
}

async fn group(host: &Host, id: &str) -> anyhow::Result<Value> {
    host.get(&format!("v1/groups/{id}")).await
}

/// What every member must agree on.
fn state(g: &Value) -> Value {
    let members: Vec<Value> = g["members"]
        .as_array()
        .map(|m| m.iter().map(|x| x["peer_id"].clone()).collect())
        .unwrap_or_default();
    json!([
        g["name"],
        g["owner"],
        g["announcement"],
        members,
        g["revision"],
        g["revision_editor"],
        g["dissolved"]
    ])
}

fn member_count(g: &Value) -> usize {
    g["members"].as_array().map_or(0, Vec::len)
}

async fn wait_group(
    host: &Host,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    wait_until(DELIVERY, what, || async {
        let g = group(host, id).await.ok()?;
        done(&g).then_some(g)
    })
    .await
}

async fn send(host: &Host, conversation: &str, text: &str) -> anyhow::Result<()> {
    host.call_expect(
        Method::Post,
        &format!("v1/conversations/{conversation}/messages"),
        Some(&json!({ "text": text })),
        201,
    )
    .await
    .map(drop)
}

async fn send_all(host: &Host, conversation: &str, tag: &str, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        send(host, conversation, &format!("{tag} {i}")).await?;
    }
    Ok(())
}

/// The whole history, oldest first: (id, text).
async fn history(host: &Host, conversation: &str) -> anyhow::Result<Vec<(String, String)>> {
    let base = format!("v1/conversations/{conversation}/messages?limit=200");
    let mut pages = Vec::new();
    let mut path = base.clone();
    for _ in 0..50 {
        let page = host.get(&path).await?;
        let messages: Vec<(String, String)> = page["messages"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|m| {
                        let field = |k: &str| m[k].as_str().unwrap_or("").to_string();
                        (field("id"), field("text"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        pages.push(messages);
        match page["older"].as_str() {
            Some(older) => path = format!("{base}&before={older}"),
            None => return Ok(pages.into_iter().rev().flatten().collect()),
        }
    }
    anyhow::bail!("too many pages")
}

async fn wait_history(
    host: &Host,
    conversation: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    wait_until(DELIVERY, "the whole history", || async {
        let h = history(host, conversation).await.ok()?;
        (h.len() >= count).then_some(h)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_on_the_lan_keeps_one_history_and_survives_a_partition() -> anyhow::Result<()> {
    let lan = Lan::new("lan_groups")?;
    let hosts = mesh(&lan, &["alpha", "bravo", "charlie"]).await?;
    let [a, b, c] = [&hosts[0], &hosts[1], &hosts[2]];

    // Create on A: the same group on B and C.
    let created = a
        .call_expect(
            Method::Post,
            "v1/groups",
            Some(&json!({"name": "局域网 LAN", "members": [b.node_id, c.node_id]})),
            201,
        )
        .await?;
    let id = created["id"].as_str().unwrap_or("").to_string();
    let conv = format!("group:{id}");
    for host in [b, c] {
        let g = wait_group(host, &id, "the group on B and C", |g| member_count(g) == 3).await?;
        assert_eq!(state(&g), state(&created));
    }

    // 100 each, all three at once: one history, one order.
    let (ra, rb, rc) = tokio::join!(
        send_all(a, &conv, "a", PER_HOST),
        send_all(b, &conv, "b", PER_HOST),
        send_all(c, &conv, "c", PER_HOST),
    );
    ra?;
    rb?;
    rc?;
    let on_a = wait_history(a, &conv, 3 * PER_HOST).await?;
    let on_b = wait_history(b, &conv, 3 * PER_HOST).await?;
    let on_c = wait_history(c, &conv, 3 * PER_HOST).await?;
    assert_eq!(on_a.len(), 3 * PER_HOST, "exactly once");
    assert_eq!(on_a, on_b);
    assert_eq!(on_b, on_c);

    // A partition: B alone. Concurrent edits on both sides.
    lan.set_partitioned(&b.ns, true)?;
    wait_until(SETTLE, "A and C see B gone", || async {
        let on_a = a.online_peer_ids().await.ok()?;
        let on_c = c.online_peer_ids().await.ok()?;
        (!on_a.contains(&b.node_id) && !on_c.contains(&b.node_id)).then_some(())
    })
    .await?;
    let newcomer = storage::MessageId::new().to_string();
    a.call_expect(
        Method::Put,
        &format!("v1/groups/{id}"),
        Some(&json!({"name": "from A"})),
        200,
    )
    .await?;
    a.call_expect(
        Method::Put,
        &format!("v1/groups/{id}"),
        Some(&json!({"members": [b.node_id, c.node_id, newcomer]})),
        200,
    )
    .await?;
    b.call_expect(
        Method::Put,
        &format!("v1/groups/{id}"),
        Some(&json!({"name": "from B"})),
        403,
    )
    .await?;
    b.call_expect(Method::Post, &format!("v1/groups/{id}/leave"), None, 200)
        .await?;
    lan.set_partitioned(&b.ns, false)?;
    let settled = wait_until(
        DELIVERY,
        "one state on A, B and C after healing",
        || async {
            let (ga, gb, gc) = (
                group(a, &id).await.ok()?,
                group(b, &id).await.ok()?,
                group(c, &id).await.ok()?,
            );
            (state(&ga) == state(&gb) && state(&gb) == state(&gc)).then_some(ga)
        },
    )
    .await?;
    let mut expected = vec![a.node_id.clone(), c.node_id.clone(), newcomer];
    expected.sort();
    let members: Vec<String> = settled["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["peer_id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(members, expected, "both member changes survive");
    assert_eq!(settled["name"], "from A", "{settled}");

    // A adds B back and removes C (and the newcomer): nothing sent afterwards reaches C.
    a.call_expect(
        Method::Put,
        &format!("v1/groups/{id}"),
        Some(&json!({"members": [b.node_id]})),
        200,
    )
    .await?;
    wait_group(c, &id, "C removed", |g| g["is_member"] == false).await?;
    wait_group(b, &id, "B back", |g| g["is_member"] == true).await?;
    send_all(a, &conv, "after removal", 10).await?;
    wait_until(DELIVERY, "A's messages delivered to B", || async {
        let page = a
            .get(&format!("v1/conversations/{conv}/messages?limit=10"))
            .await
            .ok()?;
        page["messages"]
            .as_array()?
            .iter()
            .all(|m| m["status"] == "delivered")
            .then_some(())
    })
    .await?;
    let on_c = history(c, &conv).await?;
    assert!(
        on_c.iter()
            .all(|(_, text)| !text.starts_with("after removal")),
        "a removed member gets nothing"
    );
    // Added again: C gets the current state.
    let now = a
        .call_expect(
            Method::Put,
            &format!("v1/groups/{id}"),
            Some(&json!({"members": [b.node_id, c.node_id]})),
            200,
        )
        .await?;
    wait_group(c, &id, "C back, with the current state", |g| {
        g["is_member"] == true && state(g) == state(&now)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_member_catches_up_from_whoever_is_online() -> anyhow::Result<()> {
    let lan = Lan::new("lan_groups_catch_up")?;
    let mut hosts = mesh(&lan, &["alpha", "bravo", "charlie"]).await?;
    let created = hosts[0]
        .call_expect(
            Method::Post,
            "v1/groups",
            Some(&json!({"name": "catch-up", "members": [hosts[1].node_id, hosts[2].node_id]})),
            201,
        )
        .await?;
    let id = created["id"].as_str().unwrap_or("").to_string();
    let conv = format!("group:{id}");
    wait_group(&hosts[2], &id, "the group on C", |g| member_count(g) == 3).await?;

    hosts[2].stop().await?;
    let (ra, rb) = tokio::join!(
        send_all(&hosts[0], &conv, "a", 25),
        send_all(&hosts[1], &conv, "b", 25),
    );
    ra?;
    rb?;
    let on_b = wait_history(&hosts[1], &conv, 50).await?;
    // A leaves the LAN for good before C is back: only B can hand C A's messages.
    hosts[0].stop().await?;
    hosts[2].start().await?;
    let on_c = wait_history(&hosts[2], &conv, 50).await?;
    assert_eq!(on_c, on_b, "the same 50, in the same order");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_clock_and_an_invitation_on_the_lan() -> anyhow::Result<()> {
    let lan = Lan::new("lan_groups_skew")?;
    let mut hosts = mesh(&lan, &["alpha", "bravo", "charlie"]).await?;
    for (key, value) in faketime_env("+5m")? {
        hosts[2].set_env(&key, &value);
    }
    hosts[2].restart().await?;
    hosts[2]
        .call_expect(
            Method::Put,
            "v1/settings",
            Some(&json!({"lan_mesh": {"auto_accept_group_sync": false}})),
            200,
        )
        .await?;
    let [a, b, c] = [&hosts[0], &hosts[1], &hosts[2]];
    for host in [a, b] {
        wait_until(SETTLE, "C back online", || async {
            host.lists(c).await.ok()?.then_some(())
        })
        .await?;
    }
    let created = a
        .call_expect(
            Method::Post,
            "v1/groups",
            Some(&json!({"name": "skew", "members": [b.node_id, c.node_id]})),
            201,
        )
        .await?;
    let id = created["id"].as_str().unwrap_or("").to_string();
    let conv = format!("group:{id}");
    wait_until(DELIVERY, "the invitation on C", || async {
        let list = c.get("v1/group-invitations").await.ok()?;
        list.as_array()?
            .iter()
            .any(|i| i["group"]["id"] == id.as_str())
            .then_some(())
    })
    .await?;
    let (status, _) = c
        .call(Method::Get, &format!("v1/groups/{id}"), None)
        .await?;
    assert_eq!(status, 404, "not joined before accepting");
    c.call_expect(
        Method::Post,
        &format!("v1/group-invitations/{id}/accept"),
        None,
        200,
    )
    .await?;
    wait_group(b, &id, "the group on B", |g| member_count(g) == 3).await?;

    send(c, &conv, "from the future").await?;
    wait_history(a, &conv, 1).await?;
    send(a, &conv, "reply").await?;
    let (ra, rb, rc) = tokio::join!(
        send_all(a, &conv, "a", 30),
        send_all(b, &conv, "b", 30),
        send_all(c, &conv, "c", 30),
    );
    ra?;
    rb?;
    rc?;
    let on_a = wait_history(a, &conv, 92).await?;
    let on_b = wait_history(b, &conv, 92).await?;
    let on_c = wait_history(c, &conv, 92).await?;
    assert_eq!(on_a.len(), 92, "exactly once");
    assert_eq!(on_a, on_b);
    assert_eq!(on_b, on_c);
    let position = |text: &str| on_a.iter().position(|(_, t)| t == text);
    assert!(position("from the future") < position("reply"));
    Ok(())
}
