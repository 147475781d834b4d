//! HashiCorp Serf: `serf agent` processes, driven through Serf's RPC protocol (msgpack over
//! TCP, the protocol the `serf` command itself uses), with traffic counted from the agents'
//! go-metrics sent to a statsd listener of the harness.
//!
//! Why RPC rather than an event-handler script: Serf coalesces member events before they reach
//! handlers and RPC streams alike (agent defaults: 3 s window, 1 s quiescence), so a handler
//! would see `member-failed` up to seconds after Serf's member table says so, and every event
//! would add a `fork`/`exec` of a shell. The member table is read with the RPC `members`
//! command; user events (sent with `Coalesce: false`, like `serf event -coalesce=false`) are
//! read from an RPC `stream`, timestamped by the harness as it reads them, as for Chatter's SSE.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rmpv::Value;

use super::system::{
    free_port, kill_slot, leave_slot, node_name, slot, unix_ms, Arrival, KvMode, MemberView,
    NodeProc, Placement, Proc, Seen, Status, System, Traffic,
};

/// Serf's default gossip (bind) port, used on hosts of their own.
const BIND_PORT: u16 = 7946;
/// Serf's default RPC port, used on hosts of their own.
const RPC_PORT: u16 = 7373;

/// One RPC connection to an agent.
struct Rpc {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    seq: u64,
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// Field `key` of a msgpack map.
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// A string that Go's msgpack codec may have sent as str or bin.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.as_str().map(str::to_owned),
        Value::Binary(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

impl Rpc {
    fn connect(addr: SocketAddr, read_timeout: Option<Duration>) -> Result<Rpc> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connect to Serf RPC {addr}"))?;
        stream.set_read_timeout(read_timeout)?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        stream.set_nodelay(true)?;
        let mut rpc = Rpc {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            seq: 0,
        };
        rpc.call(
            "handshake",
            Some(map(vec![("Version", Value::from(1))])),
            false,
        )?;
        Ok(rpc)
    }

    fn send(&mut self, command: &str, body: Option<Value>) -> Result<()> {
        let mut buf = Vec::new();
        let header = map(vec![
            ("Command", Value::from(command)),
            ("Seq", Value::from(self.seq)),
        ]);
        self.seq += 1;
        rmpv::encode::write_value(&mut buf, &header)?;
        if let Some(body) = body {
            rmpv::encode::write_value(&mut buf, &body)?;
        }
        self.writer.write_all(&buf)?;
        Ok(())
    }

    fn read(&mut self) -> Result<Value> {
        Ok(rmpv::decode::read_value(&mut self.reader)?)
    }

    /// Reads a response header; fails on a non-empty `Error`.
    fn read_header(&mut self, command: &str) -> Result<()> {
        let header = self.read()?;
        if let Some(error) = get(&header, "Error").and_then(text) {
            if !error.is_empty() {
                bail!("Serf RPC {command}: {error}");
            }
        }
        Ok(())
    }

    fn call(&mut self, command: &str, body: Option<Value>, has_reply: bool) -> Result<Value> {
        self.send(command, body)?;
        self.read_header(command)?;
        if has_reply {
            self.read()
        } else {
            Ok(Value::Nil)
        }
    }
}

/// Cumulative counters from one agent's statsd output.
#[derive(Default)]
struct Metrics {
    udp_bytes: f64,
    udp_packets: f64,
    tcp_bytes: f64,
}

struct Node {
    proc: Proc,
    rpc: Mutex<Rpc>,
}

impl NodeProc for Node {
    fn proc(&self) -> &Proc {
        &self.proc
    }
}

/// Per-slot resources that outlive a process: ports (a restarted agent binds the same address,
/// as memberlist refuses a known name at a new address) and the statsd listener.
struct SlotRes {
    /// The agent's gossip address (`-bind`).
    bind: SocketAddr,
    /// The agent's RPC address (`-rpc-addr`), reached by the harness.
    rpc: SocketAddr,
    config: PathBuf,
    metrics: Arc<Mutex<Metrics>>,
}

pub struct Serf {
    label: String,
    binary: PathBuf,
    /// `-encrypt` key (base64) of the encrypted column.
    encrypt: Option<String>,
    dir: PathBuf,
    /// Where each slot runs (loopback unless [`Serf::placed`] says otherwise).
    placement: Placement,
    nodes: Vec<Option<Node>>,
    /// Nodes asked to leave, kept until they exit or the system is dropped.
    leaving: Vec<Node>,
    res: Vec<Option<SlotRes>>,
    /// Agents started but not ready yet (no RPC connection so far).
    pending: BTreeMap<usize, Proc>,
    stop: Arc<AtomicBool>,
}

impl Serf {
    /// Serf with its defaults, or with gossip encryption under `encrypt` (a base64 key of 16,
    /// 24 or 32 bytes, as `serf agent -encrypt` takes it).
    pub fn new(label: &str, binary: PathBuf, encrypt: Option<String>) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("chatter-bench-serf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self {
            label: label.to_owned(),
            binary,
            encrypt,
            dir,
            placement: Placement::loopback(),
            nodes: Vec::new(),
            leaving: Vec::new(),
            res: Vec::new(),
            pending: BTreeMap::new(),
            stop: Arc::default(),
        })
    }

    /// The same agents placed by `placement`.
    pub fn placed(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    fn node(&self, i: usize) -> Result<&Node> {
        self.nodes
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| anyhow!("serf {} not running", node_name(i)))
    }

    fn rpc_call(&self, i: usize, command: &str, body: Option<Value>, reply: bool) -> Result<Value> {
        let node = self.node(i)?;
        let mut rpc = node.rpc.lock().map_err(|_| anyhow!("rpc lock poisoned"))?;
        rpc.call(command, body, reply)
    }

    fn members(&self, i: usize) -> Result<Vec<Value>> {
        let body = self.rpc_call(i, "members", None, true)?;
        Ok(get(&body, "Members")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Ports, config file and statsd listener of slot `i`, made on first use.
    fn resources(&mut self, i: usize) -> Result<&SlotRes> {
        if slot(&mut self.res, i).is_none() {
            let statsd = UdpSocket::bind((self.placement.harness_ip(), 0))
                .context("bind statsd listener")?;
            statsd.set_read_timeout(Some(Duration::from_millis(500)))?;
            let statsd_addr = statsd.local_addr()?;
            let metrics = Arc::new(Mutex::new(Metrics::default()));
            let (m, stop) = (metrics.clone(), self.stop.clone());
            // Runs until the harness drops this system (bounded by `stop`).
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(len) = statsd.recv(&mut buf) else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&buf[..len]);
                    let Ok(mut m) = m.lock() else { return };
                    for line in text.lines() {
                        // serf-agent.memberlist.udp.sent:53.000000|c
                        let Some((key, rest)) = line.split_once(':') else {
                            continue;
                        };
                        let value: f64 = rest
                            .split('|')
                            .next()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0.0);
                        if key.ends_with("memberlist.udp.sent") {
                            m.udp_bytes += value;
                            m.udp_packets += 1.0;
                        } else if key.ends_with("memberlist.tcp.sent") {
                            m.tcp_bytes += value;
                        }
                    }
                }
            });
            let config = self.dir.join(format!("{}.json", node_name(i)));
            std::fs::write(&config, format!("{{\"statsd_addr\": \"{statsd_addr}\"}}\n"))
                .with_context(|| format!("write {}", config.display()))?;
            let ip = self.placement.ip(i)?;
            let (bind_port, rpc_port) = if self.placement.on_hosts() {
                (BIND_PORT, RPC_PORT)
            } else {
                (free_port()?, free_port()?)
            };
            *slot(&mut self.res, i) = Some(SlotRes {
                bind: SocketAddr::new(ip, bind_port),
                rpc: SocketAddr::new(ip, rpc_port),
                config,
                metrics,
            });
        }
        self.res[i]
            .as_ref()
            .ok_or_else(|| anyhow!("no resources for slot {i}"))
    }
}

