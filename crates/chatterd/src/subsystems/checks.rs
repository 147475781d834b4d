//! Health checks at work: each `--check` (see `options::checks` for the specification) runs in
//! a task of its own, off the gossip path: a slow or hanging check never delays probing, and a
//! command still running at its timeout is killed with its whole process group (see
//! [`crate::foundation::process`]). The result is published in this node's key/value state as
//! `check/NAME` (a [`CheckResult`] in compact JSON) when its status changes, and otherwise every
//! [`HEARTBEAT`] (with the latest output), so every node can list every failing check of the
//! cluster without churn from a check whose output text varies.
//!
//! | kind | passing | warning | critical |
//! | --- | --- | --- | --- |
//! | `cmd=COMMAND` (run by `sh -c`) | exit 0 | exit 1 | any other exit, a signal, the timeout |
//! | `http=http[s]://HOST:PORT/PATH` (GET) | a 2xx answer | | anything else, a TLS failure, the timeout |
//! | `tcp=HOST:PORT` | the connection opens | | refused, unreachable, the timeout |
//!
//! An `http=` check verifies certificates as its TLS options say (see
//! [`crate::foundation::client_tls`]); one HTTP client is built per distinct setting.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatter::Handle;
use chatter_api::{CheckResult, CheckStatus};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::foundation::client_tls::TlsOptions;
use crate::foundation::convert::millis;
use crate::foundation::duration::format_duration;
use crate::foundation::io::io_message;
use crate::foundation::process::{self, first_line, truncate, Exit, Shell};
use crate::options::checks::{CheckKind, CheckSpec};

/// An unchanged result is republished this often, so `checked` shows the check still runs.
pub const HEARTBEAT: Duration = Duration::from_secs(300);
/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
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
/// [`crate::foundation::client_tls::describe`]), else the innermost I/O error's message
/// (`connection refused`), else the last message of the chain.
fn describe_http_error(err: &reqwest::Error, tls: &TlsOptions) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    let mut io_text = None;
    while let Some(e) = source {
        if let Some(tls_err) = e.downcast_ref::<rustls::Error>() {
            return crate::foundation::client_tls::describe(tls_err, tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof
                && io.to_string().contains("handshake")
            {
                return "TLS: handshake failed (the server closed the connection)".to_owned();
            }
            io_text = Some(io_message(io).to_lowercase());
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
            format!("{addr}: {}", io_message(&e).to_lowercase()),
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
            duration_ms: millis(verdict.duration),
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
    use crate::options::checks::parse_check;

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
