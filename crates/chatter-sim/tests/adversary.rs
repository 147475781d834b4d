//! The adversary of `chatter_sim::adversary` against a 100-node cluster: a minute of hostile
//! datagrams (every attack of the trust issue, and garbage), checked after every one of them,
//! then a real crash while the attacks go on; the same against a sealed cluster with the key
//! (a leaked key: the protocol's invariants must hold all the same), and without it (every
//! datagram refused by the seal layer, and nothing else changed). Seeds are printed on failure.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chatter_core::{Config, MemberStatus, SealDrops, Stats};
use chatter_sim::adversary::{Adversary, Key, Sent, Wrapping};
use chatter_sim::Sim;
use common::SimTest;

const SECOND: Duration = Duration::from_secs(1);
const N: usize = 100;

/// After each attack: no running node was declared failed anywhere, nobody lists a member that
/// is not one of the simulation's nodes, no invariant broke.
fn check_step(t: &SimTest, sim: &Sim, crashed: Option<usize>, step: u64) {
    t.check_invariants(sim);
    let allowed: Vec<usize> = crashed.into_iter().collect();
    t.check_no_failed_except(sim, &allowed);
    for i in sim.up_nodes() {
        let Some(node) = sim.node(i) else { continue };
        t.check(node.member_briefs().count() < N, || {
            format!(
                "step {step}: node {i} lists {} members, more than the cluster has",
                node.member_briefs().count()
            )
        });
        if let Some((name, _)) = node
            .member_briefs()
            .find(|(name, _)| sim.index_of(name).is_none())
        {
            t.fail(format!(
                "step {step}: node {i} lists {name}, which is no node"
            ));
        }
    }
}

#[test]
fn an_adversary_changes_no_verdict_and_blinds_no_detection() {
    let t = SimTest::new("an_adversary_changes_no_verdict_and_blinds_no_detection");
    attack_and_crash(&t, false);
}

/// The same adversary with the key of a sealed cluster: it seals every attack, every one opens,
/// and the invariants hold as in plaintext.
#[test]
fn an_adversary_with_the_key_changes_no_verdict_and_blinds_no_detection() {
    let t = SimTest::new("an_adversary_with_the_key_changes_no_verdict_and_blinds_no_detection");
    attack_and_crash(&t, true);
}

