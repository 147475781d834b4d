//! The simulation: many nodes, one virtual clock, one queue of arrivals, one queue of timers.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatter_core::{
    wire, Config, ConfigError, EncryptionError, Event, Identity, Key, Keyring, Member, MemberBrief,
    MemberStatus, Mode, Node, Stats,
};
use chatter_seal::Opener;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::invariants::SeenView;
use crate::log::LoggedEvent;
use crate::network::{Inbound, NetStats, Network};
use crate::tracking::{Tracker, WatchedPacket};

/// Settings of a simulation. Everything random derives from `seed`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The one seed of the run: the network's RNG and every node's RNG derive from it.
    pub seed: u64,
    /// Protocol configuration given to every node. Default [`Config::lan`].
    pub node_config: Config,
    /// Base one-way latency of every link. Default 0.5 ms.
    pub latency: Duration,
    /// Each packet's latency is `latency` plus a uniform offset in `[-jitter, +jitter]`.
    /// Default 0.2 ms.
    pub jitter: Duration,
    /// Probability that a datagram is lost, in `[0, 1]`. Default 0.
    pub loss: f64,
    /// Whether [`Sim::crash`] models a crashed process on a live host, whose kernel answers
    /// datagrams for the closed port with ICMP port-unreachable (the sender gets
    /// `handle_unreachable` after the link latency). Default true.
    pub icmp_on_crash: bool,
    /// Receive buffer of a paused node, in bytes: datagrams beyond it are dropped, like a full
    /// socket buffer of a stopped process. Default 212,992 bytes (Linux's default `rmem`).
    pub pause_buffer_bytes: usize,
    /// After [`Sim::leave`], the node keeps running until its `Left` message is out
    /// (`is_leave_complete`) or this long, then stops. Default 2 s.
    pub leave_timeout: Duration,
    /// Whether to check the invariants after every input of every node (see
    /// [`Sim::violations`]). Default true; costs one member-table scan per input that changed
    /// the node's table fingerprint (inputs that change nothing are skipped).
    pub check_invariants: bool,
}

impl SimConfig {
    /// The defaults above with the given seed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            node_config: Config::lan(),
            latency: Duration::from_micros(500),
            jitter: Duration::from_micros(200),
            loss: 0.0,
            icmp_on_crash: true,
            pause_buffer_bytes: 212_992,
            leave_timeout: Duration::from_secs(2),
            check_invariants: true,
        }
    }

    /// The same with another protocol configuration.
    pub fn with_node_config(mut self, config: Config) -> Self {
        self.node_config = config;
        self
    }
}

/// Whether a simulated process is running, stopped (`SIGSTOP`) or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Runs its timers and handles its datagrams.
    Running,
    /// Stopped: no timers, datagrams queue in its receive buffer until it resumes.
    Paused,
    /// The process is gone (crashed, host down, or stopped after leaving).
    Down(DownReason),
}

/// Why a node is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// The process crashed on a live host: datagrams to it produce ICMP port-unreachable.
    Crashed,
    /// The whole host is gone: datagrams to it vanish.
    HostDown,
    /// The process left gracefully and then exited (ICMP as for a crash if
    /// [`SimConfig::icmp_on_crash`]).
    Left,
}

/// [`Sim::wait_until`] ran out of virtual time before the predicate held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// How long it waited.
    pub waited: Duration,
    /// Virtual time when it gave up.
    pub at: Duration,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "condition not met after {:?} of virtual time (at t={:.3}s)",
            self.waited,
            self.at.as_secs_f64()
        )
    }
}

impl std::error::Error for Timeout {}

/// One simulated process slot: a name and an address that survive restarts.
pub(crate) struct Slot {
    pub(crate) name: String,
    addr: SocketAddr,
    pub(crate) generation: u64,
    node: Option<Node>,
    pub(crate) state: NodeState,
    /// Receive buffer while paused, and its size in bytes.
    buffer: VecDeque<Inbound>,
    buffered_bytes: usize,
    /// Virtual deadline by which a leaving node stops.
    leave_deadline: Option<Duration>,
    /// This life called `leave`.
    left: bool,
    /// The timer entry of this slot that is valid, and its deadline.
    timer_version: u64,
    scheduled: Option<Duration>,
    /// Livelock guard: timers fired at the same virtual instant in a row.
    last_fire: Duration,
    fires_at_instant: u32,
    /// Virtual time the process last went down.
    down_at: Option<Duration>,
    /// Stats of previous lives, summed.
    retired: Stats,
    /// Invariant state: (generation, incarnation) last seen of each member, self included.
    seen: SeenView,
    /// Node fingerprint at the last invariant scan: an unchanged fingerprint means no member's
    /// generation, incarnation or status changed, so the scan is skipped.
    checked_fingerprint: Option<u64>,
}

/// Most invariant violations kept; later ones are only counted.
const MAX_VIOLATIONS: usize = 1000;
/// Timers fired at one virtual instant by one node before it is declared livelocked.
const LIVELOCK_FIRES: u32 = 10_000;
/// SYNs a host check sends, spread over its timeout, as the `chatter` driver does: one lost
/// segment does not read as silence.
pub const HOST_CHECK_ATTEMPTS: u32 = 3;
/// Most delivered datagrams kept by [`Sim::set_capture`].
pub const MAX_CAPTURE: usize = 4_096;

/// A datagram a node received, as it was on the wire (sealed in a sealed cluster): what an
/// eavesdropper on the path captures (see [`Sim::set_capture`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Virtual time it was delivered.
    pub at: Duration,
    /// Its source address.
    pub from: SocketAddr,
    /// The node it was delivered to.
    pub to: usize,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// A deterministic simulation of many [`Node`]s on virtual time over a virtual network.
