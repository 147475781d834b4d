//! What became of user messages and key/value writes: who received them when, and what they
//! cost on the wire.
//!
//! The simulator feeds every drained [`Event::Message`] and [`Event::KeyChanged`] to a
//! [`Tracker`]; messages are tracked whoever broadcast them, writes only when made through
//! [`Sim::set`](crate::Sim::set) or [`Sim::delete`](crate::Sim::delete) (the simulator needs the
//! version the owner gave them). With payload tracing on
//! ([`Sim::set_trace_payloads`](crate::Sim::set_trace_payloads)) every datagram sent is also
//! decoded, and each tracked message or write counts the datagrams that carried it.

use std::collections::BTreeMap;
use std::time::Duration;

use chatter_core::wire::Message;
use chatter_core::{BroadcastError, Delivered, KeyChange, MessageId, Node, StateError, Stats};

use crate::network::NetStats;
use crate::sim::{NodeState, Sim, Timeout};

/// Counters of the whole simulation that concern dissemination, summed over every node (every
/// life) and the network. Take one with [`Sim::traffic`](crate::Sim::traffic) before and after
/// something, and [`Traffic::since`] gives its cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams handed to the network (every kind).
    pub packets: u64,
    /// Bytes in those datagrams.
    pub bytes: u64,
    /// Datagrams carrying a whole user message: eager pushes and graft answers.
    pub messages_sent: u64,
    /// Plumtree grafts sent for missing messages.
    pub grafts_sent: u64,
    /// Plumtree prunes sent.
    pub prunes_sent: u64,
    /// User messages received again (each one prunes a link).
    pub messages_duplicate: u64,
    /// User messages delivered (each node once, the origin included).
    pub messages_delivered: u64,
    /// Piggybacked updates sent (one per update per datagram; key/value writes, membership
    /// updates and Plumtree announcements alike).
    pub gossip_sent: u64,
    /// Key/value delta chunks sent by anti-entropy.
    pub state_deltas_sent: u64,
    /// Key/value writes applied to replicas.
    pub state_updates_applied: u64,
}

impl Traffic {
    pub(crate) fn from_parts(stats: &Stats, net: &NetStats) -> Self {
        Self {
            packets: net.packets_sent,
            bytes: net.bytes_sent,
            messages_sent: stats.messages_sent,
            grafts_sent: stats.grafts_sent,
            prunes_sent: stats.prunes_sent,
            messages_duplicate: stats.messages_duplicate,
            messages_delivered: stats.messages_delivered,
            gossip_sent: stats.gossip_sent,
            state_deltas_sent: stats.state_deltas_sent,
            state_updates_applied: stats.state_updates_applied,
        }
    }

    /// Datagrams of the broadcast tree: whole messages plus grafts plus prunes.
    pub fn message_datagrams(&self) -> u64 {
        self.messages_sent + self.grafts_sent + self.prunes_sent
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            messages_sent: self.messages_sent.saturating_sub(earlier.messages_sent),
            grafts_sent: self.grafts_sent.saturating_sub(earlier.grafts_sent),
            prunes_sent: self.prunes_sent.saturating_sub(earlier.prunes_sent),
            messages_duplicate: self
                .messages_duplicate
                .saturating_sub(earlier.messages_duplicate),
            messages_delivered: self
                .messages_delivered
                .saturating_sub(earlier.messages_delivered),
            gossip_sent: self.gossip_sent.saturating_sub(earlier.gossip_sent),
            state_deltas_sent: self
                .state_deltas_sent
                .saturating_sub(earlier.state_deltas_sent),
            state_updates_applied: self
                .state_updates_applied
                .saturating_sub(earlier.state_updates_applied),
        }
    }
}

/// Datagrams seen carrying one message or write (counted only while payload tracing is on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// Datagrams carrying it whole: for a message, eager pushes and graft answers (`Gossip`);
    /// for a write, pushes along the broadcast tree (`StatePush`).
    pub full: u64,
    /// Datagrams announcing it, piggybacked: `IHave` for a message, for a write a `StateHave`
    /// whose watermark is the write's version.
    pub announced: u64,
    /// Datagrams asking for a message (`Graft`). Always 0 for writes.
    pub grafts: u64,
    /// Datagrams of anti-entropy carrying a write (`StateDelta`). Always 0 for messages.
    pub deltas: u64,
}

