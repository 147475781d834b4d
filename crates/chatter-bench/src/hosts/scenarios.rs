//! The scenarios of `chatter-bench hosts`, each on a converged cluster, each leaving the
//! network as it found it (every fault undone) and the cluster converged again.

use std::collections::BTreeSet;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::delay::DelayStats;
use super::topology::{check_interrupted, Impairment, Topology};
use super::{Hosts, Options, Watch, CHATTER, POLL};
use crate::compare::system::{node_name, unix_ms, Status, System};
use crate::compare::{max, median};

/// How long survivors get to list a cut or killed host failed.
const DETECT_LIMIT: Duration = Duration::from_secs(90);
/// How long a cluster gets to be one again after a fault is undone (Serf retries failed
/// members every 30 s; Chatter contacts seeds and failed members now and then).
const REJOIN_LIMIT: Duration = Duration::from_secs(150);
/// How long a restarted node gets to be alive everywhere with its key back (a restart with
/// a data dir is a new life that refutes at once and brings its state from disk).
const RESTART_LIMIT: Duration = Duration::from_secs(60);
/// Quiet time after a cluster converged again, so the next trial starts from a settled one.
const SETTLE: Duration = Duration::from_secs(2);
/// Pauses up to this long must never be declared failed (the pause tolerance).
pub const TOLERATED_PAUSE_S: f64 = 5.0;
/// Length of one flapping cycle: the link down for [`FLAP_DOWN`], then up for the rest.
const FLAP_CYCLE: Duration = Duration::from_secs(5);
const FLAP_DOWN: Duration = Duration::from_secs(2);

/// Detection figures of `silent` or `crash`.
#[derive(Default)]
pub struct Detect {
    /// Per trial: seconds until the last survivor listed the victim failed (trials in which
    /// every survivor did).
    pub last_s: Vec<f64>,
    /// Every survivor's detection time, over all trials.
    pub each_s: Vec<f64>,
    /// (survivor, trial) pairs that never listed the victim failed within the limit.
    pub missed: usize,
    pub pairs: usize,
    /// Per trial: seconds from undoing the fault until every node lists every node alive.
    pub back_s: Vec<f64>,
}

/// One SIGSTOP length: survivors that listed the victim failed.
pub struct Pause {
    pub seconds: f64,
    pub failed_by: usize,
    pub survivors: usize,
}

/// The partition's figures.
#[derive(Default)]
pub struct Partition {
    pub side_a: Vec<usize>,
    pub side_b: Vec<usize>,
    /// Seconds until every node of A listed every node of B failed (and the other way).
    pub a_fails_b_s: Option<f64>,
    pub b_fails_a_s: Option<f64>,
    /// Nodes whose API answered during the cut, of all.
    pub answering: usize,
    /// Whether the system has key/value state (or tags) to write.
    pub kv: bool,
    /// Seconds until the key written on each side was on its whole side.
    pub side_spread_s: Option<f64>,
    /// Seconds from healing until every node listed every node alive.
    pub heal_s: Option<f64>,
    /// Seconds from healing until both keys were on every node.
    pub keys_s: Option<f64>,
    /// (node, key) pairs still missing at the limit.
    pub keys_missing: usize,
}

/// A watched window (`asymmetric`, `flapping`, one `loss` level).
#[derive(Default)]
pub struct Window {
    /// Failed or left verdicts the rules forbid, as `observer lists member failed`.
    pub false_verdicts: Vec<String>,
    /// Verdicts the rules allow (the two ends of a one-way link about each other; the
    /// flapping member in the first outage that got a verdict, once per observer).
    pub allowed_verdicts: usize,
    /// Every verdict, counted again each time a member listed alive was listed failed or
    /// left again in one view.
    pub verdict_count: usize,
    pub max_changes: usize,
    pub total_changes: usize,
    pub polls: usize,
    pub unanswered: usize,
    /// Seconds from undoing the fault until one cluster again.
    pub back_s: Option<f64>,
}

impl Window {
    fn from_watch(w: &Watch, false_verdicts: Vec<String>) -> Window {
        Window {
            allowed_verdicts: w.verdicts.len().saturating_sub(false_verdicts.len()),
            verdict_count: w.verdict_times.len(),
            false_verdicts,
            max_changes: w.max_changes(),
            total_changes: w.total_changes(),
            polls: w.polls,
            unanswered: w.unanswered,
            back_s: None,
        }
    }
}

/// One loss level.
pub struct Loss {
    pub pct: f64,
    pub delay_applied: bool,
    /// The delay line's check and seed (when `delay_applied`).
    pub impairment: Impairment,
    /// What the delay line did over the window.
    pub delay_stats: Option<DelayStats>,
    pub window: Window,
}

/// The rolling restart's figures.
#[derive(Default)]
pub struct Restart {
    /// Per restart: seconds until the node was alive everywhere and its key back everywhere.
    pub back_s: Vec<f64>,
    /// Restarts after which that did not happen within the limit.
    pub not_back: usize,
    pub false_verdicts: Vec<String>,
    /// (node, key) pairs missing after the last restart.
    pub keys_missing: usize,
    pub keys_total: usize,
}

