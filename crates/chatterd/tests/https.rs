//! `http=` checks of `https://` URLs, run by a real `chatterd` against HTTPS servers started by
//! the test on ephemeral loopback ports: a server certificate for `localhost` signed by a CA
//! made at test time (rcgen), served by axum over rustls (tokio-rustls).
//!
//! Each check's verdict is read from the daemon's `GET /v1/checks`, waited for with a
//! deadline. The refusal of a bad `ca=` at startup is in `api.rs` with the other refusals.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chatter_api::{CheckStatus, CheckView, ChecksResponse};
use common::{loopback_args, wait_until, Daemon, TempFile};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA: its certificate (PEM) and what signs with it.
struct TestCa {
    pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names`, and its chain (leaf, then this CA) and key as rustls
    /// wants them.
    fn server_cert(
        &self,
        names: &[&str],
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone(), self.der.clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
    }
}

/// Accepts TCP connections and completes the TLS handshake before handing them to axum; a
/// failed handshake (a client that does not trust the certificate) is dropped, and the next
/// connection accepted.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// HTTP servers (with or without TLS) answering `GET /health` with `200 ok`, on a runtime of
/// their own that stops when this is dropped.
struct Servers {
    runtime: tokio::runtime::Runtime,
}

impl Servers {
    fn new() -> Servers {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Servers { runtime }
    }

    fn app() -> axum::Router {
        axum::Router::new().route("/health", axum::routing::get(|| async { "ok\n" }))
    }

    /// An HTTPS server with this certificate chain and key, on 127.0.0.1 (ephemeral port).
    fn https(
        &self,
        (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    ) -> SocketAddr {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let tcp = self
            .runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = tcp.local_addr().unwrap();
        self.runtime.spawn(async move {
            let _ = axum::serve(TlsListener { tcp, acceptor }, Self::app()).await;
        });
        addr
    }

    /// A plain HTTP server on 127.0.0.1 (ephemeral port).
    fn http(&self) -> SocketAddr {
        let tcp = self
            .runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = tcp.local_addr().unwrap();
        self.runtime.spawn(async move {
            let _ = axum::serve(tcp, Self::app()).await;
        });
        addr
    }
}

fn check_of(node: &Daemon, name: &str) -> Result<CheckView, String> {
    let (code, body) = node.get(&format!("/v1/checks?node={}", node.name))?;
    if code != 200 {
        return Err(format!("/v1/checks answered {code}: {body}"));
    }
    let response: ChecksResponse =
        serde_json::from_str(&body).map_err(|e| format!("bad JSON ({e}): {body}"))?;
    response
        .checks
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("no check {name} yet: {body}"))
}

#[test]
fn https_checks_verify_the_certificate_against_the_built_in_roots_or_the_ca_file() {
    let servers = Servers::new();
    let ca = TestCa::new("chatterd test CA");
    let other_ca = TestCa::new("another CA");
    let server = servers.https(ca.server_cert(&["localhost"]));
    let plain = servers.http();
    let ca_file = TempFile::new("https-ca.pem", &ca.pem);
    let other_ca_file = TempFile::new("https-other-ca.pem", &other_ca.pem);
    let (ca_path, other_path) = (ca_file.path(), other_ca_file.path());
    let port = server.port();
    let url = format!("https://localhost:{port}/health");

    let checks = [
        // (name, options, expected status, expected output)
        (
            "with-ca",
            format!("http={url},ca={ca_path}"),
            CheckStatus::Passing,
            "HTTP 200 OK: ok".to_owned(),
        ),
        (
            "no-ca",
            format!("http={url}"),
            CheckStatus::Critical,
            "TLS: certificate not trusted (unknown issuer; for a private CA give ca=PATH)"
                .to_owned(),
        ),
        (
            "skip-verify",
            format!("http={url},tls-skip-verify=true"),
            CheckStatus::Passing,
            "HTTP 200 OK: ok".to_owned(),
        ),
        (
            "other-ca",
            format!("http={url},ca={other_path}"),
            CheckStatus::Critical,
            format!("TLS: certificate not trusted (not issued by a CA of ca={other_path})"),
        ),
        (
            "wrong-name",
            format!("http=https://127.0.0.1:{port}/health,ca={ca_path}"),
            CheckStatus::Critical,
            "TLS: certificate not valid for host name 127.0.0.1 (it is for localhost)".to_owned(),
        ),
        (
            "skip-wrong-name",
            format!("http=https://127.0.0.1:{port}/health,tls-skip-verify=true"),
            CheckStatus::Passing,
            "HTTP 200 OK: ok".to_owned(),
        ),
        (
            "plain-port",
            format!("http=https://127.0.0.1:{}/health", plain.port()),
            CheckStatus::Critical,
            "TLS: handshake failed (not a TLS answer; a plain http:// port?): ".to_owned(),
        ),
        (
            "plain-http",
            format!("http=http://127.0.0.1:{}/health", plain.port()),
            CheckStatus::Passing,
            "HTTP 200 OK: ok".to_owned(),
        ),
    ];
    let mut args = loopback_args("https-1");
    args.extend(["--profile", "local", "--status-interval", "0"].map(String::from));
    for (name, options, _, _) in &checks {
        args.push("--check".into());
        args.push(format!("name={name},interval=200ms,timeout=5s,{options}"));
    }
    let node = Daemon::start_with(&args);

    for (name, _, status, output) in &checks {
        let check = wait_until(
            &format!("check {name} is {status}"),
            Duration::from_secs(20),
            || {
                let check = check_of(&node, name)?;
                (check.status == *status)
                    .then_some(check.clone())
                    .ok_or_else(|| format!("{check:?}\n{}", node.logs()))
            },
        );
        if *name == "plain-port" {
            // Ends with rustls' own words, which may change between versions.
            assert!(
                check.output.starts_with(output.as_str()),
                "{name}: {:?} does not start with {output:?}",
                check.output
            );
        } else {
            assert_eq!(&check.output, output, "{name}");
        }
    }
    // The insecure setting is logged at startup, once per check.
    let logs = node.logs();
    assert_eq!(
        logs.matches("accepts any certificate (insecure)").count(),
        2,
        "{logs}"
    );
}

/// A self-signed certificate for `localhost`: marked as a CA (`CA:TRUE`, as `openssl req -x509`
/// makes them) or not (as `rcgen::generate_simple_self_signed` makes them), valid until
/// `not_after` (year, month, day) or far in the future. Its PEM, and its chain and key for the
/// server.
fn self_signed(
    ca_flag: bool,
    not_after: Option<(i32, u8, u8)>,
) -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    if ca_flag {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    if let Some((y, m, d)) = not_after {
        params.not_before = rcgen::date_time_ymd(2015, 1, 1);
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (
        cert.pem(),
        vec![cert.der().clone()],
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
}

#[test]
fn a_self_signed_server_certificate_is_trusted_as_its_own_ca() {
    let servers = Servers::new();
    let mut config = String::new();
    let mut expected = Vec::new();
    let mut files = Vec::new();
    for (name, ca_flag, not_after, give_ca, status, output) in [
        (
            "plain",
            false,
            None,
            true,
            CheckStatus::Passing,
            "HTTP 200 OK: ok",
        ),
        (
            "ca-flag",
            true,
            None,
            true,
            CheckStatus::Passing,
            "HTTP 200 OK: ok",
        ),
        (
            "ca-flag-untrusted",
            true,
            None,
            false,
            CheckStatus::Critical,
            "TLS: certificate not trusted (a self-signed CA certificate, as `openssl req -x509` \
             makes; give it as ca=PATH)",
        ),
        (
            "expired",
            true,
            Some((2020, 1, 1)),
            true,
            CheckStatus::Critical,
            "TLS: certificate expired (not valid after 2020-01-01 00:00:00 UTC)",
        ),
    ] {
        let (pem, chain, key) = self_signed(ca_flag, not_after);
        let server = servers.https((chain, key));
        let file = TempFile::new(&format!("https-self-signed-{name}.pem"), &pem);
        // Through a config file this time.
        config.push_str(&format!(
            "[[check]]\nname = \"{name}\"\nhttp = \"https://localhost:{}/health\"\n\
             interval = \"200ms\"\n",
            server.port()
        ));
        if give_ca {
            config.push_str(&format!("ca = \"{}\"\n", file.path()));
        }
        files.push(file);
        expected.push((name, status, output));
    }
    let config = TempFile::new("https-self-signed.toml", &config);
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--node-name",
        "https-2",
        "--profile",
        "local",
        "--status-interval",
        "0",
        "--config",
        &config.path(),
    ]
    .map(String::from);
    let node = Daemon::start_with(&args);
    for (name, status, output) in expected {
        let check = wait_until(
            &format!("check {name} is {status}"),
            Duration::from_secs(20),
            || {
                let check = check_of(&node, name)?;
                (check.status == status)
                    .then_some(check.clone())
                    .ok_or_else(|| format!("{check:?}"))
            },
        );
        assert_eq!(check.output, output, "{name}");
    }
}
