//! Loopback tier: real discovery runtimes on real UDP sockets, 127.0.0.1 only.
//!
//! Loopback has no broadcast, so nodes reach each other through explicit announce
//! targets, answers to their source address, and manual peer addresses. Every wait is
//! `wait_until(condition, deadline)`; deadlines are generous failure bounds, never
//! measurements. Nothing here sends anywhere but 127.0.0.1.

// Helpers outside `#[test]` functions are test code too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use api_types::{Cidr, NodeId};
use lan_mesh::discovery::{
    BroadcastMode, Discovery, DiscoveryConfig, DiscoveryEnv, LocalNetwork, MemoryPeerStore,
    NetworkSource, OfflineReason, Peer, PeerEvent, SharedSecret, TokioClock, UnixMillis,
};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

const DEADLINE: Duration = Duration::from_secs(10);

fn node_id(n: u128) -> NodeId {
    ulid::Ulid(n).to_string().parse().unwrap()
}

fn loopback() -> Vec<LocalNetwork> {
    vec![LocalNetwork {
        address: Ipv4Addr::LOCALHOST,
        network: "127.0.0.0/8".parse().unwrap(),
        broadcast: None,
        loopback: true,
    }]
}

/// The keys of `secret`, derived once per test binary (as a node derives once per
/// settings change: Argon2id is slow on purpose).
fn keys(secret: &str) -> SharedSecret {
    static DERIVED: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, SharedSecret>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut derived = DERIVED.lock().unwrap();
    derived
        .entry(secret.to_string())
        .or_insert_with(|| SharedSecret::derive(secret).unwrap())
        .clone()
}

/// A node on 127.0.0.1 with an ephemeral port, no broadcast, fixed interfaces (so
/// nothing is ever planned towards a real LAN) and short intervals.
fn config(n: u128, secret: &str, targets: &[SocketAddr]) -> DiscoveryConfig {
    let id = node_id(n);
    let mut settings = api_types::LanMeshSettings::defaults(id);
    settings.display_name = format!("node {n}");
    settings.listen_port = 20_000 + n as u16;
    settings.shared_secret = secret.to_string();
    settings.allowed_subnets = vec!["127.0.0.0/8".parse::<Cidr>().unwrap()];
    let mut c = DiscoveryConfig::from_settings(&settings, keys(secret));
    c.bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    c.discovery_port = 9; // never used: no broadcast, no sweep (loopback is attached)
    c.broadcast = BroadcastMode::Off;
    c.networks = NetworkSource::Fixed(loopback());
    c.heartbeat_interval = Duration::from_millis(100);
    c.peer_ttl = Duration::from_millis(600);
    c.announce_targets = targets.to_vec();
    c
}

async fn start(config: DiscoveryConfig) -> (Discovery, SocketAddr) {
    let d = Discovery::start(config, DiscoveryEnv::default())
        .await
        .unwrap();
    let addr = d.local_addr().await.unwrap();
    (d, addr)
}

async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // Wall-clock deadline, so it also bounds tests that run on paused tokio time.
    let deadline = std::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn peer(d: &Discovery, n: u128) -> Option<Peer> {
    d.peers()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.node_id == node_id(n))
}

async fn sees_online(d: &Discovery, n: u128) -> bool {
    peer(d, n).await.is_some_and(|p| p.online)
}

