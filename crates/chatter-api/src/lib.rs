//! The JSON types of the `chatterd` HTTP API, shared by the daemon and the `chatter` CLI.
//!
//! This crate is plain data: serde structs, and the pure functions that define how bytes appear
//! in them ([`encode_bytes`], [`payload_view`], [`compact_json`]); no IO, no runtime, no
//! dependency on the protocol crates, so that any client can use it. Times are absolute Unix
//! milliseconds (`*_ms` fields that name an instant, and the `timestamp` of an event) or
//! durations in milliseconds (`age_ms`, `timeout_ms`, `rtt_ms`). Absolute times are computed by the daemon from its own clock; the `age_ms` fields
//! are measured by the daemon at response time, so clients need not trust their own clock.
//!
//! | endpoint | body |
//! | --- | --- |
//! | `GET /v1/members[?status=failed,suspect]` | [`MembersResponse`] |
//! | `GET /v1/members/{name}` | [`MemberView`] (404 with [`ErrorBody`] when unknown) |
//! | `GET /v1/self` | [`SelfView`] |
//! | `GET /health` | [`HealthView`] |
//! | `GET /v1/kv[?node=NAME][&prefix=P]` | an array of [`NodeStateView`] |
//! | `PUT /v1/kv/{key}` (body: the value's bytes) | [`KvWriteResponse`] |
//! | `DELETE /v1/kv/{key}` | [`KvWriteResponse`] (404 when the key is not set) |
//! | `POST /v1/messages` ([`BroadcastRequest`]) | 202 [`BroadcastResponse`] |
//! | `GET /v1/events` | Server-Sent Events, each `data` an [`EventView`] |
//! | `GET /v1/checks[?status=critical,warning][&node=NAME]` | [`ChecksResponse`] |
//! | `GET /v1/services[?type=TYPE]` | [`ServicesResponse`] |
//! | `GET /v1/system[?node=NAME]` | [`SystemResponse`] |
//!
//! When the daemon has an HTTP token, every `PUT`, `DELETE` and `POST` needs
//! `Authorization: Bearer TOKEN`; without it (or with another) the answer is 401 with an
//! [`ErrorBody`] and nothing changes.
//!
//! Every error is an [`ErrorBody`]: `{"error": "..."}`.
//!
//! ```
//! let json = r#"{"name":"web-1","addr":"10.0.0.1:2428","status":"failed","incarnation":3,
//!   "generation":17,"tags":{"role":"web"},"status_since_ms":1700000000000,
//!   "last_update_ms":1700000000000,"is_local":false}"#;
//! let member: chatter_api::MemberView = serde_json::from_str(json).unwrap();
//! assert_eq!(member.status, chatter_api::Status::Failed);
//! assert_eq!(member.status.as_str(), "failed");
//! ```

#![deny(missing_docs)]

mod events;
mod keys;
mod kv;
mod messages;
mod monitoring;

pub use events::{payload_view, EventData, EventView, PayloadEncoding};
pub use keys::{KeyCount, KeyNodeAnswer, KeyOperationResponse, KeyRequest};
pub use kv::{
    decode_bytes, encode_bytes, Encoding, InvalidBase64, KvEntry, KvWriteResponse, NodeStateView,
};
pub use messages::{compact_json, BroadcastRequest, BroadcastResponse, MessageIdView};
pub use monitoring::{
    CheckResult, CheckStatus, CheckView, ChecksResponse, ServiceDecl, ServiceInstance, ServiceView,
    ServicesResponse, ShardView, SystemResponse, SystemStatus, SystemView, UnknownCheckStatus,
    Usage, CHECK_PREFIX, SERVICE_PREFIX, SYSTEM_PREFIX,
};

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The status of a member as the answering node sees it. Serialized in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Answers probes (or has not been found silent yet).
    Alive,
    /// Missed its probes; it can still refute before its suspicion times out.
    Suspect,
    /// Suspected and not refuted in time: considered crashed.
    Failed,
    /// Announced a graceful leave.
    Left,
}

impl Status {
    /// Every status, in the order above.
    pub const ALL: [Status; 4] = [Status::Alive, Status::Suspect, Status::Failed, Status::Left];

