//! Rate-limited logging of dropped datagrams and messages: a stranger can send as many bad
//! datagrams as it likes, and each used to cost a log line. Every reason logs at most one line
//! per [`DROP_LOG_INTERVAL`], with the number of drops left unlogged since its last line; the
//! counters in `Stats` still count every drop.

use std::time::{Duration, Instant};

/// Shortest time between two log lines of the same reason.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The kinds of drop logged, each limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Refused by the encryption layer (did not open, or plain in `Mode::Sealed`).
    Sealed,
    /// Did not decode.
    Decode,
    /// A message over a limit (`limits.rs`).
    Invalid,
    /// A key command or ack not sealed, or not from a live member at its address.
    KeyMessage,
}

const REASONS: usize = 4;

/// When each reason last logged and how many of its drops went unlogged since: a fixed array,
/// one slot per [`DropReason`], so the state never grows.
#[derive(Debug, Default)]
pub(crate) struct DropLog {
    slots: [(Option<Instant>, u64); REASONS],
}

impl DropLog {
    /// Records one drop of `reason` at `now`: `Some(suppressed)` if a line should be logged now
    /// (with the drops of that reason left unlogged since the previous line), `None` if not.
    pub(crate) fn allow(&mut self, now: Instant, reason: DropReason) -> Option<u64> {
        let (last, suppressed) = &mut self.slots[reason as usize];
        match *last {
            Some(at) if now.saturating_duration_since(at) < DROP_LOG_INTERVAL => {
                *suppressed = suppressed.saturating_add(1);
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_per_reason_with_the_count_suppressed() {
        let t0 = Instant::now();
        let mut log = DropLog::default();
        assert_eq!(log.allow(t0, DropReason::Sealed), Some(0));
        for i in 1..=10 {
            assert_eq!(
                log.allow(t0 + Duration::from_millis(i * 50), DropReason::Sealed),
                None
            );
        }
        // Another reason has a slot of its own.
        assert_eq!(log.allow(t0, DropReason::Decode), Some(0));
        assert_eq!(
            log.allow(t0 + DROP_LOG_INTERVAL, DropReason::Sealed),
            Some(10)
        );
        assert_eq!(
            log.allow(t0 + DROP_LOG_INTERVAL * 3, DropReason::Sealed),
            Some(0)
        );
    }
}
