//! Rewriting a sealed segment in place (what a compaction cleaner needs), crash-safely.
//!
//! The new contents go to `<base>.log.cleaned` and are fsynced; the swap then runs under
//! the log's segment-files lock (appends and reads go on; the state lock is taken only to
//! put the new segment in place):
//! 1. rename `.log.cleaned` to `.log.swap`, fsync the directory: **the commit point**;
//! 2. remove the old `.index` and `.timeindex`, fsync the directory;
//! 3. rename `.log.swap` over `.log`, fsync the directory;
//! 4. rebuild the indexes from the new file and write them.
//!
//! [`Log::open`] finishes what a crash interrupted ([`finish_swaps`]): a `.cleaned` file
//! is removed (the old segment stays), a `.swap` file is renamed over its segment after
//! the old indexes are removed (the new segment wins, its indexes are rebuilt). So after
//! a crash at any step a segment is either wholly old or wholly new. A rewrite that keeps
//! nothing removes the segment's files instead (the log then has a gap there), unless it
//! is the first segment, which stays empty: the log start is found from it at open.
//!
//! The log does not decide what to keep: the caller hands over batches with their final
//! offsets, in order, within the old segment's offsets. Offsets are never reassigned, so
//! a rewritten log has gaps, which scans and reads step over.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::BatchHeader;
use crate::error::LogError;
use crate::log::Log;
use crate::segment::{
    COMPACTED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX, file_name, parse_log_file_name,
};
use crate::storage::{Storage, StorageFile};

const CLEANED_SUFFIX: &str = ".cleaned";
/// Read size of [`Log::scan_sealed`].
const SCAN_CHUNK_BYTES: u64 = 1 << 20;
const SWAP_SUFFIX: &str = ".swap";

/// A sealed segment a cleaner may rewrite: wholly durable and below the recovery point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedSegment {
    /// Its first offset (and file name).
    pub base_offset: u64,
    /// The offset after its last batch.
    pub next_offset: u64,
    /// Bytes.
    pub size: u64,
    /// Its largest record timestamp (`i64::MIN` when empty).
    pub max_timestamp: i64,
}

/// What a committed rewrite changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Bytes before.
    pub bytes_before: u64,
    /// Bytes after (0: the segment was removed).
    pub bytes_after: u64,
}

/// A rewrite in progress; dropping it uncommitted removes its file.
#[derive(Debug)]
pub struct SegmentRewrite<'a> {
    log: &'a Log,
    old: SealedSegment,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    size: u64,
    next_offset: u64,
    done: bool,
}

