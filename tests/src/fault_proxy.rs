//! A userspace WebSocket relay that puts faults between two nodes' LAN links: this
//! kernel has no `tc netem`, and loss alone (nftables) cannot duplicate, reorder or
//! delay.
//!
//! The proxy listens on `127.0.0.1:0`. For every connection it dials the upstream,
//! relays the HTTP upgrade request and response verbatim, then reads RFC 6455 frames in
//! both directions and forwards their bytes unchanged (client frames stay masked) —
//! except that each **data** frame (text, binary, continuation) may be dropped, sent
//! twice, held back to go after the next data frame (reordered), or delayed. Control
//! frames (ping, pong, close) are never dropped, duplicated or reordered; they keep
//! their place behind frames already queued (a close first releases a held frame, so
//! nothing is lost behind it).
//!
//! Faults are drawn from `StdRng` seeded per connection and direction from
//! `Faults::seed` (and the connection's number in accept order), so the same seed and
//! the same traffic give the same pattern. A held-back frame that no later data frame
//! releases goes out after `REORDER_HOLD` anyway, so a request/response exchange cannot
//! stall on it for good. Delays keep order: a frame is sent at
//! `max(arrival + delay, previous frame's send time)`, i.e. latency, not reordering.
//!
//! Memory is bounded: upgrade heads ≤ 16 KiB, frames ≤ `MAX_FRAME_BYTES`, ≤
//! `QUEUE_FRAMES` frames queued per direction (then the reader stops reading and TCP
//! pushes back). A stream that is not valid framing (reserved opcode, oversized or
//! fragmented control frame, 64-bit length with the top bit set, EOF inside a frame)
//! closes that connection and is counted as `malformed`.
//!
//! `partition(true)` refuses new connections (accepted and closed at once) and holds
//! the traffic of open ones (nothing is read or written) until `partition(false)`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

/// Largest upgrade request or response head relayed.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest frame relayed (header + payload); bigger means a broken or hostile stream.
pub const MAX_FRAME_BYTES: u64 = 16 * 1024 * 1024;
/// Frames queued per direction before the proxy stops reading from that side.
const QUEUE_FRAMES: usize = 256;
/// How long a reordered frame waits for a later data frame before it goes anyway.
pub const REORDER_HOLD: Duration = Duration::from_millis(500);

/// What happens to data frames. Probabilities are in `[0, 1]` (others are clamped);
/// `delay_ms` is an inclusive range of extra latency per data frame, `(0, 0)` for none.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    pub seed: u64,
    pub drop: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub delay_ms: (u64, u64),
}

impl Faults {
    /// A clean relay.
    pub fn none() -> Faults {
        Faults::default()
    }

    fn normalised(self) -> Faults {
        let p = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
        let (lo, hi) = self.delay_ms;
        Faults {
            seed: self.seed,
            drop: p(self.drop),
            duplicate: p(self.duplicate),
            reorder: p(self.reorder),
            delay_ms: (lo.min(hi), lo.max(hi)),
        }
    }
}

/// What the proxy has done so far (all directions, all connections).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Connections relayed (accepted while not partitioned).
    pub connections: u64,
    /// Connections refused during a partition.
    pub refused: u64,
    /// Data frames read.
    pub frames: u64,
    /// Control frames passed through.
    pub control_frames: u64,
    pub dropped: u64,
    /// Data frames sent twice.
    pub duplicated: u64,
    /// Data frames held back to go after a later one.
    pub reordered: u64,
    /// Data frames given extra latency.
    pub delayed: u64,
    /// Connections closed because their framing was broken.
    pub malformed: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    frames: AtomicU64,
    control_frames: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    delayed: AtomicU64,
    malformed: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

struct Shared {
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    partitioned: watch::Sender<bool>,
    counters: Counters,
}

