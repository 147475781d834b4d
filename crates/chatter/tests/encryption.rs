//! Real UDP on loopback with gossip encryption: nodes sharing a key form a cluster, a node with
//! another key is never listed, and its datagrams are counted as refused.

mod common;

use std::net::SocketAddr;

use chatter::{Chatter, Config, Handle, Key, Keyring, MemberStatus, Mode};
use common::{deadline, init_tracing, sees, wait_all_alive, wait_until};

async fn keyed(name: &str, seeds: &[&Handle], keyring: Option<&Keyring>) -> Handle {
    init_tracing();
    let mut builder = Chatter::builder(name)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .config(Config::local())
        .seeds(seeds.iter().map(|h| h.local_addr().to_string()));
    if let Some(ring) = keyring {
        builder = builder.keyring(ring.clone());
    }
    builder.spawn().await.unwrap()
}

#[tokio::test]
async fn nodes_with_one_key_form_a_cluster_and_a_stranger_key_is_refused() {
    let ring = Keyring::new(Key::generate(&mut rand::rng()));
    let other = Keyring::new(Key::generate(&mut rand::rng()));
    let a = keyed("a", &[], Some(&ring)).await;
    let b = keyed("b", &[&a], Some(&ring)).await;
    let c = keyed("c", &[&a], Some(&ring)).await;
    wait_all_alive(&[&a, &b, &c], deadline(5)).await;
    assert_eq!(a.snapshot().encryption_mode, Mode::Sealed);
    assert_eq!(a.snapshot().keys.len(), 1);
    assert!(a.snapshot().keys[0].primary);

    let x = keyed("x", &[&a], Some(&other)).await;
    let y = keyed("y", &[&a], None).await;
    wait_until(&a, deadline(5), "x and y refused", |s| {
        s.stats.dropped_sealed.unknown_key > 0 && s.stats.dropped_sealed.not_sealed > 0
    })
    .await;
    for h in [&a, &b, &c] {
        let s = h.snapshot();
        assert!(s.member("x").is_none() && s.member("y").is_none());
        assert!(sees(&s, "b", MemberStatus::Alive) || h.name() == "b");
    }
    assert_eq!(x.snapshot().num_live(), 0);
    assert_eq!(y.snapshot().num_live(), 0);
    for h in [&a, &b, &c, &x, &y] {
        h.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_keyed_mode_without_a_keyring_is_refused() {
    let result = Chatter::builder("a")
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .encryption_mode(Mode::Sealed)
        .spawn()
        .await;
    assert!(matches!(result, Err(chatter::Error::Encryption(_))));
}
