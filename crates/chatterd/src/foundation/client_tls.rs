//! TLS of `http=` checks: how an `https://` URL's certificate is verified, the HTTP clients
//! that do it, and the one-line description of a TLS failure.
//!
//! | option | the server's certificate must |
//! | --- | --- |
//! | none | chain to one of the Mozilla roots compiled into chatterd (webpki-roots) and name the URL's host |
//! | `ca=PATH` | chain to a certificate of that PEM file, or be one of them byte for byte (a self-signed server certificate); the built-in roots are then not used, as with `curl --cacert`. It must still name the host and be within its dates |
//! | `tls-skip-verify=true` | nothing: any certificate, for any name, expired or not. **Insecure**: anyone on the path can answer for the service |
//!
//! The CA file is read and checked when the check is parsed (at startup, before anything
//! binds), so a wrong path or a file that holds no usable certificate is a one-line refusal,
//! never a check that fails later. One reqwest client is built per distinct setting and
//! shared by the checks that use it (keeping their connections pooled between runs).
//!
//! A self-signed certificate made by `openssl req -x509` is marked as a CA (`CA:TRUE`), and
//! webpki refuses a CA certificate as a server's (`CaUsedAsEndEntity`) even when it is a trust
//! anchor; Go's `crypto/x509` and OpenSSL (`curl --cacert`) accept it. So a `ca=` check
//! uses [`CaFileVerifier`]: a server certificate that is one of the file's, byte for byte, is
//! trusted as pinned (its name and dates still checked, and the handshake still proves that the
//! server holds its key); any other goes through webpki's chain verification.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// How an `http=` check verifies the certificate of an `https://` URL (redirects included).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TlsOptions {
    /// `ca=PATH`: trust the certificates of this file instead of the built-in roots.
    pub ca: Option<CaFile>,
    /// `tls-skip-verify=true`: accept any certificate. Insecure.
    pub skip_verify: bool,
}

impl TlsOptions {
    /// Reads `ca` (a path), if given. `ca` and `skip_verify` together are refused: the one
    /// asks for verification against a CA, the other for none.
    pub fn new(ca: Option<&str>, skip_verify: bool) -> Result<TlsOptions, String> {
        if ca.is_some() && skip_verify {
            return Err(
                "give ca= or tls-skip-verify=true, not both (with ca= the certificate is \
                 verified against that CA)"
                    .to_owned(),
            );
        }
        Ok(TlsOptions {
            ca: ca.map(CaFile::load).transpose()?,
            skip_verify,
        })
    }

    /// Whether this is the default: the built-in roots, verification on.
    pub fn is_default(&self) -> bool {
        *self == TlsOptions::default()
    }

    /// An HTTP client that verifies certificates this way.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &self.ca {
            builder = builder.use_preconfigured_tls(ca.client_config()?);
        }
        if self.skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        builder.build().map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                text = format!("{text}: {inner}");
                source = inner.source();
            }
            text
        })
    }
}

/// The certificates of a `ca=` file (PEM, one or more `CERTIFICATE` sections; anything else in
/// the file, such as a key, is ignored).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaFile {
    path: PathBuf,
    /// DER, each checked to be a usable trust anchor.
    certs: Vec<Vec<u8>>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

