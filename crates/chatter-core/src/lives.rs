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

/// The checks running, by member name.
#[derive(Debug, Clone, Default)]
pub(crate) struct LifeChecks {
    checks: BTreeMap<String, LifeCheck>,
}

impl LifeChecks {
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.checks.values().map(|c| c.deadline).min()
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
            .table
            .live_at(alive.addr)
            .is_some_and(|m| m.name != alive.name)
            || alive.addr == self.me.addr
        {
            // One live member per address: another name there is forged (or stale).
            self.stats.lives_unverified += 1;
            return;
        }
        if let Some(running) = self.life_checks.checks.get(&alive.name) {
            if running.alive.generation >= alive.generation {
                return;
            }
        } else if self.life_checks.checks.len() >= MAX_LIFE_CHECKS {
            self.stats.lives_unverified += 1;
            return;
        }
        let new_seq = self.next_seq();
        let name = alive.name.clone();
        let (new_addr, generation) = (alive.addr, alive.generation);
        let ping = Message::Ping(wire::Ping {
            seq: new_seq,
            target: name.clone(),
            generation,
        });
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
                &[Message::Ping(wire::Ping {
                    seq,
                    target: name.clone(),
                    generation: known_generation,
                })],
            );
        }
        let deadline = now + self.awareness.scale(self.config.probe_timeout);
        self.life_checks.checks.insert(
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
        let Some(name) = self
            .life_checks
            .checks
            .iter()
            .find(|(_, c)| {
                (c.new_seq == seq && c.alive.addr == from)
                    || c.old.is_some_and(|(addr, s, _)| s == seq && addr == from)
            })
            .map(|(name, _)| name.clone())
        else {
            return false;
        };
        let Some(check) = self.life_checks.checks.get_mut(&name) else {
            return false;
        };
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
        if settled {
            self.finish_life_check(now, &name);
        }
        true
    }

    pub(crate) fn life_check_timers(&mut self, now: Instant) {
        let due: Vec<String> = self
            .life_checks
            .checks
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.finish_life_check(now, &name);
        }
    }

    fn finish_life_check(&mut self, now: Instant, name: &str) {
        let Some(check) = self.life_checks.checks.remove(name) else {
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
        match self.table.get(name) {
            Some(known) if known.generation >= check.alive.generation => {}
            Some(_) => {
                info!(member = %name, generation = check.alive.generation, "member restarted");
                self.suspicions.remove(name);
                let addr = check.alive.addr;
                self.admit_life(now, check.alive);
                self.pay_owed_state(now, addr);
            }
            None => {
                if self.table.len() >= self.config.max_members {
                    self.stats.dropped_table_full += 1;
                    return;
                }
                if self.table.live_at(check.alive.addr).is_some() {
                    self.stats.lives_unverified += 1;
                    return;
                }
                info!(member = %name, addr = %check.alive.addr, "member joined");
                let addr = check.alive.addr;
                self.admit_life(now, check.alive);
                self.pay_owed_state(now, addr);
            }
        }
    }
}
