//! Command-line flags of `chatterd`.

use std::net::SocketAddr;

use std::time::Duration;

use chatter::Config;
use chatter_api::ServiceDecl;
use clap::{Parser, ValueEnum};

use crate::checks::CheckSpec;
use crate::handlers::HandlerSpec;

/// Default gossip (UDP) address: every interface, port 2428.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:2428";
/// Default HTTP API address: loopback only, port 8428. Expose the API on purpose with
/// `--http 0.0.0.0:8428`, and then with `--http-token`.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8428";
/// Number of nodes `--demo` starts when no number is given.
pub const DEFAULT_DEMO_NODES: u32 = 5;

/// The flags of `chatterd`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chatterd",
    version,
    about = "Chatter daemon: gossip-based membership and failure detection (SWIM + Lifeguard)",
    long_about = "Chatter daemon: gossip-based membership and failure detection (SWIM + Lifeguard).\n\n\
        Run one on every server, each with --seed pointing at one or more others. The daemon \
        prints `chatterd ready name=... gossip=... http=... pid=...` on standard output once \
        it is up. RUST_LOG sets the log level (default info). SIGINT/SIGTERM: leave the \
        cluster gracefully, then exit 0."
)]
pub struct Args {
    /// UDP address to bind for gossip (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Gossip address other members should use to reach this node [default: the bound
    /// address, or the outgoing interface's address when bound to 0.0.0.0].
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<SocketAddr>,

    /// Name of this node, unique in the cluster [default: the host name].
    #[arg(long, value_name = "NAME", value_parser = parse_node_name)]
    pub node_name: Option<String>,

    /// A member to join through, as HOST:PORT (repeatable). DNS names are re-resolved
    /// periodically; a seed that cannot be resolved or reached yet is retried.
    #[arg(long = "seed", value_name = "HOST:PORT", value_parser = parse_seed)]
    pub seeds: Vec<String>,

    /// TCP address of the HTTP API (port 0 picks a free port). Loopback only by default; on
    /// another address, set --http-token too.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP)]
    pub http: SocketAddr,

    /// A tag KEY=VALUE published with this node (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,

    /// Protocol timing profile: lan (one data centre), wan (across regions), local (processes
    /// on one machine: ten times faster than lan) [default: lan; local with --demo].
    #[arg(long, value_enum, value_name = "PROFILE")]
    pub profile: Option<Profile>,

    /// Name of the cluster; packets from other clusters are dropped.
    #[arg(long, value_name = "NAME", default_value = "chatter", value_parser = parse_cluster)]
    pub cluster: String,

    /// Bearer token that every HTTP request changing something (PUT, DELETE, POST) must send
    /// as `Authorization: Bearer TOKEN`; others get 401. Reads stay open. Also read from the
    /// CHATTERD_HTTP_TOKEN environment variable (which keeps it out of `ps`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CHATTERD_HTTP_TOKEN",
        hide_env_values = true,
        value_parser = crate::auth::parse_token
    )]
    pub http_token: Option<String>,

    /// A health check (repeatable): `name=NAME,cmd=COMMAND` (exit 0 passing, 1 warning,
    /// anything else or the timeout critical), `name=NAME,http=http://...` (2xx passing) or
    /// `name=NAME,tcp=HOST:PORT` (connects: passing), with optional `interval=` (default 10s)
    /// and `timeout=` (default 5s). `cmd=` comes last: it takes the rest, commas included.
    /// Results are gossiped as the key check/NAME.
    #[arg(long = "check", value_name = "SPEC", value_parser = crate::checks::parse_check)]
    pub checks: Vec<CheckSpec>,

    /// A service this node runs, as TYPE or TYPE:SHARD (repeatable), e.g. `searcher:1`.
    /// Gossiped as the key service/TYPE[/SHARD]; `GET /v1/services` groups the cluster's.
    #[arg(
        long = "service",
        value_name = "TYPE[:SHARD]",
        value_parser = crate::services::parse_service
    )]
    pub services: Vec<ServiceDecl>,

    /// Run COMMAND with `sh -c` for each event FILTER accepts (repeatable); the event's JSON
    /// on standard input, CHATTER_EVENT, CHATTER_NODE, CHATTER_MEMBER, CHATTER_MEMBER_ADDR
    /// ... in the environment. FILTER: comma-separated member-joined, member-suspect,
    /// member-alive, member-failed, member-left, member-updated, member-reaped,
    /// member-conflict, member, message[:TAG], key-changed[:PREFIX], all [default: all].
    #[arg(
        long = "event-handler",
        value_name = "[FILTER=]COMMAND",
        value_parser = crate::handlers::parse_handler
    )]
    pub event_handlers: Vec<HandlerSpec>,

    /// How long an event handler may run before it is killed (with its process group).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_positive_duration
    )]
    pub event_handler_timeout: Duration,

    /// How often the system status (load, CPU, memory, root disk) is sampled; a value is
    /// republished only when it moved past its threshold. 0 turns the system status off.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        value_parser = crate::process::parse_duration
    )]
    pub status_interval: Duration,

    /// A TOML file with the same keys as these flags (see docs/chatterd.example.toml); flags
    /// given on the command line override it; `--seed`, `--tag`, `--check`, `--service` and
    /// `--event-handler` add to its lists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Start a demo cluster of N local chatterd processes on 127.0.0.1 instead of one daemon,
    /// print how to reach them, and stop them on Ctrl-C.
    #[arg(
        long,
        value_name = "N",
        num_args = 0..=1,
        default_missing_value = "5",
        value_parser = clap::value_parser!(u32).range(1..=64),
        conflicts_with_all = ["listen", "advertise", "node_name", "seeds", "http", "config"],
    )]
    pub demo: Option<u32>,
}

