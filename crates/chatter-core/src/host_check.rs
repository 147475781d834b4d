//! Host checks: does a member's *host* still answer, when its process does not?
//!
//! A probe that gets neither a direct nor an indirect ack cannot tell a stalled process (a long
//! pause, `SIGSTOP`, a frozen container) from a host that lost power or was cut off: both are
//! silent to UDP. Their kernels are not: a live kernel answers a TCP SYN to a port nobody
//! listens on with a reset, whatever its processes do; a dead or cut-off host answers nothing.
//! So when a direct probe times out, the node asks its driver to check the target's host (a TCP
//! connection attempt to the member's gossip address: [`HostCheck`]), and the driver answers
//! with a [`HostAnswer`].
//!
//! Silence is evidence only on a path that has shown it delivers answers: a path is *trusted*
//! for `Config::host_check_trust_period` after a check of it was answered. Trust comes from the
//! checks of failed probes and from *calibration* checks (one per probe interval on average,
//! in bursts of at most [`CALIBRATION_BURST`]) of a member that has just acked this node's
//! direct probe, or answered the life check that admitted it, and whose path is not trusted,
//! or whose trust is half way to expiry. A calibration that goes unanswered while the member acks
//! probes shows a path that drops SYNs (a firewall): the path is distrusted, and not calibrated
//! again for a trust period. Silence on a trusted path, after the direct and indirect probes
//! failed and at least one intermediary answered (this node's own network works), caps the
//! suspicion at `Config::silent_host_suspicion_timeout`; an answer leaves the Lifeguard timeout
//! as it is. An ack at any time clears the suspicion as before: silence is never the only
//! evidence.
//!
//! Bounds: at most [`MAX_HOST_CHECKS_IN_FLIGHT`] checks in flight (each about 100 bytes plus
//! the member's name), and at most [`MAX_HOST_PATHS`] paths remembered (about 64 bytes each).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Host checks in flight at once; a check that would exceed it is skipped (and counted). A
/// probe starts at most one check and lasts at least a probe interval, calibrations start
/// in bursts of at most [`CALIBRATION_BURST`], and `Config::host_check_timeout` is at most the
/// probe timeout: five checks at a time is the most a driver that answers in time ever has.
/// Eight leaves room for a driver that is a period late.
pub const MAX_HOST_CHECKS_IN_FLIGHT: usize = 8;

/// Calibrations started within `CALIBRATION_BURST` probe intervals, at most: on average one
/// per probe interval, as before, but the members a node meets at once (when it joins, each
/// answering its life check) get their paths calibrated at once rather than one per probe
/// interval, so that a host lost soon after a cluster starts is already on a trusted path.
pub const CALIBRATION_BURST: usize = 4;

/// Paths (member addresses) whose host-check history is remembered. At most two entries are
/// added per probe interval (a probe's check and a calibration), and entries older than a
/// trust period are forgotten first, so with the defaults (600 s trust, 1 s probes) this is
/// only reached in clusters of thousands; then the oldest entry gives way.
pub const MAX_HOST_PATHS: usize = 4096;

/// A request to the driver: check whether the host at `addr` answers.
///
/// The driver opens a TCP connection to `addr` (the member's gossip address; nothing listens
/// there over TCP) and answers with [`Node::handle_host_check`](crate::Node::handle_host_check)
/// and the same `id`: [`HostAnswer::Answered`] if the connection was accepted or refused,
/// [`HostAnswer::Silent`] if nothing came back within `timeout`, [`HostAnswer::Inconclusive`]
/// for any error that may be this node's own (no route, no source address, a local firewall).
/// It sends no byte on a connection that succeeds and closes it at once. Sending a few SYNs
/// staggered within `timeout` (separate connection attempts) keeps one lost segment from
/// reading as silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCheck {
    /// Identifies the check in the answer.
    pub id: u64,
    /// The member's gossip address: the host and port to connect to.
    pub addr: SocketAddr,
    /// How long to wait for the host to answer (`Config::host_check_timeout`).
    pub timeout: Duration,
}

