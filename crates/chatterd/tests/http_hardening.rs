//! The HTTP API's defences, against real `chatterd` processes on ephemeral loopback ports:
//! slow-loris connections closed at the header timeout, silent ones at the idle timeout,
//! oversized heads refused, a stalled body answered 408, `POST` bodies that a foreign web page could send refused with 415,
//! foreign `Host` names refused with 421, the connection and event-stream caps answering 503,
//! and the API served over TLS.
//! Every wait is a condition with a deadline; the timeouts under test are set low by flag.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatter_api::ErrorBody;
use common::{http_get, http_send_with, loopback_args, wait_until, Daemon, EventClient, TempFile};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// `chatterd` on loopback ports with `extra` flags.
fn start(name: &str, extra: &[&str]) -> Daemon {
    let mut args = loopback_args(name);
    args.extend(["--profile", "local"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::start_with(&args)
}

/// The `error` of a JSON error body.
fn error_of(body: &str) -> String {
    serde_json::from_str::<ErrorBody>(body)
        .unwrap_or_else(|e| panic!("not a JSON error ({e}): {body:?}"))
        .error
}

/// Reads one answer off a kept-alive connection: its status, head, and body (by its
/// `Content-Length`; a streamed body is left unread).
fn read_answer(stream: &mut TcpStream) -> Result<(u16, String, String), String> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&raw))),
            Ok(_) => raw.push(byte[0]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
}

/// A connection that sent one complete `GET /health` and read its answer, and so holds one of
/// the daemon's connection places until dropped (kept alive, waiting for the next request).
fn held_connection(addr: SocketAddr) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    match read_answer(&mut stream)? {
        (200, _, _) => Ok(stream),
        (status, head, _) => Err(format!("answered {status}: {head}")),
    }
}

/// `GET path` with `Connection: close`, reading the head only (an event stream never ends).
fn head_only(addr: SocketAddr, path: &str) -> Result<(u16, String, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    read_answer(&mut stream)
}

