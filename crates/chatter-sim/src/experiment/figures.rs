//! Plots of the two first experiments, `detection` (versus loss) and `dissemination` (versus N).

use std::time::Duration;

use super::{quantile, DetectionParams, DetectionRow, DisseminationParams, DisseminationRow};
use crate::plot::{Figure, Panel, Series};

fn secs(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64())
}

fn millis(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// The detection plot: time until every survivor marks a crashed node failed (median and p99),
/// and wrongful verdicts per node-hour, versus packet loss, with and without ICMP.
pub fn detection_figure(params: &DetectionParams, rows: &[DetectionRow]) -> Figure {
    let mut time = Panel::new(
        "crash to failed at every survivor",
        "packet loss (%)",
        "seconds",
    );
    let mut wrong = Panel::new(
        "wrongful verdicts about running members",
        "packet loss (%)",
        "per node-hour",
    );
    for icmp in [true, false] {
        let of: Vec<&DetectionRow> = rows.iter().filter(|r| r.icmp == icmp).collect();
        let tag = if icmp { "ICMP on" } else { "ICMP off" };
        let line = |name: &str, f: &dyn Fn(&DetectionRow) -> f64| {
            Series::new(
                format!("{name}, {tag}"),
                of.iter().map(|r| (r.loss * 100.0, f(r))).collect(),
            )
        };
        time.push(line("median", &|r| secs(quantile(&r.full_detection, 0.5))));
        time.push(line("p99", &|r| secs(quantile(&r.full_detection, 0.99))));
        let per_hour = |count: usize, r: &DetectionRow| count as f64 / r.node_hours.max(1e-9);
        wrong.push(line("suspected", &|r| per_hour(r.false_suspicions, r)));
        wrong.push(line("failed", &|r| per_hour(r.false_positives, r)));
    }
    Figure::new(
        format!(
            "detection: N={}, {} crash-and-restart cycles per point, lan profile",
            params.nodes, params.runs
        ),
        vec![time, wrong],
    )
}

/// The dissemination plot: time for a broadcast and a key/value write to reach every node, and
/// the broadcast's datagrams per node, versus N, one line per loss rate.
pub fn dissemination_figure(params: &DisseminationParams, rows: &[DisseminationRow]) -> Figure {
    let mut bcast = Panel::new(
        "broadcast to every node (median)",
        "nodes (N)",
        "milliseconds",
    )
    .log_x()
    .log_y();
    let mut kv = Panel::new(
        "key/value write to every node (median)",
        "nodes (N)",
        "milliseconds",
    )
    .log_x()
    .log_y();
    let mut cost = Panel::new(
        "broadcast tree datagrams per node",
        "nodes (N)",
        "datagrams / N",
    )
    .log_x();
    for &loss in &params.losses {
        let of: Vec<&DisseminationRow> = rows
            .iter()
            .filter(|r| (r.loss - loss).abs() < 1e-9)
            .collect();
        let name = format!("loss {:.0}%", loss * 100.0);
        let line = |f: &dyn Fn(&DisseminationRow) -> f64| {
            Series::new(
                name.clone(),
                of.iter().map(|r| (r.nodes as f64, f(r))).collect(),
            )
        };
        bcast.push(line(&|r| millis(quantile(&r.latency, 0.5))));
        kv.push(line(&|r| millis(quantile(&r.write_latency, 0.5))));
        cost.push(line(&|r| {
            if r.datagrams.is_empty() {
                f64::NAN
            } else {
                r.datagrams.iter().sum::<u64>() as f64 / r.datagrams.len() as f64 / r.nodes as f64
            }
        }));
    }
    Figure::new(
        "dissemination: one broadcast (Plumtree) and one key/value write, lan profile",
        vec![bcast, kv, cost],
    )
}
