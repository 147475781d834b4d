//! Live key rotation across the cluster (Serf's `keys` workflow): `list`, `install`, `use` and
//! `remove` applied on every live member, with a report of who acknowledged, who refused, who
//! stayed silent and who was down.
//!
//! # How an operation runs
//!
//! 1. The origin ([`Node::start_key_op`]) checks and applies the operation to its own keyring
//!    first: removing the primary, using a key it does not hold, installing into a full ring
//!    are refused before anything is sent. It starts only in [`Mode::Sealed`], so that the key
//!    material of an `install` never travels in the clear.
//! 2. It sends a [`KeyCommand`] point-to-point to every live member (alive or suspect), and
//!    again every `Config::probe_interval` to those that have not acked, until all have or
//!    `Config::key_rotation_timeout` has passed. Every member must answer anyway and the
//!    operation is rare, so `O(n)` datagrams from one node are the honest cost; a broadcast
//!    would still need every ack to come back to the origin.
//! 3. A member acts on a command only if its datagram arrived sealed (so a plain datagram, even
//!    in a mode that accepts plain ones, can never carry key material or change a keyring) and
//!    from a live member at the address the table holds for it. It remembers `(origin, id)` in
//!    a bounded set and answers a retransmission with the first outcome, without applying it
//!    twice.
//! 4. Once every member acked, or at the timeout, the origin emits
//!    [`Event::KeyRotation`] with the [`KeyReport`]. Members that were not alive when the
//!    operation started, or that failed or left during it, are listed as not reached: they need
//!    the new keyring by hand.
//!
//! Every change of the local keyring, by the node's own operation or by a command, emits
//! [`Event::KeyringChanged`] so that the driver can persist the keyring.
//!
//! # Bounds
//!
//! At most [`MAX_KEY_OPS_IN_FLIGHT`] operations started here run at once; at most
//! [`MAX_KEY_COMMANDS_REMEMBERED`] commands received are remembered (oldest forgotten first).
//! Every operation is idempotent (installing a key held, using the primary, removing a key not
//! held change nothing), so a command retransmitted after it was forgotten changes nothing
//! either; it is only answered with the keyring as it is then.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use chatter_seal::{Fingerprint, Key, KeyInfo, KeyringError};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::encryption::Mode;
use crate::event::Event;
use crate::node::Node;
use crate::wire::{KeyAck, KeyCommand, KeyMaterial, Message, WireKeyInfo, WireKeyOp};

pub use crate::wire::WireKeyRefusal as KeyRefusal;

/// Key operations started by this node and not finished yet. An operator runs one at a time;
/// a few leave room for a `list` while an `install` is under way.
pub const MAX_KEY_OPS_IN_FLIGHT: usize = 4;

/// Key commands received and remembered with their answer, to answer a retransmission without
/// applying it again. Each entry takes under 300 bytes (a name of at most `max_name_len` and
/// an ack of at most 16 keys), so the set stays under 80 KiB; 256 is far more than the
/// operations a cluster's operators run in the time a retransmission can arrive.
pub const MAX_KEY_COMMANDS_REMEMBERED: usize = 256;

/// A key operation asked of the whole cluster.
#[derive(Debug, Clone)]
pub enum KeyOp {
    /// Report every member's keyring; change nothing.
    List,
    /// Add a key (it opens datagrams at once; it seals only once used).
    Install(Key),
    /// Make the installed key with this fingerprint the primary, sealing, key.
    Use(Fingerprint),
    /// Remove the key with this fingerprint; never the primary.
    Remove(Fingerprint),
}

impl KeyOp {
    /// `list`, `install`, `use` or `remove`.
    pub fn name(&self) -> &'static str {
        KeyOpKind::of(self).name()
    }
}

/// A [`KeyOp`] without key material, as a [`KeyReport`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOpKind {
    /// `list`.
    List,
    /// `install` of the key with this fingerprint.
    Install(Fingerprint),
    /// `use` of the key with this fingerprint.
    Use(Fingerprint),
    /// `remove` of the key with this fingerprint.
    Remove(Fingerprint),
}

