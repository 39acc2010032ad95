//! The LAN mesh inside real `lanchat serve` processes on loopback, driven only through
//! the local API: discovery by manual peer address (loopback has no broadcast; the
//! broadcast path is tested in network namespaces), live settings, blocks, goodbye,
//! and the events WebSocket.

use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lanchat_tests::{holds_until, wait_until, LoopbackPair, NodeProcess};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(10);

async fn pair(secret_b: &str) -> anyhow::Result<LoopbackPair> {
    LoopbackPair::start("office", secret_b).await
}

async fn peer(node: &NodeProcess, id: &str, query: &str) -> Option<Value> {
    let peers = node.get_json(&format!("v1/peers{query}")).await.ok()?;
    peers
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == id)
        .cloned()
}

/// One of the node's discovery counters (`GET /api/v1/status`); 0 while the mesh is
/// still starting (the API answers first, and nothing was counted yet).
async fn discovery_counter(node: &NodeProcess, name: &str) -> anyhow::Result<u64> {
    let status = node.get_json("v1/status").await?;
    if status["discovery"].is_null() && status["mesh_state"] == "starting" {
        return Ok(0);
    }
    status["discovery"][name]
        .as_u64()
        .with_context(|| format!("no discovery counter {name:?} in {status}"))
}

async fn online(node: &NodeProcess, id: &str) -> bool {
    peer(node, id, "")
        .await
        .is_some_and(|p| p["online"] == true)
}

