//! The node's side of user messages: broadcasting, the Plumtree eager/lazy push and repair,
//! and keeping the neighbour set in step with membership (see `plumtree.rs`).

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info};

use crate::event::{Delivered, Event};
use crate::member::MemberStatus;
use crate::node::Node;
use crate::plumtree::{BroadcastError, Cached, MessageId};
use crate::wire::{self, Message};

impl Node {
    /// Broadcasts a user message to every live member (this node included: it is delivered
    /// here too, as an [`Event::Message`]). Returns the message's id.
    ///
    /// Fails without sending anything if the tag or payload is over its limit
    /// (`Config::max_tag_len`, `Config::max_message_size`) or the node has left.
    pub fn broadcast(
        &mut self,
        now: Instant,
        tag: &str,
        payload: Vec<u8>,
    ) -> Result<MessageId, BroadcastError> {
        if self.leaving {
            return Err(BroadcastError::Left);
        }
        if tag.is_empty() || tag.len() > self.config.max_tag_len {
            return Err(BroadcastError::BadTag {
                len: tag.len(),
                limit: self.config.max_tag_len,
            });
        }
        if payload.len() > self.config.max_message_size {
            return Err(BroadcastError::TooLarge {
                size: payload.len(),
                limit: self.config.max_message_size,
            });
        }
        let id = MessageId {
            origin: self.me.name.clone(),
            generation: self.me.generation,
            seq: self.plumtree.next_message_seq(),
        };
        self.stats.messages_broadcast += 1;
        let gossip = wire::Gossip {
            id: id.clone(),
            from: self.me.name.clone(),
            hops: 0,
            tag: tag.to_owned(),
            payload,
        };
        self.accept_message(now, gossip, None);
        Ok(id)
    }

    /// A message handed in from outside (`chatter-inject`): broadcast it as our own. Refused
    /// messages (oversize, bad tag) are counted and logged; nothing else changes.
    pub(crate) fn on_inject(&mut self, now: Instant, from: SocketAddr, inject: wire::Inject) {
        match self.broadcast(now, &inject.tag, inject.payload) {
            Ok(id) => {
                self.stats.messages_injected += 1;
                info!(%from, tag = %inject.tag, seq = id.seq, "injected message broadcast");
            }
            Err(err) => {
                self.stats.dropped_message_oversize += 1;
                debug!(%from, error = %err, "injected message refused");
            }
        }
    }

    /// A message seen for the first time: remember, deliver, push to eager neighbours (except
    /// the one it came from) and announce it lazily.
    fn accept_message(&mut self, now: Instant, gossip: wire::Gossip, sender: Option<&str>) {
        let max_origins = self.config.max_members;
        self.plumtree.deliver(
            &gossip.id,
            Cached {
                tag: gossip.tag.clone(),
                payload: gossip.payload.clone(),
                hops: gossip.hops,
                at: now,
            },
            max_origins,
            self.config.message_cache_size,
        );
        self.stats.messages_delivered += 1;
        if sender.is_some() {
            info!(origin = %gossip.id.origin, seq = gossip.id.seq, tag = %gossip.tag, hops = gossip.hops, "message received");
        }
        self.emit(Event::Message(Delivered {
            id: gossip.id.clone(),
            tag: gossip.tag.clone(),
            payload: gossip.payload.clone(),
            hops: gossip.hops,
        }));
        let forward = wire::Gossip {
            from: self.me.name.clone(),
            hops: gossip.hops + 1,
            ..gossip
        };
        self.push_eager(&forward, sender);
        let ihave = Message::IHave(wire::IHave {
            from: self.me.name.clone(),
            id: forward.id.clone(),
        });
        self.enqueue_lazy(&ihave_key(&forward.id), &ihave);
    }

