//! The node's side of key/value state: local writes, applying pushed writes, the Scuttlebutt
//! digest/delta exchange, and keeping replicas in step with membership (see `state.rs`).

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use tracing::debug;

use crate::event::{Event, KeyChange};
use crate::node::Node;
use crate::state::{Applied, KeyValue, NodeState, StateError, WireEntry};
use crate::state_tree::MAX_SUPERSEDES;
use crate::wire::{self, DigestRow, Message};

/// Bytes reserved in a digest or delta datagram for the envelope and the message's own fields.
const STATE_OVERHEAD: usize = 96;

impl Node {
    /// Sets `key` of this node's state to `value`, gossips the write, and returns its version.
    ///
    /// Fails without changing anything if the key or value is over its limit
    /// (`Config::max_key_len`, `Config::max_value_size`), the node holds too many keys, or it
    /// has left.
    pub fn set(&mut self, now: Instant, key: &str, value: Vec<u8>) -> Result<u64, StateError> {
        self.write(now, key, Some(value))
    }

    /// Deletes `key` of this node's state (a versioned tombstone, collected after
    /// `Config::kv_tombstone_grace`). Returns the version of the delete, or `None` if the key
    /// was not set.
    pub fn delete(&mut self, now: Instant, key: &str) -> Result<Option<u64>, StateError> {
        if self.leaving {
            return Err(StateError::Left);
        }
        match self.my_state.entries.get(key) {
            Some(kv) if kv.value.is_some() => self.write(now, key, None).map(Some),
            _ => Ok(None),
        }
    }

    fn write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<u64, StateError> {
        if self.leaving {
            return Err(StateError::Left);
        }
        if key.is_empty() || key.len() > self.config.max_key_len {
            return Err(StateError::BadKey {
                len: key.len(),
                limit: self.config.max_key_len,
            });
        }
        if let Some(v) = &value {
            if v.len() > self.config.max_value_size {
                return Err(StateError::ValueTooLarge {
                    size: v.len(),
                    limit: self.config.max_value_size,
                });
            }
        }
        let version = self.my_state.watermark + 1;
        // The write makes the key's previous version obsolete; a replica may count it as known
        // (a queued push of the previous version is merged into this one, see
        // `queue_state_push`).
        let supersedes: Vec<u64> = self
            .my_state
            .entries
            .get(key)
            .map(|previous| previous.version)
            .into_iter()
            .collect();
        let entry = WireEntry {
            key: key.to_owned(),
            value,
            version,
        };
        let before = self.my_state.digest_hash(&self.me.name);
        match self.my_state.apply(
            entry.clone(),
            now,
            self.config.max_keys_per_node,
            self.config.max_state_bytes_per_node,
        ) {
            Applied::Changed => {}
            Applied::Full | Applied::Stale => {
                return Err(StateError::Full {
                    max_keys: self.config.max_keys_per_node,
                    max_bytes: self.config.max_state_bytes_per_node,
                })
            }
        }
        self.state_fingerprint ^= before ^ self.my_state.digest_hash(&self.me.name);
        let node = self.me.name.clone();
        self.emit(Event::KeyChanged(KeyChange {
            node: node.clone(),
            key: entry.key.clone(),
            value: entry.value.clone(),
            version,
        }));
        let update = wire::StateUpdate {
            node: node.clone(),
            generation: self.me.generation,
            entry,
            supersedes,
        };
        self.queue_state_push(now, update, None);
        self.announce_state(&node);
        Ok(version)
    }

    /// Someone claims this life's key/value state reaches `watermark`, beyond what this node
    /// ever wrote: a forgery (only the owner writes its state). Replicas that took it would
    /// ignore every real write up to there, so the owner moves its own versions past the claim
    /// and makes every replica behind start over from its real entries: the live holder wins.
    pub(crate) fn refute_state_claim(&mut self, now: Instant, generation: u64, watermark: u64) {
        if generation != self.me.generation || watermark <= self.my_state.watermark || self.leaving
        {
            return;
        }
        let before = self.my_state.digest_hash(&self.me.name);
        let needed = self.my_state.entries.len() as u64;
        if watermark.saturating_add(needed) > crate::limits::MAX_VERSION {
            // No room above the claim: a new life, whose versions start again from zero.
            self.begin_new_life(now);
            self.my_state.generation = self.me.generation;
            self.my_state.rebase_above(0);
        } else {
            self.my_state.rebase_above(watermark);
        }
        self.state_fingerprint ^= before ^ self.my_state.digest_hash(&self.me.name);
        self.stats.state_claims_refuted += 1;
        tracing::warn!(
            claimed = watermark,
            now_at = self.my_state.watermark,
            "refuted a forged claim on this node's key/value state"
        );
        let name = self.me.name.clone();
        self.announce_state(&name);
    }