///
/// Nodes are numbered from 0 in the order they were added; node `i` is named `n{i:04}` and has
/// the fake address `10.x.y.z:7000` (it never touches a socket). Each [`step`](Sim::step)
/// advances virtual time to the earliest pending arrival or node deadline, delivers it or fires
/// `handle_timeout`, then drains the node's transmits into the network and its events into the
/// log. Ties are broken by arrival order, arrivals before timers, timers by node index: the same
/// seed always gives the same run.
pub struct Sim {
    config: SimConfig,
    t0: Instant,
    pub(crate) now: Duration,
    pub(crate) slots: Vec<Slot>,
    by_name: BTreeMap<String, usize>,
    pub(crate) net: Network,
    /// Node deadlines: `(deadline, node, version)`, stale entries skipped lazily.
    timers: BinaryHeap<Reverse<(Duration, usize, u64)>>,
    log: Vec<LoggedEvent>,
    record_events: bool,
    violations: Vec<String>,
    violation_count: u64,
    steps: u64,
    check_interval: Duration,
    pub(crate) tracker: Tracker,
    /// Decode every datagram sent to count what it carries (see `set_trace_payloads`).
    pub(crate) trace_payloads: bool,
    cluster_hash: u32,
    /// Nodes whose datagrams are decoded and kept (see `watch`).
    pub(crate) watched: BTreeSet<usize>,
    pub(crate) watched_packets: Vec<WatchedPacket>,
    /// The cluster's keyring once [`Sim::seal_cluster`] was called: every node, added or
    /// restarted later too, seals with it in `Mode::Sealed`.
    keyring: Option<Keyring>,
    /// Opens the sealed datagrams the simulation decodes for itself (tracing, watching): one
    /// opener for datagrams as sent, one as received, so that each sees every datagram once.
    sent_opener: Opener,
    received_opener: Opener,
    /// Delivered datagrams kept for replay (see `set_capture`), at most `capture_limit`.
    captured: VecDeque<Captured>,
    capture_limit: usize,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.config.seed)
            .field("now", &self.now)
            .field("nodes", &self.slots.len())
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// SplitMix64: derives independent seeds from one.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The fake address of node `i`: `10.a.b.c:7000`.
pub fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7000))
}

/// The name of node `i`: `n0000`, `n0001`, ...
pub fn node_name(i: usize) -> String {
    format!("n{i:04}")
}

/// The plain datagram of `payload`: itself if it is not sealed, else what it opens to under
/// `keyring` (`None` if it does not open, or there is no keyring).
fn plain_of<'a>(
    opener: &mut Opener,
    keyring: Option<&Keyring>,
    cluster_name: &str,
    payload: &'a [u8],
) -> Option<std::borrow::Cow<'a, [u8]>> {
    if !chatter_seal::is_sealed(payload) {
        return Some(std::borrow::Cow::Borrowed(payload));
    }
    opener
        .open(keyring?, cluster_name, payload)
        .ok()
        .map(std::borrow::Cow::Owned)
}

/// Adds every counter of `b` to `a`.
pub fn add_stats(a: &mut Stats, b: &Stats) {
    a.packets_sent += b.packets_sent;
    a.bytes_sent += b.bytes_sent;
    a.packets_received += b.packets_received;
    a.bytes_received += b.bytes_received;
    a.dropped_malformed += b.dropped_malformed;
    a.dropped_version += b.dropped_version;
    a.dropped_wrong_cluster += b.dropped_wrong_cluster;
    a.dropped_oversize += b.dropped_oversize;
    a.dropped_sealed.add(&b.dropped_sealed);
    a.dropped_table_full += b.dropped_table_full;
    a.dropped_indirect_overload += b.dropped_indirect_overload;
    a.dropped_invalid += b.dropped_invalid;
    a.answers_withheld += b.answers_withheld;
    a.answers_rate_limited += b.answers_rate_limited;
    a.dropped_unexpected_ack += b.dropped_unexpected_ack;
    a.ping_reqs_refused += b.ping_reqs_refused;
    a.lives_unverified += b.lives_unverified;
    a.lives_renewed += b.lives_renewed;
    a.state_claims_refuted += b.state_claims_refuted;
    a.probes_sent += b.probes_sent;
    a.probes_acked += b.probes_acked;
    a.probes_failed += b.probes_failed;
    a.indirect_probes_sent += b.indirect_probes_sent;
    a.indirect_probes_served += b.indirect_probes_served;
    a.unreachable_reports += b.unreachable_reports;
    a.host_checks_started += b.host_checks_started;
    a.host_checks_calibration += b.host_checks_calibration;
    a.host_checks_answered += b.host_checks_answered;
    a.host_checks_silent += b.host_checks_silent;
    a.host_checks_inconclusive += b.host_checks_inconclusive;
    a.host_checks_dropped += b.host_checks_dropped;
    a.host_checks_unexpected += b.host_checks_unexpected;
    a.host_silent_suspicions += b.host_silent_suspicions;
    a.host_silent_damped += b.host_silent_damped;
    a.flaps += b.flaps;
    a.suspicions_raised += b.suspicions_raised;
    a.suspicions_refuted += b.suspicions_refuted;
    a.failures_declared += b.failures_declared;
    a.gossip_sent += b.gossip_sent;
    a.recontacts_sent += b.recontacts_sent;
    a.recontacts_answered += b.recontacts_answered;
    a.syncs_started += b.syncs_started;
    a.syncs_in_sync += b.syncs_in_sync;
    a.sync_states_sent += b.sync_states_sent;
    a.dropped_state_unknown += b.dropped_state_unknown;
    a.dropped_state_full += b.dropped_state_full;
    a.state_updates_applied += b.state_updates_applied;
    a.state_deltas_sent += b.state_deltas_sent;
    a.state_pushes_sent += b.state_pushes_sent;
    a.state_pushes_duplicate += b.state_pushes_duplicate;
    a.state_grafts_sent += b.state_grafts_sent;
    a.messages_broadcast += b.messages_broadcast;
    a.messages_delivered += b.messages_delivered;
    a.messages_sent += b.messages_sent;
    a.messages_duplicate += b.messages_duplicate;
    a.dropped_message_oversize += b.dropped_message_oversize;
    a.prunes_sent += b.prunes_sent;
    a.grafts_sent += b.grafts_sent;
    a.messages_injected += b.messages_injected;
    for (x, y) in a.probe_rtt.buckets.iter_mut().zip(b.probe_rtt.buckets) {
        *x += y;
    }
    a.probe_rtt.count += b.probe_rtt.count;
    a.probe_rtt.sum_micros = a
        .probe_rtt
        .sum_micros
        .saturating_add(b.probe_rtt.sum_micros);
}

