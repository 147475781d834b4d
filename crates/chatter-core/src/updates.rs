//! Membership updates as `Node` routes them: [`Membership`](crate::membership::Membership)
//! applies the precedence rules and says what happened; here the node gossips the news on,
//! emits the events, counts, and refutes accusations of its own life.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::event::Event;
use crate::member::{MemberStatus, ProbeRecord};
use crate::membership::{
    AfterProbe, AliveOutcome, FailedOutcome, Findings, Membership, Raise, SelfClaim, SuspectOutcome,
};
use crate::node::Node;
use crate::wire::{self, Message};

impl Node {
    pub(crate) fn on_alive(&mut self, now: Instant, alive: wire::Alive) {
        if alive.name == self.me.name {
            self.on_alive_about_self(now, alive);
            return;
        }
        self.apply_alive(now, alive, false);
    }

    /// Applies an `Alive` about another member; `checked`: its life has just answered a check
    /// at its address (`lives.rs`).
    pub(crate) fn apply_alive(&mut self, now: Instant, alive: wire::Alive, checked: bool) {
        let max_members = self.config.max_members;
        match self
            .membership
            .alive(now, &alive, max_members, &mut self.rng, checked)
        {
            AliveOutcome::Stale => {}
            AliveOutcome::TableFull => self.stats.dropped_table_full += 1,
            AliveOutcome::Check(known) => self.check_new_life(now, alive, known),
            // No greeting here: this life was admitted on the word of a datagram, unchecked,
            // and a greeting from every node to an address a forger chose would amplify it.
            AliveOutcome::Restarted(member) => self.announce_admitted(now, alive, member),
            AliveOutcome::AddressChanged => self.stats.dropped_invalid += 1,
            AliveOutcome::Refreshed {
                member,
                previous,
                changed,
                flapped,
            } => {
                let name = alive.name.clone();
                // While damped, every suspicion the member survives is a flap too, whoever
                // raised it: a link that keeps flapping keeps its member damped on every node,
                // not only on those whose own checks met its outages.
                let flapped = flapped
                    || (previous == MemberStatus::Suspect
                        && self.membership.flap_damped(now, &name, &self.config));
                if flapped {
                    self.stats.flaps += 1;
                    self.membership.note_flap(now, &name, &self.config);
                    debug!(member = %name, "member flapped: came back in the same life");
                }
                self.enqueue_broadcast(now, &name, &Message::Alive(alive));
                if let Some(member) = member {
                    if previous == MemberStatus::Failed {
                        self.greet_member(member.addr);
                    }
                    if previous != MemberStatus::Alive {
                        info!(member = %name, was = %previous, "member alive again");
                        self.emit(Event::Recovered(member));
                    } else if changed {
                        self.emit(Event::Updated(member));
                    }
                }
            }
        }
    }

    /// Enters a new member, or a new life of a known one, into the table and passes the news on.
    pub(crate) fn admit_life(&mut self, now: Instant, alive: wire::Alive) {
        let member = self.membership.admit(now, &alive, &mut self.rng);
        self.announce_admitted(now, alive, member);
    }

    fn announce_admitted(&mut self, now: Instant, alive: wire::Alive, member: crate::Member) {
        let name = alive.name.clone();
        self.enqueue_broadcast(now, &name, &Message::Alive(alive));
        self.emit(Event::Joined(member));
    }

    fn on_alive_about_self(&mut self, now: Instant, alive: wire::Alive) {
        match Membership::judge_self_claim(&self.me, self.leaving, &alive) {
            SelfClaim::Ignore => {}
            SelfClaim::Outbid(incarnation) => {
                self.raise_incarnation(now, incarnation);
                self.broadcast_self_alive(now);
            }
            SelfClaim::Reannounce => {
                if !self.dissemination.contains(&self.me.name) {
                    self.broadcast_self_alive(now);
                }
            }
            SelfClaim::Conflict => {
                let (name, addr, generation) = (alive.name, alive.addr, alive.generation);
                self.note_conflict(now, &name, addr, generation);
            }
        }
    }

    pub(crate) fn on_suspect(&mut self, now: Instant, suspect: wire::Suspect) {
        if suspect.name == self.me.name {
            if Membership::must_refute(&self.me, suspect.generation, suspect.incarnation) {
                self.refute(now, suspect.incarnation);
            }
            return;
        }
        let outcome = self
            .membership
            .suspect(now, &self.me.name, &suspect, &self.config);
        self.route_suspicion(now, outcome, suspect);
    }

    /// Does what an accusation of another member asks: gossip, events, counts.
    fn route_suspicion(&mut self, now: Instant, outcome: SuspectOutcome, suspect: wire::Suspect) {
        match outcome {
            SuspectOutcome::NotWitness => self.stats.dropped_invalid += 1,
            SuspectOutcome::Ignored => {}
            SuspectOutcome::Started(started) => self.announce_suspicion(now, started),
            SuspectOutcome::Confirmed => {
                // Pass the confirmation on: others count independent confirmations too.
                let name = suspect.name.clone();
                self.enqueue_broadcast(now, &name, &Message::Suspect(suspect));
            }
        }
    }

    fn announce_suspicion(
        &mut self,
        now: Instant,
        started: Option<(crate::Member, wire::Suspect)>,
    ) {
        if let Some((member, gossip)) = started {
            let name = gossip.name.clone();
            self.enqueue_broadcast(now, &name, &Message::Suspect(gossip));
            self.emit(Event::Suspect(member));
        }
    }

