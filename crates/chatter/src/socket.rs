//! The UDP socket: creation, address families, and the address to advertise.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::Error;

/// Creates the node's socket bound to `addr`.
///
/// `SO_REUSEADDR` stays off, so a second node on the same port fails at once with "address in
/// use" instead of sharing (and stealing) datagrams. An IPv6 socket is made dual-stack when the
/// system allows it, so a node bound to `[::]` also talks to IPv4 members. On Linux the socket
/// asks for ICMP errors (see [`crate::recverr`]).
pub(crate) fn bind(addr: SocketAddr) -> Result<UdpSocket, Error> {
    let bind_error = |source| Error::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(bind_error)?;
    socket.set_reuse_address(false).map_err(bind_error)?;
    if addr.is_ipv6() {
        // Best effort: some systems force IPV6_V6ONLY.
        if let Err(error) = socket.set_only_v6(false) {
            tracing::debug!(%error, "cannot make the IPv6 socket dual-stack");
        }
    }
    // A bigger receive buffer absorbs bursts (a full state sync, many members gossiping at
    // once) while the driver is busy; the kernel caps it at net.core.rmem_max.
    if let Err(error) = socket.set_recv_buffer_size(1 << 20) {
        tracing::debug!(%error, "cannot enlarge the socket receive buffer");
    }
    if let Err(error) = crate::recverr::enable(&socket, addr.is_ipv6()) {
        tracing::warn!(%error, "cannot enable ICMP error reports; crashed members will be detected by timeouts only");
    }
    socket.set_nonblocking(true).map_err(bind_error)?;
    socket.bind(&addr.into()).map_err(bind_error)?;
    UdpSocket::from_std(socket.into()).map_err(bind_error)
}

/// Turns an IPv4-mapped IPv6 address (`[::ffff:10.0.0.1]:2428`, as a dual-stack socket reports
/// IPv4 peers) into the plain IPv4 address the members know.
pub(crate) fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The address to hand to `send_to`: an IPv6 socket reaches IPv4 members through their
/// IPv4-mapped address.
pub(crate) fn to_socket_family(ipv6_socket: bool, addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if ipv6_socket => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => addr,
    }
}

/// The address other members should use to reach a node bound to `bound` (its port resolved).
///
/// A specific bound address is advertised as is. For a wildcard (`0.0.0.0`, `[::]`) the address
/// of the interface that routes to the first reachable seed is used (so a node whose seeds are on
/// loopback advertises loopback), else the interface of the default route. Connecting a UDP
/// socket only looks up a route; nothing is sent.
pub(crate) fn advertise_addr(bound: SocketAddr, seeds: &[SocketAddr]) -> Result<SocketAddr, Error> {
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    // Documentation addresses (RFC 5737, RFC 3849): never answered, but routed like the
    // Internet, so the lookup finds the default route's interface.
    let default_v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 9);
    let default_v6 = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        9,
    );
    let defaults: &[SocketAddr] = if bound.is_ipv6() {
        &[default_v6, default_v4]
    } else {
        &[default_v4]
    };
    let mut last_error = io::Error::new(
        io::ErrorKind::NotFound,
        "no route to any seed nor a default route",
    );
    for &target in seeds.iter().chain(defaults) {
        match route_source(target) {
            Ok(ip) if !ip.is_unspecified() => return Ok(SocketAddr::new(ip, bound.port())),
            Ok(_) => {}
            Err(error) => last_error = error,
        }
    }
    Err(Error::Advertise {
        bind: bound,
        source: last_error,
    })
}

/// The local address the kernel would send from to reach `target`.
fn route_source(target: SocketAddr) -> io::Result<IpAddr> {
    let any: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(target)?;
    Ok(probe.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_ipv4_through_a_dual_stack_socket_and_back() {
        let v4: SocketAddr = "10.0.0.1:2428".parse().unwrap();
        let mapped = to_socket_family(true, v4);
        assert_eq!(
            mapped,
            "[::ffff:10.0.0.1]:2428".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(normalize(mapped), v4);
        assert_eq!(to_socket_family(false, v4), v4);
        let v6: SocketAddr = "[fd00::1]:2428".parse().unwrap();
        assert_eq!(normalize(v6), v6);
    }

    #[test]
    fn advertises_the_interface_towards_the_seeds() {
        let bound: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let seed: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        assert_eq!(
            advertise_addr(bound, &[seed]).unwrap(),
            "127.0.0.1:4000".parse().unwrap()
        );
        let specific: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        assert_eq!(advertise_addr(specific, &[seed]).unwrap(), specific);
    }

    #[tokio::test]
    async fn second_bind_on_the_same_port_is_a_clear_error() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        assert!(matches!(err, Error::Bind { .. }));
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot bind UDP {addr}: ")),
            "{text}"
        );
    }
}
