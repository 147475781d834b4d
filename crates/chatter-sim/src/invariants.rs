//! Invariant state kept per observer: the highest `(generation, incarnation)` it has shown for
//! each member, so that a step that makes one go back is caught.

/// What one observer has shown of every member so far, sorted by name.
#[derive(Debug, Default)]
pub(crate) struct SeenView {
    rows: Vec<(String, u64, u64)>,
}

impl SeenView {
    pub(crate) fn clear(&mut self) {
        self.rows.clear();
    }

    /// Records the current view (`members` as `(name, generation, incarnation)`, expected in
    /// name order; any order works, more slowly) and calls `regressed(name, current, previous)`
    /// for every member whose generation went
    /// back, or whose incarnation went back within one generation. Members that disappeared
    /// (reaped) are remembered.
    pub(crate) fn observe<'a>(
        &mut self,
        members: impl Iterator<Item = (&'a str, u64, u64)>,
        mut regressed: impl FnMut(&str, (u64, u64), (u64, u64)),
    ) {
        let mut inserts: Vec<(usize, String, u64, u64)> = Vec::new();
        let mut j = 0;
        let mut last: Option<&str> = None;
        for (name, generation, incarnation) in members {
            if last.is_some_and(|l| name < l) {
                // Out of order: restart the walk from a binary search.
                j = self.rows.partition_point(|r| r.0.as_str() < name);
            }
            last = Some(name);
            while j < self.rows.len() && self.rows[j].0.as_str() < name {
                j += 1;
            }
            let current = (generation, incarnation);
            match self.rows.get_mut(j) {
                Some(row) if row.0 == name => {
                    let prev = (row.1, row.2);
                    if current < prev {
                        regressed(name, current, prev);
                    }
                    let best = current.max(prev);
                    row.1 = best.0;
                    row.2 = best.1;
                }
                _ => inserts.push((j, name.to_owned(), current.0, current.1)),
            }
        }
        if inserts.is_empty() {
            return;
        }
        inserts.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        inserts.dedup_by(|a, b| a.1 == b.1);
        // Merge the sorted inserts into the rows in one pass.
        let old = std::mem::take(&mut self.rows);
        let mut rows = Vec::with_capacity(old.len() + inserts.len());
        let mut inserts = inserts.into_iter().peekable();
        for (k, row) in old.into_iter().enumerate() {
            while let Some(ins) = inserts.next_if(|ins| ins.0 <= k) {
                rows.push((ins.1, ins.2, ins.3));
            }
            rows.push(row);
        }
        rows.extend(inserts.map(|ins| (ins.1, ins.2, ins.3)));
        self.rows = rows;
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use chatter_core::{Member, MemberStatus, Tags};

    use super::*;

    fn member(name: &str, generation: u64, incarnation: u64) -> Member {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Member {
            name: name.to_owned(),
            addr: SocketAddr::from(([10, 0, 0, 1], 7000)),
            generation,
            incarnation,
            status: MemberStatus::Alive,
            tags: Tags::new(),
            status_since: now,
            last_update: now,
            rtt: None,
            evidence: None,
            conflict: None,
        }
    }

    fn regressions(view: &mut SeenView, members: &[Member]) -> Vec<String> {
        let mut found = Vec::new();
        let rows = members
            .iter()
            .map(|m| (m.name.as_str(), m.generation, m.incarnation));
        view.observe(rows, |name, current, prev| {
            found.push(format!("{name} {prev:?}->{current:?}"))
        });
        found
    }

    #[test]
    fn incarnation_going_back_is_caught_and_new_generation_resets() {
        let mut view = SeenView::default();
        assert!(regressions(&mut view, &[member("a", 1, 3), member("c", 1, 0)]).is_empty());
        // b appears between a and c; a goes back.
        let found = regressions(
            &mut view,
            &[member("a", 1, 2), member("b", 1, 0), member("c", 1, 1)],
        );
        assert_eq!(found, vec!["a (1, 3)->(1, 2)"]);
        // The highest value is kept: 1/2 is still a regression from 1/3.
        assert_eq!(regressions(&mut view, &[member("a", 1, 2)]).len(), 1);
        // A new generation may restart its incarnations; an older one may not come back.
        assert!(regressions(&mut view, &[member("a", 2, 0)]).is_empty());
        assert_eq!(regressions(&mut view, &[member("a", 1, 9)]).len(), 1);
        assert_eq!(
            view.rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn unordered_members_and_reaped_members_are_handled() {
        let mut view = SeenView::default();
        let found = regressions(
            &mut view,
            &[
                member("m", 1, 1),
                member("z", 1, 1),
                member("b", 1, 1),
                member("a", 1, 1),
            ],
        );
        assert!(found.is_empty());
        assert_eq!(
            view.rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ["a", "b", "m", "z"]
        );
        // "m" reaped, then seen again with an older incarnation: caught.
        assert!(regressions(&mut view, &[member("a", 1, 1)]).is_empty());
        assert_eq!(regressions(&mut view, &[member("m", 1, 0)]).len(), 1);
    }
}
