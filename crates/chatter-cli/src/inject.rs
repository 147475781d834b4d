//! `chatter-inject`: sends one message to a `chatterd`, which broadcasts it to its cluster.
//!
//! ```text
//! chatter-inject 127.0.0.1:2428 '{"DebugMessage":{"text":"hello world"}}'
//! echo '{"DeviceGossip":{"DeviceAdded":{"name":"gateway"}}}' | chatter-inject 127.0.0.1:2428
//! ```
//!
//! The JSON is one object with one key: the key is the message's tag, its value (compacted,
//! key order kept) the payload. ADDR is the daemon's gossip (UDP) address. The message travels
//! as one datagram of the cluster's wire protocol (`chatter_core::wire::encode_inject`), so
//! `--cluster` must name the daemon's cluster. UDP confirms nothing, so after sending the tool
//! waits briefly for an ICMP port-unreachable report on a connected socket: "nothing listens
//! there" is detected, a daemon of another cluster or a lost datagram is not.
//!
//! For an encrypted cluster, give the key as the daemon takes it: `--keyring-file PATH` (its
//! primary key seals) or `CHATTER_GOSSIP_KEY`. The datagram is then sealed with a fresh random
//! epoch from the OS RNG, so every run is a new sender life to the daemon's replay windows.

use std::io::{IsTerminal, Read};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// How long to wait for an ICMP port-unreachable report after sending.
const REFUSAL_WAIT: Duration = Duration::from_millis(300);

#[derive(Debug, Parser)]
#[command(
    name = "chatter-inject",
    version,
    about = "Send one message to a chatterd, which broadcasts it to the whole cluster",
    long_about = "Send one message to a chatterd, which broadcasts it to the whole cluster.\n\n\
        The JSON is an object with one key, the message's tag; its value is the payload, e.g. \
        {\"DebugMessage\":{\"text\":\"hello world\"}}. It is read from standard input when not \
        given as an argument. ADDR is the daemon's gossip (UDP) address, e.g. 127.0.0.1:2428."
)]
struct Args {
    /// The daemon's gossip (UDP) address, HOST:PORT.
    #[arg(value_name = "ADDR")]
    addr: String,

    /// The message as JSON: {"TAG": PAYLOAD} [default: read from standard input].
    #[arg(value_name = "JSON")]
    json: Option<String>,

    /// Name of the daemon's cluster (datagrams of another cluster are dropped).
    #[arg(long, value_name = "NAME", default_value = "chatter")]
    cluster: String,

    /// Seal the datagram with the primary key of this keyring file (the daemon's
    /// --keyring-file). Or one key in the CHATTER_GOSSIP_KEY environment variable.
    #[arg(long, value_name = "PATH")]
    keyring_file: Option<std::path::PathBuf>,
}

/// The environment variable holding one base64 key, as for chatterd.
const GOSSIP_KEY_ENV: &str = "CHATTER_GOSSIP_KEY";

/// The keyring given by `--keyring-file` or [`GOSSIP_KEY_ENV`], if any.
fn keyring(args: &Args) -> Result<Option<chatter_core::Keyring>, String> {
    let env = std::env::var_os(GOSSIP_KEY_ENV);
    match (&args.keyring_file, env) {
        (Some(_), Some(_)) => Err(format!(
            "both --keyring-file and {GOSSIP_KEY_ENV} are set: give the key one way only"
        )),
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "cannot read keyring file {}: {}",
                    path.display(),
                    io_message(&e)
                )
            })?;
            chatter_core::Keyring::parse(&text)
                .map(Some)
                .map_err(|e| format!("keyring file {}: {e}", path.display()))
        }
        (None, Some(value)) => {
            let text = value
                .into_string()
                .map_err(|_| format!("{GOSSIP_KEY_ENV}: not valid UTF-8"))?;
            chatter_core::Key::from_base64(text.trim())
                .map(|key| Some(chatter_core::Keyring::new(key)))
                .map_err(|e| format!("{GOSSIP_KEY_ENV}: {e}"))
        }
        (None, None) => Ok(None),
    }
}

