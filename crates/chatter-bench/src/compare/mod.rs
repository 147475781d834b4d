//! `chatter-bench compare`: the same scenarios on loopback for Chatter, HashiCorp Serf and
//! quickwit's chitchat, each with its default settings, in one run, with ratios.
//!
//! With `--encryption` (or `--systems ...,chatter-sealed,serf-encrypt`) the same run adds
//! Chatter with gossip encryption (`--encryption-mode sealed`, the key in `CHATTER_GOSSIP_KEY`)
//! and Serf with `-encrypt`, both under one key drawn for the run, and the ratio columns
//! "Chatter sealed / Chatter" and "Chatter sealed / Serf -encrypt".
//!
//! For each cluster size and each system, one cluster is started and taken through the
//! scenarios in this order: join convergence, idle cost, broadcast, key/value propagation,
//! SIGSTOP pauses, SIGKILL detection (victim restarted between kills), graceful leave. Then
//! every process of that system is killed (by PID, through the `Proc` drop guards) before the
//! next system starts, so the systems never share the machine.

pub(crate) mod chatter;
mod chitchat;
mod report;
pub(crate) mod serf;
pub(crate) mod system;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{cpu_seconds, rss_kib};
use system::{node_name, unix_ms, Arrival, KvMode, Seen, Status, System};

/// Everything `compare` is told on its command line.
pub struct Options {
    pub nodes: Vec<usize>,
    pub runs: usize,
    pub pauses: Vec<f64>,
    pub messages: usize,
    pub idle_seconds: u64,
    pub settle_seconds: u64,
    pub systems: Vec<String>,
    /// Adds `chatter-sealed` and `serf-encrypt` to `systems`.
    pub encryption: bool,
    pub chatterd: PathBuf,
    pub serf: PathBuf,
    pub chitchat: PathBuf,
    /// Flags of the "Chatter (Serf timings)" column; None: no such column.
    pub tuned_args: Option<Vec<String>>,
    /// Whether `tuned_args` start with [`SERF_TIMINGS`].
    pub serf_timings: bool,
    pub quick: bool,
    pub update_doc: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub command_line: String,
}

/// Label of Chatter with its defaults.
const CHATTER: &str = "Chatter";
/// Label of Chatter tuned to Serf's probe settings.
const CHATTER_TUNED: &str = "Chatter (Serf timings)";
/// Label of Chatter with gossip encryption.
const CHATTER_SEALED: &str = "Chatter sealed";
/// Label of Serf with its defaults.
const SERF: &str = "Serf";
/// Label of Serf with gossip encryption (`-encrypt`).
const SERF_ENCRYPT: &str = "Serf -encrypt";

/// A fresh 32-byte gossip key from the OS, base64 (what `CHATTER_GOSSIP_KEY` and
/// `serf agent -encrypt` take; Serf uses a 32-byte key for AES-256-GCM).
pub(crate) fn fresh_key() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; chatter_seal::KEY_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("read a key from /dev/urandom")?;
    let key = chatter_seal::Key::from_bytes(bytes);
    Ok(key.to_base64().as_str().to_owned())
}

/// Serf's LAN defaults (memberlist's `DefaultLANConfig`, which `serf agent` uses unless told
/// otherwise), as the chatterd flags that set the same values: (flag, value, Serf's setting).
/// memberlist has no confirmation count of its own: it expects `SuspicionMult - 2`.
pub const SERF_TIMINGS: [(&str, &str, &str); 10] = [
    ("probe-interval", "1s", "ProbeInterval 1s"),
    ("probe-timeout", "500ms", "ProbeTimeout 500ms"),
    ("indirect-checks", "3", "IndirectChecks 3"),
    ("suspicion-mult", "4", "SuspicionMult 4"),
    (
        "suspicion-max-timeout-mult",
        "6",
        "SuspicionMaxTimeoutMult 6",
    ),
    (
        "suspicion-confirmations",
        "2",
        "SuspicionMult - 2 = 2 confirmations expected (derived, not a setting)",
    ),
    ("gossip-interval", "200ms", "GossipInterval 200ms"),
    ("gossip-fanout", "3", "GossipNodes 3"),
    ("retransmit-mult", "4", "RetransmitMult 4"),
    ("sync-interval", "30s", "PushPullInterval 30s"),
];

