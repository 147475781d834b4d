//! Real `chatterd` processes on loopback, crashed with SIGKILL, stopped with SIGTERM, paused
//! with SIGSTOP, and observed through the HTTP API.
//!
//! The tests in this file start several daemons each; they run one at a time (a shared lock) so
//! that the two cores of a CI machine are not shared by twelve daemons with tight timers.

mod common;

use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use chatter_api::Status;
use common::{wait_until, Cluster};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn sigkilled_node_is_declared_failed_by_every_survivor_with_evidence() {
    let _serial = serial();
    let mut cluster = Cluster::start("kill", 5, "local");
    cluster.wait_all_alive(Duration::from_secs(20));

    let victim = 2;
    let victim_name = cluster.nodes[victim].name.clone();
    let killed_at = Instant::now();
    cluster.nodes[victim].kill();
    let survivors = cluster.running();
    assert_eq!(survivors.len(), 4);

    // Local profile, 5 members: the detection bound is about 7.5 s without any confirmation.
    wait_until(
        &format!("every survivor sees {victim_name} failed"),
        Duration::from_secs(20),
        || cluster.all_see(&survivors, &victim_name, Status::Failed),
    );
    eprintln!(
        "{victim_name} failed everywhere {:.2} s after SIGKILL",
        killed_at.elapsed().as_secs_f64()
    );
    for &i in &survivors {
        let node = &cluster.nodes[i];
        let (code, body) = node.get(&format!("/v1/members/{victim_name}")).unwrap();
        assert_eq!(code, 200, "{body}");
        let member: chatter_api::MemberView = serde_json::from_str(&body).unwrap();
        assert_eq!(member.status, Status::Failed);
        let evidence = member.evidence.unwrap_or_else(|| {
            panic!(
                "{} shows {victim_name} failed without evidence: {body}",
                node.name
            )
        });
        assert!(!evidence.accuser.is_empty(), "{body}");
        assert!(evidence.failed_at_ms.is_some(), "{body}");
        // No one else was declared failed (a transient suspicion on a loaded machine is fine).
        let members = node.members().unwrap();
        for m in &members {
            if m.name != victim_name {
                assert!(
                    matches!(m.status, Status::Alive | Status::Suspect),
                    "{} sees:\n{}",
                    node.name,
                    common::table(&members)
                );
            }
        }
    }
}

#[test]
fn sigterm_leaves_gracefully_and_exits_zero() {
    let _serial = serial();
    let mut cluster = Cluster::start("leave", 4, "local");
    cluster.wait_all_alive(Duration::from_secs(20));

    let leaver = 1;
    let leaver_name = cluster.nodes[leaver].name.clone();
    cluster.nodes[leaver].signal(libc::SIGTERM);
    let status = cluster.nodes[leaver]
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "{leaver_name} did not exit within 10 s of SIGTERM; stderr:\n{}",
                cluster.nodes[leaver].logs()
            )
        });
    assert!(
        status.success(),
        "{leaver_name} exited with {status:?}; stderr:\n{}",
        cluster.nodes[leaver].logs()
    );
    let logs = cluster.nodes[leaver].logs();
    assert!(!logs.contains("panicked"), "{logs}");

    let survivors = cluster.running();
    assert_eq!(survivors.len(), 3);
    wait_until(
        &format!("every survivor sees {leaver_name} left"),
        Duration::from_secs(10),
        || cluster.all_see(&survivors, &leaver_name, Status::Left),
    );
}

