//! Opening: check, decrypt and de-duplicate a sealed datagram.

use chacha20poly1305::aead::AeadInPlace as _;
use chacha20poly1305::{KeyInit as _, Tag, XChaCha20Poly1305};

use crate::key::KeyId;
use crate::keyring::Keyring;
use crate::layout::{
    associated_data, cluster_hash, nonce, read_u32, read_u64, CLUSTER_AT, COUNTER_AT, ENVELOPE_LEN,
    EPOCH_AT, FLAGS_AT, FLAG_SEALED, HEADER_LEN, KEY_ID_AT, MAGIC, MAX_DATAGRAM, MIN_SEALED_LEN,
    PROTOCOL_VERSION, TAG_LEN,
};
use crate::replay::{Refusal, ReplayTable, MAX_EPOCHS};

/// Why a datagram did not open, in the order the checks run. **No variant changes the
/// opener's state**: the replay table moves only when a datagram opens. For
/// [`Opener::open_in_place`], the buffer's contents are unspecified after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Longer than [`MAX_DATAGRAM`]. Nothing changed.
    #[error("datagram of {0} bytes is over the size limit")]
    Oversize(usize),
    /// Shorter than the envelope, or sealed but shorter than a header and a tag. Nothing changed.
    #[error("datagram truncated")]
    Truncated,
    /// Does not start with the Chatter magic. Nothing changed.
    #[error("bad magic")]
    BadMagic,
    /// A protocol version this node does not speak. Nothing changed.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A plain datagram (sealed flag clear), refused because this node expects sealed ones.
    /// Nothing changed.
    #[error("datagram is not sealed")]
    NotSealed,
    /// Reserved flag bits are set. Nothing changed.
    #[error("unsupported flags {0:#04x}")]
    UnsupportedFlags(u8),
    /// From another cluster (the envelope's cluster hash). Nothing changed.
    #[error("datagram from another cluster")]
    WrongCluster,
    /// Sealed with a key whose id is not in the keyring (a key not yet installed here, already
    /// removed, or a stranger's). Nothing changed.
    #[error("sealed with unknown key {0}")]
    UnknownKey(KeyId),
    /// The tag did not verify: forged, corrupted, sealed for another cluster name, or with a key
    /// of the same id that is not ours. Nothing changed.
    #[error("authentication tag did not verify")]
    BadTag,
    /// Authentic, but this (epoch, counter) was already opened. Nothing changed.
    #[error("datagram replayed")]
    Replayed,
    /// Authentic, but its counter is below its sender's replay window: too late or replayed, it
    /// cannot be told apart. Nothing changed.
    #[error("datagram too old for the replay window")]
    TooOld,
}

impl OpenError {
    /// A short, stable label for metrics (`reason="bad_tag"`).
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::Oversize(_) => "oversize",
            OpenError::Truncated => "truncated",
            OpenError::BadMagic => "bad_magic",
            OpenError::UnsupportedVersion(_) => "bad_version",
            OpenError::NotSealed => "not_sealed",
            OpenError::UnsupportedFlags(_) => "bad_flags",
            OpenError::WrongCluster => "wrong_cluster",
            OpenError::UnknownKey(_) => "unknown_key",
            OpenError::BadTag => "bad_tag",
            OpenError::Replayed => "replayed",
            OpenError::TooOld => "too_old",
        }
    }
}

/// The opening state of a node: the replay windows of the sender lives it hears from.
///
/// One opener serves every sender and every key: a window belongs to an epoch, and a sender keeps
/// its epoch and counter across key rotations, so a datagram replayed under a former key is
/// refused too.
#[derive(Debug, Clone)]
pub struct Opener {
    replay: ReplayTable,
    /// Scratch buffer for the associated data, reused across datagrams.
    aad: Vec<u8>,
}

impl Default for Opener {
    fn default() -> Self {
        Opener::new()
    }
}

impl Opener {
    /// An opener remembering up to [`MAX_EPOCHS`] sender lives.
    pub fn new() -> Opener {
        Opener::with_max_epochs(MAX_EPOCHS)
    }

    /// An opener remembering up to `max_epochs` sender lives (at least 1). See [`MAX_EPOCHS`]
    /// for what forgetting one means.
    pub fn with_max_epochs(max_epochs: usize) -> Opener {
        Opener {
            replay: ReplayTable::new(max_epochs),
            aad: Vec::new(),
        }
    }

