//! The file engine: one task per node, owning both sides of file transfer.
//!
//! **Serving.** A `FileWant` query is answered with `FileHave` (what the blob store
//! holds, verified chunks of a download in progress included) or `FileNone`. Chunk
//! requests wait in a queue per peer of at most [`SERVE_QUEUE_PER_PEER`] chunks; what
//! is over that is refused at once with `FileNone { Busy }` (and counted), so a peer
//! can never make this node hold more than 16 chunks for it.
//!
//! **Fetching.** Each download asks its candidate peers what they have, then keeps at
//! most [`WINDOW`] chunk requests in flight per peer, each missing chunk asked of the
//! peer (among those that have it) with the fewest requests in flight: the load
//! spreads over every peer with the file. A chunk is stored only once the store has
//! checked it against the manifest; a peer that sends a bad chunk is dropped from this
//! download and its requests go to others. A peer whose link goes down is forgotten
//! until its link comes back up (then asked again); with no peer to ask, the download
//! is [`FetchState::Waiting`]. The store's missing chunks are the starting point, so a
//! download restarted after a crash fetches only what is missing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api_types::NodeId;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::port::{BlobPort, BlobPortError, HeldChunks, PutOutcome};
use super::wire::{
    ranges_of, ChunkRange, FileChunk, FileFrame, FileHave, FileId, FileNone, FileWant,
    ManifestHash, NoneReason, WantKind, MAX_RANGES,
};
use crate::links::Links;
use crate::transport::{Frame, LinkEvent, SendError};

/// Chunk requests in flight per peer and download: 8 × 128 KiB = 1 MiB. At 1 Gbit/s
/// and a LAN's sub-millisecond round trip, 1 MiB in flight keeps the link busy (the
/// bandwidth-delay product is ~125 KiB at 1 ms), while a peer's files lane never holds
/// more than a window per download: a text message waits behind one chunk being
/// written, never behind a file.
pub const WINDOW: usize = 8;
/// Chunks queued for one peer on the serving side: two windows, so two downloads from
/// the same peer are served back to back; above it requests are refused as busy. It
/// equals the link's files lane (`transport::config::FILE_QUEUE`), so the lane fills
/// only when the socket stalls.
pub const SERVE_QUEUE_PER_PEER: usize = 16;
/// A request unanswered this long is asked again (of whichever peer fits then): a
/// chunk takes ~10 ms at 100 Mbit/s, so 30 s means the peer is gone or stuck, yet a
/// busy disk on the serving side is not mistaken for loss.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer that answered `Busy` is left alone: long enough for its queue to
/// drain a window (~80 ms at 100 Mbit/s) many times over, short against a transfer.
const BUSY_BACKOFF: Duration = Duration::from_millis(500);
/// How often the engine looks at timeouts when nothing else wakes it.
const TICK: Duration = Duration::from_secs(1);
/// How soon a serve that found the lane full is tried again.
const SERVE_RETRY: Duration = Duration::from_millis(20);
/// Commands queued to the engine before `fetch`/`cancel` wait.
const COMMAND_QUEUE: usize = 64;

/// Where a download stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchState {
    /// Chunks are being asked of at least one peer.
    Fetching,
    /// No linked candidate has any missing chunk: it resumes when one comes back.
    Waiting,
    /// Complete and verified as a whole.
    Complete,
    /// Given up (no manifest here, the whole-file check failed).
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchProgress {
    pub state: FetchState,
    pub missing: u32,
    /// Chunks stored by this download (not counting what was there before it).
    pub fetched: u64,
    /// Chunks refused because they did not match the manifest.
    pub rejected: u64,
    /// Chunks stored per peer.
    pub from: BTreeMap<NodeId, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    State { file_id: FileId, state: FetchState },
}

