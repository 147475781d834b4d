//! Arbitrary bytes given to the opener: no panic, nothing opens, no state changes.
//!
//! `cd crates/chatter-seal/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run open -- -max_total_time=60`
//! (the sanitizer flags cargo-fuzz passes are nightly-only; `RUSTC_BOOTSTRAP=1` lets the stable
//! toolchain accept them).

#![no_main]

use chatter_seal::{cluster_hash, Key, Keyring, Opener};
use libfuzzer_sys::fuzz_target;

const CLUSTER: &str = "prod";

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new(Key::from_bytes([7; 32]));
    let mut opener = Opener::new();
    // As received.
    assert!(opener.open(&ring, CLUSTER, data).is_err());
    // Behind a header that passes every plain check and names the ring's key, so that the
    // bytes reach the AEAD.
    let mut datagram = b"CH\x04\x01".to_vec();
    datagram.extend_from_slice(&cluster_hash(CLUSTER).to_le_bytes());
    datagram.extend_from_slice(&ring.primary().id().0);
    datagram.extend_from_slice(data);
    assert!(opener.open_in_place(&ring, CLUSTER, &mut datagram).is_err());
    assert_eq!(opener.epochs(), 0);
});