/// A minute of attacks at a warm cluster of `N`, each checked, then a crash while they go on;
/// `sealed`: the cluster is sealed and the adversary holds its key.
fn attack_and_crash(t: &SimTest, sealed: bool) {
    let config = Config::lan();
    let mut sim = Sim::with_warm_cluster(t.config(config.clone()), N).unwrap();
    let key_ring = if sealed {
        Some(sim.seal_cluster().unwrap().clone())
    } else {
        None
    };
    let key = match &key_ring {
        Some(ring) => Key::With(ring.clone()),
        None => Key::Plaintext,
    };
    sim.run_for(5 * SECOND);
    // Every attack, forged key/value watermarks included: a replica that took one reports the
    // owner's next write that contradicts it, and the owner refutes the claim.
    let mut adversary =
        Adversary::new(t.seed ^ 0xad, SocketAddr::from(([203, 0, 113, 9], 2428))).with_key(key);
    // A minute of attacks, 20 a second, each checked.
    let mut step = 0u64;
    for _ in 0..1200 {
        adversary.attack(&mut sim);
        step += 1;
        sim.run_for(SECOND / 20);
        check_step(t, &sim, None, step);
    }
    // Every node is listed alive in every view once the refutations of the last forged
    // accusations are through (a node whose incarnation was driven to the limit has begun a
    // new life, so generations are not compared).
    let all_alive = |s: &Sim| {
        let up = s.up_nodes();
        up.iter().all(|&o| {
            up.iter().all(|&m| {
                o == m
                    || s.node(o)
                        .and_then(|n| n.member_brief(s.name(m)))
                        .is_some_and(|b| b.status == MemberStatus::Alive)
            })
        })
    };
    t.wait(
        &mut sim,
        10 * SECOND,
        "every node to list every other alive",
        all_alive,
    );
    // A real broadcast and a real write still reach everyone.
    let origin = 7;
    let id = sim
        .with_node(origin, |n, now| n.broadcast(now, "real", b"hi".to_vec()))
        .unwrap()
        .unwrap();
    // First, every other node is told the origin's writes go up to a million (sealed under
    // the cluster key when the adversary holds it): the origin's next write must still arrive.
    forge_watermark(&mut sim, &key_ring, origin, 1_000_000);
    sim.set(origin, "real-key", "v").unwrap();
    let written_at = sim.now();
    let has_write = |s: &Sim| {
        s.up_nodes().into_iter().all(|i| {
            i == origin
                || s.node(i)
                    .and_then(|n| n.get(s.name(origin), "real-key"))
                    .is_some()
        })
    };
    let mut write_took = None;
    // A crash while the attacks go on: detected within twice the configured bound.
    let victim = 42;
    let crashed_at = sim.now();
    sim.crash(victim);
    let bound = config.detection_bound(N);
    let deadline = crashed_at + 2 * bound;
    while !sim.all_see_status(victim, MemberStatus::Failed) {
        t.check(sim.now() < deadline, || {
            format!(
                "the crash of node {victim} was not detected within twice the bound ({:?})",
                2 * bound
            )
        });
        adversary.attack(&mut sim);
        step += 1;
        sim.run_for(SECOND / 20);
        check_step(t, &sim, Some(victim), step);
        if write_took.is_none() && has_write(&sim) {
            write_took = Some(sim.now() - written_at);
        }
    }
    let took = sim.now() - crashed_at;
    eprintln!(
        "crash detected {:.2} s after it with {} hostile datagrams sent ({} bytes); bound {:.1} s; \
         {} datagrams between the nodes",
        took.as_secs_f64(),
        adversary.sent,
        adversary.bytes_sent,
        bound.as_secs_f64(),
        sim.net_stats().packets_sent
    );
    // Not frozen by forged watermarks: the real write reaches every node (a replica that took a
    // forged claim reports the write to the owner, whose refutation resets it).
    let write_took = match write_took {
        Some(took) => took,
        None => {
            t.wait(
                &mut sim,
                10 * SECOND,
                "the real write to reach every node",
                has_write,
            );
            sim.now() - written_at
        }
    };
    let refuted: u64 = sim
        .up_nodes()
        .into_iter()
        .filter_map(|i| sim.node_stats(i))
        .map(|s| s.state_claims_refuted)
        .sum();
    eprintln!(
        "the real write, made right after a forged watermark on its owner reached every other \
         node, was everywhere {:.2} s later; forged watermark claims refuted in the run: {refuted}",
        write_took.as_secs_f64()
    );
    t.check(write_took < 5 * SECOND, || {
        format!("the real write took {write_took:?} to reach every node")
    });
    let delivered = sim
        .events()
        .iter()
        .filter(|e| matches!(&e.event, chatter_core::Event::Message(d) if d.id == id))
        .count();
    t.check(delivered >= N - 1, || {
        format!("the real broadcast reached {delivered} of {} nodes", N - 1)
    });
    if sealed {
        // Every datagram of the adversary opened (it sealed them under the cluster's key), and
        // no honest one was refused but as `too_old`: a node that takes a burst of forged
        // broadcasts pushes each to every peer of its cold tree, so two of its datagrams to one
        // peer are about 100 counters apart, and when the network reorders them the older is
        // below the peer's 256-counter window of that sender (a cost of the window being in the
        // sender's counter space; the tree repairs the loss).
        let drops = sim.total_stats().dropped_sealed;
        t.check(drops.total() == drops.too_old, || {
            format!(
                "the seal layer refused datagrams in a cluster where all hold the key: {drops:?}"
            )
        });
        t.check(adversary.wrapped.cluster_key == adversary.sent, || {
            format!("{:?} of {} sent", adversary.wrapped, adversary.sent)
        });
        eprintln!(
            "honest datagrams refused as too old (reordered bursts): {}",
            drops.too_old
        );
    }
}

