//! `dns`: seeding through a real DNS server whose records change as hosts come and go.
//!
//! Debian's `dnsmasq` answers for [`SEED_NAME`] on the switch's own address, from a hosts
//! file the scenario rewrites (then `SIGHUP`, which makes dnsmasq read it again); every host
//! resolves through it (a `resolv.conf` of its own, see `Topology::set_resolver`). Every
//! chatterd starts with `--seed seeds.chatter.test:2428` and no other seed or address:
//!
//! 1. the name points to hosts 0 and 1: they start and find each other through it, then
//!    host 2 (and hosts 5.. when there are more than five) joins through the name alone (**a**);
//! 2. the name moves to hosts 3 and 4, and the daemons of hosts 0 and 1 are killed: every
//!    address the name gave before is dead. Hosts 3 and 4 start (they know nothing but the
//!    name, so each other); host 2 (with hosts 5..: a cluster that is not alone), the rest of
//!    the old cluster, must find them by resolving the name again (**b**);
//! 3. a new node (on host 0 again, whose address the name no longer gives) joins through the
//!    moved name.
//!
//! Chatter only: Serf has no DNS seeding of its own (its `-join` resolves once, at start).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::topology::{check_interrupted, Topology};
use super::{Hosts, Options, CHATTER};
use crate::compare::chatter::Chatter;
use crate::compare::system::{node_name, unix_ms};

/// The name every daemon of the scenario is seeded with (`.test` is reserved for testing,
/// RFC 6761: no resolver outside this one will ever answer for it).
pub const SEED_NAME: &str = "seeds.chatter.test";
/// chatterd's default gossip port, which every host's daemon listens on.
const GOSSIP_PORT: u16 = 2428;
/// Hosts the scenario needs: two first seeds, one node that stays, two new seeds (hosts past
/// these stay too).
pub const DNS_HOSTS: usize = 5;
/// How long dnsmasq gets to answer with the records just written.
const RECORDS_LIMIT: Duration = Duration::from_secs(10);
/// How long nodes get to find each other through the name when its addresses are live.
const JOIN_LIMIT: Duration = Duration::from_secs(60);
/// How long the remaining cluster gets to find the new seeds after the name moved: a
/// chatterd resolves its seeds again every 30 s (`chatter::seeds::REFRESH_INTERVAL`), and
/// then contacts the new addresses at once.
const MOVE_LIMIT: Duration = Duration::from_secs(90);

/// What the scenario measured; `None` where a step did not complete within its limit.
#[derive(Debug, Default)]
pub struct Dns {
    /// Seconds from starting hosts 0 and 1 until each lists the other alive.
    pub seeds_s: Option<f64>,
    /// (a) Seconds from starting host 2 (and 5..) until they and hosts 0, 1 all list each
    /// other alive.
    pub join_s: Option<f64>,
    /// Hosts of the old cluster that stay through the move (host 2 and hosts 5..).
    pub staying: usize,
    /// (b) Seconds from starting the new seeds (old ones dead, name moved) until they and the
    /// staying hosts all list each other alive.
    pub moved_s: Option<f64>,
    /// Seconds from starting a new node after the move until it and hosts 2-4 all list
    /// each other alive.
    pub new_node_s: Option<f64>,
    /// Why the scenario stopped early, if it did.
    pub error: Option<String>,
}

impl Dns {
    /// The rules broken: every step must complete.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(e) = &self.error {
            v.push(format!("dns: {e}"));
        }
        for (what, s) in [
            ("the first seeds did not find each other", self.seeds_s),
            ("a new host did not join through the name", self.join_s),
            (
                "the remaining cluster did not find the seeds after the name moved",
                self.moved_s,
            ),
            (
                "a new host did not join through the moved name",
                self.new_node_s,
            ),
        ] {
            if s.is_none() && self.error.is_none() {
                v.push(format!("dns: {what}"));
            }
        }
        v
    }
}

