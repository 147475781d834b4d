//! Helpers shared by the integration tests: nodes on 127.0.0.1 port 0 with the fast `local`
//! profile, and waiting on published snapshots with deadlines (never sleeping as
//! synchronisation).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use chatter::{Chatter, Config, Handle, MemberStatus, Snapshot};
use tokio::time::Instant;

/// Logs go to the test output when `RUST_LOG` is set (`RUST_LOG=chatter=debug`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A node on an ephemeral loopback port with the `local` profile, seeded with `seeds`.
pub async fn node(name: &str, seeds: &[&Handle]) -> Handle {
    init_tracing();
    Chatter::builder(name)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .config(Config::local())
        .seeds(seeds.iter().map(|h| h.local_addr().to_string()))
        .spawn()
        .await
        .unwrap()
}

/// A deadline `secs` seconds from now.
pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// Waits until `cond` holds for a snapshot published by `handle`, or panics at `deadline`
/// with what the node sees.
pub async fn wait_until(
    handle: &Handle,
    deadline: Instant,
    what: &str,
    cond: impl Fn(&Snapshot) -> bool,
) {
    let mut snapshots = handle.watch();
    // Drop the watch guard at once: the snapshot is read again below.
    let outcome = tokio::time::timeout_at(deadline, snapshots.wait_for(|s| cond(s)))
        .await
        .map(|found| found.map(|_| ()));
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => {
            // The node stopped: the final snapshot is all there will be.
            assert!(
                cond(&handle.snapshot()),
                "{} stopped before {what}",
                handle.name()
            );
        }
        Err(_) => panic!(
            "{}: timed out waiting for {what}; it sees:\n{}",
            handle.name(),
            describe(&handle.snapshot())
        ),
    };
}

/// Whether `snapshot` shows `name` with `status`.
pub fn sees(snapshot: &Snapshot, name: &str, status: MemberStatus) -> bool {
    snapshot.member(name).is_some_and(|m| m.status == status)
}

/// Waits until every handle sees every other one alive.
pub async fn wait_all_alive(handles: &[&Handle], deadline: Instant) {
    for h in handles {
        for other in handles {
            if other.name() != h.name() {
                let name = other.name().to_owned();
                wait_until(h, deadline, &format!("{name} alive"), |s| {
                    sees(s, &name, MemberStatus::Alive)
                })
                .await;
            }
        }
    }
}

/// One line per member, for failure messages.
pub fn describe(snapshot: &Snapshot) -> String {
    let mut out = format!("  self {} {}\n", snapshot.local.name, snapshot.local.status);
    for m in &snapshot.members {
        out += &format!(
            "  {} {} {} inc={} evidence={:?}\n",
            m.name, m.addr, m.status, m.incarnation, m.evidence
        );
    }
    out += &format!("  stats {:?}\n  io {:?}\n", snapshot.stats, snapshot.io);
    out
}

/// The next event of `events` that satisfies `cond`, or a panic at `deadline`.
pub async fn next_event(
    events: &mut chatter::EventStream,
    deadline: Instant,
    what: &str,
    cond: impl Fn(&chatter::Event) -> bool,
) -> chatter::Event {
    let found = tokio::time::timeout_at(deadline, async {
        while let Some(event) = events.recv().await {
            if cond(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => event,
        Ok(None) => panic!("event stream ended before {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}
