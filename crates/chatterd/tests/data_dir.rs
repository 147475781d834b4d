//! `--data-dir`: a SIGKILLed daemon restarted with its data directory comes back under its
//! saved name with its keys, through the members it remembered while every seed is down, and
//! its previous life's state is replaced; a data directory that cannot be made is refused like
//! a bad flag.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chatter_api::{NodeStateView, SelfView, Status};
use common::{http_send, loopback_args, run_to_exit, wait_until, Daemon, TempFile};

/// How long gossip may take on loopback with the `local` profile (generous for a loaded CI).
const DELIVERY: Duration = Duration::from_secs(10);

/// A data directory of this test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        TempDir(
            std::env::temp_dir().join(format!("chatterd-data-dir-{tag}-{}", std::process::id())),
        )
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kv_of(node: &Daemon, of: &str) -> Result<NodeStateView, String> {
    let (code, body) = node.get(&format!("/v1/kv?node={of}"))?;
    if code != 200 {
        return Err(format!(
            "{}: /v1/kv?node={of} answered {code}: {body}",
            node.name
        ));
    }
    let mut states: Vec<NodeStateView> =
        serde_json::from_str(&body).map_err(|e| format!("bad JSON ({e}): {body}"))?;
    match states.len() {
        1 => Ok(states.remove(0)),
        _ => Err(format!("{}: expected one node: {body}", node.name)),
    }
}

/// Whether `observer` sees `name` with `status` (and a generation above `above`).
fn sees(observer: &Daemon, name: &str, status: Status, above: u64) -> Result<u64, String> {
    let members = observer.members()?;
    match members.iter().find(|m| m.name == name) {
        Some(m) if m.status == status && m.generation > above => Ok(m.generation),
        other => Err(format!("{} sees {name} as {other:?}", observer.name)),
    }
}

/// `role` set to `db`, and exactly the keys `keys`, in `observer`'s copy of `owner`'s state
/// (of a life above `above`).
fn has_keys(observer: &Daemon, owner: &str, above: u64, keys: &[&str]) -> Result<(), String> {
    let state = kv_of(observer, owner)?;
    let found: Vec<&str> = state.entries.iter().map(|e| e.key.as_str()).collect();
    let role = state.entries.iter().find(|e| e.key == "role");
    if state.generation > above && found == keys && role.is_some_and(|e| e.value == "db") {
        Ok(())
    } else {
        Err(format!("{}: {state:?}", observer.name))
    }
}

#[test]
fn a_killed_daemon_comes_back_with_its_name_and_keys_through_remembered_members() {
    let dir = TempDir::new("restart");
    let mut a = Daemon::start("dd-a", "local", &[]);
    let c = Daemon::start("dd-c", "local", &[a.gossip]);
    let mut args = loopback_args("dd-b");
    // No checks or system status: the state holds only the keys written here, and the service
    // of the first life, which the second life no longer declares.
    args.extend(["--service".to_owned(), "old".to_owned()]);
    let extra = [
        "--profile",
        "local",
        "--status-interval",
        "0s",
        "--seed",
        &a.gossip.to_string(),
        "--data-dir",
        &dir.arg(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut b = Daemon::start_with(&args);
    for observer in [&a, &c] {
        wait_until("b alive", DELIVERY, || {
            sees(observer, "dd-b", Status::Alive, 0)
        });
    }
    wait_until("b sees c", DELIVERY, || sees(&b, "dd-c", Status::Alive, 0));

    for (method, path, body) in [
        ("PUT", "/v1/kv/role", &b"db"[..]),
        ("PUT", "/v1/kv/gone", b"soon"),
        ("DELETE", "/v1/kv/gone", b""),
    ] {
        let (code, answer) = http_send(b.http, method, path, body).unwrap();
        assert_eq!(code, 200, "{method} {path}: {answer}");
    }
    let old = wait_until("c holds b's keys", DELIVERY, || {
        has_keys(&c, "dd-b", 0, &["role", "service/old"])?;
        sees(&c, "dd-b", Status::Alive, 0)
    });
    wait_until("b's snapshot holds its key and c", DELIVERY, || {
        let saved = chatter::SavedState::read(&dir.0, &chatter::Config::local())
            .map_err(|e| e.to_string())?
            .ok_or("no snapshot")?;
        let members: Vec<&str> = saved.members.iter().map(|m| m.name.as_str()).collect();
        if saved.entries.keys().eq(["role", "service/old"]) && members.contains(&"dd-c") {
            Ok(())
        } else {
            Err(format!("{saved:?}"))
        }
    });

    // b and the only seed die; b comes back without --node-name, through c alone.
    b.kill();
    a.kill();
    for name in ["dd-a", "dd-b"] {
        wait_until("a and b failed", DELIVERY, || {
            sees(&c, name, Status::Failed, 0)
        });
    }
    let restarted = Instant::now();
    let mut args: Vec<String> = ["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]
        .map(String::from)
        .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let b = Daemon::start_with(&args);
    assert_eq!(b.name, "dd-b", "the saved name comes before the host name");
    // Polled every 10 ms rather than common::POLL's 100 ms: the time is a figure.
    let deadline = restarted + DELIVERY;
    loop {
        // The user's key is back; the service no longer declared is gone.
        let back =
            sees(&c, "dd-b", Status::Alive, old).and_then(|_| has_keys(&c, "dd-b", old, &["role"]));
        match back {
            Ok(()) => break,
            Err(last) => assert!(
                Instant::now() < deadline,
                "b's new life never came back with its key on c: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "chatterd restart (SIGKILL, every seed down) until alive everywhere and keys back: \
         {:.0} ms, the process start included",
        restarted.elapsed().as_secs_f64() * 1000.0
    );

    let (code, body) = b.get("/v1/self").unwrap();
    assert_eq!(code, 200, "{body}");
    let me: SelfView = serde_json::from_str(&body).unwrap();
    let data_dir = me.data_dir.expect("no data_dir in /v1/self");
    assert!(data_dir.restored, "{data_dir:?}");
    assert_eq!(data_dir.start, "restored");
    assert_eq!(data_dir.path, dir.arg());
    assert!(me.member.generation > old);
    assert!(
        me.io.get("state_writes").is_some_and(|n| *n >= 1),
        "{:?}",
        me.io
    );
    drop(c);
}

#[test]
fn a_data_dir_that_cannot_be_made_is_refused_like_a_bad_flag() {
    let file = TempFile::new("data-dir-is-a-file", "not a directory");
    let mut args = loopback_args("dd-bad");
    args.extend(["--data-dir".to_owned(), file.path()]);
    let out = run_to_exit(&args);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--data-dir"), "{stderr}");
}
