//! Forged and hostile datagrams against a few nodes on a perfect in-memory network: each test
//! is one attack, and asserts what it can no longer achieve.

use std::net::SocketAddr;
use std::time::Duration;

use crate::limits::{MAX_GENERATION, MAX_INCARNATION};
use crate::plumtree::MessageId;
use crate::testkit::{addr, Net};
use crate::wire::{self, Message};
use crate::{Config, Event, MemberStatus};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn settled(n: usize) -> Net {
    let mut net = Net::new(n, Config::local());
    net.run_until(secs(5), Net::all_see_alive);
    net
}

/// A stranger's address: no node of the net lives there.
fn stranger() -> SocketAddr {
    addr(200)
}

/// Hands `messages` to node `to` as if sent from `from`, then lets the net run on.
fn inject(net: &mut Net, to: usize, from: SocketAddr, messages: &[Message]) {
    let packet = wire::encode_packet(wire::cluster_hash("chatter"), messages);
    let now = net.now;
    net.nodes[to].handle_datagram(now, from, &packet);
    net.flush();
}

/// The same to every node.
fn inject_all(net: &mut Net, from: SocketAddr, messages: &[Message]) {
    for i in 0..net.nodes.len() {
        inject(net, i, from, messages);
    }
}

/// Bytes node `to` sends to `from` in answer to `packet`, drained before the net delivers
/// anything.
fn answer_bytes(net: &mut Net, to: usize, from: SocketAddr, packet: &[u8]) -> usize {
    let now = net.now;
    net.nodes[to].handle_datagram(now, from, packet);
    let mut bytes = 0;
    while let Some(t) = net.nodes[to].poll_transmit() {
        if t.dst == from {
            bytes += t.payload.len();
        }
    }
    bytes
}

fn failed(name: &str, generation: u64, incarnation: u64, from: &str) -> Message {
    Message::Failed(wire::Failed {
        name: name.into(),
        generation,
        incarnation,
        from: from.into(),
    })
}

fn never_failed(net: &Net, name: &str) -> bool {
    !net.events
        .iter()
        .any(|(_, e)| matches!(e, Event::Failed(m) if m.name == name))
}

#[test]
fn a_failed_with_the_largest_incarnation_is_dropped_everywhere() {
    let mut net = settled(5);
    inject_all(&mut net, stranger(), &[failed("n1", 1, u64::MAX, "n2")]);
    net.run_for(secs(2));
    assert!(net.all_see_alive());
    assert!(never_failed(&net, "n1"));
    assert!(net.nodes[0].stats().dropped_invalid >= 1);
}

#[test]
fn an_accusation_at_the_incarnation_limit_makes_the_victim_begin_a_new_life() {
    let mut net = settled(5);
    inject_all(
        &mut net,
        stranger(),
        &[failed("n1", 1, MAX_INCARNATION, "n2")],
    );
    net.run_until(secs(5), |n| {
        n.all_see_alive() && (0..5).all(|i| n.member(i, 1).generation == 2)
    });
    assert_eq!(net.nodes[1].stats().lives_renewed, 1);
    assert_eq!(net.nodes[1].local_member().incarnation, 0);
}

#[test]
fn a_forged_generation_cannot_displace_a_live_member() {
    let mut net = settled(5);
    let forged = Message::Alive(wire::Alive {
        name: "n1".into(),
        addr: addr(1),
        generation: MAX_GENERATION,
        incarnation: 0,
        tags: Default::default(),
    });
    let suspect = Message::Suspect(wire::Suspect {
        name: "n1".into(),
        generation: MAX_GENERATION,
        incarnation: 0,
        from: "n2".into(),
        unreachable: true,
    });
    inject_all(&mut net, stranger(), &[forged, suspect]);
    net.run_for(secs(3));
    for i in [0, 2, 3, 4] {
        let m = net.member(i, 1);
        assert_eq!(m.generation, 1, "node {i} took the forged life");
        assert_eq!(m.status, MemberStatus::Alive);
    }
    assert!(net.nodes[0].stats().lives_unverified >= 1);
    assert!(never_failed(&net, "n1"));
}

