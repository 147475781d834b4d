//! Key/value writes on the broadcast tree (Plumtree, as for user messages, see `plumtree.rs`).
//!
//! A fresh write is pushed in full, once, along the eager links of the tree; a push that brings
//! nothing new proves a cycle and prunes its link, so after a few writes a write costs about one
//! datagram per node. Behind the push, each node announces how far it holds an owner's writes
//! (`StateHave`, one small entry per owner) on datagrams it sends anyway; a node that hears of
//! writes it lacks and does not receive them within `graft_timeout` pulls them from the
//! announcer with a one-owner digest, and the link becomes eager: the tree repairs itself under
//! loss and churn. Anti-entropy (`sync_interval`) stays the last resort.
//!
//! Before this, every node piggybacked every fresh write `state_retransmit_limit` times to
//! random members, on top of the tree's copies: about `(8 + degree) x N` copies of each write
//! at 50 nodes, which made a cluster's idle traffic with system status on grow with N.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::node::Node;
use crate::wire::{self, DigestRow, Message, StateUpdate};

/// Bytes reserved in a push datagram for the envelope and the message's own fields.
const PUSH_OVERHEAD: usize = 32;

/// Superseded versions carried by one update (about 3 bytes each); anti-entropy covers the rest.
pub(crate) const MAX_SUPERSEDES: usize = 64;

/// A write waiting for the next gossip round to be pushed to the tree's eager neighbours.
#[derive(Debug, Clone)]
pub(crate) struct PendingPush {
    pub(crate) update: StateUpdate,
    /// The neighbour it came from (not pushed back there); `None` for this node's own write.
    pub(crate) from: Option<String>,
}

/// Writes of other members that arrived by push, remembered (bounded, oldest forgotten first)
/// so that a push of nothing new prunes its link only when what it carried came over another
/// tree link. A write that arrived first by anti-entropy or a pull says nothing about the
/// tree's cycles, and pruning on it left nodes with no eager link at all.
#[derive(Debug, Clone, Default)]
pub(crate) struct PushedWrites {
    seen: HashSet<(String, u64, u64)>,
    order: VecDeque<(String, u64, u64)>,
}

impl PushedWrites {
    pub(crate) fn insert(&mut self, update: &StateUpdate, max: usize) {
        let key = write_id(update);
        if self.seen.contains(&key) {
            return;
        }
        while self.order.len() >= max.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.seen.insert(key);
    }

    pub(crate) fn contains(&self, update: &StateUpdate) -> bool {
        self.seen.contains(&write_id(update))
    }
}

fn write_id(update: &StateUpdate) -> (String, u64, u64) {
    (update.node.clone(), update.generation, update.entry.version)
}

impl Node {
    /// Queues a write to push along the tree in a gossip round started at once. A newer write
    /// of the same key replaces a queued one and carries what that one superseded.
    pub(crate) fn queue_state_push(
        &mut self,
        now: Instant,
        update: StateUpdate,
        from: Option<String>,
    ) {
        if self.kv.queue_push(update, from) {
            self.dissemination.wake(now);
        }
    }

    /// Pushes the queued writes to every live eager neighbour (except the one each came from),
    /// as few datagrams as the packet budget allows.
    pub(crate) fn push_state(&mut self) {
        if !self.kv.has_pushes() {
            return;
        }
        let pending = self.kv.take_pushes();
        // Neighbours are recruited on probe ticks; a write soon after joining needs them now.
        self.maintain_neighbours();
        let mut peers = self.live_neighbours(true);
        if peers.is_empty() {
            // Every link of this node was pruned (pushes crossing on two links at once can do
            // that): make them all eager again rather than leave the news to announcements;
            // duplicates prune the redundant ones.
            peers = self.live_neighbours(false);
            let max_neighbours = self.config.max_broadcast_neighbours;
            for (name, _) in &peers {
                self.plumtree.set_eager(name, true, max_neighbours);
            }
        }
        let budget = self
            .budget()
            .saturating_sub(PUSH_OVERHEAD + self.me.name.len());
        for (peer, addr) in peers {
            let mut chunk: Vec<StateUpdate> = Vec::new();
            let mut size = 0;
            for p in pending
                .values()
                .filter(|p| p.from.as_deref() != Some(peer.as_str()))
            {
                let n = update_size(&p.update);
                if !chunk.is_empty() && size + n > budget {
                    self.send_push(addr, std::mem::take(&mut chunk));
                    size = 0;
                }
                size += n;
                chunk.push(p.update.clone());
            }
            if !chunk.is_empty() {
                self.send_push(addr, chunk);
            }
        }
    }

