//! What the application holds: [`Handle`] (commands and reads), [`Snapshot`] (the state the
//! driver last published) and [`EventStream`] (membership changes as they happen).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chatter_core::{Event, Member, Stats, Tags, TagsError};
use futures::Stream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::{seeds, Error};

/// A command from a handle to the driver task; each carries the channel for its answer.
#[derive(Debug)]
pub(crate) enum Command {
    /// Add a resolved seed and contact it.
    Join {
        seed: String,
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<()>,
    },
    /// Replace the local member's tags.
    SetTags {
        tags: Tags,
        reply: oneshot::Sender<Result<(), TagsError>>,
    },
    /// Leave gracefully, then stop; answered once stopped.
    Leave { reply: oneshot::Sender<()> },
    /// Stop at once; answered once stopped.
    Shutdown { reply: oneshot::Sender<()> },
}

/// Counters of the runtime itself (the socket and the driver), next to the core's [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Datagrams the core asked to send that the socket refused (no route, buffer full, ...).
    /// Each is lost, as on a lossy network; the protocol retries.
    pub send_errors: u64,
    /// Receive errors other than "nothing to read" and ICMP reports.
    pub recv_errors: u64,
    /// ICMP port-unreachable reports read from the socket's error queue and handed to the core
    /// (Linux only; always 0 elsewhere).
    pub icmp_unreachable: u64,
    /// Seed resolutions that failed (each is retried).
    pub seed_resolution_failures: u64,
}

/// The state of a node as its driver last published it.
///
/// Published after every batch of membership events, and at most every 250 ms otherwise (so
/// `rtt` and `stats` stay fresh without cloning the member table per packet). Cheap to share:
/// readers get an `Arc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// This node as a member (status, incarnation, tags).
    pub local: Member,
    /// The other members, failed and left tombstones included, ordered by name.
    pub members: Vec<Member>,
    /// The core's counters.
    pub stats: Stats,
    /// Lifeguard local health score: 0 is healthy; higher means this node missed its own acks
    /// and has slowed its probing down.
    pub health_score: u32,
    /// When the snapshot was taken.
    pub taken_at: Instant,
    /// The runtime's counters.
    pub io: IoStats,
}

impl Snapshot {
    /// The member called `name`, this node included.
    pub fn member(&self, name: &str) -> Option<&Member> {
        if self.local.name == name {
            return Some(&self.local);
        }
        self.members.iter().find(|m| m.name == name)
    }

    /// Number of other members that are alive or suspect.
    pub fn num_live(&self) -> usize {
        self.members.iter().filter(|m| m.status.is_live()).count()
    }
}

/// The application's handle on a running node: cheap to clone, usable from any task.
///
/// Reads ([`snapshot`](Handle::snapshot), [`members`](Handle::members), ...) never wait: they
/// return the state the driver last published. Commands ([`join`](Handle::join),
/// [`set_tags`](Handle::set_tags), [`leave`](Handle::leave), ...) are sent to the driver task and
/// answered once carried out. Once the node has stopped, commands return [`Error::Stopped`] and
/// reads return the final state.
///
/// The node stops when [`leave`](Handle::leave) or [`shutdown`](Handle::shutdown) is called, or
/// when the last handle is dropped (without a leave: the others will see it fail).
#[derive(Debug, Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    local_addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Weak so that event streams end when the driver stops.
    events: broadcast::WeakSender<Event>,
    ipv6_socket: bool,
}

