//! Property tests of the protocol's invariants through the core's public API: random sequences
//! of well-formed messages (any sender among a few members and a stranger, any name among a
//! few, self included; generations, incarnations, versions and sequence numbers at and around
//! 0 and their limits) handed to one node, with timers and local writes between them. After
//! every input:
//!
//! - no member's `(generation, incarnation)` in the node's view goes back (self included);
//! - no replica's watermark, nor any key's version, goes back within one life of its owner;
//! - a node that left stays left in that generation; a member seen `left` comes back alive or
//!   suspect in the same generation only above the incarnation it left at (the precedence
//!   rules let the live holder of a name refute a forged `Left` that way, so an observer
//!   cannot hold "never again" for others: docs/PROTOCOL.md, "Refutation");
//! - the node never lists itself, nor reports itself, as suspect or failed;
//! - nothing panics (overflow checks are on in test builds).
//!
//! `PROPTEST_CASES` sets the number of sequences (default 1,024, about 10 s in a debug build); a
//! failure prints the shrunk sequence, and proptest keeps its seed in
//! `tests/properties.proptest-regressions` so that the next runs try it first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatter_core::limits::{MAX_GENERATION, MAX_INCARNATION, MAX_VERSION};
use chatter_core::wire::{
    self, Ack, Alive, DigestRow, Failed, Gossip, Graft, IHave, Left, MemberState, Message,
    MessageId, Nack, Ping, PingReq, Prune, StateDelta, StateDigest, StateHave, StatePush,
    StateUpdate, Suspect, SyncRequest, SyncState, WireEntry, WireStatus,
};
use chatter_core::{Config, Event, Identity, MemberStatus, Node};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// The node under test, and the members it knows from the start.
const ME: &str = "n0";
const MY_GENERATION: u64 = 5;
const MEMBERS: [&str; 3] = ["n1", "n2", "n3"];
/// Names a message may carry: self, the members, and one nobody knows.
const NAMES: [&str; 5] = ["n0", "n1", "n2", "n3", "stranger"];
const KEYS: [&str; 2] = ["a", "b"];

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7000))
}

/// Senders: self's address, each member's, and a stranger's.
fn sender() -> impl Strategy<Value = SocketAddr> {
    (0u8..=4).prop_map(|i| if i == 4 { addr(99) } else { addr(i) })
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES.to_vec()).prop_map(str::to_owned)
}

/// A counter at and around the boundaries that matter for it: 0, 1, 2, the limit and its
/// neighbours, `u64::MAX` and its neighbour, or anything.
fn near(limit: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(MY_GENERATION),
        Just(limit - 1),
        Just(limit),
        Just(limit + 1),
        Just(u64::MAX - 1),
        Just(u64::MAX),
        any::<u64>(),
        0u64..16,
    ]
}

fn generation() -> impl Strategy<Value = u64> {
    near(MAX_GENERATION)
}

fn incarnation() -> impl Strategy<Value = u64> {
    near(MAX_INCARNATION)
}

fn version() -> impl Strategy<Value = u64> {
    near(MAX_VERSION)
}

fn entry() -> impl Strategy<Value = WireEntry> {
    (
        prop::sample::select(KEYS.to_vec()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..4)),
        version(),
    )
        .prop_map(|(key, value, version)| WireEntry {
            key: key.to_owned(),
            value,
            version,
        })
}

fn message_id() -> impl Strategy<Value = MessageId> {
    (name(), generation(), version()).prop_map(|(origin, generation, seq)| MessageId {
        origin,
        generation,
        seq,
    })
}

fn status() -> impl Strategy<Value = WireStatus> {
    prop_oneof![
        Just(WireStatus::Alive),
        Just(WireStatus::Suspect),
        Just(WireStatus::Failed),
        Just(WireStatus::Left),
    ]
}

