//! Sealing and opening one datagram of 100 and 1,400 bytes (a probe with a little piggyback, and
//! a full default-budget packet), against copying the same bytes (the least any send path does).
//!
//! `cargo bench -p chatter-seal`. Throughput is in datagrams per second on one core.

use std::hint::black_box;
use std::time::Duration;

use chacha20poly1305::aead::AeadInPlace as _;
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305};
use chatter_seal::{cluster_hash, Key, Keyring, Opener, Sealer};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;

const CLUSTER: &str = "prod";

/// A plain datagram of `len` bytes in all (envelope included).
fn plain(len: usize) -> Vec<u8> {
    let mut p = b"CH\x04\x00".to_vec();
    p.extend_from_slice(&cluster_hash(CLUSTER).to_le_bytes());
    p.extend((p.len()..len).map(|i| i as u8));
    p
}

fn bench(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let ring = Keyring::new(Key::generate(&mut rng));
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Elements(1));
    for len in [100usize, 1_400] {
        let p = plain(len);
        let capacity = len + chatter_seal::SEAL_OVERHEAD;

        group.bench_with_input(BenchmarkId::new("memcpy", len), &p, |b, p| {
            let mut buf = Vec::with_capacity(capacity);
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(p));
                black_box(&buf);
            })
        });

        // The bare AEAD on the same bytes: what sealing costs before this crate adds anything.
        group.bench_with_input(BenchmarkId::new("aead_only", len), &p, |b, p| {
            let cipher = XChaCha20Poly1305::new(&[9u8; 32].into());
            let mut buf = p.clone();
            let mut counter = 0u64;
            b.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 24];
                nonce[8..16].copy_from_slice(&counter.to_le_bytes());
                cipher
                    .encrypt_in_place_detached(&nonce.into(), b"header and cluster", &mut buf)
                    .unwrap()
            })
        });

        group.bench_with_input(BenchmarkId::new("seal", len), &p, |b, p| {
            let mut sealer = Sealer::new(1);
            b.iter(|| sealer.seal(&ring, CLUSTER, black_box(p)).unwrap())
        });

        // The send path of a node that builds each packet in a buffer with room for the seal:
        // the copy in stands for the encoding, so this is `memcpy` plus the sealing itself.
        group.bench_with_input(BenchmarkId::new("seal_in_place", len), &p, |b, p| {
            let mut sealer = Sealer::new(2);
            let mut buf = Vec::with_capacity(capacity);
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(p));
                sealer.seal_in_place(&ring, CLUSTER, &mut buf).unwrap();
                black_box(&buf);
            })
        });

        // Each iteration opens a datagram never opened before (the replay window would refuse a
        // repeat); sealing it is setup, outside the timing.
        group.bench_with_input(BenchmarkId::new("open", len), &p, |b, p| {
            let mut sealer = Sealer::new(3);
            let mut opener = Opener::new();
            b.iter_batched(
                || sealer.seal(&ring, CLUSTER, p).unwrap(),
                |sealed| (opener.open(&ring, CLUSTER, &sealed).unwrap(), sealed),
                BatchSize::SmallInput,
            )
        });

        group.bench_with_input(BenchmarkId::new("open_in_place", len), &p, |b, p| {
            let mut sealer = Sealer::new(4);
            let mut opener = Opener::new();
            b.iter_batched(
                || sealer.seal(&ring, CLUSTER, p).unwrap(),
                |mut sealed| {
                    black_box(opener.open_in_place(&ring, CLUSTER, &mut sealed).unwrap());
                    sealed
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
