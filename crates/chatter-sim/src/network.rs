//! The virtual network: latency and jitter per link, random loss, partitions, the queue of
//! datagrams in flight, and the network's own counters.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Counters kept by the network itself, independent of what the nodes count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed to the network by nodes.
    pub packets_sent: u64,
    /// Bytes in those datagrams.
    pub bytes_sent: u64,
    /// Datagrams handed to a node's `handle_datagram`.
    pub packets_delivered: u64,
    /// Datagrams dropped by random loss.
    pub dropped_loss: u64,
    /// Datagrams dropped because sender and receiver were in different partition groups.
    pub dropped_partition: u64,
    /// Datagrams addressed to a node that was down when they arrived.
    pub dropped_down: u64,
    /// Datagrams addressed to no node of the simulation.
    pub dropped_unknown: u64,
    /// Datagrams dropped because a paused node's receive buffer was full.
    pub dropped_buffer_full: u64,
    /// ICMP port-unreachable reports generated (crashed process on a live host).
    pub unreachable_sent: u64,
    /// ICMP port-unreachable reports handed to a node's `handle_unreachable`.
    pub unreachable_delivered: u64,
    /// Host checks run for the nodes (`Node::poll_host_check`).
    pub host_checks: u64,
    /// Of those, the ones that found the host silent (host down, link cut, checks dropped on
    /// the path, or every attempt lost).
    pub host_checks_silent: u64,
}

/// Something that arrives at a node: a datagram, or an ICMP port-unreachable report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A UDP datagram from `from` (index `from_idx` in the simulation).
    Datagram {
        from_idx: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// The datagram this node sent to `dst` came back as ICMP port-unreachable.
    Unreachable { dst: SocketAddr },
    /// The answer to this node's host check `id`.
    HostCheck {
        id: u64,
        answer: chatter_core::HostAnswer,
    },
}

impl Inbound {
    /// Bytes this occupies in a receive buffer (a report is counted as a small packet).
    pub(crate) fn size(&self) -> usize {
        match self {
            Inbound::Datagram { bytes, .. } => bytes.len(),
            Inbound::Unreachable { .. } | Inbound::HostCheck { .. } => 32,
        }
    }
}

/// One scheduled arrival. Ordered by `(at, seq)` so that ties never depend on anything but the
/// order in which arrivals were scheduled.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) at: Duration,
    pub(crate) seq: u64,
    pub(crate) to: usize,
    pub(crate) what: Inbound,
}

impl PartialEq for Arrival {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Arrival {}

impl PartialOrd for Arrival {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Arrival {
    /// Reversed, so that `BinaryHeap` pops the earliest arrival first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Latency, loss, partitions and the datagrams in flight.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) latency: Duration,
    pub(crate) jitter: Duration,
    pub(crate) loss: f64,
    /// Per-link base latency overrides, keyed by `(min(a, b), max(a, b))`.
    pub(crate) link_latency: BTreeMap<(usize, usize), Duration>,
    /// Partition group of each node; empty when the network is whole. Nodes not listed in any
    /// group share one implicit group.
    pub(crate) groups: BTreeMap<usize, usize>,
    /// Which node owns an address (lookups only, never iterated).
    pub(crate) hosts: HashMap<SocketAddr, usize>,
    /// Nodes whose hosts never answer a host check (a firewall dropping SYNs to them), while
    /// their datagrams pass.
    pub(crate) host_checks_dropped: BTreeSet<usize>,
    pub(crate) queue: BinaryHeap<Arrival>,
    seq: u64,
    pub(crate) stats: NetStats,
}

impl Network {
    pub(crate) fn new(rng: ChaCha8Rng, latency: Duration, jitter: Duration, loss: f64) -> Self {
        Self {
            rng,
            latency,
            jitter,
            loss,
            link_latency: BTreeMap::new(),
            groups: BTreeMap::new(),
            hosts: HashMap::new(),
            host_checks_dropped: BTreeSet::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            stats: NetStats::default(),
        }
    }

    /// Time of the earliest arrival in flight.
    pub(crate) fn next_arrival(&self) -> Option<Duration> {
        self.queue.peek().map(|a| a.at)
    }

    /// Schedules `what` to arrive at node `to` at `at`.
    pub(crate) fn schedule(&mut self, at: Duration, to: usize, what: Inbound) {
        self.seq += 1;
        self.queue.push(Arrival {
            at,
            seq: self.seq,
            to,
            what,
        });
    }

    /// A node sends a datagram: counted, maybe lost, else scheduled after the link's delay.
    pub(crate) fn send(
        &mut self,
        now: Duration,
        from_idx: usize,
        from: SocketAddr,
        dst: SocketAddr,
        bytes: Vec<u8>,
    ) {
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        let lost = self.lost();
        let Some(&to) = self.hosts.get(&dst) else {
            self.stats.dropped_unknown += 1;
            return;
        };
        let delay = self.delay(from_idx, to);
        if lost {
            self.stats.dropped_loss += 1;
            return;
        }
        self.schedule(
            now + delay,
            to,
            Inbound::Datagram {
                from_idx,
                from,
                bytes,
            },
        );
    }

    /// Whether a packet from `a` to `b` is dropped by a partition.
    pub(crate) fn partitioned(&self, a: usize, b: usize) -> bool {
        if self.groups.is_empty() {
            return false;
        }
        let ga = self.groups.get(&a).copied().unwrap_or(usize::MAX);
        let gb = self.groups.get(&b).copied().unwrap_or(usize::MAX);
        ga != gb
    }

    /// Rolls the random loss for one packet. Always draws from the RNG, so that changing the
    /// loss rate does not shift the rest of the random stream.
    pub(crate) fn lost(&mut self) -> bool {
        let roll: f64 = self.rng.random();
        roll < self.loss
    }

    /// One-way delay of a packet from `a` to `b`: the link's base latency plus uniform jitter in
    /// `[-jitter, +jitter]`, never below one microsecond.
    pub(crate) fn delay(&mut self, a: usize, b: usize) -> Duration {
        let key = (a.min(b), a.max(b));
        let base = self.link_latency.get(&key).copied().unwrap_or(self.latency);
        let jitter_ns = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX / 4);
        let offset = self.rng.random_range(0..=jitter_ns.saturating_mul(2));
        let total = (base + Duration::from_nanos(offset)).saturating_sub(self.jitter);
        total.max(Duration::from_micros(1))
    }
}
