//! Gossip encryption at the node's two choke points: every datagram the node queues is sealed
//! here (when the mode says so), and every datagram it receives is opened here before the wire
//! decoder sees a byte of it. The cryptography is `chatter-seal`'s; this file only decides
//! what to seal, what to accept and what to count.

use chatter_seal::{Keyring, OpenError, Opener, SealError, Sealer, SEAL_OVERHEAD};
use thiserror::Error;

use crate::config::Config;

/// How a node treats sealed and plain datagrams. The three keyed modes are the steps of moving
/// a running plaintext cluster to encryption without losing a member (memberlist's
/// verify-incoming / verify-outgoing, as one setting):
///
/// 1. every node restarts with the key in [`Mode::AcceptSealed`]: it still sends plain, so the
///    nodes not yet restarted understand it, and it already opens sealed datagrams;
/// 2. every node moves to [`Mode::SendSealed`]: it seals everything it sends; every node can open
///    it since step 1, and plain datagrams from nodes still at step 1 are still accepted;
/// 3. every node moves to [`Mode::Sealed`]: plain datagrams are refused from then on.
///
/// Each step must be complete on every node before the next begins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// No encryption: datagrams are sent plain, and sealed ones are dropped as an unsupported
    /// flag (`Stats::dropped_version`). The only mode without a keyring.
    #[default]
    Plaintext,
    /// Migration step 1: send plain, accept sealed and plain.
    AcceptSealed,
    /// Migration step 2: send sealed, accept sealed and plain.
    SendSealed,
    /// Encrypted: send sealed, accept only sealed datagrams that open under the keyring.
    Sealed,
}

impl Mode {
    /// Whether datagrams are sent sealed.
    pub fn sends_sealed(self) -> bool {
        matches!(self, Mode::SendSealed | Mode::Sealed)
    }

    /// Whether sealed datagrams are opened (rather than dropped).
    pub fn accepts_sealed(self) -> bool {
        !matches!(self, Mode::Plaintext)
    }

    /// Whether plain datagrams are accepted.
    pub fn accepts_plain(self) -> bool {
        !matches!(self, Mode::Sealed)
    }

    /// The mode's name as the daemon's flag spells it: `plaintext`, `accept-sealed`,
    /// `send-sealed`, `sealed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plaintext => "plaintext",
            Mode::AcceptSealed => "accept-sealed",
            Mode::SendSealed => "send-sealed",
            Mode::Sealed => "sealed",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = EncryptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "plaintext" => Ok(Mode::Plaintext),
            "accept-sealed" => Ok(Mode::AcceptSealed),
            "send-sealed" => Ok(Mode::SendSealed),
            "sealed" => Ok(Mode::Sealed),
            _ => Err(EncryptionError::UnknownMode),
        }
    }
}

/// Why an encryption setting was refused. The node's setting did not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncryptionError {
    /// A keyed mode without a keyring.
    #[error("encryption mode needs a keyring")]
    MissingKey,
    /// A mode name other than `plaintext`, `accept-sealed`, `send-sealed`, `sealed`.
    #[error("unknown encryption mode (plaintext, accept-sealed, send-sealed or sealed)")]
    UnknownMode,
    /// Sealing adds [`SEAL_OVERHEAD`] bytes to each datagram: the largest tags, key/value write
    /// or user message the config allows would no longer fit `Config::packet_budget`.
    #[error("packet_budget leaves no room for the {SEAL_OVERHEAD}-byte sealing overhead")]
    BudgetTooSmall,
}

/// Datagrams refused by the opener, by [`OpenError::reason`], and plain datagrams refused in
/// [`Mode::Sealed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealDrops {
    /// Sealed, but not plain-checkable: over the size limit or shorter than a header and tag.
    pub malformed: u64,
    /// Sealed with a protocol version or flags this node does not speak.
    pub bad_version: u64,
    /// Sealed for another cluster (cluster hash).
    pub wrong_cluster: u64,
    /// Sealed with a key that is not in the keyring.
    pub unknown_key: u64,
    /// The tag did not verify: forged, corrupted, or another cluster name.
    pub bad_tag: u64,
    /// Authentic, but already opened once.
    pub replayed: u64,
    /// Authentic, but below its sender's replay window.
    pub too_old: u64,
    /// Plain datagrams refused because the node accepts only sealed ones.
    pub not_sealed: u64,
}

impl SealDrops {
    /// Counts one refusal of the opener.
    pub(crate) fn record(&mut self, error: &OpenError) {
        let slot = match error {
            OpenError::Oversize(_) | OpenError::Truncated | OpenError::BadMagic => {
                &mut self.malformed
            }
            OpenError::UnsupportedVersion(_) | OpenError::UnsupportedFlags(_) => {
                &mut self.bad_version
            }
            OpenError::NotSealed => &mut self.not_sealed,
            OpenError::WrongCluster => &mut self.wrong_cluster,
            OpenError::UnknownKey(_) => &mut self.unknown_key,
            OpenError::BadTag => &mut self.bad_tag,
            OpenError::Replayed => &mut self.replayed,
            OpenError::TooOld => &mut self.too_old,
        };
        *slot = slot.saturating_add(1);
    }

