//! `chatter`: the command-line client of the `chatterd` HTTP API.
//!
//! ```text
//! chatter members [--json] [--status failed,suspect]   # the member table
//! chatter member NAME [--json]                         # one member, with the evidence
//! chatter kv get [NODE [KEY]] [--json]                 # key/value state of the cluster
//! chatter kv set KEY VALUE                             # set a key of the daemon's node
//! chatter kv delete KEY                                # delete it
//! chatter broadcast TAG JSON                           # send a message to every node
//! chatter events                                       # follow the event stream (JSON lines)
//! chatter checks [--status critical,warning] [--node N] [--json]  # every node's health checks
//! chatter services [--type TYPE] [--json]              # live instances by type and shard
//! chatter system [--node N] [--json]                   # load, CPU, memory, disk, uptime
//! chatter keys list | install KEY | use KEY | remove KEY  # rotate the gossip keys live
//! chatter health [--json]                              # exit 0 iff the daemon answers 200 ok
//! ```
//!
//! `--http ADDR` (or `CHATTER_HTTP`) says where the daemon's API is; default
//! `127.0.0.1:8428`, chatterd's default. `--http-token TOKEN` (or `CHATTER_HTTP_TOKEN`) is sent
//! as `Authorization: Bearer TOKEN`, which a daemon started with `--http-token` requires for
//! `kv set`, `kv delete` and `broadcast`. An `https://` address reaches a daemon serving its
//! API over TLS; `--ca PEM` (or `CHATTER_CA`) names the CA that signed its certificate when it
//! is not one of the built-in Mozilla roots.
//!
//! HTTP client: async `reqwest` on a current-thread Tokio runtime. Both are already workspace
//! dependencies (the daemon uses Tokio, and reqwest shares hyper with axum), so this costs
//! almost nothing to build, and it handles the parts of HTTP a hand-written client would get
//! wrong (chunked bodies, keep-alive, timeouts). `ureq` would be one more HTTP stack to build.

mod client;
mod render;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use chatter_api::{
    BroadcastRequest, BroadcastResponse, ChecksResponse, HealthStatus, HealthView,
    KeyOperationResponse, KeyRequest, KvWriteResponse, MemberView, MembersResponse, NodeStateView,
    ServicesResponse, SystemResponse,
};
use clap::{Parser, Subcommand};
use reqwest::Method;
use serde_json::value::RawValue;

use crate::client::{encode_path, encode_query, Body, Client};

/// Address of chatterd's HTTP API when neither `--http` nor `CHATTER_HTTP` is given.
const DEFAULT_HTTP: &str = "127.0.0.1:8428";

#[derive(Debug, Parser)]
#[command(
    name = "chatter",
    version,
    about = "Query a chatterd daemon: who is up, who is failing, and why"
)]
struct Cli {
    /// Address of the daemon's HTTP API: HOST:PORT, http://HOST:PORT or https://HOST:PORT
    /// (a daemon with --http-tls-cert).
    #[arg(long, global = true, env = "CHATTER_HTTP", default_value = DEFAULT_HTTP, value_name = "ADDR")]
    http: String,

    /// For an https:// daemon: trust the CA certificates of this PEM file (the CA that signed
    /// the daemon's certificate) instead of the built-in Mozilla roots.
    #[arg(long, global = true, env = "CHATTER_CA", value_name = "PEM")]
    ca: Option<std::path::PathBuf>,

