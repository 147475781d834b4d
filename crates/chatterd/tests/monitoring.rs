//! Monitoring through real `chatterd` processes: health checks, system status, services, the
//! HTTP token and event handlers, each seen from another node where it matters.
//!
//! Commands started by the daemons write their pids and what they received into a temporary
//! directory per test, which the test reads; conditions are waited for with deadlines.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use chatter_api::{
    CheckStatus, CheckView, ChecksResponse, ErrorBody, NodeStateView, ServicesResponse, Status,
    SystemResponse,
};
use common::{http_get, loopback_args, wait_until, Daemon};

/// A temporary directory removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("chatterd-monitoring-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `chatterd` on ephemeral loopback ports (profile local) with `extra` flags.
fn start(name: &str, seeds: &[SocketAddr], extra: &[&str]) -> Daemon {
    let mut args = loopback_args(name);
    args.extend(["--profile".to_owned(), "local".to_owned()]);
    for seed in seeds {
        args.push("--seed".into());
        args.push(seed.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::start_with(&args)
}

fn get_json<T: serde::de::DeserializeOwned>(node: &Daemon, path: &str) -> Result<T, String> {
    let (code, body) = node.get(path)?;
    if code != 200 {
        return Err(format!("{}: {path} answered {code}: {body}", node.name));
    }
    serde_json::from_str(&body)
        .map_err(|e| format!("{}: {path}: bad JSON ({e}): {body}", node.name))
}

fn check_of(observer: &Daemon, node: &str, name: &str) -> Result<CheckView, String> {
    let response: ChecksResponse = get_json(observer, &format!("/v1/checks?node={node}"))?;
    response
        .checks
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .ok_or_else(|| {
            format!(
                "{} lists no check {node}/{name}: {response:?}",
                observer.name
            )
        })
}

/// Whether process `pid` has ended (absent, or a zombie nobody reaped yet).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// The pids written (space-separated) to `path`, once the file exists.
fn wait_for_pids(path: &str, what: &str) -> Vec<u32> {
    wait_until(what, Duration::from_secs(15), || {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let pids: Vec<u32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.len() == 2 {
            Ok(pids)
        } else {
            Err(format!("{path}: {text:?}"))
        }
    })
}

#[test]
fn checks_and_system_status_are_seen_on_another_node() {
    let dir = TempDir::new("checks");
    let flag = dir.file("healthy");
    let hang_pids = dir.file("hang-pids");
    std::fs::write(&flag, "").unwrap();
    let flag_check = format!(
        "name=flag,interval=200ms,timeout=5s,cmd=test -e {flag} && echo 'OK - {flag} is there' \
         || {{ echo 'CRITICAL - {flag} is missing | perf=1'; exit 2; }}"
    );
    let hang_check = format!(
        "name=hang,interval=1h,timeout=1s,cmd=sleep 60 & echo $$ $! > {hang_pids}.tmp; \
         mv {hang_pids}.tmp {hang_pids}; wait"
    );
    let a = start(
        "chk-a",
        &[],
        &[
            "--check",
            &flag_check,
            "--check",
            &hang_check,
            "--status-interval",
            "1s",
        ],
    );
    // b publishes no system status, and runs no checks.
    let b = start("chk-b", &[a.gossip], &["--status-interval", "0"]);

    // Passing, as b sees it.
    let passing = wait_until("b sees chk-a/flag passing", Duration::from_secs(20), || {
        let check = check_of(&b, "chk-a", "flag")?;
        match check.status {
            CheckStatus::Passing => Ok(check),
            other => Err(format!("{other}: {check:?}")),
        }
    });
    assert_eq!(passing.node_status, Status::Alive);
    assert!(passing.output.starts_with("OK - "), "{passing:?}");

    // The hanging check: critical at its timeout, and its processes are gone.
    let hang = wait_until(
        "b sees chk-a/hang critical",
        Duration::from_secs(20),
        || {
            let check = check_of(&b, "chk-a", "hang")?;
            match check.status {
                CheckStatus::Critical => Ok(check),
                other => Err(format!("{other}: {check:?}")),
            }
        },
    );
    assert_eq!(hang.output, "timed out after 1s", "{hang:?}");
    assert!(hang.duration_ms >= 1000, "{hang:?}");
    for pid in wait_for_pids(&hang_pids, "the hanging check wrote its pids") {
        wait_until(
            &format!("process {pid} of the hanging check is gone"),
            Duration::from_secs(5),
            || {
                if process_gone(pid) {
                    Ok(())
                } else {
                    Err(format!("{pid} still running"))
                }
            },
        );
    }

    // Flip to critical: b lists it among the cluster's critical checks.
    std::fs::remove_file(&flag).unwrap();
    let critical = wait_until(
        "b lists chk-a/flag as critical",
        Duration::from_secs(20),
        || {
            let response: ChecksResponse = get_json(&b, "/v1/checks?status=critical,warning")?;
            assert!(
                response
                    .checks
                    .iter()
                    .all(|c| c.status != CheckStatus::Passing),
                "{response:?}"
            );
            response
                .checks
                .into_iter()
                .find(|c| c.node == "chk-a" && c.name == "flag")
                .ok_or_else(|| "not critical yet".to_owned())
        },
    );
    assert_eq!(critical.status, CheckStatus::Critical);
    assert_eq!(critical.output, format!("CRITICAL - {flag} is missing"));
    assert!(
        critical.since_ms > passing.since_ms,
        "{critical:?} {passing:?}"
    );

    // And back.
    std::fs::write(&flag, "").unwrap();
    wait_until(
        "b sees chk-a/flag passing again",
        Duration::from_secs(20),
        || {
            let check = check_of(&b, "chk-a", "flag")?;
            (check.status == CheckStatus::Passing)
                .then_some(())
                .ok_or_else(|| format!("{check:?}"))
        },
    );

    // System status: a's keys reach b; b (status interval 0) publishes none.
    let system = wait_until(
        "b sees chk-a's system status",
        Duration::from_secs(20),
        || {
            let response: SystemResponse = get_json(&b, "/v1/system")?;
            let complete = response.nodes.iter().find(|n| {
                let s = &n.system;
                n.node == "chk-a"
                    && s.load.is_some()
                    && s.cpu_percent.is_some()
                    && s.cores.is_some()
                    && s.memory.is_some()
                    && s.disk.is_some()
                    && s.boot_time.is_some()
                    && s.version.is_some()
            });
            complete.cloned().ok_or_else(|| format!("{response:?}"))
        },
    );
    assert!(system.uptime_s.is_some());
    let memory = system.system.memory.unwrap();
    assert!(
        memory.total > 0 && memory.used <= memory.total,
        "{system:?}"
    );
    let response: SystemResponse = get_json(&b, "/v1/system").unwrap();
    assert_eq!(response.nodes.len(), 1, "{response:?}");
    let kv: Vec<NodeStateView> = get_json(&b, "/v1/kv?node=chk-a&prefix=sys/").unwrap();
    let keys: Vec<&str> = kv[0].entries.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "sys/load",
        "sys/cpu",
        "sys/cores",
        "sys/mem",
        "sys/disk",
        "sys/boot",
        "sys/version",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }

    let (code, body) = b.get("/v1/checks?status=dead").unwrap();
    assert_eq!(code, 400, "{body}");
    let (code, body) = b.get("/v1/checks?node=nobody").unwrap();
    assert_eq!(code, 404, "{body}");
}

#[test]
fn services_are_grouped_by_type_and_shard_across_nodes() {
    let s1 = start("svc-1", &[], &["--service", "searcher:0"]);
    let seed = [s1.gossip];
    let s2 = start(
        "svc-2",
        &seed,
        &["--service", "searcher:1", "--service", "indexer"],
    );
    let mut s3 = start("svc-3", &seed, &["--service", "searcher:1"]);
    let s4 = start("svc-4", &seed, &["--service", "api"]);

    let summary = |response: &ServicesResponse| -> Vec<String> {
        response
            .services
            .iter()
            .flat_map(|s| {
                s.shards.iter().map(move |shard| {
                    let nodes: Vec<String> = shard
                        .instances
                        .iter()
                        .map(|i| format!("{}:{}", i.node, i.status))
                        .collect();
                    format!(
                        "{}/{} live={} [{}]",
                        s.kind,
                        shard.shard.as_deref().unwrap_or("-"),
                        shard.live,
                        nodes.join(" ")
                    )
                })
            })
            .collect()
    };
    let expected = [
        "api/- live=1 [svc-4:alive]",
        "indexer/- live=1 [svc-2:alive]",
        "searcher/0 live=1 [svc-1:alive]",
        "searcher/1 live=2 [svc-2:alive svc-3:alive]",
    ];
    for observer in [&s1, &s4] {
        wait_until(
            &format!("{} groups every service", observer.name),
            Duration::from_secs(20),
            || {
                let response: ServicesResponse = get_json(observer, "/v1/services")?;
                let got = summary(&response);
                (got == expected)
                    .then_some(())
                    .ok_or_else(|| format!("{got:#?}"))
            },
        );
    }
    let searchers: ServicesResponse = get_json(&s4, "/v1/services?type=searcher").unwrap();
    assert_eq!(searchers.services.len(), 1);
    assert_eq!(searchers.services[0].live, 3);
    assert_eq!(
        searchers.services[0].shards[1].instances[0].addr,
        s2.gossip.to_string()
    );

    // A crashed instance is marked failed and no longer counts as live.
    s3.kill();
    wait_until("svc-3 is marked failed", Duration::from_secs(20), || {
        let response: ServicesResponse = get_json(&s1, "/v1/services?type=searcher")?;
        let got = summary(&response);
        let want = [
            "searcher/0 live=1 [svc-1:alive]",
            "searcher/1 live=1 [svc-2:alive svc-3:failed]",
        ];
        (got == want)
            .then_some(())
            .ok_or_else(|| format!("{got:#?}"))
    });
    let response: ServicesResponse = get_json(&s1, "/v1/services?type=searcher").unwrap();
    assert_eq!(response.services[0].live, 2);
    assert!(!response.services[0].shards[1].instances[1].live);
}

/// An HTTP/1.1 request with extra headers; the status code and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

#[test]
fn mutating_requests_need_the_token() {
    let node = start("tok-1", &[], &["--http-token", "s3cret-T0ken"]);
    let role = |node: &Daemon| -> Option<String> {
        let states: Vec<NodeStateView> = get_json(node, "/v1/kv?node=tok-1&prefix=role").unwrap();
        states[0].entries.first().map(|e| e.value.clone())
    };
    let message = br#"{"tag":"Deploy","payload":{"v":1}}"#;
    let refused = [
        ("PUT", "/v1/kv/role", &b"web"[..]),
        ("DELETE", "/v1/kv/role", &b""[..]),
        ("POST", "/v1/messages", &message[..]),
    ];
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-T0ke"),
        Some("s3cret-T0ken"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        for (method, path, body) in refused {
            let (code, text) = request(node.http, method, path, &headers, body);
            assert_eq!(code, 401, "{method} {path} with {auth:?}: {text}");
            let error: ErrorBody = serde_json::from_str(&text).unwrap();
            assert!(error.error.contains("token"), "{text}");
        }
    }
    // Nothing changed, and reads need no token.
    assert_eq!(role(&node), None);
    let (code, _) = http_get(node.http, "/v1/members").unwrap();
    assert_eq!(code, 200);
    let stats: chatter_api::SelfView = get_json(&node, "/v1/self").unwrap();
    assert_eq!(stats.stats.get("messages_broadcast"), Some(&0));

    // The right token (the scheme in any case).
    let good = [("Authorization", "Bearer s3cret-T0ken")];
    let (code, text) = request(node.http, "PUT", "/v1/kv/role", &good, b"web");
    assert_eq!(code, 200, "{text}");
    assert_eq!(role(&node).as_deref(), Some("web"));
    let (code, text) = request(
        node.http,
        "POST",
        "/v1/messages",
        &[
            ("authorization", "bearer s3cret-T0ken"),
            ("content-type", "application/json"),
        ],
        message,
    );
    assert_eq!(code, 202, "{text}");
    let (code, text) = request(node.http, "DELETE", "/v1/kv/role", &good, b"");
    assert_eq!(code, 200, "{text}");
    assert_eq!(role(&node), None);
    assert!(!node.logs().contains("WITHOUT A TOKEN"));
}

#[test]
fn an_exposed_api_without_a_token_is_warned_about() {
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--http",
        "0.0.0.0:0",
        "--node-name",
        "exposed",
        "--profile",
        "local",
    ]
    .map(String::from);
    let open = Daemon::start_with(&args);
    wait_until("the warning is logged", Duration::from_secs(5), || {
        let logs = open.logs();
        (logs.contains("WARN") && logs.contains("WITHOUT A TOKEN"))
            .then_some(())
            .ok_or(logs)
    });
}

