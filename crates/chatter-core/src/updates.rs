//! Membership updates and their precedence rules.
//!
//! A member's life is `(name, generation)`; within a life, a higher incarnation wins, and at
//! equal incarnation `Left > Failed > Suspect > Alive`. A newer generation replaces a previous
//! life at the same address, or at another address once the previous life is failed or left;
//! two *live* lives claiming one name are a conflict, reported and not merged. Only the member
//! itself raises its incarnation, to refute a suspicion (SWIM) or publish new tags.

use std::time::Instant;

use tracing::{debug, info, warn};

use crate::limits::{MAX_GENERATION, MAX_INCARNATION};

use crate::event::Event;
use crate::member::{Confirmation, Evidence, Member, MemberStatus, ProbeRecord};
use crate::node::Node;
use crate::suspicion::Suspicion;
use crate::wire::{self, Message};

/// Evidence lists keep at most this many entries (newest kept).
const MAX_EVIDENCE_ENTRIES: usize = 16;

fn push_bounded<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= MAX_EVIDENCE_ENTRIES {
        list.remove(0);
    }
    list.push(item);
}

impl Node {
    pub(crate) fn on_alive(&mut self, now: Instant, alive: wire::Alive) {
        if alive.name == self.me.name {
            self.on_alive_about_self(now, alive);
            return;
        }
        let Some(known) = self.table.get(&alive.name) else {
            if self.table.len() >= self.config.max_members {
                self.stats.dropped_table_full += 1;
                return;
            }
            // A member this node never heard of is listed once it answers (`lives.rs`).
            self.check_new_life(now, alive, None);
            return;
        };
        if alive.generation < known.generation {
            return;
        }
        if alive.generation > known.generation {
            if known.status.is_live() {
                // The known life may still be there: the new one must prove itself first
                // (`lives.rs`), or a forged generation would displace a live member.
                let known = Some((known.addr(), known.generation));
                self.check_new_life(now, alive, known);
                return;
            }
            info!(member = %alive.name, generation = alive.generation, "member restarted");
            self.suspicions.remove(&alive.name);
            self.admit_life(now, alive);
            return;
        }
        if alive.incarnation <= known.incarnation {
            return;
        }
        if known.addr() != alive.addr {
            // A process keeps its address for its whole life (a new address is a new life, with
            // a new generation): another address for this life is forged, and taking it would
            // let the forger answer the member's probes for it.
            self.stats.dropped_invalid += 1;
            debug!(member = %alive.name, addr = %alive.addr, "dropped an address change within a life");
            return;
        }
        let previous = known.status;
        let changed = known.addr() != alive.addr || *known.tags() != alive.tags;
        let at = self.table.stamp(now);
        let snapshot = self.table.update_member(&alive.name, |m| {
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
        let name = alive.name.clone();
        self.enqueue_broadcast(now, &name, &Message::Alive(alive));
        if let Some(member) = snapshot {
            if previous != MemberStatus::Alive {
                info!(member = %name, was = %previous, "member alive again");
                self.emit(Event::Recovered(member));
            } else if changed {
                self.emit(Event::Updated(member));
            }
        }
    }

    /// Enters a new member, or a new life of a known one, into the table and passes the news on.
    pub(crate) fn admit_life(&mut self, now: Instant, alive: wire::Alive) {
        let member = Member::new(
            alive.name.clone(),
            alive.addr,
            alive.generation,
            alive.incarnation,
            alive.tags.clone(),
            now,
        );
        self.table.insert(&member, &mut self.rng);
        let name = alive.name.clone();
        self.enqueue_broadcast(now, &name, &Message::Alive(alive));
        self.emit(Event::Joined(member));
    }

    fn on_alive_about_self(&mut self, now: Instant, alive: wire::Alive) {
        if alive.generation == self.me.generation {
            if alive.incarnation > self.me.incarnation && !self.leaving {
                // Someone holds a newer incarnation of this very life than we do (a forged or
                // corrupted update, maybe with another address): move past it so our own view
                // wins again. Others never take another address within a life.
                self.raise_incarnation(now, alive.incarnation);
                self.broadcast_self_alive(now);
            }
            return;
        }
        if alive.generation < self.me.generation {
            // Our previous life (at this address or, after a move, another), still gossiped:
            // our own Alive will replace it.
            if !self.dissemination.contains(&self.me.name) && !self.leaving {
                self.broadcast_self_alive(now);
            }
            return;
        }
        let (name, addr, generation) = (alive.name, alive.addr, alive.generation);
        self.note_conflict(now, &name, addr, generation);
    }

    pub(crate) fn on_suspect(&mut self, now: Instant, suspect: wire::Suspect) {
        if suspect.name == self.me.name {
            if suspect.generation == self.me.generation
                && suspect.incarnation >= self.me.incarnation
            {
                self.refute(now, suspect.incarnation);
            }
            return;
        }
        if !self.is_witness(&suspect.from, &suspect.name) {
            // Lifeguard's evidence counts only from members: an invented accuser could
            // otherwise confirm a suspicion, or shorten it with `unreachable`, many times over.
            self.stats.dropped_invalid += 1;
            return;
        }
        let Some(known) = self.table.get(&suspect.name) else {
            return;
        };
        if suspect.generation != known.generation || suspect.incarnation < known.incarnation {
            return;
        }
        match known.status {
            MemberStatus::Alive => self.start_suspicion(
                now,
                &suspect.name,
                suspect.incarnation,
                &suspect.from,
                suspect.unreachable,
                Vec::new(),
            ),
            MemberStatus::Suspect if suspect.incarnation > known.incarnation => self
                .start_suspicion(
                    now,
                    &suspect.name,
                    suspect.incarnation,
                    &suspect.from,
                    suspect.unreachable,
                    Vec::new(),
                ),
            MemberStatus::Suspect => self.confirm_suspicion(now, &suspect),
            MemberStatus::Failed | MemberStatus::Left => {}
        }
    }

    /// Whether `from` may give evidence about `subject`: this node, or a live member other than
    /// the subject itself.
    fn is_witness(&self, from: &str, subject: &str) -> bool {
        from == self.me.name
            || (from != subject && self.table.get(from).is_some_and(|m| m.status.is_live()))
    }

    /// A probe of `name` failed: suspect it (or add to the evidence if already suspect).
    pub(crate) fn suspect_after_probe(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        unreachable: bool,
        records: Vec<ProbeRecord>,
    ) {
        let Some(known) = self.table.get(name) else {
            return;
        };
        if known.generation != generation {
            return;
        }
        match known.status {
            MemberStatus::Alive => {
                let me = self.me.name.clone();
                let incarnation = known.incarnation;
                self.stats.suspicions_raised += 1;
                self.start_suspicion(now, name, incarnation, &me, unreachable, records);
            }
            MemberStatus::Suspect => {
                // Our own failed probe of a member someone else suspects is an independent
                // confirmation (Lifeguard): it shortens the timeout everywhere once gossiped.
                let me = self.me.name.clone();
                let strong_timeout = self.config.unreachable_suspicion_timeout;
                let Some(s) = self.suspicions.get_mut(name) else {
                    return;
                };
                let independent = s.confirm(&me);
                let newly_strong = unreachable && !s.is_strong();
                if newly_strong {
                    s.make_strong(strong_timeout);
                }
                let timeout = s.timeout();
                let snapshot = self.table.update_member(name, |m| {
                    if let Some(e) = m.evidence_mut() {
                        for r in records {
                            push_bounded(&mut e.probes, r);
                        }
                        if independent {
                            push_bounded(
                                &mut e.confirmations,
                                Confirmation {
                                    from: me.clone(),
                                    at: now,
                                },
                            );
                        }
                        e.unreachable |= unreachable;
                        e.timeout = timeout;
                    }
                });
                if independent || newly_strong {
                    if let Some(m) = snapshot {
                        let msg = Message::Suspect(wire::Suspect {
                            name: m.name.clone(),
                            generation: m.generation,
                            incarnation: m.incarnation,
                            from: me,
                            unreachable: m.evidence.as_ref().is_some_and(|e| e.unreachable),
                        });
                        self.enqueue_broadcast(now, &m.name, &msg);
                    }
                }
            }
            MemberStatus::Failed | MemberStatus::Left => {}
        }
    }

    fn start_suspicion(
        &mut self,
        now: Instant,
        name: &str,
        incarnation: u64,
        accuser: &str,
        unreachable: bool,
        records: Vec<ProbeRecord>,
    ) {
        let n = self.cluster_size();
        let expected = self
            .config
            .suspicion_confirmations
            .min(n.saturating_sub(2) as u32);
        let mut suspicion = Suspicion::new(
            now,
            accuser,
            self.config.suspicion_min_timeout(n),
            self.config.suspicion_max_timeout(n),
            expected,
        );
        if unreachable {
            suspicion.make_strong(self.config.unreachable_suspicion_timeout);
        }
        let timeout = suspicion.timeout();
        self.suspicions.insert(name.to_owned(), suspicion);
        let evidence = Evidence {
            accuser: accuser.to_owned(),
            suspected_at: now,
            confirmations: Vec::new(),
            probes: records,
            unreachable,
            timeout,
            declared_by: None,
            failed_at: None,
        };
        let at = self.table.stamp(now);
        let Some(member) = self.table.update_member(name, |m| {
            m.incarnation = incarnation;
            if m.status != MemberStatus::Suspect {
                m.status = MemberStatus::Suspect;
                m.status_since = at;
            }
            m.last_update = at;
            m.set_evidence(Some(evidence));
        }) else {
            return;
        };
        info!(member = %name, accuser, unreachable, timeout_ms = timeout.as_millis() as u64, "member suspect");
        let msg = Message::Suspect(wire::Suspect {
            name: name.to_owned(),
            generation: member.generation,
            incarnation,
            from: accuser.to_owned(),
            unreachable,
        });
        self.enqueue_broadcast(now, name, &msg);
        self.emit(Event::Suspect(member));
    }

    fn confirm_suspicion(&mut self, now: Instant, suspect: &wire::Suspect) {
        let strong_timeout = self.config.unreachable_suspicion_timeout;
        let Some(s) = self.suspicions.get_mut(&suspect.name) else {
            return;
        };
        let independent = suspect.from != self.me.name && s.confirm(&suspect.from);
        let newly_strong = suspect.unreachable && !s.is_strong();
        if newly_strong {
            s.make_strong(strong_timeout);
        }
        if !independent && !newly_strong {
            return;
        }
        let timeout = s.timeout();
        self.table.update(&suspect.name, |m| {
            if let Some(e) = m.evidence_mut() {
                if independent {
                    push_bounded(
                        &mut e.confirmations,
                        Confirmation {
                            from: suspect.from.clone(),
                            at: now,
                        },
                    );
                }
                e.unreachable |= suspect.unreachable;
                e.timeout = timeout;
            }
        });
        debug!(member = %suspect.name, from = %suspect.from, "suspicion confirmed");
        // Pass the confirmation on: others count independent confirmations too.
        self.enqueue_broadcast(now, &suspect.name, &Message::Suspect(suspect.clone()));
    }

    pub(crate) fn suspicion_timers(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .suspicions
            .iter()
            .filter(|(_, s)| now >= s.deadline())
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.suspicions.remove(&name);
            let Some(known) = self.table.get(&name) else {
                continue;
            };
            if known.status != MemberStatus::Suspect {
                continue;
            }
            let failed = wire::Failed {
                name: name.clone(),
                generation: known.generation,
                incarnation: known.incarnation,
                from: self.me.name.clone(),
            };
            self.stats.failures_declared += 1;
            self.mark_failed(now, failed);
        }
    }

    pub(crate) fn on_failed(&mut self, now: Instant, failed: wire::Failed) {
        if failed.name == self.me.name {
            if failed.generation == self.me.generation && failed.incarnation >= self.me.incarnation
            {
                self.refute(now, failed.incarnation);
            }
            return;
        }
        if !self.is_witness(&failed.from, &failed.name) {
            self.stats.dropped_invalid += 1;
            return;
        }
        let Some(known) = self.table.get(&failed.name) else {
            return;
        };
        if failed.generation != known.generation
            || failed.incarnation < known.incarnation
            || !known.status.is_live()
        {
            return;
        }
        // A verdict is taken from another member only for a suspicion this node has held for
        // at least half the shortest honest suspicion: an honest accuser declares a member
        // failed only after its own suspicion ran its course, and its `Suspect` reached this
        // node long before. A `Failed` that comes sooner (forged, or its `Suspect` was lost)
        // counts as a suspicion instead, which the member can refute: one datagram cannot
        // make a live member failed.
        let n = self.cluster_size();
        let shortest = self
            .config
            .unreachable_suspicion_timeout
            .min(self.config.suspicion_min_timeout(n));
        let held = self
            .suspicions
            .get(&failed.name)
            .is_some_and(|s| now.saturating_duration_since(s.started) >= shortest / 2);
        if known.status == MemberStatus::Suspect && held {
            self.mark_failed(now, failed);
            return;
        }
        self.on_suspect(
            now,
            wire::Suspect {
                name: failed.name,
                generation: failed.generation,
                incarnation: failed.incarnation,
                from: failed.from,
                unreachable: false,
            },
        );
    }

    fn mark_failed(&mut self, now: Instant, failed: wire::Failed) {
        self.suspicions.remove(&failed.name);
        let at = self.table.stamp(now);
        let Some(member) = self.table.update_member(&failed.name, |m| {
            m.incarnation = failed.incarnation;
            m.status = MemberStatus::Failed;
            m.status_since = at;
            m.last_update = at;
            let evidence = m.evidence_or_insert_with(|| Evidence {
                accuser: failed.from.clone(),
                suspected_at: now,
                confirmations: Vec::new(),
                probes: Vec::new(),
                unreachable: false,
                timeout: Default::default(),
                declared_by: None,
                failed_at: None,
            });
            evidence.declared_by = Some(failed.from.clone());
            evidence.failed_at = Some(now);
        }) else {
            return;
        };
        info!(member = %failed.name, declared_by = %failed.from, "member failed");
        let name = failed.name.clone();
        self.enqueue_broadcast(now, &name, &Message::Failed(failed));
        self.emit(Event::Failed(member));
    }

    pub(crate) fn on_left(&mut self, now: Instant, left: wire::Left) {
        if left.name == self.me.name {
            if !self.leaving
                && left.generation == self.me.generation
                && left.incarnation >= self.me.incarnation
            {
                self.refute(now, left.incarnation);
            }
            return;
        }
        let Some(known) = self.table.get(&left.name) else {
            return;
        };
        if left.generation != known.generation
            || left.incarnation < known.incarnation
            || known.status == MemberStatus::Left
        {
            return;
        }
        self.suspicions.remove(&left.name);
        let at = self.table.stamp(now);
        let Some(member) = self.table.update_member(&left.name, |m| {
            m.incarnation = left.incarnation;
            m.status = MemberStatus::Left;
            m.status_since = at;
            m.last_update = at;
            m.set_evidence(None);
        }) else {
            return;
        };
        info!(member = %left.name, "member left");
        let name = left.name.clone();
        self.enqueue_broadcast(now, &name, &Message::Left(left));
        self.emit(Event::Left(member));
    }

    /// Someone suspects (or declared failed) this very life: raise the incarnation above the
    /// accusation and gossip it. Lifeguard: being suspected hints at our own slowness.
    fn refute(&mut self, now: Instant, accused_incarnation: u64) {
        if self.leaving {
            return;
        }
        self.raise_incarnation(now, accused_incarnation);
        self.stats.suspicions_refuted += 1;
        self.awareness.apply(1);
        debug!(incarnation = self.me.incarnation, "refuting suspicion");
        self.broadcast_self_alive(now);
    }

    /// Raises this life's incarnation above both its own and `above`. Incarnations from the
    /// wire are at most `MAX_INCARNATION` (`limits.rs`); when the next one would pass it (an
    /// accusation forged at the limit), this node begins a new life at the same address
    /// instead, which every member takes over the old one: the live holder of a name always
    /// has a way to win.
    pub(crate) fn raise_incarnation(&mut self, now: Instant, above: u64) {
        match self
            .me
            .incarnation
            .max(above)
            .checked_add(1)
            .filter(|&n| n <= MAX_INCARNATION)
        {
            Some(next) => self.me.incarnation = next,
            None => self.renew_life(),
        }
        self.me.last_update = now;
    }

    /// Begins a new life and announces it (see [`Node::raise_incarnation`]).
    pub(crate) fn begin_new_life(&mut self, now: Instant) {
        self.renew_life();
        self.me.last_update = now;
        self.broadcast_self_alive(now);
    }

    /// Begins a new life: the next generation at incarnation 0, with this node's key/values
    /// carried over (peers see a new life and fetch them whole, as after a restart).
    fn renew_life(&mut self) {
        let Some(generation) = self
            .me
            .generation
            .checked_add(1)
            .filter(|&g| g <= MAX_GENERATION)
        else {
            // Unreachable for a generation that passed `Node::new`'s check short of 2^62
            // renewals; staying at the limit keeps the node running.
            warn!("generation at its largest value: cannot begin a new life");
            return;
        };
        self.me.generation = generation;
        self.me.incarnation = 0;
        self.kv.set_generation(generation);
        self.stats.lives_renewed += 1;
        warn!(
            generation,
            "incarnation reached its largest honest value (forged accusations): beginning a new life"
        );
    }
}
