//! The scale experiment: one converged cluster per size, up to 10,000 nodes, and what a node
//! pays and sees there: steady-state traffic per node, a broadcast and a key/value write
//! reaching everyone, a crash detected by everyone, members wrongly declared failed, and the
//! simulator's own wall time and memory.
//!
//! Clusters start warm ([`Sim::with_warm_cluster`]): simulating 10,000 joins would be 10^8
//! membership updates before the first measurement; the `convergence` experiment measures
//! joins.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chatter_core::Config;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::row_seed;
use crate::plot::{Figure, Panel, Series};
use crate::sim::{Sim, SimConfig};

/// Parameters of the scale experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleParams {
    /// Cluster sizes, one row each.
    pub sizes: Vec<usize>,
    /// Packet loss rate on every link, for the whole row.
    pub loss: f64,
    /// Seed of the whole experiment; each size derives its own.
    pub seed: u64,
    /// Virtual time run before measuring, so that the start-up gossip has died down and the
    /// broadcast tree has formed its links.
    pub settle: Duration,
    /// Virtual time over which steady-state traffic is measured.
    pub measure: Duration,
    /// Unmeasured broadcasts before the measured ones (the tree prunes its redundant links
    /// on the first broadcasts).
    pub warmup_broadcasts: usize,
    /// Broadcasts measured.
    pub broadcasts: usize,
    /// How long a broadcast, a write or a detection may take before it counts as incomplete.
    pub deadline: Duration,
    /// Protocol configuration of every node.
    pub config: Config,
}

impl Default for ScaleParams {
    fn default() -> Self {
        Self {
            sizes: vec![100, 1000, 10_000],
            loss: 0.0,
            seed: 1,
            settle: Duration::from_secs(20),
            measure: Duration::from_secs(30),
            warmup_broadcasts: 3,
            broadcasts: 5,
            deadline: Duration::from_secs(60),
            config: Config::lan(),
        }
    }
}

impl ScaleParams {
    /// The command line that prints this table.
    pub fn command(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(ToString::to_string).collect();
        format!(
            "cargo run --release -p chatter-sim -- experiment scale --seed {} --sizes {} --loss {}",
            self.seed,
            sizes.join(","),
            (self.loss * 100.0).round()
        )
    }
}

/// What one size measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleRow {
    /// Cluster size.
    pub nodes: usize,
    /// Packet loss rate.
    pub loss: f64,
    /// Wall time to build the warm cluster.
    pub build_wall: Duration,
    /// Steady state: bytes sent per node per second.
    pub bytes_per_node_second: f64,
    /// Steady state: datagrams sent per node per second.
    pub packets_per_node_second: f64,
    /// Steady state: suspicions raised per node per hour (every one of a running node is
    /// false, and costs a suspicion and a refutation gossiped to every node).
    pub suspicions_per_node_hour: f64,
    /// Steady state: piggybacked updates per datagram sent.
    pub updates_per_packet: f64,
    /// Per measured broadcast: datagrams of the broadcast tree divided by N.
    pub broadcast_datagrams_per_node: Vec<f64>,
    /// Per measured broadcast that reached every node: time to the last one.
    pub broadcast_latency: Vec<Duration>,
    /// Broadcasts short of every node at the deadline.
    pub broadcasts_incomplete: usize,
    /// The write's time to the last node, if it reached every node.
    pub write_latency: Option<Duration>,
    /// Datagrams that carried the write, divided by N.
    pub write_datagrams_per_node: f64,
    /// Crash to the first survivor declaring the crashed node failed.
    pub detection_first: Option<Duration>,
    /// Crash to every survivor seeing it failed (none seeing it live).
    pub detection_all: Option<Duration>,
    /// Failed verdicts about running nodes, over the whole row.
    pub false_failures: usize,
    /// Node-hours of virtual time observed.
    pub node_hours: f64,
    /// Invariant violations the simulator saw.
    pub violations: u64,
    /// Wall time of the whole row.
    pub wall: Duration,
    /// Virtual time of the whole row.
    pub virtual_time: Duration,
    /// Resident memory of the simulator after the row (Linux; 0 elsewhere).
    pub rss_bytes: u64,
    /// Peak resident memory of the simulator so far (Linux; 0 elsewhere).
    pub peak_rss_bytes: u64,
}

