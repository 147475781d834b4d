//! The messages of the protocol, encoded with postcard (a compact, varint-based serde format).
//!
//! Adding a field or a variant changes the encoding: bump [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::member::Tags;
pub use crate::plumtree::MessageId;
pub use crate::state::WireEntry;

/// One protocol message; a datagram carries one or more after the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Direct probe: "are you alive?"
    Ping(Ping),
    /// Answer to a `Ping`, or an intermediary's report that an indirect probe succeeded.
    Ack(Ack),
    /// An intermediary's report that the member it probed for us did not answer.
    Nack(Nack),
    /// "Please probe this member for me" (SWIM indirect probe).
    PingReq(PingReq),
    /// A member is alive at this incarnation (also carries its address and tags).
    Alive(Alive),
    /// A member is suspected.
    Suspect(Suspect),
    /// A member's suspicion timed out: it is considered crashed.
    Failed(Failed),
    /// A member left gracefully.
    Left(Left),
    /// Anti-entropy opener: the sender's membership fingerprint.
    SyncRequest(SyncRequest),
    /// Anti-entropy answer: part or all of the sender's member table.
    SyncState(SyncState),
    /// A user message pushed along the broadcast tree (Plumtree eager push).
    Gossip(Gossip),
    /// Announcement of a user message the sender holds (Plumtree lazy push).
    IHave(IHave),
    /// Request for missing messages; makes the link eager on both sides.
    Graft(Graft),
    /// A duplicate arrived over this link: make it lazy on both sides.
    Prune(Prune),
    /// Key/value writes pushed along the broadcast tree (eager push).
    StatePush(StatePush),
    /// Announcement of how far the sender holds one node's writes (lazy push).
    StateHave(StateHave),
    /// Key/value anti-entropy: `(generation, watermark)` per node.
    StateDigest(StateDigest),
    /// Key/value anti-entropy: one node's writes above the receiver's watermark.
    StateDelta(StateDelta),
    /// A user message handed to this node from outside (`chatter-inject`), to broadcast to the
    /// cluster as if it had been broadcast here.
    Inject(Inject),
    /// A key rotation step sent point-to-point by the member that started it; acted on only
    /// when it arrived sealed from a live member at its address (`key_rotation.rs`).
    KeyCommand(KeyCommand),
    /// The answer to a [`KeyCommand`]: the outcome and the receiver's keyring (fingerprints).
    KeyAck(KeyAck),
}

/// Direct probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Sequence number the `Ack` must echo: 32 bits drawn at random from the node's RNG, so
    /// that an off-path sender cannot guess it and forge the answer.
    pub seq: u64,
    /// Which life the prober means ([`LifeTag::of`] its name and generation), so that another
    /// process now on the same address, or another life of the same name, does not answer.
    pub life: LifeTag,
}

impl Ping {
    /// A ping with sequence number `seq` for the life `generation` of the member `name`.
    pub fn new(seq: u64, name: &str, generation: u64) -> Self {
        Self {
            seq,
            life: LifeTag::of(name, generation, seq),
        }
    }

    /// Whether this ping means the life `generation` of `name`.
    pub fn is_for(&self, name: &str, generation: u64) -> bool {
        self.life == LifeTag::of(name, generation, self.seq)
    }
}

/// Four bytes that name one life of a member inside one ping: the first bytes of
/// SHA-256(`"chatter life tag v1"` ‖ name length (u32 LE) ‖ name ‖ generation (u64 LE) ‖ seq
/// (u64 LE)).
///
/// A ping carries this instead of the name and generation themselves (10 bytes or more): an
/// idle node's traffic is mostly pings and acks. The tag only has to keep honest processes from
/// answering for another life (a process now at a former member's address, a restarted node
/// asked about its previous life); covering the random sequence number makes it differ in
/// every ping, so no name and generation can be chosen in advance to collide with another
/// life's tag (a forged life must still be answered from its own address, `lives.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LifeTag(pub [u8; 4]);

impl LifeTag {
    /// The tag of the life `generation` of `name` in the ping numbered `seq`.
    pub fn of(name: &str, generation: u64, seq: u64) -> Self {
        use sha2::{Digest, Sha256};
        let len = u32::try_from(name.len()).unwrap_or(u32::MAX);
        let digest = Sha256::new()
            .chain_update(b"chatter life tag v1")
            .chain_update(len.to_le_bytes())
            .chain_update(name.as_bytes())
            .chain_update(generation.to_le_bytes())
            .chain_update(seq.to_le_bytes())
            .finalize();
        let mut tag = [0u8; 4];
        tag.copy_from_slice(&digest[..4]);
        Self(tag)
    }
}

