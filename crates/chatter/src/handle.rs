//! What the application holds: [`Handle`] (commands and reads), [`Snapshot`] (the state the
//! driver last published) and [`EventStream`] (membership changes, key changes and user
//! messages as they happen).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chatter_core::{
    BroadcastError, Event, Fingerprint, Key, KeyInfo, KeyOp, KeyOpError, KeyReport, Keyring,
    Member, MessageId, Mode, StateError, Stats, Tags, TagsError,
};
use futures::Stream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::message::{self, Tagged};
use crate::persist::DataDir;
use crate::state::NodeState;
use crate::{seeds, Error};

/// The live members as [`Handle::live_members`] publishes them, keyed by name.
pub(crate) type LiveMembers = Arc<BTreeMap<String, Member>>;

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
    /// Set a key of this node's state.
    Set {
        key: String,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<u64, StateError>>,
    },
    /// Delete a key of this node's state.
    Delete {
        key: String,
        reply: oneshot::Sender<Result<Option<u64>, StateError>>,
    },
    /// Read one key of one member's state.
    Get {
        node: String,
        key: String,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// Copy one member's state.
    NodeState {
        node: String,
        reply: oneshot::Sender<Option<NodeState>>,
    },
    /// Copy every known member's state.
    ClusterState {
        reply: oneshot::Sender<Vec<NodeState>>,
    },
    /// Start a key operation across the cluster; answered with its report once it ends.
    KeyOp {
        op: KeyOp,
        reply: oneshot::Sender<Result<KeyReport, KeyOpError>>,
    },
    /// Copy the keyring in force (with key material: for the daemon's keyring file).
    Keyring {
        reply: oneshot::Sender<Option<Keyring>>,
    },
    /// Broadcast a user message.
    Broadcast {
        tag: String,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<MessageId, BroadcastError>>,
    },
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
    /// Snapshots written to the data directory ([`Builder::data_dir`](crate::Builder::data_dir)).
    pub state_writes: u64,
    /// Snapshots that could not be written to the data directory (disk full, permissions);
    /// each is retried after the next change, and the node runs on.
    pub state_write_failures: u64,
    /// LAN discovery's counters, with [`Builder::discover`](crate::Builder::discover).
    pub discovery: Option<crate::DiscoveryStats>,
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
    /// Updates waiting in the piggyback queue (a gauge of dissemination backlog).
    pub pending_broadcasts: usize,
    /// Members this node currently suspects.
    pub suspicions: usize,
    /// When the snapshot was taken.
    pub taken_at: Instant,
    /// The runtime's counters.
    pub io: IoStats,
    /// The gossip encryption mode in force.
    pub encryption_mode: Mode,
    /// The keys of the keyring (fingerprints and which is primary, never key material); empty
    /// without a keyring.
    pub keys: Vec<KeyInfo>,
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
/// [`set_tags`](Handle::set_tags), [`set`](Handle::set), [`broadcast`](Handle::broadcast),
/// [`leave`](Handle::leave), ...) and key/value queries ([`get`](Handle::get),
/// [`node_state`](Handle::node_state), ...) are sent to the driver task and answered once
/// carried out. Once the node has stopped, commands return [`Error::Stopped`] and
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
    live: watch::Receiver<LiveMembers>,
    /// Weak so that event streams end when the driver stops.
    events: broadcast::WeakSender<Arc<Event>>,
    ipv6_socket: bool,
    data_dir: Option<DataDir>,
}