/// A `/proc/self/status` field in bytes (0 where there is no procfs).
fn proc_status_bytes(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs one size.
pub fn scale_row(params: &ScaleParams, n: usize, seed: u64) -> ScaleRow {
    let wall = Instant::now();
    let n = n.max(3);
    let mut config = SimConfig::new(seed).with_node_config(params.config.clone());
    // O(N) table scans after every change: affordable to 100 nodes only.
    config.check_invariants = n <= 100;
    let mut sim = match Sim::with_warm_cluster(config, n) {
        Ok(sim) => sim,
        Err(e) => panic!("invalid protocol configuration: {e}"),
    };
    sim.set_check_interval(Duration::from_millis(20));
    let mut row = ScaleRow {
        nodes: n,
        loss: params.loss,
        build_wall: wall.elapsed(),
        ..ScaleRow::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    sim.set_loss(params.loss);
    sim.run_for(params.settle);

    let (t, before, stats_before) = (sim.now(), sim.traffic(), sim.total_stats());
    sim.run_for(params.measure);
    let cost = sim.traffic().since(&before);
    let stats = sim.total_stats();
    let per = (sim.now() - t).as_secs_f64() * n as f64;
    row.bytes_per_node_second = cost.bytes as f64 / per;
    row.packets_per_node_second = cost.packets as f64 / per;
    row.suspicions_per_node_hour =
        (stats.suspicions_raised - stats_before.suspicions_raised) as f64 / per * 3600.0;
    row.updates_per_packet = cost.gossip_sent as f64 / cost.packets.max(1) as f64;

    for k in 0..params.warmup_broadcasts + params.broadcasts {
        let origin = rng.random_range(0..n);
        let before = sim.traffic();
        let id = match sim.broadcast(origin, "scale", vec![0x42; 64]) {
            Ok(id) => id,
            Err(e) => panic!("broadcast refused: {e}"),
        };
        let reached = sim.wait_delivered(&id, params.deadline);
        sim.run_for(Duration::from_secs(1));
        sim.forget_messages();
        if k < params.warmup_broadcasts {
            continue;
        }
        let cost = sim.traffic().since(&before);
        row.broadcast_datagrams_per_node
            .push(cost.message_datagrams() as f64 / n as f64);
        match reached {
            Ok(latency) => row.broadcast_latency.push(latency),
            Err(_) => row.broadcasts_incomplete += 1,
        }
    }
    row.broadcast_latency.sort();

    sim.set_trace_payloads(true);
    let owner = rng.random_range(0..n);
    if let Ok(version) = sim.set(owner, "scale", vec![0x17; 64]) {
        let reached = sim.wait_until(params.deadline, |s| {
            s.write_reached_everywhere(owner, version)
        });
        sim.run_for(Duration::from_secs(3));
        if let Some(w) = sim.write(owner, version) {
            row.write_datagrams_per_node = (w.carried.full + w.carried.deltas) as f64 / n as f64;
        }
        row.write_latency = reached.ok().and(sim.write_latency(owner, version));
    }
    sim.set_trace_payloads(false);
    sim.forget_writes();

    let victim = loop {
        let v = rng.random_range(0..n);
        if v != owner {
            break v;
        }
    };
    let t_crash = sim.now();
    let generation = sim.generation(victim);
    sim.crash(victim);
    let all = sim.wait_until(params.deadline, |s| {
        (0..s.len()).filter(|&o| o != victim).all(|o| {
            s.brief_of(o, victim)
                .is_none_or(|m| m.generation != generation || !m.status.is_live())
        })
    });
    row.detection_all = all.ok();
    row.detection_first = sim.first_failed_at(victim, t_crash).map(|at| at - t_crash);
    sim.run_for(Duration::from_secs(5));

    let victim_name = sim.name(victim).to_owned();
    row.false_failures = sim
        .failed_events_since(Duration::ZERO)
        .filter(|e| e.subject() != victim_name)
        .count();
    row.virtual_time = sim.now();
    row.node_hours = n as f64 * sim.now().as_secs_f64() / 3600.0;
    row.violations = sim.violation_count();
    row.rss_bytes = proc_status_bytes("VmRSS:");
    row.peak_rss_bytes = proc_status_bytes("VmHWM:");
    row.wall = wall.elapsed();
    row
}

/// Runs every size, calling `on_row` as each is done.
pub fn scale_with(params: &ScaleParams, mut on_row: impl FnMut(&ScaleRow)) -> Vec<ScaleRow> {
    let mut rows = Vec::new();
    for (i, &n) in params.sizes.iter().enumerate() {
        let row = scale_row(params, n, row_seed(params.seed, 3000 + i as u64));
        on_row(&row);
        rows.push(row);
    }
    rows
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1e3),
    )
}

