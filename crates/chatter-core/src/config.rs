//! Every tunable of the protocol, with its default and the reason for it.
//!
//! Three profiles: [`Config::lan`] (the default: one data centre, sub-millisecond to a few
//! milliseconds of latency), [`Config::wan`] (written as a diff of `lan`: slower probes, longer
//! suspicion), and [`Config::local`] (processes on one machine, tests and demos: everything faster).

use std::time::Duration;

use thiserror::Error;

/// The protocol configuration of one node.
///
/// Times are [`Duration`]s, counts are integers; [`Config::validate`] checks the rules that span
/// fields. Every field's doc gives its meaning, default (LAN profile), and the trade-off.
///
/// ```
/// use std::time::Duration;
/// let mut config = chatter_core::Config::lan();
/// config.cluster_name = "prod-eu".into();
/// config.probe_interval = Duration::from_millis(750);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Name of the cluster. A 32-bit hash of it is in every packet's envelope; packets from
    /// another cluster are dropped and counted. Default `"chatter"`.
    pub cluster_name: String,

    /// Time between two probes started by this node (one SWIM protocol period). Default 1 s.
    /// Trade-off: shorter detects a dead member sooner but costs proportionally more packets
    /// (each probe is one `Ping` and one `Ack`, about 40 bytes together).
    pub probe_interval: Duration,

    /// How long to wait for the direct `Ack` before asking other members to probe indirectly.
    /// Default 500 ms: far above a LAN round trip, so a slow reply is not mistaken for a loss.
    /// Lifeguard multiplies it by (local health score + 1).
    pub probe_timeout: Duration,

    /// Number of members asked to probe a member that missed its direct `Ack` (SWIM's `k`).
    /// Default 3: the chance that all of them and the direct path lose a packet is small even at
    /// 10% loss (0.1^4 per probe), while the cost is only paid on a missed ack.
    pub indirect_checks: usize,

    /// When the direct probe gets no ack, ping the target directly once more alongside the
    /// indirect probes (memberlist sends a TCP ping for the same reason). Default on: with
    /// independent loss `p` per datagram, a lost ping or ack no longer leads to a suspicion
    /// unless the retry is lost too, which cuts false suspicions about fivefold at 10% loss
    /// (each one is gossiped to every node, with its refutation) for one datagram per missed
    /// ack.
    pub retry_direct_probe: bool,

    /// Lifeguard suspicion multiplier `alpha`. The minimum suspicion timeout is
    /// `alpha * max(1, log10(N)) * probe_interval`. Default 5 (memberlist uses 4): with a 1 s
    /// probe interval a member stalled for 5 s (a long GC pause, a stopped VM) is refuted rather
    /// than failed, while a dead member is failed within a few seconds once confirmed.
    pub suspicion_mult: u32,

    /// Lifeguard `beta`: the maximum suspicion timeout is this multiple of the minimum. A fresh
    /// suspicion starts at the maximum and shrinks towards the minimum as independent members
    /// confirm it. Default 6 (as Lifeguard's paper and memberlist).
    pub suspicion_max_timeout_mult: u32,

    /// Suspicion timeout used instead of the Lifeguard one when the evidence is strong: the
    /// direct probe failed *and* the suspect's host answered with ICMP port-unreachable (the
    /// process is gone, the host is up), and no indirect probe got an ack. A stalled process
    /// keeps its socket open and never produces this evidence, so pause tolerance is unchanged.
    /// Default 1 s: one more probe period for contrary evidence (an ack, a refutation).
    pub unreachable_suspicion_timeout: Duration,

    /// Whether to check a member's *host* when a probe of it fails: the driver opens a TCP
    /// connection to the member's gossip address (nothing listens there over TCP, so a live
    /// kernel answers with a reset, even while the daemon is stopped; a dead or cut-off host
    /// answers nothing). A silence on a path that has shown it delivers such answers caps the
    /// suspicion at `silent_host_suspicion_timeout`. Default on. Off, Chatter sends no TCP
    /// segment and detects a silent host with the Lifeguard timeout alone.
    pub host_checks: bool,

    /// How long the driver waits for the member's host to answer a host check before calling
    /// it silent. Default 300 ms: far above any LAN round trip (a kernel answers a SYN from
    /// its interrupt handler, within a millisecond even on a loaded host) and below the
    /// moment the intermediaries' nacks end the probe (`0.8 * probe_timeout` after the
    /// indirect probes start, when the check starts too), so the answer is in before the
    /// verdict on the probe. A value above `probe_timeout` is used as `probe_timeout`, so
    /// that checks never pile up; an answer that comes after the probe ended is still used
    /// while the suspicion runs.
    pub host_check_timeout: Duration,

    /// Suspicion timeout used instead of the Lifeguard one when the direct and indirect probes
    /// failed *and* the member's host was silent to a host check on a trusted path (see
    /// `host_check_trust_period`): the host is gone or cut off, not a stalled process, whose
    /// kernel still answers. Default 500 ms, half a probe interval: the contrary evidence it
    /// waits for is a refutation from a member that others still reach (this node and its
    /// intermediaries do not), and news is gossiped at once, so a refutation crosses a LAN
    /// cluster in a few network hops, milliseconds; longer only delays the verdict on a host
    /// that is gone (at 1 s, the median detection of a silent host at 5 nodes in the
    /// simulator was 3.7 s; at 500 ms, 3.2 s, and 2.0 s once paths are calibrated at join;
    /// HashiCorp Serf's is 6 to 7 s). It also sets
    /// how soon other members take this node's verdict: half the shortest honest suspicion
    /// (`Membership::failed`), 250 ms here. A member whose host answered keeps the full
    /// Lifeguard timeout, so pause tolerance is unchanged; a frozen VM or a host whose kernel
    /// hangs looks like a dead host and is failed after this timeout.
    pub silent_host_suspicion_timeout: Duration,

    /// A member's host-check path is trusted for this long after a host check of it was
    /// answered; silence counts as evidence only on a trusted path (a firewall that drops SYNs
    /// makes a path untrusted, and there Chatter behaves as without host checks). Default
    /// 10 min: firewall rules and routes change rarely, and keeping trust fresh costs one
    /// calibration check per member per half period (one per probe interval in all on average).
    /// Shorter reacts sooner to a path that starts dropping SYNs; longer needs fewer checks.
    /// Beyond `host_check_trust_period / (2 * probe_interval)` members (300 in `lan`) the
    /// calibrations cannot keep every path trusted, and host loss on the others is detected
    /// with the Lifeguard timeout.
    pub host_check_trust_period: Duration,

    /// Half-life of a member's flap penalty (`flap_damping.rs`). A member that comes back in
    /// the same life after this node listed it failed, or after its host was silent to this
    /// node's host check, has shown that its silence was an outage (a flapping link), not
    /// death: each such flap adds 1 to its penalty, which halves every half-life, and while
    /// it is at least 0.5 the member is *damped*: a silent host no longer caps its suspicion,
    /// which runs the full Lifeguard timeout instead (a short outage outlasts it, so verdicts
    /// do not flap with the link). Every suspicion a damped member survives is a flap too, so
    /// the penalty adds up while the link keeps flapping. One flap damps for one half-life;
    /// flaps up to about 1.7 half-lives apart keep the member damped from one to the next;
    /// after the last, damping lasts at most four half-lives. Default 20 s: four cycles of a
    /// link flapping every 5 s (the hosts suite's), and links flapping with periods up to
    /// about 35 s stay damped; short, so that a member whose link went down once (a switch
    /// reboot, a cable moved) gets the fast detection of its host's loss back within 20 s.
    /// Meanwhile its loss is detected as without host checks. Longer damps slower flapping
    /// too, at the cost of longer slow detection after a single outage. Zero turns damping
    /// off (every outage of a trusted path may be failed after
    /// `silent_host_suspicion_timeout`).
    pub flap_damping_half_life: Duration,

    /// Number of independent confirmations after which the suspicion timeout reaches its minimum
    /// (Lifeguard `K`). Default 3. Capped at `N - 2`, the members that could confirm.
    pub suspicion_confirmations: u32,

    /// Maximum Lifeguard local health score (awareness). Timeouts and the probe interval are
    /// multiplied by `score + 1`. Default 8 (as memberlist): a node that misses its own acks
    /// slows its probing down to 9x rather than accusing healthy members.
    pub awareness_max: u32,

    /// Each update is piggybacked `retransmit_mult * ceil(log10(N + 1))` times. Default 4: with
    /// a fanout of 3 this reaches every member with high probability even at 20% loss, while
    /// idle clusters send nothing.
    pub retransmit_mult: u32,

    /// Like `retransmit_mult`, for the announcements of key/value state (`StateHave`: "I hold
    /// node X's writes up to version v", about 30 bytes, one per owner). A write itself is
    /// pushed once along the broadcast tree; announcements ride only on datagrams sent anyway
    /// (probes, acks), and a node that hears of writes it lacks pulls them from the announcer:
    /// they repair pushes lost on the tree, anti-entropy (`sync_interval`) whatever is left.
    /// Default 4, as `retransmit_mult`: each node announces an owner's new writes on its next
    /// `4 * ceil(log10(N + 1))` datagrams (8 at 50 nodes), a few seconds of probes, so a node
    /// that missed a push hears of it within about a second. Lower values leave more repairs
    /// to anti-entropy; higher ones add about 30 bytes per datagram while writes are fresh.
    pub state_retransmit_mult: u32,

    /// Period of gossip rounds while there are updates to spread. Default 200 ms. Rounds are
    /// also started at once when a new update arrives, so this only paces retransmissions.
    pub gossip_interval: Duration,

    /// Members each gossip round sends to. Default 3.
    pub gossip_fanout: usize,

    /// Period of the push-pull anti-entropy exchange with one random member. Default 10 s.
    /// Members in sync only exchange a 64-bit fingerprint (about 20 bytes each way), so the
    /// cost is flat in the cluster size; a full state exchange only happens on a mismatch.
    pub sync_interval: Duration,

    /// Extra anti-entropy exchanges a node starts when it has just joined: the first one
    /// `probe_interval` after it was created (or as soon as it knows a live member), each next
    /// one twice as long after the previous, then every `sync_interval`. Default 2 (at about
    /// 1 s and 3 s in `lan`). Gossip reaches a member with probability about
    /// `1 - e^-retransmit_limit`; when a whole fleet starts at once, N^2 (node, member) pairs
    /// each take that chance, and in the simulator a quarter to a half of the 100-node bursts
    /// left some node waiting for the regular exchange (5-10 s) to learn of some member. Two
    /// early exchanges with random members repair such a miss within seconds, at a cost only
    /// during the join: a fingerprint when the tables agree, a table exchange when they do not.
    pub join_syncs: u32,

    /// Period at which a node contacts a seed that is not a live member (a seed may be a
    /// process this node never saw as a member, which re-contact of failed members does not
    /// reach). Default 15 s: seeds are few and usually members already.
    pub reconnect_interval: Duration,

    /// Re-contact of failed members (`recontact.rs`): each node ticks about once per this
    /// interval (jittered by ±50 %), and the cluster as a whole pings each freshly failed member
    /// about once per this interval, spread over the members. Default 1 s, the probe interval:
    /// a member cut off and restored, or the far side of a healed partition, is found within
    /// about a second, like a live member's probe; a dead host costs the cluster about one
    /// small datagram per second at first, less as it stays failed (`recontact_backoff`). A
    /// node never sends more than one re-contact per tick, however many members it lists
    /// failed.
    pub recontact_interval: Duration,

    /// How the re-contact of a failed member slows down as it stays failed: the cluster-wide
    /// interval is the time the member has been failed divided by this, within
    /// `recontact_interval` and `recontact_max_interval`. Default 16: a member failed for 16 s
    /// or less is pinged about every second, one failed for 2 min about every 7.5 s; each next
    /// attempt comes about 6 % of the failure's age later, so a cut of any length is healed
    /// within about a sixteenth of its length (and at least `recontact_interval`), while a
    /// dead host costs only a logarithmically growing number of datagrams until the cap.
    pub recontact_backoff: u32,

    /// Longest cluster-wide interval between two re-contacts of one failed member. Default
    /// 60 s: a member failed for an hour (`failed_retention`) costs about 125 pings of under
    /// 100 bytes in all, and a hundred dead tombstones fewer than two datagrams a second for
    /// the whole cluster.
    pub recontact_max_interval: Duration,

    /// First retry delay for a seed that did not answer; doubles up to `join_retry_max`.
    /// Default 1 s.
    pub join_retry_initial: Duration,

    /// Longest delay between two attempts to reach an unresponsive seed. Default 30 s.
    pub join_retry_max: Duration,

    /// How long a failed member stays in the table (as a tombstone, visible to operators and
    /// contacted now and then to heal partitions) before it is removed. Default 1 h.
    pub failed_retention: Duration,

    /// How long a member that left stays in the table before it is removed. Default 10 min:
    /// a clean leave needs no partition healing, only time for every member to hear of it.
    pub left_retention: Duration,

    /// Largest datagram this node builds. Default 1400 bytes: fits a 1500-byte Ethernet MTU
    /// after IP and UDP headers with room for an encryption overhead.
    pub packet_budget: usize,

    /// Largest datagram accepted; bigger ones are dropped and counted. Default 65,507 bytes,
    /// UDP's limit over IPv4.
    pub max_packet_size: usize,

    /// Upper bound on the member table, tombstones included. Updates about new members beyond
    /// it are dropped and counted, so a flood of forged members cannot exhaust memory.
    /// Default 100,000.
    pub max_members: usize,

    /// Largest encoded size of a member's tags. Default 512 bytes, so an `Alive` message always
    /// fits one packet together with piggybacked updates.
    pub max_tags_size: usize,

    /// Largest number of indirect probes this node runs for others at once; requests beyond it
    /// are dropped and counted. Default 256.
    pub max_pending_indirect: usize,

    /// Longest key of the per-node key/value state, in bytes. Default 128.
    pub max_key_len: usize,

    /// Longest member name, in bytes, whether this node's own or one received from the network
    /// (a message naming a longer one is dropped and counted). Default 128, the daemon's limit
    /// on `--node-name`: a name rides in most messages, and a bound in bytes keeps a stranger
    /// from filling the piggyback queue and the member table with a few huge names.
    pub max_name_len: usize,

    /// Largest value of the per-node key/value state, in bytes. Default 1024, so that any
    /// single write fits one datagram with room for piggybacked updates.
    pub max_value_size: usize,

    /// Most keys one node's state may hold (tombstones included). Default 1024. Writes beyond it
    /// fail locally; replicated writes beyond it are dropped and counted.
    pub max_keys_per_node: usize,

    /// Most bytes (keys and values) one node's state may hold. Default 256 KiB, so a full
    /// replica of a 1,000-node cluster stays under 256 MiB even if every node is at the limit.
    pub max_state_bytes_per_node: usize,

    /// How long a deleted key's tombstone is kept before it is collected. Default 1 h. A member
    /// that was out of touch for longer receives the whole state of the node again (a reset).
    pub kv_tombstone_grace: Duration,

    /// Most datagrams of key/value deltas sent in answer to one digest. Default 8 (about 11 KB):
    /// state larger than that converges over several anti-entropy rounds.
    pub max_delta_packets: usize,

    /// Longest tag of a user message, in bytes. Default 64.
    pub max_tag_len: usize,

    /// Largest payload of a user message, in bytes. Default 1024, so a message travels in one
    /// datagram. Larger payloads are refused with an error.
    pub max_message_size: usize,

    /// Plumtree: neighbours each node keeps (eager or lazy links of the broadcast tree). Links
    /// are symmetric, so the average degree is about twice this. Default 3: a random graph of
    /// this degree is connected with high probability, and the first broadcasts prune it to a
    /// tree.
    pub broadcast_neighbours: usize,

    /// Plumtree: upper bound on neighbours (links accepted from others included). Default 8.
    pub max_broadcast_neighbours: usize,

    /// Plumtree: how long to wait after an announcement of a missing message before asking the
    /// announcer for it (and making the link eager). Default 100 ms: a message pushed along the
    /// tree normally arrives within a few milliseconds, announcements ride later probes.
    pub graft_timeout: Duration,

    /// Plumtree: delay before asking the next announcer when a graft went unanswered.
    /// Default 500 ms.
    pub graft_retry: Duration,

    /// Messages kept to answer grafts (and remembered as delivered). Default 1024 messages.
    pub message_cache_size: usize,

    /// How long a message is kept to answer grafts. Default 60 s.
    pub message_cache_age: Duration,

    /// Key rotation: how long the member that started a key operation waits for every live
    /// member's answer, re-sending the command to the silent ones every `probe_interval`.
    /// Members still silent then are reported as such. Default 5 s (`lan`), 25 s (`wan`): five
    /// sends a probe interval apart, so a live member on a link losing 10 % of datagrams each
    /// way misses all of them with probability (1 - 0.81)^5, about 2.5e-4; and short enough
    /// that the operator's HTTP request (30 s timeout) gets the report.
    pub key_rotation_timeout: Duration,
}

