//! The experiments of `chatter-sim experiment` on tiny sizes: each still measures what it claims
//! (a broken experiment or a broken protocol fails here), and each plot renders.
//!
//! Every test takes its seed from `CHATTER_SIM_SEED` (default 42) and prints it on failure.

mod common;

use std::time::Duration;

use chatter_sim::experiment::{
    self, ConvergenceParams, CostParams, DetectionScaleParams, FalsePositivesParams, JoinMode,
};
use chatter_sim::plot::Figure;
use common::SimTest;

const SECOND: Duration = Duration::from_secs(1);

/// The figure renders as SVG, with its title and text elements.
fn check_svg(t: &SimTest, figure: &Figure) {
    let svg = match figure.to_svg() {
        Ok(svg) => svg,
        Err(e) => t.fail(format!("the plot did not render: {e}")),
    };
    let title = figure.title.split(':').next().unwrap_or_default();
    t.check(svg.contains("<text") && svg.contains(title), || {
        format!("the SVG lacks text or its title {title:?}")
    });
}

#[test]
fn convergence_takes_a_positive_finite_time_in_both_join_modes() {
    let t = SimTest::new("convergence_takes_a_positive_finite_time_in_both_join_modes");
    let params = ConvergenceParams {
        sizes: vec![5, 30],
        runs: 2,
        seed: t.seed,
        deadline: 120 * SECOND,
        ..ConvergenceParams::default()
    };
    let rows = experiment::convergence(&params);
    t.check(rows.len() == 4, || format!("{} rows, not 4", rows.len()));
    for r in &rows {
        let line = experiment::convergence_line(&params, r);
        t.check(r.unconverged == 0 && r.after_last_join.len() == 2, || {
            format!("not every cluster converged: {line}")
        });
        // Agreement needs at least one round trip after the last join, and no lost packets
        // means no retries: well under a minute.
        let last = *r.after_last_join.last().unwrap();
        t.check(last > Duration::ZERO && last < 60 * SECOND, || {
            format!("implausible convergence time: {line}")
        });
        if r.mode == JoinMode::Staggered {
            let joins = params.stagger * (r.nodes as u32 - 2);
            t.check(r.after_first_join[0] >= joins, || {
                format!("converged before the last join: {line}")
            });
        }
        t.check(r.packets_per_node > 0.0 && r.failures == 0, || {
            format!("no traffic, or wrongful failures while joining: {line}")
        });
        t.check(r.violations == 0, || {
            format!("invariant violations: {line}")
        });
    }
    check_svg(&t, &experiment::convergence_figure(&params, &rows));
}

#[test]
fn detection_scale_detects_every_crash_faster_with_icmp() {
    let t = SimTest::new("detection_scale_detects_every_crash_faster_with_icmp");
    let params = DetectionScaleParams {
        sizes: vec![5, 12],
        runs: 3,
        seed: t.seed,
        settle: 2 * SECOND,
        ..DetectionScaleParams::default()
    };
    let rows = experiment::detection_scale(&params);
    t.check(rows.len() == 4, || format!("{} rows, not 4", rows.len()));
    for r in &rows {
        let line = experiment::detection_scale_line(&params, r);
        t.check(
            r.undetected == 0 && r.full_detection.len() == 3 && r.first_detection.len() == 3,
            || format!("a crash went undetected: {line}"),
        );
        let (fastest, slowest) = (r.full_detection[0], r.full_detection[2]);
        t.check(fastest > Duration::ZERO && slowest <= r.bound, || {
            format!("detection outside (0, bound]: {line}")
        });
        // Without ICMP, a verdict waits out at least Lifeguard's minimum suspicion timeout.
        let min = params.config.suspicion_min_timeout(r.nodes);
        t.check(r.icmp || fastest >= min, || {
            format!("failed before the minimum suspicion timeout {min:?}: {line}")
        });
        t.check(r.false_positives == 0 && r.violations == 0, || {
            format!("wrongful verdicts or violations: {line}")
        });
    }
    for pair in rows.chunks(2) {
        let median = |k: usize| experiment::quantile(&pair[k].full_detection, 0.5);
        t.check(
            pair[0].icmp && !pair[1].icmp && median(0) < median(1),
            || {
                format!(
                    "ICMP did not speed detection up at N={}: {:?} vs {:?}",
                    pair[0].nodes,
                    median(0),
                    median(1)
                )
            },
        );
    }
    check_svg(&t, &experiment::detection_scale_figure(&params, &rows));
}

