//! Live key rotation with real `chatterd` processes on loopback: a sealed 5-node cluster, each
//! daemon with its own keyring file, installs a new key, uses it and removes the old one with
//! no live member ever suspected; every keyring file is rewritten; a node killed before the
//! rotation is reported as not reached and rejoins once restarted with the new keyring; the
//! primary key cannot be removed; the API is behind the token and refuses without encryption.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chatter::{Key, Keyring};
use chatter_api::{KeyOperationResponse, SelfView, Status};
use common::{http_send, http_send_with, loopback_args, wait_until, Cluster, Daemon};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(byte: u8) -> Key {
    Key::from_bytes([byte; 32])
}

/// A directory of its own in the temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("chatterd-rotation-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_keyring(path: &Path, keys: &[&Key]) {
    let text: String = keys
        .iter()
        .map(|k| format!("{}\n", k.to_base64().as_str()))
        .collect();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The fingerprints of the keyring file at `path`, primary first.
fn file_keys(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let ring = Keyring::parse(&text).map_err(|e| e.to_string())?;
    Ok(ring
        .list()
        .iter()
        .map(|k| k.fingerprint.to_string())
        .collect())
}

fn start_node(name: &str, keyring: &Path, seed: Option<SocketAddr>) -> Daemon {
    let mut args = loopback_args(name);
    args.extend(["--profile", "local", "--keyring-file"].map(String::from));
    args.push(keyring.display().to_string());
    if let Some(seed) = seed {
        args.extend(["--seed".to_owned(), seed.to_string()]);
    }
    Daemon::start_with(&args)
}

fn post(daemon: &Daemon, path: &str, key: &str) -> Result<(u16, String), String> {
    let body = serde_json::json!({ "key": key }).to_string();
    http_send(daemon.http, "POST", path, body.as_bytes())
}

