//! Property tests of the opener's boundary: whatever arrives, it never panics and nothing but a
//! datagram sealed with a key of the ring opens.

mod common;

use chatter_seal::{cluster_hash, Keyring, Opener, Sealer, MAX_DATAGRAM};
use common::{key, plain, CLUSTER};
use proptest::prelude::*;

fn ring() -> Keyring {
    Keyring::new(key(1))
}

proptest! {
    // No failure persistence: a failing case is printed (with its seed) rather than written next
    // to a source file that integration tests do not have.
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes: no panic, no plaintext, no state change.
    #[test]
    fn arbitrary_bytes_never_open(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
        let ring = ring();
        let mut opener = Opener::new();
        prop_assert!(opener.open(&ring, CLUSTER, &bytes).is_err());
        let mut buf = bytes.clone();
        prop_assert!(opener.open_in_place(&ring, CLUSTER, &mut buf).is_err());
        prop_assert_eq!(opener.epochs(), 0);
    }

    /// Arbitrary bytes behind a header that passes every plain check and names the ring's key:
    /// they reach the AEAD, which refuses them.
    #[test]
    fn arbitrary_bytes_behind_a_valid_header_never_open(
        rest in prop::collection::vec(any::<u8>(), 0..2_000),
    ) {
        let ring = ring();
        let mut datagram = b"CH\x04\x01".to_vec();
        datagram.extend_from_slice(&cluster_hash(CLUSTER).to_le_bytes());
        datagram.extend_from_slice(&ring.primary().id().0);
        datagram.extend_from_slice(&rest);
        let mut opener = Opener::new();
        prop_assert!(opener.open(&ring, CLUSTER, &datagram).is_err());
        prop_assert_eq!(opener.epochs(), 0);
    }

    /// Changing any byte of a genuine sealed datagram, to any other value, makes it fail; so do
    /// cutting it short and appending to it. The genuine one still opens afterwards.
    #[test]
    fn mutating_a_sealed_datagram_never_opens(
        body in 0usize..1_500,
        epoch in any::<u64>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let ring = ring();
        let sealed = Sealer::new(epoch).seal(&ring, CLUSTER, &plain(CLUSTER, body)).unwrap();
        let mut opener = Opener::new();

        let mut changed = sealed.clone();
        changed[at.index(sealed.len())] ^= xor;
        prop_assert!(opener.open(&ring, CLUSTER, &changed).is_err());

        let short = &sealed[..cut.index(sealed.len())];
        prop_assert!(opener.open(&ring, CLUSTER, short).is_err());

        let mut long = sealed.clone();
        long.extend_from_slice(&extra);
        prop_assert!(long.len() > MAX_DATAGRAM || opener.open(&ring, CLUSTER, &long).is_err());

        prop_assert_eq!(opener.epochs(), 0);
        prop_assert_eq!(opener.open(&ring, CLUSTER, &sealed).unwrap(), plain(CLUSTER, body));
    }

    /// Any plain datagram round-trips, whichever of the copying or in-place calls is used.
    #[test]
    fn any_plain_datagram_round_trips(
        body in prop::collection::vec(any::<u8>(), 0..3_000),
        epoch in any::<u64>(),
        in_place in any::<bool>(),
    ) {
        let ring = ring();
        let mut p = plain(CLUSTER, 0);
        p.extend_from_slice(&body);
        let mut sealer = Sealer::new(epoch);
        let mut opener = Opener::new();
        if in_place {
            let mut buf = p.clone();
            sealer.seal_in_place(&ring, CLUSTER, &mut buf).unwrap();
            prop_assert_eq!(opener.open_in_place(&ring, CLUSTER, &mut buf).unwrap(), &p[..]);
        } else {
            let sealed = sealer.seal(&ring, CLUSTER, &p).unwrap();
            prop_assert_eq!(opener.open(&ring, CLUSTER, &sealed).unwrap(), p);
        }
    }
}
