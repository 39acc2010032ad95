//! An insider's attack tool: a client that holds the shared secret and keys of its own
//! (with the id they derive), links to a real node's LAN port with the real handshake,
//! and sends it whatever envelopes a test makes — forged group changes, rewritten
//! relays — signed with its own keys as any node's envelopes are. It reports what the
//! node answered (`Ack` outcome or `Reject` reason). It talks only to the address a test
//! gives it (loopback or a test namespace host).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use api_types::NodeId;
use futures_util::{SinkExt, StreamExt};
use lan_mesh::envelope::Envelope;
use lan_mesh::secret::SharedSecret;
use lan_mesh::transport::config::{websocket_config, LINK_PATH};
use lan_mesh::transport::noise::{Handshake, Session};
use lan_mesh::transport::{Frame, NodeKeys, PeerKeys};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one answer is waited for.
const WAIT: Duration = Duration::from_secs(10);

/// The attacker's identity: keys and the id they derive.
pub struct Attacker {
    pub keys: NodeKeys,
    pub id: NodeId,
}

/// What a node answered an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Acked(String),
    Rejected(String),
}

impl Attacker {
    pub fn new() -> anyhow::Result<Attacker> {
        let keys = NodeKeys::generate()?;
        let id = keys.public().node_id();
        Ok(Attacker { keys, id })
    }

    /// Links to the node `peer` listening at `addr`, proving `secret`.
    pub async fn link(
        &self,
        addr: SocketAddr,
        peer: &NodeId,
        secret: &str,
    ) -> anyhow::Result<AttackLink<'_>> {
        let url = format!("ws://{addr}{LINK_PATH}");
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(websocket_config()), true)
                .await?;
        let secret = SharedSecret::derive(secret)?;
        let mut hs = Handshake::initiator(&self.keys, &secret, self.id.as_str())?;
        ws.send(Message::Binary(hs.write()?.into())).await?;
        hs.read(&next_binary(&mut ws).await?)?;
        ws.send(Message::Binary(hs.write()?.into())).await?;
        let (mut session, remote) = hs.finish()?;
        if remote.hello.node_id != peer.as_str() {
            bail!("linked to {} instead of {peer}", remote.hello.node_id);
        }
        loop {
            let message = next_binary(&mut ws).await?;
            if let Some(plain) = session.open(&message)? {
                match Frame::decode(&plain)? {
                    Frame::Ready => break,
                    Frame::Close(c) => bail!("refused: {}", c.reason),
                    other => bail!("unexpected {other:?}"),
                }
            }
        }
        Ok(AttackLink {
            attacker: self,
            peer: peer.clone(),
            peer_keys: remote.keys,
            ws,
            session,
            received: Vec::new(),
        })
    }
}

/// What a dialler learned of the node listening at `addr` from the real handshake,
/// proving `secret`, up to message 2 (the listener's identity) and no further: the id
/// the listener proved, or why it learned nothing (the node closed instead of
/// answering, or its answer did not open).
pub async fn who_answers(addr: SocketAddr, secret: &str) -> anyhow::Result<Result<NodeId, String>> {
    let attacker = Attacker::new()?;
    let url = format!("ws://{addr}{LINK_PATH}");
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(websocket_config()), true).await?;
    let secret = SharedSecret::derive(secret)?;
    let mut hs = Handshake::initiator(&attacker.keys, &secret, attacker.id.as_str())?;
    ws.send(Message::Binary(hs.write()?.into())).await?;
    let answer = match tokio::time::timeout(WAIT, next_binary(&mut ws)).await {
        Ok(Ok(message)) => message,
        Ok(Err(e)) => return Ok(Err(format!("no message 2: {e}"))),
        Err(_) => return Ok(Err("no message 2 within the wait".into())),
    };
    let learned = match hs.read(&answer) {
        Ok(()) => match hs.remote() {
            Some(remote) => Ok(remote.keys.node_id()),
            None => Err("message 2 named nobody".to_string()),
        },
        Err(e) => Err(format!("message 2 did not open: {e}")),
    };
    let _ = ws.close(None).await;
    Ok(learned)
}

/// A link the attacker holds with one node.
pub struct AttackLink<'a> {
    attacker: &'a Attacker,
    pub peer: NodeId,
    pub peer_keys: PeerKeys,
    ws: Ws,
    session: Session,
    /// Envelopes the node sent on this link (acked as they arrive), oldest first.
    pub received: Vec<Envelope>,
}

impl AttackLink<'_> {
    /// An envelope from the attacker to this link's node, with a fresh envelope id.
    pub fn envelope(&self, kind: &str, payload: serde_json::Value) -> Envelope {
        Envelope {
            envelope_id: storage::EnvelopeId::new(),
            kind: kind.to_string(),
            from_peer_id: self.attacker.id.clone(),
            to_peer_id: self.peer.clone(),
            ts: lan_mesh::delivery::now_ms(),
            payload,
        }
    }

    /// Sends `envelope` (signed with the attacker's keys) and waits for the node's
    /// answer to it.
    pub async fn send(&mut self, envelope: &Envelope) -> anyhow::Result<Answer> {
        let frame = Frame::Envelope(envelope.encode()?).encode();
        for part in self.session.seal(&frame)? {
            self.ws.send(Message::Binary(part.into())).await?;
        }
        let wanted = envelope.envelope_id.to_string();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.next_frame(deadline).await? {
                Frame::Ack(ack) if ack.envelope_id == wanted => {
                    return Ok(Answer::Acked(ack.outcome))
                }
                Frame::Reject(r) if r.envelope_id == wanted => {
                    return Ok(Answer::Rejected(r.reason))
                }
                _ => {}
            }
        }
    }

    /// Waits until the node has sent an envelope of `kind` (acking what it sends).
    pub async fn wait_envelope(&mut self, kind: &str) -> anyhow::Result<Envelope> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(found) = self.received.iter().find(|e| e.kind == kind) {
                return Ok(found.clone());
            }
            self.next_frame(deadline).await?;
        }
    }

    /// The next frame; envelopes are opened, kept and acked on the way.
    async fn next_frame(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<Frame> {
        loop {
            let message = tokio::time::timeout_at(deadline, next_binary(&mut self.ws))
                .await
                .context("no answer in time")??;
            let Some(plain) = self.session.open(&message)? else {
                continue;
            };
            let frame = Frame::decode(&plain)?;
            if let Frame::Envelope(bytes) = &frame {
                let envelope = Envelope::open(bytes, &self.peer, &self.attacker.id)?;
                let ack = Frame::Ack(lan_mesh::transport::Ack {
                    envelope_id: envelope.envelope_id.to_string(),
                    outcome: "applied".into(),
                });
                for part in self.session.seal(&ack.encode())? {
                    self.ws.send(Message::Binary(part.into())).await?;
                }
                self.received.push(envelope);
            }
            return Ok(frame);
        }
    }
}

async fn next_binary(ws: &mut Ws) -> anyhow::Result<Vec<u8>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) | None => bail!("closed"),
            Some(Err(e)) => bail!("{e}"),
        }
    }
}

/// `addr` of a node's LAN port on loopback, from its settings.
pub async fn link_addr(node: &crate::NodeProcess) -> anyhow::Result<SocketAddr> {
    let settings = node.get_json("v1/settings").await?;
    let port = settings["lan_mesh"]["listen_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .context("no listen_port in the settings")?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}
