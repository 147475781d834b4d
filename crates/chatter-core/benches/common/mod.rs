//! What the benchmarks of the node share.

// Each bench target compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use criterion::Criterion;

/// Reads the clock. The core takes time as an argument and never reads it (see `clippy.toml`);
/// the benchmarks read it here only, for the base instant of the virtual time they pass in and
/// to time the measured part of a round that also has unmeasured steps (`iter_custom`).
#[allow(clippy::disallowed_methods)]
pub fn clock() -> Instant {
    Instant::now()
}

/// The settings of every benchmark: 50 samples over 3 s after 1 s of warm-up keep a whole
/// `cargo bench -p chatter-core` run near a minute.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