    fn push_eager(&mut self, gossip: &wire::Gossip, except: Option<&str>) {
        let targets: Vec<SocketAddr> = self
            .plumtree
            .eager_peers()
            .filter(|n| Some(n.as_str()) != except)
            .filter_map(|n| self.membership.get(n))
            .filter(|m| m.status.is_live())
            .map(|m| m.addr())
            .collect();
        for dst in targets {
            self.stats.messages_sent += 1;
            self.send(dst, &[Message::Gossip(gossip.clone())]);
        }
    }

    /// Whether `origin`'s life `generation` is the one membership holds (this node's own
    /// included): Plumtree takes a new life of a member only once membership has, so a forged
    /// generation cannot reset the window of seen messages and censor the real ones.
    fn is_current_life(&self, origin: &str, generation: u64) -> bool {
        if origin == self.me.name {
            return generation == self.me.generation;
        }
        self.membership
            .get(origin)
            .is_some_and(|m| m.generation == generation)
    }

    /// Whether the datagram from `from` comes from the live member called `name`: links of the
    /// tree are made and cut only by the member at either end.
    fn is_member_at(&self, name: &str, from: SocketAddr) -> bool {
        self.membership
            .live_at(from)
            .is_some_and(|m| m.name == name)
    }

    pub(crate) fn on_gossip(&mut self, now: Instant, from: SocketAddr, gossip: wire::Gossip) {
        if !self.is_current_life(&gossip.id.origin, gossip.id.generation) {
            // Not (yet) a life membership holds: an announcement will bring it again once it
            // is, through a graft.
            self.stats.dropped_invalid += 1;
            return;
        }
        let sender = gossip.from.clone();
        let max_neighbours = self.config.max_broadcast_neighbours;
        if self.plumtree.has_seen(&gossip.id) {
            // A duplicate: this link closes a cycle. Make it lazy on both sides.
            self.stats.messages_duplicate += 1;
            if self.plumtree.is_eager(&sender) {
                self.plumtree.set_eager(&sender, false, max_neighbours);
            }
            self.stats.prunes_sent += 1;
            let prune = Message::Prune(wire::Prune {
                from: self.me.name.clone(),
            });
            self.send(from, &[prune]);
            return;
        }
        if gossip.tag.is_empty()
            || gossip.tag.len() > self.config.max_tag_len
            || gossip.payload.len() > self.config.max_message_size
        {
            self.stats.dropped_message_oversize += 1;
            return;
        }
        if self.is_member_at(&sender, from) {
            self.plumtree.set_eager(&sender, true, max_neighbours);
        }
        self.accept_message(now, gossip, Some(&sender));
    }

    pub(crate) fn on_ihave(&mut self, now: Instant, from: SocketAddr, ihave: wire::IHave) {
        if self.plumtree.has_seen(&ihave.id) || ihave.from == self.me.name {
            return;
        }
        if !self.is_current_life(&ihave.id.origin, ihave.id.generation) {
            self.stats.dropped_invalid += 1;
            return;
        }
        let graft_at = now + self.config.graft_timeout;
        self.plumtree.announced(
            ihave.id,
            (ihave.from, from),
            graft_at,
            self.config.message_cache_size,
        );
    }

    pub(crate) fn on_graft(&mut self, now: Instant, from: SocketAddr, graft: wire::Graft) {
        if self.leaving {
            return;
        }
        let max_neighbours = self.config.max_broadcast_neighbours;
        if !self.is_member_at(&graft.from, from) {
            // Only a member's own graft links it into the tree; a stranger's is not answered
            // (it could name another address as its own). A node that joined a moment ago
            // grafts before this node has checked and listed it: remembered, the link is made
            // when it is listed at that address.
            self.plumtree.note_stranger_graft(now, graft.from, from);
            return;
        }
        self.plumtree.set_eager(&graft.from, true, max_neighbours);
        for id in graft.ids.iter().take(crate::limits::MAX_GRAFT_IDS) {
            let Some(cached) = self.plumtree.cached(id) else {
                continue;
            };
            let gossip = wire::Gossip {
                id: id.clone(),
                from: self.me.name.clone(),
                hops: cached.hops + 1,
                tag: cached.tag.clone(),
                payload: cached.payload.clone(),
            };
            self.stats.messages_sent += 1;
            self.send(from, &[Message::Gossip(gossip)]);
        }
    }

