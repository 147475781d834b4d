//! The node: one member's protocol state machine, tying probes, suspicion, dissemination and
//! anti-entropy together behind the sans-IO `handle_*` / `poll_*` surface.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use thiserror::Error;
use tracing::debug;

use crate::anti_entropy::{AntiEntropy, FullAnswer};
use crate::config::{Config, ConfigError};
use crate::dissemination::Dissemination;
use crate::drop_log::{DropLog, DropReason};
use crate::encryption::{Encryption, EncryptionError, Inbound, Mode};
use crate::event::Event;
use crate::host_check::{HostCheck, HostChecks};
use crate::key_rotation::KeyRotation;
use crate::kv_store::KvStore;
use crate::lives::LifeChecks;
use crate::member::{Member, MemberBrief, MemberStatus, Tags};
use crate::membership::Membership;
use crate::plumtree::Plumtree;
use crate::prober::Prober;
use crate::recontact::Recontact;
use crate::stats::Stats;
use crate::table::row_hash;
use crate::wire::{self, DecodeError, Message};

/// Who a node is: the identity it announces to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Unique name in the cluster.
    pub name: String,
    /// Address other members send to (the advertised address).
    pub addr: SocketAddr,
    /// New on every process start, and higher than the previous one (milliseconds since the
    /// Unix epoch at start is a good choice), so a restart replaces the previous life.
    pub generation: u64,
    /// Tags published with the member.
    pub tags: Tags,
}

impl Identity {
    /// An identity without tags.
    pub fn new(name: impl Into<String>, addr: SocketAddr, generation: u64) -> Self {
        Self {
            name: name.into(),
            addr,
            generation,
            tags: Tags::new(),
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// Tags that cannot be published; the node's tags were not changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TagsError {
    /// The encoded tags exceed `Config::max_tags_size`.
    #[error("tags take {size} bytes encoded, more than the limit of {limit}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The node has left the cluster; its tags can no longer change.
    #[error("the node has left the cluster")]
    Left,
}

/// One member's protocol state machine.
///
/// Feed it inputs (`handle_datagram`, `handle_unreachable`, `handle_host_check`,
/// `handle_timeout`, commands), then drain `poll_transmit`, `poll_event` and `poll_host_check`
/// until `None`, then ask `poll_timeout` for the next deadline. See the crate documentation for a complete loop.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: Config,
    pub(crate) cluster: u32,
    pub(crate) me: Member,
    /// The member table, suspicions, local health and the rules that change them
    /// (`membership.rs`).
    pub(crate) membership: Membership,
    pub(crate) rng: ChaCha8Rng,
    /// The piggyback queues and the gossip schedule (`dissemination.rs`).
    pub(crate) dissemination: Dissemination,
    /// The probe in flight, relays run for others, the probe schedule (`prober.rs`).
    pub(crate) prober: Prober,
    /// Seeds, exchange timers and the per-peer answer memos (`anti_entropy.rs`).
    pub(crate) anti_entropy: AntiEntropy,
    /// The re-contact of failed members: its tick and the ping awaiting an ack
    /// (`recontact.rs`).
    pub(crate) recontact: Recontact,
    pub(crate) next_reap: Instant,
    pub(crate) leaving: bool,
    pub(crate) plumtree: Plumtree,
    /// Key/value state: this node's own, replicas, fingerprint, writes on the tree.
    pub(crate) kv: KvStore,
    /// New members and new lives being checked before the table takes them.
    pub(crate) life_checks: LifeChecks,
    /// While a datagram from a sender that is not a live member is handled: its address and
    /// the bytes still allowed in answer to it (no answer larger than the question).
    answer_allowance: Option<(SocketAddr, usize)>,
    /// Keyring, mode, sealer and replay windows: every datagram passes through it on the way
    /// out (`push_transmit`) and on the way in (`handle_datagram`).
    pub(crate) encryption: Encryption,
    /// Cluster-wide key operations started here, and key commands answered (`key_rotation.rs`).
    pub(crate) key_rotation: KeyRotation,
    /// When each kind of dropped datagram was last logged (one line per second per kind).
    pub(crate) drop_log: DropLog,
    /// Host checks in flight and each path's trust (`host_check.rs`).
    pub(crate) host_checks: HostChecks,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pub(crate) stats: Stats,
}

impl Node {
    /// A node that knows only itself. Call [`Node::join`] to contact seeds.
    ///
    /// `rng_seed` seeds every random choice (probe order, gossip targets), so the same inputs
    /// give the same outputs. Fails only if `config` breaks a rule of [`Config::validate`].
    pub fn new(
        identity: Identity,
        config: Config,
        rng_seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if identity.generation > crate::limits::MAX_GENERATION {
            return Err(ConfigError::Invalid(
                "the identity's generation is above limits::MAX_GENERATION",
            ));
        }
        if identity.name.is_empty() || identity.name.len() > config.max_name_len {
            return Err(ConfigError::Invalid(
                "the identity's name must be 1 to max_name_len bytes",
            ));
        }
        let me = Member::new(
            identity.name,
            identity.addr,
            identity.generation,
            0,
            identity.tags,
            now,
        );
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        // Spread the periodic work of nodes started together over one period.
        let jitter = |rng: &mut ChaCha8Rng, d: std::time::Duration| {
            d.mul_f64(rand::Rng::random_range(rng, 0.0..1.0))
        };
        let next_probe = now + jitter(&mut rng, config.probe_interval);
        let anti_entropy = AntiEntropy::new(now, &config, &mut rng);
        let recontact = Recontact::new(now, &config, &mut rng);
        let kv = KvStore::new(&me.name, me.generation);
        let mut node = Self {
            plumtree: Plumtree::new(config.sync_interval),
            kv,
            cluster: wire::cluster_hash(&config.cluster_name),
            membership: Membership::new(now, config.awareness_max),
            next_reap: now + config.probe_interval,
            config,
            me,
            rng,
            dissemination: Dissemination::default(),
            prober: Prober::new(next_probe),
            anti_entropy,
            recontact,
            leaving: false,
            life_checks: LifeChecks::default(),
            answer_allowance: None,
            encryption: Encryption::default(),
            key_rotation: KeyRotation::default(),
            drop_log: DropLog::default(),
            host_checks: HostChecks::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        };
        node.broadcast_self_alive(now);
        Ok(node)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.me.name
    }