#[test]
fn paused_node_is_not_declared_failed_and_recovers() {
    let _serial = serial();
    // LAN profile: the minimum suspicion timeout is 5 s, so a 2.5 s pause must be tolerated.
    // (The local profile is ten times faster and would rightly fail a 2.5 s pause.)
    let mut cluster = Cluster::start("pause", 4, "lan");
    cluster.wait_all_alive(Duration::from_secs(20));

    let paused = 3;
    let paused_name = cluster.nodes[paused].name.clone();
    let others: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != paused).collect();
    let suspected = std::cell::Cell::new(false);
    let never_failed = |cluster: &Cluster, observers: &[usize]| {
        for &i in observers {
            let members = cluster.nodes[i].members().unwrap();
            let seen = members
                .iter()
                .find(|m| m.name == paused_name)
                .map(|m| m.status);
            if seen == Some(Status::Suspect) {
                suspected.set(true);
            }
            assert!(
                matches!(seen, Some(Status::Alive | Status::Suspect)),
                "{} sees {paused_name} as {seen:?}:\n{}",
                cluster.nodes[i].name,
                common::table(&members)
            );
        }
    };

    cluster.nodes[paused].signal(libc::SIGSTOP);
    let stopped_at = Instant::now();
    while stopped_at.elapsed() < Duration::from_millis(2500) {
        never_failed(&cluster, &others);
        thread::sleep(Duration::from_millis(100));
    }
    cluster.nodes[paused].signal(libc::SIGCONT);

    let everyone: Vec<usize> = (0..cluster.nodes.len()).collect();
    let start = Instant::now();
    wait_until(
        &format!("every node sees {paused_name} alive again"),
        Duration::from_secs(15),
        || {
            never_failed(&cluster, &others);
            cluster.all_see(&everyone, &paused_name, Status::Alive)
        },
    );
    eprintln!(
        "{paused_name} alive everywhere {:.2} s after SIGCONT",
        start.elapsed().as_secs_f64()
    );
    // And it stays that way for a while: no late verdict.
    let calm = Instant::now();
    while calm.elapsed() < Duration::from_secs(2) {
        never_failed(&cluster, &others);
        thread::sleep(Duration::from_millis(100));
    }
    cluster.wait_all_alive(Duration::from_secs(10));
    // Whether the pause was long enough to be noticed depends on the probe schedule; say so.
    eprintln!(
        "{paused_name} was seen suspect through the API: {}",
        suspected.get()
    );
}

/// The generation of `name` in `observer`'s view, if it lists it alive.
fn alive_generation(cluster: &Cluster, observer: usize, name: &str) -> Result<u64, String> {
    let members = cluster.nodes[observer].members()?;
    members
        .iter()
        .find(|m| m.name == name && m.status == Status::Alive)
        .map(|m| m.generation)
        .ok_or_else(|| common::table(&members))
}

/// Starts the seed again at its gossip address, with no seeds and no data dir: it knows
/// nobody, and only the others' re-contact of its previous life (or their probes of it) can
/// bring them together.
fn restart_bare(cluster: &mut Cluster, seed: usize) {
    let (name, gossip) = (cluster.nodes[seed].name.clone(), cluster.nodes[seed].gossip);
    let mut args = common::loopback_args(&name);
    args[1] = gossip.to_string();
    args.extend(["--profile".to_owned(), "local".to_owned()]);
    cluster.nodes[seed] = common::Daemon::start_with(&args);
}

/// Waits until every other node lists `seed` alive at a generation above `previous`; returns
/// that generation.
fn wait_new_life(cluster: &Cluster, seed: usize, previous: u64, within: Duration) -> u64 {
    let name = cluster.nodes[seed].name.clone();
    let others: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != seed).collect();
    let started = Instant::now();
    let generation = wait_until(
        &format!("every node lists the new life of {name} alive"),
        within,
        || {
            let mut seen = Vec::new();
            for &i in &others {
                let generation = alive_generation(cluster, i, &name)?;
                if generation <= previous {
                    return Err(cluster.views(&others));
                }
                seen.push(generation);
            }
            Ok(seen[0])
        },
    );
    eprintln!(
        "{name}'s new life alive everywhere {:.2} s after its restart",
        started.elapsed().as_secs_f64()
    );
    generation
}