#[tokio::test]
async fn two_nodes_find_each_other_and_blocks_hold() -> anyhow::Result<()> {
    let mut p = pair("office").await?;
    wait_until(LIMIT, "a lists b", || async {
        online(&p.a, &p.b_id).await.then_some(())
    })
    .await?;
    wait_until(LIMIT, "b lists a", || async {
        online(&p.b, &p.a_id).await.then_some(())
    })
    .await?;
    let b_on_a = peer(&p.a, &p.b_id, "").await.unwrap_or_default();
    assert_eq!(b_on_a["display_name"], "bravo");
    assert_eq!(b_on_a["blocked"], false);
    assert!(b_on_a["address"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    let status = p.a.get_json("v1/status").await?;
    assert_eq!(status["mesh_state"], "running");
    assert!(status["discovery"]["accepted"].as_u64().unwrap_or(0) > 0);

    // Block: gone at once, stays gone while b keeps sending, and across a restart.
    let blocked =
        p.a.http()
            .post(p.a.api_url(&format!("v1/peers/{}/block", p.b_id)))
            .bearer_auth(&p.a.token)
            .send()
            .await?;
    assert_eq!(blocked.status(), 200);
    assert!(
        peer(&p.a, &p.b_id, "").await.is_none(),
        "blocked peer leaves the list at once"
    );
    let hidden = peer(&p.a, &p.b_id, "?include_blocked=true").await;
    assert_eq!(hidden.map(|h| h["blocked"].clone()), Some(json!(true)));
    let drops_before = p.a.get_json("v1/status").await?["discovery"]["blocked_peer"]
        .as_u64()
        .unwrap_or(0);
    wait_until(LIMIT, "b's packets dropped as blocked", || async {
        let s = p.a.get_json("v1/status").await.ok()?;
        (s["discovery"]["blocked_peer"].as_u64()? > drops_before + 2).then_some(())
    })
    .await?;
    assert!(
        peer(&p.a, &p.b_id, "").await.is_none(),
        "still hidden after 3 heartbeats"
    );
    let settings = p.a.get_json("v1/settings").await?;
    assert_eq!(
        settings["lan_mesh"]["blocked_peers"],
        json!([p.b_id.clone()])
    );

    let dir = p.a.data_dir.clone();
    p.a.stop().await?;
    p.a = NodeProcess::serve(&dir).await?;
    // The restarted a counts from zero: three of b's packets dropped as blocked means b
    // kept announcing to it, so the look below comes after b could have reappeared.
    holds_until(
        LIMIT,
        "the block survives a restart",
        || async {
            Ok(match peer(&p.a, &p.b_id, "").await {
                Some(b) => Err(format!("a lists b: {b}")),
                None => Ok(()),
            })
        },
        || async { Ok(discovery_counter(&p.a, "blocked_peer").await? >= 3) },
    )
    .await?;

    let unblocked =
        p.a.http()
            .post(p.a.api_url(&format!("v1/peers/{}/unblock", p.b_id)))
            .bearer_auth(&p.a.token)
            .send()
            .await?;
    assert_eq!(unblocked.status(), 200);
    wait_until(LIMIT, "b back on a after unblock", || async {
        online(&p.a, &p.b_id).await.then_some(())
    })
    .await?;

    // Goodbye: a clean stop of b takes it offline on a well before its TTL.
    p.b.stop().await?;
    wait_until(
        Duration::from_millis(2500),
        "b offline on a after goodbye",
        || async {
            peer(&p.a, &p.b_id, "")
                .await
                .filter(|p| p["online"] == false)
                .map(drop)
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_node_with_another_secret_is_never_seen() -> anyhow::Result<()> {
    let p = pair("not-the-office-secret").await?;
    // Until each has dropped several of the other's packets for their tag (hellos,
    // probes, heartbeats): only then does "not listed" mean refused, not "not yet".
    holds_until(
        LIMIT,
        "neither lists the other",
        || async {
            if let Some(b) = peer(&p.a, &p.b_id, "?include_blocked=true").await {
                return Ok(Err(format!("a lists b: {b}")));
            }
            if let Some(a) = peer(&p.b, &p.a_id, "?include_blocked=true").await {
                return Ok(Err(format!("b lists a: {a}")));
            }
            Ok(Ok(()))
        },
        || async {
            Ok(discovery_counter(&p.a, "bad_tag").await? >= 3
                && discovery_counter(&p.b, "bad_tag").await? >= 3)
        },
    )
    .await
}

#[tokio::test]
async fn settings_apply_live_and_events_stream_peer_changes() -> anyhow::Result<()> {
    let mut p = pair("office").await?;
    wait_until(LIMIT, "a lists b", || async {
        online(&p.a, &p.b_id).await.then_some(())
    })
    .await?;
    let ws_url = format!("{}api/v1/events", p.a.url.replacen("http://", "ws://", 1));
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("lanchat.v1, lanchat.bearer.{}", p.a.token).parse()?,
    );
    let (mut events, resp) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap_or("")),
        Some("lanchat.v1")
    );
    let mut next_event = async |kind: &str| -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, events.next()).await?;
            let Some(Ok(Message::Text(text))) = frame else {
                continue;
            };
            let event: Value = serde_json::from_str(&text)?;
            if event["type"] == kind {
                return Ok(event);
            }
        }
    };
    let b_dir = p.b.data_dir.clone();
    p.b.stop().await?;
    let offline = next_event("peer.offline").await?;
    assert_eq!(offline["peer"]["peer_id"], p.b_id.as_str());
    assert_eq!(offline["reason"], "goodbye");
    p.b = NodeProcess::serve(&b_dir).await?;
    let back = next_event("peer.online").await?;
    assert_eq!(back["peer"]["peer_id"], p.b_id.as_str());
    assert_eq!(back["peer"]["display_name"], "bravo");
    // Writing to b makes it a contact: only contacts (peers written to or linked) are
    // remembered in the database; a peer merely seen is not.
    let to_b = format!("dm:lan:{}", p.b_id);
    let hello = lanchat_tests::chat::send_dm(&p.a, &to_b, "hello b").await?;
    // Delivered: the two have linked, so each is the other's contact.
    lanchat_tests::chat::wait_all_delivered(&p.a, &to_b, &[hello.id], LIMIT).await?;

    // Disabling the mesh stops it within a second and says goodbye to b.
    let (status, _) =
        p.a.put_json("v1/settings", &json!({"lan_mesh": {"enabled": false}}))
            .await?;
    assert_eq!(status, 200);
    wait_until(Duration::from_secs(1), "mesh off", || async {
        let s = p.a.get_json("v1/status").await.ok()?;
        (s["mesh_state"] == "off" && s["discovery"].is_null()).then_some(())
    })
    .await?;
    wait_until(Duration::from_secs(2), "a offline on b", || async {
        peer(&p.b, &p.a_id, "")
            .await
            .filter(|x| x["online"] == false)
            .map(drop)
    })
    .await?;
    let remembered = peer(&p.a, &p.b_id, "").await;
    assert_eq!(
        remembered.map(|r| r["online"].clone()),
        Some(json!(false)),
        "with the mesh off, known peers are listed offline from the database"
    );

    // And on again.
    p.a.put_json("v1/settings", &json!({"lan_mesh": {"enabled": true}}))
        .await?;
    wait_until(LIMIT, "b back on a", || async {
        online(&p.a, &p.b_id).await.then_some(())
    })
    .await?;

    // Without the token the event stream is refused.
    let bare = format!("{}api/v1/events", p.a.url.replacen("http://", "ws://", 1));
    assert!(tokio_tungstenite::connect_async(bare).await.is_err());
    Ok(())
}

