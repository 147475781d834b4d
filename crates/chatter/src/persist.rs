//! Restarts that keep state: the snapshot a node with a data directory keeps on disk
//! ([`Builder::data_dir`](crate::Builder::data_dir)).
//!
//! # What is kept
//!
//! One file, `DIR/state`, holds a [`SavedState`]: the node's name, the generation and
//! incarnation of its last life, its own key/values (those it wrote, never other members'
//! replicas), its tags, and up to [`MAX_SAVED_MEMBERS`] members it saw alive (name and gossip
//! address, most recently seen first).
//!
//! # Format
//!
//! ```text
//! offset  size  field
//!      0     8  magic "CHATSTAT"
//!      8     2  format version, little-endian (FORMAT_VERSION = 1)
//!     10     2  reserved, 0
//!     12     4  payload length in bytes, little-endian
//!     16    32  SHA-256 of the payload
//!     48     n  payload: the SavedState in postcard
//! ```
//!
//! The length and the digest tell a torn or corrupt file (a crash in the middle of a write on a
//! file system without atomic rename, a disk error, a hand edit) from a good one; the version
//! tells a file of another format. A file is at most [`state_file_limit`] bytes (about 300 KiB
//! with the default limits): the reader never reads or allocates more, whatever the length
//! field says.
//!
//! # How it is written
//!
//! Atomically ([`write_file_atomically`]): a temporary file in the same directory (mode 0600),
//! written, synced, renamed over the old one, then the directory synced. A crash at any point
//! leaves the old snapshot or the new one, never a mix. The driver writes after a change of the
//! node's own state (a key written or deleted, tags, a refutation's incarnation, a new life)
//! or of the live members, at most once per [`MIN_SAVE_INTERVAL`], off the driver task (an
//! fsync can take tens of milliseconds on a busy disk, longer than a probe may wait), and once
//! more when the node stops. A failed write is logged (at most once per [`WARN_INTERVAL`]) and
//! counted in [`IoStats::state_write_failures`](crate::IoStats::state_write_failures); the
//! node runs on.
//!
//! # What a bad file does
//!
//! A file that is truncated, too large, of another version, fails its digest or does not decode
//! is renamed aside to `state.corrupt-<unix seconds>` (only the latest such file is kept), a
//! warning names it and the reason, and the node starts clean. A file that cannot be read at
//! all (permissions) is not moved: the node starts clean and the start's snapshot replaces it
//! (a rename needs only the directory to be writable), or the start fails if it cannot.

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatter_core::{Config, MemberStatus, Node, Tags};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tracing::warn;

/// Name of the snapshot file in the data directory.
pub const STATE_FILE: &str = "state";
/// Prefix of a snapshot set aside because it could not be used: `state.corrupt-<unix seconds>`.
const CORRUPT_PREFIX: &str = "state.corrupt-";
/// The first bytes of every snapshot file.
const MAGIC: &[u8; 8] = b"CHATSTAT";
/// The format this version writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload: magic, version, reserved, length, digest.
const HEADER_LEN: usize = 48;
/// Members remembered as join targets: enough to find a way back into the cluster when every
/// seed is down (any one live member suffices), few enough that a node whose remembered
/// members are all gone sends at most this many requests into the void per join attempt.
pub const MAX_SAVED_MEMBERS: usize = 64;
/// Shortest time between two writes while changes keep coming: a node that writes a key per
/// millisecond writes its file once a second, not a thousand times. A crash loses at most
/// the changes of this last second (the graceful stop writes them).
pub const MIN_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest time between two warnings about failed writes (a full disk fails every write).
pub const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// Ceiling of [`state_file_limit`], whatever the configuration says.
const MAX_FILE_LIMIT: usize = 64 << 20;

/// A member remembered as a way back into the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedMember {
    /// Its name.
    pub name: String,
    /// Its gossip address when last seen alive.
    pub addr: SocketAddr,
}

