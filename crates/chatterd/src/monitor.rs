//! The monitoring side of the daemon: starting its health checks ([`crate::checks`]), service
//! declarations ([`crate::services`]), system status ([`crate::system`]) and event handlers
//! ([`crate::handlers`]), and the endpoints that read them back for the whole cluster:
//! `GET /v1/checks`, `GET /v1/services`, `GET /v1/system`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chatter::{Handle, NodeState};
use chatter_api::{
    CheckResult, CheckStatus, CheckView, ChecksResponse, ServicesResponse, SystemResponse,
    SystemStatus, SystemView, CHECK_PREFIX, SYSTEM_PREFIX,
};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tracing::info;

use crate::cli::Args;
use crate::convert;
use crate::handlers::HandlerStats;
use crate::http::{ApiError, AppState};

/// The monitoring tasks of a running daemon; stopping (or dropping) them kills the commands
/// they are running.
pub struct Monitors {
    tasks: Vec<JoinHandle<()>>,
    /// Counters of the event handlers.
    pub handler_stats: Arc<HandlerStats>,
}

/// Deletes the keys a previous life restored from `--data-dir` that this daemon's monitoring
/// no longer writes: the `check/` of a check since removed, the `service/` of a service no
/// longer declared, and the `sys/` keys when the system status is off. Without it, a check or a
/// service dropped from the flags would stay published forever from the saved state. Keys
/// outside these prefixes (written through the API) are the user's and stay.
async fn forget_unmanaged_keys(handle: &Handle, args: &Args) {
    if !handle
        .data_dir()
        .is_some_and(|d| d.started_from.is_restored())
    {
        return;
    }
    let Ok(Some(state)) = handle.node_state(handle.name()).await else {
        return;
    };
    let checks: Vec<String> = args.checks.iter().map(|c| c.key()).collect();
    let services: Vec<String> = args.services.iter().map(|s| s.key()).collect();
    let system_off = args.status_interval.is_zero();
    for key in state.entries.keys() {
        let stale = (key.starts_with(CHECK_PREFIX) && !checks.contains(key))
            || (key.starts_with(chatter_api::SERVICE_PREFIX) && !services.contains(key))
            || (key.starts_with(SYSTEM_PREFIX) && system_off);
        if stale {
            info!(%key, "deleting a restored key that this daemon no longer publishes");
            let _ = handle.delete(key.clone()).await;
        }
    }
}

impl Monitors {
    /// Publishes the services, then starts the checks, the system status publisher and the
    /// event handlers. Fails only if the services cannot be published.
    /// `api_url` is this daemon's API (`ADDR`, or `https://ADDR` over TLS), for the handlers'
    /// `CHATTER_HTTP`.
    pub async fn start(handle: &Handle, args: &Args, api_url: &str) -> Result<Monitors> {
        forget_unmanaged_keys(handle, args).await;
        crate::services::publish(handle, &args.services)
            .await
            .map_err(|e| anyhow!("cannot publish the services: {e}"))?;
        let mut tasks = crate::checks::spawn_all(handle, &args.checks).map_err(|e| anyhow!(e))?;
        tasks.extend(crate::system::spawn(handle, args.status_interval));
        let handler_stats = Arc::new(HandlerStats::default());
        if let Some(handlers) = crate::handlers::spawn(
            handle,
            args.event_handlers.clone(),
            args.event_handler_timeout,
            api_url.to_owned(),
            handler_stats.clone(),
        ) {
            tasks.extend(handlers);
        }
        if !(args.checks.is_empty() && args.services.is_empty() && args.event_handlers.is_empty()) {
            info!(
                checks = ?args.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
                services = ?args.services.iter().map(|s| s.key()).collect::<Vec<_>>(),
                event_handlers = args.event_handlers.len(),
                "monitoring started"
            );
        }
        Ok(Monitors {
            tasks,
            handler_stats,
        })
    }

    /// Stops every task (running commands are killed with their process groups).
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The routes of the monitoring endpoints.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/checks", get(checks))
        .route("/v1/services", get(services))
        .route("/v1/system", get(system))
}

/// Query of `GET /v1/checks`.
#[derive(Debug, Deserialize)]
pub struct ChecksQuery {
    /// Comma-separated check statuses to keep (`passing`, `warning`, `critical`).
    pub status: Option<String>,
    /// Only this node's checks (404 if unknown).
    pub node: Option<String>,
}

/// Query of `GET /v1/services`.
#[derive(Debug, Deserialize)]
pub struct ServicesQuery {
    /// Only this type of service.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// Query of `GET /v1/system`.
#[derive(Debug, Deserialize)]
pub struct SystemQuery {
    /// Only this node (404 if unknown).
    pub node: Option<String>,
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
}

/// The state of one node (`Some(name)`, 404 if unknown) or of every node.
async fn states(handle: &Handle, node: Option<String>) -> Result<Vec<NodeState>, ApiError> {
    match node.filter(|n| !n.is_empty()) {
        Some(node) => match handle.node_state(&node).await? {
            Some(state) => Ok(vec![state]),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no member named {node:?}"),
            )),
        },
        None => Ok(handle.cluster_state().await?),
    }
}

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

async fn checks(
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
    let states = states(&state.handle, query.node).await?;
    let mut checks = check_views(&states);
    if !wanted.is_empty() {
        checks.retain(|c| wanted.contains(&c.status));
    }
    Ok(Json(ChecksResponse {
        checks,
        now_ms: crate::checks::now_ms(),
    }))
}

async fn services(
    State(state): State<AppState>,
    query: Result<Query<ServicesQuery>, QueryRejection>,
) -> Result<Json<ServicesResponse>, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let states = state.handle.cluster_state().await?;
    let snapshot = state.handle.snapshot();
    let kind = query.kind.filter(|k| !k.is_empty());
    Ok(Json(ServicesResponse {
        services: crate::services::group(&states, &snapshot, kind.as_deref()),
    }))
}

async fn system(
    State(state): State<AppState>,
    query: Result<Query<SystemQuery>, QueryRejection>,
) -> Result<Json<SystemResponse>, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let states = states(&state.handle, query.node).await?;
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let nodes = states
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
        .collect();
    Ok(Json(SystemResponse { nodes }))
}