/// The header of the table: the command, the settings and the column legend.
pub fn scale_header(params: &ScaleParams) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "$ {}", params.command());
    let _ = writeln!(
        out,
        "scale: warm clusters (every node starts knowing every other), loss {:.0}%, settle {:?}, \
         steady state measured over {:?}, {} broadcasts after {} unmeasured, 1 write, 1 crash",
        params.loss * 100.0,
        params.settle,
        params.measure,
        params.broadcasts,
        params.warmup_broadcasts
    );
    let _ = writeln!(
        out,
        "B/s, pkt/s = sent per node per second at steady state, susp/h = suspicions raised \
         per node-hour meanwhile (all false), upd = piggybacked updates per datagram; bcast = datagrams of the tree \
         per node (median) and time to the last node (median, ms); kv = time to the last node \
         (ms) and datagrams carrying it per node; detect = crash to first / every survivor (s); \
         FP = failed verdicts about running nodes; RSS = simulator resident memory after the \
         row / peak (MiB)"
    );
    let _ = writeln!(
        out,
        "{:>6} | {:>6} {:>5} {:>6} {:>4} | {:>5} {:>7} {:>4} | {:>7} {:>5} | {:>6} {:>6} | {:>3} \
         {:>7} | {:>6} {:>7} {:>6} {:>6}",
        "N",
        "B/s",
        "pkt/s",
        "susp/h",
        "upd",
        "bcast",
        "ms",
        "miss",
        "kv ms",
        "kv/N",
        "first",
        "all",
        "FP",
        "node-h",
        "build",
        "wall",
        "RSS",
        "peak"
    );
    out
}

/// One line of the table.
pub fn scale_line(row: &ScaleRow) -> String {
    let mut per_node = row.broadcast_datagrams_per_node.clone();
    per_node.sort_by(f64::total_cmp);
    let median_dgrams = per_node
        .get(per_node.len() / 2)
        .copied()
        .unwrap_or(f64::NAN);
    let median_latency = row
        .broadcast_latency
        .get(row.broadcast_latency.len() / 2)
        .copied();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "{:>6} | {:>6.1} {:>5.2} {:>6.1} {:>4.1} | {:>5.3} {:>7} {:>4} | {:>7} {:>5.2} | {:>6} \
         {:>6} | {:>3} {:>7.1} | {:>5.1}s {:>6.1}s {:>6.0} {:>6.0}",
        row.nodes,
        row.bytes_per_node_second,
        row.packets_per_node_second,
        row.suspicions_per_node_hour,
        row.updates_per_packet,
        median_dgrams,
        ms(median_latency),
        row.broadcasts_incomplete,
        ms(row.write_latency),
        row.write_datagrams_per_node,
        secs(row.detection_first),
        secs(row.detection_all),
        row.false_failures,
        row.node_hours,
        row.build_wall.as_secs_f64(),
        row.wall.as_secs_f64(),
        mib(row.rss_bytes),
        mib(row.peak_rss_bytes),
    )
}

/// The plot: cost per node, broadcast datagrams per node, detection time and the simulator's
/// memory, each versus N.
pub fn scale_figure(params: &ScaleParams, rows: &[ScaleRow]) -> Figure {
    let line = |name: &str, f: &dyn Fn(&ScaleRow) -> Option<f64>| {
        Series::new(
            name,
            rows.iter()
                .filter_map(|r| f(r).map(|y| (r.nodes as f64, y)))
                .collect(),
        )
    };
    let mut cost = Panel::new("steady-state cost", "nodes (N)", "per node per second").log_x();
    cost.push(line("bytes / 10", &|r| {
        Some(r.bytes_per_node_second / 10.0)
    }));
    cost.push(line("datagrams", &|r| Some(r.packets_per_node_second)));
    let mut bcast = Panel::new("one broadcast", "nodes (N)", "datagrams per node").log_x();
    bcast.push(line("median over broadcasts", &|r| {
        let mut v = r.broadcast_datagrams_per_node.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }));
    let mut detect = Panel::new("crash detected", "nodes (N)", "seconds").log_x();
    detect.push(line("by the first survivor", &|r| {
        r.detection_first.map(|d| d.as_secs_f64())
    }));
    detect.push(
        line("by every survivor", &|r| {
            r.detection_all.map(|d| d.as_secs_f64())
        })
        .dashed(),
    );
    let mut memory = Panel::new("simulator memory", "nodes (N)", "MiB resident")
        .log_x()
        .log_y();
    memory.push(line("after the row", &|r| {
        (r.rss_bytes > 0).then(|| r.rss_bytes as f64 / (1024.0 * 1024.0))
    }));
    Figure::new(
        format!(
            "warm clusters, {:.0}% loss: cost, broadcast, detection, memory versus N",
            params.loss * 100.0
        ),
        vec![cost, bcast, detect, memory],
    )
}
