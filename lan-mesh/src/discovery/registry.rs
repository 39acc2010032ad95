//! The peer registry: who is out there and whether they are online. A pure state
//! machine: every input carries `now`, every change comes back as `PeerEvent`s, and the
//! runtime decides what to do with them (publish, persist, answer).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_types::{NodeId, Presence};
use serde::Serialize;

use super::packet::{InstanceId, Packet, PacketKind, PublicKey, UnixMillis};

/// What the rest of the node sees of a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub node_id: NodeId,
    pub display_name: String,
    /// Where its discovery packets come from (ip:discovery port).
    pub discovery_addr: Option<SocketAddr>,
    /// Where its transport listens (same IP, its announced listen port).
    pub listen_addr: Option<SocketAddr>,
    #[serde(skip)]
    pub instance_id: Option<InstanceId>,
    #[serde(skip)]
    pub public_key: Option<PublicKey>,
    pub online: bool,
    pub last_seen_at: Option<UnixMillis>,
    pub blocked: bool,
    /// Its clock minus ours, in milliseconds (positive = it is ahead), measured from its
    /// packets' timestamps. Updated when it moves by [`OFFSET_REPORT_STEP_MS`] or more,
    /// so a few milliseconds of network jitter do not make a peer "change".
    pub clock_offset_ms: Option<i64>,
    /// What its user shows (`online`, `away`, `busy`), from its latest packet; an
    /// older node that announces nothing counts as `online`. Meaningful while `online`.
    pub presence: Presence,
}

impl Peer {
    fn unseen(node_id: NodeId) -> Self {
        Peer {
            node_id,
            display_name: String::new(),
            discovery_addr: None,
            listen_addr: None,
            instance_id: None,
            public_key: None,
            online: false,
            last_seen_at: None,
            blocked: false,
            clock_offset_ms: None,
            presence: Presence::Online,
        }
    }
}

/// How far the measured offset must move before the peer's record (and its events)
/// change: well above LAN jitter, well below the one-minute warning threshold.
pub const OFFSET_REPORT_STEP_MS: i64 = 500;
/// Offset samples kept per peer. A packet's one-way delay (network, our queue) only
/// ever makes its timestamp look older, so the largest recent sample is the best
/// estimate; a few samples ride out one delayed packet.
const OFFSET_SAMPLES: usize = 4;

/// The recent `ts - now` samples of one peer.
#[derive(Debug, Default)]
struct OffsetSamples {
    recent: std::collections::VecDeque<i64>,
}

impl OffsetSamples {
    fn add(&mut self, sample: i64) -> i64 {
        if self.recent.len() == OFFSET_SAMPLES {
            self.recent.pop_front();
        }
        self.recent.push_back(sample);
        self.recent.iter().copied().max().unwrap_or(sample)
    }
}

fn offset_sample(ts: UnixMillis, now: UnixMillis) -> i64 {
    let ts = i64::try_from(ts.0).unwrap_or(i64::MAX);
    let now = i64::try_from(now.0).unwrap_or(i64::MAX);
    ts.saturating_sub(now)
}

/// What changed in an `Updated` event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerChanges {
    pub address: bool,
    pub display_name: bool,
    pub listen_port: bool,
    /// A new instance id: the peer restarted, so links to it are stale.
    pub restarted: bool,
    pub public_key: bool,
    /// Its clock offset moved (by at least `OFFSET_REPORT_STEP_MS`).
    pub clock_offset: bool,
    /// Its user's presence changed (online / away / busy).
    pub presence: bool,
}

