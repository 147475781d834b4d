//! Lifeguard's dynamic suspicion timeout: a suspicion starts with a long timeout that shrinks
//! logarithmically as independent members confirm it, so a lone false suspicion has time to be
//! refuted while a real failure, confirmed by many, is declared quickly.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The running suspicion timer of one suspect member.
#[derive(Debug, Clone)]
pub(crate) struct Suspicion {
    pub(crate) started: Instant,
    accuser: String,
    confirmers: BTreeSet<String>,
    min: Duration,
    max: Duration,
    expected: u32,
    strong_timeout: Option<Duration>,
}

impl Suspicion {
    /// `expected` is Lifeguard's `K`: confirmations after which the timeout is `min`.
    pub(crate) fn new(
        now: Instant,
        accuser: &str,
        min: Duration,
        max: Duration,
        expected: u32,
    ) -> Self {
        Self {
            started: now,
            accuser: accuser.to_owned(),
            confirmers: BTreeSet::new(),
            min,
            max: max.max(min),
            expected,
            strong_timeout: None,
        }
    }

    /// Records a confirmation; returns whether it was new and independent (not the accuser, not
    /// a member already counted). Bounded: confirmations beyond `expected` change nothing.
    pub(crate) fn confirm(&mut self, from: &str) -> bool {
        if from == self.accuser || self.confirmers.len() as u32 >= self.expected.max(1) * 4 {
            return false;
        }
        self.confirmers.insert(from.to_owned())
    }

    /// The evidence became strong (ICMP port-unreachable, or a silent host, after failed
    /// probes): the timeout is capped at `timeout`, or at the shorter cap already in force.
    pub(crate) fn make_strong(&mut self, timeout: Duration) {
        self.strong_timeout = Some(self.strong_timeout.map_or(timeout, |t| t.min(timeout)));
    }

    /// `max - (max - min) * ln(C + 1) / ln(K + 1)`, never below `min`; capped by the strong
    /// timeout when there is one.
    pub(crate) fn timeout(&self) -> Duration {
        let confirmed = self.confirmers.len() as u32;
        let lifeguard = if self.expected == 0 || confirmed >= self.expected {
            self.min
        } else {
            let frac =
                libm::log(f64::from(confirmed + 1)) / libm::log(f64::from(self.expected + 1));
            let span = self.max.saturating_sub(self.min);
            self.max.saturating_sub(span.mul_f64(frac)).max(self.min)
        };
        match self.strong_timeout {
            Some(strong) => lifeguard.min(strong),
            None => lifeguard,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.started + self.timeout()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn timeout_shrinks_with_independent_confirmations() {
        let t0 = Instant::now();
        let mut s = Suspicion::new(t0, "a", secs(5), secs(30), 3);
        assert_eq!(s.timeout(), secs(30));
        assert!(s.confirm("b"));
        let one = s.timeout();
        assert!(one < secs(30) && one > secs(5), "{one:?}");
        assert!(s.confirm("c"));
        assert!(s.timeout() < one);
        assert!(s.confirm("d"));
        assert_eq!(s.timeout(), secs(5));
        assert_eq!(s.deadline(), t0 + secs(5));
    }

    #[test]
    fn accuser_and_repeated_confirmations_do_not_count() {
        let mut s = Suspicion::new(Instant::now(), "a", secs(5), secs(30), 3);
        assert!(!s.confirm("a"));
        assert!(s.confirm("b"));
        assert!(!s.confirm("b"));
        assert!(s.timeout() > secs(5));
    }

    #[test]
    fn strong_evidence_caps_the_timeout() {
        let mut s = Suspicion::new(Instant::now(), "a", secs(5), secs(30), 3);
        s.make_strong(secs(2));
        assert_eq!(s.timeout(), secs(2));
        s.make_strong(secs(1));
        assert_eq!(s.timeout(), secs(1));
        s.make_strong(secs(3));
        assert_eq!(
            s.timeout(),
            secs(1),
            "a longer cap never lengthens the timeout"
        );
    }

    #[test]
    fn no_possible_confirmers_means_minimum_timeout() {
        let s = Suspicion::new(Instant::now(), "a", secs(5), secs(30), 0);
        assert_eq!(s.timeout(), secs(5));
    }
}
