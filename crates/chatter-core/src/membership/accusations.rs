//! Accusations: the rules for `Suspect` and `Failed` about other members, this node's own
//! failed probes, and suspicion timers running out (Lifeguard's dynamic suspicion).

use std::time::Instant;

use tracing::{debug, info};

use super::Membership;
use crate::config::Config;
use crate::member::{Confirmation, Evidence, Member, MemberStatus, ProbeRecord};
use crate::suspicion::Suspicion;
use crate::wire;

/// Evidence lists keep at most this many entries (newest kept).
const MAX_EVIDENCE_ENTRIES: usize = 16;

fn push_bounded<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= MAX_EVIDENCE_ENTRIES {
        list.remove(0);
    }
    list.push(item);
}

/// What this node's own failed probe found besides the silence of the member's process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    /// ICMP port-unreachable came back from the member's host: the process is gone.
    pub(crate) unreachable: bool,
    /// The member's host was silent to a host check on a trusted path, and this node's own
    /// network worked: the host is gone or cut off.
    pub(crate) host_silent: bool,
    /// The member is flap-damped (`flap_damping.rs`): a silent host does not cap its
    /// suspicion.
    pub(crate) damped: bool,
}

impl Findings {
    /// Caps the suspicion `s` as the findings allow.
    fn apply(self, s: &mut Suspicion, config: &Config) {
        if self.unreachable {
            s.make_strong(config.unreachable_suspicion_timeout);
        }
        if self.host_silent && !self.damped {
            s.make_strong(config.silent_host_suspicion_timeout);
        }
    }
}

/// What a silent host found after the probe ended did to a running suspicion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostSilent {
    /// The member is no longer suspect in that life: nothing.
    NotSuspect,
    /// The suspicion is capped at `Config::silent_host_suspicion_timeout`.
    Capped,
    /// The member is flap-damped: noted in the evidence, the timeout unchanged.
    Damped,
}

/// What an accusation (`Suspect`, or a `Failed` taken as one) about another member did.
// Returned by one call and matched at once, never stored: boxing would only cost an
// allocation per accusation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum SuspectOutcome {
    /// The accuser may not give evidence about the subject: dropped.
    NotWitness,
    /// Nothing changed (unknown member, another life, an older incarnation, a verdict already
    /// given, or a confirmation already counted).
    Ignored,
    /// A new suspicion: the member (if still in the table) and the `Suspect` to gossip.
    Started(Option<(Member, wire::Suspect)>),
    /// An independent confirmation, or stronger evidence, of a running suspicion: gossip the
    /// accusation on.
    Confirmed,
}

/// What a `Failed` about another member did.
#[derive(Debug)]
pub(crate) enum FailedOutcome {
    /// The accuser may not give evidence about the subject: dropped.
    NotWitness,
    /// Nothing changed.
    Ignored,
    /// The verdict is taken: the failed member and the `Failed` to gossip.
    Verdict(Member, wire::Failed),
    /// Too early for a verdict: taken as a suspicion instead.
    Suspicion(SuspectOutcome),
}

/// What this node's own failed probe did to its target.
// Returned by one call and matched at once, never stored: boxing would only cost an
// allocation per accusation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum AfterProbe {
    /// Nothing (another life, or a verdict already given).
    Ignored,
    /// This node now suspects the target (see [`SuspectOutcome::Started`]).
    Raised(Option<(Member, wire::Suspect)>),
    /// This node's probe confirmed a running suspicion: gossip this `Suspect` if any.
    Confirmed(Option<wire::Suspect>),
}

