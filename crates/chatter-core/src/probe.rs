//! SWIM probing: the direct `Ping`, the indirect `PingReq` through `k` members, the relays this
//! node runs for others, and the ICMP port-unreachable evidence that shortens the path for a
//! process that is gone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::member::{ProbeOutcome, ProbeRecord};
use crate::node::Node;
use crate::wire::{self, Message};

/// Phase of the probe in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the direct `Ack` until `deadline`.
    Direct,
    /// Waiting for intermediaries' `Ack`/`Nack` until `deadline`.
    Indirect,
}

/// The probe this node is running (at most one at a time).
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) target: String,
    pub(crate) generation: u64,
    pub(crate) addr: SocketAddr,
    pub(crate) seq: u64,
    pub(crate) indirect_seq: u64,
    pub(crate) started: Instant,
    pub(crate) phase: Phase,
    pub(crate) deadline: Instant,
    /// The target's host answered with ICMP port-unreachable.
    pub(crate) unreachable: bool,
    /// Intermediaries asked: (name, address, outcome so far).
    pub(crate) via: Vec<(String, SocketAddr, Option<ProbeOutcome>)>,
}

impl Probe {
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    fn all_nacked(&self) -> bool {
        !self.via.is_empty() && self.via.iter().all(|(_, _, o)| o.is_some())
    }
}

/// An indirect probe run on behalf of another member.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    pub(crate) requester: SocketAddr,
    pub(crate) requester_seq: u64,
    pub(crate) target_addr: SocketAddr,
    pub(crate) deadline: Instant,
}

/// Share of the probe timeout an intermediary waits before answering `Nack`, so that its nack
/// reaches the requester before the requester's own indirect deadline.
const RELAY_TIMEOUT_SHARE: f64 = 0.8;

