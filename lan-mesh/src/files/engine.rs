//! The file engine: one task per node, owning both sides of file transfer.
//!
//! **Serving.** A `FileWant` query is answered with `FileHave` (what the blob store
//! holds, verified chunks of a download in progress included) or `FileNone`. Chunk
//! and manifest page requests wait in a queue per peer of at most
//! [`SERVE_QUEUE_PER_PEER`] items; what is over that is refused at once with
//! `FileNone { Busy }` (and counted), so a peer can never make this node hold more
//! than 16 chunks or pages for it.
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
//!
//! **Manifest first.** A receiver knows a file only by its [`FileDescriptor`] (from
//! the signed file message). When the store has no manifest for it, the download
//! begins in a manifest phase: its pages are asked of the candidates with the same
//! window, spread and timeout as chunks, handed to the store, which checks the whole
//! against the manifest hash. A manifest that does not match drops every peer that
//! supplied a page of it, and the pages are asked again of the others. A peer that
//! answers it has no manifest is not asked again until its link comes back.
//!
//! **Dialing.** A candidate without a link is dialled (at most every
//! [`DIAL_INTERVAL`]) when discovery knows its address: a download does not wait for
//! some other traffic to bring the link up.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api_types::NodeId;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::port::{
    BlobPort, BlobPortError, FileDescriptor, HeldChunks, ManifestOutcome, PutOutcome,
};
use super::wire::{
    ranges_of, ChunkRange, FileChunk, FileFrame, FileHave, FileId, FileNone, FileWant,
    ManifestHash, ManifestPage, NoneReason, WantKind, MAX_RANGES,
};
use crate::delivery::AddressBook;
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
/// How often a peer that holds only part of a file (a member downloading it too) is
/// asked again what it has: its chunks grow by tens every second, and the members of a
/// group can take from each other only what they know the others hold — the staler
/// that knowledge, the more the sender uploads twice (measured with 8 members: 2.6 ×
/// the file at 1 s). Some hundred bytes per peer and second.
pub const HAVE_REFRESH: Duration = Duration::from_millis(300);
/// How long a download whose store refused a chunk (a full disk) waits before asking
/// for chunks again: no request storm while the disk stays full, a prompt resume once
/// space returns.
pub const STORE_RETRY: Duration = Duration::from_secs(2);
/// How long a node that has a whole file remembers sending one of its chunks: a
/// request for the same chunk from another peer within it is answered `Elsewhere`
/// while the first recipient is linked here, so the members of a group take it from
/// each other and the sender uploads each chunk about once ("super-seeding").
pub const SEED_MEMORY: Duration = Duration::from_secs(3);
/// How long a chunk refused as `Elsewhere` is not asked of a peer that has the whole
/// file: long enough for the member that has it to say so.
const ELSEWHERE_BACKOFF: Duration = Duration::from_secs(1);
/// Chunks remembered as sent ([`SEED_MEMORY`]); above it the memory is dropped (the
/// rule only saves upload, it never decides correctness).
const MAX_SEED_MEMORY: usize = 1 << 16;
/// Peers remembered per withdrawn file to tell when it is offered again (the others
/// find out at their next recheck).
const MAX_TOLD_WITHDRAWN: usize = 1024;
/// How long a peer that answered `Busy` is left alone: long enough for its queue to
/// drain a window (~80 ms at 100 Mbit/s) many times over, short against a transfer.
const BUSY_BACKOFF: Duration = Duration::from_millis(500);
/// How often the engine looks at timeouts when nothing else wakes it.
const TICK: Duration = Duration::from_secs(1);
/// How soon a serve that found the lane full is tried again.
const SERVE_RETRY: Duration = Duration::from_millis(20);
/// Commands queued to the engine before `fetch`/`cancel` wait.
const COMMAND_QUEUE: usize = 64;
/// The least time between two dials of one candidate by this engine: the transport
/// has its own backoff for failed dials, this keeps the engine (which looks at its
/// downloads on every event) from asking for a dial per event.
pub const DIAL_INTERVAL: Duration = Duration::from_secs(5);
/// A peer that withdrew a file (its user cancelled sending it) is asked again after
/// this: when they offer it again, waiting downloads go on by themselves.
pub const WITHDRAWN_RECHECK: Duration = Duration::from_secs(30);
/// Chunks a download writes with one flush to disk when no write of it is running: 2
/// MiB of 128 KiB chunks. A flush per chunk made the disk's sync time the transfer's
/// speed (53 MB/s here, whatever the network). A batch is written off the engine's
/// task, one at a time per download, while the next chunks keep coming; those that
/// arrive meanwhile are written together when it is done, so the batch grows as the
/// disk slows. A batch is written when it is this large, when nothing more is in
/// flight, or at the next tick.
pub const WRITE_BATCH: usize = 16;
/// Chunks of one download held in memory at most (arrived and waiting, being written,
/// or asked for): 8 MiB of 128 KiB chunks. Nothing more is asked while it is reached,
/// so a disk slower than the network slows the transfer instead of growing memory.
pub const MAX_BUFFERED: usize = 64;
/// A peer that sent a chunk that does not match is asked nothing for this long: one
/// bad chunk may be a fault on its side (its memory, its disk after its check), and in
/// a DM the sender is the only source, so it is asked again — a few times.
pub const BAD_CHUNK_BACKOFF: Duration = Duration::from_secs(5);
/// A peer that sent bad chunks this many times to one download (all those of one
/// written batch count once) is never asked by it again: a liar costs at most this
/// many windows.
pub const MAX_BAD_CHUNKS: u32 = 3;
/// The least time between two [`FileEvent::Progress`] of one download: four a second
/// moves a progress bar smoothly, while a 100 MB/s download stores ~800 chunks a
/// second that nobody needs to hear of one by one.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Whether `s` has page or chunk `index` of a download in `phase`.
fn source_has(phase: Phase, s: &Source, index: u32) -> bool {
    match phase {
        // Any peer with the manifest has every page.
        Phase::Manifest => true,
        Phase::Chunks => s.have.as_ref().is_some_and(|h| h.has(index)),
    }
}

