//! Health checks: `--check 'name=NAME,KIND=TARGET[,interval=D][,timeout=D]'`.
//!
//! | kind | passing | warning | critical |
//! | --- | --- | --- | --- |
//! | `cmd=COMMAND` (run by `sh -c`) | exit 0 | exit 1 | any other exit, a signal, the timeout |
//! | `http=http[s]://HOST:PORT/PATH` (GET) | a 2xx answer | | anything else, a TLS failure, the timeout |
//! | `tcp=HOST:PORT` | the connection opens | | refused, unreachable, the timeout |
//!
//! `cmd=` takes the rest of the specification, commas included, so it comes last:
//! `--check 'name=load,interval=30s,cmd=/usr/lib/nagios/plugins/check_load -w 5,4,3 -c 9,8,7'`.
//!
//! An `http=` check takes two TLS options (see [`crate::tls`]): `ca=PATH`, a PEM file whose
//! certificates replace the built-in roots for that check, and `tls-skip-verify=true`, which
//! accepts any certificate (insecure). The CA file is read when the check is parsed.
//!
//! Each check runs in a task of its own, off the gossip path: a slow or hanging check never
//! delays probing, and a command still running at its timeout is killed with its whole process
//! group (see [`crate::process`]). The result is published in this node's key/value state as
//! `check/NAME` (a [`CheckResult`] in compact JSON) when its status changes, and otherwise every
//! [`HEARTBEAT`] (with the latest output), so every node can list every failing check of the
//! cluster without churn from a check whose output text varies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatter::Handle;
use chatter_api::{CheckResult, CheckStatus, CHECK_PREFIX};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::process::{self, first_line, format_duration, parse_duration, truncate, Exit, Shell};
use crate::tls::TlsOptions;

/// Interval of a check when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Timeout of a check when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// An unchanged result is republished this often, so `checked` shows the check still runs.
pub const HEARTBEAT: Duration = Duration::from_secs(300);
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
            CheckKind::Tcp(addr) => crate::cli::parse_seed(addr)
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

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, crate::convert::millis)
}

/// One run's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The status.
    pub status: CheckStatus,
    /// The output line (bounded).
    pub output: String,
    /// How long the run took.
    pub duration: Duration,
}

/// Runs a check once.
pub async fn run_once(spec: &CheckSpec, http: &reqwest::Client) -> Verdict {
    let started = Instant::now();
    let (status, output) = match &spec.kind {
        CheckKind::Command(command) => run_command(command, spec.timeout).await,
        CheckKind::Http(url) => run_http(http, url, spec.timeout, &spec.tls).await,
        CheckKind::Tcp(addr) => run_tcp(addr, spec.timeout).await,
    };
    Verdict {
        status,
        output: truncate(&output, process::LINE_LIMIT),
        duration: started.elapsed(),
    }
}

async fn run_command(command: &str, timeout: Duration) -> (CheckStatus, String) {
    let outcome = process::run(
        Shell {
            command,
            ..Shell::default()
        },
        timeout,
    )
    .await;
    let mut line = first_line(&outcome.stdout, true);
    if line.is_empty() {
        line = first_line(&outcome.stderr, true);
    }
    let status = match outcome.exit {
        Exit::Code(0) => CheckStatus::Passing,
        Exit::Code(1) => CheckStatus::Warning,
        _ => CheckStatus::Critical,
    };
    let output = match (&outcome.exit, line.is_empty()) {
        (Exit::Code(_), false) => line,
        (Exit::Code(0), true) => String::new(),
        (exit, true) => exit.describe(timeout),
        (exit, false) => format!("{} ({line})", exit.describe(timeout)),
    };
    (status, output)
}

async fn run_http(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    tls: &TlsOptions,
) -> (CheckStatus, String) {
    let attempt = async {
        let mut response = client.get(url).send().await?;
        let status = response.status();
        // The first line of the body, read up to 4 KiB.
        let mut body = Vec::new();
        while body.len() < process::OUTPUT_LIMIT {
            match response.chunk().await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        Ok::<_, reqwest::Error>((status, first_line(&body, false)))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => (
            CheckStatus::Critical,
            format!("timed out after {}", format_duration(timeout)),
        ),
        Ok(Err(e)) => (CheckStatus::Critical, describe_http_error(&e, tls)),
        Ok(Ok((status, line))) => {
            let verdict = if status.is_success() {
                CheckStatus::Passing
            } else {
                CheckStatus::Critical
            };
            let mut output = format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_owned();
            if !line.is_empty() {
                output.push_str(": ");
                output.push_str(&line);
            }
            (verdict, output)
        }
    }
}

/// The innermost cause of a failed request, in one line: a TLS failure as `TLS: ...` (see
/// [`crate::tls::describe`]), else the innermost I/O error's message (`connection refused`),
/// else the last message of the chain.
fn describe_http_error(err: &reqwest::Error, tls: &TlsOptions) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    let mut io_text = None;
    while let Some(e) = source {
        if let Some(tls_err) = e.downcast_ref::<rustls::Error>() {
            return crate::tls::describe(tls_err, tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof
                && io.to_string().contains("handshake")
            {
                return "TLS: handshake failed (the server closed the connection)".to_owned();
            }
            io_text = Some(crate::daemon::io_message(io).to_lowercase());
            // An I/O error may wrap another error (a TLS failure reaches reqwest as I/O errors
            // wrapping a `rustls::Error`), and its `source()` skips what it wraps.
            source = io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static));
            continue;
        }
        last = e.to_string();
        source = e.source();
    }
    io_text.unwrap_or(last)
}