    /// The value of `key` in the state of member `node` (this node included), if set.
    pub fn get(&self, node: &str, key: &str) -> Option<&[u8]> {
        self.state_of(node)?.entries.get(key)?.value.as_deref()
    }

    /// Every key currently set in the state of member `node`, in key order.
    pub fn node_state(&self, node: &str) -> Option<impl Iterator<Item = (&str, &KeyValue)>> {
        Some(
            self.state_of(node)?
                .entries
                .iter()
                .filter(|(_, kv)| kv.value.is_some())
                .map(|(k, kv)| (k.as_str(), kv)),
        )
    }

    /// Version up to which this node holds `node`'s writes (its Scuttlebutt watermark).
    pub fn state_version(&self, node: &str) -> Option<u64> {
        self.state_of(node).map(|s| s.watermark)
    }

    pub(crate) fn state_of(&self, node: &str) -> Option<&NodeState> {
        if node == self.me.name {
            Some(&self.my_state)
        } else {
            self.states.get(node)
        }
    }

    /// Keeps replicas in step with the member table: a new life gets an empty replica, a
    /// reaped member's replica goes.
    /// Keys of a previous life or of a reaped member are reported deleted, so a subscriber
    /// mirroring state from `KeyChanged` events alone stays right.
    pub(crate) fn state_on_membership(&mut self, event: &Event) -> Vec<KeyChange> {
        // Replicas are created when the first write of a member arrives, so a member without
        // state costs nothing here; a new life starts without one.
        let name = match event {
            Event::Joined(m) | Event::Reaped(m) => &m.name,
            _ => return Vec::new(),
        };
        let Some(old) = self.states.remove(name) else {
            return Vec::new();
        };
        self.state_fingerprint ^= old.digest_hash(name);
        old.entries
            .into_iter()
            .filter(|(_, kv)| kv.value.is_some())
            .map(|(key, _)| KeyChange {
                node: name.clone(),
                key,
                value: None,
                version: old.watermark,
            })
            .collect()
    }

