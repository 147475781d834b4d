//! `--data-dir`: a SIGKILLed daemon restarted with its data directory comes back under its
//! saved name with its keys, through the members it remembered while every seed is down, and
//! its previous life's state is replaced; a data directory that cannot be made is refused like
//! a bad flag.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chatter_api::{SelfView, Status};
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
    let state = observer.kv_of(owner)?;
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

#[test]
fn keys_rotated_at_run_time_are_kept_in_the_data_dir_and_win_over_the_variable() {
    use std::os::unix::fs::PermissionsExt as _;

    let (old_key, new_key) = (
        chatter::Key::from_bytes([7; 32]),
        chatter::Key::from_bytes([8; 32]),
    );
    let env_key = old_key.to_base64();
    let env = [("CHATTER_GOSSIP_KEY", env_key.as_str())];
    let (dir_a, dir_b) = (TempDir::new("keys-a"), TempDir::new("keys-b"));
    let args = |name: &str, dir: &TempDir, seed: Option<std::net::SocketAddr>| {
        let mut args = loopback_args(name);
        args.extend(
            [
                "--profile",
                "local",
                "--status-interval",
                "0s",
                "--data-dir",
            ]
            .map(String::from),
        );
        args.push(dir.arg());
        if let Some(seed) = seed {
            args.extend(["--seed".to_owned(), seed.to_string()]);
        }
        args
    };
    let a = Daemon::start_with_env(&args("dk-a", &dir_a, None), &env);
    let mut b = Daemon::start_with_env(&args("dk-b", &dir_b, Some(a.gossip)), &env);
    wait_until("b alive", DELIVERY, || sees(&a, "dk-b", Status::Alive, 0));

    let post = |path: &str, key: &chatter::Key| {
        let body = serde_json::json!({ "key": key.to_base64().as_str() }).to_string();
        let (code, answer) = http_send(a.http, "POST", path, body.as_bytes()).unwrap();
        assert_eq!(code, 200, "{path}: {answer}");
        assert!(!answer.contains("memory only"), "{answer}");
    };
    post("/v1/keys/install", &new_key);
    post("/v1/keys/use", &new_key);
    post("/v1/keys/remove", &old_key);
    let saved = dir_b.0.join("keyring");
    let new_fingerprint = new_key.fingerprint().to_string();
    wait_until("b's data dir holds the new keyring", DELIVERY, || {
        let text = std::fs::read_to_string(&saved).map_err(|e| e.to_string())?;
        let ring = chatter::Keyring::parse(&text).map_err(|e| e.to_string())?;
        let keys: Vec<String> = ring
            .list()
            .iter()
            .map(|k| k.fingerprint.to_string())
            .collect();
        if keys == [new_fingerprint.clone()] {
            Ok(())
        } else {
            Err(format!("{keys:?}"))
        }
    });
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Killed and restarted with the same (now removed) key in the variable: the saved keyring
    // wins, and the cluster, which refuses the old key, takes the new life.
    let old = sees(&a, "dk-b", Status::Alive, 0).unwrap();
    b.kill();
    let b = Daemon::start_with_env(&args("dk-b", &dir_b, Some(a.gossip)), &env);
    wait_until("b's new life alive on a", DELIVERY, || {
        sees(&a, "dk-b", Status::Alive, old)
    });
    let (code, body) = b.get("/v1/self").unwrap();
    assert_eq!(code, 200, "{body}");
    let me: SelfView = serde_json::from_str(&body).unwrap();
    let keys: Vec<&str> = me
        .encryption
        .keys
        .iter()
        .map(|k| k.fingerprint.as_str())
        .collect();
    assert_eq!(keys, [new_fingerprint.as_str()]);
    assert!(
        b.logs().contains("CHATTER_GOSSIP_KEY is ignored"),
        "{}",
        b.logs()
    );
}
