//! The driver task: the one owner of the protocol core and the socket.
//!
//! It waits on whichever comes first: the socket (a datagram, or an ICMP error on Linux), a
//! command from a handle, the core's next deadline, a host check's answer, the seed refresh, or
//! the next snapshot due. After every input it drains the core's outputs in the order the core
//! documents: datagrams to send, then events (fanned out to subscribers), then host checks to
//! run (as tasks, `host_check.rs`), then publishes a snapshot when something changed, and the
//! set of live members when that changed.
//!
//! Queries about key/value state are commands answered from the core directly: exact, and no
//! lock, since the driver is the core's only owner.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatter_core::{Event, HostAnswer, HostCheck, KeyOpError, KeyReport, Member, Node};
use tokio::io::{Interest, Ready};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant as TokioInstant;
use tracing::{debug, info, warn, Instrument};

use crate::discover::{self, Discoverer};
use crate::handle::{Command, IoStats, LiveMembers, Snapshot};
use crate::host_check;
use crate::persist::{self, Persister};
use crate::seeds::{self, Seeds};
use crate::socket;
use crate::state::NodeState;

/// Receive buffer: the largest UDP payload fits.
const RECV_BUFFER: usize = 65_536;
/// Datagrams read per readiness before timers and commands get a turn.
const MAX_BATCH: usize = 256;
/// Longest time a changed state waits to be published when no event forces it.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);
/// Attempts at sending one datagram: each pending ICMP report of an earlier datagram fails one
/// attempt (and is read), and a first WouldBlock from tokio's cached readiness another.
const SEND_ATTEMPTS: usize = 8;
/// Longest time a graceful leave keeps the node running to get the news out.
pub(crate) const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

type Resolution = Vec<(String, io::Result<Vec<SocketAddr>>)>;

/// What woke the driver up.
enum Wake {
    Command(Option<Command>),
    Socket(io::Result<Ready>),
    Timeout,
    ResolveTick,
    Resolved(Result<Resolution, oneshot::error::RecvError>),
    Publish,
    LeaveTimeout,
    SaveDue,
    Saved(Result<io::Result<()>, tokio::task::JoinError>),
    Discovery(discover::Wake),
    HostCheck(Result<(u64, HostAnswer), JoinError>),
}

/// Everything the driver task owns.
pub(crate) struct Driver {
    pub(crate) node: Node,
    pub(crate) socket: UdpSocket,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: broadcast::Sender<Arc<Event>>,
    pub(crate) snapshot: watch::Sender<Arc<Snapshot>>,
    pub(crate) live: watch::Sender<LiveMembers>,
    pub(crate) seeds: Seeds,
    /// When to resolve the seeds again.
    pub(crate) next_resolve: TokioInstant,
    /// When the last resolution ended (or the driver started).
    last_resolved: TokioInstant,
    /// No address the seeds gave is a live member: resolve sooner
    /// (`seeds::LOST_REFRESH_INTERVAL`). Updated whenever the live members are published.
    seeds_lost: bool,
    pub(crate) io: IoStats,
    ipv6_socket: bool,
    /// The gossip socket's address, the source of host checks (unless unspecified).
    local_ip: Option<IpAddr>,
    /// Host checks running, each answering with its id; at most `host_check::MAX_RUNNING`.
    host_checks: JoinSet<(u64, HostAnswer)>,
    resolving: Option<oneshot::Receiver<Resolution>>,
    /// Something changed since the last snapshot.
    dirty: bool,
    last_publish: Instant,
    leave_deadline: Option<TokioInstant>,
    /// Handles waiting for the node to stop.
    waiters: Vec<oneshot::Sender<()>>,
    /// Handles waiting for the report of a key operation, by its id; at most
    /// `chatter_core::MAX_KEY_OPS_IN_FLIGHT`, since the core refuses more.
    key_ops: BTreeMap<u64, oneshot::Sender<Result<KeyReport, KeyOpError>>>,
    buf: Box<[u8]>,
    /// Scratch list of port-unreachable destinations, reused.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    unreachable: Vec<SocketAddr>,
    /// The data directory's schedule, with `Builder::data_dir`.
    persister: Option<Persister>,
    /// The snapshot write running on the blocking pool (one at a time).
    saving: Option<tokio::task::JoinHandle<io::Result<()>>>,
    /// LAN discovery, with `Builder::discover`.
    discovery: Option<Discoverer>,
}

