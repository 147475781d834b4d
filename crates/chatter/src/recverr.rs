//! ICMP errors for datagrams this node sent, read from the socket's error queue (Linux).
//!
//! When a probe reaches a host whose gossip port is closed (the process crashed, the host is up),
//! the host answers with ICMP port-unreachable. That is much stronger evidence than a timeout: the
//! core uses it to shorten the suspicion of that member (see `Config::unreachable_suspicion_timeout`
//! in `chatter-core`), which is what makes detecting a crashed process fast.
//!
//! A plain unconnected UDP socket never hears about these errors. With `IP_RECVERR`
//! (`IPV6_RECVERR`) set, Linux queues each one on the socket's error queue, with the destination
//! of the datagram that failed and a `sock_extended_err` describing the ICMP message; the socket
//! then reports error readiness (`EPOLLERR`) and the next `recv`/`send` fails once with
//! `ECONNREFUSED`. [`recv_error`] reads one entry with `recvmsg(MSG_ERRQUEUE)`.
//!
//! This is the only module with `unsafe` code; each block says why it is sound. On other systems
//! the functions are no-ops and the node simply relies on timeouts.

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::net::SocketAddr;

/// One entry read from the error queue.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueuedError {
    /// ICMP (v4 or v6) port-unreachable for a datagram sent to this address.
    PortUnreachable(SocketAddr),
    /// Some other error (host unreachable, fragmentation needed, ...): not evidence of a dead
    /// process, ignored.
    Other,
}

#[cfg(target_os = "linux")]
pub(crate) use linux::{enable, recv_error};

#[cfg(not(target_os = "linux"))]
pub(crate) use other::enable;

#[cfg(target_os = "linux")]
mod linux {
    use super::QueuedError;
    use std::io;
    use std::mem::{self, MaybeUninit};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::{AsRawFd, RawFd};
    use std::ptr;

    /// ICMPv4 destination unreachable (type 3), port unreachable (code 3).
    const ICMP_DEST_UNREACH: u8 = 3;
    const ICMP_PORT_UNREACH: u8 = 3;
    /// ICMPv6 destination unreachable (type 1), port unreachable (code 4).
    const ICMP6_DST_UNREACH: u8 = 1;
    const ICMP6_DST_UNREACH_NOPORT: u8 = 4;

    /// Asks the kernel to queue ICMP errors on `socket`'s error queue.
    ///
    /// On an IPv6 socket both options are set: datagrams to IPv4-mapped addresses (dual stack)
    /// report through `IP_RECVERR`.
    pub(crate) fn enable(socket: &socket2::Socket, ipv6: bool) -> io::Result<()> {
        let fd = socket.as_raw_fd();
        if ipv6 {
            set_int_option(fd, libc::SOL_IPV6, libc::IPV6_RECVERR, 1)?;
            // Best effort: only matters for IPv4-mapped peers of a dual-stack socket.
            let _ = set_int_option(fd, libc::SOL_IP, libc::IP_RECVERR, 1);
            Ok(())
        } else {
            set_int_option(fd, libc::SOL_IP, libc::IP_RECVERR, 1)
        }
    }

