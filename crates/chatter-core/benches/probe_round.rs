//! One SWIM probe round of a node that knows 50 live members, in a quiet (converged) cluster:
//! the probe tick (`handle_timeout` that starts a probe, then `poll_transmit` for the `Ping`), and
//! handling the target's `Ack` datagram. The tick is the node's real `handle_timeout` once per
//! `probe_interval` (1 s, `lan` profile), so it also carries, amortised, the reap every 5 ticks
//! and the anti-entropy `SyncRequest` every 10 to 12 s (which members in sync do not answer).
//!
//! The cluster is built with the public API only: 51 nodes on a perfect in-memory network join
//! through one seed and gossip until every node sees the 50 others alive and has nothing left to
//! piggyback. In the measured loop the probe target is the real node, which answers the `Ping`
//! with its own `Ack`; that, and every other step not named by the benchmark, runs outside the
//! timed part. `CLUSTERS` independent clusters are probed in turn, so each timed stretch covers
//! 8 probes (or acks) and reading the clock (about 40 ns here) adds about 5 ns per probe. More
//! clusters would dilute that further but leave less of each node in the cache: at 32 the
//! figures grow by a third.
//!
//! `cargo bench -p chatter-core --bench probe_round`

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatter_core::{Config, Identity, Node, Transmit};
use criterion::{criterion_group, criterion_main, Criterion};

use common::clock;

/// Members each measured node knows (the cluster has one node more: itself).
const MEMBERS: usize = 50;
/// Clusters probed in turn within one timed stretch.
const CLUSTERS: usize = 8;
/// Round trip of a probe in virtual time.
const RTT: Duration = Duration::from_millis(1);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 7946))
}

/// Nodes on a perfect network: every datagram delivered at once, time in 10 ms steps.
struct Cluster {
    nodes: Vec<Node>,
    index: BTreeMap<SocketAddr, usize>,
    now: Instant,
}

impl Cluster {
    /// `n` nodes (node 0 is the one measured) joined through node 1 and run until every node
    /// sees the others alive, suspects nobody and has no update left to piggyback.
    fn converged(n: usize, config: &Config, seed: u64, t0: Instant) -> Self {
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| {
                Node::new(
                    Identity::new(format!("node-{i:02}"), addr(i), 1),
                    config.clone(),
                    seed * 1000 + i as u64,
                    t0,
                )
                .expect("valid config")
            })
            .collect();
        for (i, node) in nodes.iter_mut().enumerate() {
            if i != 1 {
                node.join(t0, vec![addr(1)]);
            }
        }
        let mut cluster = Self {
            index: (0..n).map(|i| (addr(i), i)).collect(),
            nodes,
            now: t0,
        };
        let quiet = |c: &Self| {
            c.nodes.iter().all(|node| {
                node.num_alive() == n - 1
                    && node.num_suspicions() == 0
                    && node.pending_broadcasts() == 0
            })
        };
        let limit = t0 + Duration::from_secs(120);
        while !quiet(&cluster) {
            assert!(cluster.now < limit, "cluster did not converge in 120 s");
            cluster.step();
        }
        // Some more time in the quiet state: anti-entropy rounds find nothing to repair.
        for _ in 0..300 {
            cluster.step();
        }
        assert!(quiet(&cluster), "cluster did not stay converged");
        cluster
    }

    fn step(&mut self) {
        self.now += Duration::from_millis(10);
        let now = self.now;
        for node in &mut self.nodes {
            node.handle_timeout(now);
        }
        self.flush();
    }

    /// Delivers datagrams until none are left; events are dropped.
    fn flush(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while self.nodes[i].poll_event().is_some() {}
                let from = self.nodes[i].local_addr();
                while let Some(t) = self.nodes[i].poll_transmit() {
                    moved = true;
                    if let Some(&j) = self.index.get(&t.dst) {
                        self.nodes[j].handle_datagram(now, from, &t.payload);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}

/// Which part of a probe round is timed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timed {
    /// `handle_timeout` at the probe tick and `poll_transmit` until `None`.
    Tick,
    /// `handle_datagram` of the target's answer.
    Ack,
    /// Both.
    Round,
}

/// Runs `rounds` probe rounds on node 0 of every cluster and returns the time spent in the
/// `timed` part.
fn probe_rounds(clusters: &mut [Cluster], rounds: u64, timed: Timed) -> Duration {
    let mut total = Duration::ZERO;
    let mut sent: Vec<Vec<Transmit>> = (0..clusters.len()).map(|_| Vec::new()).collect();
    let mut answers: Vec<Vec<(SocketAddr, Vec<u8>)>> =
        (0..clusters.len()).map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        // The probe interval has passed: the tick starts the next probe of the round-robin.
        for cluster in clusters.iter_mut() {
            cluster.now += cluster.nodes[0].config().probe_interval;
        }
        let start = clock();
        for (cluster, sent) in clusters.iter_mut().zip(&mut sent) {
            let node = &mut cluster.nodes[0];
            node.handle_timeout(cluster.now);
            while let Some(t) = node.poll_transmit() {
                sent.push(t);
            }
        }
        if timed != Timed::Ack {
            total += clock() - start;
        }
        // The targets answer (the `Ping`, and now and then an anti-entropy `SyncRequest`, which
        // members in sync answer with nothing).
        for ((cluster, sent), answers) in clusters.iter_mut().zip(&mut sent).zip(&mut answers) {
            let me = cluster.nodes[0].local_addr();
            for t in sent.drain(..) {
                let Some(&j) = cluster.index.get(&t.dst) else {
                    continue;
                };
                let target = &mut cluster.nodes[j];
                target.handle_datagram(cluster.now, me, &t.payload);
                let from = target.local_addr();
                while let Some(reply) = target.poll_transmit() {
                    if reply.dst == me {
                        answers.push((from, reply.payload));
                    }
                }
            }
        }
        let start = clock();
        for (cluster, answers) in clusters.iter_mut().zip(&answers) {
            let now = cluster.now + RTT;
            let node = &mut cluster.nodes[0];
            for (from, payload) in answers {
                node.handle_datagram(now, *from, payload);
            }
        }
        if timed != Timed::Tick {
            total += clock() - start;
        }
        for (cluster, answers) in clusters.iter_mut().zip(&mut answers) {
            answers.clear();
            let node = &mut cluster.nodes[0];
            while node.poll_transmit().is_some() {}
            while node.poll_event().is_some() {}
        }
    }
    total
}