/// The running relay. Stops on `shutdown().await`, or (without waiting) when dropped.
pub struct FaultProxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr, faults: Faults) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: watch::Sender::new(faults.normalised()),
            partitioned: watch::Sender::new(false),
            counters: Counters::default(),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop.clone()));
        Ok(FaultProxy {
            local_addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// Where nodes should connect instead of the upstream.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Applies from the next data frame on, on open connections too. A new seed
    /// reseeds every direction's generator.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.send_replace(faults.normalised());
    }

    pub fn faults(&self) -> Faults {
        *self.shared.faults.borrow()
    }

    /// `true`: refuse new connections and hold all traffic; `false`: let it flow again.
    pub fn partition(&self, on: bool) {
        self.shared.partitioned.send_replace(on);
    }

    pub fn counters(&self) -> FaultCounters {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultCounters {
            connections: get(&c.connections),
            refused: get(&c.refused),
            frames: get(&c.frames),
            control_frames: get(&c.control_frames),
            dropped: get(&c.dropped),
            duplicated: get(&c.duplicated),
            reordered: get(&c.reordered),
            delayed: get(&c.delayed),
            malformed: get(&c.malformed),
        }
    }

    /// Closes the listener and every relayed connection, and waits for them.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    let mut number: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    if *shared.partitioned.borrow() {
                        bump(&shared.counters.refused, 1);
                        drop(client);
                        continue;
                    }
                    bump(&shared.counters.connections, 1);
                    connections.spawn(relay(client, Arc::clone(&shared), number, stop.clone()));
                    number += 1;
                }
                // Out of descriptors and the like: pass, and try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Reads an HTTP head (through the blank line) into `buf`; returns its length. Bytes
/// after it that arrived in the same read stay in `buf`.
async fn read_head<R: AsyncRead + Unpin>(from: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(at + 4);
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP head too long",
            ));
        }
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `HTTP/1.1 101 …`: the upgrade went through and frames follow.
fn switched_protocols(head: &[u8]) -> bool {
    head.split(|b| *b == b'\r')
        .next()
        .and_then(|line| line.split(|b| *b == b' ').nth(1))
        .is_some_and(|code| code == b"101")
}

/// Relays one connection until both directions end, either breaks, or the proxy stops.
async fn relay(client: TcpStream, shared: Arc<Shared>, number: u64, proxy: CancellationToken) {
    // Either direction cancels `connection` to end the other; only the proxy's own
    // token may cut the relay short, so a broken stream is always seen (and counted).
    let connection = proxy.child_token();
    let result = tokio::select! {
        biased;
        r = relay_inner(client, &shared, number, connection.clone()) => r,
        _ = proxy.cancelled() => Ok(()),
    };
    if let Err(e) = result {
        if e.kind() == io::ErrorKind::InvalidData {
            bump(&shared.counters.malformed, 1);
        }
    }
    // Dropping the sockets closes both sides.
    connection.cancel();
}

