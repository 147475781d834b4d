//! `chatter-inject` against a live cluster of five daemons (run in-process with chatterd's own
//! code, on ephemeral loopback ports), observed through `chatter events` on every node.
//!
//! The daemons run in this process because Cargo hands a package's tests only that package's
//! binaries: here `chatter` and `chatter-inject`. `crates/chatterd/tests/status.rs` runs the
//! same protocol paths through real `chatterd` processes (messages posted over HTTP).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chatterd::daemon::Daemon;
use chatterd::options::flags::Args;
use clap::Parser;
use serde_json::Value;

const CHATTER: &str = env!("CARGO_BIN_EXE_chatter");
const INJECT: &str = env!("CARGO_BIN_EXE_chatter-inject");
const DELIVERY: Duration = Duration::from_secs(10);

/// The two examples of the documentation, verbatim.
const DEBUG_MESSAGE: &str = r#"{"DebugMessage":{"text":"hello world"}}"#;
const DEVICE_GOSSIP: &str = r#"{"DeviceGossip":{"DeviceAdded":{
  "origin":"541b10e7-d13a-45e8-8567-7d450ce86603",
  "name":"gateway",
  "description":"ASUS Router model RT-N55U "
}}}
"#;

fn start(rt: &tokio::runtime::Runtime, name: &str, seed: Option<SocketAddr>) -> Daemon {
    rt.block_on(Daemon::start(&daemon_args(name, seed)))
        .unwrap()
}

/// The flags of a daemon on loopback ephemeral ports.
fn daemon_args(name: &str, seed: Option<SocketAddr>) -> Args {
    let mut args = vec![
        "chatterd".to_owned(),
        "--listen=127.0.0.1:0".into(),
        "--http=127.0.0.1:0".into(),
        format!("--node-name={name}"),
        "--profile=local".into(),
    ];
    if let Some(seed) = seed {
        args.push(format!("--seed={seed}"));
    }
    Args::try_parse_from(args).unwrap()
}

/// A `chatter events` process following one daemon; SIGKILLed on drop if still running.
struct Follower {
    node: String,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    stderr: Option<ChildStderr>,
    seen: Vec<Value>,
}

