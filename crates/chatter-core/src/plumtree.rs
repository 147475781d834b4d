//! Plumtree epidemic broadcast trees (Leitão, Pereira, Rodrigues 2007) for user messages.
//!
//! Each node keeps a few *neighbours*, each either **eager** (messages are pushed to it in full)
//! or **lazy** (it only hears announcements). Links are symmetric: a node that adds a neighbour
//! tells it with a `Graft`, and both sides mark the link eager. A message is pushed along eager
//! links; a duplicate arriving over a link proves a cycle, so the receiver prunes that link to
//! lazy on both sides. After a few messages the eager links form a spanning tree and a broadcast
//! costs about N datagrams and a few network hops.
//!
//! Announcements (`IHave`) ride piggyback on every datagram a node sends anyway (probes, acks,
//! gossip), so the lazy side costs no datagrams of its own. A node that hears of a message it
//! lacks waits `graft_timeout` for the tree to deliver it, then sends `Graft` to the announcer,
//! which sends the message and makes the link eager: the tree repairs itself under loss and churn.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::addr_memo::AddrMemo;
use crate::graft::GraftQueue;

/// The unique id of a user message: its origin's name and life, and the origin's sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    /// Name of the member that broadcast the message.
    pub origin: String,
    /// Generation of the origin when it broadcast it.
    pub generation: u64,
    /// The origin's sequence number, from 1.
    pub seq: u64,
}

/// A message refused by [`Node::broadcast`](crate::Node::broadcast); nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BroadcastError {
    /// The tag is empty or longer than `Config::max_tag_len`.
    #[error("tag must be 1 to {limit} bytes long, got {len}")]
    BadTag {
        /// Length of the tag given.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload exceeds `Config::max_message_size`.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the payload given.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The node has left the cluster.
    #[error("the node has left the cluster")]
    Left,
}

/// A received message kept to answer grafts.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub(crate) tag: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) hops: u32,
    pub(crate) at: Instant,
}

/// Which sequence numbers of one origin's life were seen: all up to `floor`, plus `above`.
#[derive(Debug, Clone, Default)]
struct SeenWindow {
    generation: u64,
    floor: u64,
    above: BTreeSet<u64>,
}

/// Sequence numbers remembered above an origin's contiguous floor (8 bytes each in a B-tree:
/// about 40 KiB per origin at most). See [`Plumtree::mark_seen`] for what happens beyond.
const MAX_SEEN_ABOVE: usize = 4096;

/// Grafts from nodes not yet listed, remembered until they are (about 150 bytes each).
const MAX_STRANGER_GRAFTS: usize = 64;

/// Plumtree state of one node.
#[derive(Debug, Clone)]
pub(crate) struct Plumtree {
    /// Neighbour name -> is the link eager. At most `Config::max_broadcast_neighbours`
    /// (`set_eager` makes room by dropping a lazy link).
    neighbours: BTreeMap<String, bool>,
    seen: BTreeMap<String, SeenWindow>,
    /// Messages kept to answer grafts: at most `Config::message_cache_size`, none older than
    /// `Config::message_cache_age` once `expire_cache` has run.
    cache: BTreeMap<MessageId, Cached>,
    cache_order: VecDeque<MessageId>,
    /// Messages announced to this node that the tree has not delivered.
    /// At most `Config::message_cache_size` entries.
    missing: GraftQueue<MessageId>,
    /// Sequence number of this node's last own broadcast in its current life.
    next_seq: u64,
    /// Grafts received from nodes not yet listed as members: name and address. Entries expire
    /// after `Config::sync_interval`: a node grafts as soon as it joins, and is checked and
    /// listed within a probe timeout.
    stranger_grafts: AddrMemo<String, SocketAddr>,
}

impl Plumtree {
    /// No neighbours, nothing seen; grafts of strangers are remembered for `stranger_ttl`.
    pub(crate) fn new(stranger_ttl: Duration) -> Self {
        Self {
            neighbours: BTreeMap::new(),
            seen: BTreeMap::new(),
            cache: BTreeMap::new(),
            cache_order: VecDeque::new(),
            missing: GraftQueue::default(),
            next_seq: 0,
            stranger_grafts: AddrMemo::new(MAX_STRANGER_GRAFTS, stranger_ttl),
        }
    }

    /// A graft from `name` at `addr`, not (yet) a member there: the link it asks for is made
    /// if it is listed at that address (see [`Plumtree::take_stranger_graft`]).
    pub(crate) fn note_stranger_graft(&mut self, now: Instant, name: String, addr: SocketAddr) {
        self.stranger_grafts.insert(now, name, addr);
    }

