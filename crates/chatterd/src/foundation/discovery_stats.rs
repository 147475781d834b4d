//! The counters of LAN discovery (`--discover`) as the API shows them: their names in
//! `/v1/self` and their help in `/metrics`.

use chatter::DiscoveryStats;

/// Help of each counter of [`DiscoveryStats::by_name`], for `/metrics`: the metric is
/// `chatter_discovery_NAME_total` (`interfaces` is the gauge `chatter_discovery_interfaces`).
pub fn counter_help(name: &str) -> &'static str {
    match name {
        "interfaces" => "Interfaces joined to a discovery group now (both families counted).",
        "sent" => "Discovery announcements sent (one per interface and family).",
        "send_errors" => "Discovery announcements the socket refused to send.",
        "received" => "Datagrams read from the discovery sockets, own announcements included.",
        "heard" => "Discovery announcements of this cluster from other nodes.",
        "contacts" => "Join requests sent to discovered nodes that were not live members.",
        "dropped_oversize" => "Discovery datagrams dropped: over the size limit.",
        "dropped_malformed" => "Discovery datagrams dropped: not a single Alive of Chatter.",
        "dropped_wrong_cluster" => "Discovery announcements of another cluster.",
        "dropped_unauthenticated" => {
            "Discovery announcements dropped: not sealed under this cluster's keyring (or plain \
             while sealed datagrams only are accepted)."
        }
        "dropped_bad_address" => {
            "Discovery announcements with a name or address no member can have."
        }
        "rate_limited" => "Discovered nodes not contacted: the contact budget was spent.",
        _ => "Discovery counter.",
    }
}

/// The counters by metric name (`discovery_sent`, ...), for `/v1/self`.
pub fn stats_map(stats: &DiscoveryStats) -> impl Iterator<Item = (String, u64)> {
    stats
        .by_name()
        .into_iter()
        .map(|(name, value)| (format!("discovery_{name}"), value))
}
