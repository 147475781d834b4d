//! `chatter-sim`: runs experiments on the simulator and prints their tables.
//!
//! ```text
//! cargo run --release -p chatter-sim -- experiment detection [--nodes 50] [--seed 1] [--runs 100]
//! cargo run --release -p chatter-sim -- experiment dissemination [--seed 1] [--runs 20] \
//!     [--sizes 10,50,100,500,1000] [--losses 0,10,20] [--full]
//! cargo run --release -p chatter-sim -- experiment scale [--sizes 100,1000,10000] [--loss 0]
//! ```

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use chatter_sim::experiment::{self, DetectionParams, DisseminationParams, ScaleParams};
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
        /// Cluster size (`detection`).
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        /// Seed of the run; the same seed prints the same table.
        #[arg(long, default_value_t = 1, env = "CHATTER_SIM_SEED")]
        seed: u64,
        /// Repetitions per row: crashes measured for `detection` (default 100), broadcasts
        /// measured for `dissemination` (default 20; writes measured: half as many).
        #[arg(long)]
        runs: Option<usize>,
        /// Cluster sizes, comma-separated (`dissemination`: default 10,50,100,500,1000;
        /// `scale`: default 100,1000,10000).
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<usize>,
        /// Packet loss rate in percent for the whole run (`scale`).
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Packet loss rates in percent, comma-separated (`dissemination`).
        #[arg(long, value_delimiter = ',', default_values_t = [0.0, 10.0, 20.0])]
        losses: Vec<f64>,
        /// Also run the rows skipped by default for wall time (`dissemination`: N=1000 at 20%).
        #[arg(long)]
        full: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExperimentName {
    /// Failure detection time and false positives versus packet loss, ICMP on and off.
    Detection,
    /// Cost and speed of user messages and key/value writes versus cluster size and loss.
    Dissemination,
    /// Warm clusters up to 10,000 nodes: steady-state cost per node, a broadcast, a write and
    /// a crash, false verdicts, the simulator's wall time and memory.
    Scale,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Experiment {
        name,
        nodes,
        seed,
        runs,
        sizes,
        loss,
        losses,
        full,
    } = cli.command;
    let started = Instant::now();
    match name {
        ExperimentName::Detection => {
            if nodes < 3 {
                eprintln!("--nodes must be at least 3");
                return ExitCode::FAILURE;
            }
            let params = DetectionParams {
                nodes,
                seed,
                runs: runs.unwrap_or(100),
                ..DetectionParams::default()
            };
            let rows = experiment::detection(&params);
            print!("{}", experiment::detection_table(&params, &rows));
        }
        ExperimentName::Dissemination => {
            if sizes.iter().any(|&n| n < 2) || losses.iter().any(|l| !(0.0..100.0).contains(l)) {
                eprintln!("--sizes must be at least 2, --losses in [0, 100)");
                return ExitCode::FAILURE;
            }
            let broadcasts = runs.unwrap_or(20).max(1);
            let params = DisseminationParams {
                sizes: if sizes.is_empty() {
                    DisseminationParams::default().sizes
                } else {
                    sizes
                },
                losses: losses.iter().map(|l| l / 100.0).collect(),
                seed,
                broadcasts,
                writes: broadcasts.div_ceil(2),
                ..DisseminationParams::default()
            };
            let params = DisseminationParams {
                skip: if full {
                    Vec::new()
                } else {
                    params.skip.clone()
                },
                ..params
            };
            print!("{}", experiment::dissemination_header(&params));
            let _ = std::io::stdout().flush();
            experiment::dissemination_with(&params, |row| {
                println!("{}", experiment::dissemination_line(row));
                let _ = std::io::stdout().flush();
            });
        }
        ExperimentName::Scale => {
            if sizes.iter().any(|&n| n < 3) || !(0.0..100.0).contains(&loss) {
                eprintln!("--sizes must be at least 3, --loss in [0, 100)");
                return ExitCode::FAILURE;
            }
            let defaults = ScaleParams::default();
            let params = ScaleParams {
                sizes: if sizes.is_empty() {
                    defaults.sizes.clone()
                } else {
                    sizes
                },
                loss: loss / 100.0,
                seed,
                broadcasts: runs.unwrap_or(defaults.broadcasts).max(1),
                ..defaults
            };
            print!("{}", experiment::scale_header(&params));
            let _ = std::io::stdout().flush();
            experiment::scale_with(&params, |row| {
                println!("{}", experiment::scale_line(row));
                let _ = std::io::stdout().flush();
            });
        }
    }
    println!("(wall time {:.1}s)", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
