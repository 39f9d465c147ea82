//! The records of a batch as the cleaner sees them: read in place from the records
//! section (the batch's own bytes, or for a compressed batch its decompressed section; no
//! allocation per record), and a run of them written as a batch of its own by copying
//! each record's bytes with its offset delta moved, compressed again with the batch's
//! codec. Records are never decoded into fields beyond what the cleaner needs, so what it
//! keeps (headers, repeated header keys, attributes) is exactly what the producer sent.

use std::borrow::Cow;

use bytes::Bytes;
use herald_log::{BATCH_HEADER_BYTES, BatchHeader, read_varint};

const COMPRESSION_MASK: i16 = 0x07;
const LOG_APPEND_TIME: i16 = 0x08;

/// One record of an uncompressed batch, borrowed from the batch's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRecord<'a> {
    /// Its offset.
    pub(crate) offset: u64,
    /// Its timestamp delta from the batch's base timestamp.
    pub(crate) timestamp_delta: i64,
    pub(crate) key: Option<&'a [u8]>,
    /// A null value.
    pub(crate) tombstone: bool,
    /// The record's attributes byte.
    attributes: u8,
    /// Everything after the offset delta: key, value and headers, as stored.
    tail: &'a [u8],
}

/// The records section of `batch`: its own bytes, or decompressed; `None` (with a
/// warning) when it does not open.
pub(crate) fn section<'a>(header: &BatchHeader, batch: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    let body = batch.get(BATCH_HEADER_BYTES..)?;
    match header.attributes & COMPRESSION_MASK {
        0 => Some(Cow::Borrowed(body)),
        codec => match crate::codec::decompress(codec, Bytes::copy_from_slice(body)) {
            Ok(opened) => Some(Cow::Owned(opened.to_vec())),
            Err(error) => {
                tracing::warn!(offset = header.base_offset, %error, "cleaner: a batch does not open; keeping it as it is");
                None
            }
        },
    }
}

/// The records of a batch's `section` read in place, or `None` when they do not parse as
/// its header says.
pub(crate) fn records<'a>(header: &BatchHeader, section: &'a [u8]) -> Option<Vec<RawRecord<'a>>> {
    // The count is the producer's word: each record takes at least 7 bytes.
    let mut out = Vec::with_capacity((header.record_count as usize).min(section.len() / 7));
    let mut rest = section;
    for _ in 0..header.record_count {
        let (length, after) = read_varint(rest)?;
        let body = after.get(..usize::try_from(length).ok()?)?;
        rest = &after[body.len()..];
        let (&attributes, fields) = body.split_first()?;
        let (timestamp_delta, fields) = read_varint(fields)?;
        let (offset_delta, tail) = read_varint(fields)?;
        let (key_length, after_key_length) = read_varint(tail)?;
        let (key, after_key) = match key_length {
            -1 => (None, after_key_length),
            n => {
                let n = usize::try_from(n).ok()?;
                (Some(after_key_length.get(..n)?), &after_key_length[n..])
            }
        };
        let (value_length, _) = read_varint(after_key)?;
        let offset_delta = u64::try_from(offset_delta).ok().filter(|d| *d <= u64::from(header.last_offset_delta))?;
        out.push(RawRecord {
            offset: header.base_offset + offset_delta,
            timestamp_delta,
            key,
            tombstone: value_length < 0,
            attributes,
            tail,
        });
    }
    rest.is_empty().then_some(out)
}

/// One batch holding `run` (records of the batch `header` describes, at consecutive
/// offsets), as the original would have been written had it held only them: the same
/// attributes and codec, producer, leader epoch and base timestamp, its sequences where
/// they were. `None` if compressing fails.
pub(crate) fn encode_run(header: &BatchHeader, batch: &[u8], run: &[RawRecord<'_>]) -> Option<Vec<u8>> {
    let first = run[0].offset;
    let shift = (first - header.base_offset) as i64;
    let mut records = Vec::new();
    let mut body = Vec::new();
    for record in run {
        body.clear();
        body.push(record.attributes);
        write_varint(&mut body, record.timestamp_delta);
        write_varint(&mut body, (record.offset - header.base_offset) as i64 - shift);
        body.extend_from_slice(record.tail);
        write_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let max_timestamp = if header.attributes & LOG_APPEND_TIME != 0 {
        header.max_timestamp
    } else {
        run.iter()
            .map(|r| header.base_timestamp.saturating_add(r.timestamp_delta))
            .max()
            .unwrap_or(header.max_timestamp)
    };
    let codec = header.attributes & COMPRESSION_MASK;
    if codec != 0 {
        records = crate::codec::compress(codec, &records)
            .map_err(|error| tracing::warn!(offset = header.base_offset, %error, "cleaner: re-compressing failed"))
            .ok()?;
    }
    let base_sequence = if header.base_sequence < 0 {
        -1
    } else {
        crate::producer_state::add_sequence(header.base_sequence, shift as i32)
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
    out.extend_from_slice(&first.to_be_bytes());
    out.extend_from_slice(&((BATCH_HEADER_BYTES - 12 + records.len()) as i32).to_be_bytes());
    out.extend_from_slice(&batch[12..17]); // partitionLeaderEpoch, magic
    out.extend_from_slice(&[0; 4]); // the CRC, below
    out.extend_from_slice(&header.attributes.to_be_bytes());
    out.extend_from_slice(&((run.len() - 1) as i32).to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&base_sequence.to_be_bytes());
    out.extend_from_slice(&(run.len() as i32).to_be_bytes());
    out.extend_from_slice(&records);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// Appends `value` as a zigzag varint.
fn write_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}