impl Log {
    /// The sealed segments a cleaner may rewrite, oldest first: every segment before the
    /// active one that is fsynced and lies before the checkpoint's recovery segment (so
    /// recovery never re-checks a rewritten segment as a possibly torn tail).
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        let st = self.read_state();
        let active = st.active().base_offset;
        let recovery = st.checkpoint.recovery_segment.min(active);
        st.segments
            .range(..recovery)
            .map(|(_, s)| s)
            .filter(|s| s.synced_size == s.size && s.corrupt_at.is_none())
            .map(|s| SealedSegment {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                max_timestamp: s.max_timestamp,
            })
            .collect()
    }

    /// Hands each batch of the sealed `segment` to `each` (CRC-checked, in order) until it
    /// returns `false`. The file is read through its own handle without the log's locks,
    /// so appends and reads go on meanwhile: a sealed segment's bytes never change (a
    /// truncation or a rewrite replaces them, and [`SegmentRewrite::commit`] notices).
    pub fn scan_sealed<E: From<LogError>>(
        &self,
        segment: SealedSegment,
        mut each: impl FnMut(&BatchHeader, &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        let (file, path) = {
            let st = self.read_state();
            match st.segments.get(&segment.base_offset).filter(|s| s.size == segment.size) {
                Some(s) => (Arc::clone(&s.file), s.path.clone()),
                None => {
                    return Err(LogError::InvalidArgument(format!("segment {} changed", segment.base_offset)).into());
                }
            }
        };
        let io = |e| LogError::io("read", &path, e);
        let corrupt = |position, reason| LogError::Corrupt { segment: path.clone(), position, reason };
        let mut buf = Vec::new();
        let mut pos = 0u64;
        while pos < segment.size {
            let chunk = SCAN_CHUNK_BYTES.min(segment.size - pos);
            buf.resize(chunk as usize, 0);
            file.read_exact_at(pos, &mut buf).map_err(io)?;
            let header = BatchHeader::parse(&buf, segment.size - pos).map_err(|reason| corrupt(pos, reason))?;
            if u64::from(header.size) > chunk {
                buf.resize(header.size as usize, 0);
                file.read_exact_at(pos, &mut buf).map_err(io)?;
            }
            let mut at = 0usize;
            while let Ok(header) = BatchHeader::parse(&buf[at..], (buf.len() - at) as u64) {
                let batch = &buf[at..at + header.size as usize];
                if !header.crc_matches(batch) {
                    return Err(corrupt(pos + at as u64, crate::error::BatchError::CrcMismatch).into());
                }
                if !each(&header, batch)? {
                    return Ok(());
                }
                at += batch.len();
            }
            pos += at as u64;
        }
        Ok(())
    }

    /// Starts rewriting `segment` (one [`Log::sealed_segments`] returned).
    pub fn rewrite_segment(&self, segment: SealedSegment) -> Result<SegmentRewrite<'_>, LogError> {
        let path = self.dir.join(format!("{}{CLEANED_SUFFIX}", file_name(segment.base_offset, LOG_SUFFIX)));
        let file = self.storage.open(&path, true).map_err(|e| LogError::io("open", &path, e))?;
        if file.len().map_err(|e| LogError::io("stat", &path, e))? > 0 {
            file.set_len(0).map_err(|e| LogError::io("truncate", &path, e))?;
        }
        Ok(SegmentRewrite {
            log: self,
            old: segment,
            path,
            file,
            size: 0,
            next_offset: segment.base_offset,
            done: false,
        })
    }
}

impl SegmentRewrite<'_> {
    /// Appends `batches` (whole v2 batches with their final offsets) to the new segment.
    /// Each must frame, match its CRC, come after the previous one and lie within the old
    /// segment's offsets; otherwise nothing of `batches` is written.
    pub fn write(&mut self, batches: &[u8]) -> Result<(), LogError> {
        let mut pos = 0usize;
        let mut next = self.next_offset;
        while pos < batches.len() {
            let rest = &batches[pos..];
            let bad =
                |detail: String| LogError::InvalidArgument(format!("rewrite of {}: {detail}", self.path.display()));
            let header = BatchHeader::parse(rest, rest.len() as u64).map_err(|e| bad(e.to_string()))?;
            if !header.crc_matches(&rest[..header.size as usize]) {
                return Err(bad(format!("batch at offset {} fails its CRC", header.base_offset)));
            }
            if header.base_offset < next || header.next_offset() > self.old.next_offset {
                return Err(bad(format!(
                    "batch {}..{} is outside {next}..{}",
                    header.base_offset,
                    header.next_offset(),
                    self.old.next_offset
                )));
            }
            next = header.next_offset();
            pos += header.size as usize;
        }
        self.file.write_all_at(self.size, batches).map_err(|e| LogError::io("write", &self.path, e))?;
        self.size += batches.len() as u64;
        self.next_offset = next;
        Ok(())
    }

    /// Fsyncs the new segment and swaps it in. `None` when the old segment changed in the
    /// meantime (retention removed it, a truncation reached it): the rewrite is dropped.
    ///
    /// The file operations run under the log's segment-files lock only, so appends and
    /// reads go on; the state lock is taken at the end, to put the new segment in place.
    pub fn commit(mut self) -> Result<Option<Rewritten>, LogError> {
        self.file.sync_data().map_err(|e| LogError::io("fsync", &self.path, e))?;
        let log = self.log;
        let _files = crate::sync::lock(&log.segment_files);
        let (old_paths, first) = {
            let st = log.read_state();
            let first = st.segments.keys().next() == Some(&self.old.base_offset);
            let unchanged = st.segments.get(&self.old.base_offset).filter(|s| {
                s.size == self.old.size && s.next_offset == self.old.next_offset && s.synced_size == s.size
            });
            let below_recovery = self.old.base_offset < st.checkpoint.recovery_segment.min(st.active().base_offset);
            match unchanged {
                Some(segment) if st.failed.is_none() && below_recovery => (segment.paths(), first),
                _ => return Ok(None),
            }
        };
        self.done = true;
        let base = self.old.base_offset;
        let (storage, dir) = (&*log.storage, log.dir.as_path());
        // The first segment stays, empty, so the log start a reopen finds does not move.
        let swapped = if self.size == 0 && !first {
            remove_segment(storage, dir, &old_paths, &self.path).map(|()| None)
        } else {
            swap_in(storage, dir, base, &self.path, log.config().index_interval_bytes).map(Some)
        };
        let mut st = log.write_state();
        match swapped {
            Ok(Some(segment)) => {
                st.segments.insert(base, segment);
            }
            Ok(None) => {
                st.segments.remove(&base);
            }
            // Past the commit point the files are mid-swap: reopening finishes it.
            Err(error) => return Err(log.fail(&mut st, error)),
        }
        st.refresh_durable_end();
        Ok(Some(Rewritten { bytes_before: self.old.size, bytes_after: self.size }))
    }
}

