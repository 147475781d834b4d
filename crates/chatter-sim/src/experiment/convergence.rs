//! The convergence experiment: how long a cluster formed through one seed takes until every node
//! knows every other as alive, versus cluster size, with joins one after another (a rolling
//! start) or all at once (a cold start of a whole fleet).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chatter_core::Config;

use super::cluster::sim_config;
use super::{quantile, row_seed};
use crate::plot::{Figure, Panel, Series};
use crate::sim::Sim;

/// How the nodes join through node 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    /// One after another, [`ConvergenceParams::stagger`] apart.
    Staggered,
    /// All at the same virtual instant.
    Burst,
}

impl JoinMode {
    /// The name used in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            JoinMode::Staggered => "staggered",
            JoinMode::Burst => "burst",
        }
    }
}

/// Parameters of the convergence experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergenceParams {
    /// Cluster sizes, one row per size and join mode.
    pub sizes: Vec<usize>,
    /// Join modes, one row each per size.
    pub modes: Vec<JoinMode>,
    /// Time between two joins in [`JoinMode::Staggered`].
    pub stagger: Duration,
    /// Clusters formed per row (each with its own seed).
    pub runs: usize,
    /// From this size on, a row forms at most `large_runs` clusters (wall time).
    pub large: usize,
    /// See `large`.
    pub large_runs: usize,
    /// Seed of the whole experiment; each cluster derives its own.
    pub seed: u64,
    /// Virtual time allowed after the last join before a cluster counts as not converged.
    pub deadline: Duration,
    /// Protocol configuration of every node.
    pub config: Config,
}

impl Default for ConvergenceParams {
    fn default() -> Self {
        Self {
            sizes: vec![10, 50, 100, 500, 1000],
            modes: vec![JoinMode::Staggered, JoinMode::Burst],
            stagger: Duration::from_millis(10),
            runs: 5,
            large: 1000,
            large_runs: 1,
            seed: 1,
            deadline: Duration::from_secs(600),
            config: Config::lan(),
        }
    }
}

impl ConvergenceParams {
    /// The command line that prints this table.
    pub fn command(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(ToString::to_string).collect();
        let modes: Vec<&str> = self.modes.iter().map(|m| m.name()).collect();
        format!(
            "cargo run --release -p chatter-sim -- experiment convergence --seed {} --runs {} \
             --sizes {} --modes {}",
            self.seed,
            self.runs,
            sizes.join(","),
            modes.join(",")
        )
    }

    fn runs_for(&self, n: usize) -> usize {
        if n >= self.large {
            self.runs.min(self.large_runs).max(1)
        } else {
            self.runs.max(1)
        }
    }
}

/// What one row (one size, one join mode) measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergenceRow {
    /// Cluster size.
    pub nodes: usize,
    /// How the nodes joined.
    pub mode: JoinMode,
    /// Per converged cluster: virtual time from the last `join` call until every node saw
    /// every other alive, sorted.
    pub after_last_join: Vec<Duration>,
    /// Per converged cluster: the same from the first `join` call, sorted.
    pub after_first_join: Vec<Duration>,
    /// Clusters that had not converged by the deadline.
    pub unconverged: usize,
    /// Datagrams sent per node from the first join until convergence, mean over clusters.
    pub packets_per_node: f64,
    /// Bytes sent per node over the same time, mean over clusters.
    pub bytes_per_node: f64,
    /// Members declared failed during the joins, all clusters together (nothing crashed, so
    /// every one is wrong).
    pub failures: u64,
    /// Suspicions raised during the joins, all clusters together.
    pub suspicions: u64,
    /// Invariant violations the simulator saw (checks on up to 100 nodes only).
    pub violations: u64,
    /// Wall-clock time the row took.
    pub wall: Duration,
}

/// How often agreement is checked: the cheap part of the check (live-member counts) is O(N), the
/// full one O(N^2) once the counts are right.
fn check_interval(n: usize) -> Duration {
    if n <= 500 {
        Duration::from_millis(1)
    } else {
        Duration::from_millis(10)
    }
}