    /// Number of sender lives whose replay windows are kept.
    pub fn epochs(&self) -> usize {
        self.replay.len()
    }

    /// The bound on [`Opener::epochs`].
    pub fn max_epochs(&self) -> usize {
        self.replay.capacity()
    }

    /// Opens a sealed datagram and returns the plain datagram (8-byte envelope with its flags
    /// cleared, then the messages) for the ordinary decoder.
    pub fn open(
        &mut self,
        keyring: &Keyring,
        cluster_name: &str,
        datagram: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        // Check the cheap things before copying anything.
        check_sealed(datagram, cluster_name)?;
        let mut buf = datagram.to_vec();
        let len = self.open_in_place(keyring, cluster_name, &mut buf)?.len();
        let start = HEADER_LEN - ENVELOPE_LEN;
        buf.copy_within(start..start + len, 0);
        buf.truncate(len);
        Ok(buf)
    }

    /// Opens a sealed datagram in its receive buffer, without copying: decrypts the messages in
    /// place, writes the plain envelope just before them and returns the plain datagram, a
    /// sub-slice of `datagram`.
    pub fn open_in_place<'a>(
        &mut self,
        keyring: &Keyring,
        cluster_name: &str,
        datagram: &'a mut [u8],
    ) -> Result<&'a [u8], OpenError> {
        let header = check_sealed(datagram, cluster_name)?;
        let key = keyring
            .by_id(header.key_id)
            .ok_or(OpenError::UnknownKey(header.key_id))?;
        let len = datagram.len();
        let (head, rest) = datagram.split_at_mut(HEADER_LEN);
        // check_sealed guarantees len >= HEADER_LEN + TAG_LEN.
        let (body, tag) = rest.split_at_mut(len - HEADER_LEN - TAG_LEN);
        associated_data(&mut self.aad, head, cluster_name);
        let cipher = XChaCha20Poly1305::new(key.bytes().into());
        cipher
            .decrypt_in_place_detached(
                &nonce(header.epoch, header.counter).into(),
                &self.aad,
                body,
                Tag::from_slice(tag),
            )
            .map_err(|_| OpenError::BadTag)?;
        self.replay
            .check(header.epoch, header.counter)
            .map_err(|r| match r {
                Refusal::Replayed => OpenError::Replayed,
                Refusal::TooOld => OpenError::TooOld,
            })?;
        self.replay.accept(header.epoch, header.counter);
        // The plain envelope goes in the last 8 bytes of the header, right before the messages.
        let start = HEADER_LEN - ENVELOPE_LEN;
        head.copy_within(..ENVELOPE_LEN, start);
        head[start + FLAGS_AT] = 0;
        Ok(datagram.get(start..len - TAG_LEN).unwrap_or_default())
    }
}

/// The fields of a sealed header that passed the plain checks.
struct Header {
    key_id: KeyId,
    epoch: u64,
    counter: u64,
}

/// Runs the checks that need no key: size, magic, version, flags, cluster hash.
fn check_sealed(datagram: &[u8], cluster_name: &str) -> Result<Header, OpenError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(OpenError::Oversize(datagram.len()));
    }
    let (Some(magic), Some(&version), Some(&flags), Some(hash)) = (
        datagram.get(..2),
        datagram.get(2),
        datagram.get(FLAGS_AT),
        read_u32(datagram, CLUSTER_AT),
    ) else {
        return Err(OpenError::Truncated);
    };
    if magic != MAGIC {
        return Err(OpenError::BadMagic);
    }
    if version != PROTOCOL_VERSION {
        return Err(OpenError::UnsupportedVersion(version));
    }
    if flags & FLAG_SEALED == 0 {
        return Err(OpenError::NotSealed);
    }
    if flags != FLAG_SEALED {
        return Err(OpenError::UnsupportedFlags(flags));
    }
    if hash != cluster_hash(cluster_name) {
        return Err(OpenError::WrongCluster);
    }
    if datagram.len() < MIN_SEALED_LEN {
        return Err(OpenError::Truncated);
    }
    let (Some(key_id), Some(epoch), Some(counter)) = (
        datagram
            .get(KEY_ID_AT..EPOCH_AT)
            .and_then(|b| <[u8; 4]>::try_from(b).ok()),
        read_u64(datagram, EPOCH_AT),
        read_u64(datagram, COUNTER_AT),
    ) else {
        return Err(OpenError::Truncated);
    };
    Ok(Header {
        key_id: KeyId(key_id),
        epoch,
        counter,
    })
}
