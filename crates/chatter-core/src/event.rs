//! What the core tells its driver about membership changes.

use crate::key_rotation::KeyReport;
use crate::member::{Conflict, Member};
use crate::plumtree::MessageId;

/// A change in membership, drained with [`Node::poll_event`](crate::Node::poll_event).
///
/// Each variant carries a snapshot of the member after the change, evidence included, so a
/// subscriber can explain a verdict without asking again.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A member was seen for the first time, or a restarted member (new generation) replaced its
    /// previous life.
    Joined(Member),
    /// A member missed its probes and is suspected.
    Suspect(Member),
    /// A suspect or failed member refuted the verdict and is alive again.
    Recovered(Member),
    /// A suspicion was not refuted in time: the member is considered crashed.
    Failed(Member),
    /// A member left gracefully.
    Left(Member),
    /// A live member changed its address or tags.
    Updated(Member),
    /// A failed or left member was removed from the table after its retention period.
    Reaped(Member),
    /// Two live processes claim the same name; the one in the table was kept.
    Conflict(Conflict),
    /// A user message was delivered (exactly once per node, the origin included).
    Message(Delivered),
    /// A key of some node's state changed (set or deleted), as this node learned it.
    KeyChanged(KeyChange),
    /// This node's gossip keyring changed (a key installed, used or removed, here or by a
    /// member's key command): the keyring after the change, primary first, as fingerprints.
    /// The driver persists the keyring ([`Node::keyring`](crate::Node::keyring)).
    KeyringChanged(Vec<chatter_seal::KeyInfo>),
    /// A key operation started here ([`Node::start_key_op`](crate::Node::start_key_op))
    /// ended: who acknowledged, refused, stayed silent or was not reached.
    KeyRotation(KeyReport),
}

/// A user message delivered to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Unique id: origin, its generation, its sequence number.
    pub id: MessageId,
    /// Tag naming the kind of message.
    pub tag: String,
    /// Payload bytes (JSON from `chatter-inject`, or a serde encoding from the library).
    pub payload: Vec<u8>,
    /// Hops from the origin (0 for a message this node broadcast).
    pub hops: u32,
}

/// A change to one key of one node's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// Owner of the key.
    pub node: String,
    /// The key.
    pub key: String,
    /// The new value, or `None` when the key was deleted.
    pub value: Option<Vec<u8>>,
    /// Owner's version of the write.
    pub version: u64,
}

impl Event {
    /// Short kebab-case name of the event: `member-joined`, `member-failed`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Joined(_) => "member-joined",
            Event::Suspect(_) => "member-suspect",
            Event::Recovered(_) => "member-alive",
            Event::Failed(_) => "member-failed",
            Event::Left(_) => "member-left",
            Event::Updated(_) => "member-updated",
            Event::Reaped(_) => "member-reaped",
            Event::Conflict(_) => "member-conflict",
            Event::Message(_) => "message",
            Event::KeyChanged(_) => "key-changed",
            Event::KeyringChanged(_) => "keyring-changed",
            Event::KeyRotation(_) => "key-rotation",
        }
    }

    /// The member the event is about, except for conflicts.
    pub fn member(&self) -> Option<&Member> {
        match self {
            Event::Joined(m)
            | Event::Suspect(m)
            | Event::Recovered(m)
            | Event::Failed(m)
            | Event::Left(m)
            | Event::Updated(m)
            | Event::Reaped(m) => Some(m),
            Event::Conflict(_)
            | Event::Message(_)
            | Event::KeyChanged(_)
            | Event::KeyringChanged(_)
            | Event::KeyRotation(_) => None,
        }
    }
}
