//! The state of anti-entropy: seeds and their retries, when the next exchange and the next
//! reconnect attempt are due, the early exchanges after a join, and the per-peer memos that keep
//! answers to a peer bounded (full answers at most once per interval, strangers owed the rest
//! of an answer, exchanges this node opened).
//!
//! [`AntiEntropy`] owns that state and its rules; what an exchange sends and merges is `Node`'s
//! (`sync.rs`), which asks it whom to contact and whether an answer is allowed. Bounds: the
//! seed list is the caller's; [`MAX_FULL_ANSWERS_REMEMBERED`], [`MAX_OWED_STATES`] and
//! [`MAX_SOLICITED`] entries in the memos (about 100 bytes each, see `addr_memo.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::addr_memo::AddrMemo;
use crate::config::Config;

/// A seed address and the state of our attempts to reach it.
#[derive(Debug, Clone)]
struct SeedState {
    addr: SocketAddr,
    answered: bool,
    next_attempt: Instant,
    backoff: Duration,
}

/// The kinds of answer that send a whole table, rate-limited per peer. Key/value deltas are
/// bounded per request instead (`Config::max_delta_packets`, and a stranger's allowance): a
/// member repairing several owners asks for each with a one-row digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FullAnswer {
    /// The member table (`SyncState`).
    Members,
    /// The key/value digest (`StateDigest`).
    StateDigest,
}

/// Peers whose last full-state answer is remembered, by kind (under 128 KiB); entries expire
/// after `Config::probe_interval`, the rate limit's interval.
const MAX_FULL_ANSWERS_REMEMBERED: usize = 1024;

/// Strangers remembered as owed the rest of the member table; entries expire after
/// `Config::sync_interval`, when the stranger has most likely asked again. A seed of a fleet
/// started at once owes every joiner before it has checked any of them: at 256, a burst of
/// 500 joiners evicted half of them before they were paid, and those waited for the second
/// early exchange (3 s instead of 0.1 s to agree). 1,024 entries of about 48 bytes: 48 KiB.
const MAX_OWED_STATES: usize = 1024;

/// Addresses this node opened an exchange with, remembered; entries expire after two probe
/// intervals, long enough for the answers to arrive.
const MAX_SOLICITED: usize = 64;

/// Seeds, exchange timers and the per-peer answer memos of one node.
#[derive(Debug)]
pub(crate) struct AntiEntropy {
    seeds: Vec<SeedState>,
    next_sync: Instant,
    /// Early anti-entropy exchanges still to start (`Config::join_syncs`).
    join_syncs_left: u32,
    next_reconnect: Instant,
    /// Strangers that asked for the member table and got only the part their request paid
    /// for, with whether their key/value state differed: they get the rest, and the key/value
    /// digest, once admitted.
    owed: AddrMemo<SocketAddr, bool>,
    /// When each peer last got a full-state answer, by kind.
    full_answers: AddrMemo<(SocketAddr, FullAnswer), ()>,
    /// Addresses this node sent a padded `SyncRequest` to.
    solicited: AddrMemo<SocketAddr, ()>,
}

impl AntiEntropy {
    /// Timers of a node started at `now`: the first exchange one probe interval later while
    /// early exchanges are to come, else spread at random over the second half of a period.
    pub(crate) fn new(now: Instant, config: &Config, rng: &mut ChaCha8Rng) -> Self {
        let next_sync = if config.join_syncs > 0 {
            now + config.probe_interval
        } else {
            now + config.sync_interval / 2
                + (config.sync_interval / 2).mul_f64(rng.random_range(0.0..1.0))
        };
        Self {
            seeds: Vec::new(),
            next_sync,
            join_syncs_left: config.join_syncs,
            next_reconnect: now + config.reconnect_interval,
            owed: AddrMemo::new(MAX_OWED_STATES, config.sync_interval),
            full_answers: AddrMemo::new(MAX_FULL_ANSWERS_REMEMBERED, config.probe_interval),
            solicited: AddrMemo::new(MAX_SOLICITED, config.probe_interval * 2),
        }
    }

    /// Replaces the seed list (`own` and duplicates ignored); returns the seeds not known
    /// before, to contact at once.
    pub(crate) fn set_seeds(
        &mut self,
        now: Instant,
        seeds: Vec<SocketAddr>,
        own: SocketAddr,
        config: &Config,
    ) -> Vec<SocketAddr> {
        let mut fresh = Vec::new();
        let mut next: Vec<SeedState> = Vec::with_capacity(seeds.len());
        for addr in seeds {
            if addr == own || next.iter().any(|s| s.addr == addr) {
                continue;
            }
            match self.seeds.iter().find(|s| s.addr == addr) {
                Some(known) => next.push(known.clone()),
                None => {
                    fresh.push(addr);
                    next.push(SeedState {
                        addr,
                        answered: false,
                        next_attempt: now + config.join_retry_initial,
                        backoff: config.join_retry_initial,
                    });
                }
            }
        }
        self.seeds = next;
        fresh
    }

