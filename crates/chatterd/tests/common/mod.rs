//! Helpers of the process tests: start `chatterd` processes on ephemeral loopback ports, read
//! their ready lines, query their HTTP API, wait for conditions with deadlines, and clean up.
//!
//! Every process started here is owned by a [`Daemon`], whose `Drop` SIGKILLs and reaps it if it
//! is still running, so a failing test leaks no process. Signals are only ever sent to the pids
//! of these children.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chatter_api::{MemberView, MembersResponse, NodeStateView, Status};

/// The binary under test.
pub const CHATTERD: &str = env!("CARGO_BIN_EXE_chatterd");

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(100);

/// One `chatterd` process started by a test.
pub struct Daemon {
    pub name: String,
    pub gossip: SocketAddr,
    pub http: SocketAddr,
    pub pid: u32,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

/// `--listen 127.0.0.1:0 --http 127.0.0.1:0 --node-name NAME`: a daemon on ephemeral loopback
/// ports, so tests running in parallel never collide.
pub fn loopback_args(name: &str) -> Vec<String> {
    [
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--node-name",
        name,
    ]
    .map(String::from)
    .to_vec()
}

impl Daemon {
    /// Starts `chatterd --listen 127.0.0.1:0 --http 127.0.0.1:0 --node-name NAME --profile P
    /// [--seed S]...` and waits for its ready line.
    pub fn start(name: &str, profile: &str, seeds: &[SocketAddr]) -> Daemon {
        let mut args = loopback_args(name);
        args.extend(["--profile".to_owned(), profile.to_owned()]);
        for seed in seeds {
            args.push("--seed".into());
            args.push(seed.to_string());
        }
        Daemon::start_with(&args)
    }

    /// Starts `chatterd ARGS` and waits (at most 15 s) for its ready line.
    pub fn start_with(args: &[String]) -> Daemon {
        Daemon::start_with_env(args, &[])
    }

    /// Like [`Daemon::start_with`], with these environment variables set.
    #[allow(dead_code)]
    pub fn start_with_env(args: &[String], env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(CHATTERD)
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start chatterd");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err_pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines() {
                let Ok(line) = line else { break };
                let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        let out_pipe = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(out_pipe).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            // Keep draining so the daemon never blocks on a full pipe.
            for _ in lines {}
        });
        let mut daemon = Daemon {
            name: String::new(),
            gossip: ([0, 0, 0, 0], 0).into(),
            http: ([0, 0, 0, 0], 0).into(),
            pid: child.id(),
            child: Some(child),
            stderr,
        };
        let line = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Some(line)) => line,
            other => panic!(
                "chatterd {args:?} printed no ready line ({other:?}); stderr:\n{}",
                daemon.logs()
            ),
        };
        let fields: Vec<(&str, &str)> = line
            .strip_prefix("chatterd ready ")
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
            .split_whitespace()
            .map(|f| f.split_once('=').unwrap())
            .collect();
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).unwrap().1;
        daemon.name = get("name").to_owned();
        daemon.gossip = get("gossip").parse().unwrap();
        daemon.http = get("http").parse().unwrap();
        assert_eq!(get("pid").parse::<u32>().unwrap(), daemon.pid);
        assert_ne!(daemon.gossip.port(), 0);
        assert_ne!(daemon.http.port(), 0);
        daemon
    }

    /// What the daemon wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends `sig` to this daemon (only while it has not been reaped).
    pub fn signal(&mut self, sig: i32) {
        let child = self.child.as_mut().expect("daemon already reaped");
        assert!(
            child.try_wait().unwrap().is_none(),
            "{} already exited",
            self.name
        );
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid);
    }

    /// Waits (at most `timeout`) for the process to exit and reaps it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the daemon and reaps it.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(5))
            .expect("SIGKILLed daemon did not exit");
    }

    /// Whether the process is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// `GET path` on this daemon's API.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.http, path)
    }

    /// The members as this daemon sees them.
    pub fn members(&self) -> Result<Vec<MemberView>, String> {
        let (status, body) = self.get("/v1/members")?;
        if status != 200 {
            return Err(format!(
                "{}: /v1/members answered {status}: {body}",
                self.name
            ));
        }
        serde_json::from_str::<MembersResponse>(&body)
            .map(|r| r.members)
            .map_err(|e| format!("{}: bad JSON ({e}): {body}", self.name))
    }

    /// The key/values of node `of` as this daemon holds them (`GET /v1/kv?node=OF`).
    pub fn kv_of(&self, of: &str) -> Result<NodeStateView, String> {
        let (code, body) = self.get(&format!("/v1/kv?node={of}"))?;
        if code != 200 {
            return Err(format!(
                "{}: /v1/kv?node={of} answered {code}: {body}",
                self.name
            ));
        }
        let mut states: Vec<NodeStateView> =
            serde_json::from_str(&body).map_err(|e| format!("bad JSON ({e}): {body}"))?;
        match states.len() {
            1 => Ok(states.remove(0)),
            _ => Err(format!("{}: expected one node: {body}", self.name)),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                // SIGKILL also ends a SIGSTOPped process.
                unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET (`Connection: close`), with short timeouts so that a stopped daemon
/// cannot hang a test. Returns the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path)
}

/// A minimal HTTP/1.1 request without a body; see [`http_get`].
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    http_send(addr, method, path, b"")
}

