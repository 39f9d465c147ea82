//! The cleaner: one pass of log compaction over a partition, driving
//! [`compaction`](super)'s decisions through herald-log's crash-safe segment rewrite.
//!
//! A pass, Kafka's way:
//! 1. The cleanable range is the sealed, durable segments up to the first one holding a
//!    record younger than `min.compaction.lag.ms` (segment-level timestamps).
//! 2. The map: every key's latest offset over the *dirty* part of that range (what was
//!    written since the last pass's map ended), bounded by `map_bytes_max`; a full map
//!    ends the pass's range early, at a batch boundary.
//! 3. Each sealed segment from the log start to the map's end is rewritten: a batch whose
//!    records all stay is copied as it is; one that loses every record goes; one that
//!    loses some becomes one batch per run of consecutive offsets (`raw.rs`: the kept
//!    records' bytes copied, compressed again with the batch's codec, producer id, epoch
//!    and sequences kept), so every batch stays gapless inside and the log gets gaps
//!    between batches only. A segment nothing changes in is not rewritten.
//!
//! Some batches are never touched: transactional and control batches (the broker refuses
//! transactions, so these come only from elsewhere), the batches the partition's
//! producer state remembers (the last few of each idempotent producer, so a restart
//! rebuilds that state, retried batches included, from the log), and batches that do not
//! open or parse as their header says (the cleaner never loses what it cannot read).
//! Their superseded records stay, so the tombstones of their keys stay too, and the next
//! pass maps from the first of them again ([`Pins`]): an old value never outlives its
//! delete.
//!
//! This is the one place the broker opens (decompresses, bounded by the vendored
//! kafka-protocol's limit) clients' records; it reads only their offsets, times, keys and
//! whether the value is null, and copies the rest as it is.

use std::collections::{HashMap, HashSet};

use herald_log::{BatchHeader, Log, LogError, SealedSegment};

use super::{CompactionPolicy, Horizon, LatestOffsets, Seen, due, keeps, raw};
use crate::broker::Broker;
use crate::partition::Partition;

/// Bytes of a rewritten segment buffered before they are handed to the log.
const WRITE_BYTES: usize = 1 << 20;
/// What the map is charged per key besides the key's bytes (the offset, the entry).
const MAP_ENTRY_OVERHEAD: usize = 48;
/// Transactional (0x10) and control (0x20) batch attributes.
const TRANSACTIONAL_OR_CONTROL: i16 = 0x30;

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    /// The log refused a read or a write.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The broker is stopping; the rewrite in progress was dropped.
    #[error("stopped")]
    Stopped,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Segments swapped for their rewrite (or removed, when nothing stayed).
    pub segments_rewritten: usize,
    /// Their bytes before...
    pub bytes_before: u64,
    /// ...and after.
    pub bytes_after: u64,
    /// Records dropped.
    pub records_removed: u64,
    /// Where the next pass's dirty range starts.
    pub cleaned_through: u64,
}

/// The cleaner's memory between passes: where each partition's dirty range starts. It
/// lives in memory, so the first pass after a restart maps the whole cleanable range.
#[derive(Debug, Default)]
pub struct Cleaner {
    first_dirty: HashMap<(uuid::Uuid, u32), u64>,
}

impl Cleaner {
    /// One round: a pass over every compacted partition that is due, at `now_ms`. A pass
    /// that fails is logged and tried again next round; `stopping` ends the round early.
    /// The returned total adds up the passes' counts (its `cleaned_through` means nothing).
    pub fn run(&mut self, broker: &Broker, now_ms: i64, stopping: &dyn Fn() -> bool) -> PassOutcome {
        let mut total = PassOutcome::default();
        let map_bytes_max = broker.config().cleaner_map_bytes_max;
        let partitions = broker.compacted_partitions();
        let live: HashSet<(uuid::Uuid, u32)> = partitions.iter().map(|p| (p.0, p.2)).collect();
        for (id, topic, index, partition, policy) in partitions {
            let first_dirty = self.first_dirty.get(&(id, index)).copied().unwrap_or(0);
            match clean_partition(&partition, &policy, first_dirty, now_ms, map_bytes_max, stopping) {
                Ok(None) => {}
                Ok(Some(pass)) => {
                    self.first_dirty.insert((id, index), pass.cleaned_through);
                    record(&topic, index, &pass);
                    total.segments_rewritten += pass.segments_rewritten;
                    total.bytes_before += pass.bytes_before;
                    total.bytes_after += pass.bytes_after;
                    total.records_removed += pass.records_removed;
                }
                Err(CleanError::Stopped) => break,
                Err(error) => tracing::warn!(topic, partition = index, %error, "cleaning failed; will retry"),
            }
        }
        self.first_dirty.retain(|key, _| live.contains(key));
        total
    }
}

