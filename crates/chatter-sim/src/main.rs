//! `chatter-sim`: runs experiments on the simulator and prints their tables.
//!
//! ```text
//! cargo run --release -p chatter-sim -- experiment detection [--nodes 50] [--seed 1] [--runs 100]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use chatter_sim::experiment::{self, DetectionParams};
use clap::{Parser, Subcommand, ValueEnum};

/// Deterministic simulations of Chatter clusters.
#[derive(Debug, Parser)]
#[command(name = "chatter-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs an experiment and prints its table.
    Experiment {
        /// Which experiment.
        name: ExperimentName,
        /// Cluster size.
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        /// Seed of the run; the same seed prints the same table.
        #[arg(long, default_value_t = 1, env = "CHATTER_SIM_SEED")]
        seed: u64,
        /// Repetitions per row (crashes measured, for `detection`).
        #[arg(long, default_value_t = 100)]
        runs: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExperimentName {
    /// Failure detection time and false positives versus packet loss, ICMP on and off.
    Detection,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Experiment {
            name: ExperimentName::Detection,
            nodes,
            seed,
            runs,
        } => {
            if nodes < 3 {
                eprintln!("--nodes must be at least 3");
                return ExitCode::FAILURE;
            }
            let params = DetectionParams {
                nodes,
                seed,
                runs,
                ..DetectionParams::default()
            };
            let started = Instant::now();
            let rows = experiment::detection(&params);
            print!("{}", experiment::detection_table(&params, &rows));
            println!("(wall time {:.1}s)", started.elapsed().as_secs_f64());
        }
    }
    ExitCode::SUCCESS
}
