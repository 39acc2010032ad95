//! Where announcements go: directed broadcasts on attached subnets, and a bounded sweep
//! of unicast probes through allowed subnets that are not attached (routed offices).
//! Pure, given the list of local networks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use api_types::Cidr;

/// One IPv4 address of this machine with its on-link network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalNetwork {
    pub address: Ipv4Addr,
    pub network: Cidr,
    /// The interface's broadcast address, `None` on loopback and point-to-point links.
    pub broadcast: Option<Ipv4Addr>,
    pub loopback: bool,
}

/// This machine's IPv4 networks, from the OS. Errors yield an empty list (logged): the
/// node then discovers only through explicit targets, which is better than not starting.
pub fn system_networks() -> Vec<LocalNetwork> {
    match if_addrs::get_if_addrs() {
        Ok(ifaces) => ifaces
            .into_iter()
            .filter_map(|iface| {
                let loopback = iface.is_loopback();
                let if_addrs::IfAddr::V4(v4) = iface.addr else {
                    return None;
                };
                let network = Cidr::new(IpAddr::V4(v4.ip), v4.prefixlen).ok()?;
                Some(LocalNetwork {
                    address: v4.ip,
                    network,
                    broadcast: v4.broadcast,
                    loopback,
                })
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces");
            Vec::new()
        }
    }
}

/// `allowed_subnets = []` means "the LANs this machine is on": every non-loopback IPv4
/// interface network. Loopback is left out because a LAN messenger has no business
/// trusting a subnet nobody else can be on; nodes on one host still see each other
/// through the LAN interface's broadcast.
pub fn effective_allowed(configured: &[Cidr], local: &[LocalNetwork]) -> Vec<Cidr> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let mut nets: Vec<Cidr> = local
        .iter()
        .filter(|n| !n.loopback)
        .map(|n| n.network)
        .collect();
    nets.sort();
    nets.dedup();
    nets
}