async fn run_tcp(addr: &str, timeout: Duration) -> (CheckStatus, String) {
    let started = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => (
            CheckStatus::Critical,
            format!("timed out after {}", format_duration(timeout)),
        ),
        Ok(Err(e)) => (
            CheckStatus::Critical,
            format!("{addr}: {}", crate::daemon::io_message(&e).to_lowercase()),
        ),
        Ok(Ok(stream)) => {
            let peer = stream
                .peer_addr()
                .map_or_else(|_| addr.to_owned(), |a| a.to_string());
            (
                CheckStatus::Passing,
                format!(
                    "connected to {peer} in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1000.0
                ),
            )
        }
    }
}

/// What a check last published, to decide whether the next result is news.
#[derive(Debug, Clone)]
pub struct Publisher {
    last: Option<(CheckStatus, u64)>,
    published_at: Option<Instant>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// Nothing published yet.
    pub fn new() -> Self {
        Self {
            last: None,
            published_at: None,
        }
    }

    /// The result to publish after a run that ended at `now` (`now_ms` on the wall clock), if
    /// any: on the first run, on a change of status, or when the last publication is
    /// [`HEARTBEAT`] old.
    pub fn next(&self, verdict: &Verdict, now: Instant, now_ms: u64) -> Option<CheckResult> {
        let since = match self.last {
            Some((status, since)) if status == verdict.status => {
                let due = self
                    .published_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= HEARTBEAT);
                if !due {
                    return None;
                }
                since
            }
            _ => now_ms,
        };
        Some(CheckResult {
            status: verdict.status,
            output: verdict.output.clone(),
            since,
            duration_ms: crate::convert::millis(verdict.duration),
            checked: now_ms,
        })
    }

    /// Records that `result` was published at `now`.
    pub fn published(&mut self, result: &CheckResult, now: Instant) {
        self.last = Some((result.status, result.since));
        self.published_at = Some(now);
    }
}

/// The HTTP clients of a set of checks: one per distinct [`TlsOptions`], shared by the checks
/// that have them (and by the other kinds, which do not use it).
pub fn http_clients(specs: &[CheckSpec]) -> Result<BTreeMap<TlsOptions, reqwest::Client>, String> {
    let mut clients = BTreeMap::new();
    for spec in specs {
        if !clients.contains_key(&spec.tls) {
            let client = spec.tls.client().map_err(|e| {
                format!("check {:?}: cannot create its HTTP client: {e}", spec.name)
            })?;
            clients.insert(spec.tls.clone(), client);
        }
    }
    Ok(clients)
}

/// Starts one task per check. Fails, starting none, if an HTTP client cannot be built.
pub fn spawn_all(handle: &Handle, specs: &[CheckSpec]) -> Result<Vec<JoinHandle<()>>, String> {
    let clients = http_clients(specs)?;
    for spec in specs.iter().filter(|s| s.tls.skip_verify) {
        warn!(
            check = %spec.name,
            "tls-skip-verify=true: this check accepts any certificate (insecure)"
        );
    }
    Ok(specs
        .iter()
        .map(|spec| {
            let http = clients[&spec.tls].clone();
            tokio::spawn(run_check(handle.clone(), spec.clone(), http))
        })
        .collect())
}

