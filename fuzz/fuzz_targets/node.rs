//! Arbitrary sequences of datagrams, from members and from strangers, handed to a node of a
//! four-member cluster, with timers firing between them. After every datagram the protocol's
//! invariants must hold:
//!
//! - every counter stays within its honest bound (`limits.rs`), so nothing can overflow;
//! - a member's incarnation never goes back within a life, and its generation never goes back;
//! - the node's own life only moves forward;
//! - a stranger never gets more bytes back than the datagram it sent (an address the node
//!   itself opened an exchange with in the last two probe intervals is not a stranger: it
//!   answers the node's own padded request);
//! - the member table stays within `Config::max_members`.
//!
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run node -- -max_total_time=60`

#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatter_core::limits::{MAX_GENERATION, MAX_INCARNATION};
use chatter_core::{wire, Config, Identity, Node};
use libfuzzer_sys::fuzz_target;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7000))
}

/// Records `dst` when `payload` opens an exchange with a padded `SyncRequest`.
fn note_solicited(
    solicited: &mut BTreeMap<SocketAddr, Instant>,
    cluster: u32,
    payload: &[u8],
    dst: SocketAddr,
    now: Instant,
) {
    if let Ok(messages) = wire::decode_packet(payload, cluster, 65_507) {
        if messages
            .iter()
            .any(|m| matches!(m, wire::Message::SyncRequest(r) if !r.padding.is_empty()))
        {
            solicited.insert(dst, now);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let config = Config {
        max_members: 64,
        ..Config::local()
    };
    let Ok(mut node) = Node::new(Identity::new("n0", addr(1), 10), config, 1, t0) else {
        return;
    };
    node.preload_members(t0, [("n1", addr(2), 10), ("n2", addr(3), 10), ("n3", addr(4), 10)]);
    let cluster = wire::cluster_hash("chatter");
    let mut now = t0;
    let mut lives: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut own = (node.local_member().generation, node.local_member().incarnation);
    let mut solicited: BTreeMap<SocketAddr, Instant> = BTreeMap::new();
    let mut rest = data;
    // Each datagram: one byte picks the sender (three members, or one of two strangers) and
    // whether timers fire first, one byte its length, then its body behind a valid envelope.
    while rest.len() >= 2 {
        let (head, len) = (rest[0], rest[1] as usize);
        rest = &rest[2..];
        let body = &rest[..len.min(rest.len())];
        rest = &rest[body.len()..];
        let from = match head % 5 {
            0..=2 => addr(2 + head % 5),
            3 => addr(200),
            _ => addr(201),
        };
        if head & 0x80 != 0 {
            now += Duration::from_millis(u64::from(head & 0x3f) * 10);
            node.handle_timeout(now);
        }
        while let Some(t) = node.poll_transmit() {
            note_solicited(&mut solicited, cluster, &t.payload, t.dst, now);
        }
        let mut datagram = Vec::with_capacity(body.len() + wire::ENVELOPE_LEN);
        wire::write_envelope(&mut datagram, cluster);
        datagram.extend_from_slice(body);
        let contacted = solicited
            .get(&from)
            .is_some_and(|at| now.saturating_duration_since(*at) < Duration::from_millis(400));
        let stranger = !contacted
            && node
                .member_briefs()
                .all(|(_, m)| m.addr != from || !m.status.is_live());
        node.handle_datagram(now, from, &datagram);
        let mut answered = 0;
        while let Some(t) = node.poll_transmit() {
            if t.dst == from {
                answered += t.payload.len();
            }
            note_solicited(&mut solicited, cluster, &t.payload, t.dst, now);
        }
        while node.poll_event().is_some() {}
        if stranger {
            assert!(answered <= datagram.len(), "{answered} bytes for {}", datagram.len());
        }
        let me = node.local_member();
        assert!(me.incarnation <= MAX_INCARNATION && me.generation <= MAX_GENERATION);
        assert!((me.generation, me.incarnation) >= own, "own life went back");
        own = (me.generation, me.incarnation);
        assert!(node.members().count() <= 64);
        for (name, m) in node.member_briefs() {
            assert!(m.incarnation <= MAX_INCARNATION && m.generation <= MAX_GENERATION);
            if let Some(&(generation, incarnation)) = lives.get(name) {
                assert!(m.generation >= generation, "{name}'s generation went back");
                assert!(
                    m.generation > generation || m.incarnation >= incarnation,
                    "{name}'s incarnation went back"
                );
            }
            lives.insert(name.to_owned(), (m.generation, m.incarnation));
        }
    }
});