/// Positive answer to a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Sequence number of the `Ping` or `PingReq` answered.
    pub seq: u64,
}

/// Negative answer from an intermediary: it could not reach the target either. Lifeguard uses
/// missing nacks as a sign that the prober itself is unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// Sequence number of the `PingReq` answered.
    pub seq: u64,
    /// The intermediary got ICMP port-unreachable from the target.
    pub unreachable: bool,
}

/// Request to probe `target` on the sender's behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReq {
    /// Sequence number to echo in the `Ack` or `Nack`.
    pub seq: u64,
    /// Name of the member to probe.
    pub target: String,
    /// Its generation.
    pub generation: u64,
    /// Its address.
    pub addr: SocketAddr,
}

/// A member is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alive {
    /// Member name.
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its generation.
    pub generation: u64,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its tags.
    pub tags: Tags,
}

/// A member is suspected by `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    /// Suspected member.
    pub name: String,
    /// Its generation.
    pub generation: u64,
    /// Incarnation suspected; a refutation must exceed it.
    pub incarnation: u64,
    /// The member that suspects it.
    pub from: String,
    /// The accuser got ICMP port-unreachable from the suspect's address.
    pub unreachable: bool,
}

/// A member is declared failed by `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// Failed member.
    pub name: String,
    /// Its generation.
    pub generation: u64,
    /// Incarnation declared failed.
    pub incarnation: u64,
    /// The member whose suspicion timed out.
    pub from: String,
}

/// A member left gracefully (only the member itself sends this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// Member leaving.
    pub name: String,
    /// Its generation.
    pub generation: u64,
    /// Its incarnation at leave.
    pub incarnation: u64,
}

/// Anti-entropy opener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Sender's name.
    pub from: String,
    /// Fingerprint of the sender's member table; equal fingerprints skip the exchange.
    pub fingerprint: u64,
    /// Fingerprint of the sender's key/value digest; equal fingerprints skip that exchange.
    pub state_fingerprint: u64,
    /// Zero bytes that make the datagram as large as the answer its sender hopes for. A node
    /// answers a sender that is not one of its live members with at most as many bytes as the
    /// sender sent (no amplification, as QUIC's Initial padding), so a joining node pads its
    /// requests to seeds to the packet budget; members leave it empty.
    pub padding: Vec<u8>,
}

/// Part or all of a member table. Large tables are split over several datagrams, each of which
/// merges on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Sender's name.
    pub from: String,
    /// Fingerprint of the sender's member table.
    pub fingerprint: u64,
    /// The receiver should answer with its own table if its fingerprint differs.
    pub reply: bool,
    /// Members (a chunk of the table).
    pub members: Vec<MemberState>,
}

/// One member's row in a [`SyncState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// Member name.
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its generation.
    pub generation: u64,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its status as the sender sees it.
    pub status: WireStatus,
    /// Its tags.
    pub tags: Tags,
}

/// Member status on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireStatus {
    /// Alive.
    Alive,
    /// Suspect.
    Suspect,
    /// Failed.
    Failed,
    /// Left.
    Left,
}

/// A user message on the broadcast tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    /// Unique id.
    pub id: MessageId,
    /// The neighbour that pushed it (not the origin).
    pub from: String,
    /// Hops from the origin so far.
    pub hops: u32,
    /// Tag naming the kind of message.
    pub tag: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// "I hold this message."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IHave {
    /// Announcer.
    pub from: String,
    /// The message held.
    pub id: MessageId,
}

/// "Send me these messages, and push future ones to me."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graft {
    /// Requester.
    pub from: String,
    /// Messages wanted; empty to only make the link eager (a new neighbour).
    pub ids: Vec<MessageId>,
}

/// "Stop pushing messages to me; announce them instead."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prune {
    /// Sender.
    pub from: String,
}

/// Key/value writes pushed to a neighbour on the broadcast tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePush {
    /// The neighbour that pushed them (not necessarily their owner).
    pub from: String,
    /// The writes, each of its owner.
    pub updates: Vec<StateUpdate>,
}