#[test]
fn a_restart_at_a_new_address_is_the_same_members_new_life() {
    let mut net = settled(4);
    // n3's host comes back with another address (a rescheduled container) before its old life
    // is detected failed.
    net.crashed[3] = true;
    let now = net.now;
    net.nodes[3] = crate::Node::new(
        crate::Identity::new("n3", addr(9), 2),
        Config::local(),
        33,
        now,
    )
    .unwrap();
    net.crashed[3] = false;
    net.nodes[3].join(now, vec![addr(0)]);
    net.flush();
    net.run_until(secs(5), |n| {
        (0..3).all(|i| {
            let m = n.member(i, 3);
            m.generation == 2 && m.addr == addr(9) && m.status == MemberStatus::Alive
        })
    });
    assert!(
        !net.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Conflict(_))),
        "a restart is not a conflict"
    );
}

#[test]
fn an_address_change_within_a_life_is_refused() {
    let mut net = settled(3);
    let moved = Message::Alive(wire::Alive {
        name: "n1".into(),
        addr: stranger(),
        generation: 1,
        incarnation: 50,
        tags: Default::default(),
    });
    inject(&mut net, 0, stranger(), &[moved]);
    assert_eq!(net.member(0, 1).addr, addr(1));
}

#[test]
fn an_ack_from_another_address_does_not_keep_a_dead_member_alive() {
    let mut net = settled(3);
    net.silent[2] = true;
    // Answer every probe of n2 with the right sequence number, from the wrong address: a
    // forger that sees the pings but is not at n2's address.
    let mut forged = 0;
    let start = net.now;
    while net.status(0, 2) != Some(MemberStatus::Failed) {
        assert!(net.now - start < secs(10), "n2 never failed at node 0");
        if let Some(probe) = net.nodes[0].prober.in_flight().cloned() {
            if probe.target() == "n2" {
                for seq in probe.seqs() {
                    inject(&mut net, 0, stranger(), &[Message::Ack(wire::Ack { seq })]);
                    forged += 1;
                }
            }
        }
        net.run_for(Duration::from_millis(10));
    }
    assert!(forged > 0);
    assert!(net.nodes[0].stats().dropped_unexpected_ack >= forged);
}

#[test]
fn a_stranger_gets_no_more_bytes_back_than_it_sent() {
    let mut net = settled(5);
    let request = |padding: usize| {
        Message::SyncRequest(wire::SyncRequest {
            from: "x".into(),
            fingerprint: 0,
            state_fingerprint: 0,
            padding: vec![0; padding],
        })
    };
    let cluster = wire::cluster_hash("chatter");
    // One datagram packed with requests.
    let packed = wire::encode_packet(cluster, &vec![request(0); 60]);
    let sent = answer_bytes(&mut net, 0, stranger(), &packed);
    assert!(sent <= packed.len(), "{sent} bytes for {}", packed.len());
    // A ping answers with a bare ack, nothing piggybacked.
    let ping = wire::encode_packet(cluster, &[Message::Ping(wire::Ping::new(1, "n0", 1))]);
    let sent = answer_bytes(&mut net, 0, stranger(), &ping);
    assert!(sent > 0 && sent <= ping.len(), "{sent} for {}", ping.len());
    // A joining node pads its request and gets a first part of the table.
    net.run_for(secs(2));
    let padded = wire::encode_packet(cluster, &[request(1300)]);
    let sent = answer_bytes(&mut net, 1, stranger(), &padded);
    assert!(
        sent > 0 && sent <= padded.len(),
        "{sent} for {}",
        padded.len()
    );
    let answer_rows = net.nodes[1].members().count() + 1;
    assert!(answer_rows == 5);
}

#[test]
fn a_member_gets_one_full_table_per_probe_interval() {
    let mut net = settled(3);
    // Past the early exchanges of the joins.
    net.run_for(secs(2));
    let request = Message::SyncRequest(wire::SyncRequest {
        from: "n1".into(),
        fingerprint: 0,
        state_fingerprint: 0,
        padding: Vec::new(),
    });
    let packet = wire::encode_packet(wire::cluster_hash("chatter"), &[request]);
    let first = answer_bytes(&mut net, 0, addr(1), &packet);
    let second = answer_bytes(&mut net, 0, addr(1), &packet);
    assert!(first > 0);
    assert_eq!(second, 0);
    assert!(net.nodes[0].stats().answers_rate_limited >= 1);
}

