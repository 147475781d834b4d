//! Hosts made of Linux network namespaces: `N` namespaces `chb<pid>-<i>`, each with one
//! `eth0` on a bridge, and the harness on the same bridge through one veth of its own.
//!
//! ```text
//!  root namespace (harness)           chb<pid>-sw (the switch)            chb<pid>-<i> (host i)
//!  chb<pid>r 10.213.X.1/24  <-veth->  up0 ─┐
//!                                          br0 ── h<i>  <-veth->  eth0 10.213.X.(10+i)/24
//! ```
//!
//! Why a switch namespace of its own rather than a bridge in the root namespace: Docker loads
//! `br_netfilter`, which sends bridged frames through the root namespace's iptables `FORWARD`
//! chain, whose policy Docker sets to `DROP`. A fresh namespace has its own (empty) tables and
//! its own `bridge-nf-call-*` switches, so the hosts' traffic never touches the machine's
//! firewall, and deleting the namespaces removes every link, address and rule made here.
//!
//! Every fault is an nftables rule of the switch (`table bridge chb`), applied where the
//! frames cross the bridge, so no host sees anything but missing packets:
//! - `cut(i)`: every frame to or from host `i`'s port is dropped (the harness's included):
//!   to the others the host is powered off. No ICMP of any kind and no TCP reset comes back,
//!   as every host has a permanent neighbour entry for every other (no ARP failure, so no
//!   "host unreachable" either).
//! - `partition(a, b)`, `one_way(a, b)`: IPv4 packets between the two sets (or from `b` to
//!   `a` only) are dropped; the harness still reaches every host.
//! - `impair(loss, delay, jitter)`: a random `loss` of the packets between hosts
//!   (`numgen random`), and a delay with jitter on every link between hosts from the delay
//!   line of [`super::delay`]: the switch sends the packets between hosts through iptables'
//!   `FORWARD` chain (`bridge-nf-call-iptables`, in its own namespace only) to an NFQUEUE
//!   that a thread of the harness serves. One mechanism on every kernel, `sch_netem` or not
//!   (this project's VM kernels have none), checked by `ping` each time it starts.
//!
//! The hosts may instead be containers of a locally built image ([`HostKind::Containers`]):
//! each starts with no Docker network (`--network none`), its network namespace is named
//! `chb<pid>-<i>` (`ip netns attach`) and gets its link to the switch exactly as a namespace
//! would, and the daemons run inside the container (its filesystem and the image's binaries,
//! through `nsenter`). Docker's own networks and firewall rules are never involved.
//!
//! Every command is checked; the namespaces are removed on drop, on panic (a hook, as the
//! release profile aborts rather than unwinds) and by [`clean_stale`] for runs that died
//! without either (SIGKILL): a namespace `chb<pid>-...` (or a container labelled
//! `chatter-bench=chb<pid>`) whose `pid` no longer runs.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::delay::{DelayLine, DelaySpec, DelayStats, RttMatrix, QUEUE_NUM};
use crate::compare::system::{Host, Placement};

/// Second octet of the hosts' subnet `10.213.X.0/24`: a private range that is rarely routed.
/// `X` starts from the harness's PID and moves on while the root namespace already has an
/// address or route that overlaps.
const SUBNET_OCTET: u8 = 213;
/// Host `i` gets `.(HOST_BASE + i)`; the harness `.1`.
const HOST_BASE: usize = 10;
/// Hosts a /24 can hold after the harness and [`HOST_BASE`].
pub const MAX_HOSTS: usize = 254 - HOST_BASE;
/// Bridge port of the harness's veth in the switch namespace.
const HARNESS_PORT: &str = "up0";
/// Where `ip netns exec NAME` finds files to bind over `/etc` inside namespace `NAME`.
const NETNS_ETC: &str = "/etc/netns";
/// The switch's own address on the bridge is `.(SWITCH_HOST)`, for services of the network
/// itself (the DNS server of the `dns` scenario): outside the hosts' range and not the
/// harness's `.1`.
const SWITCH_HOST: u8 = 2;

/// The label every container of the harness carries, with its prefix (`chb<pid>`) as value.
const CONTAINER_LABEL: &str = "chatter-bench";

