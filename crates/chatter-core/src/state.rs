//! Per-node key/value state (chitchat's model) reconciled with Scuttlebutt.
//!
//! Each node owns a map of keys; every write (or delete, kept as a versioned tombstone) takes the
//! owner's next version. Other nodes hold a replica of every member's map together with a
//! *watermark*: the highest version `w` such that every write of the owner up to `w` is known
//! here or superseded by a newer write of the same key. Anti-entropy sends a digest of
//! `(generation, watermark)` per node and receives, per node, the entries above the watermark in
//! version order; a delta cut by the packet budget is still a consistent prefix, so the watermark
//! can advance to where the cut was made.
//!
//! Writes also travel pushed along the broadcast tree (`state_tree.rs`). Those may arrive out of
//! order or not at all: they are applied at once (readers see them within milliseconds) but
//! advance the watermark only while contiguous, so a pull or anti-entropy still repairs whatever
//! was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A write this node refused; its state was not changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    /// The key is empty or longer than `Config::max_key_len`.
    #[error("key must be 1 to {limit} bytes long, got {len}")]
    BadKey {
        /// Length of the key given.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The value is larger than `Config::max_value_size`.
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge {
        /// Size of the value given.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The node's state is at `Config::max_keys_per_node` keys or
    /// `Config::max_state_bytes_per_node` bytes.
    #[error("state is full: a node holds at most {max_keys} keys and {max_bytes} bytes")]
    Full {
        /// Key limit.
        max_keys: usize,
        /// Byte limit.
        max_bytes: usize,
    },
    /// The node has left the cluster.
    #[error("the node has left the cluster")]
    Left,
}

/// One key's current value as a replica holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The value; `None` for a deleted key (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Owner's version of the write.
    pub version: u64,
    /// When this replica learned of the write.
    pub updated_at: Instant,
}

/// One versioned write on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// Key.
    pub key: String,
    /// Value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// Owner's version of the write.
    pub version: u64,
}

/// The replica of one node's map.
#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub(crate) generation: u64,
    /// Every write up to here is known or superseded.
    pub(crate) watermark: u64,
    /// Tombstones up to this version have been collected: a peer behind it needs a reset.
    pub(crate) gc_floor: u64,
    pub(crate) entries: BTreeMap<String, KeyValue>,
    /// Versions applied above the watermark (out-of-order piggybacked writes), bounded.
    above: BTreeSet<u64>,
    /// Encoded size of keys and values held, to bound memory.
    pub(crate) bytes: usize,
    /// When this replica last told its owner that a write contradicts its watermark
    /// (`KvStore::contradicted_watermark`): at most once per probe interval.
    pub(crate) contradiction_reported: Option<Instant>,
}

/// Out-of-order versions remembered per node before giving up and waiting for anti-entropy.
const MAX_OUT_OF_ORDER: usize = 1024;

/// Outcome of applying a write to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The write changed the replica.
    Changed,
    /// Already known or superseded.
    Stale,
    /// Refused: the replica is at its size bounds.
    Full,
}

impl NodeState {
    pub(crate) fn new(generation: u64) -> Self {
        Self {
            generation,
            watermark: 0,
            gc_floor: 0,
            entries: BTreeMap::new(),
            above: BTreeSet::new(),
            bytes: 0,
            contradiction_reported: None,
        }
    }

    /// Applies one write if it is newer than what the replica holds for the key.
    pub(crate) fn apply(
        &mut self,
        entry: WireEntry,
        now: Instant,
        max_keys: usize,
        max_bytes: usize,
    ) -> Applied {
        let outcome = match self.entries.get(&entry.key) {
            Some(known) if known.version >= entry.version => Applied::Stale,
            known => {
                let old_size = known.map_or(0, |k| {
                    entry.key.len() + k.value.as_ref().map_or(0, Vec::len)
                });
                let new_size = entry.key.len() + entry.value.as_ref().map_or(0, Vec::len);
                if known.is_none() && self.entries.len() >= max_keys
                    || self.bytes + new_size > max_bytes + old_size
                {
                    Applied::Full
                } else {
                    self.bytes = self.bytes + new_size - old_size;
                    self.entries.insert(
                        entry.key,
                        KeyValue {
                            value: entry.value,
                            version: entry.version,
                            updated_at: now,
                        },
                    );
                    Applied::Changed
                }
            }
        };
        if outcome != Applied::Full {
            self.note_version(entry.version);
        }
        outcome
    }

