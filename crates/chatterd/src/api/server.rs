//! Serving the HTTP API: the accept loop, the connection cap, the header-read and idle
//! timeouts, TLS, and the graceful shutdown.
//!
//! `axum::serve` sets no header-read timeout and accepts connections without bound, so the
//! daemon runs its own loop over hyper's HTTP/1.1 connection builder (HTTP/1.1 only: every
//! client of the API speaks it, and HTTP/2's many streams per connection would need bounds of
//! their own):
//!
//! - **Connection cap.** A semaphore of `--http-max-connections` permits; each served
//!   connection holds one until it closes. A connection beyond the cap is answered at once with
//!   a short `503 {"error": ...}`, `Retry-After: 1` and `Connection: close` (after the TLS
//!   handshake on an HTTPS port), by a task of its own, so the accept loop never waits on a
//!   client. Those answering tasks are capped too ([`MAX_REFUSING`]); beyond them a connection
//!   is closed unanswered. A 503 rather than a bare close: a client (or its operator) reads
//!   why, and when to retry, instead of guessing at a network fault.
//! - **Header-read timeout.** hyper's `header_read_timeout`: the request head must be complete
//!   within `--http-header-timeout` of the moment the connection waits for it (accept, or the
//!   end of the previous response), or the connection is closed. That ends slow-loris
//!   connections and kept-alive connections that send nothing more.
//! - **Head size.** A request head larger than [`MAX_HEAD_BYTES`] is refused (`431`), so the
//!   buffers of all connections together stay bounded.
//! - **Idle timeout.** A connection on which no byte moved either way for
//!   `--http-idle-timeout` is closed ([`Activity`]): a client that stopped reading.
//! - **TLS.** With `--http-tls-cert` and `--http-tls-key`, every connection is a rustls server
//!   session (ALPN `http/1.1`); the handshake must finish within the header-read timeout.
//!
//! The whole-request timeout and the event-stream cap are per request, in [`crate::api::shared`].
//! At shutdown the loop stops accepting, asks every connection to finish its request in flight
//! and close, and returns once all are closed.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// Largest request head (request line and headers) read, in bytes, and the size of hyper's
/// read buffer, which holds a head whole. 32 KiB is far more than any client of the API sends (browsers with
/// large cookies included) and bounds the heads of all connections together at
/// `--http-max-connections` x 32 KiB (8 MiB by default). A larger head gets `431`.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Connections over the cap that are answered 503 at once; beyond them a connection is closed
/// without an answer, so a flood of connections costs at most this many small tasks.
pub const MAX_REFUSING: usize = 32;

/// How long the answer to a connection over the cap may take (TLS handshake, writing the 503,
/// reading what the client sent so that the close is a clean one).
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// How long the answer to a connection over the cap waits for the request head before it
/// answers anyway.
const REFUSAL_HEAD_WAIT: Duration = Duration::from_secs(1);

/// How long the accept loop pauses after an error that is not a single connection's (no file
/// descriptor left): retrying at once would spin, and a second lets connections close.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// How the server serves connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// `--http-header-timeout`.
    pub header_timeout: Duration,
    /// `--http-idle-timeout`.
    pub idle_timeout: Duration,
    /// `--http-max-connections`.
    pub max_connections: u32,
    /// The TLS configuration, with `--http-tls-cert` and `--http-tls-key`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Why the TLS certificate or key cannot be used. Nothing is bound or started when this is
