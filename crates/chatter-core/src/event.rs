//! What the core tells its driver about membership changes.

use crate::member::{Conflict, Member};

/// A change in membership, drained with [`Node::poll_event`](crate::Node::poll_event).
///
/// Each variant carries a snapshot of the member after the change, evidence included, so a
/// subscriber can explain a verdict without asking again.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A member was seen for the first time, or a restarted member (new generation) replaced its
    /// previous life.
    Joined(Member),
    /// A member missed its probes and is suspected.
    Suspect(Member),
    /// A suspect or failed member refuted the verdict and is alive again.
    Recovered(Member),
    /// A suspicion was not refuted in time: the member is considered crashed.
    Failed(Member),
    /// A member left gracefully.
    Left(Member),
    /// A live member changed its address or tags.
    Updated(Member),
    /// A failed or left member was removed from the table after its retention period.
    Reaped(Member),
    /// Two live processes claim the same name; the one in the table was kept.
    Conflict(Conflict),
}

impl Event {
    /// Short kebab-case name of the event: `member-joined`, `member-failed`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Joined(_) => "member-joined",
            Event::Suspect(_) => "member-suspect",
            Event::Recovered(_) => "member-alive",
            Event::Failed(_) => "member-failed",
            Event::Left(_) => "member-left",
            Event::Updated(_) => "member-updated",
            Event::Reaped(_) => "member-reaped",
            Event::Conflict(_) => "member-conflict",
        }
    }

    /// The member the event is about, except for conflicts.
    pub fn member(&self) -> Option<&Member> {
        match self {
            Event::Joined(m)
            | Event::Suspect(m)
            | Event::Recovered(m)
            | Event::Failed(m)
            | Event::Left(m)
            | Event::Updated(m)
            | Event::Reaped(m) => Some(m),
            Event::Conflict(_) => None,
        }
    }
}
