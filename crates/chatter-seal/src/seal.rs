//! Sealing: one [`Sealer`] per sender life numbers and encrypts its datagrams.

use chacha20poly1305::aead::AeadInPlace as _;
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305};

use crate::keyring::Keyring;
use crate::layout::{
    associated_data, cluster_hash, nonce, read_u32, CLUSTER_AT, COUNTER_AT, ENVELOPE_LEN, EPOCH_AT,
    FLAGS_AT, FLAG_SEALED, HEADER_LEN, KEY_ID_AT, MAGIC, MAX_PLAINTEXT, PROTOCOL_VERSION,
    SEAL_OVERHEAD,
};

/// Why a datagram was not sealed. The sealer's counter did not move and, for
/// [`Sealer::seal_in_place`], the buffer is unchanged. Each one is a bug of the caller, not
/// something the network can cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not a plain Chatter datagram of this protocol version: shorter than the envelope, another
    /// magic or version, or a flag already set (sealed twice?).
    #[error("not a plain Chatter datagram")]
    NotPlain,
    /// The envelope's cluster hash is not the hash of the cluster name given.
    #[error("the datagram's cluster hash does not match the cluster name")]
    WrongCluster,
    /// Sealed, it would exceed [`MAX_DATAGRAM`](crate::MAX_DATAGRAM): the plain datagram is over
    /// [`MAX_PLAINTEXT`] bytes.
    #[error("a plain datagram of {0} bytes is too large to seal (max {MAX_PLAINTEXT})")]
    Oversize(usize),
    /// The counter reached `u64::MAX`: sealing again would repeat a nonce. Unreachable in
    /// practice (2^64 datagrams); a new sender life with a new epoch is needed.
    #[error("the datagram counter of this epoch is exhausted")]
    CounterExhausted,
}

/// The sealing state of one sender life: its epoch and the counter of the next datagram.
///
/// Each datagram's nonce is (epoch, counter), so nonces never repeat under a key **as long as
/// an epoch is never used twice with the same key. Reusing an epoch under a key is
/// catastrophic: two datagrams under the same nonce reveal the XOR of their plaintexts and let
/// an observer forge Poly1305 tags, for every key that ever saw both.** Draw the epoch from the
/// OS RNG on every process start (the simulator draws it from its seeded RNG), never from a
/// clock or a persisted counter that could be rolled back, and make a new `Sealer` only with a
/// new epoch. With random 64-bit epochs, the chance that any two of `n` lives under one key pick
/// the same one is about `n² / 2^65` (one in 30 million for a million restarts); rotating the key
/// resets it.
///
/// The counter starts at 0, grows by one per sealed datagram and never wraps: at `u64::MAX`
/// sealing is refused with [`SealError::CounterExhausted`].
#[derive(Debug, Clone)]
pub struct Sealer {
    epoch: u64,
    /// The counter of the next datagram; `None` once `u64::MAX` has been used.
    next: Option<u64>,
    /// Scratch buffer for the associated data, reused across datagrams.
    aad: Vec<u8>,
}

impl Sealer {
    /// A sealer for a sender life with this `epoch`: a fresh random `u64` per process start,
    /// **never reused under a key** (see the type's documentation).
    pub fn new(epoch: u64) -> Sealer {
        Sealer {
            epoch,
            next: Some(0),
            aad: Vec::new(),
        }
    }

    /// The epoch of this sender life.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The counter the next sealed datagram gets, `None` once exhausted.
    pub fn next_counter(&self) -> Option<u64> {
        self.next
    }

    /// Seals a plain datagram (8-byte envelope and messages) with the keyring's primary key and
    /// returns the sealed datagram, [`SEAL_OVERHEAD`] bytes longer.
    pub fn seal(
        &mut self,
        keyring: &Keyring,
        cluster_name: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        check_plain(plain, cluster_name)?;
        let counter = self.next.ok_or(SealError::CounterExhausted)?;
        let mut out = Vec::with_capacity(plain.len().saturating_add(SEAL_OVERHEAD));
        out.extend_from_slice(plain.get(..ENVELOPE_LEN).unwrap_or_default());
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(plain.get(ENVELOPE_LEN..).unwrap_or_default());
        self.finish(keyring, cluster_name, counter, &mut out)?;
        Ok(out)
    }

    /// Seals the plain datagram in `datagram` in place: the header grows by 20 bytes (the
    /// messages move up) and the tag is appended. No allocation when `datagram` has
    /// [`SEAL_OVERHEAD`] bytes of spare capacity. On error `datagram` is unchanged.
    pub fn seal_in_place(
        &mut self,
        keyring: &Keyring,
        cluster_name: &str,
        datagram: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        check_plain(datagram, cluster_name)?;
        let counter = self.next.ok_or(SealError::CounterExhausted)?;
        let len = datagram.len();
        datagram.reserve(SEAL_OVERHEAD);
        datagram.resize(len + (HEADER_LEN - ENVELOPE_LEN), 0);
        datagram.copy_within(ENVELOPE_LEN..len, HEADER_LEN);
        if let Err(e) = self.finish(keyring, cluster_name, counter, datagram) {
            // Unreachable (see `finish`), but keep the promise: put the plain datagram back.
            datagram.copy_within(HEADER_LEN.., ENVELOPE_LEN);
            datagram.truncate(len);
            return Err(e);
        }
        Ok(())
    }