/// Forms one cluster of `n` nodes through node 0 and returns `(after last join, after first
/// join)` if it converged, and the simulation for its counters.
fn form(
    params: &ConvergenceParams,
    n: usize,
    mode: JoinMode,
    seed: u64,
) -> (Option<(Duration, Duration)>, Sim) {
    let mut sim = match Sim::new(sim_config(seed, &params.config, n)) {
        Ok(sim) => sim,
        Err(e) => panic!("invalid protocol configuration: {e}"),
    };
    // N - 1 `Joined` events per node: counters are enough here.
    sim.set_record_events(false);
    sim.add_node();
    let first = sim.now();
    for k in 1..n {
        let i = sim.add_node();
        sim.join(i, &[0]);
        if mode == JoinMode::Staggered && k + 1 < n {
            sim.run_for(params.stagger);
        }
    }
    sim.set_check_interval(check_interval(n));
    let converged = sim
        .wait_until(params.deadline, Sim::all_agree_alive)
        .ok()
        .map(|d| (d, sim.now() - first));
    (converged, sim)
}

/// Runs one row: `runs` clusters of `n` nodes formed in `mode`.
pub fn convergence_row(
    params: &ConvergenceParams,
    n: usize,
    mode: JoinMode,
    seed: u64,
) -> ConvergenceRow {
    let wall = Instant::now();
    let n = n.max(2);
    let runs = params.runs_for(n);
    let mut row = ConvergenceRow {
        nodes: n,
        mode,
        after_last_join: Vec::new(),
        after_first_join: Vec::new(),
        unconverged: 0,
        packets_per_node: 0.0,
        bytes_per_node: 0.0,
        failures: 0,
        suspicions: 0,
        violations: 0,
        wall: Duration::ZERO,
    };
    for r in 0..runs {
        let (converged, sim) = form(params, n, mode, row_seed(seed, r as u64));
        match converged {
            Some((last, first)) => {
                row.after_last_join.push(last);
                row.after_first_join.push(first);
            }
            None => row.unconverged += 1,
        }
        let stats = sim.total_stats();
        row.packets_per_node += stats.packets_sent as f64 / n as f64 / runs as f64;
        row.bytes_per_node += stats.bytes_sent as f64 / n as f64 / runs as f64;
        row.failures += stats.failures_declared;
        row.suspicions += stats.suspicions_raised;
        row.violations += sim.violation_count();
    }
    row.after_last_join.sort();
    row.after_first_join.sort();
    row.wall = wall.elapsed();
    row
}

/// Runs the whole experiment, calling `on_row` as each row is done (to print progress).
pub fn convergence_with(
    params: &ConvergenceParams,
    mut on_row: impl FnMut(&ConvergenceRow),
) -> Vec<ConvergenceRow> {
    let mut rows = Vec::new();
    for (i, &n) in params.sizes.iter().enumerate() {
        for (j, &mode) in params.modes.iter().enumerate() {
            let seed = row_seed(params.seed, 2000 + (i * 16 + j) as u64);
            let row = convergence_row(params, n, mode, seed);
            on_row(&row);
            rows.push(row);
        }
    }
    rows
}

/// Runs the whole experiment.
pub fn convergence(params: &ConvergenceParams) -> Vec<ConvergenceRow> {
    convergence_with(params, |_| {})
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.3}", d.as_secs_f64()))
}

fn rounds(d: Option<Duration>, period: Duration) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() / period.as_secs_f64()),
    )
}

