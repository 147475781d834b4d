//! Key rotation on the perfect in-memory network: a whole rotation loses no member, refusals
//! happen before anything is sent, only sealed commands from live members count, a
//! retransmitted command is applied once, and the report tells silent from down members.

use std::time::Duration;

use chatter_seal::{Key, Keyring, Opener, Sealer};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::testkit::{addr, Net};
use crate::wire;
use crate::{Config, MemberStatus};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn key(seed: u64) -> Key {
    Key::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

/// `n` nodes sealed with the keyring of `key(1)`, converged.
fn sealed_net(n: usize, config: Config) -> Net {
    let ring = Keyring::new(key(1));
    let mut net = Net::with_setup(n, config, |i, node| {
        node.set_keyring(Some(ring.clone()), Mode::Sealed, 0xfeed_0000 + i as u64)
            .unwrap();
    });
    net.run_until(secs(10), Net::all_see_alive);
    net.events.clear();
    net
}

fn fingerprints(node: &Node) -> Vec<Fingerprint> {
    node.keyring()
        .map(|k| k.list().iter().map(|i| i.fingerprint).collect())
        .unwrap_or_default()
}

/// Starts `op` on node `origin` and runs until its report arrives.
fn run_op(net: &mut Net, origin: usize, op: KeyOp) -> KeyReport {
    let now = net.now;
    let id = net.nodes[origin].start_key_op(now, op).unwrap();
    net.flush();
    let mut report = None;
    net.run_until(secs(30), |net| {
        report = net.events.iter().find_map(|(i, e)| match e {
            Event::KeyRotation(r) if *i == origin && r.id == id => Some(r.clone()),
            _ => None,
        });
        report.is_some()
    });
    report.unwrap()
}

fn suspicions(net: &Net) -> usize {
    net.events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Suspect(_) | Event::Failed(_)))
        .count()
}

/// A sealed datagram of `messages` as a member holding `ring` would send it.
fn sealed(ring: &Keyring, epoch: u64, messages: &[Message]) -> Vec<u8> {
    let plain = wire::encode_packet(wire::cluster_hash("chatter"), messages);
    Sealer::new(epoch).seal(ring, "chatter", &plain).unwrap()
}

#[test]
fn install_use_remove_reaches_every_member_and_suspects_nobody() {
    let mut net = sealed_net(4, Config::local());
    let (old, new) = (key(1), key(2));

    let report = run_op(&mut net, 0, KeyOp::Install(new.clone()));
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.answers.len(), 4);
    assert!(report.silent.is_empty() && report.not_reached.is_empty());
    for node in &net.nodes {
        assert_eq!(fingerprints(node), [old.fingerprint(), new.fingerprint()]);
    }

    let report = run_op(&mut net, 1, KeyOp::Use(new.fingerprint()));
    assert!(report.complete(), "{report:?}");
    let report = run_op(&mut net, 2, KeyOp::Remove(old.fingerprint()));
    assert!(report.complete(), "{report:?}");
    for answer in report.answers.values() {
        assert_eq!(
            answer.keys,
            [KeyInfo {
                fingerprint: new.fingerprint(),
                primary: true
            }]
        );
    }
    for node in &net.nodes {
        assert_eq!(fingerprints(node), [new.fingerprint()]);
    }
    // Three changes on every node, each announced for the driver to persist.
    let changes = net
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::KeyringChanged(_)))
        .count();
    assert_eq!(changes, 12);

    // The cluster goes on under the new key alone.
    net.run_for(secs(5));
    assert!(net.all_see_alive());
    assert_eq!(suspicions(&net), 0, "{:?}", net.events);
    for node in &net.nodes {
        assert_eq!(node.stats().dropped_sealed.total(), 0);
        assert_eq!(node.stats().dropped_key_messages, 0);
    }

    let report = run_op(&mut net, 3, KeyOp::List);
    assert!(report.complete());
    assert_eq!(report.op, KeyOpKind::List);
    assert_eq!(report.answers.len(), 4);
}