    /// A datagram came from `from`: if it is a seed, the seed answered.
    pub(crate) fn note_datagram_from(&mut self, from: SocketAddr) {
        if let Some(seed) = self.seeds.iter_mut().find(|s| s.addr == from) {
            seed.answered = true;
        }
    }

    /// Seeds whose retry is due, each rescheduled with its backoff doubled up to `max`.
    pub(crate) fn due_seeds(&mut self, now: Instant, max: Duration) -> Vec<SocketAddr> {
        self.seeds
            .iter_mut()
            .filter(|s| now >= s.next_attempt)
            .map(|s| {
                // Once the cluster is lost, even an answered seed is worth retrying.
                s.answered = false;
                s.backoff = (s.backoff * 2).min(max);
                s.next_attempt = now + s.backoff;
                s.addr
            })
            .collect()
    }

    /// Every seed address.
    pub(crate) fn seed_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.seeds.iter().map(|s| s.addr)
    }

    /// The earliest of this part's deadlines; seed retries count only while `alone` (no live
    /// member known).
    pub(crate) fn next_deadline(&self, alone: bool) -> Instant {
        let seeds = self
            .seeds
            .iter()
            .filter(|s| alone && !s.answered)
            .map(|s| s.next_attempt);
        seeds
            .chain([self.next_reconnect])
            .fold(self.next_sync, Instant::min)
    }

    /// Whether the next exchange is due.
    pub(crate) fn sync_due(&self, now: Instant) -> bool {
        now >= self.next_sync
    }

    /// Whether the next reconnect attempt is due.
    pub(crate) fn reconnect_due(&self, now: Instant) -> bool {
        now >= self.next_reconnect
    }

    /// Whether early exchanges after a join are still to come.
    pub(crate) fn is_joining(&self) -> bool {
        self.join_syncs_left > 0
    }

    /// Schedules the exchange after the one starting now (`target` says whether it has a
    /// peer): early ones a doubling interval apart while they last (waiting for the first live
    /// member), then every `sync_interval` with up to 20% jitter.
    pub(crate) fn schedule_sync(
        &mut self,
        now: Instant,
        target: bool,
        leaving: bool,
        config: &Config,
        rng: &mut ChaCha8Rng,
    ) {
        self.next_sync = if self.join_syncs_left == 0 || leaving {
            let jitter = config.sync_interval.mul_f64(rng.random_range(0.0..0.2));
            now + config.sync_interval + jitter
        } else if !target {
            // Not joined yet: the early exchanges wait for the first live member.
            now + config.probe_interval
        } else {
            self.join_syncs_left -= 1;
            let done = config.join_syncs - self.join_syncs_left;
            if self.join_syncs_left == 0 {
                now + config.sync_interval
            } else {
                now + config.probe_interval * 2u32.saturating_pow(done.min(16))
            }
        };
    }

    /// Schedules the next reconnect attempt.
    pub(crate) fn schedule_reconnect(&mut self, now: Instant, config: &Config) {
        self.next_reconnect = now + config.reconnect_interval;
    }

    /// Remembers that this node opened an exchange with `dst`.
    pub(crate) fn solicit(&mut self, now: Instant, dst: SocketAddr) {
        self.solicited.insert(now, dst, ());
    }

    /// Whether this node opened an exchange with `from` recently: its answers are not a
    /// stranger's.
    pub(crate) fn is_solicited(&self, now: Instant, from: SocketAddr) -> bool {
        self.solicited.get(now, &from).is_some()
    }

    /// Remembers that `dst`, a stranger, got only part of the table (`digest`: and its
    /// key/value state differed).
    pub(crate) fn owe(&mut self, now: Instant, dst: SocketAddr, digest: bool) {
        self.owed.insert(now, dst, digest);
    }

    /// Whether `addr` is owed the rest of an answer it asked for recently, and whether the
    /// key/value digest with it; the debt is settled either way.
    pub(crate) fn take_owed(&mut self, now: Instant, addr: SocketAddr) -> Option<bool> {
        self.owed.take(now, &addr)
    }

    /// Whether `dst` may get a full-state answer of this kind now: at most one per peer per
    /// `Config::probe_interval`, which honest peers never need more often (they open an
    /// exchange once per `sync_interval`, or at the early join exchanges a second apart).
    pub(crate) fn allow_full_answer(
        &mut self,
        now: Instant,
        dst: SocketAddr,
        kind: FullAnswer,
    ) -> bool {
        if self.full_answers.get(now, &(dst, kind)).is_some() {
            return false;
        }
        self.full_answers.insert(now, (dst, kind), ());
        true
    }
}
