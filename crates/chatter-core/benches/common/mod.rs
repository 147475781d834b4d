//! What the benchmarks of the node share.

use std::time::Instant;

/// Reads the clock. The core takes time as an argument and never reads it (see `clippy.toml`);
/// the benchmarks read it here only, for the base instant of the virtual time they pass in and
/// to time the measured part of a round that also has unmeasured steps (`iter_custom`).
#[allow(clippy::disallowed_methods)]
pub fn clock() -> Instant {
    Instant::now()
}
