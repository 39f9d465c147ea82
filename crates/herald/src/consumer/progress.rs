//! [`PartitionProgress`]: which offset of a partition may be committed.
//!
//! Handlers finish out of order (different keys run in parallel), but a committed offset
//! promises that it and everything before it are done. So the committable offset is the
//! lowest offset received and not yet finished, or one past the highest when all are done.

use std::collections::VecDeque;

/// Progress of one partition's in-flight messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PartitionProgress {
    /// Offsets received and not yet passed by the committable point, in increasing order,
    /// each with whether it is finished. Offsets arrive in order, so receiving appends and
    /// finishing is a binary search; no allocation per message once the ring has grown.
    window: VecDeque<(i64, bool)>,
    /// Entries of `window` not finished.
    unfinished: usize,
    /// One past the highest offset received.
    next: Option<i64>,
    /// The last value handed out by `committable`, so each is reported once.
    committed: Option<i64>,
}

impl PartitionProgress {
    /// Empty progress.
    #[cfg(test)]
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A message at `offset` was handed to a handler (offsets normally arrive in increasing
    /// order; an earlier one, after a seek, is placed where it belongs).
    pub(super) fn received(&mut self, offset: i64) {
        match self.window.back() {
            Some((last, _)) if *last >= offset => {
                let at = self.window.partition_point(|(o, _)| *o < offset);
                if let Some(entry) = self.window.get_mut(at).filter(|(o, _)| *o == offset) {
                    // Received again: unfinished again (counted once, finished or not).
                    if std::mem::replace(&mut entry.1, false) {
                        self.unfinished += 1;
                    }
                } else {
                    self.window.insert(at, (offset, false));
                    self.unfinished += 1;
                }
            }
            _ => {
                self.window.push_back((offset, false));
                self.unfinished += 1;
            }
        }
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// A message at `offset` was received and finished at once: `received` then
    /// `finished`, without touching the window when nothing else is in flight.
    pub(super) fn passed(&mut self, offset: i64) {
        if self.window.is_empty() && self.next.is_none_or(|n| offset >= n) {
            self.next = Some(offset + 1);
        } else {
            self.received(offset);
            self.finished(offset);
        }
    }

    /// The message at `offset` is finished (handled, skipped, or acknowledged by the DLQ).
    pub(super) fn finished(&mut self, offset: i64) {
        let at = self.window.partition_point(|(o, _)| *o < offset);
        if let Some(entry) = self.window.get_mut(at).filter(|(o, done)| *o == offset && !*done) {
            entry.1 = true;
            self.unfinished -= 1;
        }
        while self.window.front().is_some_and(|(_, done)| *done) {
            self.window.pop_front();
        }
    }

    /// Messages received and not finished.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.unfinished
    }

    /// The last offset handed out by [`PartitionProgress::committable`].
    pub(super) fn last_committable(&self) -> Option<i64> {
        self.committed
    }

    /// The offset to commit now (Kafka's "next offset to read"), if it moved since the
    /// last call: every offset below it is finished.
    pub(super) fn committable(&mut self) -> Option<i64> {
        // Finished entries at the front are popped as they finish, so the front (if any)
        // is the lowest unfinished offset.
        let safe = match self.window.front() {
            Some((lowest, _)) => *lowest,
            None => self.next?,
        };
        if self.committed.is_some_and(|c| c >= safe) {
            return None;
        }
        self.committed = Some(safe);
        Some(safe)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_commit_waits_for_the_slowest_earlier_message() {
        let mut p = PartitionProgress::new();
        assert_eq!(p.committable(), None, "nothing received");
        for offset in 10..15 {
            p.received(offset);
        }
        p.finished(11);
        p.finished(12);
        assert_eq!(p.committable(), Some(10), "10 is still running");
        assert_eq!(p.committable(), None, "reported once");
        p.finished(10);
        assert_eq!(p.committable(), Some(13));
        p.finished(14);
        p.finished(13);
        assert_eq!(p.committable(), Some(15));
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn an_offset_received_again_after_a_seek_is_tracked_in_place() {
        let mut p = PartitionProgress::new();
        for offset in [10, 11, 12] {
            p.received(offset);
        }
        p.finished(10);
        p.received(11); // redelivered while the first copy still runs: one entry
        assert_eq!(p.in_flight(), 2);
        p.received(5); // a seek back: placed first, so it holds the commit
        assert_eq!(p.committable(), Some(5));
        p.finished(11);
        p.finished(12);
        assert_eq!(p.committable(), None, "5 is still running");
        p.finished(5);
        assert_eq!(p.committable(), Some(13));
        assert_eq!(p.in_flight(), 0);
    }

    proptest! {
        /// `passed` is `received` then `finished`, whatever else is in flight.
        #[test]
        fn passed_is_received_then_finished(steps in prop::collection::vec((0i64..30, any::<bool>(), any::<bool>()), 1..60)) {
            let (mut fast, mut slow) = (PartitionProgress::new(), PartitionProgress::new());
            for (offset, pass, finish_instead) in steps {
                if pass {
                    fast.passed(offset);
                    slow.received(offset);
                    slow.finished(offset);
                } else if finish_instead {
                    fast.finished(offset);
                    slow.finished(offset);
                } else {
                    fast.received(offset);
                    slow.received(offset);
                }
                prop_assert_eq!(fast.in_flight(), slow.in_flight());
                prop_assert_eq!(fast.committable(), slow.committable());
            }
        }

        /// Against a model: whatever order messages finish in, a committed offset never
        /// passes an unfinished message and never goes backwards.
        #[test]
        fn never_commits_past_unfinished_work(finish_order in Just((0..40i64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut p = PartitionProgress::new();
            for offset in 0..40 {
                p.received(offset);
            }
            let mut done = BTreeSet::new();
            let mut last = -1;
            for offset in finish_order {
                p.finished(offset);
                done.insert(offset);
                if let Some(commit) = p.committable() {
                    prop_assert!(commit > last, "went backwards: {} after {}", commit, last);
                    prop_assert!((0..commit).all(|o| done.contains(&o)), "committed {} past unfinished work", commit);
                    last = commit;
                }
            }
            prop_assert_eq!(last, 40);
        }
    }
}