#[test]
fn a_slow_loris_connection_is_closed_at_the_header_timeout() {
    let node = start("loris", &["--http-header-timeout", "1s"]);
    let mut stream = TcpStream::connect(node.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(format!("GET /v1/members HTTP/1.1\r\nHost: {}\r\n", node.http).as_bytes())
        .unwrap();
    // Trickle one header byte every 100 ms, as a slow-loris client does, until the server
    // closes the connection (end of stream, or a reset) or 10 s pass.
    let header =
        b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut sent = 0;
    let closed_after = loop {
        if started.elapsed() > Duration::from_secs(10) {
            panic!("the connection is still open after 10 s");
        }
        if sent < header.len() && stream.write_all(&header[sent..sent + 1]).is_ok() {
            sent += 1;
        }
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            // hyper may answer before it closes; the close is what matters.
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break started.elapsed(),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}, expected about 1 s"
    );
    // The daemon itself serves on.
    let (status, body) = node.get("/health").unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_connection_on_which_nothing_moves_is_closed_at_the_idle_timeout() {
    // The idle timeout must exceed the event stream's 15 s keep-alive; the header timeout is
    // set far above it, so that the idle timeout is what closes the connection.
    let node = start(
        "idle",
        &["--http-header-timeout", "2m", "--http-idle-timeout", "16s"],
    );
    let mut stream = TcpStream::connect(node.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = stream.read(&mut buf);
    let elapsed = started.elapsed();
    assert!(
        matches!(read, Ok(0)) || matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{read:?} after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(15_500) && elapsed < Duration::from_secs(30),
        "closed after {elapsed:?}, expected about 16 s"
    );
}

#[test]
fn an_oversized_request_head_is_refused() {
    let node = start("big-head", &[]);
    let big = "x".repeat(40 * 1024);
    match http_send_with(node.http, "GET", "/health", &[("X-Big", big.as_str())], b"") {
        Ok((status, _, body)) => assert_eq!(status, 431, "{body}"),
        // The server may close before the client has written the whole head.
        Err(e) => assert!(e.contains("write") || e.contains("read"), "{e}"),
    }
    let (status, body) = node.get("/health").unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_stalled_body_is_answered_408_at_the_request_timeout() {
    let node = start("stall", &["--http-request-timeout", "1s"]);
    let mut stream = TcpStream::connect(node.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    // Ten bytes announced, three sent.
    write!(
        stream,
        "PUT /v1/kv/stalled HTTP/1.1\r\nHost: {}\r\nContent-Length: 10\r\n\r\nabc",
        node.http
    )
    .unwrap();
    let (status, _, body) = read_answer(&mut stream).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(status, 408, "{body}");
    assert!(error_of(&body).contains("--http-request-timeout"), "{body}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "answered after {elapsed:?}"
    );
    let (_, body) = node.get("/v1/kv?node=stall&prefix=stalled").unwrap();
    assert!(!body.contains("\"stalled\""), "the key was set: {body}");
}

#[test]
fn a_post_that_a_web_page_could_send_is_refused_and_nothing_is_broadcast() {
    let node = start("csrf", &[]);
    let mut events = EventClient::connect(node.http);
    let forged = br#"{"tag":"Forged","payload":{"a":1}}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|t| vec![("Content-Type", t)])
            .unwrap_or_default();
        let (status, _, body) =
            http_send_with(node.http, "POST", "/v1/messages", &headers, forged).unwrap();
        assert_eq!(status, 415, "{content_type:?}: {body}");
        let error = error_of(&body);
        assert!(error.contains("Content-Type: application/json"), "{error}");
    }
    // A JSON POST passes; had any forged one been broadcast, it would come first.
    let (status, _, body) = http_send_with(
        node.http,
        "POST",
        "/v1/messages",
        &[("Content-Type", "application/json; charset=utf-8")],
        br#"{"tag":"Marker","payload":null}"#,
    )
    .unwrap();
    assert_eq!(status, 202, "{body}");
    let first = events.wait_for("a message", Duration::from_secs(10), |e| {
        e["type"] == "message"
    });
    assert_eq!(first["tag"], "Marker", "{first}");
}

#[test]
fn a_foreign_host_is_refused_before_any_handler() {
    let node = start("rebind", &[]);
    let port = node.http.port();
    let evil = format!("evil.example:{port}");
    for (method, path, body) in [
        ("GET", "/v1/members", &b""[..]),
        (
            "POST",
            "/v1/messages",
            &br#"{"tag":"Rebound","payload":1}"#[..],
        ),
        ("PUT", "/v1/kv/rebound", &b"x"[..]),
    ] {
        let headers = [
            ("Host", evil.as_str()),
            ("Content-Type", "application/json"),
        ];
        let (status, _, answer) = http_send_with(node.http, method, path, &headers, body).unwrap();
        assert_eq!(status, 421, "{method} {path}: {answer}");
        let error = error_of(&answer);
        assert!(error.contains("evil.example"), "{error}");
        assert!(error.contains("--http-allowed-host"), "{error}");
    }
    let (_, kv) = node.get("/v1/kv?node=rebind&prefix=rebound").unwrap();
    assert!(!kv.contains("\"rebound\""), "the key was set: {kv}");
    // The daemon's own names pass: its address, localhost, any loopback address, any port.
    for host in [
        node.http.to_string(),
        format!("localhost:{port}"),
        "LOCALHOST.".to_owned(),
        format!("127.0.0.2:{port}"),
        "[::1]:9000".to_owned(),
    ] {
        let (status, _, answer) =
            http_send_with(node.http, "GET", "/health", &[("Host", host.as_str())], b"").unwrap();
        assert_eq!(status, 200, "Host: {host}: {answer}");
    }
    // HTTP/1.0 without a Host (a tool, never a browser) is served.
    let mut stream = TcpStream::connect(node.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
}

#[test]
fn an_allowed_host_passes_and_others_do_not() {
    let node = start(
        "allowed",
        &[
            "--http-allowed-host",
            "Chatter.Example",
            "--http-allowed-host",
            "10.9.8.7",
        ],
    );
    for host in ["chatter.example", "CHATTER.example.:8443", "10.9.8.7:80"] {
        let (status, _, body) =
            http_send_with(node.http, "GET", "/v1/self", &[("Host", host)], b"").unwrap();
        assert_eq!(status, 200, "Host: {host}: {body}");
    }
    for host in ["other.example", "chatter.example.evil", "10.9.8.6"] {
        let (status, _, body) =
            http_send_with(node.http, "GET", "/v1/self", &[("Host", host)], b"").unwrap();
        assert_eq!(status, 421, "Host: {host}: {body}");
    }
}

#[test]
fn the_connection_cap_answers_503_and_frees_places_as_connections_close() {
    let node = start(
        "capped",
        &[
            "--http-max-connections",
            "2",
            "--http-max-event-streams",
            "1",
        ],
    );
    let first = held_connection(node.http).unwrap();
    let _second = held_connection(node.http).unwrap();
    let (status, head, body) = http_send_with(node.http, "GET", "/health", &[], b"").unwrap();
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let error = error_of(&body);
    assert!(
        error.contains("at most 2") && error.contains("--http-max-connections"),
        "{error}"
    );
    // One closes: its place comes back.
    drop(first);
    wait_until(
        "a new connection is served",
        Duration::from_secs(10),
        || match http_get(node.http, "/health") {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn the_event_stream_cap_answers_503_naming_the_limit() {
    let node = start("streams", &["--http-max-event-streams", "2"]);
    let first = EventClient::connect(node.http);
    let _second = EventClient::connect(node.http);
    let (status, head, body) = head_only(node.http, "/v1/events").unwrap();
    assert_eq!(status, 503, "{head}");
    let error = error_of(&body);
    assert!(
        error.contains("at most 2") && error.contains("--http-max-event-streams"),
        "{error}"
    );
    // The rest of the API is not affected.
    let (status, body) = node.get("/v1/members").unwrap();
    assert_eq!(status, 200, "{body}");
    // A stream that closes gives its place back.
    drop(first);
    wait_until(
        "a third stream is served",
        Duration::from_secs(10),
        || match head_only(node.http, "/v1/events") {
            Ok((200, head, _)) if head.contains("text/event-stream") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it, as PEM files.
struct TestTls {
    ca_pem: String,
    ca_der: Vec<u8>,
    cert: TempFile,
    key: TempFile,
}

impl TestTls {
    fn new(tag: &str) -> TestTls {
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "chatterd test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        TestTls {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            cert: TempFile::new(&format!("{tag}-cert.pem"), &cert.pem()),
            key: TempFile::new(&format!("{tag}-key.pem"), &key.serialize_pem()),
        }
    }
}

#[test]
fn the_api_is_served_over_tls_and_plain_http_to_it_fails() {
    let tls = TestTls::new("served");
    let (cert, key) = (tls.cert.path(), tls.key.path());
    let node = start(
        "secure",
        &["--http-tls-cert", &cert, "--http-tls-key", &key],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let port = node.http.port();
    for url in [
        format!("https://localhost:{port}/health"),
        format!("https://127.0.0.1:{port}/v1/members"),
    ] {
        let (status, body) = runtime.block_on(async {
            let response = client.get(&url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        });
        assert_eq!(status, 200, "{url}: {body}");
    }
    // The same rules hold over TLS: a POST must be JSON.
    let status = runtime.block_on(async {
        client
            .post(format!("https://localhost:{port}/v1/messages"))
            .body(r#"{"tag":"T","payload":1}"#)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 415);
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = http_get(node.http, "/health");
    assert!(plain.is_err(), "plain HTTP got an HTTP answer: {plain:?}");
    // A client that does not trust the certificate cannot talk to it.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let refused = runtime.block_on(async {
        untrusting
            .get(format!("https://localhost:{port}/health"))
            .send()
            .await
    });
    assert!(refused.is_err(), "{refused:?}");
    // And the daemon serves on.
    let (status, body) = runtime.block_on(async {
        let response = client
            .get(format!("https://localhost:{port}/health"))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    });
    assert_eq!(status, 200, "{body}");
}

#[test]
fn over_the_cap_a_tls_client_gets_the_503_over_tls() {
    let tls = TestTls::new("capped");
    let (cert, key) = (tls.cert.path(), tls.key.path());
    let node = start(
        "capped-tls",
        &[
            "--http-tls-cert",
            &cert,
            "--http-tls-key",
            &key,
            "--http-max-connections",
            "2",
            "--http-max-event-streams",
            "1",
        ],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let ca = reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap();
    let ca_der = tokio_rustls::rustls::pki_types::CertificateDer::from(tls.ca_der.clone());
    roots.add(ca_der).unwrap();
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let port = node.http.port();
    runtime.block_on(async {
        // Two sessions past their handshake hold both places.
        let mut held = Vec::new();
        for _ in 0..2 {
            let tcp = tokio::net::TcpStream::connect(node.http).await.unwrap();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
            held.push(connector.connect(name, tcp).await.unwrap());
        }
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let response = client
            .get(format!("https://localhost:{port}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let error = error_of(&response.text().await.unwrap());
        assert!(error.contains("--http-max-connections"), "{error}");
        drop(held);
    });
}

#[test]
fn tls_files_are_checked_at_startup_in_one_line() {
    let tls = TestTls::new("startup");
    let not_pem = TempFile::new("startup-not-pem", "hello\n");
    let other = TestTls::new("startup-other");
    let (cert, key) = (tls.cert.path(), tls.key.path());
    for (args, expected) in [
        (
            vec!["--http-tls-cert", cert.as_str()],
            "--http-tls-cert needs --http-tls-key".to_owned(),
        ),
        (
            vec![
                "--http-tls-cert",
                "/nonexistent/cert.pem",
                "--http-tls-key",
                key.as_str(),
            ],
            "--http-tls-cert /nonexistent/cert.pem: cannot read it: no such file or directory"
                .to_owned(),
        ),
        (
            vec![
                "--http-tls-cert",
                &not_pem.path(),
                "--http-tls-key",
                key.as_str(),
            ],
            format!("--http-tls-cert {}: no certificate in it", not_pem.path()),
        ),
        (
            vec![
                "--http-tls-cert",
                cert.as_str(),
                "--http-tls-key",
                &not_pem.path(),
            ],
            format!(
                "--http-tls-key {}: no usable private key in it",
                not_pem.path()
            ),
        ),
        (
            vec![
                "--http-tls-cert",
                cert.as_str(),
                "--http-tls-key",
                &other.key.path(),
            ],
            format!(
                "--http-tls-cert {cert} with --http-tls-key {}",
                other.key.path()
            ),
        ),
    ] {
        let mut argv = loopback_args("tls-refused");
        argv.extend(args.iter().map(|s| s.to_string()));
        let out = common::run_to_exit(&argv);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(out.stdout.is_empty(), "{args:?}: a ready line was printed");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: expected one line:\n{stderr}");
        assert!(
            lines[0].starts_with("chatterd: ") && lines[0].contains(&expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    }
}