/// What the hosts are made of.
#[derive(Debug, Clone, Default)]
pub enum HostKind {
    /// Network namespaces; the daemons run from this machine's files.
    #[default]
    Namespaces,
    /// Containers of `image` (built locally: no registry is asked), holding only a `sleep`
    /// until the daemons are started inside them. `mounts` are `docker run -v` specs (the
    /// harness's temporary directory, where the daemons' data dirs and configuration files
    /// are, and the Serf binary at its own path).
    Containers { image: String, mounts: Vec<String> },
}

/// Name prefixes of the topologies this process has made and not yet removed, for the panic
/// hook (bounded: one per live [`Topology`]).
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// Set by SIGINT or SIGTERM: the harness's waits end with an error, so the topology is
/// dropped and removed rather than left behind.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HOOKS: Once = Once::new();

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether SIGINT or SIGTERM arrived since the hooks were installed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails once SIGINT or SIGTERM arrived.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Installs, once, the SIGINT/SIGTERM handlers and a panic hook that removes every live
/// topology before the (aborting) panic ends the process.
fn install_hooks() {
    HOOKS.call_once(|| {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, handler);
            libc::signal(libc::SIGTERM, handler);
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let prefixes: Vec<String> = match LIVE.lock() {
                Ok(live) => live.iter().cloned().collect(),
                Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
            };
            for prefix in prefixes {
                remove_prefix(&prefix);
            }
        }));
    });
}

/// Runs `program args`, with `input` on its standard input; its standard output, or an error
/// with the command line and its standard error.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let line = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {line}"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().context("no stdin")?;
        stdin
            .write_all(input.as_bytes())
            .with_context(|| format!("{line}: write standard input"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("{line}: wait"))?;
    if !out.status.success() {
        bail!(
            "{line}: {} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<()> {
    run("ip", args, None).map(drop)
}

/// Runs an nft script in namespace `netns`.
fn nft(netns: &str, script: &str) -> Result<()> {
    run(
        "ip",
        &["netns", "exec", netns, "nft", "-f", "-"],
        Some(script),
    )
    .map(drop)
    .with_context(|| format!("nft script:\n{script}"))
}

/// Runs iptables in namespace `netns` (`-w`: legacy iptables shares one lock file across
/// namespaces with every other run).
fn iptables(netns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["netns", "exec", netns, "iptables", "-w", "5"];
    all.extend_from_slice(args);
    run("ip", &all, None).map(drop)
}

/// Sets the switch namespace's `bridge-nf-call-iptables` (whether bridged IPv4 frames cross
/// its iptables chains).
fn bridge_nf_call_iptables(netns: &str, on: bool) -> Result<()> {
    let script = format!(
        "echo {} > /proc/sys/net/bridge/bridge-nf-call-iptables",
        u8::from(on)
    );
    run("ip", &["netns", "exec", netns, "sh", "-c", &script], None)
        .map(drop)
        .context("bridge-nf-call-iptables")
}

/// Checks that this process can build the topology: root, `ip netns`, `nft`.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the hosts suite needs root (network namespaces, bridges, nftables)");
    }
    run("ip", &["netns", "list"], None).context("ip netns does not work here")?;
    run("nft", &["--version"], None).context("nft is missing (apt-get install nftables)")?;
    Ok(())
}

/// Host index of `ip` in the hosts' subnet (`None`: the harness or another address).
fn host_of(ip: Ipv4Addr, subnet: [u8; 3]) -> Option<usize> {
    let o = ip.octets();
    (o[..3] == subnet && usize::from(o[3]) >= HOST_BASE).then(|| usize::from(o[3]) - HOST_BASE)
}

/// The `time=X ms` of every reply in `ping`'s output.
fn ping_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0)
        .collect()
}

/// The mean of `xs` (`None` when empty).
fn mean_of(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// The PID in a name of this scheme (`chb<pid>-...` or `chb<pid>r`).
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("chb")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = &rest[digits.len()..];
    if digits.is_empty() || !(tail.starts_with('-') || tail == "r") {
        return None;
    }
    digits.parse().ok()
}

