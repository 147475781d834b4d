//! Push-pull anti-entropy of the member table, joining through seeds, and reconnecting to seeds
//! and failed members so that the halves of a healed partition merge again.
//!
//! An exchange opens with a `SyncRequest` carrying the sender's table fingerprint (XOR of row
//! hashes). Equal fingerprints end it there: members in sync pay about 20 bytes. Otherwise the
//! receiver sends its whole table as `SyncState` datagrams within the packet budget (each one
//! merges on its own) and asks for the opener's table in return.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use tracing::debug;

use crate::anti_entropy::FullAnswer;
use crate::member::MemberStatus;
use crate::node::Node;
use crate::wire::{self, MemberState, Message, WireStatus};

/// Bytes reserved in a `SyncState` datagram for the envelope and the message's own fields.
const SYNC_OVERHEAD: usize = 64;

/// Bytes of a stranger's allowance kept for the ping that checks its announcement: an
/// envelope, a 10-byte sequence number, a name of up to `Config::max_name_len` bytes
/// (128 by default) and a generation.
const CHECK_RESERVE: usize = 160;

fn wire_status(status: MemberStatus) -> WireStatus {
    match status {
        MemberStatus::Alive => WireStatus::Alive,
        MemberStatus::Suspect => WireStatus::Suspect,
        MemberStatus::Failed => WireStatus::Failed,
        MemberStatus::Left => WireStatus::Left,
    }
}

impl Node {
    /// Sets the seeds to join through (replacing the previous list; the node's own address is
    /// ignored). Seeds not contacted before are contacted at once; unanswered ones are retried
    /// with exponential backoff while this node knows no live member, and contacted now and
    /// then afterwards (see `Config::reconnect_interval`). Call it again with a re-resolved list
    /// when DNS answers change.
    pub fn join(&mut self, now: Instant, seeds: Vec<SocketAddr>) {
        let fresh = self
            .anti_entropy
            .set_seeds(now, seeds, self.me.addr, &self.config);
        for addr in fresh {
            self.send_sync_request(now, addr);
        }
    }

    /// Sends one join request to `addr` and returns `true`, unless `addr` is this node's own
    /// address or a live member's, or this node is leaving (then `false`, nothing sent).
    ///
    /// Unlike a seed ([`Node::join`]), the address is neither retried nor remembered: it is for
    /// addresses found by LAN discovery (`chatter::discover`), whose members announce
    /// themselves again, so a lost request is repeated by the next announcement heard rather
    /// than by a retry schedule that a stranger's announcements could fill.
    pub fn contact(&mut self, now: Instant, addr: SocketAddr) -> bool {
        if self.leaving || addr == self.me.addr || self.membership.live_at(addr).is_some() {
            return false;
        }
        debug!(%addr, "contacting a discovered member");
        self.send_sync_request(now, addr);
        true
    }

    /// Retries unanswered seeds with exponential backoff while no live member is known.
    pub(crate) fn join_timers(&mut self, now: Instant) {
        if self.leaving || self.membership.live() > 0 {
            return;
        }
        let due = self.anti_entropy.due_seeds(now, self.config.join_retry_max);
        for addr in due {
            debug!(seed = %addr, "contacting seed");
            self.send_sync_request(now, addr);
        }
    }

    pub(crate) fn send_sync_request(&mut self, now: Instant, dst: SocketAddr) {
        self.stats.syncs_started += 1;
        let mut req = wire::SyncRequest {
            from: self.me.name.clone(),
            fingerprint: self.fingerprint(),
            state_fingerprint: self.kv.fingerprint(),
            padding: Vec::new(),
        };
        if self.membership.live_at(dst).is_none() || self.anti_entropy.is_joining() {
            // A seed, a member of the other side of a partition, or (while this node's early
            // exchanges run) a member that has not yet listed this node, answers a node it does
            // not know as a live member with no more bytes than it receives: pad the request to
            // a whole datagram so the answer can carry a first part of its member table.
            let size =
                wire::encode_packet(self.cluster, &[Message::SyncRequest(req.clone())]).len() + 2;
            req.padding = vec![0; self.budget().saturating_sub(size)];
            self.anti_entropy.solicit(now, dst);
        }
        self.send(dst, &[Message::SyncRequest(req)]);
    }