/// A dnsmasq in the switch's namespace, answering from one hosts file; killed on drop.
struct Dnsmasq {
    child: Child,
    hosts_file: PathBuf,
    log: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq on `addr` (an address of the switch), the name pointing to `first`
    /// (written before dnsmasq starts: a SIGHUP before it has set its handler would end it).
    fn start(netns: &str, addr: Ipv4Addr, dir: &Path, first: &[Ipv4Addr]) -> Result<Dnsmasq> {
        let hosts_file = dir.join("hosts");
        let log = dir.join("dnsmasq.log");
        std::fs::write(&hosts_file, records(first)).context("write the hosts file")?;
        let log_file = std::fs::File::create(&log).context("create the dnsmasq log")?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "dnsmasq", "--keep-in-foreground"])
            // Only what is given here: no /etc/dnsmasq.conf, no /etc/hosts, no upstream.
            .args([
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
            ])
            .arg(format!("--listen-address={addr}"))
            .args(["--bind-interfaces", "--port=53", "--pid-file="])
            // Names of `.test` are answered here or not at all.
            .args(["--local=/test/", "--user=root", "--log-facility=-"])
            // TTL 0: no resolver on a host may keep an old answer past a change.
            .args(["--local-ttl=0", "--neg-ttl=0"])
            .arg(format!("--addn-hosts={}", hosts_file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("run dnsmasq (apt-get install dnsmasq-base)")?;
        Ok(Dnsmasq {
            child,
            hosts_file,
            log,
        })
    }

    /// The name resolves to `addrs` from now on: the hosts file rewritten (a new file renamed
    /// over the old, so dnsmasq never reads half of it), then SIGHUP.
    fn point(&mut self, addrs: &[Ipv4Addr]) -> Result<()> {
        let tmp = self.hosts_file.with_extension("new");
        std::fs::write(&tmp, records(addrs)).context("write the hosts file")?;
        std::fs::rename(&tmp, &self.hosts_file).context("replace the hosts file")?;
        if let Some(status) = self.child.try_wait()? {
            bail!("dnsmasq exited ({status}): {}", self.log_tail());
        }
        let pid = i32::try_from(self.child.id()).context("dnsmasq's pid")?;
        // SAFETY: kill(2) on the PID of a child this harness started and has not reaped.
        if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            bail!("SIGHUP to dnsmasq: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" / ")
    }
}

/// A hosts file giving [`SEED_NAME`] the addresses `addrs`.
fn records(addrs: &[Ipv4Addr]) -> String {
    addrs.iter().map(|a| format!("{a} {SEED_NAME}\n")).collect()
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `name` resolves to exactly `want` on host `on`.
fn wait_records(topo: &Topology, dns: &mut Dnsmasq, on: usize, want: &[Ipv4Addr]) -> Result<()> {
    let want: BTreeSet<Ipv4Addr> = want.iter().copied().collect();
    let deadline = Instant::now() + RECORDS_LIMIT;
    loop {
        check_interrupted()?;
        let got: BTreeSet<Ipv4Addr> = topo.resolve_on(on, SEED_NAME)?.into_iter().collect();
        if got == want {
            return Ok(());
        }
        if let Some(status) = dns.child.try_wait()? {
            bail!("dnsmasq exited ({status}): {}", dns.log_tail());
        }
        if Instant::now() >= deadline {
            bail!(
                "{SEED_NAME} resolves to {got:?} on {}, not {want:?}, {RECORDS_LIMIT:?} after \
                 the change (dnsmasq: {})",
                node_name(on),
                dns.log_tail()
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the scenario on every host of `topo` (no other cluster may run on them).
pub fn run(topo: &Topology, opts: &Options, token: &str) -> Dns {
    let mut out = Dns::default();
    if let Err(e) = steps(topo, opts, token, &mut out) {
        out.error = Some(format!("{e:#}"));
    }
    out
}

fn steps(topo: &Topology, opts: &Options, token: &str, out: &mut Dns) -> Result<()> {
    if opts.nodes < DNS_HOSTS {
        bail!("needs {DNS_HOSTS} hosts, not {}", opts.nodes);
    }
    let dir = std::env::temp_dir().join(format!("chatter-bench-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let outcome = steps_in(topo, opts, token, out, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn steps_in(topo: &Topology, opts: &Options, token: &str, out: &mut Dns, dir: &Path) -> Result<()> {
    let server = topo.switch_address()?;
    topo.set_resolver(server)?;
    let ip = |i: usize| topo.host_ip(i);
    let mut dns = Dnsmasq::start(topo.switch_netns(), server, dir, &[ip(0)?, ip(1)?])?;
    wait_records(topo, &mut dns, 2, &[ip(0)?, ip(1)?])?;
    println!("  dns: dnsmasq on {server} answers {SEED_NAME} with hosts 0 and 1");

    let mut sys = Chatter::new(CHATTER, opts.chatterd.clone(), opts.chatter_args.clone())
        .placed(topo.placement(), Some(token.to_owned()))
        .seeded_by(format!("{SEED_NAME}:{GOSSIP_PORT}"));
    let mut c = Hosts {
        sys: &mut sys,
        n: opts.nodes,
        running: vec![false; opts.nodes],
        cut: BTreeSet::new(),
    };
    let start = |c: &mut Hosts, slots: &[usize]| -> Result<f64> {
        let t0 = unix_ms();
        for &i in slots {
            c.sys.spawn(i)?;
        }
        for &i in slots {
            c.sys
                .wait_ready(i, Duration::from_secs(20))
                .with_context(|| format!("{} did not start", node_name(i)))?;
            c.running[i] = true;
        }
        Ok(t0)
    };
    let converged = |c: &Hosts, t0: f64, limit: Duration| -> Option<f64> {
        c.wait_converged(limit).ok().map(|at| (at - t0) / 1000.0)
    };
    let shown =
        |s: Option<f64>| s.map_or("not within the limit".to_owned(), |s| format!("{s:.2} s"));

    let t0 = start(&mut c, &[0, 1])?;
    out.seeds_s = converged(&c, t0, JOIN_LIMIT);
    println!(
        "  dns: hosts 0 and 1 found each other through the name: {}",
        shown(out.seeds_s)
    );
    if out.seeds_s.is_none() {
        bail!("hosts 0 and 1 did not find each other through {SEED_NAME}");
    }
    let staying: Vec<usize> = std::iter::once(2).chain(DNS_HOSTS..opts.nodes).collect();
    out.staying = staying.len();
    let t0 = start(&mut c, &staying)?;
    out.join_s = converged(&c, t0, JOIN_LIMIT);
    println!(
        "  dns: (a) {} host(s) joined through the name: {}",
        staying.len(),
        shown(out.join_s)
    );
    if out.join_s.is_none() {
        bail!("hosts {staying:?} did not join through {SEED_NAME}");
    }

    dns.point(&[ip(3)?, ip(4)?])?;
    wait_records(topo, &mut dns, 2, &[ip(3)?, ip(4)?])?;
    for i in [0, 1] {
        c.sys.kill(i)?;
        c.running[i] = false;
    }
    let t0 = start(&mut c, &[3, 4])?;
    out.moved_s = converged(&c, t0, MOVE_LIMIT);
    println!(
        "  dns: (b) name moved to hosts 3 and 4, hosts 0 and 1 stopped: the {} staying host(s) \
         and the new seeds one cluster after {}",
        staying.len(),
        shown(out.moved_s)
    );
    if out.moved_s.is_none() {
        let views: Vec<String> = staying
            .iter()
            .chain(&[3, 4])
            .map(|&i| match c.sys.view(i) {
                Ok(v) => format!(
                    "{}: {}",
                    node_name(i),
                    v.iter()
                        .map(|m| format!("{} {}", m.name, super::status_word(m.status)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => format!("{}: {e:#}", node_name(i)),
            })
            .collect();
        bail!(
            "the staying hosts and the new seeds not one cluster within {MOVE_LIMIT:?}: {}",
            views.join("; ")
        );
    }
    let t0 = start(&mut c, &[0])?;
    out.new_node_s = converged(&c, t0, JOIN_LIMIT);
    println!(
        "  dns: a new node on host 0 joined through the moved name: {}",
        shown(out.new_node_s)
    );
    if out.new_node_s.is_none() {
        return Err(anyhow!("a new node did not join through the moved name"));
    }
    Ok(())
}

/// The scenario's Markdown section.
pub fn render(d: &Dns) -> String {
    let secs = |s: Option<f64>| s.map_or("–".to_owned(), |s| format!("{s:.2}"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "**DNS seeding** against dnsmasq (every chatterd has only `--seed \
         {SEED_NAME}:{GOSSIP_PORT}`; the name's records change as hosts come and go):\n"
    );
    let _ = writeln!(out, "| dns | {CHATTER} |\n|---|---:|");
    for (label, s) in [
        (
            "name → hosts 0, 1: they find each other (s)".to_owned(),
            d.seeds_s,
        ),
        (
            format!("{} more host(s) join through the name alone (s)", d.staying),
            d.join_s,
        ),
        (
            format!(
                "name → hosts 3, 4, hosts 0, 1 stopped: the {} staying and the new seeds one \
                 cluster (s)",
                d.staying
            ),
            d.moved_s,
        ),
        (
            "a new node joins through the moved name (s)".to_owned(),
            d.new_node_s,
        ),
    ] {
        let _ = writeln!(out, "| {label} | {} |", secs(s));
    }
    if let Some(e) = &d.error {
        let _ = writeln!(out, "\nStopped early: {e}");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_must_complete() {
        let done = Dns {
            seeds_s: Some(1.0),
            join_s: Some(1.0),
            moved_s: Some(20.0),
            new_node_s: Some(1.0),
            staying: 1,
            error: None,
        };
        assert!(done.violations().is_empty());
        let stuck = Dns {
            moved_s: None,
            ..done
        };
        let v = stuck.violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("after the name moved"), "{v:?}");
        let broken = Dns {
            error: Some("dnsmasq exited".to_owned()),
            ..Dns::default()
        };
        assert_eq!(broken.violations(), ["dns: dnsmasq exited"]);
        assert!(render(&stuck).contains("| –"));
    }
}
