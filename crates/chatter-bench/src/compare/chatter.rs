//! Chatter: `chatterd` processes, driven through their HTTP API and SSE streams.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc::Sender;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use super::system::{
    kill_slot, leave_slot, node_name, slot, unix_ms, Arrival, Explanation, KvMode, MemberView,
    NodeProc, Placement, Proc, Seen, Status, System, Traffic,
};

/// chatterd's documented default gossip port, used on hosts of their own.
const GOSSIP_PORT: u16 = 2428;
/// chatterd's documented default HTTP port, used on hosts of their own.
const HTTP_PORT: u16 = 8428;
use crate::cluster::{find_number, follow_events};

struct Node {
    proc: Proc,
    gossip: String,
    http: String,
}

impl NodeProc for Node {
    fn proc(&self) -> &Proc {
        &self.proc
    }
}

pub struct Chatter {
    label: String,
    chatterd: PathBuf,
    extra: Vec<String>,
    /// Environment of every daemon (the gossip key of the sealed column).
    env: Vec<(String, String)>,
    /// Where each slot runs (loopback unless [`Chatter::placed`] says otherwise).
    placement: Placement,
    /// `--http-token` of every daemon (through `CHATTERD_HTTP_TOKEN`), sent with every write:
    /// an API bound to a host's address rather than loopback wants one.
    http_token: Option<String>,
    /// With a directory, slot `i` runs with `--data-dir DIR/n{i:02}` (kept across its lives).
    data_dirs: Option<PathBuf>,
    /// Every slot's only `--seed` (a DNS name, say); without it slot 0 is every other's seed.
    seed: Option<String>,
    nodes: Vec<Option<Node>>,
    /// Nodes asked to leave, kept until they exit or the system is dropped.
    leaving: Vec<Node>,
    agent: ureq::Agent,
}

impl Chatter {
    /// `extra`: flags added to every daemon's command line (none for the defaults).
    pub fn new(label: &str, chatterd: PathBuf, extra: Vec<String>) -> Self {
        Self::with_env(label, chatterd, extra, Vec::new())
    }

    /// The same with variables added to every daemon's environment: `CHATTER_GOSSIP_KEY`
    /// for the sealed column, which keeps the key off the command line.
    pub fn with_env(
        label: &str,
        chatterd: PathBuf,
        extra: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        Self {
            label: label.to_owned(),
            chatterd,
            extra,
            env,
            placement: Placement::loopback(),
            http_token: None,
            data_dirs: None,
            seed: None,
            nodes: Vec::new(),
            leaving: Vec::new(),
            agent,
        }
    }

    /// The same daemons placed by `placement`, with `http_token` as every daemon's
    /// `--http-token` (and sent with every write).
    pub fn placed(mut self, placement: Placement, http_token: Option<String>) -> Self {
        self.placement = placement;
        self.http_token = http_token;
        self
    }

    /// Every slot with a data directory of its own under `dir` (`--data-dir dir/n{i:02}`).
    pub fn with_data_dirs(mut self, dir: PathBuf) -> Self {
        self.data_dirs = Some(dir);
        self
    }

    /// Every slot, slot 0 included, with `--seed seed` as its only seed.
    pub fn seeded_by(mut self, seed: String) -> Self {
        self.seed = Some(seed);
        self
    }

    /// `request` with the bearer token, when the daemons have one.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.http_token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    fn node(&self, i: usize) -> Result<&Node> {
        self.nodes
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| anyhow!("chatterd {} not running", node_name(i)))
    }

    fn get(&self, i: usize, path: &str) -> Result<Value> {
        crate::cluster::get_json(&self.agent, &format!("http://{}{path}", self.node(i)?.http))
    }
}

