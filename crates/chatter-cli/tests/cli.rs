//! The `chatter` binary against live daemons (run in-process with chatterd's own code, on
//! ephemeral loopback ports).

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chatter_api::{MembersResponse, Status};
use chatterd::daemon::Daemon;
use chatterd::options::flags::Args;
use clap::Parser;

const CHATTER: &str = env!("CARGO_BIN_EXE_chatter");

fn chatter(http: SocketAddr, args: &[&str]) -> Output {
    Command::new(CHATTER)
        .args(args)
        .env("CHATTER_HTTP", http.to_string())
        .output()
        .unwrap()
}

fn start(rt: &tokio::runtime::Runtime, name: &str, seed: Option<SocketAddr>) -> Daemon {
    start_with(rt, name, seed, &["--tag=role=cli-test".into()])
}

/// A daemon on loopback ephemeral ports, without system status (the key/value tables of the
/// tests count keys), with `extra` flags.
fn start_with(
    rt: &tokio::runtime::Runtime,
    name: &str,
    seed: Option<SocketAddr>,
    extra: &[String],
) -> Daemon {
    let mut args = vec![
        "chatterd".to_owned(),
        "--listen=127.0.0.1:0".into(),
        "--http=127.0.0.1:0".into(),
        format!("--node-name={name}"),
        "--profile=local".into(),
        "--status-interval=0".into(),
    ];
    args.extend(extra.iter().cloned());
    if let Some(seed) = seed {
        args.push(format!("--seed={seed}"));
    }
    rt.block_on(Daemon::start(&Args::try_parse_from(args).unwrap()))
        .unwrap()
}

