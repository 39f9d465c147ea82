//! [`Log`]: one partition, a directory of segments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::batch::{BatchHeader, set_base_offset, validate_batches};
use crate::checkpoint::Checkpoint;
use crate::config::{LogConfig, SyncPolicy};
use crate::error::LogError;
use crate::segment::Segment;
use crate::storage::{Storage, StorageFile};

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
    /// Number of batches written.
    pub batches: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Batches returned by [`Log::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatches {
    /// Whole batches, verbatim; empty when reading at the high watermark.
    pub bytes: Vec<u8>,
    /// One past the last offset readers may see.
    pub high_watermark: u64,
    /// First offset readers may see.
    pub log_start_offset: u64,
}

/// Answer of [`Log::offset_for_timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// First offset whose record timestamp is at least the target. For a compressed
    /// batch the log does not decompress: this is the batch's first offset.
    pub offset: u64,
    /// That record's timestamp (the batch's largest timestamp for a compressed batch).
    pub timestamp: i64,
}

/// What [`Log::enforce_retention`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes freed.
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start_offset: u64,
}

/// One partition's durable log. All methods take `&self`; the log is `Send + Sync`.
///
/// Appends serialize on a write lock held only for the `write` itself; fsyncs run
/// outside it, under their own lock, so appends that arrive during an fsync are covered
/// by the next one (group commit). Reads share a read lock.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    /// Behind a lock so topic config changes apply to a live log.
    config: RwLock<LogConfig>,
    pub(crate) state: RwLock<State>,
    sync_lock: Mutex<()>,
    /// Held by whatever removes or replaces sealed segments' files (retention,
    /// DeleteRecords, truncation, a rewrite's swap), taken before the other locks: a
    /// rewrite swaps files under it while appends and reads go on.
    pub(crate) segment_files: Mutex<()>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) segments: BTreeMap<u64, Segment>,
    pub(crate) log_start_offset: u64,
    /// Offsets below this are fsynced.
    pub(crate) durable_end: u64,
    /// Set by the first write or fsync error; the log then refuses writes.
    pub(crate) failed: Option<String>,
    /// The checkpoint as last written.
    pub(crate) checkpoint: Checkpoint,
    /// When the oldest unsynced append happened (for `SyncPolicy::Interval`).
    pub(crate) oldest_unsynced_ms: Option<i64>,
    /// Bumped by every truncation, so an fsync that raced one does not claim its range.
    pub(crate) truncations: u64,
}

impl State {
    pub(crate) fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    pub(crate) fn log_end(&self) -> u64 {
        self.active().next_offset
    }

    /// The end of the durable prefix of the log: the synced end of the first segment that
    /// is not wholly synced, as `(segment base, offset, byte position)`.
    pub(crate) fn durable_point(&self) -> (u64, u64, u64) {
        let segment = self.segments.values().find(|s| s.synced_size < s.size).unwrap_or_else(|| self.active());
        (segment.base_offset, segment.synced_next_offset, segment.synced_size)
    }

    /// Recomputes `durable_end` after syncs, rolls or truncations.
    pub(crate) fn refresh_durable_end(&mut self) {
        self.durable_end = self.durable_point().1;
    }
}

