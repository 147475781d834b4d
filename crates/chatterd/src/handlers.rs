//! Event handlers: `--event-handler [FILTER=]COMMAND` runs COMMAND (by `sh -c`) for each event
//! of this node that FILTER accepts (every event without one).
//!
//! FILTER is a comma-separated list of `member-joined` (or `member-join`), `member-suspect`,
//! `member-alive` (or `member-recovered`), `member-failed`, `member-left`, `member-updated`,
//! `member-reaped`, `member-conflict`, `member` (all of these), `message`, `message:TAG`,
//! `key-changed`, `key-changed:PREFIX` (keys that start with PREFIX, e.g. `key-changed:check/`)
//! and `all`.
//!
//! The command gets the event on standard input, as the JSON object `GET /v1/events` sends
//! (one line), and these environment variables:
//!
//! | variable | value |
//! | --- | --- |
//! | `CHATTER_EVENT` | the event's type: `member-failed`, `message`, `key-changed`, ... |
//! | `CHATTER_NODE` | this node's name |
//! | `CHATTER_HTTP` | this node's HTTP API address (so `chatter` in the handler asks this node) |
//! | `CHATTER_MEMBER` | the member the event is about (a message: its origin; a key change: the key's owner) |
//! | `CHATTER_MEMBER_ADDR` | that member's gossip address (member events) |
//! | `CHATTER_MEMBER_STATUS` | that member's status (member events) |
//! | `CHATTER_KEY` | the key (key changes) |
//! | `CHATTER_MESSAGE_TAG` | the tag (messages) |
//!
//! Handlers never hold the daemon up: at most [`CONCURRENCY`] run at once, at most
//! [`QUEUE`] more wait; beyond that events are dropped for the handlers (counted, and logged).
//! A handler still running at its timeout (`--event-handler-timeout`, default
//! [`DEFAULT_TIMEOUT`]) is killed with its whole process group. A handler that fails (non-zero
//! exit) is logged with the first line of its standard error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use chatter::{Event, Handle};
use chatter_api::EventView;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::convert::{self, Clock};
use crate::process::{self, first_line, Exit, Shell};

/// How long a handler may run when `--event-handler-timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Handlers running at once.
pub const CONCURRENCY: usize = 4;
/// Handler runs waiting for a free slot; more are dropped.
pub const QUEUE: usize = 64;
/// Most handlers one node has.
pub const MAX_HANDLERS: usize = 64;

/// The member event kinds a filter can name, with their aliases.
const MEMBER_KINDS: [(&str, &str); 10] = [
    ("member-joined", "member-joined"),
    ("member-join", "member-joined"),
    ("member-suspect", "member-suspect"),
    ("member-alive", "member-alive"),
    ("member-recovered", "member-alive"),
    ("member-failed", "member-failed"),
    ("member-left", "member-left"),
    ("member-updated", "member-updated"),
    ("member-reaped", "member-reaped"),
    ("member-conflict", "member-conflict"),
];

/// One accepted kind of event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accept {
    /// Every event.
    All,
    /// Every member event (`member-*`).
    AnyMember,
    /// One member event kind (its canonical name, e.g. `member-joined`).
    Member(&'static str),
    /// Messages, with this tag only if given.
    Message(Option<String>),
    /// Key changes, of keys with this prefix only if given.
    KeyChanged(Option<String>),
}

impl Accept {
    fn matches(&self, event: &Event) -> bool {
        match (self, event) {
            (Accept::All, _) => true,
            (
                Accept::AnyMember,
                Event::Message(_)
                | Event::KeyChanged(_)
                | Event::KeyringChanged(_)
                | Event::KeyRotation(_),
            ) => false,
            (Accept::AnyMember, _) => true,
            (Accept::Member(kind), event) => event.kind() == *kind,
            (Accept::Message(tag), Event::Message(m)) => tag.as_ref().is_none_or(|t| *t == m.tag),
            (Accept::KeyChanged(prefix), Event::KeyChanged(c)) => prefix
                .as_ref()
                .is_none_or(|p| c.key.starts_with(p.as_str())),
            _ => false,
        }
    }
}

/// One configured handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerSpec {
    /// The events it runs for (empty: every event).
    pub accept: Vec<Accept>,
    /// The command line, given to `sh -c`.
    pub command: String,
}

impl HandlerSpec {
    /// Whether this handler runs for `event`.
    pub fn matches(&self, event: &Event) -> bool {
        self.accept.is_empty() || self.accept.iter().any(|a| a.matches(event))
    }

    /// Builds a handler from a filter list and a command (shared by the flag and the config).
    pub fn new<'a>(
        filters: impl IntoIterator<Item = &'a str>,
        command: &str,
    ) -> Result<HandlerSpec, String> {
        if command.trim().is_empty() {
            return Err("empty event handler command".into());
        }
        let mut accept = Vec::new();
        for item in filters {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            accept.push(parse_accept(item)?);
        }
        Ok(HandlerSpec {
            accept,
            command: command.to_owned(),
        })
    }
}

