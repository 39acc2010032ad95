//! The discovery socket's two pumps, each a task of its own so that neither direction
//! ever waits on the other or on the actor:
//!
//! - the **receiver** drains the kernel's buffer into a bounded queue as fast as
//!   datagrams arrive, stamping each with our wall clock at arrival (clock offsets are
//!   measured from that, not from when the actor got round to it). On a LAN of hundreds
//!   of nodes sharing a CPU, a socket read only between the actor's other work
//!   overflowed the kernel's receive buffer during bursts and lost packets silently;
//! - the **sender** sends what the actor queued. When the kernel's send buffer is full
//!   it waits until the socket is writable again and sends then (counted in
//!   `send_waits`: the kernel counts each such refusal as `SndbufErrors`), so a burst is
//!   paced by the socket instead of lost. Only a real error loses a packet, and it is
//!   counted in `send_errors` and logged once per destination.
//!
//! A full queue in either direction drops the datagram and counts it; nothing is lost
//! without a counter saying so.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::clock::Clock;
use super::packet::UnixMillis;

/// Datagrams waiting for the actor. A 256-node hello burst with its answers is a few
/// hundred; this leaves room for several at ~1.2 KB each at most.
pub const RECEIVE_QUEUE: usize = 4096;
/// Packets waiting for the socket: one heartbeat to every target plus paced answers.
pub const SEND_QUEUE: usize = 4096;
/// Larger than any valid packet, so an oversized datagram is seen as such (and counted)
/// rather than silently truncated to a plausible length.
const RECV_BUFFER: usize = 2048;
/// Destinations whose send errors were logged; more are only counted.
const MAX_WARNED_TARGETS: usize = 1024;

/// One received datagram, stamped on arrival.
#[derive(Debug)]
pub struct Inbound {
    pub bytes: Vec<u8>,
    pub source: SocketAddr,
    pub at_unix: UnixMillis,
    pub at: tokio::time::Instant,
}

/// One packet to send.
#[derive(Debug)]
pub struct Outbound {
    pub bytes: Vec<u8>,
    pub to: SocketAddr,
}

/// What the pumps count; read by the actor for `stats()`.
#[derive(Debug, Default)]
pub struct PumpCounters {
    pub sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub send_waits: AtomicU64,
    pub send_queue_full: AtomicU64,
    pub receive_queue_full: AtomicU64,
}

impl PumpCounters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads datagrams until the socket fails for good or the actor's queue closes.
pub async fn receive(
    socket: Arc<UdpSocket>,
    clock: Arc<dyn Clock>,
    queue: mpsc::Sender<Inbound>,
    counters: Arc<PumpCounters>,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, source)) => {
                let datagram = Inbound {
                    bytes: buf.get(..len).unwrap_or_default().to_vec(),
                    source,
                    at_unix: clock.now(),
                    at: tokio::time::Instant::now(),
                };
                match queue.try_send(datagram) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        PumpCounters::bump(&counters.receive_queue_full)
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            // Unconnected UDP reports transient errors (e.g. ICMP port unreachable on
            // some platforms); nothing to do but keep receiving.
            Err(e) => tracing::debug!(error = %e, "discovery receive error"),
        }
    }
}

/// Sends queued packets in order until the queue closes (then everything queued has
/// been tried: goodbyes go out before the actor reports "stopped").
pub async fn send(
    socket: Arc<UdpSocket>,
    mut queue: mpsc::Receiver<Outbound>,
    counters: Arc<PumpCounters>,
) {
    let mut warned: HashSet<SocketAddr> = HashSet::new();
    while let Some(packet) = queue.recv().await {
        match send_one(&socket, &packet, &counters).await {
            Ok(()) => PumpCounters::bump(&counters.sent),
            Err(e) => {
                PumpCounters::bump(&counters.send_errors);
                if warned.len() < MAX_WARNED_TARGETS && warned.insert(packet.to) {
                    tracing::warn!(to = %packet.to, error = %e,
                        "cannot send discovery packet (further errors to this target are only counted)");
                }
            }
        }
    }
}

async fn send_one(
    socket: &UdpSocket,
    packet: &Outbound,
    counters: &PumpCounters,
) -> io::Result<()> {
    loop {
        match socket.try_send_to(&packet.bytes, packet.to) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                PumpCounters::bump(&counters.send_waits);
                socket.writable().await?;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::clock::SystemClock;

    #[tokio::test]
    async fn packets_go_out_in_order_and_arrive_stamped() {
        let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let counters = Arc::new(PumpCounters::default());
        let (in_tx, mut in_rx) = mpsc::channel(16);
        let rx_task = tokio::spawn(receive(
            Arc::clone(&b),
            Arc::new(SystemClock),
            in_tx,
            Arc::clone(&counters),
        ));
        let (out_tx, out_rx) = mpsc::channel(16);
        let tx_task = tokio::spawn(send(Arc::clone(&a), out_rx, Arc::clone(&counters)));
        let to = b.local_addr().unwrap();
        for i in 0..5u8 {
            out_tx.send(Outbound { bytes: vec![i], to }).await.unwrap();
        }
        drop(out_tx);
        tx_task.await.unwrap();
        for i in 0..5u8 {
            let d = in_rx.recv().await.unwrap();
            assert_eq!(d.bytes, vec![i]);
            assert_eq!(d.source, a.local_addr().unwrap());
            assert!(d.at_unix.0 > 0);
        }
        assert_eq!(PumpCounters::get(&counters.sent), 5);
        assert_eq!(PumpCounters::get(&counters.send_errors), 0);
        rx_task.abort();
    }

    #[tokio::test]
    async fn a_full_receive_queue_is_counted() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let counters = Arc::new(PumpCounters::default());
        let (in_tx, mut in_rx) = mpsc::channel(1);
        let rx_task = tokio::spawn(receive(
            Arc::clone(&b),
            Arc::new(SystemClock),
            in_tx,
            Arc::clone(&counters),
        ));
        for i in 0..3u8 {
            a.send_to(&[i], b.local_addr().unwrap()).await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while PumpCounters::get(&counters.receive_queue_full) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "drops not counted");
            tokio::task::yield_now().await;
        }
        assert_eq!(in_rx.recv().await.unwrap().bytes, vec![0]);
        rx_task.abort();
    }
}
