//! Seeds: `host:port` strings, resolved through the system resolver and refreshed periodically.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::Error;

/// How often seeds are resolved again, so that a DNS name that moves is followed.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// How soon a resolution is retried when a seed could not be resolved.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How soon seeds are resolved again once no address they gave is a live member (every seed
/// host replaced, as when a Kubernetes Service's pods all moved): the same pace as a failed
/// resolution, since a node in that state may have lost its cluster and the name is the only
/// way back. Without it such a node waits up to [`REFRESH_INTERVAL`] (measured on namespace
/// hosts: 30 s for a cluster to find its seeds' new addresses). One lookup per 5 s is no load
/// for a resolver, and it stops as soon as a seed address is a live member again.
pub(crate) const LOST_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Upper bound on one resolution (the system resolver can hang on a dead DNS server).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks that `seed` has the form `host:port` without resolving it.
pub(crate) fn validate(seed: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidSeed {
        seed: seed.to_owned(),
        reason,
    };
    if let Ok(addr) = seed.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err(invalid("port 0 is not a port a member listens on"))
        } else {
            Ok(())
        };
    }
    let Some((host, port)) = seed.rsplit_once(':') else {
        return Err(invalid("expected host:port"));
    };
    if host.is_empty() {
        return Err(invalid("expected host:port, the host is missing"));
    }
    if host.contains(':') || host.contains('[') || host.contains(']') {
        return Err(invalid("an IPv6 address goes in brackets: [fd00::1]:2428"));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(invalid("expected host:port, the host is not a host name"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(invalid("port 0 is not a port a member listens on")),
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(
            "expected host:port, the port is not a number from 1 to 65535",
        )),
    }
}

/// Resolves one seed with the system resolver (`getaddrinfo`, so `/etc/hosts` and nsswitch are
/// respected, like every other program on the host), keeping the addresses the socket can reach:
/// IPv4 only for an IPv4 socket, both families for an IPv6 (dual-stack) one.
pub(crate) async fn resolve(seed: &str, ipv6_socket: bool) -> io::Result<Vec<SocketAddr>> {
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(seed))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resolution timed out"))??;
    let mut addrs: Vec<SocketAddr> = found
        .map(crate::socket::normalize)
        .filter(|a| ipv6_socket || a.is_ipv4())
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    if addrs.is_empty() {
        let family = if ipv6_socket { "" } else { "IPv4 " };
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no {family}address found"),
        ));
    }
    Ok(addrs)
}

/// When to resolve the seeds next: at the regular `scheduled` time, or [`LOST_REFRESH_INTERVAL`]
/// after the `last` resolution when every seed address has stopped being a live member
/// (`lost`), whichever comes first.
pub(crate) fn next_resolution<T>(scheduled: T, last: T, lost: bool) -> T
where
    T: Copy + Ord + std::ops::Add<Duration, Output = T>,
{
    if lost {
        scheduled.min(last + LOST_REFRESH_INTERVAL)
    } else {
        scheduled
    }
}

/// Resolves several seeds concurrently.
pub(crate) async fn resolve_all(
    seeds: Vec<String>,
    ipv6_socket: bool,
) -> Vec<(String, io::Result<Vec<SocketAddr>>)> {
    let lookups = seeds.into_iter().map(|seed| async move {
        let result = resolve(&seed, ipv6_socket).await;
        (seed, result)
    });
    futures::future::join_all(lookups).await
}

/// The seeds of a node and their last resolved addresses.
#[derive(Debug, Default)]
pub(crate) struct Seeds {
    /// Seed string to the addresses of its last successful resolution (empty: never resolved).
    /// A failed re-resolution keeps the previous addresses: a DNS hiccup must not drop a seed.
    resolved: BTreeMap<String, Vec<SocketAddr>>,
    /// Addresses of members remembered from a previous life (`Builder::data_dir`): join
    /// targets next to the seeds, so that a node whose seeds are all down still finds its way
    /// back. At most `persist::MAX_SAVED_MEMBERS`.
    remembered: Vec<SocketAddr>,
    /// The union last handed to the core.
    joined: Vec<SocketAddr>,
}

impl Seeds {
    /// Seeds to resolve, not resolved yet.
    pub(crate) fn new(seeds: impl IntoIterator<Item = String>) -> Self {
        Self {
            resolved: seeds.into_iter().map(|s| (s, Vec::new())).collect(),
            remembered: Vec::new(),
            joined: Vec::new(),
        }
    }

    /// Adds remembered member addresses to the join targets, for the node's whole life.
    pub(crate) fn remember(&mut self, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.remembered.extend(addrs);
        self.remembered.truncate(crate::persist::MAX_SAVED_MEMBERS);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.resolved.is_empty()
    }

    /// The seed strings.
    pub(crate) fn names(&self) -> Vec<String> {
        self.resolved.keys().cloned().collect()
    }