/// `stats` with one more refusal of the seal layer for the reason a datagram of `wrapping`
/// meets; a replay is `replayed` if it is within its sender's window, `too_old` if below it.
fn one_more_refusal(stats: &Stats, wrapping: Wrapping, too_old: bool) -> Stats {
    let mut expected = *stats;
    let drops = &mut expected.dropped_sealed;
    match wrapping {
        Wrapping::Plain => drops.not_sealed += 1,
        Wrapping::OwnKey => drops.unknown_key += 1,
        Wrapping::ForgedKeyId => drops.bad_tag += 1,
        Wrapping::Replay if too_old => drops.too_old += 1,
        Wrapping::Replay => drops.replayed += 1,
        Wrapping::ClusterKey => unreachable!("the adversary has no key"),
    }
    expected
}

/// Every node's view and state: status, life and address of every member it lists, and the
/// key/value version of each member's replica.
fn views(sim: &Sim) -> Vec<(usize, u64, Vec<String>)> {
    (0..sim.len())
        .filter_map(|i| {
            let node = sim.node(i)?;
            let mut rows: Vec<String> = node
                .member_briefs()
                .map(|(name, b)| {
                    format!(
                        "{name} {:?} gen {} inc {} at {} kv {:?}",
                        b.status,
                        b.generation,
                        b.incarnation,
                        b.addr,
                        node.state_version(name)
                    )
                })
                .collect();
            rows.sort();
            Some((i, node.fingerprint(), rows))
        })
        .collect()
}

/// Every counter of `stats` but the seal layer's refusals.
fn without_seal_drops(mut stats: Stats) -> Stats {
    stats.dropped_sealed = SealDrops::default();
    stats
}

