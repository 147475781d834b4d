//! Shared helpers of the simulation tests: the seed, and failures that say how to replay them.

#![allow(dead_code)]

use std::time::Duration;

use chatter_core::{Config, Event};
use chatter_sim::{excerpt, Sim, SimConfig};

/// Seed used when `CHATTER_SIM_SEED` is not set.
pub const DEFAULT_SEED: u64 = 42;

/// One simulation test: knows its seed, and makes every failure say how to replay it.
///
/// Any panic while a `SimTest` is alive (an assertion, an `unwrap`) also prints the replay line
/// from `Drop`.
pub struct SimTest {
    pub name: &'static str,
    pub seed: u64,
}

impl SimTest {
    /// Takes the seed from `CHATTER_SIM_SEED`, else [`DEFAULT_SEED`].
    pub fn new(name: &'static str) -> Self {
        let seed = std::env::var("CHATTER_SIM_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(DEFAULT_SEED);
        Self { name, seed }
    }

    /// A test with an explicit seed (for sweeps over several seeds).
    pub fn with_seed(name: &'static str, seed: u64) -> Self {
        Self { name, seed }
    }

    /// The replay hint added to every failure message.
    pub fn replay(&self) -> String {
        format!(
            "seed={} (replay with CHATTER_SIM_SEED={} cargo test -p chatter-sim {})",
            self.seed, self.seed, self.name
        )
    }

    /// A simulation config with this test's seed and the given protocol profile.
    pub fn config(&self, node_config: Config) -> SimConfig {
        SimConfig::new(self.seed).with_node_config(node_config)
    }

    /// A cluster of `n` nodes joined through node 0 (10 ms apart), converged: every node sees
    /// every other alive. Fails the test if that takes more than `max` of virtual time.
    pub fn cluster(&self, config: SimConfig, n: usize, max: Duration) -> Sim {
        let mut sim = Sim::with_cluster(config, n, Duration::from_millis(10)).unwrap();
        self.wait(
            &mut sim,
            max,
            "the cluster to converge",
            Sim::all_agree_alive,
        );
        sim
    }

    /// Fails the test with `msg`, the seed, and how to replay.
    #[track_caller]
    pub fn fail(&self, msg: impl AsRef<str>) -> ! {
        panic!("[{}] {}\n{}", self.name, msg.as_ref(), self.replay());
    }

    /// Fails the test unless `cond`.
    #[track_caller]
    pub fn check(&self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.fail(msg());
        }
    }

    /// Runs `sim` until `pred` holds, failing the test (with the tail of the event log) after
    /// `max` of virtual time. Returns the virtual time it took.
    #[track_caller]
    pub fn wait(
        &self,
        sim: &mut Sim,
        max: Duration,
        what: &str,
        pred: impl FnMut(&Sim) -> bool,
    ) -> Duration {
        match sim.wait_until(max, pred) {
            Ok(d) => d,
            Err(timeout) => {
                let events = sim.events();
                let tail = &events[events.len().saturating_sub(40)..];
                self.fail(format!(
                    "timed out waiting for {what}: {timeout}\nlast events:\n{}",
                    excerpt(tail, None, 40)
                ))
            }
        }
    }

    /// Fails the test if the simulator saw any invariant violation.
    #[track_caller]
    pub fn check_invariants(&self, sim: &Sim) {
        self.check(sim.violations().is_empty(), || {
            format!(
                "{} invariant violations, first ones:\n  {}",
                sim.violation_count(),
                sim.violations()
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )
        });
    }

    /// Fails the test if any node marked a member other than those in `allowed` failed.
    #[track_caller]
    pub fn check_no_failed_except(&self, sim: &Sim, allowed: &[usize]) {
        let allowed: Vec<&str> = allowed.iter().map(|&i| sim.name(i)).collect();
        let wrong: Vec<_> = sim
            .events()
            .iter()
            .filter(|e| matches!(e.event, Event::Failed(_)) && !allowed.contains(&e.subject()))
            .collect();
        self.check(wrong.is_empty(), || {
            format!(
                "{} wrongful failed verdicts:\n{}",
                wrong.len(),
                excerpt(wrong.iter().copied(), None, 20)
            )
        });
    }
}

impl Drop for SimTest {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("[{}] FAILED with {}", self.name, self.replay());
        }
    }
}

/// Counts the events of `sim` that match `pred`.
pub fn count_events(sim: &Sim, mut pred: impl FnMut(&Event) -> bool) -> usize {
    sim.events().iter().filter(|e| pred(&e.event)).count()
}
