//! One link: the WebSocket upgrade and Noise handshake on both sides, then the loop
//! that seals outgoing frames, opens incoming ones, and keeps the link alive.

use std::net::SocketAddr;
use std::time::Duration;

use api_types::NodeId;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::config::{websocket_config, LINK_PATH, MAX_BAD_MESSAGES_IN_A_ROW};
use super::frame::Frame;
use super::identity::{NodeKeys, PeerKeys};
use super::noise::{Handshake, NoiseError, RemoteIdentity, Session};
use super::stats::Counters;

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

/// The listener side up to a finished Noise handshake. The caller then checks the peer
/// (blocks, pins) and sends `Ready` or a `Close`.
pub(crate) async fn accept(
    tcp: TcpStream,
    keys: &NodeKeys,
    secret: &str,
    local: &NodeId,
) -> Result<(Ws, Session, NodeId, PeerKeys), LinkError> {
    // The signature is tungstenite's callback type; its error is its HTTP response.
    #[allow(clippy::result_large_err)]
    let check_path = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        if request.uri().path() == LINK_PATH {
            Ok(response)
        } else {
            let mut refusal = ErrorResponse::new(Some("not a lanchat link".into()));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            Err(refusal)
        }
    };
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, check_path, Some(websocket_config()))
            .await?;
    let mut hs = Handshake::responder(keys, secret, local.as_str())?;
    hs.read(&next_binary(&mut ws).await?)?;
    ws.send(Message::Binary(hs.write()?.into())).await?;
    hs.read(&next_binary(&mut ws).await?)?;
    let (session, remote) = hs.finish()?;
    let peer = remote_node_id(&remote)?;
    Ok((ws, session, peer, remote.keys))
}

/// The dialling side, up to the responder's `Ready`: only then has the responder proved
/// it knows the secret (it could not decrypt message 3 otherwise).
pub(crate) async fn dial(
    addr: SocketAddr,
    expected: &NodeId,
    keys: &NodeKeys,
    secret: &str,
    local: &NodeId,
) -> Result<(Ws, Session, PeerKeys), LinkError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{addr}{LINK_PATH}");
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, tcp, Some(websocket_config())).await?;
    let mut hs = Handshake::initiator(keys, secret, local.as_str())?;
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
            Ok(Frame::Ready) => Ok((ws, session, remote.keys)),
            Ok(Frame::Close(c)) => Err(LinkError::Refused(c.reason)),
            _ => Err(LinkError::Unexpected),
        };
    }
}

