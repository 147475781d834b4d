//! The record of every event every node emitted, with virtual timestamps.

use std::fmt;
use std::time::Duration;

use chatter_core::Event;

/// One event drained from a node's `poll_event`, with when and where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Virtual time since the start of the simulation.
    pub at: Duration,
    /// Index of the node that emitted it.
    pub observer: usize,
    /// Generation of the observer's life that emitted it.
    pub observer_generation: u64,
    /// The event itself, with its member snapshot.
    pub event: Event,
}

impl LoggedEvent {
    /// Name of the member the event is about (the conflicting name for conflicts).
    ///
    /// For a user message it is the origin, for a key change the key's owner.
    pub fn subject(&self) -> &str {
        match &self.event {
            Event::Conflict(c) => &c.name,
            Event::Message(d) => &d.id.origin,
            Event::KeyChanged(c) => &c.node,
            other => other.member().map_or("", |m| m.name.as_str()),
        }
    }

    /// Whether this is a `Failed` event.
    pub fn is_failed(&self) -> bool {
        matches!(self.event, Event::Failed(_))
    }

    /// Whether this is a `Suspect` event.
    pub fn is_suspect(&self) -> bool {
        matches!(self.event, Event::Suspect(_))
    }
}

impl fmt::Display for LoggedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>10.3}s n{:04}: {}",
            self.at.as_secs_f64(),
            self.observer,
            self.event.kind()
        )?;
        match &self.event {
            Event::Conflict(c) => write!(
                f,
                " {} other_addr={} other_gen={}",
                c.name, c.other_addr, c.other_generation
            ),
            Event::Message(d) => write!(
                f,
                " {}/{}/{} tag={} hops={} {} bytes",
                d.id.origin,
                d.id.generation,
                d.id.seq,
                d.tag,
                d.hops,
                d.payload.len()
            ),
            Event::KeyChanged(c) => match &c.value {
                Some(v) => write!(
                    f,
                    " {} {}@{} set ({} bytes)",
                    c.node,
                    c.key,
                    c.version,
                    v.len()
                ),
                None => write!(f, " {} {}@{} deleted", c.node, c.key, c.version),
            },
            other => {
                if let Some(m) = other.member() {
                    write!(
                        f,
                        " {} gen={} inc={} status={}",
                        m.name, m.generation, m.incarnation, m.status
                    )?;
                    if let Some(ev) = &m.evidence {
                        write!(
                            f,
                            " accuser={} confirmations={} unreachable={} timeout={:?}",
                            ev.accuser,
                            ev.confirmations.len(),
                            ev.unreachable,
                            ev.timeout
                        )?;
                        if let Some(by) = &ev.declared_by {
                            write!(f, " declared_by={by}")?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Formats the events of `log` about `subject` (all events if `None`), at most `limit` of them,
/// one per line: handy in assertion messages.
pub fn excerpt<'a>(
    log: impl IntoIterator<Item = &'a LoggedEvent>,
    subject: Option<&str>,
    limit: usize,
) -> String {
    let mut out = String::new();
    let mut shown = 0;
    let mut skipped = 0;
    for e in log {
        if subject.is_some_and(|s| e.subject() != s) {
            continue;
        }
        if shown < limit {
            out.push_str("  ");
            out.push_str(&e.to_string());
            out.push('\n');
            shown += 1;
        } else {
            skipped += 1;
        }
    }
    if skipped > 0 {
        out.push_str(&format!("  ... {skipped} more\n"));
    }
    out
}