/// The flags of the "Chatter (Serf timings)" column: with `serf`, [`SERF_TIMINGS`] followed by
/// `extra`, whose flags replace Serf's of the same name; without, `extra` alone. None: no
/// such column.
pub fn tuned_args(serf: bool, extra: Option<Vec<String>>) -> Option<Vec<String>> {
    if !serf {
        return extra;
    }
    let extra = extra.unwrap_or_default();
    let mut args = Vec::new();
    for (name, value, _) in SERF_TIMINGS {
        let flag = format!("--{name}");
        let replaced = extra
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if !replaced {
            args.push(flag);
            args.push(value.to_owned());
        }
    }
    args.extend(extra);
    Some(args)
}

/// Figures of one system at one cluster size.
#[derive(Default)]
pub struct Figures {
    /// Seconds from starting the joiners until every node saw every node alive.
    join_s: Option<f64>,
    /// Detection times of every survivor in every run (seconds); `detect_missed` survivors
    /// never reported the victim failed within the limit.
    detect_s: Vec<f64>,
    detect_missed: usize,
    detect_limit_s: f64,
    leave: Option<Leave>,
    /// Per broadcast: ms until the last other node had it; and every node's delay.
    bcast_all_ms: Vec<f64>,
    bcast_each_ms: Vec<f64>,
    bcast_na: bool,
    kv_all_ms: Vec<f64>,
    kv_each_ms: Vec<f64>,
    kv_mode: Option<KvMode>,
    /// (pause s, survivors that reported the victim failed, survivors).
    pauses: Vec<(f64, usize, usize)>,
    idle: Option<Idle>,
    errors: Vec<String>,
}

pub struct Leave {
    /// Seconds from the signal until every survivor saw the node left or failed.
    all_s: f64,
    left: usize,
    failed: usize,
    survivors: usize,
}

pub struct Idle {
    cpu_pct: f64,
    rss_mib: f64,
    rss_max_mib: f64,
    bytes_s: f64,
    packets_s: f64,
}

pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
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

pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn signal_pid(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) on the PID of a child this harness started and has not reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        bail!("kill({pid}, {sig}) failed");
    }
    Ok(())
}

/// The running slots of a cluster.
struct Cluster<'a> {
    sys: &'a mut dyn System,
    running: Vec<bool>,
}

