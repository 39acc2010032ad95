//! The discovery socket. socket2 because std and tokio do not expose `SO_REUSEPORT`.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Binds a UDP socket that can send broadcasts and share its port with other nodes on
/// the same host (`SO_REUSEADDR` + `SO_REUSEPORT`): each of them then gets every
/// broadcast, which is what lets several `lanchat serve` processes run side by side.
/// Unicast to a shared port reaches only one of them, so such nodes also need distinct
/// ports or explicit announce targets to hear answers reliably.
///
/// Both socket buffers are asked to be `buffer_bytes` (the kernel caps the request at
/// `net.core.rmem_max` / `wmem_max` for unprivileged processes; a smaller buffer still
/// works, bursts just wait for room more often).
pub fn bind_discovery_socket(addr: SocketAddr, buffer_bytes: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_recv_buffer_size(buffer_bytes)?;
    socket.set_send_buffer_size(buffer_bytes)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    socket.set_broadcast(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_nodes_can_bind_one_discovery_port() {
        let a = bind_discovery_socket("127.0.0.1:0".parse().unwrap(), 1 << 16).unwrap();
        let port = a.local_addr().unwrap().port();
        let b = bind_discovery_socket(SocketAddr::from(([127, 0, 0, 1], port)), 1 << 16).unwrap();
        assert_eq!(b.local_addr().unwrap().port(), port);
        // Without the reuse options a third plain bind must fail: proves the test
        // exercises the options, not a port that is simply free.
        assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_err());
    }
}
