//! The LAN mesh runtime inside the node: a supervisor task that follows the settings —
//! starts discovery, the transport and delivery when the mesh is enabled, reconfigures
//! them live on every change, stops them (with goodbye) when disabled or when the node
//! stops — and forwards peer and message events to the local API's event stream.

use mesh_store::StorePorts;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api_types::{
    Event, LanMeshSettings, MeshState, MyPresence, PeerView, ReceiptCounters, Settings,
};
use lan_mesh::delivery::{
    self, AddressBook, Clock, ClockOffsets, DeliveryEvent, DeliveryParts, SendNow, SyncRequests,
};
use lan_mesh::discovery::{
    targets, Discovery, DiscoveryConfig, DiscoveryEnv, OfflineReason, Peer, PeerEvent, PeerStore,
    PublicKey,
};
use lan_mesh::secret::{SecretCache, SharedSecret};
use lan_mesh::transport::{IdentityStatement, NodeKeys, Transport, TransportConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use storage::{GlobalGroupId, Store};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How soon a mesh that could not start (its port taken, say) tries again by itself:
/// soon enough that freeing the port fixes things without touching settings, rare
/// enough to stay quiet in the log.
const RETRY_FAILED_START: std::time::Duration = std::time::Duration::from_secs(5);

/// Events waiting for slow API clients; one that falls further behind is told to
/// resync (see the events endpoint).
pub const EVENT_BACKLOG: usize = 1024;

/// What the API sees of the mesh at this moment.
#[derive(Clone)]
pub struct MeshSnapshot {
    pub state: MeshState,
    pub error: Option<String>,
    pub discovery: Option<Discovery>,
    pub transport: Option<Transport>,
}

impl MeshSnapshot {
    fn off() -> Self {
        MeshSnapshot {
            state: MeshState::Off,
            error: None,
            discovery: None,
            transport: None,
        }
    }
}

/// Owns the supervisor task; dropped or stopped with the node.
pub struct Mesh {
    handle: MeshHandle,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What API handlers hold: a cheap view of the mesh and its event stream.
#[derive(Clone)]
pub struct MeshHandle {
    snapshot: watch::Receiver<MeshSnapshot>,
    events: broadcast::Sender<Event>,
    /// Poked after something was written to the outbox, so it goes out now rather
    /// than at the delivery worker's next scheduled look.
    outbox_wake: Arc<Notify>,
    /// Groups to compare with their online members now (group catch-up).
    sync_requests: SyncRequests,
    /// DMs just stored, for the delivery worker to send before it reads the outbox.
    send_now: SendNow,
    /// This node's keys as they are now (a new identity replaces them): the status
    /// page shows their fingerprint, and a new identity's copy statement is signed
    /// with them.
    keys: Arc<std::sync::RwLock<NodeKeys>>,
    /// Asks the supervisor to run under new keys (`renew_keys`).
    renew: mpsc::Sender<Renewal>,
    /// This node's presence (announced by discovery, read by the notifier).
    presence: crate::presence::PresenceHandle,
    receipts: Arc<Receipts>,
}

/// A new identity's keys for the supervisor (`MeshHandle::renew_keys`).
struct Renewal {
    keys: NodeKeys,
    copy_of: IdentityStatement,
    done: oneshot::Sender<()>,
}

/// The mesh supervisor has stopped (the node is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the LAN mesh has stopped")]
pub struct MeshGone;

/// Read receipt counters (`GET /api/v1/diagnostics`).
#[derive(Default)]
struct Receipts {
    queued: AtomicU64,
    applied: AtomicU64,
    refused: AtomicU64,
}

/// Makes the peer store for each discovery start (a fresh one per runtime).
pub type PeerStoreFactory = Arc<dyn Fn() -> Box<dyn PeerStore> + Send + Sync>;

/// What the mesh needs from the node besides its settings.
pub struct MeshParts {
    pub stores: PeerStoreFactory,
    pub store: Store,
    /// Files: the engine the mesh runs serves and fetches for it.
    pub files: crate::files::FileService,
    pub keys: NodeKeys,
    /// The statement that this node runs on a copy of another id's computer, when it
    /// took a new identity after a copy (`crate::new_identity`): announced on every link.
    pub copy_of: Option<IdentityStatement>,
    /// The shared secret's keys, already derived for the settings of the start (or
    /// empty: the supervisor derives them).
    pub secrets: SecretCache,
    /// This node's presence, as it starts (the user's choice kept by the last run).
    pub presence: crate::presence::PresenceHandle,
}

impl Mesh {
    pub fn start(settings: watch::Receiver<Settings>, parts: MeshParts) -> Mesh {
        let (snapshot_tx, snapshot) = watch::channel(MeshSnapshot::off());
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let outbox_wake = Arc::new(Notify::new());
        let sync_requests = SyncRequests::default();
        let send_now = SendNow::default();
        let keys = Arc::new(std::sync::RwLock::new(parts.keys.clone()));
        let (renew, renewals) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let presence = parts.presence.clone();
        let receipts = Arc::new(Receipts::default());
        crate::presence::spawn_idle_timer(presence.clone(), settings.clone(), stop.clone());
        tokio::spawn(announce_presence_changes(
            presence.subscribe(),
            events.clone(),
            stop.clone(),
        ));
        let supervisor = Supervisor {
            snapshot: snapshot_tx,
            events: events.clone(),
            stores: parts.stores,
            store: parts.store,
            files: parts.files,
            keys: parts.keys,
            shared_keys: Arc::clone(&keys),
            copy_of: parts.copy_of,
            outbox_wake: Arc::clone(&outbox_wake),
            sync_requests: sync_requests.clone(),
            send_now: send_now.clone(),
            stop: stop.clone(),
            running: None,
            presence: presence.clone(),
            receipts: Arc::clone(&receipts),
            secrets: parts.secrets,
        };
        let task = tokio::spawn(supervisor.run(settings, renewals));
        Mesh {
            handle: MeshHandle {
                snapshot,
                events,
                outbox_wake,
                sync_requests,
                send_now,
                keys,
                renew,
                presence,
                receipts,
            },
            stop,
            task,
        }
    }

    pub fn handle(&self) -> MeshHandle {
        self.handle.clone()
    }

    /// Says goodbye to the LAN and waits for every mesh task to end.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!("mesh supervisor ended abnormally: {e}");
        }
    }
}