fn pid_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Names of the network namespaces (`ip netns list` prints `NAME (id: K)` or `NAME`).
fn namespaces() -> Result<Vec<String>> {
    Ok(run("ip", &["netns", "list"], None)?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// SIGKILLs every process in namespace `netns` (only ever a namespace of this scheme: the
/// daemons a harness started there).
fn kill_inside(netns: &str) {
    if let Ok(out) = run("ip", &["netns", "pids", netns], None) {
        for pid in out.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) on a process inside a namespace this harness scheme made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Removes, best effort, everything of prefix `chb<pid>`: processes in its namespaces, the
/// namespaces, the harness's veth.
fn remove_prefix(prefix: &str) {
    let mine = |name: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|t| t.starts_with('-') || t == "r")
    };
    for netns in namespaces().unwrap_or_default() {
        if mine(&netns) {
            kill_inside(&netns);
            let _ = ip(&["netns", "del", &netns]);
        }
    }
    // The per-namespace files `ip netns exec` binds over /etc (a host's resolv.conf).
    if let Ok(dirs) = std::fs::read_dir(NETNS_ETC) {
        for dir in dirs.flatten() {
            if dir.file_name().to_str().is_some_and(mine) {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
    let link = format!("{prefix}r");
    if ip(&["link", "show", "dev", &link]).is_ok() {
        let _ = ip(&["link", "del", "dev", &link]);
    }
    let filter = format!("label={CONTAINER_LABEL}={prefix}");
    if let Ok(ids) = run("docker", &["ps", "-aq", "--filter", &filter], None) {
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = run("docker", &args, None);
        }
    }
}

/// Prefixes of the harness's containers (their label's values); none when Docker is absent.
fn container_prefixes() -> Vec<String> {
    let format = format!("{{{{.Label \"{CONTAINER_LABEL}\"}}}}");
    let filter = format!("label={CONTAINER_LABEL}");
    run(
        "docker",
        &["ps", "-a", "--filter", &filter, "--format", &format],
        None,
    )
    .map(|out| out.lines().map(|l| format!("{}-", l.trim())).collect())
    .unwrap_or_default()
}

/// Starts container `name` of `image`, with no network and only a `sleep` inside, and
/// returns the PID of that `sleep` (in this PID namespace).
fn start_container(prefix: &str, name: &str, image: &str, mounts: &[String]) -> Result<u32> {
    let label = format!("{CONTAINER_LABEL}={prefix}");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--hostname",
        name,
        "--label",
        &label,
        "--network",
        "none",
        // A local image or nothing: never ask a registry.
        "--pull",
        "never",
        // Root inside: the harness signals and reads the daemons as root on this machine.
        "--user",
        "0:0",
        "--entrypoint",
        "sleep",
    ];
    for m in mounts {
        args.extend(["-v", m.as_str()]);
    }
    args.extend([image, "infinity"]);
    run("docker", &args, None).with_context(|| format!("start container {name}"))?;
    let pid = run("docker", &["inspect", "-f", "{{.State.Pid}}", name], None)?;
    pid.trim()
        .parse::<u32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| anyhow!("container {name} has no PID ({})", pid.trim()))
}

/// Removes the leftovers of runs whose process is gone (namespaces `chb<pid>-*` and links
/// `chb<pid>r` of a `pid` that no longer runs); returns the prefixes removed.
pub fn clean_stale() -> Result<Vec<String>> {
    let me = std::process::id() as i32;
    let mut names = namespaces()?;
    names.extend(container_prefixes());
    names.extend(
        run("ip", &["-o", "link", "show"], None)?
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned()),
    );
    let mut stale = BTreeSet::new();
    for name in names {
        if let Some(pid) = owner_pid(&name) {
            if pid != me && !pid_alive(pid) {
                stale.insert(format!("chb{pid}"));
            }
        }
    }
    for prefix in &stale {
        remove_prefix(prefix);
    }
    Ok(stale.into_iter().collect())
}

/// IPv4 networks (address, prefix length) the root namespace has an address or a route in.
fn root_networks() -> Result<Vec<(Ipv4Addr, u8)>> {
    let parse = |s: &str| -> Option<(Ipv4Addr, u8)> {
        let (a, len) = s.split_once('/').unwrap_or((s, "32"));
        Some((a.parse().ok()?, len.parse().ok().filter(|l| *l <= 32)?))
    };
    let mut nets = Vec::new();
    for line in run("ip", &["-4", "-o", "addr", "show"], None)?.lines() {
        let mut words = line.split_whitespace();
        if words.any(|w| w == "inet") {
            nets.extend(words.next().and_then(parse));
        }
    }
    const TYPES: [&str; 10] = [
        "local",
        "broadcast",
        "unicast",
        "multicast",
        "anycast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
    ];
    for line in run("ip", &["-4", "route", "show", "table", "all"], None)?.lines() {
        let mut words = line.split_whitespace();
        let Some(mut first) = words.next() else {
            continue;
        };
        if TYPES.contains(&first) {
            first = words.next().unwrap_or_default();
        }
        // The default route overlaps everything; it is a gateway, not a collision.
        if first != "default" {
            nets.extend(parse(first));
        }
    }
    Ok(nets)
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    u32::from(a.0) & mask == u32::from(b.0) & mask
}

