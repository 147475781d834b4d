//! What `compare` needs from each system under test, and the process plumbing they share.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// A member's status in one node's view, mapped onto Chatter's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Alive,
    Suspect,
    /// Chatter `failed`, Serf `failed`, chitchat "dead" (not live for its failure detector).
    Failed,
    /// A graceful leave: Chatter and Serf `left` (chitchat has no such state).
    Left,
    Other,
}

/// One member as one node sees it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub name: String,
    pub status: Status,
    /// Unix ms at which this node gave the member its current status, when the system says
    /// (Chatter: `status_since_ms`; the chitchat node: when it saw the live set change).
    pub since_ms: Option<f64>,
}

/// Why one node lists a member as it does ([`System::explain`]).
#[derive(Debug, Clone)]
pub struct Explanation {
    /// One line, times in seconds from the fault.
    pub line: String,
    /// When the node learned of the failure (Unix ms), if it did.
    pub failed_at_ms: Option<f64>,
}

/// Something that arrived on one node, seen by the harness.
#[derive(Debug, Clone)]
pub enum Arrival {
    /// A broadcast with this sequence number.
    Message(u64),
    /// A key of `owner` now holding `value`.
    Key {
        owner: String,
        key: String,
        value: String,
    },
}

/// An arrival on node `node` at `at_ms` (Unix ms).
#[derive(Debug, Clone)]
pub struct Seen {
    pub node: usize,
    pub at_ms: f64,
    pub arrival: Arrival,
}

/// Cumulative traffic sent by one node.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    pub bytes_sent: f64,
    pub packets_sent: f64,
}

/// How a system makes key/value writes visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvMode {
    /// Arrivals come as [`Seen`] events.
    Events,
    /// The harness polls [`System::poll_key`] on every node.
    Poll,
}

/// One system under test: a cluster of local processes, slot `i` being node `n{i:02}`.
/// Slot 0 is the seed everyone joins through; it is never the victim.
pub trait System {
    /// Column label in the tables.
    fn label(&self) -> String;
    /// Starts the process of slot `i` (a new life if it ran before) without waiting for it.
    fn spawn(&mut self, i: usize) -> Result<()>;
    /// Waits until slot `i` says it is up.
    fn wait_ready(&mut self, i: usize, limit: Duration) -> Result<()>;
    /// PID of slot `i`, while running.
    fn pid(&self, i: usize) -> Option<i32>;
    /// Slot `i`'s member table.
    fn view(&self, i: usize) -> Result<Vec<MemberView>>;
    /// SIGKILLs slot `i` and reaps it.
    fn kill(&mut self, i: usize) -> Result<()>;
    /// Asks slot `i` to leave gracefully (the system's documented way); the process is kept
    /// (and killed with the system if it has not exited by then).
    fn leave(&mut self, i: usize) -> Result<()>;
    /// Cumulative traffic sent by slot `i`, if it can be measured.
    fn traffic(&self, i: usize) -> Result<Option<Traffic>>;
    /// From now on, send arrivals on every running node to `tx`.
    fn follow(&mut self, tx: Sender<Seen>) -> Result<()>;
    /// Broadcasts message `seq` from slot `origin`; `false`: the system has no broadcast.
    fn broadcast(&self, origin: usize, seq: u64) -> Result<bool>;
    /// Sets `key` to `value` on slot `origin`; `None`: the system has no key/value state.
    fn set_key(&self, origin: usize, key: &str, value: &str) -> Result<Option<KvMode>>;
    /// [`KvMode::Poll`] systems: the value of `owner`'s `key` in slot `i`'s view.
    fn poll_key(&self, _i: usize, _owner: &str, _key: &str) -> Result<Option<String>> {
        Ok(None)
    }
    /// Why slot `i` lists `member` as it does, with times from `t0_ms` (Unix ms), when the
    /// system says (Chatter's evidence); `None` when it does not.
    fn explain(&self, _i: usize, _member: &str, _t0_ms: f64) -> Result<Option<Explanation>> {
        Ok(None)
    }
}

/// Where the processes of a system run and which address each binds: every slot on
/// 127.0.0.1 in the harness's own network namespace with ephemeral ports (`compare`), or slot
/// `i` inside network namespace `hosts[i].netns` bound to `hosts[i].ip` (`hosts`), where every
/// host has its own address, so each system's usual fixed ports serve and the harness reaches
/// the HTTP API or RPC at the host's address from its own namespace through `harness`.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    hosts: Vec<Host>,
    harness: Option<Ipv4Addr>,
}

