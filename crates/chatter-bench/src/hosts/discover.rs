//! The `discover` scenario (Chatter only): a cluster that meets by LAN discovery alone.
//!
//! Two runs, each of one daemon per host with `--discover` and no seed, on ports of their own
//! beside the scenarios' cluster (which stays up):
//!
//! 1. **IPv4, sealed**: every node with one gossip key, discovery by IPv4 multicast only.
//!    Two intruders on the same segment announce too: one of another cluster name (same
//!    key), one of the same cluster name sealing with another key.
//! 2. **IPv6, plaintext, bound to `[::]`**: every host gets a ULA address of this run's own
//!    (removed after), the nodes listen on `[::]` and advertise it, discovery by IPv6
//!    link-local multicast only; an intruder of another cluster name announces beside them.
//!
//! Rules (`--check`): every node lists every other alive within [`CONVERGE_LIMIT`]; no node
//! lists an intruder, no intruder lists anyone, through the convergence and [`OBSERVE`] after;
//! and the intruders' announcements were heard and refused (the discovery counters of the
//! nodes moved), so the silence is a refusal, not a loss. The figure is the time from the
//! start of the nodes until the last one listed every other alive.

use std::fmt::Write;
use std::net::IpAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::topology::check_interrupted;
use super::Options;
use crate::compare::system::{unix_ms, Placement, Proc};

/// Longest time from the start of the nodes until every one lists every other alive.
const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
/// How long, once converged, the nodes are watched for an intruder.
const OBSERVE: Duration = Duration::from_secs(5);
/// Polling period of the member tables.
const POLL: Duration = Duration::from_millis(100);
/// Ports of the runs: gossip and HTTP of the nodes, then of each intruder (+1, +2), away from
/// the scenarios' cluster (2428 and 8428).
const V4_PORTS: (u16, u16) = (2438, 8438);
const V6_PORTS: (u16, u16) = (2448, 8448);

/// One run's figures.
pub struct Run {
    pub label: &'static str,
    pub nodes: usize,
    /// Seconds from the start of the nodes until the last listed every other alive.
    pub converged_s: Option<f64>,
    /// `node lists intruder` (or `intruder lists node`) seen at any poll.
    pub intrusions: Vec<String>,
    /// Refused announcements counted by the nodes, per intruder: (what, counter, sum).
    pub refused: Vec<(&'static str, &'static str, u64)>,
}

/// Both runs.
#[derive(Default)]
pub struct Report {
    pub runs: Vec<Run>,
}

impl Report {
    /// The rules broken.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        for run in &self.runs {
            if run.converged_s.is_none() {
                v.push(format!(
                    "discover ({}): not every node listed every other alive within {CONVERGE_LIMIT:?}",
                    run.label
                ));
            }
            if !run.intrusions.is_empty() {
                v.push(format!(
                    "discover ({}): {}",
                    run.label,
                    run.intrusions.join(", ")
                ));
            }
            for (what, counter, sum) in &run.refused {
                if *sum == 0 {
                    v.push(format!(
                        "discover ({}): the announcements of {what} were never heard ({counter} 0)",
                        run.label
                    ));
                }
            }
        }
        v
    }

    /// The scenario's table.
    pub fn markdown(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "**LAN discovery** (Chatter only): one `chatterd --discover` per host and no seed; \
             intruders announce on the same segment and must never join:\n"
        );
        let _ = writeln!(
            out,
            "| run | nodes | all list all alive (s) | intrusions | intruders' announcements refused |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---|");
        for run in &self.runs {
            let refused: Vec<String> = run
                .refused
                .iter()
                .map(|(what, counter, sum)| format!("{what}: {sum} ({counter})"))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                run.label,
                run.nodes,
                run.converged_s
                    .map_or_else(|| "not within the limit".to_owned(), |s| format!("{s:.2}")),
                run.intrusions.len(),
                refused.join("; ")
            );
        }
        out.push('\n');
    }
}

/// A daemon of the scenario.
struct Daemon {
    name: String,
    http: String,
    proc: Proc,
}

/// What to start on a host.
struct Spec {
    name: String,
    host: usize,
    listen: String,
    advertise: Option<String>,
    http_port: u16,
    cluster: &'static str,
    key: Option<String>,
    family_off: &'static str,
}