#[test]
fn members_and_member_against_a_live_cluster() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = start(&rt, "cli-a", None);
    let b = start(&rt, "cli-b", Some(a.gossip_addr()));
    let http = a.http_addr();

    // Wait until a sees both alive, through the CLI itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    let members = loop {
        let out = chatter(http, &["members", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let response: MembersResponse = serde_json::from_slice(&out.stdout).unwrap();
        if response.members.len() == 2 && response.members.iter().all(|m| m.status == Status::Alive)
        {
            break response.members;
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not form: {response:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(members[0].name, "cli-a");
    assert!(members[0].is_local);
    assert_eq!(members[1].name, "cli-b");

    // The table, with --http instead of the environment variable.
    let out = Command::new(CHATTER)
        .args(["members", "--http", &format!("http://{http}")])
        .env_remove("CHATTER_HTTP")
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let header = table.lines().next().unwrap();
    for column in [
        "NAME",
        "ADDRESS",
        "STATUS",
        "INCARNATION",
        "RTT",
        "SINCE",
        "WHY",
    ] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains("cli-a"), "{table}");
    assert!(table.contains("cli-b"), "{table}");
    assert!(table.contains(&b.gossip_addr().to_string()), "{table}");
    assert!(table.contains("2 members: 2 alive"), "{table}");

    // One member, as text and as JSON.
    let out = chatter(http, &["member", "cli-b"]);
    assert!(out.status.success());
    let detail = String::from_utf8(out.stdout).unwrap();
    assert!(detail.starts_with("cli-b"), "{detail}");
    assert!(detail.contains("role=cli-test"), "{detail}");
    let out = chatter(http, &["member", "cli-b", "--json"]);
    let member: chatter_api::MemberView = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(member.name, "cli-b");

    // Status filter.
    let out = chatter(http, &["members", "--json", "--status", "failed"]);
    let response: MembersResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert!(response.members.is_empty());

    // Unknown member: the API's error, one line, exit 1.
    let out = chatter(http, &["member", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("chatter: ") && stderr.contains("nobody"),
        "{stderr}"
    );

    rt.block_on(async {
        b.stop().await;
        a.stop().await;
    });
}

#[test]
fn health_exits_0_while_the_daemon_is_up_and_1_once_it_is_gone() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = start(&rt, "cli-h", None);
    let http = a.http_addr();

    let out = chatter(http, &["health"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        line.trim(),
        "cli-h: ok, 1 of 1 members alive, health score 0"
    );
    let out = chatter(http, &["health", "--json"]);
    assert!(out.status.success());
    let health: chatter_api::HealthView = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health.status, chatter_api::HealthStatus::Ok);
    assert_eq!(health.name, "cli-h");

    rt.block_on(a.stop());
    // What a container's HEALTHCHECK sees once the daemon is gone: exit 1, one line.
    let out = chatter(http, &["health"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("chatter: cannot reach chatterd"),
        "{stderr}"
    );
}

#[test]
fn unreachable_daemon_is_one_line_and_exit_1() {
    // A port that nothing listens on: bind, read the port, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = chatter(addr, &["members"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        format!("chatter: cannot reach chatterd at http://{addr}: connection refused")
    );
}

#[test]
fn kv_and_broadcast_against_a_live_daemon() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = start(&rt, "kv-a", None);
    let b = start(&rt, "kv-b", Some(a.gossip_addr()));
    let http = a.http_addr();
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let out = ok(&chatter(http, &["kv", "set", "role", "web"]));
    assert_eq!(out.trim(), "set role (version 1)");
    ok(&chatter(
        http,
        &["kv", "set", "checks/disk", "ok: 12% used"],
    ));

    // Visible on the other daemon too, through its own API.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = chatter(b.http_addr(), &["kv", "get", "kv-a", "role"]);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "web\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let table = ok(&chatter(http, &["kv", "get"]));
    let header = table.lines().next().unwrap();
    for column in ["NODE", "STATUS", "KEY", "VERSION", "VALUE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains("checks/disk"), "{table}");
    assert!(table.contains("ok: 12% used"), "{table}");
    assert!(table.contains("2 keys on 1 of 2 nodes"), "{table}");

    let json = ok(&chatter(http, &["kv", "get", "kv-a", "--json"]));
    let states: Vec<chatter_api::NodeStateView> = serde_json::from_str(&json).unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].node, "kv-a");
    assert_eq!(states[0].entries.len(), 2);
    let json = ok(&chatter(
        http,
        &["kv", "get", "kv-a", "checks/disk", "--json"],
    ));
    let entry: chatter_api::KvEntry = serde_json::from_str(&json).unwrap();
    assert_eq!(entry.value, "ok: 12% used");

    let out = ok(&chatter(http, &["kv", "delete", "role"]));
    assert_eq!(out.trim(), "deleted role (version 3)");
    for args in [
        &["kv", "delete", "role"][..],
        &["kv", "get", "kv-a", "role"][..],
    ] {
        let out = chatter(http, args);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("\"role\" is not set"), "{stderr}");
    }
    let out = chatter(http, &["kv", "set", "big", &"x".repeat(2000)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeds the limit"));

    // Broadcast: delivered on both daemons.
    let mut events_a = a.handle().subscribe();
    let mut events_b = b.handle().subscribe();
    let out = ok(&chatter(
        http,
        &[
            "broadcast",
            "Deploy",
            r#"{"service": "web", "version": 42}"#,
        ],
    ));
    assert!(out.starts_with("broadcast message kv-a/"), "{out}");
    for events in [&mut events_a, &mut events_b] {
        let payload = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(event) = events.recv().await {
                    if let chatter::Event::Message(message) = event {
                        if message.tag == "Deploy" {
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
            Some(&br#"{"service":"web","version":42}"#[..])
        );
    }
    let out = chatter(http, &["broadcast", "Deploy", "{not json"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("chatter: the payload is not valid JSON"),
        "{stderr}"
    );

    rt.block_on(async {
        b.stop().await;
        a.stop().await;
    });
}

#[test]
fn checks_services_system_and_the_token() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let args = Args::try_parse_from([
        "chatterd",
        "--listen=127.0.0.1:0",
        "--http=127.0.0.1:0",
        "--node-name=mon-a",
        "--profile=local",
        "--http-token=t0ken",
        "--status-interval=1s",
        "--service=searcher:1",
        "--service=api",
        "--check=name=ok,interval=200ms,cmd=echo 'OK - fine'",
        "--check=name=broken,interval=200ms,cmd=echo 'CRITICAL - broken'; exit 2",
    ])
    .unwrap();
    let a = rt.block_on(Daemon::start(&args)).unwrap();
    let http = a.http_addr();
    let run = |args: &[&str], token: Option<&str>| {
        let mut cmd = Command::new(CHATTER);
        cmd.args(args)
            .env("CHATTER_HTTP", http.to_string())
            .env_remove("CHATTER_HTTP_TOKEN");
        if let Some(token) = token {
            cmd.env("CHATTER_HTTP_TOKEN", token);
        }
        cmd.output().unwrap()
    };
    let text = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();

    // Checks: wait for both results, then the table and the filter.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = run(&["checks", "--json"], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let response: chatter_api::ChecksResponse = serde_json::from_slice(&out.stdout).unwrap();
        if response.checks.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "checks did not run: {response:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run(&["checks"], None);
    let table = text(&out);
    assert!(table.starts_with("NODE"), "{table}");
    assert!(table.contains("CRITICAL - broken"), "{table}");
    assert!(
        table.contains("2 checks on 1 node: 1 passing, 1 critical"),
        "{table}"
    );
    let out = run(&["checks", "--status", "critical", "--node", "mon-a"], None);
    let table = text(&out);
    assert!(
        table.contains("broken") && !table.contains("OK - fine"),
        "{table}"
    );

    // Services.
    let out = run(&["services"], None);
    let table = text(&out);
    assert!(table.contains("searcher  1"), "{table}");
    assert!(table.contains("api       -      1/1   mon-a"), "{table}");

    // System status (the first sample comes after ~200 ms).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = run(&["system"], None);
        let table = text(&out);
        if table.contains("mon-a") {
            assert!(table.contains("VERSION"), "{table}");
            break;
        }
        assert!(Instant::now() < deadline, "no system status: {table}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Writes need the token.
    let out = run(&["kv", "set", "role", "web"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing token"), "{stderr}");
    assert!(stderr.contains("CHATTER_HTTP_TOKEN"), "{stderr}");
    let out = run(&["kv", "set", "role", "web", "--http-token", "nope"], None);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["kv", "set", "role", "web"], Some("t0ken"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["kv", "get", "mon-a", "role"], None);
    assert_eq!(text(&out), "web\n");

    rt.block_on(a.stop());
}

/// Writes `text` to a file of the temp directory named after this process and `name`.
fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("chatter-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_https_daemon_is_reached_with_its_ca() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "chatter CLI test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca = temp_file("ca.pem", &ca_cert.pem());
    let cert = temp_file("cert.pem", &cert.pem());
    let key = temp_file("key.pem", &key.serialize_pem());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let args = Args::try_parse_from([
        "chatterd".to_owned(),
        "--listen=127.0.0.1:0".into(),
        "--http=127.0.0.1:0".into(),
        "--node-name=cli-tls".into(),
        "--profile=local".into(),
        "--status-interval=0".into(),
        format!("--http-tls-cert={}", cert.display()),
        format!("--http-tls-key={}", key.display()),
    ])
    .unwrap();
    let daemon = rt.block_on(Daemon::start(&args)).unwrap();
    assert!(daemon.ready_line().ends_with(" scheme=https"));
    let url = format!("https://localhost:{}", daemon.http_addr().port());
    let run = |args: &[&str]| {
        Command::new(CHATTER)
            .args(args)
            .env_remove("CHATTER_HTTP")
            .env("CHATTER_CA", &ca)
            .output()
            .unwrap()
    };
    // Reads, a write (PUT) and a broadcast (POST, as JSON) over TLS.
    for args in [
        vec!["members", "--http", url.as_str()],
        vec!["kv", "set", "role", "tls", "--http", url.as_str()],
        vec![
            "broadcast",
            "Hello",
            "{\"over\":\"tls\"}",
            "--http",
            url.as_str(),
        ],
    ] {
        let out = run(&args);
        assert!(
            out.status.success(),
            "chatter {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Without the CA, the certificate is not trusted: one line, exit 1.
    let out = Command::new(CHATTER)
        .args(["members", "--http", url.as_str()])
        .env_remove("CHATTER_HTTP")
        .env_remove("CHATTER_CA")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach chatterd at https://localhost"),
        "{stderr}"
    );
    rt.block_on(daemon.abort());
    for path in [ca, cert, key] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn keygen_prints_a_fresh_key_each_time() {
    let keygen = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatter"))
            .arg("keygen")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let (one, two) = (keygen(), keygen());
    assert_ne!(one, two);
    for text in [&one, &two] {
        assert_eq!(text.trim_end().len(), 44, "{text}");
        assert!(chatter::Key::from_base64(text.trim()).is_ok(), "{text}");
    }
}

#[test]
fn keys_rotate_through_the_cli_and_a_refusal_exits_1() {
    use std::io::Write as _;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let old = chatter::Key::from_bytes([0x51; 32]);
    let new = chatter::Key::from_bytes([0x52; 32]);
    let start_keyed = |name: &str, seed: Option<SocketAddr>| {
        let file = temp_file(
            &format!("keyring-{name}"),
            &format!("{}\n", old.to_base64().as_str()),
        );
        let keyring = format!("--keyring-file={}", file.display());
        (start_with(&rt, name, seed, &[keyring]), file)
    };
    let (a, file_a) = start_keyed("keys-a", None);
    let (b, file_b) = start_keyed("keys-b", Some(a.gossip_addr()));
    let http = a.http_addr();
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.handle().live_members().borrow().len() < 2 {
        assert!(Instant::now() < deadline, "the cluster did not form");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = |out: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    let out = chatter(http, &["keys", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains(&old.fingerprint().to_string()),
        "{listing}"
    );
    assert!(
        listing.contains("acknowledged (2): keys-a, keys-b"),
        "{listing}"
    );

    // The key on standard input, out of `ps`.
    let mut child = Command::new(CHATTER)
        .args(["keys", "install", "-"])
        .env("CHATTER_HTTP", http.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(new.to_base64().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(new.to_base64().as_str()));

    let out = chatter(http, &["keys", "remove", &old.fingerprint().to_string()]);
    assert!(
        !out.status.success(),
        "removing the primary: {}",
        text(&out)
    );
    assert!(text(&out).contains("primary"), "{}", text(&out));

    let out = chatter(http, &["keys", "use", new.to_base64().as_str()]);
    assert!(out.status.success(), "{}", text(&out));

    // b leaves: the removal reaches a only, reports b as not reached, and still exits 0 (no
    // live node failed to acknowledge).
    rt.block_on(b.stop());
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.handle().live_members().borrow().len() > 1 {
        assert!(Instant::now() < deadline, "a does not see b leave");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = chatter(http, &["keys", "remove", &old.fingerprint().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .contains("not reached (1, down: give them the new keyring file by hand): keys-b"),
        "{}",
        text(&out)
    );
    let out = chatter(http, &["keys", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: chatter_api::KeyOperationResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.keys.len(), 1);
    assert_eq!(report.keys[0].fingerprint, new.fingerprint().to_string());
    rt.block_on(a.stop());
    for file in [file_a, file_b] {
        let _ = std::fs::remove_file(file);
    }
}
