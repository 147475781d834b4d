//! Checking a new member, or a new life of a live member, before the table takes it.
//!
//! A member's life is `(name, generation)`, and a newer generation replaces an older one: that
//! is how a restarted process takes its name back. Taken on the word of any datagram, it would
//! let a forged `Alive` with a high generation displace a live member everywhere, and a few
//! datagrams announce thousands of members that do not exist, each of which the probe
//! round-robin would then visit in turn while real crashes wait. So an announced life is first
//! asked to prove itself:
//!
//! - a `Ping` for the new life (its name and generation) to its address must be acked from
//!   that address: only the process that holds the life answers, and the sequence number is
//!   random, so an off-path forger cannot answer for it;
//! - when a known life is alive or suspect and the new one has another address (a container
//!   that came back with a new IP), a `Ping` for the known life to the known address must go
//!   unanswered by the probe timeout: a live holder at the old address keeps its name (two
//!   processes claiming one name are reported as a conflict instead).
//!
//! A life that passes is admitted (as a join, or as a restart as if the known life had been
//! seen to fail); one that fails is dropped and counted. An address holds one live member, so
//! an announcement at the address of another live member is dropped before any check. At most
//! [`MAX_LIFE_CHECKS`] checks run at once; the cost of a check is one small datagram to the
//! announced address (never more bytes than the announcement that caused it) and one RTT of
//! delay before a new member is listed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info};

use crate::node::Node;
use crate::wire::{self, Message};

/// Checks running at once; announcements beyond are dropped (and counted), and come again
/// with gossip or anti-entropy. Enough for a node joining a 1,000-member cluster to check the
/// whole table it is sent at once. Each takes at most about 200 bytes plus the name and tags
/// announced (`Config::max_name_len` + `Config::max_tags_size`): under 1 MiB in all with the
/// defaults.
pub(crate) const MAX_LIFE_CHECKS: usize = 1024;

/// One new life being checked.
#[derive(Debug, Clone)]
pub(crate) struct LifeCheck {
    /// The announcement of the new life.
    alive: wire::Alive,
    /// Sequence number of the ping to the new life.
    new_seq: u64,
    /// The new life answered from its address.
    new_answered: bool,
    /// The known life's address, sequence number of the ping to it, and whether it answered:
    /// only when the new life has another address.
    old: Option<(SocketAddr, u64, bool)>,
    deadline: Instant,
}

/// The checks running, by member name, indexed by the sequence numbers of their pings so that
/// an ack finds its check without a scan. At most [`MAX_LIFE_CHECKS`] checks, and two index
/// entries per check.
#[derive(Debug, Clone, Default)]
pub(crate) struct LifeChecks {
    checks: BTreeMap<String, LifeCheck>,
    /// Sequence number of each ping of a running check -> the member checked.
    by_seq: BTreeMap<u64, String>,
}