impl Drop for Serf {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.nodes.clear();
        self.pending.clear();
        self.leaving.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn status(s: &str) -> Status {
    match s {
        "alive" => Status::Alive,
        "failed" => Status::Failed,
        "left" => Status::Left,
        _ => Status::Other,
    }
}

impl System for Serf {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let seed = if i == 0 {
            None
        } else {
            Some(self.resources(0)?.bind)
        };
        let res = self.resources(i)?;
        let (bind, rpc, config) = (res.bind, res.rpc, res.config.clone());
        let mut cmd = self.placement.command(i, &self.binary)?;
        cmd.arg("agent")
            .arg(format!("-node={}", node_name(i)))
            .arg(format!("-bind={bind}"))
            .arg(format!("-rpc-addr={rpc}"))
            .arg(format!("-config-file={}", config.display()))
            .arg("-log-level=warn")
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        if let Some(seed) = seed {
            // `retry_join` rather than `-join`: an agent whose first join attempt fails
            // (the seed busy starting 50 agents on two cores) exits with `-join`, and the
            // run would measure that rather than Serf; with a 1 s retry it joins as an
            // operator's agent would.
            let join = self.dir.join(format!("{}-join.json", node_name(i)));
            std::fs::write(
                &join,
                format!("{{\"retry_join\": [\"{seed}\"], \"retry_interval\": \"1s\"}}\n"),
            )
            .with_context(|| format!("write {}", join.display()))?;
            cmd.arg(format!("-config-file={}", join.display()));
        }
        if let Some(key) = &self.encrypt {
            cmd.arg(format!("-encrypt={key}"));
        }
        let proc = Proc::spawn(cmd, &self.binary.display().to_string(), Some)?;
        // The RPC connection is made once the agent is ready; park the process until then.
        *slot(&mut self.nodes, i) = None;
        self.pending.insert(i, proc);
        Ok(())
    }