/// One host of a [`Placement`]: a network namespace and its address, and the container it
/// belongs to, if any.
#[derive(Debug, Clone)]
pub struct Host {
    /// The network namespace's name (`ip netns exec NETNS ...`).
    pub netns: String,
    /// The host's address, on which its processes listen.
    pub ip: Ipv4Addr,
    /// PID (in this PID namespace) of the process that holds the host's container, when the
    /// host is a container: programs run inside it (its filesystem, its network), not only in
    /// its network namespace.
    pub container_pid: Option<u32>,
}

impl Placement {
    /// Every slot on 127.0.0.1 in the harness's namespace, on ephemeral ports.
    pub fn loopback() -> Self {
        Self::default()
    }

    /// Slot `i` on `hosts[i]`; `harness` is the harness's own address on the hosts' network.
    pub fn hosts(hosts: Vec<Host>, harness: Ipv4Addr) -> Self {
        Self {
            hosts,
            harness: Some(harness),
        }
    }

    /// Whether slots run on hosts of their own (fixed ports) rather than on loopback.
    pub fn on_hosts(&self) -> bool {
        self.harness.is_some()
    }

    /// The command that runs the daemon `program` in slot `i`'s place: the program itself on
    /// loopback, `ip netns exec NETNS program` on a host made of a namespace, and `nsenter`
    /// into the container's mount, UTS, IPC and network namespaces on a container host
    /// (`program` is then a path inside the container). Both exec the program, so the child's
    /// PID is the program's and signals reach it directly.
    pub fn command(&self, i: usize, program: &Path) -> Result<Command> {
        if !self.on_hosts() {
            return Ok(Command::new(program));
        }
        let host = self.host(i)?;
        match host.container_pid {
            Some(pid) => {
                let mut cmd = Command::new("nsenter");
                cmd.args(["--target", &pid.to_string()])
                    .args(["--mount", "--uts", "--ipc", "--net", "--root", "--wd", "--"])
                    .arg(program);
                Ok(cmd)
            }
            None => self.net_command(i, program),
        }
    }

    /// The command that runs this machine's `program` (a tool such as `ip`) in slot `i`'s
    /// network namespace: `ip netns exec NETNS program`, container or not; the program itself
    /// on loopback.
    pub fn net_command(&self, i: usize, program: &Path) -> Result<Command> {
        if !self.on_hosts() {
            return Ok(Command::new(program));
        }
        let host = self.host(i)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.netns]).arg(program);
        Ok(cmd)
    }

    /// The address slot `i` binds.
    pub fn ip(&self, i: usize) -> Result<IpAddr> {
        if !self.on_hosts() {
            return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Ok(IpAddr::V4(self.host(i)?.ip))
    }

    /// The harness's address as the slots reach it (for listeners of the harness, such as
    /// Serf's statsd sink).
    pub fn harness_ip(&self) -> IpAddr {
        IpAddr::V4(self.harness.unwrap_or(Ipv4Addr::LOCALHOST))
    }

    fn host(&self, i: usize) -> Result<&Host> {
        self.hosts
            .get(i)
            .ok_or_else(|| anyhow!("slot {i} has no host ({} hosts)", self.hosts.len()))
    }
}

/// Name of slot `i`.
pub fn node_name(i: usize) -> String {
    format!("n{i:02}")
}

pub use crate::cluster::unix_ms;

/// Ports [`free_port`] has handed out in this process: a port is released as soon as it is
/// found free, so the kernel may offer it again to the next call, and two agents of a
/// 100-node cluster were seen to get the same one (one of them then failed to start). At most
/// one entry per port number.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A loopback port that is free for both TCP and UDP right now (bind port 0, then release),
/// and never handed out before by this process.
pub fn free_port() -> Result<u16> {
    for _ in 0..200 {
        let tcp = TcpListener::bind("127.0.0.1:0").context("bind TCP 127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
            if handed.insert(port) {
                return Ok(port);
            }
        }
    }
    bail!("no loopback port free for both TCP and UDP, and new to this run, after 200 tries")
}

