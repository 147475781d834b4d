//! The cost experiment: datagrams and bytes each node sends per second in a stable cluster,
//! versus cluster size. SWIM probes one member per period whatever N is, and anti-entropy sends a
//! fingerprint when members agree, so both figures should stay flat.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chatter_core::{Config, Stats};

use super::cluster::{sim_config, stable_cluster};
use super::row_seed;
use crate::plot::{Figure, Panel, Series};
use crate::sim::Sim;

/// Parameters of the cost experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct CostParams {
    /// Cluster sizes, one row each.
    pub sizes: Vec<usize>,
    /// Time the stable cluster runs before it is measured (the joins' gossip dies out).
    pub settle: Duration,
    /// Virtual time measured per size.
    pub window: Duration,
    /// Per-node figures count as flat if the largest is at most this many times the smallest.
    pub flat_ratio: f64,
    /// Seed of the whole experiment; each size derives its own.
    pub seed: u64,
    /// Protocol configuration of every node.
    pub config: Config,
    /// Each node writes one key (a value of 8 bytes, like a system status figure) this often,
    /// the nodes' writes spread evenly over the period; `None` for no writes.
    pub write_every: Option<Duration>,
}

impl Default for CostParams {
    fn default() -> Self {
        Self {
            sizes: vec![10, 50, 100, 500, 1000],
            settle: Duration::from_secs(30),
            window: Duration::from_secs(60),
            flat_ratio: 1.25,
            seed: 1,
            config: Config::lan(),
            write_every: None,
        }
    }
}

impl CostParams {
    /// The command line that prints this table.
    pub fn command(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(ToString::to_string).collect();
        let writes = self
            .write_every
            .map(|d| format!(" --write-every {}", d.as_secs_f64()))
            .unwrap_or_default();
        format!(
            "cargo run --release -p chatter-sim -- experiment cost --seed {} --sizes {}{writes}",
            self.seed,
            sizes.join(",")
        )
    }
}

/// What one size measured, per node per second of the window.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    /// Cluster size.
    pub nodes: usize,
    /// Datagrams sent per node per second, mean over nodes.
    pub packets: f64,
    /// Bytes sent per node per second, mean over nodes.
    pub bytes: f64,
    /// Datagrams per second of the busiest node.
    pub max_packets: f64,
    /// Bytes per second of the busiest node.
    pub max_bytes: f64,
    /// Direct probes per node per second.
    pub probes: f64,
    /// Indirect probe requests per node per second.
    pub indirect: f64,
    /// Piggybacked updates per node per second.
    pub gossip: f64,
    /// Anti-entropy exchanges started per node per second.
    pub syncs: f64,
    /// Suspicions raised in the window, all nodes together.
    pub suspicions: u64,
    /// Invariant violations the simulator saw (checks on up to 100 nodes only).
    pub violations: u64,
    /// Wall-clock time the row took.
    pub wall: Duration,
}

fn node_stats(sim: &Sim) -> Vec<Stats> {
    (0..sim.len())
        .map(|i| sim.node_stats(i).unwrap_or_default())
        .collect()
}

/// Runs one row: a stable cluster of `n` nodes, settled, measured over `params.window`.
pub fn cost_row(params: &CostParams, n: usize, seed: u64) -> CostRow {
    let wall = Instant::now();
    let n = n.max(2);
    let mut sim = stable_cluster(sim_config(seed, &params.config, n), n);
    sim.set_record_events(false);
    let mut writes = 0u64;
    run_writing(&mut sim, params.settle, params.write_every, &mut writes);
    let before = node_stats(&sim);
    run_writing(&mut sim, params.window, params.write_every, &mut writes);
    let after = node_stats(&sim);
    let secs = params.window.as_secs_f64().max(1e-9);
    let per_node = |f: fn(&Stats) -> u64| -> f64 {
        let total: u64 = after.iter().zip(&before).map(|(a, b)| f(a) - f(b)).sum();
        total as f64 / secs / n as f64
    };
    let busiest = |f: fn(&Stats) -> u64| -> f64 {
        let max = after
            .iter()
            .zip(&before)
            .map(|(a, b)| f(a) - f(b))
            .max()
            .unwrap_or(0);
        max as f64 / secs
    };
    CostRow {
        nodes: n,
        packets: per_node(|s| s.packets_sent),
        bytes: per_node(|s| s.bytes_sent),
        max_packets: busiest(|s| s.packets_sent),
        max_bytes: busiest(|s| s.bytes_sent),
        probes: per_node(|s| s.probes_sent),
        indirect: per_node(|s| s.indirect_probes_sent),
        gossip: per_node(|s| s.gossip_sent),
        syncs: per_node(|s| s.syncs_started),
        suspicions: after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.suspicions_raised - b.suspicions_raised)
            .sum(),
        violations: sim.violation_count(),
        wall: wall.elapsed(),
    }
}

/// Runs the simulation for `duration`; with `every`, node `k mod N` writes its `status` key at
/// the `k`-th of `N` evenly spaced instants per period.
fn run_writing(sim: &mut Sim, duration: Duration, every: Option<Duration>, writes: &mut u64) {
    let Some(every) = every else {
        sim.run_for(duration);
        return;
    };
    let n = sim.len().max(1);
    let slot = every / n as u32;
    let end = sim.now() + duration;
    while sim.now() + slot <= end {
        sim.run_for(slot);
        let i = (*writes % n as u64) as usize;
        let value = format!("{:08}", *writes % 100_000_000).into_bytes();
        let _ = sim.with_node(i, |node, now| node.set(now, "status", value));
        *writes += 1;
    }
    let left = end.saturating_sub(sim.now());
    sim.run_for(left);
}

