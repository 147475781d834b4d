//! Encoding and decoding whole datagrams with the public `wire` API: a probe packet carrying
//! piggybacked membership updates, and one `SyncState` holding a whole member table.
//!
//! `cargo bench -p chatter-core --bench wire`. The encoded sizes are printed before the figures.

mod common;

use std::hint::black_box;
use std::net::SocketAddr;

use chatter_core::wire::{self, Alive, MemberState, Message, Ping, Suspect, SyncState, WireStatus};
use chatter_core::{Config, Tags};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Generation of every member: milliseconds since the Unix epoch at start, as `chatterd` picks it
/// (so it takes its real varint size on the wire).
const GENERATION: u64 = 1_767_225_600_000;

fn name(i: usize) -> String {
    format!("node-{i:04}")
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 7946))
}

/// One small tag per member, as a deployment that labels its zones would publish.
fn tags(i: usize) -> Tags {
    Tags::from([(
        "zone".to_owned(),
        format!("eu-west-1{}", ['a', 'b', 'c'][i % 3]),
    )])
}

/// A direct probe with three updates riding on it: what a node sends while news is spreading.
fn probe_packet() -> Vec<Message> {
    vec![
        Message::Ping(Ping::new(3_048_213_001, &name(17), GENERATION)),
        Message::Alive(Alive {
            name: name(42),
            addr: addr(42),
            generation: GENERATION,
            incarnation: 3,
            tags: tags(42),
        }),
        Message::Suspect(Suspect {
            name: name(7),
            generation: GENERATION,
            incarnation: 1,
            from: name(3),
            unreachable: false,
        }),
        Message::Alive(Alive {
            name: name(99),
            addr: addr(99),
            generation: GENERATION,
            incarnation: 0,
            tags: tags(99),
        }),
    ]
}

/// A whole member table of `n` rows in one `SyncState` (a node splits a table larger than its
/// packet budget over several datagrams; the codec work per row is the same).
fn sync_state(n: usize) -> Vec<Message> {
    let members = (0..n)
        .map(|i| MemberState {
            name: name(i),
            addr: addr(i),
            generation: GENERATION,
            incarnation: (i % 4) as u64,
            status: if i % 25 == 24 {
                WireStatus::Suspect
            } else {
                WireStatus::Alive
            },
            tags: tags(i),
        })
        .collect();
    vec![Message::SyncState(SyncState {
        from: name(0),
        fingerprint: 0x9e37_79b9_7f4a_7c15,
        reply: true,
        members,
    })]
}

fn codec(c: &mut Criterion) {
    let cluster = wire::cluster_hash("chatter");
    let max_size = Config::lan().max_packet_size;
    let cases: Vec<(String, Vec<Message>, Throughput)> = vec![
        (
            "probe_packet".to_owned(),
            probe_packet(),
            Throughput::Elements(4),
        ),
        (
            "sync_state/50".to_owned(),
            sync_state(50),
            Throughput::Elements(50),
        ),
        (
            "sync_state/1000".to_owned(),
            sync_state(1000),
            Throughput::Elements(1000),
        ),
    ];
    for (id, messages, _) in &cases {
        let packet = wire::encode_packet(cluster, messages);
        let decoded = wire::decode_packet(&packet, cluster, max_size).expect("round trip");
        assert_eq!(&decoded, messages, "{id} does not survive the round trip");
        eprintln!(
            "wire/{id}: {} bytes in one datagram ({} with envelope)",
            packet.len() - wire::ENVELOPE_LEN,
            packet.len()
        );
    }

    let mut group = c.benchmark_group("wire/encode");
    for (id, messages, throughput) in &cases {
        group.throughput(throughput.clone());
        group.bench_with_input(BenchmarkId::from_parameter(id), messages, |b, messages| {
            b.iter(|| wire::encode_packet(cluster, black_box(messages)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("wire/decode");
    for (id, messages, throughput) in &cases {
        let packet = wire::encode_packet(cluster, messages);
        group.throughput(throughput.clone());
        group.bench_with_input(BenchmarkId::from_parameter(id), &packet, |b, packet| {
            b.iter(|| wire::decode_packet(black_box(packet), cluster, max_size))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = codec
}
criterion_main!(benches);
