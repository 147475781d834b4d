//! LAN discovery without seeds: nodes of one cluster on one network segment find each other
//! through IPv4 and IPv6 link-local multicast ([`Builder::discover`](crate::Builder::discover)).
//!
//! # What is sent
//!
//! An announcement is an ordinary gossip datagram: the 8-byte envelope of the cluster (magic,
//! protocol version, cluster hash) and one `Alive` message about the sender (its name, the
//! gossip address it advertises, its generation and incarnation; no tags). When the node sends
//! sealed datagrams (a keyring in [`Mode::SendSealed`] or [`Mode::Sealed`]), the announcement is
//! sealed like every other datagram, under the keyring's primary key, by a sealer of its own
//! whose epoch is drawn from the OS RNG. No new wire message exists for discovery, and the
//! protocol version checks apply to announcements as to any datagram.
//!
//! It goes to the group (default `239.255.67.72` and `ff02::4348:2428`, port 2429) on every
//! multicast-capable interface that is up (or on the one named), with a TTL / hop limit of 1,
//! so it never leaves the segment. `67.72` and `4348` spell "CH", Chatter's magic.
//!
//! # What is done with an announcement heard
//!
//! Received datagrams are a stranger's input: at most [`MAX_ANNOUNCEMENT`] bytes, opened (when
//! sealed) and decoded by the ordinary wire code, which never panics; anything but a single
//! `Alive` of this cluster, from another node, with a usable address, is dropped and counted
//! ([`DiscoveryStats`]). Nothing is ever answered on the discovery socket. An announcer that is
//! not a live member gets one join request (`Node::contact`) at its gossip address, as a seed
//! would, but never retried: it announces itself again. The addresses contacted are bounded
//! ([`Discovery::contact_burst`], [`Discovery::contact_interval`], and one contact per address
//! per [`Discovery::recontact_after`]), so a flood of announcements makes a node send at most a
//! few join requests per second.
//!
//! # When
//!
//! At start, then while the node knows no live member after [`Discovery::first_interval`],
//! doubling up to [`Discovery::alone_max_interval`]; once it has live members every
//! [`Discovery::joined_interval`], so that groups that formed apart (or the two sides of a
//! healed partition) still find each other. Every interval is jittered by ±10 % so that nodes
//! started together do not announce in step. A newcomer needs no answer: every node already
//! running hears its first announcement and contacts it.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use chatter_core::wire::{self, Alive, DecodeError, Message};
use chatter_core::{Keyring, Mode, Node, Tags};
use chatter_seal::{OpenError, Opener, Sealer};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::Error;

/// Default discovery port: the gossip port plus one. Not the gossip port itself, because every
/// node on a host must share the discovery port (`SO_REUSEADDR`) while the gossip socket
/// refuses sharing on purpose, so that a second node on one gossip port fails at once instead
/// of stealing datagrams.
pub const DEFAULT_DISCOVERY_PORT: u16 = 2429;
/// Default IPv4 group: in `239.255.0.0/16`, the IPv4 Local Scope of administratively scoped
/// multicast (RFC 2365), which routers keep inside the site and which needs no IANA
/// assignment; with a TTL of 1 it never leaves the segment. (Switches that snoop IGMP without
/// a querier may stop forwarding such a group after a few minutes; a group in `224.0.0.0/24`,
/// which they always flood, is the remedy there.)
pub const DEFAULT_IPV4_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 67, 72);
/// Default IPv6 group: link-local scope (`ff02::/16`), never forwarded by a router.
pub const DEFAULT_IPV6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x4348, 0x2428);
/// Largest announcement accepted, in bytes. An honest one is the envelope, an `Alive` with a
/// name of at most `Config::max_name_len` bytes (128 by default) and no tags, and the 36-byte
/// sealing overhead: about 220 bytes. The receive buffer holds one byte more, to tell an
/// oversized datagram from one of exactly this size.
pub const MAX_ANNOUNCEMENT: usize = 512;
/// Addresses remembered with the time of their last contact (for
/// [`Discovery::recontact_after`]): 256 entries of about 64 bytes, 16 KiB at most. When full,
/// the oldest entry is forgotten.
const MAX_RECENT_CONTACTS: usize = 256;
/// Interfaces announced on per family; a host with more (containers' veths) announces on the
/// first 64 in the system's order. Each costs one datagram per announcement.
const MAX_INTERFACES: usize = 64;
/// Addresses of the host remembered (to tell its own announcements' sources).
const MAX_LOCAL_ADDRESSES: usize = 256;
/// Datagrams read per wake-up before timers and commands get a turn.
const MAX_BATCH: usize = 64;
/// Jitter of every announcement interval: ±10 %.
const JITTER: f64 = 0.1;

