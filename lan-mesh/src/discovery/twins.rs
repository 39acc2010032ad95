//! Suspecting twins from discovery: one node id announced by two live instances. Pure:
//! every input carries `now`; what it reports is a suspicion for the transport to prove
//! (`Transport::check_identity_at` — a discovery packet is authenticated by the shared
//! secret only, so anyone holding it could announce any id).
//!
//! - Another node: a restart replaces one instance by another once (the old one is
//!   never heard again); twins take turns, heartbeat after heartbeat. So an id is
//!   suspected when packets of two instances have alternated at least twice while both
//!   were heard within `window`.
//! - Our own id from another instance: we are one twin, so one packet suffices.
//!
//! Only packets newer in their instance's own sequence count, so replaying captured
//! packets (even of a retired instance) never makes a suspicion.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_types::NodeId;

use super::packet::{InstanceId, Packet};

/// Ids followed at once; past this, ids heard from one instance only are dropped.
const MAX_IDS: usize = 4096;
/// Instances remembered per id (twins are two; more are triplets, still reported).
const MAX_INSTANCES: usize = 8;

/// One id seemingly held by two live nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinSighting {
    pub node_id: NodeId,
    /// The link addresses the instances announce (their source IP, announced port).
    pub addresses: Vec<SocketAddr>,
    /// This node's own id, announced by another instance.
    pub own: bool,
}

#[derive(Debug, Clone)]
struct InstanceSeen {
    instance: InstanceId,
    listen: SocketAddr,
    max_seq: u64,
    last_heard: Instant,
}

#[derive(Debug, Default)]
struct IdSeen {
    instances: Vec<InstanceSeen>,
    last_instance: Option<InstanceId>,
    /// Changes of instance between consecutive packets while several were live.
    alternations: u32,
    last_report: Option<Instant>,
}

#[derive(Debug)]
pub struct TwinWatch {
    /// How long an instance counts as live after its last packet (the peer TTL).
    window: Duration,
    /// At most one report per id per this (a heartbeat interval).
    report_every: Duration,
    ids: HashMap<NodeId, IdSeen>,
    /// When the table was last swept because it was full: a sweep is linear, so it
    /// runs at most once per `SWEEP_EVERY`, not once per packet of a flood.
    last_sweep: Option<Instant>,
    /// When ids no longer heard were last dropped (see [`TwinWatch::expire`]).
    last_expiry: Option<Instant>,
}

