//! Behaviours of one node against a few peers on a perfect in-memory network.

use std::time::Duration;

use crate::testkit::{addr, Net};
use crate::wire::{self, Message};
use crate::{Config, Event, HostAnswer, MemberStatus, ProbeOutcome};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn send(net: &mut Net, to: usize, from: usize, messages: &[Message]) {
    let packet = wire::encode_packet(wire::cluster_hash("chatter"), messages);
    let now = net.now;
    net.nodes[to].handle_datagram(now, addr(from), &packet);
    net.flush();
}

#[test]
fn nodes_join_through_a_seed_and_agree() {
    let mut net = Net::new(5, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    assert_eq!(net.nodes[3].num_alive(), 4);
}

#[test]
fn a_new_node_starts_its_early_anti_entropy_exchanges_then_the_regular_ones() {
    // lan: probe_interval 1 s, join_syncs 2, sync_interval 10 s.
    let config = Config::lan();
    assert_eq!(config.join_syncs, 2);
    let mut net = Net::new(3, config);
    // The join itself is the first exchange.
    assert_eq!(net.nodes[2].stats().syncs_started, 1);
    net.run_for(Duration::from_millis(1050));
    assert_eq!(
        net.nodes[2].stats().syncs_started,
        2,
        "early exchange at 1 s"
    );
    net.run_for(secs(2));
    assert_eq!(
        net.nodes[2].stats().syncs_started,
        3,
        "early exchange at 3 s"
    );
    net.run_for(secs(9));
    assert_eq!(
        net.nodes[2].stats().syncs_started,
        3,
        "the next one waits a whole sync_interval"
    );
    net.run_for(secs(2));
    assert_eq!(net.nodes[2].stats().syncs_started, 4, "regular exchange");
}

#[test]
fn refutes_suspicion_with_higher_incarnation() {
    let mut net = Net::new(3, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    let inc = net.nodes[1].local_member().incarnation;
    let suspect = Message::Suspect(wire::Suspect {
        name: "n1".into(),
        generation: 1,
        incarnation: inc,
        from: "n2".into(),
        unreachable: false,
    });
    send(&mut net, 0, 2, &[suspect]);
    assert_eq!(net.status(0, 1), Some(MemberStatus::Suspect));
    // The suspicion reaches n1 (gossip, or the buddy system on the next probe), which refutes.
    net.run_until(secs(5), |n| n.status(0, 1) == Some(MemberStatus::Alive));
    assert!(net.nodes[1].local_member().incarnation > inc);
    assert_eq!(net.nodes[1].stats().suspicions_refuted, 1);
    assert!(net
        .events
        .iter()
        .any(|(i, e)| *i == 0 && matches!(e, Event::Recovered(m) if m.name == "n1")));
}

#[test]
fn stale_alive_does_not_clear_a_suspicion_and_left_beats_failed() {
    let mut net = Net::new(3, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    net.crashed[1] = true; // n1 stops answering and will not refute
    let inc = net.member(0, 1).incarnation;
    let suspect = |from: &str| {
        Message::Suspect(wire::Suspect {
            name: "n1".into(),
            generation: 1,
            incarnation: inc,
            from: from.into(),
            unreachable: false,
        })
    };
    send(&mut net, 0, 2, &[suspect("n2")]);
    let stale = Message::Alive(wire::Alive {
        name: "n1".into(),
        addr: addr(1),
        generation: 1,
        incarnation: inc,
        tags: Default::default(),
    });
    send(&mut net, 0, 2, &[stale]);
    assert_eq!(
        net.status(0, 1),
        Some(MemberStatus::Suspect),
        "equal incarnation must not refute"
    );
    let failed = Message::Failed(wire::Failed {
        name: "n1".into(),
        generation: 1,
        incarnation: inc,
        from: "n2".into(),
    });
    // A verdict that comes before the suspicion could honestly have run its course counts as
    // a confirmation only: one datagram cannot make a member failed.
    send(&mut net, 0, 2, std::slice::from_ref(&failed));
    assert_eq!(net.status(0, 1), Some(MemberStatus::Suspect));
    // Once it could have (no timer fired meanwhile), the accuser's verdict is taken.
    let config = Config::local();
    net.now += config
        .unreachable_suspicion_timeout
        .min(config.suspicion_min_timeout(3));
    send(&mut net, 0, 2, &[failed]);
    assert_eq!(net.status(0, 1), Some(MemberStatus::Failed));
    let evidence = net.member(0, 1).evidence.clone().unwrap();
    assert_eq!(evidence.accuser, "n2");
    assert_eq!(evidence.declared_by.as_deref(), Some("n2"));
    let left = Message::Left(wire::Left {
        name: "n1".into(),
        generation: 1,
        incarnation: inc,
    });
    send(&mut net, 0, 2, &[left]);
    assert_eq!(net.status(0, 1), Some(MemberStatus::Left));
}

#[test]
fn crash_with_icmp_evidence_is_failed_fast_with_explained_verdict() {
    let config = Config::lan();
    let mut net = Net::new(5, config.clone());
    net.run_until(secs(20), Net::all_see_alive);
    net.crashed[4] = true;
    let took = net.run_until(secs(30), |n| {
        (0..4).all(|i| n.status(i, 4) == Some(MemberStatus::Failed))
    });
    // Probed within about a round of 4 probers, then the strong suspicion timeout.
    assert!(
        took <= config.probe_interval * 4 + config.unreachable_suspicion_timeout * 2,
        "took {took:?}"
    );
    let evidence = net.member(0, 4).evidence.clone().unwrap();
    assert!(evidence.unreachable);
    assert!(evidence.declared_by.is_some());
    assert!(evidence.failed_at.is_some());
    let prober_view = (0..4)
        .map(|i| net.member(i, 4).evidence.clone().unwrap())
        .find(|e| !e.probes.is_empty())
        .expect("some prober recorded its probes");
    assert!(prober_view
        .probes
        .iter()
        .any(|p| p.via.is_none() && p.outcome == ProbeOutcome::Unreachable));
    assert!(prober_view
        .probes
        .iter()
        .any(|p| p.outcome == ProbeOutcome::NackUnreachable));
}

#[test]
fn silent_process_on_a_live_host_waits_for_the_lifeguard_timeout() {
    let config = Config::lan();
    let mut net = Net::new(5, config.clone());
    net.run_until(secs(20), Net::all_see_alive);
    // A stalled process: no ack, no ICMP, but its host answers host checks.
    net.silent[4] = true;
    let took = net.run_until(config.detection_bound(5), |n| {
        (0..4).all(|i| n.status(i, 4) == Some(MemberStatus::Failed))
    });
    // Without ICMP evidence the verdict never comes before the minimum suspicion timeout,
    // which is what gives a stalled process its pause tolerance.
    assert!(took >= config.suspicion_min_timeout(5), "took {took:?}");
    // Every survivor's own failed probe confirms the suspicion, so the timeout reaches its
    // minimum instead of staying at the maximum (30 s here).
    assert!(
        took < config.suspicion_min_timeout(5) + config.probe_interval * 5,
        "took {took:?}: confirmations did not shorten the suspicion"
    );
    let evidence = net.member(0, 4).evidence.clone().unwrap();
    assert!(!evidence.unreachable);
    assert!(!evidence.host_silent);
    assert!(evidence.confirmations.len() >= 2, "{evidence:?}");
    assert!((0..4).any(|i| net.nodes[i].stats().host_checks_answered > 0));
    assert!((0..4).all(|i| net.nodes[i].stats().host_silent_suspicions == 0));
}

/// Runs 5 lan nodes until every path has been calibrated (each node checked each other's
/// host once after a direct ack), with `firewalled` hosts silent to host checks from the
/// start.
fn calibrated_lan(firewalled: &[usize]) -> Net {
    let mut net = Net::with_firewalled(5, Config::lan(), firewalled);
    net.run_until(secs(20), Net::all_see_alive);
    // Four members to calibrate, at join (their life checks) or when they ack.
    net.run_until(secs(60), |n| {
        (0..5).all(|i| n.nodes[i].stats().host_checks_calibration >= 4)
    });
    net
}

#[test]
fn silent_host_on_a_trusted_path_is_failed_fast_with_explained_verdict() {
    let config = Config::lan();
    let mut net = calibrated_lan(&[]);
    // The host is gone: no ack, no ICMP, no answer to host checks.
    net.silent[4] = true;
    net.host_silent[4] = true;
    let took = net.run_until(config.detection_bound(5), |n| {
        (0..4).all(|i| n.status(i, 4) == Some(MemberStatus::Failed))
    });
    // Probed within about a round of 4 probers, the probe and the indirect probes, then the
    // silent-host timeout; far below Lifeguard's minimum.
    let bound = config.probe_interval * 4
        + config.probe_timeout * 2
        + config.silent_host_suspicion_timeout * 2;
    assert!(took <= bound, "took {took:?}, bound {bound:?}");
    assert!(took < config.suspicion_min_timeout(5), "took {took:?}");
    let evidence = (0..4)
        .map(|i| net.member(i, 4).evidence.clone().unwrap())
        .find(|e| e.host_silent)
        .expect("some prober recorded the silent host");
    assert!(!evidence.unreachable);
    assert!(evidence.declared_by.is_some());
    assert!((0..4).any(|i| net.nodes[i].stats().host_silent_suspicions > 0));
}

#[test]
fn a_firewalled_path_is_never_trusted_and_detection_is_as_without_host_checks() {
    let config = Config::lan();
    // n4's host never answers a host check, from the start: the calibrations find it silent
    // while it acks, and distrust its path.
    let mut net = calibrated_lan(&[4]);
    assert!((0..4).all(|i| net.nodes[i].stats().host_checks_silent >= 1));
    net.silent[4] = true;
    let took = net.run_until(config.detection_bound(5), |n| {
        (0..4).all(|i| n.status(i, 4) == Some(MemberStatus::Failed))
    });
    assert!(took >= config.suspicion_min_timeout(5), "took {took:?}");
    assert!((0..4).all(|i| net.nodes[i].stats().host_silent_suspicions == 0));
    assert!((0..4).all(|i| !net.member(i, 4).evidence.unwrap().host_silent));
}

#[test]
fn a_trusted_path_that_starts_dropping_host_checks_is_distrusted_by_the_next_ack() {
    let config = Config::lan();
    let mut net = calibrated_lan(&[]);
    // A firewall rule now drops n4's host checks while n4 keeps acking. The paths are
    // calibrated again half way through their trust: the checks go unanswered, n4 acks again
    // in the same incarnation, and the paths are distrusted.
    net.host_silent[4] = true;
    net.run_until(config.host_check_trust_period, |n| {
        (0..4).all(|i| n.nodes[i].stats().host_check_paths_distrusted >= 1)
    });
    assert!((0..4).all(|i| net.nodes[i].stats().host_check_paths_distrusted >= 1));
    assert!((0..4).all(|i| net.status(i, 4) == Some(MemberStatus::Alive)));
    // Then n4 dies: its silence is no evidence on those paths any more.
    net.silent[4] = true;
    let took = net.run_until(config.detection_bound(5), |n| {
        (0..4).all(|i| n.status(i, 4) == Some(MemberStatus::Failed))
    });
    assert!(took >= config.suspicion_min_timeout(5), "took {took:?}");
    assert!((0..4).all(|i| !net.member(i, 4).evidence.unwrap().host_silent));
}

#[test]
fn host_check_answers_not_in_flight_change_nothing() {
    let mut net = calibrated_lan(&[]);
    let before = net.nodes[0].stats().host_checks_answered;
    let now = net.now;
    for id in [0, 12_345, u64::MAX] {
        for answer in [
            HostAnswer::Answered,
            HostAnswer::Silent,
            HostAnswer::Inconclusive,
        ] {
            net.nodes[0].handle_host_check(now, id, answer);
        }
    }
    net.flush();
    let stats = net.nodes[0].stats();
    assert_eq!(stats.host_checks_unexpected, 9);
    assert_eq!(stats.host_checks_answered, before);
    // A check answered twice: the second answer is unexpected. The harness answers at once,
    // so run a check by hand.
    net.silent[4] = true;
    let mut answered = None;
    for _ in 0..500 {
        net.now += Duration::from_millis(10);
        let now = net.now;
        net.nodes[0].handle_timeout(now);
        if let Some(check) = net.nodes[0].poll_host_check() {
            answered = Some(check.id);
            net.nodes[0].handle_host_check(now, check.id, HostAnswer::Answered);
            break;
        }
        while net.nodes[0].poll_transmit().is_some() {}
    }
    let id = answered.expect("n0 checked a host");
    let unexpected = net.nodes[0].stats().host_checks_unexpected;
    let now = net.now;
    net.nodes[0].handle_host_check(now, id, HostAnswer::Silent);
    assert_eq!(net.nodes[0].stats().host_checks_unexpected, unexpected + 1);
    assert_eq!(net.nodes[0].stats().host_silent_suspicions, 0);
}

#[test]
fn host_checks_off_asks_for_none() {
    let config = Config {
        host_checks: false,
        ..Config::lan()
    };
    let mut net = Net::new(5, config);
    net.run_until(secs(20), Net::all_see_alive);
    net.silent[4] = true;
    net.host_silent[4] = true;
    net.run_for(secs(10));
    assert!((0..4).all(|i| net.nodes[i].stats().host_checks_started == 0));
    assert!((0..4).all(|i| net.nodes[i].stats().host_silent_suspicions == 0));
}

#[test]
fn graceful_leave_reads_left_everywhere() {
    let mut net = Net::new(4, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    let now = net.now;
    net.nodes[3].leave(now);
    net.flush();
    net.run_until(secs(5), |n| n.nodes[3].is_leave_complete());
    net.crashed[3] = true;
    net.run_until(secs(5), |n| {
        (0..3).all(|i| n.status(i, 3) == Some(MemberStatus::Left))
    });
    net.run_for(secs(10));
    assert!(
        (0..3).all(|i| net.status(i, 3) == Some(MemberStatus::Left)),
        "left must never turn failed"
    );
    assert!(!net
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::Failed(_))));
}

#[test]
fn restart_with_new_generation_replaces_previous_life() {
    let mut net = Net::new(3, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    let now = net.now;
    net.nodes[2] = crate::Node::new(
        crate::Identity::new("n2", addr(2), 2),
        Config::local(),
        99,
        now,
    )
    .unwrap();
    net.nodes[2].join(now, vec![addr(0)]);
    net.flush();
    net.run_until(secs(5), |n| {
        (0..2).all(|i| n.member(i, 2).generation == 2) && n.all_see_alive()
    });
    assert!(net
        .events
        .iter()
        .any(|(i, e)| *i == 0
            && matches!(e, Event::Joined(m) if m.name == "n2" && m.generation == 2)));
}

#[test]
fn two_live_processes_with_one_name_are_a_conflict() {
    let mut net = Net::new(3, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    // A second process at another address claims "n2" with a newer generation, and both
    // answer: the new life passes its own check, but the known one still answers.
    let now = net.now;
    let second = crate::Node::new(
        crate::Identity::new("n2", addr(3), 5),
        Config::local(),
        77,
        now,
    )
    .unwrap();
    net.nodes.push(second);
    net.crashed.push(false);
    net.silent.push(false);
    net.host_silent.push(false);
    let impostor = Message::Alive(wire::Alive {
        name: "n2".into(),
        addr: addr(3),
        generation: 5,
        incarnation: 0,
        tags: Default::default(),
    });
    // Relayed by a member, as gossip brings it.
    send(&mut net, 0, 1, &[impostor]);
    net.run_for(Duration::from_millis(150));
    let m = net.member(0, 2);
    assert_eq!(m.addr, addr(2), "the live member is kept");
    assert_eq!(m.generation, 1);
    assert_eq!(m.conflict.as_ref().map(|c| c.other_addr), Some(addr(3)));
    assert!(net
        .events
        .iter()
        .any(|(i, e)| *i == 0 && matches!(e, Event::Conflict(c) if c.name == "n2")));
}

#[test]
fn junk_is_dropped_and_counted() {
    let mut net = Net::new(2, Config::local());
    let now = net.now;
    net.nodes[0].handle_datagram(now, addr(7), b"hello");
    net.nodes[0].handle_datagram(
        now,
        addr(7),
        &[b'C', b'H', wire::PROTOCOL_VERSION, 0, 0, 0, 0, 0, 0xff],
    );
    let foreign = wire::encode_packet(
        wire::cluster_hash("other"),
        &[Message::Ack(wire::Ack { seq: 1 })],
    );
    net.nodes[0].handle_datagram(now, addr(7), &foreign);
    let s = net.nodes[0].stats();
    assert_eq!(s.dropped_malformed, 1);
    assert_eq!(s.dropped_wrong_cluster, 2);
}

#[test]
fn oversize_tags_are_refused_without_change() {
    let mut net = Net::new(1, Config::local());
    let mut tags = crate::Tags::new();
    tags.insert("k".into(), "v".repeat(2000));
    let now = net.now;
    let before = net.nodes[0].local_member().incarnation;
    assert!(net.nodes[0].set_tags(now, tags).is_err());
    assert_eq!(net.nodes[0].local_member().incarnation, before);
    assert!(net.nodes[0].local_member().tags.is_empty());
}

#[test]
fn tags_change_reaches_peers_as_update() {
    let mut net = Net::new(3, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    let mut tags = crate::Tags::new();
    tags.insert("role".into(), "db".into());
    let now = net.now;
    net.nodes[1].set_tags(now, tags).unwrap();
    net.flush();
    net.run_until(secs(2), |n| {
        (0..3).all(|i| i == 1 || n.member(i, 1).tags.get("role").map(String::as_str) == Some("db"))
    });
    assert!(net
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::Updated(m) if m.name == "n1")));
}

fn messages_at(net: &Net, node: usize) -> Vec<(String, Vec<u8>)> {
    net.events
        .iter()
        .filter(|(i, _)| *i == node)
        .filter_map(|(_, e)| match e {
            Event::Message(d) => Some((d.tag.clone(), d.payload.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_broadcast_is_delivered_once_everywhere_and_the_tree_settles_to_n_minus_1_pushes() {
    let mut net = Net::new(12, Config::local());
    net.run_until(secs(10), Net::all_see_alive);
    net.run_for(secs(2)); // neighbours recruited on probe ticks
    let mut pushes = Vec::new();
    for round in 0..6u8 {
        let before: u64 = net.nodes.iter().map(|n| n.stats().messages_sent).sum();
        let now = net.now;
        net.nodes[usize::from(round) % 12]
            .broadcast(now, "DebugMessage", vec![round])
            .unwrap();
        net.flush();
        for i in 0..12 {
            let got = messages_at(&net, i);
            assert_eq!(
                got.iter().filter(|(_, p)| p == &vec![round]).count(),
                1,
                "node {i} round {round}"
            );
        }
        let after: u64 = net.nodes.iter().map(|n| n.stats().messages_sent).sum();
        pushes.push(after - before);
        net.run_for(Duration::from_millis(200));
    }
    // The first broadcasts flood the neighbour graph and prune its cycles; then a spanning
    // tree carries each message with exactly N - 1 pushes.
    assert_eq!(
        *pushes.last().unwrap(),
        11,
        "pushes per broadcast: {pushes:?}"
    );
}

#[test]
fn a_lost_push_is_repaired_through_announcements() {
    let mut net = Net::new(8, Config::local());
    net.run_until(secs(10), Net::all_see_alive);
    net.run_for(secs(2));
    // Node 7 is cut off while the message is pushed, then comes back: it learns of the
    // message from piggybacked IHave announcements and grafts it.
    net.silent[7] = true;
    let now = net.now;
    net.nodes[0].broadcast(now, "T", b"x".to_vec()).unwrap();
    net.flush();
    assert!(messages_at(&net, 7).is_empty());
    net.silent[7] = false;
    net.run_until(secs(10), |n| messages_at(n, 7).len() == 1);
    net.run_for(secs(2));
    assert_eq!(messages_at(&net, 7).len(), 1, "delivered exactly once");
}

#[test]
fn key_value_writes_spread_and_deletes_are_tombstoned() {
    let mut net = Net::new(6, Config::local());
    net.run_until(secs(10), Net::all_see_alive);
    // Broadcast tree neighbours are recruited on probe ticks.
    net.run_for(secs(1));
    let now = net.now;
    let v = net.nodes[2].set(now, "role", b"db".to_vec()).unwrap();
    net.run_for(Duration::from_millis(100)); // gossip rounds start on the next timer
    for i in 0..6 {
        assert_eq!(net.nodes[i].get("n2", "role"), Some(&b"db"[..]), "node {i}");
        assert_eq!(net.nodes[i].state_version("n2"), Some(v));
    }
    let now = net.now;
    assert!(net.nodes[2].delete(now, "role").unwrap().is_some());
    assert_eq!(
        net.nodes[2].delete(now, "role").unwrap(),
        None,
        "already deleted"
    );
    net.run_for(Duration::from_millis(100));
    for i in 0..6 {
        assert_eq!(net.nodes[i].get("n2", "role"), None, "node {i}");
    }
    assert!(net.events.iter().any(|(i, e)| *i == 4
        && matches!(e, Event::KeyChanged(c) if c.node == "n2" && c.value.is_none())));
}

#[test]
fn key_value_writes_follow_the_broadcast_tree_at_one_push_per_node() {
    // Each hop of a push waits for the test network's next 10 ms step: wait longer than the
    // deepest node's delivery before pulling, so that only the tree delivers.
    let config = Config {
        graft_timeout: Duration::from_millis(200),
        ..Config::local()
    };
    let mut net = Net::new(12, config);
    net.run_until(secs(10), Net::all_see_alive);
    net.run_for(secs(2)); // neighbours recruited on probe ticks
    let mut pushes = Vec::new();
    for round in 0..8u8 {
        let writer = usize::from(round) % 12;
        let before: u64 = net.nodes.iter().map(|n| n.stats().state_pushes_sent).sum();
        let now = net.now;
        let v = net.nodes[writer].set(now, "k", vec![round]).unwrap();
        let name = format!("n{writer}");
        // Each hop goes out in a gossip round at the next 10 ms step of the test network.
        net.run_until(Duration::from_millis(200), |n| {
            n.nodes
                .iter()
                .all(|node| node.state_version(&name) == Some(v))
        });
        for i in 0..12 {
            assert_eq!(
                net.nodes[i].get(&name, "k"),
                Some(&[round][..]),
                "node {i} round {round}"
            );
            assert_eq!(net.nodes[i].state_version(&name), Some(v));
        }
        let after: u64 = net.nodes.iter().map(|n| n.stats().state_pushes_sent).sum();
        pushes.push(after - before);
        net.run_for(Duration::from_millis(200));
    }
    // The first writes flood the neighbour graph and prune its cycles; then each write costs
    // N - 1 pushes, where piggybacking it to random members cost many times that.
    assert_eq!(*pushes.last().unwrap(), 11, "pushes per write: {pushes:?}");
    assert!(net.nodes.iter().all(|n| n.stats().state_grafts_sent == 0));
}

/// `local` timings without anti-entropy, early or regular: only the tree's own repair.
fn tree_repair_only() -> Config {
    // The early exchanges of the joins (0.2 s and 0.4 s after the start) settle membership
    // (members are listed only once they answer a check, so a burst of joins leaves gossip
    // to tell some pairs apart); the regular ones never come in a test's time.
    Config {
        sync_interval: secs(600),
        ..Config::local()
    }
}

/// 16 nodes that all see each other alive, with a broadcast tree settled by a few writes
/// (their duplicates prune the redundant links).
fn settled_tree(config: Config) -> Net {
    let mut net = Net::new(16, config);
    net.run_until(secs(10), Net::all_see_alive);
    net.run_for(secs(2));
    for i in 0..4 {
        let now = net.now;
        net.nodes[i].set(now, "warm", vec![1]).unwrap();
        net.run_for(Duration::from_millis(300));
    }
    net
}

/// The nodes whose replica of n0's state has not reached version `v`.
fn without_version(net: &Net, v: u64) -> Vec<usize> {
    (0..net.nodes.len())
        .filter(|&i| net.nodes[i].state_version("n0") != Some(v))
        .collect()
}

#[test]
fn a_relayed_write_goes_on_down_the_tree_without_waiting_for_a_timer() {
    let mut net = settled_tree(Config::local());
    let now = net.now;
    let v = net.nodes[0].set(now, "k", b"v".to_vec()).unwrap();
    // One tick: the writer's gossip round pushes the write, and every node that receives it
    // pushes it on while handling that datagram, so the whole tree has it before the next tick
    // (a driver's timer tick is about a millisecond per hop).
    net.run_for(Duration::from_millis(10));
    let behind = without_version(&net, v);
    assert!(behind.is_empty(), "{behind:?} waited for a timer");
}

#[test]
fn a_lost_state_push_is_repaired_through_announcements_before_anti_entropy() {
    let mut net = Net::new(8, tree_repair_only());
    net.run_until(secs(10), Net::all_see_alive);
    net.run_for(secs(2));
    // Node 7 is cut off while the write is pushed (pushes cross the tree within one tick
    // here), then comes back: it hears a `StateHave` piggybacked on some probe and pulls the
    // write from the announcer. A longer cut would also swallow the announcements: each node
    // sends its announcement on its next `state_retransmit_limit` datagrams only (4 here, about
    // 400 ms of probes), after which only anti-entropy repairs.
    net.silent[7] = true;
    let now = net.now;
    let v = net.nodes[0].set(now, "role", b"db".to_vec()).unwrap();
    net.run_for(Duration::from_millis(30));
    assert_eq!(net.nodes[6].get("n0", "role"), Some(&b"db"[..]));
    assert_eq!(net.nodes[7].get("n0", "role"), None);
    net.silent[7] = false;
    // Announcements ride on the next probes (every 200 ms here); anti-entropy is minutes away.
    net.run_until(secs(3), |n| n.nodes[7].state_version("n0") == Some(v));
    assert_eq!(net.nodes[7].get("n0", "role"), Some(&b"db"[..]));
    assert!(net.nodes[7].stats().state_grafts_sent >= 1);
}

#[test]
fn a_node_that_pulled_a_missed_write_pushes_it_on_to_its_subtree() {
    let mut net = settled_tree(tree_repair_only());
    // Cut off the node with the most eager links: its whole subtree misses the push.
    let eager = |n: &crate::Node| n.plumtree.eager_peers().count();
    let hub = (1..16).max_by_key(|&i| eager(&net.nodes[i])).unwrap();
    net.silent[hub] = true;
    let now = net.now;
    let v = net.nodes[0].set(now, "k", b"v".to_vec()).unwrap();
    // Pushes cross the tree within one tick; a longer wait would let the subtree pull the write
    // on its own (announcements ride on probes) before the hub is back.
    net.run_for(Duration::from_millis(30));
    let missed = without_version(&net, v);
    assert!(missed.len() >= 2, "only {missed:?} missed the push");
    net.silent[hub] = false;
    net.run_until(secs(5), |n| {
        n.nodes
            .iter()
            .all(|node| node.state_version("n0") == Some(v))
    });
    let pulls: u64 = missed
        .iter()
        .map(|&i| net.nodes[i].stats().state_grafts_sent)
        .sum();
    assert!(
        pulls < missed.len() as u64,
        "{} nodes missed the push, {pulls} pulls: a pulled write is not pushed on",
        missed.len()
    );
}

#[test]
fn oversize_writes_and_messages_are_refused() {
    let mut net = Net::new(1, Config::local());
    let now = net.now;
    assert!(matches!(
        net.nodes[0].set(now, "k", vec![0; 5000]),
        Err(crate::StateError::ValueTooLarge { .. })
    ));
    assert!(matches!(
        net.nodes[0].set(now, "", vec![1]),
        Err(crate::StateError::BadKey { .. })
    ));
    assert!(matches!(
        net.nodes[0].broadcast(now, "t", vec![0; 5000]),
        Err(crate::BroadcastError::TooLarge { .. })
    ));
    assert_eq!(net.nodes[0].state_version("n0"), Some(0));
}

#[test]
fn anti_entropy_converges_state_larger_than_a_packet_after_loss_of_every_update() {
    let mut net = Net::new(4, Config::local());
    net.run_until(secs(10), Net::all_see_alive);
    // Node 3 misses every piggybacked write (as if all were lost), then anti-entropy must
    // bring all of them: 300 keys of 100 bytes, about 30 KB, many datagrams.
    net.silent[3] = true;
    let now = net.now;
    for k in 0..300 {
        net.nodes[1]
            .set(now, &format!("key-{k:03}"), vec![b'v'; 100])
            .unwrap();
    }
    net.flush();
    net.run_for(secs(1));
    net.silent[3] = false;
    net.run_until(secs(60), |n| {
        n.nodes[3].state_version("n1") == n.nodes[1].state_version("n1")
    });
    assert_eq!(net.nodes[3].node_state("n1").unwrap().count(), 300);
}

#[test]
fn a_restart_replaces_the_previous_lifes_state() {
    let mut net = Net::new(3, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    let now = net.now;
    net.nodes[2].set(now, "old", b"1".to_vec()).unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.nodes[0].get("n2", "old"), Some(&b"1"[..]));
    let now = net.now;
    net.nodes[2] = crate::Node::new(
        crate::Identity::new("n2", addr(2), 2),
        Config::local(),
        77,
        now,
    )
    .unwrap();
    net.nodes[2].join(now, vec![addr(0)]);
    net.nodes[2].set(now, "new", b"2".to_vec()).unwrap();
    net.flush();
    net.run_until(secs(10), |n| n.nodes[0].get("n2", "new") == Some(&b"2"[..]));
    assert_eq!(
        net.nodes[0].get("n2", "old"),
        None,
        "the old life's state is gone"
    );
    assert!(net.events.iter().any(|(i, e)| *i == 0
        && matches!(e, Event::KeyChanged(c) if c.node == "n2" && c.key == "old" && c.value.is_none())));
}

#[test]
fn an_injected_message_is_broadcast_to_the_whole_cluster() {
    let mut net = Net::new(4, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    net.run_for(secs(1));
    let packet = wire::encode_inject("chatter", "DebugMessage", br#"{"text":"hello world"}"#);
    let now = net.now;
    net.nodes[2].handle_datagram(now, addr(50), &packet);
    net.flush();
    net.run_until(secs(5), |n| (0..4).all(|i| messages_at(n, i).len() == 1));
    for i in 0..4 {
        assert_eq!(
            messages_at(&net, i)[0],
            (
                "DebugMessage".to_owned(),
                br#"{"text":"hello world"}"#.to_vec()
            )
        );
    }
    assert_eq!(net.nodes[2].stats().messages_injected, 1);
}

#[test]
fn fresh_updates_follow_the_broadcast_tree_and_beat_the_retransmission_round() {
    let config = Config::lan();
    let mut net = Net::new(30, config.clone());
    net.run_until(secs(30), Net::all_see_alive);
    net.run_for(secs(2));
    // Warm-up broadcasts prune the neighbour graph into a spanning tree.
    for round in 0..5u8 {
        let now = net.now;
        net.nodes[usize::from(round)]
            .broadcast(now, "warm-up", vec![round])
            .unwrap();
        net.flush();
        net.run_for(Duration::from_millis(100));
    }
    for (writer, key) in [(3usize, "a"), (17, "b"), (29, "c")] {
        let now = net.now;
        net.nodes[writer].set(now, key, b"v".to_vec()).unwrap();
        let owner = format!("n{writer}");
        // Each hop takes one 10 ms step of the harness; random fanout alone would leave about
        // e^-3 of the nodes to the next round, 200 ms later.
        let took = net.run_until(config.gossip_interval, |n| {
            n.nodes.iter().all(|node| node.get(&owner, key).is_some())
        });
        assert!(took < config.gossip_interval, "{key} took {took:?}");
    }
}

#[test]
fn owners_missing_from_a_multi_chunk_digest_are_sent_in_full() {
    let mut net = Net::new(100, Config::local());
    net.run_until(secs(30), Net::all_see_alive);
    // n99 misses the writes of the first 40 nodes, then hears the writes of the others: its
    // digest has 59 rows (two chunks) and lacks owners spread over both chunks' name ranges.
    net.silent[99] = true;
    let now = net.now;
    for i in 0..40 {
        net.nodes[i]
            .set(now, "status", format!("ok-{i}").into_bytes())
            .unwrap();
    }
    net.run_for(secs(1));
    net.silent[99] = false;
    let now = net.now;
    for i in 40..99 {
        net.nodes[i]
            .set(now, "status", format!("ok-{i}").into_bytes())
            .unwrap();
    }
    net.run_until(secs(60), |n| {
        (0..99).all(|i| {
            n.nodes[99].get(&format!("n{i}"), "status") == Some(format!("ok-{i}").as_bytes())
        })
    });
}

#[test]
fn overwrites_in_a_burst_leave_no_watermark_gaps() {
    let config = Config::lan(); // anti-entropy only every 10 s: the test runs for 1 s
    let mut net = Net::new(6, config);
    net.run_until(secs(20), Net::all_see_alive);
    // Until the node's first exchange has happened, give it time to settle.
    net.run_for(secs(12));
    let now = net.now;
    for round in 0..10u8 {
        for key in ["cpu", "mem", "load"] {
            net.nodes[0].set(now, key, vec![round]).unwrap();
        }
    }
    // Each key's queued update was replaced nine times: versions 1..=27 never travel. The last
    // updates carry the versions they supersede, so replicas close the gaps without waiting
    // for anti-entropy.
    net.run_for(Duration::from_millis(500));
    for i in 1..6 {
        assert_eq!(net.nodes[i].get("n0", "cpu"), Some(&[9u8][..]), "node {i}");
        assert_eq!(net.nodes[i].state_version("n0"), Some(30), "node {i}");
    }
}

/// Node 0 of two preloaded nodes probes node 1; its first datagram to node 1 (the ping) is
/// lost. Returns how many suspicions node 0 raised.
fn probe_with_lost_ping(retry: bool) -> u64 {
    use crate::{Identity, Node};
    #[allow(clippy::disallowed_methods)]
    let t0 = std::time::Instant::now();
    let config = Config {
        retry_direct_probe: retry,
        ..Config::lan()
    };
    let mut nodes: Vec<Node> = (0..2)
        .map(|i| {
            let mut n = Node::new(
                Identity::new(format!("n{i}"), addr(i), 1),
                config.clone(),
                i as u64,
                t0,
            )
            .unwrap();
            n.preload_members(t0, [(format!("n{}", 1 - i).as_str(), addr(1 - i), 1)]);
            n
        })
        .collect();
    let mut dropped = false;
    let mut now = t0;
    while now < t0 + secs(3) {
        now += Duration::from_millis(10);
        for node in &mut nodes {
            node.handle_timeout(now);
        }
        for i in 0..2 {
            while let Some(t) = nodes[i].poll_transmit() {
                let is_ping = wire::decode_packet(&t.payload, nodes[i].cluster, usize::MAX)
                    .is_ok_and(|m| m.iter().any(|m| matches!(m, Message::Ping(_))));
                if i == 0 && is_ping && !dropped {
                    dropped = true;
                    continue;
                }
                nodes[1 - i].handle_datagram(now, addr(i), &t.payload);
            }
        }
    }
    assert!(dropped, "node 0 never probed node 1");
    nodes[0].stats().suspicions_raised
}

#[test]
fn a_lost_ping_is_retried_directly_instead_of_raising_a_suspicion() {
    assert_eq!(probe_with_lost_ping(true), 0);
    // Without the retry and with nobody to ask indirectly, the same loss makes n1 suspect:
    // the retry is what saved it.
    assert_eq!(probe_with_lost_ping(false), 1);
}

#[test]
fn key_value_announcements_follow_their_own_transmit_limit() {
    // One node alone with one member: the announcement of a write rides on probes until its
    // limit.
    let sent_with = |state_mult: u32| {
        let config = Config {
            state_retransmit_mult: state_mult,
            ..Config::local()
        };
        let mut net = Net::new(2, config);
        net.run_until(secs(5), Net::all_see_alive);
        net.run_for(secs(5));
        let before = net.nodes[0].stats().gossip_sent;
        let now = net.now;
        net.nodes[0].set(now, "k", b"v".to_vec()).unwrap();
        net.run_for(secs(5));
        net.nodes[0].stats().gossip_sent - before
    };
    // ceil(log10(3)) = 1: the multiplier is the limit of the announcement's transmissions; the
    // push along the broadcast tree (the other node is an eager neighbour) comes on top in both
    // cases.
    let (one, five) = (sent_with(1), sent_with(5));
    assert!((1..=2).contains(&one), "{one}");
    assert_eq!(five - one, 4);
}
