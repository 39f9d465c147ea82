//! Each assigned partition's bookkeeping, as plain code (no IO, no clock, no tasks): which
//! of its messages may start now (one at a time per key, in offset order, at most
//! `in_flight_per_partition` at once), which keys are parked after a dead letter, what a
//! revoke does to queued and running messages, and what may be committed. The dispatch
//! loop (`dispatch.rs`) feeds it received messages and ended runs and starts what it hands
//! back. Tested like the group coordinator: driven step by step, and against a model.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use foldhash::fast::{FixedState, RandomState};

use super::progress::PartitionProgress;
use super::scheduler::KeyedScheduler;
use crate::sync::lock;

/// Hash maps on the per-message path use foldhash: SipHash showed up in profiles.
pub(crate) type FastMap<K, V> = HashMap<K, V, RandomState>;

/// A partition as the run loop numbers it: its topic's index among the topics seen, and
/// the partition number (cheap to hash, unlike the topic name).
pub(crate) type PartitionId = (u32, i32);

/// One partition's commit progress: updated per message through its own lock (no map
/// lookup on that path), read by the commit tick and the rebalance callback.
pub(crate) type Progress = Arc<Mutex<PartitionProgress>>;

/// What the bookkeeping needs of a message.
pub(crate) trait Keyed {
    /// Its offset.
    fn offset(&self) -> i64;
    /// Its key, if it has one.
    fn key(&self) -> Option<&[u8]>;
}

/// How a started message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Handled, skipped as a duplicate or as an unknown type: its offset is done.
    Handled,
    /// Acknowledged by the dead-letter topic: its offset is done, and its key may park.
    DeadLettered,
    /// The runtime's own path panicked on it: nothing says whether it took effect, so its
    /// offset stays unfinished (holding the partition's commits there, so a restart or
    /// rebalance redelivers it), while its key is released so the partition goes on.
    Abandoned,
}

/// What [`Partitions::admit`] found.
#[derive(Debug)]
pub(crate) struct Admit {
    /// The progress of a partition just (re)assigned.
    pub(crate) assigned: Option<Progress>,
    /// The message may skip the queue.
    pub(crate) idle: bool,
}

/// A queued message that may start now.
#[derive(Debug)]
pub(crate) struct Start<M> {
    pub(crate) message: M,
    /// The assignment it belongs to; an ended run reports it back.
    pub(crate) epoch: u64,
    /// Its key is parked after a dead letter: it is to be dead-lettered, not handled.
    pub(crate) parked: bool,
}

/// Every assigned partition's state.
#[derive(Debug)]
pub(crate) struct Partitions<M> {
    states: FastMap<PartitionId, State<M>>,
    /// Bumped at every (re)assignment, so runs of an earlier one are told apart.
    epoch: u64,
    in_flight_per_partition: usize,
    park_after_dead_letter: bool,
    /// Messages received and not ended, across partitions.
    buffered: usize,
}

#[derive(Debug)]
struct State<M> {
    epoch: u64,
    progress: Progress,
    scheduler: KeyedScheduler<M, u64>,
    parked: HashSet<Vec<u8>>,
    /// Revoked while some of its messages still run: it lingers with their keys marked
    /// running until they end, so a redelivery after a quick reassignment waits for them.
    revoked: bool,
}

impl<M: Keyed> Partitions<M> {
    pub(crate) fn new(in_flight_per_partition: usize, park_after_dead_letter: bool) -> Self {
        Self { states: FastMap::default(), epoch: 0, in_flight_per_partition, park_after_dead_letter, buffered: 0 }
    }

    /// Messages received and not ended.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Readies `id` for a received message, in one lookup on the common path: makes it a
    /// current assignment if it is not one (its first message since it was assigned: a new
    /// epoch and fresh progress, returned for the caller to share with the rebalance
    /// callback; a lingering revoked state keeps its running keys), and says whether the
    /// message may skip the queue (nothing of the partition queued or running, no parked
    /// keys: the caller then tries it inline first).
    pub(crate) fn admit(&mut self, id: PartitionId) -> Admit {
        if let Some(state) = self.states.get(&id)
            && !state.revoked
        {
            return Admit { assigned: None, idle: state.scheduler.is_idle() && state.parked.is_empty() };
        }
        self.epoch += 1;
        let progress = Progress::default();
        let state = self.states.entry(id).or_insert_with(|| State {
            epoch: 0,
            progress: Progress::default(),
            scheduler: KeyedScheduler::new(self.in_flight_per_partition),
            parked: HashSet::new(),
            revoked: false,
        });
        (state.epoch, state.progress, state.revoked) = (self.epoch, Arc::clone(&progress), false);
        Admit { assigned: Some(progress), idle: state.scheduler.is_idle() && state.parked.is_empty() }
    }

    /// A message of an idle partition that the caller finished before recording anything.
    pub(crate) fn passed(&mut self, id: PartitionId, offset: i64) {
        if let Some(state) = self.states.get_mut(&id) {
            lock(&state.progress).passed(offset);
        }
    }