impl PeerChanges {
    fn any(&self) -> bool {
        self.address
            || self.display_name
            || self.listen_port
            || self.restarted
            || self.public_key
            || self.clock_offset
            || self.presence
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineReason {
    /// It said goodbye.
    Goodbye,
    /// Nothing heard for the peer TTL.
    Expired,
    /// A settings change (subnets, secret) put it out of reach.
    Excluded,
    /// A sighting never proven on a link, dropped to make room for a newer one
    /// (see [`MAX_SIGHTINGS`]).
    Evicted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Online(Peer),
    Updated {
        peer: Peer,
        changes: PeerChanges,
    },
    Offline {
        peer: Peer,
        reason: OfflineReason,
    },
    /// Hidden and silenced until unblocked.
    Blocked(NodeId),
    /// Visible again (offline until it announces itself).
    Unblocked(Peer),
    /// Removed on request; it comes back if it announces itself again.
    Forgotten(NodeId),
}

impl PeerEvent {
    pub fn node_id(&self) -> &NodeId {
        match self {
            PeerEvent::Online(p)
            | PeerEvent::Updated { peer: p, .. }
            | PeerEvent::Offline { peer: p, .. }
            | PeerEvent::Unblocked(p) => &p.node_id,
            PeerEvent::Blocked(id) | PeerEvent::Forgotten(id) => id,
        }
    }
}

#[derive(Debug)]
struct Entry {
    peer: Peer,
    /// When last heard, while online (for the TTL).
    last_heard: Option<Instant>,
    /// For a sighting (not confirmed, not blocked): its key in the eviction order,
    /// kept while it is offline too.
    seen: Option<Instant>,
    /// For an offline sighting: when it went offline (its key in `gone`).
    gone_at: Option<Instant>,
    offsets: OffsetSamples,
}

/// Peers heard in discovery but never proven on a link (nor remembered from an earlier
/// run, nor chosen by the user) that are kept at once, online or offline. A discovery
/// tag proves only the secret, so anyone with it — anyone at all on an open LAN — can
/// announce fresh ids; they live here, in memory only, and the least recently heard is
/// dropped for a newcomer. Four times a large office segment (256 desktops), so no real
/// colleague is ever pushed out by another.
pub const MAX_SIGHTINGS: usize = 1024;

#[derive(Debug)]
pub struct PeerRegistry {
    ttl: Duration,
    peers: HashMap<NodeId, Entry>,
    blocked: HashSet<NodeId>,
    /// Ids proven on a link, or remembered from an earlier run (which only linked
    /// peers reach): the peers worth persisting, never evicted.
    confirmed: HashSet<NodeId>,
    /// The entries neither confirmed nor blocked, by when they were last heard: the
    /// eviction order, O(log n) per packet.
    sightings: BTreeSet<(Instant, NodeId)>,
    /// Every online entry by when it was last heard (`last_heard`): expiry looks at
    /// the due ones only, and the next expiry is the first, instead of a scan of every
    /// peer each time the runtime handles a datagram.
    heard: BTreeSet<(Instant, NodeId)>,
    /// Offline sightings by when they went offline: listed for one TTL more (a
    /// colleague who just left or is restarting is still shown), then forgotten, so
    /// made-up ids do not stay listed after a flood.
    gone: BTreeSet<(Instant, NodeId)>,
    max_sightings: usize,
    evicted: u64,
}

impl PeerRegistry {
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, MAX_SIGHTINGS)
    }

    /// A registry keeping at most `max_sightings` unconfirmed peers (tests use small
    /// ones).
    pub fn with_capacity(ttl: Duration, max_sightings: usize) -> Self {
        PeerRegistry {
            ttl,
            peers: HashMap::new(),
            blocked: HashSet::new(),
            confirmed: HashSet::new(),
            sightings: BTreeSet::new(),
            heard: BTreeSet::new(),
            gone: BTreeSet::new(),
            max_sightings: max_sightings.max(1),
            evicted: 0,
        }
    }

    /// Whether `id` was proven on a link or remembered: only those are persisted.
    pub fn is_confirmed(&self, id: &NodeId) -> bool {
        self.confirmed.contains(id)
    }

    /// Sightings dropped for newer ones since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Unconfirmed peers held now (at most [`MAX_SIGHTINGS`]).
    pub fn sightings(&self) -> usize {
        self.sightings.len()
    }

    /// Marks `id` as proven on a link: from now on it is persisted and never evicted.
    /// Returns its current record when it is listed and was not confirmed yet, for the
    /// caller to persist.
    pub fn confirm(&mut self, id: &NodeId) -> Option<Peer> {
        if self.blocked.contains(id) || !self.confirmed.insert(id.clone()) {
            return None;
        }
        let entry = self.peers.get_mut(id)?;
        if let Some(seen) = entry.seen.take() {
            self.sightings.remove(&(seen, id.clone()));
        }
        if let Some(gone) = entry.gone_at.take() {
            self.gone.remove(&(gone, id.clone()));
        }
        Some(entry.peer.clone())
    }

    /// Makes room for one more sighting: drops the least recently heard one.
    fn evict_for_newcomer(&mut self) -> Vec<PeerEvent> {
        let mut events = Vec::new();
        while self.sightings.len() >= self.max_sightings {
            let Some((_, id)) = self.sightings.pop_first() else {
                break;
            };
            if let Some(mut entry) = self.peers.remove(&id) {
                self.evicted += 1;
                if let Some(heard) = entry.last_heard {
                    self.heard.remove(&(heard, id.clone()));
                }
                if let Some(gone) = entry.gone_at {
                    self.gone.remove(&(gone, id.clone()));
                }
                if entry.peer.online {
                    entry.peer.online = false;
                    events.push(PeerEvent::Offline {
                        peer: entry.peer,
                        reason: OfflineReason::Evicted,
                    });
                }
                events.push(PeerEvent::Forgotten(id));
            }
        }
        events
    }

    /// `id` just went offline: a sighting starts its last TTL in the list.
    fn went_offline(&mut self, id: &NodeId, now: Instant) {
        if let Some(entry) = self.peers.get_mut(id) {
            if entry.seen.is_some() && entry.gone_at.is_none() {
                entry.gone_at = Some(now);
                self.gone.insert((now, id.clone()));
            }
        }
    }