/// Seals and sends one frame (possibly several WebSocket messages).
pub(crate) async fn send_frame(
    ws: &mut Ws,
    session: &mut Session,
    frame: &Frame,
) -> Result<(), LinkError> {
    let parts = session.seal(&frame.encode())?;
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.into_iter().enumerate() {
        if i == last {
            ws.send(Message::Binary(part.into())).await?;
        } else {
            ws.feed(Message::Binary(part.into())).await?;
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

struct FrameBudget {
    tokens: f64,
    at: Instant,
}

impl FrameBudget {
    fn new() -> Self {
        FrameBudget {
            tokens: INBOUND_BURST,
            at: Instant::now(),
        }
    }

    /// Takes one frame's token; how long to wait first when there is none.
    fn take(&mut self) -> Duration {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * INBOUND_PER_SEC;
        self.tokens = (self.tokens + refill).min(INBOUND_BURST) - 1.0;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / INBOUND_PER_SEC)
        }
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

pub(crate) struct Running {
    pub peer: NodeId,
    pub keys: PeerKeys,
    pub outgoing: mpsc::Receiver<Frame>,
    pub incoming: mpsc::Sender<super::LinkEvent>,
    pub cancel: CancellationToken,
    pub keepalive: Duration,
    pub dead_after: Duration,
    pub counters: std::sync::Arc<Counters>,
    pub health: std::sync::Arc<super::health::LinkHealth>,
}

/// Runs an established link until it ends.
pub(crate) async fn run(mut ws: Ws, mut session: Session, mut link: Running) -> LinkEnd {
    let mut last_heard = Instant::now();
    let mut bad_in_a_row = 0u32;
    let mut budget = FrameBudget::new();
    let mut tick = tokio::time::interval(link.keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // The keepalive pings double as the round-trip measurement (the peer's WebSocket
    // answers each with a pong); the first goes out at once so diagnostics have an RTT
    // before the first keepalive interval has passed.
    let mut ping_sent: Option<Instant> = None;
    if ws.send(Message::Ping(Vec::new().into())).await.is_ok() {
        ping_sent = Some(Instant::now());
    }
    let end = loop {
        tokio::select! {
            _ = link.cancel.cancelled() => break LinkEnd::Local("closed".into()),
            frame = link.outgoing.recv() => match frame {
                None => break LinkEnd::Local("closed".into()),
                Some(Frame::Close(c)) => break LinkEnd::Local(c.reason),
                Some(frame) => {
                    if let Err(e) = send_frame(&mut ws, &mut session, &frame).await {
                        break LinkEnd::Failed(e.to_string());
                    }
                    link.counters.frames_sent.inc();
                }
            },
            message = ws.next() => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(Message::Binary(bytes))) => match session.open(&bytes) {
                        Ok(None) => {}
                        Ok(Some(plain)) => {
                            bad_in_a_row = 0;
                            match Frame::decode(&plain) {
                                Ok(Frame::Close(c)) => break LinkEnd::Remote(c.reason),
                                Ok(Frame::Ready) => {}
                                Ok(frame) => {
                                    link.counters.frames_received.inc();
                                    let wait = budget.take();
                                    if !wait.is_zero() {
                                        link.counters.frames_throttled.inc();
                                        tokio::time::sleep(wait).await;
                                    }
                                    let event = super::LinkEvent::Frame { peer: link.peer.clone(), keys: link.keys, frame };
                                    if link.incoming.send(event).await.is_err() {
                                        break LinkEnd::Local("transport stopped".into());
                                    }
                                }
                                Err(e) => {
                                    link.counters.frames_malformed.inc();
                                    tracing::debug!(peer = %link.peer, "malformed frame: {e}");
                                }
                            }
                        }
                        Err(_) => {
                            link.counters.frames_undecryptable.inc();
                            bad_in_a_row += 1;
                            if bad_in_a_row >= MAX_BAD_MESSAGES_IN_A_ROW {
                                break LinkEnd::Failed("too many undecryptable messages".into());
                            }
                        }
                    },
                    Some(Ok(Message::Pong(_))) => {
                        if let Some(sent) = ping_sent.take() {
                            link.health.record_rtt(sent.elapsed());
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Text(_))) => break LinkEnd::Failed("text message on a link".into()),
                    Some(Ok(Message::Close(_))) | None => break LinkEnd::Remote("connection closed".into()),
                    Some(Err(e)) => break LinkEnd::Failed(e.to_string()),
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() >= link.dead_after {
                    break LinkEnd::Dead;
                }
                if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                    break LinkEnd::Failed(e.to_string());
                }
                // An unanswered ping is not timed again: its pong may still come.
                ping_sent.get_or_insert_with(Instant::now);
            }
        }
    };
    if let LinkEnd::Local(reason) = &end {
        // Best effort: tell the peer why, so it does not redial into a block at once.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            let _ = send_frame(&mut ws, &mut session, &Frame::close(reason)).await;
            let _ = ws.close(None).await;
        })
        .await;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_inbound_budget_allows_a_burst_then_paces() {
        let mut budget = FrameBudget::new();
        for _ in 0..4096 {
            assert_eq!(budget.take(), Duration::ZERO);
        }
        let wait = budget.take();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(1),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        // One second refills 2048 frames (less the one over budget).
        let free = (0..3000).take_while(|_| budget.take().is_zero()).count();
        assert_eq!(free, 2047);
    }
}