impl Cluster<'_> {
    fn up(&self) -> Vec<usize> {
        (0..self.running.len())
            .filter(|&i| self.running[i])
            .collect()
    }

    /// Waits until every running node sees every running node alive; returns the Unix ms at
    /// which the last of them was first seen so (polled, about every 50 ms per node).
    fn wait_converged(&self, limit: Duration) -> Result<f64> {
        let up = self.up();
        let names: Vec<String> = up.iter().map(|&i| node_name(i)).collect();
        let mut done: BTreeMap<usize, f64> = BTreeMap::new();
        let deadline = Instant::now() + limit;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            for &i in &up {
                if done.contains_key(&i) {
                    continue;
                }
                let at = unix_ms();
                match self.sys.view(i) {
                    Ok(view) => {
                        let all = names.iter().all(|name| {
                            view.iter()
                                .any(|m| &m.name == name && m.status == Status::Alive)
                        });
                        if all {
                            done.insert(i, at);
                        }
                    }
                    Err(e) => last_error = format!("{e:#}"),
                }
            }
            if done.len() == up.len() {
                return Ok(done.values().copied().fold(0.0, f64::max));
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "{}: {} of {} nodes did not see all {} alive within {limit:?} {last_error}",
            self.sys.label(),
            up.len() - done.len(),
            up.len(),
            up.len()
        )
    }

    fn restart(&mut self, i: usize, n: usize) -> Result<()> {
        self.sys.spawn(i)?;
        self.sys.wait_ready(i, Duration::from_secs(20))?;
        self.running[i] = true;
        self.wait_converged(Duration::from_secs(90 + n as u64))?;
        Ok(())
    }

    /// Polls `survivors` until each reports `victim` with a status in `wanted`; returns, per
    /// survivor, (Unix ms of the change, status) or `None` if not within `limit`. The time is
    /// the node's own `since_ms` when it gives one, else the midpoint between the last poll
    /// that did not show the change and the first that did.
    fn wait_status(
        &self,
        survivors: &[usize],
        victim: &str,
        wanted: &[Status],
        t0: f64,
        limit: Duration,
    ) -> Vec<Option<(f64, Status)>> {
        let mut found: Vec<Option<(f64, Status)>> = vec![None; survivors.len()];
        let mut last_miss = vec![t0; survivors.len()];
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && found.iter().any(Option::is_none) {
            for (k, &i) in survivors.iter().enumerate() {
                if found[k].is_some() {
                    continue;
                }
                let at = unix_ms();
                let Ok(view) = self.sys.view(i) else { continue };
                match view.iter().find(|m| m.name == victim) {
                    Some(m) if wanted.contains(&m.status) => {
                        let when = match m.since_ms {
                            Some(s) if s >= t0 - 1.0 => s,
                            _ => (last_miss[k] + at) / 2.0,
                        };
                        found[k] = Some((when, m.status));
                    }
                    _ => last_miss[k] = at,
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        found
    }
}

/// Waits until each of `nodes` reports an arrival matching `matches`; returns each delay in ms
/// from `start_ms` (`None` for nodes that did not within `limit`).
fn wait_arrivals(
    rx: &Receiver<Seen>,
    nodes: &[usize],
    start_ms: f64,
    limit: Duration,
    matches: impl Fn(&Arrival) -> bool,
) -> Vec<Option<f64>> {
    let mut delays: BTreeMap<usize, Option<f64>> = nodes.iter().map(|&i| (i, None)).collect();
    let deadline = Instant::now() + limit;
    while delays.values().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Ok(seen) = rx.recv_timeout(left) else {
            continue;
        };
        if let Some(slot @ None) = delays.get_mut(&seen.node) {
            if matches(&seen.arrival) {
                *slot = Some(seen.at_ms - start_ms);
            }
        }
    }
    delays.into_values().collect()
}

fn make_system(label: &str, opts: &Options, key: Option<&str>) -> Result<Box<dyn System>> {
    let key = || {
        key.map(str::to_owned)
            .context("no gossip key drawn for the encrypted systems")
    };
    Ok(match label {
        CHATTER => Box::new(chatter::Chatter::new(
            CHATTER,
            opts.chatterd.clone(),
            Vec::new(),
        )),
        CHATTER_TUNED => Box::new(chatter::Chatter::new(
            CHATTER_TUNED,
            opts.chatterd.clone(),
            opts.tuned_args.clone().unwrap_or_default(),
        )),
        CHATTER_SEALED => Box::new(chatter::Chatter::with_env(
            CHATTER_SEALED,
            opts.chatterd.clone(),
            vec!["--encryption-mode".to_owned(), "sealed".to_owned()],
            vec![("CHATTER_GOSSIP_KEY".to_owned(), key()?)],
        )),
        SERF => Box::new(serf::Serf::new(SERF, opts.serf.clone(), None)?),
        SERF_ENCRYPT => Box::new(serf::Serf::new(
            SERF_ENCRYPT,
            opts.serf.clone(),
            Some(key()?),
        )?),
        "chitchat" => Box::new(chitchat::Chitchat::new(opts.chitchat.clone())),
        other => bail!("unknown system {other}"),
    })
}

/// Runs every scenario on one system at one size. An `Err` means the cluster could not be
/// started or did not converge; scenario errors are recorded in `fig.errors`.
fn run_system(sys: &mut dyn System, n: usize, opts: &Options, fig: &mut Figures) -> Result<()> {
    let label = sys.label();
    let mut c = Cluster {
        sys,
        running: vec![false; n],
    };
    // Join: the seed first, then all the others at once.
    c.sys.spawn(0)?;
    c.sys
        .wait_ready(0, Duration::from_secs(20))
        .with_context(|| format!("{label}: seed did not start"))?;
    c.running[0] = true;
    let t0 = unix_ms();
    for i in 1..n {
        c.sys.spawn(i)?;
    }
    for i in 1..n {
        c.sys
            .wait_ready(i, Duration::from_secs(30 + n as u64))
            .with_context(|| format!("{label}: {} did not start", node_name(i)))?;
        c.running[i] = true;
    }
    let converged = c.wait_converged(Duration::from_secs(90 + 2 * n as u64))?;
    fig.join_s = Some((converged - t0) / 1000.0);
    println!("  join: {:.2} s", (converged - t0) / 1000.0);

    match idle(&c, opts) {
        Ok(v) => fig.idle = Some(v),
        Err(e) => fig.errors.push(format!("idle: {e:#}")),
    }

    let (tx, rx) = mpsc::channel();
    c.sys.follow(tx)?;
    if let Err(e) = broadcast(&c, &rx, opts, fig) {
        fig.errors.push(format!("broadcast: {e:#}"));
    }
    if let Err(e) = kv(&c, &rx, opts, fig) {
        fig.errors.push(format!("key/value: {e:#}"));
    }
    drop(rx);
    if let Err(e) = pauses(&mut c, n, opts, fig) {
        fig.errors.push(format!("pause: {e:#}"));
    }
    if let Err(e) = detection(&mut c, n, opts, fig) {
        fig.errors.push(format!("detection: {e:#}"));
    }
    if let Err(e) = leave(&mut c, n, fig) {
        fig.errors.push(format!("leave: {e:#}"));
    }
    for e in &fig.errors {
        println!("  error: {e}");
    }
    Ok(())
}

fn idle(c: &Cluster, opts: &Options) -> Result<Idle> {
    // Joins cause gossip and full syncs; measure the steady state after them.
    thread::sleep(Duration::from_secs(opts.settle_seconds));
    let up = c.up();
    let sample = || -> Result<Vec<(f64, Option<system::Traffic>)>> {
        up.iter()
            .map(|&i| {
                let pid = c.sys.pid(i).context("not running")?;
                let cpu = cpu_seconds(pid).context("no /proc stat")?;
                Ok((cpu, c.sys.traffic(i)?))
            })
            .collect()
    };
    let start = Instant::now();
    let before = sample()?;
    thread::sleep(Duration::from_secs(opts.idle_seconds));
    let after = sample()?;
    let secs = start.elapsed().as_secs_f64();
    let mut cpu = Vec::new();
    let mut bytes = Vec::new();
    let mut packets = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        cpu.push((a.0 - b.0) / secs * 100.0);
        if let (Some(tb), Some(ta)) = (b.1, a.1) {
            bytes.push((ta.bytes_sent - tb.bytes_sent) / secs);
            packets.push((ta.packets_sent - tb.packets_sent) / secs);
        }
    }
    let rss: Vec<f64> = up
        .iter()
        .filter_map(|&i| c.sys.pid(i).and_then(rss_kib))
        .map(|k| k / 1024.0)
        .collect();
    // Mean, not median: one process uses a few 10 ms clock ticks in the whole window, so
    // the total over all nodes divided by N is the figure with a usable resolution.
    let v = Idle {
        cpu_pct: cpu.iter().sum::<f64>() / cpu.len().max(1) as f64,
        rss_mib: median(&rss),
        rss_max_mib: max(&rss),
        bytes_s: median(&bytes),
        packets_s: median(&packets),
    };
    println!(
        "  idle: cpu {:.3} %, rss {:.1} MiB, {:.1} B/s, {:.2} pkt/s",
        v.cpu_pct, v.rss_mib, v.bytes_s, v.packets_s
    );
    Ok(v)
}