#[test]
fn an_event_handler_runs_on_member_failed_with_the_event() {
    let dir = TempDir::new("failed");
    let event = dir.file("event.json");
    let env = dir.file("env.txt");
    let handler = format!(
        "member-failed=cat > {event}.tmp && env > {env}.tmp && mv {env}.tmp {env} && mv {event}.tmp {event}"
    );
    let watcher = start("hnd-1", &[], &["--event-handler", &handler]);
    let mut victim = start("hnd-2", &[watcher.gossip], &[]);
    wait_until("hnd-1 sees hnd-2 alive", Duration::from_secs(20), || {
        let members = watcher.members()?;
        let alive = members.iter().filter(|m| m.status == Status::Alive).count();
        (alive == 2)
            .then_some(())
            .ok_or_else(|| common::table(&members))
    });
    let victim_addr = victim.gossip.to_string();
    victim.kill();

    let json: serde_json::Value = wait_until(
        "the handler wrote the event",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(&event).map_err(|e| format!("{event}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
        },
    );
    assert_eq!(json["type"], "member-failed", "{json}");
    assert_eq!(json["member"]["name"], "hnd-2", "{json}");
    assert_eq!(json["member"]["status"], "failed", "{json}");
    assert_eq!(json["member"]["addr"], victim_addr.as_str(), "{json}");
    assert!(
        json["timestamp"].as_u64().unwrap_or(0) > 1_600_000_000_000,
        "{json}"
    );
    let env = std::fs::read_to_string(&env).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not set:\n{env}"))
            .to_owned()
    };
    assert_eq!(var("CHATTER_EVENT"), "member-failed");
    assert_eq!(var("CHATTER_MEMBER"), "hnd-2");
    assert_eq!(var("CHATTER_MEMBER_ADDR"), victim_addr);
    assert_eq!(var("CHATTER_MEMBER_STATUS"), "failed");
    assert_eq!(var("CHATTER_NODE"), "hnd-1");
    assert_eq!(var("CHATTER_HTTP"), watcher.http.to_string());
}