    /// A message of an idle partition that the caller starts at once; returns its epoch.
    pub(crate) fn start_now(&mut self, id: PartitionId, message: &M) -> u64 {
        let Some(state) = self.states.get_mut(&id) else { return 0 };
        lock(&state.progress).received(message.offset());
        state.scheduler.start_now(message.key().map(key_hash));
        self.buffered += 1;
        state.epoch
    }

    /// Queues a received message behind the partition's others.
    pub(crate) fn enqueue(&mut self, id: PartitionId, message: M) {
        let Some(state) = self.states.get_mut(&id) else { return };
        lock(&state.progress).received(message.offset());
        let key = message.key().map(key_hash);
        state.scheduler.push(message.offset(), key, message);
        self.buffered += 1;
    }

    /// The next queued message of `id` that may start now.
    pub(crate) fn next_start(&mut self, id: PartitionId) -> Option<Start<M>> {
        let state = self.states.get_mut(&id).filter(|state| !state.revoked)?;
        let message = state.scheduler.start_next()?.item;
        let parked = !state.parked.is_empty() && message.key().is_some_and(|k| state.parked.contains(k));
        Some(Start { message, epoch: state.epoch, parked })
    }

    /// A started message of assignment `epoch` ended with `outcome`. Returns whether the
    /// partition may start more now (it is still assigned).
    pub(crate) fn finish(&mut self, id: PartitionId, epoch: u64, message: &M, outcome: Outcome) -> bool {
        self.buffered = self.buffered.saturating_sub(1);
        let Some(state) = self.states.get_mut(&id) else {
            return false; // cannot happen: a state lingers while its messages run
        };
        let key = message.key();
        state.scheduler.finished(key.map(key_hash).as_ref());
        let assigned = !state.revoked;
        // A run of an assignment that is over frees its key, but its offset is not ours.
        let current = state.epoch == epoch && assigned;
        if current && outcome != Outcome::Abandoned {
            lock(&state.progress).finished(message.offset());
        }
        if current
            && outcome == Outcome::DeadLettered
            && self.park_after_dead_letter
            && let Some(key) = key
        {
            state.parked.insert(key.to_vec());
        }
        if !assigned && state.scheduler.running() == 0 {
            self.states.remove(&id);
        }
        assigned
    }

    /// `id` was revoked: its queued messages are dropped (the next owner gets them); if
    /// some still run, the state lingers until they end (see `State::revoked`).
    pub(crate) fn revoke(&mut self, id: PartitionId) {
        let Some(state) = self.states.get_mut(&id) else { return };
        self.buffered = self.buffered.saturating_sub(state.scheduler.clear_queued());
        if state.scheduler.running() == 0 {
            self.states.remove(&id);
        } else {
            state.revoked = true;
            state.parked.clear();
        }
    }
}

