//! One link: the WebSocket upgrade and Noise handshake on both sides, then two tasks
//! on the split socket — a writer that seals outgoing frames from three lanes (control,
//! then bulk, then file content) and pings, and a reader that opens incoming frames — joined by a
//! supervisor that ends both when either ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api_types::NodeId;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{
    websocket_config, CLOSE_GRACE, CONTROL_QUEUE, FILE_QUEUE, LINK_PATH, LINK_QUEUE,
    MAX_BAD_MESSAGES_IN_A_ROW,
};
use super::frame::{Frame, Lane};
use super::identity::{IdentityChange, IdentityStatement, NodeKeys, PeerKeys};
use super::noise::{Handshake, NoiseError, Opener, RemoteIdentity, Sealer, Session};
use super::stats::Counters;
use crate::secret::SharedSecret;

pub(crate) type Ws = WebSocketStream<TcpStream>;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("{0}")]
    Noise(#[from] NoiseError),
    #[error("connection closed during the handshake")]
    Closed,
    #[error("unexpected message during the handshake")]
    Unexpected,
    #[error("the peer is {got}, not {expected}")]
    WrongPeer { expected: String, got: String },
    #[error("the peer's node id is not valid")]
    BadNodeId,
    #[error("the peer refused the link: {0}")]
    Refused(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

async fn next_binary<S>(ws: &mut WebSocketStream<S>) -> Result<Vec<u8>, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => return Err(LinkError::Closed),
            Some(Ok(_)) => return Err(LinkError::Unexpected),
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

fn remote_node_id(remote: &RemoteIdentity) -> Result<NodeId, LinkError> {
    remote
        .hello
        .node_id
        .parse()
        .map_err(|_| LinkError::BadNodeId)
}

/// What the listener side learned from a finished handshake.
pub(crate) struct Accepted {
    pub ws: Ws,
    pub session: Session,
    /// The peer's id, proven: its keys derive it (checked by the handshake).
    pub peer: NodeId,
    pub keys: PeerKeys,
    /// The dialler only checks who answers here (twin detection): no link.
    pub probe: bool,
    /// Earlier ids it announced, their statements verified (old keys not yet judged).
    pub changes: Vec<IdentityChange>,
}

/// The path of link version 1 (before XXpsk0), refused with a reason.
const OLD_LINK_PATH: &str = "/lanchat/link/v1";

/// The listener side up to a finished Noise handshake. The caller then checks the peer
/// (blocks, twins) and sends `Ready` or a `Close`.
pub(crate) async fn accept(
    tcp: TcpStream,
    keys: &NodeKeys,
    secret: &SharedSecret,
    local: &NodeId,
    previous: &[IdentityStatement],
) -> Result<Accepted, LinkError> {
    // The signature is tungstenite's callback type; its error is its HTTP response.
    #[allow(clippy::result_large_err)]
    let check_path = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let path = request.uri().path();
        if path == LINK_PATH {
            Ok(response)
        } else {
            // An older node (link v1: XXpsk3, HMAC-derived PSK) is told why in the body.
            let why = if path == OLD_LINK_PATH {
                "lanchat link v1 is not spoken here (this node speaks v2): upgrade lanchat"
            } else {
                "not a lanchat link"
            };
            let mut refusal = ErrorResponse::new(Some(why.into()));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            Err(refusal)
        }
    };
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, check_path, Some(websocket_config()))
            .await?;
    let mut hs = Handshake::responder(keys, secret, local.as_str())?.with_previous(previous);
    hs.read(&next_binary(&mut ws).await?)?;
    ws.send(Message::Binary(hs.write()?.into())).await?;
    hs.read(&next_binary(&mut ws).await?)?;
    let (session, remote) = hs.finish()?;
    let peer = remote_node_id(&remote)?;
    Ok(Accepted {
        ws,
        session,
        peer,
        keys: remote.keys,
        probe: remote.hello.probe,
        changes: remote.identity_changes(),
    })
}

/// Who holds the keys at `addr`: dials, runs the handshake as a prober (the listener
/// makes no link of it) and returns the id the answering node proved. It proves its
/// keys in message 2, so nothing after our message 3 is awaited.
pub(crate) async fn probe(
    addr: SocketAddr,
    keys: &NodeKeys,
    secret: &SharedSecret,
    local: &NodeId,
) -> Result<(NodeId, PeerKeys), LinkError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{addr}{LINK_PATH}");
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, tcp, Some(websocket_config())).await?;
    let mut hs = Handshake::prober(keys, secret, local.as_str())?;
    ws.send(Message::Binary(hs.write()?.into())).await?;
    hs.read(&next_binary(&mut ws).await?)?;
    ws.send(Message::Binary(hs.write()?.into())).await?;
    let (_, remote) = hs.finish()?;
    let peer = remote_node_id(&remote)?;
    let _ = ws.close(None).await;
    Ok((peer, remote.keys))
}

