//! Service declarations: `--service TYPE[:SHARD]` and the `[[service]]` tables of the config
//! file. Publishing them is `subsystems::services`.

use chatter_api::ServiceDecl;

/// Most services one node declares.
pub const MAX_SERVICES: usize = 64;

fn valid_part(what: &str, s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("{what} {s:?} must be 1 to 64 bytes"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!("{what} {s:?}: use letters, digits and _ - ."));
    }
    Ok(s.to_owned())
}

/// A service declaration from its parts (shared by the flag and the config file).
pub fn service(kind: &str, shard: Option<&str>) -> Result<ServiceDecl, String> {
    Ok(ServiceDecl {
        kind: valid_part("service type", kind)?,
        shard: shard.map(|s| valid_part("shard", s)).transpose()?,
    })
}

/// Parses `--service`: `TYPE` or `TYPE:SHARD`, each 1 to 64 letters, digits or `_ - .`.
pub fn parse_service(s: &str) -> Result<ServiceDecl, String> {
    match s.split_once(':') {
        Some((kind, shard)) => service(kind, Some(shard)),
        None => service(s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse_with_an_optional_shard() {
        let s = parse_service("searcher:1").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.shard.as_deref()),
            ("searcher", Some("1"))
        );
        assert_eq!(s.key(), "service/searcher/1");
        let s = parse_service("api").unwrap();
        assert_eq!((s.kind.as_str(), s.shard.as_deref()), ("api", None));
        assert_eq!(s.key(), "service/api");
        for bad in ["", ":1", "api:", "a b", "a:1:2", "a/b"] {
            assert!(parse_service(bad).is_err(), "{bad:?}");
        }
    }
}