/// An outsider without the key of a sealed cluster: its attacks plain, sealed under its own key,
/// sealed under its own key with the cluster key's id, and replays of captured honest
/// datagrams. Each one is refused by the seal layer for its reason and changes no other counter,
/// no event and no datagram; at the end every node's view and state are those of a twin
/// simulation (same seed) that no adversary touched.
#[test]
fn an_adversary_without_the_key_gets_no_datagram_accepted() {
    let t = SimTest::new("an_adversary_without_the_key_gets_no_datagram_accepted");
    const NODES: usize = 50;
    const ATTACKS: u64 = 800;
    let make = || {
        let mut sim = Sim::with_warm_cluster(t.config(Config::lan()), NODES).unwrap();
        sim.seal_cluster().unwrap();
        // Replays are drawn from everything captured: refused as `replayed` within their
        // sender's window, `too_old` below it; either way nothing else changes.
        sim.set_capture(chatter_sim::MAX_CAPTURE);
        sim.run_for(40 * SECOND);
        sim
    };
    let mut sim = make();
    let mut twin = make();
    let honest_drops = sim.total_stats().dropped_sealed;
    let mut adversary = Adversary::new(t.seed ^ 0x5ea1, SocketAddr::from(([203, 0, 113, 9], 2428)))
        .with_key(Key::Without);
    for step in 1..=ATTACKS {
        let before = sim.total_stats();
        let events = sim.events().len();
        let net = sim.net_stats();
        let Some(sent) = adversary.attack(&mut sim) else {
            t.fail(format!("step {step}: the adversary sent nothing"));
        };
        let after = sim.total_stats();
        let Sent { wrapping, to, .. } = sent;
        let too_old = after.dropped_sealed.too_old > before.dropped_sealed.too_old;
        t.check(
            after == one_more_refusal(&before, wrapping, too_old),
            || {
                format!(
                "step {step}: a {wrapping:?} datagram to node {to} ({:?}) changed the counters \
                 other than by one refusal:\nbefore {before:?}\nafter  {after:?}",
                sent.attack
            )
            },
        );
        t.check(sim.events().len() == events, || {
            format!("step {step}: a {wrapping:?} datagram to node {to} made an event")
        });
        t.check(sim.net_stats() == net, || {
            format!("step {step}: a {wrapping:?} datagram to node {to} was answered")
        });
        sim.run_for(SECOND / 40);
        twin.run_for(SECOND / 40);
        t.check_invariants(&sim);
    }
    sim.run_for(5 * SECOND);
    twin.run_for(5 * SECOND);
    let w = adversary.wrapped;
    eprintln!(
        "{} datagrams ({} bytes) without the key: {} plain, {} under its own key, {} under the \
         cluster's key id, {} replays; seal-layer refusals {:?}",
        adversary.sent,
        adversary.bytes_sent,
        w.plain,
        w.own_key,
        w.forged_key_id,
        w.replay,
        sim.total_stats().dropped_sealed
    );
    t.check(
        w.plain > 0 && w.own_key > 0 && w.forged_key_id > 0 && w.replay > 0,
        || format!("every wrapping must be tried: {w:?}"),
    );
    // Zero accepted: the refusals grew by exactly the number of adversary datagrams, replays as
    // replays.
    let drops = sim.total_stats().dropped_sealed;
    let total = drops.total() - honest_drops.total();
    t.check(total == adversary.sent, || {
        format!(
            "{total} refusals for {} adversary datagrams",
            adversary.sent
        )
    });
    let replays = drops.replayed + drops.too_old - honest_drops.replayed - honest_drops.too_old;
    t.check(replays == w.replay, || {
        format!("{replays} refused as replays for {} replays", w.replay)
    });
    // Nothing changed: the same views, state and counters as the untouched twin.
    t.check(views(&sim) == views(&twin), || {
        "the views or key/value state differ from the twin simulation no adversary touched".into()
    });
    t.check(
        without_seal_drops(sim.total_stats()) == without_seal_drops(twin.total_stats()),
        || {
            format!(
                "the counters differ from the twin's:\n{:?}\n{:?}",
                sim.total_stats(),
                twin.total_stats()
            )
        },
    );
    t.check(sim.all_agree_alive(), || {
        "the cluster does not agree".into()
    });
}

/// Delivers to every running node but `owner` a delta claiming `owner`'s writes reach
/// `watermark`, from an address no member holds; sealed under `ring` when given.
fn forge_watermark(
    sim: &mut Sim,
    ring: &Option<chatter_seal::Keyring>,
    owner: usize,
    watermark: u64,
) {
    let forged = chatter_core::wire::Message::StateDelta(chatter_core::wire::StateDelta {
        node: sim.name(owner).to_owned(),
        // The owner's present life: forged accusations at the incarnation limit may have made
        // it begin a new one.
        generation: sim.node(owner).map_or(0, |n| n.local_member().generation),
        from_version: 0,
        to_version: watermark,
        reset: false,
        entries: Vec::new(),
    });
    let cluster_name = sim.config().node_config.cluster_name.clone();
    let plain = chatter_core::wire::encode_packet(
        chatter_core::wire::cluster_hash(&cluster_name),
        &[forged],
    );
    let from = SocketAddr::from(([203, 0, 113, 10], 2428));
    let mut sealer = chatter_seal::Sealer::new(0x5eed);
    for i in sim.up_nodes() {
        if i == owner {
            continue;
        }
        let datagram = match ring {
            Some(ring) => match sealer.seal(ring, &cluster_name, &plain) {
                Ok(sealed) => sealed,
                Err(e) => panic!("sealing the forged delta: {e}"),
            },
            None => plain.clone(),
        };
        sim.with_node(i, |n, now| n.handle_datagram(now, from, &datagram));
    }
}
