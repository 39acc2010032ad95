//! `cidr`: subnets and peer addresses as an administrator types them into the settings
//! tab (or a settings file holds them), through `api_types::cidr` and
//! `api_types::settings::peer_address`.

use std::net::IpAddr;

use api_types::cidr::normalise_list;
use api_types::settings::peer_address;
use api_types::Cidr;

/// Parsing never panics; a parsed network is normalised (it contains its own network
/// address, its text parses back to it) and a list comes out sorted and de-duplicated.
pub fn cidr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cidr) = text.parse::<Cidr>() {
        check(&cidr);
    }
    let lines: Vec<&str> = text.lines().collect();
    if let Ok(list) = normalise_list(&lines) {
        assert!(list.len() <= lines.len());
        assert!(list.windows(2).all(|w| w[0] < w[1]), "not sorted: {list:?}");
        list.iter().for_each(check);
    }
    if let Ok(addr) = peer_address(text) {
        assert_ne!(addr.port(), 0);
        assert_eq!(peer_address(&addr.to_string()), Ok(addr));
    }
}

fn check(cidr: &Cidr) {
    let max = match cidr.network() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    assert!(cidr.prefix() <= max);
    assert!(cidr.contains(cidr.network()));
    assert_eq!(cidr.to_string().parse::<Cidr>().as_ref(), Ok(cidr));
    assert!(cidr.size() >= 1);
    if let Some(broadcast) = cidr.broadcast() {
        assert!(cidr.contains(IpAddr::V4(broadcast)));
    }
}
