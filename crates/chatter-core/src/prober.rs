//! The state of SWIM probing: the probe in flight (at most one), the indirect probes this node
//! relays for others, and when the next probe starts.
//!
//! [`Prober`] owns that state and the rule that makes an ack count: the direct sequence number
//! only from the probed address, the indirect one only from the target or an intermediary that
//! was asked, a relay's only from the target it pinged. Sequence numbers are random (drawn by
//! `Node` from its seeded RNG), so an off-path sender cannot guess them. The round-robin order
//! of targets lives with the member table (`Table::next_probe`), which keeps it in step with
//! joins and removals. Bounds: one probe; at most `Config::max_pending_indirect` relays, each
//! about 64 bytes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::member::{ProbeOutcome, ProbeRecord};

/// Phase of the probe in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the direct `Ack` until `deadline`.
    Direct,
    /// Waiting for intermediaries' `Ack`/`Nack` until `deadline`.
    Indirect,
}

/// The probe this node is running (at most one at a time). Its fields change only through
/// [`Prober`]: the phase, deadline, intermediaries and ICMP evidence follow the protocol's
/// steps, and the sequence numbers never change once drawn.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    target: String,
    generation: u64,
    addr: SocketAddr,
    seq: u64,
    indirect_seq: u64,
    started: Instant,
    phase: Phase,
    deadline: Instant,
    /// The target's host answered with ICMP port-unreachable.
    unreachable: bool,
    /// The host check started when the direct probe timed out, if any.
    host_check: Option<u64>,
    /// That host check came back `Silent`.
    host_silent: bool,
    /// Intermediaries asked: (name, address, outcome so far).
    via: Vec<(String, SocketAddr, Option<ProbeOutcome>)>,
}

impl Probe {
    /// A direct probe of `target`'s life `generation` at `addr`, started `started`, with the
    /// random sequence numbers of its direct (`seq`) and indirect (`indirect_seq`) pings,
    /// waiting for the direct ack until `deadline`.
    pub(crate) fn new(
        target: String,
        generation: u64,
        addr: SocketAddr,
        (seq, indirect_seq): (u64, u64),
        started: Instant,
        deadline: Instant,
    ) -> Self {
        Self {
            target,
            generation,
            addr,
            seq,
            indirect_seq,
            started,
            phase: Phase::Direct,
            deadline,
            unreachable: false,
            host_check: None,
            host_silent: false,
            via: Vec::new(),
        }
    }

    /// Name of the member probed.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// The life probed.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The address probed.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sequence number of the indirect pings (and of the direct retry).
    pub(crate) fn indirect_seq(&self) -> u64 {
        self.indirect_seq
    }

    /// Both sequence numbers, direct and indirect: for tests that play a forger who sees
    /// the pings.
    #[cfg(test)]
    pub(crate) fn seqs(&self) -> [u64; 2] {
        [self.seq, self.indirect_seq]
    }

    /// Whether the target's host answered with ICMP port-unreachable.
    pub(crate) fn unreachable(&self) -> bool {
        self.unreachable
    }

    /// Whether the host check of this probe came back `Silent` (trust is judged apart).
    pub(crate) fn host_silent(&self) -> bool {
        self.host_silent
    }

    /// Whether some intermediary answered (ack or nack): this node's own network delivers.
    pub(crate) fn any_intermediary_answered(&self) -> bool {
        self.via.iter().any(|(_, _, o)| o.is_some())
    }

    /// Whether intermediaries were asked at all.
    pub(crate) fn asked_intermediaries(&self) -> bool {
        !self.via.is_empty()
    }

    /// Intermediaries that answered neither ack nor nack (Lifeguard counts them against this
    /// node's own health).
    pub(crate) fn missing_nacks(&self) -> usize {
        self.via.iter().filter(|(_, _, o)| o.is_none()).count()
    }

