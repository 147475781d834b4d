//! Starting a node: [`Chatter::builder`] and [`Builder::spawn`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chatter_core::{Config, Identity, Keyring, Mode, Node, Tags};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

use crate::discover::{Discoverer, Discovery};
use crate::driver::Driver;
use crate::handle::{Handle, IoStats};
use crate::persist::{self, DataDir, Persister, SavedState, StartedFrom};
use crate::seeds::{self, Seeds};
use crate::{socket, Error};

/// The default gossip port.
pub const DEFAULT_PORT: u16 = 2428;

/// Commands waiting for the driver; handles wait (asynchronously) beyond it.
const COMMAND_QUEUE: usize = 64;
/// Events buffered per subscriber before a slow one starts skipping. The channel allocates
/// every slot up front, so events travel in it as `Arc`s: 1024 slots of an `Event` (about 430
/// bytes each) were 430 KB of resident memory in an idle daemon, the largest allocation it had.
const EVENT_QUEUE: usize = 1024;

/// The entry point: `Chatter::builder("name")` configures a node, `.spawn()` starts it.
#[derive(Debug)]
pub struct Chatter;

impl Chatter {
    /// Starts configuring a node called `name` (unique in the cluster; the host name is a
    /// common choice).
    pub fn builder(name: impl Into<String>) -> Builder {
        Builder {
            name: name.into(),
            bind: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), DEFAULT_PORT),
            advertise: None,
            seeds: Vec::new(),
            tags: Tags::new(),
            config: Config::lan(),
            rng_seed: None,
            keyring: None,
            encryption_mode: None,
            data_dir: None,
            discovery: None,
        }
    }
}

/// The settings of a node to start; see [`Chatter::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until spawn() is awaited"]
pub struct Builder {
    name: String,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    seeds: Vec<String>,
    tags: Tags,
    config: Config,
    rng_seed: Option<u64>,
    /// Held here and in the node only; its `Debug` shows fingerprints, never key material.
    keyring: Option<Keyring>,
    encryption_mode: Option<Mode>,
    data_dir: Option<PathBuf>,
    discovery: Option<Discovery>,
}

impl Builder {
    /// The local UDP address to bind. Default `0.0.0.0:2428`. Port 0 picks a free port (see
    /// [`Handle::local_addr`]); an IPv6 address gives a dual-stack socket where the system
    /// allows it.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The address other members should send to (behind NAT, or when bound to a wildcard).
    /// Default: the bound address; if that is a wildcard (`0.0.0.0`, `[::]`), the address of
    /// the interface that routes to the first seed, else to the default route. Port 0 means the
    /// bound port.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Adds a seed, `host:port`: a member to contact at start. Host names are resolved with
    /// the system resolver at start and every 30 s after, so a DNS name can follow moving
    /// seeds. Seeds that do not answer are retried with backoff; one that does not resolve is
    /// logged and retried.
    pub fn seed(mut self, seed: impl Into<String>) -> Self {
        self.seeds.push(seed.into());
        self
    }