fn report(answer: Result<(u16, String), String>) -> KeyOperationResponse {
    let (code, body) = answer.unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn names(answers: &[chatter_api::KeyNodeAnswer]) -> Vec<&str> {
    answers.iter().map(|a| a.node.as_str()).collect()
}

fn stat(daemon: &Daemon, name: &str) -> Result<u64, String> {
    let (code, body) = daemon.get("/v1/self")?;
    if code != 200 {
        return Err(format!("{code}: {body}"));
    }
    let view: SelfView = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(view.stats.get(name).copied().unwrap_or(0))
}

/// Every observer sees every name of `live` alive: a suspicion or failure of a live member
/// during the rotation fails the test.
fn live_stay_alive(cluster: &Cluster, observers: &[usize], live: &[String]) -> Result<(), String> {
    for &i in observers {
        let members = cluster.nodes[i].members()?;
        for name in live {
            let member = members
                .iter()
                .find(|m| &m.name == name)
                .ok_or_else(|| format!("{} does not list {name}", cluster.nodes[i].name))?;
            assert_eq!(
                member.status,
                Status::Alive,
                "{} sees {name} {:?} during the rotation:\n{}",
                cluster.nodes[i].name,
                member.status,
                common::table(&members)
            );
        }
    }
    Ok(())
}

#[test]
fn a_sealed_cluster_rotates_its_key_live_and_a_node_down_rejoins_with_the_new_keyring() {
    let _serial = serial();
    let dir = TempDir::new("cluster");
    let (old, new) = (key(0x31), key(0x32));
    let files: Vec<PathBuf> = (1..=5)
        .map(|i| dir.0.join(format!("keyring-{i}")))
        .collect();
    for file in &files {
        write_keyring(file, &[&old]);
    }
    let first = start_node("rot-1", &files[0], None);
    let seed = first.gossip;
    let mut nodes = vec![first];
    for (i, file) in files.iter().enumerate().skip(1) {
        nodes.push(start_node(&format!("rot-{}", i + 1), file, Some(seed)));
    }
    let mut cluster = Cluster { nodes };
    cluster.wait_all_alive(Duration::from_secs(20));

    // Node 5 dies before the rotation; the others declare it failed.
    cluster.nodes[4].kill();
    let down = cluster.nodes[4].name.clone();
    let observers = [0, 1, 2, 3];
    wait_until(
        "the survivors see rot-5 failed",
        Duration::from_secs(20),
        || cluster.all_see(&observers, &down, Status::Failed),
    );
    let live: Vec<String> = cluster.nodes[..4].iter().map(|n| n.name.clone()).collect();
    let refuted_before: Vec<u64> = cluster.nodes[..4]
        .iter()
        .map(|n| stat(n, "suspicions_refuted").unwrap())
        .collect();

    // Install the new key (through node 1).
    let install = report(post(
        &cluster.nodes[0],
        "/v1/keys/install",
        new.to_base64().as_str(),
    ));
    assert!(install.complete, "{install:?}");
    assert_eq!(
        names(&install.acknowledged),
        ["rot-1", "rot-2", "rot-3", "rot-4"]
    );
    assert_eq!(install.not_reached, std::slice::from_ref(&down));
    assert!(install.silent.is_empty() && install.refused.is_empty());
    assert_eq!(install.fingerprint, Some(new.fingerprint().to_string()));
    assert_eq!(install.keyring_file, Some(files[0].display().to_string()));
    assert!(!serde_json::to_string(&install)
        .unwrap()
        .contains(new.to_base64().as_str()));
    let both = vec![old.fingerprint().to_string(), new.fingerprint().to_string()];
    wait_until(
        "every keyring file holds both keys",
        Duration::from_secs(10),
        || {
            live_stay_alive(&cluster, &observers, &live)?;
            for file in &files[..4] {
                let keys = file_keys(file)?;
                if keys != both {
                    return Err(format!("{}: {keys:?}", file.display()));
                }
            }
            Ok(())
        },
    );

    // Use it (through node 2, by fingerprint).
    let use_new = report(post(
        &cluster.nodes[1],
        "/v1/keys/use",
        &new.fingerprint().to_string(),
    ));
    assert!(use_new.complete, "{use_new:?}");
    assert_eq!(use_new.not_reached, std::slice::from_ref(&down));
    assert!(use_new
        .acknowledged
        .iter()
        .all(|a| a.keys[0].primary && a.keys[0].fingerprint == new.fingerprint().to_string()));
    live_stay_alive(&cluster, &observers, &live).unwrap();

    // Remove the old one (through node 3, by key).
    let remove = report(post(
        &cluster.nodes[2],
        "/v1/keys/remove",
        old.to_base64().as_str(),
    ));
    assert!(remove.complete, "{remove:?}");
    assert_eq!(remove.not_reached, std::slice::from_ref(&down));
    let only_new = vec![new.fingerprint().to_string()];
    wait_until(
        "every keyring file holds the new key alone",
        Duration::from_secs(10),
        || {
            live_stay_alive(&cluster, &observers, &live)?;
            for file in &files[..4] {
                let keys = file_keys(file)?;
                if keys != only_new {
                    return Err(format!("{}: {keys:?}", file.display()));
                }
                let mode = std::fs::metadata(file)
                    .map_err(|e| e.to_string())?
                    .permissions()
                    .mode();
                if mode & 0o777 != 0o600 {
                    return Err(format!("{} has mode {:o}", file.display(), mode & 0o777));
                }
            }
            Ok(())
        },
    );
    // The dead node's file was not touched.
    assert_eq!(
        file_keys(&files[4]).unwrap(),
        [old.fingerprint().to_string()]
    );

    // The primary cannot be removed: refused before anything is sent.
    let (code, body) = post(
        &cluster.nodes[3],
        "/v1/keys/remove",
        &new.fingerprint().to_string(),
    )
    .unwrap();
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("primary"), "{body}");

    // The cluster lists one key, primary everywhere; the dead node did not answer.
    let (code, body) = cluster.nodes[0].get("/v1/keys").unwrap();
    assert_eq!(code, 200, "{body}");
    let list: KeyOperationResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(list.keys.len(), 1, "{list:?}");
    assert_eq!(list.keys[0].fingerprint, new.fingerprint().to_string());
    assert_eq!((list.keys[0].nodes, list.keys[0].primary_on), (4, 4));
    assert_eq!(list.not_reached, std::slice::from_ref(&down));

    // Nobody was suspected, not even for a moment: a refuted suspicion would show here.
    for (node, before) in cluster.nodes[..4].iter().zip(&refuted_before) {
        assert_eq!(
            stat(node, "suspicions_refuted").unwrap(),
            *before,
            "{}",
            node.name
        );
        assert_eq!(
            stat(node, "dropped_sealed_unknown_key").unwrap(),
            0,
            "{}",
            node.name
        );
    }

    // The dead node, given the new keyring by hand, rejoins.
    std::fs::copy(&files[0], &files[4]).unwrap();
    cluster.nodes[4] = start_node(&down, &files[4], Some(cluster.nodes[0].gossip));
    let everyone = [0, 1, 2, 3, 4];
    wait_until(
        "everyone lists the restarted node alive",
        Duration::from_secs(20),
        || {
            for name in cluster
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect::<Vec<_>>()
            {
                cluster.all_see(&everyone, &name, Status::Alive)?;
            }
            Ok(())
        },
    );
    for node in &cluster.nodes {
        assert!(
            !node.logs().contains(new.to_base64().as_str())
                && !node.logs().contains(old.to_base64().as_str()),
            "key material in the log of {}",
            node.name
        );
    }
}