/// Everything one system did.
#[derive(Default)]
pub struct Results {
    pub join_s: Option<f64>,
    pub silent: Option<Detect>,
    pub crash: Option<Detect>,
    pub pause: Vec<Pause>,
    pub partition: Option<Partition>,
    pub asymmetric: Option<Window>,
    pub flapping: Option<Window>,
    pub loss: Vec<Loss>,
    pub restart: Option<Restart>,
    pub restart_skipped: Option<String>,
    /// LAN discovery (Chatter only; `hosts/discover.rs`).
    pub discover: Option<super::discover::Report>,
    /// (scenario, error) of scenarios that could not finish.
    pub errors: Vec<(String, String)>,
    /// The cluster could not be started or brought back: later scenarios did not run.
    pub fatal: Option<String>,
}

impl Results {
    /// The rules this system broke (only ever asserted for Chatter).
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(f) = &self.fatal {
            v.push(format!("cluster failed: {f}"));
        }
        for (s, e) in &self.errors {
            v.push(format!("{s}: {e}"));
        }
        for (name, d) in [("silent", &self.silent), ("crash", &self.crash)] {
            if let Some(d) = d {
                if d.missed > 0 {
                    v.push(format!(
                        "{name}: {} of {} survivor x trial pairs never listed the victim failed",
                        d.missed, d.pairs
                    ));
                }
            }
        }
        for p in &self.pause {
            if p.seconds <= TOLERATED_PAUSE_S && p.failed_by > 0 {
                v.push(format!(
                    "pause: a {} s pause listed failed by {} of {}",
                    p.seconds, p.failed_by, p.survivors
                ));
            }
        }
        if let Some(p) = &self.partition {
            if p.a_fails_b_s.is_none() || p.b_fails_a_s.is_none() {
                v.push("partition: a side did not list the other failed".to_owned());
            }
            if p.answering < p.side_a.len() + p.side_b.len() {
                v.push(format!(
                    "partition: {} nodes answered during the cut, of {}",
                    p.answering,
                    p.side_a.len() + p.side_b.len()
                ));
            }
            if p.heal_s.is_none() {
                v.push("partition: not one cluster again after healing".to_owned());
            }
            if p.kv && (p.keys_missing > 0 || p.keys_s.is_none()) {
                v.push(format!(
                    "partition: {} key copies missing after healing",
                    p.keys_missing
                ));
            }
        }
        for (name, w) in [
            ("asymmetric", &self.asymmetric),
            ("flapping", &self.flapping),
        ] {
            if let Some(w) = w {
                if !w.false_verdicts.is_empty() {
                    v.push(format!("{name}: {}", w.false_verdicts.join(", ")));
                }
            }
        }
        for l in &self.loss {
            if let Some(broken) = delay_line_broken(l) {
                v.push(format!("loss {} %: {broken}", l.pct));
            }
            if !l.window.false_verdicts.is_empty() {
                v.push(format!(
                    "loss {} %: {}",
                    l.pct,
                    l.window.false_verdicts.join(", ")
                ));
            }
        }
        if let Some(d) = &self.discover {
            v.extend(d.violations());
        }
        if let Some(r) = &self.restart {
            if !r.false_verdicts.is_empty() {
                v.push(format!("restart: {}", r.false_verdicts.join(", ")));
            }
            if r.keys_missing > 0 || r.not_back > 0 {
                v.push(format!(
                    "restart: {} key copies missing, {} restarts not back within the limit",
                    r.keys_missing, r.not_back
                ));
            }
        }
        v
    }
}

/// Starts the cluster and runs the chosen scenarios; `Err` when the cluster cannot be started
/// or brought back to one after a failed scenario.
pub fn run_all(
    sys: &mut dyn System,
    topo: &mut Topology,
    opts: &Options,
    data_dir: bool,
    data_root: &Path,
    res: &mut Results,
) -> Result<()> {
    let label = sys.label();
    let n = opts.nodes;
    let mut c = Hosts {
        sys,
        n,
        running: vec![false; n],
        cut: BTreeSet::new(),
    };
    let join = c.start()?;
    println!("  join: {join:.2} s");
    res.join_s = Some(join);
    for s in &opts.scenarios {
        check_interrupted()?;
        let outcome = match s.as_str() {
            "silent" => silent(&mut c, topo, opts).map(|d| res.silent = Some(d)),
            "crash" => crash(&mut c, opts).map(|d| res.crash = Some(d)),
            "pause" => pauses(&mut c, opts, &mut res.pause),
            "partition" => partition(&mut c, topo).map(|p| res.partition = Some(p)),
            "asymmetric" => asymmetric(&mut c, topo, opts).map(|w| res.asymmetric = Some(w)),
            "flapping" => flapping(&mut c, topo, opts).map(|w| res.flapping = Some(w)),
            "loss" => loss(&mut c, topo, opts, &mut res.loss),
            "restart" => {
                if label != CHATTER {
                    res.restart_skipped = Some(
                        "n/a: Serf has no key/value state to keep (its -snapshot keeps members only)"
                            .to_owned(),
                    );
                    Ok(())
                } else if !data_dir {
                    let why = format!("skipped: {} has no --data-dir", opts.chatterd.display());
                    println!("  restart: {why}");
                    res.restart_skipped = Some(why);
                    Ok(())
                } else {
                    restart(&mut c, data_root).map(|r| res.restart = Some(r))
                }
            }
            // Serf has no multicast discovery: Chatter only.
            "discover" if label != CHATTER => Ok(()),
            "discover" => {
                super::discover::run(&topo.placement(), opts).map(|d| res.discover = Some(d))
            }
            // On a cluster of its own (`hosts::run`).
            "dns" => Ok(()),
            other => bail!("unknown scenario {other}"),
        };
        if let Err(e) = outcome {
            check_interrupted()?;
            println!("  {s}: error: {e:#}");
            res.errors.push((s.clone(), format!("{e:#}")));
            // Back to a known state: no fault, every slot running, one cluster.
            topo.reset()?;
            c.cut.clear();
            for i in 0..n {
                if let Some(pid) = c.sys.pid(i) {
                    signal(pid, libc::SIGCONT)?;
                }
                if !c.running[i] || c.sys.pid(i).is_none() {
                    c.sys.kill(i)?;
                    c.respawn(i)?;
                }
            }
            c.wait_converged(REJOIN_LIMIT)
                .with_context(|| format!("bringing the cluster back after {s}"))?;
        }
    }
    Ok(())
}

