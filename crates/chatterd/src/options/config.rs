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
//! keyring-file = "/etc/chatterd/keyring"   # or CHATTER_GOSSIP_KEY
//! encryption-mode = "sealed"
//! http-allowed-host = ["chatter.example.com"]
//! http-max-connections = 256
//! http-max-event-streams = 64
//! http-header-timeout = "10s"
//! http-request-timeout = "30s"
//! http-idle-timeout = "60s"
//! http-tls-cert = "/etc/chatterd/tls/cert.pem"
//! http-tls-key = "/etc/chatterd/tls/key.pem"
//! status-interval = "30s"
//! event-handler-timeout = "30s"
//! discover = true                # LAN discovery by multicast (the --discover-* flags too)
//!
//! # protocol timings on top of the profile (the flags of the same names)
//! probe-interval = "1s"
//! suspicion-mult = 4
//! sync-interval = "30s"
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
//! `--seed`, `--tag`, `--check`, `--service`, `--event-handler` and `--http-allowed-host` add
//! to the file's (a `--tag`
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

use crate::foundation::duration::parse_duration;
use crate::foundation::io::io_message;
use crate::options::checks::{CheckKind, CheckSpec};
use crate::options::encryption::EncryptionMode;
use crate::options::flags::{Args, Profile, Timings};
use crate::options::hooks::HandlerSpec;
use crate::options::values;

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
    /// `--keyring-file`: the path of the keyring file (never key material in this file).
    pub keyring_file: Option<String>,
    /// `--encryption-mode`: `accept-sealed`, `send-sealed` or `sealed`.
    pub encryption_mode: Option<String>,
    /// `--http-allowed-host`, as a list.
    #[serde(default)]
    pub http_allowed_host: Vec<String>,
    /// `--http-max-connections`.
    pub http_max_connections: Option<i64>,
    /// `--http-max-event-streams`.
    pub http_max_event_streams: Option<i64>,
    /// `--http-header-timeout`, e.g. `"10s"`.
    pub http_header_timeout: Option<String>,
    /// `--http-request-timeout`, e.g. `"30s"`.
    pub http_request_timeout: Option<String>,
    /// `--http-idle-timeout`, e.g. `"60s"`.
    pub http_idle_timeout: Option<String>,
    /// `--http-tls-cert`: the path of a PEM certificate chain.
    pub http_tls_cert: Option<String>,
    /// `--http-tls-key`: the path of its PEM private key.
    pub http_tls_key: Option<String>,
    /// `--status-interval`, e.g. `"10s"` (`"0s"` turns it off).
    pub status_interval: Option<String>,
    /// `--data-dir`: the directory of the node's saved state.
    pub data_dir: Option<String>,
    /// `--event-handler-timeout`, e.g. `"30s"`.
    pub event_handler_timeout: Option<String>,
    /// `--discover`.
    pub discover: Option<bool>,
    /// `--discover-interface`.
    pub discover_interface: Option<String>,
    /// `--discover-port`.
    pub discover_port: Option<i64>,
    /// `--discover-ipv4-group`, an address or `"off"`.
    pub discover_ipv4_group: Option<String>,
    /// `--discover-ipv6-group`, an address or `"off"`.
    pub discover_ipv6_group: Option<String>,
    /// `--check`, as `[[check]]` tables.
    #[serde(default)]
    pub check: Vec<FileCheck>,
    /// `--service`, as `[[service]]` tables.
    #[serde(default)]
    pub service: Vec<FileService>,
    /// `--event-handler`, as `[[event-handler]]` tables.
    #[serde(default)]
    pub event_handler: Vec<FileHandler>,

    /// `--probe-interval`, e.g. `"1s"`.
    pub probe_interval: Option<String>,
    /// `--probe-timeout`, e.g. `"500ms"`.
    pub probe_timeout: Option<String>,
    /// `--indirect-checks`.
    pub indirect_checks: Option<i64>,
    /// `--suspicion-mult`.
    pub suspicion_mult: Option<i64>,
    /// `--suspicion-max-timeout-mult`.
    pub suspicion_max_timeout_mult: Option<i64>,
    /// `--suspicion-confirmations`.
    pub suspicion_confirmations: Option<i64>,
    /// `--unreachable-suspicion-timeout`, e.g. `"1s"`.
    pub unreachable_suspicion_timeout: Option<String>,
    /// `--host-checks`: `"on"` or `"off"`.
    pub host_checks: Option<String>,
    /// `--host-check-timeout`, e.g. `"300ms"`.
    pub host_check_timeout: Option<String>,
    /// `--silent-host-suspicion-timeout`, e.g. `"1s"`.
    pub silent_host_suspicion_timeout: Option<String>,
    /// `--flap-damping-half-life`, e.g. `"2m"` (`"0"` turns damping off).
    pub flap_damping_half_life: Option<String>,
    /// `--gossip-interval`, e.g. `"200ms"`.
    pub gossip_interval: Option<String>,
    /// `--gossip-fanout`.
    pub gossip_fanout: Option<i64>,
    /// `--retransmit-mult`.
    pub retransmit_mult: Option<i64>,
    /// `--sync-interval`, e.g. `"10s"`.
    pub sync_interval: Option<String>,
}

