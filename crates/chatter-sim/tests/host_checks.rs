//! Host checks in the simulator: a silent host is failed within about one silent-host
//! suspicion timeout of its first failed probe, much sooner than Lifeguard alone; a paused
//! process whose host answers keeps its pause tolerance; on paths that drop host checks
//! nothing changes; answers the node did not ask for change nothing.
//!
//! Every test takes its seed from `CHATTER_SIM_SEED` (default 42) and prints it on failure.
//! Run one with its output: `cargo test -p chatter-sim --test host_checks -- --nocapture`.

mod common;

use std::time::Duration;

use chatter_core::{Config, Event, HostAnswer, MemberStatus};
use chatter_sim::Sim;
use common::SimTest;

const SECOND: Duration = Duration::from_secs(1);

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A converged cluster of `n` nodes that has run long enough for every node to calibrate
/// its path to every other (queued at admission and on direct acks, four per probe interval), unless host
/// checks are off or dropped (`firewalled`: every host drops them from the start).
fn calibrated(t: &SimTest, config: Config, n: usize, firewalled: bool) -> Sim {
    let host_checks = config.host_checks;
    let mut sim = Sim::new(t.config(config)).unwrap();
    for _ in 0..n {
        sim.add_node();
    }
    if firewalled {
        for i in 0..n {
            sim.drop_host_checks(i, true);
        }
    }
    for i in 1..n {
        sim.join(i, &[0]);
        sim.run_for(Duration::from_millis(10));
    }
    t.wait(
        &mut sim,
        60 * SECOND,
        "the cluster to converge",
        Sim::all_agree_alive,
    );
    if host_checks {
        let want = n as u64 - 1;
        t.wait(
            &mut sim,
            (n as u32 * 4 + 30) * SECOND,
            "every node to calibrate every path",
            |s| {
                (0..n).all(|i| {
                    s.node_stats(i)
                        .is_some_and(|st| st.host_checks_calibration >= want)
                })
            },
        );
    }
    sim
}

/// Dissemination allowance: the verdict reaches everyone in a few gossip rounds.
fn spread(config: &Config, n: usize) -> Duration {
    config.gossip_interval * (usize::BITS - n.leading_zeros() + 2)
}

/// Takes `victim`'s host down (or cuts its link) and returns (crash to first suspicion, crash
/// to failed everywhere).
fn lose_host(t: &SimTest, sim: &mut Sim, victim: usize, cut_link: bool) -> (Duration, Duration) {
    let at = sim.now();
    if cut_link {
        sim.partition(&[&[victim]]);
    } else {
        sim.crash_host(victim);
    }
    let took = t.wait(
        sim,
        120 * SECOND,
        "every survivor to fail the lost host",
        |s| {
            s.up_nodes()
                .into_iter()
                .filter(|&i| i != victim)
                .all(|i| s.status_of(i, victim) == Some(MemberStatus::Failed))
        },
    );
    let suspected = sim
        .first_event_about(victim, at, |e| matches!(e, Event::Suspect(_)))
        .map(|e| e.at - at)
        .unwrap_or_else(|| t.fail("failed without a suspicion first"));
    (suspected, took)
}

/// (a) Silent host loss at 5 and 50 nodes: from the first failed probe (the first suspicion)
/// to failed everywhere takes at most the silent-host suspicion timeout plus dissemination,
/// and the median from the loss is under half of Lifeguard's alone (host checks off, same
/// seeds, same victims).
#[test]
fn silent_host_loss_is_failed_within_the_silent_host_timeout_of_its_first_failed_probe() {
    let t = SimTest::new(
        "silent_host_loss_is_failed_within_the_silent_host_timeout_of_its_first_failed_probe",
    );
    for (n, trials) in [(5usize, 7usize), (50, 3)] {
        let mut with = Vec::new();
        let mut without = Vec::new();
        for trial in 0..trials {
            let victim = 1 + (trial * 7) % (n - 1);
            let cut_link = trial % 2 == 1;
            for host_checks in [true, false] {
                let config = Config {
                    host_checks,
                    ..Config::lan()
                };
                let trial_t = SimTest::with_seed(t.name, t.seed.wrapping_add(trial as u64));
                let mut sim = calibrated(&trial_t, config.clone(), n, false);
                let (suspected, took) = lose_host(&trial_t, &mut sim, victim, cut_link);
                if host_checks {
                    let bound =
                        suspected + config.silent_host_suspicion_timeout + spread(&config, n);
                    trial_t.check(took <= bound, || {
                        format!(
                            "n={n} trial {trial}: failed everywhere {:.2}s after the loss, \
                             first suspected at {:.2}s: more than the silent-host timeout \
                             ({:.1}s) plus dissemination after it",
                            secs(took),
                            secs(suspected),
                            secs(config.silent_host_suspicion_timeout)
                        )
                    });
                    let shortened: u64 = (0..n)
                        .filter_map(|i| sim.node_stats(i))
                        .map(|s| s.host_silent_suspicions)
                        .sum();
                    trial_t.check(shortened > 0, || "no suspicion used the silent host".into());
                    println!(
                        "n={n} trial {trial} ({}): first suspected {:.2}s, failed everywhere {:.2}s",
                        if cut_link { "link cut" } else { "host down" },
                        secs(suspected),
                        secs(took)
                    );
                    with.push(took);
                } else {
                    without.push(took);
                }
                // A victim cut off fails the others in its own view: only the survivors'
                // verdicts about each other would be wrong.
                let name = sim.name(victim).to_owned();
                let wrong = sim
                    .events()
                    .iter()
                    .filter(|e| matches!(e.event, Event::Failed(_)))
                    .filter(|e| e.observer != victim && e.subject() != name)
                    .count();
                trial_t.check(wrong == 0, || format!("{wrong} wrongful failed verdicts"));
                trial_t.check_invariants(&sim);
            }
        }
        let (m_with, m_without) = (median(with.clone()), median(without.clone()));
        println!(
            "n={n}: silent host failed everywhere after {:?} s with host checks (median \
             {:.2}s), {:?} s without (median {:.2}s)",
            with.iter()
                .map(|d| (secs(*d) * 100.0).round() / 100.0)
                .collect::<Vec<_>>(),
            secs(m_with),
            without
                .iter()
                .map(|d| (secs(*d) * 100.0).round() / 100.0)
                .collect::<Vec<_>>(),
            secs(m_without),
        );
        t.check(m_with * 2 <= m_without, || {
            format!(
                "n={n}: median {:.2}s with host checks is not under half of {:.2}s without",
                secs(m_with),
                secs(m_without)
            )
        });
    }
}

