//! The false-positives experiment: running members wrongly declared failed, per node-hour, versus
//! packet loss; and what a paused process (`SIGSTOP`, then `SIGCONT`) costs: is it declared
//! failed, and is anyone else.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chatter_core::{Config, Event, MemberStatus};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cluster::{sim_config, stable_cluster};
use super::{quantile, row_seed};
use crate::plot::{Corner, Figure, Panel, Series};
use crate::sim::Sim;

/// Parameters of the false-positives experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct FalsePositivesParams {
    /// Cluster size.
    pub nodes: usize,
    /// Packet loss rates, one row each.
    pub losses: Vec<f64>,
    /// Virtual time observed per loss rate (after `settle`).
    pub duration: Duration,
    /// Time a loss rate runs before it is observed.
    pub settle: Duration,
    /// Pause lengths, one row each.
    pub pauses: Vec<Duration>,
    /// Pauses per pause length (each of a node drawn at random).
    pub runs: usize,
    /// Seed of the whole experiment; each row derives its own.
    pub seed: u64,
    /// Protocol configuration of every node.
    pub config: Config,
}

impl Default for FalsePositivesParams {
    fn default() -> Self {
        Self {
            nodes: 50,
            losses: vec![0.0, 0.05, 0.10, 0.20, 0.30],
            duration: Duration::from_secs(7200),
            settle: Duration::from_secs(10),
            pauses: [1, 2, 5, 10, 15, 20]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            runs: 50,
            seed: 1,
            config: Config::lan(),
        }
    }
}

impl FalsePositivesParams {
    /// The command line that prints this table.
    pub fn command(&self) -> String {
        let losses: Vec<String> = self
            .losses
            .iter()
            .map(|l| format!("{}", (l * 100.0).round()))
            .collect();
        let pauses: Vec<String> = self
            .pauses
            .iter()
            .map(|p| format!("{}", p.as_secs_f64()))
            .collect();
        format!(
            "cargo run --release -p chatter-sim -- experiment false-positives --nodes {} --seed {} \
             --runs {} --losses {} --pauses {} --minutes {}",
            self.nodes,
            self.seed,
            self.runs,
            losses.join(","),
            pauses.join(","),
            self.duration.as_secs_f64() / 60.0
        )
    }
}

/// What one loss rate measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LossRow {
    /// Packet loss rate.
    pub loss: f64,
    /// Node-hours observed (nodes times virtual time).
    pub node_hours: f64,
    /// Distinct wrongful verdicts: `(member, generation, incarnation)` some node marked failed
    /// (nothing crashed, so every one is wrong).
    pub false_positives: usize,
    /// `Failed` events: the same counted once per node that emitted it.
    pub failed_events: usize,
    /// Distinct suspicions (same key), all refuted or confirmed.
    pub suspicions: usize,
    /// Datagrams sent per node per second.
    pub packets_per_node_second: f64,
    /// Invariant violations the simulator saw.
    pub violations: u64,
    /// Wall-clock time the row took.
    pub wall: Duration,
}

/// What one pause length measured.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseRow {
    /// How long the node was stopped.
    pub pause: Duration,
    /// Pauses measured.
    pub runs: usize,
    /// Pauses after which some node had suspected the paused one.
    pub suspected: usize,
    /// Pauses after which some node had declared the paused one failed.
    pub declared_failed: usize,
    /// Nodes that declared it failed, summed over pauses.
    pub failed_observers: usize,
    /// Distinct wrongful `Failed` verdicts about the other, never paused, nodes.
    pub others_failed: usize,
    /// Pauses after which some other node had been declared failed.
    pub others_failed_pauses: usize,
    /// Distinct suspicions of the other nodes.
    pub others_suspected: usize,
    /// Per pause: time from the resume until every other node saw the paused one alive again,
    /// sorted.
    pub back_alive: Vec<Duration>,
    /// Invariant violations the simulator saw.
    pub violations: u64,
    /// Wall-clock time the row took.
    pub wall: Duration,
}