/// The least time between two sweeps of a full table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl TwinWatch {
    pub fn new(window: Duration, report_every: Duration) -> Self {
        TwinWatch {
            window,
            report_every,
            ids: HashMap::new(),
            last_sweep: None,
            last_expiry: None,
        }
    }

    pub fn set_timing(&mut self, window: Duration, report_every: Duration) {
        self.window = window;
        self.report_every = report_every;
    }

    /// Drops the ids none of whose instances was heard within the window (at most once
    /// per `SWEEP_EVERY`: the sweep is linear). Without it, the made-up ids of a flood
    /// would stay until the table is full and a new id sweeps it.
    pub fn expire(&mut self, now: Instant) {
        if self
            .last_expiry
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_expiry = Some(now);
        let window = self.window;
        self.ids.retain(|_, seen| {
            seen.instances
                .iter()
                .any(|i| now.saturating_duration_since(i.last_heard) < window)
        });
        crate::spare_room::shrink_if_sparse(&mut self.ids);
    }

    /// Whether `packet` is newer in its instance's own sequence than anything seen of
    /// that instance (true for an instance not followed): not a replay.
    pub fn advances(&self, packet: &Packet) -> bool {
        self.ids
            .get(&packet.node_id)
            .and_then(|seen| {
                seen.instances
                    .iter()
                    .find(|i| i.instance == packet.instance_id)
            })
            .is_none_or(|i| packet.replay_seq() > i.max_seq)
    }

    /// An authentic packet (its tag verified) from `source`, whatever replay protection
    /// said of it. `own` is this node's id and instance.
    pub fn observe(
        &mut self,
        packet: &Packet,
        source: SocketAddr,
        own: (&NodeId, InstanceId),
        now: Instant,
    ) -> Option<TwinSighting> {
        let listen = SocketAddr::new(source.ip(), packet.listen_port);
        let is_own = &packet.node_id == own.0;
        if is_own && packet.instance_id == own.1 {
            return None;
        }
        if self.ids.len() >= MAX_IDS && !self.ids.contains_key(&packet.node_id) {
            let due = self
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
            if due {
                self.last_sweep = Some(now);
                self.ids.retain(|_, seen| seen.instances.len() > 1);
            }
            if self.ids.len() >= MAX_IDS {
                return None;
            }
        }
        let window = self.window;
        let seen = self.ids.entry(packet.node_id.clone()).or_default();
        seen.instances
            .retain(|i| now.saturating_duration_since(i.last_heard) < window);
        let seq = packet.replay_seq();
        match seen
            .instances
            .iter_mut()
            .find(|i| i.instance == packet.instance_id)
        {
            Some(i) if seq <= i.max_seq => return None,
            Some(i) => {
                i.max_seq = seq;
                i.last_heard = now;
                i.listen = listen;
            }
            None => {
                if seen.instances.len() >= MAX_INSTANCES {
                    return None;
                }
                seen.instances.push(InstanceSeen {
                    instance: packet.instance_id,
                    listen,
                    max_seq: seq,
                    last_heard: now,
                });
            }
        }
        if seen.instances.len() < 2 {
            seen.alternations = 0;
        } else if seen
            .last_instance
            .is_some_and(|last| last != packet.instance_id)
        {
            seen.alternations = seen.alternations.saturating_add(1);
        }
        seen.last_instance = Some(packet.instance_id);
        let suspected = is_own || (seen.instances.len() >= 2 && seen.alternations >= 2);
        let due = seen
            .last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= self.report_every);
        if !(suspected && due) {
            return None;
        }
        seen.last_report = Some(now);
        // For our own id the list holds only the other instances (ours returned above).
        let mut addresses: Vec<SocketAddr> = seen.instances.iter().map(|i| i.listen).collect();
        addresses.sort();
        addresses.dedup();
        Some(TwinSighting {
            node_id: packet.node_id.clone(),
            addresses,
            own: is_own,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::packet::tests::{node, sample};
    use crate::discovery::packet::PacketKind;

    const WINDOW: Duration = Duration::from_secs(3);
    const EVERY: Duration = Duration::from_secs(1);

    fn pkt(n: u128, instance: u64, seq: u64) -> Packet {
        let mut p = sample(PacketKind::Heartbeat);
        p.node_id = node(n);
        p.instance_id = InstanceId(instance);
        p.seq = Some(seq);
        p
    }

    fn src(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_restart_is_not_a_twin_but_alternating_instances_are() {
        let own = node(1);
        let mine = (&own, InstanceId(1));
        let mut watch = TwinWatch::new(WINDOW, EVERY);
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        // A restart: instance 10 stops, instance 11 goes on.
        assert_eq!(
            watch.observe(&pkt(2, 10, 1), src("10.0.0.2:1"), mine, at(0)),
            None
        );
        assert_eq!(
            watch.observe(&pkt(2, 10, 2), src("10.0.0.2:1"), mine, at(500)),
            None
        );
        for s in 1..6 {
            let seen = watch.observe(&pkt(2, 11, s), src("10.0.0.2:1"), mine, at(600 + s * 500));
            assert_eq!(seen, None);
        }
        // Twins: instances 20 (10.0.0.3) and 21 (10.0.0.4) take turns.
        assert_eq!(
            watch.observe(&pkt(3, 20, 1), src("10.0.0.3:1"), mine, at(0)),
            None
        );
        assert_eq!(
            watch.observe(&pkt(3, 21, 1), src("10.0.0.4:1"), mine, at(300)),
            None
        );
        let seen = watch.observe(&pkt(3, 20, 2), src("10.0.0.3:1"), mine, at(1000));
        let seen = seen.expect("the second alternation is a suspicion");
        assert!(!seen.own);
        assert_eq!(seen.addresses.len(), 2);
        // Reported at most once per interval.
        assert_eq!(
            watch.observe(&pkt(3, 21, 2), src("10.0.0.4:1"), mine, at(1300)),
            None
        );
        assert!(watch
            .observe(&pkt(3, 20, 3), src("10.0.0.3:1"), mine, at(2100))
            .is_some());
    }

    #[test]
    fn our_own_id_from_another_instance_is_suspected_at_once_and_our_echo_never() {
        let own = node(1);
        let mine = (&own, InstanceId(1));
        let mut watch = TwinWatch::new(WINDOW, EVERY);
        let t = Instant::now();
        assert_eq!(
            watch.observe(&pkt(1, 1, 5), src("10.0.0.1:1"), mine, t),
            None
        );
        let seen = watch
            .observe(&pkt(1, 7, 1), src("10.0.0.9:1"), mine, t)
            .expect("another instance of our id");
        assert!(seen.own);
        // The address to check is where it says its link listens.
        assert_eq!(seen.addresses, vec![src("10.0.0.9:19123")]);
    }

    #[test]
    fn replayed_packets_never_make_a_suspicion() {
        let own = node(1);
        let mine = (&own, InstanceId(1));
        let mut watch = TwinWatch::new(WINDOW, EVERY);
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        assert!(
            watch.advances(&pkt(2, 10, 5)),
            "an instance not followed yet"
        );
        watch.observe(&pkt(2, 10, 5), src("10.0.0.2:1"), mine, at(0));
        assert!(!watch.advances(&pkt(2, 10, 5)));
        assert!(!watch.advances(&pkt(2, 10, 4)));
        assert!(watch.advances(&pkt(2, 10, 6)));
        watch.observe(&pkt(2, 11, 1), src("10.0.0.2:1"), mine, at(100));
        // Instance 10's old packets, replayed between 11's: not newer in their stream.
        for (i, seq) in [3u64, 4, 5, 2].into_iter().enumerate() {
            let ms = 200 + 200 * i as u64;
            assert_eq!(
                watch.observe(&pkt(2, 10, seq), src("10.0.0.2:1"), mine, at(ms)),
                None
            );
            assert_eq!(
                watch.observe(
                    &pkt(2, 11, 2 + i as u64),
                    src("10.0.0.2:1"),
                    mine,
                    at(ms + 100)
                ),
                None
            );
        }
    }

    #[test]
    fn ids_not_heard_within_the_window_are_dropped_and_their_room_given_back() {
        let own = node(1);
        let mine = (&own, InstanceId(1));
        let mut watch = TwinWatch::new(WINDOW, EVERY);
        let t = Instant::now();
        for n in 0..2000u128 {
            watch.observe(&pkt(100 + n, 1, 1), src("10.0.0.9:1"), mine, t);
        }
        // A colleague still heard from keeps its place.
        let later = t + WINDOW + Duration::from_millis(1);
        watch.observe(&pkt(2, 10, 5), src("10.0.0.2:1"), mine, later);
        let room = watch.ids.capacity();
        watch.expire(later);
        assert_eq!(watch.ids.len(), 1);
        assert!(
            !watch.advances(&pkt(2, 10, 5)),
            "its stream is still followed"
        );
        assert!(watch.ids.capacity() < room / 16);
        // Not swept again within a second, whatever comes.
        watch.observe(&pkt(3, 10, 5), src("10.0.0.3:1"), mine, t);
        watch.expire(later + Duration::from_millis(500));
        assert_eq!(watch.ids.len(), 2);
        watch.expire(later + EVERY);
        assert_eq!(watch.ids.len(), 1);
    }
}
