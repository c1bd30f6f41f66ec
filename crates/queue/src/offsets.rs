//! Which offsets a consumer may commit: per partition, up to (not including) the lowest
//! offset still in flight, or past the highest received when nothing is. A tick is in
//! flight from receipt until its outcome is durable (ack), so a consumer killed at any
//! point restarts at the oldest unfinished tick: nothing is lost, and at most what was in
//! flight is delivered again.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
    /// The last offset handed out for commit.
    committed: i64,
}

/// Offsets in flight per partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    parts: HashMap<i32, Partition>,
}

impl OffsetTracker {
    /// Records that `offset` of `partition` was received.
    pub fn received(&mut self, partition: i32, offset: i64) {
        let p = self.parts.entry(partition).or_insert_with(|| Partition { committed: offset, ..Partition::default() });
        p.in_flight.insert(offset);
        p.next = p.next.max(offset + 1);
    }

    /// Records that the tick at `offset` is durably handled. Unknown partitions (revoked
    /// since) are ignored.
    pub fn done(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.parts.get_mut(&partition) {
            p.in_flight.remove(&offset);
        }
    }

    /// Returns `(partition, offset to commit)` for every partition whose committable
    /// offset moved since the last call.
    pub fn committable(&mut self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (id, p) in &mut self.parts {
            let c = p.in_flight.first().copied().unwrap_or(p.next);
            if c > p.committed {
                p.committed = c;
                out.push((*id, c));
            }
        }
        out.sort_unstable();
        out
    }

    /// Forgets partitions taken away by a rebalance.
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.parts.remove(p);
        }
    }

    /// Returns how many ticks are in flight.
    pub fn in_flight(&self) -> usize {
        self.parts.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_up_to_the_lowest_unfinished() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.received(0, o);
        }
        assert!(t.committable().is_empty(), "nothing done: stay at 10");
        t.done(0, 11);
        t.done(0, 12);
        assert!(t.committable().is_empty(), "10 is still in flight");
        t.done(0, 10);
        assert_eq!(t.committable(), vec![(0, 13)]);
        t.done(0, 14);
        t.done(0, 13);
        assert_eq!(t.committable(), vec![(0, 15)]);
        assert!(t.committable().is_empty(), "no change, nothing to commit");
        t.received(1, 0);
        t.done(1, 0);
        assert_eq!(t.committable(), vec![(1, 1)]);
        t.revoke(&[1]);
        t.done(1, 5);
        assert_eq!(t.in_flight(), 0);
    }
}
