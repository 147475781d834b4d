//! An adversary for the simulator: an outsider at an address of its own that knows the
//! protocol and sends forged, replayed, oversized and random well-formed messages to the
//! cluster's nodes. It sees what any member would know (names, generations, addresses: they
//! are gossiped), but not the datagrams the nodes exchange, so it cannot echo their random
//! sequence numbers.
//!
//! Each [`Adversary::attack`] hands one datagram to one node, and counts what was sent to it
//! and what came back to the adversary's address, so that a test can assert that no node ever
//! answers it with more bytes than it sent.
//!
//! Against a sealed cluster ([`Sim::seal_cluster`]) the adversary plays one of two parts
//! ([`Key`]): an outsider without the key, which sends the same attacks plain, sealed under a
//! key of its own (under its own key id, or under the cluster key's id read off a captured
//! datagram), and replays honest sealed datagrams it captured on the path ([`Sim::set_capture`])
//! to the node they were meant for, from their sender's address; or a member whose key leaked,
//! which seals its attacks with the cluster's keyring.

use std::net::SocketAddr;

use chatter_core::limits::{MAX_GENERATION, MAX_INCARNATION, MAX_VERSION};
use chatter_core::wire::{self, Message};
use chatter_core::{Keyring, MessageId};
use chatter_seal::Sealer;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::Sim;

/// What the adversary knows of the cluster's gossip key.
#[derive(Debug, Clone, Default)]
pub enum Key {
    /// Nothing to know: the cluster is plaintext and the attacks go plain (the default).
    #[default]
    Plaintext,
    /// The cluster is sealed and the adversary has no key of its ring: each datagram is one of
    /// the [`Wrapping`]s `Plain`, `OwnKey`, `ForgedKeyId` or `Replay`, drawn at random.
    Without,
    /// The cluster is sealed and the adversary holds its keyring (a leaked key, a member with a
    /// bug): every attack is sealed with it, under an epoch of the adversary's own.
    With(Keyring),
}

/// How one hostile datagram went on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapping {
    /// Plain, as in a plaintext cluster.
    Plain,
    /// Sealed under a key that is not in the cluster's ring, with that key's own id.
    OwnKey,
    /// Sealed under a key that is not in the ring, with the header's key id replaced by the id of
    /// the cluster's key (read off a captured datagram), so that the receiver tries its tag.
    ForgedKeyId,
    /// An honest sealed datagram captured on the path, sent again to the node it was delivered
    /// to, from its sender's address.
    Replay,
    /// Sealed with the cluster's keyring ([`Key::With`]).
    ClusterKey,
}

/// Datagrams sent, by [`Wrapping`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wrapped {
    /// [`Wrapping::Plain`].
    pub plain: u64,
    /// [`Wrapping::OwnKey`].
    pub own_key: u64,
    /// [`Wrapping::ForgedKeyId`].
    pub forged_key_id: u64,
    /// [`Wrapping::Replay`].
    pub replay: u64,
    /// [`Wrapping::ClusterKey`].
    pub cluster_key: u64,
}

impl Wrapped {
    fn count(&mut self, wrapping: Wrapping) {
        let slot = match wrapping {
            Wrapping::Plain => &mut self.plain,
            Wrapping::OwnKey => &mut self.own_key,
            Wrapping::ForgedKeyId => &mut self.forged_key_id,
            Wrapping::Replay => &mut self.replay,
            Wrapping::ClusterKey => &mut self.cluster_key,
        };
        *slot += 1;
    }
}

/// One hostile datagram handed to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The attack it carries (`None` for a replay, which carries an honest datagram).
    pub attack: Option<Attack>,
    /// How it went on the wire.
    pub wrapping: Wrapping,
    /// The node it was handed to.
    pub to: usize,
    /// Its size in bytes.
    pub len: usize,
}

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
    key: Key,
    /// A keyring of the adversary's own (for [`Wrapping::OwnKey`] and
    /// [`Wrapping::ForgedKeyId`]), and the sealer of its datagrams under whichever ring.
    own_keyring: Keyring,
    sealer: Sealer,
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Datagrams sent, by wrapping.
    pub wrapped: Wrapped,
}

