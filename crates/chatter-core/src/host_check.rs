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
//! checks of failed probes and from *calibration* checks of a member that has just acked this
//! node's direct probe, or answered the life check that admitted it, and whose path is not
//! trusted, or whose trust is half way to expiry. Such members wait in a queue, and at most
//! [`CALIBRATIONS_PER_INTERVAL`] calibrations start per probe interval, at most
//! [`MAX_CALIBRATIONS_IN_FLIGHT`] at a time: a node that meets a few dozen members at once
//! (it has just joined, or they have) trusts their paths within seconds rather than one path
//! per probe interval, so a host lost soon after is already on a trusted path.
//!
//! A calibration (or the check of a probe that got an ack after all) that goes unanswered while
//! the member is alive is noted against the path with the member's life and incarnation; if
//! the member then acks this node again in that same incarnation, the path drops SYNs (a
//! firewall): it is distrusted, and not calibrated again for a trust period. A member that was
//! suspected in between (its incarnation rose to refute it) or restarted was most likely gone
//! at the time of the silence, which says nothing against the path. Silence on a trusted path,
//! after the direct and indirect probes failed and at least one intermediary answered (this
//! node's own network works), caps the suspicion at `Config::silent_host_suspicion_timeout`; an
//! answer leaves the Lifeguard timeout as it is. An ack at any time clears the suspicion as
//! before: silence is never the only evidence.
//!
//! Bounds: at most [`MAX_HOST_CHECKS_IN_FLIGHT`] checks in flight (each about 100 bytes plus
//! the member's name), at most [`MAX_HOST_PATHS`] paths remembered (about 80 bytes each) and as
//! many calibrations queued (about 60 bytes plus the member's name, which the member table
//! bounds).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Host checks in flight at once; a check that would exceed it is skipped (and counted). A
/// probe starts at most one check and lasts at least a probe interval, calibrations start
/// in bursts of at most [`CALIBRATION_BURST`], and `Config::host_check_timeout` is at most the
/// probe timeout: five checks at a time is the most a driver that answers in time ever has.
/// Eight leaves room for a driver that is a period late.
pub const MAX_HOST_CHECKS_IN_FLIGHT: usize = 8;

/// Calibrations started per probe interval, at most. A calibration costs one SYN and one reset
/// on a healthy path (three of each at most, on a lossy one): four per interval is under 1.5
/// kB/s while a node calibrates the paths of members it has just met, and a 20-node cluster
/// that has just formed trusts every path within five seconds. Once calibrated, a path is
/// refreshed once per half trust period, whatever this rate.
pub const CALIBRATIONS_PER_INTERVAL: usize = 4;

/// Calibrations in flight at once, at most: half of [`MAX_HOST_CHECKS_IN_FLIGHT`], so the
/// checks of failed probes always find room.
pub const MAX_CALIBRATIONS_IN_FLIGHT: usize = MAX_HOST_CHECKS_IN_FLIGHT / 2;

/// Paths (member addresses) whose host-check history is remembered, and calibrations queued.
/// At most a probe's check and [`CALIBRATIONS_PER_INTERVAL`] calibrations add paths per probe
/// interval, and entries older than a trust period are forgotten first, so with the defaults
/// (600 s trust, 1 s probes) this is only reached in clusters of thousands; then the oldest
/// entry gives way. A calibration that finds the queue full is dropped (and counted): its
/// member is offered again at its next ack.
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
    /// Last time it was distrusted: a check went unanswered while its member kept acking.
    distrusted: Option<Instant>,
    /// A check went unanswered while its member was alive in this life and incarnation
    /// (generation, incarnation): if the member acks again in the same incarnation, the path
    /// is distrusted.
    silent_while_alive: Option<(u64, u64)>,
}

impl PathRecord {
    fn latest(&self) -> Option<Instant> {
        self.answered.max(self.distrusted)
    }
}

/// A member whose path waits for a calibration check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Calibration {
    pub(crate) name: String,
    pub(crate) generation: u64,
    pub(crate) addr: SocketAddr,
}

