//! SWIM probing: the direct `Ping`, the indirect `PingReq` through `k` members, the relays this
//! node runs for others, the ICMP port-unreachable evidence that shortens the path for a
//! process that is gone, and the host checks that shorten it for a host that is gone
//! (`host_check.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::host_check::{AckVerdict, HostAnswer, Pending, ProbeState, Purpose};
use crate::member::{MemberStatus, ProbeOutcome};
use crate::membership::{Findings, HostSilent};
use crate::node::Node;
use crate::prober::{AckMatch, Phase, Probe, Relay};
use crate::wire::{self, Message};

/// Share of the probe timeout an intermediary waits before answering `Nack`, so that its nack
/// reaches the requester before the requester's own indirect deadline.
const RELAY_TIMEOUT_SHARE: f64 = 0.8;

impl Node {
    /// Starts the next probe of the round-robin, unless one is still running (then the tick
    /// waits for it to end: probes never overlap).
    pub(crate) fn start_probe(&mut self, now: Instant) {
        let period = self.membership.scale(self.config.probe_interval);
        if self.prober.schedule(now + period) {
            return;
        }
        let Some(name) = self.membership.next_probe(&mut self.rng) else {
            return;
        };
        let Some(target) = self.membership.get(&name) else {
            return;
        };
        let (addr, generation, suspect_msg) = (
            target.addr(),
            target.generation,
            // Lifeguard's buddy system: a suspect hears of its suspicion with the probe itself,
            // so it can refute at once instead of waiting for gossip to reach it.
            (target.status == crate::MemberStatus::Suspect).then(|| {
                Message::Suspect(wire::Suspect {
                    name: target.name.to_string(),
                    generation: target.generation,
                    incarnation: target.incarnation,
                    from: self.me.name.clone(),
                    unreachable: target.evidence().is_some_and(|e| e.unreachable),
                })
            }),
        );
        let seq = self.next_seq();
        let indirect_seq = self.next_seq();
        let mut messages = vec![Message::Ping(wire::Ping::new(seq, &name, generation))];
        messages.extend(suspect_msg);
        let deadline = now + self.membership.scale(self.config.probe_timeout);
        self.prober.start(Probe::new(
            name,
            generation,
            addr,
            (seq, indirect_seq),
            now,
            deadline,
        ));
        self.stats.probes_sent += 1;
        self.send(addr, &messages);
    }

    pub(crate) fn probe_timers(&mut self, now: Instant) {
        match self.prober.expired(now) {
            Some(Phase::Direct) => self.go_indirect(now),
            Some(Phase::Indirect) => self.finish_failed_probe(now),
            None => {}
        }
    }

    /// The direct probe failed (timeout or ICMP): ask `k` members to probe the target.
    fn go_indirect(&mut self, now: Instant) {
        let Some(probe) = self.prober.in_flight() else {
            return;
        };
        let (target, generation, addr, seq) = (
            probe.target().to_owned(),
            probe.generation(),
            probe.addr(),
            probe.indirect_seq(),
        );
        let via: Vec<(String, SocketAddr, Option<ProbeOutcome>)> = self
            .membership
            .table()
            .random_members(self.config.indirect_checks, &mut self.rng, |m| {
                m.status == crate::MemberStatus::Alive && m.name != target
            })
            .into_iter()
            .map(|m| (m.name.to_string(), m.addr(), None))
            .collect();
        let wait = self.membership.scale(self.config.probe_timeout);
        let unreachable = self
            .prober
            .go_indirect(now + wait, via.clone())
            .is_some_and(|p| p.unreachable());
        if self.config.host_checks && !unreachable {
            // Does the target's host still answer? Asked alongside the indirect probes, so the
            // answer is in when they end; ICMP already proved the host up.
            let purpose = Purpose::Probe(ProbeState::Running);
            if let Some(id) = self.start_host_check(now, &target, generation, addr, purpose) {
                self.prober.set_host_check(id);
            }
        }
        if self.config.retry_direct_probe && !unreachable {
            // Answered under the indirect sequence number, like the relays' forwarded acks.
            self.send(
                addr,
                &[Message::Ping(wire::Ping::new(seq, &target, generation))],
            );
        }
        if via.is_empty() {
            // Nobody to ask: with ICMP evidence the verdict need not wait.
            if unreachable {
                self.finish_failed_probe(now);
            }
            return;
        }
        for (_, dst, _) in &via {
            self.stats.indirect_probes_sent += 1;
            self.send(
                *dst,
                &[Message::PingReq(wire::PingReq {
                    seq,
                    target: target.clone(),
                    generation,
                    addr,
                })],
            );
        }
    }

