//! Services: `--service TYPE[:SHARD]` (see `options::services`) declares a service this node
//! runs; every node can then list the live instances of each type and shard
//! (`GET /v1/services`, grouped by `subsystems::queries`).
//!
//! Each declaration is published once, at start, as `service/TYPE` or `service/TYPE/SHARD` in
//! the node's key/value state (a [`ServiceDecl`] in compact JSON). A node's state lives as long
//! as its member: an instance on a failed or left node is listed with that status (and does not
//! count as live) until the member is reaped.

use chatter::Handle;
use chatter_api::ServiceDecl;

/// Publishes this node's services.
pub async fn publish(handle: &Handle, services: &[ServiceDecl]) -> Result<(), chatter::Error> {
    for decl in services {
        let value = serde_json::to_vec(decl).unwrap_or_default();
        handle.set(decl.key(), value).await?;
    }
    Ok(())
}