fn record(topic: &str, partition: u32, pass: &PassOutcome) {
    metrics::counter!("herald_cleaner_passes_total").increment(1);
    metrics::counter!("herald_cleaner_records_removed_total").increment(pass.records_removed);
    metrics::counter!("herald_cleaner_bytes_freed_total").increment(pass.bytes_before.saturating_sub(pass.bytes_after));
    if pass.segments_rewritten > 0 {
        tracing::info!(
            topic,
            partition,
            segments = pass.segments_rewritten,
            records_removed = pass.records_removed,
            bytes_before = pass.bytes_before,
            bytes_after = pass.bytes_after,
            "compacted"
        );
    }
}

/// Runs a pass over `partition` if it is due under `policy` at `now_ms`; `first_dirty` is
/// where the previous pass's map ended (the log start for a partition never cleaned).
pub(crate) fn clean_partition(
    partition: &Partition,
    policy: &CompactionPolicy,
    first_dirty: u64,
    now_ms: i64,
    map_bytes_max: usize,
    stopping: &dyn Fn() -> bool,
) -> Result<Option<PassOutcome>, CleanError> {
    let log = partition.log();
    let cutoff = Horizon::lag_cutoff_ms(now_ms, policy);
    let cleanable: Vec<SealedSegment> =
        log.sealed_segments().into_iter().take_while(|s| s.max_timestamp <= cutoff).collect();
    if cleanable.is_empty() {
        return Ok(None);
    }
    let dirty: Vec<&SealedSegment> = cleanable.iter().filter(|s| s.next_offset > first_dirty).collect();
    let dirty_bytes = dirty.iter().map(|s| s.size).sum();
    let total_bytes = cleanable.iter().map(|s| s.size).sum();
    let oldest_dirty = dirty.first().map(|s| s.max_timestamp);
    if !due(policy, now_ms, dirty_bytes, total_bytes, oldest_dirty) {
        return Ok(None);
    }
    let (latest, map_end) = build_map(log, &cleanable, first_dirty, map_bytes_max, stopping)?;
    let horizon = Horizon { cleanable_end: map_end, ..Horizon::at(now_ms, policy, map_end, None) };
    let protected: HashSet<(i64, i32)> = partition.remembered_producer_batches().into_iter().collect();
    let mut outcome = PassOutcome::default();
    let mut judge = Judge { latest: &latest, horizon: &horizon, protected: &protected, pins: Pins::default() };
    for segment in cleanable.iter().filter(|s| s.base_offset < map_end) {
        rewrite_segment(log, *segment, &mut judge, stopping, &mut outcome)?;
    }
    outcome.cleaned_through = judge.pins.first.map_or(map_end, |first| first.min(map_end));
    Ok(Some(outcome))
}

/// Every key's latest offset in `segments` from offset `from` on, stopping early (at a
/// batch boundary) once the keys noted cost `map_bytes_max`; returns where it stopped.
fn build_map(
    log: &Log,
    segments: &[SealedSegment],
    from: u64,
    map_bytes_max: usize,
    stopping: &dyn Fn() -> bool,
) -> Result<(LatestOffsets, u64), CleanError> {
    let mut latest = LatestOffsets::default();
    let mut bytes = 0usize;
    let start = log.log_start_offset();
    let from = from.max(start);
    let mut end = from;
    let mut full = false;
    for segment in segments.iter().filter(|s| s.next_offset > from) {
        log.scan_sealed(*segment, |header, batch| {
            if stopping() {
                return Err(CleanError::Stopped);
            }
            if header.next_offset() <= end {
                return Ok(true);
            }
            if bytes >= map_bytes_max {
                full = true;
                return Ok(false);
            }
            let mut note = |record: Seen<'_>| {
                let before = latest.len();
                latest.note(&record);
                if latest.len() > before {
                    bytes += record.key.map_or(0, <[u8]>::len) + MAP_ENTRY_OVERHEAD;
                }
            };
            if let Some(section) = raw::section(header, batch)
                && let Some(records) = raw::records(header, &section)
            {
                records.iter().for_each(|r| note(raw_seen(header, r)));
            }
            end = header.next_offset();
            Ok(true)
        })?;
        if full {
            return Ok((latest, end));
        }
        end = end.max(segment.next_offset);
    }
    Ok((latest, end))
}

fn rewrite_segment(
    log: &Log,
    segment: SealedSegment,
    judge: &mut Judge<'_>,
    stopping: &dyn Fn() -> bool,
    outcome: &mut PassOutcome,
) -> Result<(), CleanError> {
    let mut rewrite = log.rewrite_segment(segment)?;
    let mut out = Vec::new();
    let mut removed = 0u64;
    let log_start = log.log_start_offset();
    log.scan_sealed(segment, |header, batch| {
        if stopping() {
            return Err(CleanError::Stopped);
        }
        if header.next_offset() <= log_start {
            // Below the log start: no reader sees it.
            removed += u64::from(header.record_count);
            return Ok(true);
        }
        match clean_batch(header, batch, judge) {
            Cleaned::Unchanged => out.extend_from_slice(batch),
            Cleaned::Rewritten { bytes, dropped } => {
                out.extend_from_slice(&bytes);
                removed += dropped;
            }
        }
        if out.len() >= WRITE_BYTES {
            rewrite.write(&out)?;
            out.clear();
        }
        Ok(true)
    })?;
    if removed == 0 {
        return Ok(());
    }
    rewrite.write(&out)?;
    if let Some(done) = rewrite.commit()? {
        outcome.segments_rewritten += 1;
        outcome.bytes_before += done.bytes_before;
        outcome.bytes_after += done.bytes_after;
        outcome.records_removed += removed;
    }
    Ok(())
}

