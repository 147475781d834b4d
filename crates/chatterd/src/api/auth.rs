//! `--http-token`: when set, every request that changes something (any method but `GET`,
//! `HEAD` and `OPTIONS`), and every request under `/v1/keys` (listing the keys sends a
//! datagram to every member), needs `Authorization: Bearer TOKEN`. A missing or wrong token gets
//! 401 with `{"error": "..."}` and a `WWW-Authenticate: Bearer` header, before any handler
//! runs: nothing changes. Reads stay open (bind the API to loopback, the default, to keep them
//! private).
//!
//! The daemon keeps only the token's SHA-256 digest, and compares it with the digest of the
//! token a request sends, in constant time ([`subtle`]): both digests are 32 bytes whatever the
//! tokens, so the time of the comparison tells neither where the tokens differ nor how long the
//! daemon's token is.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::shared::ApiError;

/// The SHA-256 digest of a token, the only form in which the daemon keeps its own.
#[derive(Clone, Copy)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &[u8]) -> TokenDigest {
        TokenDigest(Sha256::digest(token).into())
    }

    /// Whether `given` is the token this is the digest of. The time taken depends on neither
    /// token: `given` is hashed (time linear in its own length only, which its sender knows),
    /// and the two 32-byte digests are compared in constant time.
    pub fn matches(&self, given: &[u8]) -> bool {
        let given = TokenDigest::of(given);
        bool::from(self.0.ct_eq(&given.0))
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// Wraps `router` so that mutating requests need the token (no change without a token).
pub fn protect(router: Router, token: Option<String>) -> Router {
    match token {
        Some(token) => router.layer(middleware::from_fn_with_state(
            Arc::new(TokenDigest::of(token.as_bytes())),
            require_token,
        )),
        None => router,
    }
}

async fn require_token(
    State(token): State<Arc<TokenDigest>>,
    request: Request,
    next: Next,
) -> Response {
    let keys = request.uri().path() == "/v1/keys" || request.uri().path().starts_with("/v1/keys/");
    if !keys
        && matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        )
    {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let message = match given {
        Some(given) if token.matches(given.as_bytes()) => {
            return next.run(request).await
        }
        Some(_) => "wrong token: this daemon needs Authorization: Bearer TOKEN with its --http-token",
        None => "missing token: this daemon needs Authorization: Bearer TOKEN (its --http-token) for PUT, DELETE, POST and /v1/keys",
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_tokens_only() {
        let digest = TokenDigest::of(b"secret");
        assert!(digest.matches(b"secret"));
        assert!(!digest.matches(b"secreT"));
        assert!(!digest.matches(b"secret2"));
        assert!(!digest.matches(b"secre"));
        assert!(!digest.matches(b""));
        assert!(TokenDigest::of(b"").matches(b""));
        assert!(!format!("{digest:?}").contains("secret"));
    }
}
