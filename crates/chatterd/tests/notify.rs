//! systemd's `Type=notify` protocol against a real daemon: a Unix datagram socket of the test
//! plays the service manager (`NOTIFY_SOCKET`, as a path and as an abstract name) and must
//! receive `READY=1` once the daemon is up, `WATCHDOG=1` pings when a watchdog period is set,
//! and `STOPPING=1` on SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{loopback_args, Daemon};

/// How long the test waits for any one notification.
const DEADLINE: Duration = Duration::from_secs(15);

/// A directory of this test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "chatterd-notify-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).expect("cannot create the test's directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Receives datagrams until one contains `line` (as a whole line), within [`DEADLINE`];
/// returns every datagram received until then.
fn await_line(socket: &UnixDatagram, line: &str) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {line:?} within {DEADLINE:?}; received {seen:?}"
        );
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = text.lines().any(|l| l == line);
                seen.push(text);
                if found {
                    return seen;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("recv on the notification socket: {e}"),
        }
    }
}

fn args(name: &str) -> Vec<String> {
    let mut args = loopback_args(name);
    args.extend(["--profile".into(), "local".into()]);
    args
}

#[test]
fn notifies_ready_then_stopping_through_a_path_socket() {
    let dir = TempDir::new("path");
    let path = dir.0.join("notify");
    let manager = UnixDatagram::bind(&path).expect("cannot bind the notification socket");
    let path_text = path.to_str().expect("temporary path is not UTF-8");

    let mut daemon = Daemon::start_with_env(&args("notified"), &[("NOTIFY_SOCKET", path_text)]);
    let ready = await_line(&manager, "READY=1");
    let last = ready.last().unwrap();
    assert!(
        last.lines().any(|l| l == "STATUS=1 member: 1 alive"),
        "READY without the member count: {ready:?}"
    );

    daemon.signal(libc::SIGTERM);
    let stopping = await_line(&manager, "STOPPING=1");
    assert!(
        stopping
            .last()
            .unwrap()
            .lines()
            .any(|l| l.starts_with("STATUS=leaving the cluster")),
        "{stopping:?}"
    );
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("chatterd did not exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn notifies_an_abstract_socket_and_pings_the_watchdog() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("chatterd-notify-test-{}-{nanos}", std::process::id());
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let manager = UnixDatagram::bind_addr(&address).expect("cannot bind the abstract socket");
    let env_value = format!("@{name}");

    // A 400 ms watchdog: pings every 200 ms. No WATCHDOG_PID, which means "for whoever reads
    // it" (sd_notify(3)).
    let _daemon = Daemon::start_with_env(
        &args("watched"),
        &[
            ("NOTIFY_SOCKET", env_value.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    await_line(&manager, "READY=1");
    let started = Instant::now();
    await_line(&manager, "WATCHDOG=1");
    await_line(&manager, "WATCHDOG=1");
    await_line(&manager, "WATCHDOG=1");
    // Three pings at one per 200 ms: well under the deadline; a loop that pinged once, or
    // only at the status interval (5 s), would not make it.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "three watchdog pings took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_check_command_does_not_inherit_the_notification_socket() {
    let dir = TempDir::new("inherit");
    let path = dir.0.join("notify");
    let manager = UnixDatagram::bind(&path).expect("cannot bind the notification socket");
    let path_text = path.to_str().expect("temporary path is not UTF-8");
    let mut args = args("inherits");
    // Passing only when the variable is absent from the check's environment.
    args.extend([
        "--check".into(),
        "name=env,interval=100ms,cmd=test -z \"$NOTIFY_SOCKET\"".into(),
    ]);
    let daemon = Daemon::start_with_env(&args, &[("NOTIFY_SOCKET", path_text)]);
    await_line(&manager, "READY=1");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (code, body) = daemon.get("/v1/checks").expect("GET /v1/checks");
        assert_eq!(code, 200, "{body}");
        if body.contains("\"passing\"") {
            break;
        }
        assert!(
            !body.contains("\"critical\"") && !body.contains("\"warning\""),
            "the check saw NOTIFY_SOCKET: {body}"
        );
        assert!(Instant::now() < deadline, "the check never ran: {body}");
        std::thread::sleep(common::POLL);
    }
}
