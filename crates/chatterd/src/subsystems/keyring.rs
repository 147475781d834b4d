//! The gossip keyring: read at start from `--keyring-file`, the data directory or
//! `CHATTER_GOSSIP_KEY` ([`load`]), and kept in step with the node's keyring after run-time
//! key rotations ([`persist`]). The options themselves are in `options::encryption`.
//!
//! Whenever the node's keyring changes (an operation started here or a command from another
//! member), [`persist`] rewrites `--keyring-file` atomically, or without one the keyring file
//! of `--data-dir` (`DIR/keyring`, read back at the next start). With the key from
//! `CHATTER_GOSSIP_KEY` and no data directory there is no file: changes hold in memory only,
//! which the API's answers say and a warning logs.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use chatter::{Event, Handle, Keyring, Mode};
use tracing::{info, warn};

use crate::foundation::io::io_message;
use crate::options::encryption::{EncryptionMode, EnvKey, GOSSIP_KEY_ENV};

/// What the keyring needs of the options: where the keys come from, and the mode.
#[derive(Debug, Clone, Default)]
pub struct KeyringSettings {
    /// `--keyring-file`.
    pub keyring_file: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// The key of `CHATTER_GOSSIP_KEY`, read at start.
    pub gossip_key: Option<EnvKey>,
    /// `--encryption-mode`.
    pub encryption_mode: Option<EncryptionMode>,
}

impl KeyringSettings {
    /// The file the daemon keeps the keyring in step with: `--keyring-file`, else the data
    /// directory's keyring, else none (changes hold in memory only).
    pub fn file(&self) -> Option<PathBuf> {
        self.keyring_file
            .clone()
            .or_else(|| self.data_dir.as_ref().map(|d| d.join(DATA_DIR_KEYRING)))
    }
}

/// Name of the keyring file in `--data-dir`, written after run-time key rotations when there
/// is no `--keyring-file`.
pub const DATA_DIR_KEYRING: &str = "keyring";

/// The keyring and mode the settings ask for. Fails with a one-line reason: a keyring file that
/// cannot be read or parsed (with the line number), both a file and the environment variable,
/// or a mode without a key.
///
/// Precedence: `--keyring-file`, then the data directory's keyring, then
/// [`GOSSIP_KEY_ENV`]. The data directory's keyring exists only once a run-time rotation
/// changed the keyring this daemon started with, so it is newer than the variable (which a
/// rotation cannot update): after a rotation that removed the variable's key, the variable
/// alone would lock the restarted node out of its cluster. A data directory's keyring that
/// cannot be read is skipped with a warning.
pub fn load(settings: &KeyringSettings) -> Result<(Option<Keyring>, Mode)> {
    let from_data_dir = match (&settings.keyring_file, &settings.data_dir) {
        (None, Some(dir)) => data_dir_keyring(&dir.join(DATA_DIR_KEYRING), &settings.gossip_key),
        _ => None,
    };
    let keyring = match (&settings.keyring_file, &settings.gossip_key, from_data_dir) {
        (Some(_), Some(_), _) => {
            bail!("both --keyring-file and {GOSSIP_KEY_ENV} are set: give the key one way only")
        }
        (Some(path), None, _) => Some(read_keyring_file(path)?),
        (None, _, Some(keyring)) => Some(keyring),
        (None, Some(EnvKey(key)), None) => Some(Keyring::new(key.clone())),
        (None, None, None) => None,
    };
    let mode = match (settings.encryption_mode, &keyring) {
        (Some(mode), Some(_)) => mode.mode(),
        (None, Some(_)) => Mode::Sealed,
        (None, None) => Mode::Plaintext,
        (Some(mode), None) => bail!(
            "--encryption-mode {} needs a key: --keyring-file PATH or {GOSSIP_KEY_ENV}",
            mode.as_str()
        ),
    };
    Ok((keyring, mode))
}

