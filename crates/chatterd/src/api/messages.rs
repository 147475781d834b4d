//! User messages over HTTP: `POST /v1/messages` broadcasts one to the cluster.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chatter_api::{compact_json, BroadcastRequest, BroadcastResponse};

use crate::api::shared::{body_bytes, ApiError, AppState};
use crate::foundation::convert::message_id_view;

/// `POST /v1/messages` with `{"tag": "...", "payload": <any JSON value>}`: broadcasts the
/// payload (its JSON text, compacted) under the tag; 202 with the message's id.
///
/// The request must declare `Content-Type: application/json` (checked before this handler, by
/// [`crate::api::origin::require_json_post`]; `415` otherwise), which keeps web pages of other
/// sites from broadcasting through a browser.
pub async fn broadcast(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BroadcastResponse>), ApiError> {
    let body = body_bytes(body)?;
    let request: BroadcastRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid message: {e} (expected {{\"tag\": \"...\", \"payload\": <any JSON value>}})"
            ),
        )
    })?;
    let payload = compact_json(request.payload.get()).into_bytes();
    let id = state.handle.broadcast_raw(&request.tag, payload).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BroadcastResponse {
            id: message_id_view(&id),
        }),
    ))
}
