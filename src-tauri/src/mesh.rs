//! The LAN mesh runtime inside the node: a supervisor task that follows the settings —
//! starts discovery when the mesh is enabled, reconfigures it live on every change,
//! stops it (with goodbye) when disabled or when the node stops — and forwards peer
//! events to the local API's event stream.

use std::sync::Arc;

use api_types::{Event, LanMeshSettings, MeshState, PeerView, Settings};
use lan_mesh::discovery::{
    Discovery, DiscoveryConfig, DiscoveryEnv, OfflineReason, Peer, PeerEvent, PeerStore,
};
use tokio::sync::{broadcast, watch, Notify};
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
}

impl MeshSnapshot {
    fn off() -> Self {
        MeshSnapshot {
            state: MeshState::Off,
            error: None,
            discovery: None,
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
}

/// Makes the peer store for each discovery start (a fresh one per runtime).
pub type PeerStoreFactory = Arc<dyn Fn() -> Box<dyn PeerStore> + Send + Sync>;

impl Mesh {
    pub fn start(settings: watch::Receiver<Settings>, stores: PeerStoreFactory) -> Mesh {
        let (snapshot_tx, snapshot) = watch::channel(MeshSnapshot::off());
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let outbox_wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let supervisor = Supervisor {
            snapshot: snapshot_tx,
            events: events.clone(),
            stores,
            stop: stop.clone(),
            running: None,
        };
        let task = tokio::spawn(supervisor.run(settings));
        Mesh {
            handle: MeshHandle {
                snapshot,
                events,
                outbox_wake,
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
}

struct Running {
    discovery: Discovery,
    forwarder: JoinHandle<()>,
    /// Ends the forwarder: the event channel itself stays open while any discovery
    /// handle (held by API requests in flight) lives.
    forwarder_stop: CancellationToken,
}

struct Supervisor {
    snapshot: watch::Sender<MeshSnapshot>,
    events: broadcast::Sender<Event>,
    stores: PeerStoreFactory,
    stop: CancellationToken,
    running: Option<Running>,
}

impl Supervisor {
    async fn run(mut self, mut settings: watch::Receiver<Settings>) {
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
                _ = tokio::time::sleep(RETRY_FAILED_START), if failed => {
                    // Forget what was applied so the same settings are tried again.
                    applied = None;
                }
            }
        }
        self.stop_running().await;
        self.publish_state(MeshState::Off, None, None);
    }

    async fn apply(&mut self, wanted: &LanMeshSettings) {
        if !wanted.enabled {
            self.stop_running().await;
            self.publish_state(MeshState::Off, None, None);
            return;
        }
        let config = discovery_config(wanted);
        if let Some(running) = &self.running {
            match running.discovery.reconfigure(config.clone()).await {
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
            ..Default::default()
        };
        match Discovery::start(config, env).await {
            Ok(discovery) => {
                let forwarder_stop = CancellationToken::new();
                let forwarder = tokio::spawn(forward(
                    discovery.subscribe(),
                    self.events.clone(),
                    forwarder_stop.clone(),
                ));
                tracing::info!("LAN mesh running");
                self.publish_state(MeshState::Running, None, Some(discovery.clone()));
                self.running = Some(Running {
                    discovery,
                    forwarder,
                    forwarder_stop,
                });
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

    async fn stop_running(&mut self) {
        if let Some(running) = self.running.take() {
            running.discovery.shutdown().await;
            running.forwarder_stop.cancel();
            let _ = running.forwarder.await;
            tracing::info!("LAN mesh stopped");
        }
    }

    fn publish_state(&self, state: MeshState, error: Option<String>, discovery: Option<Discovery>) {
        let changed = {
            let now = self.snapshot.borrow();
            now.state != state || now.error != error
        };
        self.snapshot.send_replace(MeshSnapshot {
            state,
            error: error.clone(),
            discovery,
        });
        if changed {
            let _ = self.events.send(Event::MeshState { state, error });
        }
    }
}

/// The discovery configuration for these settings. An empty display name announces
/// the host name, as the status endpoint shows it.
pub fn discovery_config(s: &LanMeshSettings) -> DiscoveryConfig {
    let mut config = DiscoveryConfig::from_settings(s);
    if config.display_name.is_empty() {
        config.display_name = crate::host_name();
    }
    config.peer_addresses = s.peer_addresses.clone();
    config
}

async fn forward(
    mut from: broadcast::Receiver<PeerEvent>,
    to: broadcast::Sender<Event>,
    stop: CancellationToken,
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
                let _ = to.send(api_event(event));
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("peer event forwarding fell {n} events behind");
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
    }
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