    /// Every counter with its metrics label (`reason="bad_tag"`).
    pub fn by_reason(&self) -> [(&'static str, u64); 8] {
        [
            ("malformed", self.malformed),
            ("bad_version", self.bad_version),
            ("wrong_cluster", self.wrong_cluster),
            ("unknown_key", self.unknown_key),
            ("bad_tag", self.bad_tag),
            ("replayed", self.replayed),
            ("too_old", self.too_old),
            ("not_sealed", self.not_sealed),
        ]
    }

    /// Sum of every counter.
    pub fn total(&self) -> u64 {
        self.by_reason()
            .iter()
            .fold(0u64, |sum, (_, n)| sum.saturating_add(*n))
    }

    /// Adds `other`'s counts to these (for summing the counters of many nodes).
    pub fn add(&mut self, other: &SealDrops) {
        self.malformed += other.malformed;
        self.bad_version += other.bad_version;
        self.wrong_cluster += other.wrong_cluster;
        self.unknown_key += other.unknown_key;
        self.bad_tag += other.bad_tag;
        self.replayed += other.replayed;
        self.too_old += other.too_old;
        self.not_sealed += other.not_sealed;
    }
}

/// What the node does with a received datagram, after the encryption layer looked at it.
pub(crate) enum Inbound {
    /// Hand these bytes to the decoder: the datagram itself (plain) or what it opened to.
    Plain(Vec<u8>),
    /// Hand the datagram as received to the decoder.
    AsReceived,
    /// Drop it; it was counted.
    Refused(Refusal),
}

/// Why the encryption layer dropped a datagram (for the debug log).
pub(crate) enum Refusal {
    Open(OpenError),
    NotSealed,
}

/// The node's encryption state: the keyring, the mode, the sealer of this node's life and the
/// replay windows of the lives it hears from. Never printed with key material: `Keyring`'s
/// `Debug` shows fingerprints only.
#[derive(Debug, Default)]
pub(crate) struct Encryption {
    mode: Mode,
    keyring: Option<Keyring>,
    sealer: Option<Sealer>,
    opener: Opener,
}

impl Encryption {
    /// Replaces the setting. `epoch` starts a new sealer; see `Node::set_keyring`.
    pub(crate) fn set(
        &mut self,
        config: &Config,
        keyring: Option<Keyring>,
        mode: Mode,
        epoch: u64,
    ) -> Result<(), EncryptionError> {
        if mode != Mode::Plaintext && keyring.is_none() {
            return Err(EncryptionError::MissingKey);
        }
        if mode.sends_sealed() && !fits_sealed(config) {
            return Err(EncryptionError::BudgetTooSmall);
        }
        self.mode = mode;
        self.keyring = keyring;
        self.sealer = match (self.keyring.is_some(), self.sealer.take()) {
            (false, _) => None,
            // The same epoch again (a caller that passes its start-time epoch on every change):
            // the counter goes on rather than restarting at 0, so no nonce repeats.
            (true, Some(sealer)) if sealer.epoch() == epoch => Some(sealer),
            (true, _) => Some(Sealer::new(epoch)),
        };
        Ok(())
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The keyring, to install, use or remove keys (`key_rotation.rs`): the sealer picks the
    /// primary at each datagram, so a change takes effect with the next one.
    pub(crate) fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.keyring.as_mut()
    }

    /// Bytes sealing adds to each datagram this node sends.
    pub(crate) fn overhead(&self) -> usize {
        if self.mode.sends_sealed() {
            SEAL_OVERHEAD
        } else {
            0
        }
    }

    /// The datagram to put on the wire for the plain datagram `plain`.
    pub(crate) fn outbound(
        &mut self,
        cluster_name: &str,
        plain: Vec<u8>,
    ) -> Result<Vec<u8>, SealError> {
        if !self.mode.sends_sealed() {
            return Ok(plain);
        }
        match (&mut self.sealer, &self.keyring) {
            (Some(sealer), Some(keyring)) => sealer.seal(keyring, cluster_name, &plain),
            // `set` keeps a sealer and a keyring in every sending mode.
            _ => Err(SealError::NotPlain),
        }
    }

    /// Opens, passes or refuses a received datagram according to the mode.
    pub(crate) fn inbound(
        &mut self,
        cluster_name: &str,
        data: &[u8],
        drops: &mut SealDrops,
    ) -> Inbound {
        if chatter_seal::is_sealed(data) {
            let Some(keyring) = self.keyring.as_ref().filter(|_| self.mode.accepts_sealed()) else {
                // Without a key the decoder refuses the sealed flag and counts it.
                return Inbound::AsReceived;
            };
            match self.opener.open(keyring, cluster_name, data) {
                Ok(plain) => Inbound::Plain(plain),
                Err(error) => {
                    drops.record(&error);
                    Inbound::Refused(Refusal::Open(error))
                }
            }
        } else if self.mode.accepts_plain() {
            Inbound::AsReceived
        } else {
            drops.not_sealed = drops.not_sealed.saturating_add(1);
            Inbound::Refused(Refusal::NotSealed)
        }
    }
}

/// Whether the largest tags, key/value write and user message the config allows still fit one
/// sealed datagram (the margins of `Config::validate`, plus the sealing overhead).
fn fits_sealed(config: &Config) -> bool {
    let room = config.packet_budget.saturating_sub(SEAL_OVERHEAD);
    config.max_tags_size + 128 <= room
        && config.max_value_size + config.max_key_len + 128 <= room
        && config.max_message_size + config.max_tag_len + 160 <= room
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Open(error) => write!(f, "{error}"),
            Refusal::NotSealed => {
                f.write_str("plain datagram refused: only sealed ones are accepted")
            }
        }
    }
}
