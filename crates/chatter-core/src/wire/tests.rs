use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::member::Tags;

const CLUSTER: u32 = 0xdead_beef;

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn tags() -> impl Strategy<Value = Tags> {
    proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..4)
}

fn status() -> impl Strategy<Value = WireStatus> {
    prop_oneof![
        Just(WireStatus::Alive),
        Just(WireStatus::Suspect),
        Just(WireStatus::Failed),
        Just(WireStatus::Left),
    ]
}

fn member_state() -> impl Strategy<Value = MemberState> {
    (
        ".{0,16}",
        addr(),
        any::<u64>(),
        any::<u64>(),
        status(),
        tags(),
    )
        .prop_map(
            |(name, addr, generation, incarnation, status, tags)| MemberState {
                name,
                addr,
                generation,
                incarnation,
                status,
                tags,
            },
        )
}

fn message_id() -> impl Strategy<Value = MessageId> {
    (".{0,8}", any::<u64>(), any::<u64>()).prop_map(|(origin, generation, seq)| MessageId {
        origin,
        generation,
        seq,
    })
}

fn wire_entry() -> impl Strategy<Value = WireEntry> {
    (
        ".{0,8}",
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        any::<u64>(),
    )
        .prop_map(|(key, value, version)| WireEntry {
            key,
            value,
            version,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), any::<[u8; 4]>()).prop_map(|(seq, life)| {
            Message::Ping(Ping {
                seq,
                life: LifeTag(life),
            })
        }),
        any::<u64>().prop_map(|seq| Message::Ack(Ack { seq })),
        (any::<u64>(), any::<bool>())
            .prop_map(|(seq, unreachable)| Message::Nack(Nack { seq, unreachable })),
        (any::<u64>(), ".{0,16}", any::<u64>(), addr()).prop_map(
            |(seq, target, generation, addr)| Message::PingReq(PingReq {
                seq,
                target,
                generation,
                addr
            })
        ),
        (".{0,16}", addr(), any::<u64>(), any::<u64>(), tags()).prop_map(
            |(name, addr, generation, incarnation, tags)| Message::Alive(Alive {
                name,
                addr,
                generation,
                incarnation,
                tags
            })
        ),
        (
            ".{0,16}",
            any::<u64>(),
            any::<u64>(),
            ".{0,16}",
            any::<bool>()
        )
            .prop_map(|(name, generation, incarnation, from, unreachable)| {
                Message::Suspect(Suspect {
                    name,
                    generation,
                    incarnation,
                    from,
                    unreachable,
                })
            }),
        (".{0,16}", any::<u64>(), any::<u64>(), ".{0,16}").prop_map(
            |(name, generation, incarnation, from)| Message::Failed(Failed {
                name,
                generation,
                incarnation,
                from
            })
        ),
        (".{0,16}", any::<u64>(), any::<u64>()).prop_map(|(name, generation, incarnation)| {
            Message::Left(Left {
                name,
                generation,
                incarnation,
            })
        }),
        (
            ".{0,16}",
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(Just(0u8), 0..64)
        )
            .prop_map(|(from, fingerprint, state_fingerprint, padding)| {
                Message::SyncRequest(SyncRequest {
                    from,
                    fingerprint,
                    state_fingerprint,
                    padding,
                })
            }),
        (
            message_id(),
            ".{0,8}",
            any::<u32>(),
            ".{0,8}",
            proptest::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(id, from, hops, tag, payload)| Message::Gossip(Gossip {
                id,
                from,
                hops,
                tag,
                payload
            })),
        (".{0,8}", message_id()).prop_map(|(from, id)| Message::IHave(IHave { from, id })),
        (".{0,8}", proptest::collection::vec(message_id(), 0..3))
            .prop_map(|(from, ids)| Message::Graft(Graft { from, ids })),
        ".{0,8}".prop_map(|from| Message::Prune(Prune { from })),
        (".{0,8}", proptest::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(tag, payload)| Message::Inject(Inject { tag, payload })),
        (
            ".{0,8}",
            proptest::collection::vec((".{0,8}", any::<u64>(), wire_entry()), 0..3)
        )
            .prop_map(|(from, updates)| Message::StatePush(StatePush {
                from,
                updates: updates
                    .into_iter()
                    .map(|(node, generation, entry)| StateUpdate {
                        node,
                        generation,
                        entry,
                        supersedes: vec![1, 2],
                    })
                    .collect(),
            })),
        (".{0,8}", any::<u64>())
            .prop_map(|(node, watermark)| Message::StateHave(StateHave { node, watermark })),
        (
            ".{0,8}",
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec((".{0,8}", any::<u64>(), any::<u64>()), 0..4)
        )
            .prop_map(|(from, fingerprint, reply, rows)| Message::StateDigest(
                StateDigest {
                    from,
                    fingerprint,
                    reply,
                    after: None,
                    until: Some("m".into()),
                    rows: rows
                        .into_iter()
                        .map(|(node, generation, watermark)| DigestRow {
                            node,
                            generation,
                            watermark
                        })
                        .collect(),
                }
            )),
        (
            ".{0,8}",
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(wire_entry(), 0..4)
        )
            .prop_map(
                |(node, generation, from_version, to_version, reset, entries)| Message::StateDelta(
                    StateDelta {
                        node,
                        generation,
                        from_version,
                        to_version,
                        reset,
                        entries
                    }
                )
            ),
        (
            ".{0,16}",
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(member_state(), 0..4)
        )
            .prop_map(|(from, fingerprint, reply, members)| Message::SyncState(
                SyncState {
                    from,
                    fingerprint,
                    reply,
                    members
                }
            )),
        (any::<u64>(), key_op()).prop_map(|(id, op)| Message::KeyCommand(KeyCommand { id, op })),
        (
            any::<u64>(),
            proptest::option::of(key_refusal()),
            proptest::collection::vec(
                (any::<[u8; 8]>(), any::<bool>()).prop_map(|(fingerprint, primary)| WireKeyInfo {
                    fingerprint,
                    primary
                }),
                0..17
            )
        )
            .prop_map(|(id, refusal, keys)| Message::KeyAck(KeyAck { id, refusal, keys })),
    ]
}

