//! System status: `GET /v1/system`, the load, CPU, memory, disk and uptime every node
//! publishes.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chatter_api::SystemResponse;
use serde::Deserialize;

use crate::api::shared::{bad_query, node_states, ApiError, AppState};
use crate::subsystems::queries::system_views;

/// Query of `GET /v1/system`.
#[derive(Debug, Deserialize)]
pub struct SystemQuery {
    /// Only this node (404 if unknown).
    pub node: Option<String>,
}

/// `GET /v1/system[?node=NAME]`: the system status of every node (or of one).
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<SystemQuery>, QueryRejection>,
) -> Result<Json<SystemResponse>, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let states = node_states(&state.handle, query.node).await?;
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let nodes = system_views(&states, now_s);
    Ok(Json(SystemResponse { nodes }))
}