/// Any well-formed message about the few names.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        3 => (name(), sender(), generation(), incarnation()).prop_map(|(name, addr, generation, incarnation)| {
            Message::Alive(Alive { name, addr, generation, incarnation, tags: Default::default() })
        }),
        3 => (name(), generation(), incarnation(), name(), any::<bool>()).prop_map(
            |(name, generation, incarnation, from, unreachable)| {
                Message::Suspect(Suspect { name, generation, incarnation, from, unreachable })
            }
        ),
        2 => (name(), generation(), incarnation(), name()).prop_map(|(name, generation, incarnation, from)| {
            Message::Failed(Failed { name, generation, incarnation, from })
        }),
        2 => (name(), generation(), incarnation()).prop_map(|(name, generation, incarnation)| {
            Message::Left(Left { name, generation, incarnation })
        }),
        2 => (name(), prop::collection::vec((name(), sender(), generation(), incarnation(), status()), 0..4))
            .prop_map(|(from, rows)| Message::SyncState(SyncState {
                from,
                fingerprint: 0,
                reply: false,
                members: rows.into_iter().map(|(name, addr, generation, incarnation, status)| MemberState {
                    name, addr, generation, incarnation, status, tags: Default::default(),
                }).collect(),
            })),
        2 => (name(), prop::collection::vec((name(), generation(), entry(), prop::collection::vec(version(), 0..3)), 0..4))
            .prop_map(|(from, updates)| Message::StatePush(StatePush {
                from,
                updates: updates.into_iter().map(|(node, generation, entry, supersedes)| StateUpdate {
                    node, generation, entry, supersedes,
                }).collect(),
            })),
        2 => (name(), generation(), version(), version(), any::<bool>(), prop::collection::vec(entry(), 0..3))
            .prop_map(|(node, generation, from_version, to_version, reset, entries)| {
                Message::StateDelta(StateDelta { node, generation, from_version, to_version, reset, entries })
            }),
        1 => (name(), version()).prop_map(|(node, watermark)| Message::StateHave(StateHave { node, watermark })),
        1 => (name(), any::<bool>(), prop::collection::vec((name(), generation(), version()), 0..4))
            .prop_map(|(from, reply, rows)| Message::StateDigest(StateDigest {
                from,
                fingerprint: 0,
                reply,
                after: None,
                until: None,
                rows: rows.into_iter().map(|(node, generation, watermark)| DigestRow { node, generation, watermark }).collect(),
            })),
        2 => (message_id(), name(), prop_oneof![Just(0u32), Just(1), Just(u32::MAX), any::<u32>()])
            .prop_map(|(id, from, hops)| Message::Gossip(Gossip {
                id, from, hops, tag: "t".into(), payload: b"p".to_vec(),
            })),
        1 => (name(), message_id()).prop_map(|(from, id)| Message::IHave(IHave { from, id })),
        1 => (name(), prop::collection::vec(message_id(), 0..3)).prop_map(|(from, ids)| Message::Graft(Graft { from, ids })),
        1 => name().prop_map(|from| Message::Prune(Prune { from })),
        1 => (any::<u64>(), name(), generation()).prop_map(|(seq, target, generation)| Message::Ping(Ping::new(seq, &target, generation))),
        1 => any::<u64>().prop_map(|seq| Message::Ack(Ack { seq })),
        1 => (any::<u64>(), any::<bool>()).prop_map(|(seq, unreachable)| Message::Nack(Nack { seq, unreachable })),
        1 => (any::<u64>(), name(), generation(), sender()).prop_map(|(seq, target, generation, addr)| {
            Message::PingReq(PingReq { seq, target, generation, addr })
        }),
        1 => name().prop_map(|from| Message::SyncRequest(SyncRequest {
            from, fingerprint: 0, state_fingerprint: 0, padding: Vec::new(),
        })),
    ]
}

/// One input to the node.
#[derive(Debug, Clone)]
enum Input {
    /// A datagram of these messages from this address.
    Datagram(SocketAddr, Vec<Message>),
    /// Time passes by this many milliseconds, then `handle_timeout`.
    Tick(u64),
    /// A local write.
    Set(&'static str, u8),
    /// The node leaves.
    Leave,
    /// Every `Ping` the node sent since the last input is acked from the address it went to,
    /// as if a holder of whatever life it asked about lived there: new lives (forged or not)
    /// pass their checks, so generations move too.
    AnswerPings,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        60 => (sender(), prop::collection::vec(message(), 1..4))
            .prop_map(|(from, messages)| Input::Datagram(from, messages)),
        20 => prop_oneof![0u64..50, 50u64..3_000].prop_map(Input::Tick),
        5 => (prop::sample::select(KEYS.to_vec()), any::<u8>()).prop_map(|(k, v)| Input::Set(k, v)),
        10 => Just(Input::AnswerPings),
        1 => Just(Input::Leave),
    ]
}

/// What the node has shown so far, to catch anything that goes back.
#[derive(Default)]
struct Seen {
    /// Highest `(generation, incarnation)` shown per member, self included.
    lives: BTreeMap<String, (u64, u64)>,
    /// `(name, generation)` seen left, and the incarnation it left at.
    left: BTreeMap<(String, u64), u64>,
    /// Highest watermark per `(owner, generation)`.
    watermarks: BTreeMap<(String, u64), u64>,
    /// Highest version per `(owner, generation, key)`.
    versions: BTreeMap<(String, u64, String), u64>,
}