fn signal(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) on the PID of a child this harness started and has not reaped.
    if unsafe { libc::kill(pid, sig) } != 0 {
        bail!("kill({pid}, {sig}) failed");
    }
    Ok(())
}

/// Survivors' detection times of `victim`, from `t0`; records them in `d`.
fn record(d: &mut Detect, what: &str, found: &[Option<f64>], t0: f64) {
    let times: Vec<f64> = found
        .iter()
        .flatten()
        .map(|at| (at - t0) / 1000.0)
        .collect();
    let missed = found.iter().filter(|f| f.is_none()).count();
    d.pairs += found.len();
    d.missed += missed;
    if missed == 0 {
        d.last_s.push(max(&times));
    }
    println!(
        "  {what}: last survivor {:.2} s, median {:.2} s, {} of {} detected",
        max(&times),
        median(&times),
        times.len(),
        found.len()
    );
    d.each_s.extend(times);
}

/// `silent`: the victim's link is cut (the host vanishes); survivors must list it failed.
fn silent(c: &mut Hosts, topo: &Topology, opts: &Options) -> Result<Detect> {
    let mut d = Detect::default();
    for run in 0..opts.runs {
        // Never the seed (slot 0): restarts and rejoins go through it.
        let victim = 1 + run % (c.n - 1);
        let name = node_name(victim);
        let survivors: Vec<usize> = c.observers().into_iter().filter(|&i| i != victim).collect();
        let t0 = unix_ms();
        topo.cut(victim)?;
        c.cut.insert(victim);
        let found = c.wait_status(&survivors, &name, &[Status::Failed], t0, DETECT_LIMIT);
        check_interrupted()?;
        record(&mut d, &format!("cut {name} (trial {run})"), &found, t0);
        c.explain_last(&survivors, &found, &name, t0);
        topo.restore(victim)?;
        c.cut.remove(&victim);
        let t1 = unix_ms();
        let at = c
            .wait_converged(REJOIN_LIMIT)
            .context("after restoring the link")?;
        d.back_s.push((at - t1) / 1000.0);
        println!(
            "    alive everywhere again {:.2} s after the restore",
            (at - t1) / 1000.0
        );
        thread::sleep(SETTLE);
    }
    Ok(d)
}

/// `crash`: the victim's daemon is SIGKILLed, its host stays up.
fn crash(c: &mut Hosts, opts: &Options) -> Result<Detect> {
    let mut d = Detect::default();
    for run in 0..opts.runs {
        let victim = 1 + run % (c.n - 1);
        let name = node_name(victim);
        let survivors: Vec<usize> = c.observers().into_iter().filter(|&i| i != victim).collect();
        let t0 = unix_ms();
        c.sys.kill(victim)?;
        c.running[victim] = false;
        let found = c.wait_status(&survivors, &name, &[Status::Failed], t0, DETECT_LIMIT);
        check_interrupted()?;
        record(&mut d, &format!("kill {name} (trial {run})"), &found, t0);
        c.explain_last(&survivors, &found, &name, t0);
        let t1 = unix_ms();
        c.respawn(victim)?;
        let at = c
            .wait_converged(REJOIN_LIMIT)
            .context("after restarting the victim")?;
        d.back_s.push((at - t1) / 1000.0);
        thread::sleep(SETTLE);
    }
    Ok(d)
}

