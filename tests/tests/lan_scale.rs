//! Discovery at office scale (issue 13): 128 real `lanchat serve` processes on one
//! namespace LAN (`lanchat_tests::netns`), started together.
//!
//! - Within 10 s of the last node starting, every node lists all 127 others online.
//! - For the next 60 s every node keeps listing all of them: read from every node every
//!   2 s, and — so a flap between two reads cannot hide — no node pushes a single
//!   `peer.offline` event (its event WebSocket is recorded from the first second on).
//! - No silent loss at the sender: every datagram a node counts as `sent` is one the
//!   kernel of its namespace counts as `OutDatagrams` (both read around the same
//!   moment), and a node reports `send_errors` only where the kernel counted refused
//!   sends (`SndbufErrors`) too.
//! - Afterwards every process is gone and every namespace removed.
//!
//! Heartbeat 5 s, TTL 20 s (as in the measurements): the hour-long product
//! defaults would see fewer heartbeats in the window; these see twelve per peer.
//! Memory per node (RSS, PSS) is printed. Needs root. `LANCHAT_SCALE_HOSTS=N` runs
//! another size (for a quick local look; CI uses 128).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lanchat_tests::netns::{Host, Lan, NodeSettings, DISCOVERY_PORT};
use lanchat_tests::scale::{self, Sample, Watch};

const HOSTS: usize = 128;
const HEARTBEAT_SEC: u32 = 5;
const TTL_SEC: u32 = 20;
/// The contract: every node lists every other within this long of the last start.
const MESH_LIMIT: Duration = Duration::from_secs(10);
/// … and still does this long after.
const HOLD: Duration = Duration::from_secs(60);
/// How often every node is read while holding.
const HOLD_EVERY: Duration = Duration::from_secs(2);
/// A node should need a few tens of MiB; the machine must keep this much of every
/// node's share free, or the numbers below mean nothing (a swapping machine flaps).
const MIN_FREE_PER_NODE_KB: u64 = 48 * 1024;

fn hosts_wanted() -> anyhow::Result<usize> {
    match std::env::var("LANCHAT_SCALE_HOSTS") {
        Ok(v) => {
            let n: usize = v.parse().context("LANCHAT_SCALE_HOSTS")?;
            anyhow::ensure!((2..=250).contains(&n), "LANCHAT_SCALE_HOSTS: 2..=250");
            Ok(n)
        }
        Err(_) => Ok(HOSTS),
    }
}

