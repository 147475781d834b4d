//! Experiments that print tables: measurements of the protocol under chosen conditions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use chatter_core::{Config, Event, MemberStatus};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::{Sim, SimConfig};

mod cluster;
mod convergence;
mod cost;
mod detection_scale;
mod dissemination;
mod false_positives;
mod figures;
mod scale;

pub use cluster::{sim_config, stable_cluster, CHECKED_UP_TO};
pub use convergence::{
    convergence, convergence_figure, convergence_header, convergence_line, convergence_row,
    convergence_table, convergence_with, ConvergenceParams, ConvergenceRow, JoinMode,
};
pub use cost::{
    cost, cost_figure, cost_header, cost_line, cost_row, cost_table, cost_verdict, cost_with,
    spread, CostParams, CostRow,
};
pub use detection_scale::{
    detection_scale, detection_scale_figure, detection_scale_header, detection_scale_line,
    detection_scale_row, detection_scale_table, detection_scale_with, DetectionScaleParams,
    DetectionScaleRow,
};
pub use dissemination::{
    dissemination, dissemination_header, dissemination_line, dissemination_row,
    dissemination_table, dissemination_with, DisseminationParams, DisseminationRow,
};
pub use false_positives::{
    false_positives, false_positives_figure, false_positives_header, false_positives_table,
    false_positives_with, loss_line, loss_row, pause_header, pause_line, pause_row,
    FalsePositivesParams, FalsePositivesRows, LossRow, PauseRow,
};
pub use figures::{detection_figure, dissemination_figure};
pub use scale::{
    scale_figure, scale_header, scale_line, scale_row, scale_with, ScaleParams, ScaleRow,
};

/// Parameters of the failure detection experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionParams {
    /// Cluster size.
    pub nodes: usize,
    /// Seed of the whole experiment; each row derives its own.
    pub seed: u64,
    /// Crashes measured per row.
    pub runs: usize,
    /// Packet loss rates, one row each (times the two ICMP settings).
    pub losses: Vec<f64>,
    /// Protocol configuration of every node.
    pub config: Config,
}

impl Default for DetectionParams {
    fn default() -> Self {
        Self {
            nodes: 50,
            seed: 1,
            runs: 100,
            losses: vec![0.0, 0.05, 0.10, 0.20],
            config: Config::lan(),
        }
    }
}

impl DetectionParams {
    /// The command line that prints this table.
    pub fn command(&self) -> String {
        format!(
            "cargo run --release -p chatter-sim -- experiment detection --nodes {} --seed {} \
             --runs {}",
            self.nodes, self.seed, self.runs
        )
    }
}

/// What one row of the detection experiment measured.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionRow {
    /// Packet loss rate.
    pub loss: f64,
    /// Whether crashed processes produced ICMP port-unreachable.
    pub icmp: bool,
    /// Per crash: time until the first node marked the crashed node failed.
    pub first_detection: Vec<Duration>,
    /// Per crash: time until no survivor saw it live any more (every survivor that knew the
    /// crashed life marked it failed).
    pub full_detection: Vec<Duration>,
    /// Crashes still seen live by some survivor after twice the detection bound.
    pub undetected: usize,
    /// Distinct wrongful verdicts: `(member, generation, incarnation)` of a running member that
    /// someone marked failed.
    pub false_positives: usize,
    /// Distinct suspicions of running members (same key).
    pub false_suspicions: usize,
    /// Node-hours of virtual time observed (live nodes times time).
    pub node_hours: f64,
    /// Datagrams sent per node per second on average.
    pub packets_per_node_second: f64,
    /// Invariant violations the simulator saw.
    pub violations: u64,
}

/// The value at quantile `q` (nearest rank) of a sorted slice.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn row_seed(seed: u64, index: u64) -> u64 {
    let mut x = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^ (x >> 29)
}

