//! `chatterd --demo N`: the children come up, form one cluster, and stop cleanly on Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chatter_api::Status;
use common::{http_get, wait_until, CHATTERD};

/// Kills the demo (SIGKILL) if the test fails before stopping it; the children then get SIGTERM
/// from the kernel (PR_SET_PDEATHSIG), so nothing leaks.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lines a child writes to `stdout`, as they come.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

#[test]
fn demo_starts_a_cluster_and_stops_it_on_ctrl_c() {
    let mut child = Command::new(CHATTERD)
        .args(["--demo", "3"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut guard = Guard(Some(child));
    let rx = lines_of(stdout);
    let (err_tx, err_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
        }
        let _ = err_tx.send(all);
    });

    // The table: "  demo-1  PID  GOSSIP  http://HTTP".
    let mut nodes: Vec<(String, u32, SocketAddr)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no demo table within 20 s; stdout so far:\n{text}"));
        text.push_str(&line);
        text.push('\n');
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [name, pid, _gossip, url] = fields[..] {
            if name.starts_with("demo-") {
                let http = url.strip_prefix("http://").unwrap().parse().unwrap();
                nodes.push((name.to_owned(), pid.parse().unwrap(), http));
            }
        }
        if line.starts_with("Ctrl-C stops the demo") {
            break;
        }
    }
    let names: Vec<&str> = nodes.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["demo-1", "demo-2", "demo-3"], "{text}");

    wait_until(
        "demo-1 sees three alive members",
        Duration::from_secs(15),
        || {
            let (code, body) = http_get(nodes[0].2, "/v1/members")?;
            let members: chatter_api::MembersResponse =
                serde_json::from_str(&body).map_err(|e| format!("{code} {e}: {body}"))?;
            let alive = members
                .members
                .iter()
                .filter(|m| m.status == Status::Alive)
                .count();
            if alive == 3 {
                Ok(())
            } else {
                Err(common::table(&members.members))
            }
        },
    );

    // Each child keeps its state in a data directory of its own, under the demo's temporary
    // directory, which goes when the demo does.
    let pid = guard.0.as_ref().unwrap().id();
    let demo_dir = std::env::temp_dir().join(format!("chatterd-demo-{pid}"));
    for (name, _, http) in &nodes {
        let (code, body) = http_get(*http, "/v1/self").unwrap();
        assert_eq!(code, 200, "{body}");
        let me: chatter_api::SelfView = serde_json::from_str(&body).unwrap();
        let data_dir = me
            .data_dir
            .unwrap_or_else(|| panic!("{name}: no data_dir: {body}"));
        assert_eq!(
            data_dir.path,
            demo_dir.join(name).display().to_string(),
            "{name}"
        );
        assert!(demo_dir.join(name).join("state").is_file(), "{name}");
    }

    // Ctrl-C reaches the demo only (the children have their own process group).
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
            guard.0 = None;
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop within 15 s of SIGINT"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    assert!(status.success(), "demo exited with {status:?}:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for (name, pid, _) in &nodes {
        let report = format!("demo: {name} (pid {pid}) stopped: exit code 0");
        assert!(
            stderr.lines().any(|line| line == report),
            "expected {report:?}:\n{stderr}"
        );
    }
    // The children were reaped by the demo: their HTTP ports are closed.
    for (name, _, http) in &nodes {
        assert!(http_get(*http, "/health").is_err(), "{name} still answers");
    }
    assert!(!demo_dir.exists(), "{} left behind", demo_dir.display());
}

#[test]
fn demo_with_a_key_seals_every_child() {
    let key = chatter::Key::from_bytes([11; 32]);
    let mut child = Command::new(CHATTERD)
        .args(["--demo", "3"])
        .env("RUST_LOG", "warn")
        .env("CHATTER_GOSSIP_KEY", key.to_base64().as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut guard = Guard(Some(child));
    let rx = lines_of(stdout);
    let mut https: Vec<SocketAddr> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("no demo table within 20 s");
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [name, _pid, _gossip, url] = fields[..] {
            if name.starts_with("demo-") {
                https.push(url.strip_prefix("http://").unwrap().parse().unwrap());
            }
        }
        if line.starts_with("Ctrl-C stops the demo") {
            break;
        }
    }
    assert_eq!(https.len(), 3);
    let fingerprint = key.fingerprint().to_string();
    wait_until(
        "every child is sealed with the key and sees three alive",
        Duration::from_secs(15),
        || {
            for http in &https {
                let (_, body) = http_get(*http, "/v1/self")?;
                let me: chatter_api::SelfView =
                    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
                if me.encryption.mode != "sealed"
                    || me.encryption.keys.first().map(|k| k.fingerprint.as_str())
                        != Some(fingerprint.as_str())
                {
                    return Err(format!("not sealed with the key: {body}"));
                }
                let (_, body) = http_get(*http, "/v1/members")?;
                let members: chatter_api::MembersResponse =
                    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
                let alive = members
                    .members
                    .iter()
                    .filter(|m| m.status == Status::Alive)
                    .count();
                if alive != 3 {
                    return Err(common::table(&members.members));
                }
            }
            Ok(())
        },
    );
    let pid = guard.0.as_ref().unwrap().id();
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while guard.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop");
        thread::sleep(Duration::from_millis(50));
    }
    guard.0 = None;
}
