//! Re-contact of failed members on the perfect in-memory network: a node cut off and restored,
//! a restarted node that knows nobody, and what re-contact costs.

use std::time::Duration;

use crate::testkit::{addr, Net};
use crate::wire::{self, Message};
use crate::{Config, Identity, MemberStatus, Node};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn sent(net: &Net) -> u64 {
    net.nodes.iter().map(|n| n.stats().recontacts_sent).sum()
}

/// A node whose link is cut fails everybody, and everybody fails it; once the link is back,
/// re-contact makes it one cluster again within a few `recontact_interval`s (before, each
/// side waited for a 15 s reconnect round or a seed retry).
#[test]
fn a_node_cut_off_and_restored_is_alive_everywhere_within_seconds() {
    let config = Config::lan();
    let mut net = Net::new(5, config.clone());
    net.run_until(secs(20), Net::all_see_alive);
    assert_eq!(sent(&net), 0, "no failed member, no re-contact");
    net.cut[4] = true;
    net.run_until(secs(120), |n| {
        (0..4).all(|i| n.status(i, 4) == Some(MemberStatus::Failed))
            && (0..4).all(|j| n.status(4, j) == Some(MemberStatus::Failed))
    });
    net.run_for(secs(10));
    net.cut[4] = false;
    let took = net.run_until(secs(30), Net::all_see_alive);
    assert!(
        took <= config.recontact_interval * 4,
        "one cluster again only {took:?} after the link came back"
    );
    let answered: u64 = net
        .nodes
        .iter()
        .map(|n| n.stats().recontacts_answered)
        .sum();
    assert!(answered >= 1, "healed without an answered re-contact?");
    // Nobody that stayed connected was failed by anyone on its side.
    for i in 0..4 {
        for j in 0..4 {
            if i != j {
                assert_ne!(net.status(i, j), Some(MemberStatus::Failed), "{i} sees {j}");
            }
        }
    }
}

/// A dead host costs the cluster about one re-contact per `recontact_period`, fewer as it stays
/// failed, and the pings stop going out when the node leaves.
#[test]
fn a_dead_host_costs_about_one_ping_per_period_spread_over_the_cluster() {
    let config = Config::lan();
    let mut net = Net::new(10, config.clone());
    net.run_until(secs(30), Net::all_see_alive);
    net.silent[9] = true;
    net.run_until(secs(120), |n| {
        (0..9).all(|i| n.status(i, 9) == Some(MemberStatus::Failed))
    });
    let before = sent(&net);
    net.run_for(secs(120));
    let pings = sent(&net) - before;
    // Expected: 16 in the first 16 s (one a second), then 16 * ln(120 / 16), about 32, in
    // the rest; the ticks are random, so the bounds are loose.
    assert!((20..=90).contains(&pings), "{pings} re-contacts in 120 s");
    let datagram = wire::encode_packet(
        wire::cluster_hash("chatter"),
        &[
            Message::Ping(wire::Ping::new(u64::from(u32::MAX), "n9", 1)),
            Message::Alive(net.nodes[0].self_alive()),
        ],
    )
    .len();
    println!(
        "one dead host among 10: {pings} re-contacts of {datagram} bytes in its first 2 min \
         after the verdict ({:.2} bytes/s for the whole cluster)",
        (pings as usize * datagram) as f64 / 120.0
    );
    let senders = net
        .nodes
        .iter()
        .take(9)
        .filter(|n| n.stats().recontacts_sent > 0)
        .count();
    assert!(senders >= 5, "the pings are not spread: {senders} senders");
    // A node that left sends none.
    let now = net.now;
    net.nodes[0].leave(now);
    net.flush();
    let left_before = net.nodes[0].stats().recontacts_sent;
    net.run_for(secs(30));
    assert_eq!(net.nodes[0].stats().recontacts_sent, left_before);
}

/// A node cut off from many members (or from a data centre that is gone) still sends at
/// most one re-contact per tick, and at least one every other tick while it knows no live
/// member.
#[test]
fn one_node_sends_at_most_one_recontact_per_tick() {
    let config = Config::local();
    let mut net = Net::new(60, config.clone());
    net.run_until(secs(60), |n| n.nodes[0].num_alive() == 59);
    net.cut[0] = true;
    net.run_until(secs(600), |n| {
        n.nodes[0]
            .member_briefs()
            .all(|(_, m)| m.status == MemberStatus::Failed)
    });
    let before = net.nodes[0].stats().recontacts_sent;
    net.run_for(secs(20));
    let pings = net.nodes[0].stats().recontacts_sent - before;
    let ticks = (secs(20).as_secs_f64() / config.recontact_interval.as_secs_f64()) as u64;
    assert!(
        pings <= ticks + ticks / 2,
        "{pings} re-contacts in {ticks} ticks"
    );
    assert!(
        pings >= ticks / 2,
        "alone among failed members, yet only {pings} pings"
    );
}