/// Where a download stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchState {
    /// Chunks are being asked of at least one peer.
    Fetching,
    /// No linked candidate has any missing chunk (or may have the manifest): it
    /// resumes when one comes back.
    Waiting,
    /// Complete and verified as a whole.
    Complete,
    /// Given up (a descriptor no manifest may have, the store failing, the whole-file
    /// check failed); fetching it again starts over.
    Failed(String),
    /// The store refused a chunk (a full disk, an I/O error): nothing more is asked
    /// for [`STORE_RETRY`], then it goes on by itself — what was verified stays.
    Stalled(String),
    /// Like `Waiting`, but a peer that has it withdrew it (its user cancelled sending
    /// it): asked again every [`WITHDRAWN_RECHECK`].
    Withdrawn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchProgress {
    pub state: FetchState,
    /// Chunks still missing (all of them while the manifest is being fetched).
    pub missing: u32,
    pub chunk_count: u32,
    /// Manifest pages still missing; 0 once the manifest is here.
    pub pages_missing: u32,
    /// Chunks stored by this download (not counting what was there before it).
    pub fetched: u64,
    /// Chunks refused because they did not match the manifest.
    pub rejected: u64,
    /// Chunks stored per peer.
    pub from: BTreeMap<NodeId, u64>,
}

/// What the engine tells the node about its downloads (a broadcast: a slow listener
/// loses events, never the engine's time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    /// A download's state changed (it is `Complete` or `Failed` once, at its end).
    State { file_id: FileId, state: FetchState },
    /// Chunks were stored since the last one: at most every [`PROGRESS_INTERVAL`] per
    /// download, while chunks arrive (the end is told by `State`, not by this).
    Progress {
        file_id: FileId,
        missing: u32,
        chunk_count: u32,
        /// Bytes stored by this download (not counting what was there before it).
        fetched_bytes: u64,
    },
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
    /// Manifests assembled from peers' pages that did not hash to the file message's
    /// manifest hash (a peer lied, or pages of two manifests were mixed).
    pub manifests_rejected: AtomicU64,
    /// Manifest pages that arrived unasked (or after their request was given up).
    pub pages_unsolicited: AtomicU64,
    pub pages_served: AtomicU64,
    /// Candidates dialled by downloads.
    pub dials: AtomicU64,
    /// Requests refused because their file is withdrawn here.
    pub requests_withdrawn: AtomicU64,
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
            manifests_rejected: get(&self.manifests_rejected),
            pages_unsolicited: get(&self.pages_unsolicited),
            pages_served: get(&self.pages_served),
            dials: get(&self.dials),
            requests_withdrawn: get(&self.requests_withdrawn),
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
    pub manifests_rejected: u64,
    pub pages_unsolicited: u64,
    pub pages_served: u64,
    pub dials: u64,
    pub requests_withdrawn: u64,
}

enum Command {
    Fetch {
        file: FileDescriptor,
        peers: Vec<NodeId>,
    },
    Cancel(FileId),
    Withdraw(FileId),
    Offer(FileId),
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
    /// Starts (or widens, with more candidate peers) the download of `file`; a
    /// download that failed starts over. Its manifest is fetched first when the store
    /// does not have it.
    pub async fn fetch(&self, file: FileDescriptor, peers: Vec<NodeId>) {
        let _ = self.commands.send(Command::Fetch { file, peers }).await;
    }

    /// Stops downloading `file_id` (its verified chunks stay in the store).
    pub async fn cancel(&self, file_id: FileId) {
        let _ = self.commands.send(Command::Cancel(file_id)).await;
    }

    /// Stops serving `file_id` to anyone (its user cancelled sending it): requests are
    /// answered `Withdrawn` and what was queued for peers is dropped. Not kept by the
    /// engine across restarts: the node passes what it stored in
    /// [`FilesParts::withdrawn`].
    pub async fn withdraw(&self, file_id: FileId) {
        let _ = self.commands.send(Command::Withdraw(file_id)).await;
    }

