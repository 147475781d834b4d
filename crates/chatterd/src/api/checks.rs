//! Checks: `GET /v1/checks`, the results of every node's health checks (as the checks
//! subsystem publishes them), filtered by status or node.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chatter_api::{CheckStatus, ChecksResponse};
use serde::Deserialize;

use crate::api::shared::{bad_query, node_states, ApiError, AppState};
use crate::subsystems::checks::now_ms;
use crate::subsystems::queries::check_views;

/// Query of `GET /v1/checks`.
#[derive(Debug, Deserialize)]
pub struct ChecksQuery {
    /// Comma-separated check statuses to keep (`passing`, `warning`, `critical`).
    pub status: Option<String>,
    /// Only this node's checks (404 if unknown).
    pub node: Option<String>,
}

/// `GET /v1/checks[?status=...][&node=NAME]`: the check results of the cluster (or of one
/// node), with the time of the answer.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ChecksQuery>, QueryRejection>,
) -> Result<Json<ChecksResponse>, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let wanted: Vec<CheckStatus> = query
        .status
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.parse::<CheckStatus>()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let states = node_states(&state.handle, query.node).await?;
    let mut checks = check_views(&states);
    if !wanted.is_empty() {
        checks.retain(|c| wanted.contains(&c.status));
    }
    Ok(Json(ChecksResponse {
        checks,
        now_ms: now_ms(),
    }))
}