fn key_op() -> impl Strategy<Value = WireKeyOp> {
    prop_oneof![
        Just(WireKeyOp::List),
        any::<[u8; 32]>().prop_map(|k| WireKeyOp::Install(KeyMaterial(k))),
        any::<[u8; 8]>().prop_map(WireKeyOp::Use),
        any::<[u8; 8]>().prop_map(WireKeyOp::Remove),
    ]
}

fn key_refusal() -> impl Strategy<Value = WireKeyRefusal> {
    prop_oneof![
        Just(WireKeyRefusal::NotInstalled),
        Just(WireKeyRefusal::Primary),
        Just(WireKeyRefusal::Full),
        Just(WireKeyRefusal::Collision),
        Just(WireKeyRefusal::NoKeyring),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(messages in proptest::collection::vec(message(), 1..6)) {
        let packet = encode_packet(CLUSTER, &messages);
        let decoded = decode_packet(&packet, CLUSTER, 65_507).unwrap();
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_packet(&bytes, CLUSTER, 65_507);
    }

    #[test]
    fn random_bodies_after_a_valid_envelope_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let mut packet = Vec::new();
        write_envelope(&mut packet, CLUSTER);
        packet.extend_from_slice(&body);
        let _ = decode_packet(&packet, CLUSTER, 65_507);
    }

    #[test]
    fn every_truncation_is_rejected_or_a_prefix(messages in proptest::collection::vec(message(), 1..4), cut in 0usize..200) {
        let packet = encode_packet(CLUSTER, &messages);
        let cut = cut.min(packet.len());
        if let Ok(decoded) = decode_packet(&packet[..cut], CLUSTER, 65_507) {
            // A cut that lands exactly on a message boundary decodes to a prefix.
            prop_assert!(decoded.len() <= messages.len());
            prop_assert_eq!(&decoded[..], &messages[..decoded.len()]);
        }
    }
}