/// Drops and work done, for diagnostics (read with [`FileCounters::snapshot`]).
#[derive(Debug, Default)]
pub struct FileCounters {
    /// Chunks a peer sent that did not match the manifest.
    pub chunks_rejected: AtomicU64,
    /// Chunk requests refused because the peer's serve queue was full.
    pub requests_over_quota: AtomicU64,
    /// Chunks that arrived unasked (or after their request was given up).
    pub chunks_unsolicited: AtomicU64,
    pub chunks_served: AtomicU64,
    pub chunks_stored: AtomicU64,
}

impl FileCounters {
    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> FileCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FileCounts {
            chunks_rejected: get(&self.chunks_rejected),
            requests_over_quota: get(&self.requests_over_quota),
            chunks_unsolicited: get(&self.chunks_unsolicited),
            chunks_served: get(&self.chunks_served),
            chunks_stored: get(&self.chunks_stored),
        }
    }
}

/// The counters' values at one moment (see [`FileCounters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    pub chunks_rejected: u64,
    pub requests_over_quota: u64,
    pub chunks_unsolicited: u64,
    pub chunks_served: u64,
    pub chunks_stored: u64,
}

enum Command {
    Fetch {
        file_id: FileId,
        manifest_hash: ManifestHash,
        peers: Vec<NodeId>,
    },
    Cancel(FileId),
    Progress(FileId, oneshot::Sender<Option<FetchProgress>>),
}

/// The engine's handle: cheap to clone; the engine stops when `cancel` fires or every
/// handle and the link events are gone.
#[derive(Clone)]
pub struct FilesHandle {
    commands: mpsc::Sender<Command>,
    counters: Arc<FileCounters>,
}

impl FilesHandle {
    /// Starts (or widens, with more candidate peers) the download of `file_id`. The
    /// store must know its manifest.
    pub async fn fetch(&self, file_id: FileId, manifest_hash: ManifestHash, peers: Vec<NodeId>) {
        let _ = self
            .commands
            .send(Command::Fetch {
                file_id,
                manifest_hash,
                peers,
            })
            .await;
    }

    /// Stops downloading `file_id` (its verified chunks stay in the store).
    pub async fn cancel(&self, file_id: FileId) {
        let _ = self.commands.send(Command::Cancel(file_id)).await;
    }

    pub async fn progress(&self, file_id: FileId) -> Option<FetchProgress> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Progress(file_id, tx))
            .await
            .ok()?;
        rx.await.ok().flatten()
    }

    pub fn counters(&self) -> &FileCounters {
        &self.counters
    }
}

pub struct FilesParts {
    pub links: Arc<dyn Links>,
    pub blobs: Arc<dyn BlobPort>,
    /// `Up`, `Down` and `Frame::File` events of this node's links.
    pub link_events: mpsc::Receiver<LinkEvent>,
    pub events: broadcast::Sender<FileEvent>,
    pub cancel: CancellationToken,
}

pub fn spawn(parts: FilesParts) -> (FilesHandle, JoinHandle<()>) {
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let counters = Arc::new(FileCounters::default());
    let engine = Engine {
        links: parts.links,
        blobs: parts.blobs,
        events: parts.events,
        counters: Arc::clone(&counters),
        serving: BTreeMap::new(),
        serve_retry_at: None,
        fetches: HashMap::new(),
    };
    let task = tokio::spawn(engine.run(parts.link_events, commands, parts.cancel));
    (
        FilesHandle {
            commands: commands_tx,
            counters,
        },
        task,
    )
}

/// A peer as a source of one download.
#[derive(Debug, Default)]
struct Source {
    /// What it said it has; `None` until it answered (or since its link went down).
    have: Option<SourceHave>,
    /// When it was last asked what it has (not asked again within the timeout).
    asked_at: Option<Instant>,
    outstanding: usize,
    /// It sent a chunk that did not match: never asked again by this download.
    dropped: bool,
    /// It answered `Busy`: left alone until then.
    resume_at: Option<Instant>,
}