#[tokio::test]
async fn bad_peer_requests_get_clear_errors() -> anyhow::Result<()> {
    let p = pair("office").await?;
    let post = |path: String, body: Value| {
        p.a.http()
            .post(p.a.api_url(&path))
            .bearer_auth(&p.a.token)
            .json(&body)
            .send()
    };
    let resp = post("v1/peers/not-an-id/block".into(), json!({})).await?;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await?["field"], "peer_id");

    let resp = post("v1/peers".into(), json!({"address": "10.0.0.1"})).await?;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await?["field"], "address");

    let resp = post("v1/peers".into(), json!({"address": "127.0.0.1:1"})).await?;
    assert_eq!(resp.status(), 201);
    let settings = p.a.get_json("v1/settings").await?;
    assert!(settings["lan_mesh"]["peer_addresses"]
        .as_array()
        .is_some_and(|l| l.contains(&json!("127.0.0.1:1"))));

    let unknown = ulid::Ulid::new().to_string();
    let resp =
        p.a.http()
            .delete(p.a.api_url(&format!("v1/peers/{unknown}")))
            .bearer_auth(&p.a.token)
            .send()
            .await?;
    assert_eq!(resp.status(), 404);
    Ok(())
}

#[tokio::test]
async fn a_mesh_that_cannot_bind_reports_it_and_starts_once_the_port_is_free() -> anyhow::Result<()>
{
    let tmp = tempfile::tempdir()?;
    // Hold the discovery port without SO_REUSEPORT, so the node cannot bind it.
    let squatter = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let port = squatter.local_addr()?.port();
    let (_, doc) = lanchat_tests::loopback_mesh_settings("alpha", port, port, "office")?;
    std::fs::create_dir_all(tmp.path().join("a"))?;
    lanchat_tests::write_settings(&tmp.path().join("a"), &doc)?;
    let node = NodeProcess::serve(&tmp.path().join("a")).await?;

    let status = wait_until(LIMIT, "mesh failed", || async {
        let s = node.get_json("v1/status").await.ok()?;
        (s["mesh_state"] == "failed").then_some(s)
    })
    .await?;
    assert!(
        status["mesh_error"].as_str().is_some_and(|e| !e.is_empty()),
        "the reason is reported: {status}"
    );

    drop(squatter);
    wait_until(
        Duration::from_secs(15),
        "mesh running after the port is freed",
        || async {
            let s = node.get_json("v1/status").await.ok()?;
            (s["mesh_state"] == "running").then_some(())
        },
    )
    .await?;
    Ok(())
}
