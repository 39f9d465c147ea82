//! Log compaction's decisions, as plain code (no IO, `now` passed in): which records of a
//! compacted partition a cleaning pass keeps, and when a partition is due for one.
//! [`cleaner`] carries them out through herald-log's crash-safe segment rewrite.
//!
//! The rules are Kafka's:
//! - A pass cleans only up to the *cleanable end*: the start of the active segment, and
//!   never past the first record younger than `min.compaction.lag.ms`.
//! - Within that range a record is dropped when a later record has the same key (the
//!   latest offsets are mapped over the part written since the last pass, as Kafka does:
//!   the part before holds one record per key already); offsets of the records kept never
//!   change, so the log gets gaps that readers step over.
//! - A tombstone (a null value) that is the latest of its key goes only once it is older
//!   than `delete.retention.ms`, so consumers that were behind can still see the delete.
//! - Records without a key are kept (Kafka refuses them on compacted topics).
//! - A partition is due when its dirty share reaches `min.cleanable.dirty.ratio`, or when
//!   its oldest dirty record is older than `max.compaction.lag.ms`.

use std::collections::HashMap;

pub(crate) mod cleaner;
mod raw;

/// A compacted topic's settings (Kafka's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CompactionPolicy {
    /// `delete.retention.ms`: how long a tombstone outlives what it deleted.
    pub(crate) delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are never cleaned.
    pub(crate) min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record this old makes the partition due.
    pub(crate) max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the dirty share that makes the partition due.
    pub(crate) min_cleanable_dirty_ratio: f64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// What a pass needs to know of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen<'a> {
    pub(crate) offset: u64,
    /// The record's timestamp (ms since the epoch).
    pub(crate) timestamp: i64,
    pub(crate) key: Option<&'a [u8]>,
    /// A null value: a tombstone.
    pub(crate) tombstone: bool,
}

/// The bounds of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Horizon {
    /// Records at or past this offset are kept as they are.
    pub(crate) cleanable_end: u64,
    /// A latest-of-its-key tombstone older than this (ms) goes.
    pub(crate) tombstones_before_ms: i64,
}

impl Horizon {
    /// The bounds at `now_ms` for a log whose active segment starts at `active_base`,
    /// where `first_too_young` is the first offset whose record is younger than
    /// `min.compaction.lag.ms` (if any).
    pub(crate) fn at(now_ms: i64, policy: &CompactionPolicy, active_base: u64, first_too_young: Option<u64>) -> Self {
        let cleanable_end = first_too_young.map_or(active_base, |young| young.min(active_base));
        Self { cleanable_end, tombstones_before_ms: now_ms.saturating_sub(policy.delete_retention_ms) }
    }

    /// The record time before which a record is old enough to clean.
    pub(crate) fn lag_cutoff_ms(now_ms: i64, policy: &CompactionPolicy) -> i64 {
        now_ms.saturating_sub(policy.min_compaction_lag_ms)
    }
}

/// The latest offset of every key: the first pass over the log.
#[derive(Debug, Default)]
pub(crate) struct LatestOffsets(HashMap<Vec<u8>, u64, foldhash::fast::RandomState>);

impl LatestOffsets {
    /// Notes `record` (records come in offset order).
    pub(crate) fn note(&mut self, record: &Seen<'_>) {
        if let Some(key) = record.key {
            match self.0.get_mut(key) {
                Some(latest) => *latest = (*latest).max(record.offset),
                None => {
                    self.0.insert(key.to_vec(), record.offset);
                }
            }
        }
    }

    /// Keys noted.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl LatestOffsets {
    /// Whether `record` is the latest of its key noted (or its key was not noted).
    pub(crate) fn is_latest(&self, record: &Seen<'_>) -> bool {
        record.key.is_none_or(|key| self.0.get(key).is_none_or(|latest| *latest <= record.offset))
    }
}

/// Whether a pass keeps `record`: the second pass, given every key's latest offset.
pub(crate) fn keeps(record: &Seen<'_>, latest: &LatestOffsets, horizon: &Horizon) -> bool {
    if record.offset >= horizon.cleanable_end {
        return true;
    }
    let Some(key) = record.key else { return true };
    let newest = latest.0.get(key).is_none_or(|latest| *latest <= record.offset);
    match (newest, record.tombstone) {
        (false, _) => false,
        (true, false) => true,
        (true, true) => record.timestamp >= horizon.tombstones_before_ms,
    }
}

/// Whether a partition is due for a pass: `dirty_bytes` of `total_bytes` written since
/// the last pass, the oldest of them written at `oldest_dirty_ms`.
pub(crate) fn due(
    policy: &CompactionPolicy,
    now_ms: i64,
    dirty_bytes: u64,
    total_bytes: u64,
    oldest_dirty_ms: Option<i64>,
) -> bool {
    if dirty_bytes == 0 {
        return false;
    }
    let ratio = dirty_bytes as f64 / total_bytes.max(1) as f64;
    let overdue = oldest_dirty_ms.is_some_and(|oldest| now_ms.saturating_sub(oldest) > policy.max_compaction_lag_ms);
    ratio >= policy.min_cleanable_dirty_ratio || overdue
}

#[cfg(test)]
mod tests;