/// What a member's ack says about its path's calibration ([`HostChecks::on_member_ack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckVerdict {
    /// Nothing to do: the path is trusted and fresh, distrusted, or already queued.
    Nothing,
    /// The path was queued for a calibration.
    Queued,
    /// The path was silent to a check while the member was alive in this same incarnation,
    /// and the member acks: the path drops host checks, and is distrusted now.
    Distrusted,
    /// The queue is full: not queued.
    QueueFull,
}

/// Checks in flight, the checks waiting for the driver, the calibrations waiting to start,
/// and each path's trust.
#[derive(Debug, Default)]
pub(crate) struct HostChecks {
    pending: BTreeMap<u64, Pending>,
    outbox: VecDeque<HostCheck>,
    paths: BTreeMap<SocketAddr, PathRecord>,
    next_id: u64,
    /// Members waiting for a calibration, oldest first, and their addresses (one entry each).
    queued: VecDeque<Calibration>,
    queued_addrs: BTreeSet<SocketAddr>,
    /// Start times of the calibrations started within the last probe interval.
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
        let expired = self.forget_expired(now);
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

    /// Forgets the checks the driver never answered; returns how many.
    fn forget_expired(&mut self, now: Instant) -> u64 {
        let before = self.pending.len();
        self.pending.retain(|_, p| now < p.expires);
        let expired = (before - self.pending.len()) as u64;
        if expired > 0 {
            let live: Vec<u64> = self.pending.keys().copied().collect();
            self.outbox.retain(|c| live.contains(&c.id));
        }
        expired
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

    /// A member at `addr`, in life `generation` and `incarnation`, has just acked this node (a
    /// direct probe, or the life check that admitted it): distrusts its path if it was silent
    /// to a check in this same incarnation, else queues a calibration if the path is neither
    /// trusted with more than half of `period` left nor distrusted within `period`.
    pub(crate) fn on_member_ack(
        &mut self,
        now: Instant,
        name: &str,
        (generation, incarnation): (u64, u64),
        addr: SocketAddr,
        period: Duration,
    ) -> AckVerdict {
        if let Some(record) = self.paths.get_mut(&addr) {
            match record.silent_while_alive.take() {
                Some(life) if life == (generation, incarnation) => {
                    record.distrusted = Some(now);
                    return AckVerdict::Distrusted;
                }
                _ => {}
            }
        }
        let fresh = |t: Option<Instant>, within: Duration| {
            t.is_some_and(|t| now.saturating_duration_since(t) < within)
        };
        let due = match self.paths.get(&addr) {
            None => true,
            Some(p) if self.is_trusted(now, addr, period) => !fresh(p.answered, period / 2),
            Some(p) => !fresh(p.distrusted, period),
        };
        if !due || self.queued_addrs.contains(&addr) {
            return AckVerdict::Nothing;
        }
        if self.queued.len() >= MAX_HOST_PATHS {
            return AckVerdict::QueueFull;
        }
        self.queued_addrs.insert(addr);
        self.queued.push_back(Calibration {
            name: name.to_owned(),
            generation,
            addr,
        });
        AckVerdict::Queued
    }

    /// The next queued calibration to start now, if fewer than [`CALIBRATIONS_PER_INTERVAL`]
    /// started within the last `interval` and fewer than [`MAX_CALIBRATIONS_IN_FLIGHT`] are in
    /// flight; queued members for which `still_due` is false (gone, restarted, moved) are
    /// dropped on the way. Marks the calibration as started: the caller
    /// [`HostChecks::start`]s it.
    pub(crate) fn next_calibration(
        &mut self,
        now: Instant,
        interval: Duration,
        still_due: impl Fn(&Calibration) -> bool,
    ) -> Option<Calibration> {
        if self.calibrations_in_flight(Some(now)) >= MAX_CALIBRATIONS_IN_FLIGHT {
            return None;
        }
        while self
            .calibrations
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= interval)
        {
            self.calibrations.pop_front();
        }
        if self.calibrations.len() >= CALIBRATIONS_PER_INTERVAL {
            return None;
        }
        while let Some(next) = self.queued.pop_front() {
            self.queued_addrs.remove(&next.addr);
            if still_due(&next) {
                self.calibrations.push_back(now);
                return Some(next);
            }
        }
        None
    }

