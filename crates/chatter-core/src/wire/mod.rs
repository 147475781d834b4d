//! The datagram format: an 8-byte envelope, then one or more postcard-encoded [`Message`]s.
//!
//! ```text
//! 0      2        3      4                8
//! +------+--------+------+----------------+---------------------------+
//! | "CH" | version| flags| cluster hash   | message | message | ...     |
//! +------+--------+------+----------------+---------------------------+
//! ```
//!
//! The cluster hash is FNV-1a (32-bit) of the cluster name: packets from another cluster, with a
//! foreign magic or version, truncated or malformed, are rejected with a [`DecodeError`] that the
//! node counts and logs at `debug`. Decoding never panics and never allocates more than the
//! datagram's own size.

mod message;

use std::hash::Hasher;

pub use message::*;

/// First two bytes of every Chatter datagram.
pub const MAGIC: [u8; 2] = *b"CH";
/// Version of the message encoding; bumped on any incompatible change. Defined once, in
/// `chatter-seal`, so that the sealed and the plain envelope can never disagree.
pub const PROTOCOL_VERSION: u8 = chatter_seal::PROTOCOL_VERSION;
/// Length of the envelope in bytes.
pub const ENVELOPE_LEN: usize = 8;
/// Most messages one datagram may carry; a datagram with more is rejected whole. The smallest
/// message takes 3 bytes, so this bound keeps the work one datagram can ask for in proportion
/// to a sender's honest needs: the default 1,400-byte budget holds a few dozen piggybacked
/// updates, and the smallest piggybacked update (a `StateHave` of a one-letter name) takes 4
/// bytes, so even a 65,507-byte budget stays under the bound.
pub const MAX_MESSAGES_PER_DATAGRAM: usize = 16_384;

/// Why a datagram was rejected. Nothing in the node changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the envelope, or no message after it.
    #[error("datagram truncated")]
    Truncated,
    /// Does not start with [`MAGIC`]: not a Chatter datagram.
    #[error("bad magic")]
    BadMagic,
    /// Encoded with a protocol version this node does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// Flags this node does not understand (for instance encryption it is not configured for).
    #[error("unsupported flags {0:#04x}")]
    UnsupportedFlags(u8),
    /// From another cluster.
    #[error("datagram from another cluster")]
    WrongCluster,
    /// Larger than the configured maximum.
    #[error("datagram of {0} bytes is over the size limit")]
    Oversize(usize),
    /// A message did not decode.
    #[error("malformed message")]
    Malformed,
    /// More than [`MAX_MESSAGES_PER_DATAGRAM`] messages.
    #[error("more than {MAX_MESSAGES_PER_DATAGRAM} messages in one datagram")]
    TooManyMessages,
}

/// 32-bit FNV-1a hash of a cluster name, as carried in the envelope.
pub fn cluster_hash(cluster_name: &str) -> u32 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(cluster_name.as_bytes());
    let h = hasher.finish();
    (h as u32) ^ ((h >> 32) as u32)
}

/// Writes the envelope for `cluster` at the start of an empty buffer.
pub fn write_envelope(buf: &mut Vec<u8>, cluster: u32) {
    buf.extend_from_slice(&MAGIC);
    buf.push(PROTOCOL_VERSION);
    buf.push(0);
    buf.extend_from_slice(&cluster.to_le_bytes());
}

/// Appends one encoded message to `buf`.
pub fn encode_message(message: &Message, buf: &mut Vec<u8>) {
    // Serialising plain data into a Vec cannot fail: postcard only errors on a full fixed-size
    // buffer or on types serde cannot represent, and Message has neither.
    if let Ok(bytes) = postcard::to_allocvec(message) {
        buf.extend_from_slice(&bytes);
    }
}

/// The encoded bytes of one message.
pub fn message_bytes(message: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_message(message, &mut buf);
    buf
}

/// A whole datagram holding `messages`, without any budget check.
pub fn encode_packet(cluster: u32, messages: &[Message]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    write_envelope(&mut buf, cluster);
    for message in messages {
        encode_message(message, &mut buf);
    }
    buf
}

/// A datagram asking the daemon that receives it to broadcast `tag` and `payload` to its cluster
/// (what `chatter-inject` sends).
///
/// ```
/// let packet = chatter_core::wire::encode_inject("chatter", "DebugMessage", br#"{"text":"hi"}"#);
/// let decoded = chatter_core::wire::decode_packet(
///     &packet,
///     chatter_core::wire::cluster_hash("chatter"),
///     65_507,
/// )
/// .unwrap();
/// assert!(matches!(&decoded[0], chatter_core::wire::Message::Inject(i) if i.tag == "DebugMessage"));
/// ```
pub fn encode_inject(cluster_name: &str, tag: &str, payload: &[u8]) -> Vec<u8> {
    encode_packet(
        cluster_hash(cluster_name),
        &[Message::Inject(Inject {
            tag: tag.to_owned(),
            payload: payload.to_vec(),
        })],
    )
}

/// A datagram asking the daemon that receives it to broadcast `tag` and `payload`, sealed under
/// `keyring`'s primary key (what `chatter-inject` sends to an encrypted cluster).
///
/// `epoch` must be a fresh random `u64` from the OS RNG on every call: **the datagram is sealed
/// by a new sender life whose counter starts at 0, so an epoch used twice under a key repeats
/// a nonce, which reveals the XOR of both plaintexts and lets an observer forge tags.**
pub fn encode_inject_sealed(
    keyring: &chatter_seal::Keyring,
    epoch: u64,
    cluster_name: &str,
    tag: &str,
    payload: &[u8],
) -> Result<Vec<u8>, chatter_seal::SealError> {
    let plain = encode_inject(cluster_name, tag, payload);
    chatter_seal::Sealer::new(epoch).seal(keyring, cluster_name, &plain)
}

/// Decodes a whole datagram into its messages.
///
/// `max_size` is the largest datagram accepted. The whole datagram is rejected if any message in
/// it is malformed: a half-understood packet is more likely corrupt than useful.
pub fn decode_packet(
    data: &[u8],
    cluster: u32,
    max_size: usize,
) -> Result<Vec<Message>, DecodeError> {
    if data.len() > max_size {
        return Err(DecodeError::Oversize(data.len()));
    }
    if data.len() < ENVELOPE_LEN {
        return Err(DecodeError::Truncated);
    }
    if data[..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if data[2] != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(data[2]));
    }
    if data[3] != 0 {
        return Err(DecodeError::UnsupportedFlags(data[3]));
    }
    let hash = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if hash != cluster {
        return Err(DecodeError::WrongCluster);
    }
    let mut rest = &data[ENVELOPE_LEN..];
    if rest.is_empty() {
        return Err(DecodeError::Truncated);
    }
    let mut messages = Vec::new();
    while !rest.is_empty() {
        if messages.len() >= MAX_MESSAGES_PER_DATAGRAM {
            return Err(DecodeError::TooManyMessages);
        }
        let (message, tail) =
            postcard::take_from_bytes::<Message>(rest).map_err(|_| DecodeError::Malformed)?;
        messages.push(message);
        rest = tail;
    }
    Ok(messages)
}

#[cfg(test)]
mod tests;
