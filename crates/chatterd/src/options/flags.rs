//! Command-line flags of `chatterd`, and the rules that span several of them
//! ([`Args::validate`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chatter::Config;
use chatter_api::ServiceDecl;
use clap::{Parser, ValueEnum};

use crate::foundation::duration::{format_duration, parse_duration};
use crate::foundation::notify::Notifier;
use crate::options::checks::{CheckSpec, MAX_CHECKS};
use crate::options::discover::DiscoverOptions;
use crate::options::encryption::{EncryptionMode, EnvKey};
use crate::options::hooks::{HandlerSpec, MAX_HANDLERS};
use crate::options::services::MAX_SERVICES;
use crate::options::values::{
    parse_allowed_host, parse_cluster, parse_confirmations, parse_fanout, parse_indirect_checks,
    parse_max_connections, parse_multiplier, parse_node_name, parse_on_off,
    parse_positive_duration, parse_seed, parse_tag, parse_token,
};

/// Default gossip (UDP) address: every interface, port 2428.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:2428";
/// Default HTTP API address: loopback only, port 8428. Expose the API on purpose with
/// `--http 0.0.0.0:8428`, and then with `--http-token`.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8428";
/// Number of nodes `--demo` starts when no number is given.
pub const DEFAULT_DEMO_NODES: u32 = 5;

/// Default `--http-header-timeout`: 10 s. A client on any network sends a request head (a few
/// hundred bytes) well within a second; 10 s leaves room for a congested link while a
/// slow-loris client, which trickles header bytes to hold a connection, holds each one for at
/// most 10 s.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: &str = "10s";
/// Default `--http-request-timeout`: 30 s. Every handler answers in milliseconds (the slowest
/// asks the node's driver, bounded by its own 5 s command timeout) and a body is at most 64 KiB,
/// so 30 s is only ever reached by a client that stalls its body, or by a daemon in trouble,
/// which should then answer rather than pile up requests.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT: &str = "30s";
/// Default `--http-idle-timeout`: 60 s, four times the event stream's 15 s keep-alive comment,
/// so a live stream whose client reads it is never idle, while one whose client stopped reading
/// (its socket buffers full) is closed within a minute of the last byte that moved.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: &str = "60s";
/// Default `--http-max-connections`: 256. An operator's CLI, a dashboard or two, Prometheus and
/// a few scripts use a handful; 256 leaves ample room, while each connection costs the daemon
/// some kilobytes of buffers (its request head at most 32 KiB, the API server's
/// `MAX_HEAD_BYTES`), so a flood of connections cannot grow its memory by more than about
/// 8 MiB.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: &str = "256";
/// Default `--http-max-event-streams`: 64. Each stream holds a connection for as long as it is
/// open and a queue of up to 1,024 events, so streams get a cap of their own, well below the
/// connection cap: open streams never take every connection from the rest of the API.
pub const DEFAULT_HTTP_MAX_EVENT_STREAMS: &str = "64";