    /// When a queued calibration may start next, if one waits for the rate rather than for a
    /// check in flight to end (the answer's arrival starts the next one).
    pub(crate) fn next_calibration_deadline(&self, interval: Duration) -> Option<Instant> {
        if self.queued.is_empty() || self.calibrations_in_flight(None) >= MAX_CALIBRATIONS_IN_FLIGHT
        {
            return None;
        }
        self.calibrations.front().map(|&t| t + interval)
    }

    /// Calibrations in flight; with `now`, only those not yet forgotten by then (a driver
    /// that never answers must not stop calibrations for good).
    fn calibrations_in_flight(&self, now: Option<Instant>) -> usize {
        self.pending
            .values()
            .filter(|p| p.purpose == Purpose::Calibration && now.is_none_or(|now| now < p.expires))
            .count()
    }

    /// A check of `addr` went unanswered while its member was alive in life `generation` and
    /// `incarnation`: distrusted if the member acks again in that incarnation.
    pub(crate) fn note_silent_while_alive(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        life: (u64, u64),
        period: Duration,
    ) {
        self.record(now, addr, period).silent_while_alive = Some(life);
    }

    /// A check of `addr` was answered now: the path is trusted.
    pub(crate) fn note_answered(&mut self, now: Instant, addr: SocketAddr, period: Duration) {
        let record = self.record(now, addr, period);
        record.answered = Some(now);
        record.silent_while_alive = None;
    }

    /// The path to `addr` drops what host checks send: distrusted.
    #[cfg(test)]
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

    fn ack(checks: &mut HostChecks, now: Instant, i: u8, life: (u64, u64)) -> AckVerdict {
        checks.on_member_ack(now, &format!("m{i}"), life, addr(i), PERIOD)
    }

    #[test]
    fn calibrations_are_queued_and_started_at_the_rate_and_in_flight_bounds() {
        let now = Instant::now();
        let mut checks = HostChecks::default();
        // Twenty members met at once: all queued, once each.
        for i in 0..20 {
            assert_eq!(ack(&mut checks, now, i, (1, 0)), AckVerdict::Queued);
        }
        assert_eq!(
            ack(&mut checks, now, 3, (1, 0)),
            AckVerdict::Nothing,
            "queued once"
        );
        let mut started = Vec::new();
        let mut t = now;
        let all = |_: &Calibration| true;
        while started.len() < 20 {
            assert!(t < now + SECOND * 10, "calibrations stalled");
            let mut this_interval = 0;
            while let Some(c) = checks.next_calibration(t, SECOND, all) {
                let purpose = Purpose::Calibration;
                let (id, _) = checks.start(t, &c.name, c.generation, c.addr, purpose, SECOND);
                started.push((t, id.map(|id| checks.take(id))));
                this_interval += 1;
            }
            assert!(this_interval <= CALIBRATIONS_PER_INTERVAL);
            t += SECOND;
        }
        // Every check answered at once: the rate, not the checks in flight, bounds them, and
        // twenty paths take five intervals.
        assert_eq!(started.last().map(|(at, _)| *at), Some(now + SECOND * 4));
        assert!(started.iter().all(|(_, p)| p.is_some()));
        // In flight: no more than MAX_CALIBRATIONS_IN_FLIGHT, whatever the rate allows.
        let mut busy = HostChecks::default();
        for i in 0..10 {
            ack(&mut busy, now, i, (1, 0));
        }
        let mut t = now;
        for _ in 0..3 {
            while let Some(c) = busy.next_calibration(t, SECOND, all) {
                busy.start(
                    t,
                    &c.name,
                    c.generation,
                    c.addr,
                    Purpose::Calibration,
                    SECOND,
                );
            }
            t += SECOND;
        }
        assert_eq!(busy.in_flight(), MAX_CALIBRATIONS_IN_FLIGHT);
        // Members no longer due are dropped without using the rate.
        let mut gone = HostChecks::default();
        for i in 0..10 {
            ack(&mut gone, now, i, (1, 0));
        }
        let c = gone.next_calibration(now, SECOND, |c: &Calibration| c.addr == addr(7));
        assert_eq!(c.map(|c| c.addr), Some(addr(7)));
        // The rate counted one start: three more in this interval, from where the queue was.
        let rest: Vec<_> = std::iter::from_fn(|| gone.next_calibration(now, SECOND, all))
            .map(|c| c.addr)
            .collect();
        assert_eq!(rest, vec![addr(8), addr(9)]);
    }