impl Log {
    pub(crate) fn from_parts(storage: Arc<dyn Storage>, dir: PathBuf, config: LogConfig, state: State) -> Self {
        Self {
            dir,
            storage,
            config: RwLock::new(config),
            state: RwLock::new(state),
            sync_lock: Mutex::new(()),
            segment_files: Mutex::new(()),
        }
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings this log runs with.
    pub fn config(&self) -> LogConfig {
        *crate::sync::read(&self.config)
    }

    /// Changes the settings of the live log (a topic config change). Retention and
    /// rolling follow the new values from the next append or retention pass.
    pub fn set_config(&self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        *crate::sync::write(&self.config) = config;
        Ok(())
    }

    /// Appends one produce request's batches (RecordBatch v2, back to back).
    ///
    /// Every batch is validated before anything is written, so an invalid request changes
    /// nothing. Offsets are assigned by rewriting each batch's `baseOffset` in `batches`
    /// (outside the CRC); the bytes are then stored verbatim. With [`SyncPolicy::Always`]
    /// this returns only once an fsync covers the batches. `now_ms` drives `segment_ms`.
    pub fn append(&self, batches: &mut [u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        let info = self.append_unsynced(batches, now_ms)?;
        if self.config().sync == SyncPolicy::Always {
            self.sync_through(info.last_offset + 1)?;
        }
        Ok(info)
    }

    /// [`Log::append`] without the fsync, whatever the policy: the caller then calls
    /// [`Log::sync_through`] (typically off the thread that orders appends), so appends
    /// keep their order while their fsyncs are shared. Under [`SyncPolicy::Always`] the
    /// batches stay invisible to readers until that sync.
    pub fn append_unsynced(&self, batches: &mut [u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        let config = self.config();
        let headers = validate_batches(batches, config.batch_bytes_max)?;
        let records: u64 = headers.iter().map(|h| u64::from(h.record_count)).sum();
        let bytes = batches.len() as u64;
        let mut st = self.write_state();
        self.check_writable(&st)?;
        if self.roll_due(st.active(), bytes, records, now_ms) {
            self.roll_locked(&mut st)?;
        }
        let base_offset = st.active().next_offset;
        let mut offset = base_offset;
        let mut pos = 0usize;
        for header in &headers {
            set_base_offset(&mut batches[pos..], offset);
            offset += u64::from(header.record_count);
            pos += header.size as usize;
        }
        let active = st.active_mut();
        let write_pos = active.size;
        if let Err(source) = active.file.write_all_at(write_pos, batches) {
            let path = active.path.clone();
            return Err(self.fail_write(&mut st, write_pos, path, source));
        }
        let index_interval = config.index_interval_bytes;
        let mut pos = write_pos;
        let mut next = base_offset;
        for header in &headers {
            let placed = BatchHeader { base_offset: next, ..*header };
            active.record_batch(pos, &placed, index_interval);
            pos += u64::from(header.size);
            next = placed.next_offset();
        }
        if st.oldest_unsynced_ms.is_none() {
            st.oldest_unsynced_ms = Some(now_ms);
        }
        drop(st);
        Ok(AppendInfo { base_offset, last_offset: next - 1, batches: headers.len(), bytes })
    }

    /// Fsyncs everything appended so far and returns the offset up to which the log is
    /// durable. Concurrent callers share one fsync.
    pub fn sync(&self) -> Result<u64, LogError> {
        let _guard = self.lock_sync();
        self.sync_locked()
    }

    /// True when the sync policy wants [`Log::sync`] called now.
    pub fn sync_due(&self, now_ms: i64) -> bool {
        let st = self.read_state();
        let active = st.active();
        let unsynced = active.size - active.synced_size;
        match self.config().sync {
            SyncPolicy::Always => unsynced > 0,
            SyncPolicy::Interval { interval_ms, bytes } => {
                let waited = st.oldest_unsynced_ms.is_some_and(|t| now_ms.saturating_sub(t) >= interval_ms as i64);
                unsynced > 0 && (unsynced >= bytes || waited)
            }
            SyncPolicy::Never => false,
        }
    }

    /// First offset readers may see.
    pub fn log_start_offset(&self) -> u64 {
        self.read_state().log_start_offset
    }

    /// Offset the next append gets.
    pub fn log_end_offset(&self) -> u64 {
        self.read_state().log_end()
    }

    /// One past the last offset readers may see: the durable end under
    /// [`SyncPolicy::Always`] (nothing is served that a power loss could take back),
    /// the log end otherwise.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark_of(&self.read_state())
    }

    /// Offsets below this are fsynced.
    pub fn durable_end_offset(&self) -> u64 {
        self.read_state().durable_end
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.read_state().segments.values().map(|s| s.size).sum()
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.read_state().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<u64> {
        self.read_state().segments.keys().copied().collect()
    }

    /// Starts a new segment now, if the active one holds anything.
    pub fn roll(&self) -> Result<(), LogError> {
        let mut st = self.write_state();
        self.check_writable(&st)?;
        if st.active().size > 0 {
            self.roll_locked(&mut st)?;
        }
        Ok(())
    }

    /// Removes every batch holding an offset at or above `offset` and returns the new log
    /// end (the base offset of the batch that held `offset`, so at most `offset`).
    pub fn truncate_to(&self, offset: u64) -> Result<u64, LogError> {
        let _files = crate::sync::lock(&self.segment_files);
        let _sync = self.lock_sync();
        let mut st = self.write_state();
        self.check_writable(&st)?;
        if offset >= st.log_end() {
            return Ok(st.log_end());
        }
        if offset < st.log_start_offset {
            return Err(LogError::InvalidArgument(format!(
                "cannot truncate to {offset}, below the log start offset {}",
                st.log_start_offset
            )));
        }
        let result = self.truncate_locked(&mut st, offset);
        result.map_err(|e| self.fail(&mut st, e))
    }

    /// Makes `offset` the new log start offset (Kafka's DeleteRecords) and deletes the
    /// segments wholly below it. Returns the log start offset afterwards.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64, LogError> {
        // The new log start is made durable only over durable data: otherwise a power
        // loss could leave a log start beyond the recovered end.
        let _files = crate::sync::lock(&self.segment_files);
        let _sync = self.lock_sync();
        if offset > self.read_state().durable_end {
            self.sync_locked()?;
        }
        let mut st = self.write_state();
        self.check_writable(&st)?;
        let high_watermark = self.high_watermark_of(&st);
        if offset > high_watermark {
            return Err(LogError::OffsetOutOfRange { offset, log_start_offset: st.log_start_offset, high_watermark });
        }
        if offset > st.log_start_offset {
            st.log_start_offset = offset;
            let result = self.delete_segments_locked(&mut st, |_, seg| seg.next_offset <= offset);
            result.map_err(|e| self.fail(&mut st, e))?;
        }
        Ok(st.log_start_offset)
    }

    /// Deletes whole old segments past `retention_bytes` or `retention_ms` (measured
    /// against each segment's newest record). The active segment is never deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome, LogError> {
        let _files = crate::sync::lock(&self.segment_files);
        let mut st = self.write_state();
        self.check_writable(&st)?;
        let mut excess = match self.config().retention_bytes {
            Some(limit) => st.segments.values().map(|s| s.size).sum::<u64>().saturating_sub(limit),
            None => 0,
        };
        let retention_ms = self.config().retention_ms;
        let expired = |seg: &Segment| {
            retention_ms
                .is_some_and(|ms| seg.max_timestamp != i64::MIN && now_ms.saturating_sub(seg.max_timestamp) > ms as i64)
        };
        // A segment compaction emptied holds nothing to keep; under a retention it goes
        // (it has no time of its own to expire by, and would hold back the ones after it).
        let retains = self.config().retention_ms.is_some() || self.config().retention_bytes.is_some();
        let outcome = self.delete_segments_locked(&mut st, |st, seg| {
            let over_size = excess >= seg.size && excess > 0;
            let emptied = retains && seg.size == 0;
            let delete = over_size || expired(seg) || emptied || seg.next_offset <= st.log_start_offset;
            if delete {
                excess = excess.saturating_sub(seg.size);
            }
            delete
        });
        outcome.map_err(|e| self.fail(&mut st, e))
    }

    /// Makes the log refuse writes and segment rewrites from now on, saying `why` (its
    /// directory is about to go). Waits for a rewrite's swap in progress to end.
    pub fn retire(&self, why: &str) {
        let _files = crate::sync::lock(&self.segment_files);
        let mut st = self.write_state();
        st.failed.get_or_insert_with(|| why.to_string());
    }

    /// Flushes and fsyncs everything and marks the shutdown clean, so the next open
    /// skips recovery. A log that failed is closed without the mark.
    pub fn close(self) -> Result<(), LogError> {
        let _sync = self.lock_sync();
        let mut st = self.write_state();
        self.check_writable(&st)?;
        let result = self.checkpoint_locked(&mut st, true);
        result.map_err(|e| self.fail(&mut st, e))
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        crate::sync::read(&self.state)
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        crate::sync::write(&self.state)
    }

    fn lock_sync(&self) -> MutexGuard<'_, ()> {
        crate::sync::lock(&self.sync_lock)
    }

