//! Counters a node keeps about its own work, for metrics and benchmarks.

use std::time::Duration;

use crate::encryption::SealDrops;

/// Upper bounds (inclusive) of the probe round-trip histogram's buckets, in microseconds; a last,
/// unbounded bucket follows. From 100 µs (loopback) to 1 s (a congested WAN).
pub const RTT_BUCKETS_MICROS: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Round trips of direct probes answered in time, as a cumulative-ready histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttHistogram {
    /// Count per bucket of [`RTT_BUCKETS_MICROS`], plus the last for anything slower.
    pub buckets: [u64; RTT_BUCKETS_MICROS.len() + 1],
    /// Number of samples.
    pub count: u64,
    /// Sum of all samples, in microseconds.
    pub sum_micros: u64,
}

impl RttHistogram {
    /// Adds one round trip.
    pub fn record(&mut self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let slot = RTT_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(RTT_BUCKETS_MICROS.len());
        self.buckets[slot] += 1;
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }
}

/// Monotonic counters since the node started. Cheap to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the driver to send.
    pub packets_sent: u64,
    /// Bytes in those datagrams (UDP payload).
    pub bytes_sent: u64,
    /// Datagrams received and accepted.
    pub packets_received: u64,
    /// Bytes in accepted datagrams.
    pub bytes_received: u64,
    /// Datagrams dropped: not a Chatter datagram (bad magic) or truncated.
    pub dropped_malformed: u64,
    /// Datagrams dropped: unsupported protocol version or flags.
    pub dropped_version: u64,
    /// Datagrams dropped: from another cluster.
    pub dropped_wrong_cluster: u64,
    /// Datagrams dropped: over the size limit.
    pub dropped_oversize: u64,
    /// Datagrams dropped by the encryption layer before decoding, by reason: sealed ones that
    /// did not open (unknown key, bad tag, replayed, ...) and, in `Mode::Sealed`, plain ones.
    pub dropped_sealed: SealDrops,
    /// Updates dropped because the member table is full.
    pub dropped_table_full: u64,
    /// Indirect probe requests dropped because too many were pending.
    pub dropped_indirect_overload: u64,
    /// Messages dropped because a value in them could never be honest or is over a limit:
    /// a counter near overflow, a name, tag, key, value or payload longer than local writes may
    /// be, or too many items in one message (see `limits.rs`). The rest of the datagram is
    /// handled.
    pub dropped_invalid: u64,
    /// Key commands and acks dropped: carried by a plain datagram, not from a live member at
    /// its address, or an ack from a member the command was not sent to.
    pub dropped_key_messages: u64,
    /// Datagrams not sent because they would have made the answer to a sender that is not a
    /// live member larger than what it sent (no amplification).
    pub answers_withheld: u64,
    /// Full-state answers (member table, key/value digest) skipped because the same peer got
    /// one less than `Config::probe_interval` ago.
    pub answers_rate_limited: u64,
    /// Acks dropped: an unknown sequence number, or from an address other than the one probed
    /// or the relay asked.
    pub dropped_unexpected_ack: u64,
    /// `PingReq`s refused: from a sender that is not a live member, or for a target that is not
    /// a live member at that generation.
    pub ping_reqs_refused: u64,
    /// Announcements of a new life of a live member that are waiting for, or failed, the check
    /// that the new life answers at its address (and the previous life no longer does).
    pub lives_unverified: u64,
    /// Times this node began a new life because its incarnation reached the largest honest
    /// value (`limits::MAX_INCARNATION`): the answer to accusations forged at the limit.
    pub lives_renewed: u64,
    /// Forged claims on this node's own key/value state (a watermark above its own) answered
    /// by moving its versions past them.
    pub state_claims_refuted: u64,
    /// Writes of another member that contradicted this node's watermark for it (a forged
    /// watermark), reported to that member so it can refute the claim.
    pub state_claims_reported: u64,
    /// Direct probes started.
    pub probes_sent: u64,
    /// Direct probes answered in time.
    pub probes_acked: u64,
    /// Probes that ended without any ack (direct or indirect).
    pub probes_failed: u64,
    /// Indirect probe requests sent to intermediaries.
    pub indirect_probes_sent: u64,
    /// Indirect probes run on behalf of other members.
    pub indirect_probes_served: u64,
    /// ICMP port-unreachable reports received from the driver.
    pub unreachable_reports: u64,
    /// Host checks asked of the driver (`Node::poll_host_check`), calibrations included.
    pub host_checks_started: u64,
    /// Of those, calibrations: checks of a member that had just acked, to learn whether its
    /// path delivers host-check answers.
    pub host_checks_calibration: u64,
    /// Host checks the driver answered `Answered`: the host's kernel answered.
    pub host_checks_answered: u64,
    /// Host checks the driver answered `Silent`: nothing came back in time.
    pub host_checks_silent: u64,
    /// Host checks the driver answered `Inconclusive`: a local error.
    pub host_checks_inconclusive: u64,
    /// Host checks not started because `MAX_HOST_CHECKS_IN_FLIGHT` were in flight, or
    /// forgotten because the driver never answered them.
    pub host_checks_dropped: u64,
    /// Host-check answers for an id not in flight (answered twice, forgotten, or never
    /// asked): ignored.
    pub host_checks_unexpected: u64,
    /// Paths distrusted: a host check of the member went unanswered, and the member then
    /// acked this node in the same incarnation (the path drops host checks).
    pub host_check_paths_distrusted: u64,
    /// Failed probes (or their late host-check answers) that found the member's host silent
    /// on a trusted path while this node's network worked: each caps this node's suspicion of
    /// the member at `Config::silent_host_suspicion_timeout`.
    pub host_silent_suspicions: u64,
    /// Failed probes (or late host-check answers) that found the member's host silent on a
    /// trusted path while the member was flap-damped: the suspicion kept its Lifeguard
    /// timeout (`Config::flap_damping_half_life`).
    pub host_silent_damped: u64,
    /// Members this node saw come back in the same life after it listed them failed or found
    /// their host silent: flaps, each adding to the member's flap penalty.
    pub flaps: u64,
    /// Suspicions this node raised.
    pub suspicions_raised: u64,
    /// Suspicions about this node that it refuted.
    pub suspicions_refuted: u64,
    /// Members this node declared failed (its suspicion timer ran out first).
    pub failures_declared: u64,
    /// Gossip updates sent (one count per update per datagram).
    pub gossip_sent: u64,
    /// Pings sent to failed members to find out whether they are back (`recontact.rs`).
    pub recontacts_sent: u64,
    /// Re-contact pings a failed member acked; each opens an anti-entropy exchange with it.
    pub recontacts_answered: u64,
    /// Anti-entropy exchanges started.
    pub syncs_started: u64,
    /// Anti-entropy exchanges skipped because the fingerprints matched.
    pub syncs_in_sync: u64,
    /// Member table states sent in full (or in part) because fingerprints differed.
    pub sync_states_sent: u64,
    /// Key/value writes received for a member this node does not know, dropped.
    pub dropped_state_unknown: u64,
    /// Key/value writes dropped because the owner's replica is at its size bounds.
    pub dropped_state_full: u64,
    /// Key/value writes applied to replicas of other members.
    pub state_updates_applied: u64,
    /// Key/value delta chunks sent in anti-entropy.
    pub state_deltas_sent: u64,
    /// Datagrams carrying key/value writes pushed along the broadcast tree.
    pub state_pushes_sent: u64,
    /// Pushed key/value writes that were all known already (each prunes a link of the tree).
    pub state_pushes_duplicate: u64,
    /// One-owner key/value pulls sent after an announcement the tree had not delivered.
    pub state_grafts_sent: u64,
    /// User messages this node broadcast.
    pub messages_broadcast: u64,
    /// User messages delivered here (own broadcasts included), each once.
    pub messages_delivered: u64,
    /// Datagrams carrying a user message in full (eager pushes and graft answers).
    pub messages_sent: u64,
    /// User messages received again (each prunes a link of the tree).
    pub messages_duplicate: u64,
    /// User messages dropped for an oversize tag or payload.
    pub dropped_message_oversize: u64,
    /// Prunes sent.
    pub prunes_sent: u64,
    /// Grafts sent for missing messages.
    pub grafts_sent: u64,
    /// Messages injected from outside (`chatter-inject`) and broadcast.
    pub messages_injected: u64,
    /// Round trips of direct probes answered in time.
    pub probe_rtt: RttHistogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_samples_land_in_their_buckets() {
        let mut h = RttHistogram::default();
        h.record(Duration::from_micros(80));
        h.record(Duration::from_micros(100));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(5));
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[5], 1);
        assert_eq!(h.buckets[12], 1);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_micros, 80 + 100 + 3_000 + 5_000_000);
    }
}