impl CaFile {
    /// Reads and checks the file. The error is one line naming it.
    pub fn load(path: &str) -> Result<CaFile, String> {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "ca={path}: cannot read it: {}",
                crate::foundation::io::io_message(&e).to_lowercase()
            )
        })?;
        CaFile::from_pem(Path::new(path), &bytes)
    }

    /// Parses the PEM text of the file at `path`.
    pub fn from_pem(path: &Path, bytes: &[u8]) -> Result<CaFile, String> {
        let shown = path.display();
        let mut certs = Vec::new();
        for (i, item) in CertificateDer::pem_slice_iter(bytes).enumerate() {
            let cert = item.map_err(|e| format!("ca={shown}: not valid PEM: {}", pem_error(&e)))?;
            // What reqwest does with it when it builds the client, checked now.
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| format!("ca={shown}: certificate {} is not usable: {e}", i + 1))?;
            certs.push(cert.to_vec());
        }
        if certs.is_empty() {
            return Err(format!(
                "ca={shown}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)"
            ));
        }
        Ok(CaFile {
            path: path.to_owned(),
            certs,
        })
    }

    /// The file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Never true: a file without certificates is refused.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The rustls configuration of a check with this file: [`CaFileVerifier`], the `ring`
    /// provider and the protocol versions reqwest would use (TLS 1.2 and 1.3), HTTP/1.1.
    fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for der in &self.certs {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| e.to_string())?;
        }
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let verifier = CaFileVerifier {
            chain,
            pinned: self
                .certs
                .iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The certificate verifier of a `ca=` check: a server certificate that is one of the file's
/// (byte for byte) is trusted if it names the host and is within its dates; any other must
/// chain to one of the file's certificates (webpki, as for the built-in roots).
#[derive(Debug)]
pub struct CaFileVerifier {
    chain: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return self.chain.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        let (not_before, not_after) = validity(end_entity.as_ref()).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        )?;
        let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        if now.as_secs() < not_before {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYetContext {
                    time: now,
                    not_before: at(not_before),
                },
            ));
        }
        if now.as_secs() > not_after {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ExpiredContext {
                    time: now,
                    not_after: at(not_after),
                },
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The validity of a DER certificate, `(notBefore, notAfter)` in Unix seconds (before 1970:
/// 0), read from its `TBSCertificate` (RFC 5280 4.1); `None` if it cannot be read.
fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (cert, _) = der_item(der, 0x30)?;
    let (mut tbs, _) = der_item(cert, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der_item(tbs, 0xa0)?.1; // [0] version
    }
    for tag in [0x02, 0x30, 0x30] {
        tbs = der_item(tbs, tag)?.1; // serialNumber, signature, issuer
    }
    let (validity, _) = der_item(tbs, 0x30)?;
    let (before_tag, before, rest) = der_any(validity)?;
    let (after_tag, after, _) = der_any(rest)?;
    Some((der_time(before_tag, before)?, der_time(after_tag, after)?))
}

/// One DER item: its tag, its content and what follows it.
fn der_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// One DER item of tag `tag`: its content and what follows it.
fn der_item(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = der_any(input)?;
    (found == tag).then_some((content, rest))
}

/// A `UTCTime` (tag 0x17, `YYMMDDHHMMSSZ`, 1950 to 2049) or `GeneralizedTime` (0x18,
/// `YYYYMMDDHHMMSSZ`), as Unix seconds.
fn der_time(tag: u8, bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (0x18, 14) => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |i: usize| -> i64 { rest[i..i + 2].parse().unwrap_or(0) };
    let (month, day) = (field(0), field(2));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + field(4) * 3600 + field(6) * 60 + field(8);
    Some(u64::try_from(secs).unwrap_or(0))
}

fn pem_error(err: &pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { .. } => "a section has no -----END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(e) => format!("bad base64 ({e})"),
        other => other.to_string(),
    }
}

/// A TLS failure of a check, for its output: `TLS: ` then what went wrong, in words an operator
/// can act on. `options` are the check's, to say which roots did not vouch for the server.
pub fn describe(err: &rustls::Error, options: &TlsOptions) -> String {
    let what = match err {
        rustls::Error::InvalidCertificate(cert) => describe_certificate(cert, options),
        rustls::Error::AlertReceived(alert) => {
            format!("handshake failed (the server sent the alert {alert:?})")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("handshake failed (not a TLS answer; a plain http:// port?): {err}")
        }
        rustls::Error::PeerIncompatible(why) => {
            format!("handshake failed (no TLS version or cipher in common: {why:?})")
        }
        other => format!("handshake failed ({other})"),
    };
    format!("TLS: {what}")
}

fn describe_certificate(err: &CertificateError, options: &TlsOptions) -> String {
    match err {
        CertificateError::UnknownIssuer => match &options.ca {
            Some(ca) => format!(
                "certificate not trusted (not issued by a CA of ca={})",
                ca.path().display()
            ),
            None => {
                "certificate not trusted (unknown issuer; for a private CA give ca=PATH)".to_owned()
            }
        },
        CertificateError::NotValidForName => {
            "certificate not valid for the URL's host name".to_owned()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names = if presented.is_empty() {
                "no names".to_owned()
            } else {
                let names: Vec<&str> = presented.iter().map(|n| presented_name(n)).collect();
                names.join(", ")
            };
            format!(
                "certificate not valid for host name {} (it is for {names})",
                expected.to_str()
            )
        }
        CertificateError::Expired => "certificate expired".to_owned(),
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "certificate expired (not valid after {} UTC)",
            utc_date(not_after.as_secs())
        ),
        CertificateError::NotValidYet => "certificate not valid yet".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "certificate not valid yet (not before {} UTC)",
            utc_date(not_before.as_secs())
        ),
        CertificateError::Revoked => "certificate revoked".to_owned(),
        CertificateError::BadSignature => "certificate not trusted (bad signature)".to_owned(),
        CertificateError::BadEncoding => "certificate malformed".to_owned(),
        CertificateError::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            match &options.ca {
                Some(ca) => format!(
                    "certificate not trusted (a CA certificate, not in ca={})",
                    ca.path().display()
                ),
                None => "certificate not trusted (a self-signed CA certificate, as `openssl req \
                         -x509` makes; give it as ca=PATH)"
                    .to_owned(),
            }
        }
        other => format!("certificate not trusted ({other})"),
    }
}

