//! What the cluster publishes, read back: the check results, service declarations and system
//! statuses of every node's key/value state, as the API shows them. The checks, services and
//! system status subsystems write these keys; these functions read the states the node's
//! driver returns, without asking it anything themselves.

use std::collections::BTreeMap;

use chatter::{NodeState, Snapshot};
use chatter_api::{
    CheckResult, CheckView, ServiceDecl, ServiceInstance, ServiceView, ShardView, SystemStatus,
    SystemView, CHECK_PREFIX, SERVICE_PREFIX, SYSTEM_PREFIX,
};

use crate::foundation::convert;

/// Every check result in `states` (values that are not a [`CheckResult`] are skipped).
pub fn check_views(states: &[NodeState]) -> Vec<CheckView> {
    let mut views = Vec::new();
    for state in states {
        let node_status = convert::status(state.status);
        for (key, value) in state.entries.range(CHECK_PREFIX.to_owned()..) {
            let Some(name) = key.strip_prefix(CHECK_PREFIX) else {
                break;
            };
            let Ok(result) = serde_json::from_slice::<CheckResult>(&value.value) else {
                continue;
            };
            views.push(CheckView {
                node: state.node.clone(),
                node_status,
                name: name.to_owned(),
                status: result.status,
                output: result.output,
                since_ms: result.since,
                duration_ms: result.duration_ms,
                checked_ms: result.checked,
            });
        }
    }
    views
}

/// The services declared in `states`, grouped by type and shard, with each instance's node
/// status (and its address from `snapshot`). Only `kind` is kept if given.
pub fn service_views(
    states: &[NodeState],
    snapshot: &Snapshot,
    kind: Option<&str>,
) -> Vec<ServiceView> {
    let mut types: BTreeMap<String, BTreeMap<Option<String>, Vec<ServiceInstance>>> =
        BTreeMap::new();
    for state in states {
        let status = convert::status(state.status);
        let addr = snapshot
            .member(&state.node)
            .map(|m| m.addr.to_string())
            .unwrap_or_default();
        for (key, value) in state.entries.range(SERVICE_PREFIX.to_owned()..) {
            if !key.starts_with(SERVICE_PREFIX) {
                break;
            }
            let Ok(decl) = serde_json::from_slice::<ServiceDecl>(&value.value) else {
                continue;
            };
            if kind.is_some_and(|k| k != decl.kind) {
                continue;
            }
            types
                .entry(decl.kind)
                .or_default()
                .entry(decl.shard)
                .or_default()
                .push(ServiceInstance {
                    node: state.node.clone(),
                    addr: addr.clone(),
                    status,
                    live: matches!(
                        status,
                        chatter_api::Status::Alive | chatter_api::Status::Suspect
                    ),
                });
        }
    }
    types
        .into_iter()
        .map(|(kind, shards)| {
            let shards: Vec<ShardView> = shards
                .into_iter()
                .map(|(shard, mut instances)| {
                    instances.sort_by(|a, b| b.live.cmp(&a.live).then(a.node.cmp(&b.node)));
                    instances.dedup_by(|a, b| a.node == b.node);
                    ShardView {
                        shard,
                        live: instances.iter().filter(|i| i.live).count(),
                        instances,
                    }
                })
                .collect();
            ServiceView {
                kind,
                live: shards.iter().map(|s| s.live).sum(),
                shards,
            }
        })
        .collect()
}

/// The system status of every node of `states` that publishes one, with its uptime at
/// `now_s` (Unix seconds).
pub fn system_views(states: &[NodeState], now_s: u64) -> Vec<SystemView> {
    states
        .iter()
        .filter_map(|s| {
            let mut system = SystemStatus::default();
            let mut any = false;
            for (key, value) in s.entries.range(SYSTEM_PREFIX.to_owned()..) {
                if !key.starts_with(SYSTEM_PREFIX) {
                    break;
                }
                any = true;
                system.decode(key, &String::from_utf8_lossy(&value.value));
            }
            any.then(|| SystemView {
                node: s.node.clone(),
                status: convert::status(s.status),
                uptime_s: system.boot_time.map(|boot| now_s.saturating_sub(boot)),
                system,
            })
        })
        .collect()
}