impl Driver {
    /// A driver for `node` on `socket`; `snapshot` should already hold [`Driver::snapshot_of`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node: Node,
        socket: UdpSocket,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Arc<Event>>,
        snapshot: watch::Sender<Arc<Snapshot>>,
        live: watch::Sender<LiveMembers>,
        seeds: Seeds,
        next_resolve: TokioInstant,
        io: IoStats,
        persister: Option<Persister>,
    ) -> Self {
        let ipv6_socket = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        let local_ip = socket.local_addr().ok().map(|a| socket::normalize(a).ip());
        Self {
            node,
            socket,
            commands,
            events,
            snapshot,
            live,
            seeds,
            next_resolve,
            last_resolved: TokioInstant::now(),
            seeds_lost: false,
            io,
            ipv6_socket,
            local_ip,
            host_checks: JoinSet::new(),
            resolving: None,
            dirty: false,
            last_publish: Instant::now(),
            leave_deadline: None,
            waiters: Vec::new(),
            key_ops: BTreeMap::new(),
            buf: vec![0; RECV_BUFFER].into_boxed_slice(),
            unreachable: Vec::new(),
            persister,
            saving: None,
            discovery: None,
        }
    }

    /// Adds LAN discovery; its first announcement goes out at once.
    pub(crate) fn with_discovery(mut self, discovery: Option<Discoverer>) -> Self {
        self.io.discovery = discovery.as_ref().map(Discoverer::stats);
        self.discovery = discovery;
        self
    }

    /// A snapshot of `node` now.
    pub(crate) fn snapshot_of(node: &Node, io: IoStats) -> Snapshot {
        Snapshot {
            local: node.local_member().clone(),
            members: node.members().collect(),
            stats: *node.stats(),
            health_score: node.health_score(),
            pending_broadcasts: node.pending_broadcasts(),
            suspicions: node.num_suspicions(),
            taken_at: Instant::now(),
            io,
            encryption_mode: node.encryption_mode(),
            keys: node.keyring().map(|k| k.list()).unwrap_or_default(),
        }
    }

    /// The members of `node` that are alive or suspect, itself included unless it has left.
    pub(crate) fn live_of(node: &Node) -> BTreeMap<String, Member> {
        std::iter::once(node.local_member().clone())
            .chain(node.members())
            .filter(|m| m.status.is_live())
            .map(|m| (m.name.clone(), m))
            .collect()
    }

    /// Runs until the node is shut down, has left, or every handle is gone.
    pub(crate) async fn run(mut self) {
        // The core's first outputs (its own `Alive`, datagrams to the seeds) are already queued.
        self.flush(true);
        loop {
            let timeout = self.node.poll_timeout().map(TokioInstant::from_std);
            let publish_at = self
                .dirty
                .then(|| TokioInstant::from_std(self.last_publish + PUBLISH_INTERVAL));
            let resolve_at = (self.resolving.is_none() && !self.seeds.is_empty()).then(|| {
                seeds::next_resolution(self.next_resolve, self.last_resolved, self.seeds_lost)
            });
            let save_at = self
                .saving
                .is_none()
                .then(|| self.persister.as_ref().and_then(Persister::deadline))
                .flatten()
                .map(TokioInstant::from_std);
            let wake = tokio::select! {
                command = self.commands.recv() => Wake::Command(command),
                ready = self.socket.ready(socket_interest()) => Wake::Socket(ready),
                () = sleep_until(timeout) => Wake::Timeout,
                () = sleep_until(resolve_at) => Wake::ResolveTick,
                resolved = recv_if_some(&mut self.resolving) => Wake::Resolved(resolved),
                () = sleep_until(publish_at) => Wake::Publish,
                () = sleep_until(self.leave_deadline) => Wake::LeaveTimeout,
                () = sleep_until(save_at) => Wake::SaveDue,
                saved = join_if_some(&mut self.saving) => Wake::Saved(saved),
                wake = discovery_wake(&self.discovery) => Wake::Discovery(wake),
                Some(done) = self.host_checks.join_next(), if !self.host_checks.is_empty() => {
                    Wake::HostCheck(done)
                }
            };
            let mut publish = false;
            match wake {
                Wake::Command(None) => {
                    debug!("every handle was dropped; stopping");
                    break;
                }
                Wake::Command(Some(command)) => match self.command(command) {
                    ControlFlow::Break(()) => break,
                    // A command's effect (tags, leave) is visible in the snapshot at once.
                    ControlFlow::Continue(changed) => publish = changed,
                },
                Wake::Socket(Ok(ready)) => self.socket_ready(ready),
                Wake::Socket(Err(error)) => {
                    warn!(%error, "socket failed; stopping");
                    break;
                }
                Wake::Timeout => {
                    self.node.handle_timeout(Instant::now());
                    self.dirty = true;
                }
                Wake::ResolveTick => self.start_resolution(),
                Wake::Resolved(result) => {
                    self.resolving = None;
                    match result {
                        Ok(resolution) => self.apply_resolution(resolution),
                        // The resolver task panicked or was cancelled: try again later.
                        Err(_) => {
                            self.last_resolved = TokioInstant::now();
                            self.next_resolve = self.last_resolved + seeds::RETRY_INTERVAL;
                        }
                    }
                }
                Wake::Publish => publish = true,
                Wake::HostCheck(Ok((id, answer))) => {
                    debug!(id, ?answer, "host check answered");
                    self.node.handle_host_check(Instant::now(), id, answer);
                    self.dirty = true;
                }
                // A check task that panicked or was cancelled: the core forgets the check
                // after its expiry.
                Wake::HostCheck(Err(error)) => debug!(%error, "host check task failed"),
                Wake::LeaveTimeout => {
                    debug!("leave not confirmed within {LEAVE_TIMEOUT:?}; stopping anyway");
                    break;
                }
                Wake::SaveDue => self.start_save(),
                Wake::Saved(result) => {
                    self.saving = None;
                    self.saved(result);
                }
                Wake::Discovery(wake) => {
                    if let Some(discovery) = self.discovery.as_mut() {
                        discovery.wake(wake, &mut self.node, Instant::now());
                        self.io.discovery = Some(discovery.stats());
                        self.dirty = true;
                    }
                }
            }
            self.flush(publish);
            if self.leave_deadline.is_some() && self.node.is_leave_complete() {
                debug!("leave announced");
                break;
            }
        }
        self.final_save().await;
        self.stop();
    }

    /// Starts writing a snapshot of the node on the blocking pool.
    fn start_save(&mut self) {
        let Some(persister) = self.persister.as_mut() else {
            return;
        };
        let state = persister.take(&self.node, Instant::now());
        let dir = persister.dir().to_owned();
        self.saving = Some(tokio::task::spawn_blocking(move || {
            persist::save(&dir, &state)
        }));
    }

    /// Counts the end of a snapshot write.
    fn saved(&mut self, result: Result<io::Result<()>, tokio::task::JoinError>) {
        let Some(persister) = self.persister.as_mut() else {
            return;
        };
        let result = result.unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        match result {
            Ok(()) => self.io.state_writes += 1,
            Err(error) => {
                self.io.state_write_failures += 1;
                persister.failed(&error, Instant::now());
            }
        }
        self.dirty = true;
    }

    /// The last snapshot when the node stops: waits for the write in flight (so that it cannot
    /// land after this one), then writes the node as it is now.
    async fn final_save(&mut self) {
        if self.persister.is_none() {
            return;
        }
        if let Some(saving) = self.saving.take() {
            let result = saving.await;
            self.saved(result);
        }
        self.start_save();
        if let Some(saving) = self.saving.take() {
            let result = saving.await;
            self.saved(result);
        }
    }

    /// Publishes the final state, closes everything, then tells the waiting handles, so that
    /// when `leave()`/`shutdown()` return the socket is closed and the streams have ended.
    fn stop(mut self) {
        self.publish();
        let waiters = std::mem::take(&mut self.waiters);
        let name = self.node.name().to_owned();
        drop(self);
        info!(node = %name, "stopped");
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    /// Carries out a command. `Continue(true)` when its effect shows in the snapshot and
    /// should be published at once.
    fn command(&mut self, command: Command) -> ControlFlow<(), bool> {
        let now = Instant::now();
        match command {
            Command::Join { seed, addrs, reply } => {
                info!(%seed, ?addrs, "joining through seed");
                self.seeds.record(seed, Ok(addrs));
                // Always hand the list over: an explicit join contacts the seeds again now.
                let union = self.seeds.union();
                self.seeds.mark_joined(union.clone());
                self.node.join(now, union);
                let _ = reply.send(());
            }
            Command::SetTags { tags, reply } => {
                let _ = reply.send(self.node.set_tags(now, tags));
                self.touch_saved_state();
            }
            Command::Leave { reply } => {
                self.waiters.push(reply);
                if self.leave_deadline.is_none() {
                    info!("leaving the cluster");
                    self.node.leave(now);
                    self.leave_deadline = Some(TokioInstant::from_std(now + LEAVE_TIMEOUT));
                }
            }
            Command::Shutdown { reply } => {
                self.waiters.push(reply);
                info!("shutting down without leaving");
                return ControlFlow::Break(());
            }
            // Writes and broadcasts change only counters in the snapshot: published in time.
            Command::Set { key, value, reply } => {
                let _ = reply.send(self.node.set(now, &key, value));
                self.touch_saved_state();
                self.dirty = true;
                return ControlFlow::Continue(false);
            }
            Command::Delete { key, reply } => {
                let _ = reply.send(self.node.delete(now, &key));
                self.touch_saved_state();
                self.dirty = true;
                return ControlFlow::Continue(false);
            }
            Command::Broadcast {
                tag,
                payload,
                reply,
            } => {
                let _ = reply.send(self.node.broadcast(now, &tag, payload));
                self.dirty = true;
                return ControlFlow::Continue(false);
            }
            // Queries change nothing.
            Command::Get { node, key, reply } => {
                let _ = reply.send(self.node.get(&node, &key).map(<[u8]>::to_vec));
                return ControlFlow::Continue(false);
            }
            Command::NodeState { node, reply } => {
                let _ = reply.send(NodeState::of(&self.node, &node));
                return ControlFlow::Continue(false);
            }
            Command::ClusterState { reply } => {
                let _ = reply.send(NodeState::all(&self.node));
                return ControlFlow::Continue(false);
            }
            Command::KeyOp { op, reply } => {
                match self.node.start_key_op(now, op) {
                    // Answered when the core reports the operation's end (`flush`).
                    Ok(id) => {
                        self.key_ops.insert(id, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
                self.dirty = true;
                return ControlFlow::Continue(false);
            }
            Command::Keyring { reply } => {
                let _ = reply.send(self.node.keyring().cloned());
                return ControlFlow::Continue(false);
            }
        }
        self.dirty = true;
        ControlFlow::Continue(true)
    }

    fn socket_ready(&mut self, ready: Ready) {
        #[cfg(target_os = "linux")]
        if ready.is_error() {
            self.read_error_queue(true);
        }
        if ready.is_readable() {
            self.receive_batch();
        }
    }

    /// Reads datagrams until the socket has none left (or a batch is done: the readiness is
    /// kept and the loop comes straight back).
    fn receive_batch(&mut self) {
        for _ in 0..MAX_BATCH {
            match self.socket.try_recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    let from = socket::normalize(from);
                    self.node
                        .handle_datagram(Instant::now(), from, &self.buf[..len]);
                    self.dirty = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_icmp_report(&e) => {
                    // An ICMP error for an earlier datagram, reported once through the socket's
                    // pending error; on Linux the details wait in the error queue.
                    #[cfg(target_os = "linux")]
                    self.read_error_queue(false);
                }
                Err(error) => {
                    self.io.recv_errors += 1;
                    debug!(%error, "receive failed");
                    return;
                }
            }
        }
    }

    /// Reads the socket's error queue and hands every port-unreachable to the core.
    ///
    /// `clear_readiness`: go through tokio so that it forgets the error readiness once the
    /// queue is empty (when woken by it); when called because a `recv`/`send` failed, tokio may
    /// not know of the error yet, so the queue is read directly.
    #[cfg(target_os = "linux")]
    fn read_error_queue(&mut self, clear_readiness: bool) {
        use std::os::fd::AsRawFd;

        let fd = self.socket.as_raw_fd();
        let mut found = std::mem::take(&mut self.unreachable);
        let mut drain = || {
            if let Err(error) = crate::recverr::drain(fd, &mut found) {
                if error.kind() != io::ErrorKind::WouldBlock {
                    debug!(%error, "reading the socket error queue failed");
                }
            }
            // The queue is empty (or unreadable): tell tokio to wait for the next error.
            Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
        };
        let _ = if clear_readiness {
            self.socket.try_io(Interest::ERROR, drain)
        } else {
            drain()
        };
        let now = Instant::now();
        for dst in found.drain(..) {
            let dst = socket::normalize(dst);
            self.io.icmp_unreachable += 1;
            debug!(%dst, "ICMP port unreachable");
            self.node.handle_unreachable(now, dst);
            self.dirty = true;
        }
        self.unreachable = found;
    }

    fn send(&mut self, dst: SocketAddr, payload: &[u8]) {
        let to = socket::to_socket_family(self.ipv6_socket, dst);
        // tokio answers WouldBlock from its cached readiness until the reactor has once seen
        // the new socket writable, without asking the kernel: the first datagrams of a node
        // (its join request) were dropped and joins waited for the 1 s retry. Then the
        // kernel's own answer decides: a direct sendto on the non-blocking socket.
        let mut direct = false;
        for _ in 0..SEND_ATTEMPTS {
            let sent = if direct {
                socket2::SockRef::from(&self.socket).send_to(payload, &to.into())
            } else {
                self.socket.try_send_to(payload, to)
            };
            match sent {
                Ok(_) => return,
                // Linux fails a send with the pending ICMP error of an earlier datagram (with
                // IP_RECVERR, from any destination): read it, and send again. Several can be
                // pending (a restarted node's join requests to seeds that are all down), and
                // each fails one send: a single retry lost the join request to the one live
                // member a restarted node remembered, and the rejoin waited for the join retry.
                Err(e) if is_icmp_report(&e) => {
                    #[cfg(target_os = "linux")]
                    self.read_error_queue(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !direct => direct = true,
                // Lost like on a lossy network (a full send buffer included); the protocol
                // retries what matters.
                Err(error) => {
                    self.io.send_errors += 1;
                    debug!(%dst, %error, "send failed");
                    return;
                }
            }
        }
        self.io.send_errors += 1;
        debug!(%dst, attempts = SEND_ATTEMPTS, "send failed: interrupted by ICMP reports every time");
    }

    /// Drains the core's outputs: datagrams, then events, then the snapshot if due.
    fn flush(&mut self, force_publish: bool) {
        while let Some(transmit) = self.node.poll_transmit() {
            self.send(transmit.dst, &transmit.payload);
        }
        while let Some(check) = self.node.poll_host_check() {
            self.start_host_check(check);
        }
        let mut events = false;
        while let Some(event) = self.node.poll_event() {
            // Key changes and messages leave the member table as it was: the snapshot (whose
            // counters they move) follows within PUBLISH_INTERVAL.
            events |= is_membership(&event);
            if changes_saved_members(&event) {
                self.touch_saved_state();
            }
            log_event(&event);
            if let Event::KeyRotation(report) = &event {
                if let Some(reply) = self.key_ops.remove(&report.id) {
                    let _ = reply.send(Ok(report.clone()));
                }
            }
            // No subscriber is fine; a lagging one skips (broadcast overwrites its oldest).
            let _ = self.events.send(Arc::new(event));
        }
        if let Some(persister) = self.persister.as_mut() {
            // A refutation or a new life moves the node's own counters.
            persister.check_life(&self.node);
        }
        if events
            || force_publish
            || (self.dirty && self.last_publish.elapsed() >= PUBLISH_INTERVAL)
        {
            self.publish();
        }
    }

    /// Notes that what the data directory keeps has changed (no-op without one).
    fn touch_saved_state(&mut self) {
        if let Some(persister) = self.persister.as_mut() {
            persister.touch();
        }
    }

    /// Runs `check` as a task; beyond `host_check::MAX_RUNNING` running, answers it
    /// `Inconclusive` at once (which changes nothing in the core but a counter).
    fn start_host_check(&mut self, check: HostCheck) {
        if self.host_checks.len() >= host_check::MAX_RUNNING {
            self.node
                .handle_host_check(Instant::now(), check.id, HostAnswer::Inconclusive);
            return;
        }
        let local = self.local_ip;
        self.host_checks.spawn(
            async move {
                let answer = host_check::check(check.addr, local, check.timeout).await;
                (check.id, answer)
            }
            .in_current_span(),
        );
    }

    fn publish(&mut self) {
        let snapshot = Self::snapshot_of(&self.node, self.io);
        self.last_publish = snapshot.taken_at;
        self.snapshot.send_replace(Arc::new(snapshot));
        self.dirty = false;
        self.publish_live();
    }

    /// Publishes the live members if the set, or an address, generation or tags in it, changed
    /// since the last time. Called with every snapshot (after every batch of membership
    /// events), so a change is published at once; costs one pass over the members.
    fn publish_live(&mut self) {
        let live = Self::live_of(&self.node);
        self.seeds_lost = !self.seeds.is_empty()
            && !self
                .seeds
                .any_live(live.values().map(|m| m.addr), self.node.local_member().addr);
        let same = {
            let current = self.live.borrow();
            current.len() == live.len()
                && current
                    .iter()
                    .zip(&live)
                    .all(|((name, old), (new_name, new))| {
                        name == new_name
                            && old.addr == new.addr
                            && old.generation == new.generation
                            && old.tags == new.tags
                    })
        };
        if !same {
            debug!(live = live.len(), "live members changed");
            self.live.send_replace(Arc::new(live));
        }
    }

    /// Resolves the seeds in a task of its own, so a slow DNS server never stalls the protocol.
    fn start_resolution(&mut self) {
        let names = self.seeds.names();
        let ipv6 = self.ipv6_socket;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(
            async move {
                let _ = tx.send(seeds::resolve_all(names, ipv6).await);
            }
            .in_current_span(),
        );
        self.resolving = Some(rx);
    }

    fn apply_resolution(&mut self, resolution: Resolution) {
        let mut failed = false;
        for (seed, result) in resolution {
            if self.seeds.record(seed, result) {
                failed = true;
                self.io.seed_resolution_failures += 1;
            }
        }
        let delay = if failed {
            seeds::RETRY_INTERVAL
        } else {
            seeds::REFRESH_INTERVAL
        };
        self.last_resolved = TokioInstant::now();
        self.next_resolve = self.last_resolved + delay;
        if let Some(addrs) = self.seeds.take_changed() {
            info!(?addrs, "seed addresses changed");
            self.node.join(Instant::now(), addrs);
            self.dirty = true;
        }
    }
}

/// What to wait for on the socket: datagrams, and on Linux queued ICMP errors (`EPOLLERR`,
/// which tokio reports as [`Ready::ERROR`] only to those who ask for [`Interest::ERROR`]).
fn socket_interest() -> Interest {
    if cfg!(target_os = "linux") {
        Interest::READABLE | Interest::ERROR
    } else {
        Interest::READABLE
    }
}

/// How an ICMP error for an earlier datagram surfaces in `recv`/`send` (Linux: ECONNREFUSED;
/// Windows: WSAECONNRESET).
fn is_icmp_report(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

async fn sleep_until(deadline: Option<TokioInstant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn recv_if_some<T>(
    receiver: &mut Option<oneshot::Receiver<T>>,
) -> Result<T, oneshot::error::RecvError> {
    match receiver {
        Some(receiver) => receiver.await,
        None => std::future::pending().await,
    }
}

async fn discovery_wake(discovery: &Option<Discoverer>) -> discover::Wake {
    match discovery {
        Some(discovery) => discovery.wait().await,
        None => std::future::pending().await,
    }
}

async fn join_if_some<T>(
    task: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Whether `event` changes the list of live members the data directory keeps (a suspicion
/// does not: suspects are kept).
fn changes_saved_members(event: &Event) -> bool {
    matches!(
        event,
        Event::Joined(_)
            | Event::Recovered(_)
            | Event::Failed(_)
            | Event::Left(_)
            | Event::Updated(_)
            | Event::Reaped(_)
    )
}

/// Whether `event` changes the member table or the keyring shown in the snapshot (as opposed
/// to key changes, user messages and key operation reports), so the snapshot goes out at once.
fn is_membership(event: &Event) -> bool {
    !matches!(
        event,
        Event::Message(_) | Event::KeyChanged(_) | Event::KeyRotation(_)
    )
}

/// The core logs membership changes itself (at `info`); the driver only notes the fan-out.
fn log_event(event: &Event) {
    match event {
        Event::Message(m) => debug!(
            event = event.kind(),
            origin = %m.id.origin,
            seq = m.id.seq,
            tag = %m.tag,
            "event published"
        ),
        Event::KeyChanged(k) => debug!(
            event = event.kind(),
            node = %k.node,
            key = %k.key,
            version = k.version,
            "event published"
        ),
        _ => debug!(
            event = event.kind(),
            member = event.member().map_or("", |m| m.name.as_str()),
            "event published"
        ),
    }
}