    pub fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    /// Adds peers remembered from an earlier run (all offline); they are contacts the
    /// user knows, so they are listed before they announce themselves.
    pub fn restore(&mut self, peers: impl IntoIterator<Item = Peer>) {
        for mut peer in peers {
            peer.online = false;
            peer.blocked = self.blocked.contains(&peer.node_id);
            self.confirmed.insert(peer.node_id.clone());
            self.peers.entry(peer.node_id.clone()).or_insert(Entry {
                peer,
                last_heard: None,
                seen: None,
                gone_at: None,
                offsets: OffsetSamples::default(),
            });
        }
    }

    /// Applies an accepted packet. Blocked ids are ignored here too, so a filter bug
    /// cannot resurrect a blocked peer. Stragglers of a peer's previous run never get
    /// here: replay protection refuses instances the peer has replaced (and judges
    /// nothing by timestamps, which a peer's clock may put anywhere).
    pub fn observe(
        &mut self,
        packet: &Packet,
        source: SocketAddr,
        now: Instant,
        now_unix: UnixMillis,
    ) -> Vec<PeerEvent> {
        let id = &packet.node_id;
        if self.blocked.contains(id) {
            return Vec::new();
        }
        if packet.kind == PacketKind::Goodbye {
            return self.goodbye(packet, now);
        }
        let confirmed = self.confirmed.contains(id);
        let mut evicted = Vec::new();
        let in_sightings = self.peers.get(id).is_some_and(|e| e.seen.is_some());
        if !confirmed && !in_sightings {
            evicted = self.evict_for_newcomer();
        }
        let entry = self.peers.entry(id.clone()).or_insert_with(|| Entry {
            peer: Peer::unseen(id.clone()),
            last_heard: None,
            seen: None,
            gone_at: None,
            offsets: OffsetSamples::default(),
        });
        if !confirmed {
            if let Some(seen) = entry.seen {
                self.sightings.remove(&(seen, id.clone()));
            }
            self.sightings.insert((now, id.clone()));
            entry.seen = Some(now);
        }
        let restarted = entry
            .peer
            .instance_id
            .is_some_and(|i| i != packet.instance_id);
        if restarted {
            // Its clock may have been set since (that is often why it restarted).
            entry.offsets = OffsetSamples::default();
        }
        let offset = entry.offsets.add(offset_sample(packet.ts, now_unix));
        let peer = &mut entry.peer;
        let offset_moved = peer
            .clock_offset_ms
            .is_none_or(|o| (o - offset).abs() >= OFFSET_REPORT_STEP_MS);
        let listen_addr = SocketAddr::new(source.ip(), packet.listen_port);
        let presence = packet.presence.unwrap_or(Presence::Online);
        let changes = PeerChanges {
            address: peer.discovery_addr.is_some_and(|a| a != source),
            display_name: !peer.display_name.is_empty() && peer.display_name != packet.display_name,
            listen_port: peer
                .listen_addr
                .is_some_and(|a| a.port() != packet.listen_port),
            restarted,
            public_key: peer.public_key.is_some() && peer.public_key != packet.public_key,
            clock_offset: peer.clock_offset_ms.is_some() && offset_moved,
            presence: peer.presence != presence,
        };
        if offset_moved {
            peer.clock_offset_ms = Some(offset);
        }
        let was_online = peer.online;
        peer.display_name.clone_from(&packet.display_name);
        peer.discovery_addr = Some(source);
        peer.listen_addr = Some(listen_addr);
        peer.instance_id = Some(packet.instance_id);
        peer.public_key = packet.public_key;
        peer.presence = presence;
        peer.online = true;
        peer.last_seen_at = Some(peer.last_seen_at.map_or(now_unix, |t| t.max(now_unix)));
        if let Some(before) = entry.last_heard.replace(now) {
            self.heard.remove(&(before, id.clone()));
        }
        self.heard.insert((now, id.clone()));
        if let Some(gone) = entry.gone_at.take() {
            self.gone.remove(&(gone, id.clone()));
        }
        let snapshot = peer.clone();
        if !was_online {
            evicted.push(PeerEvent::Online(snapshot));
        } else if changes.any() {
            evicted.push(PeerEvent::Updated {
                peer: snapshot,
                changes,
            });
        }
        evicted
    }

    fn goodbye(&mut self, packet: &Packet, now: Instant) -> Vec<PeerEvent> {
        let Some(entry) = self.peers.get_mut(&packet.node_id) else {
            return Vec::new();
        };
        // A late goodbye from the previous instance must not take the new one offline.
        if !entry.peer.online || entry.peer.instance_id != Some(packet.instance_id) {
            return Vec::new();
        }
        entry.peer.online = false;
        if let Some(heard) = entry.last_heard.take() {
            self.heard.remove(&(heard, packet.node_id.clone()));
        }
        let event = PeerEvent::Offline {
            peer: entry.peer.clone(),
            reason: OfflineReason::Goodbye,
        };
        self.went_offline(&packet.node_id, now);
        vec![event]
    }