#[test]
fn a_hanging_event_handler_is_killed_at_its_timeout() {
    let dir = TempDir::new("hang");
    let pids = dir.file("pids");
    let ping = dir.file("ping");
    let hang =
        format!("message:Hang=sleep 60 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait");
    let pong = format!("message:Ping=touch {ping}");
    let node = start(
        "hang-1",
        &[],
        &[
            "--event-handler-timeout",
            "1s",
            "--event-handler",
            &hang,
            "--event-handler",
            &pong,
        ],
    );
    let (code, body) = common::http_send(
        node.http,
        "POST",
        "/v1/messages",
        br#"{"tag":"Hang","payload":null}"#,
    )
    .unwrap();
    assert_eq!(code, 202, "{body}");
    let pids = wait_for_pids(&pids, "the hanging handler started");
    // While it hangs, the daemon answers and other handlers run.
    let (code, body) = node.get("/health").unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = common::http_send(
        node.http,
        "POST",
        "/v1/messages",
        br#"{"tag":"Ping","payload":null}"#,
    )
    .unwrap();
    assert_eq!(code, 202, "{body}");
    wait_until("the Ping handler ran", Duration::from_secs(10), || {
        std::path::Path::new(&ping)
            .exists()
            .then_some(())
            .ok_or_else(|| "no ping file".to_owned())
    });
    for pid in pids {
        wait_until(
            &format!("handler process {pid} is killed"),
            Duration::from_secs(10),
            || {
                if process_gone(pid) {
                    Ok(())
                } else {
                    Err(format!("{pid} still running"))
                }
            },
        );
    }
    wait_until("the timeout is logged", Duration::from_secs(5), || {
        let logs = node.logs();
        logs.contains("event handler timed out")
            .then_some(())
            .ok_or(logs)
    });
    let (code, body) = node.get("/health").unwrap();
    assert_eq!(code, 200, "{body}");
}
