//! `chatter-bench`: figures from real `chatterd` processes on 127.0.0.1, and (`hosts`) on hosts
//! made of network namespaces.
//!
//! ```text
//! cargo build --release -p chatterd -p chatter-bench
//! target/release/chatter-bench detection --nodes 5,20,50 --runs 5
//! target/release/chatter-bench pause --nodes 5 --pauses 2,5,8,10
//! target/release/chatter-bench idle --nodes 20,50 --seconds 60
//! target/release/chatter-bench compare --nodes 5,20,50 --runs 5   # against Serf and chitchat
//! target/release/chatter-bench compare --quick                    # smoke test, N=5, ~2 min
//! target/release/chatter-bench compare --encryption               # also sealed Chatter, Serf -encrypt
//! sudo target/release/chatter-bench hosts --nodes 5               # real hosts (network namespaces)
//! ```
//!
//! Every daemon is started by the harness, reached only on loopback or at the address of a
//! namespace host the harness made, and killed by PID when a
//! scenario ends (or the harness exits). Every wait has a deadline.

mod cluster;
mod compare;
mod hosts;
mod propagation;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use cluster::{cpu_seconds, find_number, rss_kib, unix_ms, Cluster};

#[derive(Parser)]
#[command(about = "Benchmarks of real chatterd processes on loopback and on namespace hosts")]
struct Args {
    /// Path of the chatterd binary [default: next to this executable].
    #[arg(long, global = true)]
    chatterd: Option<PathBuf>,
    /// Protocol profile passed to every daemon.
    #[arg(long, global = true, default_value = "lan")]
    profile: String,
    /// An extra argument for every chatterd started (repeatable), e.g.
    /// `--daemon-arg=--check --daemon-arg='name=tmp,cmd=test -w /tmp'`.
    #[arg(long = "daemon-arg", global = true, allow_hyphen_values = true)]
    daemon_args: Vec<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Time from SIGKILL of one daemon until every survivor reports it failed.
    Detection {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "5,20,50")]
        nodes: Vec<usize>,
        /// Kills per cluster size (the victim is restarted between kills).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// SIGSTOP one daemon for a while: was it ever reported failed?
    Pause {
        /// Cluster size.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Pause lengths in seconds.
        #[arg(long, value_delimiter = ',', default_value = "2,5,8,10")]
        pauses: Vec<f64>,
        /// Repetitions of each pause.
        #[arg(long, default_value_t = 2)]
        runs: usize,
    },
    /// Latency from one `POST /v1/messages` until every node's event stream shows the message,
    /// and datagrams per broadcast.
    Broadcast {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "20,50")]
        nodes: Vec<usize>,
        /// Messages per cluster size (after 5 warm-up messages).
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
    /// Latency from one `PUT /v1/kv/KEY` until every node's event stream shows the change.
    Kv {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "20,50")]
        nodes: Vec<usize>,
        /// Writes per cluster size.
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
    /// The same scenarios for Chatter, HashiCorp Serf and chitchat, each with its defaults,
    /// in one run: tables with the ratios (Markdown).
    Compare {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "5,20,50")]
        nodes: Vec<usize>,
        /// SIGKILLs per cluster size and system (the victim is restarted between kills).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// SIGSTOP pause lengths in seconds.
        #[arg(long, value_delimiter = ',', default_value = "2,5,10")]
        pauses: Vec<f64>,
        /// Broadcasts and key/value writes per cluster size and system.
        #[arg(long, default_value_t = 10)]
        messages: usize,
        /// Idle measurement window in seconds.
        #[arg(long, default_value_t = 30)]
        idle_seconds: u64,
        /// Wait after convergence before the idle window, in seconds.
        #[arg(long, default_value_t = 10)]
        settle_seconds: u64,
        /// Systems to run: chatter, serf, chitchat, chatter-sealed (chatterd with gossip
        /// encryption), serf-encrypt (serf agent -encrypt).
        #[arg(long, value_delimiter = ',', default_value = "chatter,serf,chitchat")]
        systems: Vec<String>,
        /// Add chatter-sealed and serf-encrypt to --systems: encryption on against off, and
        /// against Serf's, under one key drawn for the run.
        #[arg(long)]
        encryption: bool,
        /// The serf binary.
        #[arg(long, default_value = "serf")]
        serf: PathBuf,
        /// The chitchat node binary [default: chatter-bench-chitchat next to this executable].
        #[arg(long)]
        chitchat: Option<PathBuf>,
        /// Add a "Chatter (Serf timings)" column: chatterd with the timing flags that match
        /// Serf's LAN defaults (--probe-interval 1s --probe-timeout 500ms --indirect-checks 3
        /// --suspicion-mult 4 --suspicion-max-timeout-mult 6 --suspicion-confirmations 2
        /// --gossip-interval 200ms --gossip-fanout 3 --retransmit-mult 4 --sync-interval 30s).
        #[arg(long)]
        chatter_serf_timings: bool,
        /// Extra chatterd flags for the "Chatter (Serf timings)" column (which they add when
        /// --chatter-serf-timings is absent); with --chatter-serf-timings they add to its flags
        /// and replace those they repeat, e.g. '--unreachable-suspicion-timeout 1h'.
        #[arg(long, allow_hyphen_values = true)]
        chatter_tuned_args: Option<String>,
        /// Smoke test: 5 nodes, 1 kill, one 2 s pause, 3 messages, 5 s idle window (~2 min).
        /// Exits non-zero when a system fails to start or converge, or a scenario fails.
        #[arg(long)]
        quick: bool,
        /// Also write the Markdown section to this file.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Replace (or add) the "Side by side" section of this file, e.g. docs/BENCHMARKS.md.
        #[arg(long)]
        update_doc: Option<PathBuf>,
    },
    /// Chatter and Serf on real hosts made of network namespaces (needs root): one daemon per
    /// host at its own address, faults in the network between them (cut links, partitions,
    /// one-way and flapping links, loss) and in the processes; Markdown tables side by side.
    Hosts(hosts::Options),
    /// Idle CPU, RSS and traffic per daemon once the cluster has settled.
    Idle {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "20,50")]
        nodes: Vec<usize>,
        /// Measurement window in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

