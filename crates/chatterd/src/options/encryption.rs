//! Gossip encryption options: the keyring file (`--keyring-file`), the one-key environment
//! variable ([`GOSSIP_KEY_ENV`]) and the mode (`--encryption-mode`). Key material never comes
//! from a command-line value, which `ps` shows to every user of the host. Reading the keyring
//! is `subsystems::keyring`.

use anyhow::{anyhow, Result};
use chatter::{Key, Mode};
use clap::ValueEnum;

/// The environment variable holding one base64 key (the keyring of that key alone).
pub const GOSSIP_KEY_ENV: &str = "CHATTER_GOSSIP_KEY";

/// `--encryption-mode`: the steps of moving a running cluster to encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncryptionMode {
    /// Step 1: send plain, accept sealed and plain.
    AcceptSealed,
    /// Step 2: send sealed, accept sealed and plain.
    SendSealed,
    /// Step 3, and the default with a key: send and accept only sealed datagrams.
    Sealed,
}

impl EncryptionMode {
    /// The core's mode.
    pub fn mode(self) -> Mode {
        match self {
            EncryptionMode::AcceptSealed => Mode::AcceptSealed,
            EncryptionMode::SendSealed => Mode::SendSealed,
            EncryptionMode::Sealed => Mode::Sealed,
        }
    }

    /// The flag's value (`accept-sealed`, `send-sealed`, `sealed`).
    pub fn as_str(self) -> &'static str {
        self.mode().as_str()
    }
}

/// A key read from [`GOSSIP_KEY_ENV`], kept out of `Debug` output (it prints the fingerprint).
#[derive(Debug, Clone)]
pub struct EnvKey(pub Key);

/// Reads and removes [`GOSSIP_KEY_ENV`] from this process's environment, so that health checks
/// and event handlers started later do not inherit the key. Call it before any thread starts.
pub fn take_env_key() -> Result<Option<EnvKey>> {
    let Some(value) = std::env::var_os(GOSSIP_KEY_ENV) else {
        return Ok(None);
    };
    std::env::remove_var(GOSSIP_KEY_ENV);
    let text = value
        .into_string()
        .map_err(|_| anyhow!("{GOSSIP_KEY_ENV}: not valid UTF-8"))?;
    let key = Key::from_base64(text.trim()).map_err(|e| anyhow!("{GOSSIP_KEY_ENV}: {e}"))?;
    Ok(Some(EnvKey(key)))
}
