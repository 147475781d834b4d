//! Replay protection: per sender epoch, a sliding window over the counters already opened.
//!
//! Each epoch (one sender life) has the highest counter opened and a bitmap of the [`WINDOW`]
//! counters at and below it, indexed by counter modulo its width (RFC 6479 / IPsec style): a
//! counter above the highest opens and slides the window, one inside the window opens once, one
//! below it is refused. A sender numbers all its datagrams with one counter, whoever they go
//! to, and a receiver sees only its share: two datagrams to one receiver can be far apart in
//! counters (a node pushing a hundred datagrams to its tree neighbours at once puts about a
//! hundred counters between two to the same peer), so the window is 256 wide rather than the
//! 64 of IPsec, where one counter serves one peer. Reordered beyond that, a datagram is refused
//! as too old, as a lost one would be.
//!
//! The table of epochs is bounded ([`MAX_EPOCHS`] by default) and evicts the least recently
//! opened epoch. It never iterates in hash order and uses no clock.

use std::collections::BTreeMap;

/// Default bound on the epochs (sender lives) whose windows an [`Opener`](crate::Opener) keeps.
///
/// At the bound the table holds 4,096 windows of 56 bytes (224 KiB) in one vector plus a B-tree
/// index from epoch to window (12 bytes of payload per epoch): about 77 bytes per epoch in all,
/// as measured by the `memory` integration test (which asserts under 384 KiB).
///
/// Consequence of eviction: once an epoch is evicted, its datagrams are judged against a fresh
/// window, so one captured datagram of a sender life that stayed silent (towards this receiver)
/// while 4,096 other lives spoke can be replayed once. Such a datagram is old news from an old
/// life: the protocol's precedence rules (generation, incarnation, versions) make it change
/// nothing that newer messages have already settled.
pub const MAX_EPOCHS: usize = 4_096;

/// Width of the window in counters.
pub const WINDOW: u64 = 256;

/// Words of the bitmap.
const WORDS: usize = (WINDOW / 64) as usize;

const NIL: u32 = u32::MAX;

/// Why a counter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Already opened.
    Replayed,
    /// Below the window.
    TooOld,
}

/// The window of one epoch, in a slot of the LRU list.
#[derive(Debug, Clone, Copy)]
struct Slot {
    epoch: u64,
    highest: u64,
    /// Bit `c % WINDOW` is set when counter `c`, within the window, has been opened.
    seen: [u64; WORDS],
    /// Towards the most recently opened epoch.
    prev: u32,
    /// Towards the least recently opened epoch.
    next: u32,
}

impl Slot {
    fn fresh(epoch: u64, counter: u64) -> Slot {
        let mut slot = Slot {
            epoch,
            highest: counter,
            seen: [0; WORDS],
            prev: NIL,
            next: NIL,
        };
        slot.set(counter);
        slot
    }

    fn bit(counter: u64) -> (usize, u64) {
        let at = counter % WINDOW;
        ((at / 64) as usize, 1u64 << (at % 64))
    }

    fn is_set(&self, counter: u64) -> bool {
        let (word, mask) = Slot::bit(counter);
        self.seen.get(word).is_some_and(|w| w & mask != 0)
    }

    fn set(&mut self, counter: u64) {
        let (word, mask) = Slot::bit(counter);
        if let Some(w) = self.seen.get_mut(word) {
            *w |= mask;
        }
    }

    fn clear(&mut self, counter: u64) {
        let (word, mask) = Slot::bit(counter);
        if let Some(w) = self.seen.get_mut(word) {
            *w &= !mask;
        }
    }

    fn check(&self, counter: u64) -> Result<(), Refusal> {
        if counter > self.highest {
            return Ok(());
        }
        if self.highest - counter >= WINDOW {
            return Err(Refusal::TooOld);
        }
        if self.is_set(counter) {
            return Err(Refusal::Replayed);
        }
        Ok(())
    }

