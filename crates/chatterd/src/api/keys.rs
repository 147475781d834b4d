//! Live key rotation through the API.
//!
//! - `GET /v1/keys`: runs a `list` across the cluster: for each fingerprint, how many nodes
//!   hold it and on how many it is primary, and which nodes did not answer.
//! - `POST /v1/keys/install` `{"key": "<base64>"}`, `POST /v1/keys/use` and
//!   `POST /v1/keys/remove` `{"key": "<base64 or fingerprint>"}`: the operation on every live
//!   node; only the fingerprint travels for `use` and `remove`.
//!
//! All four need the token when the daemon has one (reads included: listing sends a datagram
//! to every member, and the fingerprints tell an outsider which keys to look for), and the
//! POSTs are JSON-only like every other ([`crate::api::origin`]). Answers carry fingerprints
//! only.
//!
//! The keyring file is kept in step with the node's keyring by
//! [`crate::subsystems::keyring::persist`]; without a file, the answers say that changes hold
//! in memory only ([`MEMORY_ONLY`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chatter::{Fingerprint, Key, KeyOp, KeyOpError, KeyringError, Mode};
use chatter_api::{KeyOperationResponse, KeyRequest};

use crate::api::shared::{body_bytes, ApiError, AppState};
use crate::foundation::convert::key_report_view;
use crate::subsystems::keyring::MEMORY_ONLY;

/// `GET /v1/keys`.
pub async fn list(State(state): State<AppState>) -> Result<Json<KeyOperationResponse>, ApiError> {
    run(&state, KeyOp::List).await
}

/// `POST /v1/keys/install` with `{"key": "<base64 of 32 bytes>"}`.
pub async fn install(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<KeyOperationResponse>, ApiError> {
    let request = key_request(body)?;
    let key = Key::from_base64(request.key.trim())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid key: {e}")))?;
    run(&state, KeyOp::Install(key)).await
}

/// `POST /v1/keys/use` with `{"key": "<base64 key or fingerprint>"}`.
pub async fn use_key(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<KeyOperationResponse>, ApiError> {
    let fingerprint = fingerprint_of(&key_request(body)?.key)?;
    run(&state, KeyOp::Use(fingerprint)).await
}

/// `POST /v1/keys/remove` with `{"key": "<base64 key or fingerprint>"}`.
pub async fn remove(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<KeyOperationResponse>, ApiError> {
    let fingerprint = fingerprint_of(&key_request(body)?.key)?;
    run(&state, KeyOp::Remove(fingerprint)).await
}

fn key_request(body: Result<Bytes, BytesRejection>) -> Result<KeyRequest, ApiError> {
    let body = body_bytes(body)?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid request: {e} (expected {{\"key\": \"<base64 key or fingerprint>\"}})"),
        )
    })
}

/// A fingerprint (16 hex digits) as given, or the fingerprint of a base64 key.
pub fn fingerprint_of(text: &str) -> Result<Fingerprint, ApiError> {
    let text = text.trim();
    if let Ok(fingerprint) = text.parse::<Fingerprint>() {
        return Ok(fingerprint);
    }
    Key::from_base64(text)
        .map(|k| k.fingerprint())
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("neither a fingerprint (16 hex digits) nor a key: {e}"),
            )
        })
}

async fn run(state: &AppState, op: KeyOp) -> Result<Json<KeyOperationResponse>, ApiError> {
    let report = state.handle.key_op(op).await.map_err(key_error)?;
    let mut response = key_report_view(&report);
    response.keyring_file = state.keyring_file.as_ref().map(|p| p.display().to_string());
    if state.keyring_file.is_none() {
        response.warning = Some(MEMORY_ONLY.to_owned());
    }
    Ok(Json(response))
}

/// The status and message of a refused operation: nothing changed anywhere.
fn key_error(error: chatter::Error) -> ApiError {
    let chatter::Error::Keys(error) = error else {
        return ApiError::from(error);
    };
    let status = match &error {
        KeyOpError::NotSealed(_) => StatusCode::CONFLICT,
        KeyOpError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        KeyOpError::Keyring(KeyringError::NotInstalled(_)) => StatusCode::NOT_FOUND,
        KeyOpError::Keyring(KeyringError::Full) => StatusCode::INSUFFICIENT_STORAGE,
        KeyOpError::Keyring(_) => StatusCode::CONFLICT,
    };
    let message = match error {
        KeyOpError::NotSealed(Mode::Plaintext) => "this daemon runs without gossip encryption: \
             start it with --keyring-file (or CHATTER_GOSSIP_KEY) to use keys"
            .to_owned(),
        KeyOpError::NotSealed(mode) => format!(
            "key rotation needs every node in --encryption-mode sealed (this daemon runs {mode}): \
             finish the migration to encryption first"
        ),
        other => format!("refused, nothing changed: {other}"),
    };
    ApiError::new(status, message)
}