    #[test]
    fn the_calibration_queue_is_bounded() {
        let now = Instant::now();
        let mut checks = HostChecks::default();
        for i in 0..MAX_HOST_PATHS as u32 {
            let a = SocketAddr::from((i.to_be_bytes(), 7000));
            let verdict = checks.on_member_ack(now, "m", (1, 0), a, PERIOD);
            assert_eq!(verdict, AckVerdict::Queued);
        }
        let one_more = SocketAddr::from((u32::MAX.to_be_bytes(), 7000));
        let verdict = checks.on_member_ack(now, "m", (1, 0), one_more, PERIOD);
        assert_eq!(verdict, AckVerdict::QueueFull);
        assert_eq!(checks.queued.len(), MAX_HOST_PATHS);
        assert_eq!(checks.queued_addrs.len(), MAX_HOST_PATHS);
    }

    #[test]
    fn calibrations_skip_fresh_or_distrusted_paths() {
        let now = Instant::now();
        let mut checks = HostChecks::default();
        checks.note_answered(now, addr(1), PERIOD);
        assert_eq!(
            ack(&mut checks, now + SECOND, 1, (1, 0)),
            AckVerdict::Nothing,
            "fresh"
        );
        let t = now + PERIOD / 2;
        assert_eq!(ack(&mut checks, t, 1, (1, 0)), AckVerdict::Queued, "aging");
        checks.note_distrusted(t, addr(2), PERIOD);
        let t = t + SECOND;
        assert_eq!(
            ack(&mut checks, t, 2, (1, 0)),
            AckVerdict::Nothing,
            "distrusted"
        );
        let t = t + PERIOD;
        assert_eq!(ack(&mut checks, t, 2, (1, 0)), AckVerdict::Queued, "again");
    }

    #[test]
    fn a_path_silent_while_its_member_acks_in_the_same_incarnation_is_distrusted() {
        let now = Instant::now();
        let mut checks = HostChecks::default();
        checks.note_answered(now, addr(1), PERIOD);
        checks.note_silent_while_alive(now + SECOND, addr(1), (1, 4), PERIOD);
        // Trusted until the member proves alive through a path that was silent.
        assert!(checks.is_trusted(now + SECOND, addr(1), PERIOD));
        let t = now + SECOND * 2;
        assert_eq!(ack(&mut checks, t, 1, (1, 4)), AckVerdict::Distrusted);
        assert!(!checks.is_trusted(t, addr(1), PERIOD));
        // The host went away instead: the member refuted a suspicion (a higher incarnation)
        // or restarted, and the path keeps its trust.
        for life in [(1, 5), (2, 0)] {
            let mut checks = HostChecks::default();
            checks.note_answered(now, addr(1), PERIOD);
            checks.note_silent_while_alive(now + SECOND, addr(1), (1, 4), PERIOD);
            assert_eq!(ack(&mut checks, t, 1, life), AckVerdict::Nothing);
            assert!(checks.is_trusted(t, addr(1), PERIOD));
            // The mark is spent: the same incarnation acking later distrusts nothing.
            assert_eq!(ack(&mut checks, t, 1, (1, 4)), AckVerdict::Nothing);
        }
        // An answered check clears the mark.
        let mut checks = HostChecks::default();
        checks.note_silent_while_alive(now, addr(1), (1, 4), PERIOD);
        checks.note_answered(now + SECOND, addr(1), PERIOD);
        assert_eq!(ack(&mut checks, t, 1, (1, 4)), AckVerdict::Nothing);
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