/// A `[[check]]` table: `name`, one of `cmd`, `http`, `tcp`, optional `interval` and `timeout`,
/// and for `http` optional `ca` and `tls-skip-verify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    /// The check's name.
    pub name: String,
    /// A command (`sh -c`).
    pub cmd: Option<String>,
    /// An `http://` or `https://` URL.
    pub http: Option<String>,
    /// `HOST:PORT`.
    pub tcp: Option<String>,
    /// e.g. `"10s"`.
    pub interval: Option<String>,
    /// e.g. `"5s"`.
    pub timeout: Option<String>,
    /// The path of a PEM file whose certificates replace the built-in roots (`http` only).
    pub ca: Option<String>,
    /// Accept any certificate (`http` only; insecure). `tls_skip_verify` is accepted too.
    #[serde(rename = "tls-skip-verify", alias = "tls_skip_verify")]
    pub tls_skip_verify: Option<bool>,
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
        CheckSpec::new(&name, kind, interval, timeout)
            .and_then(|spec| {
                spec.with_tls(self.ca.as_deref(), self.tls_skip_verify.unwrap_or(false))
            })
            .map_err(|e| anyhow!("{e}"))
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
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read config {}: {}", path.display(), io_message(&e)))?;
    let file = FileConfig::parse(&text)
        .map_err(|e| anyhow!("invalid config {}: {e:#}", path.display()))?;
    merge(args, matches, file).map_err(|e| anyhow!("invalid config {}: {e:#}", path.display()))
}

