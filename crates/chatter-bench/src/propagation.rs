//! Propagation latency of user messages and key/value writes, seen on every node's
//! Server-Sent Events stream (`GET /v1/events`).

use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cluster::{find_number, follow_events, Cluster};
use crate::{max, median, Daemons};

/// One event seen on node `node`'s stream, with the instant the harness read it.
struct Seen {
    node: usize,
    at: Instant,
    event: Value,
}

/// Opens every node's event stream; each is read by its own thread until the process exits.
fn follow_all(c: &Cluster) -> Result<Receiver<Seen>> {
    let (tx, rx) = mpsc::channel();
    for (node, d) in c.live().enumerate() {
        let tx = tx.clone();
        follow_events(&d.http, move |event| {
            tx.send(Seen {
                node,
                at: Instant::now(),
                event,
            })
            .is_ok()
        })?;
    }
    Ok(rx)
}

/// Waits until `matches` holds for an event on each of `n` nodes; returns each node's delay.
fn wait_all(
    rx: &Receiver<Seen>,
    n: usize,
    start: Instant,
    limit: Duration,
    matches: impl Fn(&Value) -> bool,
) -> Result<Vec<f64>> {
    let mut delays: Vec<Option<f64>> = vec![None; n];
    let deadline = start + limit;
    while delays.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let missing = delays.iter().filter(|d| d.is_none()).count();
            bail!("{missing} of {n} nodes did not report the event within {limit:?}");
        }
        let Ok(seen) = rx.recv_timeout(left) else {
            continue;
        };
        if seen.node < n && delays[seen.node].is_none() && matches(&seen.event) {
            delays[seen.node] = Some(seen.at.duration_since(start).as_secs_f64() * 1000.0);
        }
    }
    Ok(delays.into_iter().flatten().collect())
}

fn total(c: &Cluster, key: &str) -> f64 {
    c.live()
        .filter_map(|d| c.get(&d.http, "/v1/self").ok())
        .filter_map(|v| find_number(&v, key))
        .sum()
}

fn post(url: &str, body: &str) -> Result<()> {
    ureq::post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .with_context(|| format!("POST {url}"))?;
    Ok(())
}

fn put(url: &str, body: &str) -> Result<()> {
    ureq::put(url)
        .send(body)
        .with_context(|| format!("PUT {url}"))?;
    Ok(())
}

fn is_type(v: &Value, t: &str) -> bool {
    v.get("type").and_then(Value::as_str) == Some(t)
}

pub fn broadcast(d: &Daemons, sizes: &[usize], count: usize) -> Result<()> {
    let profile = &d.profile;
    println!("User message propagation, profile {profile}, {count} messages per size (ms)");
    println!(
        "{:>5} | {:>14} | {:>11} | {:>16} | {:>19}",
        "nodes", "all: median", "all: max", "per node: median", "datagrams/broadcast"
    );
    for &n in sizes {
        let mut c = d.cluster();
        c.start(n)?;
        let rx = follow_all(&c)?;
        let https: Vec<String> = c.live().map(|d| d.http.clone()).collect();
        let send = |i: usize, origin: &str| -> Result<Instant> {
            let start = Instant::now();
            let body = format!(r#"{{"tag":"bench","payload":{{"n":{i}}}}}"#);
            post(&format!("http://{origin}/v1/messages"), &body)?;
            Ok(start)
        };
        let is_msg = |i: usize| {
            move |v: &Value| {
                is_type(v, "message")
                    && v.to_string().contains("\"bench\"")
                    && find_number(v, "n") == Some(i as f64)
            }
        };
        // Warm-up: the first broadcasts prune the neighbour graph to a tree.
        for i in 0..5 {
            let start = send(i, &https[i % n])?;
            wait_all(&rx, n, start, Duration::from_secs(10), is_msg(i))?;
        }
        let sent_before = total(&c, "messages_sent");
        let (mut all, mut each) = (Vec::new(), Vec::new());
        for i in 5..5 + count {
            let start = send(i, &https[(i * 7) % n])?;
            let delays = wait_all(&rx, n, start, Duration::from_secs(10), is_msg(i))?;
            all.push(max(&delays));
            each.extend(delays);
            thread::sleep(Duration::from_millis(100));
        }
        let per_broadcast = (total(&c, "messages_sent") - sent_before) / count as f64;
        println!(
            "{:>5} | {:>14.2} | {:>11.2} | {:>16.2} | {:>19.1}",
            n,
            median(&mut all.clone()),
            max(&all),
            median(&mut each),
            per_broadcast
        );
    }
    Ok(())
}

pub fn kv(d: &Daemons, sizes: &[usize], count: usize) -> Result<()> {
    let profile = &d.profile;
    println!("Key/value propagation, profile {profile}, {count} writes per size (ms)");
    println!(
        "{:>5} | {:>14} | {:>11} | {:>16}",
        "nodes", "all: median", "all: max", "per node: median"
    );
    for &n in sizes {
        let mut c = d.cluster();
        c.start(n)?;
        let rx = follow_all(&c)?;
        let nodes: Vec<(String, String)> =
            c.live().map(|d| (d.name.clone(), d.http.clone())).collect();
        let (mut all, mut each) = (Vec::new(), Vec::new());
        for i in 0..count {
            let (owner, http) = &nodes[(i * 7) % n];
            let value = format!("v{i}");
            let start = Instant::now();
            put(&format!("http://{http}/v1/kv/bench-key"), &value)?;
            let owner = owner.clone();
            let delays = wait_all(&rx, n, start, Duration::from_secs(10), |v| {
                let text = v.to_string();
                is_type(v, "key-changed")
                    && text.contains(&format!("\"{owner}\""))
                    && text.contains("\"bench-key\"")
                    && text.contains(&format!("\"{value}\""))
            })?;
            all.push(max(&delays));
            each.extend(delays);
            thread::sleep(Duration::from_millis(100));
        }
        println!(
            "{:>5} | {:>14.2} | {:>11.2} | {:>16.2}",
            n,
            median(&mut all.clone()),
            max(&all),
            median(&mut each)
        );
    }
    Ok(())
}
