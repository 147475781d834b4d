//! `GET /metrics`: the node's counters and gauges in the Prometheus text format (version
//! 0.0.4), encoded with the `prometheus-client` crate.
//!
//! Nothing is counted here: every value is read at scrape time from the snapshot the node's
//! driver last published (at most 250 ms old), so a scrape never takes a lock or waits on the
//! protocol task. Each scrape builds a small registry with one collector over that snapshot.
//!
//! Every name starts with `chatter_` and carries its unit: counters end in `_total`, durations
//! are in `_seconds`, sizes in `_bytes`. The series:
//!
//! | name | type | what |
//! | --- | --- | --- |
//! | `chatter_members{status}` | gauge | members by status (`alive`, `suspect`, `failed`, `left`), this node included |
//! | `chatter_probes_{sent,acked,failed}_total` | counter | direct probes started, answered in time, ended without any ack |
//! | `chatter_probe_rtt_seconds` | histogram | round trips of direct probes answered in time |
//! | `chatter_indirect_probes_{sent,served}_total` | counter | indirect probe requests sent, and run for others |
//! | `chatter_suspicions_{raised,refuted}_total`, `chatter_failures_declared_total` | counter | verdicts |
//! | `chatter_packets_{sent,received}_total`, `chatter_{sent,received}_bytes_total` | counter | UDP traffic |
//! | `chatter_dropped_total{reason}` | counter | datagrams and items dropped, by reason (`sealed_*`: sealed datagrams that did not open, e.g. `sealed_unknown_key`, `sealed_bad_tag`, `sealed_replayed`; `not_sealed`: plain datagrams refused by a sealed node; `key_message`: key rotation commands or acks not sealed or not from a live member at its address) |
//! | `chatter_messages_{broadcast,sent,delivered,duplicate,injected}_total` | counter | user messages (Plumtree) |
//! | `chatter_state_updates_applied_total` | counter | key/value writes applied to replicas |
//! | `chatter_host_checks_{started,calibration,answered,silent,inconclusive,dropped,unexpected}_total`, `chatter_host_check_paths_distrusted_total`, `chatter_host_silent_suspicions_total`, `chatter_host_silent_damped_total`, `chatter_flaps_total` | counter | host checks of members' hosts, the suspicions a silent host shortened, those it did not because the member was flap-damped, and the flaps (members back in the same life after a verdict or a silent host) |
//! | `chatter_pending_broadcasts`, `chatter_active_suspicions`, `chatter_health_score` | gauge | queue depths and Lifeguard local health |
//! | `chatter_io_*_total` | counter | the runtime's socket and seed-resolution errors |
//! | `chatter_discovery_*_total`, `chatter_discovery_interfaces` | counter, gauge | LAN discovery (`--discover`): announcements sent, heard, contacts, drops by reason, rate-limited; interfaces joined |
//! | `chatter_build_info{version,cluster,node}`, `chatter_uptime_seconds`, `chatter_incarnation` | gauge | identity |

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chatter::RTT_BUCKETS_MICROS;
use chatter::{IoStats, MemberStatus, Snapshot, Stats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text::{self, CONTENT_TYPE};
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tracing::warn;

use crate::api::shared::{ApiError, AppState};
use crate::foundation::discovery_stats::counter_help;
use crate::foundation::VERSION;

/// Prefix of every metric name.
pub const PREFIX: &str = "chatter";

/// Who the node is, for `chatter_build_info` and `chatter_uptime_seconds`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The cluster's name.
    pub cluster: String,
    /// When the daemon started.
    pub started: Instant,
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> Response {
    let info = NodeInfo {
        cluster: state.cluster.clone(),
        started: state.started,
    };
    match render(state.handle.snapshot(), info) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(fmt::Error) => {
            // Writing to a String fails only if an encoder refuses its input; never seen.
            warn!("cannot encode the metrics");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics",
            )
            .into_response()
        }
    }
}