impl Handle {
    pub(crate) fn new(
        name: String,
        local_addr: SocketAddr,
        commands: mpsc::Sender<Command>,
        snapshot: watch::Receiver<Arc<Snapshot>>,
        live: watch::Receiver<LiveMembers>,
        events: broadcast::WeakSender<Arc<Event>>,
        data_dir: Option<DataDir>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name,
                local_addr,
                commands,
                snapshot,
                live,
                events,
                ipv6_socket: local_addr.is_ipv6(),
                data_dir,
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

    /// The data directory ([`Builder::data_dir`](crate::Builder::data_dir)) and what the start
    /// found in it (a snapshot restored, a first start, a bad file set aside); `None` without
    /// one.
    pub fn data_dir(&self) -> Option<&DataDir> {
        self.inner.data_dir.as_ref()
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

    /// The members that are alive or suspect, this node included (while it has not left),
    /// keyed by name: a watch that changes only when a member enters or leaves that set (joins;
    /// fails, leaves or is reaped; recovers from failed) or when one of them changes its
    /// address, generation (a restart) or tags. Suspicions that are refuted, probes and
    /// key/value or message traffic do not wake its receivers.
    ///
    /// Each [`Member`] is as it was when the set last changed: its `status` (alive or suspect),
    /// `incarnation`, `rtt` and `evidence` may have moved on since; read
    /// [`Handle::member`] for the current ones. After the node stops, `changed` returns an
    /// error and `borrow` the last set.
    ///
    /// ```no_run
    /// # async fn run(handle: chatter::Handle) {
    /// let mut live = handle.live_members();
    /// loop {
    ///     let names: Vec<String> = live.borrow_and_update().keys().cloned().collect();
    ///     println!("live: {names:?}"); // e.g. rebuild a consistent-hash ring
    ///     if live.changed().await.is_err() {
    ///         break; // the node stopped
    ///     }
    /// }
    /// # }
    /// ```
    pub fn live_members(&self) -> watch::Receiver<Arc<BTreeMap<String, Member>>> {
        self.inner.live.clone()
    }

    /// A stream of the events that happen from now on: membership changes, changes of any
    /// member's key/value state ([`Event::KeyChanged`], this node's own writes included) and
    /// user messages ([`Event::Message`], this node's own broadcasts included; decode them
    /// with [`DeliveredExt`](crate::DeliveredExt)).
    ///
    /// A subscriber that falls behind by more than 1024 events skips the oldest ones (counted
    /// by [`EventStream::skipped`]) rather than slowing the node down; a node that receives a
    /// whole replica at once (a member with many keys joins) emits one event per key. The
    /// stream ends when the node stops; subscribing to a stopped node gives a stream that ends
    /// at once.
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

    /// Sets `key` of this node's state to `value` and gossips the write; returns the write's
    /// version (this node's state version after it).
    ///
    /// The write is visible at once here ([`Handle::get`], an [`Event::KeyChanged`]) and
    /// within milliseconds on the other members; anti-entropy repairs what gossip lost.
    /// Returns [`Error::State`] without changing anything when the key is empty or longer than
    /// `Config::max_key_len`, the value larger than `Config::max_value_size`, the state full,
    /// or the node leaving; [`Error::Stopped`] once the node has stopped.
    ///
    /// ```no_run
    /// # async fn run(handle: chatter::Handle) -> Result<(), chatter::Error> {
    /// let version = handle.set("status", "ready").await?;
    /// let value = handle.get(handle.name(), "status").await?;
    /// assert_eq!(value.as_deref(), Some(&b"ready"[..]));
    /// # let _ = version;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Result<u64, Error> {
        let (key, value) = (key.into(), value.into());
        self.request(|reply| Command::Set { key, value, reply })
            .await?
            .map_err(Error::from)
    }

    /// Deletes `key` of this node's state and gossips the delete; returns its version, or
    /// `None` (nothing changed) if the key was not set.
    ///
    /// Returns [`Error::State`] (nothing changed) while the node is leaving, and
    /// [`Error::Stopped`] once it has stopped.
    pub async fn delete(&self, key: impl Into<String>) -> Result<Option<u64>, Error> {
        let key = key.into();
        self.request(|reply| Command::Delete { key, reply })
            .await?
            .map_err(Error::from)
    }

    /// The value of `key` in the state of member `node` (this node's name for its own state),
    /// as this node holds it now; `None` if the key is not set or the member is unknown.
    ///
    /// Asks the driver, so the answer is exact, including this node's own writes just made.
    /// Returns [`Error::Stopped`] once the node has stopped.
    pub async fn get(&self, node: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let (node, key) = (node.to_owned(), key.to_owned());
        self.request(|reply| Command::Get { node, key, reply })
            .await
    }

    /// A copy of the key/value state of member `node` (this node included), with its status
    /// and state version; `None` if the member is unknown (never seen, or reaped).
    ///
    /// Returns [`Error::Stopped`] once the node has stopped.
    pub async fn node_state(&self, node: &str) -> Result<Option<NodeState>, Error> {
        let node = node.to_owned();
        self.request(|reply| Command::NodeState { node, reply })
            .await
    }

    /// Copies of the key/value state of every member this node knows, this node included,
    /// ordered by name. Failed and left members are listed (with their status) until they are
    /// reaped.
    ///
    /// Returns [`Error::Stopped`] once the node has stopped.
    pub async fn cluster_state(&self) -> Result<Vec<NodeState>, Error> {
        self.request(|reply| Command::ClusterState { reply }).await
    }

    /// Broadcasts `value` as a user message to every live member, this node included: each
    /// delivers it once, as an [`Event::Message`] tagged [`T::TAG`](Tagged::TAG) whose payload
    /// is `value` encoded as JSON. Returns the message's id.
    ///
    /// Returns [`Error::Encode`] if `value` cannot be encoded as JSON, [`Error::Broadcast`]
    /// (nothing sent) when the tag or payload is over its limit (`Config::max_tag_len`,
    /// `Config::max_message_size`) or the node is leaving, and [`Error::Stopped`] once the node
    /// has stopped.
    ///
    /// ```no_run
    /// use chatter::Tagged;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Deploy {
    ///     service: String,
    ///     version: u32,
    /// }
    /// impl Tagged for Deploy {
    ///     const TAG: &'static str = "Deploy";
    /// }
    ///
    /// # async fn run(handle: chatter::Handle) -> Result<(), chatter::Error> {
    /// let id = handle
    ///     .broadcast(&Deploy { service: "web".into(), version: 42 })
    ///     .await?;
    /// println!("sent {}#{}", id.origin, id.seq);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn broadcast<T: Tagged>(&self, value: &T) -> Result<MessageId, Error> {
        let payload = message::encode(value).map_err(Error::Encode)?;
        self.broadcast_raw(T::TAG, payload).await
    }

