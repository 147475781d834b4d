//! `GET /metrics` of real daemons: the Prometheus text format, the key series, and values that
//! follow the cluster (members by status, probes, round trips, a failure).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{wait_until, Cluster};

/// `GET path` with the response's head: (status, lower-cased head, body).
fn get_with_head(addr: SocketAddr, path: &str) -> Result<(u16, String, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {raw:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, head.to_ascii_lowercase(), body.to_owned()))
}

/// The samples of a scrape: series (name and labels, as written) → value.
fn samples(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value in {line:?}"))?;
        let value: f64 = value
            .parse()
            .map_err(|e| format!("bad value in {line:?}: {e}"))?;
        if out.insert(series.to_owned(), value).is_some() {
            return Err(format!("series {series} twice"));
        }
    }
    Ok(out)
}

fn scrape(addr: SocketAddr) -> Result<BTreeMap<String, f64>, String> {
    let (status, head, body) = get_with_head(addr, "/metrics")?;
    if status != 200 {
        return Err(format!("/metrics answered {status}: {body}"));
    }
    if !head.contains("content-type: text/plain; version=0.0.4") {
        return Err(format!("unexpected content type in {head}"));
    }
    samples(&body)
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> Result<f64, String> {
    samples
        .get(series)
        .copied()
        .ok_or_else(|| format!("no series {series} in {samples:#?}"))
}

#[test]
fn metrics_follow_the_cluster() {
    let mut cluster = Cluster::start("metrics", 3, "local");
    cluster.wait_all_alive(Duration::from_secs(30));
    let first = cluster.nodes[0].http;

    // A few protocol periods later every key series is there with sane values.
    let samples = wait_until(
        "metrics-1 reports 3 alive members, probes and round trips",
        Duration::from_secs(20),
        || {
            let s = scrape(first)?;
            let check = |ok: bool, what: &str| {
                if ok {
                    Ok(())
                } else {
                    Err(format!("{what}: {s:#?}"))
                }
            };
            check(
                value(&s, r#"chatter_members{status="alive"}"#)? == 3.0,
                "3 alive",
            )?;
            check(value(&s, "chatter_probes_sent_total")? > 0.0, "probes sent")?;
            check(value(&s, "chatter_probes_acked_total")? > 0.0, "acks")?;
            check(value(&s, "chatter_probe_rtt_seconds_count")? > 0.0, "rtt")?;
            Ok(s)
        },
    );
    for status in ["suspect", "failed", "left"] {
        assert_eq!(
            samples.get(&format!("chatter_members{{status=\"{status}\"}}")),
            Some(&0.0),
            "{status}"
        );
    }
    for name in [
        "chatter_packets_sent_total",
        "chatter_packets_received_total",
        "chatter_sent_bytes_total",
        "chatter_received_bytes_total",
    ] {
        assert!(samples[name] > 0.0, "{name}: {samples:#?}");
    }
    for name in [
        "chatter_probes_failed_total",
        "chatter_indirect_probes_sent_total",
        "chatter_indirect_probes_served_total",
        "chatter_suspicions_raised_total",
        "chatter_suspicions_refuted_total",
        "chatter_failures_declared_total",
        "chatter_messages_broadcast_total",
        "chatter_messages_delivered_total",
        "chatter_messages_duplicate_total",
        "chatter_state_updates_applied_total",
        "chatter_pending_broadcasts",
        "chatter_active_suspicions",
        "chatter_health_score",
        "chatter_io_send_errors_total",
        "chatter_io_recv_errors_total",
        "chatter_uptime_seconds",
    ] {
        assert!(samples.get(name).is_some_and(|v| *v >= 0.0), "{name}");
    }
    for reason in [
        "malformed",
        "version",
        "wrong_cluster",
        "oversize",
        "table_full",
        "indirect_overload",
        "state_unknown",
        "state_full",
        "message_oversize",
    ] {
        let series = format!("chatter_dropped_total{{reason=\"{reason}\"}}");
        assert!(samples.contains_key(&series), "{series}");
    }
    assert!(
        samples
            .iter()
            .any(|(k, v)| k.starts_with("chatter_build_info{")
                && k.contains(r#"cluster="chatter""#)
                && k.contains(r#"node="metrics-1""#)
                && *v == 1.0),
        "{samples:#?}"
    );

    // The histogram: buckets in seconds, cumulative, ending with +Inf = count; a loopback
    // round trip is well under a second, and the mean is within the buckets.
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|(k, v)| {
            let le = k
                .strip_prefix("chatter_probe_rtt_seconds_bucket{le=\"")?
                .strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    let mut sorted = buckets.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(sorted.len(), 13, "{sorted:?}");
    assert_eq!(sorted[0].0, 0.0001);
    assert_eq!(sorted[11].0, 1.0);
    assert!(sorted.windows(2).all(|w| w[0].1 <= w[1].1), "{sorted:?}");
    let count = samples["chatter_probe_rtt_seconds_count"];
    assert_eq!(sorted[12], (f64::INFINITY, count));
    assert_eq!(sorted[11].1, count, "a loopback probe took over 1 s");
    let mean = samples["chatter_probe_rtt_seconds_sum"] / count;
    assert!(mean > 0.0 && mean < 1.0, "mean rtt {mean}");

    // A crash shows in the gauges and the verdict counters.
    cluster.nodes[2].kill();
    let survivors = [cluster.nodes[0].http, cluster.nodes[1].http];
    wait_until(
        "both survivors report metrics-3 failed in their metrics",
        Duration::from_secs(30),
        || {
            let mut raised = 0.0;
            let mut declared = 0.0;
            for &addr in &survivors {
                let s = scrape(addr)?;
                if value(&s, r#"chatter_members{status="failed"}"#)? != 1.0
                    || value(&s, r#"chatter_members{status="alive"}"#)? != 2.0
                {
                    return Err(format!("{addr}: {s:#?}"));
                }
                raised += value(&s, "chatter_suspicions_raised_total")?;
                declared += value(&s, "chatter_failures_declared_total")?;
            }
            if raised < 1.0 || declared < 1.0 {
                return Err(format!("raised {raised}, declared {declared}"));
            }
            Ok(())
        },
    );
}