/// Interval of the keep-alive comments on an idle event stream (`GET /v1/events`): proxies
/// keep the connection open, and clients tell a quiet daemon from a dead one. Defined with the
/// HTTP options because `--http-idle-timeout` must stay above it ([`Args::validate`]); the
/// event stream sends its comments at this interval.
pub const EVENT_STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

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

    /// Name of this node, unique in the cluster [default: the name saved in --data-dir, else
    /// the host name].
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
    /// on one machine: ten times faster than lan) [default: lan; local with --demo]. The
    /// options under "Protocol timings" override single values of it.
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
        value_parser = parse_token
    )]
    pub http_token: Option<String>,

    /// Gossip encryption: a file of base64 32-byte keys, one per line, the first the primary
    /// (it seals; every key opens); `#` starts a comment. `chatter keygen` makes a key. The
    /// file should be readable by the daemon's user only (a warning says otherwise). Or one
    /// key in the CHATTER_GOSSIP_KEY environment variable; never a key on the command line.
    #[arg(long, value_name = "PATH")]
    pub keyring_file: Option<PathBuf>,

    /// Gossip encryption mode, for moving a running cluster to encryption in three rolling
    /// steps: accept-sealed (send plain, accept both), send-sealed (send sealed, accept both),
    /// sealed (sealed only) [default: sealed with a key, plaintext without].
    #[arg(long, value_enum, value_name = "MODE")]
    pub encryption_mode: Option<EncryptionMode>,

    /// The key of CHATTER_GOSSIP_KEY, read (and removed from the environment) at start.
    #[arg(skip)]
    pub gossip_key: Option<EnvKey>,

    /// The service manager's notification socket and watchdog period (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC`), read (and removed from the environment) at start.
    #[arg(skip)]
    pub notifier: Notifier,

    /// A health check (repeatable): `name=NAME,cmd=COMMAND` (exit 0 passing, 1 warning,
    /// anything else or the timeout critical), `name=NAME,http=http[s]://...` (2xx passing) or
    /// `name=NAME,tcp=HOST:PORT` (connects: passing), with optional `interval=` (default 10s)
    /// and `timeout=` (default 5s). `cmd=` comes last: it takes the rest, commas included.
    /// An https URL is verified against the built-in Mozilla roots, or against the PEM file
    /// of `ca=PATH` instead; `tls-skip-verify=true` accepts any certificate (insecure).
    /// Results are gossiped as the key check/NAME.
    #[arg(long = "check", value_name = "SPEC", value_parser = crate::options::checks::parse_check)]
    pub checks: Vec<CheckSpec>,

    /// A service this node runs, as TYPE or TYPE:SHARD (repeatable), e.g. `searcher:1`.
    /// Gossiped as the key service/TYPE[/SHARD]; `GET /v1/services` groups the cluster's.
    #[arg(
        long = "service",
        value_name = "TYPE[:SHARD]",
        value_parser = crate::options::services::parse_service
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
        value_parser = crate::options::hooks::parse_handler
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
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub status_interval: Duration,

    /// A directory where the node keeps its state across restarts (created, mode 0700, if
    /// missing): its name, last generation, own key/values, tags and the members it last saw
    /// alive, and the keyring after run-time key rotations when there is no --keyring-file.
    /// Restarted with it, the node rejoins through the remembered members even when every seed
    /// is down, and its previous life's state is replaced, never resurrected. Without
    /// --node-name, the saved name is used before the host name (a renamed host keeps its
    /// identity). A corrupt file is set aside with a warning; the node starts clean.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

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
        conflicts_with_all = [
            "listen", "advertise", "node_name", "seeds", "http", "config", "http_tls_cert",
            "http_tls_key", "data_dir",
        ],
    )]
    pub demo: Option<u32>,

    /// Bounds, timeouts and TLS of the HTTP API.
    #[command(flatten)]
    pub http_options: HttpOptions,

    /// Protocol timings that override the profile's.
    #[command(flatten)]
    pub timings: Timings,

    /// LAN discovery (`--discover`).
    #[command(flatten)]
    pub discover: DiscoverOptions,
}