/// One delivery of a user message to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Virtual time of the delivery.
    pub at: Duration,
    /// The node it was delivered to.
    pub node: usize,
    /// That node's generation (life) at the time.
    pub generation: u64,
    /// Hops from the origin (0 at the origin).
    pub hops: u32,
}

/// A user message and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    /// Its id.
    pub id: MessageId,
    /// The node that broadcast it, when known.
    pub origin: Option<usize>,
    /// When it was broadcast, if through [`Sim::broadcast`](crate::Sim::broadcast).
    pub sent_at: Option<Duration>,
    /// The simulation's counters when it was broadcast (default if not through `Sim`).
    pub traffic_at_send: Traffic,
    /// Every delivery, in order (a node delivering twice appears twice).
    pub deliveries: Vec<Delivery>,
    /// Datagrams that carried it.
    pub carried: Carried,
}

/// A key/value write made through the simulator, and which nodes hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRecord {
    /// The owner (writer).
    pub owner: usize,
    /// The owner's generation when it wrote.
    pub generation: u64,
    /// The key.
    pub key: String,
    /// The value written, `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// The version the owner gave the write.
    pub version: u64,
    /// When it was written.
    pub at: Duration,
    /// The simulation's counters when it was written.
    pub traffic_at_write: Traffic,
    /// First time each node life `(node, generation)` held this write or a newer one of the same
    /// key, from its `KeyChanged` events (the owner's own included).
    pub reached: BTreeMap<(usize, u64), Duration>,
    /// Datagrams that carried it.
    pub carried: Carried,
    /// The owner restarted since: later events do not concern this write.
    pub closed: bool,
}

/// A datagram sent or handled by a watched node ([`Sim::watch`](crate::Sim::watch)), decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchedPacket {
    /// Virtual time it was sent or handled.
    pub at: Duration,
    /// Sender.
    pub from: usize,
    /// Receiver, if the destination is a node of the simulation.
    pub to: Option<usize>,
    /// Whether this is the receiver handling it (else the sender sending it, lost or not).
    pub received: bool,
    /// The messages it carried.
    pub messages: Vec<Message>,
}

/// Messages and writes being followed.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pub(crate) messages: BTreeMap<MessageId, MessageRecord>,
    pub(crate) writes: Vec<WriteRecord>,
    /// `(owner, generation, version)` -> index in `writes`.
    by_version: BTreeMap<(usize, u64, u64), usize>,
    /// Owner name -> `(generation, version)` -> index in `writes`, open writes only.
    by_name: BTreeMap<String, BTreeMap<(u64, u64), usize>>,
    /// Owner name -> key -> indices in `writes`, open writes only.
    by_key: BTreeMap<String, BTreeMap<String, Vec<usize>>>,
}

impl Tracker {
    pub(crate) fn message_mut(&mut self, id: &MessageId) -> &mut MessageRecord {
        self.messages
            .entry(id.clone())
            .or_insert_with(|| MessageRecord {
                id: id.clone(),
                origin: None,
                sent_at: None,
                traffic_at_send: Traffic::default(),
                deliveries: Vec::new(),
                carried: Carried::default(),
            })
    }

    pub(crate) fn on_delivered(
        &mut self,
        at: Duration,
        node: usize,
        generation: u64,
        d: &Delivered,
    ) {
        self.message_mut(&d.id).deliveries.push(Delivery {
            at,
            node,
            generation,
            hops: d.hops,
        });
    }

    pub(crate) fn add_write(&mut self, owner_name: &str, record: WriteRecord) {
        let idx = self.writes.len();
        self.by_version
            .insert((record.owner, record.generation, record.version), idx);
        self.by_name
            .entry(owner_name.to_owned())
            .or_default()
            .insert((record.generation, record.version), idx);
        self.by_key
            .entry(owner_name.to_owned())
            .or_default()
            .entry(record.key.clone())
            .or_default()
            .push(idx);
        self.writes.push(record);
    }