    /// Live neighbours on the broadcast tree: the eager ones, or all of them.
    fn live_neighbours(&self, eager_only: bool) -> Vec<(String, SocketAddr)> {
        self.plumtree
            .neighbours()
            .filter(|(_, eager)| *eager || !eager_only)
            .filter_map(|(n, _)| {
                let m = self.membership.get(n)?;
                m.status.is_live().then(|| (n.clone(), m.addr()))
            })
            .collect()
    }

    fn send_push(&mut self, dst: SocketAddr, updates: Vec<StateUpdate>) {
        self.stats.state_pushes_sent += 1;
        let push = Message::StatePush(wire::StatePush {
            from: self.me.name.clone(),
            updates,
        });
        self.send_with(dst, &[push], false);
    }

    pub(crate) fn on_state_push(&mut self, now: Instant, from: SocketAddr, push: wire::StatePush) {
        if push.updates.is_empty() {
            return;
        }
        let claims: Vec<(u64, u64)> = push
            .updates
            .iter()
            .filter(|u| u.node == self.me.name)
            .map(|u| (u.generation, u.entry.version))
            .collect();
        for (generation, version) in claims {
            self.refute_state_claim(now, generation, version);
        }
        let contradicted = self.report_contradicted_watermarks(now, from, &push);
        let max_neighbours = self.config.max_broadcast_neighbours;
        if !contradicted && push.updates.iter().all(|u| self.kv.knows_write(u)) {
            let over_the_tree = push
                .updates
                .iter()
                .all(|u| u.node == self.me.name || self.kv.was_pushed(u));
            if !over_the_tree {
                return;
            }
            // Nothing new, and it all came over another tree link before: this link closes a
            // cycle. Make it lazy on both sides.
            self.stats.state_pushes_duplicate += 1;
            if self.plumtree.is_eager(&push.from) {
                self.plumtree.set_eager(&push.from, false, max_neighbours);
            }
            self.stats.prunes_sent += 1;
            let prune = Message::Prune(wire::Prune {
                from: self.me.name.clone(),
            });
            self.send(from, &[prune]);
            return;
        }
        if self
            .membership
            .get(&push.from)
            .is_some_and(|m| m.status.is_live())
        {
            self.plumtree.set_eager(&push.from, true, max_neighbours);
        }
        for update in push.updates {
            let node = update.node.clone();
            let before = self.kv.mark(&node);
            if self.apply_update(now, &update) {
                self.kv.note_pushed(&update, self.config.message_cache_size);
                self.queue_state_push(now, update, Some(push.from.clone()));
            }
            if self.kv.mark(&node) != before {
                self.announce_state(&node);
                self.forget_if_caught_up(&node);
            }
        }
    }

    /// Tells the owner of each write in `push` that contradicts this node's watermark for it
    /// (`KvStore::contradicted_watermark`) how far that watermark goes, so that a forged
    /// watermark is refuted at the owner's next write rather than at the next anti-entropy
    /// exchange between the two (`Config::sync_interval` times the cluster size, on average).
    /// The report is a `StateHave` straight to the owner's listed address: a stranger
    /// sending forged writes makes a member send one small datagram to another member, at
    /// most once per replica per probe interval. Returns whether any write was contradicted.
    fn report_contradicted_watermarks(
        &mut self,
        now: Instant,
        from: SocketAddr,
        push: &wire::StatePush,
    ) -> bool {
        let interval = self.config.probe_interval;
        let mut contradicted = false;
        for update in &push.updates {
            if update.node == self.me.name {
                continue;
            }
            let Some(owner_addr) = self
                .membership
                .get(&update.node)
                .filter(|m| m.status.is_live() && m.generation == update.generation)
                .map(|m| m.addr())
            else {
                continue;
            };
            let from_owner = push.from == update.node && from == owner_addr;
            let Some(watermark) = self
                .kv
                .contradicted_watermark(update, from_owner, now, interval)
            else {
                continue;
            };
            contradicted = true;
            self.stats.state_claims_reported += 1;
            let have = Message::StateHave(wire::StateHave {
                node: update.node.clone(),
                watermark,
            });
            self.send(owner_addr, &[have]);
        }
        contradicted
    }

    /// Announces how far this node holds `node`'s writes, on datagrams sent anyway. One entry
    /// per owner: a newer watermark replaces the queued one.
    pub(crate) fn announce_state(&mut self, node: &str) {
        let Some((_, watermark)) = self.kv.mark(node) else {
            return;
        };
        if watermark == 0 {
            return;
        }
        let have = Message::StateHave(wire::StateHave {
            node: node.to_owned(),
            watermark,
        });
        let limit = self.config.state_retransmit_limit(self.cluster_size());
        self.dissemination
            .announce(&format!("\u{3}{node}"), wire::message_bytes(&have), limit);
    }