    /// Token for a daemon started with --http-token: sent as `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        global = true,
        env = "CHATTER_HTTP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    http_token: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every member as the daemon sees it (a table; --json for the API's JSON).
    Members {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only members with these statuses (comma-separated: alive, suspect, failed, left).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
    },
    /// Show one member in detail, with the evidence behind a suspect or failed verdict.
    Member {
        /// The member's name.
        name: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Key/value state: every node publishes a small map that every other node replicates.
    Kv {
        #[command(subcommand)]
        command: KvCommand,
    },
    /// Broadcast a message to every live node: `chatter broadcast Deploy '{"version":42}'`.
    Broadcast {
        /// The message's tag (1 to 64 bytes), e.g. the name of its type.
        tag: String,
        /// The payload: any JSON value.
        #[arg(value_name = "JSON")]
        payload: String,
    },
    /// Print a fresh gossip encryption key (base64 of 32 bytes from the operating system's
    /// random generator): a line for a keyring file or CHATTER_GOSSIP_KEY.
    Keygen,
    /// Follow the daemon's event stream: one JSON object per line (membership changes, key
    /// changes, messages) until Ctrl-C or until the daemon goes away.
    Events,
    /// Every node's health checks: NODE CHECK STATUS SINCE OUTPUT (--json for the API's JSON).
    /// Exits 0 even when checks fail; filter with --status critical,warning.
    Checks {
        /// Only checks with these statuses (comma-separated: passing, warning, critical).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Only this node's checks.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The services declared in the cluster, grouped by type and shard, with their live
    /// instances (instances on failed or left nodes are marked).
    Services {
        /// Only this type of service.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rotate the gossip encryption keys on every live node: `install` a new key, `use` it
    /// (every node seals with it), `remove` the old one; `list` shows every node's keys.
    /// Prints who acknowledged, refused, stayed silent or was down; exits 1 unless every live
    /// node acknowledged.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        /// Print the API's JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Whether the daemon is up: `GET /health`. Exits 0 when it answers `ok`, 1 otherwise
    /// (unreachable, leaving, an error): a container `HEALTHCHECK` or any supervisor's probe.
    Health {
        /// Print the API's JSON instead of one line.
        #[arg(long)]
        json: bool,
    },
    /// Every node's system status: load, CPU, memory, root disk, uptime, version.
    System {
        /// Only this node.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Show the state of every node, of one NODE, or the value of one KEY of NODE.
    Get {
        /// Only this node's state.
        node: Option<String>,
        /// Only this key: prints its value alone (the bytes as they are).
        key: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set a key of the daemon's own node; every node sees the change within moments.
    Set {
        /// The key (1 to 128 bytes).
        key: String,
        /// The value (at most 1024 bytes).
        value: String,
    },
    /// Delete a key of the daemon's own node.
    Delete {
        /// The key.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Every key in the cluster: on how many nodes, primary on how many; nodes that did not
    /// answer.
    List,
    /// Install KEY (base64, from `chatter keygen`) on every live node: it opens datagrams at
    /// once and seals only after `use`. `-` reads the key from standard input, which keeps it
    /// out of `ps`.
    Install {
        /// The key, or `-` for standard input.
        key: String,
    },
    /// Make KEY (the key, `-` for standard input, or its fingerprint) the primary key of every
    /// live node.
    Use {
        /// The key, `-`, or its fingerprint (16 hex digits).
        key: String,
    },
    /// Remove KEY (the key, `-`, or its fingerprint) from every live node; refused for the
    /// primary key.
    Remove {
        /// The key, `-`, or its fingerprint (16 hex digits).
        key: String,
    },
}

/// The longest a key operation may take: the daemon answers once every live member answered
/// or its `key_rotation_timeout` passed (5 s by default, 25 s with the wan profile), and its
/// request timeout (30 s by default) bounds it anyway.
const KEYS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(35);

/// A fresh key from the OS RNG, as base64.
fn keygen() -> Result<zeroize::Zeroizing<String>> {
    use rand::TryRngCore as _;
    let mut bytes = zeroize::Zeroizing::new([0u8; chatter_core::KEY_LEN]);
    rand::rngs::OsRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|e| anyhow!("the operating system's random generator failed: {e}"))?;
    Ok(chatter_core::Key::from_bytes(*bytes).to_base64())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chatter: cannot start the Tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chatter: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Keygen = cli.command {
        // Local: no daemon is asked.
        let key = keygen()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", key.as_str())?;
        return Ok(());
    }
    let client =
        Client::with_ca(&cli.http, cli.ca.as_deref())?.with_token(cli.http_token.as_deref())?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Members { json, status } => {
            let path = match &status {
                Some(status) => format!("/v1/members?status={}", encode_query(status)),
                None => "/v1/members".to_owned(),
            };
            let response: MembersResponse = client.get(&path).await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &response)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", render::members_table(&response.members))?;
            }
        }
        Command::Member { name, json } => {
            let path = format!("/v1/members/{}", encode_path(&name));
            let member: MemberView = client.get(&path).await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &member)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", render::member_detail(&member))?;
            }
        }
        Command::Kv { command } => kv(&client, command, &mut out).await?,
        Command::Keys { command, json } => keys(&client, command, json, &mut out).await?,
        Command::Broadcast { tag, payload } => {
            let payload = RawValue::from_string(payload)
                .map_err(|e| anyhow!("the payload is not valid JSON: {e}"))?;
            let body = serde_json::to_vec(&BroadcastRequest { tag, payload })?;
            let response: BroadcastResponse = client
                .request(Method::POST, "/v1/messages", Some(Body::Json(body)))
                .await?;
            let id = response.id;
            writeln!(
                out,
                "broadcast message {}/{}/{} (origin/generation/seq)",
                id.origin, id.generation, id.seq
            )?;
        }
        // Handled above, without a daemon.
        Command::Keygen => {}
        Command::Events => {
            drop(out);
            return events(&client).await;
        }
        Command::Checks { status, node, json } => {
            let mut query = Vec::new();
            if let Some(status) = &status {
                query.push(format!("status={}", encode_query(status)));
            }
            if let Some(node) = &node {
                query.push(format!("node={}", encode_query(node)));
            }
            let response: ChecksResponse = client.get(&with_query("/v1/checks", &query)).await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &response)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", render::checks_table(&response))?;
            }
        }
        Command::Services { kind, json } => {
            let query: Vec<String> = kind
                .iter()
                .map(|k| format!("type={}", encode_query(k)))
                .collect();
            let response: ServicesResponse =
                client.get(&with_query("/v1/services", &query)).await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &response)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", render::services_table(&response))?;
            }
        }
        Command::Health { json } => {
            // Any answer but 200 is an error of `get` (a leaving daemon answers 503).
            let health: HealthView = client.get("/health").await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &health)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{}: {}, {} of {} members alive, health score {}",
                    health.name,
                    match health.status {
                        HealthStatus::Ok => "ok",
                        HealthStatus::Leaving => "leaving",
                    },
                    health.members_alive,
                    health.members_total,
                    health.health_score
                )?;
            }
        }
        Command::System { node, json } => {
            let query: Vec<String> = node
                .iter()
                .map(|n| format!("node={}", encode_query(n)))
                .collect();
            let response: SystemResponse = client.get(&with_query("/v1/system", &query)).await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &response)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", render::system_table(&response))?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `path?a&b` (just `path` without query parts).
