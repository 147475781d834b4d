//! Sealing and opening whole datagrams: round trips, tampering, keys, clusters and replays.

mod common;

use std::collections::HashMap;

use chatter_seal::{
    cluster_hash, is_sealed, Keyring, OpenError, Opener, SealError, Sealer, MAX_DATAGRAM,
    MAX_PLAINTEXT, SEAL_OVERHEAD, WINDOW,
};
use common::{key, plain, CLUSTER};

/// Offset of the counter in a sealed datagram.
const COUNTER_AT: usize = 20;

#[test]
fn round_trips_at_0_100_1400_and_65000_bytes() {
    let ring = Keyring::new(key(1));
    let mut sealer = Sealer::new(42);
    let mut opener = Opener::new();
    for body in [0, 100, 1_400, 65_000] {
        let p = plain(CLUSTER, body);
        let sealed = sealer.seal(&ring, CLUSTER, &p).unwrap();
        assert_eq!(sealed.len(), p.len() + SEAL_OVERHEAD);
        assert!(is_sealed(&sealed));
        // The messages do not appear in clear.
        if body >= 16 {
            assert!(!sealed.windows(16).any(|w| w == &p[8..24]));
        }
        assert_eq!(opener.open(&ring, CLUSTER, &sealed).unwrap(), p);

        let mut buf = p.clone();
        sealer.seal_in_place(&ring, CLUSTER, &mut buf).unwrap();
        assert_eq!(buf.len(), p.len() + SEAL_OVERHEAD);
        assert_eq!(opener.open_in_place(&ring, CLUSTER, &mut buf).unwrap(), p);
    }
}

#[test]
fn the_largest_plain_datagram_seals_to_the_largest_datagram() {
    let ring = Keyring::new(key(1));
    let p = plain(CLUSTER, MAX_PLAINTEXT - 8);
    let sealed = Sealer::new(1).seal(&ring, CLUSTER, &p).unwrap();
    assert_eq!(sealed.len(), MAX_DATAGRAM);
    assert_eq!(Opener::new().open(&ring, CLUSTER, &sealed).unwrap(), p);
}