    /// Records a resolution result; failures are logged and keep the previous addresses.
    /// Returns whether it failed.
    pub(crate) fn record(&mut self, seed: String, result: io::Result<Vec<SocketAddr>>) -> bool {
        match result {
            Ok(addrs) => {
                tracing::debug!(%seed, ?addrs, "seed resolved");
                self.resolved.insert(seed, addrs);
                false
            }
            Err(error) => {
                tracing::warn!(%seed, %error, "cannot resolve seed; will retry");
                self.resolved.entry(seed).or_default();
                true
            }
        }
    }

    /// Sorted, de-duplicated union of all resolved addresses and the remembered ones.
    pub(crate) fn union(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self
            .resolved
            .values()
            .flatten()
            .chain(&self.remembered)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The union if it differs from what the core last got, and records it as handed over.
    pub(crate) fn take_changed(&mut self) -> Option<Vec<SocketAddr>> {
        let union = self.union();
        if union == self.joined {
            None
        } else {
            self.joined = union.clone();
            Some(union)
        }
    }

    /// Whether some address the seeds resolved to, other than `own`, is in `live` (the gossip
    /// addresses of the live members). `false` with no such address: the seed names no longer
    /// point to any member this node reaches, or point only to itself.
    pub(crate) fn any_live(
        &self,
        live: impl IntoIterator<Item = SocketAddr>,
        own: SocketAddr,
    ) -> bool {
        let mine: Vec<SocketAddr> = self
            .resolved
            .values()
            .flatten()
            .copied()
            .filter(|a| *a != own)
            .collect();
        !mine.is_empty() && live.into_iter().any(|a| mine.contains(&a))
    }

    /// Records that `addrs` were handed to the core.
    pub(crate) fn mark_joined(&mut self, addrs: Vec<SocketAddr>) {
        self.joined = addrs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_host_port_forms() {
        for seed in [
            "10.0.0.1:2428",
            "[fd00::1]:2428",
            "seed.example.com:2428",
            "localhost:1",
        ] {
            assert!(validate(seed).is_ok(), "{seed}");
        }
    }

    #[test]
    fn rejects_what_is_not_host_port() {
        for seed in [
            "",
            "seed.example.com",
            ":2428",
            "host:",
            "host:port",
            "host:70000",
            "fd00::1:2428",
            "host:0",
            "a b:1",
            "http://x:1",
        ] {
            assert!(
                matches!(validate(seed), Err(Error::InvalidSeed { .. })),
                "{seed}"
            );
        }
    }

    #[test]
    fn failed_refresh_keeps_previous_addresses() {
        let mut seeds = Seeds::new(["a:1".to_owned()]);
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert!(!seeds.record("a:1".into(), Ok(vec![addr])));
        assert_eq!(seeds.take_changed(), Some(vec![addr]));
        assert!(seeds.record("a:1".into(), Err(io::ErrorKind::NotFound.into())));
        assert_eq!(seeds.take_changed(), None);
        assert_eq!(seeds.union(), vec![addr]);
    }

    #[test]
    fn seeds_are_lost_when_none_of_their_addresses_is_a_live_member() {
        let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let own = addr("10.0.0.1:2428");
        let mut seeds = Seeds::new(["seeds.test:2428".to_owned()]);
        // Never resolved: nothing to be live.
        assert!(!seeds.any_live([addr("10.0.0.2:2428")], own));
        seeds.record(
            "seeds.test:2428".into(),
            Ok(vec![own, addr("10.0.0.2:2428"), addr("10.0.0.3:2428")]),
        );
        assert!(seeds.any_live([addr("10.0.0.9:2428"), addr("10.0.0.3:2428")], own));
        // Its own address does not count: a node seeded by a name that gives only itself (or
        // only dead hosts) is lost.
        assert!(!seeds.any_live([own, addr("10.0.0.9:2428")], own));
        assert!(!seeds.any_live([], own));
        // Remembered members are not seed addresses.
        seeds.remember([addr("10.0.0.9:2428")]);
        assert!(!seeds.any_live([addr("10.0.0.9:2428")], own));
    }

    #[test]
    fn lost_seeds_are_resolved_again_within_five_seconds_of_the_last_resolution() {
        let t0 = std::time::Instant::now();
        let scheduled = t0 + REFRESH_INTERVAL;
        assert_eq!(next_resolution(scheduled, t0, false), scheduled);
        assert_eq!(
            next_resolution(scheduled, t0, true),
            t0 + LOST_REFRESH_INTERVAL
        );
        // A retry already sooner stays sooner.
        let retry = t0 + Duration::from_secs(1);
        assert_eq!(next_resolution(retry, t0, true), retry);
    }

    #[tokio::test]
    async fn resolves_localhost_to_ipv4_for_an_ipv4_socket() {
        let addrs = resolve("localhost:2428", false).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.is_ipv4() && a.port() == 2428));
    }
}