/// The dialling side, up to the responder's `Ready`: only then has the responder proved
/// it knows the secret (it could not decrypt message 3 otherwise).
pub(crate) async fn dial(
    addr: SocketAddr,
    expected: &NodeId,
    keys: &NodeKeys,
    secret: &SharedSecret,
    local: &NodeId,
    previous: &[IdentityStatement],
) -> Result<(Ws, Session, PeerKeys, Vec<IdentityChange>), LinkError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{addr}{LINK_PATH}");
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, tcp, Some(websocket_config())).await?;
    let mut hs = Handshake::initiator(keys, secret, local.as_str())?.with_previous(previous);
    ws.send(Message::Binary(hs.write()?.into())).await?;
    hs.read(&next_binary(&mut ws).await?)?;
    ws.send(Message::Binary(hs.write()?.into())).await?;
    let (mut session, remote) = hs.finish()?;
    let peer = remote_node_id(&remote)?;
    if &peer != expected {
        return Err(LinkError::WrongPeer {
            expected: expected.to_string(),
            got: peer.to_string(),
        });
    }
    loop {
        let message = next_binary(&mut ws).await?;
        let Some(bytes) = session.open(&message)? else {
            continue;
        };
        return match Frame::decode(&bytes) {
            Ok(Frame::Ready) => Ok((ws, session, remote.keys, remote.identity_changes())),
            Ok(Frame::Close(c)) => Err(LinkError::Refused(c.reason)),
            _ => Err(LinkError::Unexpected),
        };
    }
}

/// Seals and sends one frame (possibly several WebSocket messages) on a whole
/// WebSocket, before the link is split (handshake answers and refusals).
pub(crate) async fn send_frame(
    ws: &mut Ws,
    session: &mut Session,
    frame: &Frame,
) -> Result<(), LinkError> {
    let parts = session.seal(&frame.encode())?;
    write_parts(ws, parts).await
}

async fn write_frame(
    sink: &mut WsSink,
    sealer: &mut Sealer,
    frame: &Frame,
) -> Result<(), LinkError> {
    let parts = sealer.seal(&frame.encode())?;
    write_parts(sink, parts).await
}

/// Feeds all parts of one frame and flushes after the last, so a frame's parts go out
/// back to back (the receiver drops a frame whose parts are interleaved with others).
async fn write_parts<S>(sink: &mut S, parts: Vec<Vec<u8>>) -> Result<(), LinkError>
where
    S: Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.into_iter().enumerate() {
        if i == last {
            sink.send(Message::Binary(part.into())).await?;
        } else {
            sink.feed(Message::Binary(part.into())).await?;
        }
    }
    Ok(())
}

/// Inbound frames per link: a burst of 4096, refilled at 2048/s. Far above a person
/// typing or a backlog being flushed (the sender's queue holds 256), it keeps one peer
/// from monopolising the node's delivery: a faster peer is slowed (its reader waits, so
/// TCP pushes back), not cut off.
const INBOUND_BURST: f64 = 4096.0;
const INBOUND_PER_SEC: f64 = 2048.0;
/// Inbound bytes per link (decrypted frames): a burst of 32 MiB, then 48 MiB/s, about
/// 400 Mbit/s: a 1 Gbit/s LAN shared with other peers and other traffic is never the
/// limit for one honest peer, while one peer alone cannot keep the node's delivery and
/// disk busy at 2048 frames × 64 KiB a second.
const INBOUND_BYTES_BURST: f64 = 32.0 * 1024.0 * 1024.0;
const INBOUND_BYTES_PER_SEC: f64 = 48.0 * 1024.0 * 1024.0;
/// Inbound file content per link (chunks and manifest pages, the files lane): a burst of
/// 64 MiB, then 768 MiB/s, about 6 Gbit/s, and a burst of 4096 frames, then 8192/s. File
/// content has budgets of its own because the ones above would make them the
/// bottleneck of every transfer (they did: 48 MiB/s, then 256 MiB/s and 2048 frames/s
/// of 128 KiB chunks, both 268 MB/s, whatever the network and the disk), and because
/// their job is done another way: this node stores only chunks it asked for (8 in
/// flight per download) and drops the rest (`chunks_unsolicited`), so a peer cannot
/// keep the disk or the delivery busy. What is left to bound is how fast one peer can
/// make the node decrypt and look at frames: about half a core at these rates.
const INBOUND_FILE_BYTES_BURST: f64 = 64.0 * 1024.0 * 1024.0;
const INBOUND_FILE_BYTES_PER_SEC: f64 = 768.0 * 1024.0 * 1024.0;
const INBOUND_FILE_FRAMES_BURST: f64 = 4096.0;
const INBOUND_FILE_FRAMES_PER_SEC: f64 = 8192.0;