impl Handle {
    pub(crate) fn new(
        name: String,
        local_addr: SocketAddr,
        commands: mpsc::Sender<Command>,
        snapshot: watch::Receiver<Arc<Snapshot>>,
        events: broadcast::WeakSender<Event>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name,
                local_addr,
                commands,
                snapshot,
                events,
                ipv6_socket: local_addr.is_ipv6(),
            }),
        }
    }

    /// The address the socket is bound to (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The state the driver last published.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.inner.snapshot.borrow())
    }

    /// A receiver of every published snapshot, to wait for a condition with
    /// [`watch::Receiver::changed`] or [`watch::Receiver::wait_for`]. After the node stops,
    /// `changed` returns an error and `borrow` the final state.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.snapshot.clone()
    }

    /// The other members, failed and left tombstones included, ordered by name.
    pub fn members(&self) -> Vec<Member> {
        self.inner.snapshot.borrow().members.clone()
    }

    /// The member called `name`, this node included.
    pub fn member(&self, name: &str) -> Option<Member> {
        self.inner.snapshot.borrow().member(name).cloned()
    }

    /// This node as a member.
    pub fn local(&self) -> Member {
        self.inner.snapshot.borrow().local.clone()
    }

    /// A stream of the membership events that happen from now on.
    ///
    /// A subscriber that falls behind by more than 1024 events skips the oldest ones (counted
    /// by [`EventStream::skipped`]) rather than slowing the node down. The stream ends when the
    /// node stops; subscribing to a stopped node gives a stream that ends at once.
    pub fn subscribe(&self) -> EventStream {
        EventStream {
            inner: self
                .inner
                .events
                .upgrade()
                .map(|sender| BroadcastStream::new(sender.subscribe())),
            skipped: 0,
        }
    }

    /// Resolves `seed` (`host:port`) and adds it to the seeds, which are contacted until they
    /// answer and resolved again every 30 s.
    ///
    /// Returns [`Error::InvalidSeed`] or [`Error::Resolve`] without changing anything, and
    /// [`Error::Stopped`] if the node has stopped.
    pub async fn join(&self, seed: &str) -> Result<(), Error> {
        seeds::validate(seed)?;
        if self.is_stopped() {
            return Err(Error::Stopped);
        }
        let addrs = seeds::resolve(seed, self.inner.ipv6_socket)
            .await
            .map_err(|source| Error::Resolve {
                seed: seed.to_owned(),
                source,
            })?;
        self.request(|reply| Command::Join {
            seed: seed.to_owned(),
            addrs,
            reply,
        })
        .await
    }

    /// Replaces this node's tags and gossips them.
    ///
    /// Returns [`Error::Tags`] (tags unchanged) when they are over the size limit.
    pub async fn set_tags(&self, tags: Tags) -> Result<(), Error> {
        self.request(|reply| Command::SetTags { tags, reply })
            .await?
            .map_err(Error::from)
    }

    /// Leaves the cluster gracefully: gossips that this node is leaving (others mark it `left`,
    /// not `failed`), waits until the message is out (at most 2 s), then stops the node and
    /// closes its socket.
    pub async fn leave(&self) -> Result<(), Error> {
        self.request(|reply| Command::Leave { reply }).await
    }

    /// Stops the node at once and closes its socket, without telling anyone: the others will
    /// detect it as failed.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.request(|reply| Command::Shutdown { reply }).await
    }

    /// Whether the node has stopped.
    pub fn is_stopped(&self) -> bool {
        self.inner.commands.is_closed()
    }

    /// Waits until the node has stopped (for whatever reason).
    pub async fn stopped(&self) {
        self.inner.commands.closed().await;
    }

    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(command(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }
}

/// Membership events of one node, from the moment of [`Handle::subscribe`].
///
/// Read with [`recv`](EventStream::recv) or as a [`Stream`]. Ends (`None`) when the node stops.
#[derive(Debug)]
pub struct EventStream {
    inner: Option<BroadcastStream<Event>>,
    skipped: u64,
}

impl EventStream {
    /// The next event, or `None` once the node has stopped and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        futures::StreamExt::next(self).await
    }

    /// How many events this subscriber missed because it fell behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match Pin::new(&mut *inner).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(event)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    this.skipped += n;
                    tracing::debug!(skipped = n, "event subscriber fell behind");
                }
                Poll::Ready(None) => {
                    this.inner = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