    /// The address this node advertises.
    pub fn local_addr(&self) -> SocketAddr {
        self.me.addr
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node as a member (its own status is `Alive`, or `Left` after [`Node::leave`]).
    pub fn local_member(&self) -> &Member {
        &self.me
    }

    /// Other members this node knows, failed and left tombstones included, ordered by name.
    ///
    /// Each [`Member`] is built on demand from the node's compact table (the table of a large
    /// cluster would not fit in memory as `Member`s); for a quick look at one member, use
    /// [`Node::member_brief`].
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        self.membership.members()
    }

    /// The member called `name`, this node included.
    pub fn member(&self, name: &str) -> Option<Member> {
        if name == self.me.name {
            Some(self.me.clone())
        } else {
            self.membership.member(name)
        }
    }

    /// Status, life and address of the member called `name` (this node included), without
    /// building a whole [`Member`].
    pub fn member_brief(&self, name: &str) -> Option<MemberBrief> {
        if name == self.me.name {
            return Some(MemberBrief::of(&self.me));
        }
        self.membership.get(name).map(|r| r.brief())
    }

    /// Name and [`MemberBrief`] of every other member this node knows, in no particular order:
    /// the cheap way to scan a large table.
    pub fn member_briefs(&self) -> impl Iterator<Item = (&str, MemberBrief)> + '_ {
        self.membership.iter().map(|r| (r.name.as_str(), r.brief()))
    }

