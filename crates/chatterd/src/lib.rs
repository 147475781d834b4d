//! The Chatter daemon as a library: flags, HTTP API, conversions and the `--demo` supervisor.
//!
//! The `chatterd` binary is a thin `main` over [`run`]; the modules are public so that tests
//! and tools can reuse the flag parsers, the ready-line parser and the API conversions.

#![deny(missing_docs)]

pub mod auth;
pub mod checks;
pub mod cli;
pub mod config;
pub mod convert;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod discover;
pub mod events;
pub mod handlers;
pub mod http;
pub mod keys;
pub mod kv;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod origin;
pub mod process;
pub mod rotation;
pub mod server;
pub mod services;
pub mod system;
pub mod tls;

/// Runs what the flags ask for: one daemon, or a demo cluster with `--demo`.
pub async fn run(args: cli::Args) -> anyhow::Result<()> {
    match args.demo {
        Some(nodes) => demo::run(nodes, &args).await,
        None => daemon::run(args).await,
    }
}
