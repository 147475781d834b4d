//! Re-contact of failed members: how a member cut off and restored, the far side of a healed
//! partition, or a member restarted without any seed, is found again within about a second.
//!
//! SWIM probes only live members, so once a member is failed nothing reaches it but the
//! occasional anti-entropy with a seed. A host whose link was cut is failed by every other
//! member, and it fails all of them: after the link comes back, each side waits for the
//! other. Here every node, once per jittered `Config::recontact_interval` tick, picks a random
//! member that is not live and, if it is failed, pings that life with a probability chosen so
//! that the cluster as a whole pings each failed member about once per
//! [`Config::recontact_period`] (an interval that grows with the time the member has been
//! failed), spread over the members. The ping carries this node's own `Alive`, so a member
//! restarted at the same address without seeds or saved members (a new life, which does not
//! answer a ping for its previous one) checks and lists this node, and from then on gossips
//! its new life to it. An ack from the failed life opens an anti-entropy exchange with it: the
//! two tables meet, each side learns the verdict against it and refutes, and the refutations
//! spread as usual.
//!
//! Bounds: at most one re-contact datagram per node per tick, whatever the table holds, so a
//! table full of failed members (forged, or a data centre gone) costs no more than one ping a
//! second per node; the pings go only to addresses of members this node listed (never to an
//! address a datagram names), carry nothing piggybacked, and nothing answers them but the
//! ack of a ping. Only the latest re-contact waits for its ack (one entry).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tracing::debug;

use crate::config::Config;
use crate::member::MemberStatus;
use crate::node::Node;
use crate::wire::{self, Message};

/// The re-contact ping waiting for its ack.
#[derive(Debug, Clone)]
struct Pending {
    name: String,
    generation: u64,
    addr: SocketAddr,
    seq: u64,
    deadline: Instant,
}

/// When the next re-contact tick is due, and the ping waiting for its ack.
#[derive(Debug, Clone)]
pub(crate) struct Recontact {
    next_tick: Instant,
    pending: Option<Pending>,
}

impl Recontact {
    /// The first tick of a node started at `now`, at a random point of the first interval so
    /// that nodes started together do not tick together.
    pub(crate) fn new(now: Instant, config: &Config, rng: &mut ChaCha8Rng) -> Self {
        Self {
            next_tick: now
                + config
                    .recontact_interval
                    .mul_f64(rng.random_range(0.0..1.0)),
            pending: None,
        }
    }

    /// When the next tick is due.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.next_tick
    }

    /// Whether a tick is due.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        now >= self.next_tick
    }

    /// Schedules the tick after the one starting now: `recontact_interval` ±50 %, so the ticks
    /// of the members interleave rather than fall together.
    fn schedule(&mut self, now: Instant, config: &Config, rng: &mut ChaCha8Rng) {
        self.next_tick = now
            + config
                .recontact_interval
                .mul_f64(rng.random_range(0.5..1.5));
    }
}

/// The chance that one tick of one node pings the failed member it picked, so that the `live +
/// 1` nodes listing it failed (every live member, this one included), each picking uniformly
/// among `not_live` members that are not live, ping it about once per `period` between them:
/// `interval * not_live / ((live + 1) * period)`, at most 1.
pub(crate) fn ping_chance(
    interval: Duration,
    period: Duration,
    live: usize,
    not_live: usize,
) -> f64 {
    let per_cluster = period.as_secs_f64() * (live as f64 + 1.0);
    if per_cluster <= 0.0 {
        return 1.0;
    }
    (interval.as_secs_f64() * not_live as f64 / per_cluster).min(1.0)
}

impl Node {
    /// One re-contact tick: maybe ping one failed member (see the module documentation).
    pub(crate) fn recontact_round(&mut self, now: Instant) {
        self.recontact.schedule(now, &self.config, &mut self.rng);
        if self.leaving {
            return;
        }
        let live = self.membership.live();
        let not_live = self.membership.len().saturating_sub(live);
        if not_live == 0 {
            return;
        }
        let now_stamp = self.membership.stamp(now);
        let Some((name, generation, addr, failed_for)) = self
            .membership
            .table()
            .random_members(1, &mut self.rng, |m| !m.status.is_live())
            .first()
            .filter(|m| m.status == MemberStatus::Failed)
            .map(|m| {
                (
                    m.name.to_string(),
                    m.generation,
                    m.addr(),
                    now_stamp.since(m.status_since),
                )
            })
        else {
            // A member that left is not contacted: it is gone on purpose. Picking among all
            // members that are not live keeps the pick O(1) expected and the rate per failed
            // member exact.
            return;
        };
        let period = self.config.recontact_period(failed_for);
        let chance = ping_chance(self.config.recontact_interval, period, live, not_live);
        if self.rng.random_range(0.0..1.0) >= chance {
            return;
        }
        let seq = self.next_seq();
        debug!(member = %name, %addr, "re-contacting a failed member");
        let messages = [
            Message::Ping(wire::Ping::new(seq, &name, generation)),
            Message::Alive(self.self_alive()),
        ];
        // Nothing piggybacked: the host is most likely still gone, and updates sent there
        // would use up their transmissions on nobody.
        let payload = wire::encode_packet(self.cluster, &messages);
        self.stats.recontacts_sent += 1;
        self.push_transmit(addr, payload);
        self.recontact.pending = Some(Pending {
            name,
            generation,
            addr,
            seq,
            deadline: now + self.membership.scale(self.config.probe_timeout),
        });
    }

