//! Gossip encryption on a perfect in-memory network: a keyed cluster works, outsiders (another
//! key, no key) achieve nothing and are counted, replays change nothing, the three migration
//! steps lose no member, and no sealed datagram exceeds the packet budget.

use std::time::Duration;

use chatter_seal::{is_sealed, Key, Keyring, Opener};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::testkit::{addr, Net};
use crate::wire::{self, Message};
use crate::{Config, Event, MemberStatus, Mode, Node};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A keyring from a seeded RNG: tests are deterministic, the daemon uses the OS RNG.
fn keyring(seed: u64) -> Keyring {
    Keyring::new(Key::generate(&mut ChaCha20Rng::seed_from_u64(seed)))
}

/// Each node's sealing epoch, distinct per node and per call.
fn epoch(node: usize, call: u64) -> u64 {
    0x5eed_0000_0000 + (node as u64) * 1000 + call
}

/// `n` nodes, all sealed with the same key, converged.
fn sealed_net(n: usize, config: Config) -> Net {
    let ring = keyring(1);
    let mut net = Net::with_setup(n, config, |i, node| {
        node.set_keyring(Some(ring.clone()), Mode::Sealed, epoch(i, 0))
            .unwrap();
    });
    net.run_until(secs(10), Net::all_see_alive);
    net
}

/// The messages in a datagram, opened with `ring` by a fresh opener (no replay state).
fn messages_of(ring: &Keyring, payload: &[u8]) -> Vec<Message> {
    let plain = Opener::new().open(ring, "chatter", payload).unwrap();
    wire::decode_packet(&plain, wire::cluster_hash("chatter"), 65_507).unwrap()
}

fn failed_events(net: &Net) -> usize {
    net.events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Failed(_)))
        .count()
}

/// What a node believes: every member's (name, status, incarnation) and every key/value.
fn view(node: &Node) -> Vec<String> {
    let mut v: Vec<String> = node
        .members()
        .map(|m| format!("{} {:?} {}", m.name, m.status, m.incarnation))
        .collect();
    let names: Vec<String> = node.members().map(|m| m.name).collect();
    for name in names.iter().chain([&node.name().to_owned()]) {
        if let Some(state) = node.node_state(name) {
            v.extend(state.map(|(k, kv)| format!("{name} {k} {kv:?}")));
        }
    }
    v
}

#[test]
fn sealed_cluster_converges_sends_nothing_in_the_clear_and_detects_a_crash() {
    let mut net = sealed_net(4, Config::local());
    net.tap = Some(Vec::new());
    net.run_for(secs(3));
    let tap = net.tap.take().unwrap();
    assert!(!tap.is_empty());
    assert!(
        tap.iter().all(|(_, _, p)| is_sealed(p)),
        "a plain datagram was sent"
    );
    for node in &net.nodes {
        assert_eq!(node.stats().dropped_sealed.total(), 0);
    }
    net.crashed[3] = true;
    net.run_until(secs(30), |net| {
        (0..3).all(|i| net.status(i, 3) == Some(MemberStatus::Failed))
    });
    assert_eq!(failed_events(&net), 3, "only the crashed node fails");
}

