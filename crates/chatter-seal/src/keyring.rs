//! The keyring: one primary key that seals, and the other keys that still open.

use zeroize::Zeroizing;

use crate::key::{Fingerprint, Key, KeyError, KeyId};

/// Most keys a keyring holds. Opening tries one key (chosen by its [`KeyId`]), so the bound is
/// not about speed: it keeps the ring, the keyring file and the listing small, and a rotation
/// needs only two or three keys at a time.
pub const MAX_KEYS: usize = 16;

/// Why a keyring operation was refused. The keyring is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The ring already holds [`MAX_KEYS`] keys.
    #[error("the keyring already holds {MAX_KEYS} keys")]
    Full,
    /// A different key with the same [`KeyId`] (or the same fingerprint) is installed: a receiver
    /// could not tell which key to try. Generate another key.
    #[error("key {new} has the same key id as installed key {installed}; generate another key")]
    KeyIdCollision {
        /// The key that was refused.
        new: Fingerprint,
        /// The installed key it collides with.
        installed: Fingerprint,
    },
    /// No installed key has this fingerprint.
    #[error("no installed key has fingerprint {0}")]
    NotInstalled(Fingerprint),
    /// The primary key cannot be removed: make another key primary first.
    #[error("key {0} is the primary key; make another key primary before removing it")]
    RemovePrimary(Fingerprint),
}

/// Why a keyring file did not parse. Line numbers start at 1. Nothing was built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringParseError {
    /// A line is not a key.
    #[error("line {line}: {error}")]
    BadKey {
        /// Line of the bad key.
        line: usize,
        /// What is wrong with it.
        error: KeyError,
    },
    /// No key at all: a keyring needs a primary key.
    #[error("the keyring holds no key (one base64 key per line, the first is primary)")]
    Empty,
    /// More than [`MAX_KEYS`] keys.
    #[error("line {line}: more than {MAX_KEYS} keys")]
    TooManyKeys {
        /// Line of the first key over the bound.
        line: usize,
    },
    /// The same key twice.
    #[error("line {line}: the same key as line {first}")]
    DuplicateKey {
        /// Line of the repeated key.
        line: usize,
        /// Line where it first appears.
        first: usize,
    },
    /// Two different keys with the same key id (or fingerprint).
    #[error("line {line}: same key id as the key on line {first}; generate another key")]
    KeyIdCollision {
        /// Line of the second key.
        line: usize,
        /// Line of the first key.
        first: usize,
    },
}

/// One key as listed: its fingerprint and whether it is the primary. Never key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's fingerprint.
    pub fingerprint: Fingerprint,
    /// Whether datagrams are sealed with this key.
    pub primary: bool,
}

/// The keys of a node: the primary seals, every key (the primary included) opens.
///
/// Rotation across a cluster: install the new key everywhere (every node now opens both), then
/// make it primary everywhere (nodes seal with it; those still on the old primary remain
/// readable), then remove the old key everywhere.
///
/// Invariants: 1 to [`MAX_KEYS`] keys, pairwise distinct key ids and fingerprints.
#[derive(Clone)]
pub struct Keyring {
    /// The primary is `keys[0]`; the others keep their installation order.
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter()).finish()
    }
}

impl Keyring {
    /// A ring holding only `primary`.
    pub fn new(primary: Key) -> Keyring {
        Keyring {
            keys: vec![primary],
        }
    }

    /// The key that seals.
    pub fn primary(&self) -> &Key {
        // The ring is never empty (constructors need a key, `remove` refuses the primary).
        &self.keys[0]
    }

    /// The key with this id, if installed: the only key a sealed datagram is tried with.
    pub fn by_id(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// Number of keys (at least 1).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a keyring holds at least its primary key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Adds `key` to the keys that open. Returns `false` (and changes nothing) when the key is
    /// already installed, so that repeating an install is harmless.
    pub fn install(&mut self, key: Key) -> Result<bool, KeyringError> {
        if self.keys.iter().any(|k| k.same_as(&key)) {
            return Ok(false);
        }
        if let Some(installed) = self
            .keys
            .iter()
            .find(|k| k.id() == key.id() || k.fingerprint() == key.fingerprint())
        {
            return Err(KeyringError::KeyIdCollision {
                new: key.fingerprint(),
                installed: installed.fingerprint(),
            });
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyringError::Full);
        }
        self.keys.push(key);
        Ok(true)
    }

    /// Makes the installed key with this fingerprint the primary. The former primary still
    /// opens. Making the primary primary again is a no-op.
    pub fn use_key(&mut self, fingerprint: Fingerprint) -> Result<(), KeyringError> {
        let index = self
            .position(fingerprint)
            .ok_or(KeyringError::NotInstalled(fingerprint))?;
        // Move it to the front, keeping the others in order: the former primary comes second.
        self.keys[..=index].rotate_right(1);
        Ok(())
    }