impl Adversary {
    /// An adversary at `addr` (an address no node of the simulation has), seeded, against a
    /// plaintext cluster.
    pub fn new(seed: u64, addr: SocketAddr) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let own_keyring = Keyring::new(chatter_core::Key::generate(&mut rng));
        let sealer = Sealer::new(rng.next_u64());
        Self {
            rng,
            addr,
            fakes: 0,
            attacks: ATTACKS.to_vec(),
            key: Key::Plaintext,
            own_keyring,
            sealer,
            sent: 0,
            bytes_sent: 0,
            wrapped: Wrapped::default(),
        }
    }

    /// The same adversary knowing this much of the cluster's key. [`Key::Without`] needs
    /// [`Sim::set_capture`] on for its replays and forged key ids; until something is
    /// captured it seals under its own key instead.
    pub fn with_key(mut self, key: Key) -> Self {
        self.key = key;
        self
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

    /// Sends one hostile datagram to a random running node; returns what was sent, or `None`
    /// if nothing was (fewer than two nodes up, no attack left).
    pub fn attack(&mut self, sim: &mut Sim) -> Option<Sent> {
        let up = sim.up_nodes();
        if up.len() < 2 || self.attacks.is_empty() {
            return None;
        }
        let mut wrapping = match &self.key {
            Key::Plaintext => Wrapping::Plain,
            Key::With(_) => Wrapping::ClusterKey,
            Key::Without => [
                Wrapping::Plain,
                Wrapping::OwnKey,
                Wrapping::ForgedKeyId,
                Wrapping::Replay,
            ][self.rng.random_range(0..4)],
        };
        if wrapping == Wrapping::Replay {
            if let Some(sent) = self.replay(sim) {
                return Some(sent);
            }
            wrapping = Wrapping::OwnKey;
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
        let cluster_name = sim.config().node_config.cluster_name.clone();
        let cluster = wire::cluster_hash(&cluster_name);
        let plain = if attack == Attack::Garbage {
            let mut d = Vec::new();
            wire::write_envelope(&mut d, cluster);
            let len = self.rng.random_range(1..1400);
            d.extend((0..len).map(|_| self.rng.random::<u8>()));
            d
        } else {
            wire::encode_packet(cluster, &messages)
        };
        let cluster_key_id = |sim: &Sim| {
            sim.captured()
                .iter()
                .rev()
                .find(|c| chatter_seal::is_sealed(&c.bytes) && c.bytes.len() >= KEY_ID_END)
                .map(|c| c.bytes[KEY_ID_START..KEY_ID_END].to_vec())
        };
        let forged_id = match wrapping {
            Wrapping::ForgedKeyId => match cluster_key_id(sim) {
                Some(id) => Some(id),
                None => {
                    wrapping = Wrapping::OwnKey;
                    None
                }
            },
            _ => None,
        };
        let keyring = match (&self.key, wrapping) {
            (Key::With(ring), Wrapping::ClusterKey) => Some(ring),
            (_, Wrapping::OwnKey | Wrapping::ForgedKeyId) => Some(&self.own_keyring),
            _ => None,
        };
        let datagram = match keyring {
            // The sealer's counter lasts 2^64 datagrams; a failure here is a bug of the test.
            Some(ring) => {
                let mut sealed = self
                    .sealer
                    .seal(ring, &cluster_name, &plain)
                    .expect("the adversary's sealer seals any plain datagram");
                if let Some(id) = forged_id {
                    sealed[KEY_ID_START..KEY_ID_END].copy_from_slice(&id);
                }
                sealed
            }
            None => plain,
        };
        let from = self.addr;
        Some(self.deliver(sim, to, from, datagram, Some(attack), wrapping))
    }

    /// Sends one captured honest datagram again, to the node it was delivered to, from its
    /// sender's address. `None` if nothing is captured or that node is not running.
    fn replay(&mut self, sim: &mut Sim) -> Option<Sent> {
        let captured = sim.captured();
        if captured.is_empty() {
            return None;
        }
        let c = &captured[self.rng.random_range(0..captured.len())];
        let (to, from, datagram) = (c.to, c.from, c.bytes.clone());
        sim.node(to)?;
        Some(self.deliver(sim, to, from, datagram, None, Wrapping::Replay))
    }

    fn deliver(
        &mut self,
        sim: &mut Sim,
        to: usize,
        from: SocketAddr,
        datagram: Vec<u8>,
        attack: Option<Attack>,
        wrapping: Wrapping,
    ) -> Sent {
        self.sent += 1;
        self.bytes_sent += datagram.len() as u64;
        self.wrapped.count(wrapping);
        sim.with_node(to, |node, now| node.handle_datagram(now, from, &datagram));
        Sent {
            attack,
            wrapping,
            to,
            len: datagram.len(),
        }
    }
}

/// Where the 4-byte key id sits in a sealed datagram's header: right after the plain envelope
/// (magic, version, flags, cluster hash; see `chatter_seal`'s wire layout).
const KEY_ID_START: usize = chatter_seal::ENVELOPE_LEN;
const KEY_ID_END: usize = KEY_ID_START + 4;
