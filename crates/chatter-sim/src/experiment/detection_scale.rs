//! The detection-scale experiment: time from a crash until every survivor marks the crashed node
//! failed, versus cluster size, with and without ICMP port-unreachable.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chatter_core::{Config, Event, MemberStatus};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cluster::{sim_config, stable_cluster};
use super::{quantile, row_seed};
use crate::plot::{Figure, Panel, Series};
use crate::sim::Sim;

/// Parameters of the detection-scale experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionScaleParams {
    /// Cluster sizes, one row per size and ICMP setting.
    pub sizes: Vec<usize>,
    /// ICMP settings (crashed processes answer with port-unreachable, or silence), one row each
    /// per size.
    pub icmp: Vec<bool>,
    /// Crashes measured per row (each followed by a restart).
    pub runs: usize,
    /// Seed of the whole experiment; each row derives its own.
    pub seed: u64,
    /// Time the converged cluster runs before the first crash.
    pub settle: Duration,
    /// Protocol configuration of every node.
    pub config: Config,
}

impl Default for DetectionScaleParams {
    fn default() -> Self {
        Self {
            sizes: vec![10, 50, 100, 500, 1000],
            icmp: vec![true, false],
            runs: 20,
            seed: 1,
            settle: Duration::from_secs(10),
            config: Config::lan(),
        }
    }
}

impl DetectionScaleParams {
    /// The command line that prints this table.
    pub fn command(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(ToString::to_string).collect();
        format!(
            "cargo run --release -p chatter-sim -- experiment detection-scale --seed {} --runs {} \
             --sizes {}{}",
            self.seed,
            self.runs,
            sizes.join(","),
            match self.icmp.as_slice() {
                [true] => " --icmp on",
                [false] => " --icmp off",
                _ => "",
            }
        )
    }
}

/// What one row (one size, one ICMP setting) measured.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionScaleRow {
    /// Cluster size.
    pub nodes: usize,
    /// Whether crashed processes produced ICMP port-unreachable.
    pub icmp: bool,
    /// The configured detection bound for this size.
    pub bound: Duration,
    /// Per crash: time until the first node marked the crashed node failed, sorted.
    pub first_detection: Vec<Duration>,
    /// Per crash detected everywhere: time until no survivor saw it live, sorted.
    pub full_detection: Vec<Duration>,
    /// Crashes some survivor still saw live after twice the detection bound.
    pub undetected: usize,
    /// Wrongful `Failed` verdicts (events) about running members.
    pub false_positives: usize,
    /// Suspicions raised, all nodes together, during the measurement (crashes included).
    pub suspicions: u64,
    /// Datagrams sent per node per second during the measurement (crashes and rejoins included).
    pub packets_per_node_second: f64,
    /// Invariant violations the simulator saw (checks on up to 100 nodes only).
    pub violations: u64,
    /// Wall-clock time the row took.
    pub wall: Duration,
}

/// Wrongful `Failed` events in the log: about anyone but `crashed`'s life `generation`.
fn wrongful_failures(sim: &Sim, crashed: Option<(usize, u64)>) -> usize {
    sim.events()
        .iter()
        .filter(|e| match &e.event {
            Event::Failed(m) => {
                crashed.is_none_or(|(i, g)| m.name != sim.name(i) || m.generation != g)
            }
            _ => false,
        })
        .count()
}

/// Runs one row: a stable cluster of `n`, crashed and restarted `params.runs` times.
pub fn detection_scale_row(
    params: &DetectionScaleParams,
    n: usize,
    icmp: bool,
    seed: u64,
) -> DetectionScaleRow {
    let wall = Instant::now();
    let n = n.max(3);
    let mut config = sim_config(seed, &params.config, n);
    config.icmp_on_crash = icmp;
    // The rows without ICMP measure Lifeguard alone: a crash there takes the host down, which
    // host checks would detect within `silent_host_suspicion_timeout` (see the `host_checks`
    // simulation tests for that path).
    config.node_config.host_checks &= icmp;
    let mut sim = stable_cluster(config, n);
    sim.set_check_interval(Duration::from_millis(50));
    let bound = params.config.detection_bound(n);
    let mut row = DetectionScaleRow {
        nodes: n,
        icmp,
        bound,
        first_detection: Vec::new(),
        full_detection: Vec::new(),
        undetected: 0,
        false_positives: 0,
        suspicions: 0,
        packets_per_node_second: 0.0,
        violations: 0,
        wall: Duration::ZERO,
    };
    sim.run_for(params.settle);
    let t0 = sim.now();
    let before = sim.total_stats();
    row.false_positives += wrongful_failures(&sim, None);
    sim.clear_events();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5ca1_ed7e);

    for _ in 0..params.runs {
        let victim = rng.random_range(1..n);
        let generation = sim.generation(victim);
        let t_crash = sim.now();
        sim.crash(victim);
        // Every survivor that knows the crashed node no longer sees it live.
        let detected = sim.wait_until(bound * 2, |s| {
            (0..n)
                .filter(|&o| o != victim)
                .all(|o| s.status_of(o, victim).is_none_or(|st| !st.is_live()))
        });
        match detected {
            Ok(d) => row.full_detection.push(d),
            Err(_) => row.undetected += 1,
        }
        if let Some(at) = sim.first_failed_at(victim, t_crash) {
            row.first_detection.push(at - t_crash);
        }
        sim.restart(victim, &[0]);
        let _ = sim.wait_until(Duration::from_secs(120), |s| {
            (0..n)
                .filter(|&o| o != victim)
                .all(|o| s.status_of(o, victim) == Some(MemberStatus::Alive))
        });
        sim.run_for(Duration::from_millis(rng.random_range(1_000..5_000)));
        row.false_positives += wrongful_failures(&sim, Some((victim, generation)));
        sim.clear_events();
    }

    let after = sim.total_stats();
    let secs = (sim.now() - t0).as_secs_f64();
    row.suspicions = after.suspicions_raised - before.suspicions_raised;
    row.packets_per_node_second =
        (after.packets_sent - before.packets_sent) as f64 / secs / n as f64;
    row.violations = sim.violation_count();
    row.first_detection.sort();
    row.full_detection.sort();
    row.wall = wall.elapsed();
    row
}