    pub(crate) fn write(
        &self,
        owner: usize,
        generation: u64,
        version: u64,
    ) -> Option<&WriteRecord> {
        self.by_version
            .get(&(owner, generation, version))
            .map(|&i| &self.writes[i])
    }

    /// A node learned of a change to `change.node`'s `change.key`: every open write of that key
    /// at or below the change's version has reached it.
    pub(crate) fn on_key_changed(
        &mut self,
        at: Duration,
        observer: usize,
        generation: u64,
        change: &KeyChange,
    ) {
        let Some(indices) = self
            .by_key
            .get(change.node.as_str())
            .and_then(|keys| keys.get(change.key.as_str()))
        else {
            return;
        };
        for &i in indices {
            let w = &mut self.writes[i];
            if w.version <= change.version {
                w.reached.entry((observer, generation)).or_insert(at);
            }
        }
    }

    /// The owner starts a new life: its old writes are settled, whatever arrives later.
    pub(crate) fn close_writes_of(&mut self, owner_name: &str) {
        if let Some(versions) = self.by_name.remove(owner_name) {
            for i in versions.into_values() {
                self.writes[i].closed = true;
            }
        }
        self.by_key.remove(owner_name);
    }

    pub(crate) fn forget_messages(&mut self) {
        self.messages.clear();
    }

    pub(crate) fn forget_writes(&mut self) {
        self.writes.clear();
        self.by_version.clear();
        self.by_name.clear();
        self.by_key.clear();
    }

    /// Counts what one decoded datagram carried (each message or write once per datagram).
    pub(crate) fn on_datagram(&mut self, messages: &[Message]) {
        let mut ids: Vec<(u8, &MessageId)> = Vec::new();
        let mut writes: Vec<(u8, usize)> = Vec::new();
        for m in messages {
            match m {
                Message::Gossip(g) => ids.push((0, &g.id)),
                Message::IHave(i) => ids.push((1, &i.id)),
                Message::Graft(g) => ids.extend(g.ids.iter().map(|id| (2, id))),
                Message::StatePush(p) => {
                    for u in &p.updates {
                        writes.extend(
                            self.open_write(&u.node, u.generation, u.entry.version)
                                .map(|i| (0, i)),
                        );
                    }
                }
                Message::StateHave(h) => {
                    writes.extend(
                        self.open_write_any_life(&h.node, h.watermark)
                            .map(|i| (2, i)),
                    );
                }
                Message::StateDelta(d) => {
                    for e in &d.entries {
                        writes.extend(
                            self.open_write(&d.node, d.generation, e.version)
                                .map(|i| (1, i)),
                        );
                    }
                }
                _ => {}
            }
        }
        ids.sort();
        ids.dedup();
        for (kind, id) in ids {
            if let Some(r) = self.messages.get_mut(id) {
                match kind {
                    0 => r.carried.full += 1,
                    1 => r.carried.announced += 1,
                    _ => r.carried.grafts += 1,
                }
            }
        }
        writes.sort_unstable();
        writes.dedup();
        for (kind, i) in writes {
            let c = &mut self.writes[i].carried;
            match kind {
                0 => c.full += 1,
                1 => c.deltas += 1,
                _ => c.announced += 1,
            }
        }
    }

    /// Index of the open tracked write of `owner` at `version`, of its latest tracked life.
    fn open_write_any_life(&self, owner: &str, version: u64) -> Option<usize> {
        self.by_name
            .get(owner)?
            .iter()
            .rev()
            .find(|((_, v), _)| *v == version)
            .map(|(_, &i)| i)
    }

    /// Index of the open tracked write `(owner name, generation, version)`, if any.
    fn open_write(&self, owner: &str, generation: u64, version: u64) -> Option<usize> {
        self.by_name
            .get(owner)?
            .get(&(generation, version))
            .copied()
    }
}

