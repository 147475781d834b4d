//! The HTTP API (JSON): `GET /v1/members`, `GET /v1/members/{name}`, `GET /v1/self`,
//! `GET /health`, the key/value state ([`crate::kv`]), user messages ([`crate::messages`]) and
//! the event stream ([`crate::events`]). Every error is `{"error": "..."}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chatter::{BroadcastError, Handle, MemberStatus, Snapshot, StateError};
use chatter_api::{
    ErrorBody, HealthStatus, HealthView, MemberView, MembersResponse, SelfView, Status,
};
use serde::Deserialize;

use crate::convert::{self, Clock};

/// Version of this binary, reported by `/v1/self` and `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The running node.
    pub handle: Handle,
    /// Set once a shutdown signal arrived: `/health` answers 503 `leaving`.
    pub leaving: Arc<AtomicBool>,
    /// When the daemon started.
    pub started: Instant,
    /// Name of the cluster.
    pub cluster: String,
    /// The request timeout and the event-stream cap.
    pub limits: crate::limits::Limits,
    /// `--keyring-file`, which the daemon rewrites when its keyring changes; `None` without
    /// one (no encryption, or the key from `CHATTER_GOSSIP_KEY`).
    pub keyring_file: Option<std::path::PathBuf>,
}

/// Largest request body read, in bytes. Values and payloads are limited to 1 KiB by the
/// protocol (and refused with 413 and the limit); bodies beyond this are not even buffered.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The router of the API. Every route but the event stream answers within the request
/// timeout ([`crate::limits::request_timeout`]); the event stream lasts as long as its client
/// wants, bounded by the event-stream cap instead.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/members", get(members))
        .route("/v1/members/{name}", get(member))
        .route("/v1/self", get(self_view))
        .route("/health", get(health))
        .route("/v1/kv", get(crate::kv::list))
        .route(
            "/v1/kv/",
            put(crate::kv::missing_key).delete(crate::kv::missing_key),
        )
        .route(
            "/v1/kv/{*key}",
            put(crate::kv::set).delete(crate::kv::delete),
        )
        .route("/v1/messages", post(crate::messages::broadcast))
        .route("/v1/keys", get(crate::rotation::list))
        .route("/v1/keys/install", post(crate::rotation::install))
        .route("/v1/keys/use", post(crate::rotation::use_key))
        .route("/v1/keys/remove", post(crate::rotation::remove))
        .merge(crate::monitor::routes()) // /v1/checks, /v1/services, /v1/system
        .route("/metrics", get(crate::metrics::scrape))
        .merge(crate::dashboard::routes())
        // A layer wraps the routes added before it only: /v1/events, below, is not bounded.
        .layer(middleware::from_fn_with_state(
            state.limits.clone(),
            crate::limits::request_timeout,
        ))
        .route("/v1/events", get(crate::events::stream))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// An error answered as `{"error": "..."}` with a status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<chatter::Error> for ApiError {
    /// The status of a refused command: 400 for a bad key or tag, 413 for a value or payload
    /// over its limit, 507 for a full state, 503 while leaving or stopped.
    fn from(err: chatter::Error) -> Self {
        let status = match &err {
            chatter::Error::State(StateError::BadKey { .. })
            | chatter::Error::Broadcast(BroadcastError::BadTag { .. }) => StatusCode::BAD_REQUEST,
            chatter::Error::State(StateError::ValueTooLarge { .. })
            | chatter::Error::Broadcast(BroadcastError::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            chatter::Error::State(StateError::Full { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            chatter::Error::State(StateError::Left)
            | chatter::Error::Broadcast(BroadcastError::Left)
            | chatter::Error::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::new(self.message))).into_response()
    }
}

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

async fn members(
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

async fn member(
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

async fn self_view(State(state): State<AppState>) -> Json<SelfView> {
    let snapshot = state.handle.snapshot();
    let clock = Clock::now();
    Json(SelfView {
        member: convert::member_view(&snapshot.local, &clock, true),
        health_score: snapshot.health_score,
        stats: convert::stats_map(&snapshot.stats),
        io: convert::io_stats_map(&snapshot.io),
        version: VERSION.to_owned(),
        cluster: state.cluster.clone(),
        uptime_ms: clock.age_ms(state.started),
        encryption: chatter_api::EncryptionView {
            mode: snapshot.encryption_mode.as_str().to_owned(),
            keys: snapshot
                .keys
                .iter()
                .map(|k| chatter_api::KeyView {
                    fingerprint: k.fingerprint.to_string(),
                    primary: k.primary,
                })
                .collect(),
        },
        data_dir: state.handle.data_dir().map(convert::data_dir_view),
    })
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let snapshot = state.handle.snapshot();
    let others_alive = snapshot
        .members
        .iter()
        .filter(|m| m.name != snapshot.local.name && m.status.is_live())
        .count();
    let others_total = snapshot
        .members
        .iter()
        .filter(|m| m.name != snapshot.local.name)
        .count();
    let leaving = state.leaving.load(Ordering::Relaxed)
        || !matches!(
            snapshot.local.status,
            MemberStatus::Alive | MemberStatus::Suspect
        );
    let (code, status) = if leaving {
        (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Leaving)
    } else {
        (StatusCode::OK, HealthStatus::Ok)
    };
    (
        code,
        Json(HealthView {
            status,
            name: snapshot.local.name.clone(),
            members_alive: others_alive + 1,
            members_total: others_total + 1,
            health_score: snapshot.health_score,
            version: VERSION.to_owned(),
        }),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}
