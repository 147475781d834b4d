//! The Chatter daemon as a library: flags, HTTP API, conversions and the `--demo` supervisor.
//!
//! The `chatterd` binary is a thin `main` over [`run`]; the modules are public so that tests
//! and tools can reuse the flag parsers, the ready-line parser and the API conversions.
//!
//! # Layers
//!
//! The modules form layers, each importing only the layers below it, with no cycle among
//! modules (`tests/layers.rs` fails the build's tests otherwise, naming the offending import
//! or cycle):
//!
//! | layer | modules | what |
//! | --- | --- | --- |
//! | wiring | [`daemon`], [`demo`], this file, `main.rs` | one daemon from its options: the node, the subsystems, the API, signals, the ready line; the `--demo` supervisor |
//! | HTTP API | [`api`]: `router`, `shared` (state, per-request bounds, error type), one module per resource (`members`, `health` for `/health` and `/v1/self`, `kv`, `messages`, `events`, `keys`, `checks`, `services`, `system`, `metrics`, `dashboard`), and `origin`, `auth`, `server` before the handlers | the endpoints and what guards them |
//! | subsystems | [`subsystems`]: `checks`, `hooks` (event handlers), `services`, `system`, `keyring`, `monitoring`, `queries` | what runs beside the node, each taking a `Handle` and settings of its own |
//! | options | [`options`]: `values`, `checks`, `hooks`, `services`, `discover`, `encryption`, `flags`, `config` | flags, config file and their validation, before anything starts |
//! | foundations | [`foundation`]: `io`, `duration`, `process`, `client_tls`, `notify`, `discovery_stats`, `convert` | what every layer uses and that knows none of them |

#![deny(missing_docs)]

pub mod api;
pub mod daemon;
pub mod demo;
pub mod foundation;
pub mod options;
pub mod subsystems;

/// Runs what the flags ask for: one daemon, or a demo cluster with `--demo`.
pub async fn run(args: options::flags::Args) -> anyhow::Result<()> {
    match args.demo {
        Some(nodes) => demo::run(nodes, &args).await,
        None => daemon::run(args).await,
    }
}