impl LifeChecks {
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.checks.values().map(|c| c.deadline).min()
    }

    /// Whether a check may start for `name`'s life `generation`: `Err(true)` when the checks
    /// are at their bound, `Err(false)` when one runs for this life or a newer one already.
    fn may_start(&self, name: &str, generation: u64) -> Result<(), bool> {
        match self.checks.get(name) {
            Some(running) if running.alive.generation >= generation => Err(false),
            Some(_) => Ok(()),
            None if self.checks.len() >= MAX_LIFE_CHECKS => Err(true),
            None => Ok(()),
        }
    }

    /// Runs `check`, replacing a check of the same name.
    fn insert(&mut self, name: String, check: LifeCheck) {
        self.remove(&name);
        self.by_seq.insert(check.new_seq, name.clone());
        if let Some((_, seq, _)) = check.old {
            self.by_seq.insert(seq, name.clone());
        }
        self.checks.insert(name, check);
    }

    /// Ends the check of `name`.
    fn remove(&mut self, name: &str) -> Option<LifeCheck> {
        let check = self.checks.remove(name)?;
        self.by_seq.remove(&check.new_seq);
        if let Some((_, seq, _)) = check.old {
            self.by_seq.remove(&seq);
        }
        Some(check)
    }

    /// An ack from `from` with `seq`: if it answers a ping of a running check from the address
    /// pinged, records it and returns the member checked and whether the check is settled.
    fn answer(&mut self, from: SocketAddr, seq: u64) -> Option<(String, bool)> {
        let name = self.by_seq.get(&seq)?;
        let check = self.checks.get_mut(name)?;
        let new = check.new_seq == seq && check.alive.addr == from;
        let old = check
            .old
            .is_some_and(|(addr, s, _)| s == seq && addr == from);
        if !new && !old {
            return None;
        }
        if check.new_seq == seq {
            check.new_answered = true;
        } else if let Some(old) = &mut check.old {
            old.2 = true;
        }
        // Same address: the new life's answer settles it. Another address: both answering
        // settle it (a conflict); otherwise the deadline decides.
        let settled = match check.old {
            None => check.new_answered,
            Some((_, _, old_answered)) => old_answered && check.new_answered,
        };
        Some((name.clone(), settled))
    }

    /// Members whose check has reached its deadline.
    fn due(&self, now: Instant) -> Vec<String> {
        self.checks
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl Node {
    /// Starts checking `alive`: a member this node does not know (`known` is `None`), or a
    /// newer life of the live member whose address and generation `known` gives. A check
    /// already running for the name is left alone unless this life is newer still.
    pub(crate) fn check_new_life(
        &mut self,
        now: Instant,
        alive: wire::Alive,
        known: Option<(SocketAddr, u64)>,
    ) {
        if self
            .membership
            .live_at(alive.addr)
            .is_some_and(|m| m.name != alive.name)
            || alive.addr == self.me.addr
        {
            // One live member per address: another name there is forged (or stale).
            self.stats.lives_unverified += 1;
            return;
        }
        if let Err(full) = self.life_checks.may_start(&alive.name, alive.generation) {
            if full {
                self.stats.lives_unverified += 1;
            }
            return;
        }
        let new_seq = self.next_seq();
        let name = alive.name.clone();
        let (new_addr, generation) = (alive.addr, alive.generation);
        let ping = Message::Ping(wire::Ping::new(new_seq, &name, generation));
        if self.answer_room(new_addr).is_some_and(|room| {
            room < wire::encode_packet(self.cluster, std::slice::from_ref(&ping)).len()
        }) {
            // A stranger announcing itself in a datagram too small to pay for the check: no
            // check now (it would go unanswered), so the announcement that gossip brings
            // from a member starts one.
            return;
        }
        let old = known
            .filter(|(known_addr, _)| *known_addr != new_addr)
            .map(|(known_addr, _)| (known_addr, self.next_seq(), false));
        let known_generation = known.map_or(0, |(_, g)| g);
        debug!(member = %name, generation, addr = %new_addr, "checking a new life");
        self.send(new_addr, &[ping]);
        if let Some((addr, seq, _)) = old {
            self.send(
                addr,
                &[Message::Ping(wire::Ping::new(seq, &name, known_generation))],
            );
        }
        let deadline = now + self.membership.scale(self.config.probe_timeout);
        self.life_checks.insert(
            name,
            LifeCheck {
                alive,
                new_seq,
                new_answered: false,
                old,
                deadline,
            },
        );
    }

    /// An ack that answers a life check; returns whether it did.
    pub(crate) fn on_life_check_ack(&mut self, now: Instant, from: SocketAddr, seq: u64) -> bool {
        let Some((name, settled)) = self.life_checks.answer(from, seq) else {
            return false;
        };
        if settled {
            self.finish_life_check(now, &name);
        }
        true
    }

    pub(crate) fn life_check_timers(&mut self, now: Instant) {
        for name in self.life_checks.due(now) {
            self.finish_life_check(now, &name);
        }
    }

    fn finish_life_check(&mut self, now: Instant, name: &str) {
        let Some(check) = self.life_checks.remove(name) else {
            return;
        };
        let old_answered = check.old.is_some_and(|(_, _, answered)| answered);
        if old_answered {
            let (addr, generation) = (check.alive.addr, check.alive.generation);
            if check.new_answered {
                self.note_conflict(now, name, addr, generation);
            } else {
                self.stats.lives_unverified += 1;
            }
            return;
        }
        if !check.new_answered {
            self.stats.lives_unverified += 1;
            debug!(member = %name, generation = check.alive.generation, "a new life did not answer: dropped");
            return;
        }
        // The table may have changed while the check ran (a newer life came, or the member
        // was admitted through another path).
        match self.membership.get(name) {
            Some(known) if known.generation > check.alive.generation => {}
            // The life this node lists, failed or left, answered for itself: back alive
            // (`Membership::alive`).
            Some(known) if known.generation == check.alive.generation => {
                self.apply_alive(now, check.alive, true);
            }
            Some(_) => {
                info!(member = %name, generation = check.alive.generation, "member restarted");
                self.membership.forget_suspicion(name);
                let (addr, generation) = (check.alive.addr, check.alive.generation);
                self.admit_life(now, check.alive);
                self.pay_owed_state(now, addr);
                // A new life may know nobody (restarted without seeds or saved members).
                self.greet_member(addr);
                // It has just answered at its address: its path can be calibrated now
                // rather than at its first direct probe, up to a round of probes later.
                self.calibrate(now, name, generation);
            }
            None => {
                if self.membership.len() >= self.config.max_members {
                    self.stats.dropped_table_full += 1;
                    return;
                }
                if self.membership.live_at(check.alive.addr).is_some() {
                    self.stats.lives_unverified += 1;
                    return;
                }
                info!(member = %name, addr = %check.alive.addr, "member joined");
                let (addr, generation) = (check.alive.addr, check.alive.generation);
                self.admit_life(now, check.alive);
                self.pay_owed_state(now, addr);
                self.calibrate(now, name, generation);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use super::*;

    fn check(addr: SocketAddr, new_seq: u64, old: Option<(SocketAddr, u64, bool)>) -> LifeCheck {
        LifeCheck {
            alive: wire::Alive {
                name: "n".into(),
                addr,
                generation: 2,
                incarnation: 0,
                tags: Default::default(),
            },
            new_seq,
            new_answered: false,
            old,
            deadline: Instant::now(),
        }
    }

    #[test]
    fn an_ack_finds_its_check_by_sequence_number_only_from_the_address_pinged() {
        let (a, b): (SocketAddr, SocketAddr) =
            (([127, 0, 0, 1], 1).into(), ([127, 0, 0, 2], 1).into());
        let mut checks = LifeChecks::default();
        checks.insert("n".into(), check(a, 7, Some((b, 9, false))));
        assert_eq!(
            checks.answer(b, 7),
            None,
            "the new life's number from the old address"
        );
        assert_eq!(checks.answer(a, 8), None, "a number never sent");
        assert_eq!(
            checks.answer(a, 7),
            Some(("n".into(), false)),
            "the old life is still to answer"
        );
        assert_eq!(checks.answer(b, 9), Some(("n".into(), true)));
        // A newer check of the same member replaces the old one and its numbers.
        checks.insert("n".into(), check(a, 11, None));
        assert_eq!(checks.answer(b, 9), None);
        assert!(checks.remove("n").is_some());
        assert!(checks.by_seq.is_empty() && checks.checks.is_empty());
    }
}
