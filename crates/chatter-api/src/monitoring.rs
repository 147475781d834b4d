//! Monitoring: health checks, services and system status.
//!
//! Each daemon publishes these in its own key/value state, so they reach every node by gossip
//! and any node can answer for the whole cluster:
//!
//! | keys | value | written by |
//! | --- | --- | --- |
//! | `check/NAME` | a [`CheckResult`] as compact JSON | the node's health checks (`--check`) |
//! | `service/TYPE` or `service/TYPE/SHARD` | a [`ServiceDecl`] as compact JSON | `--service` |
//! | `sys/load`, `sys/cpu`, ... | plain text, see [`SystemStatus`] | the system status publisher |
//!
//! The API groups them: `GET /v1/checks` ([`ChecksResponse`]), `GET /v1/services`
//! ([`ServicesResponse`]) and `GET /v1/system` ([`SystemResponse`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Status;

/// Prefix of the keys that hold health check results.
pub const CHECK_PREFIX: &str = "check/";
/// Prefix of the keys that declare services.
pub const SERVICE_PREFIX: &str = "service/";
/// Prefix of the keys that hold the system status.
pub const SYSTEM_PREFIX: &str = "sys/";

/// The result of a health check, in the Nagios convention. Serialized in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Exit code 0, a 2xx answer, or a TCP connection that opened.
    Passing,
    /// Exit code 1.
    Warning,
    /// Any other exit code, a signal, a timeout, a non-2xx answer, a refused connection.
    Critical,
}

impl CheckStatus {
    /// Every status, from best to worst.
    pub const ALL: [CheckStatus; 3] = [
        CheckStatus::Passing,
        CheckStatus::Warning,
        CheckStatus::Critical,
    ];

    /// `passing`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown check status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCheckStatus(pub String);

impl fmt::Display for UnknownCheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown check status {:?} (expected passing, warning or critical)",
            self.0
        )
    }
}

impl std::error::Error for UnknownCheckStatus {}

impl FromStr for CheckStatus {
    type Err = UnknownCheckStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CheckStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownCheckStatus(s.to_owned()))
    }
}

/// The value of a `check/NAME` key: the latest result of a health check, as compact JSON.
///
/// ```
/// let json = r#"{"status":"critical","output":"connection refused","since":1764028861042,"duration_ms":3,"checked":1764028871042}"#;
/// let result: chatter_api::CheckResult = serde_json::from_str(json).unwrap();
/// assert_eq!(result.status, chatter_api::CheckStatus::Critical);
/// // Anything can publish a result with `PUT /v1/kv/check/NAME`: only `status` is required.
/// let minimal: chatter_api::CheckResult = serde_json::from_str(r#"{"status":"passing"}"#).unwrap();
/// assert_eq!(minimal.output, "");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The status of the latest run.
    pub status: CheckStatus,
    /// The first line of the command's output (before any `|` performance data), the HTTP
    /// status line, or what went wrong; at most 256 bytes.
    #[serde(default)]
    pub output: String,
    /// Since when the check has had this status (Unix ms, the owner's clock).
    #[serde(default)]
    pub since: u64,
    /// How long the latest run took (ms).
    #[serde(default)]
    pub duration_ms: u64,
    /// When the published run finished (Unix ms, the owner's clock). A result is republished
    /// when its status changes, and otherwise at most every 5 minutes (a heartbeat), so this
    /// can lag the latest run by that much.
    #[serde(default)]
    pub checked: u64,
}

/// One health check of one node, as `GET /v1/checks` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckView {
    /// The node that runs the check.
    pub node: String,
    /// That node's member status as the answering node sees it: the results of a failed or
    /// left node are its last ones.
    pub node_status: Status,
    /// The check's name.
    pub name: String,
    /// The latest result.
    pub status: CheckStatus,
    /// See [`CheckResult::output`].
    pub output: String,
    /// See [`CheckResult::since`] (Unix ms).
    pub since_ms: u64,
    /// See [`CheckResult::duration_ms`].
    pub duration_ms: u64,
    /// See [`CheckResult::checked`] (Unix ms).
    pub checked_ms: u64,
}

/// Body of `GET /v1/checks[?status=critical,warning][&node=NAME]`: every check of every node,
/// sorted by node, then name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksResponse {
    /// The checks.
    pub checks: Vec<CheckView>,
    /// The answering daemon's clock when it answered (Unix ms), to show how long ago `since_ms`
    /// was without trusting the client's clock.
    #[serde(default)]
    pub now_ms: u64,
}

