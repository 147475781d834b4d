//! The dissemination experiment: what a user message (Plumtree) and a key/value write
//! (piggyback + Scuttlebutt) cost, and how fast they reach every node, versus cluster size and
//! packet loss.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chatter_core::Config;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{quantile, row_seed};
use crate::sim::{Sim, SimConfig};

/// Parameters of the dissemination experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct DisseminationParams {
    /// Cluster sizes, one group of rows each (one cluster per size, reused across loss rates).
    pub sizes: Vec<usize>,
    /// Packet loss rates, one row each per size.
    pub losses: Vec<f64>,
    /// Seed of the whole experiment; each size derives its own.
    pub seed: u64,
    /// Broadcasts measured per row (after `warmup` unmeasured ones).
    pub broadcasts: usize,
    /// Key/value writes measured per row.
    pub writes: usize,
    /// Unmeasured broadcasts before each row, so that the tree has settled under that loss.
    pub warmup: usize,
    /// Sizes from which a row measures fewer broadcasts and writes (wall time).
    pub large: usize,
    /// At most this many broadcasts and writes per row for sizes of `large` and more.
    pub large_runs: (usize, usize),
    /// `(size, loss)` rows not run, to bound wall time: at 20% loss the background traffic per
    /// node grows with N (every false suspicion and its refutation is gossiped to everyone), so
    /// N = 1000 at 20% takes minutes on its own.
    pub skip: Vec<(usize, f64)>,
    /// How long a broadcast or write may take to reach every node before it counts as
    /// incomplete.
    pub deadline: Duration,
    /// Protocol configuration of every node.
    pub config: Config,
}

impl Default for DisseminationParams {
    fn default() -> Self {
        Self {
            sizes: vec![10, 50, 100, 500, 1000],
            losses: vec![0.0, 0.10, 0.20],
            seed: 1,
            broadcasts: 20,
            writes: 10,
            warmup: 3,
            large: 500,
            large_runs: (6, 3),
            skip: vec![(1000, 0.20)],
            deadline: Duration::from_secs(30),
            config: Config::lan(),
        }
    }
}

impl DisseminationParams {
    /// The command line that prints this table.
    pub fn command(&self) -> String {
        let list = |v: Vec<String>| v.join(",");
        format!(
            "cargo run --release -p chatter-sim -- experiment dissemination --seed {} --runs {} \
             --sizes {} --losses {}{}",
            self.seed,
            self.broadcasts,
            list(self.sizes.iter().map(ToString::to_string).collect()),
            list(
                self.losses
                    .iter()
                    .map(|l| format!("{}", (l * 100.0).round()))
                    .collect()
            ),
            if self.skip.is_empty() { " --full" } else { "" },
        )
    }

    fn runs_for(&self, n: usize) -> (usize, usize) {
        if n >= self.large {
            (
                self.broadcasts.min(self.large_runs.0),
                self.writes.min(self.large_runs.1),
            )
        } else {
            (self.broadcasts, self.writes)
        }
    }
}

/// What one row (one size, one loss rate) measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DisseminationRow {
    /// Cluster size.
    pub nodes: usize,
    /// Packet loss rate.
    pub loss: f64,
    /// Datagrams per node per second other than those of the broadcast tree while the
    /// broadcasts were measured (probes, acks, membership gossip, anti-entropy).
    pub background: f64,
    /// Per measured broadcast: datagrams of the broadcast tree (whole messages + grafts +
    /// prunes) from the broadcast until 1 s after its last delivery.
    pub datagrams: Vec<u64>,
    /// Per measured broadcast: whole-message datagrams alone.
    pub full_sends: Vec<u64>,
    /// Per broadcast that reached every running node: the time until the last one delivered it,
    /// sorted.
    pub latency: Vec<Duration>,
    /// Broadcasts that had not reached every running node by the deadline.
    pub incomplete: usize,
    /// Deliveries missing at the deadline, all broadcasts together.
    pub missing: usize,
    /// Per write that reached every running node: the time until the last one held it, sorted.
    pub write_latency: Vec<Duration>,
    /// Per measured write: datagrams that carried it (piggybacked or in an anti-entropy delta)
    /// from the write until 3 s after it reached every node.
    pub write_datagrams: Vec<u64>,
    /// Writes that had not reached every running node by the deadline.
    pub writes_incomplete: usize,
    /// Invariant violations the simulator saw.
    pub violations: u64,
    /// Wall-clock time the row took.
    pub wall: Duration,
}