    /// Enters members known to be alive, as if anti-entropy had just brought them, without
    /// events or gossip: for simulators that start from a converged cluster instead of
    /// simulating every join, and for restoring a saved member list. They are probed from the
    /// next protocol period on and fail as usual if they are gone. Names already known (this
    /// node's own included) are skipped; the table stops at `Config::max_members`.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use chatter_core::{Config, Identity, Node};
    /// # #[allow(clippy::disallowed_methods)] let now = Instant::now();
    /// let mut node = Node::new(Identity::new("a", ([10, 0, 0, 1], 7000).into(), 1), Config::lan(), 1, now)?;
    /// node.preload_members(now, [("b", ([10, 0, 0, 2], 7000).into(), 1)]);
    /// assert_eq!(node.num_alive(), 1);
    /// assert!(node.poll_event().is_none());
    /// # Ok::<(), chatter_core::ConfigError>(())
    /// ```
    pub fn preload_members<'a>(
        &mut self,
        now: Instant,
        members: impl IntoIterator<Item = (&'a str, SocketAddr, u64)>,
    ) {
        let me = self.me.name.clone();
        let left_out = self.membership.preload(
            now,
            members.into_iter().filter(|(name, _, _)| *name != me),
            self.config.max_members,
            &mut self.rng,
        );
        self.stats.dropped_table_full += left_out as u64;
    }

    /// Other members that are alive or suspect.
    pub fn num_alive(&self) -> usize {
        self.membership.live()
    }

    /// Sets the gossip encryption: the keyring (the primary key seals, every key opens) and the
    /// [`Mode`]; `None` with [`Mode::Plaintext`] turns encryption off. Takes effect for the next
    /// datagram in either direction; the replay windows of the senders heard so far are kept.
    ///
    /// A command rather than a [`Config`] field: `Config` is `Clone` and `Debug` and is copied
    /// into simulations and logs, and key material belongs in one place only.
    ///
    /// `epoch` starts a new sender life for sealing (its datagrams are numbered from 0 again),
    /// so it must be a fresh random `u64` on every call: the driver draws it from the OS RNG,
    /// the simulator and tests from their seeded RNG. **Never reuse an epoch under a key (never
    /// take it from a clock, a counter or a saved file): two datagrams sealed under the same
    /// key, epoch and counter share a nonce, which reveals the XOR of their plaintexts and lets
    /// an observer forge authentication tags for that key.**
    ///
    /// Fails, changing nothing, if a keyed mode has no keyring, or if sealing would not leave
    /// room in `Config::packet_budget` for the largest item the config allows.
    pub fn set_keyring(
        &mut self,
        keyring: Option<chatter_seal::Keyring>,
        mode: Mode,
        epoch: u64,
    ) -> Result<(), EncryptionError> {
        self.encryption.set(&self.config, keyring, mode, epoch)
    }

    /// The encryption mode in force.
    pub fn encryption_mode(&self) -> Mode {
        self.encryption.mode()
    }

    /// The keyring in force, if any (its `Debug` shows fingerprints only).
    pub fn keyring(&self) -> Option<&chatter_seal::Keyring> {
        self.encryption.keyring()
    }