/// A fresh sealing epoch from the OS RNG: never reused, since a reused epoch under a key
/// repeats nonces (see `chatter_seal::Sealer`).
fn fresh_epoch() -> Result<u64, String> {
    use rand::TryRngCore as _;
    rand::rngs::OsRng
        .try_next_u64()
        .map_err(|e| format!("the operating system's random generator failed: {e}"))
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = err.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    eprintln!("chatter-inject: {}", one_line_error(&err));
                    ExitCode::from(2)
                }
            };
        }
    };
    match run(args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("chatter-inject: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<String, String> {
    // Before reading standard input: a bad key is reported at once.
    let keyring = keyring(&args)?;
    let text = match args.json {
        Some(text) => text,
        None => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("chatter-inject: reading the JSON message from standard input (end with Ctrl-D)");
            }
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read standard input: {}", io_message(&e)))?;
            text
        }
    };
    let (tag, payload) = parse_message(&text)?;
    let limits = chatter_core::Config::lan();
    if tag.len() > limits.max_tag_len {
        return Err(format!(
            "the tag is {} bytes long; the limit is {} bytes",
            tag.len(),
            limits.max_tag_len
        ));
    }
    if payload.len() > limits.max_message_size {
        return Err(format!(
            "the payload is {} bytes (compacted); the limit is {} bytes",
            payload.len(),
            limits.max_message_size
        ));
    }
    let target = resolve(&args.addr)?;
    let datagram = match &keyring {
        Some(ring) => chatter_core::wire::encode_inject_sealed(
            ring,
            fresh_epoch()?,
            &args.cluster,
            &tag,
            payload.as_bytes(),
        )
        .map_err(|e| format!("cannot seal the message: {e}"))?,
        None => chatter_core::wire::encode_inject(&args.cluster, &tag, payload.as_bytes()),
    };
    send(&args.addr, target, &datagram)?;
    Ok(format!(
        "sent {tag} ({} bytes of payload) to {target}",
        payload.len()
    ))
}

/// The tag and the compacted payload of `{"TAG": PAYLOAD}`.
fn parse_message(text: &str) -> Result<(String, String), String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let kind = match &value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Null => Some("null"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Array(_) => Some("an array"),
    };
    if let Some(kind) = kind {
        return Err(format!(
            "expected an object with one key, the tag (e.g. {{\"DebugMessage\":{{\"text\":\"hello\"}}}}), got {kind}"
        ));
    }
    // Again, keeping every entry in order (duplicates included) and the payload's own text.
    let mut de = serde_json::Deserializer::from_str(text);
    let entries = de
        .deserialize_map(EntriesVisitor)
        .map_err(|e| format!("invalid JSON: {e}"))?;
    let mut entries = entries.into_iter();
    match (entries.next(), entries.len()) {
        (None, _) => Err(
            "the object is empty: expected one key, the tag (e.g. {\"DebugMessage\":{\"text\":\"hello\"}})"
                .to_owned(),
        ),
        (Some((tag, _)), 0) if tag.is_empty() => {
            Err("the tag (the object's key) must not be empty".to_owned())
        }
        (Some((tag, payload)), 0) => Ok((tag, chatter_api::compact_json(payload.get()))),
        (Some((first, _)), more) => {
            let keys: Vec<String> = std::iter::once(first)
                .chain(entries.map(|(key, _)| key))
                .map(|key| format!("{key:?}"))
                .collect();
            Err(format!(
                "expected one key (the tag), got {}: {}",
                more + 1,
                keys.join(", ")
            ))
        }
    }
}

/// Every entry of a JSON object, in order, values as their raw text.
struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Vec<(String, Box<RawValue>)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// The first address `addr` (HOST:PORT) resolves to.
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(parsed) = addr.parse::<SocketAddr>() {
        return check_port(addr, parsed);
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!(
            "invalid address {addr:?}: expected HOST:PORT, e.g. 127.0.0.1:2428"
        ));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "invalid address {addr:?}: expected HOST:PORT, e.g. 127.0.0.1:2428"
        ));
    }
    let resolved = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {}", io_message(&e)))?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr}: no address"))?;
    check_port(addr, resolved)
}