/// `pause`: SIGSTOP for each length, then SIGCONT; was the victim ever listed failed?
fn pauses(c: &mut Hosts, opts: &Options, out: &mut Vec<Pause>) -> Result<()> {
    for (k, &p) in opts.pauses.iter().enumerate() {
        let victim = 1 + k % (c.n - 1);
        let name = node_name(victim);
        let survivors: Vec<usize> = c.observers().into_iter().filter(|&i| i != victim).collect();
        let pid = c.sys.pid(victim).context("victim not running")?;
        let mut w = Watch::default();
        signal(pid, libc::SIGSTOP)?;
        let mut resumed = false;
        let watched = w.run(
            &*c.sys,
            &survivors,
            Duration::from_secs_f64(p) + Duration::from_secs(5),
            |elapsed| {
                if !resumed && elapsed.as_secs_f64() >= p {
                    signal(pid, libc::SIGCONT)?;
                    resumed = true;
                }
                Ok(())
            },
        );
        if !resumed {
            signal(pid, libc::SIGCONT)?;
        }
        watched?;
        let failed_by = survivors
            .iter()
            .filter(|&&o| w.verdicts.contains(&(o, name.clone(), Status::Failed)))
            .count();
        println!(
            "  pause {p} s: listed failed by {failed_by} of {}",
            survivors.len()
        );
        out.push(Pause {
            seconds: p,
            failed_by,
            survivors: survivors.len(),
        });
        c.wait_converged(REJOIN_LIMIT).context("after the pause")?;
        thread::sleep(SETTLE);
    }
    Ok(())
}

/// A time for the progress lines: seconds, or "never".
fn shown(s: Option<f64>) -> String {
    s.map_or_else(|| "never".to_owned(), |s| format!("{s:.2}"))
}

/// Seconds from `t0` until the last of `times` (all `Some`), or `None`.
fn all_by(times: &[Option<f64>], t0: f64) -> Option<f64> {
    let times: Option<Vec<f64>> = times.iter().copied().collect();
    times.map(|t| (t.into_iter().fold(t0, f64::max) - t0) / 1000.0)
}