async fn next_event_for(rx: &mut broadcast::Receiver<PeerEvent>, n: u128) -> PeerEvent {
    let id = node_id(n);
    tokio::time::timeout(DEADLINE, async {
        loop {
            let e = rx.recv().await.unwrap();
            if *e.node_id() == id {
                return e;
            }
        }
    })
    .await
    .expect("no event in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_see_each_other() {
    let (a, a_addr) = start(config(1, "s", &[])).await;
    let (b, b_addr) = start(config(2, "s", &[a_addr])).await;
    let (c, _) = start(config(3, "s", &[a_addr, b_addr])).await;
    for (node, others) in [(&a, [2, 3]), (&b, [1, 3]), (&c, [1, 2])] {
        for other in others {
            wait_until("every node sees every other", || sees_online(node, other)).await;
        }
    }
    let seen_by_a = peer(&a, 2).await.unwrap();
    assert_eq!(seen_by_a.display_name, "node 2");
    assert_eq!(
        seen_by_a.listen_addr,
        Some(SocketAddr::from(([127, 0, 0, 1], 20_002)))
    );
    assert_eq!(seen_by_a.discovery_addr, Some(b_addr));
    let stats = a.stats().await.unwrap();
    assert!(stats.received.accepted > 0 && stats.sent > 0);
    assert_eq!(stats.received.bad_tag + stats.received.malformed, 0);
    for d in [a, b, c] {
        d.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_peer_address_is_probed_and_answers() {
    let (a, a_addr) = start(config(1, "", &[])).await;
    let (b, _) = start(config(2, "", &[])).await;
    b.add_peer_address(a_addr).await.unwrap();
    wait_until("a sees b", || sees_online(&a, 2)).await;
    wait_until("b sees a", || sees_online(&b, 1)).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// b is told it has no interfaces, so 127.0.0.0/30 is a "routed" subnet to it: only
/// the probe sweep (127.0.0.1 and 127.0.0.2, both loopback) can find a there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_subnet_is_found_by_the_probe_sweep() {
    let (a, a_addr) = start(config(1, "s", &[])).await;
    let mut sweeper = config(2, "s", &[]);
    sweeper.networks = NetworkSource::Fixed(Vec::new());
    sweeper.allowed_subnets = vec!["127.0.0.0/30".parse().unwrap()];
    sweeper.discovery_port = a_addr.port();
    sweeper.probe_budget = 1;
    let (b, _) = start(sweeper).await;
    wait_until("b finds a by probing", || sees_online(&b, 1)).await;
    wait_until("a sees b", || sees_online(&a, 2)).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goodbye_takes_a_peer_offline_at_once() {
    let mut long_ttl = config(1, "s", &[]);
    // TTL far beyond the test's deadline: only a goodbye can explain going offline.
    long_ttl.peer_ttl = Duration::from_secs(600);
    let (a, a_addr) = start(long_ttl).await;
    let mut events = a.subscribe();
    let (b, _) = start(config(2, "s", &[a_addr])).await;
    assert!(matches!(
        next_event_for(&mut events, 2).await,
        PeerEvent::Online(_)
    ));
    b.shutdown().await;
    match next_event_for(&mut events, 2).await {
        PeerEvent::Offline { reason, peer } => {
            assert_eq!(reason, OfflineReason::Goodbye);
            assert!(!peer.online);
        }
        other => panic!("expected offline, got {other:?}"),
    }
    assert!(!sees_online(&a, 2).await);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_goes_offline_after_the_ttl() {
    let (a, a_addr) = start(config(1, "s", &[])).await;
    let mut events = a.subscribe();
    let (b, _) = start(config(2, "s", &[a_addr])).await;
    wait_until("a sees b", || sees_online(&a, 2)).await;
    drop(b); // last handle: the task stops without goodbye, as a crash would
    loop {
        match next_event_for(&mut events, 2).await {
            PeerEvent::Offline { reason, .. } => {
                assert_eq!(reason, OfflineReason::Expired);
                break;
            }
            PeerEvent::Online(_) | PeerEvent::Updated { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    a.shutdown().await;
}

/// Paused time with production intervals (15 s heartbeat, 45 s TTL): the kill is
/// noticed after the TTL, not before, and the clock never really waits.
#[tokio::test(start_paused = true)]
async fn with_default_intervals_a_killed_peer_expires_on_the_ttl() {
    let start_at = UnixMillis(1_800_000_000_000);
    // Distinct seeds: nodes must never share a nonce sequence.
    let env = |seed| DiscoveryEnv {
        clock: std::sync::Arc::new(TokioClock::starting_at(start_at)),
        rng_seed: Some(seed),
        ..DiscoveryEnv::default()
    };
    let defaults = |n, targets: &[SocketAddr]| {
        let mut c = config(n, "s", targets);
        c.heartbeat_interval = Duration::from_secs(15);
        c.peer_ttl = Duration::from_secs(45);
        c
    };
    let a = Discovery::start(defaults(1, &[]), env(1)).await.unwrap();
    let a_addr = a.local_addr().await.unwrap();
    let b = Discovery::start(defaults(2, &[a_addr]), env(2))
        .await
        .unwrap();
    wait_until("a sees b", || sees_online(&a, 2)).await;
    // Let a few heartbeats go by: b stays online throughout.
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert!(sees_online(&a, 2).await);
    drop(b);
    let killed_at = tokio::time::Instant::now();
    // The last heartbeat was at most 16.5 s (15 s + jitter) before the kill, so for
    // 45 − 16.5 s afterwards b must still be listed online.
    tokio::time::sleep(Duration::from_secs(28)).await;
    assert!(sees_online(&a, 2).await, "expired before its TTL");
    wait_until("b expires", || async { !sees_online(&a, 2).await }).await;
    assert!(killed_at.elapsed() <= Duration::from_secs(46));
    a.shutdown().await;
}

/// On paused time with 15 s heartbeats, a new node can only learn of an existing one
/// this early through the unicast answer to its hello.
#[tokio::test(start_paused = true)]
async fn hello_is_answered_long_before_any_heartbeat() {
    let slow = |n, targets: &[SocketAddr]| {
        let mut c = config(n, "s", targets);
        c.heartbeat_interval = Duration::from_secs(15);
        c.peer_ttl = Duration::from_secs(45);
        c
    };
    let (a, a_addr) = start(slow(1, &[])).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = tokio::time::Instant::now();
    let (b, _) = start(slow(2, &[a_addr])).await;
    wait_until("b sees a", || sees_online(&b, 1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "seen only after {:?}",
        started.elapsed()
    );
    assert!(sees_online(&a, 2).await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_different_secrets_never_see_each_other() {
    let (open, open_addr) = start(config(3, "", &[])).await;
    let (a, a_addr) = start(config(1, "office-a", &[open_addr])).await;
    let (b, b_addr) = start(config(2, "office-b", &[a_addr, open_addr])).await;
    open.add_peer_address(a_addr).await.unwrap();
    open.add_peer_address(b_addr).await.unwrap();
    let counted = |d: Discovery, what: fn(&lan_mesh::discovery::DropCounters) -> u64| async move {
        what(&d.stats().await.unwrap().received) >= 3
    };
    wait_until("a rejected b's tags", || counted(a.clone(), |c| c.bad_tag)).await;
    wait_until("a rejected the open node's untagged probes", || {
        counted(a.clone(), |c| c.missing_tag)
    })
    .await;
    wait_until("b rejected the open node's untagged probes", || {
        counted(b.clone(), |c| c.missing_tag)
    })
    .await;
    wait_until("the open node rejected tagged packets", || {
        counted(open.clone(), |c| c.unexpected_tag)
    })
    .await;
    assert!(a.peers().await.unwrap().is_empty());
    assert!(b.peers().await.unwrap().is_empty());
    assert!(open.peers().await.unwrap().is_empty());
    for d in [a, b, open] {
        d.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_are_dropped_and_counted_and_the_node_keeps_working() {
    let (a, a_addr) = start(config(1, "s", &[])).await;
    // A sniffer stands in for anyone on the LAN who captures b's packets.
    let sniffer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (b, _) = start(config(2, "s", &[a_addr, sniffer.local_addr().unwrap()])).await;
    let mut captured = vec![0u8; 2048];
    let (len, _) = sniffer.recv_from(&mut captured).await.unwrap();
    captured.truncate(len);
    wait_until("a sees b", || sees_online(&a, 2)).await;
    let before = a.stats().await.unwrap().received;

    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // The captured packet was addressed to the sniffer, so a has not seen its nonce:
    // the first copy is accepted (it is authentic), every further copy is a replay.
    for _ in 0..3 {
        attacker.send_to(&captured, a_addr).await.unwrap();
    }
    let mut flipped = captured.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    attacker.send_to(&flipped, a_addr).await.unwrap();
    attacker
        .send_to(b"definitely not a discovery packet", a_addr)
        .await
        .unwrap();
    attacker.send_to(&[0xAB; 1500], a_addr).await.unwrap();

    wait_until("every hostile datagram is counted", || async {
        let now = a.stats().await.unwrap().received;
        now.replayed >= before.replayed + 2
            && now.bad_tag > before.bad_tag
            && now.malformed > before.malformed
            && now.oversized > before.oversized
    })
    .await;
    // Still working: b stays online and a newcomer is discovered.
    assert!(sees_online(&a, 2).await);
    let (c, _) = start(config(3, "s", &[a_addr])).await;
    wait_until("a sees a newcomer", || sees_online(&a, 3)).await;
    for d in [a, b, c] {
        d.shutdown().await;
    }
}

/// A flood of junk is counted while the node keeps working: a peer killed during the
/// flood still expires on time's account, not the flood's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_does_not_stop_heartbeats_or_expiry() {
    let (a, a_addr) = start(config(1, "s", &[])).await;
    let (b, _) = start(config(2, "s", &[a_addr])).await;
    wait_until("a sees b", || sees_online(&a, 2)).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let flooder = tokio::spawn({
        let stop = stop.clone();
        async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            // Bounded: ends on its own even if the test fails before stopping it.
            for _ in 0..2_000_000 {
                if stop.is_cancelled() {
                    break;
                }
                let _ = socket.send_to(b"junk junk junk", a_addr).await;
            }
        }
    });
    wait_until("the flood is arriving", || async {
        a.stats().await.unwrap().received.malformed > 1000
    })
    .await;
    drop(b);
    wait_until("b expires during the flood", || async {
        !sees_online(&a, 2).await
    })
    .await;
    stop.cancel();
    flooder.await.unwrap();
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peer_is_gone_and_stays_gone_until_unblocked() {
    let (a, a_addr) = start(config(1, "s", &[])).await;
    let mut events = a.subscribe();
    let (b, _) = start(config(2, "s", &[a_addr])).await;
    wait_until("a sees b", || sees_online(&a, 2)).await;
    a.block(node_id(2)).await.unwrap();
    let blocked = peer(&a, 2).await.unwrap();
    assert!(blocked.blocked && !blocked.online);
    let dropped_then = a.stats().await.unwrap().received.blocked_peer;
    wait_until("b's packets keep arriving and are dropped", || async {
        a.stats().await.unwrap().received.blocked_peer >= dropped_then + 5
    })
    .await;
    assert!(!sees_online(&a, 2).await, "blocked peer came back");
    loop {
        match next_event_for(&mut events, 2).await {
            PeerEvent::Blocked(_) => break,
            PeerEvent::Online(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    a.unblock(node_id(2)).await.unwrap();
    wait_until("b is back after unblock", || sees_online(&a, 2)).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_applies_a_new_secret_and_subnets_at_once() {
    let (a, a_addr) = start(config(1, "s", &[])).await;
    let (b, _) = start(config(2, "s", &[a_addr])).await;
    wait_until("a sees b", || sees_online(&a, 2)).await;
    let mut events = a.subscribe();

    // b is now outside a's allowed subnets: offline at once, and stays offline.
    let mut narrowed = config(1, "s", &[]);
    narrowed.allowed_subnets = vec!["127.0.0.2/32".parse().unwrap()];
    a.reconfigure(narrowed).await.unwrap();
    match next_event_for(&mut events, 2).await {
        PeerEvent::Offline { reason, .. } => assert_eq!(reason, OfflineReason::Excluded),
        other => panic!("unexpected {other:?}"),
    }
    let counted = a.stats().await.unwrap().received.not_allowed;
    wait_until("b's packets are refused as not allowed", || async {
        a.stats().await.unwrap().received.not_allowed >= counted + 3
    })
    .await;
    assert!(!sees_online(&a, 2).await);

    // Back to the loopback subnet but with another secret: b's tags now fail.
    let other_secret = config(1, "t", &[]);
    a.reconfigure(other_secret).await.unwrap();
    let counted = a.stats().await.unwrap().received.bad_tag;
    wait_until("b's tags fail under the new secret", || async {
        a.stats().await.unwrap().received.bad_tag >= counted + 3
    })
    .await;
    assert!(!sees_online(&a, 2).await);

    // b adopts the secret too: seen again quickly (its reconfigure re-sends hello).
    let b_new = config(2, "t", &[a_addr]);
    b.reconfigure(b_new).await.unwrap();
    wait_until("a sees b again", || sees_online(&a, 2)).await;

    // A bad config is refused and changes nothing.
    let mut bad = config(1, "t", &[]);
    bad.peer_ttl = bad.heartbeat_interval;
    assert!(a.reconfigure(bad).await.is_err());
    let renamed = config(9, "t", &[]);
    assert!(a.reconfigure(renamed).await.is_err());
    assert!(sees_online(&a, 2).await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_drop_leave_no_task_and_free_the_port() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let (a, a_addr) = start(config(1, "s", &[])).await;
    let (b, b_addr) = start(config(2, "s", &[a_addr])).await;
    wait_until("a sees b", || sees_online(&a, 2)).await;
    assert!(metrics.num_alive_tasks() > baseline);

    let clone = a.clone();
    a.shutdown().await;
    assert!(clone.is_stopped());
    assert!(
        clone.peers().await.is_err(),
        "a stopped runtime answers with an error"
    );
    // Port released: a plain socket (no reuse options) can bind it again. Polled: the
    // socket's last handle may be dropped on another worker thread a moment after
    // `shutdown` returned (CI once saw AddrInUse right away).
    wait_until("a's port is free again", || async {
        std::net::UdpSocket::bind(a_addr).is_ok()
    })
    .await;

    let b_watch = b.clone();
    drop(b);
    assert!(!b_watch.is_stopped(), "a remaining clone keeps it running");
    drop(b_watch);
    wait_until("no discovery task is left", || async {
        metrics.num_alive_tasks() == baseline
    })
    .await;
    std::net::UdpSocket::bind(b_addr).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_token_says_goodbye_and_remembered_peers_survive_a_restart() {
    let mut a_config = config(1, "s", &[]);
    // Only a goodbye can take b offline within the test's deadline.
    a_config.peer_ttl = Duration::from_secs(600);
    let (a, a_addr) = start(a_config).await;
    let store = MemoryPeerStore::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let env = DiscoveryEnv {
        store: Box::new(store.clone()),
        cancel: cancel.clone(),
        ..DiscoveryEnv::default()
    };
    let mut long_ttl = config(2, "s", &[a_addr]);
    long_ttl.peer_ttl = Duration::from_secs(600);
    let b = Discovery::start(long_ttl.clone(), env).await.unwrap();
    wait_until("b sees a", || sees_online(&b, 1)).await;
    wait_until("a sees b", || sees_online(&a, 2)).await;
    // A third node b only sees in discovery, never on a link: not worth remembering.
    let b_addr = b.local_addr().await.unwrap();
    let (c, _) = start(config(3, "s", &[b_addr])).await;
    wait_until("b sees c", || sees_online(&b, 3)).await;
    // a is proven on a link (the transport tells discovery so): remembered at once.
    b.confirm(node_id(1));
    wait_until("a persisted", || async {
        store.snapshot().iter().any(|p| p.node_id == node_id(1))
    })
    .await;

    cancel.cancel();
    wait_until("a got b's goodbye", || async { !sees_online(&a, 2).await }).await;
    wait_until("b stopped", || async { b.is_stopped() }).await;
    let saved = store.snapshot();
    assert!(saved.iter().any(|p| p.node_id == node_id(1)), "{saved:?}");
    assert!(
        !saved.iter().any(|p| p.node_id == node_id(3)),
        "a mere sighting is not persisted: {saved:?}"
    );

    // Restart with the same store and no way to reach a: a is listed, offline.
    let env = DiscoveryEnv {
        store: Box::new(store.clone()),
        ..DiscoveryEnv::default()
    };
    let mut isolated = long_ttl;
    isolated.announce_targets.clear();
    let b2 = Discovery::start(isolated, env).await.unwrap();
    let remembered = peer(&b2, 1).await.expect("remembered peer");
    assert!(!remembered.online);
    assert_eq!(remembered.display_name, "node 1");
    assert_ne!(b2.instance_id(), b.instance_id());
    assert!(peer(&b2, 3).await.is_none());
    b2.shutdown().await;
    c.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_recognised_at_once() {
    let mut long_ttl = config(1, "s", &[]);
    long_ttl.peer_ttl = Duration::from_secs(600);
    let (a, a_addr) = start(long_ttl).await;
    let mut events = a.subscribe();
    let (b, _) = start(config(2, "s", &[a_addr])).await;
    wait_until("a sees b", || sees_online(&a, 2)).await;
    let first = peer(&a, 2).await.unwrap().instance_id;
    drop(b); // crash: no goodbye; the TTL is far away
    let (b2, b2_addr) = start(config(2, "s", &[a_addr])).await;
    loop {
        match next_event_for(&mut events, 2).await {
            PeerEvent::Updated { changes, peer } if changes.restarted => {
                assert!(peer.online);
                assert_ne!(peer.instance_id, first);
                assert_eq!(peer.discovery_addr, Some(b2_addr));
                assert!(changes.address, "the new process has a new port");
                break;
            }
            PeerEvent::Online(_) | PeerEvent::Updated { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    a.shutdown().await;
    b2.shutdown().await;
}

#[tokio::test]
async fn a_shared_secret_is_never_in_debug_output() {
    let c = config(1, "hunter2", &[]);
    assert!(!c.shared_secret.is_open());
    assert!(!format!("{c:?}").contains("hunter2"));
}

/// A wall clock `offset_ms` away from the system's: a node whose PC is days off.
struct SkewedClock {
    offset_ms: i64,
}

impl lan_mesh::discovery::Clock for SkewedClock {
    fn now(&self) -> UnixMillis {
        let real = lan_mesh::discovery::SystemClock.now().0 as i64;
        UnixMillis((real + self.offset_ms) as u64)
    }
}

async fn start_with_clock(config: DiscoveryConfig, offset_ms: i64) -> (Discovery, SocketAddr) {
    let env = DiscoveryEnv {
        clock: std::sync::Arc::new(SkewedClock { offset_ms }),
        ..DiscoveryEnv::default()
    };
    let d = Discovery::start(config, env).await.unwrap();
    let addr = d.local_addr().await.unwrap();
    (d, addr)
}

/// Replay protection judges each sender by its own packets, never by our clock: nodes
/// days apart see each other at once, and each measures the other's offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_days_apart_do_not_hide_anyone_and_the_offset_is_measured() {
    const DAY: i64 = 86_400_000;
    let (a, a_addr) = start_with_clock(config(1, "s", &[]), 0).await;
    let (b, b_addr) = start_with_clock(config(2, "s", &[a_addr]), 3 * DAY).await;
    let (c, _) = start_with_clock(config(3, "s", &[a_addr, b_addr]), -5 * 60_000).await;
    for (node, others) in [(&a, [2, 3]), (&b, [1, 3]), (&c, [1, 2])] {
        for other in others {
            wait_until("every node sees every other", || sees_online(node, other)).await;
        }
    }
    let near = |got: Option<i64>, want: i64| got.is_some_and(|g| (g - want).abs() < 2_000);
    let b_at_a = peer(&a, 2).await.unwrap().clock_offset_ms;
    assert!(near(b_at_a, 3 * DAY), "a measures b at {b_at_a:?}");
    let a_at_b = peer(&b, 1).await.unwrap().clock_offset_ms;
    assert!(near(a_at_b, -3 * DAY), "b measures a at {a_at_b:?}");
    let b_at_c = peer(&c, 2).await.unwrap().clock_offset_ms;
    assert!(
        near(b_at_c, 3 * DAY + 5 * 60_000),
        "c measures b at {b_at_c:?}"
    );
    // Heartbeats keep flowing both ways: nothing is refused as stale or replayed.
    let before = a.stats().await.unwrap().received.accepted;
    wait_until("more heartbeats from the skewed nodes", || async {
        a.stats().await.unwrap().received.accepted >= before + 4
    })
    .await;
    for d in [&a, &b, &c] {
        let s = d.stats().await.unwrap();
        assert_eq!((s.received.stale, s.received.replayed), (0, 0), "{s:?}");
        assert_eq!(s.send_errors, 0);
    }
}

/// A replayed packet is refused per sender (judged by b's sequence numbers, not by any
/// clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_packet_replayed_later_is_refused() {
    let (a, a_addr) = start(config(1, "s", &[])).await;
    let spy = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let spy_addr = spy.local_addr().unwrap();
    // b announces to a and to the spy, which captures one of its packets.
    let (b, _) = start(config(2, "s", &[a_addr, spy_addr])).await;
    let mut buf = vec![0u8; 2048];
    let (len, _) = tokio::time::timeout(DEADLINE, spy.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let captured = buf[..len].to_vec();
    wait_until("a sees b", || sees_online(&a, 2)).await;
    // The captured packet was addressed to the spy, not to a, so its sequence number
    // is new to a: a may take it once (docs/PROTOCOL.md, "Limits"), never again.
    wait_until("a heard several packets from b", || async {
        a.stats().await.unwrap().received.accepted >= 3
    })
    .await;
    let before = a.stats().await.unwrap().received;
    for _ in 0..3 {
        spy.send_to(&captured, a_addr).await.unwrap();
    }
    wait_until("the replays are counted", || async {
        let now = a.stats().await.unwrap().received;
        (now.replayed + now.stale) - (before.replayed + before.stale) >= 2
    })
    .await;
    drop(b);
}
