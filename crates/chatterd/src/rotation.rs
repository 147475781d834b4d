//! Live key rotation through the API, and the keyring file kept in step with the keyring.
//!
//! - `GET /v1/keys`: runs a `list` across the cluster: for each fingerprint, how many nodes
//!   hold it and on how many it is primary, and which nodes did not answer.
//! - `POST /v1/keys/install` `{"key": "<base64>"}`, `POST /v1/keys/use` and
//!   `POST /v1/keys/remove` `{"key": "<base64 or fingerprint>"}`: the operation on every live
//!   node; only the fingerprint travels for `use` and `remove`.
//!
//! All four need the token when the daemon has one (reads included: listing sends a datagram
//! to every member, and the fingerprints tell an outsider which keys to look for), and the
//! POSTs are JSON-only like every other ([`crate::origin`]). Answers carry fingerprints only.
//!
//! Whenever the node's keyring changes (an operation started here or a command from another
//! member), [`persist`] rewrites `--keyring-file` atomically, or without one the keyring file
//! of `--data-dir` (`DIR/keyring`, read back at the next start). With the key from
//! `CHATTER_GOSSIP_KEY` and no data directory there is no file: changes hold in memory only,
//! which the answers say and a warning logs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chatter::{Event, Fingerprint, Handle, Key, KeyOp, KeyOpError, KeyReport, KeyringError, Mode};
use chatter_api::{KeyCount, KeyNodeAnswer, KeyOperationResponse, KeyRequest, KeyView};
use tracing::{info, warn};

use crate::http::{ApiError, AppState};
use crate::kv::body_bytes;

/// What the answers say when changes are not written to any file.
pub const MEMORY_ONLY: &str = "this daemon took its key from CHATTER_GOSSIP_KEY and has no \
     keyring file nor --data-dir: the change holds in memory only and is lost at restart; give \
     the daemon a --keyring-file with the new keyring (or a --data-dir) before restarting it";

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
    let mut response = response(&report);
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

fn key_views(keys: &[chatter::KeyInfo]) -> Vec<KeyView> {
    keys.iter()
        .map(|k| KeyView {
            fingerprint: k.fingerprint.to_string(),
            primary: k.primary,
        })
        .collect()
}

/// The API view of a report (without `keyring_file` and `warning`, which only the answering
/// daemon knows).
pub fn response(report: &KeyReport) -> KeyOperationResponse {
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (node, answer) in &report.answers {
        for key in &answer.keys {
            let count = counts.entry(key.fingerprint.to_string()).or_default();
            count.0 += 1;
            count.1 += usize::from(key.primary);
        }
        let view = KeyNodeAnswer {
            node: node.clone(),
            refused: answer.refusal.map(|r| r.to_string()),
            keys: key_views(&answer.keys),
        };
        if answer.refusal.is_some() {
            refused.push(view);
        } else {
            acknowledged.push(view);
        }
    }
    KeyOperationResponse {
        operation: report.op.name().to_owned(),
        fingerprint: report.op.fingerprint().map(|f| f.to_string()),
        acknowledged,
        refused,
        silent: report.silent.clone(),
        not_reached: report.not_reached.clone(),
        keys: counts
            .into_iter()
            .map(|(fingerprint, (nodes, primary_on))| KeyCount {
                fingerprint,
                nodes,
                primary_on,
            })
            .collect(),
        complete: report.complete(),
        keyring_file: None,
        warning: None,
    }
}

/// Keeps `--keyring-file` in step with the node's keyring until the node stops: rewritten
/// after every [`Event::KeyringChanged`] (and after missed events, in case one was among
/// them). Without a file, each change is logged as held in memory only.
pub async fn persist(handle: Handle, path: Option<PathBuf>) {
    let mut events = handle.subscribe();
    let mut skipped = 0;
    while let Some(event) = events.recv().await {
        let missed = events.skipped() != skipped;
        skipped = events.skipped();
        if !missed && !matches!(event, Event::KeyringChanged(_)) {
            continue;
        }
        let Some(path) = &path else {
            if matches!(event, Event::KeyringChanged(_)) {
                warn!("{MEMORY_ONLY}");
            }
            continue;
        };
        let keyring = match handle.keyring().await {
            Ok(Some(keyring)) => keyring,
            Ok(None) | Err(_) => continue,
        };
        match crate::keys::write_keyring_file(path, &keyring) {
            Ok(()) => info!(
                path = %path.display(),
                keys = ?keyring.list().iter().map(|k| k.fingerprint.to_string()).collect::<Vec<_>>(),
                "keyring file rewritten"
            ),
            Err(error) => warn!(%error, "the keyring changed but the file was not rewritten"),
        }
    }
}
