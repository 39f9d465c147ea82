//! Walking the batches of a segment file: recovery, index rebuilds and reads all use this.

use std::io;

use crate::batch::{BATCH_HEADER_BYTES, BatchHeader};
use crate::error::BatchError;
use crate::storage::StorageFile;

/// Read size for recovery scans: large, sequential.
pub(crate) const RECOVERY_CHUNK_BYTES: u64 = 256 * 1024;

/// Where a scan stopped, and why if it did not reach its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanStop {
    /// Position after the last good batch.
    pub(crate) position: u64,
    /// The offset after the last good batch (the start offset if none).
    pub(crate) next_offset: u64,
    /// Why the batch at `position` was not accepted; `None` when the scan reached its end.
    pub(crate) error: Option<BatchError>,
}

/// Walks the batches of `file` in `from..to`, starting at offset `next_offset`.
///
/// Each batch must frame correctly, fit before `to`, and start at or after the offset
/// where the previous one ended (gaps are what compaction leaves), or with `exact` right
/// there; with `verify_crc` its CRC-32C is checked too. `visit` sees each
/// accepted batch with its position and returns whether to go on. Reads are chunked
/// (`chunk_bytes`), so a scan costs sequential IO, and a batch is read whole only when
/// its CRC is checked.
#[expect(clippy::too_many_arguments, reason = "each caller sets all of them; a struct would only rename them")]
pub(crate) fn scan(
    file: &dyn StorageFile,
    from: u64,
    to: u64,
    mut next_offset: u64,
    verify_crc: bool,
    exact: bool,
    chunk_bytes: u64,
    mut visit: impl FnMut(u64, &BatchHeader) -> bool,
) -> io::Result<ScanStop> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = from;
    let mut pos = from;
    let stop = |position, next_offset, error| Ok(ScanStop { position, next_offset, error: Some(error) });
    while pos < to {
        let header_bytes = BATCH_HEADER_BYTES as u64;
        if pos + header_bytes > buf_start + buf.len() as u64 {
            let n = chunk_bytes.max(header_bytes).min(to - pos);
            if n < header_bytes {
                return stop(pos, next_offset, BatchError::Truncated { needed: header_bytes, available: n });
            }
            load(file, pos, n, &mut buf, &mut buf_start)?;
        }
        let off = (pos - buf_start) as usize;
        let header = match BatchHeader::parse(&buf[off..], to - pos) {
            Ok(header) => header,
            Err(error) => return stop(pos, next_offset, error),
        };
        // `baseOffset` is outside the CRC, so where batches were only ever appended (what
        // recovery checks, unless compaction rewrote the segment) offsets must follow on
        // exactly; elsewhere they only move forward, as a compacted segment skips some.
        let misplaced = if exact { header.base_offset != next_offset } else { header.base_offset < next_offset };
        if misplaced {
            let error = BatchError::UnexpectedOffset { expected: next_offset, found: header.base_offset };
            return stop(pos, next_offset, error);
        }
        let size = u64::from(header.size);
        if verify_crc {
            let crc_ok = if off as u64 + size <= buf.len() as u64 {
                header.crc_matches(&buf[off..off + size as usize])
            } else if size <= chunk_bytes {
                load(file, pos, size, &mut buf, &mut buf_start)?;
                header.crc_matches(&buf[..size as usize])
            } else {
                let mut whole = vec![0u8; size as usize];
                file.read_exact_at(pos, &mut whole)?;
                header.crc_matches(&whole)
            };
            if !crc_ok {
                return stop(pos, next_offset, BatchError::CrcMismatch);
            }
        }
        let go_on = visit(pos, &header);
        next_offset = header.next_offset();
        pos += size;
        if !go_on {
            break;
        }
    }
    Ok(ScanStop { position: pos, next_offset, error: None })
}

fn load(file: &dyn StorageFile, pos: u64, n: u64, buf: &mut Vec<u8>, buf_start: &mut u64) -> io::Result<()> {
    buf.resize(n as usize, 0);
    file.read_exact_at(pos, buf)?;
    *buf_start = pos;
    Ok(())
}