/// Polls until every node of `nodes` holds every `(owner, key, value)`; the Unix ms at the end
/// of the polling round that found the last (an upper bound, by one round of `poll_key`
/// calls), or the number of (node, key) pairs still missing at the limit.
fn wait_keys(
    c: &Hosts,
    nodes: &[usize],
    keys: &[(String, String, String)],
    limit: Duration,
) -> std::result::Result<f64, usize> {
    let mut missing: BTreeSet<(usize, usize)> = nodes
        .iter()
        .flat_map(|&i| (0..keys.len()).map(move |k| (i, k)))
        .collect();
    let deadline = Instant::now() + limit;
    loop {
        missing.retain(|&(i, k)| {
            let (owner, key, value) = &keys[k];
            !matches!(c.sys.poll_key(i, owner, key), Ok(Some(v)) if v == *value)
        });
        if missing.is_empty() {
            return Ok(unix_ms());
        }
        if Instant::now() > deadline || check_interrupted().is_err() {
            return Err(missing.len());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// `partition`: two halves; each must list the other failed and keep serving; healed, one
/// cluster again with every key written during the cut everywhere.
fn partition(c: &mut Hosts, topo: &Topology) -> Result<Partition> {
    let n = c.n;
    let mut p = Partition {
        side_a: (0..n / 2).collect(),
        side_b: (n / 2..n).collect(),
        ..Partition::default()
    };
    let names = |side: &[usize]| side.iter().map(|&i| node_name(i)).collect::<Vec<_>>();
    let (names_a, names_b) = (names(&p.side_a), names(&p.side_b));
    let all_failed = |names: &[String]| {
        let names = names.to_vec();
        move |view: &[crate::compare::system::MemberView]| {
            names.iter().all(|name| {
                view.iter()
                    .any(|m| &m.name == name && m.status == Status::Failed)
            })
        }
    };
    let t0 = unix_ms();
    topo.partition(&p.side_a, &p.side_b)?;
    let result = (|| -> Result<()> {
        let a = c.wait_views(&p.side_a, DETECT_LIMIT, all_failed(&names_b));
        let b = c.wait_views(&p.side_b, DETECT_LIMIT, all_failed(&names_a));
        check_interrupted()?;
        p.a_fails_b_s = all_by(&a, t0);
        p.b_fails_a_s = all_by(&b, t0);
        println!(
            "  partition: A lists B failed after {} s, B lists A failed after {} s",
            shown(p.a_fails_b_s),
            shown(p.b_fails_a_s)
        );
        c.explain_slowest(&p.side_a, &a, &names_b, t0);
        c.explain_slowest(&p.side_b, &b, &names_a, t0);
        p.answering = (0..n).filter(|&i| c.sys.view(i).is_ok()).count();
        Ok(())
    })();
    // Keys written on each side during the cut.
    let stamp = t0 as u64;
    let keys: Vec<(String, String, String)> = [(p.side_a[0], "part-a"), (p.side_b[0], "part-b")]
        .iter()
        .map(|&(i, key)| (node_name(i), key.to_owned(), format!("{key}-{stamp}")))
        .collect();
    if result.is_ok() {
        let mut kv = true;
        for (owner_slot, (_, key, value)) in [p.side_a[0], p.side_b[0]].iter().zip(&keys) {
            kv &= c.sys.set_key(*owner_slot, key, value)?.is_some();
        }
        p.kv = kv;
        if kv {
            let t = unix_ms();
            let a = wait_keys(c, &p.side_a, &keys[..1], Duration::from_secs(30));
            let b = wait_keys(c, &p.side_b, &keys[1..], Duration::from_secs(30));
            if let (Ok(a), Ok(b)) = (a, b) {
                p.side_spread_s = Some((a.max(b) - t) / 1000.0);
            }
        }
    }
    let t1 = unix_ms();
    topo.heal()?;
    result?;
    p.heal_s = c
        .wait_converged(REJOIN_LIMIT)
        .ok()
        .map(|at| (at - t1) / 1000.0);
    if p.kv {
        let all: Vec<usize> = (0..n).collect();
        match wait_keys(c, &all, &keys, REJOIN_LIMIT) {
            Ok(at) => p.keys_s = Some((at - t1) / 1000.0),
            Err(missing) => p.keys_missing = missing,
        }
    }
    println!(
        "  heal: one cluster after {} s, keys everywhere after {} s ({} missing)",
        shown(p.heal_s),
        shown(p.keys_s),
        p.keys_missing
    );
    if p.heal_s.is_none() {
        bail!("not one cluster again within {REJOIN_LIMIT:?} of healing");
    }
    thread::sleep(SETTLE);
    Ok(p)
}

/// `asymmetric`: slot 1 reaches slot 2, slot 2 does not reach slot 1, for the window; only
/// those two may list each other failed.
fn asymmetric(c: &mut Hosts, topo: &Topology, opts: &Options) -> Result<Window> {
    let (a, b) = (1, 2);
    let (name_a, name_b) = (node_name(a), node_name(b));
    let observers = c.observers();
    let mut w = Watch::default();
    topo.one_way(a, b)?;
    let watched = w.run(
        &*c.sys,
        &observers,
        Duration::from_secs(opts.window_seconds),
        |_| Ok(()),
    );
    let t1 = unix_ms();
    topo.heal()?;
    watched?;
    let false_verdicts =
        w.verdicts_except(|o, m| (o == a && m == name_b) || (o == b && m == name_a));
    let mut window = Window::from_watch(&w, false_verdicts);
    window.back_s = c
        .wait_converged(REJOIN_LIMIT)
        .ok()
        .map(|at| (at - t1) / 1000.0);
    println!(
        "  asymmetric {name_a} -> {name_b}: {} false verdicts, {} allowed, {} status changes",
        window.false_verdicts.len(),
        window.allowed_verdicts,
        window.total_changes
    );
    if window.back_s.is_none() {
        bail!("not one cluster again within {REJOIN_LIMIT:?} of healing");
    }
    thread::sleep(SETTLE);
    Ok(window)
}

/// `flapping`: the last host's link down 2 s, up 3 s, for the window. For as long as an
/// outage lasts it is indistinguishable from a dead host, so the first outage may be failed
/// (nobody reaches the member then); what the rule forbids is verdicts that flap with the
/// link: each observer may list the flapping member failed at most once, all in the one
/// outage (cycle) of the first verdict, and nobody else may be listed failed. Every verdict
/// is counted, each time a member listed alive is listed failed again, and reported for
/// both systems.
fn flapping(c: &mut Hosts, topo: &Topology, opts: &Options) -> Result<Window> {
    let f = c.n - 1;
    let observers: Vec<usize> = c.observers().into_iter().filter(|&i| i != f).collect();
    let mut w = Watch::default();
    let mut down = false;
    let mut cycles = 0;
    let watched = w.run(
        &*c.sys,
        &observers,
        Duration::from_secs(opts.window_seconds),
        |elapsed| {
            let phase = elapsed.as_millis() % FLAP_CYCLE.as_millis();
            let want_down = phase < FLAP_DOWN.as_millis();
            if want_down != down {
                if want_down {
                    topo.cut(f)?;
                    cycles += 1;
                } else {
                    topo.restore(f)?;
                }
                down = want_down;
            }
            Ok(())
        },
    );
    let t1 = unix_ms();
    topo.restore(f)?;
    watched?;
    let false_verdicts = flapping_verdicts(&w, &node_name(f));
    let mut window = Window::from_watch(&w, false_verdicts);
    window.allowed_verdicts = window.verdict_count - window.false_verdicts.len();
    window.back_s = c
        .wait_converged(REJOIN_LIMIT)
        .ok()
        .map(|at| (at - t1) / 1000.0);
    println!(
        "  flapping {} ({cycles} cuts): {} verdicts, {} forbidden ({} allowed: the first \
         outage), {} status changes",
        node_name(f),
        window.verdict_count,
        window.false_verdicts.len(),
        window.allowed_verdicts,
        window.total_changes
    );
    if window.back_s.is_none() {
        bail!("not one cluster again within {REJOIN_LIMIT:?} of the last restore");
    }
    thread::sleep(SETTLE);
    Ok(window)
}

/// The verdicts of a flapping window that the rule forbids: any about a member other than
/// `flapper`; about `flapper`, any but the first of each observer, and any in another cycle
/// than the first verdict's.
fn flapping_verdicts(w: &Watch, flapper: &str) -> Vec<String> {
    let cycle = |t: Duration| t.as_millis() / FLAP_CYCLE.as_millis() + 1;
    let first_cycle = w
        .verdict_times
        .iter()
        .filter(|(_, m, _)| m == flapper)
        .map(|(_, _, t)| cycle(*t))
        .min();
    let mut seen = BTreeSet::new();
    let mut forbidden = Vec::new();
    for (o, m, t) in &w.verdict_times {
        let allowed = m == flapper && Some(cycle(*t)) == first_cycle && seen.insert(*o);
        if !allowed {
            forbidden.push(format!(
                "{} lists {m} failed at {:.1} s (cut {})",
                node_name(*o),
                t.as_secs_f64(),
                cycle(*t)
            ));
        }
    }
    forbidden
}

/// `loss`: random loss, and a delay with jitter from the delay line, on every link between
/// hosts; nobody may be listed failed or left.
fn loss(c: &mut Hosts, topo: &mut Topology, opts: &Options, out: &mut Vec<Loss>) -> Result<()> {
    for &pct in &opts.losses {
        let observers = c.observers();
        let mut w = Watch::default();
        let imp = topo.impair(pct, opts.delay, opts.jitter)?;
        if imp.delay_applied {
            println!("  loss {pct} %: {}", delay_line_check(&imp));
        }
        let watched = w.run(
            &*c.sys,
            &observers,
            Duration::from_secs(opts.seconds),
            |_| Ok(()),
        );
        let t1 = unix_ms();
        let delay_stats = topo.clear_impairment()?;
        watched?;
        let false_verdicts = w.verdicts_except(|_, _| false);
        let mut window = Window::from_watch(&w, false_verdicts);
        window.back_s = c
            .wait_converged(REJOIN_LIMIT)
            .ok()
            .map(|at| (at - t1) / 1000.0);
        println!(
            "  loss {pct} %{}: {} false verdicts, {} status changes (most {} for one member in one view)",
            if imp.delay_applied {
                format!(
                    " with {} ms delay ± {} ms jitter",
                    opts.delay.as_millis(),
                    opts.jitter.as_millis()
                )
            } else {
                String::new()
            },
            window.false_verdicts.len(),
            window.total_changes,
            window.max_changes
        );
        if let Some(d) = &delay_stats {
            println!(
                "  loss {pct} %: delay line held {} packets (at most {} at once, latest verdict \
                 {:.1} ms past due), {} dropped by a full queue or socket buffer, {} socket errors",
                d.delayed,
                d.max_held,
                d.late_max.as_secs_f64() * 1000.0,
                d.overflow_dropped,
                d.errors
            );
        }
        for v in &window.false_verdicts {
            println!("  loss {pct} %: false verdict: {v}");
        }
        let back = window.back_s.is_some();
        out.push(Loss {
            pct,
            delay_applied: imp.delay_applied,
            impairment: imp,
            delay_stats,
            window,
        });
        if !back {
            bail!("not one cluster again within {REJOIN_LIMIT:?} after {pct} % loss");
        }
        thread::sleep(SETTLE);
    }
    Ok(())
}

/// Why the delay line did not do its job at a loss level, if it did not: no `ping` reply
/// through it, or a mean RTT under half the configured one (a line that does not delay;
/// a loaded machine only makes the RTT longer, so only the lower side is a rule).
fn delay_line_broken(l: &Loss) -> Option<String> {
    let i = &l.impairment;
    if !l.delay_applied {
        return None;
    }
    match i.rtt_with_ms {
        None => Some("delay line check: no ping reply through it".to_owned()),
        Some(m) if m < i.rtt_expected_ms / 2.0 => Some(format!(
            "delay line check: mean RTT {m:.1} ms, configured {:.1} ms",
            i.rtt_expected_ms
        )),
        Some(_) => None,
    }
}

/// The delay line's `ping` check as a sentence.
pub fn delay_line_check(imp: &Impairment) -> String {
    let ms = |x: Option<f64>| x.map_or("no reply".to_owned(), |v| format!("{v:.1} ms"));
    format!(
        "delay line (seed {:#x}): measured mean RTT {} for a configured mean of {:.1} ms \
         ({} without the delay line)",
        imp.seed,
        ms(imp.rtt_with_ms),
        imp.rtt_expected_ms,
        ms(imp.rtt_before_ms)
    )
}

/// Longest wait for every node's state file to be written after its key: the debounce
/// (`chatter::persist::MIN_SAVE_INTERVAL`, 1 s) and an fsync, with room for a loaded machine.
const SAVE_LIMIT: Duration = Duration::from_secs(10);

/// The identity of each node's state file (`data_root/n{i:02}/state`): its inode, new with every
/// write (a snapshot is a new file renamed over the old one), or `None` while there is none.
fn state_files(nodes: &[usize], data_root: &Path) -> Vec<Option<u64>> {
    use std::os::unix::fs::MetadataExt as _;
    nodes
        .iter()
        .map(|&i| {
            let file = data_root.join(node_name(i)).join("state");
            std::fs::metadata(file).ok().map(|m| m.ino())
        })
        .collect()
}

/// Waits until every node in `nodes` has written its state file again since `before` (from
/// [`state_files`]), or fails after `limit`. Inodes, not modification times: a write a few
/// milliseconds after the change can carry an mtime from before it (the kernel's coarse clock).
fn wait_saved(
    nodes: &[usize],
    data_root: &Path,
    before: &[Option<u64>],
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let now = state_files(nodes, data_root);
        let unsaved: Vec<String> = nodes
            .iter()
            .zip(now.iter().zip(before))
            .filter(|(_, (now, before))| now.is_none() || now == before)
            .map(|(&i, _)| node_name(i))
            .collect();
        if unsaved.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "no state file written within {limit:?} of the keys: {}",
                unsaved.join(", ")
            );
        }
        check_interrupted()?;
        thread::sleep(POLL);
    }
}