    /// Writes the header fields into `buf` (envelope, 20 spare bytes, plaintext messages),
    /// encrypts the messages, appends the tag and consumes `counter`.
    fn finish(
        &mut self,
        keyring: &Keyring,
        cluster_name: &str,
        counter: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        let key = keyring.primary();
        let (header, body) = buf.split_at_mut(HEADER_LEN);
        header[FLAGS_AT] |= FLAG_SEALED;
        header[KEY_ID_AT..EPOCH_AT].copy_from_slice(&key.id().0);
        header[EPOCH_AT..COUNTER_AT].copy_from_slice(&self.epoch.to_le_bytes());
        header[COUNTER_AT..HEADER_LEN].copy_from_slice(&counter.to_le_bytes());
        associated_data(&mut self.aad, header, cluster_name);
        let cipher = XChaCha20Poly1305::new(key.bytes().into());
        // The AEAD refuses only plaintexts over 256 GiB; ours are under 64 KiB.
        let tag = cipher
            .encrypt_in_place_detached(&nonce(self.epoch, counter).into(), &self.aad, body)
            .map_err(|_| SealError::Oversize(buf.len()))?;
        buf.extend_from_slice(&tag);
        self.next = counter.checked_add(1);
        Ok(())
    }

    /// A sealer whose next counter is `next` (tests of exhaustion only).
    #[cfg(test)]
    pub(crate) fn with_next_counter(epoch: u64, next: Option<u64>) -> Sealer {
        Sealer {
            epoch,
            next,
            aad: Vec::new(),
        }
    }
}

/// Checks that `plain` is a plain datagram of `cluster_name` that fits once sealed.
fn check_plain(plain: &[u8], cluster_name: &str) -> Result<(), SealError> {
    if plain.len() < ENVELOPE_LEN
        || plain.get(..2) != Some(&MAGIC[..])
        || plain.get(2) != Some(&PROTOCOL_VERSION)
        || plain.get(FLAGS_AT) != Some(&0)
    {
        return Err(SealError::NotPlain);
    }
    if read_u32(plain, CLUSTER_AT) != Some(cluster_hash(cluster_name)) {
        return Err(SealError::WrongCluster);
    }
    if plain.len() > MAX_PLAINTEXT {
        return Err(SealError::Oversize(plain.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;

    fn plain(cluster: &str, body: &[u8]) -> Vec<u8> {
        let mut p = b"CH\x04\x00".to_vec();
        p.extend_from_slice(&cluster_hash(cluster).to_le_bytes());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn refuses_to_seal_once_the_counter_is_exhausted() {
        let ring = Keyring::new(Key::from_bytes([1; 32]));
        let mut sealer = Sealer::with_next_counter(5, Some(u64::MAX - 1));
        let p = plain("c", b"x");
        sealer.seal(&ring, "c", &p).unwrap();
        assert_eq!(sealer.next_counter(), Some(u64::MAX));
        let last = sealer.seal(&ring, "c", &p).unwrap();
        assert_eq!(crate::layout::read_u64(&last, COUNTER_AT), Some(u64::MAX));
        assert_eq!(sealer.next_counter(), None);
        assert_eq!(
            sealer.seal(&ring, "c", &p),
            Err(SealError::CounterExhausted)
        );
        let mut buf = p.clone();
        assert_eq!(
            sealer.seal_in_place(&ring, "c", &mut buf),
            Err(SealError::CounterExhausted)
        );
        assert_eq!(buf, p);
    }

    #[test]
    fn refuses_what_is_not_a_plain_datagram_of_the_cluster() {
        let ring = Keyring::new(Key::from_bytes([1; 32]));
        let mut sealer = Sealer::new(1);
        assert_eq!(sealer.seal(&ring, "c", b"CH\x04"), Err(SealError::NotPlain));
        let mut sealed_flag = plain("c", b"x");
        sealed_flag[FLAGS_AT] = FLAG_SEALED;
        assert_eq!(
            sealer.seal(&ring, "c", &sealed_flag),
            Err(SealError::NotPlain)
        );
        let mut other_version = plain("c", b"x");
        other_version[2] = PROTOCOL_VERSION + 1;
        assert_eq!(
            sealer.seal(&ring, "c", &other_version),
            Err(SealError::NotPlain)
        );
        assert_eq!(
            sealer.seal(&ring, "other", &plain("c", b"x")),
            Err(SealError::WrongCluster)
        );
        let big = plain("c", &vec![0; MAX_PLAINTEXT - ENVELOPE_LEN + 1]);
        assert_eq!(
            sealer.seal(&ring, "c", &big),
            Err(SealError::Oversize(MAX_PLAINTEXT + 1))
        );
        let mut buf = big.clone();
        assert_eq!(
            sealer.seal_in_place(&ring, "c", &mut buf),
            Err(SealError::Oversize(MAX_PLAINTEXT + 1))
        );
        assert_eq!(buf, big);
        assert_eq!(sealer.next_counter(), Some(0));
    }

    #[test]
    fn seal_and_seal_in_place_agree() {
        let ring = Keyring::new(Key::from_bytes([1; 32]));
        let p = plain("c", b"hello messages");
        let a = Sealer::new(9).seal(&ring, "c", &p).unwrap();
        let mut b = p.clone();
        Sealer::new(9).seal_in_place(&ring, "c", &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), p.len() + SEAL_OVERHEAD);
    }
}
