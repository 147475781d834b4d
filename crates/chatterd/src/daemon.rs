//! One daemon: the gossip node, the HTTP API, the event log and the signal handling, wired
//! together from the options (each subsystem gets the settings it takes from them here).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chatter::{Chatter, Event, Handle};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::api::origin::AllowedHosts;
use crate::api::server::ServeOptions;
use crate::api::shared::{AppState, Limits};
use crate::foundation::io::io_message;
use crate::foundation::notify::{Notifier, NotifyError};
use crate::options::flags::{Args, Timings};
use crate::subsystems::hooks::HandlerStats;
use crate::subsystems::keyring::{self, KeyringSettings};
use crate::subsystems::monitoring::{MonitoringSettings, Monitors};

/// How long a graceful leave may take before the daemon exits anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The keyring's settings: the options it reads the keys and the mode from.
pub fn keyring_settings(args: &Args) -> KeyringSettings {
    KeyringSettings {
        keyring_file: args.keyring_file.clone(),
        data_dir: args.data_dir.clone(),
        gossip_key: args.gossip_key.clone(),
        encryption_mode: args.encryption_mode,
    }
}

/// The monitoring's settings: its checks, services, system status interval and event hooks,
/// and this daemon's API address for the hooks' `CHATTER_HTTP`.
pub fn monitoring_settings(args: &Args, api_url: String) -> MonitoringSettings {
    MonitoringSettings {
        checks: args.checks.clone(),
        services: args.services.clone(),
        status_interval: args.status_interval,
        event_handlers: args.event_handlers.clone(),
        event_handler_timeout: args.event_handler_timeout,
        api_url,
    }
}

/// A running daemon: the gossip node, its HTTP API and its event log.
///
/// [`run`] is what the binary does; [`Daemon::start`] and [`Daemon::stop`] let a test or a
/// tool run daemons in-process.
pub struct Daemon {
    name: String,
    handle: Handle,
    gossip_addr: SocketAddr,
    http_addr: SocketAddr,
    tls: bool,
    leaving: Arc<AtomicBool>,
    stop_http: tokio::sync::oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    events: JoinHandle<()>,
    monitors: Monitors,
}

