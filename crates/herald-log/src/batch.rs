//! Kafka RecordBatch v2 framing: the fixed 61-byte header, its validation, and the CRC.
//!
//! The log never decodes records or decompresses; it only reads the header fields it
//! needs (offsets, timestamps, lengths) and checks the CRC-32C that covers everything
//! from `attributes` to the end of the batch. `baseOffset`, `batchLength`,
//! `partitionLeaderEpoch` and `magic` sit outside the CRC, which is what lets the log
//! rewrite `baseOffset` in place.

use crate::error::{BatchError, InvalidBatch};

/// Bytes before `batchLength` counts: baseOffset (8) + batchLength (4).
pub(crate) const LOG_OVERHEAD: usize = 12;
/// The fixed header of a v2 batch, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;

const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORD_COUNT_OFFSET: usize = 57;

/// The header fields of one batch, read without touching its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Total size on disk, header included.
    pub size: u32,
    /// `lastOffsetDelta`: the batch covers `base_offset ..= base_offset + last_offset_delta`.
    pub last_offset_delta: u32,
    /// `attributes` (compression in the low 3 bits, timestamp type, transactional, control).
    pub attributes: i16,
    /// First record's timestamp.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: u32,
    /// The stored CRC-32C.
    pub crc: u32,
}

impl BatchHeader {
    /// Offset of the last record.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Parses and checks the framing of the batch at the start of `bytes`.
    ///
    /// `bytes` may hold only the header; `available` says how many bytes of the batch's
    /// container follow its start, so a batch that would run past them is rejected.
    pub fn parse(bytes: &[u8], available: u64) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES || available < BATCH_HEADER_BYTES as u64 {
            return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES as u64, available });
        }
        let batch_length = i32_at(bytes, 8);
        let min_length = (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32;
        if batch_length < min_length {
            return Err(BatchError::BadLength { batch_length });
        }
        let size = batch_length as u64 + LOG_OVERHEAD as u64;
        if size > available {
            return Err(BatchError::Truncated { needed: size, available });
        }
        let magic = bytes[MAGIC_OFFSET] as i8;
        if magic != 2 {
            return Err(BatchError::BadMagic { magic });
        }
        let base_offset = i64_at(bytes, 0);
        let last_offset_delta = i32_at(bytes, LAST_OFFSET_DELTA_OFFSET);
        let record_count = i32_at(bytes, RECORD_COUNT_OFFSET);
        if last_offset_delta < 0 || record_count < 1 || record_count != last_offset_delta.saturating_add(1) {
            return Err(BatchError::BadRecordCount { record_count, last_offset_delta });
        }
        Ok(Self {
            base_offset: base_offset as u64,
            size: size as u32,
            last_offset_delta: last_offset_delta as u32,
            attributes: i16_at(bytes, ATTRIBUTES_OFFSET),
            base_timestamp: i64_at(bytes, BASE_TIMESTAMP_OFFSET),
            max_timestamp: i64_at(bytes, MAX_TIMESTAMP_OFFSET),
            producer_id: i64_at(bytes, PRODUCER_ID_OFFSET),
            producer_epoch: i16_at(bytes, PRODUCER_EPOCH_OFFSET),
            base_sequence: i32_at(bytes, BASE_SEQUENCE_OFFSET),
            record_count: record_count as u32,
            crc: u32::from_be_bytes(bytes[CRC_OFFSET..CRC_OFFSET + 4].try_into().expect("4 bytes")),
        })
    }

    /// True when `batch` (exactly this batch's bytes) carries a CRC that matches its content.
    pub fn crc_matches(&self, batch: &[u8]) -> bool {
        batch.len() == self.size as usize && crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]) == self.crc
    }
}

/// Validates every batch in `bytes` (one produce request's records for one partition).
///
/// Returns the headers in order; fails on the first bad batch, so a caller that writes
/// only after this returns never makes part of a request visible.
pub fn validate_batches(bytes: &[u8], batch_bytes_max: u32) -> Result<Vec<BatchHeader>, InvalidBatch> {
    if bytes.is_empty() {
        return Err(InvalidBatch { position: 0, reason: BatchError::Empty });
    }
    let mut headers = Vec::with_capacity(1);
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let header = BatchHeader::parse(rest, rest.len() as u64)
            .map_err(|reason| InvalidBatch { position: pos as u64, reason })?;
        if header.size > batch_bytes_max {
            let reason = BatchError::TooLarge { size: header.size, max: batch_bytes_max };
            return Err(InvalidBatch { position: pos as u64, reason });
        }
        if !header.crc_matches(&rest[..header.size as usize]) {
            return Err(InvalidBatch { position: pos as u64, reason: BatchError::CrcMismatch });
        }
        headers.push(header);
        pos += header.size as usize;
    }
    Ok(headers)
}

/// Reads a zigzag varint (Kafka's record field encoding, at most 10 bytes) from the start
/// of `bytes`: the value and what follows it.
pub fn read_varint(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, &bytes[i + 1..]));
        }
    }
    None
}

/// Writes `base_offset` into the batch starting at `batch` (outside the CRC).
pub(crate) fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::batch_bytes;

    #[test]
    fn a_built_batch_validates_and_reports_its_fields() {
        let batch = batch_bytes(3, 10, 1_000);
        let headers = validate_batches(&batch, 1 << 20).expect("valid");
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].record_count, 3);
        assert_eq!(headers[0].last_offset_delta, 2);
        assert_eq!(headers[0].size as usize, batch.len());
        assert_eq!(headers[0].max_timestamp, 1_002);
    }

    #[test]
    fn rewriting_the_base_offset_keeps_the_crc_valid() {
        let mut batch = batch_bytes(2, 5, 0);
        set_base_offset(&mut batch, 77);
        let header = validate_batches(&batch, 1 << 20).expect("valid")[0];
        assert_eq!(header.base_offset, 77);
    }

    #[test]
    fn every_single_bit_flip_in_the_crc_range_is_caught() {
        let batch = batch_bytes(2, 8, 0);
        for byte in ATTRIBUTES_OFFSET..batch.len() {
            let mut bad = batch.clone();
            bad[byte] ^= 0x10;
            assert!(validate_batches(&bad, 1 << 20).is_err(), "flip at {byte} went unnoticed");
        }
    }

    #[test]
    fn framing_errors_are_typed() {
        let batch = batch_bytes(1, 4, 0);
        assert!(matches!(reason(&batch[..30], 1 << 20), BatchError::Truncated { .. }));
        let mut bad_magic = batch.clone();
        bad_magic[MAGIC_OFFSET] = 1;
        assert!(matches!(reason(&bad_magic, 1 << 20), BatchError::BadMagic { magic: 1 }));
        let mut bad_len = batch.clone();
        bad_len[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(reason(&bad_len, 1 << 20), BatchError::BadLength { .. }));
        assert!(matches!(reason(&batch, 10), BatchError::TooLarge { .. }));
        assert!(matches!(reason(&[], 10), BatchError::Empty));
    }

    fn reason(bytes: &[u8], max: u32) -> BatchError {
        validate_batches(bytes, max).expect_err("must be rejected").reason
    }
}
