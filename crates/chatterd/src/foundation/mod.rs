//! Foundations: what every other layer uses and what knows nothing of the daemon's options,
//! subsystems or API. Running an operator's shell command, durations as flags write them,
//! I/O error wording, the TLS of `http=` checks, service manager notifications, and the
//! conversions from the protocol's types to the API's JSON types.
//!
//! Nothing here imports a module outside `foundation` (a test, `tests/layers.rs`, keeps it so).

pub mod client_tls;
pub mod convert;
pub mod discovery_stats;
pub mod duration;
pub mod io;
pub mod notify;
pub mod process;

/// Version of this binary, reported by `/v1/self`, `/health`, `/metrics` and the system status.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