fn broadcast(c: &Cluster, rx: &Receiver<Seen>, opts: &Options, fig: &mut Figures) -> Result<()> {
    let up = c.up();
    let n = up.len();
    let warmup = 3;
    for k in 0..warmup + opts.messages {
        let origin = up[(k * 7) % n];
        let seq = k as u64;
        let start = unix_ms();
        if !c.sys.broadcast(origin, seq)? {
            fig.bcast_na = true;
            return Ok(());
        }
        let others: Vec<usize> = up.iter().copied().filter(|&i| i != origin).collect();
        let delays = wait_arrivals(
            rx,
            &others,
            start,
            Duration::from_secs(15),
            |a| matches!(a, Arrival::Message(s) if *s == seq),
        );
        let missing = delays.iter().filter(|d| d.is_none()).count();
        if missing > 0 {
            bail!(
                "message {seq}: {missing} of {} nodes did not get it within 15 s",
                n - 1
            );
        }
        let delays: Vec<f64> = delays.into_iter().flatten().collect();
        if k >= warmup {
            fig.bcast_all_ms.push(max(&delays));
            fig.bcast_each_ms.extend(delays);
        }
        thread::sleep(Duration::from_millis(200));
    }
    println!(
        "  broadcast: to all {:.1} ms median, {:.1} ms max",
        median(&fig.bcast_all_ms),
        max(&fig.bcast_all_ms)
    );
    Ok(())
}

