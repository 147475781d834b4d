//! Real UDP on loopback: key/value state written on one node is read on the others, typed
//! messages reach every node once and decode, oversize writes and messages are refused without
//! harm, and the live-members watch changes only when the live set does.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chatter::{
    BroadcastError, Config, DecodeError, Delivered, DeliveredExt, Error, Event, Handle, KeyChange,
    MemberStatus, MessageId, StateError, Tagged,
};
use common::{deadline, describe, next_event, node, wait_all_alive};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deploy {
    service: String,
    version: u32,
}

impl Tagged for Deploy {
    const TAG: &'static str = "Deploy";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Restart {
    service: String,
}

impl Tagged for Restart {
    const TAG: &'static str = "Restart";
}

/// A type JSON cannot encode: map keys must be strings.
#[derive(Debug, Serialize, Deserialize)]
struct Unencodable {
    by_pair: HashMap<(u8, u8), u8>,
}

impl Tagged for Unencodable {
    const TAG: &'static str = "Unencodable";
}

/// Reads `events` until it has seen a `KeyChanged` of each `(node, key)` of `wanted`, in any
/// order; returns the last change of each, in the order of `wanted`.
async fn key_changes(
    events: &mut chatter::EventStream,
    end: Instant,
    who: &str,
    wanted: &[(&str, &str)],
) -> Vec<KeyChange> {
    let mut seen: BTreeMap<(String, String), KeyChange> = BTreeMap::new();
    let missing = |seen: &BTreeMap<(String, String), KeyChange>| {
        wanted
            .iter()
            .any(|(n, k)| !seen.contains_key(&(n.to_string(), k.to_string())))
    };
    while missing(&seen) {
        let what = format!("{who} to see changes of {wanted:?} (seen {seen:?})");
        if let Event::KeyChanged(change) =
            next_event(events, end, &what, |e| matches!(e, Event::KeyChanged(_))).await
        {
            seen.insert((change.node.clone(), change.key.clone()), change);
        }
    }
    wanted
        .iter()
        .map(|(n, k)| seen[&(n.to_string(), k.to_string())].clone())
        .collect()
}

#[tokio::test]
async fn key_set_on_one_node_is_read_and_deleted_on_the_others() {
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    let c = node("c", &[&a]).await;
    let all = [&a, &b, &c];
    wait_all_alive(&all, deadline(5)).await;
    let mut events: Vec<_> = all.iter().map(|h| h.subscribe()).collect();

    let v1 = a.set("role", "db").await.unwrap();
    assert_eq!(v1, 1);
    // Another node's key of the same name is another key.
    let vb = b.set("role", b"web".to_vec()).await.unwrap();
    assert_eq!(vb, 1);

    let end = deadline(5);
    for (h, events) in all.iter().zip(&mut events) {
        let changes = key_changes(events, end, h.name(), &[("a", "role"), ("b", "role")]).await;
        assert_eq!(changes[0].value.as_deref(), Some(&b"db"[..]));
        assert_eq!(changes[0].version, v1);
        assert_eq!(changes[1].value.as_deref(), Some(&b"web"[..]));

        assert_eq!(
            h.get("a", "role").await.unwrap().as_deref(),
            Some(&b"db"[..])
        );
        assert_eq!(
            h.get("b", "role").await.unwrap().as_deref(),
            Some(&b"web"[..])
        );
        let state = h.node_state("a").await.unwrap().expect("a's state");
        assert_eq!(state.node, "a");
        assert_eq!(state.status, MemberStatus::Alive);
        assert_eq!(state.generation, a.local().generation);
        assert!(state.version >= v1, "{state:?}");
        let keys: Vec<_> = state.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["role"]);
        assert_eq!(state.entries["role"].value, b"db");
        assert_eq!(state.entries["role"].version, v1);
    }

    // Every member's state, this node's included, ordered by name.
    let cluster = c.cluster_state().await.unwrap();
    let names: Vec<_> = cluster.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(cluster[0].entries["role"].value, b"db");
    assert_eq!(cluster[1].entries["role"].value, b"web");
    assert!(cluster[2].entries.is_empty());
    assert_eq!(cluster[2].version, 0);

    // Unknown members and keys.
    assert_eq!(b.get("nobody", "role").await.unwrap(), None);
    assert_eq!(b.get("a", "nothing").await.unwrap(), None);
    assert!(b.node_state("nobody").await.unwrap().is_none());

    // A delete reaches everyone and takes a new version.
    let v2 = a.delete("role").await.unwrap().expect("role was set");
    assert!(v2 > v1);
    let end = deadline(5);
    for (h, events) in all.iter().zip(&mut events) {
        let change = key_changes(events, end, h.name(), &[("a", "role")]).await[0].clone();
        assert_eq!(change.value, None);
        assert_eq!(change.version, v2);
        assert_eq!(h.get("a", "role").await.unwrap(), None);
        let state = h.node_state("a").await.unwrap().expect("a's state");
        assert!(state.entries.is_empty(), "{state:?}");
        assert!(state.version >= v2);
        assert_eq!(
            h.get("b", "role").await.unwrap().as_deref(),
            Some(&b"web"[..])
        );
    }
    // Deleting what is not set changes nothing.
    assert_eq!(a.delete("role").await.unwrap(), None);
    assert_eq!(a.delete("never-set").await.unwrap(), None);

    for h in all {
        h.shutdown().await.unwrap();
    }
}