/// What the reader of a failure needs: the per-node table (listed, node and kernel
/// counters), and for the nodes that list fewest, whom they miss.
async fn explain(
    what: &str,
    sample: &Sample,
    hosts: &[Host],
    watch: &mut Watch,
    since: Instant,
) -> anyhow::Error {
    let n = hosts.len();
    let want = (n - 1) as u64;
    let mut worst: Vec<usize> = (0..n).collect();
    worst.sort_by_key(|&i| sample.listed[i].unwrap_or(0));
    let mut missing = String::new();
    let ids = watch.online_ids().await;
    for &i in worst.iter().take(3) {
        if sample.listed[i] == Some(want) {
            break;
        }
        let names: Vec<&str> = match &ids[i] {
            Ok(online) => hosts
                .iter()
                .filter(|o| o.node_id != hosts[i].node_id && !online.contains(&o.node_id))
                .map(|o| o.display_name.as_str())
                .collect(),
            Err(_) => vec!["(its API did not answer)"],
        };
        missing.push_str(&format!(
            "{} misses {}: {}\n",
            hosts[i].display_name,
            names.len(),
            names.join(" ")
        ));
    }
    let flaps: Vec<String> = watch
        .events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let e = e.snapshot();
            (!e.offline_log.is_empty()).then(|| {
                let first = &e.offline_log[0];
                format!(
                    "{}: {} offline events, first at {:+.1} s ({} {})",
                    hosts[i].display_name,
                    e.offline,
                    scale::signed_secs(first.0, since),
                    hosts
                        .iter()
                        .find(|h| h.node_id == first.1)
                        .map_or(first.1.as_str(), |h| h.display_name.as_str()),
                    first.2
                )
            })
        })
        .take(10)
        .collect();
    anyhow::anyhow!(
        "{what}\n{}\n{missing}{}\n{}",
        sample.line(since),
        flaps.join("\n"),
        sample.per_node(hosts)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lan_of_128_nodes_meshes_within_10s_and_nobody_flaps_for_a_minute() -> anyhow::Result<()>
{
    let n = hosts_wanted()?;
    let free = scale::mem_available_kb()?;
    if free < n as u64 * MIN_FREE_PER_NODE_KB {
        bail!(
            "{} MiB available, {} nodes want at least {} MiB: free memory first",
            free / 1024,
            n,
            n as u64 * MIN_FREE_PER_NODE_KB / 1024
        );
    }
    let lan = Lan::new("lan_scale")?;
    let lan_name = lan.name().to_string();
    let settings = NodeSettings {
        heartbeat_interval_sec: HEARTBEAT_SEC,
        peer_ttl_sec: TTL_SEC,
        ..NodeSettings::default()
    };
    let t_spawn = Instant::now();
    let (hosts, last_up) = scale::start_hosts(&lan, n, "n", &settings).await?;
    println!(
        "{n} nodes started in {:.1} s (spawned together; until the last api.json)",
        last_up.duration_since(t_spawn).as_secs_f64()
    );
    let mut watch = Watch::start(&hosts).await?;
    let want = (n - 1) as u64;

    // 1. Every node lists every other within MESH_LIMIT of the last start.
    let mut sample = Sample::take(&mut watch, &hosts, &lan, DISCOVERY_PORT).await;
    for _ in 0..10_000 {
        if sample.short(want) == 0 || last_up.elapsed() > MESH_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        sample = Sample::take(&mut watch, &hosts, &lan, DISCOVERY_PORT).await;
    }
    if sample.short(want) > 0 {
        return Err(explain(
            &format!(
                "{} of {n} nodes do not list all {want} others {:.1} s after the last node started",
                sample.short(want),
                scale::signed_secs(sample.at, last_up)
            ),
            &sample,
            &hosts,
            &mut watch,
            last_up,
        )
        .await);
    }
    let meshed_at = sample.at;
    println!(
        "full mesh {:.2} s after the last start\n{}",
        scale::signed_secs(meshed_at, last_up),
        sample.line(last_up)
    );

    // 2. … and keeps listing them for HOLD: no read shows a gap, no node says offline.
    let rounds = HOLD.as_millis() / HOLD_EVERY.as_millis() + 2;
    for _ in 0..rounds {
        if meshed_at.elapsed() >= HOLD {
            break;
        }
        tokio::time::sleep(HOLD_EVERY).await;
        sample = Sample::take(&mut watch, &hosts, &lan, DISCOVERY_PORT).await;
        let flapped: u64 = sample.offline_events.iter().sum();
        if sample.short(want) > 0 || flapped > 0 {
            return Err(explain(
                &format!(
                    "{:.0} s into the minute: {} nodes list fewer than {want}, {flapped} peer.offline events",
                    meshed_at.elapsed().as_secs_f64(),
                    sample.short(want),
                ),
                &sample,
                &hosts,
                &mut watch,
                last_up,
            )
            .await);
        }
    }
    println!(
        "held for {:.0} s\n{}",
        meshed_at.elapsed().as_secs_f64(),
        sample.line(last_up)
    );
    for (i, e) in watch.events.iter().enumerate() {
        let e = e.snapshot();
        if let Some(why) = e.ended {
            bail!(
                "{}'s event socket ended ({why}): the count of offline events is incomplete",
                hosts[i].display_name
            );
        }
        if e.resyncs > 0 {
            bail!(
                "{}'s event socket fell behind ({} resyncs): offline events may be missing",
                hosts[i].display_name,
                e.resyncs
            );
        }
    }

    // 3. No silent loss at the sender: sent == the kernel's OutDatagrams (read before
    //    and after the node's own counters), send_errors only where the kernel refused.
    let before: Vec<_> = hosts
        .iter()
        .map(|h| scale::udp_snmp(h.pid().unwrap_or(0)))
        .collect::<anyhow::Result<_>>()?;
    let discovery = watch.discovery().await;
    let after: Vec<_> = hosts
        .iter()
        .map(|h| scale::udp_snmp(h.pid().unwrap_or(0)))
        .collect::<anyhow::Result<_>>()?;
    let mut wrong = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let d = discovery[i]
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let sent = d["sent"].as_u64().context("discovery.sent")?;
        let errors = d["send_errors"].as_u64().context("discovery.send_errors")?;
        let k = |m: &std::collections::BTreeMap<String, u64>, key: &str| {
            m.get(key).copied().unwrap_or(0)
        };
        let (out0, out1) = (k(&before[i], "OutDatagrams"), k(&after[i], "OutDatagrams"));
        let sndbuf = k(&after[i], "SndbufErrors");
        if sent < out0 || sent > out1 {
            wrong.push(format!(
                "{}: sent {sent} but the kernel sent {out0}..{out1} datagrams",
                h.display_name
            ));
        }
        if errors > sndbuf {
            wrong.push(format!(
                "{}: send_errors {errors} but the kernel refused only {sndbuf} (SndbufErrors)",
                h.display_name
            ));
        }
    }
    if !wrong.is_empty() {
        bail!(
            "the nodes' send counters disagree with their kernels:\n{}",
            wrong.join("\n")
        );
    }

    // Memory per node, for the record (docs/BENCHMARKS.md has the benchmark's figures).
    let mem: Vec<(u64, u64, u64)> = hosts
        .iter()
        .map(|h| scale::memory_kb(h.pid().unwrap_or(0)))
        .collect::<anyhow::Result<_>>()?;
    let max_rss = mem.iter().map(|m| m.0).max().unwrap_or(0);
    let pss_sum: u64 = mem.iter().map(|m| m.1).sum();
    println!(
        "memory: RSS max {} MiB per node, PSS {} MiB for all {n}; {} MiB still available",
        max_rss / 1024,
        pss_sum / 1024,
        scale::mem_available_kb()? / 1024
    );

    // 4. Everything removed: the processes (by PID) and the namespaces.
    drop(watch);
    let pids: Vec<u32> = hosts.iter().filter_map(Host::pid).collect();
    drop(hosts);
    drop(lan);
    let alive: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    anyhow::ensure!(alive.is_empty(), "node processes left running: {alive:?}");
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let left = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("{lan_name}-")))
        .count();
    anyhow::ensure!(left == 0, "{left} namespaces of {lan_name} left behind");
    Ok(())
}