/// Bounds, timeouts, allowed host names and TLS of the HTTP API; the API's server serves
/// connections under them, and its Host check takes the names. docs/SECURITY.md says what
/// each one protects against.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "HTTP API bounds, timeouts and TLS")]
pub struct HttpOptions {
    /// How long a client may take to send a request's head (request line and headers),
    /// counted from when the connection waits for one: from accept, and from the end of the
    /// previous response on a kept-alive connection (so a kept-alive connection that sends
    /// nothing more is closed after it too). Ends slow-loris connections, which trickle
    /// header bytes to hold a connection forever.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = DEFAULT_HTTP_HEADER_TIMEOUT,
        value_parser = parse_positive_duration
    )]
    pub http_header_timeout: Duration,

    /// How long a request may take once its head is in, reading its body included; it is
    /// then answered 408 with a JSON error. The event stream (GET /v1/events), which lasts as
    /// long as its client wants, is not bounded by it.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = DEFAULT_HTTP_REQUEST_TIMEOUT,
        value_parser = parse_positive_duration
    )]
    pub http_request_timeout: Duration,

    /// A connection on which no byte moved in either direction for this long is closed: a
    /// client that stops reading an answer or the event stream (which sends a keep-alive
    /// comment every 15 s, so a stream that is read is never idle). Above 15 s.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = DEFAULT_HTTP_IDLE_TIMEOUT,
        value_parser = parse_positive_duration
    )]
    pub http_idle_timeout: Duration,

    /// Connections served at once (1 to 65535). One more is answered
    /// `503 {"error": ...}` with `Retry-After: 1` and closed.
    #[arg(
        long,
        value_name = "N",
        default_value = DEFAULT_HTTP_MAX_CONNECTIONS,
        value_parser = parse_max_connections
    )]
    pub http_max_connections: u32,

    /// Event-stream clients (GET /v1/events) at once, below --http-max-connections (each
    /// stream is also a connection). One more is answered `503 {"error": ...}`.
    #[arg(
        long,
        value_name = "N",
        default_value = DEFAULT_HTTP_MAX_EVENT_STREAMS,
        value_parser = parse_max_connections
    )]
    pub http_max_event_streams: u32,

    /// A host name (or IP address) clients may use to reach the API, besides the bound
    /// address, loopback addresses and `localhost` when bound to loopback, and any IP address
    /// when bound to 0.0.0.0 or :: (repeatable; any port). A request whose Host is none of
    /// these is refused with 421: it protects the API from DNS rebinding. Give the names of
    /// a reverse proxy or a DNS name of this host.
    #[arg(long = "http-allowed-host", value_name = "NAME", value_parser = parse_allowed_host)]
    pub http_allowed_hosts: Vec<String>,

    /// Serve the API over TLS (HTTPS) with this certificate chain (PEM: the server's
    /// certificate first, then any intermediates); needs --http-tls-key.
    #[arg(long, value_name = "PEM")]
    pub http_tls_cert: Option<PathBuf>,

    /// The private key of --http-tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM")]
    pub http_tls_key: Option<PathBuf>,
}

/// Protocol timing options: each overrides one field of the `--profile`'s [`chatter::Config`]
/// (the flag's name is the field's, with dashes). The help of each ends with the value of
/// every profile, `[lan: .., wan: .., local: ..]`; a test checks them against the profiles.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
#[command(next_help_heading = "Protocol timings (each overrides one value of --profile)")]
pub struct Timings {
    /// Time between two probes started by this node (one SWIM protocol period). Shorter
    /// detects a dead member sooner, for proportionally more packets [lan: 1s, wan: 5s,
    /// local: 200ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub probe_interval: Option<Duration>,

    /// How long to wait for the direct ack before asking other members to probe indirectly;
    /// must be shorter than --probe-interval [lan: 500ms, wan: 3s, local: 100ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub probe_timeout: Option<Duration>,

    /// Members asked to probe a member that missed its direct ack (SWIM's k); 0 turns
    /// indirect probes off [lan: 3, wan: 3, local: 3].
    #[arg(long, value_name = "N", value_parser = parse_indirect_checks)]
    pub indirect_checks: Option<usize>,

    /// Lifeguard suspicion multiplier: the shortest suspicion timeout is
    /// N x max(1, log10(members)) x --probe-interval [lan: 5, wan: 6, local: 5].
    #[arg(long, value_name = "N", value_parser = parse_multiplier)]
    pub suspicion_mult: Option<u32>,

    /// A fresh suspicion starts at N times the shortest timeout and shrinks towards it as
    /// other members confirm it (Lifeguard) [lan: 6, wan: 6, local: 6].
    #[arg(long, value_name = "N", value_parser = parse_multiplier)]
    pub suspicion_max_timeout_mult: Option<u32>,

    /// Independent confirmations after which a suspicion reaches its shortest timeout (at most
    /// members - 2 are expected) [lan: 3, wan: 3, local: 3].
    #[arg(long, value_name = "N", value_parser = parse_confirmations)]
    pub suspicion_confirmations: Option<u32>,