    /// Bytes of messages one datagram may carry: `Config::packet_budget`, less the sealing
    /// overhead when datagrams are sent sealed, so that no datagram on the wire exceeds the
    /// budget.
    pub fn budget(&self) -> usize {
        self.config
            .packet_budget
            .saturating_sub(self.encryption.overhead())
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Lifeguard local health score: 0 when healthy, up to `Config::awareness_max`.
    pub fn health_score(&self) -> u32 {
        self.membership.health_score()
    }

    /// Members this node currently suspects (running suspicion timers).
    pub fn num_suspicions(&self) -> usize {
        self.membership.num_suspicions()
    }

    /// Updates waiting in the piggyback queue.
    pub fn pending_broadcasts(&self) -> usize {
        self.dissemination.len()
    }

    /// Fingerprint of the member table as anti-entropy compares it.
    pub fn fingerprint(&self) -> u64 {
        self.membership.fingerprint()
            ^ row_hash(
                &self.me.name,
                self.me.generation,
                self.me.incarnation,
                self.me.status,
            )
    }

    /// Publishes new tags: bumps the incarnation and gossips them.
    pub fn set_tags(&mut self, now: Instant, tags: Tags) -> Result<(), TagsError> {
        let size = postcard::to_allocvec(&tags)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > self.config.max_tags_size {
            return Err(TagsError::TooLarge {
                size,
                limit: self.config.max_tags_size,
            });
        }
        if self.leaving {
            return Err(TagsError::Left);
        }
        self.me.tags = tags;
        self.raise_incarnation(now, 0);
        self.broadcast_self_alive(now);
        Ok(())
    }

    /// Leaves the cluster gracefully: gossips `Left`, stops probing and refuting. Keep driving
    /// the node until [`Node::is_leave_complete`] (or a timeout of your choice) so the news is
    /// out before the process exits.
    pub fn leave(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        // At the largest incarnation, `Left` still wins: at equal incarnations it outranks
        // every other status.
        self.me.incarnation = self
            .me
            .incarnation
            .saturating_add(1)
            .min(crate::limits::MAX_INCARNATION);
        self.me.status = MemberStatus::Left;
        self.me.status_since = now;
        self.prober.abandon();
        self.membership.clear_suspicions();
        let left = Message::Left(wire::Left {
            name: self.me.name.clone(),
            generation: self.me.generation,
            incarnation: self.me.incarnation,
        });
        self.enqueue_broadcast(now, &self.me.name.clone(), &left);
    }

    /// Whether the `Left` announcement has been sent as many times as any update is, or there
    /// is nobody left to tell.
    pub fn is_leave_complete(&self) -> bool {
        self.leaving && (!self.dissemination.contains(&self.me.name) || self.membership.live() == 0)
    }

    /// Handles one received datagram. Malformed, foreign or oversize datagrams are dropped,
    /// counted in [`Stats`] and logged at `debug`; nothing else changes.
    ///
    /// With a keyring, a sealed datagram is opened before any decoding; one that does not open
    /// (or a plain one in [`Mode::Sealed`]) is counted in `Stats::dropped_sealed` and changes
    /// nothing else.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let received = data.len();
        let opened = match self.encryption.inbound(
            &self.config.cluster_name,
            data,
            &mut self.stats.dropped_sealed,
        ) {
            Inbound::AsReceived => None,
            Inbound::Plain(plain) => Some(plain),
            Inbound::Refused(why) => {
                if let Some(suppressed) = self.drop_log.allow(now, DropReason::Sealed) {
                    debug!(%from, len = received, error = %why, suppressed, "dropped datagram");
                }
                return;
            }
        };
        let data = opened.as_deref().unwrap_or(data);
        let messages = match wire::decode_packet(data, self.cluster, self.config.max_packet_size) {
            Ok(messages) => messages,
            Err(err) => {
                match err {
                    DecodeError::Truncated | DecodeError::BadMagic | DecodeError::Malformed => {
                        self.stats.dropped_malformed += 1
                    }
                    DecodeError::UnsupportedVersion(_) | DecodeError::UnsupportedFlags(_) => {
                        self.stats.dropped_version += 1
                    }
                    DecodeError::WrongCluster => self.stats.dropped_wrong_cluster += 1,
                    DecodeError::Oversize(_) | DecodeError::TooManyMessages => {
                        self.stats.dropped_oversize += 1
                    }
                }
                if let Some(suppressed) = self.drop_log.allow(now, DropReason::Decode) {
                    debug!(%from, len = data.len(), error = %err, suppressed, "dropped datagram");
                }
                return;
            }
        };
        self.stats.packets_received += 1;
        self.stats.bytes_received += received as u64;
        self.anti_entropy.note_datagram_from(from);
        // A sender that is not a live member gets no more bytes back than it sent: a forged
        // source address cannot turn this node into an amplifier. Both sides count bytes on
        // the wire: the datagram as received, the answers as sent (sealed or not).
        self.answer_allowance = (self.membership.live_at(from).is_none()
            && !self.anti_entropy.is_solicited(now, from))
        .then_some((from, received));
        let sealed = opened.is_some();
        for message in messages {
            if let Err(err) = crate::limits::check(&message, &self.config) {
                self.stats.dropped_invalid += 1;
                if let Some(suppressed) = self.drop_log.allow(now, DropReason::Invalid) {
                    debug!(%from, error = %err, suppressed, "dropped message");
                }
                continue;
            }
            self.handle_message(now, from, sealed, message);
        }
        self.answer_allowance = None;
        // Writes this datagram brought go on down the tree at once: left to the gossip round
        // that `queue_state_push` schedules for `now`, each hop of the tree waited for the
        // driver's next timer tick (about 1 ms in Tokio), and a write took 10.6 ms to reach 20
        // daemons where a user message took 1.4 ms. Local writes (`set`) wait for that round,
        // or for the next datagram, so that a burst of them shares datagrams.
        self.push_state();
    }