/// The settings of LAN discovery; [`Discovery::default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// IPv4 group to announce on and listen to; `None` turns IPv4 discovery off. Default
    /// [`DEFAULT_IPV4_GROUP`].
    pub ipv4_group: Option<Ipv4Addr>,
    /// IPv6 group (link-local scope, `ff02::/16`) to announce on and listen to; `None` turns
    /// IPv6 discovery off. Default [`DEFAULT_IPV6_GROUP`].
    pub ipv6_group: Option<Ipv6Addr>,
    /// UDP port of the groups. Default [`DEFAULT_DISCOVERY_PORT`].
    pub port: u16,
    /// The interface to announce on (`eth0`); `None`: every interface that is up,
    /// multicast-capable and not loopback, as found at each announcement (interfaces that
    /// appear later are picked up). Default `None`.
    pub interface: Option<String>,
    /// Delay between the first announcement (at start) and the second while the node knows no
    /// live member. Default 1 s: nodes started together find each other within a second even
    /// if the first announcements went out before the others listened.
    pub first_interval: Duration,
    /// Longest delay between announcements while the node knows no live member (the delay
    /// doubles from `first_interval`). Default 30 s: a lone node costs one datagram per
    /// interface every 30 s, and finds a cluster that appears within that time.
    pub alone_max_interval: Duration,
    /// Delay between announcements once the node has live members. Default 60 s: newcomers
    /// announce themselves, so this is only for groups that formed apart (two racks started
    /// separately, the sides of a partition) to merge; a minute is well within what an
    /// operator waits for that, for one datagram per node and interface per minute.
    pub joined_interval: Duration,
    /// Join requests to discovered addresses a node may send in a burst. Default 8.
    pub contact_burst: u32,
    /// One more join request is allowed every `contact_interval`, up to `contact_burst`.
    /// Default 1 s. With the burst, a flood of announcements (from a stranger without the key,
    /// in a plaintext cluster) makes a node send at most 8 join requests at once and one per
    /// second after, each at most one packet budget (1,400 bytes): a cluster of 100 nodes
    /// starting together meets within the burst, since each newcomer is heard once.
    pub contact_interval: Duration,
    /// An address contacted is not contacted again within this time, however often it
    /// announces. Default 5 s: a join request lost on the way is repeated after one or two
    /// announcements of a lone node, and a stranger repeating one address gets no more.
    pub recontact_after: Duration,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            ipv4_group: Some(DEFAULT_IPV4_GROUP),
            ipv6_group: Some(DEFAULT_IPV6_GROUP),
            port: DEFAULT_DISCOVERY_PORT,
            interface: None,
            first_interval: Duration::from_secs(1),
            alone_max_interval: Duration::from_secs(30),
            joined_interval: Duration::from_secs(60),
            contact_burst: 8,
            contact_interval: Duration::from_secs(1),
            recontact_after: Duration::from_secs(5),
        }
    }
}