impl Sim {
    /// An empty simulation. Fails if `config.node_config` does not validate.
    pub fn new(config: SimConfig) -> Result<Self, ConfigError> {
        config.node_config.validate()?;
        let net = Network::new(
            ChaCha8Rng::seed_from_u64(mix(config.seed ^ 0x6e65_7477_6f72_6b00)),
            config.latency,
            config.jitter,
            config.loss.clamp(0.0, 1.0),
        );
        Ok(Self {
            // The one reading of the real clock: every `now` is `t0` plus virtual time.
            #[allow(clippy::disallowed_methods)]
            t0: Instant::now(),
            now: Duration::ZERO,
            slots: Vec::new(),
            by_name: BTreeMap::new(),
            net,
            timers: BinaryHeap::new(),
            log: Vec::new(),
            record_events: true,
            violations: Vec::new(),
            violation_count: 0,
            steps: 0,
            check_interval: Duration::from_millis(10),
            tracker: Tracker::default(),
            trace_payloads: false,
            cluster_hash: wire::cluster_hash(&config.node_config.cluster_name),
            watched: BTreeSet::new(),
            watched_packets: Vec::new(),
            keyring: None,
            sent_opener: Opener::new(),
            received_opener: Opener::new(),
            captured: VecDeque::new(),
            capture_limit: 0,
            config,
        })
    }

    /// A simulation with `n` nodes: node 0 starts alone, nodes `1..n` join through node 0 one
    /// after the other, `stagger` of virtual time apart. Returns when the last one has called
    /// `join`; use [`Sim::wait_until`] with [`Sim::all_agree_alive`] to wait for convergence.
    pub fn with_cluster(
        config: SimConfig,
        n: usize,
        stagger: Duration,
    ) -> Result<Self, ConfigError> {
        let mut sim = Self::new(config)?;
        sim.add_nodes_joining(n, stagger);
        Ok(sim)
    }

    /// A simulation of `n` nodes that starts converged: every node already knows every other
    /// as alive (through [`Node::preload_members`]), as if the joins were long over. Skips the
    /// O(N^2) gossip of `n` joins, so that 10,000-node experiments start in seconds; the
    /// Plumtree tree and everything else starts cold. Use [`Sim::with_cluster`] to measure
    /// joins themselves.
    pub fn with_warm_cluster(config: SimConfig, n: usize) -> Result<Self, ConfigError> {
        let mut sim = Self::new(config)?;
        for _ in 0..n {
            sim.add_node();
        }
        let everyone: Vec<(String, SocketAddr, u64)> = sim
            .slots
            .iter()
            .map(|s| (s.name.clone(), s.addr, s.generation))
            .collect();
        for i in 0..n {
            let now = sim.instant();
            if let Some(node) = sim.running_node_mut(i) {
                node.preload_members(now, everyone.iter().map(|(n, a, g)| (n.as_str(), *a, *g)));
            }
            sim.after_input(i);
        }
        Ok(sim)
    }