fn parse_accept(item: &str) -> Result<Accept, String> {
    let (kind, arg) = match item.split_once(':') {
        Some((kind, arg)) => (kind, Some(arg)),
        None => (item, None),
    };
    let arg = arg.map(str::to_owned);
    match (kind, arg) {
        ("all", None) => Ok(Accept::All),
        ("member", None) => Ok(Accept::AnyMember),
        ("message", tag) => Ok(Accept::Message(tag.filter(|t| !t.is_empty()))),
        ("key-changed", prefix) => Ok(Accept::KeyChanged(prefix.filter(|p| !p.is_empty()))),
        (kind, None) => MEMBER_KINDS
            .iter()
            .find(|(name, _)| *name == kind)
            .map(|(_, canonical)| Accept::Member(canonical))
            .ok_or_else(|| {
                format!(
                    "unknown event filter {kind:?} (expected member-joined, member-suspect, \
                     member-alive, member-failed, member-left, member-updated, member-reaped, \
                     member-conflict, member, message[:TAG], key-changed[:PREFIX] or all)"
                )
            }),
        (kind, Some(_)) => Err(format!("event filter {kind:?} takes no ':' argument")),
    }
}

/// Whether `text` reads as a filter list: comma-separated items whose part before any `:` is
/// lowercase letters and dashes. (A command such as `FOO=1 cmd` or `/bin/x --a=b` does not.)
fn looks_like_filter(text: &str) -> bool {
    !text.is_empty()
        && text.split(',').all(|item| {
            let kind = item.trim().split(':').next().unwrap_or("");
            !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
}

/// Parses `--event-handler`: `[FILTER=]COMMAND`. Text before the first `=` that reads as a
/// filter list is the filter (and must then be valid); otherwise the whole text is the command.
pub fn parse_handler(s: &str) -> Result<HandlerSpec, String> {
    match s.split_once('=') {
        Some((filter, command)) if looks_like_filter(filter) => {
            HandlerSpec::new(filter.split(','), command)
        }
        _ => HandlerSpec::new([], s),
    }
}

/// What the handlers of one node share.
#[derive(Debug, Default)]
pub struct HandlerStats {
    /// Handler runs started.
    pub started: AtomicU64,
    /// Runs that exited non-zero, were killed or could not start.
    pub failed: AtomicU64,
    /// Runs killed at their timeout.
    pub timed_out: AtomicU64,
    /// Runs dropped because the queue was full (or events the subscription missed).
    pub dropped: AtomicU64,
}

/// One handler run waiting for a slot.
struct Job {
    command: String,
    stdin: Vec<u8>,
    env: Vec<(String, String)>,
    kind: &'static str,
}

/// The environment of a handler for `event`.
fn env_of(event: &Event, node: &str, http: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("CHATTER_EVENT".to_owned(), event.kind().to_owned()),
        ("CHATTER_NODE".to_owned(), node.to_owned()),
        ("CHATTER_HTTP".to_owned(), http.to_owned()),
    ];
    let mut add = |k: &str, v: String| env.push((k.to_owned(), v));
    match event {
        Event::Message(m) => {
            add("CHATTER_MEMBER", m.id.origin.clone());
            add("CHATTER_MESSAGE_TAG", m.tag.clone());
        }
        Event::KeyChanged(c) => {
            add("CHATTER_MEMBER", c.node.clone());
            add("CHATTER_KEY", c.key.clone());
        }
        Event::Conflict(c) => {
            add("CHATTER_MEMBER", c.name.clone());
            add("CHATTER_MEMBER_ADDR", c.other_addr.to_string());
        }
        other => {
            if let Some(m) = other.member() {
                add("CHATTER_MEMBER", m.name.clone());
                add("CHATTER_MEMBER_ADDR", m.addr.to_string());
                add("CHATTER_MEMBER_STATUS", m.status.to_string());
            }
        }
    }
    // Environment values cannot hold NUL bytes.
    env.retain(|(_, v)| !v.contains('\0'));
    env
}

/// The event as one line of JSON, as `GET /v1/events` sends it.
fn json_of(event: &Event, node: &str) -> Vec<u8> {
    let clock = Clock::now();
    let view = EventView {
        timestamp: clock
            .system
            .duration_since(UNIX_EPOCH)
            .map_or(0, convert::millis),
        event: crate::events::event_data(event, node, &clock),
    };
    let mut json = serde_json::to_vec(&view).unwrap_or_default();
    json.push(b'\n');
    json
}

/// Starts the handlers: a task that follows the node's events and queues runs, and a
/// dispatcher that runs them, [`CONCURRENCY`] at a time. `None` without handlers.
pub fn spawn(
    handle: &Handle,
    handlers: Vec<HandlerSpec>,
    timeout: Duration,
    http: String,
    stats: Arc<HandlerStats>,
) -> Option<Vec<JoinHandle<()>>> {
    if handlers.is_empty() {
        return None;
    }
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    let node = handle.name().to_owned();
    let mut events = handle.subscribe();
    let queue_stats = stats.clone();
    let follower = tokio::spawn(async move {
        let mut skipped = 0;
        while let Some(event) = events.recv().await {
            if events.skipped() > skipped {
                let missed = events.skipped() - skipped;
                skipped = events.skipped();
                queue_stats.dropped.fetch_add(missed, Ordering::Relaxed);
                warn!(
                    missed,
                    "event handlers missed events (the event channel overflowed)"
                );
            }
            let matching: Vec<&HandlerSpec> =
                handlers.iter().filter(|h| h.matches(&event)).collect();
            if matching.is_empty() {
                continue;
            }
            let stdin = json_of(&event, &node);
            let env = env_of(&event, &node, &http);
            for handler in matching {
                let job = Job {
                    command: handler.command.clone(),
                    stdin: stdin.clone(),
                    env: env.clone(),
                    kind: event.kind(),
                };
                if tx.try_send(job).is_err() {
                    let dropped = queue_stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    // Log the first drop and then every hundredth, not a line per event.
                    if dropped == 1 || dropped % 100 == 0 {
                        warn!(
                            event = event.kind(),
                            command = %handler.command,
                            dropped,
                            "event handler queue full: run dropped"
                        );
                    }
                }
            }
        }
    });
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let dispatcher = tokio::spawn(async move {
        let mut running = tokio::task::JoinSet::new();
        while let Some(job) = rx.recv().await {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stats = stats.clone();
            running.spawn(async move {
                run_job(job, timeout, &stats).await;
                drop(permit);
            });
            // Reap finished runs so the set does not grow.
            while running.try_join_next().is_some() {}
        }
        // Dropping the set (when this task is aborted) cancels the runs, which kills their
        // process groups.
    });
    Some(vec![follower, dispatcher])
}

async fn run_job(job: Job, timeout: Duration, stats: &HandlerStats) {
    stats.started.fetch_add(1, Ordering::Relaxed);
    let outcome = process::run(
        Shell {
            command: &job.command,
            stdin: Some(job.stdin),
            env: job.env,
        },
        timeout,
    )
    .await;
    let ms = outcome.duration.as_millis();
    match &outcome.exit {
        Exit::Code(0) => debug!(event = job.kind, command = %job.command, ms, "event handler done"),
        Exit::TimedOut => {
            stats.timed_out.fetch_add(1, Ordering::Relaxed);
            stats.failed.fetch_add(1, Ordering::Relaxed);
            warn!(
                event = job.kind,
                command = %job.command,
                pid = outcome.pid,
                timeout = %process::format_duration(timeout),
                "event handler timed out: killed its process group"
            );
        }
        exit => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            let mut line = first_line(&outcome.stderr, false);
            if line.is_empty() {
                line = first_line(&outcome.stdout, false);
            }
            warn!(
                event = job.kind,
                command = %job.command,
                result = %exit.describe(timeout),
                output = %line,
                "event handler failed"
            );
        }
    }
    if !outcome.stdout.is_empty() {
        info!(event = job.kind, command = %job.command, output = %first_line(&outcome.stdout, false), "event handler output");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_handlers_do_not_run_for_keyring_events() {
        let changed = Event::KeyringChanged(Vec::new());
        assert!(!Accept::AnyMember.matches(&changed));
        assert!(Accept::All.matches(&changed));
        assert!(Accept::Member("keyring-changed").matches(&changed));
    }

    #[test]
    fn filters_and_commands_are_told_apart() {
        let h = parse_handler("member-failed=/usr/local/bin/page --team=ops").unwrap();
        assert_eq!(h.accept, [Accept::Member("member-failed")]);
        assert_eq!(h.command, "/usr/local/bin/page --team=ops");

        let h = parse_handler("member-join,member-left,message:Deploy=notify").unwrap();
        assert_eq!(
            h.accept,
            [
                Accept::Member("member-joined"),
                Accept::Member("member-left"),
                Accept::Message(Some("Deploy".into()))
            ]
        );

        let h = parse_handler("key-changed:check/=logger").unwrap();
        assert_eq!(h.accept, [Accept::KeyChanged(Some("check/".into()))]);

        // No filter: every event.
        for command in [
            "logger chatter",
            "FOO=1 logger",
            "/bin/x --a=b",
            "cat > /tmp/e",
        ] {
            let h = parse_handler(command).unwrap();
            assert!(h.accept.is_empty(), "{command:?}");
            assert_eq!(h.command, command);
        }
    }

    #[test]
    fn bad_filters_are_refused() {
        for (spec, expected) in [
            ("member-faild=cmd", "unknown event filter"),
            ("member-failed=", "empty"),
            ("member-left:x=cmd", "takes no"),
        ] {
            let err = parse_handler(spec).unwrap_err();
            assert!(err.contains(expected), "{spec:?}: {err}");
        }
    }
}
