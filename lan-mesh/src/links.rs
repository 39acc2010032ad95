//! What delivery and group catch-up need from the links to other nodes — the other
//! half of their edges, beside [`crate::ports`] (persistence). The node passes its
//! [`Transport`]; unit tests pass an in-memory network (`testing::MemoryNet`), so
//! delivery, retries, acks, fan-out and catch-up run on paused time without sockets.
//!
//! Only the sending side is here: what comes back (links up and down, frames) reaches
//! delivery as a stream of [`LinkEvent`](crate::transport::LinkEvent)s, which a test
//! feeds through a channel of its own.
//!
//! The trait and its implementation for `Transport` sit together in this module, which
//! depends on `transport` and not the other way round: the transport knows nothing of
//! who uses it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use api_types::NodeId;

use crate::transport::{Frame, SendError, Transport};

/// `send_wait`'s answer: boxed, so the trait stays object safe (`Arc<dyn Links>`).
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// One link per peer, as delivery uses them. Every method answers at once except
/// `send_wait`, which waits for room on a full lane (bounded by `within`).
pub trait Links: Send + Sync {
    /// Queues a frame on `peer`'s link without waiting: `NoLink` without a link,
    /// `Busy` when its lane is full (back-pressure: the caller comes back later).
    fn send(&self, peer: &NodeId, frame: Frame) -> Result<(), SendError>;
    /// Queues a frame, waiting up to `within` for room: `Busy` if none came, `NoLink`
    /// if there is no link or it went down meanwhile.
    fn send_wait<'a>(&'a self, peer: &'a NodeId, frame: Frame, within: Duration) -> SendFuture<'a>;
    /// Dials `peer` at `addr` unless a link or a dial exists (or its redial backoff
    /// runs). The link coming up is reported as `LinkEvent::Up`.
    fn connect(&self, peer: &NodeId, addr: SocketAddr);
    /// Closes the link to `peer`, if any, telling it why.
    fn close_peer(&self, peer: &NodeId, reason: &str);
    fn is_linked(&self, peer: &NodeId) -> bool;
    /// Counts an inbound envelope dropped (`rejected` false) or answered with
    /// `Reject` (diagnostics' drop counters).
    fn count_envelope_refused(&self, rejected: bool);
    /// Counts `count` forged statements refused: group changes or messages whose
    /// author did not sign them, changes their signer may not make, a known message id
    /// with other content (diagnostics' `envelopes_forged`).
    fn count_envelope_forged(&self, count: u64);
    /// Counts an inbound envelope left unanswered because its sender is over a
    /// per-peer quota (diagnostics' `envelopes_over_quota`).
    fn count_envelope_over_quota(&self);
}

impl Links for Transport {
    fn send(&self, peer: &NodeId, frame: Frame) -> Result<(), SendError> {
        Transport::send(self, peer, frame)
    }

    fn send_wait<'a>(&'a self, peer: &'a NodeId, frame: Frame, within: Duration) -> SendFuture<'a> {
        Box::pin(Transport::send_wait(self, peer, frame, within))
    }

    fn connect(&self, peer: &NodeId, addr: SocketAddr) {
        Transport::connect(self, peer, addr);
    }

    fn close_peer(&self, peer: &NodeId, reason: &str) {
        Transport::close_peer(self, peer, reason);
    }

    fn is_linked(&self, peer: &NodeId) -> bool {
        Transport::is_linked(self, peer)
    }

    fn count_envelope_refused(&self, rejected: bool) {
        Transport::count_envelope_refused(self, rejected);
    }

    fn count_envelope_forged(&self, count: u64) {
        Transport::count_envelope_forged(self, count);
    }

    fn count_envelope_over_quota(&self) {
        Transport::count_envelope_over_quota(self);
    }
}