/// The slot of node name `n{i:02}` ([`node_name`]).
fn slot_of(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

/// One line of a member's evidence (`/v1/members`), times in seconds from `t0_ms`.
fn explain_evidence(e: &Value, t0_ms: f64) -> String {
    let at = |key: &str| {
        e[key].as_f64().map_or_else(
            || "?".to_owned(),
            |ms| format!("{:+.2} s", (ms - t0_ms) / 1000.0),
        )
    };
    let mut flags = Vec::new();
    for flag in ["unreachable", "host_silent", "flap_damped"] {
        if e[flag].as_bool() == Some(true) {
            flags.push(flag);
        }
    }
    let confirmations = e["confirmations"].as_array().map_or(0, Vec::len);
    format!(
        "suspected {} (accuser {}, {} confirmations, timeout {} ms{}{}), failed {} (declared by {})",
        at("suspected_at_ms"),
        e["accuser"].as_str().unwrap_or("?"),
        confirmations,
        e["timeout_ms"].as_u64().unwrap_or(0),
        if flags.is_empty() { "" } else { ", " },
        flags.join(", "),
        at("failed_at_ms"),
        e["declared_by"].as_str().unwrap_or("?"),
    )
}

fn status(s: &str) -> Status {
    match s {
        "alive" => Status::Alive,
        "suspect" => Status::Suspect,
        "failed" => Status::Failed,
        "left" => Status::Left,
        _ => Status::Other,
    }
}

impl System for Chatter {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let name = node_name(i);
        let (listen, http) = if self.placement.on_hosts() {
            let ip = self.placement.ip(i)?;
            (format!("{ip}:{GOSSIP_PORT}"), format!("{ip}:{HTTP_PORT}"))
        } else {
            ("127.0.0.1:0".to_owned(), "127.0.0.1:0".to_owned())
        };
        let mut cmd = self.placement.command(i, &self.chatterd)?;
        cmd.args(["--listen", &listen, "--http", &http])
            .args(["--node-name", &name])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .envs(self.http_token.iter().map(|t| ("CHATTERD_HTTP_TOKEN", t)))
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        if let Some(dir) = &self.data_dirs {
            cmd.arg("--data-dir").arg(dir.join(&name));
        }
        if let Some(seed) = &self.seed {
            cmd.args(["--seed", seed]);
        } else if i != 0 {
            cmd.args(["--seed", &self.node(0)?.gossip]);
        }
        let proc = Proc::spawn(cmd, &self.chatterd.display().to_string(), Some)?;
        *slot(&mut self.nodes, i) = Some(Node {
            proc,
            gossip: String::new(),
            http: String::new(),
        });
        Ok(())
    }

    fn wait_ready(&mut self, i: usize, limit: Duration) -> Result<()> {
        let node = slot(&mut self.nodes, i)
            .as_mut()
            .ok_or_else(|| anyhow!("chatterd {} not started", node_name(i)))?;
        let line = node.proc.wait_line("chatterd ready", limit)?;
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key).map(str::to_owned))
                .ok_or_else(|| anyhow!("ready line lacks {key}: {line}"))
        };
        node.gossip = field("gossip=")?;
        node.http = field("http=")?;
        Ok(())
    }

    fn pid(&self, i: usize) -> Option<i32> {
        self.node(i).ok().map(|n| n.proc.pid())
    }

    fn view(&self, i: usize) -> Result<Vec<MemberView>> {
        let v = self.get(i, "/v1/members")?;
        let list = v
            .get("members")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("unexpected /v1/members body"))?;
        Ok(list
            .iter()
            .map(|m| MemberView {
                name: m["name"].as_str().unwrap_or_default().to_owned(),
                status: status(m["status"].as_str().unwrap_or_default()),
                since_ms: m["status_since_ms"].as_f64(),
            })
            .collect())
    }

    fn explain(&self, i: usize, member: &str, t0_ms: f64) -> Result<Option<Explanation>> {
        let v = self.get(i, "/v1/members")?;
        let evidence = v
            .get("members")
            .and_then(Value::as_array)
            .and_then(|list| list.iter().find(|m| m["name"].as_str() == Some(member)))
            .and_then(|m| m.get("evidence"))
            .filter(|e| !e.is_null());
        Ok(evidence.map(|e| {
            let mut line = explain_evidence(e, t0_ms);
            // What the accuser knew of host checks then (its counters now): a suspicion that
            // was not shortened usually means its path to the member was not yet trusted.
            let accuser = e["accuser"].as_str().and_then(slot_of);
            if let Some(me) = accuser.and_then(|a| self.get(a, "/v1/self").ok()) {
                let stat = |k: &str| me["stats"][k].as_u64().unwrap_or(0);
                line.push_str(&format!(
                    "; accuser now: {} calibrations, {} host checks answered, {} silent, health {}",
                    stat("host_checks_calibration"),
                    stat("host_checks_answered"),
                    stat("host_checks_silent"),
                    me["health_score"].as_u64().unwrap_or(0),
                ));
            }
            Explanation {
                line,
                failed_at_ms: e["failed_at_ms"].as_f64(),
            }
        }))
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
            "chatterd",
        )
    }

    fn traffic(&self, i: usize) -> Result<Option<Traffic>> {
        let v = self.get(i, "/v1/self")?;
        Ok(Some(Traffic {
            bytes_sent: find_number(&v, "bytes_sent").context("no bytes_sent in /v1/self")?,
            packets_sent: find_number(&v, "packets_sent").context("no packets_sent in /v1/self")?,
        }))
    }

    fn follow(&mut self, tx: Sender<Seen>) -> Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            let tx = tx.clone();
            follow_events(&node.http, move |event| {
                let at_ms = unix_ms();
                let arrival = match event["type"].as_str() {
                    Some("message") if event["tag"] == "bench" => {
                        match event["payload"]["n"].as_u64() {
                            Some(seq) => Arrival::Message(seq),
                            None => return true,
                        }
                    }
                    Some("key-changed") => Arrival::Key {
                        owner: event["node"].as_str().unwrap_or_default().to_owned(),
                        key: event["key"].as_str().unwrap_or_default().to_owned(),
                        value: event["value"].as_str().unwrap_or_default().to_owned(),
                    },
                    _ => return true,
                };
                tx.send(Seen {
                    node: i,
                    at_ms,
                    arrival,
                })
                .is_ok()
            })?;
        }
        Ok(())
    }

    fn broadcast(&self, origin: usize, seq: u64) -> Result<bool> {
        let url = format!("http://{}/v1/messages", self.node(origin)?.http);
        self.authorized(self.agent.post(&url))
            .header("Content-Type", "application/json")
            .send(format!(r#"{{"tag":"bench","payload":{{"n":{seq}}}}}"#))
            .with_context(|| format!("POST {url}"))?;
        Ok(true)
    }

    fn set_key(&self, origin: usize, key: &str, value: &str) -> Result<Option<KvMode>> {
        let url = format!("http://{}/v1/kv/{key}", self.node(origin)?.http);
        self.authorized(self.agent.put(&url))
            .send(value)
            .with_context(|| format!("PUT {url}"))?;
        Ok(Some(KvMode::Events))
    }

    fn poll_key(&self, i: usize, owner: &str, key: &str) -> Result<Option<String>> {
        let url = format!("http://{}/v1/kv", self.node(i)?.http);
        let mut response = self
            .agent
            .get(&url)
            .query("node", owner)
            .query("prefix", key)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .with_context(|| format!("GET {url}?node={owner}"))?;
        // 404: `owner` is not (yet) a member in this node's view.
        if response.status() == 404 {
            return Ok(None);
        }
        let body: Value = serde_json::from_str(&response.body_mut().read_to_string()?)
            .with_context(|| format!("GET {url}?node={owner}: not JSON"))?;
        Ok(body
            .as_array()
            .into_iter()
            .flatten()
            .filter(|state| state["node"] == owner)
            .flat_map(|state| state["entries"].as_array().into_iter().flatten())
            .find(|entry| entry["key"] == key)
            .and_then(|entry| entry["value"].as_str().map(str::to_owned)))
    }
}