/// (b) A process paused 5 s on a live host (its kernel answers host checks) is never failed,
/// at 5 and 20 nodes, several victims each.
#[test]
fn a_five_second_pause_on_a_live_host_is_never_failed() {
    let t = SimTest::new("a_five_second_pause_on_a_live_host_is_never_failed");
    for n in [5usize, 20] {
        let mut sim = calibrated(&t, Config::lan(), n, false);
        let answered = |sim: &Sim| -> u64 {
            (0..n)
                .filter_map(|i| sim.node_stats(i))
                .map(|s| s.host_checks_answered)
                .sum()
        };
        // Host checks answered in each pause and the 15 s after it. A pause may go unprobed
        // (at 20 nodes about 1 in 160 does: each member is probed about once a second), so the
        // check that the pauses exercised host checks is over the three together.
        let mut per_pause = Vec::new();
        for victim in [1, n / 2, n - 1] {
            let answered_before = answered(&sim);
            sim.pause(victim);
            sim.run_for(5 * SECOND);
            sim.resume(victim);
            t.wait(
                &mut sim,
                30 * SECOND,
                "the paused node to be alive everywhere",
                |s| s.all_see_status(victim, MemberStatus::Alive),
            );
            sim.run_for(10 * SECOND);
            per_pause.push(answered(&sim) - answered_before);
        }
        t.check(per_pause.iter().sum::<u64>() > 0, || {
            format!("n={n}: no host check ran during the pauses ({per_pause:?} answered)")
        });
        t.check_no_failed_except(&sim, &[]);
        t.check_invariants(&sim);
        println!("n={n}: 5 s pauses of 3 nodes, never failed; host checks answered: {per_pause:?}");
    }
}

/// (c) Every path drops host checks from the start: no path is ever trusted, a lost host is
/// failed no sooner than Lifeguard's minimum suspicion timeout after it was first suspected
/// (as without host checks), and a 5 s pause is not failed.
#[test]
fn on_firewalled_paths_nothing_changes() {
    let t = SimTest::new("on_firewalled_paths_nothing_changes");
    let config = Config::lan();
    let n = 5;
    let mut sim = calibrated(&t, config.clone(), n, true);
    // Let the calibrations run: each finds the path silent while the member acks.
    sim.run_for(30 * SECOND);
    let silent: u64 = (0..n)
        .filter_map(|i| sim.node_stats(i))
        .map(|s| s.host_checks_silent)
        .sum();
    t.check(silent > 0, || "no calibration ran".into());
    sim.pause(2);
    sim.run_for(5 * SECOND);
    sim.resume(2);
    t.wait(
        &mut sim,
        30 * SECOND,
        "the paused node to be alive everywhere",
        |s| s.all_see_status(2, MemberStatus::Alive),
    );
    t.check_no_failed_except(&sim, &[]);
    let (suspected, took) = lose_host(&t, &mut sim, 4, false);
    t.check(took >= suspected + config.suspicion_min_timeout(n), || {
        format!(
            "a lost host on firewalled paths was failed {:.2}s after its first suspicion, \
             sooner than Lifeguard's minimum {:.1}s",
            secs(took - suspected),
            secs(config.suspicion_min_timeout(n))
        )
    });
    let shortened: u64 = (0..n)
        .filter_map(|i| sim.node_stats(i))
        .map(|s| s.host_silent_suspicions)
        .sum();
    t.check(shortened == 0, || {
        format!("{shortened} suspicions used silence on an untrusted path")
    });
    t.check_no_failed_except(&sim, &[4]);
    t.check_invariants(&sim);
    println!(
        "firewalled: lost host failed everywhere {:.2}s after the loss ({:.2}s after its first \
         suspicion)",
        secs(took),
        secs(took - suspected)
    );
}