/// A child process whose standard output lines are read by a thread; `route` decides per line
/// whether it goes to `lines` (`Some`) or was consumed (`None`). Killed and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub lines: Receiver<String>,
}

impl Proc {
    pub fn spawn(
        mut cmd: Command,
        what: &str,
        mut route: impl FnMut(String) -> Option<String> + Send + 'static,
    ) -> Result<Proc> {
        cmd.stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(line) = route(line) {
                    if tx.send(line).is_err() {
                        // Nobody listens any more; keep draining so the child never blocks.
                        continue;
                    }
                }
            }
        });
        Ok(Proc { child, lines: rx })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a line containing `needle`; returns it.
    pub fn wait_line(&mut self, needle: &str, limit: Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    bail!("no line with {needle:?} within {limit:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    bail!("process exited before printing {needle:?} (status {status:?})")
                }
            }
        }
    }

    pub fn signal(&self, sig: i32) -> Result<()> {
        // SAFETY: kill(2) on the PID of a child this harness started and has not reaped.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        if rc != 0 {
            bail!("kill({}, {sig}) failed", self.pid());
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Slots of processes, growing as needed.
pub fn slot<T>(slots: &mut Vec<Option<T>>, i: usize) -> &mut Option<T> {
    if slots.len() <= i {
        slots.resize_with(i + 1, || None);
    }
    &mut slots[i]
}

/// A node of one of the compared systems: it owns the process it runs in.
pub trait NodeProc {
    /// The node's process.
    fn proc(&self) -> &Proc;
}

/// SIGKILLs node `i` of `slots`, if it runs, and reaps it.
pub fn kill_slot<T: NodeProc>(slots: &mut Vec<Option<T>>, i: usize) -> Result<()> {
    if let Some(node) = slot(slots, i).take() {
        node.proc().signal(libc::SIGKILL)?;
    }
    Ok(())
}

/// Sends node `i` of `slots` the system's graceful-stop signal and keeps it in `leaving` until
/// it exits. `what` names the system in the error when the node is not running.
pub fn leave_slot<T: NodeProc>(
    slots: &mut Vec<Option<T>>,
    leaving: &mut Vec<T>,
    i: usize,
    signal: i32,
    what: &str,
) -> Result<()> {
    let node = slot(slots, i)
        .take()
        .ok_or_else(|| anyhow!("{what} {} not running", node_name(i)))?;
    node.proc().signal(signal)?;
    leaving.push(node);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn daemons_run_inside_containers_and_tools_in_their_network_namespace() {
        let host = |netns: &str, container_pid| Host {
            netns: netns.to_owned(),
            ip: Ipv4Addr::new(10, 213, 0, 10),
            container_pid,
        };
        let placement = Placement::hosts(
            vec![host("chb1-0", None), host("chb1-1", Some(4321))],
            Ipv4Addr::new(10, 213, 0, 1),
        );
        let daemon = Path::new("/usr/local/bin/chatterd");
        let namespace = placement.command(0, daemon).map(|c| args(&c));
        assert_eq!(
            namespace.ok(),
            Some(
                ["ip", "netns", "exec", "chb1-0", "/usr/local/bin/chatterd"]
                    .map(String::from)
                    .to_vec()
            )
        );
        // In a container: its files (mount namespace, root, working directory) and network;
        // `nsenter` execs the daemon, so the harness's child is the daemon.
        let inside = placement
            .command(1, daemon)
            .map(|c| args(&c))
            .unwrap_or_default();
        assert_eq!(inside[..3], ["nsenter", "--target", "4321"]);
        for flag in ["--mount", "--net", "--root", "--wd"] {
            assert!(
                inside.iter().any(|a| a == flag),
                "{flag} missing: {inside:?}"
            );
        }
        assert!(!inside.iter().any(|a| a == "--pid"), "--pid would fork");
        assert_eq!(
            inside.last().map(String::as_str),
            Some("/usr/local/bin/chatterd")
        );
        // This machine's tools run in the container's network namespace only.
        let tool = placement.net_command(1, Path::new("ip")).map(|c| args(&c));
        assert_eq!(
            tool.ok(),
            Some(
                ["ip", "netns", "exec", "chb1-1", "ip"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert!(placement.command(2, daemon).is_err(), "no third host");
    }

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..300).filter_map(|_| free_port().ok()).collect();
        assert_eq!(ports.len(), 300);
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