impl Membership {
    /// Applies a `Suspect` about another member (`suspect.name` is not `me`).
    pub(crate) fn suspect(
        &mut self,
        now: Instant,
        me: &str,
        suspect: &wire::Suspect,
        config: &Config,
    ) -> SuspectOutcome {
        if !self.is_witness(me, &suspect.from, &suspect.name) {
            // Lifeguard's evidence counts only from members: an invented accuser could
            // otherwise confirm a suspicion, or shorten it with `unreachable`, many times over.
            return SuspectOutcome::NotWitness;
        }
        let Some(known) = self.table.get(&suspect.name) else {
            return SuspectOutcome::Ignored;
        };
        if suspect.generation != known.generation || suspect.incarnation < known.incarnation {
            return SuspectOutcome::Ignored;
        }
        match known.status {
            MemberStatus::Alive => SuspectOutcome::Started(self.start_suspicion(
                now,
                &suspect.name,
                suspect.incarnation,
                &suspect.from,
                Findings {
                    unreachable: suspect.unreachable,
                    ..Findings::default()
                },
                Vec::new(),
                config,
            )),
            MemberStatus::Suspect if suspect.incarnation > known.incarnation => {
                SuspectOutcome::Started(self.start_suspicion(
                    now,
                    &suspect.name,
                    suspect.incarnation,
                    &suspect.from,
                    Findings {
                        unreachable: suspect.unreachable,
                        ..Findings::default()
                    },
                    Vec::new(),
                    config,
                ))
            }
            MemberStatus::Suspect => {
                if self.confirm_suspicion(now, me, suspect, config) {
                    SuspectOutcome::Confirmed
                } else {
                    SuspectOutcome::Ignored
                }
            }
            MemberStatus::Failed | MemberStatus::Left => SuspectOutcome::Ignored,
        }
    }