    /// Records that `version` is known, advancing the watermark while contiguous.
    pub(crate) fn note_version(&mut self, version: u64) {
        if version <= self.watermark {
            return;
        }
        if version == self.watermark + 1 {
            self.watermark = version;
            while self.above.remove(&(self.watermark + 1)) {
                self.watermark += 1;
            }
        } else if self.above.len() < MAX_OUT_OF_ORDER {
            self.above.insert(version);
        }
    }

    /// After a delta chunk covering `(from, to]` of the owner's writes was applied: if this
    /// replica was at least at `from`, everything up to `to` is now known or superseded.
    pub(crate) fn advance(&mut self, from: u64, to: u64) {
        if self.watermark >= from && to > self.watermark {
            self.watermark = to;
            self.above = self.above.split_off(&(to + 1));
            while self.above.remove(&(self.watermark + 1)) {
                self.watermark += 1;
            }
        }
    }

    /// Writes above `from`, in version order.
    pub(crate) fn entries_above(&self, from: u64) -> Vec<WireEntry> {
        let mut out: Vec<WireEntry> = self
            .entries
            .iter()
            .filter(|(_, e)| e.version > from && e.version <= self.watermark)
            .map(|(k, e)| WireEntry {
                key: k.clone(),
                value: e.value.clone(),
                version: e.version,
            })
            .collect();
        out.sort_by_key(|e| e.version);
        out
    }

    /// Drops tombstones older than `grace`; returns how many.
    pub(crate) fn collect_tombstones(&mut self, now: Instant, grace: Duration) -> usize {
        let expired: Vec<(String, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.value.is_none() && now.duration_since(e.updated_at) >= grace)
            .filter(|(_, e)| e.version <= self.watermark)
            .map(|(k, e)| (k.clone(), e.version))
            .collect();
        for (key, version) in &expired {
            self.entries.remove(key);
            self.bytes = self.bytes.saturating_sub(key.len());
            self.gc_floor = self.gc_floor.max(*version);
        }
        expired.len()
    }

