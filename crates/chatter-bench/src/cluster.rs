//! A cluster of real `chatterd` processes on 127.0.0.1, started and stopped by this harness only.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// One running daemon.
pub struct Daemon {
    pub name: String,
    pub gossip: String,
    pub http: String,
    pub child: Child,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// Daemons started by this harness; every one left is SIGKILLed on drop.
pub struct Cluster {
    pub chatterd: PathBuf,
    pub profile: String,
    pub extra: Vec<String>,
    pub nodes: Vec<Option<Daemon>>,
    agent: ureq::Agent,
}

/// GET `url` and its body as JSON.
pub fn get_json(agent: &ureq::Agent, url: &str) -> Result<Value> {
    let body = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?
        .body_mut()
        .read_to_string()?;
    Ok(serde_json::from_str(&body)?)
}

pub fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

impl Cluster {
    pub fn new(chatterd: PathBuf, profile: &str, extra: Vec<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build();
        Self {
            chatterd,
            profile: profile.to_owned(),
            extra,
            nodes: Vec::new(),
            agent: config.into(),
        }
    }

    /// Starts `n` daemons, the first being everyone's seed, and waits until all see all alive.
    pub fn start(&mut self, n: usize) -> Result<()> {
        for i in 0..n {
            let daemon = self.spawn(i)?;
            self.nodes.push(Some(daemon));
        }
        self.wait_converged(Duration::from_secs(60 + n as u64))
    }

    fn seed(&self) -> Option<String> {
        self.nodes.iter().flatten().next().map(|d| d.gossip.clone())
    }

    /// Starts daemon number `i` (a new life if it ran before).
    pub fn spawn(&self, i: usize) -> Result<Daemon> {
        let name = format!("b{i:02}");
        let mut cmd = Command::new(&self.chatterd);
        cmd.args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--node-name", &name, "--profile", &self.profile])
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(seed) = self.seed() {
            cmd.args(["--seed", &seed]);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.chatterd.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("chatterd ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{name} did not print its ready line within 10 s");
            }
        };
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key).map(str::to_owned))
                .ok_or_else(|| anyhow!("ready line lacks {key}: {line}"))
        };
        Ok(Daemon {
            gossip: field("gossip=")?,
            http: field("http=")?,
            name,
            child,
        })
    }

    pub fn get(&self, http: &str, path: &str) -> Result<Value> {
        get_json(&self.agent, &format!("http://{http}{path}"))
    }

    /// `(name, status, status_since_ms)` of every member in `http`'s view.
    pub fn members(&self, http: &str) -> Result<Vec<(String, String, f64)>> {
        let v = self.get(http, "/v1/members")?;
        let list = v
            .get("members")
            .and_then(Value::as_array)
            .or_else(|| v.as_array())
            .ok_or_else(|| anyhow!("unexpected /v1/members body"))?;
        Ok(list
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or_default().to_owned(),
                    m["status"].as_str().unwrap_or_default().to_owned(),
                    m["status_since_ms"].as_f64().unwrap_or(0.0),
                )
            })
            .collect())
    }

    pub fn live(&self) -> impl Iterator<Item = &Daemon> {
        self.nodes.iter().flatten()
    }

    pub fn wait_converged(&self, limit: Duration) -> Result<()> {
        let n = self.live().count();
        let deadline = Instant::now() + limit;
        loop {
            let ok = self.live().all(|d| {
                self.members(&d.http).is_ok_and(|ms| {
                    let names: Vec<&str> = self.live().map(|x| x.name.as_str()).collect();
                    names
                        .iter()
                        .all(|name| ms.iter().any(|(m, s, _)| m == name && s == "alive"))
                        && ms.iter().filter(|(_, s, _)| s == "alive").count() == n
                })
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("cluster of {n} did not converge within {limit:?}");
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn signal(&self, i: usize, sig: i32) -> Result<()> {
        let d = self.nodes[i]
            .as_ref()
            .ok_or_else(|| anyhow!("node {i} not running"))?;
        // SAFETY: kill(2) on the PID of a child this harness started and has not reaped.
        let rc = unsafe { libc::kill(d.pid(), sig) };
        if rc != 0 {
            bail!("kill({}, {sig}) failed", d.pid());
        }
        Ok(())
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        self.signal(i, libc::SIGKILL)?;
        if let Some(mut d) = self.nodes[i].take() {
            let _ = d.child.wait();
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in self.nodes.iter_mut().flatten() {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }
}

/// CPU time (user + system) of a process in seconds, from /proc.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// Resident set size of a process in KiB, from /proc.
pub fn rss_kib(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Finds a numeric field anywhere in a JSON document (first match, depth first).
pub fn find_number(v: &Value, key: &str) -> Option<f64> {
    match v {
        Value::Object(map) => map
            .get(key)
            .and_then(Value::as_f64)
            .or_else(|| map.values().find_map(|x| find_number(x, key))),
        Value::Array(list) => list.iter().find_map(|x| find_number(x, key)),
        _ => None,
    }
}

/// Follows a daemon's Server-Sent Events stream (`GET /v1/events`) on a thread of its own,
/// handing each event's JSON to `on_event` until it returns false or the daemon closes the
/// stream (it exits).
pub fn follow_events<F>(http: &str, mut on_event: F) -> Result<()>
where
    F: FnMut(Value) -> bool + Send + 'static,
{
    let url = format!("http://{http}/v1/events");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(None)
        .build()
        .into();
    let response = agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    thread::spawn(move || {
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines().map_while(Result::ok) {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            if let Ok(event) = serde_json::from_str::<Value>(data.trim()) {
                if !on_event(event) {
                    return;
                }
            }
        }
    });
    Ok(())
}