/// What a node keeps in its data directory across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// The node's name.
    pub name: String,
    /// The generation of the node's last life: the next start takes a higher one.
    pub generation: u64,
    /// The incarnation reached in that life (for the record: a new life starts at 0).
    pub incarnation: u64,
    /// Milliseconds since the Unix epoch when the snapshot was taken.
    pub saved_at_ms: u64,
    /// The tags the node ran with.
    pub tags: Tags,
    /// The node's own keys and their values (deleted keys are not kept).
    pub entries: BTreeMap<String, Vec<u8>>,
    /// Members seen alive, most recently seen first, at most [`MAX_SAVED_MEMBERS`].
    pub members: Vec<SavedMember>,
}

/// Why a snapshot file could not be used. The node starts clean in every case.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (permissions, IO error); it is left where it is.
    #[error("cannot read: {0}")]
    Unreadable(#[source] io::Error),
    /// Larger than [`state_file_limit`].
    #[error("larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Shorter than its header or than the length the header gives: a torn write.
    #[error("truncated ({len} bytes)")]
    Truncated {
        /// Bytes in the file.
        len: usize,
    },
    /// Does not start with the magic bytes: not a snapshot.
    #[error("not a chatter state file")]
    BadMagic,
    /// Written in another format.
    #[error("format version {found}, this build reads version {}", FORMAT_VERSION)]
    WrongVersion {
        /// The version in the file.
        found: u16,
    },
    /// Longer than the length the header gives.
    #[error("{extra} bytes after the end the header gives")]
    TrailingBytes {
        /// Bytes beyond the payload.
        extra: usize,
    },
    /// The payload does not match its digest: corrupt.
    #[error("checksum mismatch")]
    Checksum,
    /// The payload does not decode, or holds a value outside the limits.
    #[error("invalid content: {0}")]
    Invalid(String),
}

/// How a node with a data directory started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartedFrom {
    /// No snapshot: a first start.
    Fresh,
    /// A snapshot was restored.
    Restored {
        /// The generation of the previous life.
        previous_generation: u64,
        /// Own keys written again into the new life.
        keys: usize,
        /// Remembered members added to the join targets.
        members: usize,
    },
    /// The snapshot belonged to another node name: only its members (as join targets) and
    /// its generation (as a floor) were used.
    OtherName {
        /// The name in the snapshot.
        saved_name: String,
    },
    /// The snapshot could not be used (the reason), and was moved to the path given if it
    /// could be; the node started clean.
    SetAside {
        /// Why.
        reason: String,
        /// Where the file went.
        moved_to: Option<PathBuf>,
    },
}

impl StartedFrom {
    /// Whether a snapshot of this node was restored.
    pub fn is_restored(&self) -> bool {
        matches!(self, StartedFrom::Restored { .. })
    }
}

/// The data directory of a running node, and how it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    /// The directory.
    pub path: PathBuf,
    /// What the start found in it.
    pub started_from: StartedFrom,
}

/// Most bytes a snapshot file of a node under `config` may take: every own key at its largest
/// (`max_state_bytes_per_node` of keys and values, 16 bytes of framing per key), the tags, the
/// name and [`MAX_SAVED_MEMBERS`] members (name and address), plus the header and some slack;
/// never more than 64 MiB. With the default limits, about 310 KiB.
pub fn state_file_limit(config: &Config) -> usize {
    let keys = config
        .max_keys_per_node
        .saturating_mul(16)
        .saturating_add(config.max_state_bytes_per_node);
    let members = MAX_SAVED_MEMBERS.saturating_mul(config.max_name_len.saturating_add(32));
    keys.saturating_add(members)
        .saturating_add(config.max_tags_size.saturating_mul(2))
        .saturating_add(config.max_name_len)
        .saturating_add(HEADER_LEN + 4096)
        .min(MAX_FILE_LIMIT)
}