/// The header of the table (the command, the settings, the column legend).
pub fn convergence_header(params: &ConvergenceParams) -> String {
    let mut out = String::new();
    let c = &params.config;
    let _ = writeln!(out, "$ {}", params.command());
    let _ = writeln!(
        out,
        "convergence: every node joins through node 0 ({} apart when staggered, all at once in \
         burst); clusters/row={} ({} from N={}); seed={}; lan profile: probe_interval={:?} \
         gossip_interval={:?} fanout={} sync_interval={:?}",
        params.stagger.as_millis().to_string() + " ms",
        params.runs,
        params.runs_for(params.large),
        params.large,
        params.seed,
        c.probe_interval,
        c.gossip_interval,
        c.gossip_fanout,
        c.sync_interval
    );
    let _ = writeln!(
        out,
        "last = virtual seconds from the last join until every node sees every other alive \
         (median, 90th percentile and max over the clusters; rounds = last / probe_interval; \
         checked every {} ms, {} ms above N=500); first = from the first join; pkts, KB = sent \
         per node until then; failed/susp = wrongful verdicts during the joins",
        check_interval(1).as_millis(),
        check_interval(usize::MAX).as_millis()
    );
    let _ = writeln!(
        out,
        "{:>5} {:>9} | {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} | {:>6} | {:>7} {:>7} | {:>6} {:>5} | \
         {:>4} {:>6}",
        "N",
        "mode",
        "last50",
        "p90",
        "max",
        "rounds",
        "first50",
        "max",
        "unconv",
        "pkts/n",
        "KB/n",
        "failed",
        "susp",
        "viol",
        "wall"
    );
    out
}

/// One line of the table.
pub fn convergence_line(params: &ConvergenceParams, r: &ConvergenceRow) -> String {
    let period = params.config.probe_interval;
    format!(
        "{:>5} {:>9} | {:>6} {:>6} {:>6} {:>6} | {:>7} {:>6} | {:>6} | {:>7.0} {:>7.1} | {:>6} \
         {:>5} | {:>4} {:>5.1}s",
        r.nodes,
        r.mode.name(),
        secs(quantile(&r.after_last_join, 0.5)),
        secs(quantile(&r.after_last_join, 0.9)),
        secs(r.after_last_join.last().copied()),
        rounds(quantile(&r.after_last_join, 0.5), period),
        secs(quantile(&r.after_first_join, 0.5)),
        secs(r.after_first_join.last().copied()),
        r.unconverged,
        r.packets_per_node,
        r.bytes_per_node / 1000.0,
        r.failures,
        r.suspicions,
        r.violations,
        r.wall.as_secs_f64()
    )
}

/// Formats the rows as a text table.
pub fn convergence_table(params: &ConvergenceParams, rows: &[ConvergenceRow]) -> String {
    let mut out = convergence_header(params);
    for r in rows {
        out.push_str(&convergence_line(params, r));
        out.push('\n');
    }
    out
}

/// The plot: convergence time and cost per node versus N, one line per join mode.
pub fn convergence_figure(params: &ConvergenceParams, rows: &[ConvergenceRow]) -> Figure {
    let mut time = Panel::new(
        "time to full agreement (median)",
        "nodes (N)",
        format!(
            "seconds (= rounds of {} s)",
            params.config.probe_interval.as_secs_f64()
        ),
    )
    .log_x()
    .headroom(0.35);
    let mut cost = Panel::new(
        "sent per node until agreement",
        "nodes (N)",
        "datagrams per node",
    )
    .log_x()
    .log_y();
    for &mode in &params.modes {
        let of_mode: Vec<&ConvergenceRow> = rows.iter().filter(|r| r.mode == mode).collect();
        let median = |v: &[Duration]| quantile(v, 0.5).map_or(f64::NAN, |d| d.as_secs_f64());
        time.push(Series::new(
            format!("{}: after the last join", mode.name()),
            of_mode
                .iter()
                .map(|r| (r.nodes as f64, median(&r.after_last_join)))
                .collect(),
        ));
        if mode == JoinMode::Staggered {
            time.push(Series::new(
                format!("{}: after the first join", mode.name()),
                of_mode
                    .iter()
                    .map(|r| (r.nodes as f64, median(&r.after_first_join)))
                    .collect(),
            ));
        }
        cost.push(Series::new(
            mode.name(),
            of_mode
                .iter()
                .map(|r| (r.nodes as f64, r.packets_per_node))
                .collect(),
        ));
    }
    Figure::new(
        format!(
            "convergence: N nodes join through one seed (staggered {} ms apart, or all at once)",
            params.stagger.as_millis()
        ),
        vec![time, cost],
    )
}
