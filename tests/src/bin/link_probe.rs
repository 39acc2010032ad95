//! A hostile or curious client of a node's LAN link port, for the namespace tests of the
//! transport (tests/tests/lan_transport.rs). It runs inside a test namespace host and
//! prints one line saying what the node did.
//!
//! ```text
//! link_probe handshake ADDR PEER_ID SECRET      → "linked" | "refused <reason>" | "failed <error>"
//! link_probe claim ADDR PEER_ID SECRET CLAIMED_ID → the same, but presenting CLAIMED_ID
//!     (another node's id) with this tool's own keys, which do not derive it
//! link_probe junk ADDR garbage|oversized|truncated|text
//!                                               → "closed" | "open"
//! link_probe replay ADDR PEER_ID SECRET         → "<first> <replayed>": the first envelope
//!     is sent on a fresh link (expect "acked"); the same sealed bytes are then replayed
//!     on a second link (expect "ignored": the new session cannot open them).
//! ```
//!
//! It talks only to the address it is given, which the tests take from their own LAN.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use api_types::NodeId;
use futures_util::{SinkExt, StreamExt};
use lan_mesh::envelope::{Envelope, KIND_DM_SEND};
use lan_mesh::secret::SharedSecret;
use lan_mesh::transport::config::{websocket_config, LINK_PATH};
use lan_mesh::transport::noise::{Handshake, Session};
use lan_mesh::transport::{Frame, NodeKeys};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(3);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().context("missing argument");
    let outcome = match arg(0)?.as_str() {
        "handshake" => {
            let keys = NodeKeys::generate()?;
            let me = keys.public().node_id();
            match handshake(arg(1)?.parse()?, &arg(2)?.parse()?, &arg(3)?, &keys, &me).await {
                Ok(_) => "linked".to_string(),
                Err(e) => format!("refused {e}"),
            }
        }
        "claim" => {
            let keys = NodeKeys::generate()?;
            let claimed: NodeId = arg(4)?.parse()?;
            match handshake(
                arg(1)?.parse()?,
                &arg(2)?.parse()?,
                &arg(3)?,
                &keys,
                &claimed,
            )
            .await
            {
                Ok(_) => "linked".to_string(),
                Err(e) => format!("refused {e}"),
            }
        }
        "junk" => junk(arg(1)?.parse()?, &arg(2)?).await?,
        "replay" => replay(arg(1)?.parse()?, &arg(2)?.parse()?, &arg(3)?).await?,
        other => bail!("unknown mode {other}"),
    };
    println!("{outcome}");
    Ok(())
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Ws> {
    let url = format!("ws://{addr}{LINK_PATH}");
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(websocket_config()), true).await?;
    Ok(ws)
}

async fn next_binary(ws: &mut Ws) -> anyhow::Result<Vec<u8>> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => bail!("timeout"),
            Ok(Some(Ok(Message::Binary(b)))) => return Ok(b.to_vec()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(_))) | Ok(None) => bail!("closed"),
            Ok(Some(Err(e))) => bail!("{e}"),
        }
    }
}

/// The initiator's side of the real handshake, up to the node's `Ready`.
async fn handshake(
    addr: SocketAddr,
    peer: &NodeId,
    secret: &str,
    keys: &NodeKeys,
    me: &NodeId,
) -> anyhow::Result<(Ws, Session)> {
    let mut ws = connect(addr).await?;
    let secret = SharedSecret::derive(secret)?;
    let mut hs = Handshake::initiator(keys, &secret, me.as_str())?;
    ws.send(Message::Binary(hs.write()?.into())).await?;
    hs.read(&next_binary(&mut ws).await?)?;
    ws.send(Message::Binary(hs.write()?.into())).await?;
    let (mut session, remote) = hs.finish()?;
    if remote.hello.node_id != peer.as_str() {
        bail!("wrong peer {}", remote.hello.node_id);
    }
    loop {
        let message = next_binary(&mut ws).await?;
        if let Some(plain) = session.open(&message)? {
            match Frame::decode(&plain)? {
                Frame::Ready => return Ok((ws, session)),
                Frame::Close(c) => bail!("{}", c.reason),
                other => bail!("unexpected {other:?}"),
            }
        }
    }
}

/// Whether the node closes the connection (within WAIT) after `payload`.
async fn junk(addr: SocketAddr, mode: &str) -> anyhow::Result<String> {
    let mut ws = connect(addr).await?;
    let message = match mode {
        "garbage" => Message::Binary(vec![0xA5; 200].into()),
        // One byte over the node's WebSocket message cap.
        "oversized" => Message::Binary(vec![0u8; 70 * 1024 + 1].into()),
        // A handshake message cut short.
        "truncated" => Message::Binary(vec![1u8; 7].into()),
        "text" => Message::Text("hello".into()),
        other => bail!("unknown junk {other}"),
    };
    let _ = ws.send(message).await;
    let closed = match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => true,
        Ok(Some(Ok(_))) => false,
        Err(_) => false,
    };
    Ok(if closed { "closed" } else { "open" }.to_string())
}

async fn send_sealed(ws: &mut Ws, parts: &[Vec<u8>]) -> anyhow::Result<()> {
    for part in parts {
        ws.send(Message::Binary(part.clone().into())).await?;
    }
    Ok(())
}

/// Whether an ack for `envelope` arrives on this link within WAIT.
async fn acked(ws: &mut Ws, session: &mut Session, envelope: &str) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Ok(Ok(message)) = tokio::time::timeout_at(deadline, next_binary(ws)).await {
        if let Ok(Some(plain)) = session.open(&message) {
            if let Ok(Frame::Ack(ack)) = Frame::decode(&plain) {
                if ack.envelope_id == envelope {
                    return true;
                }
            }
        }
    }
    false
}

async fn replay(addr: SocketAddr, peer: &NodeId, secret: &str) -> anyhow::Result<String> {
    let keys = NodeKeys::generate()?;
    let me = keys.public().node_id();
    // A real DM, signed by its author as every node's is (docs/PROTOCOL.md, "Signatures").
    let (message_id, sent_at, text) = (
        chat_core::MessageId::new(),
        lan_mesh::delivery::now_ms(),
        "replay canary",
    );
    let statement = chat_core::message_statement(
        chat_core::MessageScope::Direct { to: peer },
        &message_id,
        &me,
        sent_at,
        chat_core::Hlc::from_raw(1),
        text,
    );
    let envelope = Envelope {
        envelope_id: storage::EnvelopeId::new(),
        kind: KIND_DM_SEND.into(),
        from_peer_id: me.clone(),
        to_peer_id: peer.clone(),
        ts: lan_mesh::delivery::now_ms(),
        payload: serde_json::json!({
            "message_id": message_id.to_string(),
            "text": text,
            "sent_at": sent_at,
            "hlc": 1u64,
            "sig": lanchat_tests::netns::hex_encode(&keys.sign(&statement)),
        }),
    };
    let id = envelope.envelope_id.to_string();
    let (mut ws, mut session) = handshake(addr, peer, secret, &keys, &me).await?;
    let captured = session.seal(&Frame::Envelope(envelope.encode()?).encode())?;
    send_sealed(&mut ws, &captured).await?;
    let first = if acked(&mut ws, &mut session, &id).await {
        "acked"
    } else {
        "ignored"
    };
    let _ = ws.close(None).await;

    let (mut ws, mut session) = handshake(addr, peer, secret, &keys, &me).await?;
    send_sealed(&mut ws, &captured).await?;
    let second = if acked(&mut ws, &mut session, &id).await {
        "acked"
    } else {
        "ignored"
    };
    Ok(format!("{first} {second}"))
}
