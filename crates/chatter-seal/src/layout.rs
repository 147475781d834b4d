//! Byte layout of plain and sealed datagrams, and the nonce and associated data built from a
//! sealed header. Every offset used elsewhere is a constant of this file.

use std::hash::Hasher as _;

/// First two bytes of every Chatter datagram, plain or sealed.
pub const MAGIC: [u8; 2] = *b"CH";
/// The protocol version this crate seals and opens (the envelope's version byte, as in
/// `chatter-core`'s wire codec).
pub const PROTOCOL_VERSION: u8 = 4;
/// Length of the plain envelope: magic, version, flags, cluster hash.
pub const ENVELOPE_LEN: usize = 8;
/// Flag bit of a sealed datagram. The other flag bits are reserved and must be zero.
pub const FLAG_SEALED: u8 = 0x01;
/// Length of the sealed header: the envelope, key id (4), epoch (8), counter (8).
pub const HEADER_LEN: usize = 28;
/// Length of the Poly1305 tag that ends a sealed datagram.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram carries beyond its plain one: `HEADER_LEN - ENVELOPE_LEN + TAG_LEN`.
/// The core subtracts it from its packet budget.
pub const SEAL_OVERHEAD: usize = HEADER_LEN - ENVELOPE_LEN + TAG_LEN;
/// Shortest sealed datagram: a header and a tag around an empty message list.
pub const MIN_SEALED_LEN: usize = HEADER_LEN + TAG_LEN;
/// Largest datagram, plain or sealed: the largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Largest plain datagram that can be sealed: [`MAX_DATAGRAM`] - [`SEAL_OVERHEAD`].
pub const MAX_PLAINTEXT: usize = MAX_DATAGRAM - SEAL_OVERHEAD;

pub(crate) const FLAGS_AT: usize = 3;
pub(crate) const CLUSTER_AT: usize = 4;
pub(crate) const KEY_ID_AT: usize = 8;
pub(crate) const EPOCH_AT: usize = 12;
pub(crate) const COUNTER_AT: usize = 20;

/// 32-bit FNV-1a of the cluster name folded as `chatter-core` does (the envelope's cluster hash).
pub(crate) fn cluster_hash(cluster_name: &str) -> u32 {
    let mut hasher = FnvHasher::default();
    hasher.write(cluster_name.as_bytes());
    let h = hasher.finish();
    (h as u32) ^ ((h >> 32) as u32)
}

/// 64-bit FNV-1a, the same function as the `fnv` crate's `FnvHasher` that `chatter-core` uses.
struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Reads the little-endian `u32` at `at`, if the bytes are there.
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let b: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Reads the little-endian `u64` at `at`, if the bytes are there.
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    let b: [u8; 8] = bytes.get(at..end)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// The XChaCha20 nonce of a datagram: epoch (8, LE) || counter (8, LE) || 8 zero bytes.
/// Unique under a key as long as no epoch is used twice with that key.
pub(crate) fn nonce(epoch: u64, counter: u64) -> [u8; 24] {
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&epoch.to_le_bytes());
    n[8..16].copy_from_slice(&counter.to_le_bytes());
    n
}

/// Fills `aad` with the associated data: the 28-byte sealed header, then the cluster name. The
/// header has a fixed length, so the concatenation is unambiguous.
pub(crate) fn associated_data(aad: &mut Vec<u8>, header: &[u8], cluster_name: &str) {
    aad.clear();
    aad.extend_from_slice(header);
    aad.extend_from_slice(cluster_name.as_bytes());
}

/// Whether `datagram` claims to be sealed: a Chatter magic with the sealed flag set. Says nothing
/// about whether it opens; a node uses it to route a datagram to the opener or, while migrating
/// to encryption, to the plain decoder.
pub fn is_sealed(datagram: &[u8]) -> bool {
    datagram.get(..2) == Some(&MAGIC[..])
        && datagram
            .get(FLAGS_AT)
            .is_some_and(|flags| flags & FLAG_SEALED != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_36_bytes() {
        assert_eq!(SEAL_OVERHEAD, 36);
        assert_eq!(MIN_SEALED_LEN, 44);
    }

    #[test]
    fn fnv_matches_known_vectors() {
        // FNV-1a 64 of "" and "a" (reference vectors), folded to 32 bits.
        let fold = |h: u64| (h as u32) ^ ((h >> 32) as u32);
        assert_eq!(cluster_hash(""), fold(0xcbf2_9ce4_8422_2325));
        assert_eq!(cluster_hash("a"), fold(0xaf63_dc4c_8601_ec8c));
    }

    #[test]
    fn is_sealed_reads_the_flag_only_behind_the_magic() {
        assert!(!is_sealed(b""));
        assert!(!is_sealed(b"CH\x04"));
        assert!(!is_sealed(b"CH\x04\x00\x00\x00\x00\x00"));
        assert!(is_sealed(b"CH\x04\x01"));
        assert!(!is_sealed(b"XX\x02\x01"));
    }
}