async fn relay_inner(
    client: TcpStream,
    shared: &Arc<Shared>,
    number: u64,
    stop: CancellationToken,
) -> io::Result<()> {
    let server = TcpStream::connect(shared.upstream).await?;
    // Frames are forwarded one by one; Nagle would only add latency we did not ask for.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();

    let mut request = Vec::new();
    let head = read_head(&mut client_rx, &mut request).await?;
    server_tx.write_all(&request[..head]).await?;
    let early_client = request.split_off(head);
    let mut response = Vec::new();
    let head = read_head(&mut server_rx, &mut response).await?;
    client_tx.write_all(&response[..head]).await?;
    let early_server = response.split_off(head);

    if !switched_protocols(&response) {
        // Refused upgrade (401, 404, …): whatever follows is plain bytes.
        server_tx.write_all(&early_client).await?;
        client_tx.write_all(&early_server).await?;
        let up = async {
            tokio::io::copy(&mut client_rx, &mut server_tx).await?;
            server_tx.shutdown().await
        };
        let down = async {
            tokio::io::copy(&mut server_rx, &mut client_tx).await?;
            client_tx.shutdown().await
        };
        let (a, b) = tokio::join!(up, down);
        return a.and(b);
    }

    let up = direction(
        io::Cursor::new(early_client).chain(client_rx),
        server_tx,
        Arc::clone(shared),
        stream_seed_offset(number, 0),
        stop.clone(),
    );
    let down = direction(
        io::Cursor::new(early_server).chain(server_rx),
        client_tx,
        Arc::clone(shared),
        stream_seed_offset(number, 1),
        stop,
    );
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

/// Each direction of each connection draws from its own generator, so the pattern of
/// one stream does not depend on how the other one's frames interleave with it.
fn stream_seed_offset(connection: u64, direction: u64) -> u64 {
    connection
        .wrapping_mul(2)
        .wrapping_add(direction)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Close,
    Control,
}

#[derive(Debug, Clone)]
struct Frame {
    kind: Kind,
    /// The whole frame as it arrived: header, mask key, payload.
    bytes: Vec<u8>,
}

fn malformed(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// The next frame, `None` on a clean end of stream between frames.
async fn read_frame<R: AsyncRead + Unpin>(from: &mut R) -> io::Result<Option<Frame>> {
    let mut first = [0u8; 1];
    if from.read(&mut first).await? == 0 {
        return Ok(None);
    }
    let b0 = first[0];
    let b1 = from.read_u8().await.map_err(truncated)?;
    let mut bytes = vec![b0, b1];
    let fin = b0 & 0x80 != 0;
    let kind = match b0 & 0x0f {
        0..=2 => Kind::Data,
        8 => Kind::Close,
        9 | 10 => Kind::Control,
        _ => return Err(malformed("reserved opcode")),
    };
    let len = match b1 & 0x7f {
        126 => {
            let n = from.read_u16().await.map_err(truncated)?;
            bytes.extend_from_slice(&n.to_be_bytes());
            u64::from(n)
        }
        127 => {
            let n = from.read_u64().await.map_err(truncated)?;
            if n >> 63 != 0 {
                return Err(malformed("64-bit length with the top bit set"));
            }
            bytes.extend_from_slice(&n.to_be_bytes());
            n
        }
        n => u64::from(n),
    };
    if kind != Kind::Data && (!fin || len > 125) {
        return Err(malformed("fragmented or oversized control frame"));
    }
    if len > MAX_FRAME_BYTES {
        return Err(malformed("frame too large"));
    }
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let header = bytes.len();
    let len = usize::try_from(len).map_err(|_| malformed("frame too large"))?;
    bytes.resize(header + mask + len, 0);
    from.read_exact(&mut bytes[header..])
        .await
        .map_err(truncated)?;
    Ok(Some(Frame { kind, bytes }))
}

/// End of stream inside a frame is broken framing, not a clean close.
fn truncated(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        malformed("stream ended inside a frame")
    } else {
        e
    }
}

/// One direction: a reader task parses frames into a bounded queue; this loop decides
/// each data frame's fate and writes what is due, in order.
async fn direction<R, W>(
    from: R,
    mut to: W,
    shared: Arc<Shared>,
    seed_offset: u64,
    stop: CancellationToken,
) -> io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (tx, mut frames) = mpsc::channel::<Frame>(QUEUE_FRAMES);
    let reader_stop = stop.clone();
    let reader = tokio::spawn(async move {
        let mut from = BufReader::new(from);
        loop {
            let next = tokio::select! {
                next = read_frame(&mut from) => next,
                _ = reader_stop.cancelled() => return Ok(()),
            };
            match next? {
                Some(frame) => {
                    if tx.send(frame).await.is_err() {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            }
        }
    });

    let mut shaper = Shaper::new(&shared, seed_offset);
    let mut partitioned = shared.partitioned.subscribe();
    let mut input_open = true;
    let outcome: io::Result<()> = loop {
        if !input_open && shaper.is_empty() {
            break Ok(());
        }
        let held = *partitioned.borrow_and_update();
        let next_due = shaper.next_due();
        let release_at = shaper.hold_deadline();
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            changed = partitioned.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
            }
            frame = frames.recv(), if input_open && !held && shaper.has_room() => match frame {
                Some(frame) => shaper.accept(frame),
                None => {
                    input_open = false;
                    shaper.release_held();
                }
            },
            _ = sleep_until(next_due.unwrap_or_else(Instant::now)), if !held && next_due.is_some() => {
                if let Some(frame) = shaper.pop() {
                    if let Err(e) = to.write_all(&frame.bytes).await {
                        break Err(e);
                    }
                }
            }
            _ = sleep_until(release_at.unwrap_or_else(Instant::now)), if release_at.is_some() => {
                shaper.release_held();
            }
        }
    };
    // A clean end: pass the half-close on. Otherwise close the whole connection.
    match &outcome {
        Ok(()) if !stop.is_cancelled() => {
            let _ = to.shutdown().await;
        }
        _ => stop.cancel(),
    }
    // A reader waiting for room in the queue must see it closed, or it waits forever.
    drop(frames);
    let read = match reader.await {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(e)),
    };
    if let Err(e) = &read {
        if e.kind() == io::ErrorKind::InvalidData {
            stop.cancel();
        }
    }
    read.and(outcome)
}

