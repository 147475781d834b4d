//! The key/value store: this node's own map, its replicas of other members' maps, the state
//! fingerprint, and the bookkeeping of writes travelling the broadcast tree (pushes queued,
//! pushes seen, pulls pending).
//!
//! [`KvStore`] owns that state and the rules of what it accepts: a write of another member is
//! taken only for the life membership holds (the caller passes the member's generation), within
//! the per-node limits of keys and bytes, and a delta advances a watermark only from where the
//! replica stands. The fingerprint (XOR of `NodeState::digest_hash` of every replica, this
//! node's own included) is kept by every method that changes a replica, so it is always the
//! fingerprint of what is held. Sending, events and statistics stay with `Node` (`kv.rs`,
//! `state_tree.rs`), which routes messages here.
//!
//! Bounds: replicas exist only for members of the table (one per name, dropped when the member
//! joins with a new life or is reaped), each within `Config::max_keys_per_node` keys and
//! `Config::max_state_bytes_per_node` bytes; one queued push per (owner, key), cleared every
//! gossip round; `Config::message_cache_size` pushed writes remembered; `Config::max_members`
//! pending pulls.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::event::KeyChange;
use crate::graft::GraftQueue;
use crate::state::{Applied, NodeState, StateError, WireEntry};
use crate::state_tree::{kv_key, PendingPush, PushedWrites, MAX_SUPERSEDES};
use crate::wire::{self, DigestRow, Message, StateUpdate};

/// Writes of one owner's life arriving together (a pushed update or a delta chunk).
pub(crate) struct Writes<'a> {
    pub(crate) node: &'a str,
    pub(crate) generation: u64,
    pub(crate) entries: Vec<WireEntry>,
    /// Forget the replica's entries first.
    pub(crate) reset: bool,
    /// The chunk covers the owner's writes `(from, to]`.
    pub(crate) range: Option<(u64, u64)>,
    /// Versions the writes make obsolete.
    pub(crate) superseded: &'a [u64],
}

/// Writes refused by [`KvStore::apply_writes`]; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WritesRefused {
    /// Writes about this node itself: only this node writes its state.
    Own,
    /// The owner is not in the member table.
    Unknown,
    /// The writes are of another life than the one membership holds.
    OtherLife,
}

/// What [`KvStore::apply_writes`] changed.
#[derive(Debug, Default)]
pub(crate) struct WritesApplied {
    /// Entries that changed the replica, in the order applied.
    pub(crate) changed: Vec<WireEntry>,
    /// Keys a reset removed that the writes did not bring back.
    pub(crate) gone: Vec<String>,
    /// Entries refused because the replica is at its limits.
    pub(crate) full: u64,
}

/// This node's key/value state and its replicas of other members' states.
#[derive(Debug)]
pub(crate) struct KvStore {
    /// This node's name (its own state is hashed under it).
    name: String,
    /// This node's own state; its generation is this node's generation.
    mine: NodeState,
    /// Replicas of other members' states, created by their first write.
    replicas: BTreeMap<String, NodeState>,
    /// XOR of `digest_hash` of every replica, this node's included.
    fingerprint: u64,
    /// Writes waiting for the next gossip round to be pushed along the broadcast tree, one per
    /// (owner, key).
    push: BTreeMap<String, PendingPush>,
    /// Writes that arrived by push (bounded), to tell a tree cycle from another path.
    pushed: PushedWrites,
    /// Owners whose writes were announced ahead of this node's replica: the watermark wanted.
    missing: GraftQueue<String, u64>,
}

impl KvStore {
    /// An empty store for the node `name` in its life `generation`.
    pub(crate) fn new(name: &str, generation: u64) -> Self {
        let mine = NodeState::new(generation);
        Self {
            name: name.to_owned(),
            fingerprint: mine.digest_hash(name),
            mine,
            replicas: BTreeMap::new(),
            push: BTreeMap::new(),
            pushed: PushedWrites::default(),
            missing: GraftQueue::default(),
        }
    }

    /// Fingerprint of every replica held, this node's own included.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// This node's own state.
    pub(crate) fn mine(&self) -> &NodeState {
        &self.mine
    }

    /// The state of `node`, this node included.
    pub(crate) fn state_of(&self, node: &str) -> Option<&NodeState> {
        if node == self.name {
            Some(&self.mine)
        } else {
            self.replicas.get(node)
        }
    }

    /// Changes this node's own state with `change`, keeping the fingerprint.
    fn change_mine<R>(&mut self, change: impl FnOnce(&mut NodeState) -> R) -> R {
        let before = self.mine.digest_hash(&self.name);
        let out = change(&mut self.mine);
        self.fingerprint ^= before ^ self.mine.digest_hash(&self.name);
        out
    }

