//! chitchat 0.13: `chatter-bench-chitchat` node processes, driven over standard input/output
//! (the protocol is described in that crate).

use std::io::Write;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::system::{
    kill_slot, leave_slot, node_name, slot, Arrival, KvMode, MemberView, NodeProc, Proc, Seen,
    Status, System, Traffic,
};

type EventSink = Arc<Mutex<Option<Sender<Seen>>>>;

struct Node {
    proc: Proc,
    stdin: Mutex<ChildStdin>,
    gossip: String,
}

impl NodeProc for Node {
    fn proc(&self) -> &Proc {
        &self.proc
    }
}

pub struct Chitchat {
    binary: PathBuf,
    nodes: Vec<Option<Node>>,
    /// Nodes asked to leave, kept until they exit or the system is dropped.
    leaving: Vec<Node>,
    /// Where the stdout readers send key arrivals, once `follow` was called.
    sink: EventSink,
    /// The seed's address, kept across the seed's lifetime.
    seed: Option<String>,
}

impl Chitchat {
    pub fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            nodes: Vec::new(),
            leaving: Vec::new(),
            sink: Arc::default(),
            seed: None,
        }
    }

    fn node(&self, i: usize) -> Result<&Node> {
        self.nodes
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| anyhow!("chitchat {} not running", node_name(i)))
    }

    /// Sends one command line to slot `i` and returns its one-line reply.
    fn request(&self, i: usize, line: &str) -> Result<String> {
        let node = self.node(i)?;
        {
            let mut stdin = node
                .stdin
                .lock()
                .map_err(|_| anyhow!("stdin lock poisoned"))?;
            writeln!(stdin, "{line}").with_context(|| format!("write to {}", node_name(i)))?;
            stdin.flush()?;
        }
        let lines: &Receiver<String> = &node.proc.lines;
        match lines.recv_timeout(Duration::from_secs(2)) {
            Ok(reply) if reply.starts_with("error") => bail!("{}: {reply}", node_name(i)),
            Ok(reply) => Ok(reply),
            Err(RecvTimeoutError::Timeout) => {
                bail!("{} did not answer {line:?} within 2 s", node_name(i))
            }
            Err(RecvTimeoutError::Disconnected) => bail!("{} exited", node_name(i)),
        }
    }
}

fn field(line: &str, key: &str) -> Result<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no {key} in {line:?}"))
}

impl System for Chitchat {
    fn label(&self) -> String {
        "chitchat".to_owned()
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let name = node_name(i);
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--name", &name, "--listen", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null());
        if i != 0 {
            let seed = self.seed.clone().context("the seed is not running")?;
            cmd.args(["--seed", &seed]);
        }
        let sink = self.sink.clone();
        let route = move |line: String| -> Option<String> {
            if line.starts_with("up ") || line.starts_with("down ") {
                return None;
            }
            if let Some(rest) = line.strip_prefix("key ") {
                // key UNIX_MS OWNER KEY VALUE
                let mut words = rest.splitn(4, ' ');
                let at_ms = words.next().and_then(|w| w.parse::<f64>().ok());
                let (owner, key, value) = (words.next(), words.next(), words.next());
                if let (Some(at_ms), Some(owner), Some(key), Some(value)) =
                    (at_ms, owner, key, value)
                {
                    if let Ok(guard) = sink.lock() {
                        if let Some(tx) = guard.as_ref() {
                            let _ = tx.send(Seen {
                                node: i,
                                at_ms,
                                arrival: Arrival::Key {
                                    owner: owner.to_owned(),
                                    key: key.to_owned(),
                                    value: value.to_owned(),
                                },
                            });
                        }
                    }
                }
                return None;
            }
            Some(line)
        };
        let mut proc = Proc::spawn(cmd, &self.binary.display().to_string(), route)?;
        let stdin = proc.child.stdin.take().context("no stdin")?;
        *slot(&mut self.nodes, i) = Some(Node {
            proc,
            stdin: Mutex::new(stdin),
            gossip: String::new(),
        });
        Ok(())
    }

    fn wait_ready(&mut self, i: usize, limit: Duration) -> Result<()> {
        let node = slot(&mut self.nodes, i)
            .as_mut()
            .ok_or_else(|| anyhow!("chitchat {} not started", node_name(i)))?;
        let line = node.proc.wait_line("ready ", limit)?;
        node.gossip = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("gossip="))
            .ok_or_else(|| anyhow!("ready line lacks gossip=: {line}"))?
            .to_owned();
        if i == 0 {
            self.seed = Some(node.gossip.clone());
        }
        Ok(())
    }

    fn pid(&self, i: usize) -> Option<i32> {
        self.node(i).ok().map(|n| n.proc.pid())
    }

    fn view(&self, i: usize) -> Result<Vec<MemberView>> {
        let reply = self.request(i, "members")?;
        let rest = reply
            .strip_prefix("members")
            .ok_or_else(|| anyhow!("unexpected reply {reply:?}"))?;
        let mut out = Vec::new();
        for item in rest.split_whitespace() {
            // NAME=live|dead@SINCE_MS
            let (name, state) = item
                .split_once('=')
                .ok_or_else(|| anyhow!("bad member {item:?}"))?;
            let (state, since) = state
                .split_once('@')
                .ok_or_else(|| anyhow!("bad member {item:?}"))?;
            out.push(MemberView {
                name: name.to_owned(),
                status: if state == "live" {
                    Status::Alive
                } else {
                    Status::Failed
                },
                since_ms: since.parse().ok(),
            });
        }
        Ok(out)
    }

    fn kill(&mut self, i: usize) -> Result<()> {
        kill_slot(&mut self.nodes, i)
    }

    fn leave(&mut self, i: usize) -> Result<()> {
        leave_slot(
            &mut self.nodes,
            &mut self.leaving,
            i,
            libc::SIGTERM,
            "chitchat",
        )
    }

    fn traffic(&self, i: usize) -> Result<Option<Traffic>> {
        let reply = self.request(i, "stats")?;
        Ok(Some(Traffic {
            bytes_sent: field(&reply, "bytes_sent=")?,
            packets_sent: field(&reply, "packets_sent=")?,
        }))
    }

    fn follow(&mut self, tx: Sender<Seen>) -> Result<()> {
        *self
            .sink
            .lock()
            .map_err(|_| anyhow!("sink lock poisoned"))? = Some(tx);
        Ok(())
    }

    fn broadcast(&self, _origin: usize, _seq: u64) -> Result<bool> {
        Ok(false)
    }

    fn set_key(&self, origin: usize, key: &str, value: &str) -> Result<Option<KvMode>> {
        self.request(origin, &format!("set {key} {value}"))?;
        Ok(Some(KvMode::Events))
    }
}