#[test]
fn the_keys_api_needs_the_token_and_encryption_and_says_when_changes_stay_in_memory() {
    let _serial = serial();
    // The key from the environment: no file to rewrite.
    let mut args = loopback_args("token-node");
    args.extend(["--profile", "local", "--http-token", "s3cret"].map(String::from));
    let env_key = key(0x41).to_base64();
    let daemon = Daemon::start_with_env(&args, &[("CHATTER_GOSSIP_KEY", env_key.as_str())]);

    let (code, body) = daemon.get("/v1/keys").unwrap();
    assert_eq!(code, 401, "listing without the token: {body}");
    let body_json = serde_json::json!({ "key": key(0x42).to_base64().as_str() }).to_string();
    let (code, _) = http_send(
        daemon.http,
        "POST",
        "/v1/keys/install",
        body_json.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 401);

    let auth = [
        ("Authorization", "Bearer s3cret"),
        ("Content-Type", "application/json"),
    ];
    let (code, _, body) = http_send_with(daemon.http, "GET", "/v1/keys", &auth[..1], b"").unwrap();
    assert_eq!(code, 200, "{body}");
    let list: KeyOperationResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(list.keys.len(), 1);
    assert!(list.keyring_file.is_none());
    assert!(list
        .warning
        .as_deref()
        .unwrap_or("")
        .contains("memory only"));

    // JSON-only, like every POST.
    let (code, _, _) = http_send_with(
        daemon.http,
        "POST",
        "/v1/keys/install",
        &[
            ("Authorization", "Bearer s3cret"),
            ("Content-Type", "text/plain"),
        ],
        body_json.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 415);
    let (code, _, body) = http_send_with(
        daemon.http,
        "POST",
        "/v1/keys/install",
        &auth,
        body_json.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let install: KeyOperationResponse = serde_json::from_str(&body).unwrap();
    assert!(install.complete);
    assert!(install.warning.is_some());
    wait_until(
        "the memory-only warning is logged",
        Duration::from_secs(5),
        || {
            if daemon.logs().contains("holds in memory only") {
                Ok(())
            } else {
                Err(daemon.logs())
            }
        },
    );
    // Garbage is a 400, not a crash.
    let (code, _, _) = http_send_with(
        daemon.http,
        "POST",
        "/v1/keys/use",
        &auth,
        br#"{"key": "not a key"}"#,
    )
    .unwrap();
    assert_eq!(code, 400);

    // Without encryption, every key operation is refused with the reason.
    let plain = Daemon::start("plain-node", "local", &[]);
    let (code, body) = plain.get("/v1/keys").unwrap();
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("without gossip encryption"), "{body}");
}
