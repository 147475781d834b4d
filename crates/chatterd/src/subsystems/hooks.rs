//! Event hooks: `--event-handler [FILTER=]COMMAND` runs COMMAND (by `sh -c`) for each event
//! of this node that FILTER accepts (every event without one; the filters are in
//! `options::hooks`).
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

use crate::foundation::convert::{self, Clock};
use crate::foundation::duration::format_duration;
use crate::foundation::process::{self, first_line, Exit, Shell};
use crate::options::hooks::HandlerSpec;

/// How long a handler may run when `--event-handler-timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Handlers running at once.
pub const CONCURRENCY: usize = 4;
/// Handler runs waiting for a free slot; more are dropped.
pub const QUEUE: usize = 64;

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
        event: convert::event_data(event, node, &clock),
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
                timeout = %format_duration(timeout),
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
