//! A deterministic simulator of many [`chatter_core::Node`]s on virtual time.
//!
//! [`Sim`] owns the nodes, a virtual clock and a virtual network. It never sleeps and never
//! touches a socket: each [`Sim::step`] jumps the clock to the earliest pending event (a datagram
//! arriving, or a node's `poll_timeout` deadline), feeds it to the node (`handle_datagram`,
//! `handle_unreachable` or `handle_timeout`), then drains the node's `poll_transmit` into the
//! network and its `poll_event` into an event log stamped with virtual time.
//!
//! The network has a per-link latency with jitter (0.5 ms ± 0.2 ms by default), random loss
//! settable at any time, partitions, paused processes (their datagrams wait in a bounded receive
//! buffer, like a `SIGSTOP`ped process's socket), crashed processes (with ICMP port-unreachable
//! back to the sender, as Linux does for a closed port on a live host) and dead hosts (silence),
//! and restarts with a new generation.
//!
//! Everything random derives from one seed ([`SimConfig::seed`]): the same seed gives the same
//! run, so a failing seed can be replayed. Ties are broken by sequence numbers, never by hash
//! order.
//!
//! ```
//! use std::time::Duration;
//! use chatter_core::{Config, MemberStatus};
//! use chatter_sim::{Sim, SimConfig};
//!
//! let config = SimConfig::new(7).with_node_config(Config::local());
//! let mut sim = Sim::with_cluster(config, 5, Duration::from_millis(10)).unwrap();
//! sim.wait_until(Duration::from_secs(10), Sim::all_agree_alive).unwrap();
//!
//! sim.crash(3);
//! let bound = sim.config().node_config.detection_bound(5);
//! sim.wait_until(bound, |s| s.all_see_status(3, MemberStatus::Failed)).unwrap();
//! assert!(sim.violations().is_empty());
//! ```
//!
//! User messages and key/value writes are followed too: [`Sim::broadcast`] and [`Sim::set`]
//! remember when and from where, every `Event::Message` and `Event::KeyChanged` drained from a
//! node records who got what when ([`Sim::deliveries_of`], [`Sim::write`]), and [`Sim::traffic`]
//! sums the dissemination counters of every node so that a broadcast's cost is a difference of
//! two snapshots. With [`Sim::set_trace_payloads`] each datagram is decoded and counted against
//! the messages and writes it carries; [`Sim::watch`] keeps one node's datagrams, decoded.
//!
//! ```
//! use std::time::Duration;
//! use chatter_core::Config;
//! use chatter_sim::{Sim, SimConfig};
//!
//! let config = SimConfig::new(7).with_node_config(Config::local());
//! let mut sim = Sim::with_cluster(config, 8, Duration::from_millis(10)).unwrap();
//! sim.wait_until(Duration::from_secs(10), Sim::all_agree_alive).unwrap();
//!
//! let before = sim.traffic();
//! let id = sim.broadcast(3, "hello", b"world".to_vec()).unwrap();
//! let latency = sim.wait_delivered(&id, Duration::from_secs(5)).unwrap();
//! assert!(sim.duplicate_deliveries(&id).is_empty());
//! assert!(sim.traffic().since(&before).messages_sent >= 7, "one push per other node at least");
//! assert!(latency < Duration::from_secs(1));
//!
//! let version = sim.set(4, "load", b"0.25".to_vec()).unwrap();
//! sim.wait_until(Duration::from_secs(5), |s| s.write_reached_everywhere(4, version)).unwrap();
//! assert_eq!(sim.node(0).unwrap().get("n0004", "load"), Some(&b"0.25"[..]));
//! ```

#![deny(missing_docs)]

pub mod adversary;
pub mod experiment;
mod invariants;
mod log;
mod network;
pub mod plot;
mod sim;
mod tracking;

pub use log::{excerpt, LoggedEvent};
pub use network::NetStats;
pub use sim::{
    add_stats, node_addr, node_name, Captured, DownReason, NodeState, Sim, SimConfig, Timeout,
    HOST_CHECK_ATTEMPTS, MAX_CAPTURE,
};
pub use tracking::{Carried, Delivery, MessageRecord, Traffic, WatchedPacket, WriteRecord};