#[test]
fn outsiders_with_another_key_or_none_cannot_join_inject_or_change_a_view() {
    // Nodes 0-2 share a key; node 3 has another key, node 4 none. All try to join node 0.
    let ours = keyring(1);
    let theirs = keyring(2);
    let mut net = Net::with_setup(5, Config::local(), |i, node| match i {
        0..=2 => node
            .set_keyring(Some(ours.clone()), Mode::Sealed, epoch(i, 0))
            .unwrap(),
        3 => node
            .set_keyring(Some(theirs.clone()), Mode::Sealed, epoch(i, 0))
            .unwrap(),
        _ => {}
    });
    // The joins already sent (before the tap) were refused too.
    let dropped_at_start: Vec<(u64, u64)> = net.nodes[..3]
        .iter()
        .map(|n| {
            (
                n.stats().dropped_sealed.unknown_key,
                n.stats().dropped_sealed.not_sealed,
            )
        })
        .collect();
    assert!(dropped_at_start.iter().any(|(k, p)| k + p > 0));
    net.tap = Some(Vec::new());
    net.run_until(secs(10), |net| {
        (0..3).all(|i| (0..3).all(|j| i == j || net.status(i, j) == Some(MemberStatus::Alive)))
    });
    net.run_for(secs(10));
    let views: Vec<Vec<String>> = net.nodes[..3].iter().map(view).collect();

    // Forged news and injected messages, plain and sealed with the wrong key.
    let forged = [
        Message::Suspect(wire::Suspect {
            name: "n1".into(),
            generation: 1,
            incarnation: 50,
            from: "n3".into(),
            unreachable: false,
        }),
        Message::Inject(wire::Inject {
            tag: "DebugMessage".into(),
            payload: b"{}".to_vec(),
        }),
    ];
    let plain = wire::encode_packet(wire::cluster_hash("chatter"), &forged);
    let sealed_wrong = chatter_seal::Sealer::new(99)
        .seal(&theirs, "chatter", &plain)
        .unwrap();
    let inject_wrong =
        wire::encode_inject_sealed(&theirs, 100, "chatter", "DebugMessage", b"{}").unwrap();
    for i in 0..3 {
        let now = net.now;
        for (from, bytes) in [(3, &sealed_wrong), (4, &plain), (3, &inject_wrong)] {
            net.nodes[i].handle_datagram(now, addr(from), bytes);
            net.tap.as_mut().unwrap().push((from, i, bytes.clone()));
        }
    }
    net.run_for(secs(5));

    for i in 0..3 {
        for outsider in [3, 4] {
            assert_eq!(net.status(i, outsider), None, "n{i} lists n{outsider}");
        }
        assert_eq!(net.nodes[i].stats().messages_injected, 0);
    }
    assert!(net
        .events
        .iter()
        .all(|(_, e)| !matches!(e, Event::Message(_) | Event::Suspect(_) | Event::Failed(_))));
    for outsider in [3, 4] {
        assert_eq!(net.nodes[outsider].num_alive(), 0, "n{outsider} joined");
    }
    // Every datagram of the outsiders to a member was refused, and counted by reason.
    let tap = net.tap.take().unwrap();
    let from_outsiders = |o: usize| {
        tap.iter()
            .filter(|(from, to, _)| *from == o && *to < 3)
            .count() as u64
    };
    let unknown_key: u64 = (0..3)
        .map(|i| net.nodes[i].stats().dropped_sealed.unknown_key - dropped_at_start[i].0)
        .sum();
    let not_sealed: u64 = (0..3)
        .map(|i| net.nodes[i].stats().dropped_sealed.not_sealed - dropped_at_start[i].1)
        .sum();
    assert!(from_outsiders(3) > 3 && from_outsiders(4) > 3);
    assert_eq!(unknown_key, from_outsiders(3));
    assert_eq!(not_sealed, from_outsiders(4));
    // Views only moved on by the members' own traffic: no outsider in them.
    for (i, before) in views.iter().enumerate() {
        let after = view(&net.nodes[i]);
        assert!(after
            .iter()
            .all(|l| !l.starts_with("n3 ") && !l.starts_with("n4 ")));
        assert_eq!(before.len(), after.len());
    }
}

