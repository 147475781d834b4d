//! Simulation tests: protocol properties of chatter-core with many nodes on virtual time.
//!
//! Every test takes its seed from `CHATTER_SIM_SEED` (default 42) and prints it on failure.
//! Run one with its output: `cargo test -p chatter-sim --test scenarios crash -- --nocapture`.

mod common;

use std::time::{Duration, Instant};

use chatter_core::{Config, Event, MemberStatus};
use chatter_sim::{excerpt, DownReason, NodeState, Sim, SimConfig};
use common::{count_events, SimTest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SECOND: Duration = Duration::from_secs(1);

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// 100 nodes join through one seed, 10 ms apart, and every node sees the 99 others alive.
#[test]
fn hundred_nodes_join_through_one_seed_and_agree() {
    let t = SimTest::new("hundred_nodes_join_through_one_seed_and_agree");
    let wall = Instant::now();
    let mut sim =
        Sim::with_cluster(t.config(Config::lan()), 100, Duration::from_millis(10)).unwrap();
    let joined_at = sim.now();
    let took = t.wait(
        &mut sim,
        60 * SECOND,
        "100 nodes to agree",
        Sim::all_agree_alive,
    );
    for i in 0..100 {
        let alive = sim.node(i).unwrap().num_alive();
        t.check(alive == 99, || {
            format!("{} sees {alive} live members, not 99", sim.name(i))
        });
    }
    t.check_no_failed_except(&sim, &[]);
    t.check_invariants(&sim);
    let stats = sim.total_stats();
    println!(
        "100 nodes agreed {:.2}s after the last join (t={:.2}s); {} packets, {} bytes sent; \
         {} steps; wall {:.2}s",
        secs(took),
        secs(joined_at + took),
        stats.packets_sent,
        stats.bytes_sent,
        sim.steps(),
        secs(wall.elapsed())
    );
}

/// Whole fleets of 100 nodes started at the same instant, each joining through node 0: every
/// node sees every other alive within 2.5 s of the joins, in every cluster. Gossip leaves a
/// (node, member) pair unheard with probability about e^-retransmit_limit, and a burst has
/// 10,000 such pairs: before the early anti-entropy exchanges (`Config::join_syncs`), a quarter
/// to a half of such clusters waited for a regular exchange, 5 to 10 s.
#[test]
fn fleets_started_at_once_agree_within_seconds() {
    let t = SimTest::new("fleets_started_at_once_agree_within_seconds");
    for cluster in 0..6u64 {
        let config = SimConfig::new(t.seed.wrapping_mul(31).wrapping_add(cluster))
            .with_node_config(Config::lan());
        let mut sim = Sim::with_cluster(config, 100, Duration::ZERO).unwrap();
        let took = t.wait(
            &mut sim,
            60 * SECOND,
            "a fleet started at once to agree",
            Sim::all_agree_alive,
        );
        t.check(took <= Duration::from_millis(2500), || {
            format!(
                "cluster {cluster}: 100 nodes agreed only {:.2}s after the joins",
                secs(took)
            )
        });
        t.check_no_failed_except(&sim, &[]);
    }
}

/// Crashes one of 100 nodes and checks that every survivor marks it failed within the
/// configured detection bound, and that nobody else is ever marked failed.
fn crash_one_of_hundred(t: &SimTest, host_down: bool) {
    let wall = Instant::now();
    let mut sim = t.cluster(t.config(Config::lan()), 100, 60 * SECOND);
    sim.run_for(5 * SECOND);
    let mut rng = ChaCha8Rng::seed_from_u64(t.seed);
    let victim = rng.random_range(1..100);
    let crashed_at = sim.now();
    if host_down {
        sim.crash_host(victim);
    } else {
        sim.crash(victim);
    }
    let bound = Config::lan().detection_bound(100);
    let took = t.wait(
        &mut sim,
        bound,
        "every survivor to mark the victim failed",
        |s| s.all_see_status(victim, MemberStatus::Failed),
    );
    let first = sim.first_failed_at(victim, crashed_at).unwrap() - crashed_at;
    let suspected = sim
        .first_event_about(victim, crashed_at, |e| matches!(e, Event::Suspect(_)))
        .map(|e| e.at - crashed_at);
    if host_down {
        // Lifeguard: with 99 probers, confirmations arrive quickly and shrink the suspicion
        // timeout from its maximum towards its minimum.
        let max = Config::lan().suspicion_max_timeout(100);
        t.check(first < max / 2, || {
            format!(
                "first failed {:.2}s after the crash: the suspicion timeout did not shrink with \
                 confirmations (max {:.1}s)\n{}",
                secs(first),
                secs(max),
                excerpt(sim.failed_events_since(crashed_at), None, 5)
            )
        });
    }
    // Keep running a while: still nobody else may be marked failed.
    sim.run_for(20 * SECOND);
    t.check_no_failed_except(&sim, &[victim]);
    t.check_invariants(&sim);
    println!(
        "{} crashed ({}): first suspected after {:.2}s, first failed after {:.2}s, \
         failed everywhere after {:.2}s (bound {:.1}s); wall {:.2}s",
        sim.name(victim),
        if host_down {
            "host down, no ICMP"
        } else {
            "process, ICMP"
        },
        suspected.map_or(f64::NAN, secs),
        secs(first),
        secs(took),
        secs(bound),
        secs(wall.elapsed())
    );
}

#[test]
fn crashed_process_is_failed_everywhere_within_bound() {
    let t = SimTest::new("crashed_process_is_failed_everywhere_within_bound");
    crash_one_of_hundred(&t, false);
}

#[test]
fn crashed_host_is_failed_everywhere_within_bound() {
    let t = SimTest::new("crashed_host_is_failed_everywhere_within_bound");
    crash_one_of_hundred(&t, true);
}

/// 10% packet loss for 10 virtual minutes on 40 nodes: suspicions may happen, failures of live
/// nodes must not.
#[test]
fn ten_percent_loss_fails_nobody() {
    let t = SimTest::new("ten_percent_loss_fails_nobody");
    let wall = Instant::now();
    let mut sim = t.cluster(t.config(Config::lan()), 40, 30 * SECOND);
    let start = sim.now();
    sim.set_loss(0.10);
    sim.run_for(600 * SECOND);
    sim.set_loss(0.0);
    sim.run_for(20 * SECOND);
    let suspicions = sim
        .events()
        .iter()
        .filter(|e| e.at >= start && e.is_suspect())
        .count();
    let raised = sim.total_stats().suspicions_raised;
    let refuted = sim.total_stats().suspicions_refuted;
    t.check_no_failed_except(&sim, &[]);
    t.check(sim.all_agree_alive(), || {
        "not everybody alive after the loss ended".into()
    });
    t.check_invariants(&sim);
    println!(
        "40 nodes, 10% loss, 600 s: {suspicions} suspect events, {raised} suspicions raised, \
         {refuted} refuted, 0 failures; {} packets; wall {:.2}s",
        sim.net_stats().packets_sent,
        secs(wall.elapsed())
    );
}

/// A node paused for less than the suspicion timeout refutes; one paused much longer is failed,
/// and refutes once it resumes.
#[test]
fn short_pause_is_refuted_long_pause_is_failed() {
    let t = SimTest::new("short_pause_is_refuted_long_pause_is_failed");
    let config = Config::lan();
    let n = 20;
    let mut sim = t.cluster(t.config(config.clone()), n, 30 * SECOND);
    t.check(config.suspicion_min_timeout(n) > 3 * SECOND, || {
        "test assumes a suspicion timeout above 3 s".into()
    });

    // Short pause: 3 s.
    let short = 5;
    let paused_at = sim.now();
    sim.pause(short);
    sim.run_for(3 * SECOND);
    sim.resume(short);
    t.wait(
        &mut sim,
        30 * SECOND,
        "the short-paused node to be alive everywhere",
        |s| s.all_see_status(short, MemberStatus::Alive),
    );
    sim.run_for(30 * SECOND);
    t.check_no_failed_except(&sim, &[]);
    let suspected = sim
        .first_event_about(short, paused_at, |e| matches!(e, Event::Suspect(_)))
        .is_some();
    println!("3 s pause: suspected={suspected}, refuted, never failed");

    // Long pause: 60 s.
    let long = 11;
    let paused_at = sim.now();
    sim.pause(long);
    let took = t.wait(
        &mut sim,
        60 * SECOND,
        "the long-paused node to be failed everywhere",
        |s| s.all_see_status(long, MemberStatus::Failed),
    );
    let first = sim.first_failed_at(long, paused_at).unwrap() - paused_at;
    sim.run_for(paused_at + 60 * SECOND - sim.now());
    sim.resume(long);
    let back = t.wait(
        &mut sim,
        60 * SECOND,
        "the resumed node to be alive again everywhere",
        |s| s.all_see_status(long, MemberStatus::Alive),
    );
    t.check_no_failed_except(&sim, &[long]);
    t.check(sim.all_agree_alive(), || {
        "not everybody alive after the resume".into()
    });
    t.check_invariants(&sim);
    println!(
        "60 s pause: first failed after {:.2}s, everywhere after {:.2}s; alive again {:.2}s \
         after resuming",
        secs(first),
        secs(took),
        secs(back)
    );
}

/// A partition into two halves: each side fails the other; after healing, one cluster again.
#[test]
fn partition_fails_each_side_and_heals() {
    let t = SimTest::new("partition_fails_each_side_and_heals");
    let config = Config::lan();
    let n = 20;
    let mut sim = t.cluster(t.config(config.clone()), n, 30 * SECOND);
    let a: Vec<usize> = (0..n / 2).collect();
    let b: Vec<usize> = (n / 2..n).collect();
    sim.partition(&[&a, &b]);
    let split = {
        let (a, b) = (a.clone(), b.clone());
        move |s: &Sim| {
            a.iter().all(|&x| {
                b.iter().all(|&y| {
                    s.status_of(x, y) == Some(MemberStatus::Failed)
                        && s.status_of(y, x) == Some(MemberStatus::Failed)
                })
            })
        }
    };
    let took = t.wait(
        &mut sim,
        config.detection_bound(n),
        "each side to fail the other",
        split,
    );
    // Within each side, nobody was failed.
    for e in sim.failed_events_since(Duration::ZERO) {
        let subject = sim.index_of(e.subject()).unwrap();
        let same_side = (e.observer < n / 2) == (subject < n / 2);
        t.check(!same_side, || format!("failed within one side: {e}"));
    }
    sim.heal();
    // Re-contact of failed members (1 s for a fresh failure, a sixteenth of its age later).
    let deadline = config.recontact_interval * 5;
    let healed = t.wait(
        &mut sim,
        deadline,
        "the healed cluster to merge",
        Sim::all_agree_alive,
    );
    t.check_invariants(&sim);
    println!(
        "partition: sides failed each other after {:.2}s; merged {:.2}s after healing \
         (deadline {:.0}s)",
        secs(took),
        secs(healed),
        secs(deadline)
    );
}

/// A node whose link is cut for 10 s: everybody fails it and it fails everybody; once the
/// link is back, re-contact of failed members makes one cluster again within a few
/// `recontact_interval`s (before it, each side waited for a 15 s reconnect round).
#[test]
fn a_node_cut_off_for_ten_seconds_is_alive_everywhere_soon_after_the_link_is_back() {
    let t = SimTest::new(
        "a_node_cut_off_for_ten_seconds_is_alive_everywhere_soon_after_the_link_is_back",
    );
    let config = Config::lan();
    let n = 20;
    let mut sim = t.cluster(t.config(config.clone()), n, 30 * SECOND);
    let victim = 7;
    let others: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let cut_at = sim.now();
    sim.partition(&[&[victim], &others]);
    sim.run_for(10 * SECOND);
    // At least 10 s, and until every other member has failed it (in a 20-node cluster the
    // round-robin may take longer than 10 s to reach it).
    t.wait(
        &mut sim,
        config.detection_bound(n),
        "every other member to fail the cut-off node",
        |s| s.all_see_status(victim, MemberStatus::Failed),
    );
    let failed_by = others.len();
    sim.heal();
    // Over 40 seeds: median 0.5 s, longest 3 s (the first re-contact is a random process
    // with a rate of about one a second from each side).
    let bound = config.recontact_interval * 6;
    let took = t.wait(
        &mut sim,
        bound,
        "one cluster again after the link came back",
        Sim::all_agree_alive,
    );
    t.check_invariants(&sim);
    // Nobody on the connected side was failed by anyone.
    for e in sim.failed_events_since(cut_at) {
        let subject = sim.index_of(e.subject()).unwrap();
        t.check(e.observer == victim || subject == victim, || {
            format!("failed a member that stayed connected: {e}")
        });
    }
    println!(
        "cut 10 s: failed by {failed_by} of {} members; one cluster {:.2}s after the link \
         came back (bound {:.1}s)",
        others.len(),
        secs(took),
        secs(bound)
    );
}

/// A graceful leave reads `left` everywhere, never `failed`.
#[test]
fn graceful_leave_is_left_everywhere_never_failed() {
    let t = SimTest::new("graceful_leave_is_left_everywhere_never_failed");
    let n = 20;
    let mut sim = t.cluster(t.config(Config::lan()), n, 30 * SECOND);
    let leaver = 7;
    let left_at = sim.now();
    sim.leave(leaver);
    let took = t.wait(
        &mut sim,
        10 * SECOND,
        "everybody to see the node left",
        |s| s.all_see_status(leaver, MemberStatus::Left),
    );
    sim.run_for(60 * SECOND);
    t.check(
        sim.state(leaver) == NodeState::Down(DownReason::Left),
        || format!("the leaver did not stop: {:?}", sim.state(leaver)),
    );
    t.check(sim.all_see_status(leaver, MemberStatus::Left), || {
        format!(
            "not left everywhere a minute later:\n{}",
            excerpt(sim.events(), Some(sim.name(leaver)), 40)
        )
    });
    t.check_no_failed_except(&sim, &[]);
    t.check(sim.all_agree_alive(), || {
        "the others are not all alive".into()
    });
    t.check_invariants(&sim);
    let left_events = count_events(&sim, |e| matches!(e, Event::Left(_)));
    println!(
        "leave: left everywhere after {:.3}s ({left_events} left events), process stopped {:.3}s \
         after leave()",
        secs(took),
        secs(sim.down_at(leaver).unwrap() - left_at)
    );
}

/// A crashed node restarted with a new generation replaces its old life everywhere, whether it
/// was already failed or not yet noticed.
#[test]
fn restarted_node_replaces_old_life_everywhere() {
    let t = SimTest::new("restarted_node_replaces_old_life_everywhere");
    let n = 20;
    let mut sim = t.cluster(t.config(Config::lan()), n, 30 * SECOND);

    // Restart after the crash was detected.
    let victim = 5;
    sim.crash(victim);
    t.wait(
        &mut sim,
        Config::lan().detection_bound(n),
        "the crash to be detected",
        |s| s.all_see_status(victim, MemberStatus::Failed),
    );
    sim.restart(victim, &[0]);
    let generation = sim.generation(victim);
    t.check(generation == 2, || {
        format!("generation {generation}, expected 2")
    });
    let took = t.wait(
        &mut sim,
        30 * SECOND,
        "the new life to be alive everywhere",
        |s| {
            s.all_see(victim, |m| {
                m.status == MemberStatus::Alive && m.generation == generation
            })
        },
    );
    println!(
        "restart after failure: new generation alive everywhere after {:.3}s",
        secs(took)
    );

    // Restart before anyone noticed (a quick process restart).
    let quick = 13;
    let since = sim.now();
    sim.crash(quick);
    sim.run_for(Duration::from_millis(200));
    sim.restart(quick, &[0]);
    let took = t.wait(
        &mut sim,
        30 * SECOND,
        "the quick restart to be seen everywhere",
        |s| {
            s.all_see(quick, |m| {
                m.status == MemberStatus::Alive && m.generation == 2
            })
        },
    );
    sim.run_for(30 * SECOND);
    t.check(sim.all_agree_alive(), || {
        "not everybody alive at the end".into()
    });
    // No verdict about a running life: only the first victim's first life may be failed.
    let wrong: Vec<_> = sim
        .failed_events_since(since)
        .filter(|e| {
            e.event
                .member()
                .is_some_and(|m| !(m.name == sim.name(victim) && m.generation == 1))
                && !(e.subject() == sim.name(quick)
                    && e.event.member().is_some_and(|m| m.generation == 1))
        })
        .collect();
    t.check(wrong.is_empty(), || {
        format!(
            "failed verdicts about running lives:\n{}",
            excerpt(wrong.iter().copied(), None, 20)
        )
    });
    t.check_invariants(&sim);
    println!(
        "quick restart: new generation alive everywhere after {:.3}s",
        secs(took)
    );
}

/// The same seed gives the same run: the event logs of two runs are identical.
#[test]
fn same_seed_same_run() {
    let t = SimTest::new("same_seed_same_run");
    let run = || {
        let mut sim =
            Sim::with_cluster(t.config(Config::lan()), 12, Duration::from_millis(10)).unwrap();
        sim.set_loss(0.05);
        sim.run_for(10 * SECOND);
        sim.crash(4);
        sim.pause(7);
        sim.run_for(20 * SECOND);
        sim.resume(7);
        sim.run_for(10 * SECOND);
        let log: Vec<String> = sim.events().iter().map(ToString::to_string).collect();
        (log, sim.net_stats(), sim.steps())
    };
    let (a, stats_a, steps_a) = run();
    let (b, stats_b, steps_b) = run();
    t.check(!a.is_empty(), || "no events".into());
    t.check(a == b && stats_a == stats_b && steps_a == steps_b, || {
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        format!(
            "two runs with one seed differ: {} vs {} events, {steps_a} vs {steps_b} steps, \
             first difference at event {first:?}",
            a.len(),
            b.len()
        )
    });
}

/// An idle, healthy cluster costs a few datagrams per node per second, whatever its size: one
/// probe and its ack per protocol period, plus anti-entropy rounds that only exchange
/// fingerprints when in sync.
#[test]
fn idle_cluster_cost_is_flat_per_node() {
    let t = SimTest::new("idle_cluster_cost_is_flat_per_node");
    let mut per_node = Vec::new();
    for n in [10, 50] {
        let mut sim = t.cluster(t.config(Config::lan()), n, 30 * SECOND);
        sim.run_for(30 * SECOND);
        let before = sim.net_stats();
        let window = 60 * SECOND;
        sim.run_for(window);
        let after = sim.net_stats();
        let packets = (after.packets_sent - before.packets_sent) as f64 / secs(window) / n as f64;
        let bytes = (after.bytes_sent - before.bytes_sent) as f64 / secs(window) / n as f64;
        println!("idle N={n}: {packets:.2} datagrams and {bytes:.0} bytes per node per second");
        t.check(packets < 5.0, || {
            format!("idle N={n} sends {packets:.2} datagrams per node per second (limit 5)")
        });
        t.check_no_failed_except(&sim, &[]);
        t.check_invariants(&sim);
        per_node.push(packets);
    }
    t.check(per_node[1] < per_node[0] * 1.5, || {
        format!("idle cost per node grows with N: {per_node:?}")
    });
}

/// Mixed faults over several seeds (the test's seed and the next seven): 5% loss, a crashed
/// process, a dead host and a short pause at once on 30 nodes. The dead ones are failed
/// everywhere; nobody else ever is; the invariants hold.
#[test]
fn mixed_faults_over_many_seeds() {
    let base = SimTest::new("mixed_faults_over_many_seeds").seed;
    let n = 30;
    let config = Config::lan();
    for k in 0..8 {
        let t = SimTest::with_seed("mixed_faults_over_many_seeds", base.wrapping_add(k));
        let mut sim = t.cluster(t.config(config.clone()), n, 30 * SECOND);
        let mut rng = ChaCha8Rng::seed_from_u64(t.seed);
        let mut pick = |taken: &[usize]| loop {
            let i = rng.random_range(1..n);
            if !taken.contains(&i) {
                break i;
            }
        };
        let crashed = pick(&[]);
        let dead_host = pick(&[crashed]);
        let paused = pick(&[crashed, dead_host]);
        sim.set_loss(0.05);
        sim.run_for(10 * SECOND);
        sim.crash(crashed);
        sim.crash_host(dead_host);
        sim.pause(paused);
        sim.run_for(2 * SECOND);
        sim.resume(paused);
        t.wait(
            &mut sim,
            config.detection_bound(n),
            "both dead nodes to be failed everywhere",
            |s| {
                s.all_see_status(crashed, MemberStatus::Failed)
                    && s.all_see_status(dead_host, MemberStatus::Failed)
            },
        );
        sim.run_for(30 * SECOND);
        sim.set_loss(0.0);
        t.wait(
            &mut sim,
            30 * SECOND,
            "the survivors to agree",
            Sim::all_agree_alive,
        );
        t.check_no_failed_except(&sim, &[crashed, dead_host]);
        t.check_invariants(&sim);
    }
}
