//! The one way the scale experiments (`detection-scale`, `false-positives`, `cost`) get a
//! cluster in which every node knows every other as alive.

use std::time::Duration;

use chatter_core::Config;

use crate::sim::{Sim, SimConfig};

/// Sizes above which the simulator's invariant checks are off: they scan a member table after
/// every change, O(N) each, and would dominate the wall time of large clusters.
pub const CHECKED_UP_TO: usize = 100;

/// Simulation settings for an experiment's cluster of `n` nodes: `seed`, the protocol config,
/// invariant checks only up to [`CHECKED_UP_TO`] nodes.
pub fn sim_config(seed: u64, config: &Config, n: usize) -> SimConfig {
    let mut sim = SimConfig::new(seed).with_node_config(config.clone());
    sim.check_invariants = n <= CHECKED_UP_TO;
    sim
}

/// A cluster of `n` nodes in which every node sees every other alive, settled.
///
/// The cluster starts warm ([`Sim::with_warm_cluster`]: every node created knowing every other,
/// no joins simulated, so 10,000 nodes start in seconds), then runs for [`SETTLE`] so that the
/// nodes' start-up announcements have been gossiped out and the broadcast tree has its links.
/// The `convergence` experiment measures joins themselves.
///
/// Panics if the configuration does not validate or the cluster does not agree after settling.
pub fn stable_cluster(config: SimConfig, n: usize) -> Sim {
    let seed = config.seed;
    let mut sim = match Sim::with_warm_cluster(config, n) {
        Ok(sim) => sim,
        Err(e) => panic!("invalid protocol configuration: {e}"),
    };
    sim.set_check_interval(Duration::from_millis(100));
    sim.run_for(SETTLE);
    if let Err(e) = sim.wait_until(Duration::from_secs(600), Sim::all_agree_alive) {
        panic!("{n} nodes did not agree (seed {seed}): {e}");
    }
    sim
}

/// Virtual time a warm cluster runs before an experiment measures it.
pub const SETTLE: Duration = Duration::from_secs(10);