    /// Adds several seeds; see [`Builder::seed`].
    pub fn seeds<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.seeds.extend(seeds.into_iter().map(Into::into));
        self
    }

    /// Adds one tag published with this member (role, zone, version, ...).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Replaces the tags published with this member.
    pub fn tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// The protocol configuration. Default [`Config::lan`]; [`Config::local`] for processes
    /// on one machine (tests, demos), [`Config::wan`] across regions.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Seed of the node's random choices (probe order, gossip targets), for reproducible runs.
    /// Default: random.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// The keyring of gossip encryption: the primary key seals every datagram, every key of the
    /// ring opens. With a keyring the mode defaults to [`Mode::Sealed`] (nothing sent or
    /// accepted in the clear); see [`Builder::encryption_mode`] to migrate a running plaintext
    /// cluster. Default: no keyring, plaintext.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// The encryption mode: [`Mode::AcceptSealed`], [`Mode::SendSealed`] and [`Mode::Sealed`]
    /// are the three steps of moving a running plaintext cluster to encryption (each needs a
    /// keyring, else [`Builder::spawn`] fails with [`Error::Encryption`]). Default:
    /// [`Mode::Sealed`] with a keyring, [`Mode::Plaintext`] without.
    pub fn encryption_mode(mut self, mode: Mode) -> Self {
        self.encryption_mode = Some(mode);
        self
    }

    /// A directory where the node keeps its state across restarts (created, mode 0700, if
    /// missing): its name, the generation and incarnation of its last life, its own
    /// key/values, its tags and up to 64 members it saw alive (see the [`persist`](crate::persist)
    /// module for the format, the bounds and the write schedule). Default: none, nothing is
    /// kept.
    ///
    /// At start, with a snapshot of this node's name there:
    /// - the new life's generation is above the saved one even if the clock went back;
    /// - the saved key/values are written again, so the cluster replaces the previous life's
    ///   state with them (keys deleted before the restart stay deleted);
    /// - the saved tags are used if the builder has none;
    /// - the saved members are contacted next to the seeds, so the node rejoins when every
    ///   seed is down.
    ///
    /// A snapshot of another name gives only its members and its generation floor. A corrupt,
    /// truncated, oversized or foreign file is moved aside with a warning and the node starts
    /// clean. [`Handle::data_dir`] tells what the start found. One directory per node: two
    /// nodes sharing one overwrite each other's snapshot.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Finds the other members of the cluster on the local network segment by multicast,
    /// without seeds or next to them (see the [`discover`](crate::discover) module):
    /// `.discover(Discovery::default())` announces on every multicast-capable interface, by
    /// IPv4 (`239.255.67.72`) and IPv6 (`ff02::4348:2428`), on UDP port 2429. Announcements
    /// carry the cluster name, and are sealed under the keyring when datagrams are, so nodes of
    /// another cluster, or without the key, never join. Default: off.
    pub fn discover(mut self, settings: Discovery) -> Self {
        self.discovery = Some(settings);
        self
    }

    /// Binds the socket, resolves the seeds, and starts the node's driver task on the current
    /// Tokio runtime. The node starts contacting its seeds at once; `spawn` does not wait for
    /// them to answer.
    ///
    /// Fails, with nothing left running, on an invalid configuration or seed
    /// ([`Error::Config`], [`Error::InvalidSeed`]), tags over the size limit ([`Error::Tags`]),
    /// a socket that cannot be bound ([`Error::Bind`]), no address to advertise
    /// ([`Error::Advertise`]), a data directory that cannot be created or written
    /// ([`Error::DataDir`]), or discovery settings that are invalid ([`Error::Discovery`]) or
    /// whose port cannot be opened ([`Error::DiscoverySocket`]). Seeds that do not resolve are not an error: they are logged and
    /// retried.
    pub async fn spawn(self) -> Result<Handle, Error> {
        let Builder {
            name,
            bind,
            advertise,
            seeds: seed_list,
            tags,
            config,
            rng_seed,
            keyring,
            encryption_mode,
            data_dir,
            discovery,
        } = self;
        let mut tags = tags;
        config.validate()?;
        if let Some(discovery) = &discovery {
            discovery.validate().map_err(Error::Discovery)?;
        }
        for seed in &seed_list {
            seeds::validate(seed)?;
        }
        let restore: (Option<PathBuf>, Option<SavedState>, Option<StartedFrom>) = match &data_dir {
            Some(dir) => {
                persist::prepare_dir(dir).map_err(|source| Error::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                let (saved, mut started) = persist::load_for_start(dir, &config);
                if let Some(saved_name) = saved.as_ref().map(|s| &s.name).filter(|n| **n != name) {
                    tracing::warn!(
                        dir = %dir.display(),
                        saved = %saved_name,
                        node = %name,
                        "the data directory holds the state of another node name: its keys and \
                         tags are not restored, its members are contacted"
                    );
                    started = StartedFrom::OtherName {
                        saved_name: saved_name.clone(),
                    };
                }
                (Some(dir.clone()), saved, Some(started))
            }
            None => (None, None, None),
        };
        let (data_dir, saved, started_from) = restore;

        let socket = socket::bind(bind)?;
        let local_addr = socket
            .local_addr()
            .map_err(|source| Error::Bind { addr: bind, source })?;

        let mut seeds = Seeds::new(seed_list.iter().cloned());
        if let Some(saved) = &saved {
            seeds.remember(saved.members.iter().map(|m| m.addr));
        }
        let mut io = IoStats::default();
        for (seed, result) in seeds::resolve_all(seed_list, local_addr.is_ipv6()).await {
            if seeds.record(seed, result) {
                io.seed_resolution_failures += 1;
            }
        }
        let next_resolve = tokio::time::Instant::now()
            + if io.seed_resolution_failures > 0 {
                seeds::RETRY_INTERVAL
            } else {
                seeds::REFRESH_INTERVAL
            };

        let advertise = match advertise {
            Some(addr) if addr.port() == 0 => SocketAddr::new(addr.ip(), local_addr.port()),
            Some(addr) => addr,
            None => socket::advertise_addr(local_addr, &seeds.union())?,
        };

        let now = Instant::now();
        // Strictly above the saved life even if the clock went back since.
        let generation = next_generation(generation(), saved.as_ref().map(|s| s.generation));
        let own = saved.as_ref().filter(|s| s.name == name);
        if let Some(own) = own {
            if tags.is_empty() {
                tags.clone_from(&own.tags);
            }
        }
        let identity = Identity::new(name.clone(), advertise, generation);
        let mut node = Node::new(identity, config, rng_seed.unwrap_or_else(rand::random), now)?;
        let mode = encryption_mode.unwrap_or(if keyring.is_some() {
            Mode::Sealed
        } else {
            Mode::Plaintext
        });
        // The sealing epoch is drawn from the thread RNG (a CSPRNG seeded from the OS) on every
        // start, never from `rng_seed`: a reproducible seed would repeat the epoch under the
        // same key across restarts, and a repeated epoch repeats nonces.
        node.set_keyring(keyring, mode, rand::random())?;
        if !tags.is_empty() {
            // Through set_tags, which enforces the size limit.
            node.set_tags(now, tags)?;
        }
        if let Some(own) = own {
            // Written again under the new generation: peers drop the previous life's replica
            // when the new life joins, and take these instead.
            for (key, value) in &own.entries {
                if let Err(error) = node.set(now, key, value.clone()) {
                    tracing::warn!(%key, %error, "a saved key is refused by the configuration; dropped");
                }
            }
        }
        let (persister, data_dir) = match (data_dir, started_from) {
            (Some(dir), Some(started_from)) => {
                // Written at once: records the new generation (a crash before any change still
                // gives the next start a higher one) and proves the directory writable.
                let previous = saved.as_ref().map_or(&[][..], |s| s.members.as_slice());
                let first = SavedState::of(&node, previous);
                persist::save(&dir, &first).map_err(|source| Error::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                io.state_writes += 1;
                if let StartedFrom::Restored {
                    previous_generation,
                    keys,
                    members,
                } = &started_from
                {
                    tracing::info!(
                        dir = %dir.display(),
                        previous_generation,
                        generation,
                        keys,
                        members,
                        "node state restored"
                    );
                }
                let persister = Persister::new(dir.clone(), &first, now);
                (
                    Some(persister),
                    Some(DataDir {
                        path: dir,
                        started_from,
                    }),
                )
            }
            _ => (None, None),
        };
        if let Some(addrs) = seeds.take_changed() {
            node.join(now, addrs);
        }

        let discoverer = discovery
            .map(|settings| Discoverer::new(settings, local_addr.is_ipv6(), now))
            .transpose()?;

        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events_tx, _) = broadcast::channel(EVENT_QUEUE);
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Driver::snapshot_of(&node, io)));
        let (live_tx, live_rx) = watch::channel(Arc::new(Driver::live_of(&node)));
        let handle = Handle::new(
            name.clone(),
            local_addr,
            commands_tx,
            snapshot_rx,
            live_rx,
            events_tx.downgrade(),
            data_dir,
        );
        let driver = Driver::new(
            node,
            socket,
            commands_rx,
            events_tx,
            snapshot_tx,
            live_tx,
            seeds,
            next_resolve,
            io,
            persister,
        )
        .with_discovery(discoverer);
        tracing::info!(node = %name, bind = %local_addr, %advertise, "chatter node started");
        tokio::spawn(
            driver
                .run()
                .instrument(tracing::info_span!("chatter", node = %name)),
        );
        Ok(handle)
    }
}

/// Milliseconds since the Unix epoch: a restarted process gets a higher generation than its
/// previous life (unless the clock went back), which is what the core needs.
fn generation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The generation of a new life: the clock's, but strictly above the saved one (a clock that
/// went back must not give a restarted node a generation its previous life already had, which
/// the cluster would take for the old life), and within the protocol's limit.
fn next_generation(clock_ms: u64, saved: Option<u64>) -> u64 {
    let floor = saved.and_then(|g| g.checked_add(1)).unwrap_or(0);
    clock_ms
        .max(floor)
        .min(chatter_core::limits::MAX_GENERATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_life_is_above_the_saved_one_even_when_the_clock_went_back() {
        assert_eq!(next_generation(1_000, None), 1_000);
        assert_eq!(next_generation(1_000, Some(500)), 1_000);
        assert_eq!(next_generation(1_000, Some(5_000)), 5_001);
        assert_eq!(next_generation(1_000, Some(1_000)), 1_001);
        let max = chatter_core::limits::MAX_GENERATION;
        assert_eq!(next_generation(1_000, Some(u64::MAX)), 1_000);
        assert_eq!(next_generation(u64::MAX, None), max);
    }
}