    /// The address a stranger called `name` grafted from, forgotten once asked for.
    pub(crate) fn take_stranger_graft(&mut self, name: &str) -> Option<SocketAddr> {
        self.stranger_grafts
            .remove(&name.to_owned())
            .map(|(_, addr)| addr)
    }

    /// The id sequence number of this node's next own broadcast.
    pub(crate) fn next_message_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// A message seen for the first time: marks it seen (see [`Plumtree::mark_seen`]), stops
    /// waiting for it, and caches it for grafts (at most `cache_size`, oldest dropped first).
    pub(crate) fn deliver(
        &mut self,
        id: &MessageId,
        msg: Cached,
        max_origins: usize,
        cache_size: usize,
    ) {
        self.mark_seen(id, max_origins);
        self.missing.remove(id);
        self.cache(id.clone(), msg, cache_size);
    }

    /// The cached message `id`, to answer a graft.
    pub(crate) fn cached(&self, id: &MessageId) -> Option<&Cached> {
        self.cache.get(id)
    }

    /// `id` was announced by `announcer`: graft it at `graft_at` unless the tree delivers it
    /// first. At most `max` messages are waited for.
    pub(crate) fn announced(
        &mut self,
        id: MessageId,
        announcer: (String, SocketAddr),
        graft_at: Instant,
        max: usize,
    ) {
        self.missing.announced(id, (), announcer, graft_at, max);
    }

    /// Missing messages whose graft is due, with the announcer to graft each from (see
    /// [`GraftQueue::due`]).
    pub(crate) fn due_grafts(
        &mut self,
        now: Instant,
        retry: Duration,
        give_up_after: Duration,
    ) -> Vec<(MessageId, (String, SocketAddr))> {
        self.missing
            .due(now, retry, give_up_after)
            .into_iter()
            .map(|(id, (), announcer)| (id, announcer))
            .collect()
    }

    /// When the next graft is due.
    pub(crate) fn next_graft(&self) -> Option<Instant> {
        self.missing.next()
    }

    /// Whether the link to `name` is eager.
    pub(crate) fn is_eager(&self, name: &str) -> bool {
        self.neighbours.get(name) == Some(&true)
    }

    /// Whether `name` is a neighbour on the tree (eager or lazy).
    pub(crate) fn is_neighbour(&self, name: &str) -> bool {
        self.neighbours.contains_key(name)
    }

    /// Neighbours on the tree.
    pub(crate) fn num_neighbours(&self) -> usize {
        self.neighbours.len()
    }

    /// Every neighbour with whether its link is eager, by name.
    pub(crate) fn neighbours(&self) -> impl Iterator<Item = (&String, bool)> {
        self.neighbours.iter().map(|(n, eager)| (n, *eager))
    }

    /// Keeps only the neighbours for which `keep` holds (the live members).
    pub(crate) fn retain_neighbours(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.neighbours.retain(|name, _| keep(name));
    }

    /// Marks `id` seen; returns false if it was seen before.
    pub(crate) fn mark_seen(&mut self, id: &MessageId, max_origins: usize) -> bool {
        if !self.seen.contains_key(&id.origin) && self.seen.len() >= max_origins {
            // Bounded memory: forget the window of some origin (the first by name). A
            // forgotten origin's old messages could be delivered twice only if they were still
            // circulating, which the message cache's age bound makes unlikely.
            self.seen.pop_first();
        }
        let w = self.seen.entry(id.origin.clone()).or_default();
        if id.generation < w.generation {
            return false;
        }
        if id.generation > w.generation {
            *w = SeenWindow {
                generation: id.generation,
                ..SeenWindow::default()
            };
        }
        if id.seq <= w.floor || w.above.contains(&id.seq) {
            return false;
        }
        if w.above.len() >= MAX_SEEN_ABOVE {
            // Full of numbers far ahead of the floor: forget the farthest (it could be
            // delivered twice if it came again) rather than raise the floor, which would
            // treat every real message below as seen: a sender of forged high numbers could
            // then censor an origin. A number beyond all of them waits for a graft.
            match w.above.last() {
                Some(&highest) if id.seq < highest => {
                    w.above.pop_last();
                }
                _ => return false,
            }
        }
        w.above.insert(id.seq);
        while w.above.remove(&(w.floor + 1)) {
            w.floor += 1;
        }
        true
    }