/// The metrics of `snapshot` in the Prometheus text format.
pub fn render(snapshot: Arc<Snapshot>, info: NodeInfo) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(SnapshotCollector { snapshot, info }));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Encodes one snapshot; built per scrape.
#[derive(Debug)]
struct SnapshotCollector {
    snapshot: Arc<Snapshot>,
    info: NodeInfo,
}

/// A counter: name (without prefix and `_total`), help, value.
type Counter = (&'static str, &'static str, u64);

/// The reasons of `chatter_dropped_total`, with the counter of each.
fn dropped(s: &Stats) -> [(&'static str, u64); 22] {
    let chatter::SealDrops {
        malformed,
        bad_version,
        wrong_cluster,
        unknown_key,
        bad_tag,
        replayed,
        too_old,
        not_sealed,
    } = s.dropped_sealed;
    [
        // Refused by the encryption layer, before decoding (`sealed_*` did not open).
        ("sealed_malformed", malformed),
        ("sealed_bad_version", bad_version),
        ("sealed_wrong_cluster", wrong_cluster),
        ("sealed_unknown_key", unknown_key),
        ("sealed_bad_tag", bad_tag),
        ("sealed_replayed", replayed),
        ("sealed_too_old", too_old),
        ("not_sealed", not_sealed),
        ("malformed", s.dropped_malformed),
        ("version", s.dropped_version),
        ("wrong_cluster", s.dropped_wrong_cluster),
        ("oversize", s.dropped_oversize),
        ("table_full", s.dropped_table_full),
        ("indirect_overload", s.dropped_indirect_overload),
        ("state_unknown", s.dropped_state_unknown),
        ("state_full", s.dropped_state_full),
        ("message_oversize", s.dropped_message_oversize),
        ("invalid", s.dropped_invalid),
        ("unexpected_ack", s.dropped_unexpected_ack),
        ("ping_req_refused", s.ping_reqs_refused),
        ("life_unverified", s.lives_unverified),
        ("key_message", s.dropped_key_messages),
    ]
}

/// Every counter of the core except the drops (one labelled family) and the histogram.
///
/// The destructuring has no `..`: a counter added to [`Stats`] fails to compile here until it
/// is exported (or knowingly ignored).
fn counters(s: &Stats) -> Vec<Counter> {
    let Stats {
        packets_sent,
        bytes_sent,
        packets_received,
        bytes_received,
        dropped_malformed: _,
        dropped_version: _,
        dropped_wrong_cluster: _,
        dropped_oversize: _,
        dropped_sealed: _,
        dropped_table_full: _,
        dropped_indirect_overload: _,
        dropped_invalid: _,
        dropped_key_messages: _,
        answers_withheld,
        answers_rate_limited,
        dropped_unexpected_ack: _,
        ping_reqs_refused: _,
        lives_unverified: _,
        lives_renewed,
        state_claims_refuted,
        state_claims_reported,
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
        dropped_state_unknown: _,
        dropped_state_full: _,
        state_updates_applied,
        state_deltas_sent,
        state_pushes_sent,
        state_pushes_duplicate,
        state_grafts_sent,
        messages_broadcast,
        messages_delivered,
        messages_sent,
        messages_duplicate,
        dropped_message_oversize: _,
        prunes_sent,
        grafts_sent,
        messages_injected,
        probe_rtt: _,
    } = *s;
    vec![
        ("packets_sent", "UDP datagrams sent.", packets_sent),
        ("sent_bytes", "Bytes of UDP payload sent.", bytes_sent),
        (
            "packets_received",
            "UDP datagrams received and accepted.",
            packets_received,
        ),
        (
            "received_bytes",
            "Bytes of UDP payload received in accepted datagrams.",
            bytes_received,
        ),
        ("probes_sent", "Direct probes started.", probes_sent),
        (
            "answers_withheld",
            "Datagrams not sent because the answer to a sender that is not a live member would have been larger than what it sent.",
            answers_withheld,
        ),
        (
            "answers_rate_limited",
            "Full-state answers (member table, key/value digest) skipped because the same peer had one within the probe interval.",
            answers_rate_limited,
        ),
        (
            "lives_renewed",
            "New lives this node began because forged accusations drove its incarnation to the largest honest value.",
            lives_renewed,
        ),
        (
            "state_claims_refuted",
            "Forged claims on this node's own key/value state that it refuted by moving its versions past them.",
            state_claims_refuted,
        ),
        (
            "state_claims_reported",
            "Writes of another member that contradicted this node's watermark for it (a forged watermark), reported to that member.",
            state_claims_reported,
        ),
        (
            "probes_acked",
            "Direct probes answered in time.",
            probes_acked,
        ),
        (
            "probes_failed",
            "Probes that ended without any ack, direct or indirect.",
            probes_failed,
        ),
        (
            "indirect_probes_sent",
            "Indirect probe requests sent to intermediaries.",
            indirect_probes_sent,
        ),
        (
            "indirect_probes_served",
            "Indirect probes run on behalf of other members.",
            indirect_probes_served,
        ),
        (
            "unreachable_reports",
            "ICMP port-unreachable reports handed to the protocol.",
            unreachable_reports,
        ),
        (
            "host_checks_started",
            "Host checks (TCP connection attempts to a member's gossip address) asked of the driver, calibrations included.",
            host_checks_started,
        ),
        (
            "host_checks_calibration",
            "Host checks started to learn whether a member's path delivers host-check answers.",
            host_checks_calibration,
        ),
        (
            "host_checks_answered",
            "Host checks the member's host answered (connection refused or accepted).",
            host_checks_answered,
        ),
        (
            "host_checks_silent",
            "Host checks that got no answer within the host-check timeout.",
            host_checks_silent,
        ),
        (
            "host_checks_inconclusive",
            "Host checks that ended with a local error (no route, no address, local firewall).",
            host_checks_inconclusive,
        ),
        (
            "host_checks_dropped",
            "Host checks not started (too many in flight) or never answered by the driver.",
            host_checks_dropped,
        ),
        (
            "host_checks_unexpected",
            "Host-check answers for a check not in flight, ignored.",
            host_checks_unexpected,
        ),
        (
            "host_check_paths_distrusted",
            "Paths distrusted: a member's host was silent to a check, then the member acked in the same incarnation.",
            host_check_paths_distrusted,
        ),
        (
            "host_silent_suspicions",
            "Failed probes whose member's host was silent on a trusted path: suspicion capped at the silent-host timeout.",
            host_silent_suspicions,
        ),
        (
            "host_silent_damped",
            "Failed probes whose member's host was silent while the member was flap-damped: suspicion kept its Lifeguard timeout.",
            host_silent_damped,
        ),
        (
            "flaps",
            "Members seen back in the same life after this node listed them failed or found their host silent.",
            flaps,
        ),
        (
            "suspicions_raised",
            "Suspicions this node raised.",
            suspicions_raised,
        ),
        (
            "suspicions_refuted",
            "Suspicions about this node that it refuted.",
            suspicions_refuted,
        ),
        (
            "failures_declared",
            "Members this node declared failed.",
            failures_declared,
        ),
        (
            "gossip_updates_sent",
            "Piggybacked gossip updates sent (one per update per datagram).",
            gossip_sent,
        ),
        (
            "recontacts_sent",
            "Pings sent to failed members to find out whether they are back.",
            recontacts_sent,
        ),
        (
            "recontacts_answered",
            "Re-contact pings a failed member acked (each opens an anti-entropy exchange).",
            recontacts_answered,
        ),
        (
            "syncs_started",
            "Anti-entropy exchanges started.",
            syncs_started,
        ),
        (
            "syncs_in_sync",
            "Anti-entropy exchanges skipped because the fingerprints matched.",
            syncs_in_sync,
        ),
        (
            "sync_states_sent",
            "Member table states sent because fingerprints differed.",
            sync_states_sent,
        ),
        (
            "state_updates_applied",
            "Key/value writes applied to replicas of other members.",
            state_updates_applied,
        ),
        (
            "state_deltas_sent",
            "Key/value delta chunks sent in anti-entropy.",
            state_deltas_sent,
        ),
        (
            "state_pushes_sent",
            "Datagrams carrying key/value writes pushed along the broadcast tree.",
            state_pushes_sent,
        ),
        (
            "state_pushes_duplicate",
            "Pushed key/value writes already known (each prunes a broadcast tree link).",
            state_pushes_duplicate,
        ),
        (
            "state_grafts_sent",
            "Key/value pulls sent after an announcement the tree had not delivered.",
            state_grafts_sent,
        ),
        (
            "messages_broadcast",
            "User messages this node broadcast.",
            messages_broadcast,
        ),
        (
            "messages_sent",
            "Datagrams carrying a user message in full (eager pushes, graft answers).",
            messages_sent,
        ),
        (
            "messages_delivered",
            "User messages delivered here, each once.",
            messages_delivered,
        ),
        (
            "messages_duplicate",
            "User messages received again (each prunes a broadcast tree link).",
            messages_duplicate,
        ),
        (
            "messages_injected",
            "Messages injected from outside (chatter-inject) and broadcast.",
            messages_injected,
        ),
        ("prunes_sent", "Broadcast tree prunes sent.", prunes_sent),
        (
            "grafts_sent",
            "Broadcast tree grafts sent for missing messages.",
            grafts_sent,
        ),
    ]
}

/// The runtime's counters.
fn io_counters(s: &IoStats) -> Vec<Counter> {
    let IoStats {
        send_errors,
        recv_errors,
        icmp_unreachable,
        seed_resolution_failures,
        state_writes,
        state_write_failures,
        // Exported by `discovery_counters`.
        discovery: _,
    } = *s;
    vec![
        (
            "io_send_errors",
            "Datagrams the socket refused to send.",
            send_errors,
        ),
        (
            "io_recv_errors",
            "Socket receive errors (other than ICMP reports).",
            recv_errors,
        ),
        (
            "io_icmp_unreachable",
            "ICMP port-unreachable reports read from the socket's error queue.",
            icmp_unreachable,
        ),
        (
            "io_seed_resolution_failures",
            "Seed resolutions that failed (each is retried).",
            seed_resolution_failures,
        ),
        (
            "io_state_writes",
            "Snapshots of the node's state written to --data-dir.",
            state_writes,
        ),
        (
            "io_state_write_failures",
            "Snapshots of the node's state that could not be written to --data-dir.",
            state_write_failures,
        ),
    ]
}

/// LAN discovery's counters (`--discover`), `interfaces` aside (a gauge).
fn discovery_counters(s: &IoStats) -> Vec<Counter> {
    let Some(d) = s.discovery else {
        return Vec::new();
    };
    d.by_name()
        .into_iter()
        .filter(|(name, _)| *name != "interfaces")
        .map(|(name, value)| (discovery_metric(name), counter_help(name), value))
        .collect()
}

/// `discovery_NAME` for each counter of `DiscoveryStats::by_name` (metric names are static).
fn discovery_metric(name: &str) -> &'static str {
    match name {
        "sent" => "discovery_sent",
        "send_errors" => "discovery_send_errors",
        "received" => "discovery_received",
        "heard" => "discovery_heard",
        "contacts" => "discovery_contacts",
        "dropped_oversize" => "discovery_dropped_oversize",
        "dropped_malformed" => "discovery_dropped_malformed",
        "dropped_wrong_cluster" => "discovery_dropped_wrong_cluster",
        "dropped_unauthenticated" => "discovery_dropped_unauthenticated",
        "dropped_bad_address" => "discovery_dropped_bad_address",
        "rate_limited" => "discovery_rate_limited",
        _ => "discovery_other",
    }
}