impl Config {
    /// The default profile: one data centre or cloud region.
    pub fn lan() -> Self {
        Self {
            cluster_name: "chatter".to_owned(),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            retry_direct_probe: true,
            suspicion_mult: 5,
            suspicion_max_timeout_mult: 6,
            unreachable_suspicion_timeout: Duration::from_secs(1),
            host_checks: true,
            host_check_timeout: Duration::from_millis(300),
            silent_host_suspicion_timeout: Duration::from_millis(500),
            host_check_trust_period: Duration::from_secs(600),
            flap_damping_half_life: Duration::from_secs(20),
            suspicion_confirmations: 3,
            awareness_max: 8,
            retransmit_mult: 4,
            state_retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            sync_interval: Duration::from_secs(10),
            join_syncs: 2,
            reconnect_interval: Duration::from_secs(15),
            recontact_interval: Duration::from_secs(1),
            recontact_backoff: 16,
            recontact_max_interval: Duration::from_secs(60),
            join_retry_initial: Duration::from_secs(1),
            join_retry_max: Duration::from_secs(30),
            failed_retention: Duration::from_secs(3600),
            left_retention: Duration::from_secs(600),
            packet_budget: 1400,
            max_packet_size: 65_507,
            max_members: 100_000,
            max_tags_size: 512,
            max_pending_indirect: 256,
            max_key_len: 128,
            max_name_len: 128,
            max_value_size: 1024,
            max_keys_per_node: 1024,
            max_state_bytes_per_node: 256 * 1024,
            kv_tombstone_grace: Duration::from_secs(3600),
            max_delta_packets: 8,
            max_tag_len: 64,
            max_message_size: 1024,
            broadcast_neighbours: 3,
            max_broadcast_neighbours: 8,
            graft_timeout: Duration::from_millis(100),
            graft_retry: Duration::from_millis(500),
            message_cache_size: 1024,
            message_cache_age: Duration::from_secs(60),
            key_rotation_timeout: Duration::from_secs(5),
        }
    }