impl SavedState {
    /// Reads the snapshot in `dir`, checked against the limits of `config`: `Ok(None)` when
    /// there is none. Reads at most [`state_file_limit`] bytes; changes nothing on disk.
    pub fn read(dir: &Path, config: &Config) -> Result<Option<SavedState>, LoadError> {
        let limit = state_file_limit(config);
        let file = match std::fs::File::open(dir.join(STATE_FILE)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LoadError::Unreadable(e)),
        };
        let mut bytes = Vec::new();
        // One byte more than the limit tells "too large" without reading a huge file.
        file.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(LoadError::Unreadable)?;
        if bytes.len() > limit {
            return Err(LoadError::TooLarge { limit });
        }
        Self::decode(&bytes, config).map(Some)
    }

    /// Decodes and checks a whole snapshot file.
    pub fn decode(bytes: &[u8], config: &Config) -> Result<SavedState, LoadError> {
        if bytes.len() < MAGIC.len() {
            return Err(LoadError::Truncated { len: bytes.len() });
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(LoadError::BadMagic);
        }
        let Some(header) = bytes.get(..HEADER_LEN) else {
            return Err(LoadError::Truncated { len: bytes.len() });
        };
        let version = u16::from_le_bytes([header[8], header[9]]);
        if version != FORMAT_VERSION {
            return Err(LoadError::WrongVersion { found: version });
        }
        let len = u32::from_le_bytes([header[12], header[13], header[14], header[15]]) as usize;
        let body = &bytes[HEADER_LEN..];
        if body.len() < len {
            return Err(LoadError::Truncated { len: bytes.len() });
        }
        if body.len() > len {
            return Err(LoadError::TrailingBytes {
                extra: body.len() - len,
            });
        }
        if Sha256::digest(body).as_slice() != &header[16..HEADER_LEN] {
            return Err(LoadError::Checksum);
        }
        let state: SavedState =
            postcard::from_bytes(body).map_err(|e| LoadError::Invalid(e.to_string()))?;
        state.check(config).map_err(LoadError::Invalid)?;
        Ok(state)
    }

    /// Encodes the snapshot as a whole file (header and payload).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising owned strings, maps and addresses into a Vec cannot fail.
        let payload = postcard::to_allocvec(self).unwrap_or_default();
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&payload));
        out.extend_from_slice(&payload);
        out
    }

    /// The limits a decoded snapshot must keep: those of the node that will use it.
    fn check(&self, config: &Config) -> Result<(), String> {
        let name_ok = |n: &str| !n.is_empty() && n.len() <= config.max_name_len;
        if !name_ok(&self.name) {
            return Err("node name empty or too long".into());
        }
        if self.generation > chatter_core::limits::MAX_GENERATION {
            return Err("generation above the protocol's limit".into());
        }
        if self.members.len() > MAX_SAVED_MEMBERS {
            return Err(format!("more than {MAX_SAVED_MEMBERS} members"));
        }
        if self.members.iter().any(|m| !name_ok(&m.name)) {
            return Err("a member name empty or too long".into());
        }
        if self.entries.len() > config.max_keys_per_node {
            return Err("more keys than max_keys_per_node".into());
        }
        Ok(())
    }

    /// The state of `node` now: `previous` is the member list of the last snapshot, whose
    /// members not live now follow the live ones (so a member seen recently stays a join
    /// target for a while after it fails, and one not seen for long ages out).
    pub(crate) fn of(node: &Node, previous: &[SavedMember]) -> SavedState {
        let me = node.local_member();
        let entries = node
            .node_state(&me.name)
            .map(|entries| {
                entries
                    .filter_map(|(k, kv)| Some((k.to_owned(), kv.value.clone()?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut live: Vec<SavedMember> = node
            .member_briefs()
            .filter(|(_, b)| matches!(b.status, MemberStatus::Alive | MemberStatus::Suspect))
            .map(|(name, b)| SavedMember {
                name: name.to_owned(),
                addr: b.addr,
            })
            .collect();
        // Deterministic choice among more than MAX_SAVED_MEMBERS live members.
        live.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        live.truncate(MAX_SAVED_MEMBERS);
        let older: Vec<SavedMember> = previous
            .iter()
            .filter(|p| !live.iter().any(|l| l.name == p.name))
            .cloned()
            .collect();
        let mut members = live;
        members.extend(older);
        members.truncate(MAX_SAVED_MEMBERS);
        SavedState {
            name: me.name.clone(),
            generation: me.generation,
            incarnation: me.incarnation,
            saved_at_ms: unix_millis(),
            tags: me.tags.clone(),
            entries,
            members,
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads the snapshot of `dir` for a start: a bad file is moved aside (keeping only the latest
/// bad one) and reported, never an error.
pub(crate) fn load_for_start(dir: &Path, config: &Config) -> (Option<SavedState>, StartedFrom) {
    match SavedState::read(dir, config) {
        Ok(None) => (None, StartedFrom::Fresh),
        Ok(Some(state)) => {
            let previous_generation = state.generation;
            let started = StartedFrom::Restored {
                previous_generation,
                keys: state.entries.len(),
                members: state.members.len(),
            };
            (Some(state), started)
        }
        Err(error) => {
            let file = dir.join(STATE_FILE);
            let moved_to = match &error {
                // Nothing is known to be wrong with the content: leave it for the operator.
                LoadError::Unreadable(_) => None,
                _ => set_aside(dir),
            };
            warn!(
                file = %file.display(),
                reason = %error,
                moved_to = ?moved_to.as_ref().map(|p| p.display().to_string()),
                "the saved node state cannot be used; starting clean"
            );
            (
                None,
                StartedFrom::SetAside {
                    reason: error.to_string(),
                    moved_to,
                },
            )
        }
    }
}

/// Renames the bad snapshot to `state.corrupt-<unix seconds>` and removes older ones, so at
/// most one set-aside file ever sits in the directory. Returns where it went.
fn set_aside(dir: &Path) -> Option<PathBuf> {
    let secs = unix_millis() / 1000;
    let target = dir.join(format!("{CORRUPT_PREFIX}{secs}"));
    if let Err(error) = std::fs::rename(dir.join(STATE_FILE), &target) {
        warn!(dir = %dir.display(), %error, "cannot move the bad state file aside");
        return None;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(CORRUPT_PREFIX) && entry.path() != target {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Some(target)
}

/// Creates the data directory if it does not exist (mode 0700: the snapshot holds the node's
/// keys and values), and checks that it is a directory this process can write files in (by
/// writing and removing a small file, the way the snapshot is written). What
/// [`Builder::spawn`](crate::Builder::spawn) does first with a data directory; a daemon calls
/// it earlier to refuse a bad directory like a bad flag.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a directory",
        ));
    }
    let probe = dir.join(".write-test");
    write_file_atomically(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// Replaces the file at `path` with `bytes`, atomically: a new file in the same directory
/// (mode 0600 from its creation, so the content is never readable by others), written and
/// synced, renamed over `path`, then the directory synced so that the rename survives a power
/// loss. A crash at any point leaves either the old file or the new one, never a mix; a
/// failure removes the temporary file.
///
/// Two writers of the same path in one process must not run at once (they share the
/// temporary file's name, made of the path and the process id).
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = dir.join(temp_name);
    let write = || -> io::Result<()> {
        // A temporary file left by a crash of a process with this id is stale.
        let _ = std::fs::remove_file(&temp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Writes `state` as the snapshot of `dir`.
pub(crate) fn save(dir: &Path, state: &SavedState) -> io::Result<()> {
    write_file_atomically(&dir.join(STATE_FILE), &state.encode())
}

/// The driver's side of persistence: when the next snapshot is due, and the bookkeeping of
/// failed writes. Writes themselves run on Tokio's blocking pool, one at a time.
#[derive(Debug)]
pub(crate) struct Persister {
    dir: PathBuf,
    /// Something changed since the last snapshot taken.
    dirty: bool,
    /// No snapshot is taken before this (debounce).
    not_before: Instant,
    /// The member list of the last snapshot.
    members: Vec<SavedMember>,
    /// `(generation, incarnation)` of the last snapshot: a change of either is a change.
    life: (u64, u64),
    last_warning: Option<Instant>,
}

impl Persister {
    /// Persistence into `dir`, whose snapshot at start was `initial`.
    pub(crate) fn new(dir: PathBuf, initial: &SavedState, now: Instant) -> Self {
        Self {
            dir,
            dirty: false,
            not_before: now + MIN_SAVE_INTERVAL,
            members: initial.members.clone(),
            life: (initial.generation, initial.incarnation),
            last_warning: None,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Notes a change of what the snapshot holds.
    pub(crate) fn touch(&mut self) {
        self.dirty = true;
    }

    /// Notes a change if the node's life or incarnation moved since the last snapshot.
    pub(crate) fn check_life(&mut self, node: &Node) {
        let me = node.local_member();
        if (me.generation, me.incarnation) != self.life {
            self.dirty = true;
        }
    }

    /// When the next snapshot is due, if one is.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.dirty.then_some(self.not_before)
    }

    /// Takes the snapshot due (or forced) and returns it to be written.
    pub(crate) fn take(&mut self, node: &Node, now: Instant) -> SavedState {
        let state = SavedState::of(node, &self.members);
        self.members.clone_from(&state.members);
        self.life = (state.generation, state.incarnation);
        self.dirty = false;
        self.not_before = now + MIN_SAVE_INTERVAL;
        state
    }

    /// Records a failed write: logged at most once per [`WARN_INTERVAL`]; the next change
    /// tries again.
    pub(crate) fn failed(&mut self, error: &io::Error, now: Instant) {
        // The state is still unsaved.
        self.dirty = true;
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL)
        {
            self.last_warning = Some(now);
            warn!(
                dir = %self.dir.display(),
                %error,
                "cannot write the node state; will retry (later failures are counted, not logged, for a minute)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "chatter-persist-{tag}-{}-{}",
            std::process::id(),
            unix_millis()
        ));
        prepare_dir(&dir).unwrap();
        dir
    }

    fn sample() -> SavedState {
        SavedState {
            name: "node-b".into(),
            generation: 1_700_000_000_000,
            incarnation: 7,
            saved_at_ms: 1_700_000_001_000,
            tags: [("role".to_owned(), "web".to_owned())].into(),
            entries: [
                ("status".to_owned(), b"ready".to_vec()),
                ("load".to_owned(), b"0.5".to_vec()),
            ]
            .into(),
            members: vec![SavedMember {
                name: "node-a".into(),
                addr: "127.0.0.1:7000".parse().unwrap(),
            }],
        }
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = temp_dir("round");
        let config = Config::local();
        save(&dir, &sample()).unwrap();
        assert_eq!(SavedState::read(&dir, &config).unwrap(), Some(sample()));
        let (state, started) = load_for_start(&dir, &config);
        assert_eq!(state, Some(sample()));
        assert!(started.is_restored());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(STATE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_file_is_a_fresh_start() {
        let dir = temp_dir("fresh");
        let (state, started) = load_for_start(&dir, &Config::local());
        assert_eq!(state, None);
        assert_eq!(started, StartedFrom::Fresh);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample().encode();
        let config = Config::local();
        for len in 0..bytes.len() {
            let result = SavedState::decode(&bytes[..len], &config);
            assert!(
                matches!(result, Err(LoadError::Truncated { .. })),
                "length {len}: {result:?}"
            );
        }
        assert!(SavedState::decode(&bytes, &config).is_ok());
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = sample().encode();
        let config = Config::local();
        for at in 0..bytes.len() {
            // The reserved bytes are not checked: a flip there changes nothing read.
            if (10..12).contains(&at) {
                continue;
            }
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(
                SavedState::decode(&bad, &config).is_err(),
                "flip at byte {at} accepted"
            );
        }
    }

    #[test]
    fn other_versions_and_trailing_bytes_are_refused() {
        let config = Config::local();
        let mut bytes = sample().encode();
        bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
        assert!(matches!(
            SavedState::decode(&bytes, &config),
            Err(LoadError::WrongVersion { found: 2 })
        ));
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(
            SavedState::decode(&bytes, &config),
            Err(LoadError::TrailingBytes { extra: 1 })
        ));
        assert!(matches!(
            SavedState::decode(b"{\"name\": \"json\"}", &config),
            Err(LoadError::BadMagic)
        ));
    }

    #[test]
    fn content_outside_the_limits_is_refused() {
        let config = Config::local();
        let mut state = sample();
        state.name = String::new();
        assert!(matches!(
            SavedState::decode(&state.encode(), &config),
            Err(LoadError::Invalid(_))
        ));
        let mut state = sample();
        state.members = (0..=MAX_SAVED_MEMBERS)
            .map(|i| SavedMember {
                name: format!("m{i}"),
                addr: "127.0.0.1:1".parse().unwrap(),
            })
            .collect();
        assert!(matches!(
            SavedState::decode(&state.encode(), &config),
            Err(LoadError::Invalid(_))
        ));
        let mut state = sample();
        state.generation = chatter_core::limits::MAX_GENERATION + 1;
        assert!(matches!(
            SavedState::decode(&state.encode(), &config),
            Err(LoadError::Invalid(_))
        ));
    }

    #[test]
    fn an_oversized_file_is_refused_without_reading_it_whole() {
        let dir = temp_dir("big");
        let config = Config::local();
        let limit = state_file_limit(&config);
        let mut bytes = sample().encode();
        bytes.resize(limit + 10, 0);
        std::fs::write(dir.join(STATE_FILE), &bytes).unwrap();
        assert!(matches!(
            SavedState::read(&dir, &config),
            Err(LoadError::TooLarge { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_file_is_set_aside_and_only_the_latest_kept() {
        let dir = temp_dir("aside");
        let config = Config::local();
        // An older set-aside file, as a previous bad start would have left.
        std::fs::write(dir.join(format!("{CORRUPT_PREFIX}1")), b"old").unwrap();
        let bytes = sample().encode();
        std::fs::write(dir.join(STATE_FILE), &bytes[..bytes.len() / 2]).unwrap();
        let (state, started) = load_for_start(&dir, &config);
        assert_eq!(state, None);
        let StartedFrom::SetAside { reason, moved_to } = started else {
            panic!("not set aside: {started:?}");
        };
        assert!(reason.contains("truncated"), "{reason}");
        let moved_to = moved_to.unwrap();
        assert_eq!(std::fs::read(&moved_to).unwrap(), &bytes[..bytes.len() / 2]);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with(CORRUPT_PREFIX));
        assert!(!dir.join(STATE_FILE).exists());
        // The next start is a clean first start.
        assert_eq!(load_for_start(&dir, &config).1, StartedFrom::Fresh);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_snapshot_holds_own_keys_and_lists_live_members_before_older_ones() {
        use chatter_core::Identity;
        let now = Instant::now();
        let identity = Identity::new("me", "127.0.0.1:7000".parse().unwrap(), 5);
        let mut node = Node::new(identity, Config::local(), 1, now).unwrap();
        node.set(now, "kept", b"1".to_vec()).unwrap();
        node.set(now, "deleted", b"2".to_vec()).unwrap();
        node.delete(now, "deleted").unwrap();
        node.preload_members(
            now,
            [
                ("b", "127.0.0.1:7002".parse().unwrap(), 1),
                ("c", "127.0.0.1:7003".parse().unwrap(), 1),
            ],
        );
        let old = |name: &str, port: u16| SavedMember {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        // "c" moved since the last snapshot; "z" is not live any more.
        let previous = vec![old("z", 7026), old("c", 7999)];
        let state = SavedState::of(&node, &previous);
        assert_eq!(state.name, "me");
        assert_eq!(state.generation, 5);
        assert_eq!(
            state.entries,
            [("kept".to_owned(), b"1".to_vec())].into_iter().collect()
        );
        assert_eq!(
            state.members,
            [old("b", 7002), old("c", 7003), old("z", 7026)]
        );
        // Never more than the bound, live members first.
        let many: Vec<SavedMember> = (0..100)
            .map(|i| old(&format!("x{i:03}"), 8000 + i))
            .collect();
        let state = SavedState::of(&node, &many);
        assert_eq!(state.members.len(), MAX_SAVED_MEMBERS);
        assert_eq!(state.members[..2], [old("b", 7002), old("c", 7003)]);
        assert!(SavedState::decode(&state.encode(), &Config::local()).is_ok());
    }

    #[test]
    fn the_limit_is_a_few_hundred_kib_by_default() {
        let limit = state_file_limit(&Config::lan());
        assert!(limit > 256 * 1024 && limit < 400 * 1024, "{limit}");
    }
}