/// Runs the whole experiment, calling `on_row` as each row is done (to print progress).
pub fn cost_with(params: &CostParams, mut on_row: impl FnMut(&CostRow)) -> Vec<CostRow> {
    let mut rows = Vec::new();
    for (i, &n) in params.sizes.iter().enumerate() {
        let row = cost_row(params, n, row_seed(params.seed, 6000 + i as u64));
        on_row(&row);
        rows.push(row);
    }
    rows
}

/// Runs the whole experiment.
pub fn cost(params: &CostParams) -> Vec<CostRow> {
    cost_with(params, |_| {})
}

/// Largest over smallest of `f` across the rows (1 for fewer than two rows).
pub fn spread(rows: &[CostRow], f: impl Fn(&CostRow) -> f64) -> f64 {
    let values: Vec<f64> = rows.iter().map(f).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() < 2 || min <= 0.0 {
        1.0
    } else {
        max / min
    }
}

/// The header of the table (the command, the settings, the column legend).
pub fn cost_header(params: &CostParams) -> String {
    let mut out = String::new();
    let c = &params.config;
    let _ = writeln!(out, "$ {}", params.command());
    let _ =
        writeln!(
        out,
        "steady-state cost: stable cluster, no loss, {:?} to settle then {:?} measured; seed={}; \
         lan profile: probe_interval={:?} gossip_interval={:?} sync_interval={:?}",
        params.settle, params.window, params.seed, c.probe_interval, c.gossip_interval,
        c.sync_interval
    );
    if let Some(every) = params.write_every {
        let _ = writeln!(
            out,
            "key/value writes: each node writes one 8-byte value every {:?} (like system status)",
            every
        );
    }
    let _ = writeln!(
        out,
        "per node per second: pkts, bytes = sent (mean over nodes), max = busiest node; probes, \
         indirect = probe requests, gossip = piggybacked updates, syncs = anti-entropy exchanges \
         started; susp = suspicions in the window"
    );
    let _ = writeln!(
        out,
        "{:>5} | {:>6} {:>6} | {:>7} {:>7} | {:>6} {:>8} {:>6} {:>6} | {:>4} | {:>4} {:>6}",
        "N",
        "pkts",
        "max",
        "bytes",
        "max",
        "probes",
        "indirect",
        "gossip",
        "syncs",
        "susp",
        "viol",
        "wall"
    );
    out
}

/// One line of the table.
pub fn cost_line(r: &CostRow) -> String {
    format!(
        "{:>5} | {:>6.2} {:>6.2} | {:>7.1} {:>7.1} | {:>6.2} {:>8.3} {:>6.2} {:>6.3} | {:>4} | \
         {:>4} {:>5.1}s",
        r.nodes,
        r.packets,
        r.max_packets,
        r.bytes,
        r.max_bytes,
        r.probes,
        r.indirect,
        r.gossip,
        r.syncs,
        r.suspicions,
        r.violations,
        r.wall.as_secs_f64()
    )
}

/// The closing lines: whether the per-node figures are flat in N.
///
/// The verdict is on the means; the busiest node is shown for information: each node is probed
/// by a random number of others each period, and the largest of N such draws grows slowly with N.
pub fn cost_verdict(params: &CostParams, rows: &[CostRow]) -> String {
    let mut out = String::new();
    for (what, ratio) in [
        ("datagrams/node/s", spread(rows, |r| r.packets)),
        ("bytes/node/s", spread(rows, |r| r.bytes)),
    ] {
        let _ = writeln!(
            out,
            "{what}: largest/smallest over N = {ratio:.2} -> {}",
            if ratio <= params.flat_ratio {
                format!("flat (within {:.2}x)", params.flat_ratio)
            } else {
                format!("NOT flat (more than {:.2}x)", params.flat_ratio)
            }
        );
    }
    let _ = writeln!(
        out,
        "busiest node, largest/smallest over N: datagrams {:.2}, bytes {:.2} (the most-probed of \
         N nodes: grows slowly with N)",
        spread(rows, |r| r.max_packets),
        spread(rows, |r| r.max_bytes)
    );
    out
}

/// Formats the rows as a text table, with the verdict.
pub fn cost_table(params: &CostParams, rows: &[CostRow]) -> String {
    let mut out = cost_header(params);
    for r in rows {
        out.push_str(&cost_line(r));
        out.push('\n');
    }
    out.push_str(&cost_verdict(params, rows));
    out
}

/// The plot: datagrams and bytes per node per second versus N (mean and busiest node).
pub fn cost_figure(params: &CostParams, rows: &[CostRow]) -> Figure {
    let line = |name: &str, f: fn(&CostRow) -> f64| {
        Series::new(name, rows.iter().map(|r| (r.nodes as f64, f(r))).collect())
    };
    let mut packets = Panel::new("datagrams sent", "nodes (N)", "per node per second").log_x();
    packets.push(line("mean over nodes", |r| r.packets));
    packets.push(line("busiest node", |r| r.max_packets));
    let mut bytes = Panel::new("bytes sent", "nodes (N)", "per node per second").log_x();
    bytes.push(line("mean over nodes", |r| r.bytes));
    bytes.push(line("busiest node", |r| r.max_bytes));
    Figure::new(
        format!(
            "steady-state cost per node: stable cluster, no loss, {:.0} s measured after {:.0} s",
            params.window.as_secs_f64(),
            params.settle.as_secs_f64()
        ),
        vec![packets, bytes],
    )
}
