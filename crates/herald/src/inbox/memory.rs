//! A bounded in-memory inbox: for tests, and for services whose handlers are idempotent
//! anyway but want to skip the work of obvious duplicates. It forgets everything on
//! restart, so it cannot make effects exactly-once across crashes.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use super::{ImmediateInbox, Inbox, InboxFuture, window_ms};

/// At most `capacity` entries, each kept for `window`; the oldest go first.
#[derive(Debug)]
pub struct MemoryInbox {
    capacity: usize,
    window: Duration,
    state: Mutex<State>,
}

/// Per group (a consumer has one or a few, so a short list), the set of event ids it
/// recorded; and the insertion order across groups, with times, for eviction by age and by
/// capacity. Every order entry has exactly one set entry and the other way round (a
/// record inserts both, an eviction removes both), so the sets hold ids alone: 16 bytes a
/// slot, since looking up and evicting are cache misses on the consumer's hot path.
#[derive(Debug, Default)]
struct State {
    groups: Vec<(Arc<str>, HashSet<Uuid, foldhash::fast::RandomState>)>,
    order: VecDeque<(u32, Uuid, i64)>,
}

impl State {
    fn group(&self, group: &str) -> Option<usize> {
        self.groups.iter().position(|(g, _)| &**g == group)
    }

    fn group_or_insert(&mut self, group: &str) -> usize {
        match self.group(group) {
            Some(index) => index,
            None => {
                self.groups.push((Arc::from(group), HashSet::default()));
                self.groups.len() - 1
            }
        }
    }

    fn contains(&self, group: &str, event_id: Uuid) -> bool {
        self.group(group).is_some_and(|g| self.groups[g].1.contains(&event_id))
    }

    fn evict(&mut self, capacity: usize, cutoff_ms: i64) -> u64 {
        let mut evicted = 0;
        while let Some(&(group, event_id, at)) = self.order.front() {
            if self.order.len() <= capacity && at >= cutoff_ms {
                break;
            }
            if let Some((_, ids)) = self.groups.get_mut(group as usize)
                && ids.remove(&event_id)
            {
                evicted += 1;
            }
            self.order.pop_front();
        }
        evicted
    }
}

impl MemoryInbox {
    /// Keeps up to `capacity` entries (at least 1) for `window`.
    pub fn new(capacity: usize, window: Duration) -> Self {
        Self { capacity: capacity.max(1), window, state: Mutex::new(State::default()) }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.with_state(|s| s.order.len())
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters for dedup (worst case an entry is forgotten), so keep going.
        let mut guard = crate::sync::lock(&self.state);
        f(&mut guard)
    }
}

impl Default for MemoryInbox {
    /// 100,000 entries for one hour.
    fn default() -> Self {
        Self::new(100_000, Duration::from_secs(3600))
    }
}

impl ImmediateInbox for MemoryInbox {
    fn contains_now(&self, group: &str, event_id: Uuid) -> bool {
        self.with_state(|s| s.contains(group, event_id))
    }

    fn record_now(&self, group: &str, event_id: Uuid, now_ms: i64) -> bool {
        let capacity = self.capacity;
        let cutoff = now_ms.saturating_sub(window_ms(self.window));
        self.with_state(|s| {
            let group = s.group_or_insert(group);
            if !s.groups[group].1.insert(event_id) {
                return false;
            }
            s.order.push_back((group as u32, event_id, now_ms));
            s.evict(capacity, cutoff);
            true
        })
    }
}

impl Inbox for MemoryInbox {
    fn contains<'a>(&'a self, group: &'a str, event_id: Uuid) -> InboxFuture<'a, bool> {
        let found = self.contains_now(group, event_id);
        Box::pin(async move { Ok(found) })
    }

    fn record<'a>(&'a self, group: &'a str, event_id: Uuid, now_ms: i64) -> InboxFuture<'a, bool> {
        let fresh = self.record_now(group, event_id, now_ms);
        Box::pin(async move { Ok(fresh) })
    }

    fn prune(&self, now_ms: i64) -> InboxFuture<'_, u64> {
        let cutoff = now_ms.saturating_sub(window_ms(self.window));
        let pruned = self.with_state(|s| s.evict(usize::MAX, cutoff));
        Box::pin(async move { Ok(pruned) })
    }

    fn window(&self) -> Duration {
        self.window
    }

    fn immediate(&self) -> Option<&dyn ImmediateInbox> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: InboxFuture<'_, T>) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(f).expect("memory inbox never fails")
    }

    #[test]
    fn records_once_per_group_and_forgets_by_age_and_capacity() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let inbox = MemoryInbox::new(3, Duration::from_millis(1_000));
        assert!(block(inbox.record("g", a, 0)));
        assert!(!block(inbox.record("g", a, 10)), "a duplicate");
        assert!(block(inbox.record("other", a, 10)), "groups are separate");
        assert!(block(inbox.contains("g", a)));
        assert!(block(inbox.record("g", b, 20)));
        assert!(block(inbox.record("g", c, 30)), "over capacity: the oldest goes");
        assert!(!block(inbox.contains("g", a)));
        assert_eq!(inbox.len(), 3);
        assert_eq!(block(inbox.prune(1_025)), 2, "entries from before 25 ms are past the window");
        assert!(block(inbox.contains("g", c)));
        assert!(block(inbox.record("g", a, 1_100)), "forgotten, so new again");
    }
}
