//! The transport on a real LAN of network namespaces (issue 5): real `lanchat serve`
//! nodes chatting over encrypted links, a packet capture on the switch, a partition,
//! blocks, and a hostile client (`link_probe`, built on the real link code) in a host of
//! its own. Needs root (see `lanchat_tests::netns`).
//!
//! Timings: heartbeat 1 s, TTL 3 s (`NodeSettings::default()`); the outbox keeps the
//! product's backoff (first retry after ~2 s), which a healed partition short-cuts: the
//! peer coming back online makes its backlog due at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lanchat_tests::netns::{Host, Lan, Method, NetNs, TEST_SECRET};
use lanchat_tests::{holds_until, wait_until};
use serde_json::{json, Value};

/// The node's default LAN link port (`lan_mesh.listen_port`).
const LINK_PORT: u16 = 19123;
const SETTLE: Duration = Duration::from_secs(10);
const DELIVERY: Duration = Duration::from_secs(15);

async fn mesh(lan: &Lan, names: &[&str]) -> anyhow::Result<Vec<Host>> {
    lan.add_hosts_listing_each_other(names, SETTLE).await
}

/// Every message of the DM with `with`, oldest first.
async fn history(host: &Host, with: &Host) -> anyhow::Result<Vec<Value>> {
    let page = host
        .get(&format!(
            "v1/conversations/{}/messages?limit=200",
            host.dm_with(with)
        ))
        .await?;
    Ok(page["messages"].as_array().cloned().unwrap_or_default())
}

fn texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