impl Discovery {
    /// Checks the settings: at least one group, each a multicast address (the IPv6 one of
    /// link-local scope), a port, non-zero intervals and burst, and an interface name the
    /// system could have.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.ipv4_group.is_none() && self.ipv6_group.is_none() {
            return Err("both the IPv4 and the IPv6 group are off");
        }
        if self.ipv4_group.is_some_and(|g| !g.is_multicast()) {
            return Err("the IPv4 group is not a multicast address (224.0.0.0/4)");
        }
        if self
            .ipv6_group
            .is_some_and(|g| !g.is_multicast() || g.segments()[0] & 0x000f != 2)
        {
            return Err("the IPv6 group is not a link-local multicast address (ff02::/16)");
        }
        if self.port == 0 {
            return Err("port 0 is not a port others can send to");
        }
        if self.first_interval.is_zero()
            || self.alone_max_interval.is_zero()
            || self.joined_interval.is_zero()
            || self.contact_interval.is_zero()
        {
            return Err("every interval must be above zero");
        }
        if self.contact_burst == 0 {
            return Err("contact_burst must be at least 1");
        }
        if let Some(name) = &self.interface {
            // IFNAMSIZ is 16 with the terminating zero.
            if name.is_empty() || name.len() > 15 || name.contains(['/', '\0', ' ']) {
                return Err("the interface name is not one the system can have");
            }
        }
        Ok(())
    }
}

/// The counters of discovery, in [`IoStats::discovery`](crate::IoStats::discovery).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Interfaces joined to a group now (both families counted).
    pub interfaces: u64,
    /// Announcements sent (one per interface and family).
    pub sent: u64,
    /// Announcements the socket refused to send (no address on the interface yet, no route).
    pub send_errors: u64,
    /// Datagrams read from the discovery sockets, this node's own announcements (looped back)
    /// included.
    pub received: u64,
    /// Announcements of this cluster from other nodes.
    pub heard: u64,
    /// Join requests sent to announcers that were not live members.
    pub contacts: u64,
    /// Dropped: over [`MAX_ANNOUNCEMENT`] bytes.
    pub dropped_oversize: u64,
    /// Dropped: not a Chatter datagram, another protocol version, or not a single `Alive`.
    pub dropped_malformed: u64,
    /// Dropped: an announcement of another cluster (cluster hash).
    pub dropped_wrong_cluster: u64,
    /// Dropped: sealed under a key this node does not have (or forged, or replayed), sealed
    /// while this node has no keyring, or plain while this node accepts only sealed datagrams.
    pub dropped_unauthenticated: u64,
    /// Dropped: a name or gossip address no member can have (empty or too long a name, a
    /// wildcard, multicast or port-0 address, an IPv6 address for an IPv4-only gossip socket),
    /// or this node's own address under another name.
    pub dropped_bad_address: u64,
    /// Announcers not contacted because the contact budget was spent
    /// ([`Discovery::contact_burst`]).
    pub rate_limited: u64,
}

impl DiscoveryStats {
    /// Every counter by name (`dropped_oversize`, ...), for metrics and the HTTP API.
    pub fn by_name(&self) -> [(&'static str, u64); 12] {
        [
            ("interfaces", self.interfaces),
            ("sent", self.sent),
            ("send_errors", self.send_errors),
            ("received", self.received),
            ("heard", self.heard),
            ("contacts", self.contacts),
            ("dropped_oversize", self.dropped_oversize),
            ("dropped_malformed", self.dropped_malformed),
            ("dropped_wrong_cluster", self.dropped_wrong_cluster),
            ("dropped_unauthenticated", self.dropped_unauthenticated),
            ("dropped_bad_address", self.dropped_bad_address),
            ("rate_limited", self.rate_limited),
        ]
    }
}

/// Why an announcement was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Oversize,
    Malformed,
    WrongCluster,
    Unauthenticated,
    BadAddress,
    /// This node's own announcement, looped back: not counted as a drop.
    Own,
}

/// What a receiver knows to judge an announcement.
struct Receiver<'a> {
    cluster_name: &'a str,
    mode: Mode,
    keyring: Option<&'a Keyring>,
    own_name: &'a str,
    own_addr: SocketAddr,
    max_name_len: usize,
    /// Whether the gossip socket reaches IPv6 members.
    ipv6_gossip: bool,
    /// This host's own addresses: a loopback gossip address is believed only from them.
    local: &'a [IpAddr],
}

