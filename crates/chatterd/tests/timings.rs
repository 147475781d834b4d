//! Protocol timing options reach the running protocol: a daemon probes at the rate its
//! `--probe-interval` (or its config file's `probe-interval`) asks for, read from `/metrics`.
//!
//! The assertions are bounds that a loaded machine cannot break in the wrong direction: a
//! node cannot send N probes in less than (N - 1) intervals, so "N probes within a deadline
//! shorter than (N - 1) default intervals" shows the shorter interval is in force; and a node
//! cannot probe faster than its interval, so "at most elapsed / interval + 2 probes" shows the
//! longer one is.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{loopback_args, wait_until, Cluster, Daemon, TempFile};

/// `chatter_probes_sent_total` of a daemon's `/metrics`.
fn probes_sent(daemon: &Daemon) -> Result<u64, String> {
    let (status, body) = daemon.get("/metrics")?;
    if status != 200 {
        return Err(format!(
            "{}: /metrics answered {status}: {body}",
            daemon.name
        ));
    }
    body.lines()
        .find_map(|line| line.strip_prefix("chatter_probes_sent_total "))
        .ok_or_else(|| format!("{}: no chatter_probes_sent_total in:\n{body}", daemon.name))?
        .trim()
        .parse::<f64>()
        .map(|v| v as u64)
        .map_err(|e| format!("{}: bad probes_sent value: {e}", daemon.name))
}

/// `chatterd` on ephemeral loopback ports with `extra` flags.
fn start(name: &str, seed: Option<SocketAddr>, extra: &[&str]) -> Daemon {
    let mut args = loopback_args(name);
    if let Some(seed) = seed {
        args.push("--seed".into());
        args.push(seed.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::start_with(&args)
}

/// Waits until `fast` has sent `count` more probes (at most `deadline`), then checks that
/// `slow` sent no more than its `slow_interval` allows in the same time.
fn assert_probe_rates(cluster: &Cluster, count: u64, deadline: Duration, slow_interval: Duration) {
    let (fast, slow) = (&cluster.nodes[0], &cluster.nodes[1]);
    let start = Instant::now();
    let (fast0, slow0) = (probes_sent(fast).unwrap(), probes_sent(slow).unwrap());
    wait_until(
        &format!("{} sent {count} probes", fast.name),
        deadline,
        || match probes_sent(fast)? - fast0 {
            sent if sent >= count => Ok(()),
            sent => Err(format!(
                "{} sent {sent} probes in {:?}",
                fast.name,
                start.elapsed()
            )),
        },
    );
    let fast_sent = probes_sent(fast).unwrap() - fast0;
    let slow_sent = probes_sent(slow).unwrap() - slow0;
    let elapsed = start.elapsed();
    let allowed = (elapsed.as_secs_f64() / slow_interval.as_secs_f64()).floor() as u64 + 2;
    assert!(
        slow_sent <= allowed,
        "{} sent {slow_sent} probes in {elapsed:?}: more than its {slow_interval:?} interval \
         allows ({allowed}); {} sent {fast_sent}",
        slow.name,
        fast.name
    );
}

#[test]
fn probe_interval_flag_sets_the_probe_rate() {
    // Both on the lan profile (1 s); the first probes every 200 ms.
    let fast = start(
        "rate-fast",
        None,
        &[
            "--profile",
            "lan",
            "--probe-interval",
            "200ms",
            "--probe-timeout",
            "150ms",
        ],
    );
    let slow = start("rate-slow", Some(fast.gossip), &["--profile", "lan"]);
    let mut cluster = Cluster {
        nodes: vec![fast, slow],
    };
    cluster.wait_all_alive(Duration::from_secs(15));
    assert!(
        cluster.nodes[0].logs().contains("probe-interval=200ms"),
        "the start log names the timings given:\n{}",
        cluster.nodes[0].logs()
    );
    // 20 probes at the lan profile's 1 s take at least 19 s.
    assert_probe_rates(
        &cluster,
        20,
        Duration::from_secs(15),
        Duration::from_secs(1),
    );
}

#[test]
fn config_file_timings_apply_and_flags_override_them() {
    // The file sets a 5 s probe interval and a 150 ms probe timeout on the lan profile.
    let file = TempFile::new(
        "timings-rate.toml",
        "profile = \"lan\"\nprobe-interval = \"5s\"\nprobe-timeout = \"150ms\"\n",
    );
    // The flag overrides the file's interval; the file's timeout is still needed (the lan
    // profile's 500 ms would not fit in 200 ms, and the daemon would refuse to start).
    let fast = start(
        "file-fast",
        None,
        &["--config", &file.path(), "--probe-interval", "200ms"],
    );
    // The file alone: probes every 5 s.
    let slow = start("file-slow", Some(fast.gossip), &["--config", &file.path()]);
    let mut cluster = Cluster {
        nodes: vec![fast, slow],
    };
    cluster.wait_all_alive(Duration::from_secs(15));
    // 20 probes take at least 3.8 s at 200 ms (19 s at the lan profile's 1 s): time for the
    // slow node to send about 4 probes at 1 s, while at 5 s at most 2 are allowed.
    assert_probe_rates(
        &cluster,
        20,
        Duration::from_secs(15),
        Duration::from_secs(5),
    );
}