    /// Routes one checked message to its owner; `sealed`: its datagram arrived sealed.
    fn handle_message(&mut self, now: Instant, from: SocketAddr, sealed: bool, message: Message) {
        match message {
            Message::Ping(ping) => self.on_ping(from, ping),
            Message::Ack(ack) => self.on_ack(now, from, ack),
            Message::Nack(nack) => self.on_nack(now, from, nack),
            Message::PingReq(req) => self.on_ping_req(now, from, req),
            Message::Alive(alive) => {
                self.answer_stale_alive(from, &alive);
                self.on_alive(now, alive);
            }
            Message::Suspect(suspect) => {
                self.answer_suspicion_of_previous_life(from, &suspect);
                self.on_suspect(now, suspect);
            }
            Message::Failed(failed) => self.on_failed(now, failed),
            Message::Left(left) => self.on_left(now, left),
            Message::SyncRequest(req) => self.on_sync_request(now, from, req),
            Message::SyncState(state) => self.on_sync_state(now, from, state),
            Message::Gossip(gossip) => self.on_gossip(now, from, gossip),
            Message::IHave(ihave) => self.on_ihave(now, from, ihave),
            Message::Graft(graft) => self.on_graft(now, from, graft),
            Message::Prune(prune) => self.on_prune(now, from, prune),
            Message::StatePush(push) => self.on_state_push(now, from, push),
            Message::StateHave(have) => self.on_state_have(now, from, have),
            Message::StateDigest(digest) => self.on_state_digest(now, from, digest),
            Message::StateDelta(delta) => self.on_state_delta(now, from, delta),
            Message::Inject(inject) => self.on_inject(now, from, inject),
            Message::KeyCommand(command) => self.on_key_command(now, from, sealed, command),
            Message::KeyAck(ack) => self.on_key_ack(now, from, sealed, ack),
        }
    }

    /// Runs every timer whose deadline is at or before `now`. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.probe_timers(now);
        self.relay_timers(now);
        self.life_check_timers(now);
        self.suspicion_timers(now);
        if !self.leaving && self.prober.is_due(now) {
            self.maintain_neighbours();
            self.start_probe(now);
        }
        self.graft_timers(now);
        self.state_graft_timers(now);
        if self.dissemination.round_due(now) {
            self.gossip_round(now);
        }
        if self.anti_entropy.sync_due(now) {
            self.sync_round(now);
        }
        self.join_timers(now);
        self.key_rotation_timers(now);
        if self.anti_entropy.reconnect_due(now) {
            self.reconnect_round(now);
        }
        if self.recontact.is_due(now) {
            self.recontact_round(now);
        }
        self.start_calibrations(now);
        if now >= self.next_reap {
            self.reap(now);
        }
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next membership event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Next host to check: run it and answer with [`Node::handle_host_check`] (see
    /// [`HostCheck`] for what to do). At most `MAX_HOST_CHECKS_IN_FLIGHT` are in flight.
    pub fn poll_host_check(&mut self) -> Option<HostCheck> {
        self.host_checks.poll()
    }

    /// When [`Node::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = [
            Some(self.anti_entropy.next_deadline(self.membership.live() == 0)),
            Some(self.next_reap),
            Some(self.recontact.next_deadline()),
            self.dissemination.next_deadline(),
            self.prober.next_deadline(self.leaving),
            self.next_graft(),
            self.next_state_graft(),
            self.life_checks.next_deadline(),
            self.key_rotation.next_deadline(),
            self.next_calibration_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(t) = self.membership.next_suspicion_deadline() {
            if next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        }
        next
    }

    // ---- shared plumbing for the protocol modules ----

    /// A fresh probe sequence number: random, so that a sender that does not see this node's
    /// pings cannot forge their acks (a counter would be guessed from the previous one).
    ///
    /// 32 random bits, not 64: an ack counts only from the probed address and only while its
    /// probe runs (one probe interval), so a blind forger spoofing that address must send about
    /// 2^31 datagrams within the interval for an even chance, billions a second; and every
    /// ping, ack, indirect ping and nack carries the number, where a 64-bit random value costs
    /// 10 bytes as a varint and a 32-bit one 5 (an idle node's own traffic is mostly these).
    pub(crate) fn next_seq(&mut self) -> u64 {
        u64::from(rand::Rng::random::<u32>(&mut self.rng))
    }