impl Daemon {
    /// Binds the HTTP socket, then starts the gossip node (so that an HTTP bind failure has no
    /// effect on the cluster), the HTTP server and the event log.
    pub async fn start(args: &Args) -> Result<Daemon> {
        let started = Instant::now();
        args.validate().map_err(|e| anyhow!("{e}"))?;
        let profile = args.effective_profile();
        let config = args.protocol_config().map_err(|e| anyhow!("{e}"))?;
        let name = match args.node_name.clone() {
            Some(name) => name,
            // The saved name before the host name: a renamed host keeps its identity. A bad
            // file gives none here; the node sets it aside with a warning as it starts.
            None => match args
                .data_dir
                .as_deref()
                .and_then(|dir| chatter::SavedState::read(dir, &config).ok().flatten())
            {
                Some(saved) => saved.name,
                None => crate::options::values::hostname()
                    .ok_or_else(|| anyhow!("cannot determine the host name; pass --node-name"))?,
            },
        };
        let http_options = &args.http_options;
        // The certificate and key are read before anything binds: a wrong file is a one-line
        // refusal, never a daemon that is up but cannot serve.
        let tls = match (&http_options.http_tls_cert, &http_options.http_tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                crate::api::server::load_tls(cert, key).map_err(|e| anyhow!("{e}"))?,
            )),
            _ => None,
        };

        let keyring_settings = keyring_settings(args);
        let (keyring, encryption_mode) = keyring::load(&keyring_settings)?;
        let fingerprints: Vec<String> = keyring
            .iter()
            .flat_map(|k| k.list())
            .map(|k| k.fingerprint.to_string())
            .collect();

        let listener = TcpListener::bind(args.http)
            .await
            .map_err(|e| anyhow!("cannot bind HTTP {}: {}", args.http, io_message(&e)))?;
        let http_addr = listener
            .local_addr()
            .map_err(|e| anyhow!("cannot read the HTTP address: {}", io_message(&e)))?;
        if !http_addr.ip().is_loopback() && args.http_token.is_none() {
            warn!(
                http = %http_addr,
                "THE HTTP API IS REACHABLE FROM OTHER HOSTS WITHOUT A TOKEN: anyone who can \
                 connect to {http_addr} can change this node's state and broadcast to the \
                 cluster; set --http-token (or CHATTERD_HTTP_TOKEN), or bind --http to loopback"
            );
        }

        let mut builder = Chatter::builder(name.clone())
            .bind(args.listen)
            .config(config)
            .seeds(args.seeds.iter().cloned());
        if let Some(advertise) = args.advertise {
            builder = builder.advertise(advertise);
        }
        for (key, value) in &args.tags {
            builder = builder.tag(key.clone(), value.clone());
        }
        if let Some(keyring) = keyring {
            builder = builder.keyring(keyring);
        }
        if let Some(dir) = &args.data_dir {
            builder = builder.data_dir(dir.clone());
        }
        builder = builder.encryption_mode(encryption_mode);
        let discovery = args.discover.settings();
        if let Some(settings) = &discovery {
            builder = builder.discover(settings.clone());
        }
        let handle = builder
            .spawn()
            .await
            .map_err(|e| spawn_error(e, args.listen))?;
        let gossip_addr = handle.local_addr();

        info!(
            name = %name,
            gossip = %gossip_addr,
            advertised = %handle.local().addr,
            http = %http_addr,
            profile = profile.as_str(),
            data_dir = ?args.data_dir.as_ref().map(|d| d.display().to_string()),
            timings = %timings_text(&args.timings),
            cluster = %args.cluster,
            seeds = ?args.seeds,
            discover = ?discovery.map(|d| (d.ipv4_group, d.ipv6_group, d.port)),
            encryption = %encryption_mode,
            keys = ?fingerprints,
            "chatterd started"
        );

        let leaving = Arc::new(AtomicBool::new(false));
        let state = AppState {
            handle: handle.clone(),
            leaving: leaving.clone(),
            started,
            cluster: args.cluster.clone(),
            limits: Limits::new(
                http_options.http_request_timeout,
                http_options.http_max_event_streams,
            ),
            keyring_file: keyring_settings.file(),
        };
        // What the event handlers get as CHATTER_HTTP: the address, as `chatter --http` takes
        // it, with the scheme when it is not the CLI's default.
        let api_url = match tls {
            Some(_) => format!("https://{http_addr}"),
            None => http_addr.to_string(),
        };
        let monitors = match Monitors::start(&handle, &monitoring_settings(args, api_url)).await {
            Ok(monitors) => monitors,
            Err(err) => {
                let _ = handle.shutdown().await;
                return Err(err);
            }
        };
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        // Layers run from the last applied: the Host check, then the token, then the JSON rule
        // of POST, then the handlers.
        let app = crate::api::origin::require_json_posts(crate::api::router::router(state));
        let app = crate::api::auth::protect(app, args.http_token.clone());
        let allowed = AllowedHosts::new(http_addr, http_options.http_allowed_hosts.clone());
        let app = crate::api::origin::check_hosts(app, allowed);
        let serve_options = ServeOptions {
            header_timeout: http_options.http_header_timeout,
            idle_timeout: http_options.http_idle_timeout,
            max_connections: http_options.http_max_connections,
            tls: tls.clone(),
        };
        let server = crate::api::server::serve(listener, app, serve_options, async {
            let _ = http_stopped.await;
        });
        let server = tokio::spawn(server);
        let events = tokio::spawn(log_events(handle.clone()));
        if encryption_mode != chatter::Mode::Plaintext {
            tokio::spawn(keyring::persist(handle.clone(), keyring_settings.file()));
        }
        Ok(Daemon {
            name,
            handle,
            gossip_addr,
            http_addr,
            tls: tls.is_some(),
            leaving,
            stop_http,
            server,
            events,
            monitors,
        })
    }

    /// Counters of the event handlers (runs started, failed, timed out, dropped).
    pub fn handler_stats(&self) -> &HandlerStats {
        &self.monitors.handler_stats
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The gossip node.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The bound gossip (UDP) address.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Whether the HTTP API is served over TLS (HTTPS).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// `chatterd ready name=NAME gossip=ADDR http=ADDR pid=PID`, with ` scheme=https` at the
    /// end when the API is served over TLS (the line is otherwise the same, so that readers of
    /// it need no change).
    pub fn ready_line(&self) -> String {
        format!(
            "chatterd ready name={} gossip={} http={} pid={}{}",
            self.name,
            self.gossip_addr,
            self.http_addr,
            std::process::id(),
            if self.tls { " scheme=https" } else { "" }
        )
    }

    /// Waits until the HTTP server or the gossip node stops by itself: always an error.
    pub async fn failure(&mut self) -> anyhow::Error {
        tokio::select! {
            res = &mut self.server => match res {
                Ok(Ok(())) => anyhow!("the HTTP server stopped unexpectedly"),
                Ok(Err(e)) => anyhow!("the HTTP server failed: {}", io_message(&e)),
                Err(e) => anyhow!("the HTTP server task failed: {e}"),
            },
            () = self.handle.stopped() => anyhow!("the gossip node stopped unexpectedly"),
        }
    }

    /// Leaves the cluster gracefully (bounded by 5 s), then stops the HTTP server.
    /// `/health` answers 503 `leaving` meanwhile.
    pub async fn stop(mut self) {
        self.leaving.store(true, Ordering::Relaxed);
        self.monitors.stop();
        match tokio::time::timeout(LEAVE_TIMEOUT, self.handle.leave()).await {
            Ok(Ok(())) => info!("left the cluster"),
            Ok(Err(e)) => warn!(error = %e, "graceful leave failed"),
            Err(_) => warn!(timeout = ?LEAVE_TIMEOUT, "graceful leave timed out"),
        }
        self.shutdown_http().await;
    }

    /// Stops the node without leaving (the others will see it fail) and the HTTP server.
    pub async fn abort(mut self) {
        self.monitors.stop();
        let _ = self.handle.shutdown().await;
        self.shutdown_http().await;
    }

    async fn shutdown_http(self) {
        let _ = self.stop_http.send(());
        match tokio::time::timeout(Duration::from_secs(1), self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %io_message(&e), "HTTP server error at shutdown"),
            Ok(Err(e)) => warn!(error = %e, "HTTP server task failed at shutdown"),
            Err(_) => debug!("HTTP connections still open at exit"),
        }
        self.events.abort();
    }
}