#[test]
fn rejects_foreign_cluster_magic_version_and_oversize() {
    let packet = encode_packet(CLUSTER, &[Message::Ack(Ack { seq: 7 })]);
    assert_eq!(
        decode_packet(&packet, CLUSTER + 1, 65_507),
        Err(DecodeError::WrongCluster)
    );
    assert_eq!(
        decode_packet(&packet, CLUSTER, 4),
        Err(DecodeError::Oversize(packet.len()))
    );
    let mut bad = packet.clone();
    bad[0] = b'X';
    assert_eq!(
        decode_packet(&bad, CLUSTER, 65_507),
        Err(DecodeError::BadMagic)
    );
    let mut bad = packet.clone();
    bad[2] = 99;
    assert_eq!(
        decode_packet(&bad, CLUSTER, 65_507),
        Err(DecodeError::UnsupportedVersion(99))
    );
    assert_eq!(
        decode_packet(&packet[..ENVELOPE_LEN], CLUSTER, 65_507),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        decode_packet(&packet[..3], CLUSTER, 65_507),
        Err(DecodeError::Truncated)
    );
}

/// An idle node's traffic is mostly pings and acks: with a random 32-bit sequence number
/// (5 bytes as a varint) a ping is the envelope and 10 bytes, an ack the envelope and 6,
/// whatever the length of the member's name.
#[test]
fn a_ping_and_an_ack_are_small() {
    let seq = u64::from(u32::MAX - 7);
    let name = "web-frontend-17.eu-west-1.example.com";
    let ping = encode_packet(
        CLUSTER,
        &[Message::Ping(Ping::new(seq, name, 1_790_000_000_000))],
    );
    let ack = encode_packet(CLUSTER, &[Message::Ack(Ack { seq })]);
    assert!(ping.len() <= 18, "ping is {} bytes", ping.len());
    assert!(ack.len() <= 14, "ack is {} bytes", ack.len());
}

/// A ping means one life: another name, another generation or a tag moved to another
/// sequence number does not match.
#[test]
fn a_ping_is_for_one_life_only() {
    let ping = Ping::new(77, "n1", 1_790_000_000_000);
    assert!(ping.is_for("n1", 1_790_000_000_000));
    assert!(!ping.is_for("n2", 1_790_000_000_000));
    assert!(!ping.is_for("n1", 1_790_000_000_001));
    let moved = Ping { seq: 78, ..ping };
    assert!(!moved.is_for("n1", 1_790_000_000_000));
}

#[test]
fn cluster_hash_is_stable() {
    // The hash is part of the wire format: it must not change between builds or versions.
    assert_eq!(cluster_hash("chatter"), cluster_hash("chatter"));
    assert_ne!(cluster_hash("chatter"), cluster_hash("chatter2"));
    // FNV-1a 64 of the empty string is its offset basis, folded to 32 bits.
    assert_eq!(cluster_hash(""), 0xcbf2_9ce4 ^ 0x8422_2325);
}

#[test]
fn key_material_never_shows_in_debug() {
    let command = Message::KeyCommand(KeyCommand {
        id: 1,
        op: WireKeyOp::Install(KeyMaterial([0xab; 32])),
    });
    let text = format!("{command:?}");
    assert!(!text.contains("171") && !text.contains("ab"), "{text}");
    assert!(text.contains("KeyMaterial(..)"), "{text}");
}

#[test]
fn a_key_ack_of_a_full_keyring_fits_a_small_datagram() {
    let ack = encode_packet(
        CLUSTER,
        &[Message::KeyAck(KeyAck {
            id: u64::MAX,
            refusal: Some(WireKeyRefusal::Collision),
            keys: vec![
                WireKeyInfo {
                    fingerprint: [0xff; 8],
                    primary: true
                };
                chatter_seal::MAX_KEYS
            ],
        })],
    );
    assert!(ack.len() < 200, "{}", ack.len());
}
