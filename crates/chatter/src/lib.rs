//! Cluster membership and failure detection for Tokio services: SWIM with the Lifeguard
//! refinements, gossiped over UDP.
//!
//! Each process runs a node. The nodes find each other through seeds, probe each other, and agree
//! within moments on who is alive, suspect, failed (crashed) or left (shut down cleanly), without
//! any central coordinator. The protocol lives in the sans-IO crate [`chatter_core`]; this crate
//! runs it over a real UDP socket.
//!
//! # Start a node
//!
//! [`Chatter::builder`] takes the node's name (unique in the cluster); [`Builder::spawn`] binds
//! the socket and starts the node's driver task on the current Tokio runtime, and returns a
//! [`Handle`]:
//!
//! ```no_run
//! use chatter::{Chatter, Config, Event};
//!
//! # async fn run() -> Result<(), chatter::Error> {
//! let handle = Chatter::builder("web-1")
//!     .bind(([0, 0, 0, 0], 2428).into())
//!     .seed("seed.example.com:2428") // resolved through DNS, again every 30 s
//!     .tag("role", "web")
//!     .config(Config::lan())
//!     .spawn()
//!     .await?;
//!
//! // Membership changes, as they happen.
//! let mut events = handle.subscribe();
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         match &event {
//!             Event::Failed(m) => eprintln!("{} crashed ({:?})", m.name, m.evidence),
//!             other => eprintln!("{}: {:?}", other.kind(), other.member().map(|m| &m.name)),
//!         }
//!     }
//! });
//!
//! // The current view, without waiting.
//! for member in handle.members() {
//!     println!("{} {} {}", member.name, member.addr, member.status);
//! }
//!
//! // On the way out: tell the others (they see `left`, not `failed`), then stop.
//! handle.leave().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # How it runs
//!
//! One Tokio task (the driver) owns the protocol state machine ([`chatter_core::Node`]) and the
//! socket; nothing else touches them, and there is no lock. The driver waits for whichever comes
//! first: a datagram, a command from a handle, the core's next deadline, or the periodic seed
//! re-resolution. After each, it sends the datagrams the core queued, fans the membership
//! [`Event`]s out to subscribers, and publishes a [`Snapshot`] of the member table.
//!
//! - **Reads** ([`Handle::members`], [`Handle::member`], [`Handle::snapshot`],
//!   [`Handle::watch`]) return the last published snapshot and never wait. A snapshot is
//!   published after every batch of events and at most every 250 ms otherwise.
//! - **Events** ([`Handle::subscribe`]) arrive through a broadcast channel: a subscriber that
//!   falls behind skips the oldest events instead of slowing the node down.
//! - **Commands** ([`Handle::join`], [`Handle::set_tags`], [`Handle::leave`],
//!   [`Handle::shutdown`]) are messages to the driver, answered when done. After the node has
//!   stopped they return [`Error::Stopped`]; the last snapshot stays readable.
//!
//! On Linux the socket also asks the kernel for ICMP errors: when a probe reaches a host whose
//! gossip port is closed (the process died, the host is up), the port-unreachable answer is
//! handed to the core as strong evidence, and the member is declared failed after
//! [`Config::unreachable_suspicion_timeout`] rather than the full suspicion timeout.
//!
//! A complete program that starts three nodes and watches one leave is in
//! `examples/cluster.rs`.

#![deny(missing_docs)]

mod builder;
mod driver;
mod error;
mod handle;
mod recverr;
mod seeds;
mod socket;

pub use builder::{Builder, Chatter, DEFAULT_PORT};
pub use chatter_core::{
    Config, ConfigError, Confirmation, Conflict, Event, Evidence, Member, MemberStatus,
    ProbeOutcome, ProbeRecord, Stats, Tags, TagsError,
};
pub use error::Error;
pub use handle::{EventStream, Handle, IoStats, Snapshot};
