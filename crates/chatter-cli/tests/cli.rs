//! The `chatter` binary against live daemons (run in-process with chatterd's own code, on
//! ephemeral loopback ports).

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chatter_api::{MembersResponse, Status};
use chatterd::cli::Args;
use chatterd::daemon::Daemon;
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
    let mut args = vec![
        "chatterd".to_owned(),
        "--listen=127.0.0.1:0".into(),
        "--http=127.0.0.1:0".into(),
        format!("--node-name={name}"),
        "--profile=local".into(),
        "--tag=role=cli-test".into(),
    ];
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