/// How to start the daemons of a scenario.
pub struct Daemons {
    chatterd: PathBuf,
    profile: String,
    extra: Vec<String>,
}

impl Daemons {
    /// An empty cluster of such daemons.
    pub fn cluster(&self) -> Cluster {
        Cluster::new(self.chatterd.clone(), &self.profile, self.extra.clone())
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Scenario::Hosts(hosts::Options { cleanup: true, .. }) = args.scenario {
        return hosts::cleanup();
    }
    let chatterd = match args.chatterd {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("executable has no directory")?
            .join("chatterd"),
    };
    // Hosts made of containers run the image's own chatterd, not this machine's.
    let in_image = matches!(
        &args.scenario,
        Scenario::Hosts(hosts::Options {
            containers: Some(_),
            ..
        })
    );
    if !chatterd.exists() && !in_image {
        bail!(
            "{} not found: build it first (cargo build --release -p chatterd)",
            chatterd.display()
        );
    }
    let d = Daemons {
        chatterd: chatterd.clone(),
        profile: args.profile.clone(),
        extra: args.daemon_args.clone(),
    };
    match args.scenario {
        Scenario::Detection { nodes, runs } => detection(&d, &nodes, runs),
        Scenario::Pause {
            nodes,
            pauses,
            runs,
        } => pause(&d, nodes, &pauses, runs),
        Scenario::Idle { nodes, seconds } => idle(&d, &nodes, seconds),
        Scenario::Broadcast { nodes, count } => propagation::broadcast(&d, &nodes, count),
        Scenario::Kv { nodes, count } => propagation::kv(&d, &nodes, count),
        Scenario::Hosts(opts) => hosts::run(hosts::Options {
            chatterd,
            chatter_args: args.daemon_args.clone(),
            command_line: shown_command(&["--chatterd", "--markdown"]),
            ..opts
        }),
        Scenario::Compare {
            nodes,
            runs,
            pauses,
            messages,
            idle_seconds,
            settle_seconds,
            systems,
            encryption,
            serf,
            chitchat,
            chatter_serf_timings,
            chatter_tuned_args,
            quick,
            markdown,
            update_doc,
        } => {
            let chitchat = match chitchat {
                Some(p) => p,
                None => chatterd
                    .parent()
                    .context("chatterd has no directory")?
                    .join("chatter-bench-chitchat"),
            };
            let command_line =
                shown_command(&["--chatterd", "--markdown", "--update-doc", "--chitchat"]);
            compare::run(compare::Options {
                nodes,
                runs,
                pauses,
                messages,
                idle_seconds,
                settle_seconds,
                systems,
                encryption,
                chatterd,
                serf,
                chitchat,
                tuned_args: compare::tuned_args(
                    chatter_serf_timings,
                    chatter_tuned_args.map(|s| s.split_whitespace().map(str::to_owned).collect()),
                ),
                serf_timings: chatter_serf_timings,
                quick,
                update_doc,
                markdown,
                command_line,
            })
        }
    }
}

/// The command as printed in a report, without the options `hidden` that only say where
/// binaries and outputs are (they do not change the figures).
fn shown_command(hidden: &[&str]) -> String {
    let mut shown = Vec::new();
    let mut argv = std::env::args().skip(1);
    while let Some(a) = argv.next() {
        if hidden.contains(&a.as_str()) {
            argv.next();
        } else if !hidden.iter().any(|h| a.starts_with(&format!("{h}="))) {
            shown.push(a);
        }
    }
    std::iter::once("target/release/chatter-bench".to_owned())
        .chain(shown)
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Polls every survivor until all report `victim` failed; returns per-survivor detection
/// times in seconds (from each survivor's own `status_since_ms`).
fn wait_failed(c: &Cluster, victim: &str, killed_at_ms: f64, limit: Duration) -> Result<Vec<f64>> {
    let deadline = Instant::now() + limit;
    loop {
        let mut times = Vec::new();
        for d in c.live() {
            let ms = c.members(&d.http)?;
            if let Some((_, status, since)) = ms.iter().find(|(n, _, _)| n == victim) {
                if status == "failed" {
                    times.push((since - killed_at_ms) / 1000.0);
                }
            }
        }
        if times.len() == c.live().count() {
            return Ok(times);
        }
        if Instant::now() > deadline {
            bail!("{victim} not failed everywhere within {limit:?}");
        }
        thread::sleep(Duration::from_millis(250));
    }
}

fn detection(d: &Daemons, sizes: &[usize], runs: usize) -> Result<()> {
    let profile = &d.profile;
    println!("SIGKILL detection, profile {profile}, {runs} kills per size (seconds)");
    println!(
        "{:>5} | {:>13} | {:>11} | {:>15} | {:>12}",
        "nodes", "all: median", "all: max", "first: median", "each: median"
    );
    for &n in sizes {
        let mut c = d.cluster();
        c.start(n)?;
        let (mut all, mut first, mut each) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            // Never the seed (index 0), so restarts can rejoin through it.
            let victim_idx = 1 + run % (n - 1);
            let victim = c.nodes[victim_idx]
                .as_ref()
                .map(|d| d.name.clone())
                .context("victim not running")?;
            let t0 = unix_ms();
            c.kill(victim_idx)?;
            let times = wait_failed(&c, &victim, t0, Duration::from_secs(120))?;
            all.push(max(&times));
            first.push(times.iter().copied().fold(f64::INFINITY, f64::min));
            each.extend(times.iter().copied());
            let daemon = c.spawn(victim_idx)?;
            c.nodes[victim_idx] = Some(daemon);
            c.wait_converged(Duration::from_secs(60))?;
            // Let the restart's gossip settle so the next kill starts from a quiet cluster.
            thread::sleep(Duration::from_secs(2));
        }
        println!(
            "{:>5} | {:>13.2} | {:>11.2} | {:>15.2} | {:>12.2}",
            n,
            median(&mut all.clone()),
            max(&all),
            median(&mut first),
            median(&mut each)
        );
    }
    Ok(())
}

fn pause(d: &Daemons, n: usize, pauses: &[f64], runs: usize) -> Result<()> {
    let profile = &d.profile;
    println!("SIGSTOP pauses, {n} nodes, profile {profile}");
    println!(
        "{:>8} | {:>5} | {:>20} | {:>15}",
        "pause s", "runs", "runs marked failed", "max suspects"
    );
    let mut c = d.cluster();
    c.start(n)?;
    for &p in pauses {
        let mut failed_runs = 0;
        let mut max_suspects = 0;
        for run in 0..runs {
            let victim_idx = 1 + run % (n - 1);
            let victim = c.nodes[victim_idx]
                .as_ref()
                .map(|d| d.name.clone())
                .context("victim not running")?;
            c.signal(victim_idx, libc::SIGSTOP)?;
            let resume_at = Instant::now() + Duration::from_secs_f64(p);
            let watch_until = resume_at + Duration::from_secs(5);
            let mut seen_failed = false;
            let mut resumed = false;
            while Instant::now() < watch_until {
                if !resumed && Instant::now() >= resume_at {
                    c.signal(victim_idx, libc::SIGCONT)?;
                    resumed = true;
                }
                let mut suspects = 0;
                for (i, d) in c.nodes.iter().enumerate() {
                    let Some(d) = d else { continue };
                    if i == victim_idx {
                        continue;
                    }
                    if let Ok(ms) = c.members(&d.http) {
                        match ms.iter().find(|(m, _, _)| *m == victim) {
                            Some((_, s, _)) if s == "failed" => seen_failed = true,
                            Some((_, s, _)) if s == "suspect" => suspects += 1,
                            _ => {}
                        }
                    }
                }
                max_suspects = max_suspects.max(suspects);
                thread::sleep(Duration::from_millis(100));
            }
            if !resumed {
                c.signal(victim_idx, libc::SIGCONT)?;
            }
            if seen_failed {
                failed_runs += 1;
            }
            c.wait_converged(Duration::from_secs(60))?;
            thread::sleep(Duration::from_secs(2));
        }
        println!(
            "{:>8.1} | {:>5} | {:>20} | {:>15}",
            p, runs, failed_runs, max_suspects
        );
    }
    Ok(())
}

fn idle(d: &Daemons, sizes: &[usize], seconds: u64) -> Result<()> {
    let profile = &d.profile;
    println!("Idle cost per daemon over {seconds} s after settling, profile {profile}");
    println!(
        "{:>5} | {:>10} | {:>13} | {:>12} | {:>15} | {:>14}",
        "nodes", "CPU %", "RSS MiB med", "RSS MiB max", "bytes/s sent", "packets/s sent"
    );
    for &n in sizes {
        let mut c = d.cluster();
        c.start(n)?;
        // Joins trigger gossip and full syncs; measure the steady state after they are over.
        thread::sleep(Duration::from_secs(15));
        let sample = |c: &Cluster| -> Vec<(f64, f64, f64)> {
            c.live()
                .map(|d| {
                    let stats = c.get(&d.http, "/v1/self").ok();
                    let bytes = stats
                        .as_ref()
                        .and_then(|v| find_number(v, "bytes_sent"))
                        .unwrap_or(f64::NAN);
                    let packets = stats
                        .as_ref()
                        .and_then(|v| find_number(v, "packets_sent"))
                        .unwrap_or(f64::NAN);
                    (cpu_seconds(d.pid()).unwrap_or(f64::NAN), bytes, packets)
                })
                .collect()
        };
        let start = Instant::now();
        let before = sample(&c);
        thread::sleep(Duration::from_secs(seconds));
        let after = sample(&c);
        let secs = start.elapsed().as_secs_f64();
        let mut cpu: Vec<f64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a.0 - b.0) / secs * 100.0)
            .collect();
        let mut bytes: Vec<f64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a.1 - b.1) / secs)
            .collect();
        let mut packets: Vec<f64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a.2 - b.2) / secs)
            .collect();
        let mut rss: Vec<f64> = c
            .live()
            .map(|d| rss_kib(d.pid()).unwrap_or(f64::NAN) / 1024.0)
            .collect();
        println!(
            "{:>5} | {:>10.3} | {:>13.2} | {:>12.2} | {:>15.1} | {:>14.2}",
            n,
            median(&mut cpu),
            median(&mut rss.clone()),
            max(&rss),
            median(&mut bytes),
            median(&mut packets)
        );
        rss.clear();
    }
    Ok(())
}
