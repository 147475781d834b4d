//! `--discover`: LAN discovery without seeds (the `chatter` crate's `discover` module), its
//! flags and its config-file keys. Its counters are in `foundation::discovery_stats`.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, Result};
use chatter::discover::{DEFAULT_DISCOVERY_PORT, DEFAULT_IPV4_GROUP, DEFAULT_IPV6_GROUP};
use chatter::Discovery;
use clap::ArgMatches;

/// The flags of LAN discovery.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "LAN discovery")]
pub struct DiscoverOptions {
    /// Find the other members of the cluster on the local network segment by IPv4 and IPv6
    /// link-local multicast, without seeds or next to them. Announcements carry the cluster
    /// name and are sealed with the gossip key when there is one: nodes of another cluster,
    /// or without the key, never join.
    #[arg(long)]
    pub discover: bool,

    /// The interface to discover on [default: every interface that is up and
    /// multicast-capable, loopback excepted].
    #[arg(long, value_name = "NAME", value_parser = parse_interface)]
    pub discover_interface: Option<String>,

    /// UDP port of the discovery groups (every node on a host shares it).
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_DISCOVERY_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub discover_port: u16,

    /// IPv4 group of discovery, or `off` for IPv6 only.
    #[arg(long, value_name = "ADDR|off", default_value_t = GroupV4(Some(DEFAULT_IPV4_GROUP)),
          value_parser = parse_v4_group)]
    pub discover_ipv4_group: GroupV4,

    /// IPv6 group of discovery (link-local scope, ff02::/16), or `off` for IPv4 only.
    #[arg(long, value_name = "ADDR|off", default_value_t = GroupV6(Some(DEFAULT_IPV6_GROUP)),
          value_parser = parse_v6_group)]
    pub discover_ipv6_group: GroupV6,
}

/// An IPv4 group, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupV4(pub Option<Ipv4Addr>);

/// An IPv6 group, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupV6(pub Option<Ipv6Addr>);

impl std::fmt::Display for GroupV4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(group) => group.fmt(f),
            None => f.write_str("off"),
        }
    }
}

impl std::fmt::Display for GroupV6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(group) => group.fmt(f),
            None => f.write_str("off"),
        }
    }
}

/// `--discover-ipv4-group`: a multicast address or `off`.
pub fn parse_v4_group(text: &str) -> Result<GroupV4, String> {
    if text == "off" {
        return Ok(GroupV4(None));
    }
    let group: Ipv4Addr = text
        .parse()
        .map_err(|_| format!("{text:?} is neither an IPv4 address nor off"))?;
    if !group.is_multicast() {
        return Err(format!("{group} is not a multicast address (224.0.0.0/4)"));
    }
    Ok(GroupV4(Some(group)))
}

/// `--discover-ipv6-group`: a link-local multicast address or `off`.
pub fn parse_v6_group(text: &str) -> Result<GroupV6, String> {
    if text == "off" {
        return Ok(GroupV6(None));
    }
    let group: Ipv6Addr = text
        .parse()
        .map_err(|_| format!("{text:?} is neither an IPv6 address nor off"))?;
    if !group.is_multicast() || group.segments()[0] & 0x000f != 2 {
        return Err(format!(
            "{group} is not a link-local multicast address (ff02::/16)"
        ));
    }
    Ok(GroupV6(Some(group)))
}

/// `--discover-interface`: a name the system could give an interface.
pub fn parse_interface(text: &str) -> Result<String, String> {
    let settings = Discovery {
        interface: Some(text.to_owned()),
        ..Discovery::default()
    };
    settings
        .validate()
        .map(|()| text.to_owned())
        .map_err(str::to_owned)
}

impl DiscoverOptions {
    /// The library's settings, with `--discover`.
    pub fn settings(&self) -> Option<Discovery> {
        self.discover.then(|| Discovery {
            ipv4_group: self.discover_ipv4_group.0,
            ipv6_group: self.discover_ipv6_group.0,
            port: self.discover_port,
            interface: self.discover_interface.clone(),
            ..Discovery::default()
        })
    }

