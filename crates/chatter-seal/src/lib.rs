//! Authenticated encryption of Chatter datagrams, sans IO: a [`Keyring`], a [`Sealer`] per
//! sender life and an [`Opener`] with replay protection. No sockets, clock or global RNG: the
//! caller passes the keyring, the cluster name and, when a sender life starts, its random epoch.
//!
//! # Wire layout
//!
//! A sealed datagram is the plain 8-byte envelope with the sealed flag set, a 20-byte extension,
//! the encrypted messages and a 16-byte tag (all integers little-endian):
//!
//! ```text
//! 0     2   3   4         8        12             20             28              len-16   len
//! +-----+---+---+---------+--------+--------------+--------------+---------------+--------+
//! | "CH"| v | 01| cluster | key id | epoch (u64)  | counter (u64)| ciphertext    | tag    |
//! +-----+---+---+---------+--------+--------------+--------------+---------------+--------+
//!  \________________ associated data, with the cluster name appended _/
//! ```
//!
//! - AEAD: XChaCha20-Poly1305 (RustCrypto). It is constant-time in software on every CPU (no
//!   dependence on AES instructions), and its 192-bit nonce leaves room for a structured nonce
//!   instead of a random one.
//! - Nonce: epoch (8) || counter (8) || 8 zero bytes. The epoch is a random `u64` per sender life,
//!   the counter numbers that life's datagrams from 0, so no nonce repeats under a key **unless an
//!   epoch is reused under that key, which is catastrophic** (see [`Sealer`]).
//! - Associated data: the whole 28-byte header and the full cluster name, so the version, the
//!   flags, the cluster, the key id, the epoch and the counter are all authenticated, and a
//!   datagram of another cluster with the same key does not open even if the 32-bit cluster hashes
//!   collide.
//! - Key id: 4 bytes of SHA-256 of the key, so the receiver tries exactly one key.
//! - Replay: per epoch a 256-counter sliding window, at most [`MAX_EPOCHS`] epochs (see there).
//!
//! Overhead: [`SEAL_OVERHEAD`] = 36 bytes per datagram.
//!
//! # Order of the checks when opening
//!
//! Size, magic, version, flags, cluster hash, key id known ([`OpenError::UnknownKey`]), tag
//! ([`OpenError::BadTag`]), replay window ([`OpenError::Replayed`], [`OpenError::TooOld`]). The
//! window moves only after the tag verified, so a forged datagram cannot push it forward. No
//! error changes any state.
//!
//! # Example
//!
//! ```
//! use chatter_seal::{Key, Keyring, Opener, Sealer};
//! use rand::SeedableRng;
//!
//! // In the daemon the key and the epoch come from the OS RNG; a seeded RNG keeps this runnable.
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
//! let keyring = Keyring::new(Key::generate(&mut rng));
//! let mut sealer = Sealer::new(rand::RngCore::next_u64(&mut rng));
//! let mut opener = Opener::new();
//!
//! // A plain datagram: the 8-byte envelope of cluster "prod" (as chatter-core writes it), then
//! // the encoded messages.
//! let mut plain = b"CH\x04\x00".to_vec();
//! plain.extend_from_slice(&chatter_seal::cluster_hash("prod").to_le_bytes());
//! plain.extend_from_slice(b"messages");
//!
//! let sealed = sealer.seal(&keyring, "prod", &plain).unwrap();
//! assert!(chatter_seal::is_sealed(&sealed));
//! assert_eq!(sealed.len(), plain.len() + chatter_seal::SEAL_OVERHEAD);
//!
//! assert_eq!(opener.open(&keyring, "prod", &sealed).unwrap(), plain);
//! // The same datagram again is a replay.
//! assert_eq!(
//!     opener.open(&keyring, "prod", &sealed),
//!     Err(chatter_seal::OpenError::Replayed)
//! );
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod key;
mod keyring;
mod layout;
mod open;
mod replay;
mod seal;

pub use key::{Fingerprint, FingerprintError, Key, KeyError, KeyId, KEY_BASE64_LEN, KEY_LEN};
pub use keyring::{KeyInfo, Keyring, KeyringError, KeyringParseError, MAX_KEYS};
pub use layout::{
    is_sealed, ENVELOPE_LEN, FLAG_SEALED, HEADER_LEN, MAGIC, MAX_DATAGRAM, MAX_PLAINTEXT,
    MIN_SEALED_LEN, PROTOCOL_VERSION, SEAL_OVERHEAD, TAG_LEN,
};
pub use open::{OpenError, Opener};
pub use replay::{MAX_EPOCHS, WINDOW};
pub use seal::{SealError, Sealer};

/// The envelope's 32-bit cluster hash of a cluster name (FNV-1a, folded; the same function as
/// `chatter_core::wire::cluster_hash`).
pub fn cluster_hash(cluster_name: &str) -> u32 {
    layout::cluster_hash(cluster_name)
}
