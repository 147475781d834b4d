//! Announcements as attacker input, the contact budget and the schedule, without sockets.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use chatter_core::wire::{self, Alive, Message, Ping};
use chatter_core::{Key, Keyring, Mode, Tags};
use chatter_seal::{Opener, Sealer};
use rand::{Rng, RngCore, SeedableRng};

use super::*;

const CLUSTER: &str = "disc";

fn announcer() -> Alive {
    Alive {
        name: "b".into(),
        addr: "10.0.0.2:2428".parse().unwrap(),
        generation: 7,
        incarnation: 0,
        tags: Tags::new(),
    }
}

fn plain(cluster: &str, messages: &[Message]) -> Vec<u8> {
    wire::encode_packet(wire::cluster_hash(cluster), messages)
}

fn announcement() -> Vec<u8> {
    plain(CLUSTER, &[Message::Alive(announcer())])
}

fn keyring(byte: u8) -> Keyring {
    Keyring::new(Key::from_bytes([byte; 32]))
}

/// Node `a` of cluster `disc` at 10.0.0.1:2428, with an IPv4 gossip socket.
fn receiver<'a>(mode: Mode, keyring: Option<&'a Keyring>) -> Receiver<'a> {
    Receiver {
        cluster_name: CLUSTER,
        mode,
        keyring,
        own_name: "a",
        own_addr: "10.0.0.1:2428".parse().unwrap(),
        max_name_len: 128,
        ipv6_gossip: false,
        local: &LOCAL,
    }
}

/// This host's addresses in the tests.
const LOCAL: [IpAddr; 2] = [
    IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
];

/// Where announcements come from: the announcer's host.
fn source() -> IpAddr {
    "10.0.0.2".parse().unwrap()
}

#[test]
fn an_announcement_of_the_cluster_names_the_announcer() {
    let got = receiver(Mode::Plaintext, None).judge(&mut Opener::new(), source(), &announcement());
    assert_eq!(got, Ok(("b".into(), "10.0.0.2:2428".parse().unwrap())));
}

#[test]
fn what_is_not_a_lone_alive_of_this_cluster_is_refused() {
    let r = receiver(Mode::Plaintext, None);
    let mut opener = Opener::new();
    let other_cluster = plain("other", &[Message::Alive(announcer())]);
    assert_eq!(
        r.judge(&mut opener, source(), &other_cluster),
        Err(Refused::WrongCluster)
    );
    let two = plain(
        CLUSTER,
        &[Message::Alive(announcer()), Message::Alive(announcer())],
    );
    assert_eq!(
        r.judge(&mut opener, source(), &two),
        Err(Refused::Malformed)
    );
    let ping = plain(CLUSTER, &[Message::Ping(Ping::new(1, "a", 0))]);
    assert_eq!(
        r.judge(&mut opener, source(), &ping),
        Err(Refused::Malformed)
    );
    let mut own = announcer();
    own.name = "a".into();
    let own = plain(CLUSTER, &[Message::Alive(own)]);
    assert_eq!(r.judge(&mut opener, source(), &own), Err(Refused::Own));
    assert_eq!(r.judge(&mut opener, source(), b""), Err(Refused::Malformed));
}

#[test]
fn an_oversized_announcement_is_refused_before_it_is_read() {
    let r = receiver(Mode::Plaintext, None);
    let mut big = announcement();
    big.resize(MAX_ANNOUNCEMENT + 1, 0);
    assert_eq!(
        r.judge(&mut Opener::new(), source(), &big),
        Err(Refused::Oversize)
    );
    let mut long_name = announcer();
    long_name.name = "x".repeat(MAX_ANNOUNCEMENT);
    let long = plain(CLUSTER, &[Message::Alive(long_name)]);
    assert_eq!(
        r.judge(&mut Opener::new(), source(), &long),
        Err(Refused::Oversize)
    );
}

#[test]
fn an_address_no_member_can_have_is_refused() {
    let r = receiver(Mode::Plaintext, None);
    let mut opener = Opener::new();
    for addr in [
        "10.0.0.2:0",
        "0.0.0.0:2428",
        "239.255.67.72:2428",
        "255.255.255.255:2428",
        // An IPv6 member cannot be reached from an IPv4 gossip socket.
        "[fd00::2]:2428",
        // This node's own address under another name.
        "10.0.0.1:2428",
    ] {
        let mut alive = announcer();
        alive.addr = addr.parse().unwrap();
        let datagram = plain(CLUSTER, &[Message::Alive(alive)]);
        assert_eq!(
            r.judge(&mut opener, source(), &datagram),
            Err(Refused::BadAddress),
            "{addr}"
        );
    }
    let mut empty = announcer();
    empty.name = String::new();
    let datagram = plain(CLUSTER, &[Message::Alive(empty)]);
    assert_eq!(
        r.judge(&mut opener, source(), &datagram),
        Err(Refused::BadAddress)
    );
    let mut v6 = announcer();
    v6.addr = "[fd00::2]:2428".parse().unwrap();
    let datagram = plain(CLUSTER, &[Message::Alive(v6.clone())]);
    let dual_stack = Receiver {
        ipv6_gossip: true,
        ..receiver(Mode::Plaintext, None)
    };
    assert_eq!(
        dual_stack.judge(&mut opener, source(), &datagram),
        Ok(("b".into(), v6.addr))
    );
}

