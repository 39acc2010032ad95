//! IP networks as admins type them into the settings tab.
//!
//! Input is `ip/prefix` or a bare IP; a bare IPv4 address means its /24 and a bare IPv6
//! address its /64, because that is what "this office subnet" almost always is. Every
//! value is normalised to its network address so that equal networks compare equal and
//! duplicates can be removed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix given to a bare IPv4 address.
pub const BARE_V4_PREFIX: u8 = 24;
/// Prefix given to a bare IPv6 address.
pub const BARE_V6_PREFIX: u8 = 64;

/// A normalised IP network: the address has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    Empty,
    BadAddress(String),
    BadPrefix(String),
    PrefixTooLong { prefix: u8, max: u8 },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Empty => write!(f, "empty subnet"),
            CidrError::BadAddress(s) => write!(f, "'{s}' is not an IP address"),
            CidrError::BadPrefix(s) => write!(f, "'{s}' is not a prefix length"),
            CidrError::PrefixTooLong { prefix, max } => {
                write!(f, "prefix /{prefix} is longer than /{max}")
            }
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// Builds the network containing `addr` with the given prefix length. A network
    /// inside `::ffff:0:0/96` (IPv4-mapped IPv6) is the IPv4 network it maps: peers'
    /// addresses are compared in their IPv4 form (see [`Cidr::contains`]), so in its
    /// IPv6 form it would match nothing, not even its own address.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(CidrError::PrefixTooLong { prefix, max });
        }
        if let (IpAddr::V6(v6), Some(v4_prefix)) = (addr, prefix.checked_sub(128 - 32)) {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Cidr::new(IpAddr::V4(v4), v4_prefix);
            }
        }
        Ok(Cidr {
            network: mask(addr, prefix),
            prefix,
        })
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` lies inside this network. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 peers) match IPv4 networks.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        match (self.network, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(addr, self.prefix) == self.network
            }
            _ => false,
        }
    }

    /// The directed broadcast address of an IPv4 network (`None` for IPv6, which has none).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        match self.network {
            IpAddr::V4(v4) => {
                let host_bits = u32::MAX.checked_shr(u32::from(self.prefix)).unwrap_or(0);
                Some(Ipv4Addr::from(u32::from(v4) | host_bits))
            }
            IpAddr::V6(_) => None,
        }
    }

    /// Number of addresses in an IPv4 network, saturating (used to bound probe sweeps).
    pub fn size(&self) -> u128 {
        let bits = u32::from(max_prefix(self.network) - self.prefix);
        1u128.checked_shl(bits).unwrap_or(u128::MAX)
    }
}

/// Parses, normalises, sorts and de-duplicates a list of subnets, reporting the first
/// bad entry with its position.
pub fn normalise_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<Cidr>, (usize, CidrError)> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(item.as_ref().parse::<Cidr>().map_err(|e| (i, e))?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr_part, prefix_part) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_part
            .parse()
            .map_err(|_| CidrError::BadAddress(addr_part.to_string()))?;
        let prefix = match prefix_part {
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| CidrError::BadPrefix(p.to_string()))?,
            // A bare IPv4-mapped address is a bare IPv4 address: its /24.
            None => match (addr, canonical(addr)) {
                (IpAddr::V6(_), IpAddr::V4(_)) => BARE_V4_PREFIX + (128 - 32),
                (IpAddr::V4(_), _) => BARE_V4_PREFIX,
                (IpAddr::V6(_), _) => BARE_V6_PREFIX,
            },
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn bare_addresses_get_default_prefixes() {
        assert_eq!(c("10.1.2.3").to_string(), "10.1.2.0/24");
        assert_eq!(c("fe80::1:2:3:4").to_string(), "fe80::/64");
        assert_eq!(c(" 192.168.7.9 ").to_string(), "192.168.7.0/24");
    }

    #[test]
    fn explicit_prefixes_are_normalised_to_network() {
        assert_eq!(c("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert_eq!(c("fe80::1/10").to_string(), "fe80::/10");
        assert_eq!(c("10.1.2.3/32").to_string(), "10.1.2.3/32");
        assert_eq!(c("0.0.0.0/0").to_string(), "0.0.0.0/0");
    }

    #[test]
    fn bad_input_is_rejected_with_reason() {
        assert_eq!("".parse::<Cidr>(), Err(CidrError::Empty));
        assert!(matches!(
            "bad".parse::<Cidr>(),
            Err(CidrError::BadAddress(_))
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong {
                prefix: 33,
                max: 32
            })
        );
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
        assert!("10.0.0.256".parse::<Cidr>().is_err());
    }

    #[test]
    fn list_is_sorted_and_deduplicated() {
        let list = normalise_list(&["10.1.2.3", "10.1.2.0/24", "10.0.0.1/8"]).unwrap();
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "10.1.2.0/24"]);
        assert_eq!(normalise_list(&["10.0.0.1", "nope"]).unwrap_err().0, 1);
    }

    /// Found by the `cidr` fuzz target (docs/SECURITY.md, "Fuzzing"): an IPv4-mapped
    /// network stayed IPv6 and, since peers are compared in IPv4 form, matched nothing
    /// — an allowed or blocked subnet that silently did nothing.
    #[test]
    fn an_ipv4_mapped_network_is_its_ipv4_network() {
        let net = c("::ffff:10.0.0.1/120");
        assert_eq!(net, c("10.0.0.0/24"));
        assert!(net.contains(net.network()));
        assert!(net.contains("10.0.0.5".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.5".parse().unwrap()));
        assert_eq!(c("::ffff:10.0.0.1"), c("10.0.0.0/24"));
        assert_eq!(c("::ffff:0:0/96"), c("0.0.0.0/0"));
        // Wider than the mapped range: an IPv6 network as typed.
        assert_eq!(c("::ffff:10.0.0.1/64").to_string(), "::/64");
        assert_eq!(c("fe80::1").to_string(), "fe80::/64");
    }

    #[test]
    fn contains_and_broadcast() {
        let net = c("192.168.1.0/24");
        assert!(net.contains("192.168.1.77".parse().unwrap()));
        assert!(net.contains("::ffff:192.168.1.77".parse().unwrap()));
        assert!(!net.contains("192.168.2.1".parse().unwrap()));
        assert!(!net.contains("fe80::1".parse().unwrap()));
        assert_eq!(net.broadcast(), Some(Ipv4Addr::new(192, 168, 1, 255)));
        assert_eq!(
            c("10.0.0.5/32").broadcast(),
            Some(Ipv4Addr::new(10, 0, 0, 5))
        );
        assert_eq!(c("0.0.0.0/0").broadcast(), Some(Ipv4Addr::BROADCAST));
        assert_eq!(c("fe80::/64").broadcast(), None);
        let v6 = c("fe80::/10");
        assert!(v6.contains("febf::1".parse().unwrap()));
        assert!(!v6.contains("fec0::1".parse().unwrap()));
        assert_eq!(c("10.0.0.0/16").size(), 65536);
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent_v4(a: u32, p in 0u8..=32) {
            let cidr = Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap();
            let again: Cidr = cidr.to_string().parse().unwrap();
            prop_assert_eq!(cidr, again);
            prop_assert!(cidr.contains(IpAddr::V4(Ipv4Addr::from(a))));
        }

        #[test]
        fn normalising_is_idempotent_v6(a: u128, p in 0u8..=128) {
            let cidr = Cidr::new(IpAddr::V6(Ipv6Addr::from(a)), p).unwrap();
            let again: Cidr = cidr.to_string().parse().unwrap();
            prop_assert_eq!(cidr, again);
        }

        #[test]
        fn contains_matches_prefix_arithmetic(net: u32, host: u32, p in 0u8..=32) {
            let cidr = Cidr::new(IpAddr::V4(Ipv4Addr::from(net)), p).unwrap();
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            let expected = (net & m) == (host & m);
            prop_assert_eq!(cidr.contains(IpAddr::V4(Ipv4Addr::from(host))), expected);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,64}") {
            let _ = s.parse::<Cidr>();
        }
    }
}