/// The keyring saved in the data directory, if there is a readable one; warns when it does not
/// hold the key of [`GOSSIP_KEY_ENV`] (the variable is then ignored).
fn data_dir_keyring(path: &Path, env: &Option<EnvKey>) -> Option<Keyring> {
    if !path.exists() {
        return None;
    }
    match read_keyring_file(path) {
        Ok(keyring) => {
            let listed = keyring.list();
            if let Some(EnvKey(key)) = env {
                if !listed.iter().any(|k| k.fingerprint == key.fingerprint()) {
                    warn!(
                        path = %path.display(),
                        "{GOSSIP_KEY_ENV} is ignored: the data directory's keyring, written after \
                         a key rotation, does not hold its key; delete the file to start from \
                         the variable"
                    );
                }
            }
            tracing::info!(
                path = %path.display(),
                keys = listed.len(),
                "using the keyring saved in the data directory"
            );
            Some(keyring)
        }
        Err(error) => {
            warn!(%error, "the data directory's keyring cannot be used; ignoring it");
            None
        }
    }
}

/// Reads a keyring file (base64 keys one per line, the first is primary, `#` comments), and
/// warns if users other than the owner may read it.
pub fn read_keyring_file(path: &Path) -> Result<Keyring> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read keyring file {}", path.display()))?;
    warn_if_readable_by_others(path);
    Keyring::parse(&text).map_err(|e| anyhow!("keyring file {}: {e}", path.display()))
}

