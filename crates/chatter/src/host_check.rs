//! Host checks for the core (`chatter_core::HostCheck`): does a member's host still answer?
//!
//! A check is a TCP connection attempt to the member's gossip address. Nothing listens there
//! over TCP, so a live kernel answers the SYN with a reset (`ECONNREFUSED`), whatever the
//! daemon on it is doing: stopped, swapping, stuck. A host that lost power or was cut off
//! answers nothing. The connection, if one is accepted after all (something else listens on
//! that TCP port), is closed at once with a reset and never carries a byte.
//!
//! A check sends up to [`ATTEMPTS`] SYNs, from separate connection attempts started a third of
//! the timeout apart, and the first answer wins: on a path losing a few percent of packets one
//! lost SYN or reset would otherwise read as silence (the kernel's own SYN retransmission
//! comes only after a second). On a LAN the first SYN is answered within a millisecond, so a
//! live host costs one SYN and one reset.
//!
//! The checks run as tasks of the driver's runtime, at most [`MAX_RUNNING`] at once (the core
//! asks for at most `chatter_core::MAX_HOST_CHECKS_IN_FLIGHT`), only to addresses the core
//! names: those of members that answered this node's probes, or whose probes just failed.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chatter_core::HostAnswer;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// SYNs sent per check at most, a third of the timeout apart.
pub(crate) const ATTEMPTS: u32 = 3;

/// Checks the driver runs at once; a check beyond it is answered `Inconclusive` at once.
/// Twice the core's own bound, so it is only reached if the core's bound is changed.
pub(crate) const MAX_RUNNING: usize = 2 * chatter_core::MAX_HOST_CHECKS_IN_FLIGHT;

/// Checks whether the host at `addr` answers within `timeout`, connecting from `local` (the
/// gossip socket's address, so the SYNs take the gossip datagrams' route and source) when
/// given.
pub(crate) async fn check(
    addr: SocketAddr,
    local: Option<IpAddr>,
    timeout: Duration,
) -> HostAnswer {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = JoinSet::new();
    for i in 0..ATTEMPTS {
        let at = start + timeout * i / ATTEMPTS;
        attempts.spawn(async move {
            tokio::time::sleep_until(at).await;
            attempt(addr, local).await
        });
    }
    let mut inconclusive = false;
    loop {
        match tokio::time::timeout_at(deadline, attempts.join_next()).await {
            // The timeout: nothing answered. Dropping the set aborts the attempts still
            // running, which closes their sockets.
            Err(_) => break,
            // Every attempt ended without an answer from the host.
            Ok(None) => break,
            Ok(Some(Ok(HostAnswer::Answered))) => return HostAnswer::Answered,
            Ok(Some(Ok(HostAnswer::Inconclusive))) | Ok(Some(Err(_))) => inconclusive = true,
            Ok(Some(Ok(HostAnswer::Silent))) => {}
        }
    }
    if inconclusive {
        HostAnswer::Inconclusive
    } else {
        HostAnswer::Silent
    }
}

/// One connection attempt, until it succeeds or fails (the caller bounds it in time).
async fn attempt(addr: SocketAddr, local: Option<IpAddr>) -> HostAnswer {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    let socket = match socket {
        Ok(socket) => socket,
        Err(_) => return HostAnswer::Inconclusive,
    };
    if let Some(ip) = local.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4()) {
        if socket.bind(SocketAddr::new(ip, 0)).is_err() {
            return HostAnswer::Inconclusive;
        }
    }
    match socket.connect(addr).await {
        Ok(stream) => {
            // A reset on close: no FIN exchange, no TIME_WAIT, nothing sent. A zero linger
            // never blocks the close.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
            HostAnswer::Answered
        }
        Err(error) => answer_of(&error),
    }
}

