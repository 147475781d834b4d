//! The HTTP API of one daemon, and the daemon's refusals: bad flags and busy ports.

mod common;

use std::net::{TcpListener, UdpSocket};

use chatter_api::{ErrorBody, HealthView, MemberView, MembersResponse, SelfView, Status};
use common::{run_to_exit, Daemon, TempFile};

fn assert_one_line_error(args: &[&str], expected: &str) {
    let out = run_to_exit(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "chatterd {args:?} succeeded");
    assert!(
        !stderr.contains("panicked"),
        "chatterd {args:?} panicked:\n{stderr}"
    );
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "chatterd {args:?}: expected one line:\n{stderr}"
    );
    let last = lines[0];
    assert!(
        last.starts_with("chatterd: "),
        "chatterd {args:?}: {stderr}"
    );
    assert!(
        last.contains(expected),
        "chatterd {args:?}: expected {expected:?} in {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no ready line expected: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn bad_flags_are_refused_in_one_line() {
    for (args, expected) in [
        (&["--tag", "nonsense"][..], "--tag"),
        (&["--listen", "notanaddr"][..], "--listen"),
        (&["--http", "localhost"][..], "--http"),
        (&["--profile", "fast"][..], "--profile"),
        (&["--seed", "no-port"][..], "--seed"),
        (&["--node-name", ""][..], "--node-name"),
        (&["--bogus"][..], "--bogus"),
        (&["--probe-interval", "0s"][..], "--probe-interval"),
        (&["--suspicion-mult", "0"][..], "--suspicion-mult"),
        (&["--gossip-fanout", "many"][..], "--gossip-fanout"),
    ] {
        assert_one_line_error(args, expected);
    }
}

#[test]
fn invalid_timing_combination_is_refused_in_one_line() {
    // Each value is fine alone; the lan profile's 500 ms probe timeout does not fit in 300 ms.
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--node-name",
        "bad-timings",
        "--probe-interval",
        "300ms",
    ];
    assert_one_line_error(
        &args,
        "invalid protocol timings: probe_timeout must be positive and shorter than \
         probe_interval (probe-interval 300ms; probe-timeout 500ms from profile lan)",
    );
    // Refused like a bad flag: exit status 2.
    assert_eq!(run_to_exit(&args).status.code(), Some(2));
}

#[test]
fn a_bad_ca_file_is_refused_at_startup_in_one_line() {
    let missing = "name=web,http=https://localhost:1/health,ca=/nonexistent/ca.pem";
    assert_one_line_error(
        &["--check", missing],
        "check \"web\": ca=/nonexistent/ca.pem: cannot read it: no such file or directory",
    );
    assert_eq!(run_to_exit(&["--check", missing]).status.code(), Some(2));
    let not_pem = TempFile::new("not-a-ca.pem", "this is not a certificate\n");
    assert_one_line_error(
        &[
            "--check",
            &format!("name=web,http=https://localhost:1/,ca={}", not_pem.path()),
        ],
        &format!("ca={}: no certificate in it", not_pem.path()),
    );
    let broken = TempFile::new(
        "broken-ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let config = TempFile::new(
        "broken-ca.toml",
        &format!(
            "[[check]]\nname = \"api\"\nhttp = \"https://localhost:1/\"\nca = \"{}\"\n",
            broken.path()
        ),
    );
    assert_one_line_error(
        &["--config", &config.path()],
        &format!(
            "check \"api\": ca={}: certificate 1 is not usable",
            broken.path()
        ),
    );
}

#[test]
fn busy_udp_port_is_refused() {
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    assert_one_line_error(
        &[
            "--listen",
            &addr,
            "--http",
            "127.0.0.1:0",
            "--node-name",
            "busy",
        ],
        &format!("cannot bind UDP {addr}"),
    );
}

#[test]
fn busy_http_port_is_refused() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    assert_one_line_error(
        &[
            "--listen",
            "127.0.0.1:0",
            "--http",
            &addr,
            "--node-name",
            "busy",
        ],
        &format!("cannot bind HTTP {addr}"),
    );
}