/// A node restarted at its address with no seeds and no saved members (a seed brought back
/// bare) is listed again as soon as the others' probes of its previous life reach it: it
/// answers the suspicion of its old life with its new one, which the prober checks.
#[test]
fn a_seed_restarted_without_seeds_is_listed_again_without_waiting_for_its_old_life_to_fail() {
    let config = Config::lan();
    let mut net = Net::new(4, config.clone());
    net.run_until(secs(20), Net::all_see_alive);
    let now = net.now;
    net.nodes[0] = Node::new(Identity::new("n0", addr(0), 2), config.clone(), 77, now).unwrap();
    let took = net.run_until(secs(60), |n| {
        (1..4)
            .all(|i| n.member(i, 0).generation == 2 && n.status(i, 0) == Some(MemberStatus::Alive))
            && n.all_see_alive()
    });
    // Well before the old life could be failed (the minimum suspicion timeout, 5 s, after a
    // probe period and a probe timeout).
    assert!(
        took < config.suspicion_min_timeout(4),
        "listed again only after {took:?}"
    );
}

/// The same, when the others have already failed the previous life: the re-contact ping
/// carries the sender's own `Alive`, which the restarted node checks and lists; its own
/// announcement then reaches the others.
#[test]
fn a_restarted_node_that_knows_nobody_is_found_by_the_recontact_of_its_old_life() {
    let config = Config::lan();
    let mut net = Net::new(4, config.clone());
    net.run_until(secs(20), Net::all_see_alive);
    net.silent[0] = true;
    net.run_until(secs(120), |n| {
        (1..4).all(|i| n.status(i, 0) == Some(MemberStatus::Failed))
    });
    let now = net.now;
    net.nodes[0] = Node::new(Identity::new("n0", addr(0), 2), config.clone(), 78, now).unwrap();
    net.silent[0] = false;
    let took = net.run_until(secs(30), |n| {
        (1..4).all(|i| n.member(i, 0).generation == 2) && n.all_see_alive()
    });
    assert!(
        took <= config.recontact_interval * 5,
        "listed again only after {took:?}"
    );
}

/// A stranger that probes this node's previous life as a suspect gets the new life back, in
/// no more bytes than it sent; one that sent fewer bytes than the answer gets nothing.
#[test]
fn the_answer_to_a_suspicion_of_a_previous_life_is_bounded() {
    let config = Config::lan();
    let mut net = Net::new(2, config.clone());
    net.run_until(secs(10), Net::all_see_alive);
    let now = net.now;
    net.nodes[1] = Node::new(Identity::new("n1", addr(1), 2), config, 5, now).unwrap();
    let stranger: std::net::SocketAddr = ([10, 9, 9, 9], 7000).into();
    for (prober, answered) in [("a-prober-with-a-name", 1), ("p", 0)] {
        let suspect = Message::Suspect(wire::Suspect {
            name: "n1".into(),
            generation: 1,
            incarnation: 0,
            from: prober.into(),
            unreachable: false,
        });
        // A probe of a suspect (its ping and its suspicion), or a bare suspicion with a short
        // name: smaller than the answer would be.
        let probe = if answered == 1 {
            vec![Message::Ping(wire::Ping::new(7, "n1", 1)), suspect]
        } else {
            vec![suspect]
        };
        let packet = wire::encode_packet(wire::cluster_hash("chatter"), &probe);
        net.nodes[1].handle_datagram(now, stranger, &packet);
        let mut answers = 0;
        while let Some(t) = net.nodes[1].poll_transmit() {
            if t.dst == stranger {
                assert!(
                    t.payload.len() <= packet.len(),
                    "amplified: {} > {}",
                    t.payload.len(),
                    packet.len()
                );
                let messages =
                    wire::decode_packet(&t.payload, wire::cluster_hash("chatter"), 65_507).unwrap();
                assert!(
                    matches!(&messages[..], [Message::Alive(a)] if a.generation == 2),
                    "{messages:?}"
                );
                answers += 1;
            }
        }
        assert_eq!(answers, answered, "prober {prober:?}");
    }
}