    /// A probe of `name` failed: suspect it (or add to the evidence if already suspect).
    pub(crate) fn suspect_after_probe(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        findings: Findings,
        records: Vec<ProbeRecord>,
    ) {
        match self.membership.probe_failed(
            now,
            &self.me.name,
            name,
            generation,
            findings,
            records,
            &self.config,
        ) {
            AfterProbe::Ignored | AfterProbe::Confirmed(None) => {}
            AfterProbe::Raised(started) => {
                self.stats.suspicions_raised += 1;
                self.announce_suspicion(now, started);
            }
            AfterProbe::Confirmed(Some(gossip)) => {
                let name = gossip.name.clone();
                self.enqueue_broadcast(now, &name, &Message::Suspect(gossip));
            }
        }
    }

    pub(crate) fn suspicion_timers(&mut self, now: Instant) {
        for name in self.membership.due_suspicions(now) {
            if let Some((member, failed)) =
                self.membership.expire_suspicion(now, &self.me.name, &name)
            {
                self.stats.failures_declared += 1;
                self.announce_failed(now, member, failed);
            }
        }
    }

    fn announce_failed(&mut self, now: Instant, member: crate::Member, failed: wire::Failed) {
        let name = failed.name.clone();
        self.enqueue_broadcast(now, &name, &Message::Failed(failed));
        self.emit(Event::Failed(member));
    }

    pub(crate) fn on_failed(&mut self, now: Instant, failed: wire::Failed) {
        if failed.name == self.me.name {
            if Membership::must_refute(&self.me, failed.generation, failed.incarnation) {
                self.refute(now, failed.incarnation);
            }
            return;
        }
        let accusation = wire::Suspect {
            name: failed.name.clone(),
            generation: failed.generation,
            incarnation: failed.incarnation,
            from: failed.from.clone(),
            unreachable: false,
        };
        match self
            .membership
            .failed(now, &self.me.name, failed, &self.config)
        {
            FailedOutcome::NotWitness => self.stats.dropped_invalid += 1,
            FailedOutcome::Ignored => {}
            FailedOutcome::Verdict(member, failed) => self.announce_failed(now, member, failed),
            FailedOutcome::Suspicion(outcome) => self.route_suspicion(now, outcome, accusation),
        }
    }

    pub(crate) fn on_left(&mut self, now: Instant, left: wire::Left) {
        if left.name == self.me.name {
            if !self.leaving && Membership::must_refute(&self.me, left.generation, left.incarnation)
            {
                self.refute(now, left.incarnation);
            }
            return;
        }
        if let Some(member) = self.membership.left(now, &left) {
            let name = left.name.clone();
            self.enqueue_broadcast(now, &name, &Message::Left(left));
            self.emit(Event::Left(member));
        }
    }

    /// Someone suspects (or declared failed) this very life: raise the incarnation above the
    /// accusation and gossip it. Lifeguard: being suspected hints at our own slowness.
    fn refute(&mut self, now: Instant, accused_incarnation: u64) {
        if self.leaving {
            return;
        }
        self.raise_incarnation(now, accused_incarnation);
        self.stats.suspicions_refuted += 1;
        self.membership.note_refuted();
        debug!(incarnation = self.me.incarnation, "refuting suspicion");
        self.broadcast_self_alive(now);
    }

    /// Raises this life's incarnation above both its own and `above`, or begins a new life when
    /// the incarnations are used up ([`Membership::raise`]).
    pub(crate) fn raise_incarnation(&mut self, now: Instant, above: u64) {
        let raise = Membership::raise(&self.me, above);
        self.apply_raise(raise);
        self.me.last_update = now;
    }

    /// Begins a new life and announces it (see [`Node::raise_incarnation`]).
    pub(crate) fn begin_new_life(&mut self, now: Instant) {
        let raise = Membership::renew(&self.me);
        self.apply_raise(raise);
        self.me.last_update = now;
        self.broadcast_self_alive(now);
    }

    /// Moves this node's record as `raise` says. A new life is the next generation at
    /// incarnation 0, with this node's key/values carried over (peers see a new life and fetch
    /// them whole, as after a restart).
    fn apply_raise(&mut self, raise: Raise) {
        match raise {
            Raise::Incarnation(next) => self.me.incarnation = next,
            Raise::NewLife(generation) => {
                self.me.generation = generation;
                self.me.incarnation = 0;
                self.kv.set_generation(generation);
                self.stats.lives_renewed += 1;
                warn!(
                    generation,
                    "incarnation reached its largest honest value (forged accusations): beginning a new life"
                );
            }
            Raise::Stuck => {
                // Staying at the limit keeps the node running.
                warn!("generation at its largest value: cannot begin a new life");
            }
        }
    }

    /// Reports a second live process claiming `name`, once per claim; returns whether it was
    /// new.
    pub(crate) fn note_conflict(
        &mut self,
        now: Instant,
        name: &str,
        other_addr: SocketAddr,
        other_generation: u64,
    ) -> bool {
        let Some(conflict) =
            self.membership
                .note_conflict(now, &self.me.name, name, other_addr, other_generation)
        else {
            return false;
        };
        warn!(
            member = name,
            other = %other_addr,
            other_generation,
            "two live processes claim the same member name"
        );
        if name == self.me.name {
            self.me.conflict = Some(conflict.clone());
        }
        self.emit(Event::Conflict(conflict));
        true
    }
}