    pub(crate) fn high_watermark_of(&self, st: &State) -> u64 {
        match self.config().sync {
            SyncPolicy::Always => st.durable_end,
            SyncPolicy::Interval { .. } | SyncPolicy::Never => st.log_end(),
        }
    }

    fn check_writable(&self, st: &State) -> Result<(), LogError> {
        match &st.failed {
            Some(cause) => Err(LogError::Failed { dir: self.dir.clone(), cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Records the first failure; from now on the log refuses writes.
    pub(crate) fn fail(&self, st: &mut State, error: LogError) -> LogError {
        if st.failed.is_none() {
            tracing::error!(dir = %self.dir.display(), %error, "log failed; refusing writes until reopened");
            st.failed = Some(error.to_string());
        }
        error
    }

    /// A failed write: ENOSPC is cleaned up (the partial bytes are cut off) and leaves the
    /// log usable; anything else, or a failed cleanup, fails the log.
    fn fail_write(&self, st: &mut State, write_pos: u64, path: PathBuf, source: std::io::Error) -> LogError {
        if source.kind() == std::io::ErrorKind::StorageFull && st.active().file.set_len(write_pos).is_ok() {
            return LogError::StorageFull { path, source };
        }
        let error = LogError::io("write", path, source);
        self.fail(st, error)
    }

    fn roll_due(&self, active: &Segment, bytes: u64, records: u64, now_ms: i64) -> bool {
        if active.size == 0 {
            return false;
        }
        let too_big = active.size + bytes > self.config().segment_bytes;
        let offsets_full = active.next_offset + records - active.base_offset > u64::from(u32::MAX);
        let too_old = match (self.config().segment_ms, active.first_batch_timestamp) {
            (Some(ms), Some(first)) => now_ms.saturating_sub(first) >= ms as i64,
            _ => false,
        };
        too_big || offsets_full || too_old
    }

    /// Seals the active segment and starts a new one. Under [`SyncPolicy::Always`] the
    /// sealed segment is fsynced now; otherwise it waits for the next [`Log::sync`] (a
    /// roll must not stall appends for a whole-segment fsync), and the checkpoint keeps
    /// pointing into it until then, so recovery re-checks it after a crash.
    fn roll_locked(&self, st: &mut State) -> Result<(), LogError> {
        let result = (|| {
            let active = st.active_mut();
            if self.config().sync == SyncPolicy::Always {
                active.sync_data()?;
            }
            let synced = active.synced_size == active.size;
            active.flush_indexes(synced)?;
            let base = active.next_offset;
            let segment = Segment::create(&*self.storage, &self.dir, base)?;
            self.storage.sync_dir(&self.dir).map_err(|e| LogError::io("fsync directory", &self.dir, e))?;
            st.segments.insert(base, segment);
            st.refresh_durable_end();
            self.checkpoint_locked(st, false)
        })();
        result.map_err(|e| self.fail(st, e))
    }

    /// Fsyncs until `offset` is durable, unless another caller's fsync already covered it.
    /// Makes every offset below `offset` durable, sharing an fsync with concurrent
    /// callers; returns at once if it already is.
    pub fn sync_through(&self, offset: u64) -> Result<(), LogError> {
        let _guard = self.lock_sync();
        if self.read_state().durable_end >= offset {
            return Ok(());
        }
        self.sync_locked().map(|_| ())
    }

    /// The fsync itself, with the sync lock held and the state lock released, so appends
    /// keep flowing into the page cache meanwhile. Fsyncs every segment with unsynced
    /// bytes (the active one, and under the lazy policies any sealed since the last sync).
    fn sync_locked(&self) -> Result<u64, LogError> {
        let (pending, truncations) = {
            let st = self.read_state();
            self.check_writable(&st)?;
            let pending: Vec<_> = st
                .segments
                .values()
                .filter(|s| s.synced_size < s.size)
                .map(|s| (s.base_offset, Arc::clone(&s.file), s.path.clone(), s.size, s.next_offset))
                .collect();
            if pending.is_empty() {
                return Ok(st.durable_end);
            }
            (pending, st.truncations)
        };
        let started = std::time::Instant::now();
        let synced: Result<(), LogError> =
            pending.iter().try_for_each(|(_, file, path, _, _)| sync_file(&**file, path));
        // A no-op unless the process installed a recorder (`herald serve` does).
        metrics::histogram!("herald_log_fsync_seconds").record(started.elapsed().as_secs_f64());
        let mut st = self.write_state();
        if let Err(error) = synced {
            return Err(self.fail(&mut st, error));
        }
        if st.truncations == truncations {
            for (base, _, _, size, next_offset) in &pending {
                if let Some(segment) = st.segments.get_mut(base) {
                    segment.mark_synced(*size, *next_offset);
                }
            }
            st.refresh_durable_end();
        }
        if st.active().synced_size == st.active().size {
            st.oldest_unsynced_ms = None;
        }
        let (segment, _, position) = st.durable_point();
        let moved_segment = segment != st.checkpoint.recovery_segment;
        let unchecked = position.saturating_sub(st.checkpoint.recovery_position);
        if moved_segment || unchecked >= self.config().checkpoint_interval_bytes {
            let result = self.checkpoint_locked(&mut st, false);
            result.map_err(|e| self.fail(&mut st, e))?;
        }
        Ok(st.durable_end)
    }

    /// Writes a checkpoint at the durable point, after persisting the index entries it
    /// vouches for. With `clean`, first fsyncs everything and marks a clean shutdown.
    pub(crate) fn checkpoint_locked(&self, st: &mut State, clean: bool) -> Result<(), LogError> {
        if clean {
            for segment in st.segments.values_mut() {
                segment.sync_data()?;
            }
            st.refresh_durable_end();
        }
        let (recovery_segment, recovery_offset, recovery_position) = st.durable_point();
        let checkpoint = Checkpoint {
            log_start_offset: st.log_start_offset,
            recovery_segment,
            recovery_offset,
            recovery_position,
            clean_shutdown: clean,
        };
        if checkpoint == st.checkpoint {
            return Ok(());
        }
        // Every segment the new recovery point vouches for, and that the old one did not,
        // gets its index entries written and fsynced first.
        let from = st.checkpoint.recovery_segment.min(recovery_segment);
        for segment in st.segments.range_mut(from..).map(|(_, s)| s) {
            segment.flush_indexes(true)?;
        }
        checkpoint.write(&*self.storage, &self.dir)?;
        st.checkpoint = checkpoint;
        Ok(())
    }

    /// Deletes the oldest sealed segments while `doomed` says so, after durably raising the
    /// log start offset past them (so a crash in between cannot resurrect their offsets).
    fn delete_segments_locked(
        &self,
        st: &mut State,
        mut doomed: impl FnMut(&State, &Segment) -> bool,
    ) -> Result<RetentionOutcome, LogError> {
        let sealed: Vec<u64> = st.segments.keys().copied().take(st.segments.len() - 1).collect();
        let mut victims = Vec::new();
        for base in sealed {
            if !doomed(st, &st.segments[&base]) {
                break;
            }
            victims.push(base);
        }
        let new_start = match victims.last() {
            Some(last) => st.segments[last].next_offset.max(st.log_start_offset),
            None => st.log_start_offset,
        };
        let mut outcome = RetentionOutcome { log_start_offset: new_start, ..RetentionOutcome::default() };
        let first_kept =
            st.segments.keys().copied().find(|base| !victims.contains(base)).expect("the active segment stays");
        let recovery_deleted = st.checkpoint.recovery_segment < first_kept;
        if new_start != st.checkpoint.log_start_offset || recovery_deleted {
            let mut checkpoint = Checkpoint { log_start_offset: new_start, ..st.checkpoint };
            if recovery_deleted {
                // Recovery then re-checks the first kept segment from its start.
                checkpoint.recovery_segment = first_kept;
                checkpoint.recovery_offset = first_kept;
                checkpoint.recovery_position = 0;
            }
            checkpoint.write(&*self.storage, &self.dir)?;
            st.checkpoint = checkpoint;
        }
        st.log_start_offset = new_start;
        for base in &victims {
            let segment = st.segments.remove(base).expect("victim exists");
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += segment.size;
            for path in segment.paths() {
                self.storage.remove_file(&path).map_err(|e| LogError::io("remove", path, e))?;
            }
        }
        if !victims.is_empty() {
            self.storage.sync_dir(&self.dir).map_err(|e| LogError::io("fsync directory", &self.dir, e))?;
            tracing::info!(dir = %self.dir.display(), segments = victims.len(), log_start_offset = new_start, "deleted old segments");
        }
        Ok(outcome)
    }

    fn truncate_locked(&self, st: &mut State, offset: u64) -> Result<u64, LogError> {
        let (&base, segment) = st.segments.range(..=offset).next_back().expect("offset is above the log start");
        let (position, new_end) = self.find_batch(segment, offset)?;
        // The recovery point must not trust bytes about to be rewritten, and a log start
        // inside the removed batch moves back to where the log now ends.
        let log_start_offset = st.log_start_offset.min(new_end);
        let recovery_beyond = st.checkpoint.recovery_segment > base
            || (st.checkpoint.recovery_segment == base && st.checkpoint.recovery_position > position);
        if recovery_beyond || log_start_offset != st.checkpoint.log_start_offset {
            let mut checkpoint = Checkpoint { log_start_offset, clean_shutdown: false, ..st.checkpoint };
            if recovery_beyond {
                checkpoint.recovery_segment = base;
                checkpoint.recovery_offset = new_end;
                checkpoint.recovery_position = position;
            }
            checkpoint.write(&*self.storage, &self.dir)?;
            st.checkpoint = checkpoint;
        }
        st.log_start_offset = log_start_offset;
        st.truncations += 1;
        let later: Vec<u64> = st.segments.range(base + 1..).map(|(b, _)| *b).collect();
        for later_base in later.into_iter().rev() {
            let segment = st.segments.remove(&later_base).expect("listed segment exists");
            for path in segment.paths() {
                self.storage.remove_file(&path).map_err(|e| LogError::io("remove", path, e))?;
            }
        }
        self.storage.sync_dir(&self.dir).map_err(|e| LogError::io("fsync directory", &self.dir, e))?;
        let segment = st.segments.get_mut(&base).expect("segment exists");
        segment.file.set_len(position).map_err(|e| LogError::io("truncate", &segment.path, e))?;
        segment.file.sync_data().map_err(|e| LogError::io("fsync", &segment.path, e))?;
        segment.truncate_memory(position, new_end);
        segment.refresh_after_truncate(self.config().index_interval_bytes)?;
        segment.flush_indexes(true)?;
        st.refresh_durable_end();
        if st.active().synced_size == st.active().size {
            st.oldest_unsynced_ms = None;
        }
        tracing::info!(dir = %self.dir.display(), offset, new_end, "truncated log");
        Ok(new_end)
    }
}

fn sync_file(file: &dyn StorageFile, path: &Path) -> Result<(), LogError> {
    file.sync_data().map_err(|e| LogError::io("fsync", path, e))
}
