//! [`KeyedScheduler`]: parallel across keys, in order within a key.
//!
//! Messages of one partition queue up in offset order. A message may start when fewer
//! than `capacity` are running and no earlier message with the same key is queued or
//! running; so one key's messages run one at a time in offset order, while other keys
//! overtake a slow one. Keyless messages are ordered only by the capacity.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// One queued message: its offset, key and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Queued<T, K = Vec<u8>> {
    /// The offset.
    pub offset: i64,
    /// The partition key, if any.
    pub key: Option<K>,
    /// Whatever the caller needs to run it.
    pub item: T,
}

/// The scheduler of one partition.
#[derive(Debug)]
pub(super) struct KeyedScheduler<T, K = Vec<u8>> {
    capacity: usize,
    queue: VecDeque<Queued<T, K>>,
    /// Keys with a message running.
    running_keys: HashSet<K, foldhash::fast::RandomState>,
    running: usize,
}

impl<T, K: Hash + Eq + Clone> KeyedScheduler<T, K> {
    /// At most `capacity` messages of this partition run at once (at least 1).
    pub(super) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), queue: VecDeque::new(), running_keys: HashSet::default(), running: 0 }
    }

    /// Queues a message (call in offset order).
    pub(super) fn push(&mut self, offset: i64, key: Option<K>, item: T) {
        self.queue.push_back(Queued { offset, key, item });
    }

    /// Messages queued but not started.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued or running: a message pushed now would start at once.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.running == 0
    }

    /// Starts a message without queueing it, for a caller that saw [`is_idle`](Self::is_idle)
    /// (so nothing can be ahead of it); same as `push` then `start_next`.
    pub(super) fn start_now(&mut self, key: Option<K>) {
        debug_assert!(self.is_idle());
        if let Some(k) = key {
            self.running_keys.insert(k);
        }
        self.running += 1;
    }

    /// Drops every queued message (running ones are unaffected); returns how many.
    pub(super) fn clear_queued(&mut self) -> usize {
        let queued = self.queue.len();
        self.queue.clear();
        queued
    }

    /// Messages started and not finished.
    pub(super) fn running(&self) -> usize {
        self.running
    }

    /// The next message that may start now, if any: the first queued one whose key has
    /// nothing running (which is then that key's earliest message, since the queue is in
    /// offset order).
    pub(super) fn start_next(&mut self) -> Option<Queued<T, K>> {
        if self.running >= self.capacity {
            return None;
        }
        let index = self.queue.iter().position(|q| q.key.as_ref().is_none_or(|k| !self.running_keys.contains(k)))?;
        let started = self.queue.remove(index)?;
        if let Some(k) = &started.key {
            self.running_keys.insert(k.clone());
        }
        self.running += 1;
        Some(started)
    }

    /// A started message finished; its key may run its next message.
    pub(super) fn finished(&mut self, key: Option<&K>) {
        self.running = self.running.saturating_sub(1);
        if let Some(k) = key {
            self.running_keys.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_slow_key_does_not_block_other_keys() {
        let mut s = KeyedScheduler::new(8);
        s.push(0, Some(b"a".to_vec()), ());
        s.push(1, Some(b"a".to_vec()), ());
        s.push(2, Some(b"b".to_vec()), ());
        assert_eq!(s.start_next().map(|q| q.offset), Some(0));
        assert_eq!(s.start_next().map(|q| q.offset), Some(2), "b overtakes a's second message");
        assert_eq!(s.start_next().map(|q| q.offset), None, "a's second waits for its first");
        s.finished(Some(&b"a".to_vec()));
        assert_eq!(s.start_next().map(|q| q.offset), Some(1));
    }

    proptest! {
        /// 8 in flight, random keys, random completion order: each key's messages start in
        /// offset order, one at a time, and never more than 8 run.
        #[test]
        fn per_key_order_holds_with_parallel_completion(
            keys in prop::collection::vec(0u8..6, 1..200),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 400),
        ) {
            let mut s = KeyedScheduler::new(8);
            for (offset, key) in keys.iter().enumerate() {
                s.push(offset as i64, Some(vec![*key]), ());
            }
            let mut running: Vec<(i64, u8)> = Vec::new();
            let mut started_per_key: HashMap<u8, Vec<i64>> = HashMap::new();
            let mut picks = picks.into_iter();
            let mut finished = 0;
            while finished < keys.len() {
                while let Some(q) = s.start_next() {
                    let key = q.key.as_ref().expect("keyed")[0];
                    prop_assert!(running.iter().all(|(_, k)| *k != key), "key {} ran twice at once", key);
                    running.push((q.offset, key));
                    started_per_key.entry(key).or_default().push(q.offset);
                    prop_assert!(running.len() <= 8);
                }
                prop_assert!(!running.is_empty(), "stalled with {} queued", s.queued());
                let index = picks.next().map_or(0, |p| p.index(running.len()));
                let (_, key) = running.swap_remove(index);
                s.finished(Some(&vec![key]));
                finished += 1;
            }
            for (key, offsets) in started_per_key {
                prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]), "key {} out of order: {:?}", key, offsets);
            }
        }
    }
}
