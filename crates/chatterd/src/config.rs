//! `--config FILE`: the daemon's flags as a TOML file.
//!
//! ```toml
//! listen = "0.0.0.0:2428"
//! advertise = "10.0.0.7:2428"
//! node-name = "web-1"
//! seed = ["10.0.0.5:2428", "seed.example.com:2428"]
//! http = "127.0.0.1:8428"
//! profile = "lan"
//! cluster = "prod"
//!
//! http-token = "s3cret"          # or CHATTERD_HTTP_TOKEN
//! status-interval = "10s"
//! event-handler-timeout = "30s"
//!
//! [tag]
//! role = "web"
//! zone = "eu-1"
//!
//! [[check]]
//! name = "disk"
//! cmd = "/usr/lib/nagios/plugins/check_disk -w 20% -c 10% -p /"
//! interval = "30s"
//! timeout = "10s"
//!
//! [[service]]
//! type = "searcher"
//! shard = 1
//!
//! [[event-handler]]
//! events = ["member-failed", "member-left"]
//! command = "/usr/local/bin/notify-oncall"
//! ```
//!
//! Every key is optional and checked like its flag; unknown keys are errors (a typo must not be
//! ignored). A flag given on the command line (or its environment variable) overrides the file;
//! `--seed`, `--tag`, `--check`, `--service` and `--event-handler` add to the file's (a `--tag`
//! replaces the file's value for the same key, a `--check` the file's check of the same name).
//! `docs/chatterd.example.toml` is a commented example with every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{anyhow, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use clap::ValueEnum;
use serde::Deserialize;

use crate::checks::{CheckKind, CheckSpec};
use crate::cli::{self, Args, Profile};
use crate::handlers::HandlerSpec;
use crate::process::parse_duration;

/// The keys of a config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--advertise`.
    pub advertise: Option<SocketAddr>,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `--seed`, as a list.
    #[serde(default)]
    pub seed: Vec<String>,
    /// `--http`.
    pub http: Option<SocketAddr>,
    /// `--tag`, as a table.
    #[serde(default)]
    pub tag: BTreeMap<String, String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--cluster`.
    pub cluster: Option<String>,
    /// `--http-token`.
    pub http_token: Option<String>,
    /// `--status-interval`, e.g. `"10s"` (`"0s"` turns it off).
    pub status_interval: Option<String>,
    /// `--event-handler-timeout`, e.g. `"30s"`.
    pub event_handler_timeout: Option<String>,
    /// `--check`, as `[[check]]` tables.
    #[serde(default)]
    pub check: Vec<FileCheck>,
    /// `--service`, as `[[service]]` tables.
    #[serde(default)]
    pub service: Vec<FileService>,
    /// `--event-handler`, as `[[event-handler]]` tables.
    #[serde(default)]
    pub event_handler: Vec<FileHandler>,
}

/// A `[[check]]` table: `name`, one of `cmd`, `http`, `tcp`, optional `interval` and `timeout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    /// The check's name.
    pub name: String,
    /// A command (`sh -c`).
    pub cmd: Option<String>,
    /// An `http://` URL.
    pub http: Option<String>,
    /// `HOST:PORT`.
    pub tcp: Option<String>,
    /// e.g. `"10s"`.
    pub interval: Option<String>,
    /// e.g. `"5s"`.
    pub timeout: Option<String>,
}

/// A shard, written as a string or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileShard {
    /// `shard = "eu-0"`.
    Text(String),
    /// `shard = 1`.
    Number(u64),
}

/// A `[[service]]` table: `type` and an optional `shard`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileService {
    /// The type of service.
    #[serde(rename = "type")]
    pub kind: String,
    /// The shard.
    pub shard: Option<FileShard>,
}

/// An `[[event-handler]]` table: `command` and optional `events` (filters; absent: all).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHandler {
    /// Filters, as for `--event-handler FILTER=...` (each may itself be a comma list).
    #[serde(default)]
    pub events: Vec<String>,
    /// The command (`sh -c`).
    pub command: String,
}