fn start(placement: &Placement, chatterd: &Path, spec: &Spec) -> Result<Daemon> {
    let ip = placement.ip(spec.host)?;
    let http = format!("{ip}:{}", spec.http_port);
    let mut cmd = placement.command(spec.host, chatterd)?;
    cmd.args(["--listen", &spec.listen, "--http", &http])
        .args(["--node-name", &spec.name, "--cluster", spec.cluster])
        .args(["--discover", spec.family_off, "off"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(advertise) = &spec.advertise {
        cmd.args(["--advertise", advertise]);
    }
    if let Some(key) = &spec.key {
        cmd.env("CHATTER_GOSSIP_KEY", key);
    }
    let proc = Proc::spawn(cmd, &chatterd.display().to_string(), Some)?;
    Ok(Daemon {
        name: spec.name.clone(),
        http,
        proc,
    })
}

fn get(agent: &ureq::Agent, http: &str, path: &str) -> Result<Value> {
    crate::cluster::get_json(agent, &format!("http://{http}{path}"))
}

/// The names a daemon lists, with whether each is alive.
fn listed(agent: &ureq::Agent, d: &Daemon) -> Result<Vec<(String, bool)>> {
    let v = get(agent, &d.http, "/v1/members")?;
    let list = v
        .get("members")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("unexpected /v1/members body"))?;
    Ok(list
        .iter()
        .filter_map(|m| {
            let name = m["name"].as_str()?;
            (name != d.name).then(|| (name.to_owned(), m["status"] == "alive"))
        })
        .collect())
}

/// Starts the intruders, then the nodes; watches until converged and [`OBSERVE`] after.
fn run_one(
    label: &'static str,
    placement: &Placement,
    opts: &Options,
    nodes: Vec<Spec>,
    intruders: Vec<(Spec, &'static str)>,
) -> Result<Run> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut strangers = Vec::new();
    for (spec, _) in &intruders {
        let mut d = start(placement, &opts.chatterd, spec)?;
        d.proc
            .wait_line("chatterd ready", Duration::from_secs(20))?;
        strangers.push(d);
    }
    let t0 = unix_ms();
    let mut members = Vec::new();
    for spec in &nodes {
        members.push(start(placement, &opts.chatterd, spec)?);
    }
    for d in &mut members {
        d.proc
            .wait_line("chatterd ready", Duration::from_secs(20))
            .with_context(|| format!("{} did not start", d.name))?;
    }
    let names: Vec<String> = members.iter().map(|d| d.name.clone()).collect();
    let intruder_names: Vec<&str> = strangers.iter().map(|d| d.name.as_str()).collect();
    let mut done: Vec<Option<f64>> = vec![None; members.len()];
    // Nobody can list every other node before the last one started: the first miss is the
    // moment the last one said it was ready.
    let mut last_miss = vec![unix_ms(); members.len()];
    let mut intrusions = Vec::new();
    let started = Instant::now();
    let mut converged_at: Option<Instant> = None;
    loop {
        check_interrupted()?;
        for (k, d) in members.iter().enumerate() {
            let at = unix_ms();
            let Ok(view) = listed(&agent, d) else {
                last_miss[k] = at;
                continue;
            };
            for (name, _) in &view {
                if intruder_names.contains(&name.as_str()) {
                    let what = format!("{} lists {name}", d.name);
                    if !intrusions.contains(&what) {
                        intrusions.push(what);
                    }
                }
            }
            let all = names
                .iter()
                .filter(|n| **n != d.name)
                .all(|n| view.iter().any(|(m, alive)| m == n && *alive));
            match (all, done[k]) {
                (true, None) => done[k] = Some((last_miss[k] + at) / 2.0),
                (false, None) => last_miss[k] = at,
                _ => {}
            }
        }
        for s in &strangers {
            if let Ok(view) = listed(&agent, s) {
                for (name, _) in view {
                    let what = format!("{} lists {name}", s.name);
                    if !intrusions.contains(&what) {
                        intrusions.push(what);
                    }
                }
            }
        }
        if converged_at.is_none() && done.iter().all(Option::is_some) {
            converged_at = Some(Instant::now());
        }
        let finished = match converged_at {
            Some(at) => at.elapsed() >= OBSERVE,
            None => started.elapsed() >= CONVERGE_LIMIT,
        };
        if finished {
            break;
        }
        thread::sleep(POLL);
    }
    let converged_s = done
        .iter()
        .copied()
        .collect::<Option<Vec<f64>>>()
        .map(|times| (times.into_iter().fold(t0, f64::max) - t0) / 1000.0);
    let mut refused = Vec::new();
    for (spec, counter) in &intruders {
        let mut sum = 0;
        for d in &members {
            let v = get(&agent, &d.http, "/v1/self")?;
            sum += v["io"][counter].as_u64().unwrap_or(0);
        }
        refused.push((intruder_label(&spec.name), *counter, sum));
    }
    let run = Run {
        label,
        nodes: members.len(),
        converged_s,
        intrusions,
        refused,
    };
    println!(
        "  discover ({label}): {} nodes, all list all alive in {}, {} intrusions",
        run.nodes,
        run.converged_s
            .map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s")),
        run.intrusions.len()
    );
    // The processes are killed (and reaped) as they drop.
    drop(members);
    drop(strangers);
    Ok(run)
}

fn intruder_label(name: &str) -> &'static str {
    if name.ends_with("cluster") {
        "another cluster name"
    } else {
        "another key"
    }
}

