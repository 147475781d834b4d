//! From the protocol's types (with monotonic [`Instant`]s) to the API's JSON types (with Unix
//! milliseconds): members, events, key reports, counters. The event stream, the event hooks
//! and the endpoints all show the same views, so they are built here, once.
//!
//! A monotonic instant has no calendar meaning, so each response takes one [`Clock`] reading,
//! an (`Instant`, `SystemTime`) pair, and places every instant relative to it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatter::{Conflict, Event, Evidence, IoStats, KeyReport, Member, Stats};
use chatter_api::{
    encode_bytes, payload_view, ConfirmationView, ConflictView, EventData, EvidenceView, KeyCount,
    KeyNodeAnswer, KeyOperationResponse, KeyView, MemberView, MessageIdView, ProbeView, Status,
};

/// One reading of both clocks, taken once per response.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The monotonic clock.
    pub instant: Instant,
    /// The wall clock at (about) the same moment.
    pub system: SystemTime,
}

impl Clock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        Self {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    /// The wall-clock time of `t` in Unix milliseconds (0 if before 1970).
    pub fn unix_ms(&self, t: Instant) -> u64 {
        let wall = if t <= self.instant {
            self.system.checked_sub(self.instant - t)
        } else {
            self.system.checked_add(t - self.instant)
        };
        wall.and_then(|w| w.duration_since(UNIX_EPOCH).ok())
            .map_or(0, millis)
    }

