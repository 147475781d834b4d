//! Lifeguard local health awareness: a node that misses its own acks and nacks is more likely
//! slow itself than surrounded by failures, so it stretches its own timeouts instead of accusing.

use std::time::Duration;

/// Local health score: 0 is healthy, `max` is the worst.
#[derive(Debug, Clone)]
pub(crate) struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    pub(crate) fn new(max: u32) -> Self {
        Self { score: 0, max }
    }

    /// Applies a Lifeguard delta: -1 on a successful probe, +1 per missed nack, +1 when this
    /// node had to refute a suspicion about itself.
    pub(crate) fn apply(&mut self, delta: i64) {
        let score = (i64::from(self.score) + delta).clamp(0, i64::from(self.max));
        self.score = score as u32;
    }

    pub(crate) fn score(&self) -> u32 {
        self.score
    }

    /// `d * (score + 1)`: the timeout a node with this health should use.
    pub(crate) fn scale(&self, d: Duration) -> Duration {
        d * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_stays_within_bounds_and_scales_timeouts() {
        let mut a = Awareness::new(8);
        a.apply(-1);
        assert_eq!(a.score(), 0);
        a.apply(3);
        assert_eq!(
            a.scale(Duration::from_millis(100)),
            Duration::from_millis(400)
        );
        a.apply(100);
        assert_eq!(a.score(), 8);
        a.apply(-2);
        assert_eq!(a.score(), 6);
    }
}