impl KeyOpKind {
    fn of(op: &KeyOp) -> KeyOpKind {
        match op {
            KeyOp::List => KeyOpKind::List,
            KeyOp::Install(key) => KeyOpKind::Install(key.fingerprint()),
            KeyOp::Use(fp) => KeyOpKind::Use(*fp),
            KeyOp::Remove(fp) => KeyOpKind::Remove(*fp),
        }
    }

    /// `list`, `install`, `use` or `remove`.
    pub fn name(self) -> &'static str {
        match self {
            KeyOpKind::List => "list",
            KeyOpKind::Install(_) => "install",
            KeyOpKind::Use(_) => "use",
            KeyOpKind::Remove(_) => "remove",
        }
    }

    /// The fingerprint of the key operated on (`None` for `list`).
    pub fn fingerprint(self) -> Option<Fingerprint> {
        match self {
            KeyOpKind::List => None,
            KeyOpKind::Install(fp) | KeyOpKind::Use(fp) | KeyOpKind::Remove(fp) => Some(fp),
        }
    }
}

/// Why a key operation did not start. Nothing changed, locally or elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyOpError {
    /// The node is not in [`Mode::Sealed`]: key material would travel in the clear, or a member
    /// could not open the commands.
    #[error("key rotation needs encryption mode `sealed` (this node runs `{0}`)")]
    NotSealed(Mode),
    /// [`MAX_KEY_OPS_IN_FLIGHT`] operations are already running.
    #[error("{MAX_KEY_OPS_IN_FLIGHT} key operations are already running; retry when one ends")]
    Busy,
    /// This node's keyring refused the operation (removing the primary, using a key not
    /// installed, a full keyring, a key id collision).
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

impl std::fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyRefusal::NotInstalled => "the key is not installed",
            KeyRefusal::Primary => "the key is the primary key",
            KeyRefusal::Full => "the keyring is full",
            KeyRefusal::Collision => "another installed key has the same key id",
            KeyRefusal::NoKeyring => "the node runs without encryption",
        })
    }
}

/// How one member answered a key operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAnswer {
    /// `None`: done (or there was nothing to do); otherwise why the member refused.
    pub refusal: Option<KeyRefusal>,
    /// The member's keyring after the operation, primary first.
    pub keys: Vec<KeyInfo>,
}

/// The outcome of a key operation across the cluster, emitted as [`Event::KeyRotation`] by the
/// node that started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// The id [`Node::start_key_op`] returned.
    pub id: u64,
    /// The operation.
    pub op: KeyOpKind,
    /// Every member that answered (the origin included), by name: done or refused.
    pub answers: BTreeMap<String, KeyAnswer>,
    /// Live members that did not answer before `Config::key_rotation_timeout`.
    pub silent: Vec<String>,
    /// Members known but not alive (failed, left, or failed during the operation): never
    /// reached; they need the new keyring by hand.
    pub not_reached: Vec<String>,
}

impl KeyReport {
    /// Whether every member reached acknowledged without refusing.
    pub fn complete(&self) -> bool {
        self.silent.is_empty() && self.answers.values().all(|a| a.refusal.is_none())
    }
}

/// An operation this node started and is waiting on.
#[derive(Debug)]
struct Pending {
    report: KeyReport,
    command: KeyCommand,
    /// Members that have not answered yet, with the address the command goes to.
    waiting: BTreeMap<String, SocketAddr>,
    next_send: Instant,
    deadline: Instant,
}

/// The node's key rotation state: its own operations in flight and the commands it answered.
#[derive(Debug, Default)]
pub(crate) struct KeyRotation {
    ops: BTreeMap<u64, Pending>,
    answered: BTreeMap<(String, u64), KeyAck>,
    /// `answered`'s keys, oldest first.
    answered_order: VecDeque<(String, u64)>,
}

