//! `chatter-bench-chitchat`: one chitchat 0.13 node, for `chatter-bench compare`.
//!
//! The node gossips over UDP with chitchat's own wire format and failure detector, using
//! chitchat's default values wherever chitchat has them (`FailureDetectorConfig::default()`,
//! protocol `V0`, the 15 min tombstone grace period and 1 s gossip interval of
//! `ChitchatConfig`'s default). The harness drives it through standard input and output, one
//! line per message:
//!
//! ```text
//! out: ready name=NAME gossip=127.0.0.1:PORT pid=PID     once the socket is bound
//! out: up UNIX_MS NAME                                   NAME became live in this node's view
//! out: down UNIX_MS NAME                                 NAME is no longer live (dead)
//! out: key UNIX_MS OWNER KEY VALUE                       a key of OWNER arrived or changed here
//! in:  set KEY VALUE        out: ok set
//! in:  members              out: members NAME=live|dead@SINCE_MS ...
//! in:  stats                out: stats bytes_sent=.. packets_sent=.. bytes_received=.. packets_received=..
//! ```
//!
//! Traffic is counted by a `Transport` wrapping chitchat's own UDP socket: payload bytes and
//! datagrams sent and received (as chitchat reports them). SIGTERM or SIGINT (or the end of standard input):
//! the node stops gossiping and exits 0. chitchat has no leave message, so the others find out
//! through their failure detectors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatEnvelope, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

#[derive(Parser)]
#[command(about = "A chitchat node driven over standard input/output (for chatter-bench)")]
struct Args {
    /// Node id, unique in the cluster.
    #[arg(long)]
    name: String,
    /// UDP address to bind (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Seed node address (repeatable).
    #[arg(long = "seed")]
    seeds: Vec<String>,
    /// Cluster id.
    #[arg(long, default_value = "chatter-bench")]
    cluster: String,
    /// Gossip interval in milliseconds [default: 1000, as chitchat's `ChitchatConfig::default`].
    #[arg(long, default_value_t = 1000)]
    gossip_interval_ms: u64,
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Bytes and datagrams through the gossip socket.
#[derive(Default)]
struct Counters {
    bytes_sent: AtomicU64,
    packets_sent: AtomicU64,
    bytes_received: AtomicU64,
    packets_received: AtomicU64,
}

/// A chitchat `Transport` handing out chitchat's own UDP socket, bound beforehand (so that the
/// node knows its port before it builds its id), wrapped to count what goes through it.
struct CountingTransport {
    socket: Mutex<Option<Box<dyn Socket>>>,
    counters: Arc<Counters>,
}

struct CountingSocket {
    inner: Box<dyn Socket>,
    counters: Arc<Counters>,
}

#[async_trait]
impl Transport for CountingTransport {
    async fn open(&self, _listen_addr: SocketAddr) -> Result<Box<dyn Socket>> {
        let inner = self
            .socket
            .lock()
            .map_err(|_| anyhow!("transport lock poisoned"))?
            .take()
            .context("the gossip socket was already opened")?;
        Ok(Box::new(CountingSocket {
            inner,
            counters: self.counters.clone(),
        }))
    }
}

#[async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> Result<SendOutcome> {
        let outcome = self.inner.send(to, envelope).await?;
        self.counters
            .bytes_sent
            .fetch_add(outcome.num_bytes_sent as u64, Ordering::Relaxed);
        self.counters.packets_sent.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn recv(&mut self) -> Result<RecvOutcome> {
        let outcome = self.inner.recv().await?;
        self.counters
            .bytes_received
            .fetch_add(outcome.num_bytes_received as u64, Ordering::Relaxed);
        self.counters
            .packets_received
            .fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }
}