/// A free `10.213.X.0/24`, starting from `X = pid % 256`.
fn pick_subnet(pid: u32) -> Result<[u8; 3]> {
    let used = root_networks()?;
    for k in 0..256u32 {
        let x = ((pid + k) % 256) as u8;
        let net = (Ipv4Addr::new(10, SUBNET_OCTET, x, 0), 24);
        if !used.iter().any(|&u| overlaps(u, net)) {
            return Ok([10, SUBNET_OCTET, x]);
        }
    }
    bail!("every 10.{SUBNET_OCTET}.X.0/24 overlaps an address or route of this machine")
}

/// One host: its namespace, its port on the bridge, its address and MAC address, and its
/// container's PID when it is one.
struct HostNet {
    netns: String,
    container_pid: Option<u32>,
    port: String,
    ip: Ipv4Addr,
    mac: String,
}

/// What [`Topology::impair`] applied, and the delay line's check.
#[derive(Debug, Clone, Default)]
pub struct Impairment {
    /// Whether a delay line runs (some delay, jitter or RTT matrix was asked for).
    pub delay_applied: bool,
    /// Mean RTT from host 0 to host 1 measured with `ping` before the delay line, in ms.
    pub rtt_before_ms: Option<f64>,
    /// The same with the delay line (before the loss is applied), in ms.
    pub rtt_with_ms: Option<f64>,
    /// The mean RTT the configured delay and jitter give that pair, in ms.
    pub rtt_expected_ms: f64,
    /// Seed of the delay line's jitter.
    pub seed: u64,
}

/// Pings sent to check the delay line, about a second's worth: with 50 ms of jitter each way
/// an RTT's standard deviation is about 30 ms, so the mean of 50 is within ±13 ms (3 sigma).
const PINGS: &str = "50";
/// Interval between them (root may go below ping's 0.2 s floor).
const PING_INTERVAL: &str = "0.02";

/// The hosts, the switch and the harness's link to it; removed on drop.
pub struct Topology {
    prefix: String,
    switch: String,
    root_if: String,
    subnet: [u8; 3],
    harness: Ipv4Addr,
    hosts: Vec<HostNet>,
    /// The delay line while one runs.
    delay_line: Option<DelayLine>,
    /// Per-pair RTTs the delay line gives the pairs listed.
    matrix: RttMatrix,
    /// Delay lines started, for their seeds.
    delay_lines: u64,
}

impl Topology {
    /// Builds `n` hosts of `kind`. Fails (having removed what it made) when a command fails.
    pub fn create(n: usize, kind: &HostKind) -> Result<Topology> {
        if n == 0 || n > MAX_HOSTS {
            bail!("hosts: between 1 and {MAX_HOSTS} (one /24), not {n}");
        }
        install_hooks();
        let pid = std::process::id();
        let prefix = format!("chb{pid}");
        let subnet = pick_subnet(pid)?;
        let [a, b, c] = subnet;
        if let Ok(mut live) = LIVE.lock() {
            live.insert(prefix.clone());
        }
        let mut topo = Topology {
            switch: format!("{prefix}-sw"),
            root_if: format!("{prefix}r"),
            harness: Ipv4Addr::new(a, b, c, 1),
            prefix,
            subnet,
            hosts: Vec::new(),
            delay_line: None,
            matrix: RttMatrix::default(),
            delay_lines: 0,
        };
        topo.build(n, kind)?;
        Ok(topo)
    }