/// What a failed connection attempt says about the host.
///
/// A refusal or a reset came from the host's kernel: `Answered`. A timeout reported by the
/// kernel itself (it gave up retransmitting): `Silent`. Everything else may be this node's
/// own doing and says nothing about the host: no route or an unreachable network in the local
/// table (`ENETUNREACH`), no usable local address, a local firewall (`EPERM`, `EACCES`), and
/// also `EHOSTUNREACH`: it is what a router's ICMP host-unreachable gives, a real sign of
/// absence, but equally a local neighbour-table failure or an `unreachable` route here, and
/// silence is evidence only where it cannot be this node's own. A dead host on the local
/// segment still reads as `Silent`: address resolution takes seconds to give up, far longer
/// than a check's timeout.
pub(crate) fn answer_of(error: &io::Error) -> HostAnswer {
    match error.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => HostAnswer::Answered,
        io::ErrorKind::TimedOut => HostAnswer::Silent,
        _ => HostAnswer::Inconclusive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_answers() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, HostAnswer::Answered),
            (io::ErrorKind::ConnectionReset, HostAnswer::Answered),
            (io::ErrorKind::TimedOut, HostAnswer::Silent),
            (io::ErrorKind::HostUnreachable, HostAnswer::Inconclusive),
            (io::ErrorKind::NetworkUnreachable, HostAnswer::Inconclusive),
            (io::ErrorKind::AddrNotAvailable, HostAnswer::Inconclusive),
            (io::ErrorKind::PermissionDenied, HostAnswer::Inconclusive),
            (io::ErrorKind::Other, HostAnswer::Inconclusive),
        ];
        for (kind, answer) in cases {
            assert_eq!(answer_of(&io::Error::from(kind)), answer, "{kind:?}");
        }
        // As the OS reports them.
        #[cfg(target_os = "linux")]
        for (errno, answer) in [
            (libc::ECONNREFUSED, HostAnswer::Answered),
            (libc::ETIMEDOUT, HostAnswer::Silent),
            (libc::EHOSTUNREACH, HostAnswer::Inconclusive),
            (libc::ENETUNREACH, HostAnswer::Inconclusive),
            (libc::EPERM, HostAnswer::Inconclusive),
        ] {
            assert_eq!(
                answer_of(&io::Error::from_raw_os_error(errno)),
                answer,
                "errno {errno}"
            );
        }
    }

    /// Nothing listens on TCP at a port just freed: the kernel refuses, the host answered.
    #[tokio::test]
    async fn a_live_host_with_nothing_listening_answers() {
        let Ok(udp) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            return;
        };
        let Ok(addr) = udp.local_addr() else { return };
        let local = Some(addr.ip());
        let answer = check(addr, local, Duration::from_secs(2)).await;
        assert_eq!(answer, HostAnswer::Answered);
    }

    /// Runs `ip` with `args`; `Err` with its output if it fails or cannot start.
    #[cfg(target_os = "linux")]
    fn ip(args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Deletes the namespace (and with it both ends of its veth pair) on every path out.
    #[cfg(target_os = "linux")]
    struct Netns(String);

    #[cfg(target_os = "linux")]
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = ip(&["netns", "del", &self.0]);
        }
    }

    /// A host in a network namespace of its own, behind a veth pair: it answers while its
    /// link is up (its kernel refuses the connection), and is silent once the link is cut
    /// with a static neighbour entry on this side (no ARP failure, no ICMP: nothing comes
    /// back). Needs root for the namespace; skipped (with a note) without it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_host_whose_link_is_cut_is_silent() {
        let pid = std::process::id();
        let ns = format!("hc{pid}");
        let (outer, inner) = (format!("hc{pid}a"), format!("hc{pid}b"));
        let net = format!("10.254.{}", pid % 64 * 4);
        let (here, there) = (format!("{net}.1"), format!("{net}.2"));
        if let Err(why) = ip(&["netns", "add", &ns]) {
            eprintln!("skipped: no network namespace ({why})");
            return;
        }
        let _guard = Netns(ns.clone());
        let mac = "02:00:00:00:ce:02";
        let (here_net, there_net) = (format!("{here}/30"), format!("{there}/30"));
        let setup = [
            vec![
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
            vec!["link", "set", &inner, "netns", &ns, "address", mac],
            vec!["addr", "add", &here_net, "dev", &outer],
            vec!["link", "set", &outer, "up"],
            vec!["-n", &ns, "addr", "add", &there_net, "dev", &inner],
            vec!["-n", &ns, "link", "set", &inner, "up"],
            vec![
                "neigh",
                "replace",
                &there,
                "lladdr",
                mac,
                "dev",
                &outer,
                "nud",
                "permanent",
            ],
        ];
        for args in &setup {
            let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
            if let Err(why) = ip(&args) {
                panic!("ip {args:?}: {why}");
            }
        }
        let addr: SocketAddr = match format!("{there}:7946").parse() {
            Ok(addr) => addr,
            Err(e) => panic!("{e}"),
        };
        let local = here.parse().ok();
        let timeout = Duration::from_millis(300);
        let answer = check(addr, local, timeout).await;
        assert_eq!(
            answer,
            HostAnswer::Answered,
            "the live host's kernel refuses"
        );
        if let Err(why) = ip(&["-n", &ns, "link", "set", &inner, "down"]) {
            panic!("cutting the link: {why}");
        }
        let started = std::time::Instant::now();
        let answer = check(addr, local, timeout).await;
        assert_eq!(
            answer,
            HostAnswer::Silent,
            "the cut-off host answers nothing"
        );
        assert!(started.elapsed() >= timeout, "silence before the timeout");
        assert!(
            started.elapsed() < timeout * 3,
            "the check outlived its timeout"
        );
    }

    /// A listener accepts: answered too, and the connection is closed at once without a byte.
    #[tokio::test]
    async fn a_host_with_a_listener_answers_and_receives_nothing() {
        use tokio::io::AsyncReadExt;
        let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
            return;
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        let (answer, accepted) =
            tokio::join!(check(addr, None, Duration::from_secs(2)), listener.accept());
        assert_eq!(answer, HostAnswer::Answered);
        let Ok((mut stream, _)) = accepted else {
            panic!("the check's connection was not accepted");
        };
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
        // Closed with a reset (an error) or a clean end: never a byte.
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the check sent something: {read:?}"
        );
    }
}