/// A minimal HTTP/1.1 request with a body; see [`http_get`]. A `POST` declares
/// `Content-Type: application/json`, as the daemon requires of every `POST`.
pub fn http_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    let headers: &[(&str, &str)] = if method == "POST" {
        &[("Content-Type", "application/json")]
    } else {
        &[]
    };
    http_send_with(addr, method, path, headers, body).map(|(status, _, body)| (status, body))
}

/// A minimal HTTP/1.1 request with these extra headers and a body (`Connection: close`, short
/// timeouts; `Host: ADDR` unless `headers` give one). Returns the status code, the head (status
/// line and headers, as received) and the body.
pub fn http_send_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(2))))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\nAccept: application/json\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {raw:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(format!("unexpected chunked answer: {head}"));
    }
    Ok((status, head.to_owned(), body.to_owned()))
}

/// Polls `check` every [`POLL`] until it returns `Ok`, or panics after `timeout` with `what` and
/// the last error (which should show the members tables).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) => {
                if start.elapsed() >= timeout {
                    panic!("timed out after {timeout:?} waiting until {what}; last state:\n{last}");
                }
            }
        }
        thread::sleep(POLL);
    }
}

/// A cluster of daemons on loopback; the first is the seed of the others.
pub struct Cluster {
    pub nodes: Vec<Daemon>,
}

impl Cluster {
    /// Starts `n` daemons called `{prefix}-1` .. `{prefix}-n`.
    pub fn start(prefix: &str, n: usize, profile: &str) -> Cluster {
        let first = Daemon::start(&format!("{prefix}-1"), profile, &[]);
        let seed = first.gossip;
        let mut nodes = vec![first];
        for i in 2..=n {
            nodes.push(Daemon::start(&format!("{prefix}-{i}"), profile, &[seed]));
        }
        Cluster { nodes }
    }

    /// Indexes of the daemons that are still running.
    pub fn running(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect()
    }

    /// Every view of the daemons in `observers`, as text (for failure messages).
    pub fn views(&self, observers: &[usize]) -> String {
        let mut out = String::new();
        for &i in observers {
            let node = &self.nodes[i];
            match node.members() {
                Ok(members) => {
                    out.push_str(&format!("  {} sees:\n", node.name));
                    out.push_str(&table(&members));
                }
                Err(e) => out.push_str(&format!("  {}: {e}\n", node.name)),
            }
        }
        out
    }

    /// Checks that every observer sees `name` with the status `want` (Ok), or explains.
    pub fn all_see(&self, observers: &[usize], name: &str, want: Status) -> Result<(), String> {
        for &i in observers {
            let members = self.nodes[i].members()?;
            let found = members.iter().find(|m| m.name == name);
            if found.map(|m| m.status) != Some(want) {
                return Err(self.views(observers));
            }
        }
        Ok(())
    }