/// returned: the daemon stops with its one-line message.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{flag} {path}: cannot read it: {reason}")]
    Read {
        /// `--http-tls-cert` or `--http-tls-key`.
        flag: &'static str,
        /// The path given.
        path: String,
        /// The IO error's message.
        reason: String,
    },
    /// The file holds no usable PEM item of the kind wanted.
    #[error("{flag} {path}: {reason}")]
    Pem {
        /// `--http-tls-cert` or `--http-tls-key`.
        flag: &'static str,
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refuses the pair (a key that is not the certificate's, an unsupported key type).
    #[error("--http-tls-cert {cert} with --http-tls-key {key}: {reason}")]
    Pair {
        /// The certificate's path.
        cert: String,
        /// The key's path.
        key: String,
        /// rustls' reason.
        reason: String,
    },
}

/// Reads the certificate chain and key and builds the rustls server configuration (the
/// `ring` provider, TLS 1.2 and 1.3, ALPN `http/1.1`).
pub fn load_tls(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let read = |flag: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| TlsError::Read {
            flag,
            path: path.display().to_string(),
            reason: crate::foundation::io::io_message(&e).to_lowercase(),
        })
    };
    let pem_error = |flag: &'static str, path: &Path, reason: String| TlsError::Pem {
        flag,
        path: path.display().to_string(),
        reason,
    };
    let cert_pem = read("--http-tls-cert", cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("--http-tls-cert", cert, format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(pem_error(
            "--http-tls-cert",
            cert,
            "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let key_pem = read("--http-tls-key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        pem_error(
            "--http-tls-key",
            key,
            format!(
                "no usable private key in it ({e}; expected PEM: -----BEGIN PRIVATE KEY-----, \
                 RSA PRIVATE KEY or EC PRIVATE KEY)"
            ),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair = |e: rustls::Error| TlsError::Pair {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        reason: e.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(pair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open connections
/// to finish their requests in flight and close. Errors of single connections are logged at
/// debug, never returned: the loop only ends by `shutdown`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max = options.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max as usize));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let tls = options.tls.clone().map(TlsAcceptor::from);
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    warn!(error = %crate::foundation::io::io_message(&e), "HTTP accept failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Small answers go out at once rather than waiting for more to send (Nagle).
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let connection = Connection {
                    app: app.clone(),
                    options: options.clone(),
                    tls: tls.clone(),
                    stopping: stopping.clone(),
                };
                tokio::spawn(async move {
                    connection.serve(stream, peer).await;
                    drop(permit);
                });
            }
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    debug!(%peer, max, "HTTP connection over the cap: answering 503");
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_TIME, refuse(stream, tls, max)).await;
                        drop(permit);
                    });
                }
                Err(_) => debug!(%peer, max, "HTTP connection over the cap: closed"),
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it closes: all of them back means none is open.
    let _ = permits.acquire_many(max).await;
    Ok(())
}

/// Whether an accept error is about one connection only (the loop goes on at once).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The body of the 503 of a connection over the cap.
pub fn over_cap_body(max: u32) -> String {
    let body = chatter_api::ErrorBody::new(format!(
        "too many connections: this daemon serves at most {max} at once \
         (--http-max-connections); retry later"
    ));
    serde_json::to_string(&body).unwrap_or_else(|_| r#"{"error":"too many connections"}"#.into())
}

/// Answers a connection over the cap: `503` with a JSON error, then a clean close.
async fn refuse(stream: TcpStream, tls: Option<TlsAcceptor>, max: u32) {
    match tls {
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(stream).await {
                write_refusal(stream, max).await;
            }
        }
        None => write_refusal(stream, max).await,
    }
}

async fn write_refusal<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, max: u32) {
    // Read the request head first (bounded in time and bytes): an HTTP client that receives an
    // answer before it has sent its request takes it for a broken connection, not a 503.
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    let _ = tokio::time::timeout(REFUSAL_HEAD_WAIT, async {
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let body = over_cap_body(max);
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    // Read what else the client sent (a body) until it closes: closing a socket with unread
    // data sends a reset, which can destroy the answer before the client reads it. Bounded by
    // REFUSAL_TIME and by this many bytes.
    let mut left = 64 * 1024usize;
    while left > 0 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// What one served connection needs.
struct Connection {
    app: Router,
    options: ServeOptions,
    tls: Option<TlsAcceptor>,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: std::net::SocketAddr) {
        let activity = Arc::new(Activity::new());
        match self.tls.clone() {
            Some(acceptor) => {
                let handshake = acceptor.accept(Tracked::new(stream, activity.clone()));
                match tokio::time::timeout(self.options.header_timeout, handshake).await {
                    Ok(Ok(stream)) => self.drive(stream, activity, peer).await,
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            }
            None => {
                self.drive(Tracked::new(stream, activity.clone()), activity, peer)
                    .await
            }
        }
    }

    /// Serves HTTP/1.1 on `io` until the client closes, a timeout closes it, or the server
    /// stops (then the request in flight is finished first).
    async fn drive<I>(mut self, io: I, activity: Arc<Activity>, peer: std::net::SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.app.clone());
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.options.header_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let mut stopping = *self.stopping.borrow();
        if stopping {
            connection.as_mut().graceful_shutdown();
        }
        let idle = self.options.idle_timeout;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                    return;
                }
                _ = self.stopping.changed(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = activity.idle_for(idle) => {
                    debug!(%peer, idle = ?idle, "HTTP connection idle: closing");
                    return;
                }
            }
        }
    }
}

/// When a connection last moved a byte, for the idle timeout.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last byte read or written.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once no byte moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A connection's stream that records in [`Activity`] every read or write that moved bytes.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    fn new(inner: S, activity: Arc<Activity>) -> Tracked<S> {
        Tracked { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