/// The value of a `service/TYPE[/SHARD]` key: a service this node runs, as compact JSON.
///
/// ```
/// let decl = chatter_api::ServiceDecl { kind: "searcher".into(), shard: Some("1".into()) };
/// assert_eq!(decl.key(), "service/searcher/1");
/// assert_eq!(serde_json::to_string(&decl).unwrap(), r#"{"type":"searcher","shard":"1"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceDecl {
    /// The type of service (`searcher`, `indexer`, `api`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The shard this instance serves, if the service is sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

impl ServiceDecl {
    /// The key it is published under: `service/TYPE` or `service/TYPE/SHARD`.
    pub fn key(&self) -> String {
        match &self.shard {
            Some(shard) => format!("{SERVICE_PREFIX}{}/{shard}", self.kind),
            None => format!("{SERVICE_PREFIX}{}", self.kind),
        }
    }
}

/// One instance of a service: a node that declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// The node.
    pub node: String,
    /// The node's gossip address (its host is where the service runs).
    pub addr: String,
    /// The node's member status as the answering node sees it.
    pub status: Status,
    /// The node is alive or suspect: the instance counts as live.
    pub live: bool,
}

/// The instances of one shard of a service (or of an unsharded service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardView {
    /// The shard; absent for instances declared without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Instances on live (alive or suspect) nodes.
    pub live: usize,
    /// Every instance, live ones first, then by node name.
    pub instances: Vec<ServiceInstance>,
}

/// One type of service across the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// The type of service.
    #[serde(rename = "type")]
    pub kind: String,
    /// Instances on live nodes, over every shard.
    pub live: usize,
    /// Its shards in order (the unsharded instances first).
    pub shards: Vec<ShardView>,
}

/// Body of `GET /v1/services[?type=TYPE]`: every service declared in the cluster, grouped by
/// type and shard, sorted by type. Instances on failed or left nodes are listed with their
/// node's status and `live: false` (until the node is reaped), so a shard with no live
/// instance shows up with `live: 0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesResponse {
    /// The services.
    pub services: Vec<ServiceView>,
}

/// Used and total bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes used.
    pub used: u64,
    /// Bytes in all.
    pub total: u64,
}

impl Usage {
    /// Used as a percentage of total (0 when total is 0).
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.used as f64 * 100.0 / self.total as f64
        }
    }

    fn encode(&self) -> String {
        format!("{} {}", self.used, self.total)
    }

    fn decode(text: &str) -> Option<Usage> {
        let mut parts = text.split_whitespace();
        let used = parts.next()?.parse().ok()?;
        let total = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Usage { used, total })
    }
}

/// A node's system status, as published under `sys/` in its key/value state.
///
/// Every value is plain text (readable with `chatter kv get`):
///
/// | key | value | example |
/// | --- | --- | --- |
/// | `sys/load` | load averages over 1, 5 and 15 minutes | `0.52 0.61 0.70` |
/// | `sys/cpu` | CPU use over the last interval, percent of all cores | `12.5` |
/// | `sys/cores` | logical CPUs | `8` |
/// | `sys/mem` | memory used and total, bytes | `3521523712 16777216000` |
/// | `sys/disk` | root filesystem used (size - available to unprivileged users) and total, bytes | `52613349376 105226698752` |
/// | `sys/boot` | boot time, Unix seconds (uptime = now - boot, so it never needs republishing) | `1764020000` |
/// | `sys/version` | the `chatterd` version | `0.1.0` |
///
/// A field is `None` when its key is absent or does not parse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// Load averages over 1, 5 and 15 minutes.
    #[serde(default)]
    pub load: Option<[f64; 3]>,
    /// CPU use, percent of all cores (0 to 100).
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// Logical CPUs.
    #[serde(default)]
    pub cores: Option<u32>,
    /// Memory.
    #[serde(default)]
    pub memory: Option<Usage>,
    /// Root filesystem.
    #[serde(default)]
    pub disk: Option<Usage>,
    /// Boot time (Unix seconds).
    #[serde(default)]
    pub boot_time: Option<u64>,
    /// `chatterd` version.
    #[serde(default)]
    pub version: Option<String>,
}

impl SystemStatus {
    /// `sys/load`.
    pub const LOAD: &'static str = "sys/load";
    /// `sys/cpu`.
    pub const CPU: &'static str = "sys/cpu";
    /// `sys/cores`.
    pub const CORES: &'static str = "sys/cores";
    /// `sys/mem`.
    pub const MEMORY: &'static str = "sys/mem";
    /// `sys/disk`.
    pub const DISK: &'static str = "sys/disk";
    /// `sys/boot`.
    pub const BOOT: &'static str = "sys/boot";
    /// `sys/version`.
    pub const VERSION: &'static str = "sys/version";