impl Receiver<'_> {
    /// The announcer's name and gossip address, if `datagram`, from `source`, is a valid
    /// announcement of another member of this cluster.
    fn judge(
        &self,
        opener: &mut Opener,
        source: IpAddr,
        datagram: &[u8],
    ) -> Result<(String, SocketAddr), Refused> {
        if datagram.len() > MAX_ANNOUNCEMENT {
            return Err(Refused::Oversize);
        }
        let opened;
        let plain = if chatter_seal::is_sealed(datagram) {
            let Some(keyring) = self.keyring.filter(|_| self.mode.accepts_sealed()) else {
                return Err(Refused::Unauthenticated);
            };
            opened = opener
                .open(keyring, self.cluster_name, datagram)
                .map_err(|e| match e {
                    OpenError::WrongCluster => Refused::WrongCluster,
                    OpenError::Oversize(_)
                    | OpenError::Truncated
                    | OpenError::BadMagic
                    | OpenError::UnsupportedVersion(_)
                    | OpenError::UnsupportedFlags(_) => Refused::Malformed,
                    OpenError::NotSealed
                    | OpenError::UnknownKey(_)
                    | OpenError::BadTag
                    | OpenError::Replayed
                    | OpenError::TooOld => Refused::Unauthenticated,
                })?;
            &opened[..]
        } else {
            datagram
        };
        let hash = wire::cluster_hash(self.cluster_name);
        let messages = wire::decode_packet(plain, hash, MAX_ANNOUNCEMENT).map_err(|e| match e {
            DecodeError::WrongCluster => Refused::WrongCluster,
            _ => Refused::Malformed,
        })?;
        // Checked after the cluster: a plain announcement of another cluster counts as such.
        if !chatter_seal::is_sealed(datagram) && !self.mode.accepts_plain() {
            return Err(Refused::Unauthenticated);
        }
        let mut messages = messages.into_iter();
        let (Some(Message::Alive(alive)), None) = (messages.next(), messages.next()) else {
            return Err(Refused::Malformed);
        };
        let Alive { name, addr, .. } = alive;
        if name == self.own_name {
            return Err(Refused::Own);
        }
        if name.is_empty() || name.len() > self.max_name_len || !usable(addr, self.ipv6_gossip) {
            return Err(Refused::BadAddress);
        }
        if addr == self.own_addr {
            return Err(Refused::BadAddress);
        }
        // A loopback address reaches the announcer only from its own host (nodes of one host
        // bound to 127.0.0.1 hear each other through the multicast loop); from another host it
        // would make this node contact itself.
        if addr.ip().is_loopback() && !source.is_loopback() && !self.local.contains(&source) {
            return Err(Refused::BadAddress);
        }
        Ok((name, addr))
    }
}

/// Whether a gossip socket can send to `addr` as a member's address.
fn usable(addr: SocketAddr, ipv6_gossip: bool) -> bool {
    if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => !ip.is_broadcast(),
        IpAddr::V6(_) => ipv6_gossip,
    }
}

/// The bound on join requests to discovered addresses: a token bucket, and a cool-down per
/// address.
#[derive(Debug)]
struct Contacts {
    tokens: f64,
    updated: Instant,
    recent: BTreeMap<SocketAddr, Instant>,
}

impl Contacts {
    fn new(config: &Discovery, now: Instant) -> Self {
        Self {
            tokens: f64::from(config.contact_burst),
            updated: now,
            recent: BTreeMap::new(),
        }
    }

    /// Whether `addr` may be contacted now: `Ok(true)` yes, `Ok(false)` not again so soon,
    /// `Err(())` the budget is spent. Takes nothing; [`Contacts::spend`] does.
    fn may(&mut self, config: &Discovery, now: Instant, addr: SocketAddr) -> Result<bool, ()> {
        let refill = now.saturating_duration_since(self.updated).as_secs_f64()
            / config.contact_interval.as_secs_f64();
        self.tokens = (self.tokens + refill).min(f64::from(config.contact_burst));
        self.updated = now;
        if self
            .recent
            .get(&addr)
            .is_some_and(|at| now.saturating_duration_since(*at) < config.recontact_after)
        {
            return Ok(false);
        }
        if self.tokens < 1.0 {
            return Err(());
        }
        Ok(true)
    }