fn overlaps(a: &Cidr, b: &Cidr) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// Directed broadcast addresses for the attached networks that overlap an allowed
/// subnet, skipping those in a blocked subnet. The interface's own broadcast address is
/// used (not the allowed subnet's): only it is a broadcast on that link.
pub fn broadcast_targets(
    allowed: &[Cidr],
    blocked: &[Cidr],
    local: &[LocalNetwork],
    port: u16,
) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = local
        .iter()
        .filter(|n| allowed.iter().any(|a| overlaps(a, &n.network)))
        .filter_map(|n| n.broadcast)
        .filter(|b| !blocked.iter().any(|c| c.contains(IpAddr::V4(*b))))
        .map(|b| SocketAddr::V4(SocketAddrV4::new(b, port)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Subnets larger than this are not swept: at the per-interval budget a /16 already takes
/// many minutes to cover, and anything larger is surely a typo or a routed WAN.
pub const MIN_SWEEP_PREFIX: u8 = 16;

/// A rotating cursor through the host addresses of allowed IPv4 subnets that no local
/// interface is on, skipping blocked subnets. Each call yields at most `budget`
/// addresses and resumes where the last stopped, so the load per interval is fixed
/// whatever the subnets' size.
#[derive(Debug, Clone, Default)]
pub struct ProbeSweep {
    ranges: Vec<(u32, u32)>,
    skip: Vec<(u32, u32)>,
    range: usize,
    next: u32,
}

impl ProbeSweep {
    pub fn new(allowed: &[Cidr], blocked: &[Cidr], local: &[LocalNetwork]) -> Self {
        let ranges: Vec<(u32, u32)> = allowed
            .iter()
            .filter(|c| c.prefix() >= MIN_SWEEP_PREFIX)
            .filter_map(hosts)
            .collect();
        let mut skip: Vec<(u32, u32)> = local
            .iter()
            .map(|n| n.network)
            .chain(blocked.iter().copied())
            .filter_map(|c| span(&c))
            .collect();
        skip.sort_unstable();
        let next = ranges.first().map_or(0, |r| r.0);
        ProbeSweep {
            ranges,
            skip,
            range: 0,
            next,
        }
    }

    /// Allowed subnets that are neither attached nor small enough to sweep: only
    /// manual addresses reach peers there (worth telling the admin once).
    pub fn unreachable(allowed: &[Cidr], local: &[LocalNetwork]) -> Vec<Cidr> {
        allowed
            .iter()
            .filter(|c| c.prefix() < MIN_SWEEP_PREFIX)
            .filter(|c| !local.iter().any(|n| overlaps(c, &n.network)))
            .copied()
            .collect()
    }

    /// Whether there is anything to sweep at all.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The next up to `budget` addresses to probe. A batch never crosses the end of a
    /// round (it may come back shorter), so one batch never holds an address twice.
    pub fn next_batch(&mut self, budget: usize) -> Vec<Ipv4Addr> {
        let mut out = Vec::with_capacity(budget.min(256));
        while out.len() < budget {
            let Some(&(start, end)) = self.ranges.get(self.range) else {
                break;
            };
            if self.next < start || self.next > end {
                self.next = start;
            }
            let skipped = self
                .skip
                .iter()
                .find(|(s, e)| *s <= self.next && self.next <= *e)
                .map(|&(_, skip_end)| skip_end);
            let last_in_range = match skipped {
                // Jump past the attached or blocked block in one step.
                Some(skip_end) if skip_end < end => {
                    self.next = skip_end + 1;
                    false
                }
                Some(_) => true,
                None => {
                    out.push(Ipv4Addr::from(self.next));
                    self.next >= end || {
                        self.next += 1;
                        false
                    }
                }
            };
            if last_in_range && self.advance_range() {
                break;
            }
        }
        out
    }

    /// Moves to the next range; `true` when that wrapped to the first (round over).
    fn advance_range(&mut self) -> bool {
        self.range = (self.range + 1) % self.ranges.len().max(1);
        self.next = self.ranges.get(self.range).map_or(0, |r| r.0);
        self.range == 0
    }
}

/// First and last address of an IPv4 network.
fn span(c: &Cidr) -> Option<(u32, u32)> {
    match (c.network(), c.broadcast()) {
        (IpAddr::V4(n), Some(b)) => Some((u32::from(n), u32::from(b))),
        _ => None,
    }
}

/// Host addresses: without the network and broadcast addresses when the subnet has them.
fn hosts(c: &Cidr) -> Option<(u32, u32)> {
    let (first, last) = span(c)?;
    if c.prefix() <= 30 {
        Some((first + 1, last - 1))
    } else {
        Some((first, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn lan(addr: &str, prefix: u8) -> LocalNetwork {
        let address: Ipv4Addr = addr.parse().unwrap();
        let network = Cidr::new(IpAddr::V4(address), prefix).unwrap();
        LocalNetwork {
            address,
            network,
            broadcast: network.broadcast(),
            loopback: false,
        }
    }

    fn lo() -> LocalNetwork {
        LocalNetwork {
            address: Ipv4Addr::LOCALHOST,
            network: c("127.0.0.0/8"),
            broadcast: None,
            loopback: true,
        }
    }

    #[test]
    fn empty_allowed_means_local_lans_without_loopback() {
        let local = [lo(), lan("10.1.2.3", 24), lan("10.1.2.9", 24)];
        assert_eq!(effective_allowed(&[], &local), vec![c("10.1.2.0/24")]);
        assert_eq!(
            effective_allowed(&[c("10.9.0.0/16")], &local),
            vec![c("10.9.0.0/16")]
        );
    }

    #[test]
    fn broadcasts_go_to_attached_overlapping_networks_only() {
        let local = [lo(), lan("10.1.2.3", 24), lan("192.168.5.1", 24)];
        let got = broadcast_targets(&[c("10.1.0.0/16"), c("127.0.0.0/8")], &[], &local, 19124);
        assert_eq!(got, vec!["10.1.2.255:19124".parse().unwrap()]);
        // A smaller allowed subnet inside the link still uses the link's broadcast.
        let got = broadcast_targets(&[c("10.1.2.0/28")], &[], &local, 1);
        assert_eq!(got, vec!["10.1.2.255:1".parse().unwrap()]);
        let got = broadcast_targets(&[c("10.1.0.0/16")], &[c("10.1.2.0/24")], &local, 1);
        assert!(got.is_empty());
    }

    #[test]
    fn sweep_skips_attached_and_blocked_addresses_and_wraps() {
        let local = [lan("10.1.2.3", 24)];
        let mut s = ProbeSweep::new(&[c("10.1.2.0/23")], &[c("10.1.3.128/25")], &local);
        let first = s.next_batch(200);
        // 10.1.3.0 is a host address in a /23; the round ends at the blocked half.
        assert_eq!(first.len(), 128);
        assert_eq!(first[0], Ipv4Addr::new(10, 1, 3, 0));
        assert_eq!(first[127], Ipv4Addr::new(10, 1, 3, 127));
        assert_eq!(
            s.next_batch(3),
            [0, 1, 2].map(|i| Ipv4Addr::new(10, 1, 3, i))
        );
        assert_eq!(s.next_batch(2), [3, 4].map(|i| Ipv4Addr::new(10, 1, 3, i)));
    }

    #[test]
    fn fully_attached_subnets_yield_nothing() {
        let mut s = ProbeSweep::new(
            &[c("127.0.0.0/8"), c("10.1.2.0/24")],
            &[],
            &[lo(), lan("10.1.2.3", 24)],
        );
        assert!(s.next_batch(100).is_empty());
    }

    #[test]
    fn huge_subnets_are_not_swept() {
        let mut s = ProbeSweep::new(&[c("10.0.0.0/8")], &[], &[]);
        assert!(s.is_empty());
        assert!(s.next_batch(10).is_empty());
        assert_eq!(
            ProbeSweep::unreachable(&[c("10.0.0.0/8")], &[]),
            vec![c("10.0.0.0/8")]
        );
        assert!(ProbeSweep::unreachable(&[c("10.0.0.0/8")], &[lan("10.1.2.3", 24)]).is_empty());
    }

    proptest! {
        /// Successive batches cover every sweepable host exactly once per round, never
        /// exceed the budget, and never yield a skipped address.
        #[test]
        fn a_round_covers_every_host_once(
            net: u32, prefix in 22u8..=32, budget in 1usize..300, blocked_prefix in 24u8..=32,
        ) {
            let allowed = Cidr::new(IpAddr::V4(net.into()), prefix).unwrap();
            let blocked = Cidr::new(IpAddr::V4(net.wrapping_add(300).into()), blocked_prefix).unwrap();
            let mut s = ProbeSweep::new(&[allowed], &[blocked], &[]);
            let (first, last) = hosts(&allowed).unwrap();
            let expected: HashSet<u32> = (first..=last).filter(|a| !blocked.contains(IpAddr::V4((*a).into()))).collect();
            let mut seen = HashSet::new();
            let mut rounds = 0;
            while seen.len() < expected.len() && rounds < 2000 {
                let batch = s.next_batch(budget);
                prop_assert!(batch.len() <= budget);
                for a in batch {
                    prop_assert!(expected.contains(&u32::from(a)));
                    prop_assert!(seen.insert(u32::from(a)), "{} twice in one round", a);
                    if seen.len() == expected.len() { break; }
                }
                rounds += 1;
            }
            prop_assert_eq!(seen.len(), expected.len());
        }
    }
}