impl Node {
    /// Starts the next probe of the round-robin, unless one is still running (then the tick
    /// waits for it to end: probes never overlap).
    pub(crate) fn start_probe(&mut self, now: Instant) {
        if let Some(probe) = &self.probe {
            self.next_probe = probe.deadline;
            return;
        }
        let period = self.awareness.scale(self.config.probe_interval);
        self.next_probe = now + period;
        let Some(name) = self.table.next_probe(&mut self.rng).map(String::from) else {
            return;
        };
        let Some(target) = self.table.get(&name) else {
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
        let mut messages = vec![Message::Ping(wire::Ping {
            seq,
            target: name.clone(),
            generation,
        })];
        messages.extend(suspect_msg);
        self.probe = Some(Probe {
            target: name,
            generation,
            addr,
            seq,
            indirect_seq,
            started: now,
            phase: Phase::Direct,
            deadline: now + self.awareness.scale(self.config.probe_timeout),
            unreachable: false,
            via: Vec::new(),
        });
        self.stats.probes_sent += 1;
        self.send(addr, &messages);
    }

    pub(crate) fn probe_timers(&mut self, now: Instant) {
        let Some(probe) = &self.probe else { return };
        if now < probe.deadline {
            return;
        }
        match probe.phase {
            Phase::Direct => self.go_indirect(now),
            Phase::Indirect => self.finish_failed_probe(now),
        }
    }

    /// The direct probe failed (timeout or ICMP): ask `k` members to probe the target.
    fn go_indirect(&mut self, now: Instant) {
        let Some(probe) = &self.probe else { return };
        let (target, generation, addr, seq) = (
            probe.target.clone(),
            probe.generation,
            probe.addr,
            probe.indirect_seq,
        );
        let via: Vec<(String, SocketAddr, Option<ProbeOutcome>)> = self
            .table
            .random_members(self.config.indirect_checks, &mut self.rng, |m| {
                m.status == crate::MemberStatus::Alive && m.name != target
            })
            .into_iter()
            .map(|m| (m.name.to_string(), m.addr(), None))
            .collect();
        let wait = self.awareness.scale(self.config.probe_timeout);
        if let Some(probe) = &mut self.probe {
            probe.phase = Phase::Indirect;
            probe.deadline = now + wait;
            probe.via = via.clone();
        }
        let unreachable = self.probe.as_ref().is_some_and(|p| p.unreachable);
        if self.config.retry_direct_probe && !unreachable {
            // Answered under the indirect sequence number, like the relays' forwarded acks.
            self.send(
                addr,
                &[Message::Ping(wire::Ping {
                    seq,
                    target: target.clone(),
                    generation,
                })],
            );
        }
        if via.is_empty() {
            // Nobody to ask: with ICMP evidence the verdict need not wait.
            if self.probe.as_ref().is_some_and(|p| p.unreachable) {
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
        let Some(probe) = self.probe.take() else {
            return;
        };
        self.stats.probes_failed += 1;
        // Lifeguard: each missing nack hints that this node, not the target, is unwell. ICMP
        // from the target's host proves this node's network path works.
        let missing = probe.via.iter().filter(|(_, _, o)| o.is_none()).count() as i64;
        if !probe.unreachable {
            self.awareness.apply(missing);
        }
        let mut records = vec![ProbeRecord {
            at: probe.started,
            via: None,
            outcome: if probe.unreachable {
                ProbeOutcome::Unreachable
            } else {
                ProbeOutcome::Timeout
            },
        }];
        records.extend(probe.via.iter().map(|(name, _, outcome)| ProbeRecord {
            at: probe.started,
            via: Some(name.clone()),
            outcome: outcome.unwrap_or(ProbeOutcome::Timeout),
        }));
        debug!(target = %probe.target, unreachable = probe.unreachable, "probe failed");
        self.suspect_after_probe(
            now,
            &probe.target,
            probe.generation,
            probe.unreachable,
            records,
        );
    }

    pub(crate) fn on_ping(&mut self, now: Instant, from: SocketAddr, ping: wire::Ping) {
        if ping.target != self.me.name {
            // Another process used to live at this address; do not answer for it.
            return;
        }
        if ping.generation != self.me.generation {
            // Not this life: a previous one the prober still knows (tell it about this one),
            // or a life someone forged in our name, which must not pass its check (`lives.rs`)
            // on our answer.
            if !self.leaving {
                self.broadcast_self_alive(now);
            }
            return;
        }
        self.send(from, &[Message::Ack(wire::Ack { seq: ping.seq })]);
    }

    /// An ack counts only from where the ping went: the direct sequence number from the
    /// target's address, the indirect one from the target (the direct retry) or from one of the
    /// intermediaries asked, and a relay's from the target it pinged. Anything else is dropped
    /// and counted: a forger would otherwise keep a dead member looking alive.
    pub(crate) fn on_ack(&mut self, now: Instant, from: SocketAddr, ack: wire::Ack) {
        if self.on_life_check_ack(now, from, ack.seq) {
            return;
        }
        if let Some(probe) = &self.probe {
            let direct = ack.seq == probe.seq && from == probe.addr;
            let indirect = ack.seq == probe.indirect_seq
                && (from == probe.addr || probe.via.iter().any(|(_, addr, _)| *addr == from));
            if direct || indirect {
                let (target, generation, started) =
                    (probe.target.clone(), probe.generation, probe.started);
                self.probe = None;
                self.stats.probes_acked += 1;
                if direct {
                    self.stats.probe_rtt.record(now.duration_since(started));
                }
                self.awareness.apply(-1);
                let at = self.table.stamp(now);
                self.table.update(&target, |m| {
                    if m.generation == generation {
                        m.last_update = at;
                        if direct {
                            m.set_rtt(now.duration_since(started));
                        }
                    }
                });
                return;
            }
        }
        if self
            .relays
            .get(&ack.seq)
            .is_some_and(|relay| relay.target_addr == from)
        {
            if let Some(relay) = self.relays.remove(&ack.seq) {
                self.send(
                    relay.requester,
                    &[Message::Ack(wire::Ack {
                        seq: relay.requester_seq,
                    })],
                );
            }
            return;
        }
        self.stats.dropped_unexpected_ack += 1;
    }

    pub(crate) fn on_nack(&mut self, now: Instant, from: SocketAddr, nack: wire::Nack) {
        let Some(probe) = &mut self.probe else { return };
        if nack.seq != probe.indirect_seq || probe.phase != Phase::Indirect {
            return;
        }
        if let Some(slot) = probe.via.iter_mut().find(|(_, addr, _)| *addr == from) {
            slot.2 = Some(if nack.unreachable {
                ProbeOutcome::NackUnreachable
            } else {
                ProbeOutcome::Nack
            });
        }
        if probe.all_nacked() {
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
            .table
            .get(&req.target)
            .filter(|t| t.status.is_live() && t.generation == req.generation)
            .map(|t| t.addr());
        let Some(target_addr) = target_addr.filter(|_| self.table.live_at(from).is_some()) else {
            self.stats.ping_reqs_refused += 1;
            return;
        };
        if self.relays.len() >= self.config.max_pending_indirect {
            self.stats.dropped_indirect_overload += 1;
            return;
        }
        let seq = self.next_seq();
        let wait: Duration = self
            .awareness
            .scale(self.config.probe_timeout)
            .mul_f64(RELAY_TIMEOUT_SHARE);
        self.relays.insert(
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
            &[Message::Ping(wire::Ping {
                seq,
                target: req.target,
                generation: req.generation,
            })],
        );
    }

    pub(crate) fn relay_timers(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| now >= r.deadline)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            if let Some(relay) = self.relays.remove(&seq) {
                self.send(
                    relay.requester,
                    &[Message::Nack(wire::Nack {
                        seq: relay.requester_seq,
                        unreachable: false,
                    })],
                );
            }
        }
    }

    /// ICMP port-unreachable came back for a datagram sent to `dst`: the host is up and nothing
    /// listens on that port. Used as evidence for a probe in flight, never as a verdict alone.
    pub fn handle_unreachable(&mut self, now: Instant, dst: SocketAddr) {
        self.stats.unreachable_reports += 1;
        let relays: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| r.target_addr == dst)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in relays {
            if let Some(relay) = self.relays.remove(&seq) {
                self.send(
                    relay.requester,
                    &[Message::Nack(wire::Nack {
                        seq: relay.requester_seq,
                        unreachable: true,
                    })],
                );
            }
        }
        let Some(probe) = &mut self.probe else { return };
        if probe.addr != dst {
            return;
        }
        probe.unreachable = true;
        if probe.phase == Phase::Direct {
            self.go_indirect(now);
        }
    }
}
