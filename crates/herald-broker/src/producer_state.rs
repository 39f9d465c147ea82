//! Idempotent-producer state of one partition: the sequence and epoch rules Kafka defines.
//!
//! Per producer id the partition remembers its epoch and its last [`CACHED_BATCHES`]
//! batches (sequence range and where they were written). Every decision is plain code:
//! [`ProducerState::check`] takes the batch and `now_ms` and says append, duplicate or
//! reject; [`ProducerState::record`] is called once the batch is in the log. Nothing here
//! reads a clock or does IO, so tests drive it directly.

use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer (Kafka's limit, hence `max.in.flight` ≤ 5).
pub(crate) const CACHED_BATCHES: usize = 5;

/// The producer fields of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    /// Producer id (`-1` for a non-idempotent producer).
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl ProducerBatch {
    /// Sequence of the last record (sequences wrap from `i32::MAX` to 0).
    pub(crate) fn last_sequence(&self) -> i32 {
        add_sequence(self.first_sequence, self.record_count - 1)
    }
}

/// Where a batch was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Offset of its first record.
    pub base_offset: u64,
    /// Log append time or the batch's max timestamp, as answered to the producer.
    pub timestamp_ms: i64,
}

/// What to do with a produced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it, then call [`ProducerState::record`].
    Append,
    /// A retry of a batch still remembered: answer success with its original placement.
    Duplicate(Placement),
    /// A retry of a batch older than the remembered ones (Kafka's DUPLICATE_SEQUENCE_NUMBER).
    DuplicateSequence,
    /// A gap or an overlap in sequences: data may have been lost (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrderSequence {
        /// The sequence the partition expected next.
        expected: i32,
    },
    /// The producer's epoch is older than the partition's (INVALID_PRODUCER_EPOCH).
    InvalidEpoch {
        /// The partition's current epoch.
        current: i16,
    },
    /// No state for this producer and a sequence other than 0 (UNKNOWN_PRODUCER_ID): the state
    /// expired or was removed with the log, which is not data loss, so not OUT_OF_ORDER.
    UnknownProducer,
}

/// Settings, each with Kafka's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStateConfig {
    /// Forget a producer this long after its last write (`producer.id.expiration.ms`).
    pub expiration_ms: i64,
    /// At most this many producers per partition; the least recently active goes first.
    pub producers_max: usize,
}

impl Default for ProducerStateConfig {
    fn default() -> Self {
        Self { expiration_ms: 86_400_000, producers_max: 10_000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedBatch {
    first_sequence: i32,
    last_sequence: i32,
    placement: Placement,
}

#[derive(Debug, Clone)]
struct Entry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
    last_write_ms: i64,
}

/// One producer a partition remembers (DescribeProducers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    /// Its id.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// The sequence of its last record written.
    pub last_sequence: i32,
    /// When it last wrote (ms since the epoch).
    pub last_write_ms: i64,
}

/// The producer state of one partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerState {
    config: ProducerStateConfig,
    producers: HashMap<i64, Entry>,
}

impl ProducerState {
    /// Empty state with these settings.
    pub(crate) fn new(config: ProducerStateConfig) -> Self {
        Self { config, producers: HashMap::new() }
    }

    /// Number of producers remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer is remembered.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The producers remembered, by id: epoch, last sequence, last write.
    pub(crate) fn active(&self) -> Vec<ActiveProducer> {
        let mut active: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, entry)| ActiveProducer {
                producer_id: *id,
                epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |b| b.last_sequence),
                last_write_ms: entry.last_write_ms,
            })
            .collect();
        active.sort_by_key(|p| p.producer_id);
        active
    }

    /// `(producer id, last sequence)` of every batch remembered (the last few of each
    /// producer): the batches whose bounds a restart must find again in the log.
    pub(crate) fn remembered_batches(&self) -> Vec<(i64, i32)> {
        self.producers.iter().flat_map(|(id, e)| e.batches.iter().map(move |b| (*id, b.last_sequence))).collect()
    }

    /// Decides what to do with `batch`. Does not change the state.
    pub(crate) fn check(&self, batch: &ProducerBatch) -> Verdict {
        if batch.producer_id < 0 {
            return Verdict::Append;
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return if batch.first_sequence == 0 { Verdict::Append } else { Verdict::UnknownProducer };
        };
        if batch.epoch < entry.epoch {
            return Verdict::InvalidEpoch { current: entry.epoch };
        }
        if batch.epoch > entry.epoch {
            // A new epoch starts its sequences again at 0.
            return if batch.first_sequence == 0 {
                Verdict::Append
            } else {
                Verdict::OutOfOrderSequence { expected: 0 }
            };
        }
        let last = batch.last_sequence();
        if let Some(cached) =
            entry.batches.iter().find(|c| c.first_sequence == batch.first_sequence && c.last_sequence == last)
        {
            return Verdict::Duplicate(cached.placement);
        }
        let Some(newest) = entry.batches.back() else {
            return Verdict::Append;
        };
        let expected = add_sequence(newest.last_sequence, 1);
        if batch.first_sequence == expected {
            return Verdict::Append;
        }
        if entry.batches.front().is_some_and(|oldest| is_before(last, oldest.first_sequence)) {
            return Verdict::DuplicateSequence;
        }
        Verdict::OutOfOrderSequence { expected }
    }

    /// Remembers a batch that is now in the log (after [`Verdict::Append`], or while
    /// rebuilding the state from the log after a restart).
    pub(crate) fn record(&mut self, batch: &ProducerBatch, placement: Placement, now_ms: i64) {
        if batch.producer_id < 0 {
            return;
        }
        if !self.producers.contains_key(&batch.producer_id) && self.producers.len() >= self.config.producers_max {
            self.evict_least_recent();
        }
        let entry = self.producers.entry(batch.producer_id).or_insert_with(|| Entry {
            epoch: batch.epoch,
            batches: VecDeque::new(),
            last_write_ms: now_ms,
        });
        if batch.epoch != entry.epoch {
            entry.epoch = batch.epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(CachedBatch {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence(),
            placement,
        });
        if entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
    }

    /// Forgets producers idle for longer than the expiration time. Returns how many.
    pub(crate) fn expire(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        let limit = self.config.expiration_ms;
        self.producers.retain(|_, e| now_ms.saturating_sub(e.last_write_ms) <= limit);
        before - self.producers.len()
    }

    fn evict_least_recent(&mut self) {
        if let Some((&id, _)) = self.producers.iter().min_by_key(|(id, e)| (e.last_write_ms, **id)) {
            self.producers.remove(&id);
        }
    }
}

/// `seq + n` with Kafka's wrap from `i32::MAX` to 0.
pub(crate) fn add_sequence(seq: i32, n: i32) -> i32 {
    ((i64::from(seq) + i64::from(n)).rem_euclid(1 << 31)) as i32
}

/// True when `a` comes before `b` in the wrapping sequence space (within half of it).
fn is_before(a: i32, b: i32) -> bool {
    let distance = (i64::from(b) - i64::from(a)).rem_euclid(1 << 31);
    distance > 0 && distance < 1 << 30
}

#[cfg(test)]
mod tests;