    fn set_int_option(
        fd: RawFd,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: `fd` is an open socket borrowed from the caller for the duration of the call;
        // the option value points at a live `c_int` and its exact size is passed, as
        // setsockopt(2) requires for these integer options. The kernel only reads the value.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                ptr::from_ref(&value).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Control buffer for `recvmsg`, aligned for `cmsghdr` (whose first field is a `size_t`).
    /// 256 bytes hold a `sock_extended_err` (16 bytes) plus the offender's `sockaddr_in6`
    /// (28 bytes) with headers and padding several times over.
    #[repr(C, align(8))]
    struct ControlBuffer([u8; 256]);

    /// Reads one entry of the error queue of the socket `fd` without blocking.
    ///
    /// Returns `Err` with kind `WouldBlock` when the queue is empty.
    pub(crate) fn recv_error(fd: RawFd) -> io::Result<QueuedError> {
        let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
        let mut control = ControlBuffer([0; 256]);
        // Linux wants at least one iovec; the failed datagram's payload is copied (truncated)
        // into it and ignored.
        let mut payload = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: `msghdr` is a plain C struct of integers and raw pointers: all zeroes (null
        // pointers, zero lengths) is a valid value of it.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = name.as_mut_ptr().cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len() as _;

        // SAFETY: every pointer in `msg` points at a live local buffer (`name`, `iov` and through
        // it `payload`, `control`) whose length is the one given next to it, and they all outlive
        // the call; the kernel writes at most those lengths. MSG_DONTWAIT keeps it from blocking.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }

        let mut port_unreachable = false;
        // SAFETY: `msg` was filled in by a successful recvmsg: `msg_control`/`msg_controllen`
        // describe the control bytes the kernel wrote into `control`, which is aligned for
        // `cmsghdr`. CMSG_FIRSTHDR/CMSG_NXTHDR only return headers lying entirely within that
        // range (or null), so dereferencing them is in bounds. For an `IP_RECVERR` /
        // `IPV6_RECVERR` message the data is a `sock_extended_err` (ip(7), ipv6(7)); its length is
        // checked before reading, and `read_unaligned` does not rely on the data's alignment.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let header = &*cmsg;
                let is_recverr = (header.cmsg_level == libc::SOL_IP
                    && header.cmsg_type == libc::IP_RECVERR)
                    || (header.cmsg_level == libc::SOL_IPV6
                        && header.cmsg_type == libc::IPV6_RECVERR);
                let needed = libc::CMSG_LEN(mem::size_of::<libc::sock_extended_err>() as u32);
                if is_recverr && header.cmsg_len as usize >= needed as usize {
                    let err: libc::sock_extended_err =
                        ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    port_unreachable |=
                        is_port_unreachable(err.ee_origin, err.ee_type, err.ee_code);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if !port_unreachable {
            return Ok(QueuedError::Other);
        }
        // SAFETY: `name` was zero-initialised before the call and the kernel only overwrote
        // bytes of it, so every byte is initialised.
        let storage = unsafe { name.assume_init() };
        Ok(socket_addr(&storage, msg.msg_namelen)
            .map_or(QueuedError::Other, QueuedError::PortUnreachable))
    }

    /// Whether an extended error is an ICMP or ICMPv6 port-unreachable.
    pub(super) fn is_port_unreachable(origin: u8, icmp_type: u8, icmp_code: u8) -> bool {
        (origin == libc::SO_EE_ORIGIN_ICMP
            && icmp_type == ICMP_DEST_UNREACH
            && icmp_code == ICMP_PORT_UNREACH)
            || (origin == libc::SO_EE_ORIGIN_ICMP6
                && icmp_type == ICMP6_DST_UNREACH
                && icmp_code == ICMP6_DST_UNREACH_NOPORT)
    }

    /// The destination address the kernel put in `msg_name`: the original destination of the
    /// datagram that failed.
    fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        match libc::c_int::from(storage.ss_family) {
            libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a `sockaddr_in`, `len` says the
                // kernel wrote all of it, and `sockaddr_storage` is large enough and at least as
                // aligned as any socket address type.
                let sin = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
                // `s_addr` holds the address in network byte order: its in-memory bytes are the
                // octets in order.
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for `sockaddr_in6`.
                let sin6 = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    use std::io;

    /// No error queue here: ICMP errors are not reported to unconnected UDP sockets.
    pub(crate) fn enable(_socket: &socket2::Socket, _ipv6: bool) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the error queue of `fd` until it is empty and returns the destinations that answered
/// with port-unreachable. Errors other than `WouldBlock` end the drain and are returned with
/// what was read so far.
#[cfg(target_os = "linux")]
pub(crate) fn drain(fd: std::os::fd::RawFd, out: &mut Vec<SocketAddr>) -> io::Result<()> {
    loop {
        match recv_error(fd) {
            Ok(QueuedError::PortUnreachable(addr)) => out.push(addr),
            Ok(QueuedError::Other) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn classifies_port_unreachable_only() {
        assert!(linux::is_port_unreachable(libc::SO_EE_ORIGIN_ICMP, 3, 3));
        assert!(linux::is_port_unreachable(libc::SO_EE_ORIGIN_ICMP6, 1, 4));
        // Host unreachable, fragmentation needed, local errors: not evidence of a dead process.
        assert!(!linux::is_port_unreachable(libc::SO_EE_ORIGIN_ICMP, 3, 1));
        assert!(!linux::is_port_unreachable(libc::SO_EE_ORIGIN_ICMP, 3, 4));
        assert!(!linux::is_port_unreachable(libc::SO_EE_ORIGIN_ICMP6, 1, 3));
        assert!(!linux::is_port_unreachable(libc::SO_EE_ORIGIN_LOCAL, 3, 3));
    }

    #[test]
    fn reads_destination_of_datagram_sent_to_closed_port() {
        // A port that was just free: bind, note it, close.
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();

        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        enable(&socket, false).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.send_to(b"ping", closed).unwrap();

        // The blocking receive returns once the ICMP error is queued.
        let mut buf = [0u8; 16];
        let err = socket.recv_from(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);

        let mut found = Vec::new();
        let end = drain(socket.as_raw_fd(), &mut found).unwrap_err();
        assert_eq!(end.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(found, vec![closed]);
    }
}
