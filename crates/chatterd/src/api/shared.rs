//! What every endpoint of the HTTP API shares: the state handlers get ([`AppState`]), the
//! per-request bounds ([`Limits`], the request timeout and the event-stream cap), the error
//! type (an [`ApiError`] answers `{"error": "..."}` with a status code), and reading a body or
//! a query. The bounds of connections (their number, header-read and idle timeouts) are the
//! server's (`api::server`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatter::{BroadcastError, Handle, NodeState, StateError};
use chatter_api::ErrorBody;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::foundation::duration::format_duration;

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
    pub limits: Limits,
    /// `--keyring-file`, which the daemon rewrites when its keyring changes; `None` without
    /// one (no encryption, or the key from `CHATTER_GOSSIP_KEY`).
    pub keyring_file: Option<std::path::PathBuf>,
}

/// Largest request body read, in bytes. Values and payloads are limited to 1 KiB by the
/// protocol (and refused with 413 and the limit); bodies beyond this are not even buffered.
pub const BODY_LIMIT: usize = 64 * 1024;

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

/// The bytes of a request body, or the error: 413 beyond [`BODY_LIMIT`].
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over the {BODY_LIMIT}-byte limit"),
            )
        } else {
            ApiError::new(e.status(), e.body_text())
        }
    })
}

/// A query string that does not parse: 400 with axum's reason.
pub fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
}

/// The state of one node (`Some(name)`, 404 if unknown) or of every node.
pub async fn node_states(
    handle: &Handle,
    node: Option<String>,
) -> Result<Vec<NodeState>, ApiError> {
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

/// The per-request bounds the handlers share.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--http-request-timeout`.
    pub request_timeout: Duration,
    event_streams: Arc<Semaphore>,
    max_event_streams: u32,
}

impl Limits {
    /// Bounds with this request timeout and at most `max_event_streams` event streams open.
    pub fn new(request_timeout: Duration, max_event_streams: u32) -> Limits {
        Limits {
            request_timeout,
            event_streams: Arc::new(Semaphore::new(max_event_streams as usize)),
            max_event_streams,
        }
    }

    /// A place for one more event stream, held for as long as the stream is open; nothing is
    /// taken when every place is.
    pub fn event_stream(&self) -> Result<OwnedSemaphorePermit, TooManyStreams> {
        self.event_streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| TooManyStreams {
                max: self.max_event_streams,
            })
    }

    /// Event streams open now.
    pub fn event_streams_open(&self) -> usize {
        (self.max_event_streams as usize).saturating_sub(self.event_streams.available_permits())
    }
}

/// Every event-stream place is taken; answered `503 {"error": ...}` naming the limit, with
/// `Retry-After: 5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyStreams {
    /// `--http-max-event-streams`.
    pub max: u32,
}

impl IntoResponse for TooManyStreams {
    fn into_response(self) -> Response {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many event streams: this daemon serves at most {} at once \
                 (--http-max-event-streams); retry later",
                self.max
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        response
    }
}

/// Middleware: a request (its body read by the handler included) that takes longer than the
/// request timeout is answered `408 {"error": ...}`, and its handler dropped. Only the response
/// head is bounded, so a streamed body would not be cut short; the router leaves `/v1/events`
/// outside it all the same, so that the routes show which requests are bounded.
pub async fn request_timeout(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let timeout = limits.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request not completed within {} (--http-request-timeout)",
                format_duration(timeout)
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_stream_places_come_back_when_a_stream_closes() {
        let limits = Limits::new(Duration::from_secs(1), 2);
        let first = limits.event_stream().unwrap();
        let _second = limits.event_stream().unwrap();
        assert_eq!(limits.event_streams_open(), 2);
        let refused = limits.event_stream().unwrap_err();
        assert_eq!(refused, TooManyStreams { max: 2 });
        let refused = refused.into_response();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.headers().contains_key(RETRY_AFTER));
        drop(first);
        assert!(limits.event_stream().is_ok());
    }
}