/// What a pass makes of one batch.
enum Cleaned {
    Unchanged,
    /// The batches that replace it (none when no record stays), and how many records went.
    Rewritten {
        bytes: Vec<u8>,
        dropped: u64,
    },
}

/// Keys of records a pass left in place without judging them (untouchable batches below
/// the cleanable end): they may hold an older value of a key, so that key's tombstone must
/// stay, or the old value would come back once the tombstone went. The pass's clean mark
/// stays before the first such batch, so the next pass maps it again.
#[derive(Debug, Default)]
struct Pins {
    keys: HashSet<Vec<u8>, foldhash::fast::RandomState>,
    /// A batch that does not decode was kept: its keys are unknown, so all are pinned.
    all: bool,
    /// The first such batch.
    first: Option<u64>,
}

impl Pins {
    fn pin<'a>(&mut self, header: &BatchHeader, keys: Option<impl Iterator<Item = Option<&'a [u8]>>>) {
        self.first.get_or_insert(header.base_offset);
        match keys {
            Some(keys) => self.keys.extend(keys.flatten().map(<[u8]>::to_vec)),
            None => self.all = true,
        }
    }

    fn covers(&self, key: Option<&[u8]>) -> bool {
        self.all || key.is_some_and(|k| self.keys.contains(k))
    }
}

/// What one pass knows while it rewrites.
struct Judge<'a> {
    latest: &'a LatestOffsets,
    horizon: &'a Horizon,
    protected: &'a HashSet<(i64, i32)>,
    pins: Pins,
}

impl Judge<'_> {
    /// [`keeps`], except that a pinned key's latest tombstone stays.
    fn keeps(&self, record: &Seen<'_>) -> bool {
        keeps(record, self.latest, self.horizon)
            || (record.tombstone && self.latest.is_latest(record) && self.pins.covers(record.key))
    }
}

fn clean_batch(header: &BatchHeader, batch: &[u8], judge: &mut Judge<'_>) -> Cleaned {
    if header.base_offset >= judge.horizon.cleanable_end {
        return Cleaned::Unchanged;
    }
    let last_sequence = crate::producer_state::add_sequence(header.base_sequence, header.last_offset_delta as i32);
    let untouchable = header.attributes & TRANSACTIONAL_OR_CONTROL != 0
        || (header.producer_id >= 0 && judge.protected.contains(&(header.producer_id, last_sequence)));
    let section = raw::section(header, batch);
    let Some(records) = section.as_deref().and_then(|section| raw::records(header, section)) else {
        judge.pins.pin(header, None::<std::iter::Empty<Option<&[u8]>>>);
        return Cleaned::Unchanged;
    };
    if untouchable || !increasing(&records, |r| r.offset) {
        judge.pins.pin(header, Some(records.iter().map(|r| r.key)));
        return Cleaned::Unchanged;
    }
    let kept: Vec<raw::RawRecord<'_>> = records.iter().filter(|r| judge.keeps(&raw_seen(header, r))).copied().collect();
    let dropped = (records.len() - kept.len()) as u64;
    if dropped == 0 {
        return Cleaned::Unchanged;
    }
    let encoded: Option<Vec<Vec<u8>>> =
        runs(&kept, |r| r.offset).map(|run| raw::encode_run(header, batch, run)).collect();
    match encoded {
        Some(batches) => Cleaned::Rewritten { bytes: batches.concat(), dropped },
        None => {
            judge.pins.pin(header, Some(records.iter().map(|r| r.key)));
            Cleaned::Unchanged
        }
    }
}

fn raw_seen<'a>(header: &BatchHeader, record: &raw::RawRecord<'a>) -> Seen<'a> {
    const LOG_APPEND_TIME: i16 = 0x08;
    let timestamp = if header.attributes & LOG_APPEND_TIME != 0 {
        header.max_timestamp
    } else {
        header.base_timestamp.saturating_add(record.timestamp_delta)
    };
    Seen { offset: record.offset, timestamp, key: record.key, tombstone: record.tombstone }
}

/// Whether the records' offsets rise strictly, as a producer's must (the broker does not
/// check records on produce, so a batch breaking this is kept as it is).
fn increasing<T>(records: &[T], offset: impl Fn(&T) -> u64) -> bool {
    records.windows(2).all(|w| offset(&w[0]) < offset(&w[1]))
}

/// `records` (in offset order) split into runs of consecutive offsets.
fn runs<T>(records: &[T], offset: impl Fn(&T) -> u64) -> impl Iterator<Item = &[T]> {
    records.chunk_by(move |a, b| offset(b) == offset(a) + 1)
}

#[cfg(test)]
mod tests;
