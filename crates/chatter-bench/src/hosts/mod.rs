//! `chatter-bench hosts`: Chatter and Serf on real hosts made of network namespaces (or of
//! containers of a locally built image, `--containers IMAGE`), one daemon per host at its own
//! address, faults made in the network between them (links cut,
//! partitions, one-way links, flapping links, random loss with delay and jitter from the
//! [`delay`] line) and in the processes (SIGKILL, SIGSTOP, restarts), with Markdown tables
//! side by side; and DNS seeding against dnsmasq ([`dns`], Chatter only).
//!
//! ```text
//! sudo target/release/chatter-bench hosts --nodes 5 --runs 3            # every scenario
//! sudo target/release/chatter-bench hosts --scenarios silent,loss --check
//! sudo target/release/chatter-bench hosts --scenarios loss --delay 20ms --jitter 50ms
//! sudo target/release/chatter-bench hosts --scenarios dns --systems chatter --check
//! sudo target/release/chatter-bench hosts --containers chatter --scenarios silent,pause,restart
//! sudo target/release/chatter-bench hosts --cleanup                     # leftovers of dead runs
//! ```
//!
//! The topology ([`topology`]) is made once per run and shared by the systems in turn: each
//! system's cluster is started, taken through the scenarios, and killed (by PID) before the
//! next one starts, with every fault undone between scenarios. `--check` fails the run when
//! Chatter breaks a rule of a scenario (a missed detection, a false verdict, a 5 s pause
//! declared failed, a key missing after a partition heals); Serf's results are reported, never
//! asserted.

pub mod delay;
mod discover;
mod dns;
mod report;
mod scenarios;
pub mod topology;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::compare::chatter::Chatter;
use crate::compare::serf::Serf;
use crate::compare::system::{node_name, unix_ms, Explanation, MemberView, Status, System};
use topology::{check_interrupted, HostKind, Topology};

/// The scenarios, in the order they run (`dns` on a cluster of its own, after the others,
/// Chatter only).
pub const SCENARIOS: [&str; 10] = [
    "silent",
    "crash",
    "pause",
    "partition",
    "asymmetric",
    "flapping",
    "loss",
    "restart",
    "discover",
    "dns",
];

/// Label of Chatter with its defaults (and the `--daemon-arg`s).
pub const CHATTER: &str = "Chatter";
/// Label of Serf with its defaults.
pub const SERF: &str = "Serf";

/// Everything `hosts` is told: its command line, and from the common flags the chatterd to
/// run and its extra flags.
#[derive(clap::Args)]
pub struct Options {
    /// Hosts (one daemon each).
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Trials of `silent` and `crash` (the victim is restored between them).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Scenarios: silent, crash, pause, partition, asymmetric, flapping,
    /// loss, restart; not by default: discover (Chatter only) and dns (Chatter only, needs
    /// dnsmasq).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "silent,crash,pause,partition,asymmetric,flapping,loss,restart"
    )]
    pub scenarios: Vec<String>,
    /// Systems: chatter, serf.
    #[arg(long, value_delimiter = ',', default_value = "chatter,serf")]
    pub systems: Vec<String>,
    /// SIGSTOP lengths of `pause`, in seconds.
    #[arg(long, value_delimiter = ',', default_value = "2,5,8,10")]
    pub pauses: Vec<f64>,
    /// Loss percentages of `loss`, each on every link between hosts.
    #[arg(long, value_delimiter = ',', default_value = "5,20")]
    pub losses: Vec<f64>,
    /// Length of each `loss` window, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Length of the `asymmetric` and `flapping` windows, in seconds.
    #[arg(long, default_value_t = 30)]
    pub window_seconds: u64,
    /// One-way delay of every packet between hosts in `loss` (`20ms`, `0.1s`; a bare number
    /// is ms), from the harness's NFQUEUE delay line in the switch.
    #[arg(long, default_value = "20ms", value_parser = delay::parse_duration)]
    pub delay: Duration,
    /// Jitter of that delay: each packet's delay is drawn uniformly within ± this (never
    /// below zero), as netem's `delay D J`.
    #[arg(long, default_value = "50ms", value_parser = delay::parse_duration)]
    pub jitter: Duration,
    /// Per-pair RTTs of the delay line (issue 13's coordinates), lines `A B RTT_MS` with host
    /// indices (pairs not listed get 2 x --delay).
    #[arg(long)]
    pub rtt_matrix: Option<PathBuf>,
    /// Exit non-zero when Chatter breaks a rule of a scenario (Serf is never asserted).
    #[arg(long)]
    pub check: bool,
    /// The serf binary.
    #[arg(long, default_value = "serf")]
    pub serf: PathBuf,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Hosts are containers of this locally built image (`docker build -t chatter .`, or the
    /// image `.ci/docker-test.sh` builds) rather than bare network namespaces: the daemons
    /// run inside them, Chatter as the image's `/usr/local/bin/chatterd` (the common
    /// `--chatterd` is not used), Serf as this machine's binary mounted at its own path.
    #[arg(long, value_name = "IMAGE")]
    pub containers: Option<String>,
    /// Only remove the namespaces, links and containers left by runs that died, then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// The chatterd binary (the common `--chatterd`).
    #[arg(skip)]
    pub chatterd: PathBuf,
    /// Extra flags of every chatterd (the common `--daemon-arg`s).
    #[arg(skip)]
    pub chatter_args: Vec<String>,
    /// The command line, as the report shows it.
    #[arg(skip)]
    pub command_line: String,
}

