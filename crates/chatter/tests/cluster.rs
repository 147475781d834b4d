//! Real UDP on loopback: nodes find each other, detect a crash (through ICMP port-unreachable
//! on Linux), tell a leave from a crash, and shrug off junk.

mod common;

use std::net::SocketAddr;

use chatter::{Chatter, Config, Error, Event, MemberStatus, Tags};
use common::{deadline, describe, node, sees, wait_all_alive, wait_until};

#[tokio::test]
async fn three_nodes_join_and_see_each_other_alive() {
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    let c = node("c", &[&a]).await;
    wait_all_alive(&[&a, &b, &c], deadline(5)).await;

    let snapshot = a.snapshot();
    assert_eq!(snapshot.local.name, "a");
    assert_eq!(snapshot.local.status, MemberStatus::Alive);
    assert_eq!(snapshot.num_live(), 2);
    let names: Vec<_> = a.members().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(a.member("c").map(|m| m.addr), Some(c.local_addr()));
    assert_eq!(a.member("a").map(|m| m.addr), Some(a.local_addr()));
    assert_eq!(a.local().name, "a");
    for h in [&a, &b, &c] {
        h.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn crashed_node_is_failed_with_unreachable_evidence() {
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    let c = node("c", &[&a]).await;
    wait_all_alive(&[&a, &b, &c], deadline(5)).await;

    // No leave: to the others, c just stops answering, and its port is closed.
    c.shutdown().await.unwrap();
    let end = deadline(8);
    for h in [&a, &b] {
        wait_until(h, end, "c failed", |s| sees(s, "c", MemberStatus::Failed)).await;
    }

    if cfg!(target_os = "linux") {
        // Loopback answers a closed port with ICMP port-unreachable at once: the probers read
        // it from the error queue, and the suspicion they gossip carries it.
        let icmp_total: u64 = [&a, &b]
            .iter()
            .map(|h| h.snapshot().io.icmp_unreachable)
            .sum();
        assert!(icmp_total > 0, "no ICMP report read");
        for h in [&a, &b] {
            let snapshot = h.snapshot();
            let evidence = snapshot
                .member("c")
                .and_then(|m| m.evidence.clone())
                .unwrap_or_else(|| {
                    panic!("{} has no evidence:\n{}", h.name(), describe(&snapshot))
                });
            assert!(
                evidence.unreachable,
                "{}:\n{}",
                h.name(),
                describe(&snapshot)
            );
        }
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// The driver runs the core's host checks against real sockets: each node calibrates its
/// path to the others (a TCP connection attempt to their gossip ports, where nothing listens:
/// loopback's kernel refuses at once), and every check is answered.
#[tokio::test]
async fn host_checks_of_live_members_are_answered_by_their_kernel() {
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    let c = node("c", &[&a]).await;
    wait_all_alive(&[&a, &b, &c], deadline(5)).await;
    let end = deadline(10);
    for h in [&a, &b, &c] {
        wait_until(h, end, "two host checks answered", |s| {
            s.stats.host_checks_calibration >= 2 && s.stats.host_checks_answered >= 2
        })
        .await;
        let stats = h.snapshot().stats;
        assert_eq!(stats.host_checks_silent, 0, "{}", h.name());
        assert_eq!(stats.host_checks_inconclusive, 0, "{}", h.name());
        assert_eq!(stats.host_checks_unexpected, 0, "{}", h.name());
    }
    for h in [&a, &b, &c] {
        h.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn leave_is_seen_as_left_not_failed() {
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    let c = node("c", &[&a]).await;
    wait_all_alive(&[&a, &b, &c], deadline(5)).await;

    c.leave().await.unwrap();
    assert!(c.is_stopped());
    assert_eq!(c.local().status, MemberStatus::Left);
    let end = deadline(5);
    for h in [&a, &b] {
        wait_until(h, end, "c left", |s| sees(s, "c", MemberStatus::Left)).await;
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscribers_receive_joined_and_failed_events() {
    let a = node("a", &[]).await;
    let mut events = a.subscribe();
    let b = node("b", &[&a]).await;
    let c = node("c", &[&a]).await;
    wait_all_alive(&[&a, &b, &c], deadline(5)).await;
    c.shutdown().await.unwrap();

    let mut joined = Vec::new();
    let outcome = tokio::time::timeout_at(deadline(8), async {
        while let Some(event) = events.recv().await {
            match event {
                Event::Joined(m) => joined.push(m.name),
                Event::Failed(m) if m.name == "c" => return Some(m),
                _ => {}
            }
        }
        None
    })
    .await;
    let failed = outcome
        .expect("no Failed event for c in time")
        .expect("event stream ended early");
    assert_eq!(failed.status, MemberStatus::Failed);
    joined.sort();
    assert_eq!(joined, ["b", "c"]);
    assert_eq!(events.skipped(), 0);

    // The stream ends when the node stops.
    a.shutdown().await.unwrap();
    let rest = tokio::time::timeout_at(deadline(2), async {
        while events.recv().await.is_some() {}
    })
    .await;
    assert!(rest.is_ok(), "event stream did not end after shutdown");
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn junk_datagrams_are_dropped_and_counted() {
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    wait_all_alive(&[&a, &b], deadline(5)).await;

    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut payloads: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0],
        vec![0xff; 3],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xab; 1400],
        vec![0x5a; 60_000],
    ];
    // Deterministic pseudo-random bytes of many lengths.
    let mut x: u32 = 0x9e37_79b9;
    for len in 1..200 {
        payloads.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
    }
    for p in &payloads {
        junk.send_to(p, a.local_addr()).await.unwrap();
    }
    let sent = payloads.len() as u64;

    wait_until(&a, deadline(5), "junk counted", |s| {
        let st = &s.stats;
        st.dropped_malformed + st.dropped_version + st.dropped_wrong_cluster + st.dropped_oversize
            >= sent - 1 // an empty datagram may not even reach the decoder's count
    })
    .await;

    // Still answering: a new node joins through a, and everyone sees everyone.
    let c = node("c", &[&a]).await;
    wait_all_alive(&[&a, &b, &c], deadline(5)).await;
    assert_eq!(a.local().status, MemberStatus::Alive);
    for h in [&a, &b, &c] {
        h.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn tags_spread_to_the_other_members() {
    let a = Chatter::builder("a")
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .config(Config::local())
        .tag("role", "web")
        .spawn()
        .await
        .unwrap();
    let b = node("b", &[&a]).await;
    wait_until(&b, deadline(5), "a's tags", |s| {
        s.member("a")
            .is_some_and(|m| m.tags.get("role").map(String::as_str) == Some("web"))
    })
    .await;

    let mut tags = Tags::new();
    tags.insert("role".into(), "db".into());
    a.set_tags(tags).await.unwrap();
    assert_eq!(a.local().tags.get("role").map(String::as_str), Some("db"));
    wait_until(&b, deadline(5), "a's new tags", |s| {
        s.member("a")
            .is_some_and(|m| m.tags.get("role").map(String::as_str) == Some("db"))
    })
    .await;

    let mut huge = Tags::new();
    huge.insert("blob".into(), "x".repeat(10_000));
    assert!(matches!(a.set_tags(huge).await, Err(Error::Tags(_))));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn join_after_start_connects_two_nodes() {
    let a = node("a", &[]).await;
    let b = node("b", &[]).await;
    b.join(&a.local_addr().to_string()).await.unwrap();
    wait_all_alive(&[&a, &b], deadline(5)).await;

    assert!(matches!(
        b.join("no-port").await,
        Err(Error::InvalidSeed { .. })
    ));
    assert!(matches!(
        b.join("does-not-exist.invalid:2428").await,
        Err(Error::Resolve { .. })
    ));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn stopped_node_answers_stopped_and_keeps_its_last_snapshot() {
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    wait_all_alive(&[&a, &b], deadline(5)).await;
    let mut events = b.subscribe();

    b.shutdown().await.unwrap();
    assert!(b.is_stopped());
    b.stopped().await;
    assert!(matches!(b.shutdown().await, Err(Error::Stopped)));
    assert!(matches!(b.leave().await, Err(Error::Stopped)));
    assert!(matches!(b.set_tags(Tags::new()).await, Err(Error::Stopped)));
    assert!(matches!(
        b.join(&a.local_addr().to_string()).await,
        Err(Error::Stopped)
    ));
    assert!(sees(&b.snapshot(), "a", MemberStatus::Alive));
    assert!(events.recv().await.is_none());
    assert!(b.subscribe().recv().await.is_none());

    // The port is free again: a restart (new generation) binds it and rejoins.
    let restarted = Chatter::builder("b")
        .bind(b.local_addr())
        .config(Config::local())
        .seed(a.local_addr().to_string())
        .spawn()
        .await
        .unwrap();
    wait_all_alive(&[&a, &restarted], deadline(8)).await;
    a.shutdown().await.unwrap();
    restarted.shutdown().await.unwrap();
}

#[tokio::test]
async fn dropping_every_handle_stops_the_node() {
    let a = node("a", &[]).await;
    let watcher = a.watch();
    let addr = a.local_addr();
    drop(a);
    // The socket is closed once the driver is gone: the port can be bound again.
    let end = deadline(5);
    let mut watcher = watcher;
    let closed =
        tokio::time::timeout_at(end, async { while watcher.changed().await.is_ok() {} }).await;
    assert!(closed.is_ok(), "driver still running");
    let again = Chatter::builder("a2")
        .bind(addr)
        .config(Config::local())
        .spawn()
        .await;
    assert!(again.is_ok(), "port still bound: {:?}", again.err());
}

#[tokio::test]
async fn start_errors_are_clear() {
    let a = node("a", &[]).await;
    let taken = Chatter::builder("x").bind(a.local_addr()).spawn().await;
    match taken {
        Err(e @ Error::Bind { .. }) => {
            assert!(
                e.to_string()
                    .starts_with(&format!("cannot bind UDP {}: ", a.local_addr())),
                "{e}"
            )
        }
        other => panic!("expected a bind error, got {other:?}"),
    }

    let bad_seed = Chatter::builder("x")
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .seed("just-a-host")
        .spawn()
        .await;
    assert!(
        matches!(bad_seed, Err(Error::InvalidSeed { .. })),
        "{bad_seed:?}"
    );

    let bad_config = Chatter::builder("x")
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .config(Config {
            probe_interval: std::time::Duration::ZERO,
            ..Config::local()
        })
        .spawn()
        .await;
    assert!(
        matches!(bad_config, Err(Error::Config(_))),
        "{bad_config:?}"
    );

    // A seed that does not resolve is not fatal: the node runs, and can be joined.
    let lonely = Chatter::builder("lonely")
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .config(Config::local())
        .seed("does-not-exist.invalid:2428")
        .spawn()
        .await
        .unwrap();
    assert!(lonely.snapshot().io.seed_resolution_failures >= 1);
    let b = node("b", &[&lonely]).await;
    wait_all_alive(&[&lonely, &b], deadline(5)).await;
    for h in [&a, &lonely, &b] {
        h.shutdown().await.unwrap();
    }
}

/// Binds `[::1]:0`, or `None` where the host has no IPv6 loopback (some containers).
async fn ipv6_node(name: &str, seeds: &[&chatter::Handle]) -> Option<chatter::Handle> {
    common::init_tracing();
    Chatter::builder(name)
        .bind("[::1]:0".parse().unwrap())
        .config(Config::local())
        .seeds(seeds.iter().map(|h| h.local_addr().to_string()))
        .spawn()
        .await
        .ok()
}

#[tokio::test]
async fn ipv6_nodes_detect_a_crash_through_icmpv6() {
    let Some(a) = ipv6_node("a", &[]).await else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let b = ipv6_node("b", &[&a]).await.unwrap();
    let c = ipv6_node("c", &[&a]).await.unwrap();
    wait_all_alive(&[&a, &b, &c], deadline(5)).await;
    c.shutdown().await.unwrap();
    let end = deadline(8);
    for h in [&a, &b] {
        wait_until(h, end, "c failed", |s| sees(s, "c", MemberStatus::Failed)).await;
    }
    if cfg!(target_os = "linux") {
        let evidence = a.member("c").and_then(|m| m.evidence).unwrap();
        assert!(evidence.unreachable, "{}", describe(&a.snapshot()));
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn dual_stack_node_talks_to_ipv4_members() {
    let a = node("a", &[]).await;
    // Bound to the IPv6 wildcard: advertises the interface towards its seed (127.0.0.1), and
    // reaches a through an IPv4-mapped address.
    let Ok(b) = Chatter::builder("b")
        .bind("[::]:0".parse().unwrap())
        .config(Config::local())
        .seed(a.local_addr().to_string())
        .spawn()
        .await
    else {
        eprintln!("no IPv6 here; skipped");
        a.shutdown().await.unwrap();
        return;
    };
    assert_eq!(
        b.local().addr,
        SocketAddr::from(([127, 0, 0, 1], b.local_addr().port()))
    );
    wait_all_alive(&[&a, &b], deadline(5)).await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A joiner's first datagram (its join request) must leave at once. tokio's `try_send_to`
/// answers WouldBlock until the reactor has seen a new socket writable; dropping that datagram
/// made every join wait for the retry `join_retry_initial` later (1 s with `lan`).
#[tokio::test]
async fn a_join_does_not_wait_for_the_retry() {
    let config = Config::lan();
    let retry = config.join_retry_initial;
    let spawn = |name: &str, seed: Option<SocketAddr>| {
        let mut builder = Chatter::builder(name)
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .config(config.clone());
        if let Some(seed) = seed {
            builder = builder.seed(seed.to_string());
        }
        builder.spawn()
    };
    let a = spawn("a", None).await.unwrap();
    let started = tokio::time::Instant::now();
    let b = spawn("b", Some(a.local_addr())).await.unwrap();
    wait_until(&b, deadline(5), "b sees a alive", |s| {
        sees(s, "a", MemberStatus::Alive)
    })
    .await;
    let took = started.elapsed();
    assert!(
        took < retry / 2,
        "join took {took:?}: the first datagram was lost"
    );
    assert_eq!(b.snapshot().io.send_errors, 0);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