#[test]
fn replayed_sealed_datagrams_change_nothing_and_deliver_nothing_twice() {
    let ring = keyring(1);
    let mut net = sealed_net(3, Config::local());
    net.tap = Some(Vec::new());
    // Key/value pushes, a user message, and a suspicion that is refuted: Alive and Suspect.
    let now = net.now;
    net.nodes[0].set(now, "k", b"v1".to_vec()).unwrap();
    net.nodes[1]
        .broadcast(now, "DebugMessage", b"{}".to_vec())
        .unwrap();
    net.silent[2] = true;
    net.run_until(secs(20), |net| {
        net.status(0, 2) == Some(MemberStatus::Suspect)
    });
    net.silent[2] = false;
    net.run_until(secs(20), Net::all_see_alive);
    net.run_for(secs(2));
    // An injected message, sealed by a key holder (chatter-inject).
    let inject = wire::encode_inject_sealed(&ring, 7, "chatter", "DebugMessage", b"{}").unwrap();
    let now = net.now;
    net.nodes[0].handle_datagram(now, addr(100), &inject);
    net.flush();
    net.run_for(secs(2));
    assert_eq!(net.nodes[0].stats().messages_injected, 1);
    let mut tap = net.tap.take().unwrap();
    tap.push((100, 0, inject));

    let kinds = |pred: fn(&Message) -> bool| {
        tap.iter()
            .filter(|(from, _, p)| *from < 3 && messages_of(&ring, p).iter().any(pred))
            .count()
    };
    assert!(kinds(|m| matches!(m, Message::Alive(_))) > 0);
    assert!(kinds(|m| matches!(m, Message::Suspect(_))) > 0);
    assert!(kinds(|m| matches!(m, Message::StatePush(_))) > 0);
    assert!(kinds(|m| matches!(m, Message::Gossip(_))) > 0);

    let views: Vec<Vec<String>> = net.nodes.iter().map(view).collect();
    let stats: Vec<_> = net.nodes.iter().map(|n| *n.stats()).collect();
    let events = net.events.len();
    // Every captured datagram, handed again to the node it was sent to.
    let now = net.now;
    for (from, to, payload) in &tap {
        net.nodes[*to].handle_datagram(now, addr(*from), payload);
    }
    for node in &mut net.nodes {
        assert!(node.poll_event().is_none(), "a replay caused an event");
        assert!(node.poll_transmit().is_none(), "a replay caused an answer");
    }
    assert_eq!(net.events.len(), events);
    for (i, node) in net.nodes.iter().enumerate() {
        assert_eq!(view(node), views[i]);
        let (before, after) = (&stats[i], node.stats());
        assert_eq!(after.packets_received, before.packets_received);
        assert_eq!(after.messages_delivered, before.messages_delivered);
        assert_eq!(after.messages_injected, before.messages_injected);
        let refused = |s: &crate::Stats| s.dropped_sealed.replayed + s.dropped_sealed.too_old;
        let sent_to = tap.iter().filter(|(_, to, _)| *to == i).count() as u64;
        assert_eq!(refused(after) - refused(before), sent_to);
    }
}

#[test]
fn migration_in_three_steps_loses_no_member_and_sealed_refuses_plaintext() {
    let n = 4;
    let ring = keyring(1);
    let mut net = Net::new(n, Config::local());
    net.run_until(secs(10), Net::all_see_alive);
    for (step, mode) in [Mode::AcceptSealed, Mode::SendSealed, Mode::Sealed]
        .into_iter()
        .enumerate()
    {
        // One node at a time (a rolling change), with time between them.
        for i in 0..n {
            net.nodes[i]
                .set_keyring(Some(ring.clone()), mode, epoch(i, step as u64))
                .unwrap();
            net.run_for(secs(2));
            assert!(net.all_see_alive(), "member lost at step {mode} on n{i}");
        }
    }
    net.tap = Some(Vec::new());
    net.run_for(secs(5));
    assert!(net.all_see_alive());
    assert_eq!(failed_events(&net), 0);
    assert!(net.tap.take().unwrap().iter().all(|(_, _, p)| is_sealed(p)));
    // A sealed node refuses plaintext.
    let plain = wire::encode_inject("chatter", "DebugMessage", b"{}");
    let now = net.now;
    let before = net.nodes[0].stats().dropped_sealed.not_sealed;
    net.nodes[0].handle_datagram(now, addr(100), &plain);
    assert_eq!(net.nodes[0].stats().dropped_sealed.not_sealed, before + 1);
    assert_eq!(net.nodes[0].stats().messages_injected, 0);
}

