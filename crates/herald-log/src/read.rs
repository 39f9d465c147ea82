//! The read side of [`Log`]: fetch by offset and lookup by timestamp.

use crate::batch::{BATCH_HEADER_BYTES, BatchHeader, read_varint};
use crate::error::{BatchError, LogError};
use crate::log::{Log, ReadBatches, State, TimestampOffset};
use crate::scan::{ScanStop, scan};
use crate::segment::Segment;

/// Read size when walking from an index entry to the batch asked for: the walk spans at
/// most one index interval plus one batch.
const SEEK_CHUNK_BYTES: u64 = 8 * 1024;

impl Log {
    /// Returns whole batches starting with the one that holds `offset`, up to `max_bytes`
    /// but always at least one batch (Kafka's rule, so a large batch cannot stall a
    /// consumer). Batches come from one segment and are CRC-checked on the way out: a
    /// corrupt first batch is an error, a corrupt later one ends the result before it.
    pub fn read(&self, offset: u64, max_bytes: u32) -> Result<ReadBatches, LogError> {
        let st = self.read_state();
        let high_watermark = self.high_watermark_of(&st);
        let log_start_offset = st.log_start_offset;
        if offset < log_start_offset || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange { offset, log_start_offset, high_watermark });
        }
        let empty = ReadBatches { bytes: Vec::new(), high_watermark, log_start_offset };
        if offset == high_watermark {
            return Ok(empty);
        }
        let Some(segment) = segment_holding(&st, offset)? else {
            return Ok(empty);
        };
        let limit = visible_bytes(segment, high_watermark);
        let (start, _) = self.find_batch_within(segment, offset.max(segment.base_offset), limit)?;
        let bytes = read_batches(segment, start, limit, max_bytes)?;
        Ok(ReadBatches { bytes, high_watermark, log_start_offset })
    }

    /// The largest record timestamp among segments readers may see (batch-level, like
    /// the time index); `None` for an empty log.
    pub fn max_timestamp(&self) -> Option<i64> {
        let st = self.read_state();
        let visible =
            |segment: &&Segment| segment.next_offset > st.log_start_offset && segment.max_timestamp != i64::MIN;
        st.segments.values().filter(visible).map(|segment| segment.max_timestamp).max()
    }

    /// The first offset whose timestamp is at least `timestamp`, among offsets readers
    /// may see; `None` when every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>, LogError> {
        let st = self.read_state();
        let high_watermark = self.high_watermark_of(&st);
        for segment in st.segments.values() {
            if segment.max_timestamp < timestamp || segment.next_offset <= st.log_start_offset {
                continue;
            }
            let limit = visible_bytes(segment, high_watermark);
            let from = segment
                .time_index
                .below(timestamp)
                .map_or(segment.base_offset, |e| segment.base_offset + u64::from(e.relative_offset));
            let mut found = None;
            let stop = scan_from_hint(segment, from, limit, |at, h| {
                if h.max_timestamp >= timestamp && h.last_offset() >= st.log_start_offset {
                    found = Some((at, *h));
                }
                found.is_none()
            })?;
            let Some((position, header)) = found else {
                if let Some(reason) = stop.error {
                    return Err(LogError::Corrupt { segment: segment.path.clone(), position: stop.position, reason });
                }
                continue;
            };
            let hit = record_at_or_after(segment, position, &header, timestamp)?;
            let offset = hit.offset.max(st.log_start_offset);
            return Ok(Some(TimestampOffset { offset, ..hit }));
        }
        Ok(None)
    }

    /// Position and base offset of the batch holding `offset` in `segment`.
    pub(crate) fn find_batch(&self, segment: &Segment, offset: u64) -> Result<(u64, u64), LogError> {
        self.find_batch_within(segment, offset, segment.size)
    }

    fn find_batch_within(&self, segment: &Segment, offset: u64, limit: u64) -> Result<(u64, u64), LogError> {
        let mut found = None;
        let stop = scan_from_hint(segment, offset, limit, |at, h| {
            if h.last_offset() >= offset {
                found = Some((at, h.base_offset));
            }
            found.is_none()
        })?;
        match (found, stop.error) {
            (Some(hit), _) => Ok(hit),
            (None, Some(reason)) => {
                Err(LogError::Corrupt { segment: segment.path.clone(), position: stop.position, reason })
            }
            (None, None) => Err(LogError::Inconsistent {
                dir: segment.path.clone(),
                detail: format!("offset {offset} not found before byte {limit}"),
            }),
        }
    }
}

