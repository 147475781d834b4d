//! Restarts that keep state (`Builder::data_dir`), on real UDP sockets on loopback: a node
//! that crashed comes back with its keys through the members it remembered, every seed down,
//! and its previous life's state is replaced, not resurrected.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chatter::{Chatter, Config, Error, Handle, MemberStatus, SavedState, StartedFrom};
use common::{deadline, describe, init_tracing, node, sees, wait_all_alive, wait_until};
use tokio::time::Instant;

/// A data directory of this test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "chatter-data-dir-{tag}-{}-{nanos}",
            std::process::id()
        ));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn builder(name: &str, seeds: &[SocketAddr], dir: &Path) -> chatter::Builder {
    Chatter::builder(name)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .config(Config::local())
        .seeds(seeds.iter().map(ToString::to_string))
        .data_dir(dir)
}

/// A node running on a runtime of its own, on a thread of its own, so that the test can crash
/// it: dropping the runtime drops the node's task where it stands, without the final snapshot
/// a graceful stop writes (what SIGKILL does to a process).
struct Crashable {
    handle: Handle,
    crash: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Crashable {
    async fn spawn(builder: chatter::Builder) -> Self {
        let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
        let (crash, crashed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let _ = handle_tx.send(builder.spawn().await.unwrap());
                let _ = crashed.await;
            });
            // The runtime goes here, and the node's task with it.
        });
        let handle = handle_rx.await.unwrap();
        Self {
            handle,
            crash: Some(crash),
            thread: Some(thread),
        }
    }

    fn crash(mut self) {
        if let Some(crash) = self.crash.take() {
            let _ = crash.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Waits until `handle` holds `value` for `node`'s `key` (`None`: not set), polling the
/// driver under a deadline.
async fn wait_key(handle: &Handle, node: &str, key: &str, value: Option<&str>, end: Instant) {
    loop {
        let got = handle.get(node, key).await.unwrap();
        if got.as_deref() == value.map(str::as_bytes) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{}: {node}.{key} is {:?}, expected {value:?}; it sees:\n{}",
            handle.name(),
            got.map(|v| String::from_utf8_lossy(&v).into_owned()),
            describe(&handle.snapshot())
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the snapshot in `dir` satisfies `cond` (it is written at most once a second).
async fn wait_saved(dir: &Path, end: Instant, what: &str, cond: impl Fn(&SavedState) -> bool) {
    let config = Config::local();
    loop {
        let saved = SavedState::read(dir, &config).unwrap();
        if saved.as_ref().is_some_and(&cond) {
            return;
        }
        assert!(
            Instant::now() < end,
            "the snapshot never showed {what}: {saved:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_crashed_node_rejoins_through_remembered_members_with_its_keys() {
    init_tracing();
    let dir = TempDir::new("restart");
    let a = node("a", &[]).await;
    let c = node("c", &[&a]).await;
    let b = Crashable::spawn(builder("b", &[a.local_addr()], dir.path())).await;
    assert_eq!(
        b.handle.data_dir().map(|d| &d.started_from),
        Some(&StartedFrom::Fresh)
    );
    wait_all_alive(&[&a, &b.handle, &c], deadline(5)).await;

    b.handle.set("role", "db").await.unwrap();
    b.handle.set("gone", "soon").await.unwrap();
    b.handle.delete("gone").await.unwrap();
    let end = deadline(5);
    for h in [&a, &c] {
        wait_key(h, "b", "role", Some("db"), end).await;
        wait_key(h, "b", "gone", None, end).await;
    }
    let c_addr = c.local_addr();
    wait_saved(dir.path(), deadline(5), "b's key and c", |s| {
        s.entries.get("role").map(Vec::as_slice) == Some(&b"db"[..])
            && !s.entries.contains_key("gone")
            && s.members.iter().any(|m| m.name == "c" && m.addr == c_addr)
    })
    .await;
    let old_generation = b.handle.local().generation;

    // b crashes, and so does the only seed: b's way back is the member it remembers.
    b.crash();
    a.shutdown().await.unwrap();
    wait_until(&c, deadline(10), "a and b failed", |s| {
        sees(s, "a", MemberStatus::Failed) && sees(s, "b", MemberStatus::Failed)
    })
    .await;

    let restarted = std::time::Instant::now();
    let b = builder("b", &[a.local_addr()], dir.path())
        .spawn()
        .await
        .unwrap();
    let started_from = b.data_dir().map(|d| d.started_from.clone());
    assert!(
        matches!(
            started_from,
            Some(StartedFrom::Restored { previous_generation, keys: 1, .. })
                if previous_generation == old_generation
        ),
        "{started_from:?}"
    );
    let end = deadline(10);
    wait_until(&c, end, "b's new life alive", |s| {
        s.member("b")
            .is_some_and(|m| m.status == MemberStatus::Alive && m.generation > old_generation)
    })
    .await;
    wait_until(&b, end, "c alive", |s| sees(s, "c", MemberStatus::Alive)).await;
    wait_key(&c, "b", "role", Some("db"), end).await;
    let elapsed = restarted.elapsed();
    println!(
        "restart until alive everywhere and keys back: {:.1} ms (every seed down, rejoined \
         through a remembered member)",
        elapsed.as_secs_f64() * 1000.0
    );

    assert!(b.local().generation > old_generation);
    // The previous life's state is replaced: the deleted key stays deleted, on b and on c.
    assert_eq!(b.get("b", "gone").await.unwrap(), None);
    assert_eq!(c.get("b", "gone").await.unwrap(), None);
    let state = c.node_state("b").await.unwrap().unwrap();
    assert_eq!(state.generation, b.local().generation);
    assert_eq!(state.entries.keys().collect::<Vec<_>>(), ["role"]);

    // A graceful stop writes the last state: the next life starts above this one.
    let generation = b.local().generation;
    b.leave().await.unwrap();
    let saved = SavedState::read(dir.path(), &Config::local())
        .unwrap()
        .unwrap();
    assert_eq!(saved.generation, generation);
    c.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_snapshot_is_set_aside_and_the_node_starts_clean() {
    init_tracing();
    let dir = TempDir::new("corrupt");
    let first = builder("x", &[], dir.path()).spawn().await.unwrap();
    first.set("k", "v").await.unwrap();
    first.shutdown().await.unwrap();
    let file = dir.path().join(chatter::persist::STATE_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let second = builder("x", &[], dir.path()).spawn().await.unwrap();
    match second.data_dir().map(|d| &d.started_from) {
        Some(StartedFrom::SetAside {
            reason,
            moved_to: Some(moved_to),
        }) => {
            assert!(reason.contains("checksum"), "{reason}");
            assert_eq!(std::fs::read(moved_to).unwrap(), bytes);
        }
        other => panic!("not set aside: {other:?}"),
    }
    assert_eq!(second.get("x", "k").await.unwrap(), None);
    // The clean start wrote a good snapshot again.
    assert!(SavedState::read(dir.path(), &Config::local())
        .unwrap()
        .is_some());
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_data_dir_that_cannot_be_made_is_refused_at_start() {
    init_tracing();
    let dir = TempDir::new("not-a-dir");
    std::fs::write(dir.path(), b"a file").unwrap();
    let result = builder("y", &[], dir.path()).spawn().await;
    assert!(
        matches!(result, Err(Error::DataDir { .. })),
        "{:?}",
        result.map(|h| h.name().to_owned())
    );
    let _ = std::fs::remove_file(dir.path());
}

#[tokio::test]
async fn the_saved_tags_and_another_name_are_handled() {
    init_tracing();
    let dir = TempDir::new("tags");
    let first = builder("t", &[], dir.path())
        .tag("zone", "a")
        .spawn()
        .await
        .unwrap();
    first.shutdown().await.unwrap();
    // No tags given: the saved ones.
    let second = builder("t", &[], dir.path()).spawn().await.unwrap();
    assert_eq!(
        second.local().tags.get("zone").map(String::as_str),
        Some("a")
    );
    second.shutdown().await.unwrap();
    // Another name: nothing of the saved node's own state, but a higher generation.
    let saved = SavedState::read(dir.path(), &Config::local())
        .unwrap()
        .unwrap();
    let third = builder("u", &[], dir.path()).spawn().await.unwrap();
    assert!(matches!(
        third.data_dir().map(|d| &d.started_from),
        Some(StartedFrom::OtherName { saved_name }) if saved_name == "t"
    ));
    assert!(third.local().tags.is_empty());
    assert!(third.local().generation > saved.generation);
    third.shutdown().await.unwrap();
}