#[derive(Debug, Clone)]
enum SourceHave {
    Complete,
    Some(Vec<ChunkRange>),
}

impl SourceHave {
    fn has(&self, index: u32) -> bool {
        match self {
            SourceHave::Complete => true,
            SourceHave::Some(ranges) => ranges.iter().any(|r| r.contains(index)),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, SourceHave::Some(r) if r.is_empty())
    }
}

struct Fetch {
    manifest_hash: ManifestHash,
    sources: BTreeMap<NodeId, Source>,
    missing: BTreeSet<u32>,
    /// Chunk → the peer asked and when.
    in_flight: BTreeMap<u32, (NodeId, Instant)>,
    state: FetchState,
    fetched: u64,
    rejected: u64,
    from: BTreeMap<NodeId, u64>,
}

impl Fetch {
    fn release_peer(&mut self, peer: &NodeId) {
        self.in_flight.retain(|_, (p, _)| p != peer);
        if let Some(s) = self.sources.get_mut(peer) {
            s.outstanding = 0;
        }
    }

    fn release_chunk(&mut self, index: u32) {
        if let Some((peer, _)) = self.in_flight.remove(&index) {
            if let Some(s) = self.sources.get_mut(&peer) {
                s.outstanding = s.outstanding.saturating_sub(1);
            }
        }
    }

    /// The frames this download sends now: queries to linked peers not yet asked,
    /// and chunk requests within each peer's window, each chunk to the eligible peer
    /// that has it with the fewest in flight. Pure but for `is_linked`.
    fn plan(
        &mut self,
        file_id: FileId,
        now: Instant,
        is_linked: &dyn Fn(&NodeId) -> bool,
    ) -> Vec<(NodeId, FileWant)> {
        let mut out = Vec::new();
        for (peer, source) in &mut self.sources {
            let stale = source
                .asked_at
                .is_none_or(|at| now.duration_since(at) >= REQUEST_TIMEOUT);
            if !source.dropped && source.have.is_none() && stale && is_linked(peer) {
                source.asked_at = Some(now);
                out.push((peer.clone(), FileWant::query(file_id, self.manifest_hash)));
            }
        }
        let eligible: Vec<NodeId> = self
            .sources
            .iter()
            .filter(|(peer, s)| {
                !s.dropped
                    && s.have.as_ref().is_some_and(|h| !h.is_empty())
                    && s.resume_at.is_none_or(|at| now >= at)
                    && is_linked(peer)
            })
            .map(|(peer, _)| peer.clone())
            .collect();
        let mut picked: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        if !eligible.is_empty() {
            let wanted: Vec<u32> = self
                .missing
                .iter()
                .copied()
                .filter(|i| !self.in_flight.contains_key(i))
                .collect();
            for index in wanted {
                let best = eligible
                    .iter()
                    .filter_map(|peer| self.sources.get(peer).map(|s| (peer, s)))
                    .filter(|(_, s)| s.outstanding < WINDOW)
                    .filter(|(_, s)| s.have.as_ref().is_some_and(|h| h.has(index)))
                    .min_by_key(|(_, s)| s.outstanding)
                    .map(|(peer, _)| peer.clone());
                let Some(peer) = best else {
                    if eligible
                        .iter()
                        .all(|p| self.sources.get(p).is_none_or(|s| s.outstanding >= WINDOW))
                    {
                        break;
                    }
                    continue;
                };
                if let Some(s) = self.sources.get_mut(&peer) {
                    s.outstanding += 1;
                }
                self.in_flight.insert(index, (peer.clone(), now));
                picked.entry(peer).or_default().push(index);
            }
        }
        for (peer, indices) in picked {
            out.push((
                peer,
                FileWant {
                    file_id,
                    manifest_hash: self.manifest_hash,
                    kind: WantKind::Chunks,
                    ranges: ranges_of(indices, MAX_RANGES),
                },
            ));
        }
        out
    }

