//! The key/value state over HTTP: `GET /v1/kv`, `PUT /v1/kv/{key}`, `DELETE /v1/kv/{key}`.
//!
//! Reads ask the node's driver, so they are exact: a `PUT` is visible to the next `GET` on the
//! same daemon at once, and on the others as soon as gossip brings it (milliseconds).
//! Keys may contain `/` (`checks/disk`); percent-encode anything else that is not URL-safe.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chatter::NodeState;
use chatter_api::{KvEntry, KvWriteResponse, NodeStateView};
use serde::Deserialize;

use crate::api::shared::{body_bytes, node_states, ApiError, AppState};
use crate::foundation::convert;

/// Query of `GET /v1/kv`.
#[derive(Debug, Deserialize)]
pub struct KvQuery {
    /// Only this member's state (404 if the member is unknown). Empty: every member.
    pub node: Option<String>,
    /// Only the keys that start with this.
    pub prefix: Option<String>,
}

/// The API view of one node's state, keeping only the keys that start with `prefix`.
pub fn node_state_view(state: &NodeState, prefix: &str) -> NodeStateView {
    NodeStateView {
        node: state.node.clone(),
        status: convert::status(state.status),
        generation: state.generation,
        version: state.version,
        entries: state
            .entries
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| KvEntry::new(key.clone(), &value.value, value.version))
            .collect(),
    }
}

/// `GET /v1/kv[?node=NAME][&prefix=P]`: every known member's state (this node's included),
/// ordered by name.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<KvQuery>, QueryRejection>,
) -> Result<Json<Vec<NodeStateView>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let prefix = query.prefix.unwrap_or_default();
    let states = node_states(&state.handle, query.node).await?;
    Ok(Json(
        states.iter().map(|s| node_state_view(s, &prefix)).collect(),
    ))
}

fn key_of(key: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    key.map(|Path(key)| key)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// `PUT /v1/kv/{key}`: sets a key of this node's state to the request body's bytes.
pub async fn set(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<KvWriteResponse>, ApiError> {
    let key = key_of(key)?;
    let value = body_bytes(body)?;
    let version = state.handle.set(key.clone(), value.to_vec()).await?;
    Ok(Json(KvWriteResponse { key, version }))
}

/// `DELETE /v1/kv/{key}`: deletes a key of this node's state; 404 if it is not set.
pub async fn delete(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<KvWriteResponse>, ApiError> {
    let key = key_of(key)?;
    match state.handle.delete(key.clone()).await? {
        Some(version) => Ok(Json(KvWriteResponse { key, version })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("key {key:?} is not set on this node"),
        )),
    }
}

/// `PUT` or `DELETE /v1/kv/` without a key.
pub async fn missing_key() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "missing key: use /v1/kv/{key} with a key of 1 to 128 bytes",
    )
}