fn kv(c: &Cluster, rx: &Receiver<Seen>, opts: &Options, fig: &mut Figures) -> Result<()> {
    let up = c.up();
    let n = up.len();
    let key = "bench-key";
    let limit = Duration::from_secs(30);
    for k in 0..opts.messages {
        let origin = up[(k * 7 + 1) % n];
        let owner = node_name(origin);
        let value = format!("v{k}");
        let others: Vec<usize> = up.iter().copied().filter(|&i| i != origin).collect();
        let start = unix_ms();
        let Some(mode) = c.sys.set_key(origin, key, &value)? else {
            return Ok(());
        };
        fig.kv_mode = Some(mode);
        let delays = match mode {
            KvMode::Events => wait_arrivals(rx, &others, start, limit, |a| {
                matches!(a, Arrival::Key { owner: o, key: kk, value: v }
                    if *o == owner && kk == key && *v == value)
            }),
            KvMode::Poll => poll_key(c, &others, &owner, key, &value, start, limit),
        };
        let missing = delays.iter().filter(|d| d.is_none()).count();
        if missing > 0 {
            bail!(
                "write {k}: {missing} of {} nodes did not see it within {limit:?}",
                n - 1
            );
        }
        let delays: Vec<f64> = delays.into_iter().flatten().collect();
        fig.kv_all_ms.push(max(&delays));
        fig.kv_each_ms.extend(delays);
        thread::sleep(Duration::from_millis(200));
    }
    println!(
        "  key/value: to all {:.1} ms median, {:.1} ms max",
        median(&fig.kv_all_ms),
        max(&fig.kv_all_ms)
    );
    Ok(())
}

