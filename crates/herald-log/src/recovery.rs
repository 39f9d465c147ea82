//! Opening a log: finding its segments and deciding what on disk to believe.
//!
//! After a clean shutdown everything is synced and indexed, so open only loads indexes and
//! walks a few headers. Otherwise the checkpoint's recovery point splits each log in two:
//! before it, data was durable and valid when the checkpoint was written and is walked by
//! header only; from it on, every batch's CRC is checked and the log is cut at the first
//! bad one (a torn tail). A bad batch where a cut would lose data known to be valid (a
//! sealed segment, or before the recovery point) is never cut: it is reported on read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{CHECKPOINT_TMP_FILE, Checkpoint};
use crate::config::LogConfig;
use crate::error::{BatchError, LogError};
use crate::log::{Log, State};
use crate::segment::{
    COMPACTED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX, file_name, parse_log_file_name,
};
use crate::storage::Storage;

impl Log {
    /// Opens (creating if needed) the partition log in `dir`, recovering from whatever a
    /// crash left. Never panics on bad files: bad tails are cut and logged, and
    /// contradictions recovery cannot settle safely are errors.
    pub fn open(storage: Arc<dyn Storage>, dir: impl Into<PathBuf>, config: LogConfig) -> Result<Self, LogError> {
        config.validate()?;
        let dir = dir.into();
        fn io<'a>(op: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> LogError + 'a {
            move |e| LogError::io(op, path, e)
        }
        storage.create_dir_all(&dir).map_err(io("create directory", &dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            storage.sync_dir(parent).map_err(io("fsync directory", parent))?;
        }
        let mut names = storage.list_dir(&dir).map_err(io("list", &dir))?;
        if crate::rewrite::finish_swaps(&*storage, &dir, &names)? {
            names = storage.list_dir(&dir).map_err(io("list", &dir))?;
        }
        let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_log_file_name(n)).collect();
        bases.sort_unstable();
        remove_strays(&*storage, &dir, &names, &bases)?;
        let checkpoint = Checkpoint::read(&*storage, &dir)?;
        let clean = checkpoint.is_some_and(|c| c.clean_shutdown);
        let mut log_start_offset = checkpoint.map_or(0, |c| c.log_start_offset);
        let mut recovery = checkpoint.map_or((0, 0), |c| (c.recovery_segment, c.recovery_position));
        if let (Some(&first), Some(&last)) = (bases.first(), bases.last()) {
            if recovery.0 < first {
                recovery = (first, 0);
            }
            if recovery.0 > last || !bases.contains(&recovery.0) {
                return Err(LogError::Inconsistent {
                    dir,
                    detail: format!("checkpoint names segment {} that does not exist", recovery.0),
                });
            }
        }
        // Segments wholly below the log start were being deleted when the process stopped.
        let doomed = bases.windows(2).take_while(|w| w[1] <= log_start_offset).count();
        remove_segment_files(&*storage, &dir, &bases[..doomed])?;
        bases.drain(..doomed);

        let mut segments = BTreeMap::new();
        let last_base = bases.last().copied();
        for (i, &base) in bases.iter().enumerate() {
            let mut segment = Segment::open(&*storage, &dir, base)?;
            segment.compacted = names.contains(&file_name(base, COMPACTED_SUFFIX));
            let file_len = segment.file.len().map_err(io("stat", &segment.path))?;
            let is_last = Some(base) == last_base;
            let (trusted_end, verify_from) = if clean || base < recovery.0 {
                (file_len, file_len)
            } else if base == recovery.0 {
                (recovery.1, recovery.1)
            } else {
                (0, 0)
            };
            let stop = segment.recover(trusted_end, verify_from, config.index_interval_bytes)?;
            let unverified = !clean && base >= recovery.0;
            // A segment past the recovery point that ends short of the next one's base lost
            // its unsynced end: the log ends there too.
            // (A compacted segment may end early: its last records were cleaned away.)
            let short = !segment.compacted && bases.get(i + 1).is_some_and(|next| stop.next_offset != *next);
            let reason = match stop.error.clone() {
                Some(reason) => reason,
                None if unverified && short => {
                    let expected = bases[i + 1];
                    BatchError::UnexpectedOffset { expected, found: stop.next_offset }
                }
                None => {
                    segments.insert(base, segment);
                    continue;
                }
            };
            // Past the recovery point nothing was known durable: the first bad batch is
            // where the log ends, in this segment and for every later one.
            let tail = unverified && stop.position >= verify_from.min(file_len);
            if tail {
                let cut = file_len - stop.position;
                let later = &bases[i + 1..];
                tracing::warn!(
                    segment = %segment.path.display(), position = stop.position, offset = stop.next_offset,
                    bytes_cut = cut, later_segments_removed = later.len(), %reason, "cutting a torn or corrupt tail"
                );
                segment.file.set_len(stop.position).map_err(io("truncate", &segment.path))?;
                segments.insert(base, segment);
                remove_segment_files(&*storage, &dir, later)?;
                break;
            } else if is_last {
                return Err(LogError::Corrupt { segment: segment.path.clone(), position: stop.position, reason });
            }
            tracing::error!(
                segment = %segment.path.display(), position = stop.position, %reason,
                "corrupt batch inside a sealed segment; it will be reported on read, nothing is cut"
            );
            segment.corrupt_at = Some((stop.position, reason));
            segments.insert(base, segment);
        }
        check_continuity(&dir, &segments)?;
        if segments.is_empty() {
            let segment = Segment::create(&*storage, &dir, log_start_offset)?;
            storage.sync_dir(&dir).map_err(io("fsync directory", &dir))?;
            segments.insert(log_start_offset, segment);
        }
        let first_base = *segments.keys().next().expect("at least one segment");
        log_start_offset = log_start_offset.max(first_base);
        let log_end = segments.values().next_back().map_or(first_base, |s| s.next_offset);
        if log_start_offset > log_end {
            tracing::warn!(dir = %dir.display(), log_start_offset, log_end, "log start beyond the recovered end; lowering it");
            log_start_offset = log_end;
        }
        // What a killed process left in the page cache is made durable before it is served.
        for segment in segments.values_mut() {
            if !clean && segment.base_offset >= recovery.0 {
                segment.file.sync_data().map_err(io("fsync", &segment.path))?;
            }
            segment.mark_synced(segment.size, segment.next_offset);
            segment.flush_indexes(true)?;
        }
        let mut state = State {
            segments,
            log_start_offset,
            durable_end: 0,
            failed: None,
            checkpoint: checkpoint.unwrap_or_default(),
            oldest_unsynced_ms: None,
            truncations: 0,
        };
        state.refresh_durable_end();
        let log = Self::from_parts(storage, dir, config, state);
        {
            let mut st = log.write_state();
            log.checkpoint_locked(&mut st, false)?;
            tracing::info!(
                dir = %log.dir.display(), clean, segments = st.segments.len(),
                log_start_offset = st.log_start_offset, log_end_offset = st.log_end(), "opened log"
            );
        }
        Ok(log)
    }
}