    /// Members spread over regions: round trips of tens to hundreds of milliseconds.
    /// Written as a diff of [`Config::lan`].
    pub fn wan() -> Self {
        Self {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            unreachable_suspicion_timeout: Duration::from_secs(5),
            host_check_timeout: Duration::from_secs(2),
            silent_host_suspicion_timeout: Duration::from_millis(2500),
            flap_damping_half_life: Duration::from_secs(100),
            gossip_interval: Duration::from_millis(500),
            gossip_fanout: 4,
            sync_interval: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(30),
            recontact_interval: Duration::from_secs(5),
            recontact_max_interval: Duration::from_secs(300),
            key_rotation_timeout: Duration::from_secs(25),
            ..Self::lan()
        }
    }

    /// Processes on one machine (tests, demos): everything ten times faster than `lan`.
    pub fn local() -> Self {
        Self {
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(100),
            unreachable_suspicion_timeout: Duration::from_millis(200),
            host_check_timeout: Duration::from_millis(60),
            silent_host_suspicion_timeout: Duration::from_millis(100),
            flap_damping_half_life: Duration::from_secs(2),
            gossip_interval: Duration::from_millis(50),
            sync_interval: Duration::from_secs(2),
            reconnect_interval: Duration::from_secs(2),
            recontact_interval: Duration::from_millis(200),
            recontact_max_interval: Duration::from_secs(10),
            join_retry_initial: Duration::from_millis(200),
            join_retry_max: Duration::from_secs(5),
            graft_timeout: Duration::from_millis(20),
            graft_retry: Duration::from_millis(100),
            ..Self::lan()
        }
    }