/// Runs one daemon until SIGINT/SIGTERM, then leaves the cluster gracefully.
///
/// Prints `chatterd ready name=NAME gossip=ADDR http=ADDR pid=PID` on standard output once both
/// sockets are bound (with the actual ports when 0 was asked for). A second signal during the
/// leave exits at once (with an error).
pub async fn run(args: Args) -> Result<()> {
    // Signals first, so that a signal during start-up is not lost to the default handler.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;

    let mut daemon = Daemon::start(&args).await?;
    announce_ready(&daemon.ready_line())?;
    let notifier = args.notifier.clone();
    if notifier.is_enabled() {
        let status = member_status(daemon.handle());
        if let Err(err) = notifier.ready(&status) {
            warn!(error = %err, "cannot tell the service manager that the daemon is ready");
        }
        tokio::spawn(notify_loop(
            daemon.handle().clone(),
            notifier.clone(),
            status,
        ));
    }

    let signal_name = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
        err = daemon.failure() => {
            daemon.abort().await;
            return Err(err);
        }
    };
    info!(signal = signal_name, "leaving the cluster");
    if let Err(err) = notifier.stopping(&format!("leaving the cluster ({signal_name})")) {
        warn!(error = %err, "cannot tell the service manager that the daemon is stopping");
    }
    tokio::select! {
        () = daemon.stop() => {}
        _ = sigterm.recv() => return Err(anyhow!("second SIGTERM: exiting before the leave completed")),
        _ = sigint.recv() => return Err(anyhow!("second SIGINT: exiting before the leave completed")),
    }
    info!("chatterd stopped");
    Ok(())
}

/// How often the status line of the service manager (`systemctl status`) is brought up to
/// date when no watchdog asks for more frequent wake-ups: the member counts it shows change
/// within a protocol period, and a few seconds' lag costs a reader nothing.
const NOTIFY_STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// `5 members: 4 alive, 1 failed`: what `systemctl status` shows.
fn member_status(handle: &Handle) -> String {
    let snapshot = handle.snapshot();
    let mut counts = [0usize; 4];
    for member in std::iter::once(&snapshot.local).chain(&snapshot.members) {
        let slot = match member.status {
            chatter::MemberStatus::Alive => 0,
            chatter::MemberStatus::Suspect => 1,
            chatter::MemberStatus::Failed => 2,
            chatter::MemberStatus::Left => 3,
        };
        counts[slot] += 1;
    }
    let total: usize = counts.iter().sum();
    let parts: Vec<String> = ["alive", "suspect", "failed", "left"]
        .iter()
        .zip(counts)
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| format!("{count} {name}"))
        .collect();
    let noun = if total == 1 { "member" } else { "members" };
    format!("{total} {noun}: {}", parts.join(", "))
}