/// Polls `nodes` (round-robin, as fast as the answers come, 20 ms between rounds) until each
/// shows `owner`'s `key` = `value`; delay = midpoint of the last miss and the first hit.
fn poll_key(
    c: &Cluster,
    nodes: &[usize],
    owner: &str,
    key: &str,
    value: &str,
    start: f64,
    limit: Duration,
) -> Vec<Option<f64>> {
    let mut found: Vec<Option<f64>> = vec![None; nodes.len()];
    let mut last_miss = vec![start; nodes.len()];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && found.iter().any(Option::is_none) {
        for (k, &i) in nodes.iter().enumerate() {
            if found[k].is_some() {
                continue;
            }
            let at = unix_ms();
            match c.sys.poll_key(i, owner, key) {
                Ok(Some(v)) if v == value => found[k] = Some((last_miss[k] + at) / 2.0 - start),
                _ => last_miss[k] = at,
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    found
}

fn pauses(c: &mut Cluster, n: usize, opts: &Options, fig: &mut Figures) -> Result<()> {
    for (k, &p) in opts.pauses.iter().enumerate() {
        let victim = 1 + k % (n - 1);
        let name = node_name(victim);
        let survivors: Vec<usize> = c.up().into_iter().filter(|&i| i != victim).collect();
        let pid = c.sys.pid(victim).context("victim not running")?;
        signal_pid(pid, libc::SIGSTOP)?;
        let resume_at = Instant::now() + Duration::from_secs_f64(p);
        let watch_until = resume_at + Duration::from_secs(5);
        let mut reported: Vec<bool> = vec![false; survivors.len()];
        let mut resumed = false;
        while Instant::now() < watch_until {
            if !resumed && Instant::now() >= resume_at {
                signal_pid(pid, libc::SIGCONT)?;
                resumed = true;
            }
            for (s, &i) in survivors.iter().enumerate() {
                if let Ok(view) = c.sys.view(i) {
                    if view
                        .iter()
                        .any(|m| m.name == name && m.status == Status::Failed)
                    {
                        reported[s] = true;
                    }
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        if !resumed {
            signal_pid(pid, libc::SIGCONT)?;
        }
        let count = reported.iter().filter(|r| **r).count();
        fig.pauses.push((p, count, survivors.len()));
        println!(
            "  pause {p} s: reported failed by {count} of {}",
            survivors.len()
        );
        c.wait_converged(Duration::from_secs(90 + n as u64))
            .context("after the pause")?;
        thread::sleep(Duration::from_secs(2));
    }
    Ok(())
}

fn detection(c: &mut Cluster, n: usize, opts: &Options, fig: &mut Figures) -> Result<()> {
    let limit = Duration::from_secs(if opts.quick { 60 } else { 120 });
    fig.detect_limit_s = limit.as_secs_f64();
    for run in 0..opts.runs {
        // Never the seed (slot 0), so the victim can rejoin through it.
        let victim = 1 + run % (n - 1);
        let name = node_name(victim);
        let survivors: Vec<usize> = c.up().into_iter().filter(|&i| i != victim).collect();
        let t0 = unix_ms();
        c.sys.kill(victim)?;
        c.running[victim] = false;
        let found = c.wait_status(&survivors, &name, &[Status::Failed], t0, limit);
        let times: Vec<f64> = found
            .iter()
            .flatten()
            .map(|(at, _)| (at - t0) / 1000.0)
            .collect();
        fig.detect_missed += found.iter().filter(|f| f.is_none()).count();
        println!(
            "  kill {run}: median {:.2} s, max {:.2} s, {} of {} detected",
            median(&times),
            max(&times),
            times.len(),
            survivors.len()
        );
        fig.detect_s.extend(times);
        c.restart(victim, n).context("restarting the victim")?;
        // Let the rejoin's gossip settle so the next kill starts from a quiet cluster.
        thread::sleep(Duration::from_secs(2));
    }
    Ok(())
}

fn leave(c: &mut Cluster, n: usize, fig: &mut Figures) -> Result<()> {
    let victim = n - 1;
    let name = node_name(victim);
    let survivors: Vec<usize> = c.up().into_iter().filter(|&i| i != victim).collect();
    let t0 = unix_ms();
    c.sys.leave(victim)?;
    c.running[victim] = false;
    let found = c.wait_status(
        &survivors,
        &name,
        &[Status::Left, Status::Failed],
        t0,
        Duration::from_secs(90),
    );
    let left = found
        .iter()
        .flatten()
        .filter(|(_, s)| *s == Status::Left)
        .count();
    let failed = found
        .iter()
        .flatten()
        .filter(|(_, s)| *s == Status::Failed)
        .count();
    let times: Vec<f64> = found
        .iter()
        .flatten()
        .map(|(at, _)| (at - t0) / 1000.0)
        .collect();
    let all_s = if times.len() == survivors.len() {
        max(&times)
    } else {
        f64::NAN
    };
    println!(
        "  leave: {all_s:.2} s, left {left}, failed {failed}, of {}",
        survivors.len()
    );
    fig.leave = Some(Leave {
        all_s,
        left,
        failed,
        survivors: survivors.len(),
    });
    Ok(())
}

/// A protocol timing option of chatterd, and the `lan` profile's value as its help gives it.
#[derive(Debug, PartialEq)]
struct TimingFlag {
    name: String,
    lan: String,
}

/// The protocol timing options `chatterd --help` lists (none for a chatterd built before they
/// existed).
fn chatterd_timing_flags(opts: &Options) -> Vec<TimingFlag> {
    match std::process::Command::new(&opts.chatterd)
        .arg("--help")
        .output()
    {
        Ok(out) => parse_timing_help(&String::from_utf8_lossy(&out.stdout)),
        Err(_) => Vec::new(),
    }
}

/// The options of clap's long help whose description ends with every profile's value,
/// `[lan: 1s, wan: 5s, local: 200ms]`: chatterd's protocol timings.
fn parse_timing_help(help: &str) -> Vec<TimingFlag> {
    // An option starts a line (after at most 6 spaces); its description follows, indented
    // further.
    let mut options: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let text = line.trim_start();
        let indent = line.len() - text.len();
        if indent <= 6 && text.starts_with('-') {
            let name = text
                .split_whitespace()
                .map(|w| w.trim_end_matches(','))
                .find_map(|w| w.strip_prefix("--"))
                .unwrap_or_default();
            options.push((name.to_owned(), String::new()));
        } else if let Some((_, description)) = options.last_mut() {
            description.push(' ');
            description.push_str(text);
        }
    }
    options
        .into_iter()
        .filter_map(|(name, description)| {
            let (_, after) = description.split_once("[lan: ")?;
            let lan = after.split([',', ']']).next()?.trim().to_owned();
            Some(TimingFlag { name, lan })
        })
        .collect()
}

/// The paragraph on timings in the report: what the "Chatter (Serf timings)" column ran with,
/// and where the `lan` profile's values differ from Serf's.
fn timing_note(opts: &Options, flags: &[TimingFlag]) -> String {
    if flags.is_empty() {
        return match &opts.tuned_args {
            Some(args) => format!("Chatter (Serf timings) ran with `{}`.", args.join(" ")),
            None => "No \"Chatter tuned to Serf's probe settings\" column: this chatterd has \
                 no flag or config key for protocol timings (only `--profile lan|wan|local`)."
                .to_owned(),
        };
    }
    let lan = |name: &str| {
        flags
            .iter()
            .find(|f| f.name == name)
            .map_or("?", |f| f.lan.as_str())
    };
    let serf: Vec<&str> = SERF_TIMINGS
        .iter()
        .map(|(_, _, setting)| *setting)
        .collect();
    let column = match &opts.tuned_args {
        Some(args) if opts.serf_timings => format!(
            "Chatter (Serf timings) ran with `{}`: the values of Serf's LAN defaults \
             (memberlist's `DefaultLANConfig`: {}).",
            args.join(" "),
            serf.join(", ")
        ),
        Some(args) => format!("Chatter (Serf timings) ran with `{}`.", args.join(" ")),
        None => format!(
            "No \"Chatter (Serf timings)\" column in this run (`--chatter-serf-timings` adds \
             one: chatterd at the values of Serf's LAN defaults, {}).",
            serf.join(", ")
        ),
    };
    let differ: Vec<String> = SERF_TIMINGS
        .iter()
        .filter(|(name, value, _)| lan(name) != *value)
        .map(|(name, value, _)| format!("`{name}` {} (Serf {value})", lan(name)))
        .collect();
    let same: Vec<String> = SERF_TIMINGS
        .iter()
        .filter(|(name, value, _)| lan(name) == *value)
        .map(|(name, _, _)| format!("`{name}`"))
        .collect();
    let defaults = if differ.is_empty() {
        "Chatter's default `lan` profile has every one of these values.".to_owned()
    } else {
        format!(
            "Chatter's default `lan` profile (the Chatter column) differs from them in {}; \
             it has Serf's {}.",
            differ.join(", "),
            same.join(", ")
        )
    };
    format!(
        "{column} {defaults} memberlist has no counterpart to Chatter's ICMP shortcut, which caps a \
         suspicion at `unreachable-suspicion-timeout` ({} in `lan`) when ICMP port-unreachable \
         shows the process gone; it stays on in both Chatter columns \
         (`--chatter-tuned-args '--unreachable-suspicion-timeout 1h'` turns it off).",
        lan("unreachable-suspicion-timeout")
    )
}

pub fn run(mut opts: Options) -> Result<()> {
    if opts.quick {
        opts.nodes = vec![5];
        opts.runs = 1;
        opts.pauses = vec![2.0];
        opts.messages = 3;
        opts.idle_seconds = 5;
        opts.settle_seconds = 3;
    }
    if opts.nodes.iter().any(|&n| n < 3) {
        bail!("--nodes: every size must be at least 3");
    }
    let mut systems = opts.systems.clone();
    if opts.encryption {
        for s in ["chatter-sealed", "serf-encrypt"] {
            if !systems.iter().any(|x| x == s) {
                systems.push(s.to_owned());
            }
        }
    }
    let serf_missing = |opts: &Options| {
        which(&opts.serf).with_context(|| {
            format!(
                "Serf not found ({}): apt-get install -y serf, or leave it out with \
                 --systems chatter,chitchat",
                opts.serf.display()
            )
        })
    };
    let mut labels: Vec<String> = Vec::new();
    for s in &systems {
        match s.as_str() {
            "chatter" => {
                labels.push(CHATTER.to_owned());
                if opts.tuned_args.is_some() {
                    labels.push(CHATTER_TUNED.to_owned());
                }
            }
            "serf" => {
                labels.push(SERF.to_owned());
                serf_missing(&opts)?;
            }
            "chatter-sealed" => labels.push(CHATTER_SEALED.to_owned()),
            "serf-encrypt" => {
                labels.push(SERF_ENCRYPT.to_owned());
                serf_missing(&opts)?;
            }
            "chitchat" => {
                labels.push("chitchat".to_owned());
                if !opts.chitchat.exists() {
                    bail!(
                        "{} not found: cargo build --release -p chatter-bench-chitchat",
                        opts.chitchat.display()
                    );
                }
            }
            other => bail!(
                "--systems: unknown system {other} (chatter, serf, chitchat, chatter-sealed, \
                 serf-encrypt)"
            ),
        }
    }
    // One key for the run, shared by the encrypted systems (each runs alone).
    let key = if labels
        .iter()
        .any(|l| l == CHATTER_SEALED || l == SERF_ENCRYPT)
    {
        Some(fresh_key()?)
    } else {
        None
    };
    let flags = chatterd_timing_flags(&opts);
    if opts.serf_timings {
        let missing: Vec<&str> = SERF_TIMINGS
            .iter()
            .map(|(name, _, _)| *name)
            .filter(|name| !flags.iter().any(|f| f.name == *name))
            .collect();
        if !missing.is_empty() {
            bail!(
                "--chatter-serf-timings: {} has no --{} (built before the timing options? \
                 cargo build --release -p chatterd)",
                opts.chatterd.display(),
                missing.join(", --")
            );
        }
    }
    let timing_note = timing_note(&opts, &flags);
    println!("{timing_note}");

    let started = Instant::now();
    let mut figures: BTreeMap<(usize, String), Figures> = BTreeMap::new();
    let mut fatal: Vec<String> = Vec::new();
    for &n in &opts.nodes {
        for label in &labels {
            println!("== {label}, {n} nodes");
            let mut fig = Figures::default();
            let result = make_system(label, &opts, key.as_deref())
                .and_then(|mut sys| run_system(sys.as_mut(), n, &opts, &mut fig));
            if let Err(e) = result {
                println!("  FAILED: {e:#}");
                if is_chatter(label) {
                    fatal.push(format!("{label}, {n} nodes: {e:#}"));
                }
                fig.errors.push(format!("did not start or converge: {e:#}"));
            }
            figures.insert((n, label.clone()), fig);
        }
    }
    let elapsed = started.elapsed();
    let markdown = report::render(&opts, &labels, &figures, &timing_note, elapsed);
    println!("\n{markdown}");
    if let Some(path) = &opts.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &opts.update_doc {
        report::update_doc(path, &markdown)?;
        println!("updated {}", path.display());
    }
    // A peer's failure (Serf missing a user event, a Serf agent that exits when its first
    // join fails) is its own: the tables show it, but only Chatter's failures fail the run,
    // so the smoke test in CI measures this project and not the peers' flakiness.
    let (scenario_errors, peer_errors) =
        figures
            .iter()
            .fold((0usize, 0usize), |(own, peer), ((_, label), f)| {
                if is_chatter(label) {
                    (own + f.errors.len(), peer)
                } else {
                    (own, peer + f.errors.len())
                }
            });
    if peer_errors > 0 {
        println!(
            "{peer_errors} error(s) of the peer systems (see the tables): not Chatter's, not fatal"
        );
    }
    if !fatal.is_empty() {
        bail!(
            "{} system(s) failed to start or converge: {}",
            fatal.len(),
            fatal.join("; ")
        );
    }
    if scenario_errors > 0 {
        bail!("{scenario_errors} scenario error(s), see the tables");
    }
    Ok(())
}

/// Whether a system label names a Chatter variant (whose failures fail the run) rather than
/// a peer.
fn is_chatter(label: &str) -> bool {
    [CHATTER, CHATTER_TUNED, CHATTER_SEALED].contains(&label)
}

/// Resolves a program name through PATH (or checks a path).
fn which(program: &std::path::Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        return if program.exists() {
            Ok(program.to_path_buf())
        } else {
            bail!("{} does not exist", program.display())
        };
    }
    let path = std::env::var_os("PATH").context("no PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{} is not in PATH", program.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELP: &str = "\
Options:
      --listen <ADDR>
          UDP address to bind for gossip (port 0 picks a free port)

          [default: 0.0.0.0:2428]

  -h, --help
          Print help (see a summary with '-h')

Protocol timings (each overrides one value of --profile):
      --probe-interval <DURATION>
          Time between two probes started by this node. Shorter detects a dead member sooner
          [lan: 1s, wan: 5s, local: 200ms]

      --suspicion-mult <N>
          Lifeguard suspicion multiplier, see --probe-interval [lan: 5, wan: 6,
          local: 5]
";

    #[test]
    fn timing_options_and_their_lan_values_are_read_from_the_help() {
        let flags = parse_timing_help(HELP);
        assert_eq!(
            flags,
            [
                TimingFlag {
                    name: "probe-interval".into(),
                    lan: "1s".into()
                },
                TimingFlag {
                    name: "suspicion-mult".into(),
                    lan: "5".into()
                },
            ]
        );
        assert!(parse_timing_help("Options:\n      --listen <ADDR>\n          x\n").is_empty());
    }

    #[test]
    fn serf_timings_come_first_and_extra_flags_replace_them() {
        assert_eq!(tuned_args(false, None), None);
        let extra = vec!["--gossip-fanout".to_owned(), "4".to_owned()];
        assert_eq!(tuned_args(false, Some(extra.clone())), Some(extra.clone()));
        let args = tuned_args(true, None).unwrap();
        assert_eq!(args.len(), 2 * SERF_TIMINGS.len());
        assert_eq!(args[..2], ["--probe-interval", "1s"]);
        let args = tuned_args(true, Some(extra)).unwrap();
        assert_eq!(args.len(), 2 * SERF_TIMINGS.len());
        assert_eq!(args.iter().filter(|a| *a == "--gossip-fanout").count(), 1);
        assert_eq!(args[args.len() - 2..], ["--gossip-fanout", "4"]);
    }
}
