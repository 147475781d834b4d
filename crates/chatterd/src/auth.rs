//! `--http-token`: when set, every request that changes something (any method but `GET`,
//! `HEAD` and `OPTIONS`) needs `Authorization: Bearer TOKEN`. A missing or wrong token gets
//! 401 with `{"error": "..."}` and a `WWW-Authenticate: Bearer` header, before any handler
//! runs: nothing changes. Reads stay open (bind the API to loopback, the default, to keep them
//! private). The comparison takes the same time wherever the tokens differ.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::http::ApiError;

/// Parses `--http-token`: 1 to 256 visible ASCII characters (it travels in an HTTP header).
pub fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 256 {
        return Err("the token must be 1 to 256 characters".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII characters (no spaces)".into());
    }
    Ok(s.to_owned())
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = a.len() ^ b.len();
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Wraps `router` so that mutating requests need the token (no change without a token).
pub fn protect(router: Router, token: Option<String>) -> Router {
    match token {
        Some(token) => router.layer(middleware::from_fn_with_state(
            Arc::<str>::from(token),
            require_token,
        )),
        None => router,
    }
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
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
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            return next.run(request).await
        }
        Some(_) => "wrong token: this daemon needs Authorization: Bearer TOKEN with its --http-token",
        None => "missing token: this daemon needs Authorization: Bearer TOKEN (its --http-token) for PUT, DELETE and POST",
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
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn tokens_are_visible_ascii() {
        assert!(parse_token("s3cr3t-T0ken_=").is_ok());
        assert!(parse_token("").is_err());
        assert!(parse_token("two words").is_err());
        assert!(parse_token("é").is_err());
    }
}
