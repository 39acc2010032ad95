//! Loopback tier of the transport and delivery: real `Transport`s on 127.0.0.1 TCP,
//! real delivery workers, real SQLite stores in temporary directories seen through
//! this crate's ports. Discovery is
//! replaced by its event channel (tests announce peers' addresses themselves).
//! Deadlines are generous failure bounds, never measurements.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api_types::{Cidr, NodeId};
use lan_mesh::delivery::{self, AddressBook, DeliveryEvent, DeliveryParts};
use lan_mesh::discovery::{Peer, PeerEvent, SharedSecret};
use lan_mesh::transport::{IdentityStatement, NodeKeys, Transport, TransportConfig};
use mesh_store::{dm_envelope, StorePorts};
use storage::{ConversationId, HistoryQuery, MessageStatus, PeerSighting, Store};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < end {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

struct Node {
    id: NodeId,
    store: Store,
    transport: Transport,
    peers: broadcast::Sender<PeerEvent>,
    wake: Arc<Notify>,
    events: broadcast::Sender<DeliveryEvent>,
    cancel: CancellationToken,
    keys: NodeKeys,
    /// This node's wall clock (a PC set wrong in some tests).
    clock: delivery::Clock,
    _dir: Option<tempfile::TempDir>,
    dir_path: std::path::PathBuf,
}

/// The keys of `secret`, derived once per test binary (a node derives once per settings
/// change: Argon2id is slow on purpose).
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

fn config(id: &NodeId, secret: &str) -> TransportConfig {
    TransportConfig {
        node_id: id.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        shared_secret: keys(secret),
        allowed_subnets: vec!["127.0.0.0/8".parse::<Cidr>().unwrap()],
        blocked_subnets: vec![],
        blocked_peers: vec![],
        keepalive: Duration::from_millis(500),
        dead_after: Duration::from_secs(3),
        redial_first: Duration::from_millis(50),
        redial_max: Duration::from_millis(500),
    }
}

/// Who a test node is: its id (which its keys need not derive), its keys, and the
/// earlier ids its handshakes announce.
struct Identity {
    id: NodeId,
    keys: NodeKeys,
    previous_ids: Vec<IdentityStatement>,
}

impl Node {
    async fn start(name: &str, secret: &str) -> Node {
        Node::start_with_clock(name, secret, delivery::Clock::system()).await
    }

    async fn start_with_clock(name: &str, secret: &str, clock: delivery::Clock) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let keys = NodeKeys::generate().unwrap();
        let identity = Identity {
            id: keys.public().node_id(),
            keys,
            previous_ids: Vec::new(),
        };
        Node::start_in(Some(dir), path, identity, name, secret, clock).await
    }

    async fn start_in(
        dir: Option<tempfile::TempDir>,
        dir_path: std::path::PathBuf,
        identity: Identity,
        name: &str,
        secret: &str,
        clock: delivery::Clock,
    ) -> Node {
        let Identity {
            id,
            keys,
            previous_ids,
        } = identity;
        let store = Store::open(&dir_path.join("lanchat.db")).await.unwrap();
        store
            .set_local_identity(id.clone(), name.into(), delivery::now_ms())
            .await
            .unwrap();
        store.set_signer(Arc::new(keys.clone())).await.unwrap();
        store
            .set_retry_policy(storage::RetryPolicy {
                first_delay_ms: 100,
                max_delay_ms: 1_000,
            })
            .await
            .unwrap();
        let cancel = CancellationToken::new();
        let (link_tx, link_rx) = mpsc::channel(1024);
        let transport = Transport::start(
            config(&id, secret),
            keys.clone(),
            previous_ids,
            Arc::new(StorePorts::new(store.clone())),
            link_tx,
            cancel.child_token(),
        )
        .await
        .unwrap();
        let (peers, peer_rx) = broadcast::channel(64);
        let (events, _) = broadcast::channel(4096);
        let wake = Arc::new(Notify::new());
        delivery::spawn(DeliveryParts {
            store: Arc::new(StorePorts::new(store.clone())),
            transport: transport.clone(),
            local: id.clone(),
            link_events: link_rx,
            peer_events: peer_rx,
            addresses: AddressBook::default(),
            wake: Arc::clone(&wake),
            events: events.clone(),
            sync_requests: delivery::SyncRequests::default(),
            send_now: delivery::SendNow::default(),
            cancel: cancel.clone(),
            offsets: delivery::ClockOffsets::default(),
            clock: clock.clone(),
        });
        Node {
            id,
            store,
            transport,
            peers,
            wake,
            events,
            cancel,
            keys,
            clock,
            _dir: dir,
            dir_path,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.transport.local_addr().unwrap()
    }

    /// What discovery would do: the peer is known (stored) and online at its address.
    async fn sees(&self, other: &Node) {
        self.store
            .record_peer_sighting(PeerSighting {
                peer_id: other.id.clone(),
                display_name: "peer".into(),
                ip: "127.0.0.1".into(),
                port: other.addr().port(),
                capabilities: "[]".into(),
                seen_at: delivery::now_ms(),
            })
            .await
            .unwrap();
        let peer = Peer {
            node_id: other.id.clone(),
            display_name: "peer".into(),
            discovery_addr: None,
            listen_addr: Some(other.addr()),
            instance_id: None,
            public_key: None,
            online: true,
            last_seen_at: None,
            blocked: false,
            clock_offset_ms: None,
            presence: api_types::Presence::Online,
        };
        self.peers.send(PeerEvent::Online(peer)).unwrap();
    }

    async fn send_dm(&self, to: &NodeId, text: &str) {
        self.store
            .send_message_queued(
                ConversationId::dm(to),
                text.into(),
                self.clock.now_ms(),
                dm_envelope,
            )
            .await
            .unwrap();
        self.wake.notify_one();
    }

    async fn history(&self, with: &NodeId) -> Vec<storage::Message> {
        let mut all = Vec::new();
        let mut before = None;
        loop {
            let page = match self
                .store
                .history(
                    ConversationId::dm(with),
                    HistoryQuery { before, limit: 200 },
                )
                .await
            {
                Ok(page) => page,
                // No conversation yet: nothing was ever sent or received.
                Err(storage::StoreError::NotFound { .. }) => return all,
                Err(e) => panic!("{e}"),
            };
            let mut msgs = page.messages;
            msgs.append(&mut all);
            all = msgs;
            match page.older {
                Some(k) => before = Some(k),
                None => return all,
            }
        }
    }

    async fn stop(
        self,
    ) -> (
        Option<tempfile::TempDir>,
        std::path::PathBuf,
        NodeId,
        NodeKeys,
    ) {
        self.cancel.cancel();
        self.transport.shutdown().await;
        self.store.close().await.unwrap();
        (self._dir, self.dir_path, self.id, self.keys)
    }
}

fn bodies(messages: &[storage::Message]) -> Vec<String> {
    messages.iter().map(|m| m.body.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_flow_both_ways_exactly_once_and_end_delivered() {
    let a = Node::start("a", "office").await;
    let b = Node::start("b", "office").await;
    a.sees(&b).await;
    b.sees(&a).await;
    let mut b_events = b.events.subscribe();
    for i in 0..50 {
        a.send_dm(&b.id, &format!("a→b {i}")).await;
        b.send_dm(&a.id, &format!("b→a {i} 你好")).await;
    }
    wait_until("both sides hold 100 messages, all delivered", || async {
        let (ha, hb) = (a.history(&b.id).await, b.history(&a.id).await);
        ha.len() == 100
            && hb.len() == 100
            && ha
                .iter()
                .chain(hb.iter())
                .all(|m| m.status == MessageStatus::Delivered)
    })
    .await;
    let (ha, hb) = (a.history(&b.id).await, b.history(&a.id).await);
    // The same messages in the same order on both sides.
    assert_eq!(bodies(&ha), bodies(&hb));
    let ids: std::collections::HashSet<_> = ha.iter().map(|m| m.message_id).collect();
    assert_eq!(ids.len(), 100);
    // B was told about A's messages as they arrived.
    let mut received = 0;
    while let Ok(event) = b_events.try_recv() {
        if matches!(event, DeliveryEvent::MessageReceived(_)) {
            received += 1;
        }
    }
    assert_eq!(received, 50);
    assert!(a.store.due_outbox(i64::MAX, 10).await.unwrap().is_empty());
    let (ca, cb) = (a.transport.counters(), b.transport.counters());
    assert_eq!(ca.links_up, 1);
    assert_eq!(cb.links_up, 1);
    assert_eq!(ca.frames_undecryptable + cb.frames_undecryptable, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_never_links_and_nothing_is_delivered() {
    let a = Node::start("a", "office").await;
    let b = Node::start("b", "guess").await;
    a.sees(&b).await;
    a.send_dm(&b.id, "secret plans").await;
    wait_until("B refused a handshake", || async {
        b.transport.counters().handshake_failed > 0 && a.transport.counters().dials_failed > 0
    })
    .await;
    assert!(b.history(&a.id).await.is_empty());
    assert_eq!(a.history(&b.id).await[0].status, MessageStatus::Pending);
    assert_eq!(a.transport.counters().links_up, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_shown_with_keys_that_do_not_derive_it_is_refused_and_counted() {
    let a = Node::start("a", "office").await;
    let b = Node::start("b", "office").await;
    a.sees(&b).await;
    b.sees(&a).await;
    a.send_dm(&b.id, "first").await;
    wait_until("first delivered", || async {
        b.history(&a.id).await.len() == 1
    })
    .await;

    // B comes back with B's id and data but other keys (a copied settings file, a
    // squatter): its keys do not derive the id it claims, whoever dials.
    let (dir, path, b_id, _) = b.stop().await;
    let squatter = Identity {
        id: b_id,
        keys: NodeKeys::generate().unwrap(),
        previous_ids: Vec::new(),
    };
    let b = Node::start_in(
        dir,
        path,
        squatter,
        "b",
        "office",
        delivery::Clock::system(),
    )
    .await;
    a.sees(&b).await;
    b.sees(&a).await;
    a.send_dm(&b.id, "second").await;
    wait_until("A refused B's claim", || async {
        a.transport.counters().refused_identity > 0
    })
    .await;
    assert_eq!(a.transport.counters().links_up, 0);
    assert_eq!(b.history(&a.id).await.len(), 1);
    let second = a.history(&b.id).await;
    assert_eq!(second.len(), 2);
    assert_eq!(second[1].status, MessageStatus::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_settle_on_one_link() {
    for _ in 0..5 {
        let a = Node::start("a", "s").await;
        let b = Node::start("b", "s").await;
        a.sees(&b).await;
        b.sees(&a).await;
        a.transport.connect(&b.id, b.addr());
        b.transport.connect(&a.id, a.addr());
        a.send_dm(&b.id, "x").await;
        b.send_dm(&a.id, "y").await;
        wait_until("both delivered", || async {
            a.history(&b.id)
                .await
                .iter()
                .all(|m| m.status == MessageStatus::Delivered)
                && b.history(&a.id)
                    .await
                    .iter()
                    .all(|m| m.status == MessageStatus::Delivered)
                && a.history(&b.id).await.len() == 2
        })
        .await;
        wait_until("one link each", || async {
            a.transport.counters().links_up == 1 && b.transport.counters().links_up == 1
        })
        .await;
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peer_is_refused_and_its_link_closed() {
    let a = Node::start("a", "s").await;
    let b = Node::start("b", "s").await;
    a.sees(&b).await;
    b.sees(&a).await;
    b.send_dm(&a.id, "before").await;
    wait_until("delivered", || async { a.history(&b.id).await.len() == 1 }).await;
    let mut blocked = config(&a.id, "s");
    blocked.blocked_peers = vec![b.id.clone()];
    a.transport.reconfigure(blocked).await.unwrap();
    wait_until("link closed", || async {
        a.transport.counters().links_up == 0
    })
    .await;
    b.send_dm(&a.id, "after").await;
    wait_until("B's redial was refused as blocked", || async {
        a.transport.counters().refused_blocked_peer > 0
    })
    .await;
    assert_eq!(a.history(&b.id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_does_not_lift_a_block() {
    let a = Node::start("a", "s").await;
    let b = Node::start("b", "s").await;
    a.sees(&b).await;
    b.sees(&a).await;
    b.send_dm(&a.id, "before").await;
    wait_until("delivered", || async { a.history(&b.id).await.len() == 1 }).await;
    let mut blocked = config(&a.id, "s");
    blocked.blocked_peers = vec![b.id.clone()];
    a.transport.reconfigure(blocked).await.unwrap();
    a.store
        .apply_blocks(storage::BlockList {
            peers: vec![b.id.clone()],
            subnets: vec![],
        })
        .await
        .unwrap();
    // B comes back with new keys, saying (signed by its old key) that it was B.
    let c_keys = NodeKeys::generate().unwrap();
    let c_dir = tempfile::tempdir().unwrap();
    let c_path = c_dir.path().to_path_buf();
    let c_identity = Identity {
        id: c_keys.public().node_id(),
        previous_ids: vec![IdentityStatement::sign(&b.id, &b.keys, &c_keys.public())],
        keys: c_keys,
    };
    let c = Node::start_in(
        Some(c_dir),
        c_path,
        c_identity,
        "c",
        "s",
        delivery::Clock::system(),
    )
    .await;
    c.sees(&a).await;
    let refused_before = a.transport.counters().refused_blocked_peer;
    c.send_dm(&a.id, "it's me, with a new key").await;
    wait_until("the new key refused as the blocked node", || async {
        a.transport.counters().refused_blocked_peer > refused_before
    })
    .await;
    assert!(a.history(&c.id).await.is_empty());
    let peers = a.store.peers().await.unwrap();
    assert!(
        peers.iter().any(|p| p.peer_id == b.id && p.blocked),
        "nothing re-attached to the new id: {peers:?}"
    );
    assert_eq!(a.transport.counters().links_up, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_days_ahead_chats_both_ways_without_dragging_the_other() {
    const DAYS: i64 = 3 * 24 * 3_600_000;
    let a = Node::start("a", "office").await;
    // B's delivery and store run on a clock three days ahead (injected), and discovery
    // has not measured it: nothing may depend on the two clocks agreeing.
    let b = Node::start_with_clock(
        "b",
        "office",
        delivery::Clock::from_fn(|| delivery::now_ms() + DAYS),
    )
    .await;
    a.sees(&b).await;
    b.sees(&a).await;
    b.send_dm(&a.id, "from three days ahead").await;
    wait_until("A holds B's message", || async {
        a.history(&b.id).await.len() == 1
    })
    .await;
    a.send_dm(&b.id, "reply").await;
    wait_until("both hold both, delivered", || async {
        let (ha, hb) = (a.history(&b.id).await, b.history(&a.id).await);
        ha.len() == 2
            && hb.len() == 2
            && ha
                .iter()
                .chain(hb.iter())
                .all(|m| m.status == MessageStatus::Delivered)
    })
    .await;
    let (ha, hb) = (a.history(&b.id).await, b.history(&a.id).await);
    assert_eq!(bodies(&ha), ["from three days ahead", "reply"]);
    assert_eq!(bodies(&ha), bodies(&hb));
    let early = &ha[0];
    // Kept with B's stamp, shown on A's clock (no later than its arrival).
    assert!(early.hlc.wall_ms() as i64 >= delivery::now_ms() + DAYS - 60_000);
    assert!(early.shown_at() <= early.received_at);
    // A's clock did not follow: the reply sorts after it, but A stamps a message
    // elsewhere at its own time.
    let c = Node::start("c", "office").await;
    a.sees(&c).await;
    a.send_dm(&c.id, "elsewhere").await;
    let elsewhere = a.history(&c.id).await;
    assert!(
        (elsewhere[0].hlc.wall_ms() as i64) < delivery::now_ms() + 2 * 60_000,
        "A's clock stays its own: {:?}",
        elsewhere[0].hlc
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_every_task_of_the_transport() {
    let a = Node::start("a", "s").await;
    let b = Node::start("b", "s").await;
    a.sees(&b).await;
    b.sees(&a).await;
    a.send_dm(&b.id, "x").await;
    wait_until("delivered", || async { b.history(&a.id).await.len() == 1 }).await;
    wait_until("linked", || async {
        a.transport.counters().links_up == 1 && b.transport.counters().links_up == 1
    })
    .await;
    let transport = a.transport.clone();
    // The accept loop, and the link's supervisor, writer and reader.
    assert!(
        transport.running_tasks() >= 4,
        "{}",
        transport.running_tasks()
    );
    a.stop().await;
    assert_eq!(transport.running_tasks(), 0);
    // B heard the goodbye (or the socket closing) and dropped its end.
    wait_until("B's link down", || async {
        b.transport.counters().links_up == 0
    })
    .await;
    b.stop().await;
}