/// The distinct `(member, generation, incarnation)` of the events at or after `since` matching
/// `pred`, and how many events matched.
fn verdicts(
    sim: &Sim,
    since: Duration,
    mut pred: impl FnMut(&Event) -> bool,
) -> (BTreeSet<(String, u64, u64)>, usize) {
    let mut distinct = BTreeSet::new();
    let mut count = 0;
    for e in sim.events().iter().filter(|e| e.at >= since) {
        if !pred(&e.event) {
            continue;
        }
        if let Some(m) = e.event.member() {
            count += 1;
            distinct.insert((m.name.clone(), m.generation, m.incarnation));
        }
    }
    (distinct, count)
}

/// Runs one loss row: a stable cluster under `loss` for `params.duration`, nothing crashed.
pub fn loss_row(params: &FalsePositivesParams, loss: f64, seed: u64) -> LossRow {
    let wall = Instant::now();
    let n = params.nodes.max(3);
    let mut sim = stable_cluster(sim_config(seed, &params.config, n), n);
    sim.set_loss(loss);
    sim.run_for(params.settle);
    let from = sim.now();
    let packets = sim.total_stats().packets_sent;
    // Run in slices, dropping the events already counted, to keep the log short.
    let mut failed = BTreeSet::new();
    let mut suspected = BTreeSet::new();
    let mut failed_events = 0;
    let slice = Duration::from_secs(60);
    let end = from + params.duration;
    while sim.now() < end {
        let until = (sim.now() + slice).min(end);
        sim.run_until(until);
        let (f, count) = verdicts(&sim, from, |e| matches!(e, Event::Failed(_)));
        failed.extend(f);
        failed_events += count;
        suspected.extend(verdicts(&sim, from, |e| matches!(e, Event::Suspect(_))).0);
        sim.clear_events();
    }
    let secs = (sim.now() - from).as_secs_f64();
    LossRow {
        loss,
        node_hours: n as f64 * secs / 3600.0,
        false_positives: failed.len(),
        failed_events,
        suspicions: suspected.len(),
        packets_per_node_second: (sim.total_stats().packets_sent - packets) as f64
            / secs
            / n as f64,
        violations: sim.violation_count(),
        wall: wall.elapsed(),
    }
}

/// Runs one pause row: `params.runs` times, a random node of a stable cluster is stopped for
/// `pause`, then resumed; the cluster is given time to see it alive again before the next.
pub fn pause_row(params: &FalsePositivesParams, pause: Duration, seed: u64) -> PauseRow {
    let wall = Instant::now();
    let n = params.nodes.max(3);
    let mut sim = stable_cluster(sim_config(seed, &params.config, n), n);
    sim.set_check_interval(Duration::from_millis(10));
    sim.run_for(params.settle);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5109_5709);
    let mut row = PauseRow {
        pause,
        runs: params.runs,
        suspected: 0,
        declared_failed: 0,
        failed_observers: 0,
        others_failed: 0,
        others_failed_pauses: 0,
        others_suspected: 0,
        back_alive: Vec::new(),
        violations: 0,
        wall: Duration::ZERO,
    };
    let mut others_failed = BTreeSet::new();
    let mut others_suspected = BTreeSet::new();
    for _ in 0..params.runs {
        sim.clear_events();
        let victim = rng.random_range(0..n);
        let name = sim.name(victim).to_owned();
        let from = sim.now();
        sim.pause(victim);
        sim.run_for(pause);
        sim.resume(victim);
        let back = sim.wait_until(Duration::from_secs(120), |s| {
            (0..n)
                .filter(|&o| o != victim)
                .all(|o| s.status_of(o, victim) == Some(MemberStatus::Alive))
        });
        if let Ok(d) = back {
            row.back_alive.push(d);
        }
        // Let the resumed node's overdue probes and the refutations play out.
        sim.run_for(Duration::from_millis(rng.random_range(5_000..8_000)));
        let about_victim = |e: &Event| e.member().is_some_and(|m| m.name == name);
        let (suspects, _) = verdicts(&sim, from, |e| {
            matches!(e, Event::Suspect(_)) && about_victim(e)
        });
        let observers: BTreeSet<usize> = sim
            .events()
            .iter()
            .filter(|e| matches!(e.event, Event::Failed(_)) && about_victim(&e.event))
            .map(|e| e.observer)
            .collect();
        row.suspected += usize::from(!suspects.is_empty());
        row.declared_failed += usize::from(!observers.is_empty());
        row.failed_observers += observers.len();
        let (others, _) = verdicts(&sim, from, |e| {
            matches!(e, Event::Failed(_)) && !about_victim(e)
        });
        row.others_failed_pauses += usize::from(!others.is_empty());
        others_failed.extend(others);
        others_suspected.extend(
            verdicts(&sim, from, |e| {
                matches!(e, Event::Suspect(_)) && !about_victim(e)
            })
            .0,
        );
    }
    row.others_failed = others_failed.len();
    row.others_suspected = others_suspected.len();
    row.back_alive.sort();
    row.violations = sim.violation_count();
    row.wall = wall.elapsed();
    row
}