    pub(crate) fn on_state_have(&mut self, now: Instant, from: SocketAddr, have: wire::StateHave) {
        if have.node == self.me.name {
            let generation = self.me.generation;
            self.refute_state_claim(now, generation, have.watermark);
            return;
        }
        if have.watermark == 0 || from == self.me.addr {
            return;
        }
        // The owner's life is the one this node knows: an announcer still on an older life
        // costs at most one pull that brings nothing.
        let Some(generation) = self.membership.get(&have.node).map(|m| m.generation) else {
            return;
        };
        if self.kv.watermark_of(&have.node, generation) >= have.watermark {
            return;
        }
        let graft_at = now + self.config.graft_timeout;
        self.kv.note_announced(
            have.node,
            have.watermark,
            from,
            graft_at,
            self.config.max_members,
        );
    }

    /// Pulls the writes that announcements promised and the tree did not deliver: a `Graft`
    /// (the link becomes eager) and a one-owner digest, answered with a delta. Gives up after
    /// three anti-entropy periods: by then anti-entropy has repaired the replica.
    pub(crate) fn state_graft_timers(&mut self, now: Instant) {
        let due = self
            .kv
            .due_pulls(now, self.config.graft_retry, self.config.sync_interval * 3);
        let max_neighbours = self.config.max_broadcast_neighbours;
        for (node, want, addr) in due {
            let Some(generation) = self.membership.get(&node).map(|m| m.generation) else {
                self.kv.forget_pull(&node);
                continue;
            };
            let watermark = self.kv.watermark_of(&node, generation);
            if watermark >= want {
                self.kv.forget_pull(&node);
                continue;
            }
            if let Some(announcer) = self.name_at(addr) {
                self.plumtree.set_eager(&announcer, true, max_neighbours);
            }
            self.stats.state_grafts_sent += 1;
            let graft = Message::Graft(wire::Graft {
                from: self.me.name.clone(),
                ids: Vec::new(),
            });
            // A chunk covering no names beyond its one row: the announcer answers for this
            // owner only.
            let digest = Message::StateDigest(wire::StateDigest {
                from: self.me.name.clone(),
                fingerprint: self.kv.fingerprint(),
                reply: false,
                after: Some(node.clone()),
                until: Some(node.clone()),
                rows: vec![DigestRow {
                    node,
                    generation: if watermark == 0 { 0 } else { generation },
                    watermark,
                }],
            });
            self.send(addr, &[graft, digest]);
        }
    }

    /// Writes a delta brought: if they answer a pull of this node, the tree below it most
    /// likely missed them too: push them on, as a grafted message is. Deltas of plain
    /// anti-entropy are not pushed: after a join they hold the whole cluster's state, which the
    /// neighbours have, and one racing the tree's own push made duplicates that pruned its
    /// links.
    pub(crate) fn pulled_writes(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: &str,
        generation: u64,
        changed: Vec<wire::WireEntry>,
    ) {
        if !self.kv.pulled_from(node, from) {
            return;
        }
        self.forget_if_caught_up(node);
        self.announce_state(node);
        let sender = self.name_at(from);
        for entry in changed {
            let update = StateUpdate {
                node: node.to_owned(),
                generation,
                entry,
                supersedes: Vec::new(),
            };
            self.kv.note_pushed(&update, self.config.message_cache_size);
            self.queue_state_push(now, update, sender.clone());
        }
    }

    /// The live member at `addr`, searched among the tree's neighbours first, then the table
    /// (a scan, done only when a pull is sent or answered).
    fn name_at(&self, addr: SocketAddr) -> Option<String> {
        let neighbour = self
            .plumtree
            .neighbours()
            .map(|(n, _)| n)
            .find(|n| self.membership.get(n).is_some_and(|m| m.addr() == addr));
        if let Some(name) = neighbour {
            return Some(name.clone());
        }
        self.membership
            .iter()
            .find(|m| m.addr() == addr && m.status.is_live())
            .map(|m| m.name.to_string())
    }

    /// Drops the pending pull for `node` once the replica reached the announced watermark.
    fn forget_if_caught_up(&mut self, node: &str) {
        let generation = self.membership.get(node).map_or(0, |m| m.generation);
        self.kv.forget_pull_if_caught_up(node, generation);
    }

    pub(crate) fn next_state_graft(&self) -> Option<Instant> {
        self.kv.next_pull()
    }
}

/// Estimated encoded size of one update in a push.
fn update_size(u: &StateUpdate) -> usize {
    u.node.len()
        + u.entry.key.len()
        + u.entry.value.as_ref().map_or(0, Vec::len)
        + 24
        + 3 * u.supersedes.len()
}

/// Queue key of a write: one pending push per (owner, key).
pub(crate) fn kv_key(node: &str, key: &str) -> String {
    format!("{node}\u{0}{key}")
}
