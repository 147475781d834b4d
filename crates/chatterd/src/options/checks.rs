//! Health check specifications: `--check 'name=NAME,KIND=TARGET[,interval=D][,timeout=D]'`
//! and the `[[check]]` tables of the config file. What a check does once running is in
//! `subsystems::checks`.
//!
//! KIND is `cmd=COMMAND` (run by `sh -c`), `http=http[s]://HOST:PORT/PATH` (GET) or
//! `tcp=HOST:PORT`. `cmd=` takes the rest of the specification, commas included, so it comes
//! last: `--check 'name=load,interval=30s,cmd=/usr/lib/nagios/plugins/check_load -w 5,4,3 -c
//! 9,8,7'`.
//!
//! An `http=` check takes two TLS options (see [`crate::foundation::client_tls`]): `ca=PATH`,
//! a PEM file whose certificates replace the built-in roots for that check, and
//! `tls-skip-verify=true`, which accepts any certificate (insecure). The CA file is read when
//! the check is parsed.

use std::time::Duration;

use chatter_api::CHECK_PREFIX;

use crate::foundation::client_tls::TlsOptions;
use crate::foundation::duration::{format_duration, parse_duration};
use crate::options::values::parse_seed;

/// Interval of a check when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Timeout of a check when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Most checks one node runs.
pub const MAX_CHECKS: usize = 64;

/// What a check tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A command run by `sh -c`, judged by its exit code (Nagios plugins).
    Command(String),
    /// An HTTP GET of this `http://` or `https://` URL.
    Http(String),
    /// A TCP connection to `HOST:PORT`.
    Tcp(String),
}

/// One configured health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// Its name, unique on the node: the result is published as `check/NAME`.
    pub name: String,
    /// What it tests.
    pub kind: CheckKind,
    /// Time from the start of one run to the start of the next.
    pub interval: Duration,
    /// How long one run may take; then it is critical (and a command is killed).
    pub timeout: Duration,
    /// How an `http=` check verifies certificates (the default for the other kinds).
    pub tls: TlsOptions,
}

impl CheckSpec {
    /// The key of its result.
    pub fn key(&self) -> String {
        format!("{CHECK_PREFIX}{}", self.name)
    }

    /// Builds a check from its parts, checking each (shared by the flag and the config file).
    pub fn new(
        name: &str,
        kind: CheckKind,
        interval: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<CheckSpec, String> {
        let name = parse_check_name(name)?;
        match &kind {
            CheckKind::Command(cmd) if cmd.trim().is_empty() => {
                return Err(format!("check {name:?}: empty cmd"))
            }
            CheckKind::Http(url) => check_url(url).map_err(|e| format!("check {name:?}: {e}"))?,
            CheckKind::Tcp(addr) => parse_seed(addr)
                .map(drop)
                .map_err(|_| format!("check {name:?}: tcp= expects HOST:PORT, got {addr:?}"))?,
            CheckKind::Command(_) => {}
        }
        let interval = interval.unwrap_or(DEFAULT_INTERVAL);
        if interval < MIN_INTERVAL {
            return Err(format!(
                "check {name:?}: interval {} is below the minimum of {}",
                format_duration(interval),
                format_duration(MIN_INTERVAL)
            ));
        }
        let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err(format!("check {name:?}: timeout must be above 0"));
        }
        Ok(CheckSpec {
            name,
            kind,
            interval,
            timeout,
            tls: TlsOptions::default(),
        })
    }

    /// Adds the TLS options `ca=PATH` and `tls-skip-verify=BOOL` (shared by the flag and the
    /// config file): refused on a check other than `http=`; the CA file is read now.
    pub fn with_tls(mut self, ca: Option<&str>, skip_verify: bool) -> Result<CheckSpec, String> {
        if ca.is_none() && !skip_verify {
            return Ok(self);
        }
        let name = &self.name;
        if !matches!(self.kind, CheckKind::Http(_)) {
            return Err(format!(
                "check {name:?}: ca= and tls-skip-verify= apply to http= checks only"
            ));
        }
        self.tls = TlsOptions::new(ca, skip_verify).map_err(|e| format!("check {name:?}: {e}"))?;
        Ok(self)
    }
}

/// A check name: 1 to 64 bytes of letters, digits and `_ - .`.
pub fn parse_check_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("check name {name:?} must be 1 to 64 bytes"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "check name {name:?}: use letters, digits and _ - ."
        ));
    }
    Ok(name.to_owned())
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("http= expects an http:// or https:// URL, got {url:?}"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid URL {url:?}"));
    }
    Ok(())
}