/// Both tables' rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FalsePositivesRows {
    /// One per loss rate.
    pub losses: Vec<LossRow>,
    /// One per pause length.
    pub pauses: Vec<PauseRow>,
}

/// Runs the whole experiment, calling `on_loss` and `on_pause` as each row is done (to print
/// progress).
pub fn false_positives_with(
    params: &FalsePositivesParams,
    mut on_loss: impl FnMut(&LossRow),
    mut on_pause: impl FnMut(&PauseRow),
) -> FalsePositivesRows {
    let mut rows = FalsePositivesRows::default();
    for (i, &loss) in params.losses.iter().enumerate() {
        let row = loss_row(params, loss, row_seed(params.seed, 4000 + i as u64));
        on_loss(&row);
        rows.losses.push(row);
    }
    for (i, &pause) in params.pauses.iter().enumerate() {
        let row = pause_row(params, pause, row_seed(params.seed, 5000 + i as u64));
        on_pause(&row);
        rows.pauses.push(row);
    }
    rows
}

/// Runs the whole experiment.
pub fn false_positives(params: &FalsePositivesParams) -> FalsePositivesRows {
    false_positives_with(params, |_| {}, |_| {})
}

/// The header of the whole output and of the loss table.
pub fn false_positives_header(params: &FalsePositivesParams) -> String {
    let mut out = String::new();
    let c = &params.config;
    let _ = writeln!(out, "$ {}", params.command());
    let _ = writeln!(
        out,
        "false positives: N={} seed={}; lan profile: probe_interval={:?} probe_timeout={:?} \
         indirect_checks={} suspicion timeout {:.1}-{:.1}s for N, {} confirmations",
        params.nodes,
        params.seed,
        c.probe_interval,
        c.probe_timeout,
        c.indirect_checks,
        c.suspicion_min_timeout(params.nodes).as_secs_f64(),
        c.suspicion_max_timeout(params.nodes).as_secs_f64(),
        c.suspicion_confirmations
    );
    let _ = writeln!(
        out,
        "under loss: {:.0} min of virtual time per row after {:?}, nothing crashed; FP = \
         distinct (member, generation, incarnation) marked failed; events = Failed events (one \
         per observer); susp = distinct suspicions",
        params.duration.as_secs_f64() / 60.0,
        params.settle
    );
    let _ = writeln!(
        out,
        "{:>5} | {:>7} | {:>4} {:>6} {:>9} | {:>6} {:>8} | {:>7} | {:>4} {:>6}",
        "loss",
        "node-h",
        "FP",
        "events",
        "FP/node-h",
        "susp",
        "susp/n-h",
        "pkt/n/s",
        "viol",
        "wall"
    );
    out
}

/// One line of the loss table.
pub fn loss_line(r: &LossRow) -> String {
    let h = r.node_hours.max(f64::MIN_POSITIVE);
    format!(
        "{:>4.0}% | {:>7.1} | {:>4} {:>6} {:>9.3} | {:>6} {:>8.2} | {:>7.2} | {:>4} {:>5.1}s",
        r.loss * 100.0,
        r.node_hours,
        r.false_positives,
        r.failed_events,
        r.false_positives as f64 / h,
        r.suspicions,
        r.suspicions as f64 / h,
        r.packets_per_node_second,
        r.violations,
        r.wall.as_secs_f64()
    )
}

/// The header of the pause table.
pub fn pause_header(params: &FalsePositivesParams) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "paused: {} pauses per row, each of a random node (SIGSTOP stand-in: timers stop, \
         datagrams wait in a {} KB receive buffer), then resumed, no loss; suspected / failed = \
         pauses after which some node had suspected / declared the paused node failed \
         (observers = nodes that declared it, mean); others = distinct wrongful verdicts about \
         the nodes never paused; back = resume until every node sees it alive (s)",
        params.runs,
        crate::sim::SimConfig::new(0).pause_buffer_bytes / 1024
    );
    let _ = writeln!(
        out,
        "{:>6} | {:>9} {:>9} {:>9} | {:>6} {:>6} | {:>6} {:>6} | {:>4} {:>6}",
        "pause",
        "suspected",
        "failed",
        "observers",
        "others",
        "susp",
        "back50",
        "max",
        "viol",
        "wall"
    );
    out
}

