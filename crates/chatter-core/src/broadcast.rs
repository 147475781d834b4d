//! The transmit-limited queue of updates piggybacked on outgoing datagrams.
//!
//! One entry per member (a newer update about a member replaces the older one); each entry is
//! sent at most its own `limit` times; datagrams are filled with the least-sent entries first (newest
//! first among equals), so fresh news spreads before old news is repeated.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    transmits: u32,
    limit: u32,
    bytes: Vec<u8>,
}

/// Queue of encoded updates waiting to be piggybacked.
#[derive(Debug, Default, Clone)]
pub(crate) struct BroadcastQueue {
    entries: BTreeMap<String, Entry>,
    /// (transmits so far, newest first) -> member name.
    order: BTreeSet<(u32, Reverse<u64>, String)>,
    next_id: u64,
}

/// Entries skipped for being too large before a fill gives up on the remaining space.
const MAX_SKIPS: usize = 16;

impl BroadcastQueue {
    /// Queues `bytes` (one encoded message) as the latest update about `key`, to be sent at
    /// most `limit` times.
    pub(crate) fn push(&mut self, key: &str, bytes: Vec<u8>, limit: u32) {
        self.remove(key);
        let id = self.next_id;
        self.next_id += 1;
        self.order.insert((0, Reverse(id), key.to_owned()));
        self.entries.insert(
            key.to_owned(),
            Entry {
                id,
                transmits: 0,
                limit: limit.max(1),
                bytes,
            },
        );
    }

    pub(crate) fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.order
                .remove(&(old.transmits, Reverse(old.id), key.to_owned()));
        }
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the updates never sent yet that fit within `budget` bytes, without counting a
    /// transmission: for the extra copies a gossip round sends along the broadcast tree, so
    /// that they speed fresh news up without using up the random transmissions that make
    /// epidemic dissemination reach every member. Returns how many were added.
    pub(crate) fn fill_fresh(&self, buf: &mut Vec<u8>, budget: usize) -> usize {
        let mut added = 0;
        for (transmits, _, key) in self.order.iter() {
            if *transmits > 0 || budget.saturating_sub(buf.len()) < 4 {
                break;
            }
            if let Some(entry) = self.entries.get(key) {
                if entry.bytes.len() <= budget.saturating_sub(buf.len()) {
                    buf.extend_from_slice(&entry.bytes);
                    added += 1;
                }
            }
        }
        added
    }

    /// Appends as many queued updates to `buf` as fit within `budget` bytes, counts a
    /// transmission for each and drops those sent their limit of times. Returns how many were
    /// added.
    pub(crate) fn fill(&mut self, buf: &mut Vec<u8>, budget: usize) -> usize {
        let mut used = Vec::new();
        let mut skips = 0;
        for (_, _, key) in self.order.iter() {
            let room = budget.saturating_sub(buf.len());
            if room < 4 {
                break;
            }
            let Some(entry) = self.entries.get(key) else {
                continue;
            };
            if entry.bytes.len() <= room {
                buf.extend_from_slice(&entry.bytes);
                used.push(key.clone());
            } else {
                skips += 1;
                if skips >= MAX_SKIPS {
                    break;
                }
            }
        }
        for key in &used {
            if let Some(entry) = self.entries.get_mut(key) {
                self.order
                    .remove(&(entry.transmits, Reverse(entry.id), key.clone()));
                entry.transmits += 1;
                if entry.transmits >= entry.limit {
                    self.entries.remove(key);
                } else {
                    self.order
                        .insert((entry.transmits, Reverse(entry.id), key.clone()));
                }
            }
        }
        used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_update_replaces_older_and_fresh_news_goes_first() {
        let mut q = BroadcastQueue::default();
        q.push("a", vec![1; 10], 5);
        q.push("b", vec![2; 10], 5);
        q.push("a", vec![3; 10], 5);
        assert_eq!(q.len(), 2);
        let mut buf = Vec::new();
        assert_eq!(q.fill(&mut buf, 10), 1);
        assert_eq!(buf, vec![3; 10], "newest first");
        let mut buf = Vec::new();
        q.fill(&mut buf, 10);
        assert_eq!(buf, vec![2; 10], "then the least sent");
    }

    #[test]
    fn fresh_copies_are_not_counted_and_stop_at_the_first_sent_entry() {
        let mut q = BroadcastQueue::default();
        q.push("old", vec![1; 4], 5);
        let mut buf = Vec::new();
        q.fill(&mut buf, 100);
        q.push("new", vec![2; 4], 5);
        for _ in 0..3 {
            let mut buf = Vec::new();
            assert_eq!(q.fill_fresh(&mut buf, 100), 1);
            assert_eq!(buf, vec![2; 4]);
        }
        // Still unsent: the next counted fill takes it first.
        let mut buf = Vec::new();
        assert_eq!(q.fill(&mut buf, 4), 1);
        assert_eq!(buf, vec![2; 4]);
        let mut buf = Vec::new();
        assert_eq!(q.fill_fresh(&mut buf, 100), 0);
    }

    #[test]
    fn entries_retire_after_their_transmit_limit() {
        let mut q = BroadcastQueue::default();
        q.push("a", vec![1; 4], 3);
        for _ in 0..3 {
            let mut buf = Vec::new();
            assert_eq!(q.fill(&mut buf, 100), 1);
        }
        assert!(q.is_empty());
        let mut buf = Vec::new();
        assert_eq!(q.fill(&mut buf, 100), 0);
    }

    #[test]
    fn fill_respects_the_budget_and_skips_too_large_entries() {
        let mut q = BroadcastQueue::default();
        q.push("small", vec![1; 8], 5);
        q.push("big", vec![2; 50], 5);
        let mut buf = vec![0; 20];
        assert_eq!(q.fill(&mut buf, 30), 1);
        assert_eq!(buf.len(), 28);
        assert!(q.contains("big"));
    }
}
