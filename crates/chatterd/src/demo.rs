//! `chatterd --demo N`: a cluster of N local daemons to watch failure detection at work.
//!
//! The demo starts N copies of this executable on 127.0.0.1 with free ports (`--listen
//! 127.0.0.1:0 --http 127.0.0.1:0`), the first one the seed of the others, learns their
//! addresses from their ready lines, prints how to reach them, forwards their logs prefixed with
//! their names, and on Ctrl-C/SIGTERM stops them with SIGTERM (a graceful leave each).
//!
//! Each daemon keeps its state in a data directory of its own (`--data-dir`), under one
//! temporary directory (`$TMPDIR/chatterd-demo-<pid>`) that the demo removes when it exits,
//! so a demo node restarted by hand with the same flags comes back with its keys.
//!
//! The children run in their own process group, so a Ctrl-C in the terminal reaches only the
//! demo, which then stops them in order; on Linux they also get SIGTERM if the demo dies.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::foundation::duration::format_duration;
use crate::foundation::io::io_message;
use crate::options::checks::{CheckKind, CheckSpec};
use crate::options::encryption::{EnvKey, GOSSIP_KEY_ENV};
use crate::options::flags::{Args, Profile};
use crate::options::hooks::{Accept, HandlerSpec};

/// How long a child may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the children may take to leave after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(8);

/// What a daemon's ready line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Node name.
    pub name: String,
    /// Bound gossip address.
    pub gossip: SocketAddr,
    /// Bound HTTP address.
    pub http: SocketAddr,
    /// Process id.
    pub pid: u32,
}

/// Parses `chatterd ready name=NAME gossip=ADDR http=ADDR pid=PID`.
pub fn parse_ready_line(line: &str) -> Option<Ready> {
    let rest = line.trim().strip_prefix("chatterd ready ")?;
    let (mut name, mut gossip, mut http, mut pid) = (None, None, None, None);
    for field in rest.split_whitespace() {
        let (key, value) = field.split_once('=')?;
        match key {
            "name" => name = Some(value.to_owned()),
            "gossip" => gossip = value.parse().ok(),
            "http" => http = value.parse().ok(),
            "pid" => pid = value.parse().ok(),
            _ => {}
        }
    }
    Some(Ready {
        name: name?,
        gossip: gossip?,
        http: http?,
        pid: pid?,
    })
}

/// The temporary directory holding the demo nodes' data directories: removed, with everything
/// in it, when the demo ends (after its children stopped, since it outlives them).
struct DemoDataDir {
    path: std::path::PathBuf,
}

impl DemoDataDir {
    fn create() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("chatterd-demo-{}", std::process::id()));
        // Left by an earlier demo of the same process id, which cannot be running any more.
        let _ = std::fs::remove_dir_all(&path);
        chatter::persist::prepare_dir(&path).map_err(|e| {
            anyhow!(
                "cannot create the demo's data directory {}: {}",
                path.display(),
                io_message(&e)
            )
        })?;
        Ok(Self { path })
    }
}

impl Drop for DemoDataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

struct DemoChild {
    ready: Ready,
    signals: mpsc::UnboundedSender<i32>,
    monitor: JoinHandle<()>,
}

struct Started {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: ChildStderr,
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(nodes: u32, args: &Args) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the chatterd executable")?;
    let profile = args.effective_profile();
    let mut sigterm = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;