/// One line of the pause table.
pub fn pause_line(r: &PauseRow) -> String {
    let secs = |d: Option<Duration>| {
        d.map_or_else(|| "-".to_owned(), |d| format!("{:.3}", d.as_secs_f64()))
    };
    format!(
        "{:>5.0}s | {:>4}/{:<4} {:>4}/{:<4} {:>9.1} | {:>6} {:>6} | {:>6} {:>6} | {:>4} {:>5.1}s",
        r.pause.as_secs_f64(),
        r.suspected,
        r.runs,
        r.declared_failed,
        r.runs,
        if r.declared_failed > 0 {
            r.failed_observers as f64 / r.declared_failed as f64
        } else {
            0.0
        },
        r.others_failed,
        r.others_suspected,
        secs(quantile(&r.back_alive, 0.5)),
        secs(r.back_alive.last().copied()),
        r.violations,
        r.wall.as_secs_f64()
    )
}

/// Formats both tables.
pub fn false_positives_table(params: &FalsePositivesParams, rows: &FalsePositivesRows) -> String {
    let mut out = false_positives_header(params);
    for r in &rows.losses {
        out.push_str(&loss_line(r));
        out.push('\n');
    }
    out.push_str(&pause_header(params));
    for r in &rows.pauses {
        out.push_str(&pause_line(r));
        out.push('\n');
    }
    out
}

/// The plot: wrongful verdicts per node-hour versus loss, and the fate of a paused node versus
/// the pause's length.
pub fn false_positives_figure(params: &FalsePositivesParams, rows: &FalsePositivesRows) -> Figure {
    let per_hour = |count: usize, r: &LossRow| count as f64 / r.node_hours.max(f64::MIN_POSITIVE);
    let mut failed = Panel::new(
        "running members declared failed",
        "packet loss (%)",
        "per node-hour",
    );
    failed.push(Series::new(
        "distinct verdicts",
        rows.losses
            .iter()
            .map(|r| (r.loss * 100.0, per_hour(r.false_positives, r)))
            .collect(),
    ));
    let mut suspected = Panel::new(
        "running members suspected",
        "packet loss (%)",
        "per node-hour",
    )
    .log_y();
    suspected.push(Series::new(
        "distinct suspicions",
        rows.losses
            .iter()
            .map(|r| (r.loss * 100.0, per_hour(r.suspicions, r)))
            .collect(),
    ));
    let mut paused = Panel::new(
        "a paused node, then resumed",
        "pause (s)",
        "share of pauses (%)",
    )
    .legend_at(Corner::LowerRight);
    let share = |k: usize, r: &PauseRow| 100.0 * k as f64 / r.runs.max(1) as f64;
    paused.push(Series::new(
        "it was suspected",
        rows.pauses
            .iter()
            .map(|r| (r.pause.as_secs_f64(), share(r.suspected, r)))
            .collect(),
    ));
    paused.push(Series::new(
        "it was declared failed",
        rows.pauses
            .iter()
            .map(|r| (r.pause.as_secs_f64(), share(r.declared_failed, r)))
            .collect(),
    ));
    paused.push(Series::new(
        "another node was declared failed",
        rows.pauses
            .iter()
            .map(|r| (r.pause.as_secs_f64(), share(r.others_failed_pauses, r)))
            .collect(),
    ));
    let min = params
        .config
        .suspicion_min_timeout(params.nodes)
        .as_secs_f64();
    paused.push(
        Series::new(
            format!("minimum suspicion timeout ({min:.1} s)"),
            vec![(min, 0.0), (min, 100.0)],
        )
        .dashed(),
    );
    Figure::new(
        format!(
            "false positives: N={}, {:.0} min per loss rate, {} pauses per length, lan profile",
            params.nodes,
            params.duration.as_secs_f64() / 60.0,
            params.runs
        ),
        vec![failed, suspected, paused],
    )
}
