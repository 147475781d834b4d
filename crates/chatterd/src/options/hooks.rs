//! Event hook specifications: `--event-handler [FILTER=]COMMAND` and the `[[event-handler]]`
//! tables of the config file. Running them is `subsystems::hooks`.
//!
//! FILTER is a comma-separated list of `member-joined` (or `member-join`), `member-suspect`,
//! `member-alive` (or `member-recovered`), `member-failed`, `member-left`, `member-updated`,
//! `member-reaped`, `member-conflict`, `member` (all of these), `message`, `message:TAG`,
//! `key-changed`, `key-changed:PREFIX` (keys that start with PREFIX, e.g. `key-changed:check/`)
//! and `all`.

use chatter::Event;

/// Most handlers one node has.
pub const MAX_HANDLERS: usize = 64;

/// The member event kinds a filter can name, with their aliases.
const MEMBER_KINDS: [(&str, &str); 10] = [
    ("member-joined", "member-joined"),
    ("member-join", "member-joined"),
    ("member-suspect", "member-suspect"),
    ("member-alive", "member-alive"),
    ("member-recovered", "member-alive"),
    ("member-failed", "member-failed"),
    ("member-left", "member-left"),
    ("member-updated", "member-updated"),
    ("member-reaped", "member-reaped"),
    ("member-conflict", "member-conflict"),
];

/// One accepted kind of event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accept {
    /// Every event.
    All,
    /// Every member event (`member-*`).
    AnyMember,
    /// One member event kind (its canonical name, e.g. `member-joined`).
    Member(&'static str),
    /// Messages, with this tag only if given.
    Message(Option<String>),
    /// Key changes, of keys with this prefix only if given.
    KeyChanged(Option<String>),
}

impl Accept {
    fn matches(&self, event: &Event) -> bool {
        match (self, event) {
            (Accept::All, _) => true,
            (
                Accept::AnyMember,
                Event::Message(_)
                | Event::KeyChanged(_)
                | Event::KeyringChanged(_)
                | Event::KeyRotation(_),
            ) => false,
            (Accept::AnyMember, _) => true,
            (Accept::Member(kind), event) => event.kind() == *kind,
            (Accept::Message(tag), Event::Message(m)) => tag.as_ref().is_none_or(|t| *t == m.tag),
            (Accept::KeyChanged(prefix), Event::KeyChanged(c)) => prefix
                .as_ref()
                .is_none_or(|p| c.key.starts_with(p.as_str())),
            _ => false,
        }
    }
}

/// One configured handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerSpec {
    /// The events it runs for (empty: every event).
    pub accept: Vec<Accept>,
    /// The command line, given to `sh -c`.
    pub command: String,
}

impl HandlerSpec {
    /// Whether this handler runs for `event`.
    pub fn matches(&self, event: &Event) -> bool {
        self.accept.is_empty() || self.accept.iter().any(|a| a.matches(event))
    }

    /// Builds a handler from a filter list and a command (shared by the flag and the config).
    pub fn new<'a>(
        filters: impl IntoIterator<Item = &'a str>,
        command: &str,
    ) -> Result<HandlerSpec, String> {
        if command.trim().is_empty() {
            return Err("empty event handler command".into());
        }
        let mut accept = Vec::new();
        for item in filters {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            accept.push(parse_accept(item)?);
        }
        Ok(HandlerSpec {
            accept,
            command: command.to_owned(),
        })
    }
}

fn parse_accept(item: &str) -> Result<Accept, String> {
    let (kind, arg) = match item.split_once(':') {
        Some((kind, arg)) => (kind, Some(arg)),
        None => (item, None),
    };
    let arg = arg.map(str::to_owned);
    match (kind, arg) {
        ("all", None) => Ok(Accept::All),
        ("member", None) => Ok(Accept::AnyMember),
        ("message", tag) => Ok(Accept::Message(tag.filter(|t| !t.is_empty()))),
        ("key-changed", prefix) => Ok(Accept::KeyChanged(prefix.filter(|p| !p.is_empty()))),
        (kind, None) => MEMBER_KINDS
            .iter()
            .find(|(name, _)| *name == kind)
            .map(|(_, canonical)| Accept::Member(canonical))
            .ok_or_else(|| {
                format!(
                    "unknown event filter {kind:?} (expected member-joined, member-suspect, \
                     member-alive, member-failed, member-left, member-updated, member-reaped, \
                     member-conflict, member, message[:TAG], key-changed[:PREFIX] or all)"
                )
            }),
        (kind, Some(_)) => Err(format!("event filter {kind:?} takes no ':' argument")),
    }
}

/// Whether `text` reads as a filter list: comma-separated items whose part before any `:` is
/// lowercase letters and dashes. (A command such as `FOO=1 cmd` or `/bin/x --a=b` does not.)
fn looks_like_filter(text: &str) -> bool {
    !text.is_empty()
        && text.split(',').all(|item| {
            let kind = item.trim().split(':').next().unwrap_or("");
            !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
}

/// Parses `--event-handler`: `[FILTER=]COMMAND`. Text before the first `=` that reads as a
/// filter list is the filter (and must then be valid); otherwise the whole text is the command.
pub fn parse_handler(s: &str) -> Result<HandlerSpec, String> {
    match s.split_once('=') {
        Some((filter, command)) if looks_like_filter(filter) => {
            HandlerSpec::new(filter.split(','), command)
        }
        _ => HandlerSpec::new([], s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_handlers_do_not_run_for_keyring_events() {
        let changed = Event::KeyringChanged(Vec::new());
        assert!(!Accept::AnyMember.matches(&changed));
        assert!(Accept::All.matches(&changed));
        assert!(Accept::Member("keyring-changed").matches(&changed));
    }

    #[test]
    fn filters_and_commands_are_told_apart() {
        let h = parse_handler("member-failed=/usr/local/bin/page --team=ops").unwrap();
        assert_eq!(h.accept, [Accept::Member("member-failed")]);
        assert_eq!(h.command, "/usr/local/bin/page --team=ops");

        let h = parse_handler("member-join,member-left,message:Deploy=notify").unwrap();
        assert_eq!(
            h.accept,
            [
                Accept::Member("member-joined"),
                Accept::Member("member-left"),
                Accept::Message(Some("Deploy".into()))
            ]
        );

        let h = parse_handler("key-changed:check/=logger").unwrap();
        assert_eq!(h.accept, [Accept::KeyChanged(Some("check/".into()))]);

        // No filter: every event.
        for command in [
            "logger chatter",
            "FOO=1 logger",
            "/bin/x --a=b",
            "cat > /tmp/e",
        ] {
            let h = parse_handler(command).unwrap();
            assert!(h.accept.is_empty(), "{command:?}");
            assert_eq!(h.command, command);
        }
    }

    #[test]
    fn bad_filters_are_refused() {
        for (spec, expected) in [
            ("member-faild=cmd", "unknown event filter"),
            ("member-failed=", "empty"),
            ("member-left:x=cmd", "takes no"),
        ] {
            let err = parse_handler(spec).unwrap_err();
            assert!(err.contains(expected), "{spec:?}: {err}");
        }
    }
}