fn from_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// Merges a parsed config file under the command line.
pub fn merge(args: &mut Args, matches: &ArgMatches, file: FileConfig) -> Result<()> {
    merge_timings(&mut args.timings, &file)?;
    merge_http(args, matches, &file)?;
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
                Some(values::parse_node_name(&name).map_err(|e| anyhow!("node-name: {e}"))?);
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
            args.cluster = values::parse_cluster(&cluster).map_err(|e| anyhow!("cluster: {e}"))?;
        }
    }
    let mut seeds = Vec::new();
    for seed in file.seed {
        seeds.push(values::parse_seed(&seed).map_err(|e| anyhow!("seed: {e}"))?);
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
            values::parse_tag(&format!("{key}={value}")).map_err(|e| anyhow!("tag: {e}"))?;
        tags.insert(key, value);
    }
    tags.extend(args.tags.drain(..));
    args.tags = tags.into_iter().collect();

    if args.http_token.is_none() {
        if let Some(token) = file.http_token {
            args.http_token =
                Some(values::parse_token(&token).map_err(|e| anyhow!("http-token: {e}"))?);
        }
    }
    if args.keyring_file.is_none() {
        args.keyring_file = file.keyring_file.map(std::path::PathBuf::from);
    }
    if args.data_dir.is_none() {
        args.data_dir = file.data_dir.map(std::path::PathBuf::from);
    }
    if args.encryption_mode.is_none() {
        if let Some(mode) = file.encryption_mode {
            args.encryption_mode = Some(EncryptionMode::from_str(&mode, false).map_err(|_| {
                anyhow!(
                    "encryption-mode: unknown mode {mode:?} (expected accept-sealed, \
                         send-sealed or sealed)"
                )
            })?);
        }
    }
    if let Some(interval) = file.status_interval {
        let interval = parse_duration(&interval).map_err(|e| anyhow!("status-interval: {e}"))?;
        if !from_command_line(matches, "status_interval") {
            args.status_interval = interval;
        }
    }
    if let Some(timeout) = file.event_handler_timeout {
        let timeout = values::parse_positive_duration(&timeout)
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
            crate::options::services::service(&service.kind, shard.as_deref())
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
    let discover = crate::options::discover::FileDiscover {
        discover: file.discover,
        discover_interface: file.discover_interface,
        discover_port: file.discover_port,
        discover_ipv4_group: file.discover_ipv4_group,
        discover_ipv6_group: file.discover_ipv6_group,
    };
    crate::options::discover::merge(&mut args.discover, matches, discover)?;
    args.validate().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Merges the HTTP API's bounds, allowed hosts and TLS files under the command line (each
/// checked like its flag, even when the flag overrides it).
fn merge_http(args: &mut Args, matches: &ArgMatches, file: &FileConfig) -> Result<()> {
    let http = &mut args.http_options;
    let timeouts = [
        (
            "http-header-timeout",
            "http_header_timeout",
            &file.http_header_timeout,
            &mut http.http_header_timeout,
        ),
        (
            "http-request-timeout",
            "http_request_timeout",
            &file.http_request_timeout,
            &mut http.http_request_timeout,
        ),
        (
            "http-idle-timeout",
            "http_idle_timeout",
            &file.http_idle_timeout,
            &mut http.http_idle_timeout,
        ),
    ];
    for (key, id, value, slot) in timeouts {
        if let Some(value) = value {
            let value =
                values::parse_positive_duration(value).map_err(|e| anyhow!("{key}: {e}"))?;
            if !from_command_line(matches, id) {
                *slot = value;
            }
        }
    }
    let caps = [
        (
            "http-max-connections",
            "http_max_connections",
            file.http_max_connections,
            &mut http.http_max_connections,
        ),
        (
            "http-max-event-streams",
            "http_max_event_streams",
            file.http_max_event_streams,
            &mut http.http_max_event_streams,
        ),
    ];
    for (key, id, value, slot) in caps {
        if let Some(value) = value {
            let value = values::parse_max_connections(&value.to_string())
                .map_err(|e| anyhow!("{key}: {e}"))?;
            if !from_command_line(matches, id) {
                *slot = value;
            }
        }
    }
    let mut hosts = Vec::new();
    for host in &file.http_allowed_host {
        hosts
            .push(values::parse_allowed_host(host).map_err(|e| anyhow!("http-allowed-host: {e}"))?);
    }
    for host in http.http_allowed_hosts.drain(..) {
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    http.http_allowed_hosts = hosts;
    if http.http_tls_cert.is_none() {
        http.http_tls_cert = file.http_tls_cert.as_ref().map(Into::into);
    }
    if http.http_tls_key.is_none() {
        http.http_tls_key = file.http_tls_key.as_ref().map(Into::into);
    }
    Ok(())
}

/// Fills the timings the command line did not give from the file (each checked like its flag,
/// even when the flag overrides it).
fn merge_timings(timings: &mut Timings, file: &FileConfig) -> Result<()> {
    fn fill<T>(
        slot: &mut Option<T>,
        key: &str,
        value: Option<String>,
        parse: fn(&str) -> std::result::Result<T, String>,
    ) -> Result<()> {
        if let Some(value) = value {
            let value = parse(&value).map_err(|e| anyhow!("{key}: {e}"))?;
            slot.get_or_insert(value);
        }
        Ok(())
    }
    let number = |v: Option<i64>| v.map(|n| n.to_string());
    let duration = values::parse_positive_duration;
    let t = timings;
    fill(
        &mut t.probe_interval,
        "probe-interval",
        file.probe_interval.clone(),
        duration,
    )?;
    fill(
        &mut t.probe_timeout,
        "probe-timeout",
        file.probe_timeout.clone(),
        duration,
    )?;
    fill(
        &mut t.indirect_checks,
        "indirect-checks",
        number(file.indirect_checks),
        values::parse_indirect_checks,
    )?;
    fill(
        &mut t.suspicion_mult,
        "suspicion-mult",
        number(file.suspicion_mult),
        values::parse_multiplier,
    )?;
    fill(
        &mut t.suspicion_max_timeout_mult,
        "suspicion-max-timeout-mult",
        number(file.suspicion_max_timeout_mult),
        values::parse_multiplier,
    )?;
    fill(
        &mut t.suspicion_confirmations,
        "suspicion-confirmations",
        number(file.suspicion_confirmations),
        values::parse_confirmations,
    )?;
    fill(
        &mut t.unreachable_suspicion_timeout,
        "unreachable-suspicion-timeout",
        file.unreachable_suspicion_timeout.clone(),
        duration,
    )?;
    fill(
        &mut t.host_checks,
        "host-checks",
        file.host_checks.clone(),
        values::parse_on_off,
    )?;
    fill(
        &mut t.host_check_timeout,
        "host-check-timeout",
        file.host_check_timeout.clone(),
        duration,
    )?;
    fill(
        &mut t.silent_host_suspicion_timeout,
        "silent-host-suspicion-timeout",
        file.silent_host_suspicion_timeout.clone(),
        duration,
    )?;
    fill(
        &mut t.flap_damping_half_life,
        "flap-damping-half-life",
        file.flap_damping_half_life.clone(),
        parse_duration,
    )?;
    fill(
        &mut t.gossip_interval,
        "gossip-interval",
        file.gossip_interval.clone(),
        duration,
    )?;
    fill(
        &mut t.gossip_fanout,
        "gossip-fanout",
        number(file.gossip_fanout),
        values::parse_fanout,
    )?;
    fill(
        &mut t.retransmit_mult,
        "retransmit-mult",
        number(file.retransmit_mult),
        values::parse_multiplier,
    )?;
    fill(
        &mut t.sync_interval,
        "sync-interval",
        file.sync_interval.clone(),
        duration,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};
    use std::time::Duration;

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

    /// Removes the file on drop.
    struct TempPath(std::path::PathBuf);

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// docs/chatterd.example.toml, with its `ca` file made here (a config's CA file is read
    /// when the config is), under a name of its own per `tag`.
    fn example_config(tag: &str) -> (String, TempPath) {
        let ca = std::env::temp_dir().join(format!(
            "chatterd-example-{}-{tag}-ca.pem",
            std::process::id()
        ));
        let cert = rcgen::generate_simple_self_signed(vec!["api.internal".to_owned()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let text = include_str!("../../../../docs/chatterd.example.toml")
            .replace("/etc/chatterd/internal-ca.pem", &ca.display().to_string());
        (text, TempPath(ca))
    }

    #[test]
    fn discovery_keys_merge_under_the_flags() {
        let toml = "discover = true\ndiscover-interface = \"eth1\"\ndiscover-port = 3000\n\
                    discover-ipv4-group = \"off\"\n";
        let args = merged(&["chatterd"], toml).unwrap();
        let settings = args.discover.settings().unwrap();
        assert_eq!(settings.interface.as_deref(), Some("eth1"));
        assert_eq!(settings.port, 3000);
        assert_eq!(settings.ipv4_group, None);
        assert!(settings.ipv6_group.is_some());
        let args = merged(&["chatterd", "--discover-port", "4000"], toml).unwrap();
        assert_eq!(args.discover.discover_port, 4000);
        for bad in [
            "discover-port = 0\n",
            "discover-port = 70000\n",
            "discover-ipv4-group = \"10.0.0.1\"\n",
            "discover-ipv6-group = \"ff05::1\"\n",
            "discover-interface = \"a/b\"\n",
            "discover = true\ndiscover-ipv4-group = \"off\"\ndiscover-ipv6-group = \"off\"\n",
        ] {
            assert!(merged(&["chatterd"], bad).is_err(), "{bad}");
        }
        assert_eq!(merged(&["chatterd"], "").unwrap().discover.settings(), None);
    }

    #[test]
    fn encryption_keys_merge_under_the_flags() {
        let toml = "keyring-file = \"/etc/k\"\nencryption-mode = \"send-sealed\"\n";
        let args = merged(&["chatterd"], toml).unwrap();
        assert_eq!(args.keyring_file.as_deref(), Some(Path::new("/etc/k")));
        assert_eq!(args.encryption_mode, Some(EncryptionMode::SendSealed));
        let args = merged(
            &[
                "chatterd",
                "--keyring-file",
                "/x",
                "--encryption-mode",
                "sealed",
            ],
            toml,
        )
        .unwrap();
        assert_eq!(args.keyring_file.as_deref(), Some(Path::new("/x")));
        assert_eq!(args.encryption_mode, Some(EncryptionMode::Sealed));
        let err = merged(&["chatterd"], "encryption-mode = \"loud\"").unwrap_err();
        assert!(err.to_string().starts_with("encryption-mode: "), "{err}");
    }

    #[test]
    fn the_data_dir_merges_under_the_flag() {
        let toml = "data-dir = \"/var/lib/chatterd\"\n";
        let args = merged(&["chatterd"], toml).unwrap();
        assert_eq!(
            args.data_dir.as_deref(),
            Some(Path::new("/var/lib/chatterd"))
        );
        let args = merged(&["chatterd", "--data-dir", "/srv/c"], toml).unwrap();
        assert_eq!(args.data_dir.as_deref(), Some(Path::new("/srv/c")));
    }

    #[test]
    fn the_example_config_parses_and_covers_the_monitoring_keys() {
        let (text, _ca) = example_config("monitoring");
        let text = text.as_str();
        let args = merged(&["chatterd"], text).unwrap();
        assert!(args.checks.iter().any(|c| c.tls.ca.is_some()));
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
        assert!(!file.http_allowed_host.is_empty() && file.http_max_connections.is_some());
        assert!(file.http_max_event_streams.is_some() && file.http_header_timeout.is_some());
        assert!(file.http_request_timeout.is_some() && file.http_idle_timeout.is_some());
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
    fn https_checks_take_their_tls_keys_from_the_file() {
        let file = r#"
            [[check]]
            name = "api"
            http = "https://10.0.0.7:8443/health"
            tls-skip-verify = true
            [[check]]
            name = "consul-style"
            http = "https://10.0.0.8:8443/health"
            tls_skip_verify = true
            [[check]]
            name = "plain"
            http = "https://10.0.0.9/health"
            tls-skip-verify = false
        "#;
        let args = merged(&["chatterd"], file).unwrap();
        let skips: Vec<(&str, bool)> = args
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.tls.skip_verify))
            .collect();
        assert_eq!(
            skips,
            [("api", true), ("consul-style", true), ("plain", false)]
        );
    }

    #[test]
    fn http_keys_merge_under_the_flags() {
        let file = r#"
            http-allowed-host = ["Chatter.Example.", "10.0.0.9"]
            http-max-connections = 100
            http-max-event-streams = 10
            http-header-timeout = "5s"
            http-request-timeout = "20s"
            http-idle-timeout = "2m"
            http-tls-cert = "/etc/chatterd/cert.pem"
            http-tls-key = "/etc/chatterd/key.pem"
        "#;
        let args = merged(&["chatterd"], file).unwrap();
        let http = &args.http_options;
        assert_eq!(http.http_allowed_hosts, ["chatter.example", "10.0.0.9"]);
        assert_eq!(http.http_max_connections, 100);
        assert_eq!(http.http_max_event_streams, 10);
        assert_eq!(http.http_header_timeout, Duration::from_secs(5));
        assert_eq!(http.http_request_timeout, Duration::from_secs(20));
        assert_eq!(http.http_idle_timeout, Duration::from_secs(120));
        assert_eq!(
            http.http_tls_cert.as_deref(),
            Some(std::path::Path::new("/etc/chatterd/cert.pem"))
        );
        let args = merged(
            &[
                "chatterd",
                "--http-allowed-host",
                "api.example",
                "--http-max-connections",
                "300",
                "--http-header-timeout",
                "1s",
                "--http-tls-key",
                "/k.pem",
            ],
            file,
        )
        .unwrap();
        let http = &args.http_options;
        assert_eq!(
            http.http_allowed_hosts,
            ["chatter.example", "10.0.0.9", "api.example"]
        );
        assert_eq!(http.http_max_connections, 300);
        assert_eq!(http.http_max_event_streams, 10);
        assert_eq!(http.http_header_timeout, Duration::from_secs(1));
        assert_eq!(
            http.http_tls_key.as_deref(),
            Some(std::path::Path::new("/k.pem"))
        );
        // Nothing given: the documented defaults.
        let args = merged(&["chatterd"], "").unwrap();
        let http = &args.http_options;
        assert_eq!(http.http_max_connections, 256);
        assert_eq!(http.http_max_event_streams, 64);
        assert_eq!(http.http_header_timeout, Duration::from_secs(10));
        assert_eq!(http.http_request_timeout, Duration::from_secs(30));
        assert_eq!(http.http_idle_timeout, Duration::from_secs(60));
        assert!(http.http_allowed_hosts.is_empty() && http.http_tls_cert.is_none());
    }

    #[test]
    fn timing_keys_merge_under_the_flags() {
        let file = r#"
            profile = "lan"
            probe-interval = "5s"
            probe-timeout = "50ms"
            suspicion-mult = 4
            sync-interval = "30s"
        "#;
        let args = merged(&["chatterd"], file).unwrap();
        let config = args.protocol_config().unwrap();
        assert_eq!(config.probe_interval, Duration::from_secs(5));
        assert_eq!(config.probe_timeout, Duration::from_millis(50));
        assert_eq!(config.suspicion_mult, 4);
        assert_eq!(config.sync_interval, Duration::from_secs(30));
        assert_eq!(
            config.gossip_interval,
            chatter::Config::lan().gossip_interval
        );

        let args = merged(
            &[
                "chatterd",
                "--probe-interval",
                "100ms",
                "--suspicion-mult",
                "6",
            ],
            file,
        )
        .unwrap();
        let config = args.protocol_config().unwrap();
        assert_eq!(config.probe_interval, Duration::from_millis(100));
        assert_eq!(config.probe_timeout, Duration::from_millis(50));
        assert_eq!(config.suspicion_mult, 6);
        assert_eq!(config.sync_interval, Duration::from_secs(30));
    }

    #[test]
    fn the_example_timings_are_the_lan_profile() {
        // The example documents every timing key, commented out, with the lan profile's value.
        let (text, _ca) = example_config("timings");
        let mut found = Vec::new();
        let uncommented: String = text
            .lines()
            .map(|line| {
                let key = line
                    .strip_prefix("# ")
                    .and_then(|rest| rest.split_once(" = "))
                    .map(|(key, _)| key)
                    .filter(|key| Timings::NAMES.contains(key));
                match key {
                    Some(key) => {
                        found.push(key);
                        format!("{}\n", &line[2..])
                    }
                    None => format!("{line}\n"),
                }
            })
            .collect();
        assert_eq!(found, Timings::NAMES, "each timing key once, in help order");
        // The comment above each key gives the wan and local values.
        let wan = Timings::of(&chatter::Config::wan());
        let local = Timings::of(&chatter::Config::local());
        let mut comment = String::new();
        for line in text.lines() {
            match line
                .strip_prefix("# ")
                .and_then(|rest| rest.split_once(" = "))
            {
                Some((key, _)) if Timings::NAMES.contains(&key) => {
                    let i = Timings::NAMES.iter().position(|k| *k == key).unwrap();
                    let values = format!("(wan {}, local {})", wan[i].1, local[i].1);
                    assert!(
                        comment.contains(&values),
                        "{key}: {values} not in {comment:?}"
                    );
                    comment.clear();
                }
                _ => {
                    comment.push_str(line.trim_start_matches('#'));
                }
            }
        }
        let args = merged(&["chatterd"], &uncommented).unwrap();
        assert_eq!(args.timings.given().len(), Timings::NAMES.len());
        let mut lan = chatter::Config::lan();
        lan.cluster_name = args.cluster.clone();
        assert_eq!(args.protocol_config().unwrap(), lan);
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
            (
                "[[check]]\nname = \"x\"\ntcp = \"a:1\"\ntls-skip-verify = true",
                "check \"x\": ca= and tls-skip-verify= apply to http= checks only",
            ),
            (
                "[[check]]\nname = \"x\"\nhttp = \"https://a/\"\nca = \"/nonexistent/ca.pem\"",
                "check \"x\": ca=/nonexistent/ca.pem: cannot read it: no such file or directory",
            ),
            (
                "[[check]]\nname = \"x\"\nhttp = \"https://a/\"\ntls-skip-verify = \"yes\"",
                "line 4: invalid type: string",
            ),
            ("[[service]]\ntype = \"a b\"", "service:"),
            (
                "[[event-handler]]\nevents = [\"nope\"]\ncommand = \"x\"",
                "event filter",
            ),
            ("status-interval = \"soon\"", "status-interval"),
            ("probe-interval = \"0s\"", "probe-interval: must be above 0"),
            ("probe-interval = 1", "line 1: invalid type: integer"),
            (
                "suspicion-mult = 0",
                "suspicion-mult: expected a whole number from 1 to 100",
            ),
            (
                "gossip-fanout = -2",
                "gossip-fanout: expected a whole number",
            ),
            (
                "probe-timeout = \"2s\"",
                "probe_timeout must be positive and shorter than probe_interval \
                 (probe-interval 1s from profile lan; probe-timeout 2s)",
            ),
            ("http-token = \"two words\"", "http-token"),
            (
                "http-allowed-host = [\"evil.example:80\"]",
                "http-allowed-host: expected a host name without a port",
            ),
            (
                "http-max-connections = 0",
                "http-max-connections: expected a whole number from 1 to 65535",
            ),
            (
                "http-max-event-streams = 256",
                "--http-max-event-streams 256 must be below --http-max-connections 256",
            ),
            (
                "http-header-timeout = \"0s\"",
                "http-header-timeout: must be above 0",
            ),
            (
                "http-idle-timeout = \"5s\"",
                "--http-idle-timeout 5s must be above the event stream's keep-alive",
            ),
            (
                "http-tls-cert = \"/c.pem\"",
                "--http-tls-cert needs --http-tls-key",
            ),
        ] {
            let err = merged(&["chatterd"], toml).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml:?}: {err}");
            assert!(!err.contains('\n'), "{toml:?}: {err}");
        }
    }
}
