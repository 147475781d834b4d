//! Flap damping: a member whose silence has been shown not to be death loses the silent-host
//! shortcut for a while.
//!
//! For as long as it lasts, a cut link is indistinguishable from a dead host: no datagram and
//! no TCP answer come back, and a host check on a trusted path reads `Silent`. So the first
//! outage of a member may be failed after `Config::silent_host_suspicion_timeout`. What must
//! not happen is verdicts that flap with the link. A member that comes back *in the same life*
//! (same generation: a refutation, not a restart) after this node listed it failed, or after
//! this node's own host check found its host silent, has shown that its silence was an outage.
//! That is a *flap*; so is a damped member's return from any suspicion, whoever raised it, so
//! that a link that keeps flapping keeps its member damped on every node and not only on those
//! whose own probes met its outages (every node sees the suspicions and the refutations). Each
//! flap adds [`FLAP_PENALTY`] to the member's penalty, which decays
//! by half every `Config::flap_damping_half_life` (route-flap damping as BGP does it, RFC
//! 2439). While the penalty is at least [`REUSE_BELOW`], the member is *damped*: a silent
//! host still counts in the evidence, but the suspicion keeps its full Lifeguard timeout,
//! which a short outage outlasts (without host checks the hosts suite's flapping link, 2 s
//! down and 3 s up, got no verdict at all).
//!
//! One flap damps a member for one half-life; a member that keeps flapping keeps being damped
//! (every outage it survives while damped is a flap too), its penalty adding up: flaps `P`
//! apart settle at `1 / (1 - 2^(-P / half_life))`, which keeps it damped from one flap to the
//! next for periods up to about 1.7 half-lives. The penalty is capped at [`MAX_PENALTY`], so a
//! member is damped at most `log2(MAX_PENALTY / REUSE_BELOW)` = 4 half-lives after its last
//! flap. A new life (a restart) starts with no penalty: a restart is not a flap.
//!
//! Bounds: one [`FlapPenalty`] (16 bytes) per member row that has flapped, kept in the row's
//! boxed extras and dropped with the row (a reaped member, a new life).

use std::time::Duration;

use crate::table::Stamp;

/// What one flap adds to a member's penalty.
pub(crate) const FLAP_PENALTY: f32 = 1.0;

/// A member is damped while its penalty is at least this: one flap damps it for exactly one
/// half-life.
pub(crate) const REUSE_BELOW: f32 = 0.5;

/// The penalty never exceeds this, so that a member that flapped for hours is not damped for
/// hours after its link is mended: at most 4 half-lives after its last flap.
pub(crate) const MAX_PENALTY: f32 = 8.0;

/// A member's flap penalty as of a time stamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FlapPenalty {
    penalty: f32,
    at: Stamp,
}

impl FlapPenalty {
    /// The penalty of one flap at `now`.
    pub(crate) fn first(now: Stamp) -> Self {
        Self {
            penalty: FLAP_PENALTY,
            at: now,
        }
    }

    /// The penalty at `now`, decayed by half every `half_life` since it was last raised (zero
    /// when `half_life` is zero: damping off).
    pub(crate) fn at(&self, now: Stamp, half_life: Duration) -> f32 {
        if half_life.is_zero() {
            return 0.0;
        }
        let halvings = now.since(self.at).as_secs_f64() / half_life.as_secs_f64();
        (f64::from(self.penalty) * libm::exp2(-halvings)) as f32
    }

    /// Another flap at `now`.
    pub(crate) fn add(&mut self, now: Stamp, half_life: Duration) {
        self.penalty = (self.at(now, half_life) + FLAP_PENALTY).min(MAX_PENALTY);
        self.at = now;
    }

    /// Whether the member is damped at `now`.
    pub(crate) fn damped(&self, now: Stamp, half_life: Duration) -> bool {
        self.at(now, half_life) >= REUSE_BELOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(120);

    fn stamp(secs: u64) -> Stamp {
        Stamp::from_nanos(secs * 1_000_000_000)
    }

    #[test]
    fn one_flap_damps_for_one_half_life() {
        let p = FlapPenalty::first(stamp(10));
        assert!(p.damped(stamp(10), H));
        assert!(p.damped(stamp(10 + 119), H));
        assert!(!p.damped(stamp(10 + 121), H));
    }

    #[test]
    fn repeated_flaps_damp_longer_but_at_most_four_half_lives_after_the_last() {
        let mut p = FlapPenalty::first(stamp(0));
        p.add(stamp(5), H);
        // About 2: damped for about two half-lives after the second flap.
        assert!(p.damped(stamp(5 + 230), H));
        assert!(!p.damped(stamp(5 + 250), H));
        for i in 0..1000 {
            p.add(stamp(5 + i * 5), H);
        }
        let last = 5 + 999 * 5;
        assert!(p.at(stamp(last), H) <= MAX_PENALTY);
        assert!(p.damped(stamp(last + 4 * 120 - 5), H));
        assert!(!p.damped(stamp(last + 4 * 120 + 5), H));
    }

    #[test]
    fn a_zero_half_life_turns_damping_off() {
        let p = FlapPenalty::first(stamp(0));
        assert!(!p.damped(stamp(0), Duration::ZERO));
    }
}