    /// No ack by the indirect deadline, or every intermediary answered `Nack`: suspect the
    /// target, with the evidence gathered.
    fn finish_failed_probe(&mut self, now: Instant) {
        let Some(probe) = self.prober.finish() else {
            return;
        };
        self.stats.probes_failed += 1;
        // A silent host is evidence only if this node's own network works: some intermediary
        // answered, or there was none to ask and this node is healthy (Lifeguard's score).
        let network_ok = if probe.asked_intermediaries() {
            probe.any_intermediary_answered()
        } else {
            self.membership.health_score() == 0
        };
        self.host_checks.probe_failed(probe.target(), network_ok);
        let host_silent = probe.host_silent()
            && network_ok
            && self
                .host_checks
                .is_trusted(now, probe.addr(), self.config.host_check_trust_period);
        let damped = host_silent
            && self
                .membership
                .flap_damped(now, probe.target(), &self.config);
        if damped {
            self.stats.host_silent_damped += 1;
        } else if host_silent {
            self.stats.host_silent_suspicions += 1;
        }
        // Lifeguard: each missing nack hints that this node, not the target, is unwell. ICMP
        // from the target's host proves this node's network path works.
        let missing = probe.missing_nacks() as i64;
        if !probe.unreachable() {
            self.membership.note_health(missing);
        }
        debug!(
            target = %probe.target(),
            unreachable = probe.unreachable(),
            host_silent,
            damped,
            "probe failed"
        );
        let findings = Findings {
            unreachable: probe.unreachable(),
            host_silent,
            damped,
        };
        self.suspect_after_probe(
            now,
            probe.target(),
            probe.generation(),
            findings,
            probe.records(),
        );
    }

    pub(crate) fn on_ping(&mut self, from: SocketAddr, ping: wire::Ping) {
        if !ping.is_for(&self.me.name, self.me.generation) {
            // Not this life: another process used to live at this address, a previous life of
            // this node the prober still knows (it suspects that life, and the suspicion of
            // our name brings our refutation with this life), or a life someone forged in our
            // name, which must not pass its check (`lives.rs`) on our answer.
            return;
        }
        if self.leaving {
            // A node that left is gone to the cluster: an answer would let a forged `Alive`
            // of its life pass the check that brings a left member back (`Membership::alive`).
            return;
        }
        self.send(from, &[Message::Ack(wire::Ack { seq: ping.seq })]);
    }

    /// An ack counts only from where the ping went: the direct sequence number from the
    /// target's address, the indirect one from the target (the direct retry) or from one of the
    /// intermediaries asked, and a relay's from the target it pinged. Anything else is dropped
    /// and counted: a forger would otherwise keep a dead member looking alive.
    pub(crate) fn on_ack(&mut self, now: Instant, from: SocketAddr, ack: wire::Ack) {
        if self.on_life_check_ack(now, from, ack.seq) || self.on_recontact_ack(now, from, ack.seq) {
            return;
        }
        match self.prober.match_ack(from, ack.seq) {
            AckMatch::Probe(acked) => {
                self.stats.probes_acked += 1;
                let rtt = now.duration_since(acked.started);
                if acked.direct {
                    self.stats.probe_rtt.record(rtt);
                }
                self.membership.note_health(-1);
                self.host_checks.probe_acked(&acked.target);
                let rtt = acked.direct.then_some(rtt);
                self.membership
                    .note_ack(now, &acked.target, acked.generation, rtt);
                if acked.direct {
                    self.calibrate(now, &acked.target, acked.generation);
                }
            }
            AckMatch::Relay(relay) => {
                self.send(
                    relay.requester,
                    &[Message::Ack(wire::Ack {
                        seq: relay.requester_seq,
                    })],
                );
            }
            AckMatch::Unexpected => self.stats.dropped_unexpected_ack += 1,
        }
    }

    pub(crate) fn on_nack(&mut self, now: Instant, from: SocketAddr, nack: wire::Nack) {
        if self.prober.on_nack(from, nack.seq, nack.unreachable) {
            self.finish_failed_probe(now);
        }
    }