/// Liveness of every node name this node has seen live: (live, since unix ms).
type Liveness = Arc<Mutex<BTreeMap<String, (bool, f64)>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let socket: Box<dyn Socket> = Box::new(
        UdpSocket::open(args.listen)
            .await
            .with_context(|| format!("cannot bind UDP {}", args.listen))?,
    );
    let addr = socket.local_addr()?;
    let counters = Arc::new(Counters::default());
    let transport = CountingTransport {
        socket: Mutex::new(Some(socket)),
        counters: counters.clone(),
    };
    // The generation: the start time, as Quickwit does.
    let generation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(args.name.clone(), generation, addr),
        cluster_id: args.cluster.clone(),
        gossip_interval: Duration::from_millis(args.gossip_interval_ms),
        listen_addr: addr,
        seed_nodes: args.seeds.clone(),
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(15 * 60),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    };
    let handle = spawn_chitchat(config, Vec::new(), &transport).await?;

    // Every line to standard output goes through one writer task.
    let (out, mut out_rx) = unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err()
                || stdout.write_all(b"\n").await.is_err()
                || stdout.flush().await.is_err()
            {
                return;
            }
        }
    });

    let chitchat = handle.chitchat();
    let key_out = out.clone();
    let _listener = chitchat.lock().await.subscribe_event("", move |event| {
        let _ = key_out.send(format!(
            "key {:.3} {} {} {}",
            unix_ms(),
            event.node.node_id,
            event.key,
            event.value
        ));
    });

    let liveness: Liveness = Arc::default();
    let mut watcher = chitchat.lock().await.live_nodes_watcher();
    let (live_out, live_state) = (out.clone(), liveness.clone());
    tokio::spawn(async move {
        loop {
            let live: Vec<String> = watcher
                .borrow_and_update()
                .keys()
                .map(|id| id.node_id.to_string())
                .collect();
            update_liveness(&live_state, &live, &live_out);
            if watcher.changed().await.is_err() {
                return;
            }
        }
    });

    let _ = out.send(format!(
        "ready name={} gossip={} pid={}",
        args.name,
        addr,
        std::process::id()
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { break };
                let reply = command(&line, &handle, &liveness, &counters).await;
                let _ = out.send(reply);
            }
        }
    }
    let _ = handle.shutdown().await;
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    Ok(())
}

fn update_liveness(state: &Liveness, live: &[String], out: &UnboundedSender<String>) {
    let now = unix_ms();
    let Ok(mut map) = state.lock() else { return };
    for name in live {
        let entry = map.entry(name.clone()).or_insert((false, now));
        if !entry.0 {
            *entry = (true, now);
            let _ = out.send(format!("up {now:.3} {name}"));
        }
    }
    for (name, entry) in map.iter_mut() {
        if entry.0 && !live.contains(name) {
            *entry = (false, now);
            let _ = out.send(format!("down {now:.3} {name}"));
        }
    }
}

async fn command(
    line: &str,
    handle: &chitchat::ChitchatHandle,
    liveness: &Liveness,
    counters: &Counters,
) -> String {
    let mut words = line.splitn(3, ' ');
    match words.next() {
        Some("set") => {
            let (Some(key), Some(value)) = (words.next(), words.next()) else {
                return "error usage: set KEY VALUE".to_owned();
            };
            handle
                .with_chitchat(|c| c.self_node_state().set(key, value))
                .await;
            "ok set".to_owned()
        }
        Some("members") => {
            let Ok(map) = liveness.lock() else {
                return "error lock".to_owned();
            };
            let mut reply = "members".to_owned();
            for (name, (live, since)) in map.iter() {
                let status = if *live { "live" } else { "dead" };
                reply.push_str(&format!(" {name}={status}@{since:.3}"));
            }
            reply
        }
        Some("stats") => format!(
            "stats bytes_sent={} packets_sent={} bytes_received={} packets_received={}",
            counters.bytes_sent.load(Ordering::Relaxed),
            counters.packets_sent.load(Ordering::Relaxed),
            counters.bytes_received.load(Ordering::Relaxed),
            counters.packets_received.load(Ordering::Relaxed),
        ),
        _ => format!("error unknown command: {line}"),
    }
}
