//! Services: `GET /v1/services`, the services every node declares, grouped by type and shard
//! with their live instances.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chatter_api::ServicesResponse;
use serde::Deserialize;

use crate::api::shared::{bad_query, ApiError, AppState};
use crate::subsystems::queries::service_views;

/// Query of `GET /v1/services`.
#[derive(Debug, Deserialize)]
pub struct ServicesQuery {
    /// Only this type of service.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `GET /v1/services[?type=TYPE]`: the services the cluster declares, by type and shard.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ServicesQuery>, QueryRejection>,
) -> Result<Json<ServicesResponse>, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let states = state.handle.cluster_state().await?;
    let snapshot = state.handle.snapshot();
    let kind = query.kind.filter(|k| !k.is_empty());
    Ok(Json(ServicesResponse {
        services: service_views(&states, &snapshot, kind.as_deref()),
    }))
}