/// A seed SIGKILLed and started again with no seeds and no data dir (it knows nobody) is
/// listed alive again everywhere within seconds: once failed, through the others' re-contact
/// of its previous life; restarted before anyone noticed, through its answer to the probes
/// of that life.
#[test]
fn a_seed_restarted_bare_is_alive_everywhere_again_within_seconds() {
    let _serial = serial();
    let mut cluster = Cluster::start("reseed", 4, "local");
    cluster.wait_all_alive(Duration::from_secs(20));
    let seed = 0;
    let name = cluster.nodes[seed].name.clone();
    let others: Vec<usize> = (1..cluster.nodes.len()).collect();
    let first = alive_generation(&cluster, 1, &name).unwrap();

    // Restarted after every other node has failed it.
    cluster.nodes[seed].kill();
    wait_until(
        &format!("every other node lists {name} failed"),
        Duration::from_secs(20),
        || cluster.all_see(&others, &name, Status::Failed),
    );
    restart_bare(&mut cluster, seed);
    let second = wait_new_life(&cluster, seed, first, Duration::from_secs(3));

    // Restarted at once, before the others could notice.
    cluster.nodes[seed].kill();
    restart_bare(&mut cluster, seed);
    wait_new_life(&cluster, seed, second, Duration::from_secs(5));
    // And the seed lists the others again.
    cluster.wait_all_alive(Duration::from_secs(5));
}

/// A counter of `daemon`'s `/metrics`, e.g. `chatter_host_checks_answered_total`.
fn counter(daemon: &common::Daemon, name: &str) -> Result<u64, String> {
    let (status, body) = daemon.get("/metrics")?;
    if status != 200 {
        return Err(format!("/metrics answered {status}"));
    }
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| format!("no {name} in /metrics"))
}

/// A process stopped 5 s on a live host is not failed: its kernel answers the others' host
/// checks (a TCP connection attempt to its gossip port, refused), so its suspicion keeps the
/// Lifeguard timeout (5 s at least in `lan`) instead of the silent-host one.
#[test]
fn a_five_second_stop_is_not_failed_because_the_host_answers_host_checks() {
    let _serial = serial();
    let mut cluster = Cluster::start("stop5", 5, "lan");
    cluster.wait_all_alive(Duration::from_secs(20));
    // Every node calibrates its path to the 4 others, at join or at their first direct acks.
    let everyone: Vec<usize> = (0..cluster.nodes.len()).collect();
    wait_until(
        "every node calibrated 4 paths",
        Duration::from_secs(30),
        || {
            for &i in &everyone {
                let n = counter(&cluster.nodes[i], "chatter_host_checks_calibration_total")?;
                if n < 4 {
                    return Err(format!("{} calibrated {n} paths", cluster.nodes[i].name));
                }
            }
            Ok(())
        },
    );
    let paused = 4;
    let paused_name = cluster.nodes[paused].name.clone();
    let others: Vec<usize> = (0..paused).collect();
    let answered = |cluster: &Cluster| -> u64 {
        others
            .iter()
            .filter_map(|&i| counter(&cluster.nodes[i], "chatter_host_checks_answered_total").ok())
            .sum()
    };
    let before = answered(&cluster);
    let never_failed = |cluster: &Cluster| {
        for &i in &others {
            let members = cluster.nodes[i].members().unwrap_or_default();
            let seen = members.iter().find(|m| m.name == paused_name);
            assert!(
                seen.is_none_or(|m| matches!(m.status, Status::Alive | Status::Suspect)),
                "{} failed {paused_name} during a 5 s stop:\n{}",
                cluster.nodes[i].name,
                common::table(&members)
            );
        }
    };
    cluster.nodes[paused].signal(libc::SIGSTOP);
    let stopped_at = Instant::now();
    while stopped_at.elapsed() < Duration::from_secs(5) {
        never_failed(&cluster);
        thread::sleep(Duration::from_millis(100));
    }
    cluster.nodes[paused].signal(libc::SIGCONT);
    wait_until(
        &format!("every node sees {paused_name} alive again"),
        Duration::from_secs(15),
        || {
            never_failed(&cluster);
            cluster.all_see(&everyone, &paused_name, Status::Alive)
        },
    );
    let calm = Instant::now();
    while calm.elapsed() < Duration::from_secs(2) {
        never_failed(&cluster);
        thread::sleep(Duration::from_millis(100));
    }
    let after = answered(&cluster);
    assert!(
        after > before,
        "no host check of the stopped node's host was answered ({before} before, {after} after)"
    );
    let silent: u64 = others
        .iter()
        .filter_map(|&i| counter(&cluster.nodes[i], "chatter_host_silent_suspicions_total").ok())
        .sum();
    assert_eq!(silent, 0, "a suspicion used a silent host on loopback");
}