/// Messages and key/value state: commands that the simulator follows, and what it saw.
impl Sim {
    /// Node `i` broadcasts a user message (`Node::broadcast`); the simulator follows it (see
    /// [`Sim::message`], [`Sim::deliveries_of`], [`Sim::delivery_latency`]).
    ///
    /// # Panics
    ///
    /// If node `i` is not running (a test that broadcasts from a stopped node is wrong).
    pub fn broadcast(
        &mut self,
        i: usize,
        tag: &str,
        payload: impl Into<Vec<u8>>,
    ) -> Result<MessageId, BroadcastError> {
        let now = self.instant();
        let traffic = self.traffic();
        let name = self.slots[i].name.clone();
        let node = self
            .running_node_mut(i)
            .unwrap_or_else(|| panic!("broadcast from {name}, which is not running"));
        let result = node.broadcast(now, tag, payload.into());
        if let Ok(id) = &result {
            let record = self.tracker.message_mut(id);
            record.origin = Some(i);
            record.sent_at = Some(self.now);
            record.traffic_at_send = traffic;
        }
        self.after_input(i);
        result
    }

    /// Node `i` sets `key` of its state (`Node::set`); the simulator follows the write (see
    /// [`Sim::write`], [`Sim::write_reached_everywhere`]). Returns the write's version.
    ///
    /// # Panics
    ///
    /// If node `i` is not running.
    pub fn set(
        &mut self,
        i: usize,
        key: &str,
        value: impl Into<Vec<u8>>,
    ) -> Result<u64, StateError> {
        self.write_key(i, key, Some(value.into()))
            .map(|v| v.unwrap_or_default())
    }

    /// Node `i` deletes `key` of its state (`Node::delete`), followed like [`Sim::set`].
    /// Returns the version of the delete, or `None` if the key was not set.
    ///
    /// # Panics
    ///
    /// If node `i` is not running.
    pub fn delete(&mut self, i: usize, key: &str) -> Result<Option<u64>, StateError> {
        self.write_key(i, key, None)
    }