/// Parses `--check`: comma-separated `key=value` fields, `name` and exactly one of `cmd`,
/// `http`, `tcp`, optionally `interval` and `timeout` (`500ms`, `10s`, `1m`), and for `http`
/// `ca` (a PEM file, read now) and `tls-skip-verify` (`true` or `false`; `tls_skip_verify` is
/// accepted too). `cmd=` takes the rest of the text, commas included.
pub fn parse_check(spec: &str) -> Result<CheckSpec, String> {
    let (mut name, mut kind, mut interval, mut timeout) = (None, None, None, None);
    let (mut ca, mut skip_verify) = (None, false);
    let mut rest = spec.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected key=value in {rest:?}"))?;
        let key = key.trim();
        let value;
        if key == "cmd" {
            value = after;
            rest = "";
        } else {
            let (v, next) = after.split_once(',').unwrap_or((after, ""));
            value = v.trim();
            rest = next.trim_start();
        }
        let set_kind = |kind: &mut Option<CheckKind>, new: CheckKind| {
            if kind.is_some() {
                return Err("give only one of cmd=, http=, tcp=".to_owned());
            }
            *kind = Some(new);
            Ok(())
        };
        match key {
            "name" => name = Some(value.to_owned()),
            "cmd" => set_kind(&mut kind, CheckKind::Command(value.to_owned()))?,
            "http" => set_kind(&mut kind, CheckKind::Http(value.to_owned()))?,
            "tcp" => set_kind(&mut kind, CheckKind::Tcp(value.to_owned()))?,
            "interval" => interval = Some(parse_duration(value)?),
            "timeout" => timeout = Some(parse_duration(value)?),
            "ca" if value.is_empty() => return Err("ca= expects the path of a PEM file".into()),
            "ca" => ca = Some(value),
            "tls-skip-verify" | "tls_skip_verify" => skip_verify = parse_bool(key, value)?,
            other => {
                return Err(format!(
                    "unknown field {other:?} (expected name, cmd, http, tcp, interval, timeout, \
                     ca, tls-skip-verify)"
                ))
            }
        }
    }
    let name = name.ok_or("missing name=NAME")?;
    let kind = kind.ok_or("missing cmd=COMMAND, http=URL or tcp=HOST:PORT")?;
    CheckSpec::new(&name, kind, interval, timeout)?.with_tls(ca, skip_verify)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{key}= expects true or false, got {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_specs_parse() {
        let spec =
            parse_check("name=disk,interval=30s,timeout=2s,cmd=check_load -w 5,4,3").unwrap();
        assert_eq!(spec.name, "disk");
        assert_eq!(spec.kind, CheckKind::Command("check_load -w 5,4,3".into()));
        assert_eq!(spec.interval, Duration::from_secs(30));
        assert_eq!(spec.timeout, Duration::from_secs(2));
        assert_eq!(spec.key(), "check/disk");

        let spec = parse_check("name=web, http=http://127.0.0.1:8080/health").unwrap();
        assert_eq!(
            spec.kind,
            CheckKind::Http("http://127.0.0.1:8080/health".into())
        );
        assert_eq!(spec.interval, DEFAULT_INTERVAL);
        assert_eq!(spec.timeout, DEFAULT_TIMEOUT);

        let spec = parse_check("tcp=127.0.0.1:5432,name=db").unwrap();
        assert_eq!(spec.kind, CheckKind::Tcp("127.0.0.1:5432".into()));
        assert!(spec.tls.is_default());
    }

    #[test]
    fn https_checks_take_a_ca_file_or_skip_verification() {
        let spec =
            parse_check("name=web,http=https://10.0.0.7:8443/health,tls-skip-verify=true").unwrap();
        assert_eq!(
            spec.kind,
            CheckKind::Http("https://10.0.0.7:8443/health".into())
        );
        assert!(spec.tls.skip_verify && spec.tls.ca.is_none());
        // Consul's spelling, and an explicit false.
        let spec = parse_check("name=web,tls_skip_verify=true,http=https://a/").unwrap();
        assert!(spec.tls.skip_verify);
        let spec = parse_check("name=web,http=https://a/,tls-skip-verify=false").unwrap();
        assert!(spec.tls.is_default());

        let path =
            std::env::temp_dir().join(format!("chatterd-checks-{}-ca.pem", std::process::id()));
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        std::fs::write(&path, ca.cert.pem()).unwrap();
        let parsed = parse_check(&format!(
            "name=api, http=https://api.internal/health, ca={}, timeout=2s",
            path.display()
        ));
        std::fs::remove_file(&path).unwrap();
        let spec = parsed.unwrap();
        let file = spec.tls.ca.as_ref().unwrap();
        assert_eq!((file.path(), file.len()), (path.as_path(), 1));
        assert!(!spec.tls.skip_verify);
        assert_eq!(spec.timeout, Duration::from_secs(2));
        // An unreadable file names the check and the path, in one line.
        let err = parse_check("name=api,http=https://a/,ca=/nonexistent/ca.pem").unwrap_err();
        assert_eq!(
            err,
            "check \"api\": ca=/nonexistent/ca.pem: cannot read it: no such file or directory"
        );
    }

    #[test]
    fn bad_check_specs_are_refused() {
        for (spec, expected) in [
            ("cmd=true", "missing name"),
            ("name=x", "missing cmd"),
            ("name=bad name,cmd=true", "check name"),
            ("name=x,tcp=nope", "HOST:PORT"),
            ("name=x,http=ftp://a/", "http:// or https:// URL"),
            ("name=x,http=https:///path", "invalid URL"),
            (
                "name=x,http=https://a/,tls-skip-verify=yes",
                "expects true or false",
            ),
            ("name=x,http=https://a/,ca=", "path of a PEM file"),
            (
                "name=x,http=https://a/,ca=/nonexistent/ca.pem",
                "cannot read it",
            ),
            ("name=x,tcp=a:1,tls-skip-verify=true", "http= checks only"),
            ("name=x,tls-skip-verify=true,cmd=true", "http= checks only"),
            (
                "name=x,http=https://a/,ca=/nonexistent/ca.pem,tls-skip-verify=true",
                "not both",
            ),
            ("name=x,tcp=a:1,http=http://a/", "only one"),
            ("name=x,interval=1ms,cmd=true", "minimum"),
            ("name=x,timeout=0s,cmd=true", "above 0"),
            ("name=x,every=1s,cmd=true", "unknown field"),
            ("name=x,cmd=  ", "empty cmd"),
            ("nonsense", "key=value"),
        ] {
            let err = parse_check(spec).unwrap_err();
            assert!(err.contains(expected), "{spec:?}: {err}");
        }
    }
}