    /// This node's probe of `name`'s life `generation` failed: suspect it, or count this node's
    /// probe as a confirmation of a running suspicion.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn probe_failed(
        &mut self,
        now: Instant,
        me: &str,
        name: &str,
        generation: u64,
        findings: Findings,
        records: Vec<ProbeRecord>,
        config: &Config,
    ) -> AfterProbe {
        let Some(known) = self.table.get(name) else {
            return AfterProbe::Ignored;
        };
        if known.generation != generation {
            return AfterProbe::Ignored;
        }
        match known.status {
            MemberStatus::Alive => {
                let incarnation = known.incarnation;
                AfterProbe::Raised(self.start_suspicion(
                    now,
                    name,
                    incarnation,
                    me,
                    findings,
                    records,
                    config,
                ))
            }
            MemberStatus::Suspect => {
                // Our own failed probe of a member someone else suspects is an independent
                // confirmation (Lifeguard): it shortens the timeout everywhere once gossiped.
                let Some(s) = self.suspicions.get_mut(name) else {
                    return AfterProbe::Ignored;
                };
                let independent = s.confirm(me);
                findings.apply(s, config);
                let timeout = s.timeout();
                // ICMP evidence new to this suspicion is gossiped; a silent host is this
                // node's own finding and stays local.
                let mut newly_unreachable = false;
                let snapshot = self.table.update_member(name, |m| {
                    if let Some(e) = m.evidence_mut() {
                        newly_unreachable = findings.unreachable && !e.unreachable;
                        for r in records {
                            push_bounded(&mut e.probes, r);
                        }
                        if independent {
                            push_bounded(
                                &mut e.confirmations,
                                Confirmation {
                                    from: me.to_owned(),
                                    at: now,
                                },
                            );
                        }
                        e.unreachable |= findings.unreachable;
                        e.host_silent |= findings.host_silent;
                        e.flap_damped |= findings.host_silent && findings.damped;
                        e.timeout = timeout;
                    }
                });
                let gossip = snapshot
                    .filter(|_| independent || newly_unreachable)
                    .map(|m| wire::Suspect {
                        name: m.name.clone(),
                        generation: m.generation,
                        incarnation: m.incarnation,
                        from: me.to_owned(),
                        unreachable: m.evidence.as_ref().is_some_and(|e| e.unreachable),
                    });
                AfterProbe::Confirmed(gossip)
            }
            MemberStatus::Failed | MemberStatus::Left => AfterProbe::Ignored,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_suspicion(
        &mut self,
        now: Instant,
        name: &str,
        incarnation: u64,
        accuser: &str,
        findings: Findings,
        records: Vec<ProbeRecord>,
        config: &Config,
    ) -> Option<(Member, wire::Suspect)> {
        let unreachable = findings.unreachable;
        let n = self.table.live() + 1;
        let expected = config
            .suspicion_confirmations
            .min(n.saturating_sub(2) as u32);
        let mut suspicion = Suspicion::new(
            now,
            accuser,
            config.suspicion_min_timeout(n),
            config.suspicion_max_timeout(n),
            expected,
        );
        findings.apply(&mut suspicion, config);
        let timeout = suspicion.timeout();
        self.suspicions.insert(name.to_owned(), suspicion);
        let evidence = Evidence {
            accuser: accuser.to_owned(),
            suspected_at: now,
            confirmations: Vec::new(),
            probes: records,
            unreachable,
            host_silent: findings.host_silent,
            flap_damped: findings.host_silent && findings.damped,
            timeout,
            declared_by: None,
            failed_at: None,
        };
        let at = self.table.stamp(now);
        let member = self.table.update_member(name, |m| {
            m.incarnation = incarnation;
            if m.status != MemberStatus::Suspect {
                m.status = MemberStatus::Suspect;
                m.status_since = at;
            }
            m.last_update = at;
            m.set_evidence(Some(evidence));
        })?;
        let host_silent = findings.host_silent;
        info!(member = %name, accuser, unreachable, host_silent, timeout_ms = timeout.as_millis() as u64, "member suspect");
        let gossip = wire::Suspect {
            name: name.to_owned(),
            generation: member.generation,
            incarnation,
            from: accuser.to_owned(),
            unreachable,
        };
        Some((member, gossip))
    }

    /// Counts `suspect` as a confirmation of a running suspicion; returns whether it added
    /// anything (an independent confirmer, or ICMP evidence) worth passing on.
    fn confirm_suspicion(
        &mut self,
        now: Instant,
        me: &str,
        suspect: &wire::Suspect,
        config: &Config,
    ) -> bool {
        let Some(s) = self.suspicions.get_mut(&suspect.name) else {
            return false;
        };
        let independent = suspect.from != me && s.confirm(&suspect.from);
        let known_unreachable = self
            .table
            .get(&suspect.name)
            .and_then(|m| m.evidence())
            .is_some_and(|e| e.unreachable);
        let newly_strong = suspect.unreachable && !known_unreachable;
        if newly_strong {
            s.make_strong(config.unreachable_suspicion_timeout);
        }
        if !independent && !newly_strong {
            return false;
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
        true
    }

    /// A host check started by this node's failed probe of `name`'s life `generation` came
    /// back silent on a trusted path after the probe had ended: caps the running suspicion
    /// at `Config::silent_host_suspicion_timeout`, unless the member is flap-damped. Returns
    /// what it did (nothing if the member is no longer suspect in that life).
    pub(crate) fn host_silent(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        config: &Config,
    ) -> HostSilent {
        let suspect = self
            .table
            .get(name)
            .is_some_and(|m| m.generation == generation && m.status == MemberStatus::Suspect);
        if !suspect || !self.suspicions.contains_key(name) {
            return HostSilent::NotSuspect;
        }
        let damped = self.flap_damped(now, name, config);
        let Some(s) = self.suspicions.get_mut(name) else {
            return HostSilent::NotSuspect;
        };
        if !damped {
            s.make_strong(config.silent_host_suspicion_timeout);
        }
        let timeout = s.timeout();
        self.table.update(name, |m| {
            if let Some(e) = m.evidence_mut() {
                e.host_silent = true;
                e.flap_damped |= damped;
                e.timeout = timeout;
            }
        });
        debug!(member = %name, damped, timeout_ms = timeout.as_millis() as u64, "host silent");
        if damped {
            HostSilent::Damped
        } else {
            HostSilent::Capped
        }
    }

    /// Names whose suspicion timer has run out, in name order.
    pub(crate) fn due_suspicions(&self, now: Instant) -> Vec<String> {
        self.suspicions
            .iter()
            .filter(|(_, s)| now >= s.deadline())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Ends the suspicion of `name`; if the member is still suspect, this node declares it
    /// failed: returns the failed member and the `Failed` to gossip.
    pub(crate) fn expire_suspicion(
        &mut self,
        now: Instant,
        me: &str,
        name: &str,
    ) -> Option<(Member, wire::Failed)> {
        self.suspicions.remove(name);
        let known = self.table.get(name)?;
        if known.status != MemberStatus::Suspect {
            return None;
        }
        let failed = wire::Failed {
            name: name.to_owned(),
            generation: known.generation,
            incarnation: known.incarnation,
            from: me.to_owned(),
        };
        self.mark_failed(now, failed)
    }

    /// Applies a `Failed` about another member (`failed.name` is not `me`).
    pub(crate) fn failed(
        &mut self,
        now: Instant,
        me: &str,
        failed: wire::Failed,
        config: &Config,
    ) -> FailedOutcome {
        if !self.is_witness(me, &failed.from, &failed.name) {
            return FailedOutcome::NotWitness;
        }
        let Some(known) = self.table.get(&failed.name) else {
            return FailedOutcome::Ignored;
        };
        if failed.generation != known.generation
            || failed.incarnation < known.incarnation
            || !known.status.is_live()
        {
            return FailedOutcome::Ignored;
        }
        // A verdict is taken from another member only for a suspicion this node has held for
        // at least half the shortest honest suspicion: an honest accuser declares a member
        // failed only after its own suspicion ran its course, and its `Suspect` reached this
        // node long before. A `Failed` that comes sooner (forged, or its `Suspect` was lost)
        // counts as a suspicion instead, which the member can refute: one datagram cannot
        // make a live member failed.
        let n = self.table.live() + 1;
        let shortest = config
            .unreachable_suspicion_timeout
            .min(config.silent_host_suspicion_timeout)
            .min(config.suspicion_min_timeout(n));
        let held = self
            .suspicions
            .get(&failed.name)
            .is_some_and(|s| now.saturating_duration_since(s.started) >= shortest / 2);
        if known.status == MemberStatus::Suspect && held {
            return match self.mark_failed(now, failed) {
                Some((member, failed)) => FailedOutcome::Verdict(member, failed),
                None => FailedOutcome::Ignored,
            };
        }
        let suspect = wire::Suspect {
            name: failed.name,
            generation: failed.generation,
            incarnation: failed.incarnation,
            from: failed.from,
            unreachable: false,
        };
        FailedOutcome::Suspicion(self.suspect(now, me, &suspect, config))
    }

    fn mark_failed(
        &mut self,
        now: Instant,
        failed: wire::Failed,
    ) -> Option<(Member, wire::Failed)> {
        self.suspicions.remove(&failed.name);
        let at = self.table.stamp(now);
        let member = self.table.update_member(&failed.name, |m| {
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
                host_silent: false,
                flap_damped: false,
                timeout: Default::default(),
                declared_by: None,
                failed_at: None,
            });
            evidence.declared_by = Some(failed.from.clone());
            evidence.failed_at = Some(now);
        })?;
        info!(member = %failed.name, declared_by = %failed.from, "member failed");
        Some((member, failed))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod tests {
    use std::time::Duration;

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::membership::AliveOutcome;

    /// This node "me" and members b, c, d, all alive.
    fn membership(now: Instant) -> Membership {
        let mut m = Membership::new(now, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (i, name) in ["b", "c", "d"].into_iter().enumerate() {
            let alive = wire::Alive {
                name: name.into(),
                addr: ([10, 0, 0, i as u8 + 2], 7000).into(),
                generation: 1,
                incarnation: 0,
                tags: Default::default(),
            };
            m.admit(now, &alive, &mut rng);
        }
        m
    }

    fn suspect(name: &str, from: &str) -> wire::Suspect {
        wire::Suspect {
            name: name.into(),
            generation: 1,
            incarnation: 0,
            from: from.into(),
            unreachable: false,
        }
    }

    fn failed(name: &str, from: &str) -> wire::Failed {
        wire::Failed {
            name: name.into(),
            generation: 1,
            incarnation: 0,
            from: from.into(),
        }
    }

    #[test]
    fn only_live_members_other_than_the_subject_may_accuse() {
        let now = Instant::now();
        let config = Config::lan();
        let mut m = membership(now);
        for from in ["b", "stranger"] {
            assert!(matches!(
                m.suspect(now, "me", &suspect("b", from), &config),
                SuspectOutcome::NotWitness
            ));
        }
        assert!(matches!(
            m.suspect(now, "me", &suspect("b", "c"), &config),
            SuspectOutcome::Started(Some(_))
        ));
        assert!(matches!(
            m.suspect(now, "me", &suspect("b", "d"), &config),
            SuspectOutcome::Confirmed
        ));
        assert!(matches!(
            m.suspect(now, "me", &suspect("b", "d"), &config),
            SuspectOutcome::Ignored
        ));
        assert_eq!(m.num_suspicions(), 1);
    }

    #[test]
    fn a_failed_before_the_suspicion_was_held_long_is_only_a_suspicion() {
        let now = Instant::now();
        let config = Config::lan();
        let mut m = membership(now);
        assert!(matches!(
            m.failed(now, "me", failed("b", "c"), &config),
            FailedOutcome::Suspicion(SuspectOutcome::Started(Some(_)))
        ));
        assert_eq!(m.get("b").map(|r| r.status), Some(MemberStatus::Suspect));
        let later = now + config.unreachable_suspicion_timeout + Duration::from_secs(60);
        assert!(matches!(
            m.failed(later, "me", failed("b", "c"), &config),
            FailedOutcome::Verdict(_, _)
        ));
        assert_eq!(m.get("b").map(|r| r.status), Some(MemberStatus::Failed));
        assert_eq!(m.num_suspicions(), 0);
    }

    /// A probe of `name` that failed with its host silent on a trusted path.
    fn silent_host(m: &Membership, now: Instant, name: &str, config: &Config) -> Findings {
        Findings {
            host_silent: true,
            damped: m.flap_damped(now, name, config),
            ..Findings::default()
        }
    }

    /// `name`'s life 1 refutes at incarnation `incarnation` and answers the life check.
    fn refute(m: &mut Membership, now: Instant, name: &str, incarnation: u64) -> bool {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let alive = wire::Alive {
            name: name.into(),
            addr: m.get(name).map(|r| r.addr()).unwrap(),
            generation: 1,
            incarnation,
            tags: Default::default(),
        };
        match m.alive(now, &alive, 100, &mut rng, true) {
            AliveOutcome::Refreshed { flapped, .. } => flapped,
            other => panic!("not refreshed: {other:?}"),
        }
    }

    /// Runs `name`'s suspicion out: returns how long it took.
    fn fail(m: &mut Membership, now: Instant, name: &str) -> Duration {
        let deadline = m.next_suspicion_deadline().unwrap();
        assert!(m.expire_suspicion(deadline, "me", name).is_some());
        deadline - now
    }

    #[test]
    fn a_member_back_in_the_same_life_after_a_silent_host_verdict_gets_the_full_timeout_next() {
        let t0 = Instant::now();
        let config = Config::lan();
        let mut m = membership(t0);
        // First outage: the host is silent, the suspicion is capped, the member failed fast.
        let f = silent_host(&m, t0, "c", &config);
        assert!(!f.damped);
        m.probe_failed(t0, "me", "c", 1, f, Vec::new(), &config);
        assert_eq!(fail(&mut m, t0, "c"), config.silent_host_suspicion_timeout);
        // The link comes back: the member refutes in the same life. A flap.
        let t1 = t0 + Duration::from_secs(3);
        assert!(refute(&mut m, t1, "c", 1));
        m.note_flap(t1, "c", &config);
        assert!(m.flap_damped(t1, "c", &config));
        // Second outage: the host is silent again, but the suspicion keeps Lifeguard's timeout.
        let t2 = t1 + Duration::from_secs(2);
        let f = silent_host(&m, t2, "c", &config);
        assert!(f.damped);
        m.probe_failed(t2, "me", "c", 1, f, Vec::new(), &config);
        let e = m.member("c").and_then(|c| c.evidence).unwrap();
        assert!(e.host_silent && e.flap_damped, "{e:?}");
        let n = m.live() + 1;
        assert!(e.timeout >= config.suspicion_min_timeout(n), "{e:?}");
        // A late host-check answer does not cap it either.
        assert_eq!(m.host_silent(t2, "c", 1, &config), HostSilent::Damped);
        assert!(m.next_suspicion_deadline().unwrap() >= t2 + config.suspicion_min_timeout(n));
        // It comes back before that: a flap again (its host was silent), no verdict given.
        assert!(refute(&mut m, t2 + Duration::from_secs(2), "c", 2));
        assert_eq!(m.get("c").map(|r| r.status), Some(MemberStatus::Alive));
    }

    #[test]
    fn a_new_life_is_not_a_flap_and_starts_undamped() {
        let t0 = Instant::now();
        let config = Config::lan();
        let mut m = membership(t0);
        m.probe_failed(
            t0,
            "me",
            "c",
            1,
            silent_host(&m, t0, "c", &config),
            Vec::new(),
            &config,
        );
        fail(&mut m, t0, "c");
        // The host rebooted: a new generation, not a refutation.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let alive = wire::Alive {
            name: "c".into(),
            addr: m.get("c").map(|r| r.addr()).unwrap(),
            generation: 2,
            incarnation: 0,
            tags: Default::default(),
        };
        let t1 = t0 + Duration::from_secs(30);
        assert!(matches!(
            m.alive(t1, &alive, 100, &mut rng, false),
            AliveOutcome::Restarted(_)
        ));
        assert!(!m.flap_damped(t1, "c", &config));
        // A suspicion of another kind (a lost ack) refuted in the same life is no flap either.
        m.probe_failed(t1, "me", "b", 1, Findings::default(), Vec::new(), &config);
        assert!(!refute(&mut m, t1 + Duration::from_secs(1), "b", 1));
        // A flapped member that restarts loses its penalty with its old row.
        m.probe_failed(
            t1,
            "me",
            "d",
            1,
            silent_host(&m, t1, "d", &config),
            Vec::new(),
            &config,
        );
        assert!(refute(&mut m, t1, "d", 1));
        m.note_flap(t1, "d", &config);
        assert!(m.flap_damped(t1, "d", &config));
        let alive = wire::Alive {
            name: "d".into(),
            addr: m.get("d").map(|r| r.addr()).unwrap(),
            generation: 2,
            incarnation: 0,
            tags: Default::default(),
        };
        m.probe_failed(
            t1,
            "me",
            "d",
            1,
            silent_host(&m, t1, "d", &config),
            Vec::new(),
            &config,
        );
        fail(&mut m, t1, "d");
        assert!(matches!(
            m.alive(t1, &alive, 100, &mut rng, false),
            AliveOutcome::Restarted(_)
        ));
        assert!(!m.flap_damped(t1, "d", &config));
    }

    #[test]
    fn damping_ends_after_its_half_life_and_the_shortcut_returns() {
        let t0 = Instant::now();
        let config = Config::lan();
        let mut m = membership(t0);
        m.probe_failed(
            t0,
            "me",
            "c",
            1,
            silent_host(&m, t0, "c", &config),
            Vec::new(),
            &config,
        );
        fail(&mut m, t0, "c");
        assert!(refute(&mut m, t0, "c", 1));
        m.note_flap(t0, "c", &config);
        let half_life = config.flap_damping_half_life;
        assert!(m.flap_damped(t0 + half_life - Duration::from_secs(1), "c", &config));
        let later = t0 + half_life + Duration::from_secs(1);
        assert!(!m.flap_damped(later, "c", &config));
        let f = silent_host(&m, later, "c", &config);
        m.probe_failed(later, "me", "c", 1, f, Vec::new(), &config);
        assert_eq!(
            fail(&mut m, later, "c"),
            config.silent_host_suspicion_timeout
        );
        // Damping off: never damped.
        let off = Config {
            flap_damping_half_life: Duration::ZERO,
            ..Config::lan()
        };
        assert!(refute(&mut m, later, "c", 2));
        m.note_flap(later, "c", &off);
        assert!(!m.flap_damped(later, "c", &off));
    }

    #[test]
    fn a_suspicion_that_runs_out_is_declared_failed_by_this_node() {
        let now = Instant::now();
        let config = Config::lan();
        let mut m = membership(now);
        assert!(matches!(
            m.probe_failed(now, "me", "c", 1, Findings::default(), Vec::new(), &config),
            AfterProbe::Raised(Some(_))
        ));
        let Some(deadline) = m.next_suspicion_deadline() else {
            panic!("no suspicion running");
        };
        assert!(m
            .due_suspicions(deadline - Duration::from_millis(1))
            .is_empty());
        assert_eq!(m.due_suspicions(deadline), vec!["c".to_owned()]);
        let declared = m.expire_suspicion(deadline, "me", "c");
        assert!(declared
            .is_some_and(|(member, f)| member.status == MemberStatus::Failed && f.from == "me"));
    }
}
