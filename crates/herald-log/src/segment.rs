//! One segment: a `.log` file of batches starting at `base_offset`, with its two indexes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{BATCH_HEADER_BYTES, BatchHeader};
use crate::error::BatchError;
use crate::error::LogError;
use crate::index::{OffsetEntry, SparseIndex, TimeEntry};
use crate::scan::{RECOVERY_CHUNK_BYTES, ScanStop, scan};
use crate::storage::{Storage, StorageFile};

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// An empty file marking a segment compaction rewrote.
pub(crate) const COMPACTED_SUFFIX: &str = ".compacted";

/// `00000000000000000042.log` for base offset 42, as Kafka names them.
pub(crate) fn file_name(base_offset: u64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset named by a segment's `.log` file name.
pub(crate) fn parse_log_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(LOG_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn StorageFile>,
    pub(crate) offset_index: SparseIndex<OffsetEntry>,
    pub(crate) time_index: SparseIndex<TimeEntry>,
    /// Bytes of valid batches: the logical end of the file.
    pub(crate) size: u64,
    /// Offset after the last batch.
    pub(crate) next_offset: u64,
    /// Prefix of the file known to be fsynced...
    pub(crate) synced_size: u64,
    /// ...and the offset at its end.
    pub(crate) synced_next_offset: u64,
    /// A batch that failed its check inside data recovery must not cut (a sealed segment
    /// or below the recovery point): reads that reach it report it.
    pub(crate) corrupt_at: Option<(u64, BatchError)>,
    /// Largest record timestamp, `i64::MIN` when empty.
    pub(crate) max_timestamp: i64,
    max_timestamp_offset: u64,
    /// `maxTimestamp` of the first batch; `segment_ms` rolls count from it.
    pub(crate) first_batch_timestamp: Option<i64>,
    /// Rewritten by compaction (a `.compacted` marker): its batches may skip offsets even
    /// where recovery checks them, and it may end before the next segment begins.
    pub(crate) compacted: bool,
    bytes_since_index_entry: u64,
}

impl Segment {
    /// Creates (or empties) the files of a new segment. The caller fsyncs the directory.
    pub(crate) fn create(storage: &dyn Storage, dir: &Path, base_offset: u64) -> Result<Self, LogError> {
        let mut segment = Self::open_files(storage, dir, base_offset, true)?;
        for (file, path) in segment.files() {
            // Only leftovers are truncated: on ext4 a truncate-to-zero marks the file for
            // writeback on close (auto_da_alloc), which would flush a whole segment just
            // before retention deletes it.
            if file.len().map_err(|e| LogError::io("stat", &path, e))? > 0 {
                file.set_len(0).map_err(|e| LogError::io("truncate", path, e))?;
            }
        }
        segment.offset_index = SparseIndex::empty(segment.offset_index_file());
        segment.time_index = SparseIndex::empty(segment.time_index_file());
        Ok(segment)
    }

    /// Opens an existing segment with its indexes as loaded from disk, not yet trusted:
    /// the caller runs [`Segment::recover`] before using it.
    pub(crate) fn open(storage: &dyn Storage, dir: &Path, base_offset: u64) -> Result<Self, LogError> {
        Self::open_files(storage, dir, base_offset, false)
    }

    fn open_files(storage: &dyn Storage, dir: &Path, base_offset: u64, create: bool) -> Result<Self, LogError> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = storage.open(&path, create).map_err(|e| LogError::io("open", &path, e))?;
        let open_index = |suffix: &str| {
            let p = dir.join(file_name(base_offset, suffix));
            storage.open(&p, true).map_err(|e| LogError::io("open", &p, e))
        };
        let index_file = open_index(INDEX_SUFFIX)?;
        let time_file = open_index(TIME_INDEX_SUFFIX)?;
        let load_err = |e| LogError::io("read index", dir.join(file_name(base_offset, INDEX_SUFFIX)), e);
        let offset_index = SparseIndex::load(index_file).map_err(load_err)?;
        let time_index = SparseIndex::load(time_file).map_err(load_err)?;
        Ok(Self {
            base_offset,
            path,
            file,
            offset_index,
            time_index,
            size: 0,
            next_offset: base_offset,
            synced_size: 0,
            synced_next_offset: base_offset,
            corrupt_at: None,
            max_timestamp: i64::MIN,
            max_timestamp_offset: base_offset,
            first_batch_timestamp: None,
            compacted: false,
            bytes_since_index_entry: 0,
        })
    }

    fn offset_index_file(&self) -> Arc<dyn StorageFile> {
        Arc::clone(self.offset_index.file())
    }

    fn time_index_file(&self) -> Arc<dyn StorageFile> {
        Arc::clone(self.time_index.file())
    }

    fn files(&self) -> [(Arc<dyn StorageFile>, PathBuf); 3] {
        [
            (Arc::clone(&self.file), self.path.clone()),
            (self.offset_index_file(), self.path.with_extension("index")),
            (self.time_index_file(), self.path.with_extension("timeindex")),
        ]
    }

    /// Paths of the segment's three files.
    pub(crate) fn paths(&self) -> [PathBuf; 3] {
        self.files().map(|(_, path)| path)
    }

    /// Brings memory in line with the file after open.
    ///
    /// Index entries before `trusted_end` that check out are kept; batches from there to
    /// `verify_from` are walked by header only (they were durable and valid when the
    /// checkpoint was written); from `verify_from` on, each batch's CRC is checked. Returns
    /// where the walk stopped; the caller decides whether a stop before the end of the file
    /// is a torn tail to cut or corruption to report.
    pub(crate) fn recover(
        &mut self,
        trusted_end: u64,
        verify_from: u64,
        index_interval: u32,
    ) -> Result<ScanStop, LogError> {
        let file_len = self.file.len().map_err(|e| LogError::io("stat", &self.path, e))?;
        let (start_pos, start_offset) = self.trusted_index_prefix(trusted_end.min(file_len))?;
        let io_err = |e| LogError::io("read", &self.path, e);
        let mut visited = Vec::new();
        let header_end = verify_from.clamp(start_pos, file_len);
        let chunk = RECOVERY_CHUNK_BYTES;
        let mut stop = scan(&*self.file, start_pos, header_end, start_offset, false, false, chunk, |pos, h| {
            visited.push((pos, *h));
            true
        })
        .map_err(io_err)?;
        if stop.error.is_some() || stop.position < file_len {
            let exact = !self.compacted;
            stop = scan(&*self.file, stop.position, file_len, stop.next_offset, true, exact, chunk, |pos, h| {
                visited.push((pos, *h));
                true
            })
            .map_err(io_err)?;
        }
        self.size = start_pos;
        self.next_offset = start_offset;
        for (pos, header) in visited {
            self.record_batch(pos, &header, index_interval);
        }
        self.size = stop.position;
        self.next_offset = stop.next_offset;
        Ok(stop)
    }

    /// Drops index entries that cannot be trusted and returns where to resume walking.
    fn trusted_index_prefix(&mut self, trusted_end: u64) -> Result<(u64, u64), LogError> {
        let keep = self.offset_index.entries().partition_point(|e| u64::from(e.position) < trusted_end);
        self.offset_index.truncate(keep);
        if let Some(last) = self.offset_index.last().copied() {
            let expected = self.base_offset + u64::from(last.relative_offset);
            let mut header = [0u8; BATCH_HEADER_BYTES];
            let lands = self.file.read_exact_at(u64::from(last.position), &mut header).is_ok()
                && BatchHeader::parse(&header, u64::MAX).is_ok_and(|h| h.base_offset == expected);
            if !lands {
                tracing::warn!(segment = %self.path.display(), "offset index does not match the segment; rebuilding it");
                self.offset_index.truncate(0);
            }
        }
        // The two index files are synced separately, so a power loss can keep the offset
        // index's tail and lose the time index's. The walk must then start at or before the
        // batch of the last time entry kept (the running maximum up to its index point), or
        // batches in between are never seen and `max_timestamp` comes back too low.
        let offset_rel = self.offset_index.last().map_or(0, |e| e.relative_offset);
        let keep_time = self.time_index.entries().partition_point(|e| e.relative_offset <= offset_rel);
        self.time_index.truncate(keep_time);
        let keep = match self.time_index.last() {
            Some(t) => self.offset_index.entries().partition_point(|e| e.relative_offset <= t.relative_offset),
            None => 0,
        };
        self.offset_index.truncate(keep);
        let (pos, rel) = self.offset_index.last().map_or((0, 0), |e| (u64::from(e.position), e.relative_offset));
        // Only the last time entry can lie past the resume point (at the batch holding the
        // maximum); re-walking that batch does not push it again.
        if let Some(last) = self.time_index.last() {
            self.max_timestamp = last.timestamp;
            self.max_timestamp_offset = self.base_offset + u64::from(last.relative_offset);
        }
        // The walk resumes at the last entry's batch, which is already indexed.
        self.bytes_since_index_entry = 0;
        if pos > 0 {
            self.first_batch_timestamp = self.read_first_batch_timestamp()?;
        }
        Ok((pos, self.base_offset + u64::from(rel)))
    }

    fn read_first_batch_timestamp(&self) -> Result<Option<i64>, LogError> {
        let mut header = [0u8; BATCH_HEADER_BYTES];
        self.file.read_exact_at(0, &mut header).map_err(|e| LogError::io("read", &self.path, e))?;
        Ok(BatchHeader::parse(&header, u64::MAX).ok().map(|h| h.max_timestamp))
    }

    /// Accounts for a batch written at `position` (by an append or found by a scan).
    pub(crate) fn record_batch(&mut self, position: u64, header: &BatchHeader, index_interval: u32) {
        debug_assert_eq!(position, self.size);
        debug_assert!(header.base_offset >= self.next_offset);
        let relative = (header.base_offset - self.base_offset) as u32;
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        let index_now = position > 0 && self.bytes_since_index_entry >= u64::from(index_interval);
        if index_now {
            self.offset_index.push(OffsetEntry { relative_offset: relative, position: position as u32 });
            self.bytes_since_index_entry = 0;
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.max_timestamp_offset = header.base_offset;
        }
        let time_due = self.time_index.last().is_none_or(|e| self.max_timestamp > e.timestamp);
        if (index_now || position == 0) && time_due {
            let relative_offset = (self.max_timestamp_offset - self.base_offset) as u32;
            self.time_index.push(TimeEntry { timestamp: self.max_timestamp, relative_offset });
        }
        self.bytes_since_index_entry += u64::from(header.size);
        self.size = position + u64::from(header.size);
        self.next_offset = header.next_offset();
    }

    /// Position and offset of a batch at or before the one holding `offset`.
    pub(crate) fn seek_hint(&self, offset: u64) -> (u64, u64) {
        let relative = offset.saturating_sub(self.base_offset).min(u64::from(u32::MAX)) as u32;
        self.offset_index
            .floor(relative)
            .map_or((0, self.base_offset), |e| (u64::from(e.position), self.base_offset + u64::from(e.relative_offset)))
    }

    /// Writes index entries the files lack.
    /// With `fsync`, also fsyncs the index files that changed since their last fsync.
    pub(crate) fn flush_indexes(&mut self, fsync: bool) -> Result<(), LogError> {
        let path = self.path.with_extension("index");
        let err = |e| LogError::io("write index", &path, e);
        self.offset_index.flush().map_err(err)?;
        self.time_index.flush().map_err(err)?;
        if fsync {
            self.offset_index.sync().map_err(err)?;
            self.time_index.sync().map_err(err)?;
        }
        Ok(())
    }

    /// Fsyncs the segment's data if any of it is unsynced.
    pub(crate) fn sync_data(&mut self) -> Result<(), LogError> {
        if self.synced_size < self.size {
            self.file.sync_data().map_err(|e| LogError::io("fsync", &self.path, e))?;
            self.mark_synced(self.size, self.next_offset);
        }
        Ok(())
    }

    /// Records that the file is durable up to `size` bytes, which end at `next_offset`.
    pub(crate) fn mark_synced(&mut self, size: u64, next_offset: u64) {
        if size > self.synced_size {
            self.synced_size = size;
            self.synced_next_offset = next_offset;
        }
    }

    /// Drops everything from `position` (a batch boundary holding `offset`) on, in memory.
    pub(crate) fn truncate_memory(&mut self, position: u64, offset: u64) {
        let rel = (offset - self.base_offset) as u32;
        let keep = self.offset_index.entries().partition_point(|e| e.relative_offset < rel);
        self.offset_index.truncate(keep);
        let keep_time = self.time_index.entries().partition_point(|e| e.relative_offset < rel);
        self.time_index.truncate(keep_time);
        self.size = position;
        self.next_offset = offset;
        if self.synced_size > position {
            self.synced_size = position;
            self.synced_next_offset = offset;
        }
    }

    /// Recomputes the timestamp bookkeeping after a truncation by walking from the last
    /// index entry to the end.
    pub(crate) fn refresh_after_truncate(&mut self, index_interval: u32) -> Result<(), LogError> {
        let end = self.size;
        let end_offset = self.next_offset;
        self.max_timestamp = i64::MIN;
        self.max_timestamp_offset = self.base_offset;
        self.first_batch_timestamp = None;
        let stop = self.recover(end, end, index_interval)?;
        if stop.position != end || stop.next_offset != end_offset {
            return Err(LogError::Inconsistent {
                dir: self.path.clone(),
                detail: format!("segment changed under truncation: walk ended at {stop:?}"),
            });
        }
        Ok(())
    }
}
