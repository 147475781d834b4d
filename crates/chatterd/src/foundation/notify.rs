//! Readiness, status and watchdog notifications to the service manager: systemd's
//! `Type=notify` protocol (sd_notify(3)).
//!
//! The service manager passes the address of a Unix datagram socket in `NOTIFY_SOCKET`: an
//! absolute path, or a Linux abstract socket name written with a leading `@`. The daemon sends
//! it newline-separated `KEY=VALUE` lines: `READY=1` with a `STATUS=` once both sockets are bound
//! (the moment it prints its `chatterd ready` line), `STATUS=` when the member counts change,
//! `WATCHDOG=1` while the gossip node answers (when the unit sets `WatchdogSec=`), and
//! `STOPPING=1` when a signal starts the graceful leave. Without `NOTIFY_SOCKET` every call is a
//! no-op.
//!
//! Written over std's `UnixDatagram` rather than with the `sd-notify` crate: that crate connects
//! to the variable's value as a path, so an abstract address (`@name`, which sd_notify(3)
//! specifies and which containers and user managers use) fails with "no such file"; std's
//! `SocketAddrExt::from_abstract_name` handles both forms in a few lines. The variables are read
//! and removed from the environment once, at start, before any thread exists, so that health
//! checks and event handlers started later cannot notify in the daemon's name (systemd's
//! `NotifyAccess=main` would drop their datagrams anyway; removing them keeps the children's
//! environment honest too).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// The variable naming the service manager's notification socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";
/// The watchdog period the service manager expects pings within, in microseconds
/// (`WatchdogSec=` of the unit).
pub const WATCHDOG_USEC_ENV: &str = "WATCHDOG_USEC";
/// The process the watchdog period is meant for; another process's value is ignored.
pub const WATCHDOG_PID_ENV: &str = "WATCHDOG_PID";

/// Longest socket path `sockaddr_un` holds on Linux (108 bytes with the terminating NUL for a
/// path; an abstract name has the 107 bytes after its leading NUL).
const MAX_ADDRESS_LEN: usize = 107;

/// How long one notification may block the daemon's only thread when the manager's socket
/// queue is full: systemd drains it at once, so a second means the manager is gone or stuck,
/// and the daemon goes on without it rather than stall gossip.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Shortest watchdog period honoured: pings go out every half period, and a period below
/// 100 ms would wake the daemon more often than its own protocol timers. Shorter values are
/// raised to it.
pub const MIN_WATCHDOG: Duration = Duration::from_millis(100);

/// Longest watchdog period honoured: the pings' timer adds the period to the clock, and a
/// period of the order of `u64::MAX` microseconds would overflow it; a watchdog that waits
/// more than a day watches nothing anyway. Longer values are lowered to it.
pub const MAX_WATCHDOG: Duration = Duration::from_secs(24 * 3600);

/// What is wrong with the notification variables, or why a notification was not delivered.
/// None of these stops the daemon: it runs on without notifying.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is set but empty.
    #[error("{NOTIFY_SOCKET_ENV} is empty")]
    Empty,
    /// `NOTIFY_SOCKET` is neither an absolute path nor `@` followed by an abstract name.
    #[error(
        "{NOTIFY_SOCKET_ENV}={0:?} is neither an absolute path nor an abstract socket name (@NAME)"
    )]
    NotAbsolute(String),
    /// The address is longer than a Unix socket address holds.
    #[error("{NOTIFY_SOCKET_ENV} is {0} bytes, longer than a Unix socket address holds (107)")]
    TooLong(usize),
    /// An abstract address on a system without abstract sockets.
    #[error("{NOTIFY_SOCKET_ENV}={0:?}: abstract sockets exist only on Linux")]
    AbstractUnsupported(String),
    /// `WATCHDOG_USEC` is not a positive number of microseconds.
    #[error("{WATCHDOG_USEC_ENV}={0:?} is not a positive number of microseconds")]
    BadWatchdog(String),
    /// The datagram could not be sent (socket gone, queue full past the timeout, ...).
    #[error("cannot notify the service manager at {target}: {source}")]
    Send {
        /// The socket's address as the variable gave it.
        target: String,
        /// The error of `socket`, `sendto` or the timeout.
        source: std::io::Error,
    },
}

/// The service manager's notification socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket bound at this absolute path.
    Path(PathBuf),
    /// A Linux abstract socket of this name (the bytes after `@`).
    Abstract(Vec<u8>),
}