/// Members by status, this node included.
fn members_by_status(snapshot: &Snapshot) -> [(&'static str, u64); 4] {
    let mut counts = [0u64; 4];
    let slot = |s: MemberStatus| match s {
        MemberStatus::Alive => 0,
        MemberStatus::Suspect => 1,
        MemberStatus::Failed => 2,
        MemberStatus::Left => 3,
    };
    counts[slot(snapshot.local.status)] += 1;
    for m in snapshot
        .members
        .iter()
        .filter(|m| m.name != snapshot.local.name)
    {
        counts[slot(m.status)] += 1;
    }
    [
        ("alive", counts[0]),
        ("suspect", counts[1]),
        ("failed", counts[2]),
        ("left", counts[3]),
    ]
}

/// The histogram's buckets in seconds, each with its own (not cumulative) count; the encoder
/// accumulates them and adds `+Inf` with the total count.
fn rtt_buckets(snapshot: &Snapshot) -> Vec<(f64, u64)> {
    let h = &snapshot.stats.probe_rtt;
    RTT_BUCKETS_MICROS
        .iter()
        .zip(h.buckets.iter())
        .map(|(&bound, &count)| (micros_to_seconds(bound), count))
        .collect()
}

fn micros_to_seconds(micros: u64) -> f64 {
    // Exact for every bound and for any sum below 2^53 µs (285 years).
    micros as f64 / 1e6
}

/// No exemplars: the histogram is rebuilt from counts.
const NO_EXEMPLARS: Option<&HashMap<usize, Exemplar<NoLabelSet, f64>>> = None;

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let s = &*self.snapshot;

        // Identity.
        {
            let mut m = encoder.encode_descriptor(
                "build",
                "Version of chatterd, cluster and node name; always 1.",
                None,
                MetricType::Info,
            )?;
            m.encode_info(&[
                ("version", VERSION),
                ("cluster", self.info.cluster.as_str()),
                ("node", s.local.name.as_str()),
            ])?;
        }
        gauge(
            &mut encoder,
            "uptime",
            "Time since the daemon started.",
            Some(&Unit::Seconds),
            s.taken_at
                .saturating_duration_since(self.info.started)
                .as_secs_f64(),
        )?;
        gauge(
            &mut encoder,
            "incarnation",
            "This node's incarnation (SWIM refutation counter).",
            None,
            s.local.incarnation,
        )?;

        // Membership.
        {
            let mut m = encoder.encode_descriptor(
                "members",
                "Members by status as this node sees them, this node included.",
                None,
                MetricType::Gauge,
            )?;
            for (status, count) in members_by_status(s) {
                m.encode_family(&[("status", status)])?
                    .encode_gauge(&count)?;
            }
        }
        gauge(
            &mut encoder,
            "health_score",
            "Lifeguard local health score: 0 is healthy; higher means this node missed its own \
             acks and slowed its probing down.",
            None,
            u64::from(s.health_score),
        )?;
        gauge(
            &mut encoder,
            "pending_broadcasts",
            "Updates waiting in the piggyback queue.",
            None,
            u64::try_from(s.pending_broadcasts).unwrap_or(u64::MAX),
        )?;
        gauge(
            &mut encoder,
            "active_suspicions",
            "Members this node currently suspects.",
            None,
            u64::try_from(s.suspicions).unwrap_or(u64::MAX),
        )?;

        // Probe round trips.
        {
            let h = &s.stats.probe_rtt;
            let mut m = encoder.encode_descriptor(
                "probe_rtt",
                "Round trips of direct probes answered in time.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            m.encode_histogram(
                micros_to_seconds(h.sum_micros),
                h.count,
                &rtt_buckets(s),
                NO_EXEMPLARS,
            )?;
        }

        // Counters.
        if let Some(d) = s.io.discovery {
            gauge(
                &mut encoder,
                "discovery_interfaces",
                counter_help("interfaces"),
                None,
                d.interfaces,
            )?;
        }
        let all = counters(&s.stats)
            .into_iter()
            .chain(io_counters(&s.io))
            .chain(discovery_counters(&s.io));
        for (name, help, value) in all {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            m.encode_counter::<NoLabelSet, _, f64>(&value, None)?;
        }
        {
            let mut m = encoder.encode_descriptor(
                "dropped",
                "Datagrams, updates, requests and messages dropped, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, value) in dropped(&s.stats) {
                m.encode_family(&[("reason", reason)])?
                    .encode_counter::<NoLabelSet, _, f64>(&value, None)?;
            }
        }
        Ok(())
    }
}