    /// Waits until every running daemon sees every daemon in `names` alive.
    pub fn wait_all_alive(&mut self, timeout: Duration) {
        let observers = self.running();
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        wait_until(&format!("every node sees {names:?} alive"), timeout, || {
            for &i in &observers {
                let members = self.nodes[i].members()?;
                let alive = members.iter().filter(|m| m.status == Status::Alive).count();
                if alive != names.len() || members.len() != names.len() {
                    return Err(self.views(&observers));
                }
            }
            Ok(())
        });
    }
}

/// A members table for failure messages.
pub fn table(members: &[MemberView]) -> String {
    members
        .iter()
        .map(|m| {
            let evidence = m
                .evidence
                .as_ref()
                .map(|e| {
                    format!(
                        " accuser={} confirmations={} unreachable={} declared_by={:?}",
                        e.accuser,
                        e.confirmations.len(),
                        e.unreachable,
                        e.declared_by
                    )
                })
                .unwrap_or_default();
            format!(
                "    {:<12} {:<21} {:<8} inc={}{}\n",
                m.name, m.addr, m.status, m.incarnation, evidence
            )
        })
        .collect()
}

/// A client of one daemon's `GET /v1/events` (Server-Sent Events), read by a thread.
///
/// The request is HTTP/1.0, so the answer is not chunked: the body is the event stream as is.
/// Dropping the client shuts the connection down (which ends the thread).
pub struct EventClient {
    pub node: String,
    events: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
    stream: TcpStream,
}

impl EventClient {
    /// Connects and waits (at most 10 s) for the stream's `connected` event, after which every
    /// event of the daemon is in the stream.
    pub fn connect(addr: SocketAddr) -> EventClient {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        write!(
            stream,
            "GET /v1/events HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
        let reader = stream.try_clone().expect("cannot clone a TCP stream");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(reader).lines();
            // Status line and headers.
            let mut head = Vec::new();
            for line in lines.by_ref() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    break;
                }
                head.push(line);
            }
            let ok = head.first().is_some_and(|status| status.contains(" 200 "))
                && head.iter().any(|h| {
                    h.to_ascii_lowercase()
                        .starts_with("content-type: text/event-stream")
                });
            if !ok {
                let _ = tx.send(serde_json::json!({ "type": "bad-response", "head": head }));
                return;
            }
            for line in lines {
                let Ok(line) = line else { return };
                if let Some(data) = line.strip_prefix("data:") {
                    let value = serde_json::from_str(data.trim_start()).unwrap_or_else(
                        |e| serde_json::json!({ "type": "bad-json", "error": e.to_string(), "data": data }),
                    );
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        let mut client = EventClient {
            node: String::new(),
            events: rx,
            seen: Vec::new(),
            stream,
        };
        let connected =
            client.wait_for(&format!("{addr} connected"), Duration::from_secs(10), |e| {
                e["type"] == "connected"
            });
        client.node = connected["node"].as_str().unwrap_or_default().to_owned();
        client
    }

    /// Waits (at most `timeout`) for an event matching `pred` among those not yet matched, and
    /// returns it; panics with every event seen otherwise.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if pred(&event) => return event,
                Ok(event) => {
                    assert_ne!(event["type"], "bad-response", "{event}");
                    assert_ne!(event["type"], "bad-json", "{event}");
                    self.seen.push(event);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{}: timed out after {timeout:?} waiting for {what}; events seen:\n{}",
                    self.node,
                    self.seen
                        .iter()
                        .map(|e| format!("  {e}\n"))
                        .collect::<String>()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "{}: the event stream ended while waiting for {what}; events seen:\n{}",
                    self.node,
                    self.seen
                        .iter()
                        .map(|e| format!("  {e}\n"))
                        .collect::<String>()
                ),
            }
        }
    }
}

impl Drop for EventClient {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A file in the temp directory (a config file), removed on drop.
pub struct TempFile(std::path::PathBuf);

impl TempFile {
    /// Writes `text` to `chatterd-test-PID-NAME` in the temp directory.
    pub fn new(name: &str, text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("chatterd-test-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    /// The path, as an argument.
    pub fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs chatterd with `args`, expecting it to exit by itself within 10 s (a refusal at startup).
pub fn run_to_exit(args: &[impl AsRef<OsStr>]) -> Output {
    let mut child = Command::new(CHATTERD)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chatterd did not exit within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