    /// Suspicion timeout when ICMP port-unreachable showed the process gone and no indirect
    /// probe got an ack; it only ever shortens the Lifeguard timeout, so a value above that
    /// turns the shortcut off [lan: 1s, wan: 5s, local: 200ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub unreachable_suspicion_timeout: Option<Duration>,

    /// Check a member's host when a probe of it fails: a TCP connection attempt to its gossip
    /// address, which a live kernel refuses even while the daemon is stopped and a dead or
    /// cut-off host leaves unanswered. `off` sends no TCP segment and detects a lost host with
    /// the Lifeguard timeout alone [lan: on, wan: on, local: on].
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub host_checks: Option<bool>,

    /// How long a host check waits for the host's answer before calling it silent (never
    /// longer than --probe-timeout) [lan: 300ms, wan: 2s, local: 60ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub host_check_timeout: Option<Duration>,

    /// Suspicion timeout when the direct and indirect probes failed and the member's host was
    /// silent to a host check on a path that answered such checks before; a host that
    /// answers keeps the Lifeguard timeout, so stalled processes are not failed sooner
    /// [lan: 500ms, wan: 2.5s, local: 100ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub silent_host_suspicion_timeout: Option<Duration>,

    /// Half-life of a member's flap penalty: a member that comes back in the same life after
    /// a verdict or a silent host check (a flapping link) does not get the silent-host
    /// timeout again until its penalty decays (one flap: one half-life), so verdicts do not
    /// flap with the link; `0` turns damping off [lan: 20s, wan: 100s, local: 2s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub flap_damping_half_life: Option<Duration>,

    /// Period of gossip rounds while there are updates to spread [lan: 200ms, wan: 500ms,
    /// local: 50ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub gossip_interval: Option<Duration>,

    /// Members each gossip round sends to [lan: 3, wan: 4, local: 3].
    #[arg(long, value_name = "N", value_parser = parse_fanout)]
    pub gossip_fanout: Option<usize>,

    /// Each update is piggybacked N x ceil(log10(members + 1)) times [lan: 4, wan: 4,
    /// local: 4].
    #[arg(long, value_name = "N", value_parser = parse_multiplier)]
    pub retransmit_mult: Option<u32>,

    /// Period of the push-pull anti-entropy exchange with one random member [lan: 10s,
    /// wan: 30s, local: 2s].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub sync_interval: Option<Duration>,
}

/// A timing value, for messages and command lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingValue {
    /// A duration.
    Duration(Duration),
    /// A count or multiplier.
    Count(u64),
    /// A switch, `on` or `off`.
    Switch(bool),
}

impl std::fmt::Display for TimingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimingValue::Duration(d) => {
                let text = format_duration(*d);
                // format_duration keeps whole milliseconds; say more when there is more.
                if parse_duration(&text).ok() == Some(*d) {
                    f.write_str(&text)
                } else {
                    write!(f, "{}s", d.as_secs_f64())
                }
            }
            TimingValue::Count(n) => write!(f, "{n}"),
            TimingValue::Switch(on) => f.write_str(if *on { "on" } else { "off" }),
        }
    }
}

impl Timings {
    /// The flag names (without `--`, also the config file's keys) in help order.
    pub const NAMES: [&'static str; 15] = [
        "probe-interval",
        "probe-timeout",
        "indirect-checks",
        "suspicion-mult",
        "suspicion-max-timeout-mult",
        "suspicion-confirmations",
        "unreachable-suspicion-timeout",
        "host-checks",
        "host-check-timeout",
        "silent-host-suspicion-timeout",
        "flap-damping-half-life",
        "gossip-interval",
        "gossip-fanout",
        "retransmit-mult",
        "sync-interval",
    ];

