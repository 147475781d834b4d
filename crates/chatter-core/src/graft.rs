//! The repair half of the broadcast tree: things announced to this node that the tree has not
//! delivered, and when to ask an announcer for them (a *graft*, which also makes the link to the
//! announcer eager). Shared by user messages (keyed by message id) and key/value state (keyed by
//! owner, wanting a watermark).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Announcers remembered per missing item.
const MAX_ANNOUNCERS: usize = 4;
/// Longest wait between two grafts for one missing item: retries back off exponentially from
/// the retry delay up to this, until the caller's give-up age has passed.
const MAX_GRAFT_BACKOFF: Duration = Duration::from_secs(8);

/// One announced item that has not arrived yet.
#[derive(Debug, Clone)]
pub(crate) struct Pending<W> {
    /// What is wanted: `()` for a message, a watermark for key/value state (the highest
    /// announced wins).
    pub(crate) want: W,
    pub(crate) announcers: VecDeque<(String, SocketAddr)>,
    pub(crate) graft_at: Instant,
    pub(crate) tries: u32,
    /// First announcement heard: grafting stops being useful some time after.
    pub(crate) first_heard: Instant,
}

/// Items announced but not delivered, by key, each with its announcers and its next graft time.
#[derive(Debug, Clone)]
pub(crate) struct GraftQueue<K, W = ()> {
    pending: BTreeMap<K, Pending<W>>,
}

impl<K, W> Default for GraftQueue<K, W> {
    fn default() -> Self {
        Self {
            pending: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, W: Ord + Copy> GraftQueue<K, W> {
    /// Remembers an announcement of `key` (wanting `want`) by `announcer`; the first
    /// announcement schedules a graft at `graft_at`. At most `max` items are remembered.
    pub(crate) fn announced(
        &mut self,
        key: K,
        want: W,
        announcer: (String, SocketAddr),
        graft_at: Instant,
        max: usize,
    ) {
        if let Some(p) = self.pending.get_mut(&key) {
            p.want = p.want.max(want);
            if p.announcers.len() < MAX_ANNOUNCERS
                && !p.announcers.iter().any(|a| a.1 == announcer.1)
            {
                p.announcers.push_back(announcer);
            }
            return;
        }
        if self.pending.len() >= max {
            return;
        }
        self.pending.insert(
            key,
            Pending {
                want,
                announcers: VecDeque::from([announcer]),
                graft_at,
                tries: 0,
                first_heard: graft_at,
            },
        );
    }

    /// What is wanted of `key`, if it was announced and has not arrived.
    pub(crate) fn want(&self, key: &K) -> Option<W> {
        self.pending.get(key).map(|p| p.want)
    }

    /// Whether a graft for `key` was sent and `addr` is one of its announcers: a reply from
    /// `addr` answers it.
    pub(crate) fn grafted_from(&self, key: &K, addr: SocketAddr) -> bool {
        self.pending
            .get(key)
            .is_some_and(|p| p.tries > 0 && p.announcers.iter().any(|a| a.1 == addr))
    }

    /// Forgets `key` (it arrived).
    pub(crate) fn remove(&mut self, key: &K) {
        self.pending.remove(key);
    }

    /// Items whose graft time has come: `(key, want, announcer to graft from)`. Each is
    /// rescheduled with the next announcer after `retry`, doubling up to 8 s, and dropped once
    /// `give_up_after` has passed since it was first announced. Under 20% loss a graft round
    /// trip fails about a third of the time; a fixed handful of tries left about 1 node in 60
    /// without a message for good.
    pub(crate) fn due(
        &mut self,
        now: Instant,
        retry: Duration,
        give_up_after: Duration,
    ) -> Vec<(K, W, (String, SocketAddr))> {
        let mut due = Vec::new();
        self.pending.retain(|key, p| {
            if now.duration_since(p.first_heard) >= give_up_after {
                return false;
            }
            if now < p.graft_at {
                return true;
            }
            let backoff = retry
                .saturating_mul(1 << p.tries.min(16))
                .min(MAX_GRAFT_BACKOFF.max(retry));
            p.tries += 1;
            p.graft_at = now + backoff;
            if let Some(a) = p.announcers.pop_front() {
                p.announcers.push_back(a.clone());
                due.push((key.clone(), p.want, a));
            }
            true
        });
        due
    }

    /// Earliest graft time.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.graft_at).min()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use super::*;

    #[test]
    fn grafts_rotate_announcers_back_off_and_give_up() {
        let mut q: GraftQueue<&str> = GraftQueue::default();
        let now = Instant::now();
        let (x, y): (SocketAddr, SocketAddr) =
            (([127, 0, 0, 1], 1).into(), ([127, 0, 0, 2], 1).into());
        q.announced("m", (), ("x".into(), x), now, 10);
        q.announced("m", (), ("y".into(), y), now, 10);
        q.announced("m", (), ("x".into(), x), now, 10);
        let (retry, give_up) = (Duration::from_millis(100), Duration::from_secs(60));
        let first = q.due(now, retry, give_up);
        assert_eq!(first[0].2 .0, "x");
        assert!(q.due(now, retry, give_up).is_empty(), "rescheduled");
        let second = q.due(now + retry, retry, give_up);
        assert_eq!(second[0].2 .0, "y");
        // Backs off: the third try is 200 ms after the second, not 100.
        assert!(q.due(now + retry * 2, retry, give_up).is_empty());
        assert_eq!(q.due(now + retry * 3, retry, give_up).len(), 1);
        // Keeps trying while announcers may still hold the item, then gives up.
        let mut t = now + retry * 3;
        let mut tries = 3;
        while t < now + give_up {
            t += Duration::from_secs(1);
            tries += q.due(t, retry, give_up).len();
        }
        assert!(tries >= 10, "{tries} tries in a minute");
        assert!(q.is_empty());
    }

    #[test]
    fn the_highest_announced_want_is_kept_and_the_queue_is_bounded() {
        let mut q: GraftQueue<&str, u64> = GraftQueue::default();
        let now = Instant::now();
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        q.announced("a", 5, ("x".into(), addr), now, 1);
        q.announced("a", 3, ("y".into(), addr), now, 1);
        q.announced("b", 9, ("x".into(), addr), now, 1);
        let due = q.due(now, Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(due.len(), 1, "the second key is over the bound");
        assert_eq!((due[0].0, due[0].1), ("a", 5));
    }
}