/// A ULA address of host `i` for the IPv6 run: `fdcb:<run>::<host's last IPv4 octet>`.
fn ula(placement: &Placement, i: usize, run: u16) -> Result<String> {
    let IpAddr::V4(v4) = placement.ip(i)? else {
        bail!("host {i} has no IPv4 address");
    };
    Ok(format!("fdcb:{run:x}::{:x}", v4.octets()[3]))
}

/// Runs `program args` on host `i`.
fn on_host(placement: &Placement, i: usize, program: &str, args: &[&str]) -> Result<()> {
    let out = placement
        .net_command(i, Path::new(program))?
        .args(args)
        .output()
        .with_context(|| format!("{program} on host {i}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?} on host {i}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the ULA addresses on every path out of the IPv6 run.
struct Ulas<'a> {
    placement: &'a Placement,
    added: Vec<(usize, String)>,
}

impl Drop for Ulas<'_> {
    fn drop(&mut self) {
        for (i, addr) in &self.added {
            let _ = on_host(
                self.placement,
                *i,
                "ip",
                &["addr", "del", addr, "dev", "eth0"],
            );
        }
    }
}

/// Both runs, on hosts `0..opts.nodes` of `placement`.
pub fn run(placement: &Placement, opts: &Options) -> Result<Report> {
    if opts.nodes < 2 {
        bail!("discover: at least 2 hosts");
    }
    let mut report = Report::default();
    let key = crate::compare::fresh_key()?;
    let other_key = crate::compare::fresh_key()?;
    let n = opts.nodes;
    let node = |i: usize, listen: String, advertise: Option<String>, ports: (u16, u16)| Spec {
        name: format!("d{i:02}"),
        host: i,
        listen,
        advertise,
        http_port: ports.1,
        cluster: "",
        key: None,
        family_off: "",
    };

    // 1. IPv4, sealed.
    let mut nodes = Vec::new();
    for i in 0..n {
        let ip = placement.ip(i)?;
        nodes.push(Spec {
            cluster: "disc",
            key: Some(key.clone()),
            family_off: "--discover-ipv6-group",
            ..node(i, format!("{ip}:{}", V4_PORTS.0), None, V4_PORTS)
        });
    }
    let intruder =
        |i: usize, name: &str, cluster, key: &String, ports: (u16, u16)| -> Result<Spec> {
            let ip = placement.ip(i)?;
            Ok(Spec {
                name: name.to_owned(),
                host: i,
                listen: format!("{ip}:{}", ports.0),
                advertise: None,
                http_port: ports.1,
                cluster,
                key: Some(key.clone()),
                family_off: "--discover-ipv6-group",
            })
        };
    let intruders = vec![
        (
            intruder(
                0,
                "x-cluster",
                "disc-other",
                &key,
                (V4_PORTS.0 + 1, V4_PORTS.1 + 1),
            )?,
            "discovery_dropped_wrong_cluster",
        ),
        (
            intruder(
                1,
                "x-key",
                "disc",
                &other_key,
                (V4_PORTS.0 + 2, V4_PORTS.1 + 2),
            )?,
            "discovery_dropped_unauthenticated",
        ),
    ];
    report
        .runs
        .push(run_one("IPv4, sealed", placement, opts, nodes, intruders)?);
    check_interrupted()?;

    // 2. IPv6 link-local multicast, plaintext, bound to [::] with IPv6 addresses advertised.
    let run_id = (std::process::id() & 0xffff) as u16;
    let mut ulas = Ulas {
        placement,
        added: Vec::new(),
    };
    for i in 0..n {
        // IPv6 on, and no duplicate address detection: the address serves at once.
        on_host(
            placement,
            i,
            "sh",
            &["-c", "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6"],
        )?;
        let addr = format!("{}/64", ula(placement, i, run_id)?);
        on_host(
            placement,
            i,
            "ip",
            &["addr", "add", &addr, "dev", "eth0", "nodad"],
        )?;
        ulas.added.push((i, addr));
    }
    let mut nodes = Vec::new();
    for i in 0..n {
        let advertise = format!("[{}]:{}", ula(placement, i, run_id)?, V6_PORTS.0);
        nodes.push(Spec {
            cluster: "disc6",
            family_off: "--discover-ipv4-group",
            ..node(i, format!("[::]:{}", V6_PORTS.0), Some(advertise), V6_PORTS)
        });
    }
    let stranger = Spec {
        name: "x-cluster".to_owned(),
        host: 0,
        listen: format!("[::]:{}", V6_PORTS.0 + 1),
        advertise: Some(format!(
            "[{}]:{}",
            ula(placement, 0, run_id)?,
            V6_PORTS.0 + 1
        )),
        http_port: V6_PORTS.1 + 1,
        cluster: "disc6-other",
        key: None,
        family_off: "--discover-ipv4-group",
    };
    let intruders = vec![(stranger, "discovery_dropped_wrong_cluster")];
    report.runs.push(run_one(
        "IPv6 link-local, [::], plaintext",
        placement,
        opts,
        nodes,
        intruders,
    )?);
    drop(ulas);
    Ok(report)
}