    /// Records a contact of `addr` now.
    fn spend(&mut self, config: &Discovery, now: Instant, addr: SocketAddr) {
        self.tokens -= 1.0;
        if self.recent.len() >= MAX_RECENT_CONTACTS && !self.recent.contains_key(&addr) {
            self.recent
                .retain(|_, at| now.saturating_duration_since(*at) < config.recontact_after);
            if self.recent.len() >= MAX_RECENT_CONTACTS {
                if let Some(oldest) = self.recent.iter().min_by_key(|(_, at)| **at) {
                    let oldest = *oldest.0;
                    self.recent.remove(&oldest);
                }
            }
        }
        self.recent.insert(addr, now);
    }
}

/// The announcement schedule.
#[derive(Debug)]
struct Schedule {
    next: Instant,
    /// The next delay while alone.
    backoff: Duration,
}

impl Schedule {
    /// Due at once.
    fn new(config: &Discovery, now: Instant) -> Self {
        Self {
            next: now,
            backoff: config.first_interval,
        }
    }

    /// Schedules the announcement after the one made at `now`. `jitter` in `[-1, 1]` scales the
    /// ±10 % spread.
    fn announced(&mut self, config: &Discovery, now: Instant, alone: bool, jitter: f64) {
        let delay = if alone {
            let delay = self.backoff;
            self.backoff = (self.backoff * 2).min(config.alone_max_interval);
            delay
        } else {
            // Alone again later (the others failed): start over quickly.
            self.backoff = config.first_interval;
            config.joined_interval
        };
        self.next = now + delay.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0));
    }
}

/// The interfaces to announce on.
#[derive(Debug, Default, PartialEq, Eq)]
struct Interfaces {
    /// Name and first IPv4 address of each.
    v4: Vec<(String, Ipv4Addr)>,
    /// Name and index of each with an IPv6 address.
    v6: Vec<(String, u32)>,
    /// Every address of the host, loopback included (at most [`MAX_LOCAL_ADDRESSES`]).
    local: Vec<IpAddr>,
}

/// The multicast-capable interfaces that are up (not loopback unless named), or the one named.
#[cfg(unix)]
fn interfaces(only: Option<&str>) -> io::Result<Interfaces> {
    use nix::net::if_::InterfaceFlags;

    let mut found = Interfaces::default();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let name = ifa.interface_name;
        let ip = ifa.address.as_ref().and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        if let Some(ip) = ip {
            if found.local.len() < MAX_LOCAL_ADDRESSES {
                found.local.push(ip);
            }
        }
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let flags = ifa.flags;
        if !flags.contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_MULTICAST)
            || (only.is_none() && flags.contains(InterfaceFlags::IFF_LOOPBACK))
        {
            continue;
        }
        let Some(address) = ifa.address else { continue };
        if let Some(v4) = address.as_sockaddr_in() {
            if found.v4.len() < MAX_INTERFACES && !found.v4.iter().any(|(n, _)| *n == name) {
                found.v4.push((name, v4.ip()));
            }
        } else if address.as_sockaddr_in6().is_some()
            && found.v6.len() < MAX_INTERFACES
            && !found.v6.iter().any(|(n, _)| *n == name)
        {
            let index = nix::net::if_::if_nametoindex(name.as_str())?;
            found.v6.push((name, index));
        }
    }
    Ok(found)
}

#[cfg(not(unix))]
fn interfaces(_only: Option<&str>) -> io::Result<Interfaces> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "listing interfaces is implemented for Unix systems only",
    ))
}

/// What woke discovery up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wake {
    Announce,
    V4,
    V6,
}

/// Discovery's sockets and state, owned by the driver.
pub(crate) struct Discoverer {
    config: Discovery,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    /// Interfaces joined to the groups now.
    joined: Interfaces,
    sealer: Sealer,
    opener: Opener,
    schedule: Schedule,
    contacts: Contacts,
    stats: DiscoveryStats,
    /// Whether the gossip socket reaches IPv6 members.
    ipv6_gossip: bool,
    buf: Box<[u8]>,
}

