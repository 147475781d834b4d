//! The node's side of key/value state: local writes, applying pushed writes, the Scuttlebutt
//! digest/delta exchange, and keeping replicas in step with membership (see `state.rs`).

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use tracing::debug;

use crate::event::{Event, KeyChange};
use crate::kv_store::{Writes, WritesApplied, WritesRefused};
use crate::node::Node;
use crate::state::{KeyValue, NodeState, StateError, WireEntry};
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
        match self.kv.mine().entries.get(key) {
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
        let (entry, supersedes) = self.kv.write_local(now, key, value, &self.config)?;
        let version = entry.version;
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
        if generation != self.me.generation || !self.kv.is_beyond_mine(watermark) || self.leaving {
            return;
        }
        if self.kv.has_room_above(watermark) {
            self.kv.rebase_mine(watermark);
        } else {
            // No room above the claim: a new life, whose versions start again from zero.
            self.begin_new_life(now);
            self.kv.rebase_mine(0);
        }
        self.stats.state_claims_refuted += 1;
        tracing::warn!(
            claimed = watermark,
            now_at = self.kv.mine().watermark,
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
        self.kv.state_of(node)
    }

    /// Keeps replicas in step with the member table: a new life gets an empty replica, a
    /// reaped member's replica goes.
    /// Keys of a previous life or of a reaped member are reported deleted, so a subscriber
    /// mirroring state from `KeyChanged` events alone stays right.
    pub(crate) fn state_on_membership(&mut self, event: &Event) -> Vec<KeyChange> {
        // Replicas are created when the first write of a member arrives, so a member without
        // state costs nothing here; a new life starts without one.
        match event {
            Event::Joined(m) | Event::Reaped(m) => self.kv.drop_replica(&m.name),
            _ => Vec::new(),
        }
    }

    /// Applies writes to the replica of `node` (life `generation`), emitting an event for each
    /// change. Returns the entries that changed the replica.
    fn apply_entries(&mut self, now: Instant, writes: Writes<'_>) -> Vec<WireEntry> {
        let (node, range) = (writes.node, writes.range);
        let generation = self.membership.get(node).map(|m| m.generation);
        let applied = match self.kv.apply_writes(now, writes, generation, &self.config) {
            Ok(applied) => applied,
            Err(WritesRefused::Unknown) => {
                self.stats.dropped_state_unknown += 1;
                return Vec::new();
            }
            Err(WritesRefused::Own | WritesRefused::OtherLife) => return Vec::new(),
        };
        let WritesApplied {
            changed,
            gone,
            full,
        } = applied;
        self.stats.dropped_state_full += full;
        self.stats.state_updates_applied += changed.len() as u64;
        // Keys a reset removed and the delta did not bring back are deleted for readers. Their
        // tombstones were collected at the owner; the delta's end is the version by which they
        // were gone.
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
        let rows = self.kv.digest_rows();
        let budget = self.budget().saturating_sub(STATE_OVERHEAD);
        let fingerprint = self.kv.fingerprint();
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
            && digest.fingerprint != self.kv.fingerprint()
            && self.allow_full_answer(now, from, crate::anti_entropy::FullAnswer::StateDigest)
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
            .kv
            .holders()
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
        let packets = self
            .kv
            .deltas(rows, start, budget, self.config.max_delta_packets);
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
        self.kv
            .collect_tombstones(now, self.config.kv_tombstone_grace);
    }
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