/// One token bucket that may go into debt: the debt is how long to wait.
struct Pace {
    tokens: f64,
    burst: f64,
    per_sec: f64,
}

impl Pace {
    fn new(burst: f64, per_sec: f64) -> Self {
        Pace {
            tokens: burst,
            burst,
            per_sec,
        }
    }

    fn take(&mut self, amount: f64, elapsed_secs: f64) -> Duration {
        self.tokens = (self.tokens + elapsed_secs * self.per_sec).min(self.burst) - amount;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

struct FrameBudget {
    frames: Pace,
    bytes: Pace,
    file_frames: Pace,
    file_bytes: Pace,
    at: Instant,
}

impl FrameBudget {
    fn new() -> Self {
        FrameBudget {
            frames: Pace::new(INBOUND_BURST, INBOUND_PER_SEC),
            bytes: Pace::new(INBOUND_BYTES_BURST, INBOUND_BYTES_PER_SEC),
            file_frames: Pace::new(INBOUND_FILE_FRAMES_BURST, INBOUND_FILE_FRAMES_PER_SEC),
            file_bytes: Pace::new(INBOUND_FILE_BYTES_BURST, INBOUND_FILE_BYTES_PER_SEC),
            at: Instant::now(),
        }
    }

    /// Takes one frame of `len` bytes that travelled in `lane`; how long to wait first
    /// when that lane's frame or bytes budget is spent.
    fn take(&mut self, len: usize, lane: Lane) -> Duration {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        // Every budget refills all the time, whichever lane this frame is in.
        let (spent, other) = match lane {
            Lane::Files => (
                [&mut self.file_frames, &mut self.file_bytes],
                [&mut self.frames, &mut self.bytes],
            ),
            Lane::Control | Lane::Bulk => (
                [&mut self.frames, &mut self.bytes],
                [&mut self.file_frames, &mut self.file_bytes],
            ),
        };
        for pace in other {
            pace.take(0.0, elapsed);
        }
        let [frames, bytes] = spent;
        let frames = frames.take(1.0, elapsed);
        frames.max(bytes.take(len as f64, elapsed))
    }
}

/// Why a running link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEnd {
    /// Closed on purpose here (block, settings change, duplicate link, shutdown).
    Local(String),
    /// The peer sent `Close` or closed the WebSocket.
    Remote(String),
    /// Nothing heard for `dead_after`.
    Dead,
    /// I/O or protocol failure.
    Failed(String),
}

/// The sending ends of a link's three outgoing queues (see [`Lane`]).
#[derive(Clone)]
pub(crate) struct Lanes {
    control: mpsc::Sender<Frame>,
    bulk: mpsc::Sender<Frame>,
    files: mpsc::Sender<Frame>,
}

/// The writer's ends of the three queues.
pub(crate) struct LaneReceivers {
    control: mpsc::Receiver<Frame>,
    bulk: mpsc::Receiver<Frame>,
    files: mpsc::Receiver<Frame>,
}

pub(crate) fn lanes() -> (Lanes, LaneReceivers) {
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (bulk_tx, bulk_rx) = mpsc::channel(LINK_QUEUE);
    let (files_tx, files_rx) = mpsc::channel(FILE_QUEUE);
    (
        Lanes {
            control: control_tx,
            bulk: bulk_tx,
            files: files_tx,
        },
        LaneReceivers {
            control: control_rx,
            bulk: bulk_rx,
            files: files_rx,
        },
    )
}

impl Lanes {
    /// The queue a frame of this kind waits in.
    pub(crate) fn for_frame(&self, frame: &Frame) -> &mpsc::Sender<Frame> {
        match frame.lane() {
            Lane::Control => &self.control,
            Lane::Bulk => &self.bulk,
            Lane::Files => &self.files,
        }
    }
}

pub(crate) struct Running {
    pub peer: NodeId,
    pub keys: PeerKeys,
    pub outgoing: LaneReceivers,
    pub incoming: mpsc::Sender<super::LinkEvent>,
    /// Cancelled by the manager: close the link (and tell the peer).
    pub cancel: CancellationToken,
    pub keepalive: Duration,
    pub dead_after: Duration,
    pub counters: Arc<Counters>,
    /// What diagnostics read of this link (its round-trip time, from the keepalives).
    pub health: Arc<super::health::LinkHealth>,
    /// The transport's tracker: the link's reader and writer are its tasks, so the
    /// transport's shutdown waits for them as well as for this one.
    pub tasks: TaskTracker,
}

type WsSink = SplitSink<Ws, Message>;
type WsSource = SplitStream<Ws>;

/// The writer's socket half and cipher, handed back when it stops between frames so
/// the supervisor can still say goodbye on it.
struct WriteHalf {
    sink: WsSink,
    sealer: Sealer,
}

struct WriterDone {
    /// Why the link should end, if the writer is the one that decided.
    end: Option<LinkEnd>,
    /// `None` when the socket failed or the writer was stopped in the middle of a frame
    /// (another message on it would be glued to the cut-off frame).
    half: Option<WriteHalf>,
}

/// Runs an established link until it ends: spawns its writer and reader, waits for the
/// first to stop, stops the other, waits for it too, then (for a local close) tells the
/// peer why. Neither half ever waits on the other: a slow socket write does not delay
/// reading, and the inbound throttle or a busy delivery worker does not delay acks,
/// rejects and pings.
pub(crate) async fn run(ws: Ws, session: Session, link: Running) -> LinkEnd {
    let (sink, source) = ws.split();
    let (sealer, opener) = session.split();
    // One half stopping stops the other; the manager's token stops both.
    let stop = link.cancel.child_token();
    let mut writer = link.tasks.spawn(write_loop(
        WriteHalf { sink, sealer },
        link.outgoing,
        stop.clone(),
        link.keepalive,
        Arc::clone(&link.counters),
        Arc::clone(&link.health),
    ));
    let mut reader = link.tasks.spawn(read_loop(
        Reader {
            source,
            opener,
            peer: link.peer,
            keys: link.keys,
            incoming: link.incoming,
            dead_after: link.dead_after,
            counters: link.counters,
            health: link.health,
        },
        stop.clone(),
    ));
    let (end, half) = tokio::select! {
        done = &mut writer => {
            stop.cancel();
            let done = writer_outcome(done);
            let read = reader_outcome(reader.await);
            (done.end.or(read), done.half)
        }
        read = &mut reader => {
            stop.cancel();
            let read = reader_outcome(read);
            let done = writer_outcome(writer.await);
            (read.or(done.end), done.half)
        }
    };
    let end = end.unwrap_or_else(|| LinkEnd::Local("closed".into()));
    if let (LinkEnd::Local(reason), Some(mut half)) = (&end, half) {
        // Best effort: tell the peer why, so it does not redial into a block at once.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            let _ = write_frame(&mut half.sink, &mut half.sealer, &Frame::close(reason)).await;
            let _ = half.sink.close().await;
        })
        .await;
    }
    end
}