impl KeyRotation {
    /// The earliest resend or timeout of an operation in flight.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.ops.values().map(|p| p.next_send.min(p.deadline)).min()
    }

    /// Operations in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }

    fn remember(&mut self, key: (String, u64), ack: KeyAck) {
        while self.answered_order.len() >= MAX_KEY_COMMANDS_REMEMBERED {
            match self.answered_order.pop_front() {
                Some(old) => {
                    self.answered.remove(&old);
                }
                None => break,
            }
        }
        self.answered_order.push_back(key.clone());
        self.answered.insert(key, ack);
    }
}

fn wire_keys(keys: &[KeyInfo]) -> Vec<WireKeyInfo> {
    keys.iter()
        .map(|k| WireKeyInfo {
            fingerprint: k.fingerprint.0,
            primary: k.primary,
        })
        .collect()
}

fn key_infos(keys: &[WireKeyInfo]) -> Vec<KeyInfo> {
    keys.iter()
        .map(|k| KeyInfo {
            fingerprint: Fingerprint(k.fingerprint),
            primary: k.primary,
        })
        .collect()
}

fn refusal_of(error: &KeyringError) -> KeyRefusal {
    match error {
        KeyringError::Full => KeyRefusal::Full,
        KeyringError::KeyIdCollision { .. } => KeyRefusal::Collision,
        KeyringError::NotInstalled(_) => KeyRefusal::NotInstalled,
        KeyringError::RemovePrimary(_) => KeyRefusal::Primary,
    }
}

impl Node {
    /// Starts a key operation across the cluster and returns its id; the outcome comes as
    /// [`Event::KeyRotation`] with that id, once every live member answered or
    /// `Config::key_rotation_timeout` passed (at once when no other member is alive).
    ///
    /// The operation is applied to this node's keyring first; if that refuses it (removing
    /// the primary, using a key not installed, a full keyring), nothing is sent and nothing
    /// changed. Needs [`Mode::Sealed`].
    pub fn start_key_op(&mut self, now: Instant, op: KeyOp) -> Result<u64, KeyOpError> {
        let mode = self.encryption.mode();
        if mode != Mode::Sealed {
            return Err(KeyOpError::NotSealed(mode));
        }
        if self.key_rotation.in_flight() >= MAX_KEY_OPS_IN_FLIGHT {
            return Err(KeyOpError::Busy);
        }
        let kind = KeyOpKind::of(&op);
        let wire_op = match &op {
            KeyOp::List => WireKeyOp::List,
            KeyOp::Install(key) => WireKeyOp::Install(KeyMaterial(*key.secret_bytes())),
            KeyOp::Use(fp) => WireKeyOp::Use(fp.0),
            KeyOp::Remove(fp) => WireKeyOp::Remove(fp.0),
        };
        let keys = self.apply_key_op(&wire_op).map_err(KeyOpError::Keyring)?;
        let mut id: u64 = rand::Rng::random(&mut self.rng);
        while self.key_rotation.ops.contains_key(&id) {
            id = rand::Rng::random(&mut self.rng);
        }
        let mut waiting = BTreeMap::new();
        let mut not_reached = Vec::new();
        for row in self.membership.iter() {
            if row.status.is_live() {
                waiting.insert(row.name.to_string(), row.addr());
            } else {
                not_reached.push(row.name.to_string());
            }
        }
        not_reached.sort();
        let mut answers = BTreeMap::new();
        answers.insert(
            self.me.name.clone(),
            KeyAnswer {
                refusal: None,
                keys,
            },
        );
        info!(
            op = kind.name(),
            fingerprint = ?kind.fingerprint(),
            id,
            members = waiting.len(),
            "key operation started"
        );
        let pending = Pending {
            report: KeyReport {
                id,
                op: kind,
                answers,
                silent: Vec::new(),
                not_reached,
            },
            command: KeyCommand { id, op: wire_op },
            waiting,
            next_send: now,
            deadline: now + self.config.key_rotation_timeout,
        };
        self.key_rotation.ops.insert(id, pending);
        self.key_rotation_timers(now);
        Ok(id)
    }

