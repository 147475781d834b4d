//! The keyring file and the rotation of keys across nodes.

mod common;

use std::collections::HashMap;

use chatter_seal::{
    Key, KeyError, Keyring, KeyringError, KeyringParseError, OpenError, Opener, Sealer, MAX_KEYS,
};
use common::{key, plain, CLUSTER};

/// Two different keys with the same 4-byte key id, found by a birthday search (about 2^16 keys).
fn colliding_keys() -> (Key, Key) {
    let mut seen: HashMap<[u8; 4], [u8; 32]> = HashMap::new();
    for i in 0u64.. {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&i.to_le_bytes());
        let k = Key::from_bytes(bytes);
        if let Some(other) = seen.insert(k.id().0, bytes) {
            return (Key::from_bytes(other), k);
        }
    }
    unreachable!()
}

fn ring_text(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| format!("{}\n", &*k.to_base64()))
        .collect()
}

#[test]
fn parses_comments_blank_lines_and_whitespace() {
    let text = format!(
        "# the ring\n\n   {}  \n# old key\n{}\n",
        &*key(1).to_base64(),
        &*key(2).to_base64()
    );
    let ring = Keyring::parse(&text).unwrap();
    let list = ring.list();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].fingerprint, key(1).fingerprint());
    assert!(list[0].primary);
    assert_eq!(list[1].fingerprint, key(2).fingerprint());
    assert!(!list[1].primary);
    assert_eq!(Keyring::parse(&ring.to_text()).unwrap().list(), list);
}

#[test]
fn a_bad_base64_line_is_reported_with_its_number() {
    let text = format!("# ring\n{}\nnot-a-key!\n", &*key(1).to_base64());
    assert!(matches!(
        Keyring::parse(&text),
        Err(KeyringParseError::BadKey {
            line: 3,
            error: KeyError::Base64(_)
        })
    ));
}

#[test]
fn a_key_of_the_wrong_length_is_reported() {
    let text = "\nAAAAAAAAAAAAAAAAAAAAAA==\n"; // 16 bytes
    assert_eq!(
        Keyring::parse(text).unwrap_err(),
        KeyringParseError::BadKey {
            line: 2,
            error: KeyError::Length(16)
        }
    );
    let err = Keyring::parse(text).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("16 bytes"), "{err}");
}

#[test]
fn an_empty_ring_is_refused() {
    assert_eq!(Keyring::parse("").unwrap_err(), KeyringParseError::Empty);
    assert_eq!(
        Keyring::parse("# only a comment\n\n  \n").unwrap_err(),
        KeyringParseError::Empty
    );
}

#[test]
fn more_than_16_keys_are_refused() {
    let keys: Vec<Key> = (0..=MAX_KEYS as u64).map(key).collect();
    assert!(Keyring::parse(&ring_text(&keys[..MAX_KEYS])).is_ok());
    assert_eq!(
        Keyring::parse(&ring_text(&keys)).unwrap_err(),
        KeyringParseError::TooManyKeys { line: MAX_KEYS + 1 }
    );
}

#[test]
fn duplicate_keys_and_key_ids_are_refused() {
    assert_eq!(
        Keyring::parse(&ring_text(&[key(1), key(2), key(1)])).unwrap_err(),
        KeyringParseError::DuplicateKey { line: 3, first: 1 }
    );
    let (a, b) = colliding_keys();
    assert_eq!(a.id(), b.id());
    assert_eq!(
        Keyring::parse(&ring_text(&[a.clone(), key(7), b.clone()])).unwrap_err(),
        KeyringParseError::KeyIdCollision { line: 3, first: 1 }
    );
    let mut ring = Keyring::new(a.clone());
    assert_eq!(
        ring.install(b.clone()),
        Err(KeyringError::KeyIdCollision {
            new: b.fingerprint(),
            installed: a.fingerprint()
        })
    );
    assert_eq!(ring.len(), 1);
}

#[test]
fn rotation_flow_keeps_every_node_talking() {
    let (a, b) = (key(1), key(2));
    // Node 1 rotates first; node 2 lags one step behind at every step.
    let mut ring1 = Keyring::new(a.clone());
    let mut ring2 = Keyring::new(a.clone());
    let (mut s1, mut s2) = (Sealer::new(1), Sealer::new(2));
    let (mut o1, mut o2) = (Opener::new(), Opener::new());
    let mut talk = |r1: &Keyring, r2: &Keyring| {
        let d = s1.seal(r1, CLUSTER, &plain(CLUSTER, 30)).unwrap();
        let from1 = o2.open(r2, CLUSTER, &d);
        let d = s2.seal(r2, CLUSTER, &plain(CLUSTER, 30)).unwrap();
        let from2 = o1.open(r1, CLUSTER, &d);
        (from1.is_ok(), from2.is_ok())
    };
    assert_eq!(talk(&ring1, &ring2), (true, true));

    // Step 1: install B. Both still seal with A; a ring with A+B opens both.
    assert_eq!(ring1.install(b.clone()), Ok(true));
    assert_eq!(talk(&ring1, &ring2), (true, true));
    ring2.install(b.clone()).unwrap();

    // Step 2: use B. Node 1 seals with B, node 2 (still on A+B, primary A) opens it.
    ring1.use_key(b.fingerprint()).unwrap();
    assert_eq!(ring1.primary().fingerprint(), b.fingerprint());
    assert_eq!(talk(&ring1, &ring2), (true, true));
    ring2.use_key(b.fingerprint()).unwrap();
    assert_eq!(talk(&ring1, &ring2), (true, true));

    // Step 3: remove A everywhere; both seal with B.
    assert_eq!(ring1.remove(a.fingerprint()), Ok(true));
    assert_eq!(talk(&ring1, &ring2), (true, true));
    ring2.remove(a.fingerprint()).unwrap();
    assert_eq!(talk(&ring1, &ring2), (true, true));

    // A datagram still sealed with A no longer opens.
    let old = Sealer::new(3)
        .seal(&Keyring::new(a.clone()), CLUSTER, &plain(CLUSTER, 1))
        .unwrap();
    assert_eq!(
        Opener::new().open(&ring1, CLUSTER, &old),
        Err(OpenError::UnknownKey(a.id()))
    );
}

#[test]
fn removing_the_primary_is_refused() {
    let mut ring = Keyring::new(key(1));
    ring.install(key(2)).unwrap();
    assert_eq!(
        ring.remove(key(1).fingerprint()),
        Err(KeyringError::RemovePrimary(key(1).fingerprint()))
    );
    assert_eq!(ring.len(), 2);
    assert_eq!(ring.primary().fingerprint(), key(1).fingerprint());
}

#[test]
fn use_key_needs_an_installed_key() {
    let mut ring = Keyring::new(key(1));
    assert_eq!(
        ring.use_key(key(2).fingerprint()),
        Err(KeyringError::NotInstalled(key(2).fingerprint()))
    );
}