#[test]
fn a_plaintext_node_drops_sealed_datagrams_and_keyed_modes_need_a_key() {
    let mut net = Net::new(1, Config::local());
    assert_eq!(
        net.nodes[0].set_keyring(None, Mode::Sealed, 1),
        Err(crate::EncryptionError::MissingKey)
    );
    let sealed = wire::encode_inject_sealed(&keyring(1), 1, "chatter", "T", b"{}").unwrap();
    let now = net.now;
    net.nodes[0].handle_datagram(now, addr(100), &sealed);
    assert_eq!(net.nodes[0].stats().dropped_version, 1);
    assert_eq!(net.nodes[0].stats().messages_injected, 0);
}

#[test]
fn sealed_datagrams_never_exceed_the_packet_budget() {
    let config = Config {
        packet_budget: 700,
        max_tags_size: 256,
        max_value_size: 400,
        max_message_size: 400,
        ..Config::local()
    };
    let mut net = sealed_net(6, config.clone());
    net.tap = Some(Vec::new());
    let now = net.now;
    for i in 0..6 {
        for k in 0..20 {
            net.nodes[i]
                .set(now, &format!("key{k}"), vec![b'x'; 400])
                .unwrap();
        }
        net.nodes[i]
            .broadcast(now, "DebugMessage", vec![b'y'; 400])
            .unwrap();
    }
    net.run_for(secs(20));
    let tap = net.tap.take().unwrap();
    assert!(tap.len() > 100);
    let largest = tap.iter().map(|(_, _, p)| p.len()).max().unwrap_or(0);
    assert!(
        largest <= config.packet_budget,
        "a datagram of {largest} bytes"
    );
    assert!(
        largest > config.packet_budget - 100,
        "budgets are not used: {largest}"
    );
    assert!(tap.iter().all(|(_, _, p)| is_sealed(p)));
    assert_eq!(net.nodes[0].budget(), 700 - chatter_seal::SEAL_OVERHEAD);
}

#[test]
fn a_stranger_gets_no_more_sealed_bytes_than_it_sent() {
    // A key holder that is not a member asks for the member table with a small request.
    let ring = keyring(1);
    let mut net = sealed_net(5, Config::local());
    let req = Message::SyncRequest(wire::SyncRequest {
        from: "stranger".into(),
        fingerprint: 0,
        state_fingerprint: 0,
        padding: vec![0; 200],
    });
    let plain = wire::encode_packet(wire::cluster_hash("chatter"), &[req]);
    let sealed = chatter_seal::Sealer::new(42)
        .seal(&ring, "chatter", &plain)
        .unwrap();
    let now = net.now;
    net.nodes[0].handle_datagram(now, addr(100), &sealed);
    let mut answered = 0;
    while let Some(t) = net.nodes[0].poll_transmit() {
        if t.dst == addr(100) {
            assert!(is_sealed(&t.payload));
            answered += t.payload.len();
        }
    }
    assert!(answered > 0, "no answer at all");
    assert!(
        answered <= sealed.len(),
        "{answered} bytes for {}",
        sealed.len()
    );
}

#[test]
fn setting_the_same_epoch_again_does_not_restart_the_counter() {
    // Two settings with one epoch: the datagrams of both must never share a nonce, so the
    // second setting keeps counting where the first stopped and a receiver opens both.
    let ring = keyring(1);
    let mut net = sealed_net(2, Config::local());
    net.tap = Some(Vec::new());
    net.run_for(secs(1));
    net.nodes[0]
        .set_keyring(Some(ring.clone()), Mode::Sealed, epoch(0, 0))
        .unwrap();
    net.run_for(secs(3));
    assert!(net.all_see_alive());
    for node in &net.nodes {
        assert_eq!(node.stats().dropped_sealed.total(), 0);
    }
    let mut opener = Opener::new();
    for (from, _, payload) in net.tap.take().unwrap() {
        if from == 0 {
            assert!(
                opener.open(&ring, "chatter", &payload).is_ok(),
                "a nonce repeated"
            );
        }
    }
}