fn writer_outcome(joined: Result<WriterDone, JoinError>) -> WriterDone {
    joined.unwrap_or_else(|e| WriterDone {
        end: Some(LinkEnd::Failed(format!("the link's writer failed: {e}"))),
        half: None,
    })
}

fn reader_outcome(joined: Result<Option<LinkEnd>, JoinError>) -> Option<LinkEnd> {
    joined.unwrap_or_else(|e| Some(LinkEnd::Failed(format!("the link's reader failed: {e}"))))
}

/// What the writer does next.
enum Outgoing {
    Frame(Frame),
    Ping,
}

/// Sends what the lanes hold — control, then envelopes, then file content — and a
/// WebSocket ping every `keepalive`.
async fn write_loop(
    mut half: WriteHalf,
    mut lanes: LaneReceivers,
    stop: CancellationToken,
    keepalive: Duration,
    counters: Arc<Counters>,
    health: Arc<super::health::LinkHealth>,
) -> WriterDone {
    // The first tick is at once: the keepalive pings also time the round trip, and
    // diagnostics show it before the first interval has passed.
    let mut tick = tokio::time::interval(keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Biased: checked in this order every time, so a queued ack or ping goes out
        // before the next queued envelope however many wait. Control frames cannot
        // starve envelopes for long: each answers an envelope the peer sent. File
        // content goes only when no envelope waits, so a message queued during a
        // transfer waits for the one chunk being written, not for the queued ones;
        // envelopes cannot starve files for good either: the outbox sends what the
        // peer acks, and the lane holds 256.
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => return WriterDone { end: None, half: Some(half) },
            frame = lanes.control.recv() => match frame {
                Some(frame) => Outgoing::Frame(frame),
                None => return WriterDone { end: Some(LinkEnd::Local("closed".into())), half: Some(half) },
            },
            _ = tick.tick() => Outgoing::Ping,
            frame = lanes.bulk.recv() => match frame {
                Some(frame) => Outgoing::Frame(frame),
                None => return WriterDone { end: Some(LinkEnd::Local("closed".into())), half: Some(half) },
            },
            frame = lanes.files.recv() => match frame {
                Some(frame) => Outgoing::Frame(frame),
                None => return WriterDone { end: Some(LinkEnd::Local("closed".into())), half: Some(half) },
            },
        };
        let written = match &next {
            Outgoing::Frame(Frame::Close(c)) => {
                return WriterDone {
                    end: Some(LinkEnd::Local(c.reason.clone())),
                    half: Some(half),
                }
            }
            Outgoing::Frame(frame) => {
                tokio::select! {
                    r = write_frame(&mut half.sink, &mut half.sealer, frame) => r,
                    // A peer that stopped reading must not hold the link (or the
                    // transport's shutdown) open.
                    _ = stop.cancelled() => return WriterDone { end: None, half: None },
                }
            }
            Outgoing::Ping => tokio::select! {
                r = half.sink.send(Message::Ping(Vec::new().into())) => r.map_err(LinkError::from),
                _ = stop.cancelled() => return WriterDone { end: None, half: None },
            },
        };
        match written {
            Ok(()) if matches!(next, Outgoing::Frame(_)) => counters.frames_sent.inc(),
            Ok(()) => health.ping_sent(),
            Err(e) => {
                return WriterDone {
                    end: Some(LinkEnd::Failed(e.to_string())),
                    half: None,
                }
            }
        }
    }
}