/// Builds a converged cluster of `n` nodes (joins without loss).
fn cluster(params: &DisseminationParams, n: usize, seed: u64) -> Sim {
    let mut config = SimConfig::new(seed).with_node_config(params.config.clone());
    // Member-table scans after every change cost O(N) each; the detection experiment and the
    // tests keep them, this one measures traffic.
    config.check_invariants = n <= 100;
    let mut sim = match Sim::with_cluster(config, n, Duration::from_millis(10)) {
        Ok(sim) => sim,
        Err(e) => panic!("invalid protocol configuration: {e}"),
    };
    sim.set_check_interval(Duration::from_millis(5));
    let _ = sim.wait_until(Duration::from_secs(120), Sim::all_agree_alive);
    sim
}

/// Measures one row on an existing cluster: sets the loss, lets it settle, warms the tree up,
/// then measures broadcasts and writes one after the other.
pub fn dissemination_row(
    params: &DisseminationParams,
    sim: &mut Sim,
    loss: f64,
    seed: u64,
) -> DisseminationRow {
    let wall = Instant::now();
    let n = sim.len();
    let (broadcasts, writes) = params.runs_for(n);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut row = DisseminationRow {
        nodes: n,
        loss,
        ..DisseminationRow::default()
    };
    sim.set_record_events(false);
    sim.set_loss(loss);
    sim.run_for(Duration::from_secs(3));

    let settle = Duration::from_secs(1);
    let mut measured_from = None;
    for k in 0..params.warmup + broadcasts {
        if k == params.warmup {
            measured_from = Some((sim.now(), sim.traffic()));
        }
        let origin = rng.random_range(0..n);
        let before = sim.traffic();
        let id = match sim.broadcast(origin, "experiment", vec![0x42; 64]) {
            Ok(id) => id,
            Err(e) => panic!("broadcast refused: {e}"),
        };
        let reached = sim.wait_delivered(&id, params.deadline);
        sim.run_for(settle);
        if k < params.warmup {
            continue;
        }
        let cost = sim.traffic().since(&before);
        row.datagrams.push(cost.message_datagrams());
        row.full_sends.push(cost.messages_sent);
        match reached {
            Ok(latency) => row.latency.push(latency),
            Err(_) => {
                row.incomplete += 1;
                row.missing += sim.undelivered(&id).len();
            }
        }
        sim.forget_messages();
    }
    if let Some((t, before)) = measured_from {
        let cost = sim.traffic().since(&before);
        let secs = (sim.now() - t).as_secs_f64();
        row.background =
            cost.packets.saturating_sub(cost.message_datagrams()) as f64 / secs / n as f64;
    }

    sim.set_trace_payloads(true);
    for k in 0..writes {
        let owner = rng.random_range(0..n);
        let value: Vec<u8> = (0..64).map(|_| rng.random()).collect();
        let version = match sim.set(owner, &format!("experiment-{k}"), value) {
            Ok(v) => v,
            Err(e) => panic!("write refused: {e}"),
        };
        let reached = sim.wait_until(params.deadline, |s| {
            s.write_reached_everywhere(owner, version)
        });
        sim.run_for(Duration::from_secs(3));
        if let Some(w) = sim.write(owner, version) {
            row.write_datagrams.push(w.carried.full + w.carried.deltas);
        }
        match reached.ok().and(sim.write_latency(owner, version)) {
            Some(latency) => row.write_latency.push(latency),
            None => row.writes_incomplete += 1,
        }
        sim.forget_writes();
    }
    sim.set_trace_payloads(false);
    sim.set_loss(0.0);
    row.latency.sort();
    row.write_latency.sort();
    row.violations = sim.violation_count();
    row.wall = wall.elapsed();
    row
}

/// Runs the whole experiment: for each size one cluster, then one row per loss rate.
pub fn dissemination(params: &DisseminationParams) -> Vec<DisseminationRow> {
    dissemination_with(params, |_| {})
}