impl Seen {
    /// Checks the node's view against everything shown before, then records it.
    fn check(&mut self, node: &Node, left_myself: bool, step: usize) -> Result<(), TestCaseError> {
        let local = node.local_member();
        prop_assert!(
            !matches!(local.status, MemberStatus::Suspect | MemberStatus::Failed),
            "step {step}: the node sees itself {}",
            local.status
        );
        prop_assert!(
            left_myself || local.status == MemberStatus::Alive,
            "step {step}: the node sees itself {} without having left",
            local.status
        );
        prop_assert!(
            !left_myself || local.status == MemberStatus::Left,
            "step {step}: the node left and sees itself {} again",
            local.status
        );
        let mut rows: Vec<(String, u64, u64, MemberStatus)> = vec![(
            local.name.clone(),
            local.generation,
            local.incarnation,
            local.status,
        )];
        for (name, brief) in node.member_briefs() {
            prop_assert!(
                name != ME,
                "step {step}: the node lists itself among the others"
            );
            rows.push((
                name.to_owned(),
                brief.generation,
                brief.incarnation,
                brief.status,
            ));
        }
        for (name, generation, incarnation, status) in rows {
            let now = (generation, incarnation);
            if let Some(before) = self.lives.get(&name) {
                prop_assert!(
                    now >= *before,
                    "step {step}: {name} went back from (gen {}, inc {}) to (gen {}, inc {})",
                    before.0,
                    before.1,
                    now.0,
                    now.1
                );
            }
            self.lives.insert(name.clone(), now);
            let key = (name.clone(), generation);
            if status == MemberStatus::Left {
                self.left.entry(key.clone()).or_insert(incarnation);
            } else if let Some(&at) = self.left.get(&key).filter(|_| status.is_live()) {
                prop_assert!(
                    incarnation > at,
                    "step {step}: {name} left in generation {generation} at incarnation {at} \
                     and is {status} again at incarnation {incarnation}"
                );
            }
            if let Some(watermark) = node.state_version(&name) {
                let best = self.watermarks.entry(key.clone()).or_insert(watermark);
                prop_assert!(
                    watermark >= *best,
                    "step {step}: the replica of {name} (gen {generation}) went back from \
                     version {} to {watermark}",
                    *best
                );
                *best = watermark;
            }
            if let Some(entries) = node.node_state(&name) {
                for (k, kv) in entries {
                    let best = self
                        .versions
                        .entry((name.clone(), generation, k.to_owned()))
                        .or_insert(kv.version);
                    prop_assert!(
                        kv.version >= *best,
                        "step {step}: key {k} of {name} (gen {generation}) went back from \
                         version {} to {}",
                        *best,
                        kv.version
                    );
                    *best = kv.version;
                }
            }
        }
        Ok(())
    }
}

/// Drains the node's outputs, keeping the pings it sent (destination, sequence number); fails
/// on an event that reports the node itself suspect or failed.
fn drain(
    node: &mut Node,
    cluster: u32,
    pings: &mut Vec<(SocketAddr, u64)>,
    step: usize,
) -> Result<(), TestCaseError> {
    while let Some(t) = node.poll_transmit() {
        let messages = wire::decode_packet(&t.payload, cluster, usize::MAX).unwrap_or_default();
        for message in messages {
            if let Message::Ping(ping) = message {
                pings.push((t.dst, ping.seq));
            }
        }
    }
    while let Some(event) = node.poll_event() {
        if let Some(member) = event.member() {
            prop_assert!(
                !(member.name == ME && matches!(event, Event::Suspect(_) | Event::Failed(_))),
                "step {step}: the node reported itself: {event:?}"
            );
        }
    }
    Ok(())
}

fn run(inputs: Vec<Input>) -> Result<(), TestCaseError> {
    // The one reading of the real clock: every later `now` is `t0` plus the ticks.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let config = Config {
        // No member is reaped within a sequence, so that "goes back" compares against every
        // life ever shown (a reaped member may honestly come back older).
        failed_retention: Duration::from_secs(24 * 3600),
        left_retention: Duration::from_secs(24 * 3600),
        ..Config::local()
    };
    let cluster = wire::cluster_hash(&config.cluster_name);
    let mut node = Node::new(Identity::new(ME, addr(0), MY_GENERATION), config, 7, t0)
        .map_err(|e| TestCaseError::fail(format!("config: {e}")))?;
    node.preload_members(
        t0,
        MEMBERS
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, addr(i as u8 + 1), 1)),
    );
    let mut now = t0;
    let mut seen = Seen::default();
    let mut left = false;
    let mut pings = Vec::new();
    drain(&mut node, cluster, &mut pings, 0)?;
    seen.check(&node, left, 0)?;
    for (step, input) in inputs.into_iter().enumerate() {
        let step = step + 1;
        let asked = std::mem::take(&mut pings);
        match input {
            Input::Datagram(from, messages) => {
                let datagram = wire::encode_packet(cluster, &messages);
                node.handle_datagram(now, from, &datagram);
            }
            Input::Tick(ms) => {
                now += Duration::from_millis(ms);
                node.handle_timeout(now);
            }
            Input::Set(key, value) => {
                // A full replica refuses the write; that is not what is tested here.
                let _ = node.set(now, key, vec![value]);
            }
            Input::Leave => {
                node.leave(now);
                left = true;
            }
            Input::AnswerPings => {
                for (from, seq) in asked {
                    let ack = wire::encode_packet(cluster, &[Message::Ack(Ack { seq })]);
                    node.handle_datagram(now, from, &ack);
                }
            }
        }
        drain(&mut node, cluster, &mut pings, step)?;
        seen.check(&node, left, step)?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold_whatever_arrives(inputs in prop::collection::vec(input(), 1..60)) {
        run(inputs)?;
    }
}