impl Target {
    /// Parses a `NOTIFY_SOCKET` value: `/absolute/path` or `@abstract-name`.
    pub fn parse(value: &OsStr) -> Result<Target, NotifyError> {
        let bytes = value.as_bytes();
        if bytes.is_empty() {
            return Err(NotifyError::Empty);
        }
        if bytes.len() > MAX_ADDRESS_LEN {
            return Err(NotifyError::TooLong(bytes.len()));
        }
        match bytes.split_first() {
            Some((&b'@', name)) => Ok(Target::Abstract(name.to_vec())),
            Some((&b'/', _)) => Ok(Target::Path(PathBuf::from(value))),
            _ => Err(NotifyError::NotAbsolute(
                value.to_string_lossy().into_owned(),
            )),
        }
    }

    fn address(&self) -> Result<SocketAddr, NotifyError> {
        match self {
            Target::Path(path) => {
                SocketAddr::from_pathname(path).map_err(|source| self.error(source))
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Target::Abstract(name) => {
                #[cfg(target_os = "android")]
                use std::os::android::net::SocketAddrExt;
                #[cfg(target_os = "linux")]
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).map_err(|source| self.error(source))
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            Target::Abstract(_) => Err(NotifyError::AbstractUnsupported(self.to_string())),
        }
    }

    fn error(&self, source: std::io::Error) -> NotifyError {
        NotifyError::Send {
            target: self.to_string(),
            source,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Path(path) => write!(f, "{}", path.display()),
            Target::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// The daemon's link to its service manager: where to send notifications, and the watchdog
/// period if one is asked for. The default notifies nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier sending to `target`, with pings every half `watchdog` if given.
    pub fn new(target: Option<Target>, watchdog: Option<Duration>) -> Notifier {
        Notifier { target, watchdog }
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, and removes them from this
    /// process's environment. Call it before any thread starts (like the gossip key of
    /// `CHATTER_GOSSIP_KEY`).
    ///
    /// Returns the notifier and what was wrong with the variables, if anything: a bad socket
    /// address leaves notifications off, a bad watchdog period leaves the watchdog off; the
    /// daemon runs either way (the service manager then times the start out, which names the
    /// problem more precisely than a refusal to start would).
    pub fn take_env() -> (Notifier, Vec<NotifyError>) {
        let socket = take(NOTIFY_SOCKET_ENV);
        let usec = take(WATCHDOG_USEC_ENV);
        let pid = take(WATCHDOG_PID_ENV);
        Notifier::from_values(
            socket.as_deref(),
            usec.as_deref(),
            pid.as_deref(),
            std::process::id(),
        )
    }

    /// [`Notifier::take_env`] on given values (`own_pid`: this process's id, which
    /// `WATCHDOG_PID` must name when set).
    pub fn from_values(
        socket: Option<&OsStr>,
        usec: Option<&OsStr>,
        pid: Option<&OsStr>,
        own_pid: u32,
    ) -> (Notifier, Vec<NotifyError>) {
        let mut problems = Vec::new();
        let target = match socket.map(Target::parse) {
            Some(Ok(target)) => Some(target),
            Some(Err(err)) => {
                problems.push(err);
                None
            }
            None => None,
        };
        // The watchdog is for the process WATCHDOG_PID names (a wrapper's variables may reach
        // its child), and means nothing without a socket to ping.
        let for_us = match pid {
            Some(pid) => pid.to_str().and_then(|p| p.trim().parse::<u32>().ok()) == Some(own_pid),
            None => true,
        };
        let watchdog = match usec {
            Some(usec) if for_us && target.is_some() => {
                match usec.to_str().and_then(|u| u.trim().parse::<u64>().ok()) {
                    Some(micros) if micros > 0 => Some(Duration::from_micros(micros)),
                    _ => {
                        problems.push(NotifyError::BadWatchdog(
                            usec.to_string_lossy().into_owned(),
                        ));
                        None
                    }
                }
            }
            _ => None,
        };
        (Notifier { target, watchdog }, problems)
    }

    /// Whether notifications go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog period the service manager asked for, within [`MIN_WATCHDOG`] and
    /// [`MAX_WATCHDOG`].
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
            .map(|period| period.clamp(MIN_WATCHDOG, MAX_WATCHDOG))
    }

    /// Sends `READY=1` and `STATUS=status`.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&["READY=1", &status_line(status)])
    }

    /// Sends `STATUS=status`.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&[&status_line(status)])
    }

    /// Sends `STOPPING=1` and `STATUS=status`.
    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&["STOPPING=1", &status_line(status)])
    }

    /// Sends `WATCHDOG=1`.
    pub fn watchdog_ping(&self) -> Result<(), NotifyError> {
        self.send(&["WATCHDOG=1"])
    }

    /// Sends these `KEY=VALUE` lines in one datagram; nothing without a target.
    pub fn send(&self, lines: &[&str]) -> Result<(), NotifyError> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let address = target.address()?;
        let message = lines.join("\n");
        let socket = UnixDatagram::unbound().map_err(|e| target.error(e))?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(|e| target.error(e))?;
        let sent = socket
            .send_to_addr(message.as_bytes(), &address)
            .map_err(|e| target.error(e))?;
        if sent != message.len() {
            return Err(target.error(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "the datagram was truncated",
            )));
        }
        Ok(())
    }
}

