//! The member table: every other member this node knows, the shuffled probe order, and the
//! fingerprint that lets two members in sync skip an anti-entropy exchange.
//!
//! Every node holds a row for every member, so a 10,000-node cluster simulated on one machine
//! holds 10^8 rows: the row layout decides whether that fits. A [`Row`] is 96 bytes with no
//! heap allocation for a member with a short name (up to 24 bytes, kept inline), no tags and no
//! verdict; the public [`Member`] (384 bytes plus two allocations) is built from it on demand.
//! The rows live in a slab indexed by a hash table of slot numbers (4 bytes per member), and the
//! probe order holds slot numbers too, so the name is stored once.

use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use hashbrown::HashTable;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::flap_damping::FlapPenalty;
use crate::member::{Conflict, Evidence, Member, MemberBrief, MemberStatus, Tags};

/// A point in time as nanoseconds since the table's epoch (the node's creation): 8 bytes where
/// an `Instant` takes 16. Good for 584 years of uptime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Stamp(u64);

impl Stamp {
    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub(crate) fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The stamp `nanos` after the epoch.
    #[cfg(test)]
    pub(crate) fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }
}

/// `rtt_micros` value meaning "never measured".
const NO_RTT: u32 = u32::MAX;

/// The parts of a row that only some members have: a verdict's evidence, a name conflict,
/// the flap penalty of a member that came back in the same life (`flap_damping.rs`).
#[derive(Debug, Clone, Default, PartialEq)]
struct Extra {
    evidence: Option<Evidence>,
    conflict: Option<Conflict>,
    flap: Option<FlapPenalty>,
}

/// A socket address in 16 bytes where `SocketAddr` takes 32: IPv4 inline, IPv6 (rare in a
/// large cluster, and carrying flow and scope ids) boxed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PackedAddr {
    V4([u8; 4], u16),
    V6(Box<SocketAddrV6>),
}

impl From<SocketAddr> for PackedAddr {
    fn from(a: SocketAddr) -> Self {
        match a {
            SocketAddr::V4(v4) => PackedAddr::V4(v4.ip().octets(), v4.port()),
            SocketAddr::V6(v6) => PackedAddr::V6(Box::new(v6)),
        }
    }
}

impl PackedAddr {
    fn get(&self) -> SocketAddr {
        match self {
            PackedAddr::V4(ip, port) => SocketAddr::V4(SocketAddrV4::new((*ip).into(), *port)),
            PackedAddr::V6(v6) => SocketAddr::V6(**v6),
        }
    }
}

/// What this node stores about one member; [`Table::member`] turns it into a [`Member`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) name: CompactString,
    addr: PackedAddr,
    pub(crate) generation: u64,
    pub(crate) incarnation: u64,
    pub(crate) status_since: Stamp,
    pub(crate) last_update: Stamp,
    /// `None` for no tags, which most members of a large cluster have.
    tags: Option<Box<Tags>>,
    extra: Option<Box<Extra>>,
    rtt_micros: u32,
    pub(crate) status: MemberStatus,
}

static NO_TAGS: Tags = Tags::new();

impl Row {
    fn from_member(m: &Member, table: &Table) -> Self {
        let mut row = Self {
            name: CompactString::from(m.name.as_str()),
            addr: m.addr.into(),
            generation: m.generation,
            incarnation: m.incarnation,
            status_since: table.stamp(m.status_since),
            last_update: table.stamp(m.last_update),
            tags: None,
            extra: None,
            rtt_micros: NO_RTT,
            status: m.status,
        };
        row.set_tags(m.tags.clone());
        if let Some(rtt) = m.rtt {
            row.set_rtt(rtt);
        }
        row.set_evidence(m.evidence.clone());
        if let Some(c) = &m.conflict {
            row.set_conflict(c.clone());
        }
        row
    }

    /// Status, life and address: the cheap public view.
    pub(crate) fn brief(&self) -> MemberBrief {
        MemberBrief {
            addr: self.addr(),
            generation: self.generation,
            incarnation: self.incarnation,
            status: self.status,
        }
    }