impl FileCheck {
    fn spec(self) -> Result<CheckSpec> {
        let name = self.name;
        let kind = match (self.cmd, self.http, self.tcp) {
            (Some(cmd), None, None) => CheckKind::Command(cmd),
            (None, Some(url), None) => CheckKind::Http(url),
            (None, None, Some(addr)) => CheckKind::Tcp(addr),
            _ => {
                return Err(anyhow!(
                    "check {name:?}: give exactly one of cmd, http, tcp"
                ))
            }
        };
        let duration = |what: &str, value: Option<String>| {
            value
                .map(|v| parse_duration(&v).map_err(|e| anyhow!("check {name:?}: {what}: {e}")))
                .transpose()
        };
        let interval = duration("interval", self.interval)?;
        let timeout = duration("timeout", self.timeout)?;
        CheckSpec::new(&name, kind, interval, timeout).map_err(|e| anyhow!("{e}"))
    }
}

impl FileConfig {
    /// Parses the text of a config file. The error is one line: `line N: what is wrong`.
    pub fn parse(text: &str) -> Result<FileConfig> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let before = &text.as_bytes()[..span.start.min(text.len())];
                    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                    anyhow!("line {line}: {message}")
                }
                None => anyhow!("{message}"),
            }
        })
    }
}

/// Reads `path` and merges it under the flags given on the command line (`matches` tells which
/// flags were given there rather than defaulted).
pub fn apply(args: &mut Args, matches: &ArgMatches, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read config {}: {}",
            path.display(),
            crate::daemon::io_message(&e)
        )
    })?;
    let file = FileConfig::parse(&text)
        .map_err(|e| anyhow!("invalid config {}: {e:#}", path.display()))?;
    merge(args, matches, file).map_err(|e| anyhow!("invalid config {}: {e:#}", path.display()))
}