    /// Removes the key with this fingerprint: datagrams sealed with it no longer open. Returns
    /// `false` (and changes nothing) when no key has this fingerprint; the primary is refused.
    pub fn remove(&mut self, fingerprint: Fingerprint) -> Result<bool, KeyringError> {
        match self.position(fingerprint) {
            None => Ok(false),
            Some(0) => Err(KeyringError::RemovePrimary(fingerprint)),
            Some(index) => {
                self.keys.remove(index);
                Ok(true)
            }
        }
    }

    /// The keys' fingerprints, primary first.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| KeyInfo {
                fingerprint: k.fingerprint(),
                primary: i == 0,
            })
            .collect()
    }

    fn position(&self, fingerprint: Fingerprint) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.fingerprint() == fingerprint)
    }

    /// Parses keyring-file text: one base64 key per line, the first is primary; blank lines and
    /// lines starting with `#` are ignored, as is whitespace around a key.
    pub fn parse(text: &str) -> Result<Keyring, KeyringParseError> {
        // (line, key) of each key read so far.
        let mut keys: Vec<(usize, Key)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index.saturating_add(1);
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let key = Key::from_base64(trimmed)
                .map_err(|error| KeyringParseError::BadKey { line, error })?;
            if let Some((first, _)) = keys.iter().find(|(_, k)| k.same_as(&key)) {
                return Err(KeyringParseError::DuplicateKey {
                    line,
                    first: *first,
                });
            }
            if let Some((first, _)) = keys
                .iter()
                .find(|(_, k)| k.id() == key.id() || k.fingerprint() == key.fingerprint())
            {
                return Err(KeyringParseError::KeyIdCollision {
                    line,
                    first: *first,
                });
            }
            if keys.len() >= MAX_KEYS {
                return Err(KeyringParseError::TooManyKeys { line });
            }
            keys.push((line, key));
        }
        if keys.is_empty() {
            return Err(KeyringParseError::Empty);
        }
        Ok(Keyring {
            keys: keys.into_iter().map(|(_, k)| k).collect(),
        })
    }

    /// The keyring-file text of this ring, which [`Keyring::parse`] reads back to the same ring:
    /// a comment line, then one base64 key per line, primary first. It holds the secrets.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(
            64 + self.keys.len() * (crate::key::KEY_BASE64_LEN + 1),
        ));
        text.push_str("# Chatter keyring: one base64 key per line, the first one seals.\n");
        for key in &self.keys {
            text.push_str(&key.to_base64());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KEY_LEN;

    fn key(n: u8) -> Key {
        Key::from_bytes([n; KEY_LEN])
    }

    #[test]
    fn install_is_idempotent_and_bounded() {
        let mut ring = Keyring::new(key(0));
        assert_eq!(ring.install(key(1)), Ok(true));
        assert_eq!(ring.install(key(1)), Ok(false));
        assert_eq!(ring.len(), 2);
        for n in 2..MAX_KEYS as u8 {
            assert_eq!(ring.install(key(n)), Ok(true));
        }
        assert_eq!(ring.len(), MAX_KEYS);
        assert_eq!(ring.install(key(200)), Err(KeyringError::Full));
        // An installed key is still accepted idempotently when the ring is full.
        assert_eq!(ring.install(key(3)), Ok(false));
    }

    #[test]
    fn use_key_moves_the_key_first_and_keeps_the_old_primary() {
        let mut ring = Keyring::new(key(0));
        ring.install(key(1)).unwrap();
        ring.install(key(2)).unwrap();
        ring.use_key(key(2).fingerprint()).unwrap();
        let list: Vec<_> = ring.list().iter().map(|i| i.fingerprint).collect();
        assert_eq!(
            list,
            [
                key(2).fingerprint(),
                key(0).fingerprint(),
                key(1).fingerprint()
            ]
        );
        assert!(ring.list()[0].primary && !ring.list()[1].primary);
        assert_eq!(
            ring.use_key(key(9).fingerprint()),
            Err(KeyringError::NotInstalled(key(9).fingerprint()))
        );
    }

    #[test]
    fn remove_refuses_the_primary() {
        let mut ring = Keyring::new(key(0));
        ring.install(key(1)).unwrap();
        assert_eq!(
            ring.remove(key(0).fingerprint()),
            Err(KeyringError::RemovePrimary(key(0).fingerprint()))
        );
        assert_eq!(ring.remove(key(1).fingerprint()), Ok(true));
        assert_eq!(ring.remove(key(1).fingerprint()), Ok(false));
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn text_round_trips() {
        let mut ring = Keyring::new(key(5));
        ring.install(key(6)).unwrap();
        ring.install(key(7)).unwrap();
        let back = Keyring::parse(&ring.to_text()).unwrap();
        assert_eq!(back.list(), ring.list());
    }
}