    /// Members alive or suspect, this node included: the `N` of the protocol's formulas.
    pub(crate) fn cluster_size(&self) -> usize {
        self.membership.live() + 1
    }

    pub(crate) fn emit(&mut self, event: Event) {
        let removed = self.state_on_membership(&event);
        self.messaging_on_membership(&event);
        self.events.push_back(event);
        self.events
            .extend(removed.into_iter().map(Event::KeyChanged));
    }

    /// Queues an update to ride on datagrams sent anyway, without starting a gossip round:
    /// for announcements whose delivery may wait for the next probe.
    pub(crate) fn enqueue_lazy(&mut self, key: &str, message: &Message) {
        let limit = self.config.retransmit_limit(self.cluster_size());
        self.dissemination
            .enqueue_lazy(key, wire::message_bytes(message), limit);
    }

    /// Sends `messages` to `dst` in one datagram, filling the rest of the budget with queued
    /// updates.
    pub(crate) fn send(&mut self, dst: SocketAddr, messages: &[Message]) {
        self.send_with(dst, messages, true);
    }

    /// Like [`Node::send`]; `announce` says whether key/value announcements may ride along.
    /// Pushes along the broadcast tree carry none: their receivers hold the news already, and
    /// announcements used up on them would not reach the nodes a lost push left behind.
    pub(crate) fn send_with(&mut self, dst: SocketAddr, messages: &[Message], announce: bool) {
        let mut buf = wire::encode_packet(self.cluster, messages);
        // Nothing rides along on an answer to a stranger: it must stay as small as the question.
        if self.answer_room(dst).is_none() {
            let budget = self.budget();
            let added = self.dissemination.fill(&mut buf, budget, announce);
            self.stats.gossip_sent += added as u64;
        }
        self.push_transmit(dst, buf);
    }

    /// Bytes of plain datagram still allowed to `dst` if it is the stranger whose datagram is
    /// being handled (the allowance counts bytes on the wire, so the sealing overhead of the
    /// next datagram is taken off); `None` when answers to `dst` are not limited.
    pub(crate) fn answer_room(&self, dst: SocketAddr) -> Option<usize> {
        let overhead = self.encryption.overhead();
        self.answer_allowance
            .filter(|(addr, _)| *addr == dst)
            .map(|(_, left)| left.saturating_sub(overhead))
    }

    /// `addr` has just proved it is the member listed there (it acked a check with a random
    /// sequence number): answers to it are no longer limited, even within the datagram that
    /// brought the proof.
    pub(crate) fn lift_answer_limit(&mut self, addr: SocketAddr) {
        if self.answer_allowance.is_some_and(|(a, _)| a == addr) {
            self.answer_allowance = None;
        }
    }

    /// Whether `dst` may get a full-state answer of this kind now (the rule is
    /// [`AntiEntropy::allow_full_answer`]'s); a refusal is counted.
    pub(crate) fn allow_full_answer(
        &mut self,
        now: Instant,
        dst: SocketAddr,
        kind: FullAnswer,
    ) -> bool {
        let allowed = self.anti_entropy.allow_full_answer(now, dst, kind);
        if !allowed {
            self.stats.answers_rate_limited += 1;
        }
        allowed
    }

    /// Queues one plain datagram, sealed first when the mode says so: the single point every
    /// datagram leaves through, so nothing is ever sent in the clear with a sending mode set.
    pub(crate) fn push_transmit(&mut self, dst: SocketAddr, payload: Vec<u8>) {
        let wire_len = payload.len() + self.encryption.overhead();
        if let Some((addr, left)) = &mut self.answer_allowance {
            if *addr == dst {
                if wire_len > *left {
                    self.stats.answers_withheld += 1;
                    return;
                }
                *left -= wire_len;
            }
        }
        let payload = match self.encryption.outbound(&self.config.cluster_name, payload) {
            Ok(payload) => payload,
            Err(error) => {
                // A bug (a datagram over the UDP limit, or a counter at 2^64), never the
                // network's doing: the datagram is not sent rather than sent in the clear.
                tracing::warn!(%dst, %error, "datagram not sealed, not sent");
                return;
            }
        };
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        self.transmits.push_back(Transmit { dst, payload });
    }

