//! Members: `GET /v1/members` (every member, filtered by status) and
//! `GET /v1/members/{name}`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chatter::Snapshot;
use chatter_api::{MemberView, MembersResponse, Status};
use serde::Deserialize;

use crate::api::shared::{ApiError, AppState};
use crate::foundation::convert::{self, Clock};

/// Query of `GET /v1/members`.
#[derive(Debug, Deserialize)]
pub struct MembersQuery {
    /// Comma-separated statuses to keep (`alive`, `suspect`, `failed`, `left`).
    pub status: Option<String>,
}

/// Every member of a snapshot, the local node included, sorted by name.
pub fn all_members(snapshot: &Snapshot, clock: &Clock) -> Vec<MemberView> {
    let mut members: Vec<MemberView> =
        std::iter::once(convert::member_view(&snapshot.local, clock, true))
            .chain(
                snapshot
                    .members
                    .iter()
                    .filter(|m| m.name != snapshot.local.name)
                    .map(|m| convert::member_view(m, clock, false)),
            )
            .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    members
}

fn parse_statuses(filter: &str) -> Result<Vec<Status>, ApiError> {
    filter
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.parse::<Status>()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
        })
        .collect()
}

/// `GET /v1/members[?status=alive,suspect]`: every member, this node included, by name.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<MembersResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    // `?status=` (empty) is no filter.
    let wanted = match &query.status {
        Some(filter) => Some(parse_statuses(filter)?).filter(|w| !w.is_empty()),
        None => None,
    };
    let snapshot = state.handle.snapshot();
    let mut members = all_members(&snapshot, &Clock::now());
    if let Some(wanted) = wanted {
        members.retain(|m| wanted.contains(&m.status));
    }
    Ok(Json(MembersResponse { members }))
}

/// `GET /v1/members/{name}`: one member; 404 if unknown.
pub async fn one(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<MemberView>, ApiError> {
    let Path(name) = name.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let snapshot = state.handle.snapshot();
    let clock = Clock::now();
    if snapshot.local.name == name {
        return Ok(Json(convert::member_view(&snapshot.local, &clock, true)));
    }
    snapshot
        .members
        .iter()
        .find(|m| m.name == name)
        .map(|m| Json(convert::member_view(m, &clock, false)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no member named {name:?}")))
}
