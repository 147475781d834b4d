//! Health checks: `--check 'name=NAME,KIND=TARGET[,interval=D][,timeout=D]'`.
//!
//! | kind | passing | warning | critical |
//! | --- | --- | --- | --- |
//! | `cmd=COMMAND` (run by `sh -c`) | exit 0 | exit 1 | any other exit, a signal, the timeout |
//! | `http=http://HOST:PORT/PATH` (GET) | a 2xx answer | | anything else, the timeout |
//! | `tcp=HOST:PORT` | the connection opens | | refused, unreachable, the timeout |
//!
//! `cmd=` takes the rest of the specification, commas included, so it comes last:
//! `--check 'name=load,interval=30s,cmd=/usr/lib/nagios/plugins/check_load -w 5,4,3 -c 9,8,7'`.
//!
//! Each check runs in a task of its own, off the gossip path: a slow or hanging check never
//! delays probing, and a command still running at its timeout is killed with its whole process
//! group (see [`crate::process`]). The result is published in this node's key/value state as
//! `check/NAME` (a [`CheckResult`] in compact JSON) when its status changes, and otherwise every
//! [`HEARTBEAT`] (with the latest output), so every node can list every failing check of the
//! cluster without churn from a check whose output text varies.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatter::Handle;
use chatter_api::{CheckResult, CheckStatus, CHECK_PREFIX};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::process::{self, first_line, format_duration, parse_duration, truncate, Exit, Shell};

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
    /// An HTTP GET of this `http://` URL.
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
        })
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
    if url.starts_with("https://") {
        return Err(format!(
            "{url:?}: https is not supported by http= checks (chatterd has no TLS client); \
             use cmd=curl -fsS --max-time 5 {url}"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("http= expects an http:// URL, got {url:?}"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid URL {url:?}"));
    }
    Ok(())
}

/// Parses `--check`: comma-separated `key=value` fields, `name` and exactly one of `cmd`,
/// `http`, `tcp`, optionally `interval` and `timeout` (`500ms`, `10s`, `1m`). `cmd=` takes the
/// rest of the text, commas included.
pub fn parse_check(spec: &str) -> Result<CheckSpec, String> {
    let (mut name, mut kind, mut interval, mut timeout) = (None, None, None, None);
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
            other => {
                return Err(format!(
                    "unknown field {other:?} (expected name, cmd, http, tcp, interval, timeout)"
                ))
            }
        }
    }
    let name = name.ok_or("missing name=NAME")?;
    let kind = kind.ok_or("missing cmd=COMMAND, http=URL or tcp=HOST:PORT")?;
    CheckSpec::new(&name, kind, interval, timeout)
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
        CheckKind::Http(url) => run_http(http, url, spec.timeout).await,
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

async fn run_http(client: &reqwest::Client, url: &str, timeout: Duration) -> (CheckStatus, String) {
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
        Ok(Err(e)) => (CheckStatus::Critical, describe_http_error(&e)),
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

fn describe_http_error(err: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return crate::daemon::io_message(io).to_lowercase();
        }
        last = e.to_string();
        source = e.source();
    }
    last
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

/// Starts one task per check.
pub fn spawn_all(handle: &Handle, specs: &[CheckSpec]) -> Vec<JoinHandle<()>> {
    if specs.is_empty() {
        return Vec::new();
    }
    let http = match reqwest::Client::builder().build() {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "cannot create the HTTP client of http= checks");
            reqwest::Client::new()
        }
    };
    specs
        .iter()
        .map(|spec| tokio::spawn(run_check(handle.clone(), spec.clone(), http.clone())))
        .collect()
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
    }

    #[test]
    fn bad_check_specs_are_refused() {
        for (spec, expected) in [
            ("cmd=true", "missing name"),
            ("name=x", "missing cmd"),
            ("name=bad name,cmd=true", "check name"),
            ("name=x,tcp=nope", "HOST:PORT"),
            ("name=x,http=https://a/", "https is not supported"),
            ("name=x,http=ftp://a/", "http:// URL"),
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