#[test]
fn ping_reqs_are_relayed_only_for_live_members_to_their_own_address() {
    let mut net = settled(3);
    let req = |target: &str, addr: SocketAddr| {
        Message::PingReq(wire::PingReq {
            seq: 7,
            target: target.into(),
            generation: 1,
            addr,
        })
    };
    let cluster = wire::cluster_hash("chatter");
    let victim = addr(150);
    for (from, message) in [
        (addr(1), req("nobody", victim)),
        (stranger(), req("n2", victim)),
        (addr(1), req("n2", victim)),
    ] {
        let now = net.now;
        let packet = wire::encode_packet(cluster, &[message]);
        net.nodes[0].handle_datagram(now, from, &packet);
        while let Some(t) = net.nodes[0].poll_transmit() {
            assert_ne!(t.dst, victim, "relayed to an address named in the packet");
        }
    }
    assert_eq!(net.nodes[0].stats().ping_reqs_refused, 2);
    assert_eq!(net.nodes[0].stats().indirect_probes_served, 1);
}

#[test]
fn invented_accusers_confirm_nothing() {
    let mut net = settled(5);
    let messages: Vec<Message> = (0..20)
        .map(|i| {
            Message::Suspect(wire::Suspect {
                name: "n1".into(),
                generation: 1,
                incarnation: 0,
                from: format!("ghost{i}"),
                unreachable: true,
            })
        })
        .collect();
    inject_all(&mut net, stranger(), &messages);
    assert!((0..5).all(|i| i == 1 || net.status(i, 1) == Some(MemberStatus::Alive)));
    assert!(net.nodes[0].stats().dropped_invalid >= 20);
}

#[test]
fn a_forged_generation_or_sequence_cannot_censor_a_members_broadcasts() {
    let mut net = settled(4);
    let gossip = |generation, seq| {
        Message::Gossip(wire::Gossip {
            id: MessageId {
                origin: "n1".into(),
                generation,
                seq,
            },
            from: "n1".into(),
            hops: 0,
            tag: "t".into(),
            payload: b"forged".to_vec(),
        })
    };
    inject_all(&mut net, stranger(), &[gossip(MAX_GENERATION, 1)]);
    // High numbers of the current life (the window's own bound against thousands of them is
    // a unit test of `plumtree.rs`).
    let forged: Vec<Message> = (0..40).map(|s| gossip(1, 1_000_000 + s)).collect();
    inject_all(&mut net, stranger(), &forged);
    let now = net.now;
    let id = net.nodes[1].broadcast(now, "real", b"hi".to_vec()).unwrap();
    net.run_for(secs(1));
    for i in [0, 2, 3] {
        assert!(
            net.events
                .iter()
                .any(|(j, e)| *j == i && matches!(e, Event::Message(d) if d.id == id)),
            "node {i} missed the real broadcast"
        );
    }
}

#[test]
fn a_forged_watermark_cannot_freeze_a_members_state() {
    let mut net = settled(3);
    let now = net.now;
    net.nodes[1].set(now, "k", b"v1".to_vec()).unwrap();
    net.run_for(secs(1));
    // Everyone is told n1's writes go up to a million: its next ones would look old.
    let forged = Message::StateDelta(wire::StateDelta {
        node: "n1".into(),
        generation: 1,
        from_version: 0,
        to_version: 1_000_000,
        reset: false,
        entries: vec![wire::WireEntry {
            key: "k".into(),
            value: Some(b"forged".to_vec()),
            version: 1_000_000,
        }],
    });
    inject(&mut net, 0, stranger(), std::slice::from_ref(&forged));
    inject(&mut net, 2, stranger(), &[forged]);
    let now = net.now;
    net.nodes[1].set(now, "k", b"v2".to_vec()).unwrap();
    // n1's write of "k" reaches its tree neighbours, which hold "k" in a higher version
    // from the forgery: they tell n1 at once, and n1 moves past the claim. Within a second,
    // far below the anti-entropy interval (10 s) that was the only way before.
    let took = net.run_until(secs(2), |n| {
        [0, 2]
            .iter()
            .all(|&i| n.nodes[i].get("n1", "k") == Some(&b"v2"[..]))
    });
    assert!(took < secs(1), "took {took:?}");
    assert!(net.nodes[1].stats().state_claims_refuted >= 1);
    assert!(
        net.nodes[0].stats().state_claims_reported + net.nodes[2].stats().state_claims_reported
            >= 1
    );
}

