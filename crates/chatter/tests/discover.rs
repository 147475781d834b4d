//! LAN discovery on a real link: two network namespaces of the test's own joined by a veth
//! pair, nodes in each started with `Builder::discover` and no seed. They must find the
//! members of their cluster by IPv4 and by IPv6 link-local multicast, and never a node of
//! another cluster name, nor one sealing with another key, on the same link.
//!
//! Creating namespaces needs root (CAP_SYS_ADMIN); without it the test is skipped with a note.
//! Traffic stays inside the namespaces: the multicast never reaches a real network.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::fs::File;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chatter::{Chatter, Config, Discovery, DiscoveryStats, Key, Keyring, MemberStatus};

/// Runs `ip` with `args`; `Err` with its output if it fails or cannot start.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Deletes the namespaces (and with them the veth pair) on every path out.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// One node to start: where, and how.
struct Spec {
    name: &'static str,
    netns: String,
    bind: SocketAddr,
    cluster: &'static str,
    key: Option<u8>,
    /// `None`: no discovery (a node reached through seeds only).
    discovery: Option<Discovery>,
    seeds: Vec<String>,
    /// The names it must list alive.
    expect: &'static [&'static str],
}

/// What a node saw.
struct Seen {
    name: &'static str,
    /// Time from start until every expected member was alive in its table.
    converged: Option<Duration>,
    /// Every member name it listed while it ran.
    listed: BTreeSet<String>,
    discovery: DiscoveryStats,
}

/// How long nodes watch for strangers after they have converged.
const OBSERVE: Duration = Duration::from_secs(4);
/// Bound on convergence: the first announcements at start, the second a second later.
const CONVERGE: Duration = Duration::from_secs(15);

/// Runs the node of `spec` on a thread that entered its namespace (a socket belongs to the
/// namespace of the thread that made it), until every node is done.
fn run(spec: Spec, barrier: Arc<Barrier>) -> thread::JoinHandle<Result<Seen, String>> {
    thread::spawn(move || {
        let netns = File::open(format!("/var/run/netns/{}", spec.netns))
            .map_err(|e| format!("{}: {e}", spec.netns))?;
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {}: {e}", spec.netns))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let mut config = Config::local();
            config.cluster_name = spec.cluster.into();
            let mut builder = Chatter::builder(spec.name)
                .bind(spec.bind)
                .config(config)
                .seeds(spec.seeds.clone());
            if let Some(discovery) = spec.discovery.clone() {
                builder = builder.discover(discovery);
            }
            if let Some(byte) = spec.key {
                builder = builder.keyring(Keyring::new(Key::from_bytes([byte; 32])));
            }
            let handle = builder.spawn().await.map_err(|e| e.to_string())?;
            let started = Instant::now();
            let mut listed = BTreeSet::new();
            let mut converged = None;
            loop {
                let snapshot = handle.snapshot();
                listed.extend(snapshot.members.iter().map(|m| m.name.clone()));
                let all = spec.expect.iter().all(|name| {
                    snapshot
                        .member(name)
                        .is_some_and(|m| m.status == MemberStatus::Alive)
                });
                if all && converged.is_none() {
                    converged = Some(started.elapsed());
                }
                let watched = converged.map_or(started.elapsed() >= CONVERGE, |at| {
                    started.elapsed() >= at + OBSERVE
                });
                if watched {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Everyone keeps running until the last node is done watching.
            let _ = tokio::task::spawn_blocking(move || barrier.wait()).await;
            let snapshot = handle.snapshot();
            listed.extend(snapshot.members.iter().map(|m| m.name.clone()));
            let discovery = snapshot.io.discovery.unwrap_or_default();
            let _ = handle.shutdown().await;
            Ok(Seen {
                name: spec.name,
                converged,
                listed,
                discovery,
            })
        })
    })
}