/// `restart`: every node writes a key, then each in turn is SIGKILLed and started again at
/// once with its data dir (`data_root/n{i:02}`); no key may be lost and nobody listed failed.
///
/// The kills come once every node has written its state file since its key was written: a
/// crash loses the changes of at most the last second (`chatter::persist::MIN_SAVE_INTERVAL`,
/// the write's debounce), and what is asserted is that nothing written to disk is lost.
fn restart(c: &mut Hosts, data_root: &Path) -> Result<Restart> {
    let n = c.n;
    let all: Vec<usize> = (0..n).collect();
    let keys: Vec<(String, String, String)> = all
        .iter()
        .map(|&i| {
            (
                node_name(i),
                "kept".to_owned(),
                format!("kept-{}", node_name(i)),
            )
        })
        .collect();
    let before = state_files(&all, data_root);
    for (i, (_, key, value)) in keys.iter().enumerate() {
        if c.sys.set_key(i, key, value)?.is_none() {
            bail!("{} has no key/value state", c.sys.label());
        }
    }
    if let Err(missing) = wait_keys(c, &all, &keys, Duration::from_secs(60)) {
        bail!("{missing} key copies did not spread before the restarts");
    }
    wait_saved(&all, data_root, &before, SAVE_LIMIT)?;
    let mut r = Restart {
        keys_total: n * n,
        ..Restart::default()
    };
    let mut w = Watch::default();
    for i in (1..n).chain([0]) {
        let name = node_name(i);
        let t0 = unix_ms();
        c.sys.kill(i)?;
        c.running[i] = false;
        c.respawn(i)?;
        // Until every node lists every node alive and the restarted node's key is everywhere.
        let deadline = Instant::now() + RESTART_LIMIT;
        let mine = [keys[i].clone()];
        let back = loop {
            check_interrupted()?;
            w.sample(&*c.sys, &all);
            let alive = all.iter().all(|&o| {
                c.sys.view(o).is_ok_and(|view| {
                    all.iter().all(|&m| {
                        view.iter()
                            .any(|v| v.name == node_name(m) && v.status == Status::Alive)
                    })
                })
            });
            if alive && wait_keys(c, &all, &mine, Duration::ZERO).is_ok() {
                break Some((unix_ms() - t0) / 1000.0);
            }
            if Instant::now() > deadline {
                break None;
            }
            thread::sleep(POLL);
        };
        match back {
            Some(s) => {
                println!("  restart {name}: back everywhere with its key after {s:.2} s");
                r.back_s.push(s);
            }
            None => {
                println!("  restart {name}: not back within {RESTART_LIMIT:?}");
                r.not_back += 1;
            }
        }
    }
    r.keys_missing = match wait_keys(c, &all, &keys, Duration::from_secs(30)) {
        Ok(_) => 0,
        Err(missing) => missing,
    };
    r.false_verdicts = w.verdicts_except(|_, _| false);
    println!(
        "  restart: {} false verdicts, {} of {} key copies missing",
        r.false_verdicts.len(),
        r.keys_missing,
        r.keys_total
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_flapping_member_may_be_failed_once_per_observer_in_one_outage() {
        let flapper = node_name(4);
        let mut w = Watch::default();
        // The first outage (cycle 1, 0-5 s) got no verdict; the second did, from everyone.
        for o in 0..4 {
            w.verdict_times
                .push((o, flapper.clone(), at(6.5 + o as f64 * 0.1)));
        }
        assert!(flapping_verdicts(&w, &flapper).is_empty());
        // Observer 1 fails it again in the third outage, observer 2 twice in the second,
        // observer 3 lists someone else failed.
        w.verdict_times.push((1, flapper.clone(), at(11.5)));
        w.verdict_times.push((2, flapper.clone(), at(9.0)));
        w.verdict_times.push((3, node_name(2), at(7.0)));
        let forbidden = flapping_verdicts(&w, &flapper);
        assert_eq!(forbidden.len(), 3, "{forbidden:?}");
        assert!(forbidden[0].contains("(cut 3)"), "{forbidden:?}");
    }

    #[test]
    fn a_tolerated_pause_declared_failed_breaks_a_rule_and_a_longer_one_does_not() {
        let mut r = Results::default();
        r.pause.push(Pause {
            seconds: 8.0,
            failed_by: 4,
            survivors: 4,
        });
        assert!(r.violations().is_empty());
        r.pause.push(Pause {
            seconds: 5.0,
            failed_by: 1,
            survivors: 4,
        });
        assert_eq!(r.violations().len(), 1);
    }

    #[test]
    fn missed_detections_false_verdicts_and_lost_keys_break_rules() {
        let mut r = Results {
            silent: Some(Detect {
                missed: 1,
                pairs: 4,
                ..Detect::default()
            }),
            ..Results::default()
        };
        assert_eq!(r.violations().len(), 1);
        r.silent = Some(Detect::default());
        r.loss.push(Loss {
            pct: 20.0,
            delay_applied: false,
            impairment: Impairment::default(),
            delay_stats: None,
            window: Window {
                false_verdicts: vec!["n01 lists n02 failed".to_owned()],
                ..Window::default()
            },
        });
        r.partition = Some(Partition {
            side_a: vec![0, 1],
            side_b: vec![2, 3],
            a_fails_b_s: Some(5.0),
            b_fails_a_s: Some(5.0),
            answering: 4,
            kv: true,
            heal_s: Some(10.0),
            keys_s: None,
            keys_missing: 2,
            ..Partition::default()
        });
        let v = r.violations();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("partition"), "{v:?}");
        assert!(v[1].contains("loss 20 %"), "{v:?}");
    }

    #[test]
    fn a_delay_line_that_does_not_delay_breaks_a_rule() {
        let level = |rtt: Option<f64>| Loss {
            pct: 5.0,
            delay_applied: true,
            impairment: Impairment {
                delay_applied: true,
                rtt_with_ms: rtt,
                rtt_expected_ms: 44.0,
                ..Impairment::default()
            },
            delay_stats: None,
            window: Window::default(),
        };
        for (rtt, broken) in [
            (Some(47.0), false),
            (Some(300.0), false),
            (Some(0.1), true),
            (None, true),
        ] {
            let r = Results {
                loss: vec![level(rtt)],
                ..Results::default()
            };
            assert_eq!(r.violations().len(), usize::from(broken), "{rtt:?}");
        }
    }

    /// A system whose only behaviour is a script of member tables, one per `view` call.
    struct Scripted(std::cell::RefCell<std::collections::VecDeque<Vec<(&'static str, Status)>>>);

    impl System for Scripted {
        fn label(&self) -> String {
            "scripted".to_owned()
        }
        fn spawn(&mut self, _: usize) -> Result<()> {
            bail!("scripted")
        }
        fn wait_ready(&mut self, _: usize, _: Duration) -> Result<()> {
            bail!("scripted")
        }
        fn pid(&self, _: usize) -> Option<i32> {
            None
        }
        fn view(&self, _: usize) -> Result<Vec<crate::compare::system::MemberView>> {
            let next = self.0.borrow_mut().pop_front().context("script over")?;
            Ok(next
                .into_iter()
                .map(|(name, status)| crate::compare::system::MemberView {
                    name: name.to_owned(),
                    status,
                    since_ms: None,
                })
                .collect())
        }
        fn kill(&mut self, _: usize) -> Result<()> {
            bail!("scripted")
        }
        fn leave(&mut self, _: usize) -> Result<()> {
            bail!("scripted")
        }
        fn traffic(&self, _: usize) -> Result<Option<crate::compare::system::Traffic>> {
            Ok(None)
        }
        fn follow(
            &mut self,
            _: std::sync::mpsc::Sender<crate::compare::system::Seen>,
        ) -> Result<()> {
            bail!("scripted")
        }
        fn broadcast(&self, _: usize, _: u64) -> Result<bool> {
            Ok(false)
        }
        fn set_key(
            &self,
            _: usize,
            _: &str,
            _: &str,
        ) -> Result<Option<crate::compare::system::KvMode>> {
            Ok(None)
        }
    }

    #[test]
    fn watch_counts_each_status_change_once_and_remembers_every_verdict() {
        use Status::*;
        let sys = Scripted(std::cell::RefCell::new(
            [
                vec![("n01", Alive), ("n02", Alive)],
                vec![("n01", Suspect), ("n02", Alive)],
                vec![("n01", Failed), ("n02", Alive)],
                vec![("n01", Alive), ("n02", Alive)],
            ]
            .into(),
        ));
        let mut w = Watch::default();
        for _ in 0..5 {
            w.sample(&sys, &[0]);
        }
        assert_eq!(w.polls, 5);
        assert_eq!(w.unanswered, 1);
        assert_eq!(w.total_changes(), 3);
        assert_eq!(w.max_changes(), 3);
        assert_eq!(w.verdicts_except(|_, _| false), ["n00 lists n01 failed"]);
    }

    #[test]
    fn watch_counts_changes_and_keeps_verdicts() {
        let mut w = Watch::default();
        w.changes.insert((0, "n01".to_owned()), 3);
        w.changes.insert((1, "n01".to_owned()), 1);
        w.verdicts.insert((1, "n02".to_owned(), Status::Failed));
        w.verdicts.insert((2, "n01".to_owned(), Status::Left));
        assert_eq!(w.max_changes(), 3);
        assert_eq!(w.total_changes(), 4);
        let v = w.verdicts_except(|o, m| o == 1 && m == "n02");
        assert_eq!(v, ["n02 lists n01 left"]);
    }
}