#[test]
fn a_forged_watermark_is_refuted_at_the_owners_next_write_of_a_new_key() {
    let mut net = settled(4);
    let now = net.now;
    net.nodes[1].set(now, "a", b"1".to_vec()).unwrap();
    net.run_for(secs(1));
    // A watermark alone, no entry: every write of n1 up to 2^40 looks known.
    let forged = Message::StateDelta(wire::StateDelta {
        node: "n1".into(),
        generation: 1,
        from_version: 0,
        to_version: 1 << 40,
        reset: false,
        entries: vec![],
    });
    for i in [0, 2, 3] {
        inject(&mut net, i, stranger(), std::slice::from_ref(&forged));
    }
    let now = net.now;
    net.nodes[1].set(now, "b", b"2".to_vec()).unwrap();
    let took = net.run_until(secs(2), |n| {
        [0, 2, 3]
            .iter()
            .all(|&i| n.nodes[i].get("n1", "b") == Some(&b"2"[..]))
    });
    assert!(took < secs(1), "took {took:?}");
    assert_eq!(
        net.nodes[1].stats().state_claims_refuted,
        1,
        "one refutation is enough"
    );
    // The rebased state is whole on every replica.
    for i in [0, 2, 3] {
        assert_eq!(net.nodes[i].get("n1", "a"), Some(&b"1"[..]));
    }
}

#[test]
fn an_honest_cluster_reports_no_contradicted_watermark() {
    let mut net = settled(4);
    for round in 0..20u32 {
        for i in 0..4 {
            let now = net.now;
            let key = format!("k{}", round % 3);
            net.nodes[i]
                .set(now, &key, round.to_be_bytes().to_vec())
                .unwrap();
        }
        net.run_for(Duration::from_millis(50));
    }
    net.run_for(secs(2));
    for i in 0..4 {
        assert_eq!(net.nodes[i].stats().state_claims_refuted, 0, "node {i}");
    }
}

#[test]
fn names_longer_than_local_ones_are_dropped() {
    let mut net = settled(2);
    let long = Message::Alive(wire::Alive {
        name: "x".repeat(10_000),
        addr: stranger(),
        generation: 1,
        incarnation: 0,
        tags: Default::default(),
    });
    inject(&mut net, 0, stranger(), &[long]);
    assert_eq!(net.nodes[0].members().count(), 1);
    assert_eq!(net.nodes[0].stats().dropped_invalid, 1);
}

#[test]
fn a_forged_alive_cannot_turn_a_graceful_leave_into_a_failure() {
    let mut net = settled(4);
    let now = net.now;
    net.nodes[3].leave(now);
    net.run_until(secs(2), |n| {
        (0..3).all(|i| n.status(i, 3) == Some(MemberStatus::Left))
    });
    // The node that left is still running (a library user that called `leave`): it must not
    // answer the check a forged `Alive` of its life causes.
    let member = net.member(0, 3);
    let forged = Message::Alive(wire::Alive {
        name: "n3".into(),
        addr: member.addr,
        generation: member.generation,
        incarnation: member.incarnation + 1,
        tags: Default::default(),
    });
    inject_all(&mut net, stranger(), &[forged]);
    net.run_for(secs(10));
    for i in 0..3 {
        assert_eq!(net.status(i, 3), Some(MemberStatus::Left), "node {i}");
        assert!(
            !net.events
                .iter()
                .any(|(j, e)| *j == i && matches!(e, Event::Failed(m) if m.name == "n3")),
            "node {i} reported the node that left failed"
        );
    }
}

#[test]
fn a_live_member_still_refutes_a_forged_left() {
    let mut net = settled(4);
    let member = net.member(0, 2);
    let forged = Message::Left(wire::Left {
        name: "n2".into(),
        generation: member.generation,
        incarnation: member.incarnation + 5,
    });
    inject_all(&mut net, stranger(), &[forged]);
    // Listed left at first, then alive again once n2 refutes and answers the checks.
    let took = net.run_until(secs(5), Net::all_see_alive);
    assert!(took < secs(2), "took {took:?}");
}
