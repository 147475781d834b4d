//! Status and messages through real `chatterd` processes: the key/value API, `POST
//! /v1/messages`, and every node's `GET /v1/events` stream.

mod common;

use std::time::Duration;

use chatter_api::{BroadcastResponse, ErrorBody, KvWriteResponse, NodeStateView, Status};
use common::{http_get, http_send, wait_until, Cluster, Daemon, EventClient};
use serde_json::json;

const DELIVERY: Duration = Duration::from_secs(10);

fn error_of(code: u16, body: &str, want: u16) -> String {
    assert_eq!(code, want, "{body}");
    serde_json::from_str::<ErrorBody>(body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {body}"))
        .error
}

#[test]
fn key_values_messages_and_events_reach_every_node() {
    let mut cluster = Cluster::start("st", 4, "local");
    cluster.wait_all_alive(Duration::from_secs(20));
    let mut streams: Vec<EventClient> = cluster
        .nodes
        .iter()
        .map(|n| EventClient::connect(n.http))
        .collect();
    for (stream, node) in streams.iter().zip(&cluster.nodes) {
        assert_eq!(stream.node, node.name);
    }

    // A fifth node joins: every stream reports it, with the member object.
    let seed = cluster.nodes[0].gossip;
    cluster.nodes.push(Daemon::start("st-5", "local", &[seed]));
    for stream in &mut streams {
        let event = stream.wait_for("st-5 joining", Duration::from_secs(15), |e| {
            e["type"] == "member-joined" && e["member"]["name"] == "st-5"
        });
        assert!(
            event["timestamp"].as_u64().unwrap_or(0) > 1_600_000_000_000,
            "{event}"
        );
        assert_eq!(event["member"]["addr"], cluster.nodes[4].gossip.to_string());
    }
    cluster.wait_all_alive(Duration::from_secs(20));
    streams.push(EventClient::connect(cluster.nodes[4].http));

    // A message posted on st-2 is delivered on every node, itself included.
    let (code, body) = http_send(
        cluster.nodes[1].http,
        "POST",
        "/v1/messages",
        br#"{"tag": "Deploy", "payload": {"service": "web", "version": 42}}"#,
    )
    .unwrap();
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<BroadcastResponse>(&body).unwrap().id;
    assert_eq!(id.origin, "st-2");
    for stream in &mut streams {
        let event = stream.wait_for("the Deploy message", DELIVERY, |e| {
            e["type"] == "message" && e["id"]["origin"] == "st-2" && e["id"]["seq"] == id.seq
        });
        assert_eq!(event["tag"], "Deploy");
        assert_eq!(event["payload"], json!({"service": "web", "version": 42}));
    }
    // ... and logged at info by every daemon.
    for node in &cluster.nodes {
        wait_until(&format!("{} logs the message", node.name), DELIVERY, || {
            let logs = node.logs();
            if logs.contains("message received") && logs.contains("tag=Deploy") {
                Ok(())
            } else {
                Err(logs)
            }
        });
    }

    // A key set on st-3 is visible on every node, and reported on every stream.
    let owner = &cluster.nodes[2];
    let (code, body) = http_send(owner.http, "PUT", "/v1/kv/role", b"web").unwrap();
    assert_eq!(code, 200, "{body}");
    let write: KvWriteResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(write.key, "role");
    let (code, body) = http_send(owner.http, "PUT", "/v1/kv/checks/disk", &[0xff, 0x00]).unwrap();
    assert_eq!(code, 200, "{body}");
    for node in &cluster.nodes {
        wait_until(&format!("{} sees st-3's keys", node.name), DELIVERY, || {
            let state = node.kv_of("st-3")?;
            let role = state.entries.iter().find(|e| e.key == "role");
            let disk = state.entries.iter().find(|e| e.key == "checks/disk");
            match (role, disk) {
                (Some(role), Some(disk))
                    if role.value == "web"
                        && role.version == write.version
                        && disk.bytes().ok() == Some(vec![0xff, 0x00]) =>
                {
                    assert_eq!(state.status, Status::Alive);
                    Ok(())
                }
                _ => Err(format!("{state:?}")),
            }
        });
    }
    for stream in &mut streams {
        let event = stream.wait_for("role changing", DELIVERY, |e| {
            e["type"] == "key-changed" && e["node"] == "st-3" && e["key"] == "role"
        });
        assert_eq!(event["value"], "web");
        assert_eq!(event["version"], write.version);
    }

    // Filters.
    let (code, body) = http_get(owner.http, "/v1/kv?node=st-3&prefix=checks/").unwrap();
    assert_eq!(code, 200, "{body}");
    let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        raw[0]["entries"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert_eq!(raw[0]["entries"][0]["key"], "checks/disk");
    assert_eq!(raw[0]["entries"][0]["encoding"], "base64");
    let (code, body) = owner.get("/v1/kv").unwrap();
    assert_eq!(code, 200, "{body}");
    let all: Vec<NodeStateView> = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = all.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(names, ["st-1", "st-2", "st-3", "st-4", "st-5"]);
    let (code, body) = owner.get("/v1/kv?node=nobody").unwrap();
    assert!(error_of(code, &body, 404).contains("nobody"));

    // Delete: gone everywhere; a second delete is a 404.
    let (code, body) = http_send(owner.http, "DELETE", "/v1/kv/role", b"").unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_send(owner.http, "DELETE", "/v1/kv/role", b"").unwrap();
    assert!(error_of(code, &body, 404).contains("role"));
    for node in &cluster.nodes {
        wait_until(
            &format!("{} sees role deleted", node.name),
            DELIVERY,
            || {
                let state = node.kv_of("st-3")?;
                if state.entries.iter().any(|e| e.key == "role") {
                    Err(format!("{state:?}"))
                } else {
                    Ok(())
                }
            },
        );
    }

    // Bad requests: clear errors, and the daemon keeps running.
    let node = &cluster.nodes[0];
    for (body, want, needle) in [
        (
            &br#"{"tag": "Deploy", "payload": "#[..],
            400,
            "invalid message",
        ),
        (&b"not json at all"[..], 400, "invalid message"),
        (&br#"{"payload": {"a": 1}}"#[..], 400, "missing field `tag`"),
        (
            &br#"{"tag": "", "payload": 1}"#[..],
            400,
            "tag must be 1 to 64 bytes",
        ),
    ] {
        let (code, answer) = http_send(node.http, "POST", "/v1/messages", body).unwrap();
        let error = error_of(code, &answer, want);
        assert!(error.contains(needle), "{error}");
    }
    let big = format!(r#"{{"tag": "Big", "payload": "{}"}}"#, "x".repeat(2000));
    let (code, answer) = http_send(node.http, "POST", "/v1/messages", big.as_bytes()).unwrap();
    assert!(error_of(code, &answer, 413).contains("limit"));
    let (code, answer) = http_send(node.http, "PUT", "/v1/kv/big", &[b'x'; 2000]).unwrap();
    assert!(error_of(code, &answer, 413).contains("limit"));
    // Over the body limit: refused without reading it all. The daemon may close the
    // connection before this client has written the body, so a reset is fine too.
    match http_send(node.http, "PUT", "/v1/kv/huge", &vec![b'x'; 200_000]) {
        Ok((code, answer)) => assert!(error_of(code, &answer, 413).contains("limit")),
        Err(e) => assert!(
            e.contains("reset") || e.contains("Broken pipe"),
            "unexpected failure: {e}"
        ),
    }
    let (code, answer) = http_send(node.http, "PUT", "/v1/kv/", b"x").unwrap();
    assert!(error_of(code, &answer, 400).contains("missing key"));
    let long_key = "k".repeat(200);
    let (code, answer) = http_send(node.http, "PUT", &format!("/v1/kv/{long_key}"), b"x").unwrap();
    assert!(error_of(code, &answer, 400).contains("key must be"));
    let (code, answer) = node.get("/health").unwrap();
    assert_eq!(code, 200, "{answer}");
    assert!(cluster.nodes[0].is_running());

    // A crash is reported on the streams with the evidence.
    cluster.nodes[4].kill();
    streams.pop();
    for stream in &mut streams {
        let event = stream.wait_for("st-5 failing", Duration::from_secs(20), |e| {
            e["type"] == "member-failed" && e["member"]["name"] == "st-5"
        });
        assert_eq!(event["member"]["status"], "failed");
        assert!(
            event["member"]["evidence"]["accuser"].is_string(),
            "{event}"
        );
    }
}