impl Follower {
    /// Starts `chatter events` and waits for the stream's `connected` event.
    fn start(http: SocketAddr, node: &str) -> Follower {
        let mut child = Command::new(CHATTER)
            .arg("events")
            .env("CHATTER_HTTP", http.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut follower = Follower {
            node: node.to_owned(),
            child: Some(child),
            lines,
            stderr,
            seen: Vec::new(),
        };
        let connected = follower.wait_for("connected", |e| e["type"] == "connected");
        assert_eq!(connected["node"], node);
        follower
    }

    /// Waits for an event matching `pred` (each line must be one JSON object).
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + DELIVERY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                        panic!("{}: not one JSON object ({e}): {line}", self.node)
                    });
                    assert!(event["timestamp"].is_u64(), "{line}");
                    assert!(event["type"].is_string(), "{line}");
                    if pred(&event) {
                        return event;
                    }
                    self.seen.push(event);
                }
                Err(e) => panic!(
                    "{}: no {what} ({e:?}); events seen: {:#?}",
                    self.node, self.seen
                ),
            }
        }
    }

    /// Waits for `chatter events` to exit by itself; returns its status and standard error.
    fn wait_exit(&mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + DELIVERY;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: chatter events did not exit after the daemon stopped",
                self.node
            );
            thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        (status.code(), stderr)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn inject(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(INJECT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// The message's tag and payload as the JSON examples give them.
fn tag_and_payload(text: &str) -> (String, Value) {
    let value: Value = serde_json::from_str(text).unwrap();
    let (tag, payload) = value.as_object().unwrap().iter().next().unwrap();
    (tag.clone(), payload.clone())
}

#[test]
fn injected_messages_reach_every_node() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let first = start(&rt, "inj-1", None);
    let seed = first.gossip_addr();
    let mut daemons = vec![first];
    for i in 2..=5 {
        daemons.push(start(&rt, &format!("inj-{i}"), Some(seed)));
    }
    // Wait until every node sees the five alive.
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemons.iter().any(|d| {
        let snapshot = d.handle().snapshot();
        snapshot.num_live() != 4
    }) {
        assert!(Instant::now() < deadline, "the cluster did not form");
        thread::sleep(Duration::from_millis(50));
    }

    let mut followers: Vec<Follower> = daemons
        .iter()
        .map(|d| Follower::start(d.http_addr(), d.name()))
        .collect();

    // The argument form, into inj-1.
    let addr = daemons[0].gossip_addr().to_string();
    let out = inject(&[&addr, DEBUG_MESSAGE], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The standard-input form, multi-line, into inj-4.
    let addr = daemons[3].gossip_addr().to_string();
    let out = inject(&[&addr], Some(DEVICE_GOSSIP));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (text, origin) in [(DEBUG_MESSAGE, "inj-1"), (DEVICE_GOSSIP, "inj-4")] {
        let (tag, payload) = tag_and_payload(text);
        for follower in &mut followers {
            let event = follower.wait_for(&format!("the {tag} message"), |e| {
                e["type"] == "message" && e["tag"] == tag.as_str()
            });
            assert_eq!(event["payload"], payload, "{event}");
            assert_eq!(event["id"]["origin"], origin, "{event}");
            assert!(event.get("encoding").is_none(), "{event}");
        }
    }
    // The payload travels as the compacted text of the value, key order kept.
    let mut events = daemons[2].handle().subscribe();
    let out = inject(
        &[
            &daemons[2].gossip_addr().to_string(),
            "{\"Order\": {\"z\": 1, \"a\": [1, 2]}}",
        ],
        None,
    );
    assert!(out.status.success());
    let payload = rt.block_on(async {
        tokio::time::timeout(DELIVERY, async {
            while let Some(event) = events.recv().await {
                if let chatter::Event::Message(message) = event {
                    if message.tag == "Order" {
                        return Some(message.payload);
                    }
                }
            }
            None
        })
        .await
    });
    assert_eq!(
        payload.ok().flatten().as_deref(),
        Some(&br#"{"z":1,"a":[1,2]}"#[..])
    );

    // Every daemon stops: each `chatter events` says so and exits non-zero.
    rt.block_on(async {
        for daemon in daemons {
            daemon.stop().await;
        }
    });
    for follower in &mut followers {
        let (code, stderr) = follower.wait_exit();
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("chatter: ") && stderr.contains("closed the event stream"),
            "{stderr}"
        );
    }
}

fn assert_one_line_failure(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("chatter-inject: "), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in {stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_and_closed_ports_fail_in_one_line() {
    // A UDP port nothing listens on: bind, read the port, close.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    assert_one_line_failure(&inject(&[&closed, "{\"a\":"], None), "invalid JSON");
    assert_one_line_failure(&inject(&[&closed], Some("not json")), "invalid JSON");
    assert_one_line_failure(
        &inject(
            &[&closed, r#"{"DebugMessage":{"text":"hi"},"Other":1}"#],
            None,
        ),
        "expected one key (the tag), got 2",
    );
    assert_one_line_failure(&inject(&[&closed, "[1, 2]"], None), "got an array");
    assert_one_line_failure(&inject(&[&closed, r#"{"":1}"#], None), "must not be empty");
    assert_one_line_failure(&inject(&["127.0.0.1", DEBUG_MESSAGE], None), "HOST:PORT");
    assert_one_line_failure(&inject(&["no-port-here", DEBUG_MESSAGE], None), "HOST:PORT");
    assert_one_line_failure(&inject(&[], None), "<ADDR>");

    let out = inject(&[&closed, DEBUG_MESSAGE], None);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!("chatter-inject: nothing is listening at {closed} (connection refused)")
    );
}

/// `chatter-inject` with the cluster's key (from the environment) reaches every node of an
/// encrypted cluster once; without the key, or with another, it is refused and counted.
#[test]
fn sealed_injects_need_the_cluster_key() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = chatter::Key::from_bytes([9; 32]);
    let key_text = key.to_base64().to_string();
    let start_sealed = |name: &str, seed: Option<SocketAddr>| {
        let mut args = daemon_args(name, seed);
        args.gossip_key = Some(chatterd::options::encryption::EnvKey(key.clone()));
        rt.block_on(Daemon::start(&args)).unwrap()
    };
    let a = start_sealed("sealed-1", None);
    let b = start_sealed("sealed-2", Some(a.gossip_addr()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while [&a, &b]
        .iter()
        .any(|d| d.handle().snapshot().num_live() != 1)
    {
        assert!(Instant::now() < deadline, "the sealed cluster did not form");
        thread::sleep(Duration::from_millis(50));
    }
    let addr = a.gossip_addr().to_string();
    let run = |env: Option<&str>, extra: &[&str]| {
        let mut cmd = Command::new(INJECT);
        cmd.args(extra).arg(&addr).arg(DEBUG_MESSAGE);
        cmd.env_remove("CHATTER_GOSSIP_KEY");
        if let Some(key) = env {
            cmd.env("CHATTER_GOSSIP_KEY", key);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let stats = |d: &Daemon| d.handle().snapshot().stats;

    // Without a key, and with another key in a keyring file: refused, counted, not delivered.
    run(None, &[]);
    let other = std::env::temp_dir().join(format!("chatter-inject-other-{}", std::process::id()));
    std::fs::write(
        &other,
        format!(
            "{}\n",
            chatter::Key::from_bytes([8; 32]).to_base64().as_str()
        ),
    )
    .unwrap();
    run(None, &["--keyring-file", other.to_str().unwrap()]);
    let _ = std::fs::remove_file(&other);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(&a).dropped_sealed.not_sealed < 1 || stats(&a).dropped_sealed.unknown_key < 1 {
        assert!(
            Instant::now() < deadline,
            "refusals not counted: {:?}",
            stats(&a)
        );
        thread::sleep(Duration::from_millis(50));
    }
    // With the key: delivered on both nodes, once.
    run(Some(&key_text), &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while [&a, &b].iter().any(|d| stats(d).messages_delivered != 1) {
        assert!(
            Instant::now() < deadline,
            "the sealed message was not delivered"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stats(&a).messages_injected, 1);
    for d in [a, b] {
        rt.block_on(d.stop());
    }
}