#[test]
fn with_a_key_only_announcements_sealed_under_it_are_heard() {
    let ring = keyring(1);
    let stranger = keyring(2);
    let mut sealer = Sealer::new(42);
    let sealed = sealer.seal(&ring, CLUSTER, &announcement()).unwrap();
    let foreign = Sealer::new(43)
        .seal(&stranger, CLUSTER, &announcement())
        .unwrap();
    let other_cluster = Sealer::new(44)
        .seal(
            &ring,
            "other",
            &plain("other", &[Message::Alive(announcer())]),
        )
        .unwrap();

    let keyed = receiver(Mode::Sealed, Some(&ring));
    let mut opener = Opener::new();
    assert!(keyed.judge(&mut opener, source(), &sealed).is_ok());
    assert_eq!(
        keyed.judge(&mut opener, source(), &sealed),
        Err(Refused::Unauthenticated),
        "a replay"
    );
    assert_eq!(
        keyed.judge(&mut opener, source(), &foreign),
        Err(Refused::Unauthenticated),
        "another key"
    );
    assert_eq!(
        keyed.judge(&mut opener, source(), &other_cluster),
        Err(Refused::WrongCluster)
    );
    assert_eq!(
        keyed.judge(&mut opener, source(), &announcement()),
        Err(Refused::Unauthenticated),
        "plain, to a node that accepts only sealed datagrams"
    );
    let mut tampered = sealer.seal(&ring, CLUSTER, &announcement()).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        keyed.judge(&mut opener, source(), &tampered),
        Err(Refused::Unauthenticated)
    );

    // Migration steps: a node that still accepts plain datagrams hears both.
    let migrating = receiver(Mode::AcceptSealed, Some(&ring));
    let fresh = sealer.seal(&ring, CLUSTER, &announcement()).unwrap();
    assert!(migrating.judge(&mut opener, source(), &fresh).is_ok());
    assert!(migrating
        .judge(&mut opener, source(), &announcement())
        .is_ok());
    // Without a key, a sealed announcement means nothing.
    let fresh = sealer.seal(&ring, CLUSTER, &announcement()).unwrap();
    assert_eq!(
        receiver(Mode::Plaintext, None).judge(&mut opener, source(), &fresh),
        Err(Refused::Unauthenticated)
    );
}

/// Garbage, truncations and bit flips of valid announcements, sealed and plain: every one is
/// refused or read as what it says, never a panic, and nothing but an intact announcement (or
/// a flip the decoder cannot tell from one) names an announcer.
#[test]
fn garbage_and_mangled_announcements_are_refused_without_panic() {
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ring = keyring(1);
    let plain_r = receiver(Mode::Plaintext, None);
    let sealed_r = receiver(Mode::Sealed, Some(&ring));
    let mut opener = Opener::new();
    let mut sealer = Sealer::new(9);
    for round in 0..5_000 {
        let len = rng.random_range(0..=MAX_ANNOUNCEMENT + 64);
        let mut junk = vec![0u8; len];
        rng.fill_bytes(&mut junk);
        if round % 2 == 0 && junk.len() >= 8 {
            // A valid envelope before the junk reaches the message decoder.
            junk[..8].copy_from_slice(&announcement()[..8]);
        }
        let _ = plain_r.judge(&mut opener, source(), &junk);
        assert!(
            sealed_r.judge(&mut opener, source(), &junk).is_err(),
            "seed {seed}: junk opened"
        );

        let valid = announcement();
        let cut = rng.random_range(0..valid.len());
        assert!(
            plain_r.judge(&mut opener, source(), &valid[..cut]).is_err(),
            "seed {seed}: a truncated announcement was read"
        );
        let sealed = sealer.seal(&ring, CLUSTER, &valid).unwrap();
        let mut flipped = sealed.clone();
        let at = rng.random_range(0..flipped.len());
        flipped[at] ^= 1 << rng.random_range(0..8);
        assert!(
            sealed_r.judge(&mut opener, source(), &flipped).is_err(),
            "seed {seed}: a flipped sealed announcement opened"
        );
        assert!(
            sealed_r.judge(&mut opener, source(), &sealed).is_ok(),
            "seed {seed}"
        );
    }
}

fn config() -> Discovery {
    Discovery::default()
}

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 1, 1], 1000 + i))
}