/// Collects every user message of `events` until each of `ids` has arrived, then for a further
/// `linger` (to catch a late duplicate).
async fn messages_until(
    events: &mut chatter::EventStream,
    who: &str,
    ids: &[&MessageId],
    end: Instant,
    linger: Duration,
) -> Vec<Delivered> {
    let mut got: Vec<Delivered> = Vec::new();
    let all_in = |got: &[Delivered]| ids.iter().all(|id| got.iter().any(|m| &m.id == *id));
    while !all_in(&got) {
        match tokio::time::timeout_at(end, events.recv()).await {
            Ok(Some(Event::Message(m))) => got.push(m),
            Ok(Some(_)) => {}
            Ok(None) => panic!("{who}: event stream ended"),
            Err(_) => panic!("{who}: timed out; received {got:?}"),
        }
    }
    let linger_end = Instant::now() + linger;
    while let Ok(Some(event)) = tokio::time::timeout_at(linger_end, events.recv()).await {
        if let Event::Message(m) = event {
            got.push(m);
        }
    }
    got
}

#[tokio::test]
async fn typed_broadcast_reaches_every_node_once_and_decodes() {
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    let c = node("c", &[&a]).await;
    let all = [&a, &b, &c];
    wait_all_alive(&all, deadline(5)).await;
    let mut events: Vec<_> = all.iter().map(|h| h.subscribe()).collect();

    let sent = Deploy {
        service: "web".into(),
        version: 42,
    };
    let typed = b.broadcast(&sent).await.unwrap();
    assert_eq!((typed.origin.as_str(), typed.seq), ("b", 1));
    assert_eq!(typed.generation, b.local().generation);
    // What chatter-inject sends: hand-written JSON under the type's tag.
    let raw = c
        .broadcast_raw("Deploy", br#"{ "service": "db", "version": 7 }"#.to_vec())
        .await
        .unwrap();
    // The right tag with a payload of the wrong shape.
    let bad = a
        .broadcast_raw("Deploy", b"{\"service\": 1}".to_vec())
        .await
        .unwrap();
    let other = a
        .broadcast(&Restart {
            service: "web".into(),
        })
        .await
        .unwrap();

    let ids = [&typed, &raw, &bad, &other];
    let end = deadline(5);
    for (h, events) in all.iter().zip(&mut events) {
        let got = messages_until(events, h.name(), &ids, end, Duration::from_millis(500)).await;
        for id in ids {
            let n = got.iter().filter(|m| &m.id == id).count();
            assert_eq!(n, 1, "{}: {id:?} delivered {n} times: {got:?}", h.name());
        }
        assert_eq!(got.len(), ids.len(), "{}: {got:?}", h.name());
        let find = |id: &MessageId| got.iter().find(|m| &m.id == id).unwrap();

        let m = find(&typed);
        assert_eq!(m.tag(), Deploy::TAG);
        assert!(m.is::<Deploy>() && !m.is::<Restart>());
        assert_eq!(m.decode::<Deploy>().unwrap(), sent);
        assert_eq!(
            m.hops == 0,
            h.name() == "b",
            "{}: hops {}",
            h.name(),
            m.hops
        );
        match m.decode::<Restart>() {
            Err(DecodeError::WrongTag { expected, found }) => {
                assert_eq!((expected, found.as_str()), ("Restart", "Deploy"));
            }
            other => panic!("{}: {other:?}", h.name()),
        }

        let m = find(&raw);
        assert_eq!(
            m.decode::<Deploy>().unwrap(),
            Deploy {
                service: "db".into(),
                version: 7
            }
        );

        let m = find(&bad);
        assert!(m.is::<Deploy>());
        let err = m.decode::<Deploy>().unwrap_err();
        assert!(
            matches!(err, DecodeError::Json { tag: "Deploy", .. }),
            "{err}"
        );

        let m = find(&other);
        assert_eq!(m.tag(), "Restart");
        assert_eq!(m.decode::<Restart>().unwrap().service, "web");
        // The JSON is plain: any JSON reader (the daemon, the CLI) reads it.
        assert_eq!(m.payload, br#"{"service":"web"}"#);
    }

    for h in all {
        h.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn oversize_values_and_payloads_are_refused_and_the_node_keeps_working() {
    let limits = Config::local();
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    wait_all_alive(&[&a, &b], deadline(5)).await;
    let mut b_events = b.subscribe();

    // Key/value writes over the limits.
    let err = a
        .set("big", vec![0u8; limits.max_value_size + 1])
        .await
        .unwrap_err();
    match &err {
        Error::State(StateError::ValueTooLarge { size, limit }) => {
            assert_eq!(
                (*size, *limit),
                (limits.max_value_size + 1, limits.max_value_size)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("exceeds"), "{err}");
    let err = a.set("", "x").await.unwrap_err();
    assert!(
        matches!(err, Error::State(StateError::BadKey { len: 0, .. })),
        "{err:?}"
    );
    let long_key = "k".repeat(limits.max_key_len + 1);
    let err = a.set(long_key, "x").await.unwrap_err();
    assert!(
        matches!(err, Error::State(StateError::BadKey { .. })),
        "{err:?}"
    );

    // Messages over the limits.
    let err = a
        .broadcast_raw("Blob", vec![b'x'; limits.max_message_size + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Broadcast(BroadcastError::TooLarge { size, limit })
            if *size == limits.max_message_size + 1 && *limit == limits.max_message_size),
        "{err:?}"
    );
    let huge = Deploy {
        service: "x".repeat(limits.max_message_size),
        version: 1,
    };
    let err = a.broadcast(&huge).await.unwrap_err();
    assert!(
        matches!(err, Error::Broadcast(BroadcastError::TooLarge { .. })),
        "{err:?}"
    );
    let err = a.broadcast_raw("", b"{}".to_vec()).await.unwrap_err();
    assert!(
        matches!(err, Error::Broadcast(BroadcastError::BadTag { len: 0, .. })),
        "{err:?}"
    );
    let long_tag = "t".repeat(limits.max_tag_len + 1);
    let err = a
        .broadcast_raw(&long_tag, b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Broadcast(BroadcastError::BadTag { .. })),
        "{err:?}"
    );
    let unencodable = Unencodable {
        by_pair: HashMap::from([((1, 2), 3)]),
    };
    let err = a.broadcast(&unencodable).await.unwrap_err();
    assert!(matches!(err, Error::Encode(_)), "{err:?}");

    // Nothing changed: no key, no version, no message.
    let state = a.node_state("a").await.unwrap().expect("own state");
    assert!(state.entries.is_empty() && state.version == 0, "{state:?}");

    // The node keeps working: the largest value and payload allowed go through.
    let value = vec![b'v'; limits.max_value_size];
    let version = a.set("big", value.clone()).await.unwrap();
    assert_eq!(version, 1);
    let id = a
        .broadcast_raw("Blob", vec![b'p'; limits.max_message_size])
        .await
        .unwrap();
    assert_eq!(
        id.seq, 1,
        "refused messages must not take a sequence number"
    );
    let end = deadline(5);
    let (mut change, mut message) = (None, None);
    while change.is_none() || message.is_none() {
        match next_event(&mut b_events, end, "b to get a.big and the blob", |e| {
            matches!(e, Event::KeyChanged(k) if k.key == "big")
                || matches!(e, Event::Message(m) if m.id == id)
        })
        .await
        {
            Event::KeyChanged(k) => change = Some(k),
            Event::Message(m) => message = Some(m),
            _ => {}
        }
    }
    assert_eq!(change.and_then(|k| k.value), Some(value.clone()));
    assert_eq!(
        message.map(|m| m.payload.len()),
        Some(limits.max_message_size)
    );
    assert_eq!(b.get("a", "big").await.unwrap(), Some(value));

    // A stopped node answers every command and query with Stopped.
    a.shutdown().await.unwrap();
    assert!(matches!(a.set("k", "v").await, Err(Error::Stopped)));
    assert!(matches!(a.delete("k").await, Err(Error::Stopped)));
    assert!(matches!(a.get("a", "k").await, Err(Error::Stopped)));
    assert!(matches!(a.node_state("a").await, Err(Error::Stopped)));
    assert!(matches!(a.cluster_state().await, Err(Error::Stopped)));
    assert!(matches!(
        a.broadcast_raw("t", Vec::new()).await,
        Err(Error::Stopped)
    ));
    b.shutdown().await.unwrap();
}

fn names(live: &BTreeMap<String, chatter::Member>) -> Vec<&str> {
    live.keys().map(String::as_str).collect()
}

/// Waits until `handle`'s live members are exactly `expected`.
async fn wait_live(handle: &Handle, expected: &[&str], end: Instant) {
    let mut live = handle.live_members();
    let found = tokio::time::timeout_at(end, live.wait_for(|m| names(m) == expected)).await;
    if !matches!(found, Ok(Ok(_))) {
        panic!(
            "{}: live members are {:?}, expected {expected:?}; it sees:\n{}",
            handle.name(),
            names(&handle.live_members().borrow()),
            describe(&handle.snapshot())
        );
    }
}

#[tokio::test]
async fn live_members_change_when_a_node_fails_and_not_in_steady_state() {
    let a = node("a", &[]).await;
    let b = node("b", &[&a]).await;
    let c = node("c", &[&a]).await;
    wait_all_alive(&[&a, &b, &c], deadline(5)).await;
    for h in [&a, &b, &c] {
        wait_live(h, &["a", "b", "c"], deadline(5)).await;
    }
    let mut live = a.live_members();
    {
        let current = live.borrow_and_update();
        assert_eq!(current["b"].addr, b.local_addr());
        assert_eq!(current["a"].addr, a.local_addr());
    }

    // Steady state, with traffic: probes, key writes and messages leave the watch alone.
    b.set("load", "0.5").await.unwrap();
    c.broadcast_raw("Note", b"{}".to_vec()).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(1), live.changed()).await;
    assert!(
        quiet.is_err(),
        "live members changed in steady state: {:?}",
        names(&live.borrow())
    );

    // c crashes: the first change the watch shows is c gone, once it is failed (a suspicion
    // alone leaves it in the set).
    c.shutdown().await.unwrap();
    tokio::time::timeout_at(deadline(8), live.changed())
        .await
        .expect("no change of live members after a crash")
        .unwrap();
    assert_eq!(names(&live.borrow_and_update()), ["a", "b"]);
    assert_eq!(
        a.member("c").map(|m| m.status),
        Some(MemberStatus::Failed),
        "{}",
        describe(&a.snapshot())
    );
    wait_live(&b, &["a", "b"], deadline(8)).await;

    // b leaves: it drops out of the others' sets, and of its own final one.
    b.leave().await.unwrap();
    assert_eq!(names(&b.live_members().borrow()), ["a"]);
    wait_live(&a, &["a"], deadline(5)).await;
    assert_eq!(names(&live.borrow_and_update()), ["a"]);
    a.shutdown().await.unwrap();
    // After stop, changed() fails and the last set stays readable.
    assert!(live.changed().await.is_err());
    assert_eq!(names(&live.borrow()), ["a"]);
}