/// Rewrites the keyring file at `path` with `keyring`, atomically: a new file in the same
/// directory (mode 0600 from its creation, so the keys are never readable by others), written
/// and synced, renamed over `path`, then the directory synced so that the rename survives a
/// power loss. A crash at any point leaves either the old file or the new one, never a mix.
pub fn write_keyring_file(path: &Path, keyring: &Keyring) -> Result<()> {
    chatter::write_file_atomically(path, keyring.to_text().as_bytes()).map_err(|e| {
        anyhow!(
            "cannot rewrite keyring file {}: {}",
            path.display(),
            io_message(&e)
        )
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the keyring file is readable by group or others: anyone who reads it can join \
                 and forge gossip; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// What the answers say when changes are not written to any file.
pub const MEMORY_ONLY: &str = "this daemon took its key from CHATTER_GOSSIP_KEY and has no \
     keyring file nor --data-dir: the change holds in memory only and is lost at restart; give \
     the daemon a --keyring-file with the new keyring (or a --data-dir) before restarting it";

/// Keeps `--keyring-file` in step with the node's keyring until the node stops: rewritten
/// after every [`Event::KeyringChanged`] (and after missed events, in case one was among
/// them). Without a file, each change is logged as held in memory only.
pub async fn persist(handle: Handle, path: Option<PathBuf>) {
    let mut events = handle.subscribe();
    let mut skipped = 0;
    while let Some(event) = events.recv().await {
        let missed = events.skipped() != skipped;
        skipped = events.skipped();
        if !missed && !matches!(event, Event::KeyringChanged(_)) {
            continue;
        }
        let Some(path) = &path else {
            if matches!(event, Event::KeyringChanged(_)) {
                warn!("{MEMORY_ONLY}");
            }
            continue;
        };
        let keyring = match handle.keyring().await {
            Ok(Some(keyring)) => keyring,
            Ok(None) | Err(_) => continue,
        };
        match write_keyring_file(path, &keyring) {
            Ok(()) => info!(
                path = %path.display(),
                keys = ?keyring.list().iter().map(|k| k.fingerprint.to_string()).collect::<Vec<_>>(),
                "keyring file rewritten"
            ),
            Err(error) => warn!(%error, "the keyring changed but the file was not rewritten"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::flags::Args;
    use chatter::Key;
    use clap::Parser;

    /// The settings of these flags, as the daemon takes them from its options.
    fn args(extra: &[&str]) -> KeyringSettings {
        let mut argv = vec!["chatterd"];
        argv.extend_from_slice(extra);
        let args = Args::parse_from(argv);
        KeyringSettings {
            keyring_file: args.keyring_file,
            data_dir: args.data_dir,
            gossip_key: args.gossip_key,
            encryption_mode: args.encryption_mode,
        }
    }

    fn key_text(byte: u8) -> String {
        Key::from_bytes([byte; 32]).to_base64().to_string()
    }

    #[test]
    fn no_key_is_plaintext_and_a_key_defaults_to_sealed() {
        let (ring, mode) = load(&args(&[])).unwrap();
        assert!(ring.is_none());
        assert_eq!(mode, Mode::Plaintext);
        let mut a = args(&[]);
        a.gossip_key = Some(EnvKey(Key::from_bytes([1; 32])));
        assert_eq!(load(&a).unwrap().1, Mode::Sealed);
        let mut a = args(&["--encryption-mode", "accept-sealed"]);
        assert!(load(&a).unwrap_err().to_string().contains("needs a key"));
        a.gossip_key = Some(EnvKey(Key::from_bytes([1; 32])));
        assert_eq!(load(&a).unwrap().1, Mode::AcceptSealed);
    }

    #[test]
    fn keyring_file_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("chatterd-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keyring");
        std::fs::write(&path, format!("# primary\n{}\n\nnot-a-key\n", key_text(1))).unwrap();
        let err = read_keyring_file(&path).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        std::fs::write(&path, format!("{}\n# old\n{}\n", key_text(1), key_text(2))).unwrap();
        let ring = read_keyring_file(&path).unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(
            ring.primary().fingerprint(),
            Key::from_bytes([1; 32]).fingerprint()
        );
        let mut a = args(&["--keyring-file", path.to_str().unwrap()]);
        a.gossip_key = Some(EnvKey(Key::from_bytes([1; 32])));
        assert!(load(&a).unwrap_err().to_string().contains("one way only"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_keyring_file_is_rewritten_whole_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("chatterd-rewrite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keyring");
        std::fs::write(&path, format!("{}\n", key_text(1))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut ring = Keyring::new(Key::from_bytes([2; 32]));
        ring.install(Key::from_bytes([1; 32])).unwrap();
        write_keyring_file(&path, &ring).unwrap();
        let back = read_keyring_file(&path).unwrap();
        assert_eq!(back.list(), ring.list());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing left behind but the file itself.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["keyring"]);
        assert!(write_keyring_file(&dir.join("missing").join("keyring"), &ring).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_data_dir_keyring_comes_after_the_file_and_before_the_variable() {
        let dir = std::env::temp_dir().join(format!("chatterd-dd-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let rotated = Keyring::new(Key::from_bytes([3; 32]));
        write_keyring_file(&data_dir.join(DATA_DIR_KEYRING), &rotated).unwrap();
        let file = dir.join("keyring");
        std::fs::write(&file, format!("{}\n", key_text(4))).unwrap();
        let primary = |a: &KeyringSettings| load(a).unwrap().0.unwrap().primary().fingerprint();

        // The variable alone: the data directory's keyring wins, in sealed mode.
        let mut a = args(&["--data-dir", data_dir.to_str().unwrap()]);
        a.gossip_key = Some(EnvKey(Key::from_bytes([1; 32])));
        assert_eq!(primary(&a), Key::from_bytes([3; 32]).fingerprint());
        assert_eq!(load(&a).unwrap().1, Mode::Sealed);
        // Without the variable too.
        let a = args(&["--data-dir", data_dir.to_str().unwrap()]);
        assert_eq!(primary(&a), Key::from_bytes([3; 32]).fingerprint());
        // --keyring-file wins over it, and is the file kept in step.
        let a = args(&[
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--keyring-file",
            file.to_str().unwrap(),
        ]);
        assert_eq!(primary(&a), Key::from_bytes([4; 32]).fingerprint());
        assert_eq!(a.file().as_deref(), Some(file.as_path()));
        // An unreadable data directory keyring falls back to the variable.
        std::fs::write(data_dir.join(DATA_DIR_KEYRING), "not a key\n").unwrap();
        let mut a = args(&["--data-dir", data_dir.to_str().unwrap()]);
        a.gossip_key = Some(EnvKey(Key::from_bytes([1; 32])));
        assert_eq!(primary(&a), Key::from_bytes([1; 32]).fingerprint());
        assert_eq!(a.file(), Some(data_dir.join(DATA_DIR_KEYRING)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