    fn write_key(
        &mut self,
        i: usize,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<Option<u64>, StateError> {
        let now = self.instant();
        let traffic = self.traffic();
        let (name, generation) = (self.slots[i].name.clone(), self.slots[i].generation);
        let node = self
            .running_node_mut(i)
            .unwrap_or_else(|| panic!("write on {name}, which is not running"));
        let result = match &value {
            Some(v) => node.set(now, key, v.clone()).map(Some),
            None => node.delete(now, key),
        };
        if let Ok(Some(version)) = result {
            self.tracker.add_write(
                &name,
                WriteRecord {
                    owner: i,
                    generation,
                    key: key.to_owned(),
                    value,
                    version,
                    at: self.now,
                    traffic_at_write: traffic,
                    reached: BTreeMap::new(),
                    carried: Default::default(),
                    closed: false,
                },
            );
        }
        self.after_input(i);
        result
    }

    /// What the simulator knows of a user message: origin, when sent, deliveries, cost.
    /// Messages broadcast through [`Sim::with_node`] are known from their first delivery.
    pub fn message(&self, id: &MessageId) -> Option<&MessageRecord> {
        self.tracker.messages.get(id)
    }

    /// Every message the simulator has seen, in id order.
    pub fn messages(&self) -> impl Iterator<Item = &MessageRecord> {
        self.tracker.messages.values()
    }

    /// Every delivery of message `id`, in order (empty if unknown).
    pub fn deliveries_of(&self, id: &MessageId) -> &[Delivery] {
        self.message(id).map_or(&[], |r| r.deliveries.as_slice())
    }

    /// For each running node, its current life's first delivery of `id`, if any.
    fn first_deliveries(&self, id: &MessageId) -> Vec<(usize, Option<Duration>)> {
        let mut first: Vec<Option<Duration>> = vec![None; self.slots.len()];
        for d in self.deliveries_of(id) {
            if self.slots[d.node].generation == d.generation && first[d.node].is_none() {
                first[d.node] = Some(d.at);
            }
        }
        (0..self.slots.len())
            .filter(|&i| self.slots[i].state == NodeState::Running)
            .map(|i| (i, first[i]))
            .collect()
    }

    /// Running nodes whose current life has not delivered message `id`.
    pub fn undelivered(&self, id: &MessageId) -> Vec<usize> {
        self.first_deliveries(id)
            .into_iter()
            .filter_map(|(i, at)| at.is_none().then_some(i))
            .collect()
    }

    /// Every running node's current life has delivered message `id`.
    pub fn delivered_everywhere(&self, id: &MessageId) -> bool {
        self.first_deliveries(id).iter().all(|(_, at)| at.is_some())
    }

    /// Node lives `(node, generation, count)` that delivered message `id` more than once.
    pub fn duplicate_deliveries(&self, id: &MessageId) -> Vec<(usize, u64, usize)> {
        let mut counts: BTreeMap<(usize, u64), usize> = BTreeMap::new();
        for d in self.deliveries_of(id) {
            *counts.entry((d.node, d.generation)).or_default() += 1;
        }
        counts
            .into_iter()
            .filter(|&(_, c)| c > 1)
            .map(|((n, g), c)| (n, g, c))
            .collect()
    }

    /// Time from the broadcast of `id` (through [`Sim::broadcast`]) to the last delivery among
    /// the nodes running now; `None` until every one of them has delivered it.
    pub fn delivery_latency(&self, id: &MessageId) -> Option<Duration> {
        let sent = self.message(id)?.sent_at?;
        let mut last = sent;
        for (_, at) in self.first_deliveries(id) {
            last = last.max(at?);
        }
        Some(last - sent)
    }

    /// Runs until every running node has delivered `id`; returns the delivery latency (see
    /// [`Sim::delivery_latency`]) or [`Timeout`] after `max`.
    pub fn wait_delivered(&mut self, id: &MessageId, max: Duration) -> Result<Duration, Timeout> {
        self.wait_until(max, |s| s.delivered_everywhere(id))?;
        Ok(self.delivery_latency(id).unwrap_or_default())
    }

    /// The write `version` of node `owner`'s current life, if made through [`Sim::set`] or
    /// [`Sim::delete`].
    pub fn write(&self, owner: usize, version: u64) -> Option<&WriteRecord> {
        self.tracker
            .write(owner, self.slots[owner].generation, version)
    }

    /// Every write followed so far, in the order they were made.
    pub fn writes(&self) -> &[WriteRecord] {
        &self.tracker.writes
    }

    /// Running nodes whose current life does not hold write `version` of `owner` (or a newer
    /// write of the same key) according to its `KeyChanged` events. Every running node if the
    /// write is unknown.
    pub fn unreached(&self, owner: usize, version: u64) -> Vec<usize> {
        let write = self.write(owner, version);
        (0..self.slots.len())
            .filter(|&i| self.slots[i].state == NodeState::Running)
            .filter(|&i| {
                write.is_none_or(|w| !w.reached.contains_key(&(i, self.slots[i].generation)))
            })
            .collect()
    }

    /// Every running node holds write `version` of `owner` (or a newer one of that key).
    pub fn write_reached_everywhere(&self, owner: usize, version: u64) -> bool {
        self.write(owner, version).is_some() && self.unreached(owner, version).is_empty()
    }

    /// Time from write `version` of `owner` to the last running node learning it; `None` until
    /// every running node has.
    pub fn write_latency(&self, owner: usize, version: u64) -> Option<Duration> {
        let w = self.write(owner, version)?;
        let mut last = w.at;
        for i in (0..self.slots.len()).filter(|&i| self.slots[i].state == NodeState::Running) {
            last = last.max(*w.reached.get(&(i, self.slots[i].generation))?);
        }
        Some(last - w.at)
    }

    /// Forgets every followed message (long experiments call it between measurements).
    pub fn forget_messages(&mut self) {
        self.tracker.forget_messages();
    }

    /// Forgets every followed write.
    pub fn forget_writes(&mut self) {
        self.tracker.forget_writes();
    }

    /// Whether to decode every datagram sent and count, for each followed message and write,
    /// the datagrams that carried it ([`MessageRecord::carried`], [`WriteRecord::carried`]).
    /// Default off: it roughly doubles the cost of a step.
    pub fn set_trace_payloads(&mut self, on: bool) {
        self.trace_payloads = on;
    }

    /// Starts keeping every datagram node `i` sends or handles, decoded (see
    /// [`Sim::watched_packets`]): a microscope for one node's view when a test fails.
    pub fn watch(&mut self, i: usize) {
        self.watched.insert(i);
    }

    /// The datagrams of the watched nodes, in order.
    pub fn watched_packets(&self) -> &[WatchedPacket] {
        &self.watched_packets
    }

    /// The dissemination counters of every node (every life) and the network, summed.
    pub fn traffic(&self) -> Traffic {
        Traffic::from_parts(&self.total_stats(), &self.net.stats)
    }

    /// How `observer`'s replica of `owner`'s state differs from `owner`'s own, or `None` if
    /// they are equal (same keys, values and versions, same watermark). Either node must be
    /// up; a missing replica is a difference.
    pub fn replica_difference(&self, observer: usize, owner: usize) -> Option<String> {
        self.replica_diff(observer, owner, true)
    }

    /// Like [`Sim::replica_difference`] but ignoring the watermark: whether `observer` holds the
    /// same keys, values and versions of `owner` as the owner, whatever it knows of the versions
    /// that were superseded.
    pub fn replica_values_difference(&self, observer: usize, owner: usize) -> Option<String> {
        self.replica_diff(observer, owner, false)
    }

    /// Whether `observer`'s replica of `owner` equals the owner's state (cheap: no copies).
    fn replica_equal(&self, observer: usize, owner: usize, watermark: bool) -> bool {
        let owner_name = self.name(owner);
        let (Some(truth), Some(node)) = (self.node(owner), self.node(observer)) else {
            return false;
        };
        if watermark && truth.state_version(owner_name) != node.state_version(owner_name) {
            return false;
        }
        match (truth.node_state(owner_name), node.node_state(owner_name)) {
            (Some(want), Some(have)) => want
                .map(|(k, kv)| (k, &kv.value, kv.version))
                .eq(have.map(|(k, kv)| (k, &kv.value, kv.version))),
            (None, None) => true,
            _ => false,
        }
    }

    fn replica_diff(&self, observer: usize, owner: usize, watermark: bool) -> Option<String> {
        if self.replica_equal(observer, owner, watermark) {
            return None;
        }
        let owner_name = self.name(owner);
        let Some(truth) = self.node(owner) else {
            return Some(format!("{owner_name} is down"));
        };
        let Some(node) = self.node(observer) else {
            return Some(format!("{} is down", self.name(observer)));
        };
        let want = truth.state_version(owner_name);
        let have = node.state_version(owner_name);
        if watermark && want != have {
            return Some(format!(
                "{} holds {owner_name} up to version {have:?}, the owner is at {want:?}",
                self.name(observer)
            ));
        }
        let entries = |n: &Node| -> Vec<(String, Vec<u8>, u64)> {
            n.node_state(owner_name)
                .map(|it| {
                    it.map(|(k, kv)| {
                        (
                            k.to_owned(),
                            kv.value.clone().unwrap_or_default(),
                            kv.version,
                        )
                    })
                    .collect()
                })
                .unwrap_or_default()
        };
        let (want, have) = (entries(truth), entries(node));
        if want == have {
            return None;
        }
        let missing = want.iter().filter(|e| !have.contains(e)).count();
        let extra = have.iter().filter(|e| !want.contains(e)).count();
        let first = want
            .iter()
            .find(|e| !have.contains(e))
            .or_else(|| have.iter().find(|e| !want.contains(e)))
            .map(|e| format!("{}@{}", e.0, e.2))
            .unwrap_or_default();
        Some(format!(
            "{}'s replica of {owner_name}: {} keys vs the owner's {}, {missing} missing or \
             different, {extra} extra or different (first: {first})",
            self.name(observer),
            have.len(),
            want.len()
        ))
    }

    /// Every running node other than `owner` holds a replica of `owner`'s state equal to the
    /// owner's (keys, values, versions and watermark).
    pub fn replicas_agree(&self, owner: usize) -> bool {
        (0..self.slots.len())
            .filter(|&i| i != owner && self.slots[i].state == NodeState::Running)
            .all(|i| self.replica_equal(i, owner, true))
    }

    /// The running nodes (other than `owner`) whose replica of `owner` differs, with how.
    pub fn replica_mismatches(&self, owner: usize) -> Vec<(usize, String)> {
        (0..self.slots.len())
            .filter(|&i| i != owner && self.slots[i].state == NodeState::Running)
            .filter_map(|i| self.replica_difference(i, owner).map(|d| (i, d)))
            .collect()
    }

    /// Every running node other than `owner` holds the owner's keys, values and versions
    /// (watermarks aside: see [`Sim::replica_values_difference`]).
    pub fn replica_values_agree(&self, owner: usize) -> bool {
        (0..self.slots.len())
            .filter(|&i| i != owner && self.slots[i].state == NodeState::Running)
            .all(|i| self.replica_equal(i, owner, false))
    }
}

#[cfg(test)]
mod tests {
    use chatter_core::wire::{
        Gossip, IHave, StateDelta, StateHave, StatePush, StateUpdate, WireEntry,
    };