/// The fault decisions of one direction and the frames waiting to go out.
struct Shaper {
    shared: Arc<Shared>,
    faults: watch::Receiver<Faults>,
    seed: u64,
    seed_offset: u64,
    rng: StdRng,
    /// In send order, with the time each may go.
    queue: VecDeque<(Instant, Frame)>,
    /// Copies of a reordered frame waiting for the next data frame, and since when.
    held: Option<(Instant, Vec<Frame>)>,
    last_due: Instant,
}

impl Shaper {
    fn new(shared: &Arc<Shared>, seed_offset: u64) -> Shaper {
        let faults = shared.faults.subscribe();
        let seed = faults.borrow().seed;
        Shaper {
            shared: Arc::clone(shared),
            faults,
            seed,
            seed_offset,
            rng: StdRng::seed_from_u64(seed.wrapping_add(seed_offset)),
            queue: VecDeque::new(),
            held: None,
            last_due: Instant::now(),
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.held.is_none()
    }

    fn has_room(&self) -> bool {
        self.queue.len() < QUEUE_FRAMES
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(due, _)| *due)
    }

    fn hold_deadline(&self) -> Option<Instant> {
        self.held.as_ref().map(|(since, _)| *since + REORDER_HOLD)
    }

    fn pop(&mut self) -> Option<Frame> {
        self.queue.pop_front().map(|(_, frame)| frame)
    }

    /// Queues a frame no earlier than `at` and never before the one queued last.
    fn push(&mut self, at: Instant, frame: Frame) {
        let due = at.max(self.last_due);
        self.last_due = due;
        self.queue.push_back((due, frame));
    }

    fn release_held(&mut self) {
        if let Some((_, copies)) = self.held.take() {
            for frame in copies {
                self.push(Instant::now(), frame);
            }
        }
    }

