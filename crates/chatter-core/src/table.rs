//! The member table: every other member this node knows, the shuffled probe order, and the
//! fingerprint that lets two members in sync skip an anti-entropy exchange.

use std::collections::BTreeMap;
use std::hash::Hasher;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::member::{Member, MemberStatus};

/// Other members by name, with derived state kept up to date on every change.
#[derive(Debug, Default, Clone)]
pub(crate) struct Table {
    members: BTreeMap<String, Member>,
    /// XOR of every row's hash (the local member's row is added by the node).
    fingerprint: u64,
    /// Members alive or suspect.
    live: usize,
    probe_order: Vec<String>,
    probe_next: usize,
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

fn member_hash(m: &Member) -> u64 {
    row_hash(&m.name, m.generation, m.incarnation, m.status)
}

impl Table {
    pub(crate) fn get(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Inserts a new member (or replaces a previous life), placing it at a random position in
    /// the probe order so that new members are not all probed at once.
    pub(crate) fn insert<R: Rng>(&mut self, member: Member, rng: &mut R) {
        let name = member.name.clone();
        self.remove(&name);
        self.fingerprint ^= member_hash(&member);
        if member.status.is_live() {
            self.live += 1;
        }
        self.members.insert(name.clone(), member);
        let at = rng.random_range(0..=self.probe_order.len());
        self.probe_order.insert(at, name);
        if at < self.probe_next {
            self.probe_next += 1;
        }
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<Member> {
        let old = self.members.remove(name)?;
        self.fingerprint ^= member_hash(&old);
        if old.status.is_live() {
            self.live -= 1;
        }
        // The name stays in probe_order until the next reshuffle; next_probe skips it.
        Some(old)
    }

    /// Changes a member through `f`, keeping the fingerprint and live count right.
    pub(crate) fn update<T>(&mut self, name: &str, f: impl FnOnce(&mut Member) -> T) -> Option<T> {
        let m = self.members.get_mut(name)?;
        let before = member_hash(m);
        let was_live = m.status.is_live();
        let out = f(m);
        let after = member_hash(m);
        self.fingerprint ^= before ^ after;
        match (was_live, m.status.is_live()) {
            (true, false) => self.live -= 1,
            (false, true) => self.live += 1,
            _ => {}
        }
        Some(out)
    }

    /// Next member to probe: round-robin over a shuffled order of live members, reshuffled at
    /// the end of each pass (SWIM's time-bounded completeness: every live member is probed once
    /// per pass).
    pub(crate) fn next_probe<R: Rng>(&mut self, rng: &mut R) -> Option<String> {
        if self.live == 0 {
            return None;
        }
        for _ in 0..2 {
            while self.probe_next < self.probe_order.len() {
                let name = &self.probe_order[self.probe_next];
                self.probe_next += 1;
                if self.members.get(name).is_some_and(|m| m.status.is_live()) {
                    return Some(name.clone());
                }
            }
            // Rebuilt from the table: drops removed members and duplicates left by restarts.
            self.probe_order = self.members.keys().cloned().collect();
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
        pred: impl Fn(&Member) -> bool,
    ) -> Vec<&Member> {
        if k == 0 || self.members.is_empty() {
            return Vec::new();
        }
        // Sample positions in the probe order (a random permutation already) from a random
        // start: O(k) expected for a mostly live table, no allocation of the whole table.
        let n = self.probe_order.len();
        let mut out: Vec<&Member> = Vec::with_capacity(k);
        if n == 0 {
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
            let name = &self.probe_order[(start + i * step) % n];
            if let Some(m) = self.members.get(name) {
                if pred(m) && !out.iter().any(|o| o.name == m.name) {
                    out.push(m);
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
        let mut a = Table::default();
        let mut b = Table::default();
        a.insert(member("x"), &mut rng);
        a.insert(member("y"), &mut rng);
        b.insert(member("y"), &mut rng);
        b.insert(member("x"), &mut rng);
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
        let mut t = Table::default();
        for i in 0..10 {
            t.insert(member(&format!("m{i}")), &mut rng);
        }
        t.update("m3", |m| m.status = MemberStatus::Failed);
        // Skip to a pass boundary, then check one whole pass.
        while t.probe_next < t.probe_order.len() {
            t.next_probe(&mut rng);
        }
        let pass: Vec<String> = (0..9).filter_map(|_| t.next_probe(&mut rng)).collect();
        let unique: BTreeSet<_> = pass.iter().collect();
        assert_eq!(unique.len(), 9);
        assert!(!unique.contains(&"m3".to_owned()));
    }

    #[test]
    fn random_members_are_distinct_and_filtered() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut t = Table::default();
        for i in 0..20 {
            t.insert(member(&format!("m{i}")), &mut rng);
        }
        for _ in 0..50 {
            let picked = t.random_members(3, &mut rng, |m| m.name != "m0");
            assert_eq!(picked.len(), 3);
            let names: BTreeSet<_> = picked.iter().map(|m| &m.name).collect();
            assert_eq!(names.len(), 3);
            assert!(!names.contains(&"m0".to_owned()));
        }
    }
}