    use super::*;

    fn write(owner: usize, key: &str, version: u64) -> WriteRecord {
        WriteRecord {
            owner,
            generation: 1,
            key: key.to_owned(),
            value: Some(b"v".to_vec()),
            version,
            at: Duration::ZERO,
            traffic_at_write: Traffic::default(),
            reached: BTreeMap::new(),
            carried: Carried::default(),
            closed: false,
        }
    }

    fn change(node: &str, key: &str, version: u64) -> KeyChange {
        KeyChange {
            node: node.to_owned(),
            key: key.to_owned(),
            value: None,
            version,
        }
    }

    fn entry(key: &str, version: u64) -> WireEntry {
        WireEntry {
            key: key.to_owned(),
            value: Some(b"v".to_vec()),
            version,
        }
    }

    #[test]
    fn a_newer_write_of_the_key_reaches_older_ones_and_restarts_close_them() {
        let mut t = Tracker::default();
        t.add_write("a", write(0, "k", 3));
        t.add_write("a", write(0, "k", 7));
        t.add_write("a", write(0, "other", 4));
        let at = Duration::from_millis(5);
        t.on_key_changed(at, 2, 1, &change("a", "k", 5));
        assert!(t.write(0, 1, 3).unwrap().reached.contains_key(&(2, 1)));
        assert!(t.write(0, 1, 7).unwrap().reached.is_empty());
        assert!(t.write(0, 1, 4).unwrap().reached.is_empty());
        t.on_key_changed(at * 2, 2, 1, &change("a", "k", 9));
        assert_eq!(
            t.write(0, 1, 3).unwrap().reached[&(2, 1)],
            at,
            "first time kept"
        );
        assert_eq!(t.write(0, 1, 7).unwrap().reached[&(2, 1)], at * 2);
        t.close_writes_of("a");
        t.on_key_changed(at, 3, 1, &change("a", "other", 4));
        assert!(t.write(0, 1, 4).unwrap().closed);
        assert!(t.write(0, 1, 4).unwrap().reached.is_empty());
    }