    /// Periodic anti-entropy with one random live member; right after a join, the
    /// `Config::join_syncs` early ones first.
    pub(crate) fn sync_round(&mut self, now: Instant) {
        let target = if self.leaving {
            None
        } else {
            self.membership
                .table()
                .random_members(1, &mut self.rng, |m| m.status.is_live())
                .first()
                .map(|m| m.addr())
        };
        self.anti_entropy.schedule_sync(
            now,
            target.is_some(),
            self.leaving,
            &self.config,
            &mut self.rng,
        );
        if let Some(dst) = target {
            self.send_sync_request(now, dst);
        }
    }

    /// Contacts a seed that is not a live member: a node started with seeds it never listed as
    /// members reaches them this way. Failed members are re-contacted on their own, faster
    /// schedule (`recontact.rs`).
    pub(crate) fn reconnect_round(&mut self, now: Instant) {
        self.anti_entropy.schedule_reconnect(now, &self.config);
        if self.leaving {
            return;
        }
        let live_addrs: Vec<SocketAddr> = self
            .membership
            .iter()
            .filter(|m| m.status.is_live())
            .map(|m| m.addr())
            .collect();
        let candidates: Vec<SocketAddr> = self
            .anti_entropy
            .seed_addrs()
            .filter(|a| !live_addrs.contains(a))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let dst = candidates[self.rng.random_range(0..candidates.len())];
        debug!(addr = %dst, "reconnect attempt");
        self.send_sync_request(now, dst);
    }