    /// The evidence this probe gathered: the direct attempt, then each intermediary's answer.
    pub(crate) fn records(&self) -> Vec<ProbeRecord> {
        let mut records = vec![ProbeRecord {
            at: self.started,
            via: None,
            outcome: if self.unreachable {
                ProbeOutcome::Unreachable
            } else {
                ProbeOutcome::Timeout
            },
        }];
        records.extend(self.via.iter().map(|(name, _, outcome)| ProbeRecord {
            at: self.started,
            via: Some(name.clone()),
            outcome: outcome.unwrap_or(ProbeOutcome::Timeout),
        }));
        records
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

/// A probe that an ack ended.
#[derive(Debug, Clone)]
pub(crate) struct Acked {
    pub(crate) target: String,
    pub(crate) generation: u64,
    pub(crate) started: Instant,
    /// The target itself answered the direct ping (the round trip is a true RTT).
    pub(crate) direct: bool,
}

/// What an ack is to the prober.
#[derive(Debug, Clone)]
pub(crate) enum AckMatch {
    /// It ends the probe in flight.
    Probe(Acked),
    /// It answers a relay: pass an ack on to its requester.
    Relay(Relay),
    /// Nothing this node asked for.
    Unexpected,
}

/// The probe in flight, the relays run for others, and the probe schedule.
#[derive(Debug)]
pub(crate) struct Prober {
    probe: Option<Probe>,
    /// Relays by the sequence number of the ping this node sent the target.
    relays: BTreeMap<u64, Relay>,
    next_probe: Instant,
}

impl Prober {
    /// No probe running; the first starts at `first`.
    pub(crate) fn new(first: Instant) -> Self {
        Self {
            probe: None,
            relays: BTreeMap::new(),
            next_probe: first,
        }
    }

    /// The probe in flight.
    pub(crate) fn in_flight(&self) -> Option<&Probe> {
        self.probe.as_ref()
    }

    /// Whether the next probe is due.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        now >= self.next_probe
    }

    /// If a probe is still running, waits for it (probes never overlap) and returns true;
    /// otherwise schedules the probe after the one about to start at `next`.
    pub(crate) fn schedule(&mut self, next: Instant) -> bool {
        if let Some(probe) = &self.probe {
            self.next_probe = probe.deadline;
            return true;
        }
        self.next_probe = next;
        false
    }

    /// Starts `probe`.
    pub(crate) fn start(&mut self, probe: Probe) {
        self.probe = Some(probe);
    }

    /// The phase of the probe in flight if its deadline has passed.
    pub(crate) fn expired(&self, now: Instant) -> Option<Phase> {
        self.probe
            .as_ref()
            .filter(|p| now >= p.deadline)
            .map(|p| p.phase)
    }

    /// Moves the probe in flight to its indirect phase through `via`, until `deadline`.
    /// Returns the probe as it now is.
    pub(crate) fn go_indirect(
        &mut self,
        deadline: Instant,
        via: Vec<(String, SocketAddr, Option<ProbeOutcome>)>,
    ) -> Option<&Probe> {
        let probe = self.probe.as_mut()?;
        probe.phase = Phase::Indirect;
        probe.deadline = deadline;
        probe.via = via;
        Some(probe)
    }

    /// Ends the probe in flight, which failed.
    pub(crate) fn finish(&mut self) -> Option<Probe> {
        self.probe.take()
    }

    /// Stops probing for good (the node leaves).
    pub(crate) fn abandon(&mut self) {
        self.probe = None;
    }

    /// Matches an ack from `from` with sequence number `seq` against what this node asked
    /// for; a match ends the probe or the relay it answers.
    pub(crate) fn match_ack(&mut self, from: SocketAddr, seq: u64) -> AckMatch {
        if let Some(probe) = &self.probe {
            let direct = seq == probe.seq && from == probe.addr;
            let indirect = seq == probe.indirect_seq
                && (from == probe.addr || probe.via.iter().any(|(_, addr, _)| *addr == from));
            if direct || indirect {
                let acked = Acked {
                    target: probe.target.clone(),
                    generation: probe.generation,
                    started: probe.started,
                    direct,
                };
                self.probe = None;
                return AckMatch::Probe(acked);
            }
        }
        if self
            .relays
            .get(&seq)
            .is_some_and(|relay| relay.target_addr == from)
        {
            if let Some(relay) = self.relays.remove(&seq) {
                return AckMatch::Relay(relay);
            }
        }
        AckMatch::Unexpected
    }

    /// A nack from intermediary `from`; returns true when every intermediary has now answered
    /// without an ack (the probe has failed).
    pub(crate) fn on_nack(&mut self, from: SocketAddr, seq: u64, unreachable: bool) -> bool {
        let Some(probe) = &mut self.probe else {
            return false;
        };
        if seq != probe.indirect_seq || probe.phase != Phase::Indirect {
            return false;
        }
        if let Some(slot) = probe.via.iter_mut().find(|(_, addr, _)| *addr == from) {
            slot.2 = Some(if unreachable {
                ProbeOutcome::NackUnreachable
            } else {
                ProbeOutcome::Nack
            });
        }
        probe.all_nacked()
    }

    /// ICMP port-unreachable for `dst`: if the probe in flight targets it, marks it and
    /// returns its phase.
    pub(crate) fn mark_unreachable(&mut self, dst: SocketAddr) -> Option<Phase> {
        let probe = self.probe.as_mut().filter(|p| p.addr == dst)?;
        probe.unreachable = true;
        Some(probe.phase)
    }

    /// Records that the probe in flight started host check `id`.
    pub(crate) fn set_host_check(&mut self, id: u64) {
        if let Some(probe) = &mut self.probe {
            probe.host_check = Some(id);
        }
    }

    /// Host check `id` came back `Silent`: if it is the probe in flight's, marks the probe and
    /// returns true.
    pub(crate) fn mark_host_silent(&mut self, id: u64) -> bool {
        match &mut self.probe {
            Some(probe) if probe.host_check == Some(id) => {
                probe.host_silent = true;
                true
            }
            _ => false,
        }
    }

    /// Whether `max` relays are already running.
    pub(crate) fn relays_full(&self, max: usize) -> bool {
        self.relays.len() >= max
    }

    /// Runs `relay`, whose ping to the target carries `seq`.
    pub(crate) fn add_relay(&mut self, seq: u64, relay: Relay) {
        self.relays.insert(seq, relay);
    }

    /// Removes and returns the relays whose deadline has passed.
    pub(crate) fn expired_relays(&mut self, now: Instant) -> Vec<Relay> {
        self.take_relays(|r| now >= r.deadline)
    }

    /// Removes and returns the relays that pinged `dst`.
    pub(crate) fn relays_to(&mut self, dst: SocketAddr) -> Vec<Relay> {
        self.take_relays(|r| r.target_addr == dst)
    }

    fn take_relays(&mut self, pred: impl Fn(&Relay) -> bool) -> Vec<Relay> {
        let seqs: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| pred(r))
            .map(|(seq, _)| *seq)
            .collect();
        seqs.into_iter()
            .filter_map(|seq| self.relays.remove(&seq))
            .collect()
    }

    /// The earliest deadline of the prober: the next probe (unless `leaving`), the probe in
    /// flight, the relays.
    pub(crate) fn next_deadline(&self, leaving: bool) -> Option<Instant> {
        (!leaving)
            .then_some(self.next_probe)
            .into_iter()
            .chain(self.probe.as_ref().map(|p| p.deadline))
            .chain(self.relays.values().map(|r| r.deadline))
            .min()
    }
}