    /// The value of one key, as published (`None` for a field that is `None`).
    pub fn encode(&self, key: &str) -> Option<String> {
        match key {
            Self::LOAD => self.load.map(|[a, b, c]| format!("{a:.2} {b:.2} {c:.2}")),
            Self::CPU => self.cpu_percent.map(|cpu| format!("{cpu:.1}")),
            Self::CORES => self.cores.map(|n| n.to_string()),
            Self::MEMORY => self.memory.map(|u| u.encode()),
            Self::DISK => self.disk.map(|u| u.encode()),
            Self::BOOT => self.boot_time.map(|t| t.to_string()),
            Self::VERSION => self.version.clone(),
            _ => None,
        }
    }

    /// Every key that has a value, with the value.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        Self::KEYS
            .into_iter()
            .filter_map(|key| self.encode(key).map(|value| (key, value)))
            .collect()
    }

    /// Every key of the system status.
    pub const KEYS: [&'static str; 7] = [
        Self::LOAD,
        Self::CPU,
        Self::CORES,
        Self::MEMORY,
        Self::DISK,
        Self::BOOT,
        Self::VERSION,
    ];

    /// Reads one key's value into this status; other keys and values that do not parse are
    /// ignored.
    pub fn decode(&mut self, key: &str, value: &str) {
        let value = value.trim();
        match key {
            Self::LOAD => {
                let parts: Vec<f64> = value
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .filter(|v: &f64| v.is_finite())
                    .collect();
                if let [a, b, c] = parts[..] {
                    self.load = Some([a, b, c]);
                }
            }
            Self::CPU => self.cpu_percent = value.parse().ok().filter(|v: &f64| v.is_finite()),
            Self::CORES => self.cores = value.parse().ok(),
            Self::MEMORY => self.memory = Usage::decode(value),
            Self::DISK => self.disk = Usage::decode(value),
            Self::BOOT => self.boot_time = value.parse().ok(),
            Self::VERSION => self.version = Some(value.to_owned()).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
}

/// One node's system status, as `GET /v1/system` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemView {
    /// The node.
    pub node: String,
    /// Its member status as the answering node sees it (a failed node's status is its last).
    pub status: Status,
    /// What it published.
    #[serde(flatten)]
    pub system: SystemStatus,
    /// Uptime of its host (s), from `boot_time` and the answering daemon's clock.
    #[serde(default)]
    pub uptime_s: Option<u64>,
}

/// Body of `GET /v1/system[?node=NAME]`: the system status of every node that published one,
/// sorted by node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemResponse {
    /// The nodes.
    pub nodes: Vec<SystemView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_status_round_trips_through_its_keys() {
        let status = SystemStatus {
            load: Some([0.5, 0.25, 1.0]),
            cpu_percent: Some(12.34),
            cores: Some(8),
            memory: Some(Usage { used: 1, total: 2 }),
            disk: Some(Usage { used: 3, total: 4 }),
            boot_time: Some(1_764_000_000),
            version: Some("0.1.0".into()),
        };
        let entries = status.entries();
        assert_eq!(entries.len(), 7);
        assert!(entries.contains(&("sys/load", "0.50 0.25 1.00".to_owned())));
        assert!(entries.contains(&("sys/cpu", "12.3".to_owned())));
        let mut back = SystemStatus::default();
        for (key, value) in &entries {
            back.decode(key, value);
        }
        assert_eq!(back.cpu_percent, Some(12.3));
        assert_eq!(back.memory, status.memory);
        assert_eq!(back.load, status.load);
        assert_eq!(back.version.as_deref(), Some("0.1.0"));
    }

    #[test]
    fn junk_system_values_are_ignored() {
        let mut status = SystemStatus::default();
        status.decode("sys/load", "1 2");
        status.decode("sys/cpu", "NaN");
        status.decode("sys/mem", "1 2 3");
        status.decode("sys/other", "x");
        assert_eq!(status, SystemStatus::default());
    }

    #[test]
    fn check_results_are_compact_json() {
        let result = CheckResult {
            status: CheckStatus::Warning,
            output: "load high".into(),
            since: 1,
            duration_ms: 2,
            checked: 3,
        };
        let json = serde_json::to_string(&result).unwrap();
        assert_eq!(
            json,
            r#"{"status":"warning","output":"load high","since":1,"duration_ms":2,"checked":3}"#
        );
        assert_eq!(serde_json::from_str::<CheckResult>(&json).unwrap(), result);
        assert!(serde_json::from_str::<CheckResult>(r#"{"status":"dead"}"#).is_err());
        assert_eq!(
            "CRITICAL".parse::<CheckStatus>().unwrap(),
            CheckStatus::Critical
        );
    }
}