/// (d) Answers for ids not in flight, or for checks answered already, are counted and change
/// nothing: no status, no suspicion.
#[test]
fn host_check_answers_not_asked_for_change_nothing() {
    let t = SimTest::new("host_check_answers_not_asked_for_change_nothing");
    let n = 5;
    let mut sim = calibrated(&t, Config::lan(), n, false);
    let events_before = sim.events().len();
    for i in 0..n {
        let before = sim.node_stats(i).unwrap();
        // Ids 1.. were the calibrations, answered already; the others were never asked.
        for id in [1, 2, 3, 999_999, u64::MAX] {
            sim.with_node(i, |node, now| {
                node.handle_host_check(now, id, HostAnswer::Silent);
                node.handle_host_check(now, id, HostAnswer::Answered);
            });
        }
        let after = sim.node_stats(i).unwrap();
        t.check(
            after.host_checks_unexpected == before.host_checks_unexpected + 10,
            || {
                format!(
                    "{}: {} unexpected answers counted, not 10",
                    sim.name(i),
                    after.host_checks_unexpected - before.host_checks_unexpected
                )
            },
        );
        t.check(
            after.host_checks_silent == before.host_checks_silent,
            || "an unexpected silence was taken".into(),
        );
        t.check(sim.node(i).unwrap().num_suspicions() == 0, || {
            "a suspicion started".into()
        });
    }
    sim.run_for(30 * SECOND);
    t.check(sim.all_agree_alive(), || "someone is not alive".into());
    let suspicions = sim.events()[events_before..]
        .iter()
        .filter(|e| e.is_suspect())
        .count();
    t.check(suspicions == 0, || {
        format!("{suspicions} suspicions after the answers")
    });
    t.check_no_failed_except(&sim, &[]);
}

/// (e) A flapping link (the hosts suite's: down 2 s, up 3 s) on a calibrated cluster: the
/// first outage may be failed (for as long as it lasts it is a dead host), but each survivor
/// gives at most one verdict about the flapping member, because the member's return in the
/// same life damps the silent-host shortcut, and the later outages meet the Lifeguard timeout,
/// which they do not outlast. Then, still damped, the member is lost for good: it is failed
/// as without host checks, not sooner.
#[test]
fn a_flapping_link_gets_at_most_one_verdict_per_observer() {
    let t = SimTest::new("a_flapping_link_gets_at_most_one_verdict_per_observer");
    let config = Config::lan();
    let n = 5;
    let victim = n - 1;
    let mut sim = calibrated(&t, config.clone(), n, false);
    let name = sim.name(victim).to_owned();
    let start = sim.now();
    let cycles = 10;
    for _ in 0..cycles {
        sim.partition(&[&[victim]]);
        sim.run_for(2 * SECOND);
        sim.heal();
        sim.run_for(3 * SECOND);
    }
    let verdicts = |sim: &Sim| -> Vec<usize> {
        (0..n)
            .map(|o| {
                sim.events()
                    .iter()
                    .filter(|e| e.observer == o && e.subject() == name)
                    .filter(|e| e.at >= start && matches!(e.event, Event::Failed(_)))
                    .count()
            })
            .collect()
    };
    let per_observer = verdicts(&sim);
    let stats = sim.total_stats();
    println!(
        "flapping {name} for {cycles} cycles: failed verdicts per observer {per_observer:?}, \
         {} flaps, {} silent hosts shortened, {} damped",
        stats.flaps, stats.host_silent_suspicions, stats.host_silent_damped
    );
    t.check(per_observer.iter().all(|&v| v <= 1), || {
        format!("flapping verdicts: {per_observer:?} failed verdicts per observer")
    });
    t.check(stats.host_silent_damped > 0, || {
        "no outage met a damped member".into()
    });
    t.check_no_failed_except(&sim, &[victim]);
    t.wait(
        &mut sim,
        60 * SECOND,
        "the flapping member to be alive everywhere",
        |s| s.all_see_status(victim, MemberStatus::Alive),
    );
    // Lost for good while damped: Lifeguard's time, not the silent-host shortcut's.
    let (suspected, took) = lose_host(&t, &mut sim, victim, true);
    t.check(took >= suspected + config.suspicion_min_timeout(n), || {
        format!(
            "a damped member was failed {:.2}s after its first suspicion, sooner than \
             Lifeguard's minimum {:.1}s",
            secs(took - suspected),
            secs(config.suspicion_min_timeout(n))
        )
    });
    println!(
        "then lost for good while damped: failed everywhere {:.2}s after the cut",
        secs(took)
    );
    t.check_invariants(&sim);
}