    /// Checks the rules that span fields.
    ///
    /// Returns the first rule broken; the config is not changed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.probe_interval.is_zero() {
            return Err(ConfigError::Invalid("probe_interval must be positive"));
        }
        if self.key_rotation_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "key_rotation_timeout must be positive",
            ));
        }
        if self.probe_timeout.is_zero() || self.probe_timeout >= self.probe_interval {
            return Err(ConfigError::Invalid(
                "probe_timeout must be positive and shorter than probe_interval",
            ));
        }
        if self.host_check_timeout.is_zero() {
            return Err(ConfigError::Invalid("host_check_timeout must be positive"));
        }
        if self.silent_host_suspicion_timeout.is_zero()
            || self.host_check_trust_period < self.probe_interval
        {
            return Err(ConfigError::Invalid(
                "silent_host_suspicion_timeout must be positive and host_check_trust_period \
                 at least probe_interval",
            ));
        }
        if self.gossip_interval.is_zero() || self.sync_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "gossip_interval and sync_interval must be positive",
            ));
        }
        if self.reconnect_interval.is_zero() || self.join_retry_initial.is_zero() {
            return Err(ConfigError::Invalid(
                "reconnect_interval and join_retry_initial must be positive",
            ));
        }
        if self.recontact_interval.is_zero()
            || self.recontact_backoff == 0
            || self.recontact_max_interval < self.recontact_interval
        {
            return Err(ConfigError::Invalid(
                "recontact_interval must be positive and at most recontact_max_interval, \
                 recontact_backoff at least 1",
            ));
        }
        if self.join_retry_max < self.join_retry_initial {
            return Err(ConfigError::Invalid(
                "join_retry_max must be at least join_retry_initial",
            ));
        }
        if self.suspicion_mult == 0 || self.suspicion_max_timeout_mult == 0 {
            return Err(ConfigError::Invalid(
                "suspicion multipliers must be at least 1",
            ));
        }
        if self.retransmit_mult == 0 || self.state_retransmit_mult == 0 || self.gossip_fanout == 0 {
            return Err(ConfigError::Invalid(
                "retransmit_mult, state_retransmit_mult and gossip_fanout must be at least 1",
            ));
        }
        if self.packet_budget < 512 || self.packet_budget > self.max_packet_size {
            return Err(ConfigError::Invalid(
                "packet_budget must be at least 512 bytes and at most max_packet_size",
            ));
        }
        if self.max_packet_size > 65_507 {
            return Err(ConfigError::Invalid(
                "max_packet_size cannot exceed 65507 (UDP limit)",
            ));
        }
        if self.max_tags_size + 128 > self.packet_budget {
            return Err(ConfigError::Invalid(
                "max_tags_size must leave 128 bytes of packet_budget",
            ));
        }
        if self.max_value_size + self.max_key_len + 128 > self.packet_budget
            || self.max_message_size + self.max_tag_len + 160 > self.packet_budget
        {
            return Err(ConfigError::Invalid(
                "a key/value write and a user message must each fit one packet_budget",
            ));
        }
        if self.broadcast_neighbours == 0
            || self.max_broadcast_neighbours < self.broadcast_neighbours
        {
            return Err(ConfigError::Invalid(
                "broadcast_neighbours must be at least 1 and at most max_broadcast_neighbours",
            ));
        }
        if self.max_members < 2 {
            return Err(ConfigError::Invalid("max_members must be at least 2"));
        }
        if self.cluster_name.is_empty() {
            return Err(ConfigError::Invalid("cluster_name must not be empty"));
        }
        Ok(())
    }

    /// Lifeguard's minimum suspicion timeout for a cluster of `n` members:
    /// `suspicion_mult * max(1, log10(n)) * probe_interval`.
    pub fn suspicion_min_timeout(&self, n: usize) -> Duration {
        let scale = libm::log10(n.max(1) as f64).max(1.0);
        self.probe_interval
            .mul_f64(f64::from(self.suspicion_mult) * scale)
    }

    /// Lifeguard's maximum suspicion timeout: `suspicion_max_timeout_mult` times the minimum.
    pub fn suspicion_max_timeout(&self, n: usize) -> Duration {
        self.suspicion_min_timeout(n) * self.suspicion_max_timeout_mult
    }

    /// Cluster-wide interval between two re-contacts of a member failed for `failed_for`:
    /// `failed_for / recontact_backoff`, within `recontact_interval` and
    /// `recontact_max_interval`.
    pub fn recontact_period(&self, failed_for: Duration) -> Duration {
        (failed_for / self.recontact_backoff.max(1))
            .clamp(self.recontact_interval, self.recontact_max_interval)
    }

    /// How many times each update is piggybacked in a cluster of `n` members:
    /// `retransmit_mult * ceil(log10(n + 1))`.
    pub fn retransmit_limit(&self, n: usize) -> u32 {
        self.retransmit_mult * Self::log_scale(n)
    }

    /// How many times each key/value update is piggybacked in a cluster of `n` members:
    /// `state_retransmit_mult * ceil(log10(n + 1))`.
    pub fn state_retransmit_limit(&self, n: usize) -> u32 {
        self.state_retransmit_mult * Self::log_scale(n)
    }

    /// `ceil(log10(n + 1))`, at least 1: the number of decimal digits of `n`.
    fn log_scale(n: usize) -> u32 {
        n.max(1).ilog10() + 1
    }

    /// Upper bound on the time from a crash until every member marks the crashed member failed,
    /// for a cluster of `n` members, assuming no packet loss and a healthy prober: the crashed
    /// member is probed within `n` probe periods (round-robin), the probe and the indirect probes
    /// time out within one period, the suspicion runs for at most the maximum timeout, and the
    /// verdict spreads in a few gossip rounds.
    pub fn detection_bound(&self, n: usize) -> Duration {
        // ceil(log2(n + 1)) is the bit length of n.
        let rounds = (usize::BITS - n.leading_zeros()) + 2;
        self.probe_interval * (n as u32 + 1)
            + self.suspicion_max_timeout(n)
            + self.gossip_interval * rounds
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::lan()
    }
}