impl Discoverer {
    /// Opens the sockets of the configured families. A family whose socket cannot be made is
    /// logged and left out; it is an error only when no family is left.
    pub(crate) fn new(config: Discovery, ipv6_gossip: bool, now: Instant) -> Result<Self, Error> {
        config.validate().map_err(Error::Discovery)?;
        let mut last_error = None;
        let v4 = config.ipv4_group.and_then(|group| {
            open_v4(group, config.port)
                .map_err(|e| {
                    warn!(%group, port = config.port, error = %e, "no IPv4 discovery");
                    last_error = Some(e);
                })
                .ok()
        });
        let v6 = config.ipv6_group.and_then(|group| {
            open_v6(config.port)
                .map_err(|e| {
                    warn!(%group, port = config.port, error = %e, "no IPv6 discovery");
                    last_error = Some(e);
                })
                .ok()
        });
        if v4.is_none() && v6.is_none() {
            return Err(Error::DiscoverySocket {
                port: config.port,
                source: last_error.unwrap_or_else(|| io::ErrorKind::Unsupported.into()),
            });
        }
        Ok(Self {
            schedule: Schedule::new(&config, now),
            contacts: Contacts::new(&config, now),
            config,
            v4,
            v6,
            joined: Interfaces::default(),
            // The thread RNG is a CSPRNG seeded from the OS: a fresh epoch on every start.
            sealer: Sealer::new(rand::random()),
            // Sender lives remembered for the replay check: 256 windows of a few dozen bytes.
            opener: Opener::with_max_epochs(256),
            stats: DiscoveryStats::default(),
            ipv6_gossip,
            buf: vec![0; MAX_ANNOUNCEMENT + 1].into_boxed_slice(),
        })
    }

    pub(crate) fn stats(&self) -> DiscoveryStats {
        self.stats
    }

    /// Waits for the next announcement due or a datagram. Cancel-safe.
    pub(crate) async fn wait(&self) -> Wake {
        tokio::select! {
            () = tokio::time::sleep_until(self.schedule.next.into()) => Wake::Announce,
            // A readiness error is not expected on a UDP socket; the read that follows reports
            // it (and ends the batch).
            _ = readable(self.v4.as_ref()) => Wake::V4,
            _ = readable(self.v6.as_ref()) => Wake::V6,
        }
    }

    /// Acts on what woke discovery up.
    pub(crate) fn wake(&mut self, wake: Wake, node: &mut Node, now: Instant) {
        match wake {
            Wake::Announce => self.announce(node, now),
            Wake::V4 => self.receive(true, node, now),
            Wake::V6 => self.receive(false, node, now),
        }
    }

    /// Joins the groups on the interfaces found now, and sends the announcement on each.
    fn announce(&mut self, node: &Node, now: Instant) {
        self.rescan();
        let me = node.local_member();
        let alive = Alive {
            name: me.name.clone(),
            addr: me.addr,
            generation: me.generation,
            incarnation: me.incarnation,
            tags: Tags::new(),
        };
        let cluster = &node.config().cluster_name;
        let plain = wire::encode_packet(wire::cluster_hash(cluster), &[Message::Alive(alive)]);
        let datagram = match node.keyring() {
            Some(keyring) if node.encryption_mode().sends_sealed() => {
                match self.sealer.seal(keyring, cluster, &plain) {
                    Ok(sealed) => sealed,
                    Err(error) => {
                        warn!(%error, "cannot seal the discovery announcement");
                        self.stats.send_errors += 1;
                        self.schedule_next(node, now);
                        return;
                    }
                }
            }
            _ => plain,
        };
        if let (Some(socket), Some(group)) = (&self.v4, self.config.ipv4_group) {
            let socket = SockRef::from(socket);
            let dst = SocketAddr::V4(SocketAddrV4::new(group, self.config.port));
            for (name, ip) in &self.joined.v4 {
                let sent = socket
                    .set_multicast_if_v4(ip)
                    .and_then(|()| socket.send_to(&datagram, &dst.into()));
                count_send(&mut self.stats, sent, name);
            }
        }
        if let (Some(socket), Some(group)) = (&self.v6, self.config.ipv6_group) {
            let socket = SockRef::from(socket);
            for (name, index) in &self.joined.v6 {
                let dst = SocketAddr::V6(SocketAddrV6::new(group, self.config.port, 0, *index));
                count_send(
                    &mut self.stats,
                    socket.send_to(&datagram, &dst.into()),
                    name,
                );
            }
        }
        self.schedule_next(node, now);
    }