#[test]
fn removing_the_primary_or_using_an_unknown_key_is_refused_before_anything_is_sent() {
    let mut net = sealed_net(3, Config::local());
    net.tap = Some(Vec::new());
    let now = net.now;
    let primary = key(1).fingerprint();
    assert_eq!(
        net.nodes[0].start_key_op(now, KeyOp::Remove(primary)),
        Err(KeyOpError::Keyring(KeyringError::RemovePrimary(primary)))
    );
    let unknown = key(9).fingerprint();
    assert_eq!(
        net.nodes[0].start_key_op(now, KeyOp::Use(unknown)),
        Err(KeyOpError::Keyring(KeyringError::NotInstalled(unknown)))
    );
    net.flush();
    let ring = Keyring::new(key(1));
    for (_, _, payload) in net.tap.take().unwrap() {
        let plain = Opener::new().open(&ring, "chatter", &payload).unwrap();
        let messages = wire::decode_packet(&plain, wire::cluster_hash("chatter"), 65_507).unwrap();
        assert!(
            !messages
                .iter()
                .any(|m| matches!(m, Message::KeyCommand(_) | Message::KeyAck(_))),
            "a refused operation sent {messages:?}"
        );
    }
    assert!(net.nodes.iter().all(|n| fingerprints(n) == [primary]));
    assert!(!net
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::KeyRotation(_) | Event::KeyringChanged(_))));
}

#[test]
fn an_operation_needs_the_sealed_mode() {
    for mode in [Mode::AcceptSealed, Mode::SendSealed] {
        let ring = Keyring::new(key(1));
        let mut net = Net::with_setup(2, Config::local(), |i, node| {
            node.set_keyring(Some(ring.clone()), mode, 0xfeed_0000 + i as u64)
                .unwrap();
        });
        net.run_until(secs(10), Net::all_see_alive);
        let now = net.now;
        assert_eq!(
            net.nodes[0].start_key_op(now, KeyOp::Install(key(2))),
            Err(KeyOpError::NotSealed(mode))
        );
        assert_eq!(fingerprints(&net.nodes[0]), [key(1).fingerprint()]);
    }
    let mut net = Net::new(2, Config::local());
    let now = net.now;
    assert_eq!(
        net.nodes[0].start_key_op(now, KeyOp::List),
        Err(KeyOpError::NotSealed(Mode::Plaintext))
    );
}

#[test]
fn a_plain_datagram_or_a_stranger_cannot_carry_a_key_command() {
    // Node 0 accepts plain datagrams (migration step 1): a plain command from a live member's
    // address must still change nothing.
    let ring = Keyring::new(key(1));
    let mut net = Net::with_setup(2, Config::local(), |i, node| {
        node.set_keyring(
            Some(ring.clone()),
            Mode::AcceptSealed,
            0xfeed_0000 + i as u64,
        )
        .unwrap();
    });
    net.run_until(secs(10), Net::all_see_alive);
    let install = |id| {
        Message::KeyCommand(KeyCommand {
            id,
            op: WireKeyOp::Install(KeyMaterial(*key(2).secret_bytes())),
        })
    };
    let now = net.now;
    let plain = wire::encode_packet(wire::cluster_hash("chatter"), &[install(1)]);
    net.nodes[0].handle_datagram(now, addr(1), &plain);
    assert_eq!(fingerprints(&net.nodes[0]), [key(1).fingerprint()]);
    assert_eq!(net.nodes[0].stats().dropped_key_messages, 1);

    // Sealed with the cluster's key, but from an address no live member has.
    let stranger: SocketAddr = ([10, 9, 9, 9], 7000).into();
    net.nodes[0].handle_datagram(now, stranger, &sealed(&ring, 77, &[install(2)]));
    assert_eq!(fingerprints(&net.nodes[0]), [key(1).fingerprint()]);
    assert_eq!(net.nodes[0].stats().dropped_key_messages, 2);

    // Sealed, from the live member: applied.
    net.nodes[0].handle_datagram(now, addr(1), &sealed(&ring, 78, &[install(3)]));
    assert_eq!(
        fingerprints(&net.nodes[0]),
        [key(1).fingerprint(), key(2).fingerprint()]
    );
    assert_eq!(net.nodes[0].stats().dropped_key_messages, 2);
}