/// Walks batches (by header) from the index entry at or before `offset` up to `limit`.
///
/// Index files are a cache: recovery checks their last entry, not every entry. If the
/// entry used here does not land on a batch, the walk starts over from the segment's
/// start, so a damaged index costs time, never a wrong answer or a false corruption report.
fn scan_from_hint(
    segment: &Segment,
    offset: u64,
    limit: u64,
    mut visit: impl FnMut(u64, &BatchHeader) -> bool,
) -> Result<ScanStop, LogError> {
    let io_err = |e| LogError::io("read", &segment.path, e);
    let (pos, next_offset) = segment.seek_hint(offset);
    let stop =
        scan(&*segment.file, pos, limit, next_offset, false, false, SEEK_CHUNK_BYTES, &mut visit).map_err(io_err)?;
    if pos > 0 && stop.error.is_some() && stop.position == pos {
        tracing::warn!(segment = %segment.path.display(), position = pos, "index entry misses its batch; scanning from the start");
        return scan(&*segment.file, 0, limit, segment.base_offset, false, false, SEEK_CHUNK_BYTES, visit)
            .map_err(io_err);
    }
    Ok(stop)
}

/// The segment whose batches hold `offset`, or the next one if `offset` falls in a gap.
fn segment_holding(st: &State, offset: u64) -> Result<Option<&Segment>, LogError> {
    let segment = st.segments.range(..=offset).next_back().map(|(_, s)| s);
    match segment {
        Some(s) if offset < s.next_offset => Ok(Some(s)),
        Some(Segment { corrupt_at: Some((position, reason)), path, .. }) => {
            Err(LogError::Corrupt { segment: path.clone(), position: *position, reason: reason.clone() })
        }
        _ => Ok(st.segments.range(offset + 1..).next().map(|(_, s)| s).filter(|s| s.size > 0)),
    }
}

/// Bytes of `segment` readers may see: all of it, or its durable prefix when the high
/// watermark stops inside it.
fn visible_bytes(segment: &Segment, high_watermark: u64) -> u64 {
    if high_watermark >= segment.next_offset { segment.size } else { segment.synced_size }
}

/// Reads whole batches from `start`: as many as fit in `max_bytes`, at least one.
fn read_batches(segment: &Segment, start: u64, limit: u64, max_bytes: u32) -> Result<Vec<u8>, LogError> {
    let io_err = |e| LogError::io("read", &segment.path, e);
    let corrupt = |position, reason| LogError::Corrupt { segment: segment.path.clone(), position, reason };
    let window = u64::from(max_bytes).max(BATCH_HEADER_BYTES as u64).min(limit - start);
    let mut buf = vec![0u8; window as usize];
    segment.file.read_exact_at(start, &mut buf).map_err(io_err)?;
    let first = BatchHeader::parse(&buf, limit - start).map_err(|reason| corrupt(start, reason))?;
    if u64::from(first.size) > window {
        buf.resize(first.size as usize, 0);
        segment.file.read_exact_at(start, &mut buf).map_err(io_err)?;
    }
    let mut end = 0usize;
    while end < buf.len() {
        let Ok(header) = BatchHeader::parse(&buf[end..], (buf.len() - end) as u64) else {
            break;
        };
        if !header.crc_matches(&buf[end..end + header.size as usize]) {
            if end == 0 {
                return Err(corrupt(start, BatchError::CrcMismatch));
            }
            tracing::error!(segment = %segment.path.display(), position = start + end as u64, "corrupt batch");
            break;
        }
        end += header.size as usize;
    }
    buf.truncate(end);
    Ok(buf)
}

/// Within the batch at `position`, the first record with a timestamp at or after `target`.
fn record_at_or_after(
    segment: &Segment,
    position: u64,
    header: &BatchHeader,
    target: i64,
) -> Result<TimestampOffset, LogError> {
    let batch_level = TimestampOffset { offset: header.base_offset, timestamp: header.max_timestamp };
    const COMPRESSION_MASK: i16 = 0x07;
    const LOG_APPEND_TIME: i16 = 0x08;
    if header.attributes & (COMPRESSION_MASK | LOG_APPEND_TIME) != 0 {
        return Ok(batch_level);
    }
    let mut batch = vec![0u8; header.size as usize];
    segment.file.read_exact_at(position, &mut batch).map_err(|e| LogError::io("read", &segment.path, e))?;
    let mut cursor = &batch[BATCH_HEADER_BYTES..];
    for _ in 0..header.record_count {
        let Some((length, after_length)) = read_varint(cursor) else { break };
        let Ok(length) = usize::try_from(length) else { break };
        let Some(record) = after_length.get(..length) else { break };
        let Some(fields) = record.get(1..) else { break };
        let Some((timestamp_delta, rest)) = read_varint(fields) else { break };
        let Some((offset_delta, _)) = read_varint(rest) else { break };
        let timestamp = header.base_timestamp.saturating_add(timestamp_delta);
        if timestamp >= target {
            let offset = header.base_offset + offset_delta.clamp(0, i64::from(header.last_offset_delta)) as u64;
            return Ok(TimestampOffset { offset, timestamp });
        }
        cursor = &after_length[length..];
    }
    Ok(batch_level)
}