    fn build(&mut self, n: usize, kind: &HostKind) -> Result<()> {
        let sw = self.switch.clone();
        let root_if = self.root_if.clone();
        let [a, b, c] = self.subnet;
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        // The switch's own bridge-netfilter switches: frames cross the bridge without the
        // iptables of any namespace.
        run(
            "ip",
            &[
                "netns",
                "exec",
                &sw,
                "sh",
                "-c",
                "for f in /proc/sys/net/bridge/bridge-nf-call-*; do \
                 if [ -e \"$f\" ]; then echo 0 > \"$f\" || exit 1; fi; done",
            ],
            None,
        )?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        ip(&[
            "link",
            "add",
            &root_if,
            "address",
            "02:cb:00:01:00:01",
            "type",
            "veth",
            "peer",
            "name",
            HARNESS_PORT,
            "netns",
            &sw,
        ])?;
        ip(&[
            "-n",
            &sw,
            "link",
            "set",
            HARNESS_PORT,
            "master",
            "br0",
            "up",
        ])?;
        let harness = format!("{}/24", self.harness);
        ip(&["addr", "add", &harness, "dev", &root_if])?;
        ip(&["link", "set", &root_if, "up"])?;
        for i in 0..n {
            let ns = format!("{}-{i}", self.prefix);
            let container_pid = match kind {
                HostKind::Namespaces => {
                    ip(&["netns", "add", &ns])?;
                    None
                }
                HostKind::Containers { image, mounts } => {
                    let pid = start_container(&self.prefix, &ns, image, mounts)?;
                    ip(&["netns", "attach", &ns, &pid.to_string()])?;
                    Some(pid)
                }
            };
            self.hosts.push(HostNet {
                netns: ns.clone(),
                container_pid,
                port: format!("h{i}"),
                ip: Ipv4Addr::new(a, b, c, (HOST_BASE + i) as u8),
                mac: format!("02:cb:00:00:{:02x}:{:02x}", i >> 8, i & 0xff),
            });
            let host = &self.hosts[i];
            ip(&[
                "-n", &sw, "link", "add", &host.port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &host.port, "master", "br0", "up"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "address", &host.mac])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // Permanent neighbour entries everywhere: a host whose link is cut is never an ARP
        // failure, so nobody gets "host unreachable".
        let harness_mac = run("ip", &["-o", "link", "show", "dev", &root_if], None)?
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no MAC address on {root_if}"))?;
        for (i, host) in self.hosts.iter().enumerate() {
            let mut batch = format!(
                "neigh replace {} lladdr {harness_mac} dev eth0 nud permanent\n",
                self.harness
            );
            for (j, other) in self.hosts.iter().enumerate() {
                if i != j {
                    batch.push_str(&format!(
                        "neigh replace {} lladdr {} dev eth0 nud permanent\n",
                        other.ip, other.mac
                    ));
                }
            }
            run("ip", &["-n", &host.netns, "-batch", "-"], Some(&batch))?;
        }
        let batch: String = self
            .hosts
            .iter()
            .map(|h| {
                format!(
                    "neigh replace {} lladdr {} dev {root_if} nud permanent\n",
                    h.ip, h.mac
                )
            })
            .collect();
        run("ip", &["-batch", "-"], Some(&batch))?;
        nft(
            &sw,
            &format!(
                "table bridge chb {{
  set cut {{ type ifname; }}
  set blocked {{ type ipv4_addr . ipv4_addr; }}
  chain impair {{ }}
  chain bridged {{
    type filter hook forward priority 0; policy accept;
    iifname @cut drop
    oifname @cut drop
    ip saddr . ip daddr @blocked drop
    iifname != \"{HARNESS_PORT}\" oifname != \"{HARNESS_PORT}\" jump impair
  }}
}}
"
            ),
        )?;
        Ok(())
    }

    /// Where the systems' slots run: slot `i` on host `i`.
    pub fn placement(&self) -> Placement {
        Placement::hosts(
            self.hosts
                .iter()
                .map(|h| Host {
                    netns: h.netns.clone(),
                    ip: h.ip,
                    container_pid: h.container_pid,
                })
                .collect(),
            self.harness,
        )
    }

    /// Network namespace of host `i`.
    pub fn host_netns(&self, i: usize) -> Result<&str> {
        Ok(&self.host(i)?.netns)
    }

    /// Address of host `i`.
    pub fn host_ip(&self, i: usize) -> Result<Ipv4Addr> {
        Ok(self.host(i)?.ip)
    }

    /// The switch's namespace.
    pub fn switch_netns(&self) -> &str {
        &self.switch
    }

    /// Gives the switch an address on its bridge (once), for a service every host reaches at
    /// the same address whatever the faults between hosts; returns it.
    pub fn switch_address(&self) -> Result<Ipv4Addr> {
        let [a, b, c] = self.subnet;
        let addr = Ipv4Addr::new(a, b, c, SWITCH_HOST);
        let shown = run(
            "ip",
            &["-n", &self.switch, "-4", "-o", "addr", "show", "dev", "br0"],
            None,
        )?;
        if !shown.contains(&format!("inet {addr}/")) {
            ip(&[
                "-n",
                &self.switch,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "br0",
            ])?;
        }
        Ok(addr)
    }

    /// Every host resolves names through `nameserver` from now on: a `resolv.conf` of its own
    /// in `/etc/netns/NAME/`, which `ip netns exec` (how daemons start on a namespace host)
    /// binds over `/etc/resolv.conf`, and a container's own `/etc/resolv.conf`. Removed with
    /// the topology.
    pub fn set_resolver(&self, nameserver: Ipv4Addr) -> Result<()> {
        // Short timeouts: a lookup that the server does not answer fails in 2 s, not 10.
        let conf = format!("nameserver {nameserver}\noptions timeout:1 attempts:2\n");
        for h in &self.hosts {
            let dir = std::path::Path::new(NETNS_ETC).join(&h.netns);
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let path = dir.join("resolv.conf");
            std::fs::write(&path, &conf).with_context(|| format!("write {}", path.display()))?;
            if let Some(pid) = h.container_pid {
                // Written in place: Docker binds that file from its own directory.
                let path = format!("/proc/{pid}/root/etc/resolv.conf");
                std::fs::write(&path, &conf).with_context(|| format!("write {path}"))?;
            }
        }
        Ok(())
    }

    /// The IPv4 addresses `name` resolves to on host `i`, through its resolver (`getent
    /// ahostsv4`, the system resolver as the daemons use it); empty when it does not resolve.
    pub fn resolve_on(&self, i: usize, name: &str) -> Result<Vec<Ipv4Addr>> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                self.host_netns(i)?,
                "getent",
                "ahostsv4",
                name,
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .context("getent")?;
        let mut addrs: Vec<Ipv4Addr> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        Ok(addrs)
    }

    /// The switch's subnet, as `10.213.X.0/24`.
    pub fn subnet(&self) -> String {
        let [a, b, c] = self.subnet;
        format!("{a}.{b}.{c}.0/24")
    }

    fn host(&self, i: usize) -> Result<&HostNet> {
        self.hosts
            .get(i)
            .ok_or_else(|| anyhow!("no host {i} ({} hosts)", self.hosts.len()))
    }

    /// Host `i` vanishes: every frame to or from it is dropped at the bridge.
    pub fn cut(&self, i: usize) -> Result<()> {
        let port = &self.host(i)?.port;
        nft(
            &self.switch,
            &format!("add element bridge chb cut {{ \"{port}\" }}\n"),
        )
        .with_context(|| format!("cut host {i}"))
    }

    /// Undoes [`Topology::cut`] of host `i` (nothing if it is not cut).
    pub fn restore(&self, i: usize) -> Result<()> {
        let port = &self.host(i)?.port;
        // `destroy` would ignore a missing element but needs nft 1.0.8; flush-and-re-add
        // would race with other cuts. Deleting an absent element fails, so check first.
        let listed = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.switch,
                "nft",
                "list",
                "set",
                "bridge",
                "chb",
                "cut",
            ],
            None,
        )?;
        if !listed.contains(&format!("\"{port}\"")) {
            return Ok(());
        }
        nft(
            &self.switch,
            &format!("delete element bridge chb cut {{ \"{port}\" }}\n"),
        )
        .with_context(|| format!("restore host {i}"))
    }

    fn block(&self, pairs: &[(usize, usize)]) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut elements = Vec::new();
        for &(from, to) in pairs {
            elements.push(format!("{} . {}", self.host(from)?.ip, self.host(to)?.ip));
        }
        nft(
            &self.switch,
            &format!(
                "add element bridge chb blocked {{ {} }}\n",
                elements.join(", ")
            ),
        )
    }

    /// No IPv4 packet between a host of `a` and a host of `b`, either way.
    pub fn partition(&self, a: &[usize], b: &[usize]) -> Result<()> {
        let mut pairs = Vec::new();
        for &x in a {
            for &y in b {
                pairs.push((x, y));
                pairs.push((y, x));
            }
        }
        self.block(&pairs).context("partition")
    }

    /// Host `a` reaches `b`, `b` does not reach `a`: packets from `b` to `a` are dropped.
    pub fn one_way(&self, a: usize, b: usize) -> Result<()> {
        self.block(&[(b, a)]).context("one-way link")
    }

    /// Undoes every [`Topology::partition`] and [`Topology::one_way`].
    pub fn heal(&self) -> Result<()> {
        nft(&self.switch, "flush set bridge chb blocked\n").context("heal")
    }

    /// Per-pair RTTs for the delay line from now on (pairs not listed get the plain delay).
    pub fn set_rtt_matrix(&mut self, matrix: RttMatrix) {
        self.matrix = matrix;
    }

    /// Mean `ping` RTT from host `from` to host `to`, in ms (`None`: no reply); a reply may
    /// take up to `wait`.
    pub fn ping(&self, from: usize, to: usize, count: &str, wait: Duration) -> Result<Option<f64>> {
        let (ns, ip) = (&self.host(from)?.netns, self.host(to)?.ip.to_string());
        let wait = wait.as_secs().max(1).to_string();
        // Not `run`: ping fails when a reply is missing, and the replies that came still count.
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-c", count, "-i"])
            .args([PING_INTERVAL, "-W", &wait, &ip])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .context("ping (apt-get install iputils-ping)")?;
        Ok(mean_of(&ping_times(&String::from_utf8_lossy(&out.stdout))))
    }

    /// Starts the delay line with `spec` (or changes the spec of the running one): the
    /// switch sends every IPv4 packet between two hosts through it; the harness's own
    /// packets (its HTTP polls) pass undelayed.
    pub fn start_delay(&mut self, spec: DelaySpec) -> Result<()> {
        if let Some(line) = &self.delay_line {
            line.update(spec);
            return Ok(());
        }
        let sw = self.switch.clone();
        let seed = self.delay_seed();
        let line = DelayLine::start(&sw, spec, seed, self.subnet, host_of)?;
        let subnet = self.subnet();
        let harness = self.harness.to_string();
        let queue = QUEUE_NUM.to_string();
        let rules = bridge_nf_call_iptables(&sw, true)
            .and_then(|()| iptables(&sw, &["-F", "FORWARD"]))
            .and_then(|()| iptables(&sw, &["-A", "FORWARD", "-s", &harness, "-j", "ACCEPT"]))
            .and_then(|()| iptables(&sw, &["-A", "FORWARD", "-d", &harness, "-j", "ACCEPT"]))
            .and_then(|()| {
                iptables(
                    &sw,
                    &[
                        "-A",
                        "FORWARD",
                        "-s",
                        &subnet,
                        "-d",
                        &subnet,
                        "-j",
                        "NFQUEUE",
                        "--queue-num",
                        &queue,
                        "--queue-bypass",
                    ],
                )
            })
            .context("delay line rules (apt-get install iptables)");
        self.delay_line = Some(line);
        if let Err(e) = rules {
            let _ = self.stop_delay();
            return Err(e);
        }
        Ok(())
    }

    /// Stops the delay line (every held packet released) and removes its rules; what it did.
    pub fn stop_delay(&mut self) -> Result<Option<DelayStats>> {
        let Some(line) = self.delay_line.take() else {
            return Ok(None);
        };
        // The rules go first, so no packet is queued once the line is gone (the rule's
        // bypass would pass them undelayed anyway).
        let rules = iptables(&self.switch, &["-F", "FORWARD"])
            .and_then(|()| bridge_nf_call_iptables(&self.switch, false));
        let stats = line.stop()?;
        rules.context("remove the delay line's rules")?;
        Ok(Some(stats))
    }

    /// A seed per delay line: the harness's PID and the line's number, printed with the
    /// figures.
    fn delay_seed(&mut self) -> u64 {
        self.delay_lines += 1;
        (u64::from(std::process::id()) << 32) | self.delay_lines
    }

    /// `loss_pct` % of the packets between hosts dropped at random (each way, independently),
    /// and every packet between hosts delayed by `delay` ± `jitter` (uniform, per packet; the
    /// RTT matrix's pairs by half their RTT ± `jitter`). The delay line is checked with `ping`
    /// from host 0 to host 1 before the loss starts.
    pub fn impair(
        &mut self,
        loss_pct: f64,
        delay: Duration,
        jitter: Duration,
    ) -> Result<Impairment> {
        if !(0.0..=100.0).contains(&loss_pct) {
            bail!("loss must be 0 to 100 %, not {loss_pct}");
        }
        self.clear_impairment()?;
        let spec = DelaySpec {
            delay,
            jitter,
            matrix: self.matrix.clone(),
        };
        let mut imp = Impairment::default();
        if !spec.is_zero() && self.hosts.len() >= 2 {
            imp.rtt_before_ms = self.ping(0, 1, "5", Duration::from_secs(2))?;
            imp.rtt_expected_ms = spec.mean_rtt(0, 1, 10_000).as_secs_f64() * 1000.0;
            // The longest RTT the spec allows, twice, and 2 s for a loaded machine.
            let longest =
                (spec.base(Some(0), Some(1)) + spec.base(Some(1), Some(0)) + spec.jitter * 2) * 2;
            self.start_delay(spec)?;
            imp.seed = (u64::from(std::process::id()) << 32) | self.delay_lines;
            imp.delay_applied = true;
            imp.rtt_with_ms = self.ping(0, 1, PINGS, longest + Duration::from_secs(2))?;
        }
        let per_10k = (loss_pct * 100.0).round() as u32;
        nft(
            &self.switch,
            &format!("add rule bridge chb impair numgen random mod 10000 < {per_10k} drop\n"),
        )
        .context("loss rule")?;
        Ok(imp)
    }

    /// Undoes [`Topology::impair`]; what the delay line did, if one ran.
    pub fn clear_impairment(&mut self) -> Result<Option<DelayStats>> {
        nft(&self.switch, "flush chain bridge chb impair\n").context("clear loss")?;
        self.stop_delay()
    }

    /// Every host restored, every partition healed, no impairment.
    pub fn reset(&mut self) -> Result<()> {
        self.heal()?;
        nft(&self.switch, "flush set bridge chb cut\n").context("restore all")?;
        self.clear_impairment().map(drop)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // The delay line's thread goes before its namespace.
        let _ = self.stop_delay();
        remove_prefix(&self.prefix);
        if let Ok(mut live) = LIVE.lock() {
            live.remove(&self.prefix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_scheme_give_their_pid() {
        assert_eq!(owner_pid("chb1234-0"), Some(1234));
        assert_eq!(owner_pid("chb1234-sw"), Some(1234));
        assert_eq!(owner_pid("chb77r"), Some(77));
        assert_eq!(owner_pid("chb77"), None);
        assert_eq!(owner_pid("chbr"), None);
        assert_eq!(owner_pid("chb12x-0"), None);
        assert_eq!(owner_pid("docker0"), None);
    }

    #[test]
    fn packets_are_mapped_to_hosts_by_address() {
        let subnet = [10, 213, 7];
        assert_eq!(host_of(Ipv4Addr::new(10, 213, 7, 10), subnet), Some(0));
        assert_eq!(host_of(Ipv4Addr::new(10, 213, 7, 14), subnet), Some(4));
        assert_eq!(host_of(Ipv4Addr::new(10, 213, 7, 1), subnet), None);
        assert_eq!(host_of(Ipv4Addr::new(10, 213, 8, 10), subnet), None);
    }

    #[test]
    fn ping_replies_give_their_times() {
        let out = "PING 10.213.7.11 (10.213.7.11) 56(84) bytes of data.
64 bytes from 10.213.7.11: icmp_seq=1 ttl=64 time=41.2 ms
64 bytes from 10.213.7.11: icmp_seq=2 ttl=64 time=0.051 ms
64 bytes from 10.213.7.11: icmp_seq=3 ttl=64 time=45 ms

--- 10.213.7.11 ping statistics ---
rtt min/avg/max/mdev = 0.051/28.7/45.0/20.3 ms
";
        assert_eq!(ping_times(out), [41.2, 0.051, 45.0]);
        assert_eq!(mean_of(&[40.0, 0.5, 45.0]), Some(28.5));
        assert_eq!(mean_of(&[]), None);
    }

    #[test]
    fn overlapping_networks_are_found() {
        let net = |a: [u8; 4], l| (Ipv4Addr::from(a), l);
        assert!(overlaps(net([10, 213, 5, 0], 24), net([10, 213, 5, 7], 32)));
        assert!(overlaps(net([10, 0, 0, 0], 8), net([10, 213, 5, 0], 24)));
        assert!(!overlaps(
            net([10, 213, 6, 0], 24),
            net([10, 213, 5, 0], 24)
        ));
        assert!(!overlaps(net([192, 0, 2, 0], 24), net([10, 213, 5, 0], 24)));
    }
}