fn from_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// Merges a parsed config file under the command line.
pub fn merge(args: &mut Args, matches: &ArgMatches, file: FileConfig) -> Result<()> {
    if let Some(listen) = file.listen {
        if !from_command_line(matches, "listen") {
            args.listen = listen;
        }
    }
    if args.advertise.is_none() {
        args.advertise = file.advertise;
    }
    if args.node_name.is_none() {
        if let Some(name) = file.node_name {
            args.node_name =
                Some(cli::parse_node_name(&name).map_err(|e| anyhow!("node-name: {e}"))?);
        }
    }
    if let Some(http) = file.http {
        if !from_command_line(matches, "http") {
            args.http = http;
        }
    }
    if args.profile.is_none() {
        if let Some(profile) = file.profile {
            args.profile = Some(Profile::from_str(&profile, true).map_err(|_| {
                anyhow!("profile: unknown profile {profile:?} (expected lan, wan or local)")
            })?);
        }
    }
    if let Some(cluster) = file.cluster {
        if !from_command_line(matches, "cluster") {
            args.cluster = cli::parse_cluster(&cluster).map_err(|e| anyhow!("cluster: {e}"))?;
        }
    }
    let mut seeds = Vec::new();
    for seed in file.seed {
        seeds.push(cli::parse_seed(&seed).map_err(|e| anyhow!("seed: {e}"))?);
    }
    for seed in args.seeds.drain(..) {
        if !seeds.contains(&seed) {
            seeds.push(seed);
        }
    }
    args.seeds = seeds;
    let mut tags = BTreeMap::new();
    for (key, value) in file.tag {
        let (key, value) =
            cli::parse_tag(&format!("{key}={value}")).map_err(|e| anyhow!("tag: {e}"))?;
        tags.insert(key, value);
    }
    tags.extend(args.tags.drain(..));
    args.tags = tags.into_iter().collect();

    if args.http_token.is_none() {
        if let Some(token) = file.http_token {
            args.http_token =
                Some(crate::auth::parse_token(&token).map_err(|e| anyhow!("http-token: {e}"))?);
        }
    }
    if let Some(interval) = file.status_interval {
        let interval = parse_duration(&interval).map_err(|e| anyhow!("status-interval: {e}"))?;
        if !from_command_line(matches, "status_interval") {
            args.status_interval = interval;
        }
    }
    if let Some(timeout) = file.event_handler_timeout {
        let timeout = cli::parse_positive_duration(&timeout)
            .map_err(|e| anyhow!("event-handler-timeout: {e}"))?;
        if !from_command_line(matches, "event_handler_timeout") {
            args.event_handler_timeout = timeout;
        }
    }
    let mut checks = Vec::new();
    for check in file.check {
        checks.push(check.spec()?);
    }
    for check in args.checks.drain(..) {
        checks.retain(|c: &CheckSpec| c.name != check.name);
        checks.push(check);
    }
    args.checks = checks;
    let mut services = Vec::new();
    for service in file.service {
        let shard = service.shard.map(|s| match s {
            FileShard::Text(text) => text,
            FileShard::Number(n) => n.to_string(),
        });
        services.push(
            crate::services::service(&service.kind, shard.as_deref())
                .map_err(|e| anyhow!("service: {e}"))?,
        );
    }
    for service in args.services.drain(..) {
        if !services.contains(&service) {
            services.push(service);
        }
    }
    args.services = services;
    let mut handlers = Vec::new();
    for handler in file.event_handler {
        handlers.push(
            HandlerSpec::new(
                handler.events.iter().flat_map(|e| e.split(',')),
                &handler.command,
            )
            .map_err(|e| anyhow!("event-handler: {e}"))?,
        );
    }
    handlers.append(&mut args.event_handlers);
    args.event_handlers = handlers;
    args.validate().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn merged(argv: &[&str], toml: &str) -> Result<Args> {
        let matches = Args::command().try_get_matches_from(argv).unwrap();
        let mut args = Args::from_arg_matches(&matches).unwrap();
        merge(&mut args, &matches, FileConfig::parse(toml)?)?;
        Ok(args)
    }

    const FILE: &str = r#"
        listen = "127.0.0.1:7000"
        node-name = "from-file"
        seed = ["10.0.0.5:2428"]
        http = "127.0.0.1:7001"
        profile = "wan"
        cluster = "prod"
        [tag]
        role = "web"
        zone = "a"
    "#;

    #[test]
    fn file_fills_what_the_command_line_does_not_give() {
        let args = merged(&["chatterd"], FILE).unwrap();
        assert_eq!(args.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(args.http, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(args.node_name.as_deref(), Some("from-file"));
        assert_eq!(args.profile, Some(Profile::Wan));
        assert_eq!(args.cluster, "prod");
        assert_eq!(args.seeds, ["10.0.0.5:2428"]);
        assert_eq!(args.tags.len(), 2);
    }

    #[test]
    fn command_line_wins_and_adds_to_lists() {
        let args = merged(
            &[
                "chatterd",
                "--listen",
                "127.0.0.1:9000",
                "--node-name",
                "cli",
                "--seed",
                "10.0.0.6:2428",
                "--tag",
                "zone=b",
                "--cluster",
                "chatter",
            ],
            FILE,
        )
        .unwrap();
        assert_eq!(args.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(args.http, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(args.node_name.as_deref(), Some("cli"));
        assert_eq!(args.cluster, "chatter");
        assert_eq!(args.seeds, ["10.0.0.5:2428", "10.0.0.6:2428"]);
        assert_eq!(
            args.tags,
            [
                ("role".to_owned(), "web".to_owned()),
                ("zone".to_owned(), "b".to_owned())
            ]
        );
    }

    #[test]
    fn the_example_config_parses_and_covers_the_monitoring_keys() {
        let text = include_str!("../../../docs/chatterd.example.toml");
        let args = merged(&["chatterd"], text).unwrap();
        assert!(args.node_name.is_some());
        assert!(args.http_token.is_some());
        assert!(!args.checks.is_empty());
        assert!(args
            .checks
            .iter()
            .any(|c| matches!(c.kind, CheckKind::Command(_))));
        assert!(args
            .checks
            .iter()
            .any(|c| matches!(c.kind, CheckKind::Http(_))));
        assert!(args
            .checks
            .iter()
            .any(|c| matches!(c.kind, CheckKind::Tcp(_))));
        assert!(!args.services.is_empty());
        assert!(!args.event_handlers.is_empty());
        // The example sets every key a flag has (but --config and --demo).
        let file = FileConfig::parse(text).unwrap();
        assert!(file.listen.is_some() && file.advertise.is_some() && file.http.is_some());
        assert!(file.profile.is_some() && file.cluster.is_some() && !file.seed.is_empty());
        assert!(file.status_interval.is_some() && file.event_handler_timeout.is_some());
        assert!(!file.tag.is_empty());
    }

    #[test]
    fn monitoring_keys_merge_under_the_command_line() {
        let file = r#"
            status-interval = "1m"
            event-handler-timeout = "5s"
            http-token = "from-file"
            [[check]]
            name = "disk"
            cmd = "true"
            [[check]]
            name = "web"
            http = "http://127.0.0.1:1/health"
            interval = "2s"
            [[service]]
            type = "searcher"
            shard = 1
            [[event-handler]]
            events = ["member-failed,member-left"]
            command = "logger"
        "#;
        let args = merged(
            &[
                "chatterd",
                "--check",
                "name=disk,cmd=false",
                "--service",
                "api",
                "--status-interval",
                "5s",
                "--http-token",
                "from-flag",
            ],
            file,
        )
        .unwrap();
        assert_eq!(args.status_interval, std::time::Duration::from_secs(5));
        assert_eq!(
            args.event_handler_timeout,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(args.http_token.as_deref(), Some("from-flag"));
        let checks: Vec<(&str, &CheckKind)> = args
            .checks
            .iter()
            .map(|c| (c.name.as_str(), &c.kind))
            .collect();
        assert_eq!(
            checks,
            [
                ("web", &CheckKind::Http("http://127.0.0.1:1/health".into())),
                ("disk", &CheckKind::Command("false".into())),
            ]
        );
        let keys: Vec<String> = args.services.iter().map(|s| s.key()).collect();
        assert_eq!(keys, ["service/searcher/1", "service/api"]);
        assert_eq!(args.event_handlers.len(), 1);
        assert_eq!(args.event_handlers[0].accept.len(), 2);
    }

    #[test]
    fn mistakes_are_one_line_errors() {
        for (toml, expected) in [
            ("lisen = \"127.0.0.1:1\"", "line 1: unknown field `lisen`"),
            ("\nlisten = \"nope\"", "line 2"),
            ("profile = \"fast\"", "unknown profile"),
            ("seed = [\"no-port\"]", "seed:"),
            ("[tag]\n\"bad key\" = \"x\"", "tag:"),
            ("listen = ", "line 1"),
            ("[[check]]\nname = \"x\"", "exactly one of cmd"),
            (
                "[[check]]\nname = \"x\"\ncmd = \"true\"\nevery = 1",
                "unknown field",
            ),
            (
                "[[check]]\nname = \"x\"\ncmd = \"true\"\ninterval = \"fast\"",
                "interval",
            ),
            ("[[service]]\ntype = \"a b\"", "service:"),
            (
                "[[event-handler]]\nevents = [\"nope\"]\ncommand = \"x\"",
                "event filter",
            ),
            ("status-interval = \"soon\"", "status-interval"),
            ("http-token = \"two words\"", "http-token"),
        ] {
            let err = merged(&["chatterd"], toml).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml:?}: {err}");
            assert!(!err.contains('\n'), "{toml:?}: {err}");
        }
    }
}