    /// Marks `counter` as opened; [`Slot::check`] has accepted it.
    fn accept(&mut self, counter: u64) {
        if counter > self.highest {
            if counter - self.highest >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                // The positions of the counters the window slides over held counters that
                // are now below it. At most WINDOW - 1 of them; one in the common case.
                for passed in self.highest + 1..counter {
                    self.clear(passed);
                }
                self.clear(counter);
            }
            self.highest = counter;
            self.set(counter);
        } else if self.highest - counter < WINDOW {
            self.set(counter);
        }
    }
}

/// The bounded table of windows, least recently opened evicted first.
#[derive(Debug, Clone)]
pub(crate) struct ReplayTable {
    capacity: usize,
    index: BTreeMap<u64, u32>,
    slots: Vec<Slot>,
    /// Most recently opened.
    head: u32,
    /// Least recently opened: the next to go.
    tail: u32,
}

impl ReplayTable {
    /// A table of at most `capacity` epochs (at least 1, at most `u32::MAX - 1`).
    pub(crate) fn new(capacity: usize) -> ReplayTable {
        ReplayTable {
            capacity: capacity.clamp(1, (NIL - 1) as usize),
            index: BTreeMap::new(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `counter` of `epoch` may be opened. Changes nothing.
    pub(crate) fn check(&self, epoch: u64, counter: u64) -> Result<(), Refusal> {
        match self.slot(epoch) {
            Some(slot) => slot.check(counter),
            None => Ok(()),
        }
    }

    fn slot(&self, epoch: u64) -> Option<&Slot> {
        let &i = self.index.get(&epoch)?;
        self.slots.get(i as usize)
    }

    /// Records that `counter` of `epoch` was opened (after [`ReplayTable::check`] accepted it and
    /// the tag verified), making `epoch` the most recently opened.
    pub(crate) fn accept(&mut self, epoch: u64, counter: u64) {
        if let Some(&i) = self.index.get(&epoch) {
            if let Some(slot) = self.slots.get_mut(i as usize) {
                slot.accept(counter);
            }
            self.unlink(i);
            self.push_front(i);
            return;
        }
        let fresh = Slot::fresh(epoch, counter);
        let i = if self.slots.len() < self.capacity {
            self.slots.push(fresh);
            // Fits: capacity is at most NIL - 1.
            (self.slots.len() - 1) as u32
        } else {
            let victim = self.tail;
            self.unlink(victim);
            if let Some(slot) = self.slots.get_mut(victim as usize) {
                self.index.remove(&slot.epoch);
                *slot = fresh;
            }
            victim
        };
        self.index.insert(epoch, i);
        self.push_front(i);
    }

    fn unlink(&mut self, i: u32) {
        let Some(&Slot { prev, next, .. }) = self.slots.get(i as usize) else {
            return;
        };
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
        if let Some(slot) = self.slots.get_mut(i as usize) {
            slot.prev = NIL;
            slot.next = NIL;
        }
    }

    fn push_front(&mut self, i: u32) {
        let old_head = self.head;
        if let Some(slot) = self.slots.get_mut(i as usize) {
            slot.prev = NIL;
            slot.next = old_head;
        }
        match self.slots.get_mut(old_head as usize) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    /// Epochs from most to least recently opened (tests only).
    #[cfg(test)]
    fn order(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let mut i = self.head;
        while let Some(slot) = self.slots.get(i as usize) {
            out.push(slot.epoch);
            i = slot.next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(table: &mut ReplayTable, epoch: u64, counter: u64) -> Result<(), Refusal> {
        table.check(epoch, counter)?;
        table.accept(epoch, counter);
        Ok(())
    }

    #[test]
    fn each_counter_opens_once_and_reordering_within_the_window_is_accepted() {
        let mut t = ReplayTable::new(8);
        assert_eq!(open(&mut t, 1, 10), Ok(()));
        assert_eq!(open(&mut t, 1, 10), Err(Refusal::Replayed));
        assert_eq!(open(&mut t, 1, 12), Ok(()));
        assert_eq!(open(&mut t, 1, 11), Ok(()));
        assert_eq!(open(&mut t, 1, 11), Err(Refusal::Replayed));
        // Below the first counter seen but inside the window: a late datagram, accepted once.
        assert_eq!(open(&mut t, 1, 5), Ok(()));
        assert_eq!(open(&mut t, 1, 5), Err(Refusal::Replayed));
        assert_eq!(open(&mut t, 1, 12 + WINDOW), Ok(()));
        assert_eq!(open(&mut t, 1, 13), Ok(()));
        assert_eq!(open(&mut t, 1, 12), Err(Refusal::TooOld));
        assert_eq!(open(&mut t, 1, 0), Err(Refusal::TooOld));
    }

    #[test]
    fn a_jump_past_the_window_clears_it() {
        let mut t = ReplayTable::new(8);
        for c in 0..WINDOW {
            open(&mut t, 7, c).unwrap();
        }
        open(&mut t, 7, u64::MAX).unwrap();
        assert_eq!(open(&mut t, 7, u64::MAX), Err(Refusal::Replayed));
        assert_eq!(open(&mut t, 7, u64::MAX - 1), Ok(()));
        assert_eq!(open(&mut t, 7, u64::MAX - WINDOW), Err(Refusal::TooOld));
    }

    #[test]
    fn evicts_the_least_recently_opened_epoch() {
        let mut t = ReplayTable::new(3);
        open(&mut t, 1, 0).unwrap();
        open(&mut t, 2, 0).unwrap();
        open(&mut t, 3, 0).unwrap();
        open(&mut t, 1, 1).unwrap(); // 1 is now the most recent, 2 the least
        assert_eq!(t.order(), [1, 3, 2]);
        open(&mut t, 4, 0).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.order(), [4, 1, 3]);
        // Epoch 2 was forgotten: its counter 0 opens once more (the documented consequence).
        assert_eq!(open(&mut t, 2, 0), Ok(()));
        assert_eq!(t.order(), [2, 4, 1]);
        assert_eq!(open(&mut t, 1, 1), Err(Refusal::Replayed));
    }

    #[test]
    fn a_table_of_one_keeps_working() {
        let mut t = ReplayTable::new(0);
        assert_eq!(t.capacity(), 1);
        for e in 0..10 {
            open(&mut t, e, 0).unwrap();
            assert_eq!(open(&mut t, e, 0), Err(Refusal::Replayed));
            assert_eq!(t.len(), 1);
        }
    }

    proptest::proptest! {
        /// The window agrees with a model that remembers every counter ever opened: a counter
        /// opens when it is above the highest, or within the window and never opened before.
        #[test]
        fn the_window_agrees_with_a_model_that_forgets_nothing(
            steps in proptest::collection::vec((0u64..3, 0u64..600), 1..400),
        ) {
            let mut t = ReplayTable::new(8);
            let mut opened = std::collections::BTreeSet::new();
            let mut highest: Option<u64> = None;
            let mut base = 1_000u64;
            for (jump, offset) in steps {
                // Mostly near the top, sometimes far ahead.
                base += jump * 300;
                let counter = base.saturating_sub(offset);
                let expected = match highest {
                    None => Ok(()),
                    Some(h) if counter > h => Ok(()),
                    Some(h) if h - counter >= WINDOW => Err(Refusal::TooOld),
                    Some(_) if opened.contains(&counter) => Err(Refusal::Replayed),
                    Some(_) => Ok(()),
                };
                proptest::prop_assert_eq!(open(&mut t, 9, counter), expected, "counter {}", counter);
                if expected.is_ok() {
                    opened.insert(counter);
                    highest = Some(highest.map_or(counter, |h| h.max(counter)));
                }
            }
        }
    }
}