    /// Writes `key` of this node's state (`None` deletes it) at the next version. Returns the
    /// entry written and the version it makes obsolete, if any. Fails without changing anything
    /// if the key or value is over its limit, or the state is full.
    pub(crate) fn write_local(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Vec<u8>>,
        config: &Config,
    ) -> Result<(WireEntry, Vec<u64>), StateError> {
        if key.is_empty() || key.len() > config.max_key_len {
            return Err(StateError::BadKey {
                len: key.len(),
                limit: config.max_key_len,
            });
        }
        if let Some(v) = &value {
            if v.len() > config.max_value_size {
                return Err(StateError::ValueTooLarge {
                    size: v.len(),
                    limit: config.max_value_size,
                });
            }
        }
        let version = self.mine.watermark + 1;
        // The write makes the key's previous version obsolete; a replica may count it as known
        // (a queued push of the previous version is merged into this one, see `queue_push`).
        let supersedes: Vec<u64> = self
            .mine
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
        let (max_keys, max_bytes) = (config.max_keys_per_node, config.max_state_bytes_per_node);
        let applied = self.change_mine(|mine| mine.apply(entry.clone(), now, max_keys, max_bytes));
        match applied {
            Applied::Changed => Ok((entry, supersedes)),
            Applied::Full | Applied::Stale => Err(StateError::Full {
                max_keys,
                max_bytes,
            }),
        }
    }

    /// This node began a new life: its own state carries over under the new generation.
    pub(crate) fn set_generation(&mut self, generation: u64) {
        self.change_mine(|mine| mine.generation = generation);
    }

    /// Whether a claim that this node's state reaches `watermark` goes beyond what it wrote.
    pub(crate) fn is_beyond_mine(&self, watermark: u64) -> bool {
        watermark > self.mine.watermark
    }

    /// Whether this node's versions can move past `watermark` (see [`KvStore::rebase_mine`]).
    pub(crate) fn has_room_above(&self, watermark: u64) -> bool {
        let needed = self.mine.entries.len() as u64;
        watermark.saturating_add(needed) <= crate::limits::MAX_VERSION
    }

    /// Gives this node's entries new versions above `floor` (`NodeState::rebase_above`): the
    /// owner's answer to a forged watermark.
    pub(crate) fn rebase_mine(&mut self, floor: u64) {
        self.change_mine(|mine| mine.rebase_above(floor));
    }

    /// Applies writes to the replica of `writes.node`, whose life in the member table is
    /// `member_generation` (`None`: not a member). Returns what changed; the fingerprint
    /// follows.
    pub(crate) fn apply_writes(
        &mut self,
        now: Instant,
        writes: Writes<'_>,
        member_generation: Option<u64>,
        config: &Config,
    ) -> Result<WritesApplied, WritesRefused> {
        let Writes {
            node,
            generation,
            entries,
            reset,
            range,
            superseded,
        } = writes;
        if node == self.name {
            return Err(WritesRefused::Own);
        }
        match member_generation {
            None => return Err(WritesRefused::Unknown),
            Some(g) if g != generation => return Err(WritesRefused::OtherLife),
            Some(_) => {}
        }
        let (max_keys, max_bytes) = (config.max_keys_per_node, config.max_state_bytes_per_node);
        let replica = self
            .replicas
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
        let mut out = WritesApplied::default();
        for entry in entries {
            match replica.apply(entry.clone(), now, max_keys, max_bytes) {
                Applied::Changed => out.changed.push(entry),
                Applied::Stale => {}
                Applied::Full => out.full += 1,
            }
        }
        if out.full == 0 {
            if let Some((from, to)) = range {
                replica.advance(from, to);
            }
            for &version in superseded.iter().take(MAX_SUPERSEDES) {
                replica.note_version(version);
            }
        }
        let after = replica.digest_hash(node);
        out.gone = removed
            .into_iter()
            .filter(|k| !replica.entries.contains_key(k))
            .collect();
        if replica.is_empty() {
            self.replicas.remove(node);
        }
        self.fingerprint ^= before ^ after;
        Ok(out)
    }

