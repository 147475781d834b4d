//! Three nodes on one machine find each other, then one leaves.
//!
//! ```text
//! cargo run -p chatter --example cluster
//! RUST_LOG=chatter=debug cargo run -p chatter --example cluster   # the protocol at work
//! ```
//!
//! Every node binds 127.0.0.1 on a free port (port 0) and uses `Config::local()`, the profile
//! for processes on one machine (ten times faster than the default LAN profile). In a real
//! deployment each process starts one node, bound to its host's address on a fixed port, with
//! the addresses (or DNS names) of a few other members as seeds.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use chatter::{Chatter, Config, Event, Handle, MemberStatus, Snapshot};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    // The first node has no seed: the others join through it.
    let alpha = start("alpha", None).await?;
    println!("alpha listens on {}", alpha.local_addr());

    // Print every membership change alpha sees, until alpha stops.
    let mut events = alpha.subscribe();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match &event {
                Event::Conflict(c) => println!("[alpha] {}: {}", event.kind(), c.name),
                other => {
                    if let Some(m) = other.member() {
                        println!("[alpha] {:<14} {} at {}", other.kind(), m.name, m.addr);
                    }
                }
            }
        }
        println!("[alpha] event stream ended");
    });

    let beta = start("beta", Some(alpha.local_addr())).await?;
    let gamma = start("gamma", Some(alpha.local_addr())).await?;

    wait_for(&alpha, "alpha to see beta and gamma", |s| {
        is(s, "beta", MemberStatus::Alive) && is(s, "gamma", MemberStatus::Alive)
    })
    .await?;
    print_members(&alpha);

    // A graceful leave: the others mark gamma `left`, not `failed`.
    gamma.leave().await?;
    wait_for(&alpha, "alpha to see gamma leave", |s| {
        is(s, "gamma", MemberStatus::Left)
    })
    .await?;
    print_members(&alpha);

    beta.leave().await?;
    alpha.leave().await?;
    printer.await?;
    Ok(())
}

/// A node on a free loopback port, optionally joining through `seed`.
async fn start(name: &str, seed: Option<SocketAddr>) -> Result<Handle, chatter::Error> {
    let mut builder = Chatter::builder(name)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .config(Config::local())
        .tag("example", "cluster");
    if let Some(seed) = seed {
        builder = builder.seed(seed.to_string());
    }
    builder.spawn().await
}

/// Waits (at most 10 s) until a snapshot published by `handle` satisfies `cond`.
async fn wait_for(
    handle: &Handle,
    what: &str,
    cond: impl Fn(&Snapshot) -> bool,
) -> Result<(), Box<dyn Error>> {
    let mut snapshots = handle.watch();
    tokio::time::timeout(Duration::from_secs(10), snapshots.wait_for(|s| cond(s)))
        .await
        .map_err(|_| format!("timed out waiting for {what}"))?
        .map_err(|_| format!("{} stopped while waiting for {what}", handle.name()))?;
    Ok(())
}

fn is(snapshot: &Snapshot, name: &str, status: MemberStatus) -> bool {
    snapshot.member(name).is_some_and(|m| m.status == status)
}

fn print_members(handle: &Handle) {
    let snapshot = handle.snapshot();
    println!("members as {} sees them:", handle.name());
    for m in std::iter::once(&snapshot.local).chain(&snapshot.members) {
        let rtt = m.rtt.map_or_else(|| "-".to_owned(), |d| format!("{d:?}"));
        println!("  {:<6} {:<16} {:<6} rtt {rtt}", m.name, m.addr, m.status);
    }
}