    /// The lowercase name used in the API: `alive`, `suspect`, `failed`, `left`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Suspect => "suspect",
            Status::Failed => "failed",
            Status::Left => "left",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown status name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown status {:?} (expected alive, suspect, failed or left)",
            self.0
        )
    }
}

impl std::error::Error for UnknownStatus {}

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// One member of the cluster as the answering node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Unique name in the cluster.
    pub name: String,
    /// Gossip address (`ip:port`) the member asked others to use.
    pub addr: String,
    /// Current status.
    pub status: Status,
    /// SWIM refutation counter of the member's current life.
    pub incarnation: u64,
    /// New on every process start: tells a restarted member from its previous life.
    pub generation: u64,
    /// Tags the member publishes.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// When the answering node last changed the member's status (Unix ms).
    pub status_since_ms: u64,
    /// When the answering node last heard anything new about the member (Unix ms).
    pub last_update_ms: u64,
    /// Time spent in the current status, measured by the answering node (ms).
    #[serde(default)]
    pub age_ms: Option<u64>,
    /// Round-trip time of the answering node's last successful direct probe (ms).
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// Why the member is suspect or failed; absent while it is alive and unsuspected.
    #[serde(default)]
    pub evidence: Option<EvidenceView>,
    /// Another live process claiming the same name, if one was seen.
    #[serde(default)]
    pub conflict: Option<ConflictView>,
    /// This member is the answering node itself.
    #[serde(default)]
    pub is_local: bool,
}

/// The evidence behind a suspect or failed verdict, so an operator can see why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceView {
    /// Member that raised the suspicion first (may be the answering node).
    pub accuser: String,
    /// When the answering node learned of the suspicion (Unix ms).
    pub suspected_at_ms: u64,
    /// Independent members that confirmed the suspicion, in the order heard.
    #[serde(default)]
    pub confirmations: Vec<ConfirmationView>,
    /// The answering node's own probes of the member while it was suspect, newest last.
    #[serde(default)]
    pub probes: Vec<ProbeView>,
    /// Some prober got ICMP port-unreachable from the member's host: the process is gone.
    #[serde(default)]
    pub unreachable: bool,
    /// The answering node's probes failed and the member's host was silent to a host check
    /// on a path that has answered such checks before: the host is gone or cut off.
    #[serde(default)]
    pub host_silent: bool,
    /// The host was silent, but the member is flap-damped on the answering node (it came
    /// back in the same life after an earlier verdict or silence): the silence did not
    /// shorten the suspicion.
    #[serde(default)]
    pub flap_damped: bool,
    /// Suspicion timeout in force when last computed (ms).
    pub timeout_ms: u64,
    /// Member that declared the failure (the first whose suspicion timed out).
    #[serde(default)]
    pub declared_by: Option<String>,
    /// When the answering node learned of the failure (Unix ms).
    #[serde(default)]
    pub failed_at_ms: Option<u64>,
}

/// One independent confirmation of a suspicion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationView {
    /// Confirming member.
    pub from: String,
    /// When the answering node heard it (Unix ms).
    pub at_ms: u64,
}

/// One probe of a suspect member that got no ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeView {
    /// When the probe started (Unix ms).
    pub at_ms: u64,
    /// Absent for a direct probe, else the member asked to probe indirectly.
    #[serde(default)]
    pub via: Option<String>,
    /// `timeout`, `unreachable`, `nack` or `nack-unreachable`.
    pub outcome: String,
}

/// Two live processes claim the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictView {
    /// The member name both claim.
    pub name: String,
    /// Address of the claimant that is not in the member table.
    pub other_addr: String,
    /// Generation of the claimant that is not in the member table.
    pub other_generation: u64,
    /// When the answering node first saw the conflict (Unix ms).
    pub seen_at_ms: u64,
}

/// Body of `GET /v1/members`: every member, the answering node included, sorted by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembersResponse {
    /// The members, sorted by name.
    pub members: Vec<MemberView>,
}