async fn wait_delivered(from: &Host, to: &Host, count: usize) -> anyhow::Result<()> {
    wait_until(DELIVERY, "every message delivered and received", || async {
        let (sent, got) = (history(from, to).await.ok()?, history(to, from).await.ok()?);
        let outgoing: Vec<_> = sent.iter().filter(|m| m["outgoing"] == true).collect();
        let incoming = got.iter().filter(|m| m["outgoing"] == false).count();
        (outgoing.len() == count
            && incoming == count
            && outgoing.iter().all(|m| m["status"] == "delivered"))
        .then_some(())
    })
    .await
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn probe(ns: &NetNs, args: &[&str]) -> anyhow::Result<String> {
    ns.output_of(env!("CARGO_BIN_EXE_link_probe"), args).await
}

fn link_addr(host: &Host) -> String {
    SocketAddr::from((host.ip(), LINK_PORT)).to_string()
}

#[tokio::test]
async fn a_chat_crosses_the_wire_encrypted_and_arrives_once_both_ways() -> anyhow::Result<()> {
    let lan = Lan::new("transport-wire")?;
    let hosts = mesh(&lan, &["a", "b"]).await?;
    let (a, b) = (&hosts[0], &hosts[1]);
    let capture = lan
        .capture("chat", &format!("tcp port {LINK_PORT}"))
        .await?;

    let canaries = [
        "plaintext canary 7f3a",
        "秘密消息 canary 91b2",
        "multi\nline canary c0de",
    ];
    a.send_dm(b, canaries[0]).await?;
    b.send_dm(a, canaries[1]).await?;
    a.send_dm(b, canaries[2]).await?;
    wait_until(
        DELIVERY,
        "the three messages on both sides, delivered",
        || async {
            let (ha, hb) = (history(a, b).await.ok()?, history(b, a).await.ok()?);
            (ha.len() == 3 && hb.len() == 3 && ha.iter().all(|m| m["status"] == "delivered"))
                .then_some(())
        },
    )
    .await?;
    let (ha, hb) = (history(a, b).await?, history(b, a).await?);
    assert_eq!(texts(&ha), texts(&hb), "the same history on both sides");
    let ids = |h: &[Value]| h.iter().map(|m| m["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&ha), ids(&hb));

    let pcap = capture.finish().await?;
    // The capture saw the link (not just its own header): well over the three messages.
    assert!(
        pcap.len() > 2_000,
        "capture too small: {} bytes",
        pcap.len()
    );
    for canary in canaries {
        for word in canary.split_whitespace() {
            assert!(
                !contains(&pcap, word.as_bytes()),
                "{word:?} crossed the wire in plaintext"
            );
        }
    }
    // Nor the node ids inside the envelopes (only the handshake's encrypted hello has them).
    assert!(!contains(&pcap, a.node_id.as_bytes()));
    assert!(!contains(&pcap, b.node_id.as_bytes()));
    Ok(())
}

#[tokio::test]
async fn wrong_secrets_replays_and_junk_are_refused_and_counted_and_the_node_carries_on(
) -> anyhow::Result<()> {
    let lan = Lan::new("transport-hostile")?;
    let hosts = mesh(&lan, &["a", "b"]).await?;
    let (a, b) = (&hosts[0], &hosts[1]);
    let attacker = lan.add_ns("attacker")?;
    let addr = link_addr(a);

    // The real handshake with the right secret links (so the probe itself works)…
    assert_eq!(
        probe(&attacker, &["handshake", &addr, &a.node_id, TEST_SECRET]).await?,
        "linked"
    );
    // …and with a wrong or no secret it cannot complete.
    let before = a.transport_counter("handshake_failed").await?;
    for secret in ["guess", ""] {
        let outcome = probe(&attacker, &["handshake", &addr, &a.node_id, secret]).await?;
        assert!(outcome.starts_with("refused"), "{secret:?}: {outcome}");
    }
    wait_until(SETTLE, "the failed handshakes counted", || async {
        (a.transport_counter("handshake_failed").await.ok()? >= before + 2).then_some(())
    })
    .await?;

    // A captured frame replayed on a new connection is not accepted.
    assert_eq!(
        probe(&attacker, &["replay", &addr, &a.node_id, TEST_SECRET]).await?,
        "acked ignored"
    );
    assert!(a.transport_counter("frames_undecryptable").await? >= 1);

    // Garbage, oversized, truncated and text frames: the connection is closed, counted.
    let before = a.transport_counter("handshake_failed").await?;
    for junk in ["garbage", "oversized", "truncated", "text"] {
        assert_eq!(
            probe(&attacker, &["junk", &addr, junk]).await?,
            "closed",
            "{junk}"
        );
    }
    wait_until(SETTLE, "the junk counted", || async {
        (a.transport_counter("handshake_failed").await.ok()? >= before + 4).then_some(())
    })
    .await?;

    // The node is fine: it still chats.
    b.send_dm(a, "still here").await?;
    wait_delivered(b, a, 1).await?;
    Ok(())
}

#[tokio::test]
async fn blocking_closes_the_link_drops_the_queue_and_holds_both_ways() -> anyhow::Result<()> {
    let lan = Lan::new("transport-block")?;
    let hosts = mesh(&lan, &["a", "b"]).await?;
    let (a, b) = (&hosts[0], &hosts[1]);
    a.send_dm(b, "hello before the block").await?;
    wait_delivered(a, b, 1).await?;
    assert_eq!(a.transport_counter("links_up").await?, 1);

    // Something queued for b that cannot go out: b is cut off for the moment.
    lan.set_partitioned(&b.ns, true)?;
    a.send_dm(b, "queued for b").await?;
    a.call_expect(
        Method::Post,
        &format!("v1/peers/{}/block", b.node_id),
        None,
        200,
    )
    .await?;
    lan.set_partitioned(&b.ns, false)?;
    wait_until(SETTLE, "a's link to b closed", || async {
        (a.transport_counter("links_up").await.ok()? == 0).then_some(())
    })
    .await?;
    // The queued message was dropped (failed), not delivered later.
    let queued = history(a, b).await?;
    assert_eq!(
        queued.last().map(|m| m["status"].clone()),
        Some(json!("failed"))
    );

    // b still sees a and tries to reach it: a refuses every link, and a never dials b.
    b.send_dm(a, "let me in").await?;
    let refused = wait_until(SETTLE, "a refused b's link as blocked", || async {
        let n = a.transport_counter("refused_blocked_peer").await.ok()?;
        (n >= 1).then_some(n)
    })
    .await?;
    // Until b has tried again (its outbox retries) and was refused again: the message
    // would have come in on that link.
    holds_until(
        SETTLE,
        "nothing from b reaches a",
        || async {
            let reached = history(a, b)
                .await?
                .iter()
                .any(|m| m["text"] == "let me in");
            let links = a.transport_counter("links_up").await?;
            Ok(if reached || links > 0 {
                Err(format!("reached: {reached}, links: {links}"))
            } else {
                Ok(())
            })
        },
        || async { Ok(a.transport_counter("refused_blocked_peer").await? > refused) },
    )
    .await?;
    // It waits in b's outbox (`sent` if it was written to the dying link, never acked).
    let waiting = history(b, a).await?.last().map(|m| m["status"].clone());
    assert!(
        waiting == Some(json!("pending")) || waiting == Some(json!("sent")),
        "b's message: {waiting:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_partition_heals_into_the_backlog_delivered_once_without_a_reconnect_storm(
) -> anyhow::Result<()> {
    let lan = Lan::new("transport-partition")?;
    let hosts = mesh(&lan, &["a", "b"]).await?;
    let (a, b) = (&hosts[0], &hosts[1]);
    a.send_dm(b, "before").await?;
    wait_delivered(a, b, 1).await?;

    lan.set_partitioned(&b.ns, true)?;
    let cut = Instant::now();
    for i in 0..20 {
        a.send_dm(b, &format!("during the partition {i}")).await?;
    }
    // Until a's link to b has died (no answer) and b's TTL has run out on a: from then
    // a forgets b's address and dials no more, so the failed dials counted are all the
    // partition causes, however long it lasts.
    wait_until(SETTLE, "a's link to b dead and b offline on a", || async {
        let down = a.transport_counter("links_up").await.ok()? == 0;
        let offline = !a.lists(b).await.ok()?;
        (down && offline).then_some(())
    })
    .await?;
    let dials_during = a.transport_counter("dials_failed").await?;
    lan.set_partitioned(&b.ns, false)?;
    let healed = Instant::now();
    wait_delivered(a, b, 21).await?;
    eprintln!(
        "partition of {:?}; backlog delivered {:?} after healing; {dials_during} failed dials",
        healed - cut,
        healed.elapsed()
    );
    let got = history(b, a).await?;
    let mut ids: Vec<_> = got.iter().map(|m| m["id"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 21, "no duplicates");
    assert_eq!(
        texts(&got)[1..],
        (0..20)
            .map(|i| format!("during the partition {i}"))
            .collect::<Vec<_>>()[..]
    );
    // No storm: dials are bounded by the backoff while cut off, and one link after.
    assert!(
        dials_during <= 12,
        "{dials_during} failed dials in {:?}",
        healed - cut
    );
    let linked =
        a.transport_counter("links_dialled").await? + a.transport_counter("links_accepted").await?;
    assert!(linked <= 3, "{linked} links made in all");
    Ok(())
}