/// Removes files no segment owns: a half-written checkpoint and orphan indexes.
fn remove_strays(storage: &dyn Storage, dir: &Path, names: &[String], bases: &[u64]) -> Result<(), LogError> {
    for name in names {
        let orphan_index = [INDEX_SUFFIX, TIME_INDEX_SUFFIX, COMPACTED_SUFFIX].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .and_then(|stem| parse_log_file_name(&format!("{stem}{LOG_SUFFIX}")))
                .is_some_and(|base| !bases.contains(&base))
        });
        if orphan_index || name == CHECKPOINT_TMP_FILE {
            let path = dir.join(name);
            storage.remove_file(&path).map_err(|e| LogError::io("remove", path, e))?;
        }
    }
    Ok(())
}

/// Removes the files of the segments with these bases, then fsyncs the directory.
fn remove_segment_files(storage: &dyn Storage, dir: &Path, bases: &[u64]) -> Result<(), LogError> {
    for base in bases {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = dir.join(file_name(*base, suffix));
            match storage.remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(LogError::io("remove", path, e)),
                _ => {}
            }
        }
    }
    if !bases.is_empty() {
        storage.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))?;
    }
    Ok(())
}

/// Segments must not overlap; gaps are expected after compaction or reported corruption.
fn check_continuity(dir: &Path, segments: &BTreeMap<u64, Segment>) -> Result<(), LogError> {
    for (a, b) in segments.values().zip(segments.values().skip(1)) {
        if a.next_offset > b.base_offset {
            return Err(LogError::Inconsistent {
                dir: dir.to_path_buf(),
                detail: format!(
                    "segment {} ends at offset {} past the next segment's base {}",
                    a.base_offset, a.next_offset, b.base_offset
                ),
            });
        }
        if a.next_offset < b.base_offset && a.corrupt_at.is_none() {
            // Compaction leaves gaps; so did corruption reported above.
            tracing::debug!(dir = %dir.display(), from = a.next_offset, to = b.base_offset, "gap between segments");
        }
    }
    Ok(())
}