fn with_query(path: &str, query: &[String]) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

async fn kv(client: &Client, command: KvCommand, out: &mut impl Write) -> Result<()> {
    match command {
        KvCommand::Get { node, key, json } => {
            let mut path = "/v1/kv".to_owned();
            if let Some(node) = &node {
                path.push_str(&format!("?node={}", encode_query(node)));
                if let Some(key) = &key {
                    path.push_str(&format!("&prefix={}", encode_query(key)));
                }
            }
            let states: Vec<NodeStateView> = client.get(&path).await?;
            match (node, key) {
                (Some(node), Some(key)) => {
                    let entry = states
                        .iter()
                        .flat_map(|s| &s.entries)
                        .find(|e| e.key == key)
                        .ok_or_else(|| anyhow!("key {key:?} is not set on node {node:?}"))?;
                    if json {
                        serde_json::to_writer_pretty(&mut *out, entry)?;
                        writeln!(out)?;
                    } else {
                        let bytes = entry.bytes()?;
                        out.write_all(&bytes)?;
                        if entry.encoding.is_none() && !bytes.ends_with(b"\n") {
                            writeln!(out)?;
                        }
                    }
                }
                _ if json => {
                    serde_json::to_writer_pretty(&mut *out, &states)?;
                    writeln!(out)?;
                }
                _ => write!(out, "{}", render::kv_table(&states))?,
            }
        }
        KvCommand::Set { key, value } => {
            let path = format!("/v1/kv/{}", encode_path(&key));
            let response: KvWriteResponse = client
                .request(Method::PUT, &path, Some(Body::Bytes(value.into_bytes())))
                .await?;
            writeln!(out, "set {} (version {})", response.key, response.version)?;
        }
        KvCommand::Delete { key } => {
            let path = format!("/v1/kv/{}", encode_path(&key));
            let response: KvWriteResponse = client.request(Method::DELETE, &path, None).await?;
            writeln!(
                out,
                "deleted {} (version {})",
                response.key, response.version
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The key argument, read from standard input for `-`.
fn key_argument(key: String) -> Result<zeroize::Zeroizing<String>> {
    if key != "-" {
        return Ok(zeroize::Zeroizing::new(key));
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
        .context("cannot read the key from standard input")?;
    Ok(zeroize::Zeroizing::new(text.trim().to_owned()))
}

async fn keys(
    client: &Client,
    command: KeysCommand,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let (method, path, key) = match command {
        KeysCommand::List => (Method::GET, "/v1/keys", None),
        KeysCommand::Install { key } => (Method::POST, "/v1/keys/install", Some(key)),
        KeysCommand::Use { key } => (Method::POST, "/v1/keys/use", Some(key)),
        KeysCommand::Remove { key } => (Method::POST, "/v1/keys/remove", Some(key)),
    };
    let body = match key {
        Some(key) => {
            let key = key_argument(key)?;
            Some(Body::Json(serde_json::to_vec(&KeyRequest {
                key: key.to_string(),
            })?))
        }
        None => None,
    };
    let response: KeyOperationResponse = client
        .request_within(method, path, body, KEYS_TIMEOUT)
        .await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &response)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render::key_report(&response))?;
    }
    out.flush()?;
    if !response.complete {
        return Err(anyhow!(
            "not every live node acknowledged: {} refused, {} silent",
            response.refused.len(),
            response.silent.len()
        ));
    }
    Ok(())
}

/// Prints each event's JSON on its own line until the stream ends. A closed standard output
/// (`chatter events | head`) ends it quietly.
async fn events(client: &Client) -> Result<()> {
    let result = client
        .follow_events(|data| {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{data}").and_then(|()| out.flush()) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
                Err(e) => Err(e).context("cannot write to standard output"),
            }
        })
        .await;
    result
}