/// Polling period of the harness's member-table watches.
const POLL: Duration = Duration::from_millis(100);

/// A cluster of one system on the hosts: which slots run, which are cut off or frozen (not
/// polled: they cannot answer).
pub struct Hosts<'a> {
    pub sys: &'a mut dyn System,
    pub n: usize,
    pub running: Vec<bool>,
    pub cut: BTreeSet<usize>,
}

impl Hosts<'_> {
    /// Running slots the harness can reach.
    pub fn observers(&self) -> Vec<usize> {
        (0..self.n)
            .filter(|&i| self.running[i] && !self.cut.contains(&i))
            .collect()
    }

    /// Starts the seed, then every other slot at once; waits until all see all alive.
    pub fn start(&mut self) -> Result<f64> {
        let label = self.sys.label();
        self.sys.spawn(0)?;
        self.sys
            .wait_ready(0, Duration::from_secs(20))
            .with_context(|| format!("{label}: seed did not start"))?;
        self.running[0] = true;
        let t0 = unix_ms();
        for i in 1..self.n {
            self.sys.spawn(i)?;
        }
        for i in 1..self.n {
            self.sys
                .wait_ready(i, Duration::from_secs(30 + self.n as u64))
                .with_context(|| format!("{label}: {} did not start", node_name(i)))?;
            self.running[i] = true;
        }
        let at = self.wait_converged(Duration::from_secs(60 + 2 * self.n as u64))?;
        Ok((at - t0) / 1000.0)
    }

    /// Starts slot `i` again (a new life) and waits until it is ready.
    pub fn respawn(&mut self, i: usize) -> Result<()> {
        self.sys.spawn(i)?;
        self.sys.wait_ready(i, Duration::from_secs(20))?;
        self.running[i] = true;
        Ok(())
    }

    /// Waits until every running node sees every running node alive; returns the Unix ms at
    /// which the last of them was first seen so.
    pub fn wait_converged(&self, limit: Duration) -> Result<f64> {
        let up: Vec<usize> = (0..self.n).filter(|&i| self.running[i]).collect();
        let names: Vec<String> = up.iter().map(|&i| node_name(i)).collect();
        let at = self.wait_views(&up, limit, |view| {
            names.iter().all(|name| {
                view.iter()
                    .any(|m| &m.name == name && m.status == Status::Alive)
            })
        });
        match at.iter().copied().collect::<Option<Vec<f64>>>() {
            Some(times) => Ok(times.into_iter().fold(0.0, f64::max)),
            None => bail!(
                "{}: {} of {} nodes did not see all {} alive within {limit:?}",
                self.sys.label(),
                at.iter().filter(|t| t.is_none()).count(),
                up.len(),
                up.len()
            ),
        }
    }

    /// Polls `nodes` until `done` holds for each one's member table; per node the Unix ms at
    /// which it was first seen to hold (midpoint of the last miss and the first hit), `None`
    /// if not within `limit` (or on SIGINT).
    pub fn wait_views(
        &self,
        nodes: &[usize],
        limit: Duration,
        done: impl Fn(&[MemberView]) -> bool,
    ) -> Vec<Option<f64>> {
        let start = unix_ms();
        let mut found: Vec<Option<f64>> = vec![None; nodes.len()];
        let mut last_miss = vec![start; nodes.len()];
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline
            && found.iter().any(Option::is_none)
            && check_interrupted().is_ok()
        {
            for (k, &i) in nodes.iter().enumerate() {
                if found[k].is_some() {
                    continue;
                }
                let at = unix_ms();
                match self.sys.view(i) {
                    Ok(view) if done(&view) => found[k] = Some((last_miss[k] + at) / 2.0),
                    _ => last_miss[k] = at,
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        found
    }

    /// Prints why the observer that listed `member` failed last (of `found`, from
    /// [`Hosts::wait_status`]) did so, when the system says: what held the verdict back.
    pub fn explain_last(&self, observers: &[usize], found: &[Option<f64>], member: &str, t0: f64) {
        self.explain_slowest(observers, found, &[member.to_owned()], t0);
    }

    /// Prints why the slowest of `observers` (by `found`) listed the last of `members` it
    /// failed as it did, when the system says.
    pub fn explain_slowest(
        &self,
        observers: &[usize],
        found: &[Option<f64>],
        members: &[String],
        t0: f64,
    ) {
        let slowest = observers
            .iter()
            .zip(found)
            .filter_map(|(&i, at)| at.map(|at| (i, at)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, _)) = slowest else { return };
        let mut last: Option<(&str, Explanation)> = None;
        for member in members {
            match self.sys.explain(i, member, t0) {
                Ok(Some(e)) => {
                    let later = last.as_ref().is_none_or(|(_, l)| {
                        e.failed_at_ms.unwrap_or(f64::MAX) > l.failed_at_ms.unwrap_or(f64::MAX)
                    });
                    if later {
                        last = Some((member, e));
                    }
                }
                Ok(None) => {}
                Err(e) => println!("    {}: no evidence of {member}: {e:#}", node_name(i)),
            }
        }
        if let Some((member, e)) = last {
            println!(
                "    {} (last to list it) on {member}: {}",
                node_name(i),
                e.line
            );
        }
    }

    /// Polls `observers` until each lists `member` with a status in `wanted`: per observer the
    /// Unix ms of the change (the node's own `since_ms` when it gives one, else the polling
    /// midpoint), `None` if not within `limit`.
    pub fn wait_status(
        &self,
        observers: &[usize],
        member: &str,
        wanted: &[Status],
        t0: f64,
        limit: Duration,
    ) -> Vec<Option<f64>> {
        let mut found: Vec<Option<f64>> = vec![None; observers.len()];
        let mut last_miss = vec![t0; observers.len()];
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline
            && found.iter().any(Option::is_none)
            && check_interrupted().is_ok()
        {
            for (k, &i) in observers.iter().enumerate() {
                if found[k].is_some() {
                    continue;
                }
                let at = unix_ms();
                let Ok(view) = self.sys.view(i) else { continue };
                match view.iter().find(|m| m.name == member) {
                    Some(m) if wanted.contains(&m.status) => {
                        found[k] = Some(match m.since_ms {
                            Some(s) if s >= t0 - 1.0 && s <= at + 1.0 => s,
                            _ => (last_miss[k] + at) / 2.0,
                        });
                    }
                    _ => last_miss[k] = at,
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        found
    }
}

/// Every status change each observer showed for each member while watched.
#[derive(Default)]
pub struct Watch {
    last: BTreeMap<(usize, String), Status>,
    /// Status changes per (observer, member).
    pub changes: BTreeMap<(usize, String), usize>,
    /// (observer, member, status) for every failed or left status ever seen.
    pub verdicts: BTreeSet<(usize, String, Status)>,
    /// Every verdict as it was first seen: (observer, member, time since the watch began).
    /// A member listed failed, then alive, then failed again in one view is two verdicts.
    pub verdict_times: Vec<(usize, String, Duration)>,
    /// When the first sample was taken.
    began: Option<Instant>,
    /// Polls that got no answer.
    pub unanswered: usize,
    pub polls: usize,
}

impl Watch {
    /// Reads every observer's member table once.
    pub fn sample(&mut self, sys: &dyn System, observers: &[usize]) {
        let began = *self.began.get_or_insert_with(Instant::now);
        for &o in observers {
            self.polls += 1;
            let Ok(view) = sys.view(o) else {
                self.unanswered += 1;
                continue;
            };
            for m in view {
                let verdict = matches!(m.status, Status::Failed | Status::Left);
                if verdict {
                    self.verdicts.insert((o, m.name.clone(), m.status));
                }
                let key = (o, m.name);
                let was_verdict = self
                    .last
                    .get(&key)
                    .is_some_and(|s| matches!(s, Status::Failed | Status::Left));
                if verdict && !was_verdict {
                    self.verdict_times.push((o, key.1.clone(), began.elapsed()));
                }
                match self.last.insert(key.clone(), m.status) {
                    Some(before) if before != m.status => {
                        *self.changes.entry(key).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Samples `observers` every [`POLL`] for `length`, calling `at(elapsed)` before each
    /// sample (to apply scheduled faults).
    pub fn run(
        &mut self,
        sys: &dyn System,
        observers: &[usize],
        length: Duration,
        mut at: impl FnMut(Duration) -> Result<()>,
    ) -> Result<()> {
        let start = Instant::now();
        self.began = Some(start);
        while start.elapsed() < length {
            check_interrupted()?;
            at(start.elapsed())?;
            self.sample(sys, observers);
            thread::sleep(POLL);
        }
        Ok(())
    }

    /// The failed or left verdicts seen, as `observer: member status`, except those `allowed`.
    pub fn verdicts_except(&self, allowed: impl Fn(usize, &str) -> bool) -> Vec<String> {
        self.verdicts
            .iter()
            .filter(|(o, m, _)| !allowed(*o, m))
            .map(|(o, m, s)| format!("{} lists {m} {}", node_name(*o), status_word(*s)))
            .collect()
    }

    /// The largest number of changes of one member in one observer's view.
    pub fn max_changes(&self) -> usize {
        self.changes.values().copied().max().unwrap_or(0)
    }

    pub fn total_changes(&self) -> usize {
        self.changes.values().sum()
    }
}

/// A status as the tables write it.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Alive => "alive",
        Status::Suspect => "suspect",
        Status::Failed => "failed",
        Status::Left => "left",
        Status::Other => "other",
    }
}

/// Where the Dockerfile puts chatterd in the image.
const IMAGE_CHATTERD: &str = "/usr/local/bin/chatterd";

/// Whether this chatterd (of `image`, when given) has `--data-dir` (the restart scenario
/// needs it).
fn has_data_dir(chatterd: &Path, image: Option<&str>) -> bool {
    let mut cmd = match image {
        Some(image) => {
            let mut cmd = std::process::Command::new("docker");
            cmd.args([
                "run",
                "--rm",
                "--pull",
                "never",
                "--network",
                "none",
                "--entrypoint",
            ])
            .arg(IMAGE_CHATTERD)
            .arg(image);
            cmd
        }
        None => std::process::Command::new(chatterd),
    };
    cmd.arg("--help")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("--data-dir"))
        .unwrap_or(false)
}

/// `program` as an absolute path: itself if it has a directory, else the first match on
/// `PATH`.
fn absolute_program(program: &Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        return std::path::absolute(program)
            .with_context(|| format!("the absolute path of {}", program.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow!("{} is not on PATH", program.display()))
}

/// What the hosts are made of, with the mounts a container needs: the temporary directory
/// (data dirs, Serf's configuration files) and the Serf binary, each at its own path.
fn host_kind(opts: &Options, serf: Option<&Path>) -> Result<HostKind> {
    let Some(image) = &opts.containers else {
        return Ok(HostKind::Namespaces);
    };
    let tmp = std::env::temp_dir();
    let tmp = tmp.display();
    let mut mounts = vec![format!("{tmp}:{tmp}")];
    if let Some(serf) = serf {
        mounts.push(format!("{0}:{0}:ro", serf.display()));
    }
    Ok(HostKind::Containers {
        image: image.clone(),
        mounts,
    })
}

/// A fresh bearer token for the daemons' HTTP APIs, which listen on the hosts' addresses.
fn fresh_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("read a token from /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Only removes the leftovers of dead runs.
pub fn cleanup() -> Result<()> {
    topology::preflight()?;
    let removed = topology::clean_stale()?;
    if removed.is_empty() {
        println!("no leftovers of dead runs");
    } else {
        println!("removed the leftovers of {}", removed.join(", "));
    }
    Ok(())
}

pub fn run(mut opts: Options) -> Result<()> {
    if opts.nodes < 4 {
        bail!("--nodes: at least 4 (a partition needs two sides of two)");
    }
    if opts.nodes > topology::MAX_HOSTS {
        bail!("--nodes: at most {}", topology::MAX_HOSTS);
    }
    if opts.runs == 0 {
        bail!("--runs: at least 1");
    }
    for s in &opts.scenarios {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!("--scenarios: unknown {s} ({})", SCENARIOS.join(", "));
        }
    }
    let mut labels = Vec::new();
    for s in &opts.systems {
        match s.as_str() {
            "chatter" => labels.push(CHATTER),
            "serf" => labels.push(SERF),
            other => bail!("--systems: unknown {other} (chatter, serf)"),
        }
    }
    if labels.contains(&SERF) && !serf_present(&opts.serf) {
        bail!(
            "Serf not found ({}): apt-get install -y serf, or --systems chatter",
            opts.serf.display()
        );
    }
    topology::preflight()?;
    let removed = topology::clean_stale()?;
    if !removed.is_empty() {
        println!("removed the leftovers of dead runs: {}", removed.join(", "));
    }
    let data_dir = has_data_dir(&opts.chatterd, opts.containers.as_deref());
    let serf = if labels.contains(&SERF) && opts.containers.is_some() {
        let serf = absolute_program(&opts.serf)?;
        opts.serf.clone_from(&serf);
        Some(serf)
    } else {
        None
    };
    let kind = host_kind(&opts, serf.as_deref())?;
    if opts.containers.is_some() {
        opts.chatterd = PathBuf::from(IMAGE_CHATTERD);
    }
    let matrix = match &opts.rtt_matrix {
        Some(path) => delay::RttMatrix::read(path, opts.nodes)?,
        None => delay::RttMatrix::default(),
    };
    let mut topo = Topology::create(opts.nodes, &kind).context("building the hosts")?;
    topo.set_rtt_matrix(matrix);
    let what = match &opts.containers {
        Some(image) => format!("containers of {image}"),
        None => "namespaces".to_owned(),
    };
    println!(
        "{} hosts on {} ({what} chb{}-0..{})",
        opts.nodes,
        topo.subnet(),
        std::process::id(),
        opts.nodes - 1
    );
    let token = fresh_token()?;
    let data_root =
        std::env::temp_dir().join(format!("chatter-bench-hosts-{}", std::process::id()));
    let restarts = data_dir && opts.scenarios.iter().any(|s| s == "restart");
    if restarts {
        for i in 0..opts.nodes {
            let dir = data_root.join(node_name(i));
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        }
    }
    let started = Instant::now();
    let mut results: BTreeMap<&str, scenarios::Results> = BTreeMap::new();
    // `dns` runs a cluster of its own; the others share one per system.
    let shared = opts.scenarios.iter().any(|s| s != "dns");
    for label in labels.iter().filter(|_| shared) {
        println!("== {label}, {} hosts", opts.nodes);
        let mut sys: Box<dyn System> = match *label {
            CHATTER => {
                let mut chatter =
                    Chatter::new(CHATTER, opts.chatterd.clone(), opts.chatter_args.clone())
                        .placed(topo.placement(), Some(token.clone()));
                if restarts {
                    chatter = chatter.with_data_dirs(data_root.clone());
                }
                Box::new(chatter)
            }
            _ => Box::new(Serf::new(SERF, opts.serf.clone(), None)?.placed(topo.placement())),
        };
        let mut res = scenarios::Results::default();
        let outcome = scenarios::run_all(
            sys.as_mut(),
            &mut topo,
            &opts,
            data_dir,
            &data_root,
            &mut res,
        );
        // The processes go before the next system starts (and before the topology).
        drop(sys);
        if let Err(e) = outcome {
            println!("  FAILED: {e:#}");
            res.fatal = Some(format!("{e:#}"));
        }
        topo.reset()?;
        results.insert(*label, res);
        check_interrupted()?;
    }
    let _ = std::fs::remove_dir_all(&data_root);
    let dns = (labels.contains(&CHATTER) && opts.scenarios.iter().any(|s| s == "dns")).then(|| {
        println!("== {CHATTER}, DNS seeding on {} hosts", opts.nodes);
        dns::run(&topo, &opts, &token)
    });
    check_interrupted()?;
    let mut markdown = report::render(&opts, &labels, &results, data_dir, started.elapsed());
    if let Some(d) = &dns {
        markdown.push_str(&dns::render(d));
    }
    println!("\n{markdown}");
    if let Some(path) = &opts.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("write {}", path.display()))?;
    }
    drop(topo);
    let mut broken: Vec<String> = results
        .get(CHATTER)
        .map(scenarios::Results::violations)
        .unwrap_or_default();
    broken.extend(dns.iter().flat_map(dns::Dns::violations));
    if broken.is_empty() {
        println!("Chatter kept every rule of the scenarios run");
    } else {
        println!("Chatter broke {} rule(s):", broken.len());
        for b in &broken {
            println!("  - {b}");
        }
        if opts.check {
            bail!("--check: Chatter broke {} rule(s)", broken.len());
        }
    }
    Ok(())
}

fn serf_present(serf: &std::path::Path) -> bool {
    std::process::Command::new(serf)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}