    pub(crate) fn on_ping_req(&mut self, now: Instant, from: SocketAddr, req: wire::PingReq) {
        if self.leaving {
            return;
        }
        if req.target == self.me.name {
            // Asked to probe ourselves: we are evidently alive.
            self.send(from, &[Message::Ack(wire::Ack { seq: req.seq })]);
            return;
        }
        // Relayed only for live members, and only to the target's address as this node knows
        // it: never to an address a stranger names, which would make this node probe (or
        // flood) any host for anyone.
        let target_addr = self
            .membership
            .get(&req.target)
            .filter(|t| t.status.is_live() && t.generation == req.generation)
            .map(|t| t.addr());
        let Some(target_addr) = target_addr.filter(|_| self.membership.live_at(from).is_some())
        else {
            self.stats.ping_reqs_refused += 1;
            return;
        };
        if self.prober.relays_full(self.config.max_pending_indirect) {
            self.stats.dropped_indirect_overload += 1;
            return;
        }
        let seq = self.next_seq();
        let wait: Duration = self
            .membership
            .scale(self.config.probe_timeout)
            .mul_f64(RELAY_TIMEOUT_SHARE);
        self.prober.add_relay(
            seq,
            Relay {
                requester: from,
                requester_seq: req.seq,
                target_addr,
                deadline: now + wait,
            },
        );
        self.stats.indirect_probes_served += 1;
        self.send(
            target_addr,
            &[Message::Ping(wire::Ping::new(
                seq,
                &req.target,
                req.generation,
            ))],
        );
    }

    pub(crate) fn relay_timers(&mut self, now: Instant) {
        for relay in self.prober.expired_relays(now) {
            self.send(
                relay.requester,
                &[Message::Nack(wire::Nack {
                    seq: relay.requester_seq,
                    unreachable: false,
                })],
            );
        }
    }

    /// `name`'s life `generation` has just acked a direct probe, or answered the life check
    /// that admitted it: if its host-check path was silent to a check in this incarnation, the
    /// path is distrusted; else if it is not trusted, or its trust is half way to expiry, its
    /// host is queued for a calibration check (at most `CALIBRATIONS_PER_INTERVAL` start per
    /// probe interval). Only members that answered this node's own
    /// ping are calibrated, so a name a stranger announces costs no host check until a
    /// process answers for it.
    pub(crate) fn calibrate(&mut self, now: Instant, name: &str, generation: u64) {
        if !self.config.host_checks || self.leaving {
            return;
        }
        let Some((addr, incarnation)) = self
            .membership
            .get(name)
            .filter(|m| m.generation == generation && m.status == MemberStatus::Alive)
            .map(|m| (m.addr(), m.incarnation))
        else {
            return;
        };
        let period = self.config.host_check_trust_period;
        match self
            .host_checks
            .on_member_ack(now, name, (generation, incarnation), addr, period)
        {
            AckVerdict::Distrusted => {
                self.stats.host_check_paths_distrusted += 1;
                debug!(member = %name, %addr, "host check path distrusted");
            }
            AckVerdict::QueueFull => self.stats.host_checks_dropped += 1,
            AckVerdict::Queued | AckVerdict::Nothing => {}
        }
        self.start_calibrations(now);
    }

    /// Starts the queued calibrations the rate and the checks in flight allow, of members
    /// still alive in the same life at the same address.
    pub(crate) fn start_calibrations(&mut self, now: Instant) {
        if !self.config.host_checks || self.leaving {
            return;
        }
        let interval = self.membership.scale(self.config.probe_interval);
        loop {
            let membership = &self.membership;
            let next = self.host_checks.next_calibration(now, interval, |c| {
                membership.get(&c.name).is_some_and(|m| {
                    m.generation == c.generation
                        && m.status == MemberStatus::Alive
                        && m.addr() == c.addr
                })
            });
            let Some(c) = next else { break };
            self.stats.host_checks_calibration += 1;
            self.start_host_check(now, &c.name, c.generation, c.addr, Purpose::Calibration);
        }
    }

    /// When [`Node::start_calibrations`] may start the next queued calibration.
    pub(crate) fn next_calibration_deadline(&self) -> Option<Instant> {
        if !self.config.host_checks {
            return None;
        }
        let interval = self.membership.scale(self.config.probe_interval);
        self.host_checks.next_calibration_deadline(interval)
    }