    /// Adds `n` nodes. If the simulation was empty, the first one starts alone and the others
    /// join through it; otherwise all join through node 0. Joins are `stagger` apart.
    pub fn add_nodes_joining(&mut self, n: usize, stagger: Duration) -> Vec<usize> {
        let mut added = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.add_node();
            if i != 0 {
                self.join(i, &[0]);
            }
            added.push(i);
            if !stagger.is_zero() {
                self.run_for(stagger);
            }
        }
        added
    }

    // ---------------------------------------------------------------- nodes and commands

    /// Adds a node with the simulation's protocol config, not joined to anyone yet. Returns its
    /// index.
    pub fn add_node(&mut self) -> usize {
        let config = self.config.node_config.clone();
        self.add_node_with_config(config)
            .expect("the config was validated by Sim::new")
    }

    /// Adds a node with its own protocol config. Returns its index, or the config's error
    /// (nothing added).
    pub fn add_node_with_config(&mut self, config: Config) -> Result<usize, ConfigError> {
        let i = self.slots.len();
        let name = node_name(i);
        let addr = node_addr(i);
        let generation = 1;
        let node = Node::new(
            Identity::new(name.clone(), addr, generation),
            config,
            self.node_seed(i, generation),
            self.instant(),
        )?;
        self.net.hosts.insert(addr, i);
        self.by_name.insert(name.clone(), i);
        self.slots.push(Slot {
            name,
            addr,
            generation,
            node: Some(node),
            state: NodeState::Running,
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            leave_deadline: None,
            left: false,
            timer_version: 0,
            scheduled: None,
            last_fire: Duration::ZERO,
            fires_at_instant: 0,
            down_at: None,
            retired: Stats::default(),
            seen: SeenView::default(),
            checked_fingerprint: None,
        });
        self.arm(i);
        self.after_input(i);
        Ok(i)
    }

    fn node_seed(&self, i: usize, generation: u64) -> u64 {
        mix(self.config.seed ^ mix(((i as u64) << 20) ^ generation))
    }

    /// Seals the whole cluster: draws one key from the simulation's seed and sets it, with
    /// `Mode::Sealed`, on every running node and on every node added or restarted from now on.
    /// Each node life seals under an epoch of its own (derived from its node seed). Call it
    /// before the nodes exchange anything: from then on they accept sealed datagrams only.
    ///
    /// Fails, changing nothing, if sealing does not fit the nodes' `packet_budget`. A node added
    /// later with a config that does not fit is recorded as an invariant violation.
    pub fn seal_cluster(&mut self) -> Result<&Keyring, EncryptionError> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.config.seed ^ 0x6b65_7972_696e_6700));
        let keyring = Keyring::new(Key::generate(&mut rng));
        // The simulation's own config must fit; a probe node checks it without touching any.
        let mut probe = Node::new(
            Identity::new("probe", node_addr(0), 1),
            self.config.node_config.clone(),
            0,
            self.instant(),
        )
        .expect("the config was validated by Sim::new");
        probe.set_keyring(Some(keyring.clone()), Mode::Sealed, 0)?;
        self.keyring = Some(keyring);
        for i in 0..self.slots.len() {
            self.arm(i);
            self.after_input(i);
        }
        Ok(self.keyring.as_ref().expect("set just above"))
    }

    /// The cluster's keyring, once [`Sim::seal_cluster`] was called.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// Gives node `i`'s current life the cluster's keyring, if the cluster is sealed.
    fn arm(&mut self, i: usize) {
        let Some(keyring) = self.keyring.clone() else {
            return;
        };
        let epoch = mix(self.node_seed(i, self.slots[i].generation) ^ 0x6570_6f63_6800);
        let now_v = self.now;
        let slot = &mut self.slots[i];
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        if let Err(error) = node.set_keyring(Some(keyring), Mode::Sealed, epoch) {
            let msg = format!(
                "t={:.3}s {} cannot be sealed: {error}",
                now_v.as_secs_f64(),
                slot.name
            );
            self.violation_count += 1;
            if self.violations.len() < MAX_VIOLATIONS {
                self.violations.push(msg);
            }
        }
    }

    /// Keeps the last `limit` datagrams delivered to running nodes (at most [`MAX_CAPTURE`]),
    /// as they were on the wire, for an adversary that replays them ([`Sim::captured`]);
    /// 0 (the default) keeps none.
    pub fn set_capture(&mut self, limit: usize) {
        self.capture_limit = limit.min(MAX_CAPTURE);
        while self.captured.len() > self.capture_limit {
            self.captured.pop_front();
        }
    }

    /// The datagrams captured so far, oldest first (see [`Sim::set_capture`]).
    pub fn captured(&self) -> &VecDeque<Captured> {
        &self.captured
    }

    /// Node `i` (re)joins through the given nodes' addresses (`Node::join`).
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        let addrs = seeds.iter().map(|&s| self.addr(s)).collect();
        self.join_addrs(i, addrs);
    }

    /// Node `i` joins through arbitrary addresses (for instance ones no node owns).
    pub fn join_addrs(&mut self, i: usize, seeds: Vec<SocketAddr>) {
        let now = self.instant();
        if let Some(node) = self.running_node_mut(i) {
            node.join(now, seeds);
            self.after_input(i);
        }
    }

    /// Node `i` leaves gracefully (`Node::leave`); it keeps running until its `Left` message is
    /// out (or [`SimConfig::leave_timeout`]), then stops.
    pub fn leave(&mut self, i: usize) {
        let now = self.instant();
        let deadline = self.now + self.config.leave_timeout;
        if let Some(node) = self.running_node_mut(i) {
            node.leave(now);
            let slot = &mut self.slots[i];
            slot.left = true;
            slot.leave_deadline = Some(deadline);
            self.after_input(i);
        }
    }

    /// Runs `f` on node `i` if it is running (for commands such as `set_tags`), then drains its
    /// outputs as after any input. Returns `None` if the node is not running.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> Option<R> {
        let now = self.instant();
        let node = self.running_node_mut(i)?;
        let r = f(node, now);
        self.after_input(i);
        Some(r)
    }

    /// Stops node `i` like `SIGSTOP`: no timers, arriving datagrams wait in its bounded receive
    /// buffer.
    pub fn pause(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.state == NodeState::Running {
            slot.state = NodeState::Paused;
            slot.timer_version += 1;
            slot.scheduled = None;
        }
    }

    /// Resumes a paused node like `SIGCONT`: it handles its buffered datagrams in order at once,
    /// then its overdue timers.
    pub fn resume(&mut self, i: usize) {
        if self.slots[i].state != NodeState::Paused {
            return;
        }
        let slot = &mut self.slots[i];
        slot.state = NodeState::Running;
        let buffered = std::mem::take(&mut slot.buffer);
        slot.buffered_bytes = 0;
        for inbound in buffered {
            self.deliver(i, inbound);
        }
        self.after_input(i);
    }

    /// Crashes node `i`'s process; its host answers with ICMP port-unreachable if
    /// [`SimConfig::icmp_on_crash`], else datagrams to it vanish.
    pub fn crash(&mut self, i: usize) {
        let reason = if self.config.icmp_on_crash {
            DownReason::Crashed
        } else {
            DownReason::HostDown
        };
        self.take_down(i, reason);
    }

    /// Takes node `i`'s whole host down: datagrams to it vanish, no ICMP.
    pub fn crash_host(&mut self, i: usize) {
        self.take_down(i, DownReason::HostDown);
    }

    fn take_down(&mut self, i: usize, reason: DownReason) {
        let slot = &mut self.slots[i];
        if let Some(node) = slot.node.take() {
            add_stats(&mut slot.retired, node.stats());
        }
        slot.state = NodeState::Down(reason);
        slot.down_at = Some(self.now);
        slot.timer_version += 1;
        slot.scheduled = None;
        slot.buffer.clear();
        slot.buffered_bytes = 0;
        slot.leave_deadline = None;
        tracing::debug!(node = %slot.name, ?reason, at = ?self.now, "node down");
    }

    /// Starts a new life of node `i` (same name and address, generation + 1) that joins through
    /// `seeds`. A node that is still up is crashed first.
    pub fn restart(&mut self, i: usize, seeds: &[usize]) {
        if !matches!(self.slots[i].state, NodeState::Down(_)) {
            self.crash(i);
        }
        let generation = self.slots[i].generation + 1;
        let seed = self.node_seed(i, generation);
        let now = self.instant();
        let config = self.config.node_config.clone();
        let slot = &self.slots[i];
        let node = Node::new(
            Identity::new(slot.name.clone(), slot.addr, generation),
            config,
            seed,
            now,
        )
        .expect("the config was validated by Sim::new");
        self.tracker.close_writes_of(&self.slots[i].name);
        let slot = &mut self.slots[i];
        slot.generation = generation;
        slot.node = Some(node);
        slot.state = NodeState::Running;
        slot.left = false;
        slot.seen.clear();
        slot.checked_fingerprint = None;
        self.arm(i);
        self.after_input(i);
        self.join(i, seeds);
    }

    // ---------------------------------------------------------------- network

    /// Sets the probability that a datagram is lost, from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.net.loss = loss.clamp(0.0, 1.0);
    }

    /// Sets the default base latency and jitter of every link.
    pub fn set_latency(&mut self, latency: Duration, jitter: Duration) {
        self.net.latency = latency;
        self.net.jitter = jitter;
    }

    /// Sets the base latency of the link between `a` and `b` (both directions).
    pub fn set_link_latency(&mut self, a: usize, b: usize, latency: Duration) {
        self.net.link_latency.insert((a.min(b), a.max(b)), latency);
    }

    /// Splits the network: datagrams between nodes of different groups are dropped (checked on
    /// arrival). Nodes in no group form one more group together.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        self.net.groups.clear();
        for (g, members) in groups.iter().enumerate() {
            for &i in *members {
                self.net.groups.insert(i, g);
            }
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.net.groups.clear();
    }

    // ---------------------------------------------------------------- running

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The `Instant` the nodes see now: `t0` plus virtual time.
    pub fn instant(&self) -> Instant {
        self.t0 + self.now
    }

    /// The `Instant` of virtual time zero.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// Converts an `Instant` a node reported back to virtual time.
    pub fn virtual_time(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.t0)
    }

    /// Steps executed so far (arrivals plus timers).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The simulation's seed.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The simulation's settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// How often [`Sim::wait_until`] evaluates its predicate, in virtual time. Default 10 ms.
    pub fn set_check_interval(&mut self, interval: Duration) {
        self.check_interval = interval.max(Duration::from_micros(1));
    }

    /// Whether to keep events in the log (default true). Long experiments that only need
    /// counters can turn it off; events are still drained and checked.
    pub fn set_record_events(&mut self, record: bool) {
        self.record_events = record;
    }

    fn discard_stale_timers(&mut self) {
        while let Some(&Reverse((_, i, version))) = self.timers.peek() {
            if self.slots[i].timer_version == version {
                break;
            }
            self.timers.pop();
        }
    }

    /// Virtual time of the next step, if anything is pending.
    pub fn next_step_at(&mut self) -> Option<Duration> {
        self.discard_stale_timers();
        let arrival = self.net.next_arrival();
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        match (arrival, timer) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Executes the earliest pending arrival or node deadline. Returns false if nothing was
    /// pending.
    pub fn step(&mut self) -> bool {
        self.discard_stale_timers();
        let arrival = self.net.next_arrival();
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let take_arrival = match (arrival, timer) {
            (None, None) => return false,
            (Some(a), Some(t)) => a <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        self.steps += 1;
        if take_arrival {
            let Some(arrival) = self.net.queue.pop() else {
                return false;
            };
            self.now = self.now.max(arrival.at);
            self.arrive(arrival.to, arrival.what);
        } else {
            let Some(Reverse((at, i, _))) = self.timers.pop() else {
                return false;
            };
            self.now = self.now.max(at);
            self.fire(i);
        }
        true
    }

    /// Runs every step due up to `now() + duration`, then sets the clock there.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.run_until(until);
    }

    /// Runs every step due up to virtual time `until`, then sets the clock there.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(next) = self.next_step_at() {
            if next > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs until `predicate` holds, checking it now and then every check interval (10 ms by
    /// default) of virtual time. Returns the virtual time it took, or [`Timeout`] after `max`.
    pub fn wait_until(
        &mut self,
        max: Duration,
        mut predicate: impl FnMut(&Sim) -> bool,
    ) -> Result<Duration, Timeout> {
        let start = self.now;
        let end = start + max;
        loop {
            if predicate(self) {
                return Ok(self.now - start);
            }
            if self.now >= end {
                return Err(Timeout {
                    waited: max,
                    at: self.now,
                });
            }
            let next = (self.now + self.check_interval).min(end);
            self.run_until(next);
        }
    }

    fn arrive(&mut self, to: usize, what: Inbound) {
        if let Inbound::Datagram { from_idx, .. } = &what {
            if self.net.partitioned(*from_idx, to) {
                self.net.stats.dropped_partition += 1;
                return;
            }
        }
        match self.slots[to].state {
            NodeState::Running => self.deliver(to, what),
            NodeState::Paused => {
                let size = what.size();
                let slot = &mut self.slots[to];
                if slot.buffered_bytes + size > self.config.pause_buffer_bytes {
                    self.net.stats.dropped_buffer_full += 1;
                } else {
                    slot.buffered_bytes += size;
                    slot.buffer.push_back(what);
                }
            }
            NodeState::Down(reason) => {
                if let Inbound::Datagram { from_idx, .. } = what {
                    self.net.stats.dropped_down += 1;
                    let icmp = reason == DownReason::Crashed
                        || (reason == DownReason::Left && self.config.icmp_on_crash);
                    if icmp {
                        self.net.stats.unreachable_sent += 1;
                        let lost = self.net.lost();
                        let delay = self.net.delay(to, from_idx);
                        if lost {
                            self.net.stats.dropped_loss += 1;
                        } else {
                            let dst = self.slots[to].addr;
                            self.net.schedule(
                                self.now + delay,
                                from_idx,
                                Inbound::Unreachable { dst },
                            );
                        }
                    }
                }
            }
        }
    }

    fn deliver(&mut self, i: usize, what: Inbound) {
        let now = self.instant();
        if self.running_node_mut(i).is_none() {
            return;
        }
        match what {
            Inbound::Datagram {
                from,
                bytes,
                from_idx,
            } => {
                if self.watched.contains(&i) {
                    let plain = plain_of(
                        &mut self.received_opener,
                        self.keyring.as_ref(),
                        &self.config.node_config.cluster_name,
                        &bytes,
                    );
                    if let Some(Ok(messages)) = plain
                        .as_deref()
                        .map(|p| wire::decode_packet(p, self.cluster_hash, usize::MAX))
                    {
                        self.watched_packets.push(WatchedPacket {
                            at: self.now,
                            from: from_idx,
                            to: Some(i),
                            received: true,
                            messages,
                        });
                    }
                }
                let Some(node) = self.running_node_mut(i) else {
                    return;
                };
                node.handle_datagram(now, from, &bytes);
                self.net.stats.packets_delivered += 1;
                if self.capture_limit > 0 {
                    if self.captured.len() >= self.capture_limit {
                        self.captured.pop_front();
                    }
                    self.captured.push_back(Captured {
                        at: self.now,
                        from,
                        to: i,
                        bytes,
                    });
                }
            }
            Inbound::Unreachable { dst } => {
                let Some(node) = self.running_node_mut(i) else {
                    return;
                };
                node.handle_unreachable(now, dst);
                self.net.stats.unreachable_delivered += 1;
            }
            Inbound::HostCheck { id, answer } => {
                let Some(node) = self.running_node_mut(i) else {
                    return;
                };
                node.handle_host_check(now, id, answer);
            }
        }
        self.after_input(i);
    }

    fn fire(&mut self, i: usize) {
        let now_v = self.now;
        let now = self.instant();
        let slot = &mut self.slots[i];
        slot.scheduled = None;
        if slot.last_fire == now_v {
            slot.fires_at_instant += 1;
        } else {
            slot.last_fire = now_v;
            slot.fires_at_instant = 1;
        }
        if slot.leave_deadline.is_some_and(|d| now_v >= d) {
            self.take_down(i, DownReason::Left);
            return;
        }
        if let Some(node) = slot.node.as_mut() {
            node.handle_timeout(now);
        }
        self.after_input(i);
    }

    pub(crate) fn running_node_mut(&mut self, i: usize) -> Option<&mut Node> {
        let slot = self.slots.get_mut(i)?;
        if slot.state != NodeState::Running {
            return None;
        }
        slot.node.as_mut()
    }

    /// Drains a node's outputs after an input: transmits into the network, events into the log
    /// (and the invariant checks), then reschedules its deadline.
    pub(crate) fn after_input(&mut self, i: usize) {
        let now_v = self.now;
        let Sim {
            slots,
            net,
            log,
            violations,
            violation_count,
            timers,
            config,
            t0,
            record_events,
            tracker,
            trace_payloads,
            cluster_hash,
            watched,
            watched_packets,
            keyring,
            sent_opener,
            ..
        } = self;
        let slot = &mut slots[i];
        if slot.state != NodeState::Running {
            return;
        }
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        let mut violation = |msg: String| {
            *violation_count += 1;
            if violations.len() < MAX_VIOLATIONS {
                tracing::warn!(%msg, "invariant violated");
                violations.push(msg);
            }
        };
        let watching = watched.contains(&i);
        while let Some(t) = node.poll_transmit() {
            if *trace_payloads || watching {
                let plain = plain_of(
                    sent_opener,
                    keyring.as_ref(),
                    &config.node_config.cluster_name,
                    &t.payload,
                );
                if let Some(Ok(messages)) = plain
                    .as_deref()
                    .map(|p| wire::decode_packet(p, *cluster_hash, usize::MAX))
                {
                    if *trace_payloads {
                        tracker.on_datagram(&messages);
                    }
                    if watching {
                        watched_packets.push(WatchedPacket {
                            at: now_v,
                            from: i,
                            to: net.hosts.get(&t.dst).copied(),
                            received: false,
                            messages,
                        });
                    }
                }
            }
            net.send(now_v, i, slot.addr, t.dst, t.payload);
        }
        let mut host_checks = Vec::new();
        while let Some(check) = node.poll_host_check() {
            host_checks.push(check);
        }
        while let Some(event) = node.poll_event() {
            if let Some(m) = event.member() {
                if m.name == slot.name
                    && m.generation == slot.generation
                    && matches!(m.status, MemberStatus::Failed | MemberStatus::Left)
                    && !slot.left
                {
                    violation(format!(
                        "t={:.3}s {} emitted {} about itself (gen {})",
                        now_v.as_secs_f64(),
                        slot.name,
                        event.kind(),
                        slot.generation
                    ));
                }
            }
            match &event {
                Event::Message(d) => tracker.on_delivered(now_v, i, slot.generation, d),
                Event::KeyChanged(c) => tracker.on_key_changed(now_v, i, slot.generation, c),
                _ => {}
            }
            if *record_events {
                log.push(LoggedEvent {
                    at: now_v,
                    observer: i,
                    observer_generation: slot.generation,
                    event,
                });
            }
        }
        if config.check_invariants && slot.checked_fingerprint != Some(node.fingerprint()) {
            slot.checked_fingerprint = Some(node.fingerprint());
            let local = node.local_member();
            if matches!(local.status, MemberStatus::Failed | MemberStatus::Left) && !slot.left {
                violation(format!(
                    "t={:.3}s {} sees itself as {} without having left",
                    now_v.as_secs_f64(),
                    slot.name,
                    local.status
                ));
            }
            let name = &slot.name;
            let mut rows: Vec<(&str, u64, u64)> =
                std::iter::once((local.name.as_str(), local.generation, local.incarnation))
                    .chain(
                        node.member_briefs()
                            .map(|(n, b)| (n, b.generation, b.incarnation)),
                    )
                    .collect();
            rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
            slot.seen.observe(rows.into_iter(), |member, now_at, prev| {
                violation(format!(
                    "t={:.3}s {name} sees {member} go back from gen {} inc {} to gen {} inc {}",
                    now_v.as_secs_f64(),
                    prev.0,
                    prev.1,
                    now_at.0,
                    now_at.1
                ))
            });
        }
        let mut deadline = node
            .poll_timeout()
            .map(|d| d.saturating_duration_since(*t0));
        if let Some(leave) = slot.leave_deadline {
            deadline = Some(deadline.map_or(leave, |d| d.min(leave)));
        }
        let leave_done = slot.leave_deadline.is_some() && node.is_leave_complete();
        if let Some(d) = deadline {
            if d <= now_v && slot.last_fire == now_v && slot.fires_at_instant >= LIVELOCK_FIRES {
                violation(format!(
                    "t={:.3}s {} asked for its timer again {} times at the same instant; \
                     delayed by 1 ms",
                    now_v.as_secs_f64(),
                    slot.name,
                    slot.fires_at_instant
                ));
                deadline = Some(now_v + Duration::from_millis(1));
            }
        }
        if deadline != slot.scheduled {
            slot.timer_version += 1;
            slot.scheduled = deadline;
            if let Some(d) = deadline {
                timers.push(Reverse((d.max(now_v), i, slot.timer_version)));
            }
        }
        for check in host_checks {
            self.run_host_check(i, check);
        }
        if leave_done {
            self.take_down(i, DownReason::Left);
        }
    }

    /// Runs node `i`'s host check as the driver does: up to [`HOST_CHECK_ATTEMPTS`] SYNs
    /// spread over the check's timeout, each answered (after a round trip) if the target's host
    /// is up (its process running, paused or crashed), the path is not cut and drops no host
    /// checks, and neither the SYN nor the answer is lost; `Silent` at the timeout otherwise.
    fn run_host_check(&mut self, i: usize, check: chatter_core::HostCheck) {
        self.net.stats.host_checks += 1;
        let target = self.net.hosts.get(&check.addr).copied();
        let host_up = target.is_some_and(|t| {
            !matches!(self.slots[t].state, NodeState::Down(DownReason::HostDown))
                && !self.net.partitioned(i, t)
                && !self.net.host_checks_dropped.contains(&t)
        });
        let mut answered_after = None;
        for attempt in 0..HOST_CHECK_ATTEMPTS {
            // Every roll is drawn whatever the outcome, so that the random stream does not
            // depend on the hosts' states.
            let syn_lost = self.net.lost();
            let answer_lost = self.net.lost();
            let (there, back) = match target {
                Some(t) => (self.net.delay(i, t), self.net.delay(t, i)),
                None => (Duration::ZERO, Duration::ZERO),
            };
            let sent = check.timeout * attempt / HOST_CHECK_ATTEMPTS;
            let at = sent + there + back;
            if host_up
                && !syn_lost
                && !answer_lost
                && at < check.timeout
                && answered_after.is_none()
            {
                answered_after = Some(at);
            }
        }
        let (after, answer) = match answered_after {
            Some(at) => (at, chatter_core::HostAnswer::Answered),
            None => {
                self.net.stats.host_checks_silent += 1;
                (check.timeout, chatter_core::HostAnswer::Silent)
            }
        };
        self.net.schedule(
            self.now + after,
            i,
            Inbound::HostCheck {
                id: check.id,
                answer,
            },
        );
    }

    /// Makes node `i`'s host drop every host check (a firewall dropping SYNs to it) while its
    /// datagrams pass, or lets them through again.
    pub fn drop_host_checks(&mut self, i: usize, dropped: bool) {
        if dropped {
            self.net.host_checks_dropped.insert(i);
        } else {
            self.net.host_checks_dropped.remove(&i);
        }
    }

    // ---------------------------------------------------------------- queries

    /// Number of node slots (up or down).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no node was ever added.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Name of node `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.slots[i].name
    }

    /// Address of node `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.slots[i].addr
    }

    /// Index of the node with this name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Generation of node `i`'s current (or last) life.
    pub fn generation(&self, i: usize) -> u64 {
        self.slots[i].generation
    }

    /// Whether node `i` is running, paused or down.
    pub fn state(&self, i: usize) -> NodeState {
        self.slots[i].state
    }

    /// Virtual time node `i`'s process last went down (crash or stop after leaving), if ever.
    pub fn down_at(&self, i: usize) -> Option<Duration> {
        self.slots[i].down_at
    }

    /// Whether node `i`'s process exists (running or paused).
    pub fn is_up(&self, i: usize) -> bool {
        !matches!(self.slots[i].state, NodeState::Down(_))
    }

    /// Indices of the nodes whose process exists (running or paused), in order.
    pub fn up_nodes(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.is_up(i)).collect()
    }

    /// Node `i`'s state machine, if its process exists.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.slots.get(i)?.node.as_ref()
    }

    /// What `observer` knows of `subject` (itself included), if `observer` is up and knows it.
    ///
    /// The [`Member`] is built from the node's compact table; [`Sim::brief_of`] is cheaper.
    pub fn member_of(&self, observer: usize, subject: usize) -> Option<Member> {
        self.node(observer)?.member(self.name(subject))
    }

    /// Status, life and address `observer` gives `subject`, if `observer` is up and knows it.
    pub fn brief_of(&self, observer: usize, subject: usize) -> Option<MemberBrief> {
        self.node(observer)?.member_brief(self.name(subject))
    }

    /// The status `observer` gives `subject`, if `observer` is up and knows it.
    pub fn status_of(&self, observer: usize, subject: usize) -> Option<MemberStatus> {
        self.brief_of(observer, subject).map(|m| m.status)
    }

    /// Every up node sees every other up node as `Alive` in its current generation.
    /// Down nodes are ignored (they may still be listed as tombstones).
    pub fn all_agree_alive(&self) -> bool {
        let up = self.up_nodes();
        // Cheap check first: each node counts as many live members as there are other up nodes.
        // (Necessary only when no down node is still live in someone's view, so just a filter.)
        if up
            .iter()
            .any(|&i| self.node(i).is_some_and(|n| n.num_alive() + 1 < up.len()))
        {
            return false;
        }
        up.iter().all(|&o| {
            up.iter().all(|&s| {
                o == s
                    || self.brief_of(o, s).is_some_and(|m| {
                        m.status == MemberStatus::Alive && m.generation == self.generation(s)
                    })
            })
        })
    }

    /// Every up node other than `subject` knows `subject` and its member entry satisfies `pred`.
    pub fn all_see(&self, subject: usize, mut pred: impl FnMut(&Member) -> bool) -> bool {
        self.up_nodes()
            .into_iter()
            .filter(|&o| o != subject)
            .all(|o| self.member_of(o, subject).is_some_and(|m| pred(&m)))
    }

    /// Every up node other than `subject` sees `subject` with this status.
    pub fn all_see_status(&self, subject: usize, status: MemberStatus) -> bool {
        self.all_see(subject, |m| m.status == status)
    }

    /// Node `i`'s counters (current life only), if it is up.
    pub fn node_stats(&self, i: usize) -> Option<Stats> {
        self.node(i).map(|n| *n.stats())
    }

    /// The counters of every node, every life, summed.
    pub fn total_stats(&self) -> Stats {
        let mut total = Stats::default();
        for slot in &self.slots {
            add_stats(&mut total, &slot.retired);
            if let Some(node) = &slot.node {
                add_stats(&mut total, node.stats());
            }
        }
        total
    }

    /// The network's own counters.
    pub fn net_stats(&self) -> NetStats {
        self.net.stats
    }

    /// Every event every node emitted, in order, with virtual timestamps.
    pub fn events(&self) -> &[LoggedEvent] {
        &self.log
    }

    /// Empties the event log.
    pub fn clear_events(&mut self) {
        self.log.clear();
    }

    /// `Failed` events emitted at or after `since`.
    pub fn failed_events_since(&self, since: Duration) -> impl Iterator<Item = &LoggedEvent> {
        self.log
            .iter()
            .filter(move |e| e.at >= since && e.is_failed())
    }

    /// First time at or after `since` that any node emitted an event about `subject` matching
    /// `pred`.
    pub fn first_event_about(
        &self,
        subject: usize,
        since: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Option<&LoggedEvent> {
        let name = self.name(subject);
        self.log
            .iter()
            .find(|e| e.at >= since && e.subject() == name && pred(&e.event))
    }

    /// First time at or after `since` that anyone marked `subject` failed.
    pub fn first_failed_at(&self, subject: usize, since: Duration) -> Option<Duration> {
        self.first_event_about(subject, since, |e| matches!(e, Event::Failed(_)))
            .map(|e| e.at)
    }

    /// Invariant violations seen so far (at most 1,000 kept): an incarnation of a
    /// `(name, generation)` that went back in some observer's view, a generation that went
    /// back, a node that sees itself failed or left without having left, a timer livelock.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Number of invariant violations, including those not kept.
    pub fn violation_count(&self) -> u64 {
        self.violation_count
    }
}
