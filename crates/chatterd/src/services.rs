//! Services: `--service TYPE[:SHARD]` declares a service this node runs; every node can then
//! list the live instances of each type and shard (`GET /v1/services`).
//!
//! Each declaration is published once, at start, as `service/TYPE` or `service/TYPE/SHARD` in
//! the node's key/value state (a [`ServiceDecl`] in compact JSON). A node's state lives as long
//! as its member: an instance on a failed or left node is listed with that status (and does not
//! count as live) until the member is reaped.

use std::collections::BTreeMap;

use chatter::{Handle, NodeState, Snapshot};
use chatter_api::{ServiceDecl, ServiceInstance, ServiceView, ShardView, SERVICE_PREFIX};

use crate::convert;

/// Most services one node declares.
pub const MAX_SERVICES: usize = 64;

fn valid_part(what: &str, s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("{what} {s:?} must be 1 to 64 bytes"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!("{what} {s:?}: use letters, digits and _ - ."));
    }
    Ok(s.to_owned())
}

/// A service declaration from its parts (shared by the flag and the config file).
pub fn service(kind: &str, shard: Option<&str>) -> Result<ServiceDecl, String> {
    Ok(ServiceDecl {
        kind: valid_part("service type", kind)?,
        shard: shard.map(|s| valid_part("shard", s)).transpose()?,
    })
}

/// Parses `--service`: `TYPE` or `TYPE:SHARD`, each 1 to 64 letters, digits or `_ - .`.
pub fn parse_service(s: &str) -> Result<ServiceDecl, String> {
    match s.split_once(':') {
        Some((kind, shard)) => service(kind, Some(shard)),
        None => service(s, None),
    }
}

/// Publishes this node's services.
pub async fn publish(handle: &Handle, services: &[ServiceDecl]) -> Result<(), chatter::Error> {
    for decl in services {
        let value = serde_json::to_vec(decl).unwrap_or_default();
        handle.set(decl.key(), value).await?;
    }
    Ok(())
}

/// The services declared in `states`, grouped by type and shard, with each instance's node
/// status (and its address from `snapshot`). Only `kind` is kept if given.
pub fn group(states: &[NodeState], snapshot: &Snapshot, kind: Option<&str>) -> Vec<ServiceView> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse_with_an_optional_shard() {
        let s = parse_service("searcher:1").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.shard.as_deref()),
            ("searcher", Some("1"))
        );
        assert_eq!(s.key(), "service/searcher/1");
        let s = parse_service("api").unwrap();
        assert_eq!((s.kind.as_str(), s.shard.as_deref()), ("api", None));
        assert_eq!(s.key(), "service/api");
        for bad in ["", ":1", "api:", "a b", "a:1:2", "a/b"] {
            assert!(parse_service(bad).is_err(), "{bad:?}");
        }
    }
}