    fn schedule_next(&mut self, node: &Node, now: Instant) {
        let alone = node.num_alive() == 0;
        let jitter = rand::random::<f64>() * 2.0 - 1.0;
        self.schedule.announced(&self.config, now, alone, jitter);
    }

    /// Brings the group memberships in line with the interfaces up now.
    fn rescan(&mut self) {
        let found = match interfaces(self.config.interface.as_deref()) {
            Ok(found) => found,
            Err(error) => {
                debug!(%error, "cannot list the network interfaces");
                return;
            }
        };
        if found == self.joined {
            return;
        }
        let mut now_joined = Interfaces {
            local: found.local.clone(),
            ..Interfaces::default()
        };
        if let (Some(socket), Some(group)) = (&self.v4, self.config.ipv4_group) {
            for (name, ip) in &found.v4 {
                let known = self.joined.v4.iter().any(|(n, a)| n == name && a == ip);
                let joined = known || join_v4(socket, group, *ip, name);
                if joined {
                    now_joined.v4.push((name.clone(), *ip));
                }
            }
            for (name, ip) in &self.joined.v4 {
                if !found.v4.iter().any(|(n, a)| n == name && a == ip) {
                    // The interface or its address is gone: so is the membership, mostly.
                    let _ = SockRef::from(socket).leave_multicast_v4(&group, ip);
                    info!(interface = %name, "discovery: interface gone");
                }
            }
        }
        if let (Some(socket), Some(group)) = (&self.v6, self.config.ipv6_group) {
            for (name, index) in &found.v6 {
                let known = self.joined.v6.iter().any(|(n, i)| n == name && i == index);
                let joined = known || join_v6(socket, group, *index, name);
                if joined {
                    now_joined.v6.push((name.clone(), *index));
                }
            }
            for (name, index) in &self.joined.v6 {
                if !found.v6.iter().any(|(n, i)| n == name && i == index) {
                    let _ = SockRef::from(socket).leave_multicast_v6(&group, *index);
                    info!(interface = %name, "discovery: interface gone");
                }
            }
        }
        if now_joined.v4.is_empty() && now_joined.v6.is_empty() {
            match &self.config.interface {
                Some(name) => {
                    debug!(interface = %name, "discovery: the interface is not up with a multicast address")
                }
                None => debug!("discovery: no multicast-capable interface is up"),
            }
        }
        self.stats.interfaces = (now_joined.v4.len() + now_joined.v6.len()) as u64;
        self.joined = now_joined;
    }

    /// Reads the datagrams waiting on one socket and contacts the announcers worth it.
    fn receive(&mut self, v4: bool, node: &mut Node, now: Instant) {
        let Some(socket) = (if v4 { &self.v4 } else { &self.v6 }) else {
            return;
        };
        let me = node.local_member();
        let receiver = Receiver {
            cluster_name: &node.config().cluster_name,
            mode: node.encryption_mode(),
            keyring: node.keyring(),
            own_name: &me.name,
            own_addr: me.addr,
            max_name_len: node.config().max_name_len,
            ipv6_gossip: self.ipv6_gossip,
            local: &self.joined.local,
        };
        let mut found = Vec::new();
        for _ in 0..MAX_BATCH {
            let (len, from) = match socket.try_recv_from(&mut self.buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    debug!(%error, "discovery: receive failed");
                    break;
                }
            };
            self.stats.received += 1;
            let Some(datagram) = self.buf.get(..len) else {
                continue;
            };
            let source = crate::socket::normalize(from).ip();
            match receiver.judge(&mut self.opener, source, datagram) {
                Ok(announcer) => {
                    self.stats.heard += 1;
                    found.push(announcer);
                }
                Err(refused) => {
                    let counter = match refused {
                        Refused::Own => continue,
                        Refused::Oversize => &mut self.stats.dropped_oversize,
                        Refused::Malformed => &mut self.stats.dropped_malformed,
                        Refused::WrongCluster => &mut self.stats.dropped_wrong_cluster,
                        Refused::Unauthenticated => &mut self.stats.dropped_unauthenticated,
                        Refused::BadAddress => &mut self.stats.dropped_bad_address,
                    };
                    *counter += 1;
                    debug!(%from, len, ?refused, "discovery: announcement dropped");
                }
            }
        }
        for (name, addr) in found {
            self.consider(node, now, &name, addr);
        }
    }

    /// Contacts a heard announcer unless it is a live member, was contacted just now, or the
    /// budget is spent.
    fn consider(&mut self, node: &mut Node, now: Instant, name: &str, addr: SocketAddr) {
        let live = node
            .member_brief(name)
            .is_some_and(|m| m.status.is_live() && m.addr == addr);
        if live {
            return;
        }
        match self.contacts.may(&self.config, now, addr) {
            Ok(true) => {
                if node.contact(now, addr) {
                    self.contacts.spend(&self.config, now, addr);
                    self.stats.contacts += 1;
                    info!(member = %name, %addr, "discovered; joining through it");
                }
            }
            Ok(false) => {}
            Err(()) => {
                self.stats.rate_limited += 1;
                debug!(member = %name, %addr, "discovered, but the contact budget is spent");
            }
        }
    }
}

