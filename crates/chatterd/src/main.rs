//! `chatterd`: see `chatterd --help` and the README.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The log filter from `RUST_LOG`: `LEVEL` and `TARGET=LEVEL` directives, comma-separated
/// (`info`, `warn,chatter_core=debug`); `info` when unset or not understood (with a word on
/// standard error). `tracing_subscriber`'s `Targets` rather than its `EnvFilter`: the daemon
/// needs no per-span or per-field filters, and `EnvFilter`'s regular expressions cost an idle
/// daemon 0.1 MiB of resident code.
fn log_filter() -> Targets {
    let info = Targets::new().with_default(LevelFilter::INFO);
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match directives.parse::<Targets>() {
            Ok(targets) => targets,
            Err(err) => {
                eprintln!(
                    "chatterd: RUST_LOG={directives:?} not understood ({err}); logging at info"
                );
                info
            }
        },
        _ => info,
    }
}

fn main() -> ExitCode {
    let parsed = chatterd::options::flags::Args::command()
        .try_get_matches()
        .and_then(|matches| {
            chatterd::options::flags::Args::from_arg_matches(&matches).map(|a| (a, matches))
        });
    let (mut args, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = err.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    eprintln!(
                        "chatterd: {}",
                        chatterd::options::flags::one_line_error(&err)
                    );
                    ExitCode::from(2)
                }
            };
        }
    };

    if let Some(path) = args.config.clone() {
        if let Err(err) = chatterd::options::config::apply(&mut args, &matches, &path) {
            eprintln!("chatterd: {err:#}");
            return ExitCode::from(2);
        }
    }

    // Read before any thread starts, and removed from the environment so that checks and
    // event handlers do not inherit the key.
    match chatterd::options::encryption::take_env_key() {
        Ok(key) => args.gossip_key = key,
        Err(err) => {
            eprintln!("chatterd: {err}");
            return ExitCode::from(2);
        }
    }

    // The same for the service manager's variables (systemd's Type=notify): a health check or
    // event handler must not be able to notify in the daemon's name.
    let (notifier, notify_problems) = chatterd::foundation::notify::Notifier::take_env();
    args.notifier = notifier;

    // The rules spanning flags (the protocol timings on top of the profile among them) are
    // mistakes of the command line or the file: refused like a bad flag, before anything starts.
    if let Err(err) = args.validate() {
        eprintln!("chatterd: {err}");
        return ExitCode::from(2);
    }

    // A data directory that cannot be created or written is a mistake of the command line or
    // the file too: refused the same way, before anything starts.
    if let Some(dir) = &args.data_dir {
        if let Err(err) = chatter::persist::prepare_dir(dir) {
            eprintln!(
                "chatterd: --data-dir {}: {}",
                dir.display(),
                chatterd::foundation::io::io_message(&err)
            );
            return ExitCode::from(2);
        }
    }

    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .finish()
        .with(log_filter())
        .init();
    for problem in notify_problems {
        tracing::warn!(error = %problem, "service manager notifications");
    }

    // One thread runs everything: the daemon handles a few datagrams and HTTP requests a
    // second, and each worker thread of a multi-threaded runtime costs resident memory for
    // nothing (its stack and its own malloc arena: 80 KB less measured without the two workers
    // of a 2-core host, more on bigger hosts). Blocking work (the system status sample) still
    // goes to Tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chatterd: cannot start the Tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(chatterd::run(args));
    // Do not wait for a blocking task (a DNS lookup) that is stuck.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chatterd: {err:#}");
            ExitCode::FAILURE
        }
    }
}