/// Runs one row: a cluster of `params.nodes` under `loss`, crashed and restarted `params.runs`
/// times.
pub fn detection_row(params: &DetectionParams, loss: f64, icmp: bool, seed: u64) -> DetectionRow {
    let n = params.nodes.max(3);
    let mut config = SimConfig::new(seed).with_node_config(params.config.clone());
    config.icmp_on_crash = icmp;
    // The rows without ICMP measure Lifeguard alone: a crash there takes the host down, which
    // host checks would detect within `silent_host_suspicion_timeout`.
    config.node_config.host_checks &= icmp;
    let mut sim = match Sim::with_cluster(config, n, Duration::from_millis(20)) {
        Ok(sim) => sim,
        Err(e) => panic!("invalid protocol configuration: {e}"),
    };
    sim.set_check_interval(Duration::from_millis(50));
    let mut row = DetectionRow {
        loss,
        icmp,
        first_detection: Vec::new(),
        full_detection: Vec::new(),
        undetected: 0,
        false_positives: 0,
        false_suspicions: 0,
        node_hours: 0.0,
        packets_per_node_second: 0.0,
        violations: 0,
    };
    // Join without loss, then let the cluster settle under loss.
    let _ = sim.wait_until(Duration::from_secs(120), Sim::all_agree_alive);
    sim.set_loss(loss);
    sim.run_for(Duration::from_secs(10));
    let measure_from = sim.now();
    let packets_before = sim.net_stats().packets_sent;
    let bound = params.config.detection_bound(n) * 2;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xde7e_c710);
    let mut live_time = Duration::ZERO;
    // When each crashed life `(node, generation)` was crashed: verdicts about it after that are
    // deserved, verdicts about any other life are wrongful.
    let mut crashed_at = BTreeMap::new();

    for _ in 0..params.runs {
        let victim = rng.random_range(1..n);
        let t_crash = sim.now();
        crashed_at.insert((victim, sim.generation(victim)), t_crash);
        sim.crash(victim);
        // Detected everywhere: no survivor sees the crashed life as live. A survivor that never
        // heard of it (it joined moments before the crash) has nothing to detect.
        let generation = sim.generation(victim);
        let full = sim.wait_until(bound, |s| {
            s.up_nodes().into_iter().filter(|&o| o != victim).all(|o| {
                s.brief_of(o, victim)
                    .is_none_or(|m| m.generation != generation || !m.status.is_live())
            })
        });
        match full {
            Ok(d) => row.full_detection.push(d),
            Err(_) => row.undetected += 1,
        }
        if let Some(at) = sim.first_failed_at(victim, t_crash) {
            row.first_detection.push(at - t_crash);
        }
        live_time += (sim.now() - t_crash).mul_f64((n - 1) as f64);
        let t_restart = sim.now();
        sim.restart(victim, &[0]);
        let new_generation = sim.generation(victim);
        let _ = sim.wait_until(Duration::from_secs(120), |s| {
            s.all_see(victim, |m| {
                m.status == MemberStatus::Alive && m.generation == new_generation
            })
        });
        let pause = Duration::from_millis(rng.random_range(1_000..5_000));
        sim.run_for(pause);
        live_time += (sim.now() - t_restart).mul_f64(n as f64);
    }

    // Wrongful verdicts: about a member's current life while it was running.
    let mut wrong_failed = BTreeSet::new();
    let mut wrong_suspect = BTreeSet::new();
    for e in sim.events().iter().filter(|e| e.at >= measure_from) {
        let (set, m) = match &e.event {
            Event::Failed(m) => (&mut wrong_failed, m),
            Event::Suspect(m) => (&mut wrong_suspect, m),
            _ => continue,
        };
        let Some(subject) = sim.index_of(&m.name) else {
            continue;
        };
        let deserved = crashed_at
            .get(&(subject, m.generation))
            .is_some_and(|&t| e.at >= t);
        if !deserved {
            set.insert((m.name.clone(), m.generation, m.incarnation));
        }
    }
    row.false_positives = wrong_failed.len();
    row.false_suspicions = wrong_suspect.len();
    row.node_hours = live_time.as_secs_f64() / 3600.0;
    let elapsed = (sim.now() - measure_from).as_secs_f64();
    if elapsed > 0.0 {
        row.packets_per_node_second =
            (sim.net_stats().packets_sent - packets_before) as f64 / elapsed / n as f64;
    }
    row.violations = sim.violation_count();
    row.first_detection.sort();
    row.full_detection.sort();
    row
}

/// Runs the whole experiment: every loss rate, ICMP on and off.
pub fn detection(params: &DetectionParams) -> Vec<DetectionRow> {
    let mut rows = Vec::new();
    let mut index = 0;
    for &loss in &params.losses {
        for icmp in [true, false] {
            index += 1;
            let seed = row_seed(params.seed, index);
            rows.push(detection_row(params, loss, icmp, seed));
        }
    }
    rows
}

fn fmt_secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
}

/// Formats the rows as a text table.
pub fn detection_table(params: &DetectionParams, rows: &[DetectionRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "failure detection: N={} runs={} seed={} probe_interval={:?} detection_bound={:.1}s",
        params.nodes,
        params.runs,
        params.seed,
        params.config.probe_interval,
        params.config.detection_bound(params.nodes).as_secs_f64()
    );
    let _ = writeln!(
        out,
        "first = first node to mark the crashed node failed; all = every survivor (seconds)"
    );
    let _ = writeln!(
        out,
        "{:>5} {:>4} | {:>7} {:>6} {:>6} | {:>6} {:>6} {:>6} | {:>5} | {:>9} {:>9} | {:>7} | {:>4}",
        "loss",
        "icmp",
        "first50",
        "p99",
        "max",
        "all50",
        "p99",
        "max",
        "undet",
        "FP/node-h",
        "susp/n-h",
        "pkt/n/s",
        "viol"
    );
    for r in rows {
        let hours = r.node_hours.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            out,
            "{:>4.0}% {:>4} | {:>7} {:>6} {:>6} | {:>6} {:>6} {:>6} | {:>5} | {:>9.3} {:>9.2} | {:>7.2} | {:>4}",
            r.loss * 100.0,
            if r.icmp { "on" } else { "off" },
            fmt_secs(quantile(&r.first_detection, 0.5)),
            fmt_secs(quantile(&r.first_detection, 0.99)),
            fmt_secs(r.first_detection.last().copied()),
            fmt_secs(quantile(&r.full_detection, 0.5)),
            fmt_secs(quantile(&r.full_detection, 0.99)),
            fmt_secs(r.full_detection.last().copied()),
            r.undetected,
            r.false_positives as f64 / hours,
            r.false_suspicions as f64 / hours,
            r.packets_per_node_second,
            r.violations
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_is_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_secs).collect();
        assert_eq!(quantile(&v, 0.5), Some(Duration::from_secs(50)));
        assert_eq!(quantile(&v, 0.99), Some(Duration::from_secs(99)));
        assert_eq!(quantile(&v, 1.0), Some(Duration::from_secs(100)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
