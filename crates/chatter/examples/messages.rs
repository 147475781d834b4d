//! Three nodes share status through key/value state and talk through typed messages.
//!
//! ```text
//! cargo run -p chatter --example messages
//! ```
//!
//! `alpha` publishes its role and load as keys of its state; `beta` reads them. `beta`
//! broadcasts a typed `Deploy` message; every node (`beta` itself included) receives it once and
//! decodes it. The payload is JSON, so the same message can be sent by hand to a daemon:
//!
//! ```text
//! chatter-inject 127.0.0.1:2428 '{"Deploy":{"service":"web","version":42}}'
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use chatter::{
    Chatter, Config, DeliveredExt, Event, EventStream, Handle, MemberStatus, Snapshot, Tagged,
};
use serde::{Deserialize, Serialize};

/// Errors of this program, sendable across tasks.
type BoxError = Box<dyn Error + Send + Sync>;

/// A message asking every node to deploy a version of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deploy {
    service: String,
    version: u32,
}

impl Tagged for Deploy {
    const TAG: &'static str = "Deploy";
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let alpha = start("alpha", None).await?;
    let beta = start("beta", Some(alpha.local_addr())).await?;
    let gamma = start("gamma", Some(alpha.local_addr())).await?;
    for (h, others) in [
        (&alpha, ["beta", "gamma"]),
        (&beta, ["alpha", "gamma"]),
        (&gamma, ["alpha", "beta"]),
    ] {
        wait_for(h, "the others to be alive", |s| {
            others
                .iter()
                .all(|n| s.member(n).is_some_and(|m| m.status == MemberStatus::Alive))
        })
        .await?;
    }
    let names: Vec<String> = alpha.live_members().borrow().keys().cloned().collect();
    println!("live members: {names:?}");

    // Key/value state: alpha publishes, beta reads once the write has reached it.
    let mut beta_events = beta.subscribe();
    let version = alpha.set("role", "database").await?;
    alpha.set("load", "0.42").await?;
    println!("alpha set role=database (version {version}) and load");
    // Gossip may deliver the two writes in either order: wait for both.
    let mut missing = vec!["role", "load"];
    while !missing.is_empty() {
        if let Event::KeyChanged(c) = next_event(
            &mut beta_events,
            "alpha's keys to reach beta",
            |e| matches!(e, Event::KeyChanged(c) if c.node == "alpha"),
        )
        .await?
        {
            missing.retain(|k| *k != c.key);
        }
    }
    let role = beta.get("alpha", "role").await?;
    println!(
        "beta reads alpha.role = {:?}",
        role.as_deref().map(String::from_utf8_lossy)
    );
    if let Some(state) = beta.node_state("alpha").await? {
        println!(
            "beta holds alpha's state up to version {} ({}):",
            state.version, state.status
        );
        for (key, value) in &state.entries {
            let text = String::from_utf8_lossy(&value.value);
            println!("  {key} = {text} (v{})", value.version);
        }
    }

    // Typed messages: beta broadcasts, every node delivers once and decodes.
    let mut receivers = Vec::new();
    for h in [&alpha, &beta, &gamma] {
        let mut events = h.subscribe();
        let name = h.name().to_owned();
        receivers.push(tokio::spawn(async move {
            let event = next_event(
                &mut events,
                "a Deploy message",
                |e| matches!(e, Event::Message(m) if m.is::<Deploy>()),
            )
            .await?;
            if let Event::Message(message) = event {
                let deploy: Deploy = message.decode()?;
                println!(
                    "[{name}] {} from {} ({} hops): {deploy:?}",
                    message.tag(),
                    message.id.origin,
                    message.hops
                );
            }
            Ok::<_, BoxError>(())
        }));
    }
    let id = beta
        .broadcast(&Deploy {
            service: "web".into(),
            version: 42,
        })
        .await?;
    println!("beta broadcast message {}#{}", id.origin, id.seq);
    for receiver in receivers {
        receiver.await?.map_err(|e| e.to_string())?;
    }

    // A delete reaches the others too.
    alpha.delete("load").await?;
    next_event(
        &mut beta_events,
        "the delete to reach beta",
        |e| matches!(e, Event::KeyChanged(c) if c.key == "load" && c.value.is_none()),
    )
    .await?;
    println!(
        "beta reads alpha.load = {:?}",
        beta.get("alpha", "load").await?
    );

    for h in [gamma, beta, alpha] {
        h.leave().await?;
    }
    Ok(())
}

/// A node on a free loopback port, optionally joining through `seed`.
async fn start(name: &str, seed: Option<SocketAddr>) -> Result<Handle, chatter::Error> {
    let mut builder = Chatter::builder(name)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .config(Config::local());
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
) -> Result<(), BoxError> {
    let mut snapshots = handle.watch();
    tokio::time::timeout(Duration::from_secs(10), snapshots.wait_for(|s| cond(s)))
        .await
        .map_err(|_| format!("timed out waiting for {what}"))?
        .map_err(|_| format!("{} stopped while waiting for {what}", handle.name()))?;
    Ok(())
}

/// The next event of `events` that satisfies `cond` (at most 10 s).
async fn next_event(
    events: &mut EventStream,
    what: &str,
    cond: impl Fn(&Event) -> bool,
) -> Result<Event, BoxError> {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if cond(&event) {
                return Some(event);
            }
        }
        None
    })
    .await
    .map_err(|_| format!("timed out waiting for {what}"))?;
    found.ok_or_else(|| format!("node stopped while waiting for {what}").into())
}