    pub(crate) fn on_prune(&mut self, _now: Instant, from: SocketAddr, prune: wire::Prune) {
        if !self.is_member_at(&prune.from, from) {
            self.stats.dropped_invalid += 1;
            return;
        }
        let max_neighbours = self.config.max_broadcast_neighbours;
        if self.plumtree.is_neighbour(&prune.from) {
            self.plumtree.set_eager(&prune.from, false, max_neighbours);
        }
    }

    /// Asks announcers for messages that the tree did not deliver in time.
    pub(crate) fn graft_timers(&mut self, now: Instant) {
        // Announcers keep a message cached for `message_cache_age`: no one can answer after.
        let due =
            self.plumtree
                .due_grafts(now, self.config.graft_retry, self.config.message_cache_age);
        let max_neighbours = self.config.max_broadcast_neighbours;
        for (id, (name, addr)) in due {
            debug!(origin = %id.origin, seq = id.seq, from = %name, "grafting missing message");
            self.plumtree.set_eager(&name, true, max_neighbours);
            self.stats.grafts_sent += 1;
            let graft = Message::Graft(wire::Graft {
                from: self.me.name.clone(),
                ids: vec![id],
            });
            self.send(addr, &[graft]);
        }
        self.plumtree
            .expire_cache(now, self.config.message_cache_age);
    }

    pub(crate) fn next_graft(&self) -> Option<Instant> {
        self.plumtree.next_graft()
    }

    /// Drops neighbours that are no longer live and recruits random live members until the
    /// node has `broadcast_neighbours`; each recruit hears of it through an empty `Graft`, so
    /// links are symmetric.
    pub(crate) fn maintain_neighbours(&mut self) {
        if self.leaving {
            return;
        }
        let table = self.membership.table();
        self.plumtree
            .retain_neighbours(|name| table.get(name).is_some_and(|m| m.status.is_live()));
        let wanted = self
            .config
            .broadcast_neighbours
            .saturating_sub(self.plumtree.num_neighbours());
        if wanted == 0 {
            return;
        }
        let plumtree = &self.plumtree;
        let recruits: Vec<(String, SocketAddr)> = self
            .membership
            .table()
            .random_members(wanted, &mut self.rng, |m| {
                m.status == MemberStatus::Alive && !plumtree.is_neighbour(m.name.as_str())
            })
            .into_iter()
            .map(|m| (m.name.to_string(), m.addr()))
            .collect();
        let max_neighbours = self.config.max_broadcast_neighbours;
        for (name, addr) in recruits {
            self.plumtree.set_eager(&name, true, max_neighbours);
            let graft = Message::Graft(wire::Graft {
                from: self.me.name.clone(),
                ids: Vec::new(),
            });
            self.send(addr, &[graft]);
        }
    }

    /// Keeps the neighbour set in step with membership.
    pub(crate) fn messaging_on_membership(&mut self, event: &Event) {
        if let Event::Joined(m) = event {
            if self.plumtree.take_stranger_graft(&m.name) == Some(m.addr) {
                // Its graft came before it was listed: the link it asked for.
                let max_neighbours = self.config.max_broadcast_neighbours;
                self.plumtree.remove_neighbour(&m.name);
                self.plumtree.set_eager(&m.name, true, max_neighbours);
                return;
            }
        }
        match event {
            Event::Failed(m) | Event::Left(m) | Event::Reaped(m) => {
                self.plumtree.remove_neighbour(&m.name)
            }
            Event::Joined(m) => {
                // A new life of a neighbour starts with no link to us.
                self.plumtree.remove_neighbour(&m.name)
            }
            _ => {}
        }
    }
}

/// Broadcast-queue key of an announcement.
fn ihave_key(id: &MessageId) -> String {
    format!("\u{1}{}\u{0}{}\u{0}{}", id.origin, id.generation, id.seq)
}