    /// Every timing of `config`, as (flag name, value), in the order of [`Timings::NAMES`].
    pub fn of(config: &Config) -> [(&'static str, TimingValue); 15] {
        use TimingValue::{Count, Duration as D, Switch};
        let n = Self::NAMES;
        [
            (n[0], D(config.probe_interval)),
            (n[1], D(config.probe_timeout)),
            (n[2], Count(config.indirect_checks as u64)),
            (n[3], Count(config.suspicion_mult.into())),
            (n[4], Count(config.suspicion_max_timeout_mult.into())),
            (n[5], Count(config.suspicion_confirmations.into())),
            (n[6], D(config.unreachable_suspicion_timeout)),
            (n[7], Switch(config.host_checks)),
            (n[8], D(config.host_check_timeout)),
            (n[9], D(config.silent_host_suspicion_timeout)),
            (n[10], D(config.flap_damping_half_life)),
            (n[11], D(config.gossip_interval)),
            (n[12], Count(config.gossip_fanout as u64)),
            (n[13], Count(config.retransmit_mult.into())),
            (n[14], D(config.sync_interval)),
        ]
    }

    /// The timings given (on the command line or in the config file), as (flag name, value).
    pub fn given(&self) -> Vec<(&'static str, TimingValue)> {
        use TimingValue::{Count, Duration as D, Switch};
        let n = Self::NAMES;
        [
            (n[0], self.probe_interval.map(D)),
            (n[1], self.probe_timeout.map(D)),
            (n[2], self.indirect_checks.map(|v| Count(v as u64))),
            (n[3], self.suspicion_mult.map(|v| Count(v.into()))),
            (
                n[4],
                self.suspicion_max_timeout_mult.map(|v| Count(v.into())),
            ),
            (n[5], self.suspicion_confirmations.map(|v| Count(v.into()))),
            (n[6], self.unreachable_suspicion_timeout.map(D)),
            (n[7], self.host_checks.map(Switch)),
            (n[8], self.host_check_timeout.map(D)),
            (n[9], self.silent_host_suspicion_timeout.map(D)),
            (n[10], self.flap_damping_half_life.map(D)),
            (n[11], self.gossip_interval.map(D)),
            (n[12], self.gossip_fanout.map(|v| Count(v as u64))),
            (n[13], self.retransmit_mult.map(|v| Count(v.into()))),
            (n[14], self.sync_interval.map(D)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }

    /// The command-line flags that give the same timings (for the `--demo` children).
    pub fn flags(&self) -> Vec<String> {
        self.given()
            .into_iter()
            .flat_map(|(name, value)| [format!("--{name}"), value.to_string()])
            .collect()
    }

    /// Sets the given timings in `config`.
    pub fn apply(&self, config: &mut Config) {
        fn set<T: Copy>(field: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *field = value;
            }
        }
        set(&mut config.probe_interval, self.probe_interval);
        set(&mut config.probe_timeout, self.probe_timeout);
        set(&mut config.indirect_checks, self.indirect_checks);
        set(&mut config.suspicion_mult, self.suspicion_mult);
        set(
            &mut config.suspicion_max_timeout_mult,
            self.suspicion_max_timeout_mult,
        );
        set(
            &mut config.suspicion_confirmations,
            self.suspicion_confirmations,
        );
        set(
            &mut config.unreachable_suspicion_timeout,
            self.unreachable_suspicion_timeout,
        );
        set(&mut config.host_checks, self.host_checks);
        set(&mut config.host_check_timeout, self.host_check_timeout);
        set(
            &mut config.silent_host_suspicion_timeout,
            self.silent_host_suspicion_timeout,
        );
        set(
            &mut config.flap_damping_half_life,
            self.flap_damping_half_life,
        );
        set(&mut config.gossip_interval, self.gossip_interval);
        set(&mut config.gossip_fanout, self.gossip_fanout);
        set(&mut config.retransmit_mult, self.retransmit_mult);
        set(&mut config.sync_interval, self.sync_interval);
    }
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
    /// The profile in effect: `--profile`, else `local` with `--demo` and `lan` without.
    pub fn effective_profile(&self) -> Profile {
        self.profile.unwrap_or(if self.demo.is_some() {
            Profile::Local
        } else {
            Profile::Lan
        })
    }

    /// The protocol configuration: the profile's, with the cluster name and the timings given,
    /// checked by [`Config::validate`]. The error is one line naming the values involved, given
    /// (flag or config file) or from the profile, e.g. `invalid protocol timings: probe_timeout
    /// must be positive and shorter than probe_interval (probe-interval 300ms; probe-timeout
    /// 500ms from profile lan)`.
    pub fn protocol_config(&self) -> Result<Config, String> {
        let profile = self.effective_profile();
        let mut config = profile.config();
        config.cluster_name = self.cluster.clone();
        self.timings.apply(&mut config);
        config.validate().map_err(|err| {
            let text = err.to_string();
            let rule = text
                .strip_prefix("invalid configuration: ")
                .unwrap_or(&text);
            let given = self.timings.given();
            let involved: Vec<String> = Timings::of(&config)
                .into_iter()
                .filter(|(name, _)| rule.contains(&name.replace('-', "_")))
                .map(|(name, value)| {
                    if given.iter().any(|(g, _)| *g == name) {
                        format!("{name} {value}")
                    } else {
                        format!("{name} {value} from profile {}", profile.as_str())
                    }
                })
                .collect();
            if involved.is_empty() {
                format!("invalid protocol timings: {rule}")
            } else {
                format!("invalid protocol timings: {rule} ({})", involved.join("; "))
            }
        })?;
        Ok(config)
    }

    /// Checks the rules that span several flags: check names unique, at most 64 checks,
    /// services and event handlers, fewer event streams than connections, an idle timeout
    /// above the event stream's keep-alive, TLS certificate and key together, and the
    /// protocol timings on top of the profile ([`Args::protocol_config`]).
    pub fn validate(&self) -> Result<(), String> {
        self.discover.validate()?;
        let mut names: Vec<&str> = self.checks.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(dup) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two checks are named {:?}", dup[0]));
        }
        let limits = [
            ("checks", self.checks.len(), MAX_CHECKS),
            ("services", self.services.len(), MAX_SERVICES),
            ("event handlers", self.event_handlers.len(), MAX_HANDLERS),
        ];
        for (what, count, max) in limits {
            if count > max {
                return Err(format!("{count} {what}: at most {max} are allowed"));
            }
        }
        let http = &self.http_options;
        if http.http_max_event_streams >= http.http_max_connections {
            return Err(format!(
                "--http-max-event-streams {} must be below --http-max-connections {} (each \
                 event stream holds a connection; the rest of the API needs at least one)",
                http.http_max_event_streams, http.http_max_connections
            ));
        }
        if http.http_idle_timeout <= EVENT_STREAM_KEEP_ALIVE {
            return Err(format!(
                "--http-idle-timeout {} must be above the event stream's keep-alive interval \
                 ({}), or a quiet event stream would be closed as idle",
                format_duration(http.http_idle_timeout),
                format_duration(EVENT_STREAM_KEEP_ALIVE)
            ));
        }
        match (&http.http_tls_cert, &http.http_tls_key) {
            (Some(_), None) => {
                return Err("--http-tls-cert needs --http-tls-key (the certificate's key)".into())
            }
            (None, Some(_)) => {
                return Err("--http-tls-key needs --http-tls-cert (the key's certificate)".into())
            }
            _ => {}
        }
        self.protocol_config()?;
        Ok(())
    }
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
    fn timing_help_gives_every_profiles_value() {
        let command = <Args as clap::CommandFactory>::command();
        let profiles = [
            ("lan", Timings::of(&Config::lan())),
            ("wan", Timings::of(&Config::wan())),
            ("local", Timings::of(&Config::local())),
        ];
        for (i, name) in Timings::NAMES.iter().enumerate() {
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(name))
                .unwrap_or_else(|| panic!("no flag --{name}"));
            let help = arg.get_help().unwrap().to_string();
            let values: Vec<String> = profiles
                .iter()
                .map(|(profile, timings)| {
                    assert_eq!(timings[i].0, *name);
                    format!("{profile}: {}", timings[i].1)
                })
                .collect();
            let expected = format!("[{}]", values.join(", "));
            let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                help.ends_with(&expected),
                "--{name}: {help:?} should end with {expected:?}"
            );
        }
    }

    #[test]
    fn timing_flags_override_the_profile() {
        let args = Args::try_parse_from([
            "chatterd",
            "--profile",
            "wan",
            "--probe-interval",
            "1.5s",
            "--probe-timeout",
            "400ms",
            "--indirect-checks",
            "0",
            "--suspicion-mult",
            "4",
            "--suspicion-max-timeout-mult",
            "3",
            "--suspicion-confirmations",
            "2",
            "--unreachable-suspicion-timeout",
            "1h",
            "--host-checks",
            "off",
            "--host-check-timeout",
            "250ms",
            "--silent-host-suspicion-timeout",
            "2s",
            "--flap-damping-half-life",
            "0",
            "--gossip-interval",
            "100ms",
            "--gossip-fanout",
            "5",
            "--retransmit-mult",
            "2",
            "--sync-interval",
            "1m",
        ])
        .unwrap();
        let config = args.protocol_config().unwrap();
        let expected = Config {
            probe_interval: Duration::from_millis(1500),
            probe_timeout: Duration::from_millis(400),
            indirect_checks: 0,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 3,
            suspicion_confirmations: 2,
            unreachable_suspicion_timeout: Duration::from_secs(3600),
            host_checks: false,
            host_check_timeout: Duration::from_millis(250),
            silent_host_suspicion_timeout: Duration::from_secs(2),
            flap_damping_half_life: Duration::ZERO,
            gossip_interval: Duration::from_millis(100),
            gossip_fanout: 5,
            retransmit_mult: 2,
            sync_interval: Duration::from_secs(60),
            ..Config::wan()
        };
        assert_eq!(config, expected);
        // The same flags again, as the demo gives them to its children.
        let mut argv = vec!["chatterd".to_owned()];
        argv.extend(args.timings.flags());
        let again = Args::try_parse_from(argv).unwrap();
        assert_eq!(again.timings, args.timings);
        // Nothing given: the profile as it is.
        let plain = Args::try_parse_from(["chatterd", "--profile", "wan"]).unwrap();
        assert_eq!(
            plain.protocol_config().unwrap(),
            Config {
                cluster_name: "chatter".into(),
                ..Config::wan()
            }
        );
        assert!(plain.timings.flags().is_empty());
    }

    #[test]
    fn out_of_range_timings_are_refused_by_the_parser() {
        for (flag, value) in [
            ("--probe-interval", "0s"),
            ("--probe-interval", "soon"),
            ("--probe-timeout", "-1s"),
            ("--indirect-checks", "17"),
            ("--suspicion-mult", "0"),
            ("--suspicion-max-timeout-mult", "101"),
            ("--suspicion-confirmations", "-1"),
            ("--gossip-fanout", "0"),
            ("--retransmit-mult", "1.5"),
            ("--sync-interval", "0"),
            ("--host-checks", "maybe"),
            ("--host-check-timeout", "0s"),
            ("--silent-host-suspicion-timeout", "0"),
            ("--flap-damping-half-life", "-1s"),
        ] {
            let arg = format!("{flag}={value}");
            let err = Args::try_parse_from(["chatterd", &arg]).unwrap_err();
            let line = one_line_error(&err);
            assert!(line.contains(flag), "{flag} {value}: {line}");
        }
    }

    #[test]
    fn invalid_timing_combinations_name_the_values_and_their_source() {
        let args = Args::try_parse_from(["chatterd", "--probe-interval", "300ms"]).unwrap();
        let err = args.validate().unwrap_err();
        assert_eq!(
            err,
            "invalid protocol timings: probe_timeout must be positive and shorter than \
             probe_interval (probe-interval 300ms; probe-timeout 500ms from profile lan)"
        );
        // The demo's default profile is local, whose probe timeout is 100 ms.
        let args = Args::try_parse_from(["chatterd", "--demo", "--probe-interval", "300ms"]);
        assert!(args.unwrap().validate().is_ok());
        let args =
            Args::try_parse_from(["chatterd", "--profile", "local", "--probe-timeout", "200ms"])
                .unwrap();
        let err = args.validate().unwrap_err();
        assert!(
            err.contains("(probe-interval 200ms from profile local; probe-timeout 200ms)"),
            "{err}"
        );
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