    fn wait_ready(&mut self, i: usize, limit: Duration) -> Result<()> {
        let mut proc = self
            .pending
            .remove(&i)
            .ok_or_else(|| anyhow!("serf {} not started", node_name(i)))?;
        proc.wait_line("Serf agent running", limit)?;
        let rpc_addr = self.resources(i)?.rpc;
        let rpc = Rpc::connect(rpc_addr, Some(Duration::from_secs(2)))?;
        *slot(&mut self.nodes, i) = Some(Node {
            proc,
            rpc: Mutex::new(rpc),
        });
        Ok(())
    }

    fn pid(&self, i: usize) -> Option<i32> {
        self.node(i).ok().map(|n| n.proc.pid())
    }

    fn view(&self, i: usize) -> Result<Vec<MemberView>> {
        Ok(self
            .members(i)?
            .iter()
            .map(|m| MemberView {
                name: get(m, "Name").and_then(text).unwrap_or_default(),
                status: status(&get(m, "Status").and_then(text).unwrap_or_default()),
                since_ms: None,
            })
            .collect())
    }

    fn kill(&mut self, i: usize) -> Result<()> {
        kill_slot(&mut self.nodes, i)
    }

    fn leave(&mut self, i: usize) -> Result<()> {
        // Serf's graceful leave is SIGINT (SIGTERM leaves only with leave_on_terminate).
        leave_slot(&mut self.nodes, &mut self.leaving, i, libc::SIGINT, "serf")
    }

    fn traffic(&self, i: usize) -> Result<Option<Traffic>> {
        let res = self
            .res
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| anyhow!("no statsd listener for slot {i}"))?;
        let m = res
            .metrics
            .lock()
            .map_err(|_| anyhow!("metrics lock poisoned"))?;
        Ok(Some(Traffic {
            bytes_sent: m.udp_bytes + m.tcp_bytes,
            packets_sent: m.udp_packets,
        }))
    }

    fn follow(&mut self, tx: Sender<Seen>) -> Result<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() {
                continue;
            }
            let rpc_addr = self.resources(i)?.rpc;
            let mut rpc = Rpc::connect(rpc_addr, None)?;
            rpc.send("stream", Some(map(vec![("Type", Value::from("user"))])))?;
            rpc.read_header("stream")?;
            let tx = tx.clone();
            // Ends when the agent closes the connection (it exits).
            thread::spawn(move || loop {
                if rpc.read_header("stream").is_err() {
                    return;
                }
                let Ok(event) = rpc.read() else { return };
                let at_ms = unix_ms();
                if get(&event, "Name").and_then(text).as_deref() != Some("bench") {
                    continue;
                }
                let Some(seq) = get(&event, "Payload")
                    .and_then(text)
                    .and_then(|p| p.parse::<u64>().ok())
                else {
                    continue;
                };
                if tx
                    .send(Seen {
                        node: i,
                        at_ms,
                        arrival: Arrival::Message(seq),
                    })
                    .is_err()
                {
                    return;
                }
            });
        }
        Ok(())
    }

    fn broadcast(&self, origin: usize, seq: u64) -> Result<bool> {
        let body = map(vec![
            ("Name", Value::from("bench")),
            ("Payload", Value::Binary(seq.to_string().into_bytes())),
            ("Coalesce", Value::Boolean(false)),
        ]);
        self.rpc_call(origin, "event", Some(body), false)?;
        Ok(true)
    }

    fn set_key(&self, origin: usize, key: &str, value: &str) -> Result<Option<KvMode>> {
        let body = map(vec![
            ("Tags", map(vec![(key, Value::from(value))])),
            ("DeleteTags", Value::Array(Vec::new())),
        ]);
        self.rpc_call(origin, "tags", Some(body), false)?;
        Ok(Some(KvMode::Poll))
    }

    fn poll_key(&self, i: usize, owner: &str, key: &str) -> Result<Option<String>> {
        Ok(self
            .members(i)?
            .iter()
            .find(|m| get(m, "Name").and_then(text).as_deref() == Some(owner))
            .and_then(|m| get(m, "Tags"))
            .and_then(|tags| get(tags, key))
            .and_then(text))
    }
}
