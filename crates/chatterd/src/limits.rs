//! Bounds of single requests: the whole-request timeout (`--http-request-timeout`) and the cap
//! on event-stream clients (`--http-max-event-streams`). The bounds of connections (their
//! number, header-read and idle timeouts) are in [`crate::server`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::ApiError;

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
                crate::process::format_duration(timeout)
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