    fn accept(&mut self, frame: Frame) {
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        let now = Instant::now();
        match frame.kind {
            Kind::Control => {
                bump(&counters.control_frames, 1);
                self.push(now, frame);
                return;
            }
            Kind::Close => {
                bump(&counters.control_frames, 1);
                // Nothing may be stranded behind the end of the stream.
                self.release_held();
                self.push(now, frame);
                return;
            }
            Kind::Data => bump(&counters.frames, 1),
        }
        let faults = *self.faults.borrow_and_update();
        if faults.seed != self.seed {
            self.seed = faults.seed;
            self.rng = StdRng::seed_from_u64(faults.seed.wrapping_add(self.seed_offset));
        }
        // Every frame draws the same numbers whatever is decided, so a pattern depends
        // only on the seed and the frame's position in the stream.
        let drop_roll: f64 = self.rng.random();
        let duplicate_roll: f64 = self.rng.random();
        let reorder_roll: f64 = self.rng.random();
        let (lo, hi) = faults.delay_ms;
        let delay = self.rng.random_range(lo..=hi);
        if drop_roll < faults.drop {
            bump(&counters.dropped, 1);
            return;
        }
        let copies = if duplicate_roll < faults.duplicate {
            bump(&counters.duplicated, 1);
            vec![frame.clone(), frame]
        } else {
            vec![frame]
        };
        if delay > 0 {
            bump(&counters.delayed, 1);
        }
        let at = now + Duration::from_millis(delay);
        if let Some((_, earlier)) = self.held.take() {
            // This is the frame the held one goes after.
            for frame in copies.into_iter().chain(earlier) {
                self.push(at, frame);
            }
            return;
        }
        if reorder_roll < faults.reorder {
            bump(&counters.reordered, 1);
            self.held = Some((now, copies));
            return;
        }
        for frame in copies {
            self.push(at, frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::wait_until;

    const LIMIT: Duration = Duration::from_secs(10);

    /// A tokio-tungstenite server on loopback that records every text message it
    /// receives (and echoes it, if asked), and counts connections that ended.
    struct Echo {
        addr: SocketAddr,
        received: Arc<Mutex<Vec<String>>>,
        finished: Arc<AtomicU64>,
        task: JoinHandle<()>,
    }

    impl Echo {
        async fn start(echo: bool) -> Echo {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let received = Arc::new(Mutex::new(Vec::new()));
            let finished = Arc::new(AtomicU64::new(0));
            let (r, f) = (Arc::clone(&received), Arc::clone(&finished));
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (r, f) = (Arc::clone(&r), Arc::clone(&f));
                    tokio::spawn(async move {
                        if let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await {
                            while let Some(Ok(msg)) = ws.next().await {
                                if let Message::Text(text) = &msg {
                                    r.lock().unwrap().push(text.to_string());
                                    if echo && ws.send(msg).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        f.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
            Echo {
                addr,
                received,
                finished,
                task,
            }
        }

        fn received(&self) -> Vec<String> {
            self.received.lock().unwrap().clone()
        }

        /// Waits until `n` connections have ended on the server side.
        async fn finished(&self, n: u64) {
            wait_until(LIMIT, "the echo server's connections to end", || async {
                (self.finished.load(Ordering::SeqCst) >= n).then_some(())
            })
            .await
            .unwrap();
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    type Client = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn client(proxy: &FaultProxy) -> Client {
        let url = format!("ws://{}/", proxy.local_addr());
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    fn messages(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("message {i}")).collect()
    }

    /// Sends all as one burst (one flush), then closes the stream.
    async fn send_and_close(ws: &mut Client, texts: &[String]) {
        for text in texts {
            ws.feed(Message::text(text.clone())).await.unwrap();
        }
        ws.flush().await.unwrap();
        ws.close(None).await.unwrap();
    }

    /// The server's record of what arrived when `faults` sat on a client's stream of
    /// `n` messages followed by a close. The server does not answer, so the counters
    /// are those of the client's stream alone, complete once the server saw the close.
    async fn run(faults: Faults, n: usize) -> (Vec<String>, FaultCounters) {
        let echo = Echo::start(false).await;
        let proxy = FaultProxy::start(echo.addr, faults).await.unwrap();
        let mut ws = client(&proxy).await;
        send_and_close(&mut ws, &messages(n)).await;
        echo.finished(1).await;
        let counters = proxy.counters();
        proxy.shutdown().await;
        (echo.received(), counters)
    }

    #[tokio::test]
    async fn without_faults_everything_arrives_in_order() {
        let echo = Echo::start(true).await;
        let proxy = FaultProxy::start(echo.addr, Faults::none()).await.unwrap();
        let mut ws = client(&proxy).await;
        let sent = messages(200);
        for text in &sent {
            ws.send(Message::text(text.clone())).await.unwrap();
        }
        let mut echoed = Vec::new();
        while echoed.len() < sent.len() {
            let msg = tokio::time::timeout(LIMIT, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Text(text) = msg {
                echoed.push(text.to_string());
            }
        }
        assert_eq!(echoed, sent);
        assert_eq!(echo.received(), sent);
        // Control frames pass too.
        ws.send(Message::Ping(b"still there?".to_vec().into()))
            .await
            .unwrap();
        loop {
            let msg = tokio::time::timeout(LIMIT, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Pong(payload) = msg {
                assert_eq!(&payload[..], b"still there?");
                break;
            }
        }
        let c = proxy.counters();
        assert_eq!(c.connections, 1);
        assert_eq!(c.frames, 400, "200 each way");
        assert_eq!(
            (c.dropped, c.duplicated, c.reordered, c.malformed),
            (0, 0, 0, 0)
        );
        assert_eq!(c.control_frames, 2, "ping and pong");
    }

    #[tokio::test]
    async fn with_drop_one_nothing_arrives() {
        let drop_all = Faults {
            drop: 1.0,
            ..Faults::none()
        };
        let (received, c) = run(drop_all, 50).await;
        assert!(received.is_empty(), "{received:?}");
        assert_eq!(c.frames, 50);
        assert_eq!(c.dropped, 50);
    }

    #[tokio::test]
    async fn with_duplicate_one_every_message_arrives_twice() {
        let twice = Faults {
            duplicate: 1.0,
            ..Faults::none()
        };
        let (received, c) = run(twice, 50).await;
        let expected: Vec<String> = messages(50)
            .into_iter()
            .flat_map(|m| [m.clone(), m])
            .collect();
        assert_eq!(received, expected);
        assert_eq!(c.duplicated, c.frames);
    }

    #[tokio::test]
    async fn with_reorder_one_each_frame_goes_after_the_next() {
        let swap = Faults {
            reorder: 1.0,
            ..Faults::none()
        };
        let (received, c) = run(swap, 6).await;
        let m = messages(6);
        let expected = [1, 0, 3, 2, 5, 4].map(|i| m[i].clone());
        assert_eq!(received, expected);
        assert_eq!(
            c.reordered, 3,
            "every other frame is held; the next releases it"
        );
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_pattern() {
        let faults = |seed| Faults {
            seed,
            drop: 0.3,
            duplicate: 0.3,
            reorder: 0.2,
            delay_ms: (0, 2),
        };
        let (first, c1) = run(faults(7), 200).await;
        let (second, c2) = run(faults(7), 200).await;
        assert_eq!(first, second);
        assert_eq!(
            (c1.dropped, c1.duplicated, c1.reordered, c1.delayed),
            (c2.dropped, c2.duplicated, c2.reordered, c2.delayed)
        );
        assert!(c1.dropped > 0 && c1.duplicated > 0 && c1.reordered > 0);
        let (other, _) = run(faults(8), 200).await;
        assert_ne!(first, other, "another seed, another pattern");
    }

    #[tokio::test]
    async fn faults_change_at_run_time_and_a_partition_holds_then_releases() {
        let echo = Echo::start(true).await;
        let proxy = FaultProxy::start(
            echo.addr,
            Faults {
                drop: 1.0,
                ..Faults::none()
            },
        )
        .await
        .unwrap();
        let mut ws = client(&proxy).await;
        ws.send(Message::text("lost")).await.unwrap();
        wait_until(LIMIT, "the frame to be dropped", || async {
            (proxy.counters().dropped == 1).then_some(())
        })
        .await
        .unwrap();
        proxy.set_faults(Faults::none());
        assert_eq!(proxy.faults(), Faults::none());

        // Partitioned: new connections are refused; open ones are held, not lost.
        proxy.partition(true);
        let url = format!("ws://{}/", proxy.local_addr());
        assert!(tokio_tungstenite::connect_async(url.as_str())
            .await
            .is_err());
        assert_eq!(proxy.counters().refused, 1);
        ws.send(Message::text("held")).await.unwrap();
        proxy.partition(false);
        let msg = tokio::time::timeout(LIMIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text("held"));
        assert_eq!(echo.received(), ["held"]);
        assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_ok());
    }

    #[tokio::test]
    async fn broken_framing_closes_the_connection() {
        let echo = Echo::start(true).await;
        let proxy = FaultProxy::start(echo.addr, Faults::none()).await.unwrap();
        let mut raw = TcpStream::connect(proxy.local_addr()).await.unwrap();
        raw.write_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let n = read_head(&mut raw, &mut head).await.unwrap();
        assert!(
            switched_protocols(&head[..n]),
            "{:?}",
            String::from_utf8_lossy(&head)
        );
        // Opcode 3 is reserved.
        raw.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(LIMIT, raw.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the proxy closed the connection");
        wait_until(LIMIT, "the malformed stream to be counted", || async {
            (proxy.counters().malformed == 1).then_some(())
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn frame_parsing_keeps_bytes_and_refuses_bad_framing() {
        // A masked 300-byte binary frame: 16-bit length, mask key, payload.
        let mut frame = vec![0x82, 0x80 | 126, 0x01, 0x2c, 9, 8, 7, 6];
        frame.extend(std::iter::repeat_n(0xab, 300));
        let mut input = frame.clone();
        input.extend_from_slice(&[0x89, 0x00]); // ping, empty
        let mut reader = io::Cursor::new(input);
        let first = read_frame(&mut reader).await.unwrap().unwrap();
        assert_eq!(first.kind, Kind::Data);
        assert_eq!(first.bytes, frame);
        let ping = read_frame(&mut reader).await.unwrap().unwrap();
        assert_eq!((ping.kind, ping.bytes), (Kind::Control, vec![0x89, 0x00]));
        assert!(read_frame(&mut reader).await.unwrap().is_none());

        for bad in [
            vec![0x8b, 0x00],                           // reserved control opcode
            vec![0x09, 0x00],                           // fragmented ping
            vec![0x88, 126, 0x00, 0x7e],                // close longer than 125
            vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], // top bit of 64-bit length
            vec![0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 1], // over MAX_FRAME_BYTES
            vec![0x82, 0x05, 1, 2],                     // ends inside the payload
        ] {
            let err = read_frame(&mut io::Cursor::new(bad.clone()))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }
}
