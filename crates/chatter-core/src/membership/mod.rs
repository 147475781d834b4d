//! Membership: the member table, the running suspicions, Lifeguard's local health and the
//! conflicts already reported, with the precedence rules that decide what each update does.
//!
//! A member's life is `(name, generation)`; within a life, a higher incarnation wins, and at
//! equal incarnation `Left > Failed > Suspect > Alive`. A newer generation replaces a previous
//! life at the same address, or at another address once the previous life is failed or left
//! (a newer life of a *live* member must first prove itself, `lives.rs`); two live lives
//! claiming one name are a conflict, reported once and not merged. Only the member itself
//! raises its incarnation, to refute a suspicion (SWIM) or publish new tags.
//!
//! [`Membership`] applies those rules to its own state and returns what happened; `Node`
//! (`updates.rs`) does the sending, the events and the counting. This node's own record
//! (`Node::me`) is not in the table: rules about it take it as an argument.
//!
//! Bounds (`docs/SECURITY.md`): the table holds at most `Config::max_members` rows, each with
//! evidence lists of at most 16 entries (`accusations.rs`); one suspicion per suspect member;
//! at most `MAX_CONFLICTS_REMEMBERED` conflicts remembered.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use tracing::{debug, info};

use crate::awareness::Awareness;
use crate::config::Config;
use crate::limits::{MAX_GENERATION, MAX_INCARNATION};
use crate::member::{Conflict, Member, MemberStatus};
use crate::suspicion::Suspicion;
use crate::table::{Row, Stamp, Table};
use crate::wire;

mod accusations;

/// Conflicting claims remembered, so each is reported once.
const MAX_CONFLICTS_REMEMBERED: usize = 64;

pub(crate) use accusations::{AfterProbe, FailedOutcome, Findings, HostSilent, SuspectOutcome};

/// What an `Alive` about another member did.
#[derive(Debug)]
pub(crate) enum AliveOutcome {
    /// Nothing: an older life or incarnation.
    Stale,
    /// A member never heard of, and the table is full.
    TableFull,
    /// A member never heard of (`None`), or a newer life of a live member (its address and
    /// generation): the life must answer a check before the table takes it.
    Check(Option<(SocketAddr, u64)>),
    /// A newer life of a failed or left member, entered in the table.
    Restarted(Member),
    /// Another address within a known life: forged, dropped.
    AddressChanged,
    /// A higher incarnation of the known life: the member as it now is, its status before,
    /// and whether its address or tags changed.
    Refreshed {
        /// The member after the update.
        member: Option<Member>,
        /// Its status before.
        previous: MemberStatus,
        /// Whether its address or tags changed.
        changed: bool,
        /// It came back in the same life after this node listed it failed or found its host
        /// silent: a flap (`flap_damping.rs`), to be noted with [`Membership::note_flap`].
        /// (A damped member back from any suspicion is a flap too; `Node` adds that.)
        flapped: bool,
    },
}

/// How this node's own record moves past an accusation or a stale claim of its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Raise {
    /// The next incarnation of this life.
    Incarnation(u64),
    /// The incarnations are used up: begin a new life, with this generation.
    NewLife(u64),
    /// Both counters are at their limits: stay as is.
    Stuck,
}

/// What an `Alive` claiming this node's own name asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelfClaim {
    /// Nothing to do.
    Ignore,
    /// Someone holds a newer incarnation of this very life: raise above this one.
    Outbid(u64),
    /// A previous life of this node is still gossiped: announce this one (unless it is on
    /// its way already).
    Reannounce,
    /// A newer life under this name, at this address: another process claims the name.
    Conflict,
}

/// The member table, running suspicions, Lifeguard's local health and conflicts seen.
#[derive(Debug)]
pub(crate) struct Membership {
    table: Table,
    /// One running suspicion timer per suspect member (bounded by the table).
    suspicions: BTreeMap<String, Suspicion>,
    awareness: Awareness,
    /// Conflicting claims already reported, at most `MAX_CONFLICTS_REMEMBERED`.
    conflicts_seen: BTreeSet<(String, SocketAddr, u64)>,
}

impl Membership {
    /// An empty table whose stamps count from `now`.
    pub(crate) fn new(now: Instant, awareness_max: u32) -> Self {
        Self {
            table: Table::new(now),
            suspicions: BTreeMap::new(),
            awareness: Awareness::new(awareness_max),
            conflicts_seen: BTreeSet::new(),
        }
    }