/// Like [`dissemination`], calling `on_row` as each row is done (to print progress).
pub fn dissemination_with(
    params: &DisseminationParams,
    mut on_row: impl FnMut(&DisseminationRow),
) -> Vec<DisseminationRow> {
    let mut rows = Vec::new();
    for (i, &n) in params.sizes.iter().enumerate() {
        let seed = row_seed(params.seed, 1000 + i as u64);
        let mut sim = cluster(params, n.max(2), seed);
        for (j, &loss) in params.losses.iter().enumerate() {
            if params
                .skip
                .iter()
                .any(|&(sn, sl)| sn == n && (sl - loss).abs() < 1e-9)
            {
                continue;
            }
            let row = dissemination_row(params, &mut sim, loss, row_seed(seed, j as u64 + 1));
            on_row(&row);
            rows.push(row);
        }
    }
    rows
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1e3),
    )
}

fn mean(v: &[u64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<u64>() as f64 / v.len() as f64
}

/// The header of the table (the command, the settings, the column legend).
pub fn dissemination_header(params: &DisseminationParams) -> String {
    let mut out = String::new();
    let c = &params.config;
    let _ = writeln!(out, "$ {}", params.command());
    let _ = writeln!(
        out,
        "dissemination: seed={} broadcasts/row={} writes/row={} ({} and {} from N={}) warmup={} \
         deadline={:?}; lan profile: probe_interval={:?} gossip_interval={:?} fanout={} \
         broadcast_neighbours={} graft_timeout={:?} sync_interval={:?}",
        params.seed,
        params.broadcasts,
        params.writes,
        params.runs_for(params.large).0,
        params.runs_for(params.large).1,
        params.large,
        params.warmup,
        params.deadline,
        c.probe_interval,
        c.gossip_interval,
        c.gossip_fanout,
        c.broadcast_neighbours,
        c.graft_timeout,
        c.sync_interval
    );
    let _ = writeln!(
        out,
        "bcast: dgrams = whole-message sends + grafts + prunes per broadcast (until 1 s after the \
         last delivery), /N = per node, full = whole-message sends; latency = broadcast to the \
         last running node (ms); miss = broadcasts short of 100% at the deadline (deliveries \
         missing)"
    );
    let _ = writeln!(
        out,
        "kv: latency = write to the last running node holding it (ms); dgrams = datagrams \
         carrying the write (piggybacked or in a delta) until 3 s after; bg = other datagrams \
         per node per second meanwhile (probes, membership gossip, anti-entropy)"
    );
    if !params.skip.is_empty() {
        let cells: Vec<String> = params
            .skip
            .iter()
            .map(|(n, l)| format!("N={n} at {:.0}%", l * 100.0))
            .collect();
        let _ = writeln!(
            out,
            "not run, for wall time: {} (background traffic per node grows with N under loss; \
             add --full to run them)",
            cells.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "{:>5} {:>4} | {:>7} {:>5} {:>7} | {:>7} {:>7} {:>7} | {:>7} | {:>7} {:>7} {:>7} {:>6} \
         {:>5} | {:>6} | {:>4} {:>6}",
        "N",
        "loss",
        "dgrams",
        "/N",
        "full",
        "lat50",
        "p99",
        "max",
        "miss",
        "kv lat50",
        "p99",
        "max",
        "dgrams",
        "miss",
        "bg",
        "viol",
        "wall"
    );
    out
}

/// One line of the table.
pub fn dissemination_line(r: &DisseminationRow) -> String {
    let d = mean(&r.datagrams);
    format!(
        "{:>5} {:>3.0}% | {:>7.0} {:>5.2} {:>7.0} | {:>7} {:>7} {:>7} | {:>3} ({:>2}) | {:>8} {:>7} \
         {:>7} {:>6.0} {:>5} | {:>6.1} | {:>4} {:>5.1}s",
        r.nodes,
        r.loss * 100.0,
        d,
        d / r.nodes as f64,
        mean(&r.full_sends),
        ms(quantile(&r.latency, 0.5)),
        ms(quantile(&r.latency, 0.99)),
        ms(r.latency.last().copied()),
        r.incomplete,
        r.missing,
        ms(quantile(&r.write_latency, 0.5)),
        ms(quantile(&r.write_latency, 0.99)),
        ms(r.write_latency.last().copied()),
        mean(&r.write_datagrams),
        r.writes_incomplete,
        r.background,
        r.violations,
        r.wall.as_secs_f64()
    )
}

/// Formats the rows as a text table.
pub fn dissemination_table(params: &DisseminationParams, rows: &[DisseminationRow]) -> String {
    let mut out = dissemination_header(params);
    for r in rows {
        out.push_str(&dissemination_line(r));
        out.push('\n');
    }
    out
}