#[test]
fn http_api_answers_json() {
    let daemon = Daemon::start_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--node-name",
            "api-1",
            "--profile",
            "local",
            "--tag",
            "role=test",
            "--tag",
            "zone=a",
        ]
        .map(String::from),
    );

    let (code, body) = daemon.get("/health").unwrap();
    assert_eq!(code, 200, "{body}");
    let health: HealthView = serde_json::from_str(&body).unwrap();
    assert_eq!(health.name, "api-1");
    assert_eq!(health.members_alive, 1);

    let (code, body) = daemon.get("/v1/members").unwrap();
    assert_eq!(code, 200, "{body}");
    let members: MembersResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(members.members.len(), 1);
    let me = &members.members[0];
    assert_eq!(me.name, "api-1");
    assert!(me.is_local);
    assert_eq!(me.status, Status::Alive);
    assert_eq!(me.addr, daemon.gossip.to_string());
    assert_eq!(me.tags.get("role").map(String::as_str), Some("test"));
    assert_eq!(me.tags.get("zone").map(String::as_str), Some("a"));
    // The raw JSON carries the documented field names.
    let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
    for field in [
        "name",
        "addr",
        "status",
        "incarnation",
        "generation",
        "tags",
    ] {
        assert!(
            raw["members"][0].get(field).is_some(),
            "missing {field}: {body}"
        );
    }

    let (code, body) = daemon.get("/v1/members?status=failed").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(serde_json::from_str::<MembersResponse>(&body)
        .unwrap()
        .members
        .is_empty());
    let (code, body) = daemon.get("/v1/members?status=alive,suspect").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<MembersResponse>(&body)
            .unwrap()
            .members
            .len(),
        1
    );
    let (code, body) = daemon.get("/v1/members?status=bogus").unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(serde_json::from_str::<ErrorBody>(&body)
        .unwrap()
        .error
        .contains("bogus"));

    let (code, body) = daemon.get("/v1/members/api-1").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<MemberView>(&body).unwrap().name,
        "api-1"
    );

    let (code, body) = daemon.get("/v1/members/unknown").unwrap();
    assert_eq!(code, 404, "{body}");
    let error: ErrorBody = serde_json::from_str(&body).unwrap();
    assert!(error.error.contains("unknown"), "{body}");

    let (code, body) = daemon.get("/v1/self").unwrap();
    assert_eq!(code, 200, "{body}");
    let me: SelfView = serde_json::from_str(&body).unwrap();
    assert_eq!(me.member.name, "api-1");
    assert!(me.member.is_local);
    assert!(me.stats.contains_key("packets_sent"), "{body}");
    assert!(me.io.contains_key("send_errors"), "{body}");

    let (code, body) = common::http_request(daemon.http, "POST", "/v1/members").unwrap();
    assert_eq!(code, 405, "{body}");
    serde_json::from_str::<ErrorBody>(&body).unwrap();

    let (code, body) = daemon.get("/no/such/route").unwrap();
    assert_eq!(code, 404, "{body}");
    serde_json::from_str::<ErrorBody>(&body).unwrap();
}

#[test]
fn config_file_is_merged_under_the_flags() {
    let file = TempFile::new(
        "good.toml",
        "listen = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nnode-name = \"from-file\"\n\
         profile = \"local\"\ncluster = \"test-cluster\"\n[tag]\nrole = \"file\"\nzone = \"a\"\n",
    );
    let daemon =
        Daemon::start_with(&["--config", &file.path(), "--tag", "zone=cli"].map(String::from));
    assert_eq!(daemon.name, "from-file");
    let (code, body) = daemon.get("/v1/self").unwrap();
    assert_eq!(code, 200, "{body}");
    let me: SelfView = serde_json::from_str(&body).unwrap();
    assert_eq!(me.cluster, "test-cluster");
    assert_eq!(me.member.tags.get("role").map(String::as_str), Some("file"));
    assert_eq!(me.member.tags.get("zone").map(String::as_str), Some("cli"));
}

#[test]
fn bad_config_file_is_refused_in_one_line() {
    let file = TempFile::new("typo.toml", "node-name = \"x\"\nlisen = \"127.0.0.1:0\"\n");
    assert_one_line_error(&["--config", &file.path()], "line 2: unknown field `lisen`");
    let file = TempFile::new(
        "timings.toml",
        "profile = \"local\"\nsync-interval = \"1s\"\nprobe-timeout = \"250ms\"\n",
    );
    assert_one_line_error(
        &["--config", &file.path()],
        "invalid protocol timings: probe_timeout must be positive and shorter than \
         probe_interval (probe-interval 200ms from profile local; probe-timeout 250ms)",
    );
    assert_one_line_error(
        &["--config", "/nonexistent/chatterd.toml"],
        "cannot read config /nonexistent/chatterd.toml",
    );
}