    /// The member's gossip address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    pub(crate) fn set_addr(&mut self, addr: SocketAddr) {
        self.addr = addr.into();
    }

    /// The member's tags (an empty map if it has none).
    pub(crate) fn tags(&self) -> &Tags {
        self.tags.as_deref().unwrap_or(&NO_TAGS)
    }

    pub(crate) fn set_tags(&mut self, tags: Tags) {
        self.tags = (!tags.is_empty()).then(|| Box::new(tags));
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        (self.rtt_micros != NO_RTT).then(|| Duration::from_micros(u64::from(self.rtt_micros)))
    }

    pub(crate) fn set_rtt(&mut self, rtt: Duration) {
        self.rtt_micros = u32::try_from(rtt.as_micros()).map_or(NO_RTT - 1, |r| r.min(NO_RTT - 1));
    }

    pub(crate) fn evidence(&self) -> Option<&Evidence> {
        self.extra.as_ref()?.evidence.as_ref()
    }

    pub(crate) fn evidence_mut(&mut self) -> Option<&mut Evidence> {
        self.extra.as_mut()?.evidence.as_mut()
    }

    /// Sets or clears the evidence, freeing the extra part when nothing is left in it.
    pub(crate) fn set_evidence(&mut self, evidence: Option<Evidence>) {
        match (evidence, &mut self.extra) {
            (Some(e), Some(extra)) => extra.evidence = Some(e),
            (Some(e), None) => {
                self.extra = Some(Box::new(Extra {
                    evidence: Some(e),
                    ..Extra::default()
                }))
            }
            (None, Some(extra)) => {
                extra.evidence = None;
                if extra.conflict.is_none() && extra.flap.is_none() {
                    self.extra = None;
                }
            }
            (None, None) => {}
        }
    }

    /// The evidence, created by `make` if there is none yet.
    pub(crate) fn evidence_or_insert_with(
        &mut self,
        make: impl FnOnce() -> Evidence,
    ) -> &mut Evidence {
        self.extra
            .get_or_insert_with(Default::default)
            .evidence
            .get_or_insert_with(make)
    }

    pub(crate) fn set_conflict(&mut self, conflict: Conflict) {
        self.extra.get_or_insert_with(Default::default).conflict = Some(conflict);
    }

    /// The member's flap penalty, if it ever flapped in this life.
    pub(crate) fn flap(&self) -> Option<&FlapPenalty> {
        self.extra.as_ref()?.flap.as_ref()
    }

    /// The member came back in the same life after a verdict or a silent host: one more flap.
    pub(crate) fn note_flap(&mut self, now: Stamp, half_life: Duration) {
        let extra = self.extra.get_or_insert_with(Default::default);
        match &mut extra.flap {
            Some(p) => p.add(now, half_life),
            None => extra.flap = Some(FlapPenalty::first(now)),
        }
    }
}

/// Other members by name, with derived state kept up to date on every change.
#[derive(Clone)]
pub(crate) struct Table {
    /// Time zero of every [`Stamp`] in the table.
    epoch: Instant,
    /// Row slots; `None` marks a free slot (listed in `free`).
    rows: Vec<Option<Row>>,
    free: Vec<u32>,
    /// Slot numbers, found by the hash of the name they hold.
    index: HashTable<u32>,
    /// Slot numbers, found by the hash of their member's address (several rows may share an
    /// address: a failed life and the new member now there): to tell in O(1) whether a
    /// datagram comes from a live member. 4 bytes per member.
    addr_index: HashTable<u32>,
    /// Randomly keyed: names come from the network, and a fixed hash would let a sender make
    /// every lookup collide.
    hasher: RandomState,
    /// XOR of every row's hash (the local member's row is added by the node).
    fingerprint: u64,
    /// Members alive or suspect.
    live: usize,
    /// Slot numbers in a shuffled order; see [`Table::next_probe`].
    probe_order: Vec<u32>,
    probe_next: usize,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("members", &self.len())
            .field("live", &self.live)
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint))
            .finish_non_exhaustive()
    }
}

/// Hash of the fields that anti-entropy reconciles, stable across builds (FNV-1a).
pub(crate) fn row_hash(name: &str, generation: u64, incarnation: u64, status: MemberStatus) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(name.as_bytes());
    h.write_u8(0xff);
    h.write_u64(generation);
    h.write_u64(incarnation);
    h.write_u8(status as u8);
    // FNV's last bytes diffuse poorly into the high bits; a final mix keeps XOR-combined
    // fingerprints of similar tables apart.
    let mut x = h.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// The index hash of the name in `slot`, for the hash table's rehashing as it grows.