/// `STATUS=text`, on one line (the protocol separates assignments with newlines).
fn status_line(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("STATUS={one_line}")
}

/// Reads and removes one variable.
fn take(name: &str) -> Option<OsString> {
    let value = std::env::var_os(name)?;
    std::env::remove_var(name);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(
        socket: Option<&str>,
        usec: Option<&str>,
        pid: Option<&str>,
    ) -> (Notifier, Vec<NotifyError>) {
        Notifier::from_values(
            socket.map(OsStr::new),
            usec.map(OsStr::new),
            pid.map(OsStr::new),
            42,
        )
    }

    #[test]
    fn parses_paths_and_abstract_names() {
        assert_eq!(
            Target::parse(OsStr::new("/run/systemd/notify")).unwrap(),
            Target::Path(PathBuf::from("/run/systemd/notify"))
        );
        assert_eq!(
            Target::parse(OsStr::new("@/org/freedesktop/systemd1/notify/1")).unwrap(),
            Target::Abstract(b"/org/freedesktop/systemd1/notify/1".to_vec())
        );
    }

    #[test]
    fn refuses_relative_empty_and_overlong_addresses() {
        assert!(matches!(
            Target::parse(OsStr::new("")),
            Err(NotifyError::Empty)
        ));
        assert!(matches!(
            Target::parse(OsStr::new("run/notify")),
            Err(NotifyError::NotAbsolute(_))
        ));
        let long = format!("/{}", "a".repeat(MAX_ADDRESS_LEN));
        assert!(matches!(
            Target::parse(OsStr::new(&long)),
            Err(NotifyError::TooLong(108))
        ));
    }

    #[test]
    fn no_socket_means_no_notifications_and_no_watchdog() {
        let (notifier, problems) = values(None, Some("1000000"), None);
        assert!(problems.is_empty());
        assert!(!notifier.is_enabled());
        assert_eq!(notifier.watchdog(), None);
        // Sending without a target is a no-op, not an error.
        notifier.ready("x").unwrap();
    }

    #[test]
    fn watchdog_only_for_the_named_process() {
        let (notifier, _) = values(Some("/run/n"), Some("2000000"), Some("42"));
        assert_eq!(notifier.watchdog(), Some(Duration::from_secs(2)));
        let (notifier, _) = values(Some("/run/n"), Some("2000000"), Some("43"));
        assert_eq!(notifier.watchdog(), None);
        let (notifier, _) = values(Some("/run/n"), Some("2000000"), None);
        assert_eq!(notifier.watchdog(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn bad_watchdog_values_are_reported_and_ignored() {
        for bad in ["0", "-1", "soon", ""] {
            let (notifier, problems) = values(Some("/run/n"), Some(bad), None);
            assert!(notifier.is_enabled());
            assert_eq!(notifier.watchdog(), None, "{bad:?}");
            assert!(
                matches!(problems.as_slice(), [NotifyError::BadWatchdog(_)]),
                "{bad:?}: {problems:?}"
            );
        }
        let (notifier, _) = values(Some("/run/n"), Some("10"), None);
        assert_eq!(notifier.watchdog(), Some(MIN_WATCHDOG));
        let (notifier, _) = values(Some("/run/n"), Some(&u64::MAX.to_string()), None);
        assert_eq!(notifier.watchdog(), Some(MAX_WATCHDOG));
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(status_line("a\nREADY=1\tb"), "STATUS=a READY=1 b");
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("chatterd-notify-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::new(Some(Target::Path(path)), None);
        notifier.ready("up\nnow").unwrap();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up now");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let notifier = Notifier::new(
            Some(Target::Path(PathBuf::from("/nonexistent/chatterd/notify"))),
            None,
        );
        assert!(matches!(notifier.ready("x"), Err(NotifyError::Send { .. })));
    }
}