/// "I hold every write of `node` up to `watermark`" (of the owner's life the receiver knows):
/// a receiver behind it asks the sender with a one-row `StateDigest` (and a `Graft`) if the tree
/// does not deliver soon. Kept small (no sender name, no generation: the receiver knows both
/// from the datagram's address and its member table) because every node sends a few per write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHave {
    /// Owner of the writes.
    pub node: String,
    /// The announcer's watermark for the owner.
    pub watermark: u64,
}

/// One key/value write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUpdate {
    /// Owner of the key.
    pub node: String,
    /// Owner's generation.
    pub generation: u64,
    /// The write.
    pub entry: WireEntry,
    /// Earlier versions of the same key that this write supersedes (the most recent few): they
    /// will never travel on their own, so a replica may count them as known.
    pub supersedes: Vec<u64>,
}

/// One row of a key/value digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRow {
    /// Owner.
    pub node: String,
    /// Owner's generation as the sender knows it.
    pub generation: u64,
    /// Sender's watermark for the owner.
    pub watermark: u64,
}

/// Key/value digest (possibly one chunk of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    /// Sender's name.
    pub from: String,
    /// Sender's key/value fingerprint.
    pub fingerprint: u64,
    /// The receiver should answer with its own digest too (the opening half of an exchange).
    pub reply: bool,
    /// This chunk covers the owners named after this one (exclusive); `None`: from the first.
    pub after: Option<String>,
    /// This chunk covers the owners named up to this one (inclusive); `None`: to the last.
    /// An owner in the covered range without a row is one the sender knows nothing of.
    pub until: Option<String>,
    /// Rows, in name order; only owners of which the sender holds some state.
    pub rows: Vec<DigestRow>,
}

/// One node's writes `(from_version, to_version]` as the sender holds them, in version order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDelta {
    /// Owner.
    pub node: String,
    /// Owner's generation.
    pub generation: u64,
    /// The receiver's watermark this delta starts from.
    pub from_version: u64,
    /// Every write of the owner up to here is in this delta or superseded.
    pub to_version: u64,
    /// The receiver must forget the owner's entries first (tombstones it lacks were collected).
    pub reset: bool,
    /// Writes.
    pub entries: Vec<WireEntry>,
}

/// A user message to broadcast on the receiver's behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inject {
    /// Tag naming the kind of message.
    pub tag: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// One step of a cluster-wide key rotation, sent by its origin to every live member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCommand {
    /// Random id chosen by the origin; `(origin, id)` makes a retransmission recognisable.
    pub id: u64,
    /// What to do.
    pub op: WireKeyOp,
}

/// The operation of a [`KeyCommand`]. Only `Install` carries key material, and a command is
/// only ever sent sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireKeyOp {
    /// Report the keyring, change nothing.
    List,
    /// Add this key to the keyring (opens datagrams; does not seal yet).
    Install(KeyMaterial),
    /// Make the installed key with this fingerprint the primary (sealing) key.
    Use([u8; 8]),
    /// Remove the key with this fingerprint (never the primary).
    Remove([u8; 8]),
}

/// The 32 secret bytes of a key on the wire: `Debug` never shows them, and they are zeroed
/// when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMaterial(pub [u8; chatter_seal::KEY_LEN]);

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(..)")
    }
}

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The answer to a [`KeyCommand`], sent to its origin (again for a retransmitted command,
/// with the outcome of the first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAck {
    /// The command's id.
    pub id: u64,
    /// `None`: done (or nothing to do); otherwise why the receiver refused.
    pub refusal: Option<WireKeyRefusal>,
    /// The receiver's keyring after the command, primary first; at most
    /// `chatter_seal::MAX_KEYS` entries.
    pub keys: Vec<WireKeyInfo>,
}

/// Why a node refused a key command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireKeyRefusal {
    /// `Use`: no installed key has the fingerprint.
    NotInstalled,
    /// `Remove`: the key is this node's primary.
    Primary,
    /// `Install`: the keyring is full.
    Full,
    /// `Install`: another installed key has the same key id or fingerprint.
    Collision,
    /// The node has no keyring (it runs without encryption).
    NoKeyring,
}

/// One key of a node's keyring, as a [`KeyAck`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireKeyInfo {
    /// The key's fingerprint.
    pub fingerprint: [u8; 8],
    /// Whether the node seals with it.
    pub primary: bool,
}