#[test]
fn a_retransmitted_command_is_applied_once_and_answered_with_the_first_outcome() {
    let mut net = sealed_net(2, Config::local());
    let mut ring = Keyring::new(key(1));
    ring.install(key(2)).unwrap();
    net.nodes[0]
        .set_keyring(Some(ring.clone()), Mode::Sealed, 0xfeed_0000)
        .unwrap();
    let command = |id, op| Message::KeyCommand(KeyCommand { id, op });
    let acks = |net: &mut Net| -> Vec<KeyAck> {
        let mut out = Vec::new();
        while let Some(t) = net.nodes[0].poll_transmit() {
            let plain = Opener::new().open(&ring, "chatter", &t.payload).unwrap();
            for m in wire::decode_packet(&plain, wire::cluster_hash("chatter"), 65_507).unwrap() {
                if let Message::KeyAck(ack) = m {
                    out.push(ack);
                }
            }
        }
        out
    };
    let now = net.now;
    let use_new = command(5, WireKeyOp::Use(key(2).fingerprint().0));
    net.nodes[0].handle_datagram(
        now,
        addr(1),
        &sealed(&ring, 100, std::slice::from_ref(&use_new)),
    );
    let first = acks(&mut net);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].refusal, None);
    assert_eq!(fingerprints(&net.nodes[0])[0], key(2).fingerprint());

    // Another command puts the old key back first.
    let use_old = command(6, WireKeyOp::Use(key(1).fingerprint().0));
    net.nodes[0].handle_datagram(now, addr(1), &sealed(&ring, 101, &[use_old]));
    acks(&mut net);
    assert_eq!(fingerprints(&net.nodes[0])[0], key(1).fingerprint());

    // The first command again, in a new datagram (a retransmission): not applied again, and
    // answered as the first time.
    net.nodes[0].handle_datagram(now, addr(1), &sealed(&ring, 102, &[use_new]));
    assert_eq!(acks(&mut net), first);
    assert_eq!(fingerprints(&net.nodes[0])[0], key(1).fingerprint());

    // A refusal is remembered the same way.
    let remove_primary = command(7, WireKeyOp::Remove(key(1).fingerprint().0));
    net.nodes[0].handle_datagram(
        now,
        addr(1),
        &sealed(&ring, 103, std::slice::from_ref(&remove_primary)),
    );
    let refused = acks(&mut net);
    assert_eq!(refused[0].refusal, Some(KeyRefusal::Primary));
    net.nodes[0].handle_datagram(now, addr(1), &sealed(&ring, 104, &[remove_primary]));
    assert_eq!(acks(&mut net), refused);
}

#[test]
fn the_report_lists_silent_and_down_members() {
    let config = Config {
        key_rotation_timeout: Duration::from_millis(600),
        ..Config::local()
    };
    let mut net = sealed_net(5, config);
    // Node 4 crashed long enough ago to be failed everywhere.
    net.crashed[4] = true;
    net.run_until(secs(30), |net| {
        (0..4).all(|i| net.status(i, 4) == Some(MemberStatus::Failed))
    });
    // Node 3 hangs right now: still listed as live when the operation starts.
    net.silent[3] = true;
    let report = run_op(&mut net, 0, KeyOp::Install(key(2)));
    assert_eq!(report.not_reached, ["n4"]);
    assert_eq!(report.silent, ["n3"]);
    assert_eq!(
        report
            .answers
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["n0", "n1", "n2"]
    );
    assert!(!report.complete());
    // The origin re-sent to the silent member every probe interval until the timeout.
    assert!(report.answers.values().all(|a| a.refusal.is_none()));
}

#[test]
fn a_member_failing_during_the_operation_is_reported_not_reached() {
    let config = Config {
        key_rotation_timeout: Duration::from_secs(20),
        ..Config::local()
    };
    let mut net = sealed_net(4, config);
    net.crashed[3] = true;
    let report = run_op(&mut net, 0, KeyOp::List);
    assert_eq!(report.not_reached, ["n3"]);
    assert!(report.silent.is_empty());
}

#[test]
fn at_most_a_few_operations_run_at_once() {
    let mut net = sealed_net(2, Config::local());
    net.silent[1] = true;
    let now = net.now;
    for _ in 0..MAX_KEY_OPS_IN_FLIGHT {
        net.nodes[0].start_key_op(now, KeyOp::List).unwrap();
    }
    assert_eq!(
        net.nodes[0].start_key_op(now, KeyOp::List),
        Err(KeyOpError::Busy)
    );
}