/// Protocol timing profile, see [`chatter::Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// One data centre or cloud region (the default).
    Lan,
    /// Members spread over regions.
    Wan,
    /// Processes on one machine: ten times faster than `lan`.
    Local,
}

impl Profile {
    /// The protocol configuration of this profile.
    pub fn config(self) -> Config {
        match self {
            Profile::Lan => Config::lan(),
            Profile::Wan => Config::wan(),
            Profile::Local => Config::local(),
        }
    }

    /// The flag value of this profile.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Lan => "lan",
            Profile::Wan => "wan",
            Profile::Local => "local",
        }
    }
}

impl Args {
    /// Checks the rules that span several flags: check names unique, at most 64 checks,
    /// services and event handlers.
    pub fn validate(&self) -> Result<(), String> {
        let mut names: Vec<&str> = self.checks.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(dup) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two checks are named {:?}", dup[0]));
        }
        let limits = [
            ("checks", self.checks.len(), crate::checks::MAX_CHECKS),
            (
                "services",
                self.services.len(),
                crate::services::MAX_SERVICES,
            ),
            (
                "event handlers",
                self.event_handlers.len(),
                crate::handlers::MAX_HANDLERS,
            ),
        ];
        for (what, count, max) in limits {
            if count > max {
                return Err(format!("{count} {what}: at most {max} are allowed"));
            }
        }
        Ok(())
    }
}

/// Parses a duration above zero (see [`crate::process::parse_duration`]).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = crate::process::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be above 0".into());
    }
    Ok(d)
}

fn valid_name_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control()
}

/// Parses `--node-name`: non-empty, at most 128 bytes, no whitespace or control characters.
pub fn parse_node_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 128 {
        return Err("must be at most 128 bytes".into());
    }
    if !s.chars().all(valid_name_char) {
        return Err("must not contain whitespace or control characters".into());
    }
    Ok(s.to_owned())
}

/// Parses `--cluster`: the same rules as a node name.
pub fn parse_cluster(s: &str) -> Result<String, String> {
    parse_node_name(s)
}

/// Parses `--seed`: `HOST:PORT` with a non-empty host and a port in 1..=65535.
/// IPv6 literals go in brackets: `[::1]:2428`.
pub fn parse_seed(s: &str) -> Result<String, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, got {s:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || !host.chars().all(valid_name_char) {
        return Err(format!("expected HOST:PORT, got {s:?}"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port in {s:?}")),
        Ok(_) => Ok(s.to_owned()),
    }
}

/// Parses `--tag`: `KEY=VALUE`; the key is non-empty and made of letters, digits and `_ - . /`;
/// the value has no control characters (it may be empty).
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    if key.is_empty() {
        return Err(format!("empty key in {s:?}"));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    {
        return Err(format!(
            "invalid key {key:?}: use letters, digits and _ - . /"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("control character in the value of {key:?}"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// The host name of this machine, used as the default node name.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for writes of its length; gethostname NUL-terminates on
    // success when the name fits, and we stop at the first NUL or the end of the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..len]).trim().to_owned();
    parse_node_name(&name).ok()
}

/// Turns a clap error into one line (`invalid value 'x' for '--tag <KEY=VALUE>': ...`), without
/// the usage block that clap prints after it.
pub fn one_line_error(err: &clap::Error) -> String {
    // The first paragraph ("error: ..." and, for a missing argument, the lines naming it).
    let rendered = err.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty())
        .take_while(|line| !line.is_empty())
        .collect();
    let first = paragraph.join(" ");
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    let first = if first.is_empty() {
        "invalid arguments"
    } else {
        first
    };
    format!("{first} (see chatterd --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_need_a_key_and_an_equals_sign() {
        assert_eq!(
            parse_tag("role=web").unwrap(),
            ("role".to_owned(), "web".to_owned())
        );
        assert_eq!(parse_tag("empty=").unwrap().1, "");
        assert_eq!(parse_tag("a=b=c").unwrap().1, "b=c");
        assert!(parse_tag("nonsense").is_err());
        assert!(parse_tag("=value").is_err());
        assert!(parse_tag("bad key=v").is_err());
    }

    #[test]
    fn seeds_need_a_host_and_a_port() {
        assert!(parse_seed("db-1.example.com:2428").is_ok());
        assert!(parse_seed("127.0.0.1:2428").is_ok());
        assert!(parse_seed("[::1]:2428").is_ok());
        assert!(parse_seed("db-1").is_err());
        assert!(parse_seed(":2428").is_err());
        assert!(parse_seed("db-1:0").is_err());
        assert!(parse_seed("db-1:99999").is_err());
    }

    #[test]
    fn demo_takes_an_optional_count() {
        let args = Args::try_parse_from(["chatterd", "--demo"]).unwrap();
        assert_eq!(args.demo, Some(DEFAULT_DEMO_NODES));
        let args = Args::try_parse_from(["chatterd", "--demo", "3"]).unwrap();
        assert_eq!(args.demo, Some(3));
        let args = Args::try_parse_from(["chatterd"]).unwrap();
        assert_eq!(args.demo, None);
        assert!(Args::try_parse_from(["chatterd", "--demo", "--listen", "127.0.0.1:1"]).is_err());
    }

    #[test]
    fn clap_errors_become_one_line() {
        let err = Args::try_parse_from(["chatterd", "--tag", "nonsense"]).unwrap_err();
        let line = one_line_error(&err);
        assert!(!line.contains('\n'));
        assert!(line.contains("--tag"), "{line}");
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let args = Args::try_parse_from(["chatterd"]).unwrap();
        assert_eq!(args.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(args.http, DEFAULT_HTTP.parse().unwrap());
        assert!(args.http.ip().is_loopback());
        assert_eq!(args.cluster, "chatter");
    }
}