    pub(crate) fn has_seen(&self, id: &MessageId) -> bool {
        self.seen.get(&id.origin).is_some_and(|w| {
            id.generation < w.generation
                || (id.generation == w.generation
                    && (id.seq <= w.floor || w.above.contains(&id.seq)))
        })
    }

    fn cache(&mut self, id: MessageId, msg: Cached, max: usize) {
        while self.cache_order.len() >= max.max(1) {
            if let Some(old) = self.cache_order.pop_front() {
                self.cache.remove(&old);
            }
        }
        self.cache_order.push_back(id.clone());
        self.cache.insert(id, msg);
    }

    /// Drops cached messages older than `max_age`.
    pub(crate) fn expire_cache(&mut self, now: Instant, max_age: Duration) {
        while let Some(id) = self.cache_order.front() {
            match self.cache.get(id) {
                Some(c) if now.duration_since(c.at) < max_age => break,
                _ => {
                    if let Some(id) = self.cache_order.pop_front() {
                        self.cache.remove(&id);
                    }
                }
            }
        }
    }

    pub(crate) fn eager_peers(&self) -> impl Iterator<Item = &String> {
        self.neighbours
            .iter()
            .filter(|(_, eager)| **eager)
            .map(|(n, _)| n)
    }

    pub(crate) fn set_eager(&mut self, name: &str, eager: bool, max_neighbours: usize) {
        if let Some(link) = self.neighbours.get_mut(name) {
            *link = eager;
            return;
        }
        if self.neighbours.len() >= max_neighbours {
            // Make room by dropping a lazy link; if all are eager, keep the tree as it is.
            let lazy = self
                .neighbours
                .iter()
                .find(|(_, e)| !**e)
                .map(|(n, _)| n.clone());
            match lazy {
                Some(n) => {
                    self.neighbours.remove(&n);
                }
                None => return,
            }
        }
        self.neighbours.insert(name.to_owned(), eager);
    }

    pub(crate) fn remove_neighbour(&mut self, name: &str) {
        self.neighbours.remove(name);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use super::*;

    fn id(origin: &str, generation: u64, seq: u64) -> MessageId {
        MessageId {
            origin: origin.into(),
            generation,
            seq,
        }
    }

    #[test]
    fn each_message_is_seen_once_and_old_lives_are_ignored() {
        let mut p = Plumtree::new(Duration::from_secs(30));
        assert!(p.mark_seen(&id("a", 1, 2), 10));
        assert!(!p.mark_seen(&id("a", 1, 2), 10));
        assert!(p.mark_seen(&id("a", 1, 1), 10));
        assert!(p.has_seen(&id("a", 1, 1)));
        assert!(!p.has_seen(&id("a", 1, 3)));
        assert!(
            p.mark_seen(&id("a", 2, 1), 10),
            "a restart starts a new window"
        );
        assert!(
            !p.mark_seen(&id("a", 1, 5), 10),
            "messages of a previous life are dropped"
        );
    }

    #[test]
    fn seen_memory_is_bounded_and_forged_high_numbers_censor_nothing() {
        let mut p = Plumtree::new(Duration::from_secs(30));
        // Numbers far ahead of the floor (forged, or a huge gap): the window stays bounded...
        for seq in (1_000_000..1_020_000).step_by(2) {
            p.mark_seen(&id("a", 1, seq), 10);
        }
        let w = &p.seen["a"];
        assert!(w.above.len() <= MAX_SEEN_ABOVE);
        // ...and every real message from the floor on is still delivered, once.
        for seq in 1..=100 {
            assert!(p.mark_seen(&id("a", 1, seq), 10), "seq {seq} censored");
            assert!(!p.mark_seen(&id("a", 1, seq), 10), "seq {seq} twice");
        }
        assert_eq!(p.seen["a"].floor, 100);
        for i in 0..50 {
            p.mark_seen(&id(&format!("o{i}"), 1, 1), 10);
        }
        assert!(p.seen.len() <= 10);
    }

    #[test]
    fn neighbour_set_is_bounded_and_prefers_dropping_lazy_links() {
        let mut p = Plumtree::new(Duration::from_secs(30));
        p.set_eager("a", true, 2);
        p.set_eager("b", false, 2);
        p.set_eager("c", true, 2);
        assert_eq!(p.neighbours.len(), 2);
        assert!(p.neighbours.contains_key("a") && p.neighbours.contains_key("c"));
        p.set_eager("d", true, 2);
        assert!(!p.neighbours.contains_key("d"), "all eager: keep the tree");
    }
}