    /// Gives every entry (tombstones included) a new version above `floor`, in their present
    /// order, and marks everything up to the new watermark collected, so that any replica
    /// behind it (one holding forged writes included) is reset and rebuilt from these entries.
    /// The owner's answer to a forged watermark above its own.
    pub(crate) fn rebase_above(&mut self, floor: u64) {
        let mut order: Vec<(u64, String)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.version, k.clone()))
            .collect();
        order.sort_unstable();
        let mut version = floor;
        for (_, key) in order {
            version = version.saturating_add(1);
            if let Some(e) = self.entries.get_mut(&key) {
                e.version = version;
            }
        }
        self.watermark = version;
        self.gc_floor = version;
        self.above.clear();
    }

    /// Forgets every entry (a reset from a peer whose owner collected tombstones we lack).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.above.clear();
        self.bytes = 0;
        self.watermark = 0;
    }

    /// Nothing known: the same, for anti-entropy, as no replica at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.watermark == 0 && self.entries.is_empty()
    }

    /// Hash of `(name, generation, watermark)` for the state fingerprint; 0 for an empty replica,
    /// so holding an empty replica and holding none fingerprint alike.
    pub(crate) fn digest_hash(&self, name: &str) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let mut h = fnv::FnvHasher::default();
        h.write(name.as_bytes());
        h.write_u8(0xfe);
        h.write_u64(self.generation);
        h.write_u64(self.watermark);
        let mut x = h.finish();
        x ^= x >> 31;
        x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use super::*;

    fn w(key: &str, value: Option<&str>, version: u64) -> WireEntry {
        WireEntry {
            key: key.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
            version,
        }
    }

    #[test]
    fn newer_writes_win_and_watermark_tracks_contiguity() {
        let now = Instant::now();
        let mut s = NodeState::new(1);
        assert_eq!(
            s.apply(w("a", Some("1"), 1), now, 10, 1000),
            Applied::Changed
        );
        assert_eq!(
            s.apply(w("b", Some("1"), 3), now, 10, 1000),
            Applied::Changed
        );
        assert_eq!(s.watermark, 1, "version 2 is missing");
        assert_eq!(s.apply(w("a", Some("0"), 1), now, 10, 1000), Applied::Stale);
        assert_eq!(s.apply(w("c", None, 2), now, 10, 1000), Applied::Changed);
        assert_eq!(s.watermark, 3, "2 filled the gap, 3 was waiting");
    }

    #[test]
    fn a_consistent_prefix_advances_the_watermark_past_superseded_versions() {
        let now = Instant::now();
        let mut owner = NodeState::new(1);
        for (v, (k, val)) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1")]
            .iter()
            .enumerate()
        {
            owner.apply(w(k, Some(val), v as u64 + 1), now, 10, 1000);
        }
        // Version 1 ("a" = 1) is superseded by version 3: the delta holds b@2, a@3, c@4.
        let delta = owner.entries_above(0);
        assert_eq!(
            delta.iter().map(|e| e.version).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        let mut replica = NodeState::new(1);
        // Cut after two entries: still a consistent prefix up to version 3.
        for e in delta[..2].iter().cloned() {
            replica.apply(e, now, 10, 1000);
        }
        replica.advance(0, 3);
        assert_eq!(replica.watermark, 3);
        assert_eq!(replica.entries_above(0).len(), 2);
        for e in owner.entries_above(3) {
            replica.apply(e, now, 10, 1000);
        }
        replica.advance(3, 4);
        assert_eq!(replica.watermark, 4);
        assert_eq!(replica.entries, {
            let mut e = owner.entries.clone();
            e.values_mut().for_each(|kv| kv.updated_at = now);
            e
        });
    }

    #[test]
    fn advance_needs_the_replica_to_be_at_the_chunk_start() {
        let mut s = NodeState::new(1);
        s.advance(5, 9);
        assert_eq!(
            s.watermark, 0,
            "a chunk starting at 5 says nothing about 1..=5"
        );
    }

    #[test]
    fn bounds_refuse_without_changing_state() {
        let now = Instant::now();
        let mut s = NodeState::new(1);
        assert_eq!(
            s.apply(w("a", Some("xxxx"), 1), now, 1, 1000),
            Applied::Changed
        );
        assert_eq!(s.apply(w("b", Some("y"), 2), now, 1, 1000), Applied::Full);
        assert_eq!(
            s.apply(w("a", Some(&"z".repeat(2000)), 3), now, 1, 1000),
            Applied::Full
        );
        assert_eq!(s.entries["a"].value.as_deref(), Some(&b"xxxx"[..]));
        assert_eq!(s.watermark, 1);
    }

    #[test]
    fn tombstones_are_collected_after_the_grace_period() {
        let now = Instant::now();
        let mut s = NodeState::new(1);
        s.apply(w("a", Some("1"), 1), now, 10, 1000);
        s.apply(w("a", None, 2), now, 10, 1000);
        assert_eq!(
            s.collect_tombstones(now + Duration::from_secs(10), Duration::from_secs(60)),
            0
        );
        assert_eq!(
            s.collect_tombstones(now + Duration::from_secs(61), Duration::from_secs(60)),
            1
        );
        assert!(s.entries.is_empty());
        assert_eq!(s.gc_floor, 2);
    }
}