    /// Takes offline every peer not heard from for the TTL.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerEvent> {
        let mut events = Vec::new();
        // Least recently heard first: only the due ones are looked at.
        while let Some((heard, id)) = self.heard.first().cloned() {
            if now.saturating_duration_since(heard) < self.ttl {
                break;
            }
            self.heard.pop_first();
            if let Some(entry) = self.peers.get_mut(&id) {
                entry.last_heard = None;
                if entry.peer.online {
                    entry.peer.online = false;
                    events.push(PeerEvent::Offline {
                        peer: entry.peer.clone(),
                        reason: OfflineReason::Expired,
                    });
                }
            }
            self.went_offline(&id, now);
        }
        // Offline sightings whose last TTL in the list is over.
        while let Some((gone, id)) = self.gone.first().cloned() {
            if now.saturating_duration_since(gone) < self.ttl {
                break;
            }
            self.gone.pop_first();
            if let Some(entry) = self.peers.remove(&id) {
                if let Some(seen) = entry.seen {
                    self.sightings.remove(&(seen, id.clone()));
                }
                events.push(PeerEvent::Forgotten(id));
            }
        }
        if !events.is_empty() {
            crate::spare_room::shrink_if_sparse(&mut self.peers);
        }
        events
    }

    /// When the next peer would expire, for the runtime's timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        let expiry = self.heard.first().map(|(t, _)| *t);
        let forgetting = self.gone.first().map(|(t, _)| *t);
        expiry
            .into_iter()
            .chain(forgetting)
            .min()
            .map(|t| t + self.ttl)
    }

    /// Takes offline the online peers whose address `still_reachable` rejects.
    pub fn exclude(
        &mut self,
        still_reachable: impl Fn(&Peer) -> bool,
        now: Instant,
    ) -> Vec<PeerEvent> {
        let mut events = Vec::new();
        let mut gone = Vec::new();
        for entry in self.peers.values_mut() {
            if entry.peer.online && !still_reachable(&entry.peer) {
                entry.peer.online = false;
                if let Some(heard) = entry.last_heard.take() {
                    self.heard.remove(&(heard, entry.peer.node_id.clone()));
                }
                gone.push(entry.peer.node_id.clone());
                events.push(PeerEvent::Offline {
                    peer: entry.peer.clone(),
                    reason: OfflineReason::Excluded,
                });
            }
        }
        for id in gone {
            self.went_offline(&id, now);
        }
        events
    }

    pub fn block(&mut self, id: &NodeId) -> Vec<PeerEvent> {
        if !self.blocked.insert(id.clone()) {
            return Vec::new();
        }
        if let Some(entry) = self.peers.get_mut(id) {
            entry.peer.online = false;
            entry.peer.blocked = true;
            if let Some(heard) = entry.last_heard.take() {
                self.heard.remove(&(heard, id.clone()));
            }
            if let Some(seen) = entry.seen.take() {
                self.sightings.remove(&(seen, id.clone()));
            }
            if let Some(gone) = entry.gone_at.take() {
                self.gone.remove(&(gone, id.clone()));
            }
        }
        vec![PeerEvent::Blocked(id.clone())]
    }

    pub fn unblock(&mut self, id: &NodeId) -> Vec<PeerEvent> {
        if !self.blocked.remove(id) {
            return Vec::new();
        }
        let entry = self.peers.entry(id.clone()).or_insert_with(|| Entry {
            peer: Peer::unseen(id.clone()),
            last_heard: None,
            seen: None,
            gone_at: None,
            offsets: OffsetSamples::default(),
        });
        entry.peer.blocked = false;
        vec![PeerEvent::Unblocked(entry.peer.clone())]
    }

    /// Makes the blocked set equal to `ids`, emitting the differences.
    pub fn set_blocked(&mut self, ids: &HashSet<NodeId>) -> Vec<PeerEvent> {
        let to_unblock: Vec<NodeId> = self.blocked.difference(ids).cloned().collect();
        let mut events = Vec::new();
        for id in to_unblock {
            events.extend(self.unblock(&id));
        }
        for id in ids {
            events.extend(self.block(id));
        }
        events
    }

    pub fn forget(&mut self, id: &NodeId) -> Vec<PeerEvent> {
        self.confirmed.remove(id);
        match self.peers.remove(id) {
            Some(entry) => {
                if let Some(seen) = entry.seen {
                    self.sightings.remove(&(seen, id.clone()));
                }
                if let Some(heard) = entry.last_heard {
                    self.heard.remove(&(heard, id.clone()));
                }
                if let Some(gone) = entry.gone_at {
                    self.gone.remove(&(gone, id.clone()));
                }
                vec![PeerEvent::Forgotten(id.clone())]
            }
            None => Vec::new(),
        }
    }

    pub fn is_blocked(&self, id: &NodeId) -> bool {
        self.blocked.contains(id)
    }

    pub fn get(&self, id: &NodeId) -> Option<&Peer> {
        self.peers.get(id).map(|e| &e.peer)
    }

    /// Every known peer, blocked ones included (flagged), sorted by id for stable output.
    pub fn peers(&self) -> Vec<Peer> {
        let mut out: Vec<Peer> = self.peers.values().map(|e| e.peer.clone()).collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }

    /// How many peers are online, in O(1).
    pub fn online_count(&self) -> usize {
        self.heard.len()
    }

    pub fn online(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values().map(|e| &e.peer).filter(|p| p.online)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::packet::tests::{node, sample};
    use proptest::prelude::*;

    const TTL: Duration = Duration::from_secs(45);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn pkt(kind: PacketKind, n: u128, instance: u64, ts: u64) -> Packet {
        let mut p = sample(kind);
        p.node_id = node(n);
        p.instance_id = InstanceId(instance);
        p.ts = UnixMillis(ts);
        p
    }

    struct Fixture {
        reg: PeerRegistry,
        t0: Instant,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                reg: PeerRegistry::new(TTL),
                t0: Instant::now(),
            }
        }
        fn see(&mut self, p: &Packet, from: &str, at_s: u64) -> Vec<PeerEvent> {
            let now = self.t0 + Duration::from_secs(at_s);
            self.reg.observe(p, addr(from), now, p.ts)
        }
        fn expire(&mut self, at_s: u64) -> Vec<PeerEvent> {
            self.reg.expire(self.t0 + Duration::from_secs(at_s))
        }
    }

    #[test]
    fn first_packet_brings_a_peer_online_once() {
        let mut f = Fixture::new();
        let ev = f.see(&pkt(PacketKind::Hello, 2, 1, 10), "10.0.0.2:19124", 0);
        assert!(
            matches!(&ev[..], [PeerEvent::Online(p)] if p.listen_addr == Some(addr("10.0.0.2:19123")))
        );
        assert!(f
            .see(&pkt(PacketKind::Heartbeat, 2, 1, 11), "10.0.0.2:19124", 1)
            .is_empty());
        assert_eq!(f.reg.online().count(), 1);
    }

    #[test]
    fn a_presence_change_is_an_update_and_an_older_sender_is_online() {
        let mut f = Fixture::new();
        // No extension (an older node): online.
        let ev = f.see(&pkt(PacketKind::Hello, 2, 1, 10), "10.0.0.2:19124", 0);
        assert!(matches!(&ev[..], [PeerEvent::Online(p)] if p.presence == Presence::Online));
        let mut busy = pkt(PacketKind::Heartbeat, 2, 1, 11);
        busy.presence = Some(Presence::Busy);
        let ev = f.see(&busy, "10.0.0.2:19124", 1);
        assert!(matches!(
            &ev[..],
            [PeerEvent::Updated { peer, changes }] if changes.presence && peer.presence == Presence::Busy
        ));
        // The same again: nothing to tell.
        busy.seq = Some(2);
        assert!(f.see(&busy, "10.0.0.2:19124", 2).is_empty());
        let mut back = pkt(PacketKind::Heartbeat, 2, 1, 12);
        back.presence = Some(Presence::Online);
        let ev = f.see(&back, "10.0.0.2:19124", 3);
        assert!(matches!(&ev[..], [PeerEvent::Updated { changes, .. }] if changes.presence));
    }

    #[test]
    fn silence_for_the_ttl_takes_a_peer_offline() {
        let mut f = Fixture::new();
        f.see(&pkt(PacketKind::Hello, 2, 1, 10), "10.0.0.2:19124", 0);
        f.see(&pkt(PacketKind::Heartbeat, 2, 1, 20), "10.0.0.2:19124", 15);
        assert_eq!(f.reg.next_expiry(), Some(f.t0 + Duration::from_secs(60)));
        assert!(f.expire(59).is_empty());
        let ev = f.expire(60);
        assert!(matches!(
            &ev[..],
            [PeerEvent::Offline {
                reason: OfflineReason::Expired,
                ..
            }]
        ));
        assert!(f.expire(100).is_empty(), "offline is reported once");
        // A sighting (never linked) stays listed offline for one TTL more.
        assert_eq!(f.reg.next_expiry(), Some(f.t0 + Duration::from_secs(105)));
        // A later heartbeat brings it back.
        let ev = f.see(&pkt(PacketKind::Heartbeat, 2, 1, 30), "10.0.0.2:19124", 101);
        assert!(matches!(&ev[..], [PeerEvent::Online(_)]));
        // Silent again: offline at 146, forgotten at 191. A contact would stay.
        assert_eq!(f.expire(146).len(), 1);
        assert!(f.reg.get(&node(2)).is_some_and(|p| !p.online));
        let ev = f.expire(191);
        assert!(
            matches!(&ev[..], [PeerEvent::Forgotten(id)] if *id == node(2)),
            "{ev:?}"
        );
        assert_eq!((f.reg.sightings(), f.reg.next_expiry()), (0, None));
        f.see(&pkt(PacketKind::Heartbeat, 2, 1, 40), "10.0.0.2:19124", 200);
        f.reg.confirm(&node(2));
        assert_eq!(f.expire(245).len(), 1);
        assert!(f.expire(400).is_empty());
        assert!(f.reg.get(&node(2)).is_some_and(|p| !p.online));
    }

    #[test]
    fn goodbye_is_immediate_but_only_from_the_current_instance() {
        let mut f = Fixture::new();
        f.see(&pkt(PacketKind::Hello, 2, 1, 10), "10.0.0.2:19124", 0);
        assert!(f
            .see(&pkt(PacketKind::Goodbye, 2, 0, 11), "10.0.0.2:19124", 1)
            .is_empty());
        let ev = f.see(&pkt(PacketKind::Goodbye, 2, 1, 12), "10.0.0.2:19124", 1);
        assert!(matches!(
            &ev[..],
            [PeerEvent::Offline {
                reason: OfflineReason::Goodbye,
                ..
            }]
        ));
        assert!(f
            .see(&pkt(PacketKind::Goodbye, 2, 1, 13), "10.0.0.2:19124", 1)
            .is_empty());
        assert!(f
            .see(&pkt(PacketKind::Goodbye, 9, 1, 13), "10.0.0.9:19124", 1)
            .is_empty());
    }

    #[test]
    fn changes_and_restarts_are_reported() {
        let mut f = Fixture::new();
        f.see(&pkt(PacketKind::Hello, 2, 1, 10), "10.0.0.2:19124", 0);
        let mut renamed = pkt(PacketKind::Heartbeat, 2, 1, 11);
        renamed.display_name = "Li Si".into();
        let ev = f.see(&renamed, "10.0.0.3:19124", 1);
        let [PeerEvent::Updated { changes, peer }] = &ev[..] else {
            panic!("{ev:?}")
        };
        assert!(changes.address && changes.display_name && !changes.restarted);
        assert_eq!(peer.display_name, "Li Si");
        let ev = f.see(&pkt(PacketKind::Hello, 2, 2, 12), "10.0.0.3:19124", 2);
        let [PeerEvent::Updated { changes, .. }] = &ev[..] else {
            panic!("{ev:?}")
        };
        assert!(changes.restarted && changes.display_name);
        assert_eq!(
            f.reg.get(&node(2)).unwrap().instance_id,
            Some(InstanceId(2))
        );
    }

    #[test]
    fn a_restarted_peer_is_listed_whatever_its_clock_says() {
        let mut f = Fixture::new();
        f.see(
            &pkt(PacketKind::Hello, 2, 1, 50_000_000),
            "10.0.0.2:19124",
            0,
        );
        // Restarted with its clock set back by hours: still the same peer, now current.
        let ev = f.see(&pkt(PacketKind::Hello, 2, 2, 10), "10.0.0.2:19124", 1);
        assert!(matches!(&ev[..], [PeerEvent::Updated { changes, .. }] if changes.restarted));
        assert!(f.reg.get(&node(2)).unwrap().online);
    }

    #[test]
    fn the_clock_offset_is_measured_and_reported_when_it_moves() {
        let mut reg = PeerRegistry::new(TTL);
        let t0 = Instant::now();
        let now = UnixMillis(1_000_000_000);
        let at = |ms: u64| pkt(PacketKind::Heartbeat, 2, 1, ms);
        // Three hours ahead.
        let ev = reg.observe(&at(now.0 + 10_800_000), addr("10.0.0.2:19124"), t0, now);
        assert!(matches!(&ev[..], [PeerEvent::Online(p)] if p.clock_offset_ms == Some(10_800_000)));
        // A packet delayed by 40 ms does not lower the estimate; jitter is no change.
        let later = UnixMillis(now.0 + 1_000);
        assert!(reg
            .observe(
                &at(now.0 + 10_800_000 + 960),
                addr("10.0.0.2:19124"),
                t0,
                later
            )
            .is_empty());
        assert_eq!(reg.get(&node(2)).unwrap().clock_offset_ms, Some(10_800_000));
        // Its clock is fixed: after the older samples age out, the new offset shows.
        let mut events = Vec::new();
        for i in 0..4u64 {
            let t = UnixMillis(now.0 + 2_000 + i);
            events.extend(reg.observe(&at(t.0 - 5), addr("10.0.0.2:19124"), t0, t));
        }
        assert!(
            matches!(&events[..], [PeerEvent::Updated { changes, .. }] if changes.clock_offset)
        );
        assert_eq!(reg.get(&node(2)).unwrap().clock_offset_ms, Some(-5));
    }

    #[test]
    fn blocked_peers_are_hidden_and_not_re_added() {
        let mut f = Fixture::new();
        f.see(&pkt(PacketKind::Hello, 2, 1, 10), "10.0.0.2:19124", 0);
        assert_eq!(f.reg.block(&node(2)), vec![PeerEvent::Blocked(node(2))]);
        assert!(f.reg.block(&node(2)).is_empty());
        assert!(f
            .see(&pkt(PacketKind::Hello, 2, 1, 11), "10.0.0.2:19124", 1)
            .is_empty());
        let p = f.reg.get(&node(2)).unwrap();
        assert!(p.blocked && !p.online);
        assert_eq!(f.reg.online().count(), 0);
        assert_eq!(f.reg.next_expiry(), None);
        let ev = f.reg.unblock(&node(2));
        assert!(matches!(&ev[..], [PeerEvent::Unblocked(p)] if !p.blocked && !p.online));
        let ev = f.see(&pkt(PacketKind::Hello, 2, 1, 12), "10.0.0.2:19124", 2);
        assert!(matches!(&ev[..], [PeerEvent::Online(_)]));
    }

    #[test]
    fn set_blocked_emits_only_differences() {
        let mut reg = PeerRegistry::new(TTL);
        let set: HashSet<NodeId> = [node(2), node(3)].into();
        assert_eq!(reg.set_blocked(&set).len(), 2);
        assert!(reg.set_blocked(&set).is_empty());
        let ev = reg.set_blocked(&[node(3)].into());
        assert!(matches!(&ev[..], [PeerEvent::Unblocked(p)] if p.node_id == node(2)));
    }

    #[test]
    fn restored_peers_are_offline_contacts() {
        let mut reg = PeerRegistry::new(TTL);
        reg.block(&node(3));
        let mut p = Peer::unseen(node(2));
        p.online = true;
        reg.restore([p, Peer::unseen(node(3))]);
        let all = reg.peers();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|p| !p.online));
        assert!(reg.get(&node(3)).unwrap().blocked);
        assert_eq!(reg.forget(&node(2)), vec![PeerEvent::Forgotten(node(2))]);
        assert!(reg.forget(&node(2)).is_empty());
    }

    #[test]
    fn exclusion_takes_unreachable_peers_offline() {
        let mut f = Fixture::new();
        f.see(&pkt(PacketKind::Hello, 2, 1, 10), "10.0.0.2:19124", 0);
        f.see(&pkt(PacketKind::Hello, 3, 1, 10), "10.0.1.3:19124", 0);
        let ev = f.reg.exclude(
            |p| {
                p.discovery_addr
                    .is_some_and(|a| a.ip().to_string().starts_with("10.0.0."))
            },
            f.t0,
        );
        assert!(
            matches!(&ev[..], [PeerEvent::Offline { reason: OfflineReason::Excluded, peer }] if peer.node_id == node(3))
        );
    }

    /// `reg` hears a packet of `kind` from node `n`, `at_s` seconds after `t0`.
    fn hear(
        reg: &mut PeerRegistry,
        t0: Instant,
        kind: PacketKind,
        n: u128,
        at_s: u64,
    ) -> Vec<PeerEvent> {
        let p = pkt(kind, n, 1, at_s);
        let at = t0 + Duration::from_secs(at_s);
        reg.observe(&p, addr("10.0.0.9:19124"), at, p.ts)
    }

    #[test]
    fn sightings_are_bounded_and_the_least_recently_heard_goes_first() {
        let mut reg = PeerRegistry::with_capacity(TTL, 3);
        let t0 = Instant::now();
        let see = |reg: &mut PeerRegistry, n, at_s| hear(reg, t0, PacketKind::Heartbeat, n, at_s);
        for n in 1..=3 {
            see(&mut reg, n, n as u64);
        }
        // Node 1 is heard again: node 2 is now the least recently heard.
        assert!(see(&mut reg, 1, 4).is_empty());
        let ev = see(&mut reg, 4, 5);
        assert!(
            matches!(&ev[..], [PeerEvent::Offline { reason: OfflineReason::Evicted, peer }, PeerEvent::Forgotten(gone), PeerEvent::Online(new)]
                if peer.node_id == node(2) && *gone == node(2) && new.node_id == node(4)),
            "{ev:?}"
        );
        assert!(
            reg.get(&node(2)).is_none(),
            "an evicted sighting is not listed"
        );
        assert_eq!((reg.sightings(), reg.evicted()), (3, 1));
    }

    #[test]
    fn the_table_gives_its_room_back_once_a_flood_of_sightings_is_forgotten() {
        let mut reg = PeerRegistry::with_capacity(TTL, 1024);
        let t0 = Instant::now();
        for n in 1..=2000u128 {
            hear(&mut reg, t0, PacketKind::Heartbeat, n, 0);
        }
        let room = reg.peers.capacity();
        assert!(room >= 1024, "{room}");
        // Offline after a TTL, forgotten a TTL later.
        let mut at = t0;
        for _ in 0..4 {
            at += TTL;
            reg.expire(at);
        }
        assert!(reg.peers().is_empty(), "{} left", reg.peers().len());
        assert!(
            reg.peers.capacity() < room / 8,
            "{} of {room}",
            reg.peers.capacity()
        );
    }

    #[test]
    fn confirmed_peers_are_never_evicted_and_do_not_count_as_sightings() {
        let mut reg = PeerRegistry::with_capacity(TTL, 2);
        let t0 = Instant::now();
        let see = |reg: &mut PeerRegistry, n, at_s| hear(reg, t0, PacketKind::Heartbeat, n, at_s);
        see(&mut reg, 1, 0);
        assert!(reg.confirm(&node(1)).is_some_and(|p| p.node_id == node(1)));
        assert!(reg.confirm(&node(1)).is_none(), "confirmed once");
        assert!(reg.is_confirmed(&node(1)));
        for n in 2..50 {
            see(&mut reg, n, n as u64);
        }
        assert!(reg.get(&node(1)).is_some_and(|p| p.online));
        assert_eq!(reg.sightings(), 2);
        assert_eq!(reg.evicted(), 46);
        // A confirmed peer heard again does not enter the eviction order either.
        see(&mut reg, 1, 60);
        assert_eq!(reg.sightings(), 2);
    }

    #[test]
    fn offline_sightings_stay_listed_and_bounded_and_forgetting_unconfirms() {
        let mut reg = PeerRegistry::with_capacity(TTL, 2);
        let t0 = Instant::now();
        let see = |reg: &mut PeerRegistry, kind, n, at_s| hear(reg, t0, kind, n, at_s);
        see(&mut reg, PacketKind::Hello, 2, 0);
        see(&mut reg, PacketKind::Hello, 3, 1);
        see(&mut reg, PacketKind::Goodbye, 3, 2);
        assert!(
            reg.get(&node(3)).is_some_and(|p| !p.online),
            "listed offline"
        );
        assert_eq!(reg.sightings(), 2, "an offline sighting still counts");
        // The least recently heard goes first, offline or not; an offline one is
        // simply forgotten.
        let ev = see(&mut reg, PacketKind::Hello, 4, 3);
        assert!(
            matches!(&ev[..], [PeerEvent::Offline { peer, .. }, PeerEvent::Forgotten(_), PeerEvent::Online(_)] if peer.node_id == node(2)),
            "{ev:?}"
        );
        let ev = see(&mut reg, PacketKind::Hello, 5, 4);
        assert!(
            matches!(&ev[..], [PeerEvent::Forgotten(gone), PeerEvent::Online(_)] if *gone == node(3)),
            "{ev:?}"
        );
        // Forgetting unconfirms: the next sighting is a sighting again.
        reg.confirm(&node(4));
        assert_eq!(reg.sightings(), 1);
        reg.forget(&node(4));
        see(&mut reg, PacketKind::Hello, 4, 10);
        assert!(!reg.is_confirmed(&node(4)));
        assert_eq!(reg.sightings(), 2);
    }

    proptest! {
        /// Under any sequence of packets, confirmations, forgets and clock steps:
        /// blocked peers never come online, Online/Offline alternate per peer, `online`
        /// matches the events, sightings stay bounded, and the next expiry (kept in an
        /// index) is the earliest online peer's last packet plus the TTL, as a scan of
        /// every peer finds it.
        #[test]
        fn transitions_stay_consistent(
            steps in prop::collection::vec((0u8..8, 0u128..4, 0u64..3, 0u64..30), 1..200)
        ) {
            let mut reg = PeerRegistry::with_capacity(TTL, 3);
            let t0 = Instant::now();
            let mut now = t0;
            let mut online: HashMap<NodeId, bool> = HashMap::new();
            let mut ts = 0;
            for (action, n, instance, dt) in steps {
                now += Duration::from_secs(dt);
                ts += 1;
                let id = node(n);
                let events = match action {
                    0 => reg.expire(now),
                    1 => reg.block(&id),
                    2 => reg.unblock(&id),
                    3 => reg.observe(&pkt(PacketKind::Goodbye, n, instance, ts), addr("10.0.0.1:1"), now, UnixMillis(ts)),
                    4 => {
                        reg.confirm(&id);
                        Vec::new()
                    }
                    5 => reg.forget(&id),
                    _ => reg.observe(&pkt(PacketKind::Heartbeat, n, instance, ts), addr("10.0.0.1:1"), now, UnixMillis(ts)),
                };
                for e in events {
                    match e {
                        PeerEvent::Online(p) => {
                            prop_assert!(!reg.is_blocked(&p.node_id));
                            prop_assert!(!online.insert(p.node_id, true).unwrap_or(false));
                        }
                        PeerEvent::Offline { peer, .. } => {
                            prop_assert!(online.insert(peer.node_id, false).unwrap_or(false));
                        }
                        PeerEvent::Blocked(id) | PeerEvent::Forgotten(id) => { online.insert(id, false); }
                        _ => {}
                    }
                }
                prop_assert!(reg.sightings() <= 3);
                prop_assert_eq!(reg.online_count(), reg.online().count());
                let scanned = reg
                    .peers
                    .values()
                    .filter_map(|e| if e.peer.online { e.last_heard } else { e.gone_at })
                    .min()
                    .map(|t| t + TTL);
                prop_assert_eq!(reg.next_expiry(), scanned);
                for p in reg.peers() {
                    prop_assert_eq!(p.online, online.get(&p.node_id).copied().unwrap_or(false));
                    prop_assert!(!(p.online && p.blocked));
                }
            }
        }
    }
}