/// What came of a [`HostCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostAnswer {
    /// The host's kernel answered: the connection was accepted (then closed at once) or
    /// refused. The host is up, whatever its processes do.
    Answered,
    /// Nothing came back within the check's timeout.
    Silent,
    /// An error that says nothing about the host (no route from here, no local address, a
    /// local firewall, ...). Changes nothing but the counters.
    Inconclusive,
}

/// Why a check was started, and how its probe (if any) went since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Started when the direct probe timed out.
    Probe(ProbeState),
    /// Started to build or refresh trust in the path of a member that just acked.
    Calibration,
}

/// How the probe that started a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeState {
    /// Still running.
    Running,
    /// It got an ack: the member answers.
    Acked,
    /// It failed; `network_ok` when some intermediary answered (or there was none to ask and
    /// this node was healthy): only then is a silent host evidence.
    Failed { network_ok: bool },
}

/// One check in flight.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) name: String,
    pub(crate) generation: u64,
    pub(crate) addr: SocketAddr,
    pub(crate) purpose: Purpose,
    /// After this the check is forgotten (a driver that never answers).
    expires: Instant,
}

/// What this node knows of one path.
#[derive(Debug, Clone, Copy, Default)]
struct PathRecord {
    /// Last time a check of it was answered.
    answered: Option<Instant>,
    /// Last time a check of it went unanswered while its member acked probes.
    distrusted: Option<Instant>,
}

impl PathRecord {
    fn latest(&self) -> Option<Instant> {
        self.answered.max(self.distrusted)
    }
}

/// Checks in flight, the checks waiting for the driver, and each path's trust.
#[derive(Debug, Default)]
pub(crate) struct HostChecks {
    pending: BTreeMap<u64, Pending>,
    outbox: VecDeque<HostCheck>,
    paths: BTreeMap<SocketAddr, PathRecord>,
    next_id: u64,
    /// Start times of the latest calibrations, at most [`CALIBRATION_BURST`].
    calibrations: VecDeque<Instant>,
}