    /// Applies `op` to the local keyring: the keyring after it, or why it was refused. Emits
    /// [`Event::KeyringChanged`] when the keyring changed.
    fn apply_key_op(&mut self, op: &WireKeyOp) -> Result<Vec<KeyInfo>, KeyringError> {
        let Some(keyring) = self.encryption.keyring_mut() else {
            // Only reachable for a command: `start_key_op` needs a keyed mode, and a node
            // without a keyring cannot open a sealed command. Refused as `NoKeyring` there.
            return Ok(Vec::new());
        };
        let before = keyring.list();
        match op {
            WireKeyOp::List => {}
            WireKeyOp::Install(material) => {
                keyring.install(Key::from_bytes(material.0))?;
            }
            WireKeyOp::Use(fp) => keyring.use_key(Fingerprint(*fp))?,
            WireKeyOp::Remove(fp) => {
                keyring.remove(Fingerprint(*fp))?;
            }
        }
        let after = keyring.list();
        if after != before {
            let fingerprints: Vec<String> =
                after.iter().map(|k| k.fingerprint.to_string()).collect();
            info!(keys = ?fingerprints, "keyring changed");
            self.emit(Event::KeyringChanged(after.clone()));
        }
        Ok(after)
    }

    /// A key command from `from`: applied (once) if it arrived sealed from a live member at
    /// its address, and answered.
    pub(crate) fn on_key_command(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sealed: bool,
        command: KeyCommand,
    ) {
        let Some(origin) = self.trusted_key_peer(now, from, sealed) else {
            return;
        };
        let seen = (origin, command.id);
        let ack = match self.key_rotation.answered.get(&seen) {
            Some(ack) => ack.clone(),
            None => {
                let ack = if self.encryption.keyring().is_none() {
                    KeyAck {
                        id: command.id,
                        refusal: Some(KeyRefusal::NoKeyring),
                        keys: Vec::new(),
                    }
                } else {
                    match self.apply_key_op(&command.op) {
                        Ok(keys) => KeyAck {
                            id: command.id,
                            refusal: None,
                            keys: wire_keys(&keys),
                        },
                        Err(error) => KeyAck {
                            id: command.id,
                            refusal: Some(refusal_of(&error)),
                            keys: wire_keys(
                                &self
                                    .encryption
                                    .keyring()
                                    .map(|k| k.list())
                                    .unwrap_or_default(),
                            ),
                        },
                    }
                };
                debug!(origin = %seen.0, id = command.id, refusal = ?ack.refusal, "key command applied");
                self.key_rotation.remember(seen, ack.clone());
                ack
            }
        };
        self.send(from, &[Message::KeyAck(ack)]);
    }

    /// An answer to one of this node's key operations: recorded if it arrived sealed from the
    /// live member it was sent to.
    pub(crate) fn on_key_ack(&mut self, now: Instant, from: SocketAddr, sealed: bool, ack: KeyAck) {
        let Some(name) = self.trusted_key_peer(now, from, sealed) else {
            return;
        };
        let Some(pending) = self.key_rotation.ops.get_mut(&ack.id) else {
            // A late answer to an operation that ended, or a duplicate: nothing to do.
            return;
        };
        if pending.waiting.get(&name) != Some(&from) {
            if !pending.report.answers.contains_key(&name) {
                self.stats.dropped_key_messages = self.stats.dropped_key_messages.saturating_add(1);
            }
            return;
        }
        pending.waiting.remove(&name);
        pending.report.answers.insert(
            name,
            KeyAnswer {
                refusal: ack.refusal,
                keys: key_infos(&ack.keys),
            },
        );
        if pending.waiting.is_empty() {
            self.finish_key_op(now, ack.id);
        }
    }