    /// A member this node listed failed is alive again, or a member came back in a new life:
    /// one datagram with this node's `Alive` goes to it. A member back from a cut was cut off
    /// from this node's gossip, so this node's own refutation of a verdict the member holds
    /// against it (a cut-off node fails everybody) may have passed it by: the greeting is
    /// stale there unless it lists this node failed at a lower incarnation, when it checks
    /// and lists this node at once, or at the same one, when it says so
    /// ([`Node::answer_stale_alive`]). A new life started without seeds or saved members
    /// knows nobody: it checks and lists this node, and learns the rest of the cluster from
    /// it. Only a member that has just answered a check at `addr` is greeted (a failed member
    /// comes back only that way, `Membership::alive`, and so does a new life of a live one),
    /// so no forged announcement makes every node send to an address of the forger's choice,
    /// and the greeting is not limited like an answer to a stranger. Cost: one small datagram
    /// per member per comeback, next to the `mult * log(N)` datagrams that carry the news.
    pub(crate) fn greet_member(&mut self, addr: SocketAddr) {
        if self.leaving {
            return;
        }
        self.lift_answer_limit(addr);
        let alive = Message::Alive(self.self_alive());
        self.send(addr, &[alive]);
    }

    /// An `Alive` from a member's own address that cannot clear the verdict here: this node
    /// lists that life failed or suspect at the same or a higher incarnation. The member is
    /// evidently running and has not heard of the verdict (a node cut off suspects and fails
    /// everybody, its gossip went nowhere meanwhile, and nobody else passes a cut-off node's
    /// verdicts on), so it is told at once, in one `Suspect` (Lifeguard's buddy system, which
    /// otherwise waits for this node's next probe of it), and refutes; its refutation then
    /// reaches this node by gossip.
    ///
    /// Bounds: one small datagram per such `Alive`, only to the member's own listed address;
    /// to a failed member (a stranger here) no larger than the datagram that brought it.
    pub(crate) fn answer_stale_alive(&mut self, from: SocketAddr, alive: &wire::Alive) {
        if self.leaving || alive.name == self.me.name || alive.addr != from {
            return;
        }
        let Some(known) = self.membership.get(&alive.name) else {
            return;
        };
        if !matches!(known.status, MemberStatus::Failed | MemberStatus::Suspect)
            || known.generation != alive.generation
            || known.addr() != from
            || alive.incarnation > known.incarnation
        {
            return;
        }
        let suspect = Message::Suspect(wire::Suspect {
            name: alive.name.clone(),
            generation: known.generation,
            incarnation: known.incarnation,
            from: self.me.name.clone(),
            unreachable: false,
        });
        self.send(from, &[suspect]);
    }

    /// A `Suspect` of a previous life of this node from `from`, which is not a live member
    /// here: `from` probes that life (a probe of a suspect carries its suspicion), so this
    /// node restarted without seeds or saved members, and nothing it gossips reaches `from`.
    /// Its new life goes back to `from` at once (within the size of the datagram that
    /// brought the suspicion, as to any stranger), to be checked there (`lives.rs`), instead of
    /// waiting for the old life to fail and be re-contacted.
    pub(crate) fn answer_suspicion_of_previous_life(
        &mut self,
        from: SocketAddr,
        suspect: &wire::Suspect,
    ) {
        if suspect.name != self.me.name
            || suspect.generation >= self.me.generation
            || self.leaving
            || self.membership.live_at(from).is_some()
        {
            return;
        }
        debug!(%from, "a previous life of this node is suspected there: announcing this one");
        let alive = Message::Alive(self.self_alive());
        self.send(from, &[alive]);
    }

    /// An ack: if it answers the pending re-contact from the address pinged, in time, the
    /// failed life is there: open an anti-entropy exchange with it (padded, as to a member
    /// that is not live, so its answer can carry its table), through which both sides learn
    /// the verdicts against them and refute. Returns whether the ack was the re-contact's.
    pub(crate) fn on_recontact_ack(&mut self, now: Instant, from: SocketAddr, seq: u64) -> bool {
        let matches = self
            .recontact
            .pending
            .as_ref()
            .is_some_and(|p| p.seq == seq && p.addr == from && now <= p.deadline);
        if !matches {
            return false;
        }
        let Some(pending) = self.recontact.pending.take() else {
            return false;
        };
        self.stats.recontacts_answered += 1;
        let still_failed = self.membership.get(&pending.name).is_some_and(|m| {
            m.status == MemberStatus::Failed
                && m.generation == pending.generation
                && m.addr() == pending.addr
        });
        if still_failed {
            debug!(member = %pending.name, "a failed member answered: exchanging tables");
            // The ack echoed a random sequence number from the address pinged: the member is
            // there, and the exchange is not an answer to a stranger.
            self.lift_answer_limit(from);
            self.send_sync_request(now, pending.addr);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cluster-wide rate of pings to one failed member is one per period, whatever the
    /// cluster size, and no node pings more than once per tick.
    #[test]
    fn the_cluster_pings_each_failed_member_once_per_period() {
        let s = Duration::from_secs;
        for (live, not_live) in [(4, 1), (19, 1), (99, 3), (999, 10)] {
            let period = s(2);
            let p = ping_chance(s(1), period, live, not_live);
            // Per node per second: one tick, a pick of this member with 1/not_live, then p.
            let per_member_per_second = (live as f64 + 1.0) * p / not_live as f64;
            assert!(
                (per_member_per_second - 0.5).abs() < 1e-9,
                "live {live}, not live {not_live}: {per_member_per_second}"
            );
        }
        // Alone with every other member failed (cut off): a ping every tick, never more.
        assert_eq!(ping_chance(s(1), s(1), 0, 4), 1.0);
        assert_eq!(ping_chance(s(1), s(1), 0, 1000), 1.0);
        assert!(ping_chance(s(1), s(60), 0, 4) < 0.1);
    }
}
