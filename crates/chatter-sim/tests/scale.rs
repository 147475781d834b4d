//! Warm-started clusters and the scale experiment, at sizes a test can afford.

mod common;

use std::time::Duration;

use chatter_core::MemberStatus;
use chatter_sim::experiment::{scale_row, ScaleParams};
use chatter_sim::{Sim, SimConfig};
use common::SimTest;

#[test]
fn a_warm_cluster_starts_converged_and_detects_a_crash() {
    let t = SimTest::new("a_warm_cluster_starts_converged_and_detects_a_crash");
    let mut sim = Sim::with_warm_cluster(SimConfig::new(t.seed), 40).unwrap();
    assert!(sim.all_agree_alive(), "{}", t.replay());
    assert!(
        sim.events().is_empty(),
        "a warm start emits no join events: {:?} {}",
        sim.events().first(),
        t.replay()
    );
    sim.run_for(Duration::from_secs(5));
    assert!(sim.all_agree_alive(), "{}", t.replay());
    assert_eq!(
        sim.failed_events_since(Duration::ZERO).count(),
        0,
        "{}",
        t.replay()
    );
    sim.crash(7);
    let took = sim
        .wait_until(Duration::from_secs(30), |s| {
            s.all_see_status(7, MemberStatus::Failed)
        })
        .unwrap_or_else(|e| panic!("crash not detected everywhere: {e:?} {}", t.replay()));
    assert!(took > Duration::ZERO, "{}", t.replay());
}

#[test]
fn the_scale_experiment_measures_flat_cost_a_tree_broadcast_and_no_false_failures() {
    let t = SimTest::new(
        "the_scale_experiment_measures_flat_cost_a_tree_broadcast_and_no_false_failures",
    );
    let params = ScaleParams {
        sizes: vec![30, 120],
        settle: Duration::from_secs(10),
        measure: Duration::from_secs(10),
        broadcasts: 3,
        ..ScaleParams::default()
    };
    let small = scale_row(&params, 30, t.seed);
    let large = scale_row(&params, 120, t.seed);
    for row in [&small, &large] {
        let ctx = format!("N={} {:?} {}", row.nodes, row, t.replay());
        assert_eq!(row.false_failures, 0, "{ctx}");
        assert_eq!(row.broadcasts_incomplete, 0, "{ctx}");
        assert!(
            row.detection_all.is_some() && row.detection_first.is_some(),
            "{ctx}"
        );
        assert!(row.write_latency.is_some(), "{ctx}");
        // Once settled, the tree sends each node a broadcast about once.
        assert!(
            row.broadcast_datagrams_per_node.iter().all(|&d| d < 1.2),
            "{ctx}"
        );
        assert!(row.packets_per_node_second > 1.0, "{ctx}");
    }
    // Steady-state cost per node does not grow with the cluster (SWIM: one probe per period).
    let ratio = large.bytes_per_node_second / small.bytes_per_node_second;
    assert!(
        (0.8..1.25).contains(&ratio),
        "per-node cost {:.1} B/s at 30 nodes, {:.1} at 120 {}",
        small.bytes_per_node_second,
        large.bytes_per_node_second,
        t.replay()
    );
}

#[test]
fn joins_spread_by_gossip_without_waiting_for_anti_entropy() {
    // Seeds 2 and 4 left a member unknown to one node for 7-8 s (until the next anti-entropy
    // exchange) while the broadcast tree's copies used up the transmit limit.
    for seed in [2, 4] {
        let t = SimTest::with_seed(
            "joins_spread_by_gossip_without_waiting_for_anti_entropy",
            seed,
        );
        let mut sim = Sim::new(SimConfig::new(t.seed)).unwrap();
        sim.set_record_events(false);
        sim.add_nodes_joining(100, Duration::from_millis(10));
        let took = sim.wait_until(Duration::from_secs(3), Sim::all_agree_alive);
        assert!(
            took.is_ok(),
            "not converged 3 s after the last join {}",
            t.replay()
        );
    }
}
