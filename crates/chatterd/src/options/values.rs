//! Parsers of single flag values (names, addresses, counts, durations, the token), shared by
//! the flags and the config file, which check each value the same way.

use std::time::Duration;

use crate::foundation::duration::parse_duration;

/// Parses `--http-max-connections` and `--http-max-event-streams`: 1 to 65535.
pub fn parse_max_connections(s: &str) -> Result<u32, String> {
    parse_count(s, 1, 65_535)
}

/// Parses `--http-allowed-host`: a DNS name (letters, digits, `-`, `_` and dots, at most 253
/// bytes) or an IP address (IPv6 with or without brackets), without a port; lower-cased, a
/// trailing dot dropped, IPv6 in brackets, as the Host header writes it.
pub fn parse_allowed_host(s: &str) -> Result<String, String> {
    let s = s.trim();
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err("expected a host name of 1 to 253 characters".into());
    }
    if name.contains(':') {
        return Err(format!(
            "expected a host name without a port, got {s:?} (any port is accepted)"
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "invalid host name {s:?}: use letters, digits, - and _ in dot-separated labels"
        ));
    }
    Ok(name)
}

/// Parses a whole number in `min..=max`.
fn parse_count(s: &str, min: u32, max: u32) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// Parses `--indirect-checks`: 0 to 16.
pub fn parse_indirect_checks(s: &str) -> Result<usize, String> {
    parse_count(s, 0, 16).map(|n| n as usize)
}

/// Parses a multiplier (`--suspicion-mult`, `--suspicion-max-timeout-mult`,
/// `--retransmit-mult`): 1 to 100, which keeps every derived timeout far from overflowing.
pub fn parse_multiplier(s: &str) -> Result<u32, String> {
    parse_count(s, 1, 100)
}

/// Parses `--suspicion-confirmations`: 0 to 32.
pub fn parse_confirmations(s: &str) -> Result<u32, String> {
    parse_count(s, 0, 32)
}

/// Parses `--gossip-fanout`: 1 to 32.
pub fn parse_fanout(s: &str) -> Result<usize, String> {
    parse_count(s, 1, 32).map(|n| n as usize)
}

/// Parses a switch: `on` or `off` (also `true`/`false`, `yes`/`no`).
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

/// Parses a duration above zero (see [`parse_duration`]).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be above 0".into());
    }
    Ok(d)
}

fn valid_name_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control()
}

/// Parses `--node-name`: non-empty, at most 128 bytes, no whitespace or control characters.
pub fn parse_node_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 128 {
        return Err("must be at most 128 bytes".into());
    }
    if !s.chars().all(valid_name_char) {
        return Err("must not contain whitespace or control characters".into());
    }
    Ok(s.to_owned())
}

/// Parses `--cluster`: the same rules as a node name.
pub fn parse_cluster(s: &str) -> Result<String, String> {
    parse_node_name(s)
}

/// Parses `--seed`: `HOST:PORT` with a non-empty host and a port in 1..=65535.
/// IPv6 literals go in brackets: `[::1]:2428`.
pub fn parse_seed(s: &str) -> Result<String, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, got {s:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || !host.chars().all(valid_name_char) {
        return Err(format!("expected HOST:PORT, got {s:?}"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port in {s:?}")),
        Ok(_) => Ok(s.to_owned()),
    }
}

/// Parses `--tag`: `KEY=VALUE`; the key is non-empty and made of letters, digits and `_ - . /`;
/// the value has no control characters (it may be empty).
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    if key.is_empty() {
        return Err(format!("empty key in {s:?}"));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    {
        return Err(format!(
            "invalid key {key:?}: use letters, digits and _ - . /"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("control character in the value of {key:?}"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// The host name of this machine, used as the default node name.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for writes of its length; gethostname NUL-terminates on
    // success when the name fits, and we stop at the first NUL or the end of the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..len]).trim().to_owned();
    parse_node_name(&name).ok()
}

/// Parses `--http-token`: 1 to 256 visible ASCII characters (it travels in an HTTP header).
pub fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 256 {
        return Err("the token must be 1 to 256 characters".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII characters (no spaces)".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_need_a_key_and_an_equals_sign() {
        assert_eq!(
            parse_tag("role=web").unwrap(),
            ("role".to_owned(), "web".to_owned())
        );
        assert_eq!(parse_tag("empty=").unwrap().1, "");
        assert_eq!(parse_tag("a=b=c").unwrap().1, "b=c");
        assert!(parse_tag("nonsense").is_err());
        assert!(parse_tag("=value").is_err());
        assert!(parse_tag("bad key=v").is_err());
    }

    #[test]
    fn seeds_need_a_host_and_a_port() {
        assert!(parse_seed("db-1.example.com:2428").is_ok());
        assert!(parse_seed("127.0.0.1:2428").is_ok());
        assert!(parse_seed("[::1]:2428").is_ok());
        assert!(parse_seed("db-1").is_err());
        assert!(parse_seed(":2428").is_err());
        assert!(parse_seed("db-1:0").is_err());
        assert!(parse_seed("db-1:99999").is_err());
    }

    #[test]
    fn tokens_are_visible_ascii() {
        assert!(parse_token("s3cr3t-T0ken_=").is_ok());
        assert!(parse_token("").is_err());
        assert!(parse_token("two words").is_err());
        assert!(parse_token("é").is_err());
    }
}