#[test]
fn a_flood_of_announcers_gets_the_burst_then_one_per_interval() {
    let config = config();
    let t0 = Instant::now();
    let mut contacts = Contacts::new(&config, t0);
    let mut allowed = 0;
    for i in 0..100 {
        if contacts.may(&config, t0, addr(i)) == Ok(true) {
            contacts.spend(&config, t0, addr(i));
            allowed += 1;
        }
    }
    assert_eq!(allowed, config.contact_burst);
    assert_eq!(contacts.may(&config, t0, addr(200)), Err(()));
    let later = t0 + config.contact_interval;
    assert_eq!(contacts.may(&config, later, addr(200)), Ok(true));
    contacts.spend(&config, later, addr(200));
    assert_eq!(contacts.may(&config, later, addr(201)), Err(()));
    // Ten minutes of silence refill the bucket to the burst, not beyond.
    let much_later = t0 + Duration::from_secs(600);
    let mut allowed = 0;
    for i in 300..400 {
        if contacts.may(&config, much_later, addr(i)) == Ok(true) {
            contacts.spend(&config, much_later, addr(i));
            allowed += 1;
        }
    }
    assert_eq!(allowed, config.contact_burst);
}

#[test]
fn an_address_is_not_contacted_again_within_the_cool_down() {
    let config = config();
    let t0 = Instant::now();
    let mut contacts = Contacts::new(&config, t0);
    assert_eq!(contacts.may(&config, t0, addr(1)), Ok(true));
    contacts.spend(&config, t0, addr(1));
    let soon = t0 + config.recontact_after / 2;
    assert_eq!(contacts.may(&config, soon, addr(1)), Ok(false));
    let after = t0 + config.recontact_after;
    assert_eq!(contacts.may(&config, after, addr(1)), Ok(true));
}

#[test]
fn the_table_of_recent_contacts_is_bounded() {
    let config = Discovery {
        contact_burst: 100_000,
        ..config()
    };
    let t0 = Instant::now();
    let mut contacts = Contacts::new(&config, t0);
    for i in 0..(MAX_RECENT_CONTACTS as u16 * 4) {
        contacts.spend(&config, t0 + Duration::from_millis(u64::from(i)), addr(i));
    }
    assert_eq!(contacts.recent.len(), MAX_RECENT_CONTACTS);
    // The newest are the ones kept.
    let newest = addr(MAX_RECENT_CONTACTS as u16 * 4 - 1);
    assert!(contacts.recent.contains_key(&newest));
    assert!(!contacts.recent.contains_key(&addr(0)));
}

#[test]
fn a_lone_node_backs_off_and_a_joined_one_announces_slowly() {
    let config = config();
    let t0 = Instant::now();
    let mut schedule = Schedule::new(&config, t0);
    assert_eq!(schedule.next, t0, "the first announcement is at start");
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..8 {
        schedule.announced(&config, now, true, 0.0);
        delays.push(schedule.next - now);
        now = schedule.next;
    }
    let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    schedule.announced(&config, now, false, 0.0);
    assert_eq!(schedule.next - now, config.joined_interval);
    // Alone again: quickly again.
    schedule.announced(&config, now, true, 0.0);
    assert_eq!(schedule.next - now, config.first_interval);
    // Jitter stays within ±10 %.
    schedule.announced(&config, now, false, 1.0);
    assert_eq!(schedule.next - now, config.joined_interval.mul_f64(1.1));
    schedule.announced(&config, now, false, -5.0);
    assert_eq!(schedule.next - now, config.joined_interval.mul_f64(0.9));
}

#[test]
fn settings_that_cannot_work_are_refused() {
    assert_eq!(config().validate(), Ok(()));
    let bad = [
        Discovery {
            ipv4_group: None,
            ipv6_group: None,
            ..config()
        },
        Discovery {
            ipv4_group: Some("10.0.0.1".parse().unwrap()),
            ..config()
        },
        Discovery {
            ipv6_group: Some("ff05::1".parse().unwrap()),
            ..config()
        },
        Discovery {
            ipv6_group: Some(Ipv6Addr::LOCALHOST),
            ..config()
        },
        Discovery {
            port: 0,
            ..config()
        },
        Discovery {
            first_interval: Duration::ZERO,
            ..config()
        },
        Discovery {
            contact_burst: 0,
            ..config()
        },
        Discovery {
            interface: Some("a-name-longer-than-ifnamsiz".into()),
            ..config()
        },
        Discovery {
            interface: Some(String::new()),
            ..config()
        },
    ];
    for settings in bad {
        assert!(settings.validate().is_err(), "{settings:?}");
    }
}

#[test]
fn a_loopback_address_is_believed_from_this_host_only() {
    let r = receiver(Mode::Plaintext, None);
    let mut opener = Opener::new();
    let mut alive = announcer();
    alive.addr = "127.0.0.1:4000".parse().unwrap();
    let datagram = plain(CLUSTER, &[Message::Alive(alive)]);
    assert_eq!(
        r.judge(&mut opener, source(), &datagram),
        Err(Refused::BadAddress),
        "from another host, 127.0.0.1 is this node itself"
    );
    let here: IpAddr = "10.0.0.1".parse().unwrap();
    assert_eq!(
        r.judge(&mut opener, here, &datagram),
        Ok(("b".into(), "127.0.0.1:4000".parse().unwrap()))
    );
}