    /// Drops the replica of `name` (a new life of it joined, or it was reaped). Returns its
    /// keys, reported deleted so that a subscriber mirroring state from events stays right.
    pub(crate) fn drop_replica(&mut self, name: &str) -> Vec<KeyChange> {
        let Some(old) = self.replicas.remove(name) else {
            return Vec::new();
        };
        self.fingerprint ^= old.digest_hash(name);
        old.entries
            .into_iter()
            .filter(|(_, kv)| kv.value.is_some())
            .map(|(key, _)| KeyChange {
                node: name.to_owned(),
                key,
                value: None,
                version: old.watermark,
            })
            .collect()
    }

    /// Digest rows of every non-empty state held, this node's included, in name order.
    pub(crate) fn digest_rows(&self) -> Vec<DigestRow> {
        let mut rows: Vec<DigestRow> = self
            .replicas
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(name, s)| DigestRow {
                node: name.clone(),
                generation: s.generation,
                watermark: s.watermark,
            })
            .collect();
        if !self.mine.is_empty() {
            let at = rows.partition_point(|r| r.node < self.name);
            rows.insert(
                at,
                DigestRow {
                    node: self.name.clone(),
                    generation: self.mine.generation,
                    watermark: self.mine.watermark,
                },
            );
        }
        rows
    }

    /// Names of the non-empty states held: replicas in name order, then this node's own.
    pub(crate) fn holders(&self) -> impl Iterator<Item = &str> {
        self.replicas
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(name, _)| name.as_str())
            .chain((!self.mine.is_empty()).then_some(self.name.as_str()))
    }

    /// For each row of a peer's digest, the writes the peer lacks as `StateDelta` messages in
    /// version order, grouped into at most `max_packets` datagrams of `budget` bytes. Rows are
    /// served from `start` on (and around), so that a backlog is worked through fairly.
    pub(crate) fn deltas(
        &self,
        rows: &[DigestRow],
        start: usize,
        budget: usize,
        max_packets: usize,
    ) -> Vec<Vec<Message>> {
        let mut packets: Vec<Vec<Message>> = Vec::new();
        let mut current: Vec<Message> = Vec::new();
        let mut size = 0usize;
        'rows: for i in 0..rows.len() {
            let row = &rows[(start + i) % rows.len()];
            let Some(mine) = self.state_of(&row.node) else {
                continue;
            };
            let generation = mine.generation;
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
        packets
    }

    /// Collects expired tombstones in every state held.
    pub(crate) fn collect_tombstones(&mut self, now: Instant, grace: Duration) {
        self.change_mine(|mine| mine.collect_tombstones(now, grace));
        for (name, replica) in self.replicas.iter_mut() {
            let before = replica.digest_hash(name);
            replica.collect_tombstones(now, grace);
            self.fingerprint ^= before ^ replica.digest_hash(name);
        }
    }

    /// Whether this node already holds `update` (or something newer for its key, or a newer
    /// life of its owner): a push of nothing else is a duplicate.
    pub(crate) fn knows_write(&self, update: &StateUpdate) -> bool {
        let Some(replica) = self.state_of(&update.node) else {
            return false;
        };
        replica.generation > update.generation
            || (replica.generation == update.generation
                && (replica.watermark >= update.entry.version
                    || replica
                        .entries
                        .get(&update.entry.key)
                        .is_some_and(|e| e.version >= update.entry.version)))
    }

    /// The watermark to report to the owner of `update` when the write contradicts it, at most
    /// once per `interval` per replica.
    ///
    /// A replica's watermark says every write of the owner up to it is held or superseded, so a
    /// write at or below it that the replica holds neither in that version nor superseded is
    /// evidence that the watermark was forged (collected tombstones excepted: below `gc_floor`
    /// a missing key is expected). Evidence of the same kind comes from the owner itself
    /// (`from_owner`) sending a write of a key the replica holds in a higher version: an owner
    /// only ever sends a key's latest write, so that version came from someone else. A forged
    /// watermark with forged entries freezes exactly those keys, and the owner's next write of
    /// any key shows it. The honest exceptions (a delta cut below a superseding write, a
    /// reordered pair of the owner's own pushes) cost one small report that the owner finds
    /// below its own watermark and ignores.
    pub(crate) fn contradicted_watermark(
        &mut self,
        update: &StateUpdate,
        from_owner: bool,
        now: Instant,
        interval: Duration,
    ) -> Option<u64> {
        let replica = self.replicas.get_mut(&update.node)?;
        if replica.generation != update.generation || update.entry.version > replica.watermark {
            return None;
        }
        let held = replica.entries.get(&update.entry.key).map(|e| e.version);
        let contradicted = match held {
            Some(v) if v == update.entry.version => false,
            Some(v) if v < update.entry.version => true,
            Some(_) => from_owner,
            None => update.entry.version > replica.gc_floor,
        };
        if !contradicted
            || replica
                .contradiction_reported
                .is_some_and(|at| now.saturating_duration_since(at) < interval)
        {
            return None;
        }
        replica.contradiction_reported = Some(now);
        Some(replica.watermark)
    }

    /// `(generation, watermark)` of the state of `node`, if any.
    pub(crate) fn mark(&self, node: &str) -> Option<(u64, u64)> {
        self.state_of(node).map(|r| (r.generation, r.watermark))
    }

    /// The watermark of the state of `node`'s life `generation`; 0 if none.
    pub(crate) fn watermark_of(&self, node: &str, generation: u64) -> u64 {
        self.state_of(node)
            .filter(|r| r.generation == generation)
            .map_or(0, |r| r.watermark)
    }

    // ---- writes on the broadcast tree (`state_tree.rs`) ----

    /// Queues a write for the next push. A newer write of the same key replaces a queued one
    /// and carries what that one superseded; returns false when the queued write was the newer
    /// one (or of a newer life) and was kept.
    pub(crate) fn queue_push(&mut self, mut update: StateUpdate, from: Option<String>) -> bool {
        let key = kv_key(&update.node, &update.entry.key);
        if let Some(older) = self.push.remove(&key) {
            if older.update.generation == update.generation
                && older.update.entry.version < update.entry.version
            {
                let mut supersedes = older.update.supersedes;
                supersedes.push(older.update.entry.version);
                supersedes.extend_from_slice(&update.supersedes);
                supersedes.sort_unstable();
                supersedes.dedup();
                if supersedes.len() > MAX_SUPERSEDES {
                    supersedes.drain(..supersedes.len() - MAX_SUPERSEDES);
                }
                update.supersedes = supersedes;
            } else if older.update.generation >= update.generation {
                self.push.insert(key, older);
                return false;
            }
        }
        self.push.insert(key, PendingPush { update, from });
        true
    }

    /// Takes the writes queued for pushing.
    pub(crate) fn take_pushes(&mut self) -> BTreeMap<String, PendingPush> {
        std::mem::take(&mut self.push)
    }

    /// Whether writes are queued for pushing.
    pub(crate) fn has_pushes(&self) -> bool {
        !self.push.is_empty()
    }

    /// Remembers that `update` arrived over the tree (bounded by `max`).
    pub(crate) fn note_pushed(&mut self, update: &StateUpdate, max: usize) {
        self.pushed.insert(update, max);
    }

    /// Whether `update` arrived over the tree before.
    pub(crate) fn was_pushed(&self, update: &StateUpdate) -> bool {
        self.pushed.contains(update)
    }

    /// Remembers that `announcer` holds `node`'s writes up to `watermark` (at most `max`
    /// owners pending); a pull is due at `graft_at`.
    pub(crate) fn note_announced(
        &mut self,
        node: String,
        watermark: u64,
        announcer: SocketAddr,
        graft_at: Instant,
        max: usize,
    ) {
        // The announcer's name is looked up when (and if) a pull is sent.
        self.missing
            .announced(node, watermark, (String::new(), announcer), graft_at, max);
    }

    /// Pulls due now: `(owner, watermark wanted, announcer's address)`.
    pub(crate) fn due_pulls(
        &mut self,
        now: Instant,
        retry: Duration,
        give_up_after: Duration,
    ) -> Vec<(String, u64, SocketAddr)> {
        if self.missing.is_empty() {
            return Vec::new();
        }
        self.missing
            .due(now, retry, give_up_after)
            .into_iter()
            .map(|(node, want, (_, addr))| (node, want, addr))
            .collect()
    }

    /// Forgets the pending pull for `node`.
    pub(crate) fn forget_pull(&mut self, node: &str) {
        self.missing.remove(&node.to_owned());
    }

    /// Forgets the pending pull for `node` once its replica of life `generation` reached the
    /// announced watermark.
    pub(crate) fn forget_pull_if_caught_up(&mut self, node: &str, generation: u64) {
        let key = node.to_owned();
        let Some(want) = self.missing.want(&key) else {
            return;
        };
        if self.watermark_of(node, generation) >= want {
            self.missing.remove(&key);
        }
    }

    /// Whether a pull of `node` was sent to `addr`: its delta answers the pull.
    pub(crate) fn pulled_from(&self, node: &str, addr: SocketAddr) -> bool {
        self.missing.grafted_from(&node.to_owned(), addr)
    }

    /// When the next pull is due.
    pub(crate) fn next_pull(&self) -> Option<Instant> {
        self.missing.next()
    }
}