    /// Asks the driver to check the host of `name`'s life `generation` at `addr`; returns the
    /// check's id, or `None` (counted) when too many checks are in flight.
    fn start_host_check(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        addr: SocketAddr,
        purpose: Purpose,
    ) -> Option<u64> {
        let timeout = self
            .config
            .host_check_timeout
            .min(self.config.probe_timeout);
        let (id, forgotten) = self
            .host_checks
            .start(now, name, generation, addr, purpose, timeout);
        self.stats.host_checks_dropped += forgotten;
        match id {
            Some(_) => self.stats.host_checks_started += 1,
            None => self.stats.host_checks_dropped += 1,
        }
        id
    }

    /// The driver's answer to host check `id` (see [`crate::HostCheck`]).
    ///
    /// `Answered` makes the member's path trusted for `Config::host_check_trust_period`.
    /// `Silent` caps the suspicion raised by this node's failed probe at
    /// `Config::silent_host_suspicion_timeout`, if the path is trusted and some intermediary
    /// answered the probe; if instead the member acked (a calibration, or a probe that
    /// succeeded after all), the path drops host checks and is no longer trusted.
    /// `Inconclusive` changes nothing. An answer for an id not in flight (unknown, answered
    /// already, or forgotten after `2 * timeout + 1 s`) is counted in
    /// `Stats::host_checks_unexpected` and changes nothing else.
    pub fn handle_host_check(&mut self, now: Instant, id: u64, answer: HostAnswer) {
        let Some(check) = self.host_checks.take(id) else {
            self.stats.host_checks_unexpected += 1;
            return;
        };
        self.answer_host_check(now, id, check, answer);
        // A calibration ended: the next queued one may start.
        self.start_calibrations(now);
    }

    fn answer_host_check(&mut self, now: Instant, id: u64, check: Pending, answer: HostAnswer) {
        let period = self.config.host_check_trust_period;
        match answer {
            HostAnswer::Answered => {
                self.stats.host_checks_answered += 1;
                self.host_checks.note_answered(now, check.addr, period);
            }
            HostAnswer::Inconclusive => self.stats.host_checks_inconclusive += 1,
            HostAnswer::Silent => {
                self.stats.host_checks_silent += 1;
                match check.purpose {
                    Purpose::Calibration | Purpose::Probe(ProbeState::Acked) => {
                        // Distrusted if the member acks again in this incarnation; the host
                        // may as well have just gone (then the member is suspected and refutes
                        // with a higher incarnation, or fails).
                        let alive_there = self
                            .membership
                            .get(&check.name)
                            .filter(|m| {
                                m.generation == check.generation
                                    && m.status == MemberStatus::Alive
                                    && m.addr() == check.addr
                            })
                            .map(|m| (m.generation, m.incarnation));
                        if let Some(life) = alive_there {
                            self.host_checks
                                .note_silent_while_alive(now, check.addr, life, period);
                        }
                    }
                    Purpose::Probe(ProbeState::Running) => {
                        self.prober.mark_host_silent(id);
                    }
                    Purpose::Probe(ProbeState::Failed { network_ok }) => {
                        let trusted = self.host_checks.is_trusted(now, check.addr, period);
                        if network_ok && trusted {
                            match self.membership.host_silent(
                                now,
                                &check.name,
                                check.generation,
                                &self.config,
                            ) {
                                HostSilent::Capped => self.stats.host_silent_suspicions += 1,
                                HostSilent::Damped => self.stats.host_silent_damped += 1,
                                HostSilent::NotSuspect => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// ICMP port-unreachable came back for a datagram sent to `dst`: the host is up and nothing
    /// listens on that port. Used as evidence for a probe in flight, never as a verdict alone.
    pub fn handle_unreachable(&mut self, now: Instant, dst: SocketAddr) {
        self.stats.unreachable_reports += 1;
        for relay in self.prober.relays_to(dst) {
            self.send(
                relay.requester,
                &[Message::Nack(wire::Nack {
                    seq: relay.requester_seq,
                    unreachable: true,
                })],
            );
        }
        if self.prober.mark_unreachable(dst) == Some(Phase::Direct) {
            self.go_indirect(now);
        }
    }
}
