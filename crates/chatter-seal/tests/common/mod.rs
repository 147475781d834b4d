//! Helpers shared by the integration tests.

#![allow(dead_code)]

use chatter_seal::{cluster_hash, Key};
use rand::SeedableRng;

pub const CLUSTER: &str = "prod";

/// A deterministic key from a small number.
pub fn key(n: u64) -> Key {
    Key::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(n))
}

/// A plain datagram of `cluster`: the envelope, then `body_len` bytes of messages.
pub fn plain(cluster: &str, body_len: usize) -> Vec<u8> {
    let mut p = b"CH\x04\x00".to_vec();
    p.extend_from_slice(&cluster_hash(cluster).to_le_bytes());
    p.extend((0..body_len).map(|i| (i % 251) as u8));
    p
}