    /// Serves `file_id` again after [`FilesHandle::withdraw`].
    pub async fn offer(&self, file_id: FileId) {
        let _ = self.commands.send(Command::Offer(file_id)).await;
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
    /// Where discovery last saw each peer (the node passes delivery's book, which
    /// discovery keeps current): how unlinked candidates are dialled.
    pub addresses: AddressBook,
    /// Files withdrawn from the start (what the node's user stopped sending): not one
    /// request for them is served, however early it comes.
    pub withdrawn: HashSet<FileId>,
}

pub fn spawn(parts: FilesParts) -> (FilesHandle, JoinHandle<()>) {
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let counters = Arc::new(FileCounters::default());
    let engine = Engine {
        links: parts.links,
        blobs: parts.blobs,
        events: parts.events,
        addresses: parts.addresses,
        dialed: HashMap::new(),
        counters: Arc::clone(&counters),
        serving: BTreeMap::new(),
        serve_retry_at: None,
        fetches: HashMap::new(),
        seeded: HashMap::new(),
        withdrawn: parts
            .withdrawn
            .into_iter()
            .map(|f| (f, BTreeSet::new()))
            .collect(),
        writes: JoinSet::new(),
        write_tasks: HashMap::new(),
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
    /// It sent [`MAX_BAD_CHUNKS`] chunks that did not match (or lied about the
    /// manifest): never asked again by this download.
    dropped: bool,
    /// Write batches of this download in which it had a chunk that did not match.
    bad_chunks: u32,
    /// It answered `Busy`: left alone until then.
    resume_at: Option<Instant>,
    /// It said it has no manifest (or sent a page that does not fit): not asked for
    /// pages again until its link comes back.
    no_manifest: bool,
    /// When it last answered `Withdrawn`; cleared by its next `FileHave`.
    withdrawn_at: Option<Instant>,
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

/// What a download is fetching: `missing` and `in_flight` count pages in the first
/// phase and chunks in the second, so both share the window, spread and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Manifest,
    Chunks,
}

struct Fetch {
    file: FileDescriptor,
    phase: Phase,
    sources: BTreeMap<NodeId, Source>,
    /// Pages (manifest phase) or chunks still missing.
    missing: BTreeSet<u32>,
    /// Page or chunk → the peer asked and when.
    in_flight: BTreeMap<u32, (NodeId, Instant)>,
    /// Peers whose pages are in the current manifest assembly.
    suppliers: BTreeSet<NodeId>,
    state: FetchState,
    chunk_count: u32,
    fetched: u64,
    fetched_bytes: u64,
    rejected: u64,
    from: BTreeMap<NodeId, u64>,
    /// Chunks stored since the last progress event, and when that was.
    progress_due: bool,
    progress_at: Option<Instant>,
    /// Where this download starts in the chunk list (chunks are asked from there, in
    /// order, wrapping round): random when several peers may have the file, so the
    /// members of a group fetch different chunks from the sender first and then
    /// exchange them, instead of all asking the sender for the same ones.
    start: u32,
    /// The store refused a chunk: nothing is asked until then, and why.
    stalled: Option<(Instant, String)>,
    /// Chunks a whole-file holder answered `Elsewhere`: not asked of such a peer
    /// before then.
    elsewhere: BTreeMap<u32, Instant>,
    /// Chunks arrived and not written yet (see [`WRITE_BATCH`]), and who sent each:
    /// still missing, but not asked again.
    unwritten: BTreeMap<u32, (NodeId, Vec<u8>)>,
    /// Chunks of the batch being written (at most one per download): still missing
    /// until the store says, but not asked again.
    writing: BTreeSet<u32>,
}

impl Fetch {
    fn new(file: FileDescriptor, phase: Phase, missing: Vec<u32>, peers: Vec<NodeId>) -> Fetch {
        let chunk_count = file.chunk_count().unwrap_or(0);
        let start = if peers.len() > 1 && chunk_count > 1 {
            rand::random::<u32>() % chunk_count
        } else {
            0
        };
        Fetch {
            file,
            phase,
            sources: peers.into_iter().map(|p| (p, Source::default())).collect(),
            missing: missing.into_iter().collect(),
            in_flight: BTreeMap::new(),
            suppliers: BTreeSet::new(),
            state: FetchState::Fetching,
            chunk_count,
            fetched: 0,
            fetched_bytes: 0,
            rejected: 0,
            from: BTreeMap::new(),
            progress_due: false,
            progress_at: None,
            start,
            stalled: None,
            elsewhere: BTreeMap::new(),
            unwritten: BTreeMap::new(),
            writing: BTreeSet::new(),
        }
    }

    /// Whether its unwritten chunks should be written now.
    fn write_due(&self, tick: bool) -> bool {
        !self.unwritten.is_empty()
            && self.writing.is_empty()
            && (tick || self.unwritten.len() >= WRITE_BATCH || self.in_flight.is_empty())
    }

    /// Chunks it holds in memory or has asked for ([`MAX_BUFFERED`]).
    fn buffered(&self) -> usize {
        self.unwritten.len() + self.writing.len() + self.in_flight.len()
    }

    fn failed(file: FileDescriptor, reason: String) -> Fetch {
        let mut fetch = Fetch::new(file, Phase::Chunks, Vec::new(), Vec::new());
        fetch.state = FetchState::Failed(reason);
        fetch
    }

    fn is_active(&self) -> bool {
        !matches!(self.state, FetchState::Complete | FetchState::Failed(_))
    }

    /// The manifest is here: chunks from now on.
    fn enter_chunks(&mut self, missing: Vec<u32>) {
        self.phase = Phase::Chunks;
        self.missing = missing.into_iter().collect();
        self.in_flight.clear();
        self.suppliers.clear();
        for s in self.sources.values_mut() {
            s.outstanding = 0;
        }
    }

    /// Whether `peer` may be asked for something now (its window aside).
    fn askable(
        &self,
        peer: &NodeId,
        s: &Source,
        now: Instant,
        is_linked: &dyn Fn(&NodeId) -> bool,
    ) -> bool {
        !s.dropped
            && s.resume_at.is_none_or(|at| now >= at)
            && s.withdrawn_at
                .is_none_or(|at| now.duration_since(at) >= WITHDRAWN_RECHECK)
            && match self.phase {
                Phase::Manifest => !s.no_manifest,
                Phase::Chunks => s.have.as_ref().is_some_and(|h| !h.is_empty()),
            }
            && is_linked(peer)
    }

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
    /// and requests (pages or chunks) within each peer's window, each to the eligible
    /// peer that has it with the fewest in flight. Pure but for `is_linked`.
    fn plan(
        &mut self,
        file_id: FileId,
        now: Instant,
        is_linked: &dyn Fn(&NodeId) -> bool,
    ) -> Vec<(NodeId, FileWant)> {
        let mut out = Vec::new();
        let manifest_hash = self.file.manifest_hash;
        // Pages are asked straight away: a peer without the manifest says so.
        if self.phase == Phase::Chunks {
            for (peer, source) in &mut self.sources {
                let since = |limit| {
                    source
                        .asked_at
                        .is_none_or(|at| now.duration_since(at) >= limit)
                };
                let ask = match &source.have {
                    None if source.withdrawn_at.is_some() => since(WITHDRAWN_RECHECK),
                    None => since(REQUEST_TIMEOUT),
                    // A partial holder gains chunks as it downloads too.
                    Some(SourceHave::Some(_)) => since(HAVE_REFRESH),
                    Some(SourceHave::Complete) => false,
                };
                if !source.dropped && ask && is_linked(peer) {
                    source.asked_at = Some(now);
                    out.push((peer.clone(), FileWant::query(file_id, manifest_hash)));
                }
            }
        }
        let eligible: Vec<NodeId> = self
            .sources
            .iter()
            .filter(|(peer, s)| self.askable(peer, s, now, is_linked))
            .map(|(peer, _)| peer.clone())
            .collect();
        let mut picked: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        if !eligible.is_empty() {
            let start = if self.phase == Phase::Chunks {
                self.start
            } else {
                0
            };
            let phase = self.phase;
            let mut room = match phase {
                Phase::Chunks => MAX_BUFFERED.saturating_sub(self.buffered()),
                // Pages go to the store as they come.
                Phase::Manifest => usize::MAX,
            };
            let Fetch {
                missing,
                in_flight,
                unwritten,
                writing,
                sources,
                elsewhere,
                ..
            } = self;
            // Walked lazily: this runs after every chunk that arrives, and a download
            // misses up to thousands of chunks of which a window's worth is asked.
            let wanted = missing
                .range(start..)
                .chain(missing.range(..start))
                .copied();
            for index in wanted {
                if room == 0 {
                    break;
                }
                if in_flight.contains_key(&index)
                    || unwritten.contains_key(&index)
                    || writing.contains(&index)
                {
                    continue;
                }
                // A chunk that a peer holding only part of the file (a member
                // downloading it too) has is asked of such a peer, never of one that
                // has it all (the sender), even when their windows are full for now:
                // the sender uploads what nobody else has, the members exchange the
                // rest. Fewest requests in flight first among the peers chosen.
                let holders = eligible
                    .iter()
                    .filter_map(|peer| sources.get(peer).map(|s| (peer, s)))
                    .filter(|(_, s)| source_has(phase, s, index));
                let partial_holds = holders
                    .clone()
                    .any(|(_, s)| !matches!(s.have, Some(SourceHave::Complete)));
                let deferred = elsewhere.get(&index).is_some_and(|until| now < *until);
                let best = holders
                    .filter(|(_, s)| {
                        let complete = matches!(s.have, Some(SourceHave::Complete));
                        !complete || !(partial_holds || deferred)
                    })
                    .filter(|(_, s)| s.outstanding < WINDOW)
                    .min_by_key(|(_, s)| s.outstanding)
                    .map(|(peer, _)| peer.clone());
                let Some(peer) = best else {
                    if eligible
                        .iter()
                        .all(|p| sources.get(p).is_none_or(|s| s.outstanding >= WINDOW))
                    {
                        break;
                    }
                    continue;
                };
                if let Some(s) = sources.get_mut(&peer) {
                    s.outstanding += 1;
                }
                in_flight.insert(index, (peer.clone(), now));
                room -= 1;
                picked.entry(peer).or_default().push(index);
            }
        }
        for (peer, mut indices) in picked {
            // Picked from the download's start, wrapping round: the wire wants ranges
            // ascending (a receiver drops a request whose ranges are not).
            indices.sort_unstable();
            out.push((
                peer,
                FileWant {
                    file_id,
                    manifest_hash,
                    kind: match self.phase {
                        Phase::Manifest => WantKind::ManifestPages,
                        Phase::Chunks => WantKind::Chunks,
                    },
                    ranges: ranges_of(indices, MAX_RANGES),
                },
            ));
        }
        out
    }

    /// Fetching while something is asked or some linked peer can be asked; waiting
    /// otherwise (withdrawn when a peer withdrew it).
    fn activity(&self, is_linked: &dyn Fn(&NodeId) -> bool) -> FetchState {
        let askable = self.sources.iter().any(|(peer, s)| {
            !s.dropped
                && s.withdrawn_at.is_none()
                && is_linked(peer)
                && match (self.phase, &s.have) {
                    (Phase::Manifest, _) => !s.no_manifest,
                    (Phase::Chunks, None) => true,
                    (Phase::Chunks, Some(h)) => self.missing.iter().any(|&i| h.has(i)),
                }
        });
        if !self.in_flight.is_empty()
            || !self.unwritten.is_empty()
            || !self.writing.is_empty()
            || askable
        {
            FetchState::Fetching
        } else if self.sources.values().any(|s| s.withdrawn_at.is_some()) {
            FetchState::Withdrawn
        } else {
            FetchState::Waiting
        }
    }
}

/// A written chunk's index, who sent it and its length.
type Sender = (u32, NodeId, u64);

/// A batch written by a task of the engine's [`JoinSet`], and what the store said.
struct Written {
    file_id: FileId,
    senders: Vec<Sender>,
    outcomes: Result<Vec<PutOutcome>, BlobPortError>,
}

/// One item of a peer's serve queue.
#[derive(Debug, Clone, Copy)]
enum Served {
    Chunk(FileId, u32),
    Page(FileId, ManifestHash, u32),
}

impl Served {
    fn file_id(&self) -> FileId {
        match self {
            Served::Chunk(f, _) | Served::Page(f, _, _) => *f,
        }
    }
}

struct Engine {
    links: Arc<dyn Links>,
    blobs: Arc<dyn BlobPort>,
    events: broadcast::Sender<FileEvent>,
    counters: Arc<FileCounters>,
    addresses: AddressBook,
    /// Candidates this engine dialled, and when (kept for [`DIAL_INTERVAL`]).
    dialed: HashMap<NodeId, Instant>,
    /// Per peer, the chunks and pages it asked for, in order.
    serving: BTreeMap<NodeId, VecDeque<Served>>,
    serve_retry_at: Option<Instant>,
    fetches: HashMap<FileId, Fetch>,
    /// Chunks of whole files sent lately: to whom and when ([`SEED_MEMORY`]).
    seeded: HashMap<(FileId, u32), (NodeId, Instant)>,
    /// Files not served to anyone (their user cancelled sending them), and the peers
    /// told so: they hear at once when it is offered again.
    withdrawn: HashMap<FileId, BTreeSet<NodeId>>,
    /// The batches being written (one per download at most), and whose each task is.
    writes: JoinSet<Written>,
    write_tasks: HashMap<tokio::task::Id, FileId>,
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
            let wake = [self.serve_retry_at, self.progress_wake()]
                .into_iter()
                .flatten()
                .fold(next_tick, Instant::min);
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
                Some(written) = self.writes.join_next_with_id(), if !self.writes.is_empty() => {
                    self.on_written(written);
                }
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= next_tick {
                        next_tick = Instant::now() + TICK;
                        self.expire_requests();
                        self.write_due(true);
                        self.trace_downloads();
                    }
                }
            }
            self.serve().await;
            self.pump().await;
            // Started after the requests went out, so chunks keep coming during the
            // write.
            self.write_due(false);
        }
        // A batch being written goes on in the store's blocking pool; its chunks are
        // stored, or fetched again by the next run.
        self.writes.abort_all();
    }

    /// A batch's write ended: what the store said is taken in (a write task that
    /// failed stored nothing: its chunks are asked again).
    fn on_written(&mut self, written: Result<(tokio::task::Id, Written), tokio::task::JoinError>) {
        match written {
            Ok((id, written)) => {
                self.write_tasks.remove(&id);
                self.took_in(written.file_id, written.senders, written.outcomes);
            }
            Err(e) => {
                let file_id = self.write_tasks.remove(&e.id());
                tracing::error!(file = ?file_id, "a write of chunks failed: {e}");
                if let Some(fetch) = file_id.and_then(|f| self.fetches.get_mut(&f)) {
                    fetch.writing.clear();
                }
            }
        }
    }

    /// Waits for the write of `file_id` that is running, if any, and takes it in: a
    /// download begun again must find its store handle back in place.
    async fn settle_write(&mut self, file_id: FileId) {
        while self.write_tasks.values().any(|f| *f == file_id) {
            match self.writes.join_next_with_id().await {
                Some(written) => self.on_written(written),
                None => {
                    self.write_tasks.clear();
                    return;
                }
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Fetch { file, peers } => {
                self.settle_write(file.file_id).await;
                self.start_fetch(file, peers).await
            }
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
                self.blobs.forget_manifest(file_id);
            }
            Command::Withdraw(file_id) => {
                self.withdrawn.entry(file_id).or_default();
                for queue in self.serving.values_mut() {
                    queue.retain(|item| item.file_id() != file_id);
                }
                self.seeded.retain(|(f, _), _| *f != file_id);
            }
            Command::Offer(file_id) => {
                if let Some(told) = self.withdrawn.remove(&file_id) {
                    self.tell_offered(file_id, told).await;
                }
            }
            Command::Progress(file_id, reply) => {
                let progress = self.fetches.get(&file_id).map(|f| {
                    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
                    let (missing, pages_missing) = match f.phase {
                        Phase::Manifest => (f.chunk_count, count(f.missing.len())),
                        Phase::Chunks => (count(f.missing.len()), 0),
                    };
                    FetchProgress {
                        state: f.state.clone(),
                        missing,
                        chunk_count: f.chunk_count,
                        pages_missing,
                        fetched: f.fetched,
                        rejected: f.rejected,
                        from: f.from.clone(),
                    }
                });
                let _ = reply.send(progress);
            }
        }
    }

    async fn start_fetch(&mut self, file: FileDescriptor, peers: Vec<NodeId>) {
        let file_id = file.file_id;
        if let Some(fetch) = self.fetches.get_mut(&file_id) {
            if !matches!(fetch.state, FetchState::Failed(_)) {
                for peer in peers {
                    fetch.sources.entry(peer).or_default();
                }
                return;
            }
            // A failed download is tried again from scratch (the store may have room
            // now, or the candidates changed).
            self.fetches.remove(&file_id);
        }
        let fetch = match self.open(file).await {
            Ok((phase, missing)) => {
                tracing::debug!(file = %file_id, ?phase, missing = missing.len(), "download begins");
                Fetch::new(file, phase, missing, peers)
            }
            Err(e) => {
                tracing::warn!(file = %file_id, "cannot begin the download: {e}");
                self.emit(file_id, FetchState::Failed(e.to_string()));
                Fetch::failed(file, e.to_string())
            }
        };
        self.fetches.insert(file_id, fetch);
    }

    /// Where a download of `file` starts: the chunks missing when the store has its
    /// manifest, else the manifest's missing pages.
    async fn open(&self, file: FileDescriptor) -> Result<(Phase, Vec<u32>), BlobPortError> {
        match self.blobs.begin(file.file_id, file.manifest_hash).await {
            Ok(missing) => return Ok((Phase::Chunks, missing)),
            Err(BlobPortError::NoManifest(_)) => {}
            Err(e) => return Err(e),
        }
        match self.blobs.begin_manifest(file).await? {
            ManifestOutcome::Missing(pages) => Ok((Phase::Manifest, pages)),
            // No page needed (an empty file): the manifest is stored already.
            ManifestOutcome::Complete => self
                .blobs
                .begin(file.file_id, file.manifest_hash)
                .await
                .map(|missing| (Phase::Chunks, missing)),
            ManifestOutcome::Mismatch | ManifestOutcome::BadPage => Err(BlobPortError::Refused(
                file.file_id,
                "its manifest cannot be assembled".into(),
            )),
        }
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
                        s.no_manifest = false;
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
                    queue.retain(|item| item.file_id() != file_id);
                }
            }
            FileFrame::Chunk(chunk) => self.on_chunk(peer, chunk).await,
            FileFrame::Have(have) => {
                if let Some(s) = self
                    .fetches
                    .get_mut(&have.file_id)
                    .and_then(|f| f.sources.get_mut(&peer))
                {
                    s.withdrawn_at = None;
                    s.have = Some(if have.complete {
                        SourceHave::Complete
                    } else {
                        SourceHave::Some(have.ranges)
                    });
                }
            }
            FileFrame::None(none) => self.on_none(peer, none),
            FileFrame::ManifestPage(page) => self.on_manifest_page(peer, page).await,
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
            _ if self.withdrawn.contains_key(&file_id) => {
                FileCounters::inc(&self.counters.requests_withdrawn);
                if let Some(told) = self.withdrawn.get_mut(&file_id) {
                    if told.len() < MAX_TOLD_WITHDRAWN {
                        told.insert(peer.clone());
                    }
                }
                Some(refuse(NoneReason::Withdrawn, Vec::new()))
            }
            None => Some(refuse(NoneReason::Absent, Vec::new())),
            Some(h) if h.manifest_hash != want.manifest_hash => {
                Some(refuse(NoneReason::OtherManifest, Vec::new()))
            }
            Some(h) if want.is_query() => {
                Some(Frame::File(FileFrame::Have(have_of(file_id, h.chunks))))
            }
            Some(h) => {
                let whole = h.chunks == HeldChunks::Complete && want.kind == WantKind::Chunks;
                let now = Instant::now();
                let links = &self.links;
                let seeded = &self.seeded;
                let sent_elsewhere = |index: u32| {
                    whole
                        && seeded.get(&(file_id, index)).is_some_and(|(to, at)| {
                            *to != peer
                                && now.duration_since(*at) < SEED_MEMORY
                                && links.is_linked(to)
                        })
                };
                let mut elsewhere = Vec::new();
                // Pages and chunks share the queue: a page is as large as a chunk.
                let queue = self.serving.entry(peer.clone()).or_default();
                let mut refused = Vec::new();
                for index in want.ranges.iter().flat_map(ChunkRange::indices) {
                    if sent_elsewhere(index) {
                        elsewhere.push(index);
                    } else if queue.len() < SERVE_QUEUE_PER_PEER {
                        queue.push_back(match want.kind {
                            WantKind::Chunks => Served::Chunk(file_id, index),
                            WantKind::ManifestPages => {
                                Served::Page(file_id, want.manifest_hash, index)
                            }
                        });
                    } else {
                        FileCounters::inc(&self.counters.requests_over_quota);
                        refused.push(index);
                    }
                }
                tracing::debug!(%peer, file = %file_id, kind = ?want.kind, asked = want.ranges.len(),
                    queued = queue.len(), elsewhere = elsewhere.len(), busy = refused.len(), "file request");
                if !elsewhere.is_empty() {
                    let answer = refuse(NoneReason::Elsewhere, ranges_of(elsewhere, MAX_RANGES));
                    if let Err(e) = self.links.send(&peer, answer) {
                        tracing::debug!(%peer, "file answer not sent: {e}");
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

    /// A file offered again: the linked peers that were told it is withdrawn hear what
    /// this node has of it now (an unasked `FileHave`), so their downloads go on at
    /// once instead of at their next recheck.
    async fn tell_offered(&self, file_id: FileId, told: BTreeSet<NodeId>) {
        let have = match self.blobs.holding(file_id).await {
            Ok(Some(h)) => have_of(file_id, h.chunks),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(file = %file_id, "cannot read what is held: {e}");
                return;
            }
        };
        for peer in told.iter().filter(|p| self.links.is_linked(p)) {
            if let Err(e) = self
                .links
                .send(peer, Frame::File(FileFrame::Have(have.clone())))
            {
                tracing::debug!(%peer, "file offer not sent: {e}");
            }
        }
    }

    /// The frame that serves `item`: the chunk or page, or `FileNone` absent when it
    /// cannot be read.
    async fn read_served(&self, item: Served) -> Frame {
        let absent = |file_id, index| {
            Frame::File(FileFrame::None(FileNone {
                file_id,
                reason: NoneReason::Absent,
                ranges: vec![ChunkRange::one(index)],
            }))
        };
        match item {
            Served::Chunk(file_id, index) => match self.blobs.read_chunk(file_id, index).await {
                Ok(Some(bytes)) => Frame::File(FileFrame::Chunk(FileChunk {
                    file_id,
                    index,
                    bytes,
                })),
                Ok(None) => absent(file_id, index),
                Err(e) => {
                    tracing::warn!(file = %file_id, index, "cannot read a chunk to serve: {e}");
                    absent(file_id, index)
                }
            },
            Served::Page(file_id, manifest_hash, page) => {
                match self.blobs.manifest_page(file_id, manifest_hash, page).await {
                    Ok(Some(served)) => Frame::File(FileFrame::ManifestPage(ManifestPage {
                        file_id,
                        page,
                        page_count: served.page_count,
                        bytes: served.bytes,
                    })),
                    Ok(None) => absent(file_id, page),
                    Err(e) => {
                        tracing::warn!(file = %file_id, page, "cannot read a manifest page to serve: {e}");
                        absent(file_id, page)
                    }
                }
            }
        }
    }

    /// Sends queued chunks and pages, one per peer in turn, until the queues are empty
    /// or the links' files lanes are full (then again after `SERVE_RETRY`).
    async fn serve(&mut self) {
        if self.serve_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.serve_retry_at = None;
        loop {
            let mut progressed = false;
            let peers: Vec<NodeId> = self.serving.keys().cloned().collect();
            for peer in peers {
                let Some(&item) = self.serving.get(&peer).and_then(|q| q.front()) else {
                    self.serving.remove(&peer);
                    continue;
                };
                let frame = self.read_served(item).await;
                let counter = match &frame {
                    Frame::File(FileFrame::Chunk(_)) => Some(&self.counters.chunks_served),
                    Frame::File(FileFrame::ManifestPage(_)) => Some(&self.counters.pages_served),
                    _ => None,
                };
                match self.links.send(&peer, frame) {
                    Ok(()) => {
                        if let Some(counter) = counter {
                            FileCounters::inc(counter);
                        }
                        if let Served::Chunk(file_id, index) = item {
                            if self.seeded.len() >= MAX_SEED_MEMORY {
                                self.seeded.clear();
                            }
                            self.seeded
                                .insert((file_id, index), (peer.clone(), Instant::now()));
                        }
                        if let Some(q) = self.serving.get_mut(&peer) {
                            q.pop_front();
                        }
                        progressed = true;
                    }
                    Err(SendError::Busy) => {
                        self.serve_retry_at = Some(Instant::now() + SERVE_RETRY);
                    }
                    Err(e) => {
                        tracing::debug!(%peer, "serving stops: {e}");
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
        if fetch.phase != Phase::Chunks
            || fetch.in_flight.get(&chunk.index).map(|(p, _)| p) != Some(&peer)
        {
            FileCounters::inc(&self.counters.chunks_unsolicited);
            return;
        }
        fetch.release_chunk(chunk.index);
        fetch.unwritten.insert(chunk.index, (peer, chunk.bytes));
    }

    /// Starts writing the unwritten chunks of the downloads that are due
    /// ([`WRITE_BATCH`]; all that have any on a `tick`), one flush each, on a task of
    /// [`Engine::writes`]: the engine goes on receiving and asking meanwhile.
    fn write_due(&mut self, tick: bool) {
        for (file_id, fetch) in &mut self.fetches {
            if !fetch.write_due(tick) {
                continue;
            }
            let batch = std::mem::take(&mut fetch.unwritten);
            let mut senders: Vec<Sender> = Vec::with_capacity(batch.len());
            let mut chunks = Vec::with_capacity(batch.len());
            for (index, (peer, bytes)) in batch {
                senders.push((index, peer, bytes.len() as u64));
                chunks.push((index, bytes));
            }
            fetch.writing = senders.iter().map(|(index, _, _)| *index).collect();
            let blobs = Arc::clone(&self.blobs);
            let file_id = *file_id;
            let task = self.writes.spawn(async move {
                let outcomes = blobs.put_chunks(file_id, chunks).await;
                Written {
                    file_id,
                    senders,
                    outcomes,
                }
            });
            self.write_tasks.insert(task.id(), file_id);
        }
    }

    fn took_in(
        &mut self,
        file_id: FileId,
        senders: Vec<Sender>,
        outcomes: Result<Vec<PutOutcome>, BlobPortError>,
    ) {
        let Some(fetch) = self.fetches.get_mut(&file_id) else {
            return;
        };
        fetch.writing.clear();
        let outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // Nothing stored (a full disk): the chunks stay missing, and the
                // download pauses before asking again.
                tracing::warn!(file = %file_id, chunks = senders.len(), "cannot store chunks: {e}");
                let reason = match e {
                    BlobPortError::Unavailable(why) => why,
                    other => other.to_string(),
                };
                fetch.stalled = Some((Instant::now() + STORE_RETRY, reason));
                return;
            }
        };
        let mut liars = BTreeSet::new();
        for ((index, peer, len), outcome) in senders.into_iter().zip(outcomes) {
            match outcome {
                PutOutcome::Stored => {
                    FileCounters::inc(&self.counters.chunks_stored);
                    fetch.missing.remove(&index);
                    fetch.fetched += 1;
                    fetch.fetched_bytes += len;
                    fetch.progress_due = true;
                    *fetch.from.entry(peer).or_default() += 1;
                }
                PutOutcome::Duplicate => {
                    fetch.missing.remove(&index);
                }
                PutOutcome::Mismatch => {
                    FileCounters::inc(&self.counters.chunks_rejected);
                    fetch.rejected += 1;
                    tracing::warn!(%peer, file = %file_id, index, "a peer sent a chunk that does not match the manifest");
                    liars.insert(peer);
                }
            }
        }
        for peer in liars {
            // Its other answers would be checked too, but they cost a window of
            // waiting: they go to other peers now.
            fetch.release_peer(&peer);
            if let Some(s) = fetch.sources.get_mut(&peer) {
                s.bad_chunks += 1;
                if s.bad_chunks >= MAX_BAD_CHUNKS {
                    s.dropped = true;
                } else {
                    s.resume_at = Some(Instant::now() + BAD_CHUNK_BACKOFF);
                }
                tracing::warn!(%peer, file = %file_id, times = s.bad_chunks, dropped = s.dropped,
                    "a peer is left alone after bad chunks");
            }
        }
    }

    async fn on_manifest_page(&mut self, peer: NodeId, page: ManifestPage) {
        let file_id = page.file_id;
        let Some(fetch) = self.fetches.get_mut(&file_id) else {
            FileCounters::inc(&self.counters.pages_unsolicited);
            return;
        };
        if fetch.phase != Phase::Manifest
            || fetch.in_flight.get(&page.page).map(|(p, _)| p) != Some(&peer)
        {
            FileCounters::inc(&self.counters.pages_unsolicited);
            return;
        }
        fetch.release_chunk(page.page);
        let file = fetch.file;
        let outcome = self
            .blobs
            .put_manifest_page(file, page.page, page.page_count, page.bytes)
            .await;
        let Some(fetch) = self.fetches.get_mut(&file_id) else {
            return;
        };
        match outcome {
            Ok(ManifestOutcome::Missing(pages)) => {
                fetch.suppliers.insert(peer);
                fetch.missing = pages.into_iter().collect();
            }
            Ok(ManifestOutcome::Complete) => {
                tracing::debug!(file = %file_id, "manifest assembled");
                let state = match self.blobs.begin(file_id, file.manifest_hash).await {
                    Ok(missing) => {
                        if let Some(fetch) = self.fetches.get_mut(&file_id) {
                            fetch.enter_chunks(missing);
                        }
                        return;
                    }
                    Err(e) => FetchState::Failed(e.to_string()),
                };
                if let Some(fetch) = self.fetches.get_mut(&file_id) {
                    fetch.state = state.clone();
                }
                self.emit(file_id, state);
            }
            Ok(ManifestOutcome::Mismatch) => {
                FileCounters::inc(&self.counters.manifests_rejected);
                fetch.suppliers.insert(peer);
                let suppliers = std::mem::take(&mut fetch.suppliers);
                tracing::warn!(file = %file_id, ?suppliers, "an assembled manifest does not match the file message: its suppliers are dropped from this download");
                for supplier in &suppliers {
                    fetch.release_peer(supplier);
                    if let Some(s) = fetch.sources.get_mut(supplier) {
                        s.dropped = true;
                    }
                }
                match self.blobs.begin_manifest(file).await {
                    Ok(ManifestOutcome::Missing(pages)) => {
                        if let Some(fetch) = self.fetches.get_mut(&file_id) {
                            fetch.missing = pages.into_iter().collect();
                        }
                    }
                    // Cannot be: the manifest was refused, and an empty file has no
                    // page to mismatch. Whatever it is, the next page decides.
                    Ok(other) => {
                        tracing::warn!(file = %file_id, ?other, "unexpected manifest state after a mismatch");
                    }
                    Err(e) => {
                        tracing::warn!(file = %file_id, "cannot begin the manifest again: {e}");
                    }
                }
            }
            Ok(ManifestOutcome::BadPage) => {
                // Not a page of this manifest (another page size?): this peer cannot
                // help with the manifest, but may still have chunks.
                tracing::debug!(%peer, file = %file_id, "a manifest page that does not fit");
                fetch.release_peer(&peer);
                if let Some(s) = fetch.sources.get_mut(&peer) {
                    s.no_manifest = true;
                }
            }
            Err(e) => {
                // The page stays missing and is asked again.
                tracing::warn!(file = %file_id, "cannot take a manifest page: {e}");
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
        let phase = fetch.phase;
        if none.reason == NoneReason::Withdrawn
            || (phase == Phase::Manifest
                && matches!(none.reason, NoneReason::Absent | NoneReason::OtherManifest))
        {
            fetch.release_peer(&peer);
        }
        let Some(source) = fetch.sources.get_mut(&peer) else {
            return;
        };
        match (none.reason, phase) {
            (NoneReason::Busy, _) => source.resume_at = Some(Instant::now() + BUSY_BACKOFF),
            // Nothing of it from there until it is offered again: asked what it has
            // after `WITHDRAWN_RECHECK` (a query's timeout is as long).
            (NoneReason::Withdrawn, _) => {
                let now = Instant::now();
                source.withdrawn_at = Some(now);
                source.have = None;
                source.asked_at = Some(now);
            }
            // Another member has them: not asked of a whole-file holder for a moment,
            // and the members are asked at once what they have now.
            (NoneReason::Elsewhere, _) => {
                let until = Instant::now() + ELSEWHERE_BACKOFF;
                for index in none.ranges.iter().flat_map(ChunkRange::indices) {
                    fetch.elsewhere.insert(index, until);
                }
                for s in fetch.sources.values_mut() {
                    if matches!(s.have, Some(SourceHave::Some(_))) {
                        s.asked_at = None;
                    }
                }
            }
            // No manifest there (or not this one): asked again once its link is back.
            (NoneReason::Absent | NoneReason::OtherManifest, Phase::Manifest) => {
                source.no_manifest = true;
            }
            (NoneReason::Absent | NoneReason::OtherManifest, Phase::Chunks)
                if none.ranges.is_empty() =>
            {
                source.have = Some(SourceHave::Some(Vec::new()));
            }
            // Some chunks it said it had are gone: ask it again what it has.
            (NoneReason::Absent | NoneReason::OtherManifest, Phase::Chunks) => {
                source.have = None;
                source.asked_at = Some(Instant::now());
            }
        }
    }

    /// At debug level, once a tick: every active download's view of its sources.
    fn trace_downloads(&self) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let now = Instant::now();
        for (file_id, fetch) in self.fetches.iter().filter(|(_, f)| f.is_active()) {
            let sources: Vec<String> = fetch
                .sources
                .iter()
                .map(|(peer, s)| {
                    let have = match &s.have {
                        None => "?".to_string(),
                        Some(SourceHave::Complete) => "all".to_string(),
                        Some(SourceHave::Some(r)) => format!("{} ranges", r.len()),
                    };
                    format!(
                        "{peer}: have {have}, {} out, linked {}, dropped {}, resting {}",
                        s.outstanding,
                        self.links.is_linked(peer),
                        s.dropped,
                        s.resume_at.is_some_and(|at| at > now)
                    )
                })
                .collect();
            tracing::debug!(file = %file_id, phase = ?fetch.phase, missing = fetch.missing.len(),
                in_flight = fetch.in_flight.len(), ?sources, "download");
        }
    }

    fn expire_requests(&mut self) {
        let now = Instant::now();
        self.seeded
            .retain(|_, (_, at)| now.duration_since(*at) < SEED_MEMORY);
        for fetch in self.fetches.values_mut() {
            fetch.elsewhere.retain(|_, until| now < *until);
        }
        for fetch in self.fetches.values_mut() {
            let late: Vec<u32> = fetch
                .in_flight
                .iter()
                .filter(|(_, (_, at))| now.duration_since(*at) >= REQUEST_TIMEOUT)
                .map(|(i, _)| *i)
                .collect();
            for index in late {
                // Asked of another peer now: the silent one is left alone a moment,
                // or it would win the tie for the same request again.
                if let Some((peer, _)) = fetch.in_flight.get(&index).cloned() {
                    if let Some(s) = fetch.sources.get_mut(&peer) {
                        s.resume_at = Some(now + BUSY_BACKOFF);
                    }
                }
                fetch.release_chunk(index);
            }
        }
    }

    /// When the next throttled progress event is due, if any is pending.
    fn progress_wake(&self) -> Option<Instant> {
        self.fetches
            .values()
            .filter(|f| f.progress_due && f.is_active())
            .map(|f| {
                f.progress_at
                    .map_or_else(Instant::now, |at| at + PROGRESS_INTERVAL)
            })
            .min()
    }

    /// Dials the unlinked candidates of active downloads whose address discovery
    /// knows, each at most once per [`DIAL_INTERVAL`]. Their `LinkEvent::Up` makes the
    /// downloads ask them.
    fn dial_candidates(&mut self, now: Instant) {
        self.dialed
            .retain(|_, at| now.duration_since(*at) < DIAL_INTERVAL);
        let wanted: BTreeSet<NodeId> = self
            .fetches
            .values()
            .filter(|f| f.is_active())
            .flat_map(|f| f.sources.iter())
            .filter(|(peer, s)| !s.dropped && !self.dialed.contains_key(*peer))
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in wanted {
            if self.links.is_linked(&peer) {
                continue;
            }
            let Some(addr) = self.addresses.get(&peer) else {
                continue;
            };
            tracing::debug!(%peer, %addr, "dialling a file source");
            self.links.connect(&peer, addr);
            FileCounters::inc(&self.counters.dials);
            self.dialed.insert(peer, now);
        }
    }

    /// Plans every active download's requests, sends them, finishes downloads whose
    /// chunks are all in, and reports state changes and progress.
    async fn pump(&mut self) {
        let now = Instant::now();
        self.dial_candidates(now);
        let links = Arc::clone(&self.links);
        let is_linked = move |peer: &NodeId| links.is_linked(peer);
        let mut finished = Vec::new();
        let mut changed = Vec::new();
        let mut sends = Vec::new();
        let mut progress = Vec::new();
        for (file_id, fetch) in &mut self.fetches {
            if !fetch.is_active() {
                continue;
            }
            if fetch.progress_due
                && fetch
                    .progress_at
                    .is_none_or(|at| now.duration_since(at) >= PROGRESS_INTERVAL)
            {
                fetch.progress_due = false;
                fetch.progress_at = Some(now);
                progress.push(FileEvent::Progress {
                    file_id: *file_id,
                    missing: u32::try_from(fetch.missing.len()).unwrap_or(u32::MAX),
                    chunk_count: fetch.chunk_count,
                    fetched_bytes: fetch.fetched_bytes,
                });
            }
            if fetch.phase == Phase::Chunks
                && fetch.missing.is_empty()
                && fetch.in_flight.is_empty()
            {
                finished.push(*file_id);
                continue;
            }
            if fetch
                .stalled
                .as_ref()
                .is_some_and(|(until, _)| now >= *until)
            {
                fetch.stalled = None;
            }
            let state = match &fetch.stalled {
                Some((_, reason)) => FetchState::Stalled(reason.clone()),
                None => {
                    for (peer, want) in fetch.plan(*file_id, now, &is_linked) {
                        sends.push((peer, *file_id, want));
                    }
                    fetch.activity(&is_linked)
                }
            };
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
        for event in progress {
            let _ = self.events.send(event);
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

/// The answer to "which chunks do you have?" for what this node holds of `file_id`.
fn have_of(file_id: FileId, chunks: HeldChunks) -> FileHave {
    match chunks {
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
    }
}
