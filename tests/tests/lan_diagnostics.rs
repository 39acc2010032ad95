//! Diagnostics on a real LAN of network namespaces (issue 18): after one colleague is
//! blocked, one is killed (SIGKILL) and one is cut off the switch, `GET
//! /api/v1/diagnostics` on the observer shows each one's link state and why its link
//! ended — `blocked`; `offline` after the peer closed the connection; `offline` after
//! "no answer" — while a fifth, healthy colleague stays `up` with a round-trip time.
//! Needs root (see `lanchat_tests::netns`).
//!
//! Timings: heartbeat 1 s, TTL 3 s, a silent link dies after 3 s
//! (`NodeSettings::default()`).

use std::time::Duration;

use lanchat_tests::netns::{Host, Lan, Method};
use lanchat_tests::wait_until;
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(15);
const LIMIT: Duration = Duration::from_secs(20);

/// `from`'s diagnostics entry for `peer`.
async fn entry(from: &Host, peer: &Host) -> anyhow::Result<Value> {
    let report = from.get("v1/diagnostics").await?;
    report["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["peer_id"] == peer.node_id.as_str()))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{} not in the diagnostics: {report}", peer.node_id))
}

/// Sends one message to each peer and waits until `from` has a timed link to each.
async fn links_up(from: &Host, peers: &[&Host], text: &str) -> anyhow::Result<()> {
    for peer in peers {
        from.send_dm(peer, text).await?;
    }
    for peer in peers {
        wait_until(LIMIT, "a timed link to each peer", || async {
            let e = entry(from, peer).await.ok()?;
            (e["link"] == "up" && e["rtt_ms"].is_number() && e["outbox_depth"] == 0).then_some(())
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn diagnostics_tell_blocked_killed_and_partitioned_peers_apart() -> anyhow::Result<()> {
    let lan = Lan::new("diagnostics-states")?;
    let mut hosts = lan
        .add_hosts_listing_each_other(&["obs", "blk", "dead", "cut", "ok"], SETTLE)
        .await?;
    let [obs, blk, dead, cut, ok] = &mut hosts[..] else {
        anyhow::bail!("five hosts expected");
    };
    links_up(obs, &[blk, dead, cut, ok], "hello").await?;
    // Each link shows the key the peer's own status shows.
    for peer in [&*blk, &*dead, &*cut, &*ok] {
        let e = entry(obs, peer).await?;
        let key = peer.status().await?["link_key"].clone();
        anyhow::ensure!(e["key_fingerprint"] == key, "{e} vs {key}");
    }

    obs.call_expect(
        Method::Post,
        &format!("v1/peers/{}/block", blk.node_id),
        None,
        200,
    )
    .await?;
    let blocked = wait_until(LIMIT, "blk shown blocked, its link closed", || async {
        let e = entry(obs, blk).await.ok()?;
        (e["link"] == "blocked" && e["last_error"].is_string()).then_some(e)
    })
    .await?;
    anyhow::ensure!(
        blocked["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("closed here")),
        "{blocked}"
    );
    // The block is a settings change, which closes every link: open the others again.
    links_up(obs, &[dead, cut, ok], "after the block").await?;

    dead.kill()?;
    lan.set_partitioned(&cut.ns, true)?;
    let (killed, partitioned) = wait_until(LIMIT, "dead and cut offline", || async {
        let (d, c) = (entry(obs, dead).await.ok()?, entry(obs, cut).await.ok()?);
        (d["link"] == "offline" && c["link"] == "offline").then_some((d, c))
    })
    .await?;
    let reason = |e: &Value| e["last_error"].as_str().unwrap_or_default().to_string();
    // A killed process's kernel closes its connections: the peer hung up.
    anyhow::ensure!(
        !reason(&killed).is_empty() && !reason(&killed).starts_with("no answer"),
        "killed: {killed}"
    );
    anyhow::ensure!(killed["online"] == false, "{killed}");
    // Behind a partition nothing comes back: the link dies of silence.
    anyhow::ensure!(
        reason(&partitioned).starts_with("no answer for"),
        "partitioned: {partitioned}"
    );
    anyhow::ensure!(partitioned["online"] == false, "{partitioned}");
    // The healthy colleague is untouched.
    let healthy = entry(obs, ok).await?;
    anyhow::ensure!(
        healthy["link"] == "up" && healthy["rtt_ms"].is_number(),
        "{healthy}"
    );
    // `GET /peers` agrees.
    let peers = obs.get("v1/peers?include_blocked=true").await?;
    let link_of = |h: &Host| {
        peers
            .as_array()
            .and_then(|l| l.iter().find(|p| p["peer_id"] == h.node_id.as_str()))
            .map(|p| p["link"].clone())
    };
    anyhow::ensure!(link_of(blk) == Some(json!("blocked")), "{peers}");
    anyhow::ensure!(link_of(dead) == Some(json!("offline")), "{peers}");
    anyhow::ensure!(link_of(cut) == Some(json!("offline")), "{peers}");
    anyhow::ensure!(link_of(ok) == Some(json!("up")), "{peers}");
    lan.set_partitioned(&cut.ns, false)?;
    Ok(())
}