struct Reader {
    source: WsSource,
    opener: Opener,
    peer: NodeId,
    keys: PeerKeys,
    incoming: mpsc::Sender<super::LinkEvent>,
    dead_after: Duration,
    counters: Arc<Counters>,
    health: Arc<super::health::LinkHealth>,
}

/// Opens incoming messages and hands their frames to the transport's owner, paced by
/// the inbound budget. `None` when stopped from outside.
async fn read_loop(mut r: Reader, stop: CancellationToken) -> Option<LinkEnd> {
    let mut bad_in_a_row = 0u32;
    let mut budget = FrameBudget::new();
    loop {
        // Anything heard (a pong, the peer's own ping, a frame) restarts the wait; time
        // spent on the throttle or on a busy delivery worker is not silence.
        let message = tokio::select! {
            _ = stop.cancelled() => return None,
            heard = tokio::time::timeout(r.dead_after, r.source.next()) => match heard {
                Ok(message) => message,
                Err(_) => return Some(LinkEnd::Dead),
            },
        };
        let bytes = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Pong(_))) => {
                r.health.pong_received();
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Text(_))) => {
                return Some(LinkEnd::Failed("text message on a link".into()))
            }
            Some(Ok(Message::Close(_))) | None => {
                return Some(LinkEnd::Remote("connection closed".into()))
            }
            Some(Err(e)) => return Some(LinkEnd::Failed(e.to_string())),
        };
        let plain = match r.opener.open(&bytes) {
            Ok(None) => continue,
            Ok(Some(plain)) => plain,
            Err(_) => {
                r.counters.frames_undecryptable.inc();
                bad_in_a_row += 1;
                if bad_in_a_row >= MAX_BAD_MESSAGES_IN_A_ROW {
                    return Some(LinkEnd::Failed("too many undecryptable messages".into()));
                }
                continue;
            }
        };
        bad_in_a_row = 0;
        let frame = match Frame::decode(&plain) {
            Ok(Frame::Close(c)) => return Some(LinkEnd::Remote(c.reason)),
            Ok(Frame::Ready) => continue,
            Ok(frame) => frame,
            Err(e) => {
                r.counters.frames_malformed.inc();
                tracing::debug!(peer = %r.peer, "malformed frame: {e}");
                continue;
            }
        };
        r.counters.frames_received.inc();
        let wait = budget.take(plain.len(), frame.lane());
        if !wait.is_zero() {
            r.counters.frames_throttled.inc();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return None,
            }
        }
        let event = super::LinkEvent::Frame {
            peer: r.peer.clone(),
            keys: r.keys,
            frame,
        };
        // Awaited: a busy delivery worker slows this peer's reading (TCP pushes back),
        // never this link's writer.
        tokio::select! {
            sent = r.incoming.send(event) => {
                if sent.is_err() {
                    return Some(LinkEnd::Local("transport stopped".into()));
                }
            }
            _ = stop.cancelled() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::frame::Ack;
    use crate::transport::LinkEvent;
    use tokio::net::TcpListener;

    /// A failure bound for waits that should end at once, never a measurement.
    const BOUND: Duration = Duration::from_secs(20);
    /// Envelopes of 64 KiB: two Noise messages each, so the socket fills after a few
    /// hundred; a thousand more than the lane holds means the socket never filled.
    const BULK_BYTES: usize = 64 * 1024;
    const MAX_PUSHED: usize = LINK_QUEUE + 4096;

    fn numbered(index: usize) -> Frame {
        let mut body = vec![0u8; BULK_BYTES];
        body[..8].copy_from_slice(&(index as u64).to_be_bytes());
        Frame::Envelope(body)
    }

    fn index_of(body: &[u8]) -> usize {
        usize::try_from(u64::from_be_bytes(body[..8].try_into().unwrap())).unwrap()
    }

    /// The side under test (the dialler, running [`run`]) and a raw peer (the
    /// listener: its WebSocket and session, read or not as the test likes).
    /// How the link task ended (within `BOUND`).
    async fn link_end(link: tokio::task::JoinHandle<LinkEnd>) -> LinkEnd {
        tokio::time::timeout(BOUND, link).await.unwrap().unwrap()
    }

    struct Pair {
        link: tokio::task::JoinHandle<LinkEnd>,
        lanes: Lanes,
        events: mpsc::Receiver<LinkEvent>,
        cancel: CancellationToken,
        tasks: TaskTracker,
        peer_ws: Ws,
        peer_session: Session,
    }

    async fn linked_pair() -> Pair {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a_keys, b_keys) = (NodeKeys::generate().unwrap(), NodeKeys::generate().unwrap());
        let (a_id, b_id) = (a_keys.public().node_id(), b_keys.public().node_id());
        let secret = crate::secret::derived_for_tests("s");
        let listening = async {
            let (tcp, _) = listener.accept().await.unwrap();
            let accepted = accept(tcp, &b_keys, &secret, &b_id, &[]).await.unwrap();
            let (mut ws, mut session) = (accepted.ws, accepted.session);
            send_frame(&mut ws, &mut session, &Frame::Ready)
                .await
                .unwrap();
            (ws, session)
        };
        let dialling = dial(addr, &b_id, &a_keys, &secret, &a_id, &[]);
        let ((peer_ws, peer_session), dialled) = tokio::join!(listening, dialling);
        let (ws, session, keys, _) = dialled.unwrap();
        let (lanes, outgoing) = lanes();
        let (events_tx, events) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let running = Running {
            peer: b_id,
            health: Arc::new(crate::transport::health::LinkHealth::new(None, keys)),
            keys,
            outgoing,
            incoming: events_tx,
            cancel: cancel.clone(),
            // No pings and no death by silence in these tests: only what they send.
            keepalive: Duration::from_secs(3600),
            dead_after: Duration::from_secs(3600),
            counters: Arc::new(Counters::default()),
            tasks: tasks.clone(),
        };
        let link = tasks.spawn(run(ws, session, running));
        Pair {
            link,
            lanes,
            events,
            cancel,
            tasks,
            peer_ws,
            peer_session,
        }
    }

    /// With the peer not reading: queues numbered envelopes, letting the link's writer
    /// run after each, until the bulk lane is full. Returns how many were queued. More
    /// than the lane holds proves the writer took some and then stalled on the socket.
    async fn fill_until_the_writer_is_stuck(pair: &Pair) -> usize {
        for index in 0..MAX_PUSHED {
            match pair.lanes.bulk.try_send(numbered(index)) {
                Ok(()) => tokio::task::yield_now().await,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    assert!(index > LINK_QUEUE, "the writer never ran");
                    return index;
                }
                Err(e) => panic!("the link closed: {e}"),
            }
        }
        panic!("{MAX_PUSHED} envelopes of {BULK_BYTES} bytes never filled the socket");
    }

    async fn next_frame(ws: &mut Ws, session: &mut Session) -> Frame {
        loop {
            let message = tokio::time::timeout(BOUND, next_binary(ws))
                .await
                .expect("the link under test went quiet")
                .unwrap();
            if let Some(plain) = session.open(&message).unwrap() {
                return Frame::decode(&plain).unwrap();
            }
        }
    }

    // Current-thread runtime: the link's tasks run only when the test awaits, so what
    // the test reads from the lanes between awaits is exactly what the writer left.
    #[tokio::test]
    async fn an_ack_overtakes_queued_envelopes_and_reading_goes_on_while_writing_is_stuck() {
        let mut pair = linked_pair().await;
        let pushed = fill_until_the_writer_is_stuck(&pair).await;

        // Reading does not wait for the stuck writer: a frame from the peer arrives.
        send_frame(
            &mut pair.peer_ws,
            &mut pair.peer_session,
            &Frame::Envelope(b"from the peer".to_vec()),
        )
        .await
        .unwrap();
        let event = tokio::time::timeout(BOUND, pair.events.recv())
            .await
            .expect("the reader waited on the writer")
            .unwrap();
        assert!(
            matches!(event, LinkEvent::Frame { frame: Frame::Envelope(ref b), .. } if b == b"from the peer"),
            "{event:?}"
        );

        // Every envelope from `first_queued` on is still in the lane (nothing runs
        // between reading its length and queueing the ack): the ack comes after them in
        // time, and must go out before them.
        let in_lane = LINK_QUEUE - pair.lanes.bulk.capacity();
        assert!(
            in_lane > 0,
            "the writer emptied the lane without the peer reading"
        );
        let first_queued = pushed - in_lane;
        let ack = Frame::Ack(Ack {
            envelope_id: "the ack".into(),
            outcome: "applied".into(),
        });
        pair.lanes.control.try_send(ack.clone()).unwrap();

        // The peer reads (slowly, one frame at a time) until the last envelope.
        let mut ack_after = None;
        let mut seen = 0usize;
        loop {
            match next_frame(&mut pair.peer_ws, &mut pair.peer_session).await {
                Frame::Envelope(body) => {
                    let index = index_of(&body);
                    assert_eq!(index, seen, "envelopes out of order");
                    seen += 1;
                    if index + 1 == pushed {
                        break;
                    }
                }
                frame if frame == ack => ack_after = Some(seen),
                other => panic!("unexpected {other:?}"),
            }
        }
        let ack_after = ack_after.expect("the ack never arrived");
        assert!(
            ack_after <= first_queued,
            "the ack came after {ack_after} envelopes, but only {first_queued} had left the lane"
        );

        pair.cancel.cancel();
        let end = link_end(pair.link).await;
        assert_eq!(end, LinkEnd::Local("closed".into()));
        // The peer is told why.
        assert_eq!(
            next_frame(&mut pair.peer_ws, &mut pair.peer_session).await,
            Frame::close("closed")
        );
    }

    fn file_chunk(index: u32) -> Frame {
        Frame::File(crate::files::FileFrame::Chunk(
            crate::files::wire::FileChunk {
                file_id: crate::files::FileId([1; 32]),
                index,
                bytes: vec![0; 128 * 1024],
            },
        ))
    }

    // Current-thread runtime, as above: what the lanes hold between awaits is exact.
    #[tokio::test]
    async fn an_envelope_overtakes_queued_file_chunks() {
        let mut pair = linked_pair().await;
        assert_eq!(file_chunk(0).lane(), Lane::Files);
        // The peer does not read: chunks pile up until the writer is stuck and the
        // files lane is full.
        let mut pushed = 0u32;
        loop {
            match pair.lanes.files.try_send(file_chunk(pushed)) {
                Ok(()) => {
                    pushed += 1;
                    tokio::task::yield_now().await;
                }
                Err(mpsc::error::TrySendError::Full(_)) => break,
                Err(e) => panic!("the link closed: {e}"),
            }
            assert!(pushed < 10_000, "the socket never filled");
        }
        let in_lane = FILE_QUEUE - pair.lanes.files.capacity();
        assert!(in_lane > 0);
        let left_lane = pushed as usize - in_lane;
        let text = Frame::Envelope(b"a text message".to_vec());
        pair.lanes.bulk.try_send(text.clone()).unwrap();

        let mut chunks_before_text = None;
        let mut seen = 0usize;
        while seen < pushed as usize {
            match next_frame(&mut pair.peer_ws, &mut pair.peer_session).await {
                Frame::File(crate::files::FileFrame::Chunk(c)) => {
                    assert_eq!(c.index as usize, seen, "chunks out of order");
                    seen += 1;
                }
                frame if frame == text => chunks_before_text = Some(seen),
                other => panic!("unexpected {other:?}"),
            }
        }
        let before = chunks_before_text.expect("the envelope never arrived");
        assert!(
            before <= left_lane,
            "the envelope came after {before} chunks, but only {left_lane} had left the lane"
        );
        pair.cancel.cancel();
        link_end(pair.link).await;
    }

    #[tokio::test]
    async fn stopping_a_link_whose_peer_stopped_reading_joins_all_its_tasks() {
        let pair = linked_pair().await;
        fill_until_the_writer_is_stuck(&pair).await;
        // The supervisor, the writer (blocked in a socket write) and the reader.
        assert_eq!(pair.tasks.len(), 3);
        pair.cancel.cancel();
        let end = link_end(pair.link).await;
        assert_eq!(end, LinkEnd::Local("closed".into()));
        pair.tasks.close();
        tokio::time::timeout(BOUND, pair.tasks.wait())
            .await
            .expect("a link task outlived the stop");
        assert!(pair.tasks.is_empty());
    }

    #[tokio::test]
    async fn the_peer_closing_ends_the_link_as_remote_and_both_halves() {
        let mut pair = linked_pair().await;
        send_frame(
            &mut pair.peer_ws,
            &mut pair.peer_session,
            &Frame::close("blocked"),
        )
        .await
        .unwrap();
        let end = link_end(pair.link).await;
        assert_eq!(end, LinkEnd::Remote("blocked".into()));
        pair.tasks.close();
        tokio::time::timeout(BOUND, pair.tasks.wait())
            .await
            .unwrap();
        assert!(pair.tasks.is_empty());
    }

    #[tokio::test]
    async fn a_close_on_the_control_lane_goes_ahead_of_queued_envelopes() {
        let mut pair = linked_pair().await;
        for index in 0..LINK_QUEUE {
            pair.lanes.bulk.try_send(numbered(index)).unwrap();
        }
        pair.lanes
            .control
            .try_send(Frame::close("blocked"))
            .unwrap();
        let end = link_end(pair.link).await;
        assert_eq!(end, LinkEnd::Local("blocked".into()));
        assert_eq!(
            next_frame(&mut pair.peer_ws, &mut pair.peer_session).await,
            Frame::close("blocked")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_inbound_budget_allows_a_burst_then_paces() {
        let mut budget = FrameBudget::new();
        for _ in 0..4096 {
            assert_eq!(budget.take(100, Lane::Bulk), Duration::ZERO);
        }
        let wait = budget.take(100, Lane::Bulk);
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(1),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        // One second refills 2048 frames (less the one over budget).
        let free = (0..3000)
            .take_while(|_| budget.take(100, Lane::Bulk).is_zero())
            .count();
        assert_eq!(free, 2047);
    }

    #[tokio::test(start_paused = true)]
    async fn large_frames_are_paced_by_bytes() {
        let mut budget = FrameBudget::new();
        let big = 64 * 1024;
        // 32 MiB of burst is 512 frames of 64 KiB, far fewer than the frame burst.
        let free = (0..4096)
            .take_while(|_| budget.take(big, Lane::Bulk).is_zero())
            .count();
        assert_eq!(free, 512);
        tokio::time::advance(Duration::from_millis(250)).await;
        // A quarter of a second refills 12 MiB: 192 frames (less the one over budget).
        let free = (0..4096)
            .take_while(|_| budget.take(big, Lane::Bulk).is_zero())
            .count();
        assert_eq!(free, 191);
    }

    #[tokio::test(start_paused = true)]
    async fn file_content_has_its_own_bytes_budget() {
        let mut budget = FrameBudget::new();
        let chunk = 128 * 1024;
        // 64 MiB of burst is 512 chunks of 128 KiB.
        let free = (0..4096)
            .take_while(|_| budget.take(chunk, Lane::Files).is_zero())
            .count();
        assert_eq!(free, 512);
        // Envelopes still have all of theirs: 32 MiB is 512 of 64 KiB.
        let big = 64 * 1024;
        let free = (0..4096)
            .take_while(|_| budget.take(big, Lane::Bulk).is_zero())
            .count();
        assert_eq!(free, 512);
        tokio::time::advance(Duration::from_millis(250)).await;
        // A quarter of a second refills the whole burst of file content (512 chunks)
        // but only 12 MiB of envelopes.
        let free = (0..4096)
            .take_while(|_| budget.take(chunk, Lane::Files).is_zero())
            .count();
        assert_eq!(free, 512);
        let free = (0..4096)
            .take_while(|_| budget.take(big, Lane::Bulk).is_zero())
            .count();
        assert_eq!(free, 191);
        // A sustained transfer is held at 768 MiB/s: 6144 chunks of 128 KiB a second,
        // more than the envelopes' 2048 frames a second would allow.
        tokio::time::advance(Duration::from_secs(1)).await;
        let free = (0..10_000)
            .take_while(|_| budget.take(chunk, Lane::Files).is_zero())
            .count();
        assert_eq!(free, 512);
        let mut sent = 0;
        for _ in 0..40 {
            tokio::time::advance(Duration::from_millis(25)).await;
            sent += (0..10_000)
                .take_while(|_| budget.take(chunk, Lane::Files).is_zero())
                .count();
        }
        assert!((6000..=6144).contains(&sent), "{sent} chunks in a second");
    }

    #[tokio::test(start_paused = true)]
    async fn small_file_frames_are_paced_by_their_own_frame_budget() {
        let mut budget = FrameBudget::new();
        let free = (0..10_000)
            .take_while(|_| budget.take(10, Lane::Files).is_zero())
            .count();
        assert_eq!(free, 4096);
        // Envelopes are not slowed by them.
        let free = (0..10_000)
            .take_while(|_| budget.take(10, Lane::Bulk).is_zero())
            .count();
        assert_eq!(free, 4096);
        tokio::time::advance(Duration::from_secs(1)).await;
        let free = (0..20_000)
            .take_while(|_| budget.take(10, Lane::Files).is_zero())
            .count();
        assert_eq!(free, 4096);
    }
}