    /// Answers an exchange: the member table if the fingerprints differ, then the key/value
    /// digest if those differ, each at most once per peer per `probe_interval`. A stranger's
    /// answer is cut to the size of its request, the member table first: that is what a
    /// joining node needs.
    pub(crate) fn on_sync_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        req: wire::SyncRequest,
    ) {
        let stranger = self.answer_room(from).is_some();
        let members_differ = req.fingerprint != self.fingerprint();
        let states_differ = req.state_fingerprint != self.kv.fingerprint();
        if stranger && (members_differ || states_differ) {
            // A stranger gets a first part of the member table now, and the rest (and the
            // key/value digest that opens that half of the exchange) once it has answered the
            // check of its own announcement (`lives.rs`), as QUIC completes its answer once the
            // client's address is validated.
            self.anti_entropy.owe(now, from, states_differ);
        }
        if !members_differ {
            self.stats.syncs_in_sync += 1;
        } else if self.allow_full_answer(now, from, FullAnswer::Members) {
            self.send_state(from, true);
        }
        if states_differ && !stranger && self.allow_full_answer(now, from, FullAnswer::StateDigest)
        {
            self.send_state_digest(from, true);
        }
    }

    pub(crate) fn on_sync_state(&mut self, now: Instant, from: SocketAddr, state: wire::SyncState) {
        let differed = state.fingerprint != self.fingerprint();
        for row in state.members {
            self.merge_row(now, &state.from, row);
        }
        if state.reply && differed {
            self.send_state(from, false);
        }
    }

    /// Merges one row of a remote table. A remote `Failed` becomes a local suspicion rather
    /// than a verdict (the remote side may be the partitioned one), and reaches the member
    /// itself so it can refute.
    fn merge_row(&mut self, now: Instant, sender: &str, row: MemberState) {
        let alive = wire::Alive {
            name: row.name.clone(),
            addr: row.addr,
            generation: row.generation,
            incarnation: row.incarnation,
            tags: row.tags,
        };
        match row.status {
            WireStatus::Alive => self.on_alive(now, alive),
            WireStatus::Suspect | WireStatus::Failed => {
                if row.name != self.me.name && self.membership.get(&row.name).is_none() {
                    if row.status == WireStatus::Failed {
                        // A tombstone we never knew alive: adopting it would restart its
                        // retention clock here and keep it circulating forever.
                        return;
                    }
                    // Learn the member first; the suspicion then applies to it.
                    self.on_alive(now, alive);
                }
                self.on_suspect(
                    now,
                    wire::Suspect {
                        name: row.name,
                        generation: row.generation,
                        incarnation: row.incarnation,
                        from: sender.to_owned(),
                        unreachable: false,
                    },
                );
            }
            WireStatus::Left => self.on_left(
                now,
                wire::Left {
                    name: row.name,
                    generation: row.generation,
                    incarnation: row.incarnation,
                },
            ),
        }
    }

    /// A member at `addr` was just admitted: if it is a stranger that asked for the table less
    /// than `Config::sync_interval` ago, send it the whole table now.
    pub(crate) fn pay_owed_state(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(digest) = self.anti_entropy.take_owed(now, addr) {
            self.lift_answer_limit(addr);
            self.send_state(addr, false);
            if digest {
                self.send_state_digest(addr, true);
            }
        }
    }

    /// Sends this node's whole table (itself included) to `dst`, split to the packet budget.
    pub(crate) fn send_state(&mut self, dst: SocketAddr, reply: bool) {
        self.stats.sync_states_sent += 1;
        let fingerprint = self.fingerprint();
        // To a stranger, the room left after the answer must still hold the ping that checks
        // the stranger's own announcement (`lives.rs`), which rides in the same datagram.
        let budget = self
            .answer_room(dst)
            .map_or(usize::MAX, |room| room.saturating_sub(CHECK_RESERVE))
            .min(self.budget())
            .saturating_sub(SYNC_OVERHEAD + self.me.name.len());
        let mut rows: Vec<MemberState> = Vec::with_capacity(self.membership.len() + 1);
        rows.push(MemberState {
            name: self.me.name.clone(),
            addr: self.me.addr,
            generation: self.me.generation,
            incarnation: self.me.incarnation,
            status: wire_status(self.me.status),
            tags: self.me.tags.clone(),
        });
        rows.extend(self.membership.iter().map(|m| MemberState {
            name: m.name.to_string(),
            addr: m.addr(),
            generation: m.generation,
            incarnation: m.incarnation,
            status: wire_status(m.status),
            tags: m.tags().clone(),
        }));
        let mut chunk: Vec<MemberState> = Vec::new();
        let mut size = 0;
        let mut chunks = Vec::new();
        for row in rows {
            let row_size = postcard::to_allocvec(&row)
                .map(|b| b.len())
                .unwrap_or(budget);
            if !chunk.is_empty() && size + row_size > budget {
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += row_size;
            chunk.push(row);
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        for members in chunks {
            let msg = Message::SyncState(wire::SyncState {
                from: self.me.name.clone(),
                fingerprint,
                reply,
                members,
            });
            let payload = wire::encode_packet(self.cluster, &[msg]);
            self.push_transmit(dst, payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::testkit::{addr, Net};
    use crate::{Config, Identity, MemberStatus, Node};

    #[test]
    #[allow(clippy::disallowed_methods)] // one base instant for virtual time
    fn a_contacted_address_joins_without_becoming_a_seed() {
        // Two nodes that know nothing of each other: no seeds at all.
        let now = Instant::now();
        let nodes = (0..2)
            .map(|i| {
                let id = Identity::new(format!("n{i}"), addr(i), 1);
                Node::new(id, Config::local(), i as u64, now).unwrap()
            })
            .collect();
        let mut net = Net {
            now,
            nodes,
            crashed: vec![false; 2],
            silent: vec![false; 2],
            cut: vec![false; 2],
            host_silent: vec![false; 2],
            events: Vec::new(),
            tap: None,
        };
        net.run_for(Duration::from_secs(2));
        assert_eq!(net.status(0, 1), None, "strangers before the contact");
        let now = net.now;
        assert!(!net.nodes[0].contact(now, addr(0)), "never itself");
        assert!(net.nodes[0].contact(now, addr(1)));
        net.run_until(Duration::from_secs(10), |net| net.all_see_alive());
        assert_eq!(net.status(1, 0), Some(MemberStatus::Alive));
        let now = net.now;
        assert!(
            !net.nodes[0].contact(now, addr(1)),
            "a live member is not contacted again"
        );
        assert_eq!(net.nodes[0].anti_entropy.seed_addrs().count(), 0);
        assert!(net.nodes[0].contact(now, addr(5)), "an unknown address");
        net.nodes[0].leave(now);
        assert!(!net.nodes[0].contact(now, addr(5)), "not while leaving");
    }
}
