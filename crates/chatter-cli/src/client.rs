//! The HTTP client of the daemon's API: JSON requests with one-line errors, and the event
//! stream (Server-Sent Events).

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chatter_api::ErrorBody;
use reqwest::Method;
use serde::de::DeserializeOwned;

/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the event stream may stay silent: the daemon sends a keep-alive every 15 s, so
/// three missed ones mean the daemon (or the path to it) is gone.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// The body of a request, with the type it is sent as.
#[derive(Debug, Clone)]
pub enum Body {
    /// JSON, sent as `Content-Type: application/json` (which chatterd requires of a `POST`).
    Json(Vec<u8>),
    /// Raw bytes (a key's value), sent as `Content-Type: application/octet-stream`.
    Bytes(Vec<u8>),
}

/// A client of one daemon's API.
pub struct Client {
    /// `http://HOST:PORT` or `https://HOST:PORT`, without a trailing slash.
    pub base: String,
    http: reqwest::Client,
    /// `Bearer TOKEN`, sent with every request when set.
    authorization: Option<reqwest::header::HeaderValue>,
}

impl Client {
    /// A client of the API at `addr` (`HOST:PORT`, `http://HOST:PORT` or
    /// `https://HOST:PORT`). With `ca`, an `https://` daemon's certificate is verified against
    /// the CA certificates of that PEM file instead of the built-in (Mozilla) roots.
    pub fn with_ca(addr: &str, ca: Option<&Path>) -> Result<Self> {
        let addr = addr.trim().trim_end_matches('/');
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        // No overall timeout on the client: the event stream lasts as long as the daemon.
        // Requests set theirs one by one.
        let mut builder = reqwest::Client::builder().connect_timeout(REQUEST_TIMEOUT);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| {
                let text = e.to_string();
                let text = text
                    .split(" (os error ")
                    .next()
                    .unwrap_or(&text)
                    .to_lowercase();
                anyhow!("--ca {}: cannot read it: {text}", ca.display())
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow!("--ca {}: not valid PEM: {}", ca.display(), describe(&e)))?;
            if certs.is_empty() {
                return Err(anyhow!(
                    "--ca {}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
                    ca.display()
                ));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().context("cannot create the HTTP client")?;
        Ok(Self {
            base,
            http,
            authorization: None,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` with every request (for a daemon with
    /// `--http-token`); `None` or an empty token sends nothing.
    pub fn with_token(mut self, token: Option<&str>) -> Result<Self> {
        self.authorization = match token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => {
                let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| anyhow!("the HTTP token must be visible ASCII characters"))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(self)
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    /// `GET path`, decoded from JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request(Method::GET, path, None).await
    }

    /// `METHOD path` with an optional body, the answer decoded from JSON; an error answer
    /// becomes its `error` message.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<T> {
        self.request_within(method, path, body, REQUEST_TIMEOUT)
            .await
    }

    /// Like [`Client::request`], for a request that may take up to `timeout` (a key operation
    /// waits for every member's answer).
    pub async fn request_within<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        timeout: Duration,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let mut request = self.authorize(self.http.request(method, &url).timeout(timeout));
        let content_type = reqwest::header::CONTENT_TYPE;
        match body {
            Some(Body::Json(body)) => {
                request = request.header(content_type, "application/json").body(body);
            }
            Some(Body::Bytes(body)) => {
                request = request
                    .header(content_type, "application/octet-stream")
                    .body(body);
            }
            None => {}
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| anyhow!("cannot read the answer of {url}: {}", describe(&e)))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(err) if status == reqwest::StatusCode::UNAUTHORIZED => anyhow!(
                    "{} (pass --http-token or set CHATTER_HTTP_TOKEN)",
                    err.error
                ),
                Ok(err) => anyhow!("{}", err.error),
                Err(_) => anyhow!("{url} answered {status}"),
            });
        }
        serde_json::from_slice(&body)
            .map_err(|e| anyhow!("unexpected answer from {url} (is it chatterd?): {e}"))
    }

    fn unreachable(&self, err: &reqwest::Error) -> anyhow::Error {
        anyhow!("cannot reach chatterd at {}: {}", self.base, describe(err))
    }

    /// Follows `GET /v1/events` and calls `on_data` with the `data` of each event, until the
    /// stream ends (an error: the daemon went away) or `on_data` says stop (`Ok(false)`).
    pub async fn follow_events(&self, mut on_data: impl FnMut(&str) -> Result<bool>) -> Result<()> {
        let url = format!("{}/v1/events", self.base);
        let mut response = self
            .authorize(self.http.get(&url))
            .header("Accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(err) => anyhow!("{}", err.error),
                Err(_) => anyhow!("{url} answered {status}"),
            });
        }
        let mut parser = SseParser::default();
        loop {
            let chunk = tokio::time::timeout(STREAM_IDLE_TIMEOUT, response.chunk())
                .await
                .map_err(|_| {
                    anyhow!(
                        "no data from chatterd at {} for {} s, not even a keep-alive: giving up",
                        self.base,
                        STREAM_IDLE_TIMEOUT.as_secs()
                    )
                })?;
            let chunk = match chunk {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    return Err(anyhow!(
                        "chatterd at {} closed the event stream (it stopped)",
                        self.base
                    ))
                }
                Err(e) => {
                    return Err(anyhow!(
                        "lost the event stream of chatterd at {}: {}",
                        self.base,
                        describe(&e)
                    ))
                }
            };
            for data in parser.feed(&chunk) {
                if !on_data(&data)? {
                    return Ok(());
                }
            }
        }
    }
}

/// An incremental parser of a `text/event-stream` body: yields the `data` of each event.
///
/// Follows the WHATWG rules that matter here: lines end with LF, CRLF or CR; `data:` lines
/// (one optional space after the colon) accumulate, joined by LF; a blank line dispatches;
/// comments (`:`) and other fields are ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
    after_cr: bool,
}

impl SseParser {
    /// Feeds bytes; returns the data of every event completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, &mut out);
                }
                _ => self.line.push(byte),
            }
        }
        out
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<String>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(data);
            }
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
    }
}

/// A short reason for a failed request: `connection refused`, `timed out`, ...
pub fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return format!("timed out after {REQUEST_TIMEOUT:?}");
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ => {
                    let text = io.to_string();
                    text.split(" (os error ").next().unwrap_or(&text).to_owned()
                }
            };
        }
        source = e.source();
    }
    // No IO error underneath: the innermost message is the most specific.
    let mut last = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        last = e.to_string();
        source = e.source();
    }
    last
}

/// Percent-encodes a path segment (a member name may contain `/`, `?`, `#`, `%`, ...).
pub fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value, keeping the commas of a status list readable.
pub fn encode_query(value: &str) -> String {
    encode_path(value).replace("%2C", ",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(
            Client::with_ca("127.0.0.1:8428", None).unwrap().base,
            "http://127.0.0.1:8428"
        );
        assert_eq!(
            Client::with_ca("http://h:1/", None).unwrap().base,
            "http://h:1"
        );
        assert_eq!(
            Client::with_ca("https://h:1", None).unwrap().base,
            "https://h:1"
        );
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let missing = Client::with_ca("https://h:1", Some(Path::new("/nonexistent/ca.pem")));
        let err = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            err,
            "--ca /nonexistent/ca.pem: cannot read it: no such file or directory"
        );
        let empty =
            std::env::temp_dir().join(format!("chatter-cli-{}-empty.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = Client::with_ca("https://h:1", Some(&empty))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let _ = std::fs::remove_file(&empty);
        assert!(err.contains("no certificate in it"), "{err}");
    }

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(encode_path("web-1.eu"), "web-1.eu");
        assert_eq!(encode_path("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_query("failed,suspect"), "failed,suspect");
    }

    #[test]
    fn sse_events_are_split_across_chunks() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b": keep-alive\n\nda").is_empty());
        assert!(parser.feed(b"ta: {\"a\":1}\r").is_empty());
        assert_eq!(parser.feed(b"\n\r\n"), vec![r#"{"a":1}"#.to_owned()]);
        assert_eq!(
            parser.feed(b"event: x\ndata:one\ndata: two\n\n"),
            vec!["one\ntwo".to_owned()]
        );
        // A blank line without data dispatches nothing.
        assert!(parser.feed(b"\n\n").is_empty());
    }
}
