//! Dissemination: the piggyback queues and the gossip rounds that drain them.
//!
//! Membership updates (and Plumtree's `IHave`) wait in the transmit-limited update queue; they
//! ride on every datagram this node sends and start a gossip round at once when they are news.
//! Key/value announcements (`StateHave`) wait in a queue of their own with their own transmit
//! limit and only ride along: they never cause a datagram. [`Dissemination`] owns both queues
//! and the round schedule; whom a round goes to is `Node`'s (`node.rs`, `gossip_round`).
//! Bounds: one entry per key in each queue (a member name, a message id, an owner), the keys
//! themselves bounded by the member table, Plumtree's cache and the replicas.

use std::time::Instant;

use crate::broadcast::BroadcastQueue;

/// The piggyback queues and the gossip schedule of one node.
#[derive(Debug, Default)]
pub(crate) struct Dissemination {
    /// Updates (membership, `IHave`), each sent up to its transmit limit.
    updates: BroadcastQueue,
    /// Key/value announcements, riding on datagrams sent anyway.
    announcements: BroadcastQueue,
    /// News was queued since the last gossip round.
    fresh: bool,
    /// When the next gossip round runs, if one is needed.
    next_round: Option<Instant>,
}

impl Dissemination {
    /// Queues an update (`bytes`, one encoded message) as the latest about `key`, to ride on
    /// datagrams sent anyway at most `limit` times.
    pub(crate) fn enqueue_lazy(&mut self, key: &str, bytes: Vec<u8>, limit: u32) {
        self.updates.push(key, bytes, limit);
    }

    /// Queues news about `key` and asks for a gossip round at `now`.
    pub(crate) fn enqueue_news(&mut self, now: Instant, key: &str, bytes: Vec<u8>, limit: u32) {
        self.updates.push(key, bytes, limit);
        self.fresh = true;
        self.wake(now);
    }

    /// Queues a key/value announcement about `key`, replacing the queued one.
    pub(crate) fn announce(&mut self, key: &str, bytes: Vec<u8>, limit: u32) {
        self.announcements.push(key, bytes, limit);
    }

    /// Asks for a gossip round no later than `now`.
    pub(crate) fn wake(&mut self, now: Instant) {
        self.next_round = Some(self.next_round.map_or(now, |t| t.min(now)));
    }

    /// Forgets the update queued about `key`.
    pub(crate) fn remove(&mut self, key: &str) {
        self.updates.remove(key);
    }

    /// Whether an update about `key` is still queued.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.updates.contains(key)
    }

    /// Updates queued.
    pub(crate) fn len(&self) -> usize {
        self.updates.len()
    }

    /// Whether no update is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// Fills `buf` up to `budget` with queued updates, then (if `announce`) announcements;
    /// returns how many were added.
    pub(crate) fn fill(&mut self, buf: &mut Vec<u8>, budget: usize, announce: bool) -> usize {
        let mut added = self.updates.fill(buf, budget);
        if announce {
            added += self.announcements.fill(buf, budget);
        }
        added
    }

    /// Fills `buf` with updates never sent (the broadcast tree's copies, which do not count
    /// against the transmit limit).
    pub(crate) fn fill_fresh(&mut self, buf: &mut Vec<u8>, budget: usize) -> usize {
        self.updates.fill_fresh(buf, budget)
    }

    /// Fills `buf` with queued updates and, if any went in, announcements: a gossip datagram,
    /// never one of announcements alone. Returns how many were added.
    pub(crate) fn fill_gossip(&mut self, buf: &mut Vec<u8>, budget: usize) -> usize {
        let added = self.updates.fill(buf, budget);
        if added == 0 {
            return 0;
        }
        added + self.announcements.fill(buf, budget)
    }

    /// Whether a gossip round is due.
    pub(crate) fn round_due(&self, now: Instant) -> bool {
        self.next_round.is_some_and(|t| now >= t)
    }

    /// Starts a gossip round: returns whether news was queued since the last one.
    pub(crate) fn begin_round(&mut self) -> bool {
        self.next_round = None;
        std::mem::take(&mut self.fresh)
    }

    /// Schedules the next gossip round at `at`.
    pub(crate) fn schedule_round(&mut self, at: Instant) {
        self.next_round = Some(at);
    }

    /// When the next gossip round runs.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next_round
    }
}
