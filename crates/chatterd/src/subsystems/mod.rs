//! Subsystems: what the daemon runs beside the gossip node. Each takes the node's [`Handle`]
//! and a settings value of its own (never the whole command line): health checks, services,
//! system status, event hooks, the keyring file, the monitoring that starts the first four
//! together, and the queries that read back what the cluster published.
//!
//! A subsystem imports the foundations and the options (for the specifications it runs), never
//! the HTTP API or the wiring (a test, `tests/layers.rs`, keeps it so).
//!
//! [`Handle`]: chatter::Handle

pub mod checks;
pub mod hooks;
pub mod keyring;
pub mod monitoring;
pub mod queries;
pub mod services;
pub mod system;
