//! The transport's counters, shown in `GET /api/v1/status` → `transport`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    pub links_accepted: Counter,
    pub links_dialled: Counter,
    pub links_closed: Counter,
    /// Refused before the handshake: blocked or not-allowed source address.
    pub refused_address: Counter,
    /// Refused before the handshake: per-IP or total connection cap.
    pub refused_capacity: Counter,
    /// Refused before the handshake: the source IP starts handshakes too fast.
    pub refused_rate: Counter,
    /// Pending handshakes stopped to give their slot to a newer connection (every slot
    /// taken; the oldest pending one goes).
    pub handshakes_evicted: Counter,
    /// Dials not started: too many under way (`MAX_DIALS`).
    pub dials_deferred: Counter,
    /// Handshakes that failed: wrong secret, garbage, timeout, wrong peer.
    pub handshake_failed: Counter,
    /// Refused after the handshake: a blocked node id.
    pub refused_blocked_peer: Counter,
    /// Refused after the handshake: keys other than the ones pinned for that node id.
    pub refused_key_mismatch: Counter,
    /// Refused: a peer whose keys do not prove the id it claims (not derived from them,
    /// or a signing key not bound to its link key), or an address where another id
    /// than the one discovery announced answered.
    pub refused_identity: Counter,
    /// Refused or closed: an id two live nodes hold at once (twins).
    pub refused_twin: Counter,
    pub dials_failed: Counter,
    /// The losing link of a simultaneous dial.
    pub duplicate_links: Counter,
    pub frames_sent: Counter,
    pub frames_received: Counter,
    /// Messages that failed to decrypt (forged, corrupted or replayed): dropped.
    pub frames_undecryptable: Counter,
    pub frames_malformed: Counter,
    /// Frames that waited for the link's inbound budget (a peer sending too fast).
    pub frames_throttled: Counter,
    /// Envelopes that failed verification (size, signature, fields, sender, receiver):
    /// dropped unanswered.
    pub envelopes_dropped: Counter,
    /// Envelopes refused with a `Reject`: an unknown kind, a bad payload, or a change
    /// the store refused (a forged or outsider's group upsert, an unknown group, a
    /// non-member's message).
    pub envelopes_rejected: Counter,
    /// Statements refused as forged: a group change or message its author did not
    /// sign, a change its signer may not make, a known message id with other content.
    pub envelopes_forged: Counter,
    /// Envelopes left unanswered: their sender is over a per-peer quota.
    pub envelopes_over_quota: Counter,
}

impl Counters {
    pub fn snapshot(&self) -> api_types::TransportCounters {
        api_types::TransportCounters {
            links_accepted: self.links_accepted.get(),
            links_dialled: self.links_dialled.get(),
            links_closed: self.links_closed.get(),
            refused_address: self.refused_address.get(),
            refused_capacity: self.refused_capacity.get(),
            refused_rate: self.refused_rate.get(),
            handshakes_evicted: self.handshakes_evicted.get(),
            dials_deferred: self.dials_deferred.get(),
            handshake_failed: self.handshake_failed.get(),
            refused_blocked_peer: self.refused_blocked_peer.get(),
            refused_key_mismatch: self.refused_key_mismatch.get(),
            refused_identity: self.refused_identity.get(),
            refused_twin: self.refused_twin.get(),
            dials_failed: self.dials_failed.get(),
            duplicate_links: self.duplicate_links.get(),
            frames_sent: self.frames_sent.get(),
            frames_received: self.frames_received.get(),
            frames_undecryptable: self.frames_undecryptable.get(),
            frames_malformed: self.frames_malformed.get(),
            envelopes_dropped: self.envelopes_dropped.get(),
            envelopes_rejected: self.envelopes_rejected.get(),
            envelopes_forged: self.envelopes_forged.get(),
            envelopes_over_quota: self.envelopes_over_quota.get(),
            frames_throttled: self.frames_throttled.get(),
            links_up: 0,
        }
    }
}