/// Body of `GET /v1/self`: the answering node, its local health and its counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfView {
    /// The node as a member (`is_local` is true).
    pub member: MemberView,
    /// Lifeguard local health score: 0 is healthy; higher means the node misses its own acks
    /// and has slowed its probing down.
    pub health_score: u32,
    /// Protocol counters since the node started (names as in `chatter_core::Stats`).
    pub stats: BTreeMap<String, u64>,
    /// Counters of the runtime around the protocol: socket errors, ICMP reports, seed
    /// resolution failures (names as in `chatter::IoStats`).
    #[serde(default)]
    pub io: BTreeMap<String, u64>,
    /// Version of the `chatterd` binary.
    pub version: String,
    /// Name of the cluster this node belongs to.
    pub cluster: String,
    /// Time since the daemon started (ms).
    pub uptime_ms: u64,
    /// Gossip encryption: the mode and the keys' fingerprints, never key material.
    #[serde(default)]
    pub encryption: EncryptionView,
    /// The data directory (`--data-dir`) and what the start found in it; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<DataDirView>,
}

/// The data directory of a node, as `GET /v1/self` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDirView {
    /// The directory.
    pub path: String,
    /// Whether the last start restored a saved state of this node.
    pub restored: bool,
    /// What the start found: `fresh` (no saved state), `restored`, `other-name` (the state of
    /// another node name: only its members were used) or `set-aside` (a bad file, moved aside).
    pub start: String,
    /// For `set-aside`: why the file could not be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Gossip encryption of a node, as `GET /v1/self` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionView {
    /// `plaintext`, `accept-sealed`, `send-sealed` or `sealed`.
    pub mode: String,
    /// The keyring, primary first; empty without encryption.
    pub keys: Vec<KeyView>,
}

/// One key of the keyring: its fingerprint (16 hex digits) and whether it seals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// The key's fingerprint, safe to show and compare across nodes.
    pub fingerprint: String,
    /// Whether this node seals with it (the others only open).
    pub primary: bool,
}

/// The health of the daemon itself, as answered by `GET /health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Running (HTTP 200).
    Ok,
    /// Shutting down after a signal: leaving the cluster (HTTP 503).
    Leaving,
}

/// Body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// `ok` while running, `leaving` while shutting down.
    pub status: HealthStatus,
    /// The node's name.
    pub name: String,
    /// Members alive or suspect, the answering node included.
    pub members_alive: usize,
    /// Members in the table, tombstones and the answering node included.
    pub members_total: usize,
    /// Lifeguard local health score (0 is healthy).
    pub health_score: u32,
    /// Version of the `chatterd` binary.
    pub version: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in one line.
    pub error: String,
}

impl ErrorBody {
    /// An error body with the given message.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_in_lowercase() {
        for status in Status::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
            assert_eq!(status.as_str().parse::<Status>().unwrap(), status);
        }
        assert!("dead".parse::<Status>().is_err());
    }

    #[test]
    fn member_with_evidence_round_trips() {
        let member = MemberView {
            name: "n1".into(),
            addr: "127.0.0.1:2428".into(),
            status: Status::Failed,
            incarnation: 2,
            generation: 99,
            tags: BTreeMap::from([("role".to_owned(), "db".to_owned())]),
            status_since_ms: 10,
            last_update_ms: 11,
            age_ms: Some(5),
            rtt_ms: Some(0.25),
            evidence: Some(EvidenceView {
                accuser: "n2".into(),
                suspected_at_ms: 9,
                confirmations: vec![ConfirmationView {
                    from: "n3".into(),
                    at_ms: 10,
                }],
                probes: vec![ProbeView {
                    at_ms: 8,
                    via: Some("n4".into()),
                    outcome: "nack".into(),
                }],
                unreachable: true,
                host_silent: true,
                flap_damped: true,
                timeout_ms: 1000,
                declared_by: Some("n2".into()),
                failed_at_ms: Some(10),
            }),
            conflict: None,
            is_local: false,
        };
        let json = serde_json::to_string(&member).unwrap();
        assert_eq!(serde_json::from_str::<MemberView>(&json).unwrap(), member);
    }
}