/// Keeps the service manager informed while the daemon runs: the member counts as `STATUS=`
/// when they change, and, when the unit sets `WatchdogSec=`, `WATCHDOG=1` every half period
/// as long as the gossip node's task answers a question through its command channel within
/// that half period. A node task that is wedged or gone sends no ping, and the service manager
/// restarts the daemon. A notification that fails is logged once, then again only after one
/// has succeeded.
async fn notify_loop(handle: Handle, notifier: Notifier, mut last_status: String) {
    let watchdog = notifier.watchdog();
    let period = watchdog.map_or(NOTIFY_STATUS_INTERVAL, |w| w / 2);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: READY has just gone out.
    ticker.tick().await;
    let mut failing = false;
    let mut report = |result: Result<(), NotifyError>| match result {
        Ok(()) => failing = false,
        Err(err) => {
            if !failing {
                warn!(error = %err, "service manager notification failed");
            }
            failing = true;
        }
    };
    loop {
        ticker.tick().await;
        if handle.is_stopped() {
            return;
        }
        if watchdog.is_some() {
            match tokio::time::timeout(period, handle.node_state(handle.name())).await {
                Ok(Ok(_)) => report(notifier.watchdog_ping()),
                Ok(Err(err)) => debug!(error = %err, "gossip node unavailable: no watchdog ping"),
                Err(_) => warn!(
                    timeout = ?period,
                    "the gossip node did not answer in time: no watchdog ping"
                ),
            }
        }
        let status = member_status(&handle);
        if status != last_status {
            report(notifier.status(&status));
            last_status = status;
        }
    }
}

fn spawn_error(err: chatter::Error, listen: SocketAddr) -> anyhow::Error {
    match err {
        chatter::Error::Bind { source, .. } => {
            anyhow!("cannot bind UDP {listen}: {}", io_message(&source))
        }
        chatter::Error::Advertise { bind, source } => anyhow!(
            "cannot pick an address to advertise for {bind}: {}; pass --advertise ADDR",
            io_message(&source)
        ),
        other => anyhow::Error::new(other).context("cannot start the gossip node"),
    }
}

/// The timings that override the profile, as `probe-interval=1s gossip-fanout=4`, or `profile`.
fn timings_text(timings: &Timings) -> String {
    let given = timings.given();
    if given.is_empty() {
        return "profile".to_owned();
    }
    given
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints the machine-readable ready line and flushes it.
fn announce_ready(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write the ready line to standard output")
}

/// Logs events from the daemon's point of view. The library already logs each membership
/// change at info; the daemon adds the evidence behind a failure (warn) and name conflicts
/// (warn), logs every user message delivered here at info (tag, origin, payload as text), key
/// changes at debug, and repeats the rest at debug with the member's details.
async fn log_events(handle: Handle) {
    let mut events = handle.subscribe();
    while let Some(event) = events.recv().await {
        match &event {
            Event::Failed(m) => {
                let evidence = m.evidence.as_ref();
                warn!(
                    member = %m.name,
                    addr = %m.addr,
                    accuser = evidence.map(|e| e.accuser.as_str()).unwrap_or("?"),
                    declared_by = evidence.and_then(|e| e.declared_by.as_deref()).unwrap_or("?"),
                    confirmations = evidence.map_or(0, |e| e.confirmations.len()),
                    unreachable = evidence.is_some_and(|e| e.unreachable),
                    "member failed"
                )
            }
            Event::Message(message) => info!(
                tag = %message.tag,
                origin = %message.id.origin,
                seq = message.id.seq,
                hops = message.hops,
                payload = %String::from_utf8_lossy(&message.payload),
                "message received"
            ),
            Event::KeyChanged(change) => debug!(
                node = %change.node,
                key = %change.key,
                value = ?change.value.as_deref().map(String::from_utf8_lossy),
                version = change.version,
                "key changed"
            ),
            Event::Conflict(c) => warn!(
                member = %c.name,
                other_addr = %c.other_addr,
                other_generation = c.other_generation,
                "another process claims this member's name"
            ),
            other => match other.member() {
                Some(m) => debug!(
                    kind = other.kind(),
                    member = %m.name,
                    addr = %m.addr,
                    status = %m.status,
                    incarnation = m.incarnation,
                    generation = m.generation,
                    tags = ?m.tags,
                    "membership event"
                ),
                None => debug!(kind = other.kind(), "event"),
            },
        }
    }
}