fn slot_hash(rows: &[Option<Row>], hasher: &RandomState, slot: u32) -> u64 {
    rows[slot as usize]
        .as_ref()
        .map_or(0, |r| hasher.hash_one(r.name.as_str()))
}

/// The address-index hash of the row in `slot`.
fn slot_addr_hash(rows: &[Option<Row>], hasher: &RandomState, slot: u32) -> u64 {
    rows[slot as usize]
        .as_ref()
        .map_or(0, |r| hasher.hash_one(r.addr()))
}

fn hash_of(r: &Row) -> u64 {
    row_hash(&r.name, r.generation, r.incarnation, r.status)
}

impl Table {
    /// An empty table whose times count from `epoch`.
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            rows: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            addr_index: HashTable::new(),
            hasher: RandomState::new(),
            fingerprint: 0,
            live: 0,
            probe_order: Vec::new(),
            probe_next: 0,
        }
    }

    /// `now` as a stamp of this table (times before the epoch count as the epoch).
    pub(crate) fn stamp(&self, now: Instant) -> Stamp {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        Stamp(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The instant a stamp of this table stands for.
    pub(crate) fn instant(&self, stamp: Stamp) -> Instant {
        self.epoch + Duration::from_nanos(stamp.0)
    }

    /// The public view of a row.
    pub(crate) fn to_member(&self, r: &Row) -> Member {
        let extra = r.extra.as_deref();
        Member {
            name: r.name.to_string(),
            addr: r.addr(),
            generation: r.generation,
            incarnation: r.incarnation,
            status: r.status,
            tags: r.tags().clone(),
            status_since: self.instant(r.status_since),
            last_update: self.instant(r.last_update),
            rtt: r.rtt(),
            evidence: extra.and_then(|e| e.evidence.clone()),
            conflict: extra.and_then(|e| e.conflict.clone()),
        }
    }

    fn find(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        let rows = &self.rows;
        self.index
            .find(hash, |&slot| {
                rows[slot as usize].as_ref().is_some_and(|r| r.name == name)
            })
            .copied()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Row> {
        self.rows[self.find(name)? as usize].as_ref()
    }

    /// The live (alive or suspect) member at `addr`, if any.
    pub(crate) fn live_at(&self, addr: SocketAddr) -> Option<&Row> {
        let hash = self.hasher.hash_one(addr);
        self.addr_index
            .iter_hash(hash)
            .filter_map(|&slot| self.rows[slot as usize].as_ref())
            .find(|r| r.status.is_live() && r.addr() == addr)
    }

    fn index_addr(&mut self, slot: u32) {
        let Self {
            rows,
            addr_index,
            hasher,
            ..
        } = self;
        let hash = slot_addr_hash(rows, hasher, slot);
        addr_index.insert_unique(hash, slot, |&s| slot_addr_hash(rows, hasher, s));
    }

    fn unindex_addr(&mut self, slot: u32, addr: SocketAddr) {
        let hash = self.hasher.hash_one(addr);
        if let Ok(entry) = self.addr_index.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
    }

    /// The public view of a member, if known.
    pub(crate) fn member(&self, name: &str) -> Option<Member> {
        self.get(name).map(|r| self.to_member(r))
    }

    /// Every row, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().flatten()
    }

    /// Every row, in name order.
    pub(crate) fn sorted(&self) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self.iter().collect();
        rows.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Makes room for `additional` more members without reallocating.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let Self {
            rows,
            index,
            hasher,
            ..
        } = self;
        rows.reserve_exact(additional.saturating_sub(self.free.len()));
        index.reserve(additional, |&slot| slot_hash(rows, hasher, slot));
        self.addr_index
            .reserve(additional, |&slot| slot_addr_hash(rows, hasher, slot));
        self.probe_order.reserve_exact(additional);
    }

    /// Enters a member, or replaces the previous life of a known name in place. A new member
    /// takes a random position in the probe order, so that new members are not all probed at
    /// once.
    pub(crate) fn insert<R: Rng>(&mut self, member: &Member, rng: &mut R) {
        let Some(slot) = self.insert_row(member) else {
            return;
        };
        let at = rng.random_range(0..=self.probe_order.len());
        self.probe_order.insert(at, slot);
        if at < self.probe_next {
            self.probe_next += 1;
        }
    }

    /// Enters alive members with no tags that the table does not hold yet (others are
    /// skipped), at most `limit`, then shuffles the whole probe order: O(n) where
    /// [`Table::insert`]'s random placement costs O(n) per member. Returns how many were
    /// left out for the limit.
    pub(crate) fn insert_new_alive<'a, R: Rng>(
        &mut self,
        members: impl IntoIterator<Item = (&'a str, SocketAddr, u64)>,
        now: Instant,
        limit: usize,
        rng: &mut R,
    ) -> usize {
        let at = self.stamp(now);
        let mut left_out = 0;
        for (name, addr, generation) in members {
            if self.find(name).is_some() {
                continue;
            }
            if self.len() >= limit {
                left_out += 1;
                continue;
            }
            let row = Row {
                name: CompactString::from(name),
                addr: addr.into(),
                generation,
                incarnation: 0,
                status_since: at,
                last_update: at,
                tags: None,
                extra: None,
                rtt_micros: NO_RTT,
                status: MemberStatus::Alive,
            };
            if let Some(slot) = self.insert_new_row(row) {
                self.probe_order.push(slot);
            }
        }
        self.probe_order.shuffle(rng);
        self.probe_next = 0;
        left_out
    }

    /// Stores a member's row; returns its slot if it is a new member (a previous life of a
    /// known name is replaced in place and keeps its place in the probe order).
    fn insert_row(&mut self, member: &Member) -> Option<u32> {
        let row = Row::from_member(member, self);
        if let Some(slot) = self.find(&member.name) {
            self.update_slot(slot, |r| *r = row);
            return None;
        }
        self.insert_new_row(row)
    }

    /// Stores the row of a name the table does not hold; returns its slot.
    fn insert_new_row(&mut self, row: Row) -> Option<u32> {
        self.fingerprint ^= hash_of(&row);
        if row.status.is_live() {
            self.live += 1;
        }
        let hash = self.hasher.hash_one(row.name.as_str());
        let slot = match self.free.pop() {
            Some(slot) => {
                self.rows[slot as usize] = Some(row);
                slot
            }
            None => {
                // More than 4 billion members: the configured `max_members` keeps tables far
                // below this.
                let slot = u32::try_from(self.rows.len()).ok()?;
                self.rows.push(Some(row));
                slot
            }
        };
        let Self {
            rows,
            index,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, slot, |&s| slot_hash(rows, hasher, s));
        self.index_addr(slot);
        Some(slot)
    }

    /// Removes a member; returns its last public view.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Member> {
        let hash = self.hasher.hash_one(name);
        let rows = &self.rows;
        let entry = self
            .index
            .find_entry(hash, |&slot| {
                rows[slot as usize].as_ref().is_some_and(|r| r.name == name)
            })
            .ok()?;
        let (slot, _) = entry.remove();
        if let Some(addr) = self.rows[slot as usize].as_ref().map(Row::addr) {
            self.unindex_addr(slot, addr);
        }
        let old = self.rows[slot as usize].take()?;
        self.free.push(slot);
        self.fingerprint ^= hash_of(&old);
        if old.status.is_live() {
            self.live -= 1;
        }
        // The slot may be reused by another member: it must not keep this one's place.
        if let Some(pos) = self.probe_order.iter().position(|&s| s == slot) {
            self.probe_order.remove(pos);
            if pos < self.probe_next {
                self.probe_next -= 1;
            }
        }
        Some(self.to_member(&old))
    }

    fn update_slot<T>(&mut self, slot: u32, f: impl FnOnce(&mut Row) -> T) -> Option<T> {
        let r = self.rows.get_mut(slot as usize)?.as_mut()?;
        let before = hash_of(r);
        let was_live = r.status.is_live();
        let addr_before = r.addr();
        let out = f(r);
        let after = hash_of(r);
        let moved = r.addr() != addr_before;
        self.fingerprint ^= before ^ after;
        match (was_live, r.status.is_live()) {
            (true, false) => self.live -= 1,
            (false, true) => self.live += 1,
            _ => {}
        }
        if moved {
            self.unindex_addr(slot, addr_before);
            self.index_addr(slot);
        }
        Some(out)
    }

    /// Changes a member through `f`, keeping the fingerprint and live count right. `f` must not
    /// change the name.
    pub(crate) fn update<T>(&mut self, name: &str, f: impl FnOnce(&mut Row) -> T) -> Option<T> {
        let slot = self.find(name)?;
        self.update_slot(slot, f)
    }

    /// Like [`Table::update`], returning the member's public view after the change.
    pub(crate) fn update_member(&mut self, name: &str, f: impl FnOnce(&mut Row)) -> Option<Member> {
        let slot = self.find(name)?;
        self.update_slot(slot, f)?;
        let r = self.rows[slot as usize].as_ref()?;
        Some(self.to_member(r))
    }

    /// Next member to probe: round-robin over a shuffled order of live members, reshuffled at
    /// the end of each pass (SWIM's time-bounded completeness: every live member is probed once
    /// per pass).
    pub(crate) fn next_probe<R: Rng>(&mut self, rng: &mut R) -> Option<CompactString> {
        if self.live == 0 {
            return None;
        }
        for _ in 0..2 {
            while self.probe_next < self.probe_order.len() {
                let slot = self.probe_order[self.probe_next];
                self.probe_next += 1;
                if let Some(r) = &self.rows[slot as usize] {
                    if r.status.is_live() {
                        return Some(r.name.clone());
                    }
                }
            }
            // Rebuilt from the table at the end of each pass.
            self.probe_order.clear();
            self.probe_order.extend(
                self.rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.is_some())
                    .map(|(slot, _)| slot as u32),
            );
            self.probe_order.shuffle(rng);
            self.probe_next = 0;
        }
        None
    }

    /// Up to `k` distinct random members for which `pred` holds.
    pub(crate) fn random_members<R: Rng>(
        &self,
        k: usize,
        rng: &mut R,
        pred: impl Fn(&Row) -> bool,
    ) -> Vec<&Row> {
        // Sample positions in the probe order (a random permutation already) from a random
        // start with a step coprime to its length: O(k) expected for a mostly live table, no
        // allocation of the whole table, and every slot visited at most once.
        let n = self.probe_order.len();
        let mut out: Vec<&Row> = Vec::with_capacity(k.min(n));
        if k == 0 || n == 0 {
            return out;
        }
        let start = rng.random_range(0..n);
        let step = if n > 1 {
            1 + rng.random_range(0..n - 1)
        } else {
            1
        };
        let step = if gcd(step, n) == 1 { step } else { 1 };
        for i in 0..n {
            let slot = self.probe_order[(start + i * step) % n];
            if let Some(r) = &self.rows[slot as usize] {
                if pred(r) {
                    out.push(r);
                    if out.len() == k {
                        break;
                    }
                }
            }
        }
        out
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use std::collections::BTreeSet;
    use std::time::Instant;

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn member(name: &str) -> Member {
        Member::new(
            name.to_owned(),
            ([127, 0, 0, 1], 1).into(),
            1,
            0,
            Default::default(),
            Instant::now(),
        )
    }

    #[test]
    fn fingerprint_is_order_independent_and_tracks_changes() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut a = Table::new(Instant::now());
        let mut b = Table::new(Instant::now());
        a.insert(&member("x"), &mut rng);
        a.insert(&member("y"), &mut rng);
        b.insert(&member("y"), &mut rng);
        b.insert(&member("x"), &mut rng);
        assert_eq!(a.fingerprint(), b.fingerprint());
        a.update("x", |m| m.incarnation = 2);
        assert_ne!(a.fingerprint(), b.fingerprint());
        b.update("x", |m| m.incarnation = 2);
        assert_eq!(a.fingerprint(), b.fingerprint());
        a.remove("y");
        b.remove("y");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.live(), 1);
    }

    #[test]
    fn probe_order_visits_every_live_member_once_per_pass() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut t = Table::new(Instant::now());
        for i in 0..10 {
            t.insert(&member(&format!("m{i}")), &mut rng);
        }
        t.update("m3", |m| m.status = MemberStatus::Failed);
        // Skip to a pass boundary, then check one whole pass.
        while t.probe_next < t.probe_order.len() {
            t.next_probe(&mut rng);
        }
        let pass: Vec<String> = (0..9)
            .filter_map(|_| t.next_probe(&mut rng))
            .map(|n| n.to_string())
            .collect();
        let unique: BTreeSet<_> = pass.iter().collect();
        assert_eq!(unique.len(), 9);
        assert!(!unique.contains(&"m3".to_owned()));
    }

    #[test]
    fn random_members_are_distinct_and_filtered() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut t = Table::new(Instant::now());
        for i in 0..20 {
            t.insert(&member(&format!("m{i}")), &mut rng);
        }
        for _ in 0..50 {
            let picked = t.random_members(3, &mut rng, |m| m.name != "m0");
            assert_eq!(picked.len(), 3);
            let names: BTreeSet<_> = picked.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names.len(), 3);
            assert!(!names.contains("m0"));
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod compact_tests {
    use std::time::{Duration, Instant};

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::member::{Confirmation, Evidence};

    #[test]
    fn a_row_stays_small() {
        // 10^8 rows in a 10,000-node simulation: every byte here is 100 MB there.
        assert!(
            std::mem::size_of::<Option<Row>>() <= 96,
            "{}",
            std::mem::size_of::<Row>()
        );
    }

    #[test]
    fn rows_give_back_the_member_they_were_made_from() {
        let t0 = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut t = Table::new(t0);
        let mut m = Member::new(
            "a-rather-long-member-name-beyond-inline.example.org".to_owned(),
            ([10, 0, 0, 1], 7000).into(),
            3,
            4,
            [("role".to_owned(), "db".to_owned())].into_iter().collect(),
            t0 + Duration::from_millis(1500),
        );
        m.rtt = Some(Duration::from_micros(1234));
        m.status = MemberStatus::Suspect;
        m.evidence = Some(Evidence {
            accuser: "b".to_owned(),
            suspected_at: t0 + Duration::from_secs(2),
            confirmations: vec![Confirmation {
                from: "c".to_owned(),
                at: t0 + Duration::from_secs(3),
            }],
            probes: Vec::new(),
            unreachable: true,
            host_silent: true,
            flap_damped: true,
            timeout: Duration::from_secs(5),
            declared_by: None,
            failed_at: None,
        });
        t.insert(&m, &mut rng);
        assert_eq!(t.member(&m.name), Some(m.clone()));
        assert_eq!(t.live(), 1);
        let after = t
            .update_member(&m.name, |r| {
                r.status = MemberStatus::Failed;
                r.set_evidence(None);
            })
            .unwrap();
        assert_eq!(after.evidence, None);
        assert_eq!(t.live(), 0);
        assert_eq!(t.remove(&m.name).map(|r| r.name), Some(m.name.clone()));
        assert_eq!(t.len(), 0);
        assert_eq!(t.fingerprint(), 0);
    }

    #[test]
    fn packed_addresses_keep_every_field() {
        let v6: SocketAddr = "[fe80::1%7]:2428".parse().unwrap();
        let v4: SocketAddr = "10.1.2.3:2428".parse().unwrap();
        for a in [v4, v6] {
            assert_eq!(PackedAddr::from(a).get(), a);
        }
        if let SocketAddr::V6(v6) = v6 {
            assert_eq!(v6.scope_id(), 7);
        }
    }

    #[test]
    fn removed_slots_are_reused_without_stale_probe_positions() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let t0 = Instant::now();
        let mut t = Table::new(t0);
        let mk = |n: &str| {
            Member::new(
                n.to_owned(),
                ([127, 0, 0, 1], 1).into(),
                1,
                0,
                Tags::new(),
                t0,
            )
        };
        for i in 0..5 {
            t.insert(&mk(&format!("m{i}")), &mut rng);
        }
        t.remove("m2");
        t.insert(&mk("new"), &mut rng);
        assert_eq!(t.len(), 5);
        assert_eq!(t.probe_order.len(), 5);
        let mut seen: Vec<String> = (0..5)
            .filter_map(|_| t.next_probe(&mut rng))
            .map(|n| n.to_string())
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(t.get("m2").is_none());
        assert!(t.get("new").is_some());
    }
}
