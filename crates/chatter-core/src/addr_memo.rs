//! A bounded memo of recent dealings with peers: when each key (an address, or a name with its
//! address) was last noted, and a small value.
//!
//! Every such table fed by the network needs the same three rules, kept here once:
//! - **capacity**: at most `capacity` entries, whatever arrives;
//! - **expiry**: an entry older than `ttl` counts as absent ([`AddrMemo::get`]) and is the first
//!   to go when room is needed;
//! - **eviction order**: when the memo is full and nothing has expired, the entry noted longest
//!   ago goes (ties by key order), so a flood of new keys pushes out old ones and never the
//!   other way round.
//!
//! Each entry costs its key and value twice over (a B-tree map entry and an entry of the
//! eviction index) plus an `Instant`: about 100 bytes for an address key.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A bounded, expiring map from `K` to `V`, evicting the oldest entry when full.
#[derive(Debug, Clone)]
pub(crate) struct AddrMemo<K, V> {
    entries: BTreeMap<K, (Instant, V)>,
    /// `(noted at, key)`: the eviction order.
    order: BTreeSet<(Instant, K)>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Ord + Clone, V> AddrMemo<K, V> {
    /// An empty memo of at most `capacity` entries (at least one), each live for `ttl`.
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: BTreeMap::new(),
            order: BTreeSet::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Notes `key` with `value` at `now`, replacing an entry for the same key. When the memo is
    /// full, expired entries go first, then the oldest.
    pub(crate) fn insert(&mut self, now: Instant, key: K, value: V) {
        self.remove(&key);
        if self.entries.len() >= self.capacity {
            self.expire(now);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.order.insert((now, key.clone()));
        self.entries.insert(key, (now, value));
    }

    /// The value noted for `key` and when, if it has not expired at `now`.
    pub(crate) fn get(&self, now: Instant, key: &K) -> Option<(Instant, &V)> {
        self.entries
            .get(key)
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(at, v)| (*at, v))
    }

    /// Removes the entry for `key` and returns when it was noted and its value, expired or not.
    pub(crate) fn remove(&mut self, key: &K) -> Option<(Instant, V)> {
        let (at, value) = self.entries.remove(key)?;
        self.order.remove(&(at, key.clone()));
        Some((at, value))
    }

    /// Removes the entry for `key` if it has not expired at `now`, and returns its value.
    pub(crate) fn take(&mut self, now: Instant, key: &K) -> Option<V> {
        let (at, value) = self.remove(key)?;
        (now.saturating_duration_since(at) < self.ttl).then_some(value)
    }

    /// Drops every entry expired at `now`.
    fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.first().cloned() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            self.order.pop_first();
            self.entries.remove(&key);
        }
    }

    /// Entries held, expired ones included until they are dropped.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_time_to_live() {
        let t0 = Instant::now();
        let mut m: AddrMemo<u32, ()> = AddrMemo::new(4, Duration::from_secs(1));
        m.insert(t0, 1, ());
        assert!(m.get(t0 + Duration::from_millis(999), &1).is_some());
        assert!(m.get(t0 + Duration::from_secs(1), &1).is_none());
        assert!(m.take(t0 + Duration::from_secs(2), &1).is_none());
        assert_eq!(m.len(), 0, "taken, even expired");
    }

    #[test]
    fn a_full_memo_drops_expired_entries_then_the_oldest() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m: AddrMemo<u32, u32> = AddrMemo::new(3, s * 10);
        m.insert(t0, 9, 0);
        m.insert(t0 + s, 1, 0);
        m.insert(t0 + s * 2, 5, 0);
        // Full, nothing expired: the oldest (key 9) goes, not the smallest key.
        m.insert(t0 + s * 3, 7, 0);
        assert_eq!(m.len(), 3);
        assert!(m.get(t0 + s * 3, &9).is_none());
        assert!(m.get(t0 + s * 3, &1).is_some());
        // Noting a key again refreshes it: key 1 is now the newest.
        m.insert(t0 + s * 4, 1, 2);
        m.insert(t0 + s * 5, 8, 0);
        assert!(m.get(t0 + s * 5, &5).is_none());
        assert_eq!(m.get(t0 + s * 5, &1).map(|(_, v)| *v), Some(2));
        // Past the time to live, every old entry makes room at once.
        m.insert(t0 + s * 30, 2, 0);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_flood_of_keys_never_grows_the_memo_past_its_capacity() {
        let t0 = Instant::now();
        let mut m: AddrMemo<u32, ()> = AddrMemo::new(64, Duration::from_secs(60));
        for k in 0..10_000 {
            m.insert(t0, k, ());
            assert!(m.len() <= 64);
        }
        assert!(m.get(t0, &9_999).is_some(), "the newest is kept");
    }
}