#[test]
fn nodes_find_their_cluster_by_multicast_and_nothing_else() {
    let pid = std::process::id();
    let (a, b) = (format!("cd{pid}a"), format!("cd{pid}b"));
    if let Err(why) = ip(&["netns", "add", &a]) {
        eprintln!("skipped: no network namespace (root needed): {why}");
        return;
    }
    let mut guard = Namespaces(vec![a.clone()]);
    if let Err(why) = ip(&["netns", "add", &b]) {
        panic!("second namespace: {why}");
    }
    guard.0.push(b.clone());
    let net = format!("10.253.{}", pid % 64 * 4);
    let (ip_a, ip_b) = (format!("{net}.1"), format!("{net}.2"));
    let (veth_a, veth_b) = (format!("cd{pid}x"), format!("cd{pid}y"));
    for ns in [&a, &b] {
        // IPv6 on, without duplicate address detection: the link-local address is usable at
        // once instead of a second later. Set before the veth end moves in (it takes the
        // namespace's defaults then).
        let script = "for k in all default; do \
             echo 0 > /proc/sys/net/ipv6/conf/$k/disable_ipv6; \
             echo 0 > /proc/sys/net/ipv6/conf/$k/accept_dad; done";
        if let Err(why) = ip(&["netns", "exec", ns, "sh", "-c", script]) {
            eprintln!("note: IPv6 settings of {ns}: {why}");
        }
    }
    let (net_a, net_b) = (format!("{ip_a}/30"), format!("{ip_b}/30"));
    let setup: [Vec<&str>; 9] = [
        vec![
            "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b,
        ],
        vec!["link", "set", &veth_a, "netns", &a],
        vec!["link", "set", &veth_b, "netns", &b],
        vec!["-n", &a, "link", "set", "lo", "up"],
        vec!["-n", &b, "link", "set", "lo", "up"],
        vec!["-n", &a, "addr", "add", &net_a, "dev", &veth_a],
        vec!["-n", &b, "addr", "add", &net_b, "dev", &veth_b],
        vec!["-n", &a, "link", "set", &veth_a, "up"],
        vec!["-n", &b, "link", "set", &veth_b, "up"],
    ];
    for args in &setup {
        if let Err(why) = ip(args) {
            panic!("ip {args:?}: {why}");
        }
    }
    let on = |ip: &str| -> SocketAddr { format!("{ip}:0").parse().unwrap() };
    // Each group of nodes on a discovery port of its own (any port is free in a namespace
    // of the test's own), so that each one's counters tell what it heard.
    let v4_and_v6 = |port| Discovery {
        port,
        ..Discovery::default()
    };
    let v6_only = Discovery {
        port: 42_003,
        ipv4_group: None,
        ..Discovery::default()
    };
    // A fixed port is free in a namespace of the test's own.
    let seeded: SocketAddr = format!("{ip_b}:42100").parse().unwrap();
    let specs = vec![
        // Plaintext, both families; `other` is another cluster on the same port and link.
        // p1 has a seed too: `seeded`, which does not discover. p1 must find p2 by discovery
        // and `seeded` through its seed; p2 learns of `seeded` only through p1.
        Spec {
            name: "p1",
            netns: a.clone(),
            bind: on(&ip_a),
            cluster: "disc",
            key: None,
            discovery: Some(v4_and_v6(42_001)),
            seeds: vec![seeded.to_string()],
            expect: &["p2", "seeded"],
        },
        Spec {
            name: "p2",
            netns: b.clone(),
            bind: on(&ip_b),
            cluster: "disc",
            key: None,
            discovery: Some(v4_and_v6(42_001)),
            seeds: Vec::new(),
            expect: &["p1", "seeded"],
        },
        Spec {
            name: "seeded",
            netns: b.clone(),
            bind: seeded,
            cluster: "disc",
            key: None,
            discovery: None,
            seeds: Vec::new(),
            expect: &["p1", "p2"],
        },
        Spec {
            name: "other",
            netns: b.clone(),
            bind: on(&ip_b),
            cluster: "another",
            key: None,
            discovery: Some(v4_and_v6(42_001)),
            seeds: Vec::new(),
            expect: &[],
        },
        // Sealed with key 1; `forger` seals with key 2 under the same cluster name.
        Spec {
            name: "k1",
            netns: a.clone(),
            bind: on(&ip_a),
            cluster: "sealed",
            key: Some(1),
            discovery: Some(v4_and_v6(42_002)),
            seeds: Vec::new(),
            expect: &["k2"],
        },
        Spec {
            name: "k2",
            netns: b.clone(),
            bind: on(&ip_b),
            cluster: "sealed",
            key: Some(1),
            discovery: Some(v4_and_v6(42_002)),
            seeds: Vec::new(),
            expect: &["k1"],
        },
        Spec {
            name: "forger",
            netns: b.clone(),
            bind: on(&ip_b),
            cluster: "sealed",
            key: Some(2),
            discovery: Some(v4_and_v6(42_002)),
            seeds: Vec::new(),
            expect: &[],
        },
        // IPv6 link-local multicast only.
        Spec {
            name: "s1",
            netns: a.clone(),
            bind: on(&ip_a),
            cluster: "six",
            key: None,
            discovery: Some(v6_only.clone()),
            seeds: Vec::new(),
            expect: &["s2"],
        },
        Spec {
            name: "s2",
            netns: b.clone(),
            bind: on(&ip_b),
            cluster: "six",
            key: None,
            discovery: Some(v6_only),
            seeds: Vec::new(),
            expect: &["s1"],
        },
    ];
    let barrier = Arc::new(Barrier::new(specs.len()));
    let threads: Vec<_> = specs
        .into_iter()
        .map(|spec| run(spec, barrier.clone()))
        .collect();
    let mut seen = Vec::new();
    for thread in threads {
        match thread.join() {
            Ok(Ok(s)) => seen.push(s),
            Ok(Err(why)) => panic!("a node failed: {why}"),
            Err(_) => panic!("a node's thread panicked"),
        }
    }
    let of = |name: &str| seen.iter().find(|s| s.name == name).unwrap();
    let report: Vec<String> = seen
        .iter()
        .map(|s| {
            format!(
                "{}: converged {:?}, listed {:?}, {:?}",
                s.name, s.converged, s.listed, s.discovery
            )
        })
        .collect();
    let report = report.join("\n");
    eprintln!("{report}");

    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| n.to_string()).collect() };
    for (name, others) in [
        ("p1", &["p2", "seeded"][..]),
        ("p2", &["p1", "seeded"]),
        ("seeded", &["p1", "p2"]),
        ("k1", &["k2"]),
        ("k2", &["k1"]),
    ] {
        let s = of(name);
        assert!(
            s.converged.is_some(),
            "{name} never saw {others:?}:\n{report}"
        );
        assert_eq!(s.listed, set(others), "{name} listed a stranger:\n{report}");
    }
    for name in ["p1", "p2", "k1", "k2"] {
        assert!(of(name).discovery.interfaces >= 2, "{name}: {report}");
    }
    for (name, partner) in [("s1", "s2"), ("s2", "s1")] {
        let s = of(name);
        assert!(
            s.converged.is_some(),
            "{name} never saw {partner} by IPv6:\n{report}"
        );
        assert_eq!(s.listed, BTreeSet::from([partner.to_owned()]), "{report}");
        assert_eq!(s.discovery.interfaces, 1, "IPv6 only: {report}");
    }
    for stranger in ["other", "forger"] {
        assert!(
            of(stranger).listed.is_empty(),
            "{stranger} joined someone:\n{report}"
        );
    }
    // The strangers' announcements arrived and were refused, not lost on the way.
    assert!(
        of("p1").discovery.dropped_wrong_cluster > 0,
        "p1 never heard the other cluster:\n{report}"
    );
    assert!(
        of("k1").discovery.dropped_unauthenticated > 0,
        "k1 never heard the forger:\n{report}"
    );
    // `seeded` runs no discovery; everyone else announced.
    for s in seen.iter().filter(|s| s.name != "seeded") {
        assert!(s.discovery.sent > 0, "{}: {report}", s.name);
    }
    assert_eq!(of("seeded").discovery, DiscoveryStats::default());
}
