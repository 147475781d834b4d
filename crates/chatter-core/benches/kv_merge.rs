//! A node receiving another node's whole key/value state through anti-entropy, as a joiner does:
//! handling the `StateDelta` datagrams the owner sends in answer to its empty digest, applied to
//! a fresh replica.
//!
//! The datagrams are produced by the owner's own `Node` (the public API only): the receiver joins
//! through the owner, the two exchange fingerprints, digests and member tables on a perfect
//! network, and the owner's delta datagrams are captured instead of delivered. Each measured
//! iteration then takes a fresh receiver brought to the moment before the deltas (it knows the
//! owner as a member, holds none of its state; built outside the timed part) and hands it every
//! delta datagram. The `KeyChanged` events this queues are left in the node, dropped untimed.
//!
//! `cargo bench -p chatter-core --bench kv_merge`

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatter_core::wire::{self, Message};
use chatter_core::{Config, Identity, Node};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use common::clock;

const OWNER: &str = "owner";
/// Bytes of every value: a small record such as an endpoint with a weight.
const VALUE_LEN: usize = 32;

fn owner_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 7946))
}

fn receiver_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 7946))
}

fn receiver(t0: Instant) -> Node {
    let mut node = Node::new(
        Identity::new("receiver", receiver_addr(), 1),
        Config::lan(),
        2,
        t0,
    )
    .expect("valid config");
    node.join(t0, vec![owner_addr()]);
    node
}

/// The owner's datagrams to a joining receiver: those it gets before the deltas, and the deltas.
struct Exchange {
    before: Vec<Vec<u8>>,
    deltas: Vec<Vec<u8>>,
}

/// Runs the join of a receiver with an owner that holds `keys` keys, and captures the owner's
/// datagrams. `max_delta_packets` of the owner must let the whole state go in one answer.
fn capture(keys: usize, max_delta_packets: usize, t0: Instant) -> Exchange {
    let config = Config {
        max_delta_packets,
        ..Config::lan()
    };
    let mut owner =
        Node::new(Identity::new(OWNER, owner_addr(), 1), config, 1, t0).expect("valid config");
    for i in 0..keys {
        let value = format!("{i:0>width$}", width = VALUE_LEN).into_bytes();
        owner
            .set(t0, &format!("service/{i:04}"), value)
            .expect("key fits");
    }
    // The gossip round the writes scheduled pushes them to the owner's tree neighbours: none
    // yet, so the receiver will get the state as anti-entropy deltas, which is what is measured.
    owner.handle_timeout(t0);
    while owner.poll_event().is_some() {}
    while owner.poll_transmit().is_some() {} // its first `Alive` gossip, to nobody yet
    let mut receiver = receiver(t0);
    let cluster = wire::cluster_hash(&Config::lan().cluster_name);
    let max_size = Config::lan().max_packet_size;
    let mut exchange = Exchange {
        before: Vec::new(),
        deltas: Vec::new(),
    };
    loop {
        let mut moved = false;
        while let Some(t) = receiver.poll_transmit() {
            moved = true;
            owner.handle_datagram(t0, receiver_addr(), &t.payload);
        }
        while let Some(t) = owner.poll_transmit() {
            moved = true;
            let messages = wire::decode_packet(&t.payload, cluster, max_size).expect("decodes");
            let deltas = messages
                .iter()
                .filter(|m| matches!(m, Message::StateDelta(_)))
                .count();
            if deltas > 0 {
                assert_eq!(deltas, messages.len(), "only deltas in a delta datagram");
                exchange.deltas.push(t.payload);
            } else {
                assert!(
                    !messages.iter().any(|m| matches!(m, Message::StatePush(_))),
                    "a key/value write reached the receiver before the deltas"
                );
                receiver.handle_datagram(t0, owner_addr(), &t.payload);
                exchange.before.push(t.payload);
            }
        }
        if !moved {
            break;
        }
    }
    exchange
}

impl Exchange {
    /// A receiver at the moment the deltas arrive: it knows the owner, holds none of its state.
    fn fresh_receiver(&self, t0: Instant) -> Node {
        let mut node = receiver(t0);
        for payload in &self.before {
            node.handle_datagram(t0, owner_addr(), payload);
        }
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
        node
    }

    fn apply(&self, node: &mut Node, now: Instant) {
        for payload in &self.deltas {
            node.handle_datagram(now, owner_addr(), payload);
        }
    }
}

fn kv_merge(c: &mut Criterion) {
    let t0 = clock();
    let now = t0 + Duration::from_millis(10);
    let mut group = c.benchmark_group("kv_merge/full_state");
    // 100 keys fit the default answer of 8 datagrams; 1000 need about 50, so that owner sends up
    // to 64 (`max_delta_packets`) to give the whole state in one answer.
    for (keys, max_delta_packets) in [(100, Config::lan().max_delta_packets), (1000, 64)] {
        let exchange = capture(keys, max_delta_packets, t0);
        let mut check = exchange.fresh_receiver(t0);
        assert_eq!(
            check.state_version(OWNER),
            None,
            "no state before the deltas"
        );
        exchange.apply(&mut check, now);
        assert_eq!(check.state_version(OWNER), Some(keys as u64), "whole state");
        assert_eq!(check.node_state(OWNER).map(Iterator::count), Some(keys));
        eprintln!(
            "kv_merge/full_state/{keys}: {} delta datagrams, {} bytes",
            exchange.deltas.len(),
            exchange.deltas.iter().map(Vec::len).sum::<usize>()
        );
        group.throughput(Throughput::Elements(keys as u64));
        group.bench_function(format!("{keys}_keys"), |b| {
            b.iter_batched(
                || exchange.fresh_receiver(t0),
                |mut node| {
                    exchange.apply(&mut node, now);
                    node
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = kv_merge
}
criterion_main!(benches);