    /// Queues an update for piggybacking and starts a gossip round at once: news spreads at
    /// network speed, and the transmit limit bounds the cost.
    pub(crate) fn enqueue_broadcast(&mut self, now: Instant, key: &str, message: &Message) {
        let limit = self.config.retransmit_limit(self.cluster_size());
        self.dissemination
            .enqueue_news(now, key, wire::message_bytes(message), limit);
    }

    pub(crate) fn broadcast_self_alive(&mut self, now: Instant) {
        let alive = Message::Alive(self.self_alive());
        let name = self.me.name.clone();
        self.enqueue_broadcast(now, &name, &alive);
    }

    pub(crate) fn self_alive(&self) -> wire::Alive {
        wire::Alive {
            name: self.me.name.clone(),
            addr: self.me.addr,
            generation: self.me.generation,
            incarnation: self.me.incarnation,
            tags: self.me.tags.clone(),
        }
    }

    /// One gossip round: a datagram of queued updates to `gossip_fanout` random live members
    /// (and recently failed ones, so a falsely failed member hears of it and refutes). A round
    /// that carries fresh news also goes to the eager links of the broadcast tree first: every
    /// node passing news on to its tree neighbours covers the cluster in a few network hops,
    /// where random targets alone leave about e^-fanout of the nodes to later rounds.
    fn gossip_round(&mut self, now: Instant) {
        let fresh = self.dissemination.begin_round();
        self.push_state();
        if self.dissemination.is_empty() {
            return;
        }
        let recent = self.config.sync_interval;
        let now_stamp = self.membership.stamp(now);
        let mut eager: Vec<SocketAddr> = Vec::new();
        if fresh {
            eager.extend(
                self.plumtree
                    .eager_peers()
                    .filter_map(|n| self.membership.get(n))
                    .filter(|m| m.status.is_live())
                    .map(|m| m.addr()),
            );
        }
        let random: Vec<SocketAddr> = self
            .membership
            .table()
            .random_members(self.config.gossip_fanout, &mut self.rng, |m| {
                m.status.is_live()
                    || (m.status == MemberStatus::Failed
                        && now_stamp.since(m.status_since) < recent)
            })
            .into_iter()
            .map(|m| m.addr())
            .collect();
        // The tree's copies carry only news never sent and do not count against the transmit
        // limit: counted, they used up most of it on the same few neighbours, and about one
        // node in a hundred missed a join until the next anti-entropy exchange.
        for &dst in &eager {
            let mut buf = Vec::with_capacity(self.config.packet_budget);
            wire::write_envelope(&mut buf, self.cluster);
            let budget = self.budget();
            let added = self.dissemination.fill_fresh(&mut buf, budget);
            if added > 0 {
                self.stats.gossip_sent += added as u64;
                self.push_transmit(dst, buf);
            }
        }
        let targets: Vec<SocketAddr> = random.into_iter().filter(|a| !eager.contains(a)).collect();
        for dst in targets {
            let mut buf = Vec::with_capacity(self.config.packet_budget);
            wire::write_envelope(&mut buf, self.cluster);
            let budget = self.budget();
            let added = self.dissemination.fill_gossip(&mut buf, budget);
            if added == 0 {
                break;
            }
            self.stats.gossip_sent += added as u64;
            self.push_transmit(dst, buf);
        }
        if !self.dissemination.is_empty() && self.membership.live() > 0 {
            self.dissemination
                .schedule_round(now + self.config.gossip_interval);
        }
    }

    /// Removes failed and left members whose retention has passed.
    fn reap(&mut self, now: Instant) {
        self.next_reap = now + self.config.probe_interval * 5;
        self.collect_state_tombstones(now);
        let expired = self.membership.expired(now, &self.config);
        for name in expired {
            if let Some(member) = self.membership.reap(&name) {
                self.dissemination.remove(&name);
                debug!(member = %name, "reaped");
                self.emit(Event::Reaped(member));
            }
        }
    }
}