    /// Time elapsed since `t`, in milliseconds (0 for an instant in the future).
    pub fn age_ms(&self, t: Instant) -> u64 {
        millis(self.instant.saturating_duration_since(t))
    }
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The API status of a protocol status.
pub fn status(s: chatter::MemberStatus) -> Status {
    match s {
        chatter::MemberStatus::Alive => Status::Alive,
        chatter::MemberStatus::Suspect => Status::Suspect,
        chatter::MemberStatus::Failed => Status::Failed,
        chatter::MemberStatus::Left => Status::Left,
    }
}

/// The API view of a member.
pub fn member_view(m: &Member, clock: &Clock, is_local: bool) -> MemberView {
    MemberView {
        name: m.name.clone(),
        addr: m.addr.to_string(),
        status: status(m.status),
        incarnation: m.incarnation,
        generation: m.generation,
        tags: m.tags.clone(),
        status_since_ms: clock.unix_ms(m.status_since),
        last_update_ms: clock.unix_ms(m.last_update),
        age_ms: Some(clock.age_ms(m.status_since)),
        rtt_ms: m.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
        evidence: m.evidence.as_ref().map(|e| evidence_view(e, clock)),
        conflict: m.conflict.as_ref().map(|c| conflict_view(c, clock)),
        is_local,
    }
}

/// The API view of a name conflict.
pub fn conflict_view(c: &Conflict, clock: &Clock) -> ConflictView {
    ConflictView {
        name: c.name.clone(),
        other_addr: c.other_addr.to_string(),
        other_generation: c.other_generation,
        seen_at_ms: clock.unix_ms(c.seen_at),
    }
}

/// The API view of the evidence behind a verdict.
pub fn evidence_view(e: &Evidence, clock: &Clock) -> EvidenceView {
    EvidenceView {
        accuser: e.accuser.clone(),
        suspected_at_ms: clock.unix_ms(e.suspected_at),
        confirmations: e
            .confirmations
            .iter()
            .map(|c| ConfirmationView {
                from: c.from.clone(),
                at_ms: clock.unix_ms(c.at),
            })
            .collect(),
        probes: e
            .probes
            .iter()
            .map(|p| ProbeView {
                at_ms: clock.unix_ms(p.at),
                via: p.via.clone(),
                outcome: p.outcome.as_str().to_owned(),
            })
            .collect(),
        unreachable: e.unreachable,
        host_silent: e.host_silent,
        flap_damped: e.flap_damped,
        timeout_ms: millis(e.timeout),
        declared_by: e.declared_by.clone(),
        failed_at_ms: e.failed_at.map(|t| clock.unix_ms(t)),
    }
}

/// The node's counters as a name → value map (names as the fields of [`Stats`]).
pub fn stats_map(s: &Stats) -> BTreeMap<String, u64> {
    let Stats {
        packets_sent,
        bytes_sent,
        packets_received,
        bytes_received,
        dropped_malformed,
        dropped_version,
        dropped_wrong_cluster,
        dropped_oversize,
        dropped_table_full,
        dropped_indirect_overload,
        dropped_key_messages,
        probes_sent,
        probes_acked,
        probes_failed,
        indirect_probes_sent,
        indirect_probes_served,
        unreachable_reports,
        host_checks_started,
        host_checks_calibration,
        host_checks_answered,
        host_checks_silent,
        host_checks_inconclusive,
        host_checks_dropped,
        host_checks_unexpected,
        host_check_paths_distrusted,
        host_silent_suspicions,
        host_silent_damped,
        flaps,
        suspicions_raised,
        suspicions_refuted,
        failures_declared,
        gossip_sent,
        recontacts_sent,
        recontacts_answered,
        syncs_started,
        syncs_in_sync,
        sync_states_sent,
        dropped_state_unknown,
        dropped_state_full,
        state_updates_applied,
        state_deltas_sent,
        state_pushes_sent,
        state_pushes_duplicate,
        state_grafts_sent,
        messages_broadcast,
        messages_delivered,
        messages_sent,
        messages_duplicate,
        dropped_message_oversize,
        prunes_sent,
        grafts_sent,
        messages_injected,
        ..
    } = *s;
    [
        ("packets_sent", packets_sent),
        ("bytes_sent", bytes_sent),
        ("packets_received", packets_received),
        ("bytes_received", bytes_received),
        ("dropped_malformed", dropped_malformed),
        ("dropped_version", dropped_version),
        ("dropped_wrong_cluster", dropped_wrong_cluster),
        ("dropped_oversize", dropped_oversize),
        ("dropped_table_full", dropped_table_full),
        ("dropped_indirect_overload", dropped_indirect_overload),
        ("probes_sent", probes_sent),
        ("probes_acked", probes_acked),
        ("probes_failed", probes_failed),
        ("indirect_probes_sent", indirect_probes_sent),
        ("indirect_probes_served", indirect_probes_served),
        ("unreachable_reports", unreachable_reports),
        ("host_checks_started", host_checks_started),
        ("host_checks_calibration", host_checks_calibration),
        ("host_checks_answered", host_checks_answered),
        ("host_checks_silent", host_checks_silent),
        ("host_checks_inconclusive", host_checks_inconclusive),
        ("host_checks_dropped", host_checks_dropped),
        ("host_checks_unexpected", host_checks_unexpected),
        ("host_check_paths_distrusted", host_check_paths_distrusted),
        ("host_silent_suspicions", host_silent_suspicions),
        ("host_silent_damped", host_silent_damped),
        ("flaps", flaps),
        ("suspicions_raised", suspicions_raised),
        ("suspicions_refuted", suspicions_refuted),
        ("failures_declared", failures_declared),
        ("gossip_sent", gossip_sent),
        ("recontacts_sent", recontacts_sent),
        ("recontacts_answered", recontacts_answered),
        ("syncs_started", syncs_started),
        ("syncs_in_sync", syncs_in_sync),
        ("sync_states_sent", sync_states_sent),
        ("dropped_state_unknown", dropped_state_unknown),
        ("dropped_state_full", dropped_state_full),
        ("state_updates_applied", state_updates_applied),
        ("state_deltas_sent", state_deltas_sent),
        ("state_pushes_sent", state_pushes_sent),
        ("state_pushes_duplicate", state_pushes_duplicate),
        ("state_grafts_sent", state_grafts_sent),
        ("messages_broadcast", messages_broadcast),
        ("messages_delivered", messages_delivered),
        ("messages_sent", messages_sent),
        ("messages_duplicate", messages_duplicate),
        ("dropped_message_oversize", dropped_message_oversize),
        ("dropped_key_messages", dropped_key_messages),
        ("prunes_sent", prunes_sent),
        ("grafts_sent", grafts_sent),
        ("messages_injected", messages_injected),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .chain(
        s.dropped_sealed
            .by_reason()
            .into_iter()
            .map(|(reason, value)| (format!("dropped_sealed_{reason}"), value)),
    )
    .collect()
}

/// The runtime's counters as a name → value map (names as the fields of [`IoStats`]).
pub fn io_stats_map(s: &IoStats) -> BTreeMap<String, u64> {
    let IoStats {
        send_errors,
        recv_errors,
        icmp_unreachable,
        seed_resolution_failures,
        state_writes,
        state_write_failures,
        ..
    } = *s;
    [
        ("send_errors", send_errors),
        ("recv_errors", recv_errors),
        ("icmp_unreachable", icmp_unreachable),
        ("seed_resolution_failures", seed_resolution_failures),
        ("state_writes", state_writes),
        ("state_write_failures", state_write_failures),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .chain(
        s.discovery
            .iter()
            .flat_map(crate::foundation::discovery_stats::stats_map),
    )
    .collect()
}

/// The API view of the data directory and of what the start found in it.
pub fn data_dir_view(dir: &chatter::DataDir) -> chatter_api::DataDirView {
    use chatter::StartedFrom;
    let (start, reason) = match &dir.started_from {
        StartedFrom::Fresh => ("fresh", None),
        StartedFrom::Restored { .. } => ("restored", None),
        StartedFrom::OtherName { saved_name } => (
            "other-name",
            Some(format!("the saved state was of node {saved_name:?}")),
        ),
        StartedFrom::SetAside { reason, .. } => ("set-aside", Some(reason.clone())),
    };
    chatter_api::DataDirView {
        path: dir.path.display().to_string(),
        restored: dir.started_from.is_restored(),
        start: start.to_owned(),
        reason,
    }
}

/// The API view of a node event (`local` is this node's name, to set `is_local`).
pub fn event_data(event: &Event, local: &str, clock: &Clock) -> EventData {
    let member = |m: &chatter::Member| member_view(m, clock, m.name == local);
    match event {
        Event::Joined(m) => EventData::MemberJoined { member: member(m) },
        Event::Suspect(m) => EventData::MemberSuspect { member: member(m) },
        Event::Recovered(m) => EventData::MemberAlive { member: member(m) },
        Event::Failed(m) => EventData::MemberFailed { member: member(m) },
        Event::Left(m) => EventData::MemberLeft { member: member(m) },
        Event::Updated(m) => EventData::MemberUpdated { member: member(m) },
        Event::Reaped(m) => EventData::MemberReaped { member: member(m) },
        Event::Conflict(c) => EventData::MemberConflict {
            conflict: conflict_view(c, clock),
        },
        Event::KeyChanged(change) => {
            let (value, encoding) = match &change.value {
                Some(bytes) => {
                    let (value, encoding) = encode_bytes(bytes);
                    (Some(value), encoding)
                }
                None => (None, None),
            };
            EventData::KeyChanged {
                node: change.node.clone(),
                key: change.key.clone(),
                value,
                encoding,
                version: change.version,
            }
        }
        Event::KeyringChanged(keys) => EventData::KeyringChanged {
            keys: keys
                .iter()
                .map(|k| chatter_api::KeyView {
                    fingerprint: k.fingerprint.to_string(),
                    primary: k.primary,
                })
                .collect(),
        },
        Event::KeyRotation(report) => EventData::KeyRotation {
            report: key_report_view(report),
        },
        Event::Message(message) => {
            let (payload, encoding) = payload_view(&message.payload);
            EventData::Message {
                id: message_id_view(&message.id),
                tag: message.tag.clone(),
                payload,
                encoding,
                hops: message.hops,
            }
        }
    }
}

/// The API view of a message id.
pub fn message_id_view(id: &chatter::MessageId) -> MessageIdView {
    MessageIdView {
        origin: id.origin.clone(),
        generation: id.generation,
        seq: id.seq,
    }
}

/// The API views of keyring entries (fingerprints only).
pub fn key_views(keys: &[chatter::KeyInfo]) -> Vec<KeyView> {
    keys.iter()
        .map(|k| KeyView {
            fingerprint: k.fingerprint.to_string(),
            primary: k.primary,
        })
        .collect()
}

/// The API view of a report (without `keyring_file` and `warning`, which only the answering
/// daemon knows).
pub fn key_report_view(report: &KeyReport) -> KeyOperationResponse {
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (node, answer) in &report.answers {
        for key in &answer.keys {
            let count = counts.entry(key.fingerprint.to_string()).or_default();
            count.0 += 1;
            count.1 += usize::from(key.primary);
        }
        let view = KeyNodeAnswer {
            node: node.clone(),
            refused: answer.refusal.map(|r| r.to_string()),
            keys: key_views(&answer.keys),
        };
        if answer.refusal.is_some() {
            refused.push(view);
        } else {
            acknowledged.push(view);
        }
    }
    KeyOperationResponse {
        operation: report.op.name().to_owned(),
        fingerprint: report.op.fingerprint().map(|f| f.to_string()),
        acknowledged,
        refused,
        silent: report.silent.clone(),
        not_reached: report.not_reached.clone(),
        keys: counts
            .into_iter()
            .map(|(fingerprint, (nodes, primary_on))| KeyCount {
                fingerprint,
                nodes,
                primary_on,
            })
            .collect(),
        complete: report.complete(),
        keyring_file: None,
        warning: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_map_to_wall_clock_relative_to_the_reading() {
        let clock = Clock {
            instant: Instant::now(),
            system: UNIX_EPOCH + Duration::from_secs(1_000),
        };
        assert_eq!(clock.unix_ms(clock.instant), 1_000_000);
        assert_eq!(
            clock.unix_ms(clock.instant - Duration::from_millis(1500)),
            998_500
        );
        assert_eq!(
            clock.unix_ms(clock.instant + Duration::from_millis(20)),
            1_000_020
        );
        assert_eq!(clock.age_ms(clock.instant - Duration::from_secs(2)), 2_000);
        assert_eq!(clock.age_ms(clock.instant + Duration::from_secs(2)), 0);
    }

    #[test]
    fn instants_before_the_epoch_saturate_to_zero() {
        let clock = Clock {
            instant: Instant::now(),
            system: UNIX_EPOCH + Duration::from_millis(10),
        };
        assert_eq!(clock.unix_ms(clock.instant - Duration::from_secs(1)), 0);
    }
}
