//! The routes of the HTTP API (JSON), one module per resource: members
//! ([`crate::api::members`]), this node ([`crate::api::health`]), the key/value state
//! ([`crate::api::kv`]), user messages ([`crate::api::messages`]), keys
//! ([`crate::api::keys`]), checks, services and system status ([`crate::api::checks`],
//! [`crate::api::services`], [`crate::api::system`]), metrics ([`crate::api::metrics`]), the
//! dashboard ([`crate::api::dashboard`]) and the event stream ([`crate::api::events`]). Every
//! error is `{"error": "..."}`.

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware;
use axum::routing::{get, post, put};
use axum::Router;

use crate::api::shared::{request_timeout, ApiError, AppState, BODY_LIMIT};
use crate::api::{
    checks, dashboard, events, health, keys, kv, members, messages, metrics, services, system,
};

/// The router of the API. Every route but the event stream answers within the request
/// timeout ([`request_timeout`]); the event stream lasts as long as its client
/// wants, bounded by the event-stream cap instead.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/members", get(members::list))
        .route("/v1/members/{name}", get(members::one))
        .route("/v1/self", get(health::self_view))
        .route("/health", get(health::health))
        .route("/v1/kv", get(kv::list))
        .route("/v1/kv/", put(kv::missing_key).delete(kv::missing_key))
        .route("/v1/kv/{*key}", put(kv::set).delete(kv::delete))
        .route("/v1/messages", post(messages::broadcast))
        .route("/v1/keys", get(keys::list))
        .route("/v1/keys/install", post(keys::install))
        .route("/v1/keys/use", post(keys::use_key))
        .route("/v1/keys/remove", post(keys::remove))
        .route("/v1/checks", get(checks::list))
        .route("/v1/services", get(services::list))
        .route("/v1/system", get(system::list))
        .route("/metrics", get(metrics::scrape))
        .merge(dashboard::routes())
        // A layer wraps the routes added before it only: /v1/events, below, is not bounded.
        .layer(middleware::from_fn_with_state(
            state.limits.clone(),
            request_timeout,
        ))
        .route("/v1/events", get(events::stream))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
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
