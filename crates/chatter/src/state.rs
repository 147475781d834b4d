//! Copies of the key/value state the core holds, as the driver answers queries about it.

use std::collections::BTreeMap;
use std::time::Instant;

use chatter_core::{MemberStatus, Node};

/// One node's key/value state as this node holds it: an exact copy taken by the driver when
/// asked ([`Handle::node_state`](crate::Handle::node_state),
/// [`Handle::cluster_state`](crate::Handle::cluster_state)).
///
/// For another member this is a replica: it lags the owner by the time gossip takes (usually
/// milliseconds) and is repaired by anti-entropy. Deleted keys are not listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// The member the state belongs to.
    pub node: String,
    /// The life of the member the state belongs to: a restarted member starts with an empty
    /// state.
    pub generation: u64,
    /// The member's status as this node sees it (this node itself: `alive`, or `left` while
    /// leaving).
    pub status: MemberStatus,
    /// The owner's version up to which this node holds every write (the Scuttlebutt watermark).
    /// For this node itself, the version of its last write; 0 before any.
    pub version: u64,
    /// Every key set, in key order.
    pub entries: BTreeMap<String, StateValue>,
}

/// The value of one key of a node's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateValue {
    /// The value.
    pub value: Vec<u8>,
    /// The owner's version of the write that set it.
    pub version: u64,
    /// When this node learned of the write (for this node's own keys, when it was made).
    pub updated_at: Instant,
}

impl NodeState {
    /// A copy of the state of member `name` (this node included), if the member is known.
    pub(crate) fn of(node: &Node, name: &str) -> Option<Self> {
        let member = node.member_brief(name)?;
        let entries = node
            .node_state(name)
            .map(|entries| {
                entries
                    .filter_map(|(key, kv)| {
                        let value = kv.value.clone()?;
                        Some((
                            key.to_owned(),
                            StateValue {
                                value,
                                version: kv.version,
                                updated_at: kv.updated_at,
                            },
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            node: name.to_owned(),
            generation: member.generation,
            status: member.status,
            version: node.state_version(name).unwrap_or(0),
            entries,
        })
    }

    /// Copies of the state of every member this node knows, itself included, ordered by name.
    pub(crate) fn all(node: &Node) -> Vec<Self> {
        let mut names: Vec<&str> = node.member_briefs().map(|(name, _)| name).collect();
        names.sort_unstable();
        let me = node.name();
        let at = names.partition_point(|n| *n < me);
        names.insert(at, me);
        names
            .into_iter()
            .filter_map(|name| Self::of(node, name))
            .collect()
    }
}