/// Encodes one unlabelled gauge.
fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: V,
) -> Result<(), fmt::Error> {
    encoder
        .encode_descriptor(name, help, unit, MetricType::Gauge)?
        .encode_gauge(&value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn snapshot() -> (chatter::Handle, Arc<Snapshot>) {
        let handle = chatter::Chatter::builder("metrics-unit")
            .bind(([127, 0, 0, 1], 0).into())
            .config(chatter::Config::local())
            .spawn()
            .await
            .unwrap();
        let snapshot = handle.snapshot();
        (handle, snapshot)
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[tokio::test]
    async fn every_series_has_help_type_and_a_value() {
        let (handle, snapshot) = snapshot().await;
        let mut snap = (*snapshot).clone();
        snap.stats.probe_rtt.record(Duration::from_micros(80));
        snap.stats.probe_rtt.record(Duration::from_millis(3));
        snap.stats.probe_rtt.record(Duration::from_secs(5));
        snap.stats.dropped_wrong_cluster = 7;
        let info = NodeInfo {
            cluster: "c\"1".into(),
            started: snap.taken_at - Duration::from_secs(2),
        };
        let text = render(Arc::new(snap), info).unwrap();
        assert_eq!(value(&text, "chatter_members{status=\"alive\"}"), Some(1.0));
        assert_eq!(value(&text, "chatter_members{status=\"left\"}"), Some(0.0));
        assert_eq!(
            value(&text, "chatter_dropped_total{reason=\"wrong_cluster\"}"),
            Some(7.0)
        );
        assert_eq!(
            value(&text, "chatter_probe_rtt_seconds_bucket{le=\"0.0001\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "chatter_probe_rtt_seconds_bucket{le=\"0.005\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "chatter_probe_rtt_seconds_bucket{le=\"1\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "chatter_probe_rtt_seconds_bucket{le=\"+Inf\"}"),
            Some(3.0)
        );
        assert_eq!(value(&text, "chatter_probe_rtt_seconds_count"), Some(3.0));
        assert_eq!(
            value(&text, "chatter_probe_rtt_seconds_sum"),
            Some(5.003080)
        );
        assert_eq!(value(&text, "chatter_uptime_seconds"), Some(2.0));
        assert!(text.contains("cluster=\"c\\\"1\""), "{text}");
        assert!(text.contains("# TYPE chatter_probes_sent_total counter\n"));
        assert!(text.contains("# TYPE chatter_probe_rtt_seconds histogram\n"));
        assert!(text.contains("# TYPE chatter_health_score gauge\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("chatter_"), "{line}");
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
        handle.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn discovery_counters_appear_with_discovery_only() {
        let (handle, snapshot) = snapshot().await;
        let info = || NodeInfo {
            cluster: "c".into(),
            started: snapshot.taken_at,
        };
        let text = render(snapshot.clone(), info()).unwrap();
        assert!(!text.contains("chatter_discovery"), "{text}");
        let mut snap = (*snapshot).clone();
        snap.io.discovery = Some(chatter::DiscoveryStats {
            interfaces: 2,
            heard: 5,
            dropped_unauthenticated: 3,
            rate_limited: 1,
            ..chatter::DiscoveryStats::default()
        });
        let text = render(Arc::new(snap), info()).unwrap();
        assert_eq!(value(&text, "chatter_discovery_interfaces"), Some(2.0));
        assert_eq!(value(&text, "chatter_discovery_heard_total"), Some(5.0));
        assert_eq!(
            value(&text, "chatter_discovery_dropped_unauthenticated_total"),
            Some(3.0)
        );
        assert_eq!(
            value(&text, "chatter_discovery_rate_limited_total"),
            Some(1.0)
        );
        assert_eq!(value(&text, "chatter_discovery_sent_total"), Some(0.0));
        assert!(
            !text.contains("discovery_other"),
            "every counter has its name"
        );
        handle.shutdown().await.unwrap();
    }
}