/// A configuration that breaks a rule spanning fields; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The rule that is broken.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer forms of the logarithms agree with the formulas they stand for.
    #[test]
    fn integer_logarithms_match_the_formulas() {
        let sizes = (0..2_000usize).chain([9_999, 10_000, 65_535, 65_536, 1 << 40]);
        for n in sizes {
            let digits = ((n + 1) as f64).log10().ceil().max(1.0) as u32;
            assert_eq!(Config::log_scale(n), digits, "log_scale({n})");
            let bits = (n as f64 + 1.0).log2().ceil() as u32;
            assert_eq!(usize::BITS - n.leading_zeros(), bits, "bit length of {n}");
        }
        let lan = Config::lan();
        for n in [1usize, 5, 10, 50, 1_000] {
            let float = lan
                .probe_interval
                .mul_f64(f64::from(lan.suspicion_mult) * (n as f64).log10().max(1.0));
            let ours = lan.suspicion_min_timeout(n);
            assert!(ours.abs_diff(float) < Duration::from_micros(1), "n = {n}");
        }
    }

    #[test]
    fn profiles_are_valid() {
        Config::lan().validate().unwrap();
        Config::wan().validate().unwrap();
        Config::local().validate().unwrap();
    }

    #[test]
    fn rejects_probe_timeout_longer_than_interval() {
        let config = Config {
            probe_timeout: Duration::from_secs(2),
            ..Config::lan()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn suspicion_timeout_scales_with_log_n() {
        let config = Config::lan();
        assert_eq!(config.suspicion_min_timeout(5), Duration::from_secs(5));
        assert_eq!(config.suspicion_min_timeout(100), Duration::from_secs(10));
        assert_eq!(config.suspicion_max_timeout(100), Duration::from_secs(60));
    }

    #[test]
    fn recontact_slows_down_with_the_age_of_the_failure_within_bounds() {
        let config = Config::lan();
        let s = Duration::from_secs;
        assert_eq!(config.recontact_period(Duration::ZERO), s(1));
        assert_eq!(config.recontact_period(s(16)), s(1));
        assert_eq!(config.recontact_period(s(120)), Duration::from_millis(7500));
        assert_eq!(config.recontact_period(s(3600)), s(60));
        let broken = Config {
            recontact_max_interval: Duration::from_millis(500),
            ..Config::lan()
        };
        assert!(broken.validate().is_err());
    }

    #[test]
    fn retransmit_limit_grows_with_log_n() {
        let config = Config::lan();
        assert_eq!(config.retransmit_limit(1), 4);
        assert_eq!(config.retransmit_limit(20), 8);
        assert_eq!(config.retransmit_limit(1000), 16);
    }
}