    /// Fetching while something is asked or some linked peer can be asked; waiting
    /// otherwise.
    fn activity(&self, is_linked: &dyn Fn(&NodeId) -> bool) -> FetchState {
        let askable = self.sources.iter().any(|(peer, s)| {
            !s.dropped
                && is_linked(peer)
                && match &s.have {
                    None => true,
                    Some(h) => self.missing.iter().any(|&i| h.has(i)),
                }
        });
        if !self.in_flight.is_empty() || askable {
            FetchState::Fetching
        } else {
            FetchState::Waiting
        }
    }
}

struct Engine {
    links: Arc<dyn Links>,
    blobs: Arc<dyn BlobPort>,
    events: broadcast::Sender<FileEvent>,
    counters: Arc<FileCounters>,
    /// Per peer, the chunks it asked for, in order.
    serving: BTreeMap<NodeId, VecDeque<(FileId, u32)>>,
    serve_retry_at: Option<Instant>,
    fetches: HashMap<FileId, Fetch>,
}

impl Engine {
    async fn run(
        mut self,
        mut link_events: mpsc::Receiver<LinkEvent>,
        mut commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wake = self
                .serve_retry_at
                .map_or(next_tick, |at| at.min(next_tick));
            tokio::select! {
                _ = cancel.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                event = link_events.recv() => match event {
                    Some(event) => self.on_link_event(event).await,
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= next_tick {
                        next_tick = Instant::now() + TICK;
                        self.expire_requests();
                    }
                }
            }
            self.serve().await;
            self.pump().await;
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Fetch {
                file_id,
                manifest_hash,
                peers,
            } => self.start_fetch(file_id, manifest_hash, peers).await,
            Command::Cancel(file_id) => {
                if let Some(fetch) = self.fetches.remove(&file_id) {
                    let asked: BTreeSet<NodeId> =
                        fetch.in_flight.values().map(|(p, _)| p.clone()).collect();
                    for peer in asked {
                        let _ = self
                            .links
                            .send(&peer, Frame::File(FileFrame::Cancel(file_id)));
                    }
                }
            }
            Command::Progress(file_id, reply) => {
                let progress = self.fetches.get(&file_id).map(|f| FetchProgress {
                    state: f.state.clone(),
                    missing: u32::try_from(f.missing.len()).unwrap_or(u32::MAX),
                    fetched: f.fetched,
                    rejected: f.rejected,
                    from: f.from.clone(),
                });
                let _ = reply.send(progress);
            }
        }
    }

    async fn start_fetch(
        &mut self,
        file_id: FileId,
        manifest_hash: ManifestHash,
        peers: Vec<NodeId>,
    ) {
        if let Some(fetch) = self.fetches.get_mut(&file_id) {
            for peer in peers {
                fetch.sources.entry(peer).or_default();
            }
            return;
        }
        let missing = match self.blobs.begin(file_id, manifest_hash).await {
            Ok(missing) => missing,
            Err(e) => {
                tracing::warn!(file = %file_id, "cannot begin the download: {e}");
                self.fetches.insert(
                    file_id,
                    Fetch {
                        manifest_hash,
                        sources: BTreeMap::new(),
                        missing: BTreeSet::new(),
                        in_flight: BTreeMap::new(),
                        state: FetchState::Failed(e.to_string()),
                        fetched: 0,
                        rejected: 0,
                        from: BTreeMap::new(),
                    },
                );
                self.emit(file_id, FetchState::Failed(e.to_string()));
                return;
            }
        };
        tracing::debug!(file = %file_id, missing = missing.len(), "download begins");
        self.fetches.insert(
            file_id,
            Fetch {
                manifest_hash,
                sources: peers.into_iter().map(|p| (p, Source::default())).collect(),
                missing: missing.into_iter().collect(),
                in_flight: BTreeMap::new(),
                state: FetchState::Fetching,
                fetched: 0,
                rejected: 0,
                from: BTreeMap::new(),
            },
        );
    }

    fn emit(&self, file_id: FileId, state: FetchState) {
        let _ = self.events.send(FileEvent::State { file_id, state });
    }

    async fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Up { peer } => {
                // A peer back: ask it again what it has (a waiting download resumes).
                for fetch in self.fetches.values_mut() {
                    if let Some(s) = fetch.sources.get_mut(&peer) {
                        s.have = None;
                        s.asked_at = None;
                    }
                }
            }
            LinkEvent::Down { peer, .. } => {
                self.serving.remove(&peer);
                for fetch in self.fetches.values_mut() {
                    fetch.release_peer(&peer);
                    if let Some(s) = fetch.sources.get_mut(&peer) {
                        s.have = None;
                        s.asked_at = None;
                    }
                }
            }
            LinkEvent::Frame {
                peer,
                frame: Frame::File(frame),
                ..
            } => self.on_file_frame(peer, frame).await,
            LinkEvent::Frame { .. } | LinkEvent::KeyMismatch { .. } => {}
        }
    }

    async fn on_file_frame(&mut self, peer: NodeId, frame: FileFrame) {
        match frame {
            FileFrame::Want(want) => self.on_want(peer, want).await,
            FileFrame::Cancel(file_id) => {
                if let Some(queue) = self.serving.get_mut(&peer) {
                    queue.retain(|(f, _)| *f != file_id);
                }
            }
            FileFrame::Chunk(chunk) => self.on_chunk(peer, chunk).await,
            FileFrame::Have(have) => {
                if let Some(s) = self
                    .fetches
                    .get_mut(&have.file_id)
                    .and_then(|f| f.sources.get_mut(&peer))
                {
                    s.have = Some(if have.complete {
                        SourceHave::Complete
                    } else {
                        SourceHave::Some(have.ranges)
                    });
                }
            }
            FileFrame::None(none) => self.on_none(peer, none),
            // Manifest pages are not fetched by this engine yet: the store must know
            // the manifest before a download begins.
            FileFrame::ManifestPage(_) => {}
        }
    }

    async fn on_want(&mut self, peer: NodeId, want: FileWant) {
        let file_id = want.file_id;
        let refuse = |reason, ranges| {
            Frame::File(FileFrame::None(FileNone {
                file_id,
                reason,
                ranges,
            }))
        };
        let holding = match self.blobs.holding(file_id).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(file = %file_id, "cannot read what is held: {e}");
                None
            }
        };
        let answer = match holding {
            _ if want.kind == WantKind::ManifestPages => {
                Some(refuse(NoneReason::Absent, want.ranges))
            }
            None => Some(refuse(NoneReason::Absent, Vec::new())),
            Some(h) if h.manifest_hash != want.manifest_hash => {
                Some(refuse(NoneReason::OtherManifest, Vec::new()))
            }
            Some(h) if want.is_query() => Some(Frame::File(FileFrame::Have(match h.chunks {
                HeldChunks::Complete => FileHave {
                    file_id,
                    complete: true,
                    ranges: Vec::new(),
                },
                HeldChunks::Some(chunks) => FileHave {
                    file_id,
                    complete: false,
                    ranges: ranges_of(chunks, MAX_RANGES),
                },
            }))),
            Some(_) => {
                let queue = self.serving.entry(peer.clone()).or_default();
                let mut refused = Vec::new();
                for index in want.ranges.iter().flat_map(ChunkRange::indices) {
                    if queue.len() < SERVE_QUEUE_PER_PEER {
                        queue.push_back((file_id, index));
                    } else {
                        FileCounters::inc(&self.counters.requests_over_quota);
                        refused.push(index);
                    }
                }
                (!refused.is_empty())
                    .then(|| refuse(NoneReason::Busy, ranges_of(refused, MAX_RANGES)))
            }
        };
        if let Some(answer) = answer {
            if let Err(e) = self.links.send(&peer, answer) {
                tracing::debug!(%peer, "file answer not sent: {e}");
            }
        }
    }

    /// Sends queued chunks, one per peer in turn, until the queues are empty or the
    /// links' files lanes are full (then again after `SERVE_RETRY`).
    async fn serve(&mut self) {
        if self.serve_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.serve_retry_at = None;
        loop {
            let mut progressed = false;
            let peers: Vec<NodeId> = self.serving.keys().cloned().collect();
            for peer in peers {
                let Some(&(file_id, index)) = self.serving.get(&peer).and_then(|q| q.front())
                else {
                    self.serving.remove(&peer);
                    continue;
                };
                let frame = match self.blobs.read_chunk(file_id, index).await {
                    Ok(Some(bytes)) => Frame::File(FileFrame::Chunk(FileChunk {
                        file_id,
                        index,
                        bytes,
                    })),
                    Ok(None) => Frame::File(FileFrame::None(FileNone {
                        file_id,
                        reason: NoneReason::Absent,
                        ranges: vec![ChunkRange::one(index)],
                    })),
                    Err(e) => {
                        tracing::warn!(file = %file_id, index, "cannot read a chunk to serve: {e}");
                        Frame::File(FileFrame::None(FileNone {
                            file_id,
                            reason: NoneReason::Absent,
                            ranges: vec![ChunkRange::one(index)],
                        }))
                    }
                };
                let is_chunk = matches!(frame, Frame::File(FileFrame::Chunk(_)));
                match self.links.send(&peer, frame) {
                    Ok(()) => {
                        if is_chunk {
                            FileCounters::inc(&self.counters.chunks_served);
                        }
                        if let Some(q) = self.serving.get_mut(&peer) {
                            q.pop_front();
                        }
                        progressed = true;
                    }
                    Err(SendError::Busy) => {
                        self.serve_retry_at = Some(Instant::now() + SERVE_RETRY);
                    }
                    Err(_) => {
                        self.serving.remove(&peer);
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    async fn on_chunk(&mut self, peer: NodeId, chunk: FileChunk) {
        let file_id = chunk.file_id;
        let Some(fetch) = self.fetches.get_mut(&file_id) else {
            FileCounters::inc(&self.counters.chunks_unsolicited);
            return;
        };
        if fetch.in_flight.get(&chunk.index).map(|(p, _)| p) != Some(&peer) {
            FileCounters::inc(&self.counters.chunks_unsolicited);
            return;
        }
        fetch.release_chunk(chunk.index);
        let index = chunk.index;
        match self.blobs.put_chunk(file_id, index, chunk.bytes).await {
            Ok(PutOutcome::Stored) => {
                FileCounters::inc(&self.counters.chunks_stored);
                if let Some(fetch) = self.fetches.get_mut(&file_id) {
                    fetch.missing.remove(&index);
                    fetch.fetched += 1;
                    *fetch.from.entry(peer).or_default() += 1;
                }
            }
            Ok(PutOutcome::Duplicate) => {
                if let Some(fetch) = self.fetches.get_mut(&file_id) {
                    fetch.missing.remove(&index);
                }
            }
            Ok(PutOutcome::Mismatch) => {
                FileCounters::inc(&self.counters.chunks_rejected);
                tracing::warn!(%peer, file = %file_id, index, "a peer sent a chunk that does not match the manifest: dropped from this download");
                if let Some(fetch) = self.fetches.get_mut(&file_id) {
                    fetch.rejected += 1;
                    // Its other answers would be checked too, but they cost a window
                    // of waiting: they go to other peers now.
                    fetch.release_peer(&peer);
                    if let Some(s) = fetch.sources.get_mut(&peer) {
                        s.dropped = true;
                    }
                }
            }
            Err(e) => {
                // Nothing stored (a full disk): the chunk stays missing and is asked
                // again.
                tracing::warn!(file = %file_id, index, "cannot store a chunk: {e}");
            }
        }
    }

    fn on_none(&mut self, peer: NodeId, none: FileNone) {
        let Some(fetch) = self.fetches.get_mut(&none.file_id) else {
            return;
        };
        let refused: Vec<u32> = if none.ranges.is_empty() {
            fetch
                .in_flight
                .iter()
                .filter(|(_, (p, _))| *p == peer)
                .map(|(i, _)| *i)
                .collect()
        } else {
            none.ranges.iter().flat_map(ChunkRange::indices).collect()
        };
        for index in refused {
            if fetch.in_flight.get(&index).is_some_and(|(p, _)| *p == peer) {
                fetch.release_chunk(index);
            }
        }
        let Some(source) = fetch.sources.get_mut(&peer) else {
            return;
        };
        match none.reason {
            NoneReason::Busy => source.resume_at = Some(Instant::now() + BUSY_BACKOFF),
            NoneReason::Absent | NoneReason::OtherManifest if none.ranges.is_empty() => {
                source.have = Some(SourceHave::Some(Vec::new()));
            }
            // Some chunks it said it had are gone: ask it again what it has.
            NoneReason::Absent | NoneReason::OtherManifest => {
                source.have = None;
                source.asked_at = Some(Instant::now());
            }
        }
    }

    fn expire_requests(&mut self) {
        let now = Instant::now();
        for fetch in self.fetches.values_mut() {
            let late: Vec<u32> = fetch
                .in_flight
                .iter()
                .filter(|(_, (_, at))| now.duration_since(*at) >= REQUEST_TIMEOUT)
                .map(|(i, _)| *i)
                .collect();
            for index in late {
                fetch.release_chunk(index);
            }
        }
    }

    /// Plans every active download's requests, sends them, finishes downloads whose
    /// chunks are all in, and reports state changes.
    async fn pump(&mut self) {
        let now = Instant::now();
        let links = Arc::clone(&self.links);
        let is_linked = move |peer: &NodeId| links.is_linked(peer);
        let mut finished = Vec::new();
        let mut changed = Vec::new();
        let mut sends = Vec::new();
        for (file_id, fetch) in &mut self.fetches {
            if matches!(fetch.state, FetchState::Complete | FetchState::Failed(_)) {
                continue;
            }
            if fetch.missing.is_empty() && fetch.in_flight.is_empty() {
                finished.push(*file_id);
                continue;
            }
            for (peer, want) in fetch.plan(*file_id, now, &is_linked) {
                sends.push((peer, *file_id, want));
            }
            let state = fetch.activity(&is_linked);
            if state != fetch.state {
                fetch.state = state.clone();
                changed.push((*file_id, state));
            }
        }
        for (peer, file_id, want) in sends {
            let ranges = want.ranges.clone();
            if let Err(e) = self.links.send(&peer, Frame::File(FileFrame::Want(want))) {
                tracing::debug!(%peer, file = %file_id, "file request not sent: {e}");
                if let Some(fetch) = self.fetches.get_mut(&file_id) {
                    for index in ranges.iter().flat_map(ChunkRange::indices) {
                        fetch.release_chunk(index);
                    }
                }
            }
        }
        for (file_id, state) in changed {
            self.emit(file_id, state);
        }
        for file_id in finished {
            let state = match self.blobs.finish(file_id).await {
                Ok(()) => FetchState::Complete,
                Err(BlobPortError::Unavailable(e)) => {
                    // Retried on the next pass (a full disk may clear).
                    tracing::warn!(file = %file_id, "cannot finish the download yet: {e}");
                    continue;
                }
                Err(e) => FetchState::Failed(e.to_string()),
            };
            tracing::info!(file = %file_id, ?state, "download ended");
            if let Some(fetch) = self.fetches.get_mut(&file_id) {
                fetch.state = state.clone();
            }
            self.emit(file_id, state);
        }
    }
}