    #[test]
    fn datagrams_count_once_per_message_and_write() {
        let mut t = Tracker::default();
        let id = MessageId {
            origin: "a".into(),
            generation: 1,
            seq: 1,
        };
        t.message_mut(&id);
        t.add_write("a", write(0, "k", 2));
        let gossip = Message::Gossip(Gossip {
            id: id.clone(),
            from: "b".into(),
            hops: 1,
            tag: "t".into(),
            payload: Vec::new(),
        });
        let ihave = Message::IHave(IHave {
            from: "b".into(),
            id: id.clone(),
        });
        let update = Message::StatePush(StatePush {
            from: "b".into(),
            updates: vec![StateUpdate {
                node: "a".into(),
                generation: 1,
                entry: entry("k", 2),
                supersedes: vec![1],
            }],
        });
        let have = Message::StateHave(StateHave {
            node: "a".into(),
            watermark: 2,
        });
        let delta = Message::StateDelta(StateDelta {
            node: "a".into(),
            generation: 1,
            from_version: 0,
            to_version: 2,
            reset: false,
            entries: vec![entry("j", 1), entry("k", 2)],
        });
        t.on_datagram(&[gossip, ihave.clone(), update.clone(), update]);
        t.on_datagram(&[ihave, delta, have]);
        let m = t.messages[&id].carried;
        assert_eq!((m.full, m.announced, m.grafts), (1, 2, 0));
        let w = t.write(0, 1, 2).unwrap().carried;
        assert_eq!((w.full, w.deltas, w.announced), (1, 1, 1));
    }
}