fn check_port(given: &str, addr: SocketAddr) -> Result<SocketAddr, String> {
    if addr.port() == 0 {
        return Err(format!("invalid address {given:?}: port 0"));
    }
    Ok(addr)
}

/// Sends the datagram on a socket connected to `target`, then waits [`REFUSAL_WAIT`] for an
/// ICMP port-unreachable, which the kernel reports on a connected UDP socket as a refused
/// connection.
fn send(given: &str, target: SocketAddr, datagram: &[u8]) -> Result<(), String> {
    let local: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .map_err(|e| format!("cannot open a UDP socket: {}", io_message(&e)))?;
    socket
        .connect(target)
        .map_err(|e| format!("cannot send to {given}: {}", io_message(&e)))?;
    let refused = || format!("nothing is listening at {given} (connection refused)");
    match socket.send(datagram) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(refused()),
        Err(e) => return Err(format!("cannot send to {given}: {}", io_message(&e))),
    }
    socket
        .set_read_timeout(Some(REFUSAL_WAIT))
        .map_err(|e| format!("cannot set a socket timeout: {}", io_message(&e)))?;
    let mut buf = [0u8; 2048];
    match socket.recv(&mut buf) {
        // The daemon does not answer an injection; anything that arrives is not a refusal.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(refused()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        // Other ICMP errors (host or network unreachable) also end up here.
        Err(e) => Err(format!("cannot reach {given}: {}", io_message(&e))),
    }
}

/// The message of an IO error without Rust's ` (os error N)` suffix.
fn io_message(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// A clap error as one line, without the usage block.
fn one_line_error(err: &clap::Error) -> String {
    // The first paragraph ("error: ..." and, for a missing argument, the lines naming it).
    let rendered = err.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty())
        .take_while(|line| !line.is_empty())
        .collect();
    let first = paragraph.join(" ");
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    let first = if first.is_empty() {
        "invalid arguments"
    } else {
        first
    };
    format!("{first} (see chatter-inject --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_tag_and_the_value_the_compacted_payload() {
        let (tag, payload) = parse_message(r#"{"DebugMessage":{"text":"hello world"}}"#).unwrap();
        assert_eq!(tag, "DebugMessage");
        assert_eq!(payload, r#"{"text":"hello world"}"#);

        let text = "{\"DeviceGossip\":{\"DeviceAdded\":{\n  \"origin\":\"541b10e7-d13a-45e8-8567-7d450ce86603\",\n  \"name\":\"gateway\",\n  \"description\":\"ASUS Router model RT-N55U \"}}}\n";
        let (tag, payload) = parse_message(text).unwrap();
        assert_eq!(tag, "DeviceGossip");
        assert_eq!(
            payload,
            r#"{"DeviceAdded":{"origin":"541b10e7-d13a-45e8-8567-7d450ce86603","name":"gateway","description":"ASUS Router model RT-N55U "}}"#
        );
    }

    #[test]
    fn anything_but_a_one_key_object_is_refused() {
        for (text, expected) in [
            ("{", "invalid JSON"),
            ("", "invalid JSON"),
            ("[1]", "got an array"),
            ("\"x\"", "got a string"),
            ("{}", "empty"),
            (r#"{"":1}"#, "must not be empty"),
            (r#"{"a":1,"b":2}"#, r#"got 2: "a", "b""#),
            (r#"{"a":1,"a":2}"#, "got 2"),
        ] {
            let err = parse_message(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn addresses_need_a_host_and_a_port() {
        assert_eq!(
            resolve("127.0.0.1:2428").unwrap(),
            "127.0.0.1:2428".parse().unwrap()
        );
        assert!(resolve("localhost:2428").is_ok());
        assert!(resolve("127.0.0.1").unwrap_err().contains("HOST:PORT"));
        assert!(resolve("127.0.0.1:0").unwrap_err().contains("port 0"));
        assert!(resolve(":2428").unwrap_err().contains("HOST:PORT"));
        assert!(resolve("host:notaport").unwrap_err().contains("HOST:PORT"));
    }
}
