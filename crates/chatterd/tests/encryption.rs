//! Gossip encryption with real `chatterd` processes on loopback: a keyed cluster forms and
//! detects a SIGKILL, a daemon with another key is never listed and its datagrams are counted
//! as refused, and a sealed inject datagram sent twice is delivered once.

mod common;

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Mutex;
use std::time::Duration;

use chatter::{Key, Keyring};
use chatter_api::{SelfView, Status};
use common::{loopback_args, wait_until, Cluster, Daemon, TempFile};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(byte: u8) -> Key {
    Key::from_bytes([byte; 32])
}

/// A keyring file with `keys` (the first primary), readable by its owner only.
fn keyring_file(name: &str, keys: &[&Key]) -> TempFile {
    let text: String = keys
        .iter()
        .map(|k| format!("{}\n", k.to_base64().as_str()))
        .collect();
    let file = TempFile::new(name, &format!("# test keyring\n{text}"));
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

/// `n` local-profile daemons sealed with `keyring`, the first the seed of the others.
fn sealed_cluster(prefix: &str, n: usize, keyring: &TempFile) -> Cluster {
    let start = |i: usize, seed: Option<std::net::SocketAddr>| {
        let mut args = loopback_args(&format!("{prefix}-{i}"));
        args.extend(["--profile", "local", "--keyring-file"].map(String::from));
        args.push(keyring.path());
        if let Some(seed) = seed {
            args.extend(["--seed".to_owned(), seed.to_string()]);
        }
        Daemon::start_with(&args)
    };
    let first = start(1, None);
    let seed = first.gossip;
    let mut nodes = vec![first];
    for i in 2..=n {
        nodes.push(start(i, Some(seed)));
    }
    Cluster { nodes }
}

fn self_view(daemon: &Daemon) -> Result<SelfView, String> {
    let (code, body) = daemon.get("/v1/self")?;
    if code != 200 {
        return Err(format!("{code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

fn stat(daemon: &Daemon, name: &str) -> Result<u64, String> {
    Ok(self_view(daemon)?.stats.get(name).copied().unwrap_or(0))
}

#[test]
fn a_keyed_cluster_forms_shows_fingerprints_and_detects_a_sigkill() {
    let _serial = serial();
    let ours = key(1);
    let file = keyring_file("keyed-cluster", &[&ours, &key(2)]);
    let mut cluster = sealed_cluster("sealed", 3, &file);
    cluster.wait_all_alive(Duration::from_secs(20));

    let view = self_view(&cluster.nodes[0]).unwrap();
    assert_eq!(view.encryption.mode, "sealed");
    assert_eq!(view.encryption.keys.len(), 2);
    assert_eq!(
        view.encryption.keys[0].fingerprint,
        ours.fingerprint().to_string()
    );
    assert!(view.encryption.keys[0].primary && !view.encryption.keys[1].primary);
    let (_, body) = cluster.nodes[0].get("/v1/self").unwrap();
    assert!(
        !body.contains(ours.to_base64().as_str()),
        "key material in /v1/self"
    );

    cluster.nodes[2].kill();
    let survivors = cluster.running();
    let victim = cluster.nodes[2].name.clone();
    wait_until(
        "the survivors see the victim failed",
        Duration::from_secs(20),
        || cluster.all_see(&survivors, &victim, Status::Failed),
    );
    for node in &cluster.nodes[..2] {
        assert!(
            !node.logs().contains(ours.to_base64().as_str()),
            "key material in the log"
        );
    }
}

#[test]
fn a_daemon_with_another_key_is_never_listed_and_is_counted_refused() {
    let _serial = serial();
    let file = keyring_file("other-key", &[&key(3)]);
    let mut cluster = sealed_cluster("members", 2, &file);
    cluster.wait_all_alive(Duration::from_secs(20));

    // The outsider gets its key through the environment, the other way to give one.
    let mut args = loopback_args("outsider");
    args.extend(["--profile", "local", "--seed"].map(String::from));
    args.push(cluster.nodes[0].gossip.to_string());
    let other = key(4).to_base64();
    let outsider = Daemon::start_with_env(&args, &[("CHATTER_GOSSIP_KEY", other.as_str())]);
    assert_eq!(self_view(&outsider).unwrap().encryption.mode, "sealed");

    wait_until(
        "the seed counts the outsider's datagrams as sealed with an unknown key",
        Duration::from_secs(20),
        || {
            let (_, metrics) = cluster.nodes[0].get("/metrics")?;
            let line = metrics
                .lines()
                .find(|l| l.starts_with("chatter_dropped_total{reason=\"sealed_unknown_key\"}"))
                .ok_or("no sealed_unknown_key line")?
                .to_owned();
            let n: u64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or(line.clone())?;
            if n >= 3 {
                Ok(())
            } else {
                Err(line)
            }
        },
    );
    for node in &cluster.nodes {
        let members = node.members().unwrap();
        assert!(
            members.iter().all(|m| m.name != "outsider"),
            "{} lists the outsider:\n{}",
            node.name,
            common::table(&members)
        );
        assert_eq!(stat(node, "packets_received").map(|n| n > 0), Ok(true));
    }
    let seen = outsider.members().unwrap();
    assert_eq!(seen.len(), 1, "{}", common::table(&seen));
}

#[test]
fn a_sealed_inject_is_delivered_once_and_its_replay_changes_nothing() {
    let _serial = serial();
    let ring_key = key(5);
    let file = keyring_file("inject", &[&ring_key]);
    let mut cluster = sealed_cluster("inject", 3, &file);
    cluster.wait_all_alive(Duration::from_secs(20));

    let ring = Keyring::new(ring_key.clone());
    let datagram = chatter_core::wire::encode_inject_sealed(
        &ring,
        0x1234_5678,
        "chatter",
        "DebugMessage",
        br#"{"text":"once"}"#,
    )
    .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = cluster.nodes[0].gossip;
    socket.send_to(&datagram, target).unwrap();
    wait_until(
        "every node delivers the message",
        Duration::from_secs(10),
        || {
            for node in &cluster.nodes {
                let n = stat(node, "messages_delivered")?;
                if n != 1 {
                    return Err(format!("{} delivered {n}", node.name));
                }
            }
            Ok(())
        },
    );

    // The same bytes again: refused as a replay, delivered nowhere.
    socket.send_to(&datagram, target).unwrap();
    wait_until(
        "the replay is counted",
        Duration::from_secs(10),
        || match stat(&cluster.nodes[0], "dropped_sealed_replayed")? {
            1 => Ok(()),
            n => Err(format!("replayed = {n}")),
        },
    );
    // A plain copy of the same inject is refused too.
    let plain = chatter_core::wire::encode_inject("chatter", "DebugMessage", b"{}");
    socket.send_to(&plain, target).unwrap();
    wait_until(
        "the plain inject is counted",
        Duration::from_secs(10),
        || match stat(&cluster.nodes[0], "dropped_sealed_not_sealed")? {
            1 => Ok(()),
            n => Err(format!("not_sealed = {n}")),
        },
    );
    for node in &cluster.nodes {
        assert_eq!(stat(node, "messages_delivered"), Ok(1), "{}", node.name);
    }
    assert_eq!(stat(&cluster.nodes[0], "messages_injected"), Ok(1));
}

#[test]
fn a_bad_keyring_file_is_a_one_line_startup_error() {
    let file = TempFile::new("bad-keyring", "# comment\nnot base64!\n");
    let out = std::process::Command::new(common::CHATTERD)
        .args(loopback_args("bad"))
        .args(["--keyring-file", &file.path()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The file is 0644: a warning, then the error on one line with the line number.
    assert!(stderr.contains("readable by group or others"), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("chatterd: keyring file ") && last.contains("line 2: "),
        "{stderr}"
    );
}