#[test]
fn an_opened_datagram_decodes_with_chatter_core() {
    assert_eq!(
        cluster_hash(CLUSTER),
        chatter_core::wire::cluster_hash(CLUSTER)
    );
    assert_eq!(
        chatter_seal::PROTOCOL_VERSION,
        chatter_core::wire::PROTOCOL_VERSION
    );
    let ring = Keyring::new(key(1));
    let p = chatter_core::wire::encode_inject(CLUSTER, "DebugMessage", br#"{"text":"hi"}"#);
    let sealed = Sealer::new(5).seal(&ring, CLUSTER, &p).unwrap();
    // The plain decoder refuses the sealed datagram...
    assert_eq!(
        chatter_core::wire::decode_packet(&sealed, cluster_hash(CLUSTER), 65_507),
        Err(chatter_core::wire::DecodeError::UnsupportedFlags(0x01))
    );
    // ...and takes the opened one.
    let mut buf = sealed.clone();
    let opened = Opener::new()
        .open_in_place(&ring, CLUSTER, &mut buf)
        .unwrap();
    let messages =
        chatter_core::wire::decode_packet(opened, cluster_hash(CLUSTER), 65_507).unwrap();
    assert!(matches!(
        &messages[..],
        [chatter_core::wire::Message::Inject(i)] if i.tag == "DebugMessage"
    ));
}

#[test]
fn every_single_bit_flip_fails_to_open() {
    let ring = Keyring::new(key(1));
    let sealed = Sealer::new(77)
        .seal(&ring, CLUSTER, &plain(CLUSTER, 100))
        .unwrap();
    let mut opener = Opener::new();
    for byte in 0..sealed.len() {
        for bit in 0..8 {
            let mut bad = sealed.clone();
            bad[byte] ^= 1 << bit;
            let result = opener.open(&ring, CLUSTER, &bad);
            assert!(result.is_err(), "flip of bit {bit} of byte {byte} opened");
            // Past the envelope, the flip is caught by the key id or the tag.
            if byte >= 12 {
                assert_eq!(result, Err(OpenError::BadTag), "byte {byte} bit {bit}");
            }
        }
    }
    // None of them moved the window: the genuine datagram still opens, once.
    assert_eq!(opener.epochs(), 0);
    assert!(opener.open(&ring, CLUSTER, &sealed).is_ok());
    assert_eq!(
        opener.open(&ring, CLUSTER, &sealed),
        Err(OpenError::Replayed)
    );
}

#[test]
fn a_different_cluster_name_fails_even_with_a_colliding_hash() {
    let ring = Keyring::new(key(1));
    let sealed = Sealer::new(3)
        .seal(&ring, CLUSTER, &plain(CLUSTER, 10))
        .unwrap();
    assert_eq!(
        Opener::new().open(&ring, "staging", &sealed),
        Err(OpenError::WrongCluster)
    );

    // Two names with the same 32-bit hash (a birthday search finds one quickly): the name itself
    // is in the associated data, so the tag tells them apart.
    let mut seen = HashMap::new();
    let (a, b) = (0u32..)
        .find_map(|i| {
            let name = format!("cluster-{i}");
            seen.insert(cluster_hash(&name), name.clone())
                .map(|other| (other, name))
        })
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(cluster_hash(&a), cluster_hash(&b));
    let sealed = Sealer::new(3).seal(&ring, &a, &plain(&a, 10)).unwrap();
    assert_eq!(
        Opener::new().open(&ring, &b, &sealed),
        Err(OpenError::BadTag)
    );
    assert!(Opener::new().open(&ring, &a, &sealed).is_ok());
}

#[test]
fn an_unknown_key_fails_with_unknown_key() {
    let sealed = Sealer::new(3)
        .seal(&Keyring::new(key(1)), CLUSTER, &plain(CLUSTER, 10))
        .unwrap();
    let other = Keyring::new(key(2));
    assert_eq!(
        Opener::new().open(&other, CLUSTER, &sealed),
        Err(OpenError::UnknownKey(key(1).id()))
    );
    assert_eq!(OpenError::UnknownKey(key(1).id()).reason(), "unknown_key");
}

#[test]
fn a_replay_fails_and_a_reordered_datagram_opens_once() {
    let ring = Keyring::new(key(1));
    let mut sealer = Sealer::new(9);
    let d: Vec<Vec<u8>> = (0..4)
        .map(|_| sealer.seal(&ring, CLUSTER, &plain(CLUSTER, 20)).unwrap())
        .collect();
    let mut opener = Opener::new();
    assert!(opener.open(&ring, CLUSTER, &d[0]).is_ok());
    assert_eq!(opener.open(&ring, CLUSTER, &d[0]), Err(OpenError::Replayed));
    assert!(opener.open(&ring, CLUSTER, &d[3]).is_ok());
    // 1 and 2 arrive late, within the window: each opens once.
    assert!(opener.open(&ring, CLUSTER, &d[2]).is_ok());
    assert!(opener.open(&ring, CLUSTER, &d[1]).is_ok());
    for late in &d {
        assert_eq!(opener.open(&ring, CLUSTER, late), Err(OpenError::Replayed));
    }
    assert_eq!(OpenError::Replayed.reason(), "replayed");
}

#[test]
fn a_counter_below_the_window_fails() {
    let ring = Keyring::new(key(1));
    let mut sealer = Sealer::new(9);
    let first = sealer.seal(&ring, CLUSTER, &plain(CLUSTER, 20)).unwrap();
    let mut last = Vec::new();
    for _ in 0..WINDOW {
        last = sealer.seal(&ring, CLUSTER, &plain(CLUSTER, 20)).unwrap();
    }
    let mut opener = Opener::new();
    assert!(opener.open(&ring, CLUSTER, &last).is_ok());
    assert_eq!(opener.open(&ring, CLUSTER, &first), Err(OpenError::TooOld));
    assert_eq!(OpenError::TooOld.reason(), "too_old");
}

#[test]
fn a_forged_huge_counter_does_not_move_the_window() {
    let ring = Keyring::new(key(1));
    let mut sealer = Sealer::new(9);
    let genuine = sealer.seal(&ring, CLUSTER, &plain(CLUSTER, 20)).unwrap();
    let mut opener = Opener::new();
    let mut forged = genuine.clone();
    forged[COUNTER_AT..COUNTER_AT + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(opener.open(&ring, CLUSTER, &forged), Err(OpenError::BadTag));
    assert!(opener.open(&ring, CLUSTER, &genuine).is_ok());
    // And once the epoch is known, a forged jump does not push the genuine next one out.
    let next = sealer.seal(&ring, CLUSTER, &plain(CLUSTER, 20)).unwrap();
    assert_eq!(opener.open(&ring, CLUSTER, &forged), Err(OpenError::BadTag));
    assert!(opener.open(&ring, CLUSTER, &next).is_ok());
}

#[test]
fn the_epoch_table_stays_at_its_bound_under_100000_epochs() {
    let ring = Keyring::new(key(1));
    let p = plain(CLUSTER, 0);
    let mut opener = Opener::new();
    let bound = opener.max_epochs();
    assert_eq!(bound, chatter_seal::MAX_EPOCHS);
    let mut recent = Vec::new();
    for epoch in 0..100_000u64 {
        let sealed = Sealer::new(epoch).seal(&ring, CLUSTER, &p).unwrap();
        opener.open(&ring, CLUSTER, &sealed).unwrap();
        assert!(opener.epochs() <= bound);
        if epoch >= 100_000 - 10 {
            recent.push(sealed);
        }
    }
    assert_eq!(opener.epochs(), bound);
    // The most recent lives are still remembered.
    for sealed in &recent {
        assert_eq!(
            opener.open(&ring, CLUSTER, sealed),
            Err(OpenError::Replayed)
        );
    }
}

#[test]
fn a_datagram_replayed_under_a_former_key_is_refused() {
    // A sender keeps its epoch and counter across a rotation, so its window spans both keys.
    let mut ring = Keyring::new(key(1));
    ring.install(key(2)).unwrap();
    let mut sealer = Sealer::new(11);
    let under_a = sealer.seal(&ring, CLUSTER, &plain(CLUSTER, 5)).unwrap();
    ring.use_key(key(2).fingerprint()).unwrap();
    let under_b = sealer.seal(&ring, CLUSTER, &plain(CLUSTER, 5)).unwrap();
    let mut opener = Opener::new();
    assert!(opener.open(&ring, CLUSTER, &under_a).is_ok());
    assert!(opener.open(&ring, CLUSTER, &under_b).is_ok());
    assert_eq!(
        opener.open(&ring, CLUSTER, &under_a),
        Err(OpenError::Replayed)
    );
    assert_eq!(opener.epochs(), 1);
}

#[test]
fn plain_and_malformed_datagrams_get_their_own_errors() {
    let ring = Keyring::new(key(1));
    let mut opener = Opener::new();
    let p = plain(CLUSTER, 50);
    let cases: Vec<(Vec<u8>, OpenError, &str)> = vec![
        (p.clone(), OpenError::NotSealed, "not_sealed"),
        (b"CH\x04".to_vec(), OpenError::Truncated, "truncated"),
        (
            b"XX\x02\x01\0\0\0\0".to_vec(),
            OpenError::BadMagic,
            "bad_magic",
        ),
        (
            b"CH\x07\x01\0\0\0\0".to_vec(),
            OpenError::UnsupportedVersion(7),
            "bad_version",
        ),
        (
            b"CH\x04\x03\0\0\0\0".to_vec(),
            OpenError::UnsupportedFlags(3),
            "bad_flags",
        ),
        (
            [
                &b"CH\x04\x01"[..],
                &cluster_hash(CLUSTER).to_le_bytes(),
                &[0; 35],
            ]
            .concat(),
            OpenError::Truncated,
            "truncated",
        ),
        (
            [
                &b"CH\x04\x01"[..],
                &cluster_hash(CLUSTER).to_le_bytes(),
                &[0; 36],
            ]
            .concat(),
            OpenError::UnknownKey(chatter_seal::KeyId([0; 4])),
            "unknown_key",
        ),
        (
            vec![0; MAX_DATAGRAM + 1],
            OpenError::Oversize(MAX_DATAGRAM + 1),
            "oversize",
        ),
    ];
    for (datagram, error, reason) in cases {
        assert_eq!(opener.open(&ring, CLUSTER, &datagram), Err(error));
        assert_eq!(error.reason(), reason);
    }
    assert_eq!(opener.epochs(), 0);
    assert!(!is_sealed(&p));
}

#[test]
fn seal_refuses_what_it_cannot_seal() {
    let ring = Keyring::new(key(1));
    let mut sealer = Sealer::new(1);
    let sealed = sealer.seal(&ring, CLUSTER, &plain(CLUSTER, 3)).unwrap();
    assert_eq!(
        sealer.seal(&ring, CLUSTER, &sealed),
        Err(SealError::NotPlain)
    );
    assert_eq!(
        sealer.seal(&ring, "other", &plain(CLUSTER, 3)),
        Err(SealError::WrongCluster)
    );
    assert_eq!(sealer.next_counter(), Some(1));
}