/// Runs the whole experiment, calling `on_row` as each row is done (to print progress).
pub fn detection_scale_with(
    params: &DetectionScaleParams,
    mut on_row: impl FnMut(&DetectionScaleRow),
) -> Vec<DetectionScaleRow> {
    let mut rows = Vec::new();
    for (i, &n) in params.sizes.iter().enumerate() {
        for (j, &icmp) in params.icmp.iter().enumerate() {
            let seed = row_seed(params.seed, 3000 + (i * 2 + j) as u64);
            let row = detection_scale_row(params, n, icmp, seed);
            on_row(&row);
            rows.push(row);
        }
    }
    rows
}

/// Runs the whole experiment.
pub fn detection_scale(params: &DetectionScaleParams) -> Vec<DetectionScaleRow> {
    detection_scale_with(params, |_| {})
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
}

/// The header of the table (the command, the settings, the column legend).
pub fn detection_scale_header(params: &DetectionScaleParams) -> String {
    let mut out = String::new();
    let c = &params.config;
    let _ = writeln!(out, "$ {}", params.command());
    let _ = writeln!(
        out,
        "detection versus N: crashes/row={} (each followed by a restart through node 0), seed={}; \
         lan profile: probe_interval={:?} probe_timeout={:?} suspicion_mult={} \
         suspicion_max_timeout_mult={} unreachable_suspicion_timeout={:?}",
        params.runs,
        params.seed,
        c.probe_interval,
        c.probe_timeout,
        c.suspicion_mult,
        c.suspicion_max_timeout_mult,
        c.unreachable_suspicion_timeout
    );
    let _ = writeln!(
        out,
        "first = crash to the first Failed verdict; all = crash until no survivor sees it live \
         (seconds; p99 of {} crashes is their maximum below 100); susp min = Lifeguard's minimum \
         suspicion timeout for N; FP = wrongful Failed verdicts about running members",
        params.runs
    );
    let _ = writeln!(
        out,
        "{:>5} {:>4} | {:>8} {:>7} | {:>7} | {:>6} {:>6} {:>6} | {:>5} | {:>3} {:>6} | {:>7} | \
         {:>4} {:>6}",
        "N",
        "icmp",
        "susp min",
        "bound",
        "first50",
        "all50",
        "p99",
        "max",
        "undet",
        "FP",
        "susp",
        "pkt/n/s",
        "viol",
        "wall"
    );
    out
}

/// One line of the table.
pub fn detection_scale_line(params: &DetectionScaleParams, r: &DetectionScaleRow) -> String {
    format!(
        "{:>5} {:>4} | {:>8.1} {:>7.0} | {:>7} | {:>6} {:>6} {:>6} | {:>5} | {:>3} {:>6} | \
         {:>7.2} | {:>4} {:>5.1}s",
        r.nodes,
        if r.icmp { "on" } else { "off" },
        params.config.suspicion_min_timeout(r.nodes).as_secs_f64(),
        r.bound.as_secs_f64(),
        secs(quantile(&r.first_detection, 0.5)),
        secs(quantile(&r.full_detection, 0.5)),
        secs(quantile(&r.full_detection, 0.99)),
        secs(r.full_detection.last().copied()),
        r.undetected,
        r.false_positives,
        r.suspicions,
        r.packets_per_node_second,
        r.violations,
        r.wall.as_secs_f64()
    )
}

/// Formats the rows as a text table.
pub fn detection_scale_table(params: &DetectionScaleParams, rows: &[DetectionScaleRow]) -> String {
    let mut out = detection_scale_header(params);
    for r in rows {
        out.push_str(&detection_scale_line(params, r));
        out.push('\n');
    }
    out
}

/// The plot: time until every survivor marks a crashed node failed (median, p99) versus N, with
/// and without ICMP, beside Lifeguard's minimum suspicion timeout.
pub fn detection_scale_figure(params: &DetectionScaleParams, rows: &[DetectionScaleRow]) -> Figure {
    let mut time = Panel::new("crash to failed at every survivor", "nodes (N)", "seconds")
        .log_x()
        .headroom(0.5);
    let value = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    for &icmp in &params.icmp {
        let of: Vec<&DetectionScaleRow> = rows.iter().filter(|r| r.icmp == icmp).collect();
        let tag = if icmp { "ICMP on" } else { "ICMP off" };
        time.push(Series::new(
            format!("median, {tag}"),
            of.iter()
                .map(|r| (r.nodes as f64, value(quantile(&r.full_detection, 0.5))))
                .collect(),
        ));
        time.push(Series::new(
            format!("p99, {tag}"),
            of.iter()
                .map(|r| (r.nodes as f64, value(quantile(&r.full_detection, 0.99))))
                .collect(),
        ));
    }
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.nodes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    time.push(
        Series::new(
            "minimum suspicion timeout",
            sizes
                .iter()
                .map(|&n| {
                    (
                        n as f64,
                        params.config.suspicion_min_timeout(n).as_secs_f64(),
                    )
                })
                .collect(),
        )
        .dashed(),
    );
    Figure::new(
        format!(
            "detection versus N: {} crashes per point, lan profile",
            params.runs
        ),
        vec![time],
    )
}
