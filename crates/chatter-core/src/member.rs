//! What a node knows about one member: identity, status, and the evidence behind a verdict.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Small string map a member publishes about itself (role, zone, version, ...).
pub type Tags = BTreeMap<String, String>;

/// The status of a member as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberStatus {
    /// Answers probes (or has not been found silent yet).
    Alive,
    /// Missed a probe; it can still refute before its suspicion times out.
    Suspect,
    /// Suspected and not refuted in time: considered crashed.
    Failed,
    /// Announced a graceful leave.
    Left,
}

impl MemberStatus {
    /// The lowercase name used in the API: `alive`, `suspect`, `failed`, `left`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Suspect => "suspect",
            MemberStatus::Failed => "failed",
            MemberStatus::Left => "left",
        }
    }

    /// `Alive` or `Suspect`: a member that is still probed and gossiped to.
    pub fn is_live(self) -> bool {
        matches!(self, MemberStatus::Alive | MemberStatus::Suspect)
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of the cluster as seen by this node.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Unique name in the cluster.
    pub name: String,
    /// Gossip address the member asked others to use.
    pub addr: SocketAddr,
    /// New on every process start: tells a restarted member from its previous life.
    pub generation: u64,
    /// SWIM refutation counter of this life; only the member itself raises it.
    pub incarnation: u64,
    /// Current status.
    pub status: MemberStatus,
    /// Tags the member publishes.
    pub tags: Tags,
    /// When this node last changed the member's status.
    pub status_since: Instant,
    /// When this node last heard anything new about the member (an update or a successful probe).
    pub last_update: Instant,
    /// Round-trip time of this node's last successful direct probe of the member.
    pub rtt: Option<Duration>,
    /// Why the member is suspect or failed; `None` while it is alive and unsuspected.
    pub evidence: Option<Evidence>,
    /// Another live process claiming the same name, if one was seen.
    pub conflict: Option<Conflict>,
}

/// The few fields of a [`Member`] that most checks need, cheap to copy: see
/// [`Node::member_brief`](crate::Node::member_brief).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberBrief {
    /// Gossip address.
    pub addr: SocketAddr,
    /// Generation of the life this node knows.
    pub generation: u64,
    /// Incarnation within that life.
    pub incarnation: u64,
    /// Status as this node sees it.
    pub status: MemberStatus,
}

impl MemberBrief {
    /// The brief of a whole member.
    pub fn of(m: &Member) -> Self {
        Self {
            addr: m.addr,
            generation: m.generation,
            incarnation: m.incarnation,
            status: m.status,
        }
    }
}

/// The evidence behind a suspect or failed verdict, so an operator can see why.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Member that raised the suspicion first (may be this node).
    pub accuser: String,
    /// When this node learned of the suspicion.
    pub suspected_at: Instant,
    /// Independent members that confirmed the suspicion, in the order heard (at most 16 kept).
    pub confirmations: Vec<Confirmation>,
    /// This node's own probes of the member while it was suspect (at most 16 kept, newest last).
    pub probes: Vec<ProbeRecord>,
    /// Some prober saw ICMP port-unreachable from the member's host: the process is gone.
    pub unreachable: bool,
    /// This node's probes failed and the member's host was silent to a host check on a path
    /// that has shown it delivers answers (`Config::silent_host_suspicion_timeout`): the host
    /// is gone or cut off. Local to this node: other nodes run their own checks.
    pub host_silent: bool,
    /// The host was silent, but the member is flap-damped here (it came back in the same life
    /// after an earlier verdict or silence, `Config::flap_damping_half_life`): the silence did
    /// not shorten the suspicion, which keeps its Lifeguard timeout.
    pub flap_damped: bool,
    /// Suspicion timeout in force when last computed.
    pub timeout: Duration,
    /// Member that declared the failure (the first whose suspicion timed out).
    pub declared_by: Option<String>,
    /// When this node learned of the failure.
    pub failed_at: Option<Instant>,
}

/// One independent confirmation of a suspicion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// Confirming member.
    pub from: String,
    /// When this node heard it.
    pub at: Instant,
}

/// Outcome of one probe this node made of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    /// When the probe started.
    pub at: Instant,
    /// `None` for the direct probe, else the member asked to probe indirectly.
    pub via: Option<String>,
    /// What came of it.
    pub outcome: ProbeOutcome,
}

/// How a probe ended without an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// No answer before the timeout.
    Timeout,
    /// ICMP port-unreachable came back: the host is up but nothing listens.
    Unreachable,
    /// The intermediary answered that the member did not answer it either.
    Nack,
    /// The intermediary got ICMP port-unreachable from the member.
    NackUnreachable,
}

impl ProbeOutcome {
    /// The lowercase name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeOutcome::Timeout => "timeout",
            ProbeOutcome::Unreachable => "unreachable",
            ProbeOutcome::Nack => "nack",
            ProbeOutcome::NackUnreachable => "nack-unreachable",
        }
    }
}

/// Two live processes claim the same name: the one in the table and another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The member name both claim.
    pub name: String,
    /// Address of the claimant that is not in the table.
    pub other_addr: SocketAddr,
    /// Generation of the claimant that is not in the table.
    pub other_generation: u64,
    /// When this node first saw the conflict.
    pub seen_at: Instant,
}

impl Member {
    pub(crate) fn new(
        name: String,
        addr: SocketAddr,
        generation: u64,
        incarnation: u64,
        tags: Tags,
        now: Instant,
    ) -> Self {
        Self {
            name,
            addr,
            generation,
            incarnation,
            status: MemberStatus::Alive,
            tags,
            status_since: now,
            last_update: now,
            rtt: None,
            evidence: None,
            conflict: None,
        }
    }
}
