//! `chatter-sim`: runs experiments on the simulator, prints their tables and writes their plots
//! (`docs/plots/NAME.svg` by default).
//!
//! ```text
//! cargo run --release -p chatter-sim -- experiment detection [--nodes 50] [--seed 1] [--runs 100]
//! cargo run --release -p chatter-sim -- experiment dissemination [--seed 1] [--runs 20] \
//!     [--sizes 10,50,100,500,1000] [--losses 0,10,20] [--full]
//! cargo run --release -p chatter-sim -- experiment convergence [--seed 1] [--runs 5] \
//!     [--sizes 10,50,100,500,1000] [--modes staggered,burst]
//! cargo run --release -p chatter-sim -- experiment detection-scale [--seed 1] [--runs 20] \
//!     [--sizes 10,50,100,500,1000] [--icmp on,off]
//! cargo run --release -p chatter-sim -- experiment false-positives [--nodes 50] [--seed 1] \
//!     [--runs 50] [--losses 0,5,10,20,30] [--minutes 120] [--pauses 1,2,5,10,15,20]
//! cargo run --release -p chatter-sim -- experiment cost [--seed 1] [--sizes 10,50,100,500,1000]
//! cargo run --release -p chatter-sim -- experiment scale [--seed 1] [--sizes 100,1000,10000] \
//!     [--loss 0]
//! ```
//!
//! `scale` at 10,000 nodes needs about 11 GiB of memory and a minute of wall time.
//!
//! Every experiment also takes `--plot-dir DIR` (default `docs/plots`) and `--no-plot`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chatter_sim::experiment::{
    self, ConvergenceParams, CostParams, DetectionParams, DetectionScaleParams,
    DisseminationParams, FalsePositivesParams, JoinMode, ScaleParams,
};
use chatter_sim::plot::Figure;
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
    /// Runs an experiment, prints its table and writes its plot.
    Experiment(Args),
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Which experiment.
    name: ExperimentName,
    /// Cluster size (`detection`, `false-positives`).
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Seed of the run; the same seed prints the same table.
    #[arg(long, default_value_t = 1, env = "CHATTER_SIM_SEED")]
    seed: u64,
    /// Repetitions per row: crashes for `detection` (default 100) and `detection-scale` (20),
    /// broadcasts for `dissemination` (20; writes: half as many), clusters formed for
    /// `convergence` (5; 1 from N=1000), pauses per length for `false-positives` (50).
    #[arg(long)]
    runs: Option<usize>,
    /// Cluster sizes, comma-separated (`dissemination`, `convergence`, `detection-scale`,
    /// `cost`; default 10,50,100,500,1000; `scale`: 100,1000,10000).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Packet loss rates in percent, comma-separated (`dissemination`: 0,10,20;
    /// `false-positives`: 0,5,10,20,30).
    #[arg(long, value_delimiter = ',')]
    losses: Option<Vec<f64>>,
    /// Packet loss rate in percent on every link for the whole run (`scale`).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Join modes, comma-separated (`convergence`; default staggered,burst).
    #[arg(long, value_delimiter = ',')]
    modes: Option<Vec<Mode>>,
    /// ICMP settings, comma-separated (`detection-scale`; default on,off).
    #[arg(long, value_delimiter = ',')]
    icmp: Option<Vec<Toggle>>,
    /// Pause lengths in seconds, comma-separated (`false-positives`; default 1,2,5,10,15,20).
    #[arg(long, value_delimiter = ',')]
    pauses: Option<Vec<f64>>,
    /// Virtual minutes observed per loss rate (`false-positives`; default 120).
    #[arg(long)]
    minutes: Option<f64>,
    /// Each node writes one key this often, in seconds (`cost`; default: no writes).
    #[arg(long)]
    write_every: Option<f64>,
    /// Also run the rows skipped by default for wall time (`dissemination`: N=1000 at 20%).
    #[arg(long)]
    full: bool,
    /// Directory of the plots (one SVG per experiment, named after it).
    #[arg(long, default_value = "docs/plots")]
    plot_dir: PathBuf,
    /// Print the table only.
    #[arg(long)]
    no_plot: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExperimentName {
    /// Failure detection time and false positives versus packet loss, ICMP on and off.
    Detection,
    /// Cost and speed of user messages and key/value writes versus cluster size and loss.
    Dissemination,
    /// Time until every node knows every other alive after joining through one seed, versus N.
    Convergence,
    /// Failure detection time versus cluster size, ICMP on and off.
    DetectionScale,
    /// Members wrongly declared failed versus packet loss, and around a paused process.
    FalsePositives,
    /// Datagrams and bytes per node per second in a stable cluster versus N.
    Cost,
    /// Warm clusters up to 10,000 nodes: steady-state cost per node, a broadcast, a write and
    /// a crash, false verdicts, the simulator's wall time and memory.
    Scale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One node after another, 10 ms apart.
    Staggered,
    /// All nodes at the same instant.
    Burst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Toggle {
    On,
    Off,
}

fn flush() {
    let _ = std::io::stdout().flush();
}

fn invalid(msg: &str) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let Command::Experiment(args) = Cli::parse().command;
    let started = Instant::now();
    let figure = match run(&args) {
        Ok(figure) => figure,
        Err(code) => return code,
    };
    println!("(wall time {:.1}s)", started.elapsed().as_secs_f64());
    if args.no_plot {
        return ExitCode::SUCCESS;
    }
    let name = args
        .name
        .to_possible_value()
        .map_or_else(|| "experiment".to_owned(), |v| v.get_name().to_owned());
    let path = args.plot_dir.join(format!("{name}.svg"));
    match figure.write_svg(&path) {
        Ok(()) => {
            println!("plot: {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => invalid(&e.to_string()),
    }
}

/// Runs the experiment, printing its table as rows are done; returns its plot.
fn run(args: &Args) -> Result<Figure, ExitCode> {
    let sizes_ok = args.sizes.iter().flatten().all(|&n| n >= 2);
    let losses_ok = args
        .losses
        .iter()
        .flatten()
        .all(|l| (0.0..100.0).contains(l));
    if !sizes_ok || !losses_ok {
        return Err(invalid("--sizes must be at least 2, --losses in [0, 100)"));
    }
    let percent = |l: &Vec<f64>| l.iter().map(|l| l / 100.0).collect::<Vec<_>>();
    Ok(match args.name {
        ExperimentName::Detection => {
            if args.nodes < 3 {
                return Err(invalid("--nodes must be at least 3"));
            }
            let params = DetectionParams {
                nodes: args.nodes,
                seed: args.seed,
                runs: args.runs.unwrap_or(100),
                ..DetectionParams::default()
            };
            println!("$ {}", params.command());
            let rows = experiment::detection(&params);
            print!("{}", experiment::detection_table(&params, &rows));
            experiment::detection_figure(&params, &rows)
        }
        ExperimentName::Dissemination => {
            let broadcasts = args.runs.unwrap_or(20).max(1);
            let defaults = DisseminationParams::default();
            let params = DisseminationParams {
                sizes: args.sizes.clone().unwrap_or(defaults.sizes),
                losses: args.losses.as_ref().map_or(defaults.losses, percent),
                seed: args.seed,
                broadcasts,
                writes: broadcasts.div_ceil(2),
                skip: if args.full { Vec::new() } else { defaults.skip },
                ..DisseminationParams::default()
            };
            print!("{}", experiment::dissemination_header(&params));
            flush();
            let rows = experiment::dissemination_with(&params, |row| {
                println!("{}", experiment::dissemination_line(row));
                flush();
            });
            experiment::dissemination_figure(&params, &rows)
        }
        ExperimentName::Convergence => {
            let defaults = ConvergenceParams::default();
            let params = ConvergenceParams {
                sizes: args.sizes.clone().unwrap_or(defaults.sizes.clone()),
                modes: args.modes.as_ref().map_or(defaults.modes.clone(), |m| {
                    m.iter()
                        .map(|&m| match m {
                            Mode::Staggered => JoinMode::Staggered,
                            Mode::Burst => JoinMode::Burst,
                        })
                        .collect()
                }),
                seed: args.seed,
                runs: args.runs.unwrap_or(defaults.runs),
                ..defaults
            };
            print!("{}", experiment::convergence_header(&params));
            flush();
            let rows = experiment::convergence_with(&params, |row| {
                println!("{}", experiment::convergence_line(&params, row));
                flush();
            });
            experiment::convergence_figure(&params, &rows)
        }
        ExperimentName::DetectionScale => {
            let defaults = DetectionScaleParams::default();
            if args.sizes.iter().flatten().any(|&n| n < 3) {
                return Err(invalid("--sizes must be at least 3"));
            }
            let params = DetectionScaleParams {
                sizes: args.sizes.clone().unwrap_or(defaults.sizes.clone()),
                icmp: args.icmp.as_ref().map_or(defaults.icmp.clone(), |v| {
                    v.iter().map(|&t| t == Toggle::On).collect()
                }),
                seed: args.seed,
                runs: args.runs.unwrap_or(defaults.runs).max(1),
                ..defaults
            };
            print!("{}", experiment::detection_scale_header(&params));
            flush();
            let rows = experiment::detection_scale_with(&params, |row| {
                println!("{}", experiment::detection_scale_line(&params, row));
                flush();
            });
            experiment::detection_scale_figure(&params, &rows)
        }
        ExperimentName::FalsePositives => {
            if args.nodes < 3 {
                return Err(invalid("--nodes must be at least 3"));
            }
            let defaults = FalsePositivesParams::default();
            let params = FalsePositivesParams {
                nodes: args.nodes,
                losses: args
                    .losses
                    .as_ref()
                    .map_or(defaults.losses.clone(), percent),
                duration: args.minutes.map_or(defaults.duration, |m| {
                    Duration::from_secs_f64(m.max(0.0) * 60.0)
                }),
                pauses: args.pauses.as_ref().map_or(defaults.pauses.clone(), |p| {
                    p.iter()
                        .map(|&s| Duration::from_secs_f64(s.max(0.0)))
                        .collect()
                }),
                runs: args.runs.unwrap_or(defaults.runs).max(1),
                seed: args.seed,
                ..defaults
            };
            print!("{}", experiment::false_positives_header(&params));
            flush();
            let rows = experiment::false_positives_with(
                &params,
                |row| {
                    println!("{}", experiment::loss_line(row));
                    flush();
                },
                |row| {
                    if row.pause == params.pauses[0] {
                        print!("{}", experiment::pause_header(&params));
                    }
                    println!("{}", experiment::pause_line(row));
                    flush();
                },
            );
            experiment::false_positives_figure(&params, &rows)
        }
        ExperimentName::Cost => {
            let defaults = CostParams::default();
            let write_every = match args.write_every {
                None => None,
                Some(s) if s.is_finite() && (0.1..=3600.0).contains(&s) => {
                    Some(Duration::from_secs_f64(s))
                }
                Some(_) => return Err(invalid("--write-every must be 0.1 to 3600 seconds")),
            };
            let params = CostParams {
                sizes: args.sizes.clone().unwrap_or(defaults.sizes.clone()),
                seed: args.seed,
                write_every,
                ..defaults
            };
            print!("{}", experiment::cost_header(&params));
            flush();
            let rows = experiment::cost_with(&params, |row| {
                println!("{}", experiment::cost_line(row));
                flush();
            });
            print!("{}", experiment::cost_verdict(&params, &rows));
            experiment::cost_figure(&params, &rows)
        }
        ExperimentName::Scale => {
            if args.sizes.iter().flatten().any(|&n| n < 3) || !(0.0..100.0).contains(&args.loss) {
                return Err(invalid("--sizes must be at least 3, --loss in [0, 100)"));
            }
            let defaults = ScaleParams::default();
            let params = ScaleParams {
                sizes: args.sizes.clone().unwrap_or(defaults.sizes.clone()),
                loss: args.loss / 100.0,
                seed: args.seed,
                broadcasts: args.runs.unwrap_or(defaults.broadcasts).max(1),
                ..defaults
            };
            print!("{}", experiment::scale_header(&params));
            flush();
            let rows = experiment::scale_with(&params, |row| {
                println!("{}", experiment::scale_line(row));
                flush();
            });
            experiment::scale_figure(&params, &rows)
        }
    })
}