    // A bad keyring or mode is refused once, here, rather than by every child.
    crate::subsystems::keyring::load(&crate::daemon::keyring_settings(args))?;
    let data = DemoDataDir::create()?;
    let mut children: Vec<DemoChild> = Vec::new();
    let mut pending = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    let result: Result<()> = async {
        for i in 1..=nodes {
            let name = format!("demo-{i}");
            let mut role = demo_role(i, nodes);
            role.push("--data-dir".to_owned());
            role.push(data.path.join(&name).display().to_string());
            let mut started = start_child(&exe, &name, profile, args, seed, role)?;
            if seed.is_none() {
                // The first node must be up before the others can use it as their seed.
                let ready = read_ready(&name, &mut started).await?;
                seed = Some(ready.gossip);
                pending.push((ready, started));
            } else {
                pending.push((
                    Ready {
                        name,
                        gossip: SocketAddr::from(([0, 0, 0, 0], 0)),
                        http: SocketAddr::from(([0, 0, 0, 0], 0)),
                        pid: 0,
                    },
                    started,
                ));
            }
        }
        for (ready, started) in pending.iter_mut() {
            if ready.pid == 0 {
                *ready = read_ready(&ready.name.clone(), started).await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(err) = result {
        // Dropping the children kills them (kill_on_drop).
        for (_, mut started) in pending {
            let _ = started.child.start_kill();
            let _ = started.child.wait().await;
        }
        return Err(err);
    }

    print_table(&pending, profile, args, nodes);

    for (ready, started) in pending {
        let Started {
            child,
            stdout,
            stderr,
        } = started;
        forward_lines(ready.name.clone(), stdout);
        forward_lines(ready.name.clone(), BufReader::new(stderr));
        let (signals, rx) = mpsc::unbounded_channel();
        let monitor = tokio::spawn(monitor_child(ready.name.clone(), child, rx));
        children.push(DemoChild {
            ready,
            signals,
            monitor,
        });
    }

    tokio::select! {
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }
    eprintln!(
        "demo: stopping {} nodes (SIGTERM: each leaves the cluster)",
        children.len()
    );
    for child in &children {
        let _ = child.signals.send(libc::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    for child in children {
        let DemoChild {
            ready,
            signals,
            mut monitor,
        } = child;
        if tokio::time::timeout_at(deadline, &mut monitor)
            .await
            .is_err()
        {
            eprintln!("demo: {} did not stop in time, killing it", ready.name);
            let _ = signals.send(libc::SIGKILL);
            let _ = monitor.await;
        }
    }
    eprintln!("demo: stopped");
    Ok(())
}

/// The services and checks of demo node `i` (1-based) of `nodes`, as extra flags: searcher
/// shards 0 and 1, an indexer with a warning check, two api nodes, one of them with a critical
/// check (the last node when there are fewer than five), so that `chatter services` and
/// `chatter checks` have something to show. Every node also checks that /tmp is writable.
pub fn demo_role(i: u32, nodes: u32) -> Vec<String> {
    let mut flags: Vec<String> = Vec::new();
    let mut add = |flag: &str, value: &str| {
        flags.push(flag.to_owned());
        flags.push(value.to_owned());
    };
    let service = match (i - 1) % 5 {
        0 => "searcher:0",
        1 => "searcher:1",
        2 => "indexer",
        _ => "api",
    };
    add("--service", service);
    add(
        "--check",
        "name=tmp,interval=10s,cmd=test -w /tmp && echo 'OK - /tmp is writable' \
         || { echo 'CRITICAL - /tmp is not writable'; exit 2; }",
    );
    if (i - 1) % 5 == 2 {
        add(
            "--check",
            "name=queue,interval=10s,cmd=echo 'WARNING - indexing queue at 1200 documents (warn at 1000)'; exit 1",
        );
    }
    if i == nodes.min(5) {
        add(
            "--check",
            "name=backup,interval=10s,cmd=echo 'CRITICAL - last backup finished 26 hours ago'; exit 2",
        );
    }
    flags
}

fn start_child(
    exe: &std::path::Path,
    name: &str,
    profile: Profile,
    args: &Args,
    seed: Option<SocketAddr>,
    role: Vec<String>,
) -> Result<Started> {
    let mut cmd = Command::new(exe);
    cmd.args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--node-name", name])
        .args(["--profile", profile.as_str()])
        .args(args.timings.flags())
        .args(["--cluster", &args.cluster]);
    for (key, value) in &args.tags {
        cmd.arg("--tag").arg(format!("{key}={value}"));
    }
    if let Some(seed) = seed {
        cmd.arg("--seed").arg(seed.to_string());
    }
    // The demo's own monitoring flags, then whatever the operator gave (for every node).
    cmd.args(role);
    for check in &args.checks {
        cmd.arg("--check").arg(check_flag(check));
    }
    for service in &args.services {
        let spec = match &service.shard {
            Some(shard) => format!("{}:{shard}", service.kind),
            None => service.kind.clone(),
        };
        cmd.arg("--service").arg(spec);
    }
    for handler in &args.event_handlers {
        cmd.arg("--event-handler").arg(handler_flag(handler));
    }
    cmd.arg("--event-handler-timeout")
        .arg(format_duration(args.event_handler_timeout))
        .arg("--status-interval")
        .arg(format_duration(args.status_interval));
    // The HTTP API's bounds and allowed names, as given (TLS is refused with --demo).
    let http = &args.http_options;
    let duration = format_duration;
    cmd.arg("--http-header-timeout")
        .arg(duration(http.http_header_timeout))
        .arg("--http-request-timeout")
        .arg(duration(http.http_request_timeout))
        .arg("--http-idle-timeout")
        .arg(duration(http.http_idle_timeout))
        .arg("--http-max-connections")
        .arg(http.http_max_connections.to_string())
        .arg("--http-max-event-streams")
        .arg(http.http_max_event_streams.to_string());
    for host in &http.http_allowed_hosts {
        cmd.arg("--http-allowed-host").arg(host);
    }
    if let Some(token) = &args.http_token {
        // Through the environment: it stays out of `ps`.
        cmd.env("CHATTERD_HTTP_TOKEN", token);
    }
    // The same keyring for every node: the operator's file (read by each child, with the
    // same permission check), or the environment's key, again through the environment.
    if let Some(path) = &args.keyring_file {
        cmd.arg("--keyring-file").arg(path);
    }
    if let Some(EnvKey(key)) = &args.gossip_key {
        cmd.env(GOSSIP_KEY_ENV, key.to_base64().as_str());
    }
    if let Some(mode) = args.encryption_mode {
        cmd.arg("--encryption-mode").arg(mode.as_str());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; this runs in
        // the forked child before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout pipe for {name}"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no stderr pipe for {name}"))?;
    Ok(Started {
        child,
        stdout: BufReader::new(stdout),
        stderr,
    })
}

/// A check as its `--check` flag.
fn check_flag(check: &CheckSpec) -> String {
    let mut head = format!(
        "name={},interval={},timeout={}",
        check.name,
        format_duration(check.interval),
        format_duration(check.timeout)
    );
    if let Some(ca) = &check.tls.ca {
        head.push_str(&format!(",ca={}", ca.path().display()));
    }
    if check.tls.skip_verify {
        head.push_str(",tls-skip-verify=true");
    }
    match &check.kind {
        CheckKind::Http(url) => format!("{head},http={url}"),
        CheckKind::Tcp(addr) => format!("{head},tcp={addr}"),
        CheckKind::Command(cmd) => format!("{head},cmd={cmd}"),
    }
}

/// A handler as its `--event-handler` flag.
fn handler_flag(handler: &HandlerSpec) -> String {
    if handler.accept.is_empty() {
        return format!("all={}", handler.command);
    }
    let filters: Vec<String> = handler
        .accept
        .iter()
        .map(|a| match a {
            Accept::All => "all".to_owned(),
            Accept::AnyMember => "member".to_owned(),
            Accept::Member(kind) => (*kind).to_owned(),
            Accept::Message(None) => "message".to_owned(),
            Accept::Message(Some(tag)) => format!("message:{tag}"),
            Accept::KeyChanged(None) => "key-changed".to_owned(),
            Accept::KeyChanged(Some(prefix)) => format!("key-changed:{prefix}"),
        })
        .collect();
    format!("{}={}", filters.join(","), handler.command)
}

async fn read_ready(name: &str, started: &mut Started) -> Result<Ready> {
    let mut line = String::new();
    let read = tokio::time::timeout(READY_TIMEOUT, started.stdout.read_line(&mut line)).await;
    match read {
        Ok(Ok(n)) if n > 0 => parse_ready_line(&line)
            .ok_or_else(|| anyhow!("{name} printed an unexpected first line: {}", line.trim())),
        Ok(Ok(_)) => {
            let status = started.child.wait().await.ok();
            let mut stderr = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut started.stderr, &mut stderr).await;
            bail!(
                "{name} exited before it was ready ({}): {}",
                status.map_or_else(|| "unknown status".to_owned(), describe_exit),
                stderr.trim()
            )
        }
        Ok(Err(e)) => Err(anyhow!("cannot read the ready line of {name}: {e}")),
        Err(_) => bail!("{name} was not ready within {READY_TIMEOUT:?}"),
    }
}

fn print_table(nodes: &[(Ready, Started)], profile: Profile, args: &Args, count: u32) {
    // The timings were validated before the first child started.
    let config = args.protocol_config().unwrap_or_else(|_| profile.config());
    let bound = config.detection_bound(count as usize);
    let tuned = if args.timings.given().is_empty() {
        ""
    } else {
        " with the timing options given"
    };
    let name_width = nodes
        .iter()
        .map(|(r, _)| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!();
    println!(
        "Chatter demo: {count} nodes on 127.0.0.1, profile {}{tuned} (a crash is detected within ~{:.1} s)",
        profile.as_str(),
        bound.as_secs_f64()
    );
    println!();
    println!(
        "  {:name_width$}  {:>7}  {:21}  HTTP",
        "NAME", "PID", "GOSSIP"
    );
    for (ready, _) in nodes {
        println!(
            "  {:name_width$}  {:>7}  {:21}  http://{}",
            ready.name, ready.pid, ready.gossip, ready.http
        );
    }
    if let (Some((first, _)), Some((victim, _))) = (nodes.first(), nodes.last()) {
        println!();
        println!("Try, in another terminal:");
        println!(
            "  chatter members --http {}    (or: cargo run -p chatter-cli -- members --http {})",
            first.http, first.http
        );
        println!("  curl -s http://{}/v1/members", first.http);
        println!(
            "  chatter events --http {}     follow membership, key/value and message events",
            first.http
        );
        println!(
            "  chatter-inject {} '{{\"DebugMessage\":{{\"text\":\"hello world\"}}}}'",
            first.gossip
        );
        println!(
            "  chatter kv set role web --http {}    then: chatter kv get --http {}",
            first.http, victim.http
        );
        println!(
            "  chatter checks --http {}     every node's health checks (one warning, one critical)",
            first.http
        );
        println!(
            "  chatter services --http {}   live instances by type and shard",
            first.http
        );
        println!(
            "  chatter system --http {}     load, CPU, memory, disk and uptime of every node",
            first.http
        );
        println!(
            "  kill -9 {}       crash {}: the others declare it failed",
            victim.pid, victim.name
        );
        println!(
            "  kill -STOP {}    freeze {} (kill -CONT {} to resume): suspected, then failed if frozen too long",
            victim.pid, victim.name, victim.pid
        );
    }
    println!();
    println!("Ctrl-C stops the demo: every node leaves the cluster gracefully.");
    println!();
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

fn forward_lines<R: AsyncRead + Unpin + Send + 'static>(name: String, reader: BufReader<R>) {
    tokio::spawn(async move {
        let mut lines = reader.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{name}] {line}");
        }
    });
}

async fn monitor_child(name: String, mut child: Child, mut signals: mpsc::UnboundedReceiver<i32>) {
    let pid = child.id();
    let mut stopping = false;
    loop {
        tokio::select! {
            status = child.wait() => {
                let what = match status {
                    Ok(status) => describe_exit(status),
                    Err(e) => format!("unknown status ({e})"),
                };
                let pid = pid.map_or_else(|| "?".to_owned(), |p| p.to_string());
                if stopping {
                    eprintln!("demo: {name} (pid {pid}) stopped: {what}");
                } else {
                    eprintln!("demo: {name} (pid {pid}) died: {what}; the demo keeps running");
                }
                return;
            }
            Some(sig) = signals.recv() => {
                stopping = true;
                // `id()` is None once the child has been reaped, so a recycled pid is never hit.
                if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
}

/// "exit code 0", "killed by signal 9 (SIGKILL)", ...
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(sig) => {
            let name = match sig {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGINT => " (SIGINT)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                _ => "",
            };
            format!("killed by signal {sig}{name}")
        }
        None => "unknown status".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_roles_cover_services_and_failing_checks() {
        let all: Vec<String> = (1..=5).flat_map(|i| demo_role(i, 5)).collect();
        let text = all.join(" ");
        for service in ["searcher:0", "searcher:1", "indexer", "api"] {
            assert!(all.iter().any(|a| a == service), "{service}: {text}");
        }
        assert!(text.contains("exit 2") && text.contains("exit 1"), "{text}");
        // Every flag parses.
        for i in 1..=5 {
            let mut argv = vec!["chatterd".to_owned()];
            argv.extend(demo_role(i, 5));
            <Args as clap::Parser>::try_parse_from(argv).unwrap();
        }
        // A smaller demo still has a critical check.
        assert!(demo_role(3, 3).join(" ").contains("exit 2"));
    }

    #[test]
    fn checks_and_handlers_round_trip_through_their_flags() {
        for spec in [
            "name=a,interval=2s,timeout=1s,cmd=check_load -w 5,4,3",
            "name=b,interval=10s,timeout=5s,http=http://127.0.0.1:1/x",
            "name=c,interval=1m,timeout=500ms,tcp=db:5432",
            "name=d,interval=10s,timeout=5s,tls-skip-verify=true,http=https://127.0.0.1:1/x",
        ] {
            let check = crate::options::checks::parse_check(spec).unwrap();
            assert_eq!(check_flag(&check), spec);
        }
        for spec in [
            "all=logger x",
            "member-failed,message:Deploy,key-changed:check/=cat",
        ] {
            let handler = crate::options::hooks::parse_handler(spec).unwrap();
            assert_eq!(handler_flag(&handler), spec);
        }
    }

    #[test]
    fn parses_the_ready_line() {
        let ready = parse_ready_line(
            "chatterd ready name=n1 gossip=127.0.0.1:4000 http=127.0.0.1:4001 pid=42\n",
        )
        .unwrap();
        assert_eq!(ready.name, "n1");
        assert_eq!(ready.gossip, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(ready.http, "127.0.0.1:4001".parse().unwrap());
        assert_eq!(ready.pid, 42);
        assert!(parse_ready_line("hello").is_none());
        assert!(parse_ready_line("chatterd ready name=n1").is_none());
    }
}
