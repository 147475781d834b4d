//! The protocol of Chatter as a sans-IO state machine: SWIM failure detection with the Lifeguard
//! refinements, piggybacked dissemination and push-pull anti-entropy of the member list.
//!
//! The core never touches the world. Its driver (the `chatter` crate's Tokio task, or the
//! simulator) feeds it inputs and drains its outputs:
//!
//! - inputs: [`Node::handle_datagram`] (a UDP payload and its source), [`Node::handle_unreachable`]
//!   (an ICMP port-unreachable for something sent to an address), [`Node::handle_host_check`]
//!   (the answer to a [`HostCheck`]), [`Node::handle_timeout`] (the deadline from
//!   `poll_timeout` has passed) and commands ([`Node::join`], [`Node::leave`],
//!   [`Node::set_tags`], [`Node::start_key_op`]);
//! - outputs, drained after every input in this order: [`Node::poll_transmit`] until `None`
//!   (datagrams to send), [`Node::poll_event`] until `None` (membership changes),
//!   [`Node::poll_host_check`] until `None` (hosts to check: a driver that never runs them
//!   only loses the shortcut for silent hosts), then [`Node::poll_timeout`] (when to call
//!   `handle_timeout` next).
//!
//! Time is an [`Instant`](std::time::Instant) passed in; randomness comes from a seeded RNG, so
//! the same inputs give the same outputs.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use chatter_core::{Config, Identity, Node};
//!
//! let t0 = Instant::now();
//! let id = |name: &str, port| Identity::new(name, ([127, 0, 0, 1], port).into(), 1);
//! let mut a = Node::new(id("a", 7001), Config::local(), 1, t0).unwrap();
//! let mut b = Node::new(id("b", 7002), Config::local(), 2, t0).unwrap();
//! b.join(t0, vec![([127, 0, 0, 1], 7001).into()]);
//!
//! // A perfect network: deliver every datagram at once, fire timers in order.
//! let mut now = t0;
//! for _ in 0..50 {
//!     for _ in 0..10 {
//!         while let Some(t) = a.poll_transmit() {
//!             b.handle_datagram(now, a.local_addr(), &t.payload);
//!         }
//!         while let Some(t) = b.poll_transmit() {
//!             a.handle_datagram(now, b.local_addr(), &t.payload);
//!         }
//!     }
//!     now += Duration::from_millis(50);
//!     a.handle_timeout(now);
//!     b.handle_timeout(now);
//! }
//! assert_eq!(a.member("b").unwrap().status, chatter_core::MemberStatus::Alive);
//! assert_eq!(b.member("a").unwrap().status, chatter_core::MemberStatus::Alive);
//! ```

#![deny(missing_docs)]

mod addr_memo;
mod anti_entropy;
mod awareness;
mod broadcast;
mod config;
mod dissemination;
mod drop_log;
mod encryption;
mod event;
mod flap_damping;
mod graft;
mod host_check;
mod key_rotation;
mod kv;
mod kv_store;
pub mod limits;
mod lives;
mod member;
mod membership;
mod messaging;
mod node;
mod plumtree;
mod probe;
mod prober;
mod recontact;
mod state;
mod state_tree;
mod stats;
mod suspicion;
mod sync;
mod table;
mod updates;
pub mod wire;

/// The sealing types a user of the core needs (keys, keyrings, fingerprints).
pub use chatter_seal::{
    Fingerprint, Key, KeyInfo, Keyring, KeyringError, KeyringParseError, KEY_LEN, SEAL_OVERHEAD,
};
pub use config::{Config, ConfigError};
pub use encryption::{EncryptionError, Mode, SealDrops};
pub use event::{Delivered, Event, KeyChange};
pub use host_check::{HostAnswer, HostCheck, MAX_HOST_CHECKS_IN_FLIGHT, MAX_HOST_PATHS};
pub use key_rotation::{
    KeyAnswer, KeyOp, KeyOpError, KeyOpKind, KeyRefusal, KeyReport, MAX_KEY_COMMANDS_REMEMBERED,
    MAX_KEY_OPS_IN_FLIGHT,
};
pub use member::{
    Confirmation, Conflict, Evidence, Member, MemberBrief, MemberStatus, ProbeOutcome, ProbeRecord,
    Tags,
};
pub use node::{Identity, Node, TagsError, Transmit};
pub use plumtree::{BroadcastError, MessageId};
pub use state::{KeyValue, StateError};
pub use stats::{RttHistogram, Stats, RTT_BUCKETS_MICROS};

#[cfg(test)]
mod attack_tests;
#[cfg(test)]
mod encryption_tests;
#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod recontact_tests;
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one base instant for virtual time
mod testkit;