async fn run_check(handle: Handle, spec: CheckSpec, http: reqwest::Client) {
    let key = spec.key();
    let mut ticks = tokio::time::interval(spec.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publisher = Publisher::new();
    loop {
        ticks.tick().await;
        if handle.is_stopped() {
            return;
        }
        let verdict = run_once(&spec, &http).await;
        debug!(check = %spec.name, status = %verdict.status, output = %verdict.output, "check ran");
        let now = Instant::now();
        let Some(result) = publisher.next(&verdict, now, now_ms()) else {
            continue;
        };
        let changed = publisher.last.map(|(s, _)| s) != Some(result.status);
        let value = match serde_json::to_vec(&result) {
            Ok(value) => value,
            Err(e) => {
                warn!(check = %spec.name, error = %e, "cannot encode a check result");
                continue;
            }
        };
        match handle.set(key.clone(), value).await {
            Ok(_) => {
                if changed {
                    match result.status {
                        CheckStatus::Passing => {
                            info!(check = %spec.name, output = %result.output, "check passing")
                        }
                        status => {
                            warn!(check = %spec.name, %status, output = %result.output, "check failing")
                        }
                    }
                }
                publisher.published(&result, now);
            }
            Err(chatter::Error::Stopped) => return,
            Err(e) => warn!(check = %spec.name, error = %e, "cannot publish a check result"),
        }
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
    fn one_client_is_built_per_distinct_tls_setting() {
        let specs: Vec<CheckSpec> = [
            "name=a,http=https://a/",
            "name=b,http=https://b/",
            "name=c,tcp=c:1",
            "name=d,http=https://d/,tls-skip-verify=true",
            "name=e,http=https://e/,tls-skip-verify=true",
        ]
        .iter()
        .map(|s| parse_check(s).unwrap())
        .collect();
        let clients = http_clients(&specs).unwrap();
        assert_eq!(clients.len(), 2);
        assert!(specs.iter().all(|s| clients.contains_key(&s.tls)));
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

    fn verdict(status: CheckStatus, output: &str) -> Verdict {
        Verdict {
            status,
            output: output.into(),
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn results_are_published_on_change_and_on_heartbeat_only() {
        let mut publisher = Publisher::new();
        let t0 = Instant::now();
        let first = publisher
            .next(&verdict(CheckStatus::Passing, "ok"), t0, 1000)
            .unwrap();
        assert_eq!(first.since, 1000);
        publisher.published(&first, t0);
        // Same status, other output: not news.
        let t1 = t0 + Duration::from_secs(10);
        assert!(publisher
            .next(&verdict(CheckStatus::Passing, "ok, 3 ms"), t1, 11_000)
            .is_none());
        // A change of status is published at once, with a new `since`.
        let change = publisher
            .next(&verdict(CheckStatus::Critical, "down"), t1, 11_000)
            .unwrap();
        assert_eq!(change.since, 11_000);
        publisher.published(&change, t1);
        // The heartbeat keeps `since` and refreshes `checked` and the output.
        let t2 = t1 + HEARTBEAT;
        let beat = publisher
            .next(&verdict(CheckStatus::Critical, "still down"), t2, 311_000)
            .unwrap();
        assert_eq!((beat.since, beat.checked), (11_000, 311_000));
        assert_eq!(beat.output, "still down");
    }

    #[tokio::test]
    async fn command_checks_follow_the_nagios_convention() {
        let http = reqwest::Client::new();
        let check = |cmd: &str, timeout_ms: u64| {
            CheckSpec::new(
                "t",
                CheckKind::Command(cmd.into()),
                None,
                Some(Duration::from_millis(timeout_ms)),
            )
            .unwrap()
        };
        let v = run_once(&check("echo 'OK - fine | x=1'", 5000), &http).await;
        assert_eq!(
            (v.status, v.output.as_str()),
            (CheckStatus::Passing, "OK - fine")
        );
        let v = run_once(&check("echo WARNING; exit 1", 5000), &http).await;
        assert_eq!(
            (v.status, v.output.as_str()),
            (CheckStatus::Warning, "WARNING")
        );
        let v = run_once(&check("echo broken >&2; exit 2", 5000), &http).await;
        assert_eq!(
            (v.status, v.output.as_str()),
            (CheckStatus::Critical, "broken")
        );
        let v = run_once(&check("exit 3", 5000), &http).await;
        assert_eq!(
            (v.status, v.output.as_str()),
            (CheckStatus::Critical, "exit code 3")
        );
        let v = run_once(&check("sleep 30", 200), &http).await;
        assert_eq!(v.status, CheckStatus::Critical);
        assert_eq!(v.output, "timed out after 200ms");
        assert!(v.duration < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn tcp_and_http_checks() {
        let http = reqwest::Client::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spec = CheckSpec::new("t", CheckKind::Tcp(addr.to_string()), None, None).unwrap();
        let v = run_once(&spec, &http).await;
        assert_eq!(v.status, CheckStatus::Passing, "{v:?}");
        // An HTTP server that answers 503 with a reason.
        tokio::spawn(async move {
            let app = axum::Router::new().route(
                "/health",
                axum::routing::get(|| async {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "db down\n")
                }),
            );
            let _ = axum::serve(listener, app).await;
        });
        let spec = CheckSpec::new(
            "t",
            CheckKind::Http(format!("http://{addr}/health")),
            None,
            None,
        )
        .unwrap();
        let v = run_once(&spec, &http).await;
        assert_eq!(v.status, CheckStatus::Critical);
        assert_eq!(v.output, "HTTP 503 Service Unavailable: db down");
        drop(spec);
        // Nothing listens on a port just released.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let spec =
            CheckSpec::new("t", CheckKind::Tcp(format!("127.0.0.1:{port}")), None, None).unwrap();
        let v = run_once(&spec, &http).await;
        assert_eq!(v.status, CheckStatus::Critical);
        assert!(v.output.contains("refused"), "{v:?}");
    }
}