/// A name the certificate presents, without the debug wrapping webpki gives it
/// (`DnsName("web.internal")`, `IpAddress(10.0.0.7)`).
fn presented_name(name: &str) -> &str {
    for (open, close) in [
        ("DnsName(\"", "\")"),
        ("IpAddress(", ")"),
        ("UniformResourceIdentifier(\"", "\")"),
    ] {
        if let Some(inner) = name
            .strip_prefix(open)
            .and_then(|rest| rest.strip_suffix(close))
        {
            return inner;
        }
    }
    name
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time (UTC), without a date library.
fn utc_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn a_ca_file_is_read_with_every_certificate() {
        let bundle = format!("# two CAs\n{}\n{}", ca_pem(), ca_pem());
        let ca = CaFile::from_pem(Path::new("/etc/ca.pem"), bundle.as_bytes()).unwrap();
        assert_eq!(ca.len(), 2);
        assert_eq!(ca.path(), Path::new("/etc/ca.pem"));
        let options = TlsOptions {
            ca: Some(ca),
            skip_verify: false,
        };
        options.client().unwrap();
        assert!(!options.is_default());
        assert!(TlsOptions::default().is_default());
    }

    #[test]
    fn unusable_ca_files_are_refused_in_one_line() {
        let path = Path::new("/etc/ca.pem");
        let garbage_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let unterminated = ca_pem().replace("-----END CERTIFICATE-----", "");
        for (text, expected) in [
            ("", "no certificate in it"),
            ("just some text\n", "no certificate in it"),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "no certificate in it",
            ),
            (garbage_der, "certificate 1 is not usable"),
            (
                "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
                "not valid PEM: bad base64",
            ),
            (
                &unterminated,
                "not valid PEM: a section has no -----END line",
            ),
        ] {
            let err = CaFile::from_pem(path, text.as_bytes()).unwrap_err();
            assert!(err.starts_with("ca=/etc/ca.pem: "), "{text:?}: {err}");
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
        let err = CaFile::load("/nonexistent/ca.pem").unwrap_err();
        assert_eq!(
            err,
            "ca=/nonexistent/ca.pem: cannot read it: no such file or directory"
        );
    }

    #[test]
    fn a_ca_and_skipping_verification_are_exclusive() {
        let err = TlsOptions::new(Some("/nonexistent/ca.pem"), true).unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let options = TlsOptions::new(None, true).unwrap();
        assert!(options.skip_verify && options.ca.is_none());
        options.client().unwrap();
    }

    #[test]
    fn certificate_failures_are_described_for_an_operator() {
        let none = TlsOptions::default();
        let describe_cert = |e: CertificateError, options: &TlsOptions| {
            describe(&rustls::Error::InvalidCertificate(e), options)
        };
        assert_eq!(
            describe_cert(CertificateError::UnknownIssuer, &none),
            "TLS: certificate not trusted (unknown issuer; for a private CA give ca=PATH)"
        );
        let with_ca = TlsOptions {
            ca: Some(CaFile::from_pem(Path::new("ca.pem"), ca_pem().as_bytes()).unwrap()),
            skip_verify: false,
        };
        assert_eq!(
            describe_cert(CertificateError::UnknownIssuer, &with_ca),
            "TLS: certificate not trusted (not issued by a CA of ca=ca.pem)"
        );
        let expected = rustls::pki_types::ServerName::try_from("db.internal")
            .unwrap()
            .to_owned();
        assert_eq!(
            describe_cert(
                CertificateError::NotValidForNameContext {
                    expected,
                    presented: vec![
                        "DnsName(\"web.internal\")".into(),
                        "IpAddress(10.0.0.7)".into(),
                        "web.example".into(),
                    ],
                },
                &none
            ),
            "TLS: certificate not valid for host name db.internal \
             (it is for web.internal, 10.0.0.7, web.example)"
        );
        assert_eq!(
            describe_cert(
                CertificateError::ExpiredContext {
                    time: rustls::pki_types::UnixTime::since_unix_epoch(
                        std::time::Duration::from_secs(1_764_028_861)
                    ),
                    not_after: rustls::pki_types::UnixTime::since_unix_epoch(
                        std::time::Duration::from_secs(1_709_251_199)
                    ),
                },
                &none
            ),
            "TLS: certificate expired (not valid after 2024-02-29 23:59:59 UTC)"
        );
        assert_eq!(
            describe(
                &rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
                &none
            ),
            "TLS: handshake failed (the server sent the alert HandshakeFailure)"
        );
    }

    #[test]
    fn certificate_dates_are_read_from_the_der() {
        // UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280 4.1.2.5).
        for ((before, before_secs), (after, after_secs)) in [
            (((2001, 2, 3), 981_158_400), ((2049, 12, 31), 2_524_521_600)),
            (((1975, 1, 1), 157_766_400), ((2051, 6, 30), 2_571_696_000)),
        ] {
            let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
            params.not_before = rcgen::date_time_ymd(before.0, before.1, before.2);
            params.not_after = rcgen::date_time_ymd(after.0, after.1, after.2);
            let cert = params
                .self_signed(&rcgen::KeyPair::generate().unwrap())
                .unwrap();
            assert_eq!(validity(cert.der()), Some((before_secs, after_secs)));
        }
        assert_eq!(validity(b""), None);
        assert_eq!(validity(b"\x30\x05\x30\x03\x02\x01\x00"), None);
        assert_eq!(validity(b"\x30\x84\xff\xff\xff\xff"), None);
        assert_eq!(der_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(der_time(0x17, b"4912312359Z"), None);
        assert_eq!(der_time(0x18, b"20491331000000Z"), None);
    }

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_date(4_102_444_799), "2099-12-31 23:59:59");
    }
}
