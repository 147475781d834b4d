//! `chatter`: the command-line client of the `chatterd` HTTP API.
//!
//! ```text
//! chatter members [--json] [--status failed,suspect]   # the member table
//! chatter member NAME [--json]                         # one member, with the evidence
//! ```
//!
//! `--http ADDR` (or `CHATTER_HTTP`) says where the daemon's API is; default
//! `127.0.0.1:8428`, chatterd's default.
//!
//! HTTP client: async `reqwest` on a current-thread Tokio runtime. Both are already workspace
//! dependencies (the daemon uses Tokio, and reqwest shares hyper with axum), so this costs
//! almost nothing to build, and it handles the parts of HTTP a hand-written client would get
//! wrong (chunked bodies, keep-alive, timeouts). `ureq` would be one more HTTP stack to build.

mod render;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chatter_api::{ErrorBody, MemberView, MembersResponse};
use clap::{Parser, Subcommand};
use serde::de::DeserializeOwned;

/// Address of chatterd's HTTP API when neither `--http` nor `CHATTER_HTTP` is given.
const DEFAULT_HTTP: &str = "127.0.0.1:8428";
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "chatter",
    version,
    about = "Query a chatterd daemon: who is up, who is failing, and why"
)]
struct Cli {
    /// Address of the daemon's HTTP API: HOST:PORT or http://HOST:PORT.
    #[arg(long, global = true, env = "CHATTER_HTTP", default_value = DEFAULT_HTTP, value_name = "ADDR")]
    http: String,

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
    let client = Client::new(&cli.http)?;
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
    }
    out.flush()?;
    Ok(())
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(addr: &str) -> Result<Self> {
        let addr = addr.trim().trim_end_matches('/');
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Self { base, http })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach chatterd at {}: {}", self.base, describe(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| anyhow!("cannot read the answer of {url}: {}", describe(&e)))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(err) => anyhow!("{}", err.error),
                Err(_) => anyhow!("{url} answered {status}"),
            });
        }
        serde_json::from_slice(&body)
            .map_err(|e| anyhow!("unexpected answer from {url} (is it chatterd?): {e}"))
    }
}

/// A short reason for a failed request: `connection refused`, `timed out`, ...
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return format!("timed out after {REQUEST_TIMEOUT:?}");
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ => {
                    let text = io.to_string();
                    text.split(" (os error ").next().unwrap_or(&text).to_owned()
                }
            };
        }
        source = e.source();
    }
    // No IO error underneath: the innermost message is the most specific.
    let mut last = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        last = e.to_string();
        source = e.source();
    }
    last
}

/// Percent-encodes a path segment (a member name may contain `/`, `?`, `#`, `%`, ...).
fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value, keeping the commas of a status list readable.
fn encode_query(value: &str) -> String {
    encode_path(value).replace("%2C", ",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(
            Client::new("127.0.0.1:8428").unwrap().base,
            "http://127.0.0.1:8428"
        );
        assert_eq!(Client::new("http://h:1/").unwrap().base, "http://h:1");
    }

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(encode_path("web-1.eu"), "web-1.eu");
        assert_eq!(encode_path("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_query("failed,suspect"), "failed,suspect");
    }
}
