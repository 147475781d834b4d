//! `--config FILE`: the daemon's flags as a TOML file.
//!
//! ```toml
//! listen = "0.0.0.0:2428"
//! advertise = "10.0.0.7:2428"
//! node-name = "web-1"
//! seed = ["10.0.0.5:2428", "seed.example.com:2428"]
//! http = "127.0.0.1:8428"
//! profile = "lan"
//! cluster = "prod"
//!
//! [tag]
//! role = "web"
//! zone = "eu-1"
//! ```
//!
//! Every key is optional and checked like its flag; unknown keys are errors (a typo must not be
//! ignored). A flag given on the command line overrides the file; `--seed` and `--tag` add to
//! the file's (a `--tag` replaces the file's value for the same key).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{anyhow, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use clap::ValueEnum;
use serde::Deserialize;

use crate::cli::{self, Args, Profile};

/// The keys of a config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--advertise`.
    pub advertise: Option<SocketAddr>,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `--seed`, as a list.
    #[serde(default)]
    pub seed: Vec<String>,
    /// `--http`.
    pub http: Option<SocketAddr>,
    /// `--tag`, as a table.
    #[serde(default)]
    pub tag: BTreeMap<String, String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--cluster`.
    pub cluster: Option<String>,
}

impl FileConfig {
    /// Parses the text of a config file. The error is one line: `line N: what is wrong`.
    pub fn parse(text: &str) -> Result<FileConfig> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let before = &text.as_bytes()[..span.start.min(text.len())];
                    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                    anyhow!("line {line}: {message}")
                }
                None => anyhow!("{message}"),
            }
        })
    }
}

/// Reads `path` and merges it under the flags given on the command line (`matches` tells which
/// flags were given there rather than defaulted).
pub fn apply(args: &mut Args, matches: &ArgMatches, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read config {}: {}",
            path.display(),
            crate::daemon::io_message(&e)
        )
    })?;
    let file = FileConfig::parse(&text)
        .map_err(|e| anyhow!("invalid config {}: {e:#}", path.display()))?;
    merge(args, matches, file).map_err(|e| anyhow!("invalid config {}: {e:#}", path.display()))
}

fn from_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// Merges a parsed config file under the command line.
pub fn merge(args: &mut Args, matches: &ArgMatches, file: FileConfig) -> Result<()> {
    if let Some(listen) = file.listen {
        if !from_command_line(matches, "listen") {
            args.listen = listen;
        }
    }
    if args.advertise.is_none() {
        args.advertise = file.advertise;
    }
    if args.node_name.is_none() {
        if let Some(name) = file.node_name {
            args.node_name =
                Some(cli::parse_node_name(&name).map_err(|e| anyhow!("node-name: {e}"))?);
        }
    }
    if let Some(http) = file.http {
        if !from_command_line(matches, "http") {
            args.http = http;
        }
    }
    if args.profile.is_none() {
        if let Some(profile) = file.profile {
            args.profile = Some(Profile::from_str(&profile, true).map_err(|_| {
                anyhow!("profile: unknown profile {profile:?} (expected lan, wan or local)")
            })?);
        }
    }
    if let Some(cluster) = file.cluster {
        if !from_command_line(matches, "cluster") {
            args.cluster = cli::parse_cluster(&cluster).map_err(|e| anyhow!("cluster: {e}"))?;
        }
    }
    let mut seeds = Vec::new();
    for seed in file.seed {
        seeds.push(cli::parse_seed(&seed).map_err(|e| anyhow!("seed: {e}"))?);
    }
    for seed in args.seeds.drain(..) {
        if !seeds.contains(&seed) {
            seeds.push(seed);
        }
    }
    args.seeds = seeds;
    let mut tags = BTreeMap::new();
    for (key, value) in file.tag {
        let (key, value) =
            cli::parse_tag(&format!("{key}={value}")).map_err(|e| anyhow!("tag: {e}"))?;
        tags.insert(key, value);
    }
    tags.extend(args.tags.drain(..));
    args.tags = tags.into_iter().collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn merged(argv: &[&str], toml: &str) -> Result<Args> {
        let matches = Args::command().try_get_matches_from(argv).unwrap();
        let mut args = Args::from_arg_matches(&matches).unwrap();
        merge(&mut args, &matches, FileConfig::parse(toml)?)?;
        Ok(args)
    }

    const FILE: &str = r#"
        listen = "127.0.0.1:7000"
        node-name = "from-file"
        seed = ["10.0.0.5:2428"]
        http = "127.0.0.1:7001"
        profile = "wan"
        cluster = "prod"
        [tag]
        role = "web"
        zone = "a"
    "#;

    #[test]
    fn file_fills_what_the_command_line_does_not_give() {
        let args = merged(&["chatterd"], FILE).unwrap();
        assert_eq!(args.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(args.http, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(args.node_name.as_deref(), Some("from-file"));
        assert_eq!(args.profile, Some(Profile::Wan));
        assert_eq!(args.cluster, "prod");
        assert_eq!(args.seeds, ["10.0.0.5:2428"]);
        assert_eq!(args.tags.len(), 2);
    }

    #[test]
    fn command_line_wins_and_adds_to_lists() {
        let args = merged(
            &[
                "chatterd",
                "--listen",
                "127.0.0.1:9000",
                "--node-name",
                "cli",
                "--seed",
                "10.0.0.6:2428",
                "--tag",
                "zone=b",
                "--cluster",
                "chatter",
            ],
            FILE,
        )
        .unwrap();
        assert_eq!(args.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(args.http, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(args.node_name.as_deref(), Some("cli"));
        assert_eq!(args.cluster, "chatter");
        assert_eq!(args.seeds, ["10.0.0.5:2428", "10.0.0.6:2428"]);
        assert_eq!(
            args.tags,
            [
                ("role".to_owned(), "web".to_owned()),
                ("zone".to_owned(), "b".to_owned())
            ]
        );
    }

    #[test]
    fn mistakes_are_one_line_errors() {
        for (toml, expected) in [
            ("lisen = \"127.0.0.1:1\"", "line 1: unknown field `lisen`"),
            ("\nlisten = \"nope\"", "line 2"),
            ("profile = \"fast\"", "unknown profile"),
            ("seed = [\"no-port\"]", "seed:"),
            ("[tag]\n\"bad key\" = \"x\"", "tag:"),
            ("listen = ", "line 1"),
        ] {
            let err = merged(&["chatterd"], toml).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml:?}: {err}");
            assert!(!err.contains('\n'), "{toml:?}: {err}");
        }
    }
}