    /// Broadcasts a user message with any tag and payload, like [`Handle::broadcast`]. Use JSON
    /// payloads to interoperate with `chatter-inject` and [`Tagged`] types.
    ///
    /// Returns [`Error::Broadcast`] (nothing sent) when the tag or payload is over its limit or
    /// the node is leaving, and [`Error::Stopped`] once the node has stopped.
    pub async fn broadcast_raw(&self, tag: &str, payload: Vec<u8>) -> Result<MessageId, Error> {
        let tag = tag.to_owned();
        self.request(|reply| Command::Broadcast {
            tag,
            payload,
            reply,
        })
        .await?
        .map_err(Error::from)
    }

    /// Lists the keyring of every live member (fingerprints, never key material): runs a
    /// `list` key operation across the cluster and returns its report once every live member
    /// answered or `Config::key_rotation_timeout` passed.
    ///
    /// Every key operation needs [`Mode::Sealed`](crate::Mode::Sealed) ([`Error::Keys`]
    /// otherwise) and returns [`Error::Stopped`] once the node has stopped.
    pub async fn keys(&self) -> Result<KeyReport, Error> {
        self.key_op(KeyOp::List).await
    }

    /// Installs `key` on every live member (it opens datagrams at once, and seals only once
    /// [used](Handle::use_key)); returns the report of who acknowledged, refused, stayed silent
    /// or was not reached. Installed here first: a full keyring is refused before anything is
    /// sent.
    pub async fn install_key(&self, key: Key) -> Result<KeyReport, Error> {
        self.key_op(KeyOp::Install(key)).await
    }

    /// Makes the installed key with this fingerprint the primary (sealing) key on every live
    /// member. Refused before anything is sent if this node does not hold the key.
    pub async fn use_key(&self, fingerprint: Fingerprint) -> Result<KeyReport, Error> {
        self.key_op(KeyOp::Use(fingerprint)).await
    }

    /// Removes the key with this fingerprint from every live member. Refused before anything
    /// is sent if it is this node's primary key; a member whose primary it still is refuses.
    pub async fn remove_key(&self, fingerprint: Fingerprint) -> Result<KeyReport, Error> {
        self.key_op(KeyOp::Remove(fingerprint)).await
    }

    /// Runs any key operation; see [`Handle::keys`].
    pub async fn key_op(&self, op: KeyOp) -> Result<KeyReport, Error> {
        self.request(|reply| Command::KeyOp { op, reply })
            .await?
            .map_err(Error::from)
    }

    /// The keyring in force, key material included, `None` without encryption: for writing
    /// the keyring file after an [`Event::KeyringChanged`](crate::Event::KeyringChanged).
    /// Its `Debug` shows fingerprints only.
    pub async fn keyring(&self) -> Result<Option<Keyring>, Error> {
        self.request(|reply| Command::Keyring { reply }).await
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

/// Events of one node (membership, key changes, user messages), from the moment of
/// [`Handle::subscribe`].
///
/// Read with [`recv`](EventStream::recv) or as a [`Stream`]. Ends (`None`) when the node stops.
#[derive(Debug)]
pub struct EventStream {
    inner: Option<BroadcastStream<Arc<Event>>>,
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
                Poll::Ready(Some(Ok(event))) => {
                    return Poll::Ready(Some(Arc::unwrap_or_clone(event)))
                }
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
