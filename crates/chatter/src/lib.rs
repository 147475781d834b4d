//! Cluster membership and failure detection for Tokio services: SWIM with the Lifeguard
//! refinements, gossiped over UDP, with per-node key/value state and cluster-wide messages.
//!
//! Each process runs a node. The nodes find each other through seeds, probe each other, and agree
//! within moments on who is alive, suspect, failed (crashed) or left (shut down cleanly), without
//! any central coordinator. Each node also publishes a small key/value map that every other node
//! replicates (its status: role, load, build, ...), and any node can broadcast a message that
//! every live node delivers once. The protocol lives in the sans-IO crate [`chatter_core`]; this
//! crate runs it over a real UDP socket.
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
//! # Status and messages
//!
//! **Key/value state.** [`Handle::set`] and [`Handle::delete`] change a key of this node's
//! state; every write takes the next version of the node's state and is gossiped at once, and
//! a periodic Scuttlebutt exchange repairs what gossip lost. Any node reads any member's keys
//! with [`Handle::get`], [`Handle::node_state`] and [`Handle::cluster_state`], and sees every
//! change as an [`Event::KeyChanged`]. Only the owner writes its keys, so there are no
//! conflicts; a restarted member (new generation) starts with an empty state.
//!
//! **Messages.** [`Handle::broadcast`] sends a value of a [`Tagged`] type to every live member
//! (along a Plumtree spanning tree: about one datagram per member), itself included; each
//! delivers it once, as an [`Event::Message`]. The payload is the value's JSON, the same
//! encoding `chatter-inject` sends, so [`DeliveredExt::decode`] reads hand-written messages
//! too, and [`Handle::broadcast_raw`] sends any tag and bytes.
//!
//! ```no_run
//! use chatter::{DeliveredExt, Event, Handle, Tagged};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Deploy {
//!     service: String,
//!     version: u32,
//! }
//! impl Tagged for Deploy {
//!     const TAG: &'static str = "Deploy";
//! }
//!
//! # async fn run(handle: Handle) -> Result<(), chatter::Error> {
//! let mut events = handle.subscribe();
//! handle.set("role", "web").await?;
//! handle.broadcast(&Deploy { service: "web".into(), version: 42 }).await?;
//!
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::KeyChanged(change) => {
//!             println!("{}.{} = {:?} (v{})", change.node, change.key, change.value, change.version)
//!         }
//!         Event::Message(message) if message.is::<Deploy>() => match message.decode::<Deploy>() {
//!             Ok(deploy) => println!("{} asks to deploy {deploy:?}", message.id.origin),
//!             Err(error) => eprintln!("undecodable deploy message: {error}"),
//!         },
//!         _ => {}
//!     }
//! }
//! // Any member's keys, exactly as this node holds them now.
//! let role = handle.get("web-2", "role").await?;
//! # let _ = role;
//! # Ok(())
//! # }
//! ```
//!
//! Keys, values, tags and payloads are bounded (`Config::max_key_len`, `max_value_size`,
//! `max_tag_len`, `max_message_size`: 128 bytes, 1 KiB, 64 bytes, 1 KiB by default), so every
//! update fits a datagram; anything larger is refused with [`Error::State`] or
//! [`Error::Broadcast`] and changes nothing.
//!
//! # How it runs
//!
//! One Tokio task (the driver) owns the protocol state machine ([`chatter_core::Node`]) and the
//! socket; nothing else touches them, and there is no lock. The driver waits for whichever comes
//! first: a datagram, a command from a handle, the core's next deadline, or the periodic seed
//! re-resolution. After each, it sends the datagrams the core queued, fans the [`Event`]s out
//! to subscribers, and publishes a [`Snapshot`] of the member table.
//!
//! - **Reads** ([`Handle::members`], [`Handle::member`], [`Handle::snapshot`],
//!   [`Handle::watch`]) return the last published snapshot and never wait. A snapshot is
//!   published after every batch of membership events and at most every 250 ms otherwise.
//!   [`Handle::live_members`] is a watch of the alive and suspect members that changes only
//!   when that set (or an address in it) does.
//! - **Events** ([`Handle::subscribe`]) arrive through a broadcast channel: a subscriber that
//!   falls behind skips the oldest events instead of slowing the node down.
//! - **Commands** ([`Handle::join`], [`Handle::set_tags`], [`Handle::set`],
//!   [`Handle::broadcast`], [`Handle::leave`], [`Handle::shutdown`], ...) and **state queries**
//!   ([`Handle::get`], [`Handle::node_state`], [`Handle::cluster_state`]) are messages to the
//!   driver, answered when done: a query's answer is exact, with no lock around the core.
//!   After the node has stopped they return [`Error::Stopped`]; the last snapshot stays
//!   readable.
//!
//! On Linux the socket also asks the kernel for ICMP errors: when a probe reaches a host whose
//! gossip port is closed (the process died, the host is up), the port-unreachable answer is
//! handed to the core as strong evidence, and the member is declared failed after
//! [`Config::unreachable_suspicion_timeout`] rather than the full suspicion timeout.
//!
//! When a probe fails, the driver also checks the member's *host* with a TCP connection attempt
//! to its gossip address (nothing listens there over TCP: a live kernel answers with a reset,
//! even while the daemon is stopped). A host silent on a path that has answered such checks
//! before is gone or cut off, and the member is declared failed after
//! [`Config::silent_host_suspicion_timeout`]; a host that answers keeps the full Lifeguard
//! timeout, so a stalled process is not failed sooner than before. [`Config::host_checks`]
//! turns the checks off.
//!
//! # Restarts that keep state
//!
//! With [`Builder::data_dir`], a node keeps its name, its last generation, its own key/values,
//! its tags and the members it last saw alive in a small file, written atomically after every
//! change (at most once a second) and at stop. Restarted with the same directory, it takes a
//! new, higher generation, writes its key/values again (the cluster replaces its previous
//! life's state with them: keys deleted before the restart stay deleted) and rejoins through
//! the remembered members even when every seed is down. A corrupt file is set aside with a
//! warning and the node starts clean. See the [`persist`] module.
//!
//! # Finding each other without seeds
//!
//! With [`Builder::discover`], a node announces itself by IPv4 and IPv6 link-local multicast
//! on its network segment and joins through the members of its cluster it hears, next to its
//! seeds if it has any. Announcements carry the cluster name, and are sealed under the
//! cluster's key when it has one, so only members of the same cluster (with the key) join
//! each other. See the [`discover`] module.
//!
//! Complete programs: `examples/cluster.rs` starts three nodes and watches one leave;
//! `examples/messages.rs` shares state and typed messages between three nodes.

#![deny(missing_docs)]

mod builder;
pub mod discover;
mod driver;
mod error;
mod handle;
mod host_check;
mod message;
pub mod persist;
mod recverr;
mod seeds;
mod socket;
mod state;

pub use builder::{Builder, Chatter, DEFAULT_PORT};
pub use chatter_core::{
    BroadcastError, Config, ConfigError, Confirmation, Conflict, Delivered, Event, Evidence,
    HostAnswer, KeyChange, KeyValue, Member, MemberStatus, MessageId, ProbeOutcome, ProbeRecord,
    RttHistogram, StateError, Stats, Tags, TagsError, RTT_BUCKETS_MICROS,
};
/// Gossip encryption: keys, keyrings and the mode (see [`Builder::keyring`]).
pub use chatter_core::{
    EncryptionError, Fingerprint, Key, KeyInfo, Keyring, KeyringError, KeyringParseError, Mode,
    SealDrops, SEAL_OVERHEAD,
};
/// Live key rotation across the cluster (see [`Handle::keys`]).
pub use chatter_core::{
    KeyAnswer, KeyOp, KeyOpError, KeyOpKind, KeyRefusal, KeyReport, MAX_KEY_OPS_IN_FLIGHT,
};
pub use discover::{Discovery, DiscoveryStats};
pub use error::Error;
pub use handle::{EventStream, Handle, IoStats, Snapshot};
pub use message::{DecodeError, DeliveredExt, Tagged};
pub use persist::{write_file_atomically, DataDir, SavedState, StartedFrom};
pub use state::{NodeState, StateValue};