    /// Checks that at least one group is on.
    pub fn validate(&self) -> Result<(), String> {
        match self.settings() {
            Some(settings) => settings.validate().map_err(|e| format!("--discover: {e}")),
            None => Ok(()),
        }
    }
}

/// The config file's keys of discovery (fields of `config::FileConfig`).
#[derive(Debug, Default)]
pub struct FileDiscover {
    /// `--discover`.
    pub discover: Option<bool>,
    /// `--discover-interface`.
    pub discover_interface: Option<String>,
    /// `--discover-port`.
    pub discover_port: Option<i64>,
    /// `--discover-ipv4-group`, an address or `"off"`.
    pub discover_ipv4_group: Option<String>,
    /// `--discover-ipv6-group`, an address or `"off"`.
    pub discover_ipv6_group: Option<String>,
}

/// Merges the file's keys under the command line (each checked like its flag).
pub fn merge(
    options: &mut DiscoverOptions,
    matches: &ArgMatches,
    file: FileDiscover,
) -> Result<()> {
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    if let Some(on) = file.discover {
        if !given("discover") {
            options.discover = on;
        }
    }
    if let Some(name) = file.discover_interface {
        let name = parse_interface(&name).map_err(|e| anyhow!("discover-interface: {e}"))?;
        if !given("discover_interface") {
            options.discover_interface = Some(name);
        }
    }
    if let Some(port) = file.discover_port {
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| anyhow!("discover-port: {port} is not a port from 1 to 65535"))?;
        if !given("discover_port") {
            options.discover_port = port;
        }
    }
    if let Some(group) = file.discover_ipv4_group {
        let group = parse_v4_group(&group).map_err(|e| anyhow!("discover-ipv4-group: {e}"))?;
        if !given("discover_ipv4_group") {
            options.discover_ipv4_group = group;
        }
    }
    if let Some(group) = file.discover_ipv6_group {
        let group = parse_v6_group(&group).map_err(|e| anyhow!("discover-ipv6-group: {e}"))?;
        if !given("discover_ipv6_group") {
            options.discover_ipv6_group = group;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_multicast_or_off() {
        assert_eq!(parse_v4_group("off"), Ok(GroupV4(None)));
        assert_eq!(
            parse_v4_group("224.0.0.99"),
            Ok(GroupV4(Some(Ipv4Addr::new(224, 0, 0, 99))))
        );
        assert!(parse_v4_group("10.0.0.1").is_err());
        assert!(parse_v4_group("ff02::1").is_err());
        assert_eq!(parse_v6_group("off"), Ok(GroupV6(None)));
        assert!(parse_v6_group("ff02::4348:2428").is_ok());
        assert!(
            parse_v6_group("ff05::1").is_err(),
            "site scope leaves the link"
        );
        assert!(parse_v6_group("fe80::1").is_err());
        assert!(parse_interface("eth0").is_ok());
        assert!(parse_interface("a/b").is_err());
    }

    /// The discovery flags alone, as `chatterd` flattens them into its own.
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        discover: DiscoverOptions,
    }

    #[test]
    fn off_unless_asked_and_never_with_both_groups_off() {
        use clap::Parser;
        let args = Flags::try_parse_from(["chatterd"]).unwrap();
        assert_eq!(args.discover.settings(), None);
        let args = Flags::try_parse_from([
            "chatterd",
            "--discover",
            "--discover-interface",
            "eth1",
            "--discover-ipv4-group",
            "off",
        ])
        .unwrap();
        let settings = args.discover.settings().unwrap();
        assert_eq!(settings.ipv4_group, None);
        assert_eq!(settings.ipv6_group, Some(DEFAULT_IPV6_GROUP));
        assert_eq!(settings.interface.as_deref(), Some("eth1"));
        assert_eq!(settings.port, DEFAULT_DISCOVERY_PORT);
        let args = Flags::try_parse_from([
            "chatterd",
            "--discover",
            "--discover-ipv4-group",
            "off",
            "--discover-ipv6-group",
            "off",
        ])
        .unwrap();
        assert!(args.discover.validate().is_err());
    }
}