impl MeshHandle {
    pub fn snapshot(&self) -> MeshSnapshot {
        self.snapshot.borrow().clone()
    }

    pub fn discovery(&self) -> Option<Discovery> {
        self.snapshot.borrow().discovery.clone()
    }

    /// This node's link key fingerprint (for the status page).
    pub fn link_key(&self) -> String {
        self.keys().public().fingerprint()
    }

    /// This node's keys as they are now.
    pub fn keys(&self) -> NodeKeys {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the mesh and has it run under `keys` from now on, announcing `copy_of`.
    /// It starts again once the settings carry the id those keys derive (it never runs
    /// with an id its keys do not derive). Returns once the old keys are out of use.
    pub async fn renew_keys(
        &self,
        keys: NodeKeys,
        copy_of: IdentityStatement,
    ) -> Result<(), MeshGone> {
        let (done, answer) = oneshot::channel();
        self.renew
            .send(Renewal {
                keys,
                copy_of,
                done,
            })
            .await
            .map_err(|_| MeshGone)?;
        answer.await.map_err(|_| MeshGone)
    }

    pub fn transport(&self) -> Option<Transport> {
        self.snapshot.borrow().transport.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Sends an event to every open event stream (e.g. `message.new` for a message
    /// the API just stored).
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Tells the delivery worker that the outbox has something new.
    pub fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
    }

    /// Hands a DM's fresh outbox entry to the delivery worker, which sends it before it
    /// reads the outbox (one store round trip less on every message's way out).
    pub fn send_now(&self, entry: storage::OutboxEntry) {
        self.send_now.push(mesh_store::queued(entry));
        self.outbox_wake.notify_one();
    }

    /// Asks the delivery worker to compare this group's history with every member that
    /// is online now and fetch what is missing on either side (group catch-up). Call it
    /// after adding members or accepting an invitation: an added member gets the whole
    /// history this way. Cheap when nothing differs; requests for one group coalesce.
    pub fn sync_group(&self, group: GlobalGroupId) {
        self.sync_requests.request(group);
    }

    /// This node's presence: read it, choose it, report input (`crate::presence`).
    pub fn presence(&self) -> &crate::presence::PresenceHandle {
        &self.presence
    }

    /// Counts receipt envelopes queued by marking a conversation read.
    pub fn receipts_queued(&self, n: u32) {
        self.receipts
            .queued
            .fetch_add(u64::from(n), Ordering::Relaxed);
    }

    pub fn receipt_counters(&self) -> ReceiptCounters {
        ReceiptCounters {
            queued: self.receipts.queued.load(Ordering::Relaxed),
            applied: self.receipts.applied.load(Ordering::Relaxed),
            refused: self.receipts.refused.load(Ordering::Relaxed),
        }
    }
}

/// Tells every API client when this node's presence changes (any path: the API, the
/// tray, the idle timer).
async fn announce_presence_changes(
    mut presence: watch::Receiver<MyPresence>,
    events: broadcast::Sender<Event>,
    stop: CancellationToken,
) {
    while let Some(now) = crate::presence::next_change(&mut presence, &stop).await {
        let _ = events.send(Event::PresenceChanged { presence: now });
    }
}

/// Keeps discovery announcing this node's presence, for one mesh run.
async fn follow_presence(
    mut presence: watch::Receiver<MyPresence>,
    discovery: Discovery,
    stop: CancellationToken,
) {
    loop {
        // First the value now: it may have changed since discovery was started with
        // the one before (setting the same again announces nothing).
        let now = presence.borrow_and_update().presence;
        if discovery.set_presence(now).await.is_err() {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = presence.changed() => if changed.is_err() { break },
        }
    }
}

struct Running {
    discovery: Discovery,
    transport: Transport,
    delivery: JoinHandle<()>,
    forwarders: Vec<JoinHandle<()>>,
    /// Ends delivery and the forwarders: the event channels themselves stay open while
    /// any discovery handle (held by API requests in flight) lives.
    forwarder_stop: CancellationToken,
}

/// Delivery events waiting for the forwarder.
const DELIVERY_EVENT_BACKLOG: usize = 1024;
/// Link events (frames, link up/down) waiting for delivery: the link readers wait when
/// it is full, which slows the senders through TCP.
const LINK_EVENT_BACKLOG: usize = 1024;
const FILE_EVENT_BACKLOG: usize = 256;

/// Link events for the file engine (`Up`, `Down`, file frames) and for delivery
/// (everything but file frames), from the one stream the transport gives.
fn split_link_events(
    mut links: mpsc::Receiver<lan_mesh::transport::LinkEvent>,
    stop: CancellationToken,
) -> (
    mpsc::Receiver<lan_mesh::transport::LinkEvent>,
    mpsc::Receiver<lan_mesh::transport::LinkEvent>,
    JoinHandle<()>,
) {
    use lan_mesh::transport::{Frame, LinkEvent};
    let (delivery_tx, delivery_rx) = mpsc::channel(LINK_EVENT_BACKLOG);
    let (files_tx, files_rx) = mpsc::channel(LINK_EVENT_BACKLOG);
    let task = tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break,
                event = links.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            match event {
                LinkEvent::Frame {
                    frame: Frame::File(_),
                    ..
                } => {
                    // The engine's queue bounds what a peer can make it hold; a full
                    // queue waits here, which slows that link's reader, not the node.
                    if files_tx.send(event).await.is_err() {
                        break;
                    }
                }
                LinkEvent::Up { ref peer } => {
                    let _ = files_tx.send(LinkEvent::Up { peer: peer.clone() }).await;
                    if delivery_tx.send(event).await.is_err() {
                        break;
                    }
                }
                LinkEvent::Down { ref peer, ref end } => {
                    let copy = LinkEvent::Down {
                        peer: peer.clone(),
                        end: end.clone(),
                    };
                    let _ = files_tx.send(copy).await;
                    if delivery_tx.send(event).await.is_err() {
                        break;
                    }
                }
                other => {
                    if delivery_tx.send(other).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    (delivery_rx, files_rx, task)
}

struct Supervisor {
    snapshot: watch::Sender<MeshSnapshot>,
    events: broadcast::Sender<Event>,
    stores: PeerStoreFactory,
    store: Store,
    files: crate::files::FileService,
    keys: NodeKeys,
    /// The same keys, as the handles read them.
    shared_keys: Arc<std::sync::RwLock<NodeKeys>>,
    copy_of: Option<IdentityStatement>,
    outbox_wake: Arc<Notify>,
    sync_requests: SyncRequests,
    send_now: SendNow,
    stop: CancellationToken,
    running: Option<Running>,
    presence: crate::presence::PresenceHandle,
    receipts: Arc<Receipts>,
    /// The keys of the shared secret: one Argon2id run per secret value, on the
    /// blocking pool, when the settings change (never per packet or handshake).
    secrets: SecretCache,
}

impl Supervisor {
    async fn run(
        mut self,
        mut settings: watch::Receiver<Settings>,
        mut renewals: mpsc::Receiver<Renewal>,
    ) {
        let mut applied: Option<LanMeshSettings> = None;
        loop {
            let wanted = settings.borrow_and_update().lan_mesh.clone();
            if applied.as_ref() != Some(&wanted) {
                self.apply(&wanted).await;
                applied = Some(wanted);
            }
            let failed = self.snapshot.borrow().state == MeshState::Failed;
            tokio::select! {
                changed = settings.changed() => if changed.is_err() { break },
                _ = self.stop.cancelled() => break,
                Some(renewal) = renewals.recv() => {
                    self.renew(renewal).await;
                    applied = None;
                }
                _ = tokio::time::sleep(RETRY_FAILED_START), if failed => {
                    // Forget what was applied so the same settings are tried again.
                    applied = None;
                }
            }
        }
        self.stop_running().await;
        self.publish_state(MeshState::Off, None, None);
    }

    /// Stops everything that runs under the old keys, then takes the new ones.
    async fn renew(&mut self, renewal: Renewal) {
        self.stop_running().await;
        tracing::info!(keys = %renewal.keys.public().fingerprint(), "the mesh takes new keys");
        *self.shared_keys.write().unwrap_or_else(|p| p.into_inner()) = renewal.keys.clone();
        self.keys = renewal.keys;
        self.copy_of = Some(renewal.copy_of);
        self.publish_state(MeshState::Starting, None, None);
        let _ = renewal.done.send(());
    }

    async fn apply(&mut self, wanted: &LanMeshSettings) {
        let events = self.events.clone();
        if let Err(e) = crate::blocks::apply(&self.store, wanted, |event| {
            let _ = events.send(event);
        })
        .await
        {
            tracing::warn!("cannot apply the blocks to the store: {e}");
        }
        if let Err(e) = self
            .store
            .set_group_auto_accept(wanted.auto_accept_group_sync)
            .await
        {
            tracing::warn!("cannot apply auto_accept_group_sync: {e}");
        }
        if !wanted.enabled {
            self.stop_running().await;
            self.publish_state(MeshState::Off, None, None);
            return;
        }
        if wanted.node_id != self.keys.public().node_id() {
            // Between a new identity's keys and its settings (a moment): nothing runs
            // under an id its keys do not derive. The settings' change applies next.
            self.stop_running().await;
            self.publish_state(MeshState::Starting, None, None);
            return;
        }
        if self.running.is_none() && self.snapshot.borrow().state == MeshState::Off {
            // The status says what is going on while the keys are derived.
            self.publish_state(MeshState::Starting, None, None);
        }
        let secret = match self.secrets.keys(&wanted.shared_secret).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!("the LAN mesh cannot start: {e}");
                self.stop_running().await;
                self.publish_state(MeshState::Failed, Some(e.to_string()), None);
                return;
            }
        };
        let mut config = discovery_config(wanted, secret.clone());
        config.public_key = Some(PublicKey(self.keys.public().noise));
        let link_config = transport_config(wanted, secret);
        if let Some(running) = &self.running {
            let reconfigured = match running.discovery.reconfigure(config.clone()).await {
                Ok(()) => running
                    .transport
                    .reconfigure(link_config.clone())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match reconfigured {
                Ok(()) => {
                    tracing::info!("LAN mesh reconfigured");
                    return;
                }
                Err(e) => {
                    tracing::warn!("reconfiguring the LAN mesh failed ({e}); restarting it");
                    self.stop_running().await;
                }
            }
        }
        let previous_error = {
            let now = self.snapshot.borrow();
            (now.state == MeshState::Failed)
                .then(|| now.error.clone())
                .flatten()
        };
        if previous_error.is_none() {
            // A retry after a failure stays `failed` until it succeeds: no flapping.
            self.publish_state(MeshState::Starting, None, None);
        }
        let env = DiscoveryEnv {
            store: (self.stores)(),
            cancel: self.stop.child_token(),
            presence: self.presence.get().presence,
            ..Default::default()
        };
        match self.start_planes(config, env, link_config).await {
            Ok(running) => {
                tracing::info!("LAN mesh running");
                self.publish_running(&running);
                self.running = Some(running);
            }
            Err(e) => {
                // Typically the discovery port is taken. `run` retries every
                // RETRY_FAILED_START, and at once on the next settings change.
                let reason = e.to_string();
                if previous_error.as_deref() == Some(reason.as_str()) {
                    tracing::debug!("the LAN mesh still cannot start: {reason}");
                } else {
                    tracing::error!("the LAN mesh cannot start: {reason}");
                }
                self.publish_state(MeshState::Failed, Some(reason), None);
            }
        }
    }

    /// Discovery, then the transport (its listener), then delivery between them.
    async fn start_planes(
        &self,
        config: DiscoveryConfig,
        env: DiscoveryEnv,
        link_config: TransportConfig,
    ) -> Result<Running, String> {
        // Read before discovery announces us, so that nothing stands between discovery's
        // start and the listener's (a colleague may dial the moment it hears us), and
        // handed to the transport before it listens: the first link must carry them (a
        // colleague that knew us under an earlier id re-attaches it from that link).
        let previous_ids = self.previous_id_statements().await;
        let announcing = !previous_ids.is_empty();
        let discovery = Discovery::start(config, env)
            .await
            .map_err(|e| e.to_string())?;
        let (link_tx, link_rx) = tokio::sync::mpsc::channel(LINK_EVENT_BACKLOG);
        let local = link_config.node_id.clone();
        // A twin proof holds for two peer TTLs: discovery re-suspects (and the proof is
        // renewed) every heartbeat while both twins run.
        let twin_hold = link_config.dead_after.saturating_mul(2);
        let transport = match Transport::start(
            link_config,
            self.keys.clone(),
            previous_ids,
            Arc::new(crate::contact_book::ContactBook::new(
                self.store.clone(),
                discovery.clone(),
            )),
            link_tx,
            self.stop.child_token(),
        )
        .await
        {
            Ok(t) => t,
            Err(e) => {
                discovery.shutdown().await;
                return Err(e.to_string());
            }
        };
        let addresses = AddressBook::default();
        let offsets = ClockOffsets::default();
        // Subscribe before reading the list, so no change falls between the two.
        let peer_events = discovery.subscribe();
        if let Ok(peers) = discovery.peers().await {
            for peer in &peers {
                if let Some(offset) = peer.clock_offset_ms {
                    offsets.set(&peer.node_id, offset);
                }
            }
            for peer in peers.iter().filter(|p| p.online) {
                if let Some(addr) = peer.listen_addr {
                    addresses.set(&peer.node_id, addr);
                }
            }
        }
        let forwarder_stop = CancellationToken::new();
        let (delivery_links, file_links, splitter) =
            split_link_events(link_rx, forwarder_stop.clone());
        let (file_events, file_events_rx) = broadcast::channel(FILE_EVENT_BACKLOG);
        let withdrawn = self.files.withdrawn().await;
        let (files, files_task) = lan_mesh::files::spawn(lan_mesh::files::FilesParts {
            links: Arc::new(transport.clone()),
            blobs: Arc::new(blob_ports(self.files.blobs().clone())),
            link_events: file_links,
            events: file_events,
            addresses: addresses.clone(),
            cancel: forwarder_stop.clone(),
            withdrawn,
        });
        let (delivery_tx, delivery_rx) = broadcast::channel(DELIVERY_EVENT_BACKLOG);
        let delivery = delivery::spawn(DeliveryParts {
            store: Arc::new(StorePorts::new(self.store.clone())),
            transport: transport.clone(),
            local: local.clone(),
            link_events: delivery_links,
            peer_events,
            addresses,
            wake: Arc::clone(&self.outbox_wake),
            events: delivery_tx,
            sync_requests: self.sync_requests.clone(),
            send_now: self.send_now.clone(),
            cancel: forwarder_stop.clone(),
            offsets,
            clock: Clock::system(),
        });
        let (store, local_id) = (self.store.clone(), local.clone());
        let receipts = Arc::clone(&self.receipts);
        let file_service = self.files.clone();
        let mut forwarders = vec![splitter, files_task];
        forwarders.push(tokio::spawn(self.files.clone().forward_events(
            file_events_rx,
            self.events.clone(),
            forwarder_stop.clone(),
        )));
        self.files.attach(files).await;
        if announcing {
            forwarders.push(tokio::spawn(link_every_colleague(
                discovery.clone(),
                transport.clone(),
                forwarder_stop.clone(),
            )));
        }
        forwarders.extend([
            tokio::spawn(check_twins(
                discovery.subscribe_twins(),
                transport.clone(),
                twin_hold,
                forwarder_stop.clone(),
            )),
            tokio::spawn(forward(
                discovery.subscribe(),
                self.events.clone(),
                forwarder_stop.clone(),
                async |event| Some(api_event(event)),
            )),
            tokio::spawn(forward(
                delivery_rx,
                self.events.clone(),
                forwarder_stop.clone(),
                async move |event| {
                    delivery_event(&store, &file_service, &local_id, &receipts, event).await
                },
            )),
            // Discovery started with the presence of that moment; later changes follow.
            tokio::spawn(follow_presence(
                self.presence.subscribe(),
                discovery.clone(),
                forwarder_stop.clone(),
            )),
        ]);
        Ok(Running {
            discovery,
            transport,
            delivery,
            forwarders,
            forwarder_stop,
        })
    }

    /// This node's earlier ids (an upgrade from a random id), signed by its key, and
    /// the id it was copied from, for every handshake to announce.
    async fn previous_id_statements(&self) -> Vec<IdentityStatement> {
        let previous = match self.store.own_previous_ids().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("cannot read this node's earlier ids: {e}");
                Vec::new()
            }
        };
        let public = self.keys.public();
        let own_id = public.node_id();
        let copy_of = self
            .copy_of
            .iter()
            .filter(|s| s.new_id == own_id.as_str())
            .cloned();
        copy_of
            .chain(
                previous
                    .iter()
                    .map(|old| IdentityStatement::sign(old, &self.keys, &public)),
            )
            .take(lan_mesh::transport::noise::MAX_PREVIOUS_IDS)
            .collect()
    }

    async fn stop_running(&mut self) {
        if let Some(running) = self.running.take() {
            self.files.detach();
            running.discovery.shutdown().await;
            running.forwarder_stop.cancel();
            let _ = running.delivery.await;
            running.transport.shutdown().await;
            for forwarder in running.forwarders {
                let _ = forwarder.await;
            }
            tracing::info!("LAN mesh stopped");
        }
    }

    fn publish_running(&self, running: &Running) {
        self.publish(
            MeshState::Running,
            None,
            Some(running.discovery.clone()),
            Some(running.transport.clone()),
        );
    }

    fn publish_state(&self, state: MeshState, error: Option<String>, discovery: Option<Discovery>) {
        self.publish(state, error, discovery, None);
    }

    fn publish(
        &self,
        state: MeshState,
        error: Option<String>,
        discovery: Option<Discovery>,
        transport: Option<Transport>,
    ) {
        let changed = {
            let now = self.snapshot.borrow();
            now.state != state || now.error != error
        };
        self.snapshot.send_replace(MeshSnapshot {
            state,
            error: error.clone(),
            discovery,
            transport,
        });
        if changed {
            let _ = self.events.send(Event::MeshState { state, error });
        }
    }
}

/// Links to every colleague online now or coming online (once per link), so each
/// hears this node's earlier ids in the handshake and re-attaches what it knew under
/// them, even when nothing is queued for it.
async fn link_every_colleague(discovery: Discovery, transport: Transport, stop: CancellationToken) {
    // Those already online (heard before this task ran) and those who come online later:
    // subscribed first, so that no one falls between the list and the events.
    let mut events = discovery.subscribe();
    for peer in discovery.peers().await.unwrap_or_default() {
        if let (true, Some(addr)) = (peer.online, peer.listen_addr) {
            transport.connect(&peer.node_id, addr);
        }
    }
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.cancelled() => return,
        };
        match event {
            Ok(PeerEvent::Online(peer)) | Ok(PeerEvent::Updated { peer, .. }) if peer.online => {
                if let Some(addr) = peer.listen_addr {
                    transport.connect(&peer.node_id, addr);
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Has the transport prove or dismiss each twin discovery suspects: a probe handshake
/// at every address announcing the id (see `lan_mesh::transport::twins`).
async fn check_twins(
    mut sightings: broadcast::Receiver<lan_mesh::discovery::TwinSighting>,
    transport: Transport,
    hold: Duration,
    stop: CancellationToken,
) {
    loop {
        let sighting = tokio::select! {
            s = sightings.recv() => s,
            _ = stop.cancelled() => return,
        };
        match sighting {
            Ok(sighting) => {
                for addr in &sighting.addresses {
                    transport.check_identity_at(&sighting.node_id, *addr, hold);
                }
            }
            // Missed suspicions come back at the next heartbeat.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The discovery configuration for these settings and the keys of their secret. An
/// empty display name announces the host name, as the status endpoint shows it.
pub fn discovery_config(s: &LanMeshSettings, secret: SharedSecret) -> DiscoveryConfig {
    let mut config = DiscoveryConfig::from_settings(s, secret);
    if config.display_name.is_empty() {
        config.display_name = crate::host_name();
    }
    config.peer_addresses = s.peer_addresses.clone();
    if let Some(port) = advertised_listen_port() {
        config.listen_port = port;
    }
    config
}

/// The file engine's store. Test hook, in debug builds only (a release node cannot be
/// made to lie): `LANCHAT_CORRUPT_SERVED_CHUNKS=N` flips a byte in the first N chunks
/// this node serves after each mesh start, after its own check — a peer that sends
/// corrupt chunks, which receivers must refuse and fetch again.
fn blob_ports(blobs: storage::blobs::BlobStore) -> mesh_store::BlobPorts {
    let ports = mesh_store::BlobPorts::new(blobs);
    #[cfg(debug_assertions)]
    if let Ok(text) = std::env::var("LANCHAT_CORRUPT_SERVED_CHUNKS") {
        match text.parse::<u64>() {
            Ok(n) => {
                tracing::warn!(n, "test hook: the next chunks served are corrupted");
                ports.corrupt_next_reads(n);
            }
            Err(_) => {
                tracing::warn!(%text, "LANCHAT_CORRUPT_SERVED_CHUNKS is not a number; ignored")
            }
        }
    }
    ports
}

/// Test hook: `LANCHAT_ADVERTISE_LISTEN_PORT` makes discovery announce another transport
/// port than the one the node listens on, so a test can put a fault proxy in front of
/// the node (peers dial the proxy, the proxy relays to the node). Like a port forward.
fn advertised_listen_port() -> Option<u16> {
    let text = std::env::var("LANCHAT_ADVERTISE_LISTEN_PORT").ok()?;
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Some(port),
        _ => {
            tracing::warn!(%text, "LANCHAT_ADVERTISE_LISTEN_PORT is not a port; ignored");
            None
        }
    }
}

/// The transport configuration for these settings. Link keepalive follows the
/// heartbeat and a silent link dies after the peer TTL, like presence.
pub fn transport_config(s: &LanMeshSettings, secret: SharedSecret) -> TransportConfig {
    let host = s.listen_host;
    let allowed = if s.allowed_subnets.is_empty() {
        // As discovery does; read once per (re)configuration here.
        targets::effective_allowed(&[], &targets::system_networks())
    } else {
        s.allowed_subnets.clone()
    };
    TransportConfig {
        node_id: s.node_id.clone(),
        listen: SocketAddr::new(host, s.listen_port),
        shared_secret: secret,
        allowed_subnets: allowed,
        blocked_subnets: s.blocked_subnets.clone(),
        blocked_peers: s.blocked_peers.clone(),
        keepalive: Duration::from_secs(u64::from(s.heartbeat_interval_sec.max(1))),
        dead_after: Duration::from_secs(u64::from(s.peer_ttl_sec.max(2))),
        redial_first: Duration::from_millis(250),
        redial_max: Duration::from_secs(30),
    }
}

/// Delivery's events as the local API's: a stored inbound message, a status change, a
/// refused key.
async fn delivery_event(
    store: &Store,
    files: &crate::files::FileService,
    local: &api_types::NodeId,
    receipts: &Receipts,
    event: DeliveryEvent,
) -> Option<Event> {
    Some(match event {
        DeliveryEvent::MessageReceived(message) => {
            let names = crate::api::views::Names::for_sender(store, local, &message.sender).await;
            let mut view = crate::api::views::message_view(&message, &names);
            if !view.attachments.is_empty() {
                files.on_received(&message).await;
                files
                    .fill_attachments(std::slice::from_mut(&mut view))
                    .await;
            }
            Event::MessageNew { message: view }
        }
        DeliveryEvent::MessageStatus {
            message_id,
            conversation_id,
            status,
        } => Event::MessageStatus {
            conversation_id: conversation_id.to_string(),
            message_id: message_id.to_string(),
            status: crate::api::views::status(status),
        },
        DeliveryEvent::KeyMismatch { peer } => Event::PeerKeyMismatch {
            peer_id: peer.to_string(),
        },
        DeliveryEvent::GroupUpdated(id) => match store.group(id).await {
            Ok(Some(group)) => Event::GroupUpdated {
                group: crate::api::views::group_view_from_store(store, local, &group).await,
            },
            // Gone or unreadable right after it was stored: let clients refetch.
            _ => Event::Resync,
        },
        DeliveryEvent::GroupAnnouncement(id) => match store.group(id).await {
            Ok(Some(group)) => Event::GroupAnnouncement {
                group_id: id.to_string(),
                announcement: group.state.announcement().to_string(),
                editor: group
                    .state
                    .announcement_editor()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            },
            _ => Event::Resync,
        },
        DeliveryEvent::GroupInvitation(id) => {
            match crate::api::groups::invitation_view(store, local, id).await {
                Some(invitation) => Event::GroupInvitation { invitation },
                None => Event::Resync,
            }
        }
        DeliveryEvent::ReadReceipt {
            conversation_id,
            reader,
            up_to,
        } => {
            receipts.applied.fetch_add(1, Ordering::Relaxed);
            Event::ConversationReceipt {
                conversation_id: conversation_id.to_string(),
                reader: reader.to_string(),
                order: crate::api::views::order_text(up_to),
            }
        }
        DeliveryEvent::ReceiptRefused { peer } => {
            receipts.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "a read receipt was refused");
            return None;
        }
    })
}

/// Passes one plane's events on to the API's stream until `stop`; a client of the API
/// that missed some is told to resync.
async fn forward<T: Clone>(
    mut from: broadcast::Receiver<T>,
    to: broadcast::Sender<Event>,
    stop: CancellationToken,
    mut convert: impl AsyncFnMut(T) -> Option<Event>,
) {
    loop {
        let received = tokio::select! {
            // Events already queued (e.g. the last offline transitions) go out first.
            biased;
            received = from.recv() => received,
            _ = stop.cancelled() => break,
        };
        match received {
            Ok(event) => {
                if let Some(event) = convert(event).await {
                    let _ = to.send(event);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("event forwarding fell {n} events behind");
                let _ = to.send(Event::Resync);
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

pub fn peer_view(p: &Peer) -> PeerView {
    PeerView {
        peer_id: p.node_id.to_string(),
        display_name: p.display_name.clone(),
        address: p.listen_addr.map(|a| a.to_string()),
        online: p.online,
        last_seen_at: p.last_seen_at.map(|t| t.0),
        blocked: p.blocked,
        clock_offset_ms: p.clock_offset_ms,
        // The transport's view (link, RTT) is added where it is asked for (the peers
        // and diagnostics endpoints); discovery knows only presence.
        rtt_ms: None,
        link: crate::api::diagnostics::link_state(p.blocked, p.online, None),
        key_fingerprint: p.public_key.map(|k| key_fingerprint(&k.0)),
        presence: api_types::Presence::shown(p.online && !p.blocked, p.presence),
        copy_of: None,
    }
}

/// A key's short fingerprint, as `NodeKeys::fingerprint` and `PeerKeys::fingerprint`
/// write it (the status page's `link_key`).
fn key_fingerprint(noise_public: &[u8]) -> String {
    noise_public
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn api_event(event: PeerEvent) -> Event {
    match event {
        PeerEvent::Online(peer) => Event::PeerOnline {
            peer: peer_view(&peer),
        },
        PeerEvent::Updated { peer, .. } => Event::PeerUpdated {
            peer: peer_view(&peer),
        },
        PeerEvent::Offline { peer, reason } => Event::PeerOffline {
            peer: peer_view(&peer),
            reason: match reason {
                OfflineReason::Goodbye => "goodbye",
                OfflineReason::Expired => "expired",
                OfflineReason::Excluded => "excluded",
                OfflineReason::Evicted => "evicted",
            }
            .to_string(),
        },
        PeerEvent::Blocked(id) => Event::PeerBlocked {
            peer_id: id.to_string(),
        },
        PeerEvent::Unblocked(peer) => Event::PeerUnblocked {
            peer: peer_view(&peer),
        },
        PeerEvent::Forgotten(id) => Event::PeerRemoved {
            peer_id: id.to_string(),
        },
    }
}
