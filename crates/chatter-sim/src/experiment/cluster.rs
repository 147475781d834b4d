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

/// A cluster of `n` nodes in which every node sees every other alive, at the virtual time it
/// got there.
///
/// Today the nodes join through node 0, 10 ms apart, and the simulation runs until they agree
/// (every join is simulated, its events not recorded; the check interval is left at 100 ms). A warm start (every node created knowing every other) gives the
/// same starting point without the joins: switch to it here and every scale experiment follows.
///
/// Panics if the configuration does not validate or the cluster does not converge in 10 minutes
/// of virtual time.
pub fn stable_cluster(config: SimConfig, n: usize) -> Sim {
    let seed = config.seed;
    let mut sim = match Sim::new(config) {
        Ok(sim) => sim,
        Err(e) => panic!("invalid protocol configuration: {e}"),
    };
    // The joins' events (N - 1 `Joined` per node) are not what any experiment measures.
    sim.set_record_events(false);
    sim.add_nodes_joining(n, Duration::from_millis(10));
    sim.set_check_interval(Duration::from_millis(100));
    if let Err(e) = sim.wait_until(Duration::from_secs(600), Sim::all_agree_alive) {
        panic!("{n} nodes did not converge (seed {seed}): {e}");
    }
    sim.set_record_events(true);
    sim
}