impl HostChecks {
    /// Starts a check of `name`'s life `generation` at `addr`; `None` (nothing started) when
    /// [`MAX_HOST_CHECKS_IN_FLIGHT`] checks are in flight. Returns the check's id and how many
    /// forgotten checks (never answered) were dropped to make room.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        addr: SocketAddr,
        purpose: Purpose,
        timeout: Duration,
    ) -> (Option<u64>, u64) {
        let before = self.pending.len();
        self.pending.retain(|_, p| now < p.expires);
        let expired = (before - self.pending.len()) as u64;
        if expired > 0 {
            let live: Vec<u64> = self.pending.keys().copied().collect();
            self.outbox.retain(|c| live.contains(&c.id));
        }
        if self.pending.len() >= MAX_HOST_CHECKS_IN_FLIGHT {
            return (None, expired);
        }
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        self.pending.insert(
            id,
            Pending {
                name: name.to_owned(),
                generation,
                addr,
                purpose,
                // Twice the timeout and a second: a driver answers by the timeout, a busy one
                // a little later; after that the answer is not coming.
                expires: now + timeout * 2 + Duration::from_secs(1),
            },
        );
        self.outbox.push_back(HostCheck { id, addr, timeout });
        (Some(id), expired)
    }

    /// The next check for the driver to run.
    pub(crate) fn poll(&mut self) -> Option<HostCheck> {
        self.outbox.pop_front()
    }

    /// The check `id` is answered: removes and returns it (`None` if it is not in flight).
    pub(crate) fn take(&mut self, id: u64) -> Option<Pending> {
        self.outbox.retain(|c| c.id != id);
        self.pending.remove(&id)
    }

    /// The probe of `name` that started a check got an ack.
    pub(crate) fn probe_acked(&mut self, name: &str) {
        self.set_probe_state(name, ProbeState::Acked);
    }

    /// The probe of `name` that started a check failed.
    pub(crate) fn probe_failed(&mut self, name: &str, network_ok: bool) {
        self.set_probe_state(name, ProbeState::Failed { network_ok });
    }

    fn set_probe_state(&mut self, name: &str, state: ProbeState) {
        for p in self.pending.values_mut() {
            if p.name == name && p.purpose == Purpose::Probe(ProbeState::Running) {
                p.purpose = Purpose::Probe(state);
            }
        }
    }

    /// Whether the path to `addr` is trusted: a check of it was answered within `period`,
    /// and it was not distrusted since.
    pub(crate) fn is_trusted(&self, now: Instant, addr: SocketAddr, period: Duration) -> bool {
        self.paths.get(&addr).is_some_and(|p| {
            p.answered
                .is_some_and(|a| now.saturating_duration_since(a) < period)
                && p.distrusted.is_none_or(|d| Some(d) < p.answered)
        })
    }

    /// Whether a member at `addr` that just answered should get a calibration check now: fewer
    /// than [`CALIBRATION_BURST`] calibrations in the last `CALIBRATION_BURST * interval`, and
    /// its path is neither trusted with more than half of `period` left nor distrusted within
    /// `period`. Marks the calibration as started when it returns true.
    pub(crate) fn calibration_due(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        period: Duration,
        interval: Duration,
    ) -> bool {
        let window = interval * CALIBRATION_BURST as u32;
        while self
            .calibrations
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            self.calibrations.pop_front();
        }
        if self.calibrations.len() >= CALIBRATION_BURST {
            return false;
        }
        let fresh = |t: Option<Instant>, within: Duration| {
            t.is_some_and(|t| now.saturating_duration_since(t) < within)
        };
        let due = match self.paths.get(&addr) {
            None => true,
            Some(p) if self.is_trusted(now, addr, period) => !fresh(p.answered, period / 2),
            Some(p) => !fresh(p.distrusted, period),
        };
        if due {
            self.calibrations.push_back(now);
        }
        due
    }

    /// A check of `addr` was answered now: the path is trusted.
    pub(crate) fn note_answered(&mut self, now: Instant, addr: SocketAddr, period: Duration) {
        self.record(now, addr, period).answered = Some(now);
    }

    /// A check of `addr` went unanswered while its member acked probes: the path drops what
    /// host checks send, and is distrusted.
    pub(crate) fn note_distrusted(&mut self, now: Instant, addr: SocketAddr, period: Duration) {
        self.record(now, addr, period).distrusted = Some(now);
    }

    /// The record of `addr`, made room for if new: entries whose news is older than `period`
    /// go first, then the oldest.
    fn record(&mut self, now: Instant, addr: SocketAddr, period: Duration) -> &mut PathRecord {
        if !self.paths.contains_key(&addr) && self.paths.len() >= MAX_HOST_PATHS {
            self.paths.retain(|_, p| {
                p.latest()
                    .is_some_and(|t| now.saturating_duration_since(t) < period)
            });
            if self.paths.len() >= MAX_HOST_PATHS {
                let oldest = self
                    .paths
                    .iter()
                    .min_by_key(|(_, p)| p.latest())
                    .map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    self.paths.remove(&oldest);
                }
            }
        }
        self.paths.entry(addr).or_default()
    }

    /// Checks in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Paths remembered.
    #[cfg(test)]
    pub(crate) fn paths(&self) -> usize {
        self.paths.len()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7000))
    }

    const PERIOD: Duration = Duration::from_secs(600);
    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn checks_in_flight_are_bounded_and_forgotten_when_never_answered() {
        let now = Instant::now();
        let mut checks = HostChecks::default();
        for i in 0..MAX_HOST_CHECKS_IN_FLIGHT as u8 {
            let (id, _) = checks.start(now, "m", 1, addr(i), Purpose::Calibration, SECOND);
            assert!(id.is_some());
        }
        let (id, expired) = checks.start(now, "m", 1, addr(9), Purpose::Calibration, SECOND);
        assert_eq!((id, expired), (None, 0));
        assert_eq!(checks.in_flight(), MAX_HOST_CHECKS_IN_FLIGHT);
        // A driver that never answers: the checks are forgotten after their expiry.
        let later = now + SECOND * 4;
        let (id, expired) = checks.start(later, "m", 1, addr(9), Purpose::Calibration, SECOND);
        assert!(id.is_some());
        assert_eq!(expired, MAX_HOST_CHECKS_IN_FLIGHT as u64);
        assert_eq!(checks.in_flight(), 1);
        // Only the live check is still waiting for the driver.
        assert_eq!(checks.poll().map(|c| c.addr), Some(addr(9)));
        assert!(checks.poll().is_none());
    }

    #[test]
    fn an_answered_path_is_trusted_until_the_period_ends_or_a_silence_distrusts_it() {
        let now = Instant::now();
        let mut checks = HostChecks::default();
        assert!(!checks.is_trusted(now, addr(1), PERIOD));
        checks.note_answered(now, addr(1), PERIOD);
        assert!(checks.is_trusted(now + PERIOD / 2, addr(1), PERIOD));
        assert!(!checks.is_trusted(now + PERIOD, addr(1), PERIOD));
        checks.note_distrusted(now + SECOND, addr(1), PERIOD);
        assert!(!checks.is_trusted(now + SECOND, addr(1), PERIOD));
        checks.note_answered(now + SECOND * 2, addr(1), PERIOD);
        assert!(checks.is_trusted(now + SECOND * 2, addr(1), PERIOD));
    }

    #[test]
    fn calibrations_are_rate_limited_and_skip_fresh_or_distrusted_paths() {
        let now = Instant::now();
        // A burst, then none until the burst is a window of CALIBRATION_BURST intervals old:
        // one per interval on average, whatever the paths.
        let mut burst = HostChecks::default();
        for i in 0..CALIBRATION_BURST as u8 {
            assert!(burst.calibration_due(now, addr(10 + i), PERIOD, SECOND));
        }
        assert!(!burst.calibration_due(now, addr(2), PERIOD, SECOND));
        let window = SECOND * CALIBRATION_BURST as u32;
        assert!(!burst.calibration_due(now + window / 2, addr(2), PERIOD, SECOND));
        assert!(burst.calibration_due(now + window, addr(2), PERIOD, SECOND));
        let mut checks = HostChecks::default();
        assert!(checks.calibration_due(now, addr(1), PERIOD, SECOND));
        checks.note_answered(now, addr(1), PERIOD);
        let t = now + SECOND;
        assert!(!checks.calibration_due(t, addr(1), PERIOD, SECOND), "fresh");
        let t = now + PERIOD / 2;
        assert!(checks.calibration_due(t, addr(1), PERIOD, SECOND), "aging");
        checks.note_distrusted(t, addr(2), PERIOD);
        let t = t + SECOND;
        assert!(
            !checks.calibration_due(t, addr(2), PERIOD, SECOND),
            "distrusted"
        );
        let t = t + PERIOD;
        assert!(checks.calibration_due(t, addr(2), PERIOD, SECOND), "again");
    }

    #[test]
    fn paths_are_bounded_and_the_oldest_gives_way() {
        let now = Instant::now();
        let mut checks = HostChecks::default();
        for i in 0..MAX_HOST_PATHS as u32 + 10 {
            let a = SocketAddr::from((i.to_be_bytes(), 7000));
            checks.note_answered(now + Duration::from_millis(u64::from(i)), a, PERIOD);
        }
        assert_eq!(checks.paths(), MAX_HOST_PATHS);
        let first = SocketAddr::from((0u32.to_be_bytes(), 7000));
        assert!(!checks.is_trusted(now + SECOND * 10, first, PERIOD));
        let last = SocketAddr::from(((MAX_HOST_PATHS as u32 + 9).to_be_bytes(), 7000));
        assert!(checks.is_trusted(now + SECOND * 10, last, PERIOD));
    }

    #[test]
    fn the_probe_state_follows_the_probe() {
        let now = Instant::now();
        let mut checks = HostChecks::default();
        let purpose = Purpose::Probe(ProbeState::Running);
        let (Some(id), _) = checks.start(now, "m", 1, addr(1), purpose, SECOND) else {
            panic!("not started");
        };
        checks.probe_failed("m", true);
        let pending = checks.take(id).map(|p| p.purpose);
        assert_eq!(
            pending,
            Some(Purpose::Probe(ProbeState::Failed { network_ok: true }))
        );
        assert!(checks.take(id).is_none(), "answered twice");
    }
}
