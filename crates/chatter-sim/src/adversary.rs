//! An adversary for the simulator: an outsider at an address of its own that knows the
//! protocol and sends forged, replayed, oversized and random well-formed messages to the
//! cluster's nodes. It sees what any member would know (names, generations, addresses: they
//! are gossiped), but not the datagrams the nodes exchange, so it cannot echo their random
//! sequence numbers.
//!
//! Each [`Adversary::attack`] hands one datagram to one node, and counts what was sent to it
//! and what came back to the adversary's address, so that a test can assert that no node ever
//! answers it with more bytes than it sent.

use std::net::SocketAddr;

use chatter_core::limits::{MAX_GENERATION, MAX_INCARNATION, MAX_VERSION};
use chatter_core::wire::{self, Message};
use chatter_core::MessageId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::Sim;

/// The kinds of attack, one per datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// `Failed` for a live member at the largest incarnation (or above it).
    FailedAtTheLimit,
    /// `Alive` for a live member with a higher generation, then a `Suspect` of it.
    ForgedLife,
    /// Fifty members that do not exist.
    FakeMembers,
    /// `Suspect`s of a live member from invented accusers, with `unreachable`.
    InventedAccusers,
    /// A datagram packed with `SyncRequest`s.
    PackedSyncRequests,
    /// `PingReq`s for members, to the adversary's chosen address.
    PingReqs,
    /// User messages of a member's life forged with high sequence numbers or a new generation.
    ForgedBroadcasts,
    /// A key/value delta claiming a member's watermark is far ahead.
    ForgedWatermark,
    /// `Alive` of a live member's current life at another address.
    MovedMember,
    /// Acks with guessed sequence numbers.
    GuessedAcks,
    /// Random bytes behind a valid envelope.
    Garbage,
}

const ATTACKS: [Attack; 11] = [
    Attack::FailedAtTheLimit,
    Attack::ForgedLife,
    Attack::FakeMembers,
    Attack::InventedAccusers,
    Attack::PackedSyncRequests,
    Attack::PingReqs,
    Attack::ForgedBroadcasts,
    Attack::ForgedWatermark,
    Attack::MovedMember,
    Attack::GuessedAcks,
    Attack::Garbage,
];

/// An outsider sending hostile datagrams into a simulated cluster.
#[derive(Debug)]
pub struct Adversary {
    rng: ChaCha8Rng,
    addr: SocketAddr,
    fakes: u64,
    attacks: Vec<Attack>,
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
}

impl Adversary {
    /// An adversary at `addr` (an address no node of the simulation has), seeded.
    pub fn new(seed: u64, addr: SocketAddr) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            addr,
            fakes: 0,
            attacks: ATTACKS.to_vec(),
            sent: 0,
            bytes_sent: 0,
        }
    }

    /// The same adversary without one kind of attack.
    pub fn without(mut self, attack: Attack) -> Self {
        self.attacks.retain(|a| *a != attack);
        self
    }

    /// The adversary's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one hostile datagram to a random running node; returns the attack made.
    pub fn attack(&mut self, sim: &mut Sim) -> Option<Attack> {
        let up = sim.up_nodes();
        if up.len() < 2 || self.attacks.is_empty() {
            return None;
        }
        let to = up[self.rng.random_range(0..up.len())];
        let victim = up[self.rng.random_range(0..up.len())];
        let other = up[self.rng.random_range(0..up.len())];
        let (name, generation, addr) = (
            sim.name(victim).to_owned(),
            sim.generation(victim),
            sim.addr(victim),
        );
        let accuser = sim.name(other).to_owned();
        let attack = self.attacks[self.rng.random_range(0..self.attacks.len())];
        let messages: Vec<Message> = match attack {
            Attack::FailedAtTheLimit => {
                let incarnation = if self.rng.random_bool(0.5) {
                    u64::MAX
                } else {
                    MAX_INCARNATION
                };
                vec![Message::Failed(wire::Failed {
                    name,
                    generation,
                    incarnation,
                    from: accuser,
                })]
            }
            Attack::ForgedLife => vec![
                Message::Alive(wire::Alive {
                    name: name.clone(),
                    addr,
                    generation: self.rng.random_range(generation + 1..=MAX_GENERATION),
                    incarnation: 0,
                    tags: Default::default(),
                }),
                Message::Suspect(wire::Suspect {
                    name,
                    generation: MAX_GENERATION,
                    incarnation: 0,
                    from: accuser,
                    unreachable: true,
                }),
            ],
            Attack::FakeMembers => (0..50)
                .map(|_| {
                    self.fakes += 1;
                    let n = self.fakes;
                    Message::Alive(wire::Alive {
                        name: format!("fake-{n}"),
                        addr: SocketAddr::from(([192, 0, 2, (n % 250) as u8], (n % 60_000) as u16)),
                        generation: 1,
                        incarnation: 0,
                        tags: Default::default(),
                    })
                })
                .collect(),
            Attack::InventedAccusers => (0..20)
                .map(|i| {
                    Message::Suspect(wire::Suspect {
                        name: name.clone(),
                        generation,
                        incarnation: 0,
                        from: format!("ghost-{i}"),
                        unreachable: true,
                    })
                })
                .collect(),
            Attack::PackedSyncRequests => vec![
                Message::SyncRequest(wire::SyncRequest {
                    from: "x".into(),
                    fingerprint: self.rng.random(),
                    state_fingerprint: self.rng.random(),
                    padding: Vec::new(),
                });
                60
            ],
            Attack::PingReqs => vec![Message::PingReq(wire::PingReq {
                seq: self.rng.random(),
                target: name,
                generation,
                addr: self.addr,
            })],
            Attack::ForgedBroadcasts => {
                let forged_generation = if self.rng.random_bool(0.5) {
                    generation
                } else {
                    MAX_GENERATION
                };
                (0..20)
                    .map(|_| {
                        Message::Gossip(wire::Gossip {
                            id: MessageId {
                                origin: name.clone(),
                                generation: forged_generation,
                                seq: self.rng.random_range(1_000_000..MAX_VERSION),
                            },
                            from: name.clone(),
                            hops: 0,
                            tag: "forged".into(),
                            payload: b"forged".to_vec(),
                        })
                    })
                    .collect()
            }
            Attack::ForgedWatermark => vec![Message::StateDelta(wire::StateDelta {
                node: name,
                generation,
                from_version: 0,
                to_version: self.rng.random_range(1_000..MAX_VERSION / 2),
                reset: false,
                entries: Vec::new(),
            })],
            Attack::MovedMember => vec![Message::Alive(wire::Alive {
                name,
                addr: self.addr,
                generation,
                incarnation: self.rng.random_range(1..1000),
                tags: Default::default(),
            })],
            Attack::GuessedAcks => (0..50)
                .map(|_| {
                    Message::Ack(wire::Ack {
                        seq: self.rng.random(),
                    })
                })
                .collect(),
            Attack::Garbage => Vec::new(),
        };
        let cluster = wire::cluster_hash(&sim.config().node_config.cluster_name);
        let datagram = if attack == Attack::Garbage {
            let mut d = Vec::new();
            wire::write_envelope(&mut d, cluster);
            let len = self.rng.random_range(1..1400);
            d.extend((0..len).map(|_| self.rng.random::<u8>()));
            d
        } else {
            wire::encode_packet(cluster, &messages)
        };
        self.sent += 1;
        self.bytes_sent += datagram.len() as u64;
        let from = self.addr;
        sim.with_node(to, |node, now| node.handle_datagram(now, from, &datagram));
        Some(attack)
    }
}