#[test]
fn false_positives_none_without_loss_and_only_a_long_pause_is_failed() {
    let t = SimTest::new("false_positives_none_without_loss_and_only_a_long_pause_is_failed");
    let params = FalsePositivesParams {
        nodes: 10,
        losses: vec![0.0],
        duration: 300 * SECOND,
        settle: 2 * SECOND,
        pauses: vec![SECOND, 20 * SECOND],
        runs: 3,
        seed: t.seed,
        ..FalsePositivesParams::default()
    };
    let rows = experiment::false_positives(&params);
    let table = experiment::false_positives_table(&params, &rows);
    let clean = &rows.losses[0];
    t.check(
        clean.false_positives == 0 && clean.suspicions == 0 && clean.node_hours > 0.8,
        || format!("verdicts without loss, or too short a run:\n{table}"),
    );
    let (short, long) = (&rows.pauses[0], &rows.pauses[1]);
    t.check(short.declared_failed == 0, || {
        format!("a 1 s pause got the node declared failed:\n{table}")
    });
    t.check(long.declared_failed == long.runs, || {
        format!("a 20 s pause went without a failed verdict:\n{table}")
    });
    t.check(short.others_failed == 0 && long.others_failed == 0, || {
        format!("a node never paused was declared failed:\n{table}")
    });
    t.check(long.back_alive.len() == long.runs, || {
        format!("a resumed node was not seen alive again:\n{table}")
    });
    check_svg(&t, &experiment::false_positives_figure(&params, &rows));
}

#[test]
fn cost_per_node_is_flat_from_5_to_40_nodes() {
    let t = SimTest::new("cost_per_node_is_flat_from_5_to_40_nodes");
    let params = CostParams {
        sizes: vec![5, 40],
        settle: 10 * SECOND,
        window: 30 * SECOND,
        seed: t.seed,
        ..CostParams::default()
    };
    let rows = experiment::cost(&params);
    let table = experiment::cost_table(&params, &rows);
    for r in &rows {
        // One probe and its ack per node per second, plus anti-entropy every 10 s.
        t.check((1.8..2.6).contains(&r.packets) && r.bytes > 0.0, || {
            format!("unexpected steady-state traffic:\n{table}")
        });
    }
    let spread = experiment::spread(&rows, |r| r.packets);
    t.check(spread <= params.flat_ratio, || {
        format!("datagrams per node grew with N ({spread:.2}x):\n{table}")
    });
    check_svg(&t, &experiment::cost_figure(&params, &rows));
}

#[test]
fn detection_and_dissemination_plots_render() {
    let t = SimTest::new("detection_and_dissemination_plots_render");
    let detection = experiment::DetectionParams {
        nodes: 5,
        runs: 2,
        seed: t.seed,
        losses: vec![0.0, 0.1],
        ..experiment::DetectionParams::default()
    };
    let rows = experiment::detection(&detection);
    t.check(rows.iter().all(|r| r.undetected == 0), || {
        experiment::detection_table(&detection, &rows)
    });
    check_svg(&t, &experiment::detection_figure(&detection, &rows));
    let dissemination = experiment::DisseminationParams {
        sizes: vec![5, 10],
        losses: vec![0.0],
        seed: t.seed,
        broadcasts: 2,
        writes: 1,
        warmup: 1,
        ..experiment::DisseminationParams::default()
    };
    let rows = experiment::dissemination(&dissemination);
    t.check(rows.iter().all(|r| r.incomplete == 0), || {
        experiment::dissemination_table(&dissemination, &rows)
    });
    check_svg(&t, &experiment::dissemination_figure(&dissemination, &rows));
}