fn probe_round(c: &mut Criterion) {
    let t0 = clock();
    let config = Config::lan();
    let mut clusters: Vec<Cluster> = (0..CLUSTERS)
        .map(|k| Cluster::converged(MEMBERS + 1, &config, k as u64, t0))
        .collect();
    // Every round must be an answered probe, or the figures would be of something else.
    let before: Vec<_> = clusters.iter().map(|c| *c.nodes[0].stats()).collect();
    probe_rounds(&mut clusters, 2 * MEMBERS as u64, Timed::Round);
    for (k, (cluster, before)) in clusters.iter().zip(&before).enumerate() {
        let stats = cluster.nodes[0].stats();
        assert_eq!(stats.probes_sent - before.probes_sent, 2 * MEMBERS as u64);
        assert_eq!(stats.probes_acked - before.probes_acked, 2 * MEMBERS as u64);
        assert_eq!(stats.probes_failed, 0);
        assert_eq!(cluster.nodes[0].num_alive(), MEMBERS);
        // Nothing reached the node but the acks, and they carried no piggybacked updates.
        let received = stats.packets_received - before.packets_received;
        let bytes = stats.bytes_received - before.bytes_received;
        assert_eq!(received, 2 * MEMBERS as u64);
        // An ack datagram: the 8-byte envelope, the message tag and a random 64-bit sequence
        // number (a varint of up to 10 bytes).
        assert!(bytes <= received * 19, "acks carried more than the ack");
        if k == 0 {
            eprintln!(
                "probe_round: {MEMBERS} members known; ack datagrams of {:.1} bytes on average",
                bytes as f64 / received as f64
            );
        }
    }

    let mut group = c.benchmark_group(format!("probe_round/{MEMBERS}_members"));
    for (id, timed) in [
        ("tick_and_poll_transmit", Timed::Tick),
        ("handle_ack", Timed::Ack),
        ("whole_round", Timed::Round),
    ] {
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                // Each round probes once in every cluster: time per probe, scaled to `iters`.
                let rounds = iters.div_ceil(CLUSTERS as u64);
                let spent = probe_rounds(&mut clusters, rounds, timed);
                spent.mul_f64(iters as f64 / (rounds * CLUSTERS as u64) as f64)
            })
        });
    }
    group.finish();
    for cluster in &clusters {
        let node = &cluster.nodes[0];
        assert_eq!(node.stats().probes_failed, 0, "a probe went unanswered");
        assert_eq!(node.num_suspicions(), 0);
        assert_eq!(node.pending_broadcasts(), 0, "the cluster was not quiet");
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = probe_round
}
criterion_main!(benches);
