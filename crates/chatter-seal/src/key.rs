//! One 256-bit cluster key, its wire identifier and its printable fingerprint.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Length of a key in bytes (XChaCha20-Poly1305 keys are 256 bits).
pub const KEY_LEN: usize = 32;

/// Length of the base64 text of a key (standard alphabet, padded).
pub const KEY_BASE64_LEN: usize = 44;

/// Domain separation of the key id hash, so that the id never equals any other hash of the key.
const KEY_ID_DOMAIN: &[u8] = b"chatter key id v1";
/// Domain separation of the fingerprint hash.
const FINGERPRINT_DOMAIN: &[u8] = b"chatter key fingerprint v1";

/// Why a text is not a key. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not standard, padded base64.
    #[error("key is not valid base64 (standard alphabet, padded): {0}")]
    Base64(String),
    /// Valid base64 of the wrong number of bytes.
    #[error("key is {0} bytes long, expected {KEY_LEN}")]
    Length(usize),
}

/// The 4-byte identifier carried in every sealed datagram so that the receiver tries exactly one
/// key: the first 4 bytes of SHA-256(`"chatter key id v1"` || key).
///
/// It identifies, it does not authenticate: a forged id only selects a key whose tag check then
/// fails. A keyring refuses two keys with the same id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 4]);

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A printable, non-secret name of a key for listings, logs and commands such as "use key X":
/// the first 8 bytes of SHA-256(`"chatter key fingerprint v1"` || key), shown as 16 lowercase
/// hex characters. It reveals nothing usable about the key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 8]);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a text is not a fingerprint. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 16 hexadecimal characters")]
pub struct FingerprintError;

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().as_bytes();
        if s.len() != 16 {
            return Err(FingerprintError);
        }
        let mut out = [0u8; 8];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let (Some(&hi), Some(&lo)) = (pair.first(), pair.get(1)) else {
                return Err(FingerprintError);
            };
            *byte = (hex_digit(hi).ok_or(FingerprintError)? << 4)
                | hex_digit(lo).ok_or(FingerprintError)?;
        }
        Ok(Fingerprint(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A 256-bit cluster key.
///
/// The bytes are wiped from memory when the key is dropped; `Debug` prints only the
/// [`Fingerprint`]. The only ways to get the secret back out are [`Key::to_base64`] (for
/// `chatter keygen` and the keyring file) and the sealing itself.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    id: KeyId,
    fingerprint: Fingerprint,
}

impl Key {
    /// A key made of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        let id = {
            let digest = Sha256::new()
                .chain_update(KEY_ID_DOMAIN)
                .chain_update(bytes)
                .finalize();
            let mut id = [0u8; 4];
            id.copy_from_slice(&digest[..4]);
            KeyId(id)
        };
        let fingerprint = {
            let digest = Sha256::new()
                .chain_update(FINGERPRINT_DOMAIN)
                .chain_update(bytes)
                .finalize();
            let mut fp = [0u8; 8];
            fp.copy_from_slice(&digest[..8]);
            Fingerprint(fp)
        };
        Key {
            bytes,
            id,
            fingerprint,
        }
    }

    /// A fresh random key from a cryptographically secure RNG (the OS RNG in `chatter keygen`).
    pub fn generate<R: CryptoRng + RngCore + ?Sized>(rng: &mut R) -> Key {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(bytes.as_mut());
        Key::from_bytes(*bytes)
    }

    /// Parses the base64 text of a key: standard alphabet, padded, exactly [`KEY_LEN`] bytes.
    /// Whitespace around the text is ignored.
    pub fn from_base64(text: &str) -> Result<Key, KeyError> {
        let text = text.trim();
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| KeyError::Base64(e.to_string()))?,
        );
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(decoded.len()))?;
        Ok(Key::from_bytes(bytes))
    }

    /// The base64 text of the key (standard alphabet, padded, [`KEY_BASE64_LEN`] characters).
    /// This is the secret itself: it goes to the keyring file or to the operator, never to a log.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.bytes))
    }

    /// The identifier carried in sealed datagrams.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The printable, non-secret name of the key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The secret bytes, for sending the key sealed to the other members of the cluster
    /// during a key rotation. Never log them; [`Key::to_base64`] is the form for files.
    pub fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// The secret bytes, for the cipher.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Whether both keys hold the same bytes, compared without an early exit.
    pub(crate) fn same_as(&self, other: &Key) -> bool {
        self.bytes
            .iter()
            .zip(other.bytes.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn base64_round_trips() {
        let key = Key::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1));
        let text = key.to_base64();
        assert_eq!(text.len(), KEY_BASE64_LEN);
        let back = Key::from_base64(&text).unwrap();
        assert!(back.same_as(&key));
        assert_eq!(back.id(), key.id());
        assert_eq!(back.fingerprint(), key.fingerprint());
    }

    #[test]
    fn debug_shows_only_the_fingerprint() {
        let key = Key::from_bytes([7; KEY_LEN]);
        let debug = format!("{key:?}");
        assert_eq!(debug, format!("Key({})", key.fingerprint()));
        assert!(!debug.contains(key.to_base64().as_str()));
    }

    #[test]
    fn rejects_bad_base64_and_wrong_length() {
        assert!(matches!(
            Key::from_base64("not base64!"),
            Err(KeyError::Base64(_))
        ));
        // Unpadded text of 32 bytes is refused: the format is the padded one.
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode([1u8; 32]);
        assert!(matches!(
            Key::from_base64(&unpadded),
            Err(KeyError::Base64(_))
        ));
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert_eq!(Key::from_base64(&short).unwrap_err(), KeyError::Length(16));
        let long = base64::engine::general_purpose::STANDARD.encode([1u8; 33]);
        assert_eq!(Key::from_base64(&long).unwrap_err(), KeyError::Length(33));
    }

    #[test]
    fn fingerprint_parses_its_display() {
        let key = Key::from_bytes([9; KEY_LEN]);
        let text = key.fingerprint().to_string();
        assert_eq!(text.len(), 16);
        assert_eq!(text.parse::<Fingerprint>().unwrap(), key.fingerprint());
        assert_eq!(
            text.to_uppercase().parse::<Fingerprint>().unwrap(),
            key.fingerprint()
        );
        assert!("0123".parse::<Fingerprint>().is_err());
        assert!("zz23456789abcdef".parse::<Fingerprint>().is_err());
        assert!("é123456789abcde".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn id_and_fingerprint_are_domain_separated() {
        let key = Key::from_bytes([3; KEY_LEN]);
        assert_ne!(key.id().0, key.fingerprint().0[..4]);
    }
}