impl Drop for SegmentRewrite<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.log.storage.remove_file(&self.path);
        }
    }
}

fn remove_segment(storage: &dyn Storage, dir: &Path, paths: &[PathBuf], cleaned: &Path) -> Result<(), LogError> {
    for path in paths.iter().map(PathBuf::as_path).chain([cleaned]) {
        storage.remove_file(path).map_err(|e| LogError::io("remove", path, e))?;
    }
    storage.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Steps 1-4 of the module doc for the fsynced `cleaned` file of segment `base`.
fn swap_in(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    cleaned: &Path,
    index_interval: u32,
) -> Result<Segment, LogError> {
    let swap = dir.join(format!("{}{SWAP_SUFFIX}", file_name(base, LOG_SUFFIX)));
    // The marker is made durable with the commit point (before it, it only lets recovery
    // accept gaps in a segment that has none).
    let marker = dir.join(file_name(base, COMPACTED_SUFFIX));
    storage.open(&marker, true).map_err(|e| LogError::io("create", &marker, e))?;
    storage.rename(cleaned, &swap).map_err(|e| LogError::io("rename", cleaned, e))?;
    storage.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))?;
    finish_swap(storage, dir, base, &swap)?;
    let mut segment = Segment::open(storage, dir, base)?;
    segment.compacted = true;
    let len = segment.file.len().map_err(|e| LogError::io("stat", &segment.path, e))?;
    let stop = segment.recover(len, len, index_interval)?;
    if let Some(reason) = stop.error {
        return Err(LogError::Corrupt { segment: segment.path.clone(), position: stop.position, reason });
    }
    segment.mark_synced(segment.size, segment.next_offset);
    segment.flush_indexes(true)?;
    Ok(segment)
}

/// Steps 2 and 3: the old indexes go (durably) before the new data takes the name.
fn finish_swap(storage: &dyn Storage, dir: &Path, base: u64, swap: &Path) -> Result<(), LogError> {
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = dir.join(file_name(base, suffix));
        match storage.remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(LogError::io("remove", path, e)),
            _ => {}
        }
    }
    storage.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))?;
    let log = dir.join(file_name(base, LOG_SUFFIX));
    storage.rename(swap, &log).map_err(|e| LogError::io("rename", swap, e))?;
    storage.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))
}

/// At open: removes unfinished rewrites and finishes committed ones. Returns whether any
/// file changed (the caller lists the directory again).
pub(crate) fn finish_swaps(storage: &dyn Storage, dir: &Path, names: &[String]) -> Result<bool, LogError> {
    let mut changed = false;
    for name in names {
        let path = dir.join(name);
        if name.strip_suffix(CLEANED_SUFFIX).is_some_and(|stem| parse_log_file_name(stem).is_some()) {
            storage.remove_file(&path).map_err(|e| LogError::io("remove", &path, e))?;
            changed = true;
        } else if let Some(base) = name.strip_suffix(SWAP_SUFFIX).and_then(parse_log_file_name) {
            tracing::info!(dir = %dir.display(), base, "finishing a segment rewrite a crash interrupted");
            finish_swap(storage, dir, base, &path)?;
            changed = true;
        }
    }
    Ok(changed)
}