/// Waits until `socket` (if any) has a datagram.
async fn readable(socket: Option<&UdpSocket>) -> io::Result<()> {
    match socket {
        Some(socket) => socket.readable().await,
        None => std::future::pending().await,
    }
}

fn count_send(stats: &mut DiscoveryStats, sent: io::Result<usize>, interface: &str) {
    match sent {
        Ok(_) => stats.sent += 1,
        Err(error) => {
            stats.send_errors += 1;
            debug!(%interface, %error, "discovery: announcement not sent");
        }
    }
}

fn join_v4(socket: &UdpSocket, group: Ipv4Addr, ip: Ipv4Addr, name: &str) -> bool {
    match SockRef::from(socket).join_multicast_v4(&group, &ip) {
        Ok(()) => {
            info!(interface = %name, %ip, %group, "discovery: listening");
            true
        }
        // Already a member (the address moved between interfaces): it counts.
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => true,
        Err(error) => {
            debug!(interface = %name, %group, %error, "discovery: cannot join the group");
            false
        }
    }
}

fn join_v6(socket: &UdpSocket, group: Ipv6Addr, index: u32, name: &str) -> bool {
    match SockRef::from(socket).join_multicast_v6(&group, index) {
        Ok(()) => {
            info!(interface = %name, %group, "discovery: listening");
            true
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => true,
        Err(error) => {
            debug!(interface = %name, %group, %error, "discovery: cannot join the group");
            false
        }
    }
}

/// The IPv4 socket: shared by every node of the host (`SO_REUSEADDR`, and `SO_REUSEPORT` where
/// the system needs it for multicast), bound to the group itself so that only the group's
/// datagrams arrive (no unicast sent to the port, no other group joined on the host), TTL 1,
/// and loopback on, so that nodes on one host hear each other.
fn open_v4(group: Ipv4Addr, port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    share(&socket)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_nonblocking(true)?;
    // Windows cannot bind a multicast address; there the wildcard does.
    let ip = if cfg!(windows) {
        Ipv4Addr::UNSPECIFIED
    } else {
        group
    };
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(ip, port)).into())?;
    UdpSocket::from_std(socket.into())
}

/// The IPv6 socket: IPv6 only, shared like the IPv4 one, hop limit 1, loopback on. Bound to
/// the wildcard: a link-local group can only be bound with an interface, and there may be
/// several.
fn open_v6(port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(true)?;
    share(&socket)?;
    socket.set_multicast_hops_v6(1)?;
    socket.set_multicast_loop_v6(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)).into())?;
    UdpSocket::from_std(socket.into())
}

fn share(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_address(true)?;
    // Linux delivers a multicast datagram to every socket bound to the port with
    // SO_REUSEADDR; the BSDs need SO_REUSEPORT for that.
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    Ok(())
}

#[cfg(test)]
mod tests;