    /// The name of the live member at `from` if the datagram (`sealed`: it arrived sealed, so
    /// a plain one, even in a mode that accepts plain ones, never carries key material)
    /// qualifies; otherwise counts the drop and logs it (rate-limited).
    fn trusted_key_peer(&mut self, now: Instant, from: SocketAddr, sealed: bool) -> Option<String> {
        let member = self.membership.live_at(from).map(|r| r.name.to_string());
        match (sealed, member) {
            (true, Some(name)) => Some(name),
            (sealed, _) => {
                self.stats.dropped_key_messages = self.stats.dropped_key_messages.saturating_add(1);
                self.log_key_drop(now, from, sealed);
                None
            }
        }
    }

    fn log_key_drop(&mut self, now: Instant, from: SocketAddr, sealed: bool) {
        if let Some(suppressed) = self
            .drop_log
            .allow(now, crate::drop_log::DropReason::KeyMessage)
        {
            debug!(
                %from,
                sealed,
                suppressed,
                "dropped key command or ack: only sealed ones from a live member at its address count"
            );
        }
    }

    /// Resends commands to members that have not answered, moves members that are no longer
    /// alive to "not reached", and ends the operations whose time is up.
    pub(crate) fn key_rotation_timers(&mut self, now: Instant) {
        if self.key_rotation.ops.is_empty() {
            return;
        }
        let sealed = self.encryption.mode() == Mode::Sealed;
        let ids: Vec<u64> = self.key_rotation.ops.keys().copied().collect();
        for id in ids {
            let mut sends = Vec::new();
            let mut done = false;
            if let Some(pending) = self.key_rotation.ops.get_mut(&id) {
                // Members that failed or left since the start will not answer.
                let gone: Vec<String> = pending
                    .waiting
                    .keys()
                    .filter(|name| {
                        !self
                            .membership
                            .get(name)
                            .is_some_and(|r| r.status.is_live())
                    })
                    .cloned()
                    .collect();
                for name in gone {
                    pending.waiting.remove(&name);
                    pending.report.not_reached.push(name);
                }
                // A member that moved is sent to where it is now.
                for (name, addr) in pending.waiting.iter_mut() {
                    if let Some(row) = self.membership.get(name) {
                        *addr = row.addr();
                    }
                }
                if pending.waiting.is_empty() || now >= pending.deadline || !sealed {
                    if !sealed {
                        warn!(
                            id,
                            "encryption mode changed from sealed: key operation ended"
                        );
                    }
                    done = true;
                } else if now >= pending.next_send {
                    pending.next_send = now + self.config.probe_interval;
                    sends = pending
                        .waiting
                        .values()
                        .map(|&addr| (addr, pending.command.clone()))
                        .collect();
                }
            }
            if done {
                self.finish_key_op(now, id);
            }
            for (addr, command) in sends {
                self.send(addr, &[Message::KeyCommand(command)]);
            }
        }
    }

    fn finish_key_op(&mut self, _now: Instant, id: u64) {
        let Some(pending) = self.key_rotation.ops.remove(&id) else {
            return;
        };
        let mut report = pending.report;
        report.silent = pending.waiting.into_keys().collect();
        report.not_reached.sort();
        report.not_reached.dedup();
        let refused = report
            .answers
            .values()
            .filter(|a| a.refusal.is_some())
            .count();
        let level_ok = report.complete() && report.not_reached.is_empty();
        if level_ok {
            info!(
                id,
                op = report.op.name(),
                answered = report.answers.len(),
                "key operation done"
            );
        } else {
            warn!(
                id,
                op = report.op.name(),
                answered = report.answers.len(),
                refused,
                silent = ?report.silent,
                not_reached = ?report.not_reached,
                "key operation ended without every member"
            );
        }
        self.emit(Event::KeyRotation(report));
    }
}

#[cfg(test)]
#[path = "key_rotation_tests.rs"]
mod tests;