/// The scheduler's key: a 64-bit hash of the record key, so running keys are tracked
/// without copying them. Two keys with the same hash merely take turns (order is kept,
/// a little parallelism lost); parking compares the keys themselves.
fn key_hash(key: &[u8]) -> u64 {
    FixedState::with_seed(0).hash_one(key)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Message {
        offset: i64,
        key: Option<Vec<u8>>,
    }

    impl Keyed for Message {
        fn offset(&self) -> i64 {
            self.offset
        }
        fn key(&self) -> Option<&[u8]> {
            self.key.as_deref()
        }
    }

    fn message(offset: i64, key: &str) -> Message {
        Message { offset, key: Some(key.as_bytes().to_vec()) }
    }

    const P: PartitionId = (0, 0);

    /// Where a commit would put the group now (Kafka's next offset to read).
    fn committable(progress: &Progress) -> Option<i64> {
        let mut progress = lock(progress);
        progress.committable();
        progress.last_committable()
    }

    /// Starts everything that may start; returns what started.
    fn drain(partitions: &mut Partitions<Message>) -> Vec<Start<Message>> {
        std::iter::from_fn(|| partitions.next_start(P)).collect()
    }

    #[test]
    fn one_key_at_a_time_in_offset_order_and_commits_only_past_ended_runs() {
        let mut partitions = Partitions::new(8, false);
        let progress = partitions.admit(P).assigned.expect("fresh assignment");
        for (offset, key) in [(0, "a"), (1, "a"), (2, "b")] {
            partitions.enqueue(P, message(offset, key));
        }
        let started: Vec<i64> = drain(&mut partitions).iter().map(|s| s.message.offset).collect();
        assert_eq!(started, [0, 2], "a@1 waits for a@0");
        assert!(partitions.finish(P, 1, &message(2, "b"), Outcome::Handled));
        assert_eq!(committable(&progress), Some(0), "offset 0 still runs");
        assert!(partitions.finish(P, 1, &message(0, "a"), Outcome::Handled));
        assert_eq!(committable(&progress), Some(1));
        let next = drain(&mut partitions);
        assert_eq!(next.iter().map(|s| s.message.offset).collect::<Vec<_>>(), [1]);
        partitions.finish(P, 1, &message(1, "a"), Outcome::Handled);
        assert_eq!((committable(&progress), partitions.buffered()), (Some(3), 0));
    }

    #[test]
    fn an_abandoned_run_frees_its_key_but_holds_the_commits_at_its_offset() {
        let mut partitions = Partitions::new(8, false);
        let progress = partitions.admit(P).assigned.expect("assigned");
        partitions.enqueue(P, message(0, "a"));
        partitions.enqueue(P, message(1, "a"));
        drain(&mut partitions);
        partitions.finish(P, 1, &message(0, "a"), Outcome::Abandoned);
        let next = drain(&mut partitions);
        assert_eq!(next.len(), 1, "the key runs again");
        partitions.finish(P, 1, &message(1, "a"), Outcome::Handled);
        assert_eq!(committable(&progress), Some(0), "nothing past the abandoned offset");
    }

    #[test]
    fn after_a_dead_letter_the_keys_later_messages_come_back_parked() {
        let mut partitions = Partitions::new(8, true);
        partitions.admit(P);
        for (offset, key) in [(0, "a"), (1, "a"), (2, "b")] {
            partitions.enqueue(P, message(offset, key));
        }
        drain(&mut partitions);
        partitions.finish(P, 1, &message(0, "a"), Outcome::DeadLettered);
        let next = drain(&mut partitions);
        assert_eq!(next.len(), 1);
        assert!(next[0].parked, "a@1 follows a@0 to the dead-letter topic");
        assert!(!partitions.admit(P).idle, "a parked key keeps the partition off the fast path");
        partitions.finish(P, 1, &message(2, "b"), Outcome::Handled);
        partitions.enqueue(P, message(3, "b"));
        assert!(!drain(&mut partitions)[0].parked, "other keys are handled");
    }

    #[test]
    fn a_revoked_partition_lingers_until_its_runs_end_and_a_reassignment_waits_for_them() {
        let mut partitions = Partitions::new(8, false);
        partitions.admit(P);
        partitions.enqueue(P, message(10, "k"));
        partitions.enqueue(P, message(11, "k"));
        assert_eq!(drain(&mut partitions).len(), 1);
        partitions.revoke(P);
        assert_eq!(partitions.buffered(), 1, "the queued message is dropped, the running one lingers");

        let progress = partitions.admit(P).assigned.expect("assigned again");
        partitions.enqueue(P, message(10, "k")); // redelivered
        partitions.enqueue(P, message(12, "other"));
        let started: Vec<i64> = drain(&mut partitions).iter().map(|s| s.message.offset).collect();
        assert_eq!(started, [12], "k's redelivery waits for its old run");
        partitions.finish(P, 2, &message(12, "other"), Outcome::Handled);
        assert!(partitions.finish(P, 1, &message(10, "k"), Outcome::Handled), "the old run ends");
        assert_eq!(committable(&progress), Some(10), "an old run's offset is not the new assignment's");
        let started: Vec<i64> = drain(&mut partitions).iter().map(|s| s.message.offset).collect();
        assert_eq!(started, [10]);
        partitions.finish(P, 2, &message(10, "k"), Outcome::Handled);
        assert_eq!(committable(&progress), Some(13));
    }

    #[test]
    fn a_revoked_partition_without_runs_is_forgotten_at_once() {
        let mut partitions = Partitions::new(8, false);
        partitions.admit(P);
        partitions.enqueue(P, message(0, "a"));
        partitions.revoke(P);
        assert_eq!(partitions.buffered(), 0);
        assert!(partitions.next_start(P).is_none());
        assert!(partitions.admit(P).assigned.is_some(), "a later message assigns it afresh");
    }

    proptest! {
        /// Random keys, and runs ending in random order: no key ever runs twice at once,
        /// each key's messages start in offset order, and once everything has ended the
        /// whole partition is committable.
        #[test]
        fn keys_never_overlap_and_start_in_order(
            keys in prop::collection::vec(0u8..4, 1..60),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 60),
            capacity in 1usize..5,
        ) {
            let mut partitions = Partitions::new(capacity, false);
            let progress = partitions.admit(P).assigned.expect("assigned");
            for (offset, key) in keys.iter().enumerate() {
                partitions.enqueue(P, message(offset as i64, &key.to_string()));
            }
            let mut running: Vec<Message> = Vec::new();
            let mut last_started: HashMap<Vec<u8>, i64> = HashMap::new();
            let mut picks = picks.into_iter().cycle();
            loop {
                for start in drain(&mut partitions) {
                    let key = start.message.key.clone().expect("key");
                    prop_assert!(running.iter().all(|m| m.key.as_ref() != Some(&key)), "key {key:?} twice");
                    prop_assert!(running.len() < capacity);
                    if let Some(previous) = last_started.insert(key, start.message.offset) {
                        prop_assert!(previous < start.message.offset);
                    }
                    running.push(start.message);
                }
                if running.is_empty() {
                    break;
                }
                let ended = running.swap_remove(picks.next().expect("cycle").index(running.len()));
                partitions.finish(P, 1, &ended, Outcome::Handled);
            }
            prop_assert_eq!(committable(&progress), Some(keys.len() as i64));
            prop_assert_eq!(partitions.buffered(), 0);
        }
    }
}