    /// Applies writes to the replica of `node` (life `generation`), emitting an event for each
    /// change. Returns the entries that changed the replica.
    fn apply_entries(&mut self, now: Instant, writes: Writes<'_>) -> Vec<WireEntry> {
        let Writes {
            node,
            generation,
            entries,
            reset,
            range,
            superseded,
        } = writes;
        if node == self.me.name {
            return Vec::new();
        }
        let Some(member) = self.table.get(node) else {
            self.stats.dropped_state_unknown += 1;
            return Vec::new();
        };
        if member.generation != generation {
            return Vec::new();
        }
        let (max_keys, max_bytes) = (
            self.config.max_keys_per_node,
            self.config.max_state_bytes_per_node,
        );
        let replica = self
            .states
            .entry(node.to_owned())
            .or_insert_with(|| NodeState::new(generation));
        let before = replica.digest_hash(node);
        if replica.generation != generation {
            *replica = NodeState::new(generation);
        }
        let mut removed = Vec::new();
        if reset {
            removed = replica
                .entries
                .iter()
                .filter(|(_, kv)| kv.value.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            replica.clear();
        }
        let mut changed = Vec::new();
        let mut full = 0;
        for entry in entries {
            match replica.apply(entry.clone(), now, max_keys, max_bytes) {
                Applied::Changed => changed.push(entry),
                Applied::Stale => {}
                Applied::Full => full += 1,
            }
        }
        if let Some((from, to)) = range {
            if full == 0 {
                replica.advance(from, to);
            }
        }
        if full == 0 {
            for &version in superseded.iter().take(MAX_SUPERSEDES) {
                replica.note_version(version);
            }
        }
        let after = replica.digest_hash(node);
        // Keys a reset removed and the delta did not bring back are deleted for readers.
        let gone: Vec<String> = removed
            .into_iter()
            .filter(|k| !replica.entries.contains_key(k))
            .collect();
        if replica.is_empty() {
            self.states.remove(node);
        }
        self.state_fingerprint ^= before ^ after;
        self.stats.dropped_state_full += full;
        self.stats.state_updates_applied += changed.len() as u64;
        // Their tombstones were collected at the owner; the delta's end is the version by which
        // they were gone.
        let gone_by = range.map_or(0, |(_, to)| to);
        for key in gone {
            self.emit(Event::KeyChanged(KeyChange {
                node: node.to_owned(),
                key,
                value: None,
                version: gone_by,
            }));
        }
        for entry in &changed {
            self.emit(Event::KeyChanged(KeyChange {
                node: node.to_owned(),
                key: entry.key.clone(),
                value: entry.value.clone(),
                version: entry.version,
            }));
        }
        changed
    }

    /// Applies one pushed write; returns whether it changed the replica (it is news, to pass
    /// on).
    pub(crate) fn apply_update(&mut self, now: Instant, update: &wire::StateUpdate) -> bool {
        let changed = self.apply_entries(
            now,
            Writes {
                node: &update.node,
                generation: update.generation,
                entries: vec![update.entry.clone()],
                reset: false,
                range: None,
                superseded: &update.supersedes,
            },
        );
        !changed.is_empty()
    }

    /// Digest of every non-empty replica this node holds, itself included, in name order, split
    /// to the packet budget; each chunk states the range of names it covers.
    pub(crate) fn send_state_digest(&mut self, dst: SocketAddr, reply: bool) {
        let mut rows: Vec<DigestRow> = self
            .states
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(name, s)| DigestRow {
                node: name.clone(),
                generation: s.generation,
                watermark: s.watermark,
            })
            .collect();
        if !self.my_state.is_empty() {
            let at = rows.partition_point(|r| r.node < self.me.name);
            rows.insert(
                at,
                DigestRow {
                    node: self.me.name.clone(),
                    generation: self.me.generation,
                    watermark: self.my_state.watermark,
                },
            );
        }
        let budget = self.budget().saturating_sub(STATE_OVERHEAD);
        let fingerprint = self.state_fingerprint;
        let chunks = chunk_by_size(rows, budget);
        let last = chunks.len().saturating_sub(1);
        let mut after: Option<String> = None;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let until = if i == last {
                None
            } else {
                chunk.last().map(|r| r.node.clone())
            };
            let next_after = until.clone();
            let msg = Message::StateDigest(wire::StateDigest {
                from: self.me.name.clone(),
                fingerprint,
                reply,
                after: after.take(),
                until,
                rows: chunk,
            });
            after = next_after;
            let payload = wire::encode_packet(self.cluster, &[msg]);
            self.push_transmit(dst, payload);
        }
    }

    pub(crate) fn on_state_digest(
        &mut self,
        now: Instant,
        from: SocketAddr,
        digest: wire::StateDigest,
    ) {
        if digest.reply
            && digest.fingerprint != self.state_fingerprint
            && self.allow_full_answer(now, from, crate::node::FullAnswer::StateDigest)
        {
            self.send_state_digest(from, false);
        }
        // Owners in the chunk's range that the peer listed no row for: it knows nothing of
        // them, as if it had listed them at generation 0, watermark 0.
        let in_range = |name: &str| {
            digest.after.as_deref().is_none_or(|a| name > a)
                && digest.until.as_deref().is_none_or(|u| name <= u)
        };
        let listed: std::collections::BTreeSet<&str> =
            digest.rows.iter().map(|r| r.node.as_str()).collect();
        let absent: Vec<DigestRow> = self
            .states
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(name, _)| name.as_str())
            .chain((!self.my_state.is_empty()).then_some(self.me.name.as_str()))
            .filter(|name| in_range(name) && !listed.contains(name))
            .map(|name| DigestRow {
                node: name.to_owned(),
                generation: 0,
                watermark: 0,
            })
            .collect();
        if let Some(row) = digest.rows.iter().find(|r| r.node == self.me.name) {
            let (generation, watermark) = (row.generation, row.watermark);
            self.refute_state_claim(now, generation, watermark);
        }
        let mut rows = digest.rows;
        rows.extend(absent);
        self.send_state_deltas(from, &rows);
    }

    /// Sends, for each row of a peer's digest, the writes the peer lacks, in version order,
    /// within `max_delta_packets` datagrams. Rows are served from a random starting point so a
    /// large backlog is worked through fairly over several rounds.
    fn send_state_deltas(&mut self, dst: SocketAddr, rows: &[DigestRow]) {
        if rows.is_empty() {
            return;
        }
        let budget = self.budget().saturating_sub(STATE_OVERHEAD);
        let start = self.rng.random_range(0..rows.len());
        let mut packets: Vec<Vec<Message>> = Vec::new();
        let mut current: Vec<Message> = Vec::new();
        let mut size = 0usize;
        let max_packets = self.config.max_delta_packets;
        'rows: for i in 0..rows.len() {
            let row = &rows[(start + i) % rows.len()];
            let Some(mine) = self.state_of(&row.node) else {
                continue;
            };
            let generation = if row.node == self.me.name {
                self.me.generation
            } else {
                mine.generation
            };
            if generation < row.generation
                || (generation == row.generation && mine.watermark <= row.watermark)
            {
                continue;
            }
            let reset = generation > row.generation || row.watermark < mine.gc_floor;
            let from = if reset { 0 } else { row.watermark };
            let entries = mine.entries_above(from);
            let watermark = mine.watermark;
            let mut chunk_from = from;
            let mut chunk: Vec<WireEntry> = Vec::new();
            let mut chunk_reset = reset;
            let mut iter = entries.into_iter().peekable();
            loop {
                let next = iter
                    .peek()
                    .map(|e| e.key.len() + e.value.as_ref().map_or(0, Vec::len) + 24);
                let full = next.is_some_and(|n| size + n > budget);
                if next.is_none() || full {
                    // Close this node's chunk: up to the last entry included, or all of it.
                    let to = if next.is_none() {
                        watermark
                    } else {
                        chunk.last().map_or(chunk_from, |e| e.version)
                    };
                    if !chunk.is_empty() || chunk_reset || next.is_none() {
                        current.push(Message::StateDelta(wire::StateDelta {
                            node: row.node.clone(),
                            generation,
                            from_version: chunk_from,
                            to_version: to,
                            reset: chunk_reset,
                            entries: std::mem::take(&mut chunk),
                        }));
                        size += 48 + row.node.len();
                    }
                    chunk_from = to;
                    chunk_reset = false;
                    if full {
                        packets.push(std::mem::take(&mut current));
                        size = 0;
                        if packets.len() >= max_packets {
                            break 'rows;
                        }
                        continue;
                    }
                    break;
                }
                if let Some(e) = iter.next() {
                    size += e.key.len() + e.value.as_ref().map_or(0, Vec::len) + 24;
                    chunk.push(e);
                }
            }
        }
        if !current.is_empty() && packets.len() < max_packets {
            packets.push(current);
        }
        for messages in packets {
            self.stats.state_deltas_sent += messages.len() as u64;
            let payload = wire::encode_packet(self.cluster, &messages);
            self.push_transmit(dst, payload);
        }
    }

    pub(crate) fn on_state_delta(
        &mut self,
        now: Instant,
        from: SocketAddr,
        delta: wire::StateDelta,
    ) {
        debug!(node = %delta.node, from = delta.from_version, to = delta.to_version, n = delta.entries.len(), "state delta");
        let changed = self.apply_entries(
            now,
            Writes {
                node: &delta.node,
                generation: delta.generation,
                entries: delta.entries,
                reset: delta.reset,
                range: Some((delta.from_version, delta.to_version)),
                superseded: &[],
            },
        );
        self.pulled_writes(now, from, &delta.node, delta.generation, changed);
    }

    /// Collects expired tombstones in every replica.
    pub(crate) fn collect_state_tombstones(&mut self, now: Instant) {
        let grace = self.config.kv_tombstone_grace;
        let before = self.my_state.digest_hash(&self.me.name);
        self.my_state.collect_tombstones(now, grace);
        self.state_fingerprint ^= before ^ self.my_state.digest_hash(&self.me.name);
        for (name, replica) in self.states.iter_mut() {
            let before = replica.digest_hash(name);
            replica.collect_tombstones(now, grace);
            self.state_fingerprint ^= before ^ replica.digest_hash(name);
        }
    }
}

/// Writes of one owner's life arriving together (a pushed update or a delta chunk).
struct Writes<'a> {
    node: &'a str,
    generation: u64,
    entries: Vec<WireEntry>,
    /// Forget the replica's entries first.
    reset: bool,
    /// The chunk covers the owner's writes `(from, to]`.
    range: Option<(u64, u64)>,
    /// Versions the writes make obsolete.
    superseded: &'a [u64],
}

fn chunk_by_size(rows: Vec<DigestRow>, budget: usize) -> Vec<Vec<DigestRow>> {
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    for row in rows {
        let n = row.node.len() + 24;
        if !chunk.is_empty() && size + n > budget {
            chunks.push(std::mem::take(&mut chunk));
            size = 0;
        }
        size += n;
        chunk.push(row);
    }
    // An empty digest is still sent: it says "I know nothing", which asks for everything.
    if !chunk.is_empty() || chunks.is_empty() {
        chunks.push(chunk);
    }
    chunks
}