    // ---- reading ----

    /// The member table, read-only.
    pub(crate) fn table(&self) -> &Table {
        &self.table
    }

    /// Every member in the table, tombstones included, ordered by name, each built on demand.
    pub(crate) fn members(&self) -> impl Iterator<Item = Member> + '_ {
        self.table
            .sorted()
            .into_iter()
            .map(|r| self.table.to_member(r))
    }

    /// The member called `name`, built on demand.
    pub(crate) fn member(&self, name: &str) -> Option<Member> {
        self.table.member(name)
    }

    /// Fingerprint of the table (this node's own row not included).
    pub(crate) fn fingerprint(&self) -> u64 {
        self.table.fingerprint()
    }

    /// The row of the member called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Row> {
        self.table.get(name)
    }

    /// The live member at `addr`.
    pub(crate) fn live_at(&self, addr: SocketAddr) -> Option<&Row> {
        self.table.live_at(addr)
    }

    /// Other members alive or suspect.
    pub(crate) fn live(&self) -> usize {
        self.table.live()
    }

    /// Rows in the table, tombstones included.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Every row, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Row> {
        self.table.iter()
    }

    /// `now` as the table's compact time stamp.
    pub(crate) fn stamp(&self, now: Instant) -> Stamp {
        self.table.stamp(now)
    }

    /// Lifeguard local health score.
    pub(crate) fn health_score(&self) -> u32 {
        self.awareness.score()
    }

    /// `d` stretched by the local health score.
    pub(crate) fn scale(&self, d: Duration) -> Duration {
        self.awareness.scale(d)
    }

    /// Running suspicions.
    pub(crate) fn num_suspicions(&self) -> usize {
        self.suspicions.len()
    }

    /// The earliest suspicion deadline.
    pub(crate) fn next_suspicion_deadline(&self) -> Option<Instant> {
        self.suspicions.values().map(Suspicion::deadline).min()
    }

    // ---- table upkeep ----

    /// Enters members known to be alive (see `Node::preload_members`); returns how many the
    /// `limit` left out.
    pub(crate) fn preload<'a, R: Rng>(
        &mut self,
        now: Instant,
        members: impl Iterator<Item = (&'a str, SocketAddr, u64)>,
        limit: usize,
        rng: &mut R,
    ) -> usize {
        self.table.reserve(members.size_hint().0);
        self.table.insert_new_alive(members, now, limit, rng)
    }

    /// The next member to probe (round-robin over a shuffled order).
    pub(crate) fn next_probe<R: Rng>(&mut self, rng: &mut R) -> Option<String> {
        self.table.next_probe(rng).map(String::from)
    }

    /// Lifeguard: `delta` to the local health score (-1 for an ack, +1 per missing nack).
    pub(crate) fn note_health(&mut self, delta: i64) {
        self.awareness.apply(delta);
    }

    /// A probe of `name`'s life `generation` was acked: it was heard from now, and `rtt` is a
    /// true round trip if the target answered the direct ping.
    pub(crate) fn note_ack(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        rtt: Option<Duration>,
    ) {
        let at = self.table.stamp(now);
        self.table.update(name, |m| {
            if m.generation == generation {
                m.last_update = at;
                if let Some(rtt) = rtt {
                    m.set_rtt(rtt);
                }
            }
        });
    }

    /// Failed and left members whose retention has passed, to be reaped.
    pub(crate) fn expired(&self, now: Instant, config: &Config) -> Vec<String> {
        let now_stamp = self.table.stamp(now);
        self.table
            .iter()
            .filter(|m| match m.status {
                MemberStatus::Failed => now_stamp.since(m.status_since) >= config.failed_retention,
                MemberStatus::Left => now_stamp.since(m.status_since) >= config.left_retention,
                _ => false,
            })
            .map(|m| m.name.to_string())
            .collect()
    }

    /// Removes a member from the table.
    pub(crate) fn reap(&mut self, name: &str) -> Option<Member> {
        self.table.remove(name)
    }

    /// Drops every running suspicion: this node is leaving and gives no more verdicts.
    pub(crate) fn clear_suspicions(&mut self) {
        self.suspicions.clear();
    }

    /// Drops the suspicion of `name`: a new life of it is about to be admitted.
    pub(crate) fn forget_suspicion(&mut self, name: &str) {
        self.suspicions.remove(name);
    }

    /// Enters a new member, or a new life of a known one.
    pub(crate) fn admit<R: Rng>(
        &mut self,
        now: Instant,
        alive: &wire::Alive,
        rng: &mut R,
    ) -> Member {
        let member = Member::new(
            alive.name.clone(),
            alive.addr,
            alive.generation,
            alive.incarnation,
            alive.tags.clone(),
            now,
        );
        self.table.insert(&member, rng);
        member
    }

    /// Records a second live process claiming `name` (with `other_addr`, `other_generation`):
    /// returns the conflict if it is new (each is reported once), marking the member's row
    /// unless `name` is this node's own.
    pub(crate) fn note_conflict(
        &mut self,
        now: Instant,
        me: &str,
        name: &str,
        other_addr: SocketAddr,
        other_generation: u64,
    ) -> Option<Conflict> {
        let key = (name.to_owned(), other_addr, other_generation);
        if self.conflicts_seen.contains(&key) {
            return None;
        }
        if self.conflicts_seen.len() >= MAX_CONFLICTS_REMEMBERED {
            self.conflicts_seen.pop_first();
        }
        self.conflicts_seen.insert(key);
        let conflict = Conflict {
            name: name.to_owned(),
            other_addr,
            other_generation,
            seen_at: now,
        };
        if name != me {
            self.table
                .update(name, |m| m.set_conflict(conflict.clone()));
        }
        Some(conflict)
    }

    // ---- rules about this node's own life ----

    /// What an `Alive` with this node's name asks of it; `leaving` nodes never outbid.
    pub(crate) fn judge_self_claim(me: &Member, leaving: bool, alive: &wire::Alive) -> SelfClaim {
        if alive.generation == me.generation {
            // Someone holds a newer incarnation of this very life than we do (a forged or
            // corrupted update, maybe with another address): move past it so our own view
            // wins again. Others never take another address within a life.
            if alive.incarnation > me.incarnation && !leaving {
                return SelfClaim::Outbid(alive.incarnation);
            }
            return SelfClaim::Ignore;
        }
        if alive.generation < me.generation {
            // Our previous life (at this address or, after a move, another), still gossiped:
            // our own Alive will replace it.
            return if leaving {
                SelfClaim::Ignore
            } else {
                SelfClaim::Reannounce
            };
        }
        SelfClaim::Conflict
    }

    /// Whether an accusation of this node's life `(generation, incarnation)` must be refuted:
    /// it names this very life at or above its incarnation.
    pub(crate) fn must_refute(me: &Member, generation: u64, incarnation: u64) -> bool {
        generation == me.generation && incarnation >= me.incarnation
    }

    /// Lifeguard: having to refute hints at this node's own slowness.
    pub(crate) fn note_refuted(&mut self) {
        self.awareness.apply(1);
    }

    /// How this node's record moves above both its incarnation and `above`. Incarnations from
    /// the wire are at most `MAX_INCARNATION` (`limits.rs`); when the next one would pass it
    /// (an accusation forged at the limit), the node begins a new life at the same address
    /// instead, which every member takes over the old one: the live holder of a name always
    /// has a way to win.
    pub(crate) fn raise(me: &Member, above: u64) -> Raise {
        match me
            .incarnation
            .max(above)
            .checked_add(1)
            .filter(|&n| n <= MAX_INCARNATION)
        {
            Some(next) => Raise::Incarnation(next),
            None => Self::renew(me),
        }
    }

    /// The next life of this node: the next generation, unless it would pass `MAX_GENERATION`
    /// (unreachable for a generation that passed `Node::new`'s check short of 2^62 renewals).
    pub(crate) fn renew(me: &Member) -> Raise {
        me.generation
            .checked_add(1)
            .filter(|&g| g <= MAX_GENERATION)
            .map_or(Raise::Stuck, Raise::NewLife)
    }

    // ---- rules about other members ----

    /// Whether `from` may give evidence about `subject`: this node, or a live member other than
    /// the subject itself.
    fn is_witness(&self, me: &str, from: &str, subject: &str) -> bool {
        from == me || (from != subject && self.table.get(from).is_some_and(|m| m.status.is_live()))
    }

    /// Applies an `Alive` about another member (`alive.name` is not this node's). `checked`:
    /// the life has just answered a check at its address (`lives.rs`).
    ///
    /// A member listed failed or left comes back alive in the same life only after answering a
    /// check: a live member refuting a forged `Left` or a wrong verdict answers it at once, and
    /// a member that left (a leaving node acks no ping) or is gone does not, so a forged `Alive`
    /// cannot turn a graceful leave into a failure, nor make a dead member flap.
    pub(crate) fn alive<R: Rng>(
        &mut self,
        now: Instant,
        alive: &wire::Alive,
        max_members: usize,
        rng: &mut R,
        checked: bool,
    ) -> AliveOutcome {
        let Some(known) = self.table.get(&alive.name) else {
            if self.table.len() >= max_members {
                return AliveOutcome::TableFull;
            }
            // A member this node never heard of is listed once it answers (`lives.rs`).
            return AliveOutcome::Check(None);
        };
        if alive.generation < known.generation {
            return AliveOutcome::Stale;
        }
        if alive.generation > known.generation {
            if known.status.is_live() {
                // The known life may still be there: the new one must prove itself first
                // (`lives.rs`), or a forged generation would displace a live member.
                return AliveOutcome::Check(Some((known.addr(), known.generation)));
            }
            info!(member = %alive.name, generation = alive.generation, "member restarted");
            self.suspicions.remove(&alive.name);
            return AliveOutcome::Restarted(self.admit(now, alive, rng));
        }
        if alive.incarnation <= known.incarnation {
            return AliveOutcome::Stale;
        }
        if known.addr() != alive.addr {
            // A process keeps its address for its whole life (a new address is a new life, with
            // a new generation): another address for this life is forged, and taking it would
            // let the forger answer the member's probes for it.
            debug!(member = %alive.name, addr = %alive.addr, "dropped an address change within a life");
            return AliveOutcome::AddressChanged;
        }
        if !known.status.is_live() && !checked {
            return AliveOutcome::Check(Some((known.addr(), known.generation)));
        }
        let previous = known.status;
        // Silence shown not to be death: a verdict refuted, or a host found silent by this
        // node that answers again. A suspicion raised on other evidence (a lost ack) is not
        // a flap: under loss every member would be damped for nothing.
        let flapped = previous == MemberStatus::Failed
            || (previous == MemberStatus::Suspect
                && known.evidence().is_some_and(|e| e.host_silent));
        let changed = known.addr() != alive.addr || *known.tags() != alive.tags;
        let at = self.table.stamp(now);
        let member = self.table.update_member(&alive.name, |m| {
            m.incarnation = alive.incarnation;
            m.set_addr(alive.addr);
            m.set_tags(alive.tags.clone());
            m.last_update = at;
            if m.status != MemberStatus::Alive {
                m.status = MemberStatus::Alive;
                m.status_since = at;
                m.set_evidence(None);
            }
        });
        self.suspicions.remove(&alive.name);
        AliveOutcome::Refreshed {
            member,
            previous,
            changed,
            flapped,
        }
    }

    /// `name` flapped (see [`AliveOutcome::Refreshed`]): one more flap on its penalty.
    pub(crate) fn note_flap(&mut self, now: Instant, name: &str, config: &Config) {
        let at = self.table.stamp(now);
        let half_life = config.flap_damping_half_life;
        self.table.update(name, |m| m.note_flap(at, half_life));
    }

    /// Whether `name` is flap-damped at `now`: a silent host must not shorten its suspicion.
    pub(crate) fn flap_damped(&self, now: Instant, name: &str, config: &Config) -> bool {
        let at = self.table.stamp(now);
        self.table
            .get(name)
            .and_then(|m| m.flap())
            .is_some_and(|p| p.damped(at, config.flap_damping_half_life))
    }

    /// Applies a `Left` about another member; returns the member if it is news.
    pub(crate) fn left(&mut self, now: Instant, left: &wire::Left) -> Option<Member> {
        let known = self.table.get(&left.name)?;
        if left.generation != known.generation
            || left.incarnation < known.incarnation
            || known.status == MemberStatus::Left
        {
            return None;
        }
        self.suspicions.remove(&left.name);
        let at = self.table.stamp(now);
        let member = self.table.update_member(&left.name, |m| {
            m.incarnation = left.incarnation;
            m.status = MemberStatus::Left;
            m.status_since = at;
            m.last_update = at;
            m.set_evidence(None);
        })?;
        info!(member = %left.name, "member left");
        Some(member)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn alive(name: &str, last: u8, generation: u64, incarnation: u64) -> wire::Alive {
        wire::Alive {
            name: name.into(),
            addr: ([10, 0, 0, last], 7000).into(),
            generation,
            incarnation,
            tags: Default::default(),
        }
    }

    fn me() -> Member {
        Member::new(
            "me".to_owned(),
            ([10, 0, 0, 1], 7000).into(),
            5,
            3,
            Default::default(),
            Instant::now(),
        )
    }

    #[test]
    fn an_unknown_member_is_checked_before_the_table_takes_it() {
        let now = Instant::now();
        let mut m = Membership::new(now, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(matches!(
            m.alive(now, &alive("b", 2, 1, 0), 10, &mut rng, false),
            AliveOutcome::Check(None)
        ));
        assert!(matches!(
            m.alive(now, &alive("b", 2, 1, 0), 0, &mut rng, false),
            AliveOutcome::TableFull
        ));
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn a_newer_life_of_a_live_member_must_prove_itself_and_an_address_change_is_refused() {
        let now = Instant::now();
        let mut m = Membership::new(now, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        m.admit(now, &alive("b", 2, 1, 0), &mut rng);
        let old = ([10, 0, 0, 2], 7000).into();
        assert!(matches!(
            m.alive(now, &alive("b", 3, 2, 0), 10, &mut rng, false),
            AliveOutcome::Check(Some((addr, 1))) if addr == old
        ));
        assert!(matches!(
            m.alive(now, &alive("b", 3, 1, 1), 10, &mut rng, false),
            AliveOutcome::AddressChanged
        ));
        assert!(matches!(
            m.alive(now, &alive("b", 2, 1, 0), 10, &mut rng, false),
            AliveOutcome::Stale
        ));
        assert!(matches!(
            m.alive(now, &alive("b", 2, 1, 1), 10, &mut rng, false),
            AliveOutcome::Refreshed {
                previous: MemberStatus::Alive,
                changed: false,
                ..
            }
        ));
        assert_eq!(m.get("b").map(|r| r.incarnation), Some(1));
    }

    #[test]
    fn refutation_moves_to_a_new_life_when_incarnations_run_out() {
        let me = me();
        assert_eq!(Membership::raise(&me, 7), Raise::Incarnation(8));
        assert_eq!(Membership::raise(&me, 0), Raise::Incarnation(4));
        assert_eq!(Membership::raise(&me, MAX_INCARNATION), Raise::NewLife(6));
        let mut last = me.clone();
        last.generation = MAX_GENERATION;
        assert_eq!(Membership::renew(&last), Raise::Stuck);
        assert!(Membership::must_refute(&me, 5, 3));
        assert!(!Membership::must_refute(&me, 5, 2));
        assert!(!Membership::must_refute(&me, 4, 9));
    }

    #[test]
    fn claims_of_this_nodes_name_are_outbid_reannounced_or_reported() {
        let me = me();
        let claim = |generation, incarnation, leaving| {
            Membership::judge_self_claim(&me, leaving, &alive("me", 9, generation, incarnation))
        };
        assert_eq!(claim(5, 4, false), SelfClaim::Outbid(4));
        assert_eq!(claim(5, 4, true), SelfClaim::Ignore);
        assert_eq!(claim(5, 3, false), SelfClaim::Ignore);
        assert_eq!(claim(4, 9, false), SelfClaim::Reannounce);
        assert_eq!(claim(4, 9, true), SelfClaim::Ignore);
        assert_eq!(claim(6, 0, false), SelfClaim::Conflict);
    }

    #[test]
    fn each_conflict_is_reported_once_and_the_memory_of_them_is_bounded() {
        let now = Instant::now();
        let mut m = Membership::new(now, 8);
        let addr: SocketAddr = ([10, 0, 0, 9], 7000).into();
        assert!(m.note_conflict(now, "me", "b", addr, 2).is_some());
        assert!(m.note_conflict(now, "me", "b", addr, 2).is_none());
        for generation in 0..200 {
            m.note_conflict(now, "me", "c", addr, generation);
        }
        assert_eq!(m.conflicts_seen.len(), MAX_CONFLICTS_REMEMBERED);
    }
}
