//! Message sets, the record format of Produce v0-2 and Fetch v0-3 (magic 0, and magic 1
//! with timestamps), converted to and from v2 record batches as Kafka converts them.
//!
//! A message: offset (i64), size (i32), then CRC-32 (IEEE, over the rest), magic,
//! attributes (codec in the low 3 bits, timestamp type in bit 3 from magic 1), a timestamp
//! (magic 1), the key and the value (i32 length, -1 for null). A compressed message's
//! value is a message set of its own (one level deep). Up: each message becomes a record
//! of one uncompressed v2 batch (the log assigns the offsets); a magic 0 message has no
//! time and takes the append's. Down: every record of the batches becomes an uncompressed
//! message at its offset; control records are left out.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};

use crate::new_records::{NewRecord, encode_batch_timed};

/// crc, magic, attributes, key length, value length.
const MESSAGE_BYTES_MIN: usize = 4 + 1 + 1 + 4 + 4;
/// Most bytes the compressed messages of one set may open up to, all together (each is
/// bounded by kafka-protocol on its own; many of them must not add up to gigabytes).
const DECOMPRESSED_BYTES_MAX: usize = kafka_protocol::compression::DECOMPRESSED_BYTES_MAX;
/// Least a down-conversion produces before it may stop (it also stops at about the size
/// of the batches it converts, so a compressed log cannot make an answer balloon).
const DOWN_CONVERTED_BYTES_MIN: usize = 1 << 20;
const LOG_APPEND_TIME: i8 = 0x08;

struct Message {
    #[cfg_attr(not(test), expect(dead_code, reason = "up-conversion lets the log assign offsets"))]
    offset: i64,
    timestamp: Option<i64>,
    log_append_time: bool,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// One v2 batch holding the messages of `set`.
pub(super) fn to_batch(set: &[u8], now_ms: i64) -> Result<Vec<u8>, String> {
    let mut messages = Vec::new();
    let mut opened = 0;
    read_set(Bytes::copy_from_slice(set), Some(&mut opened), &mut messages)?;
    if messages.is_empty() {
        return Err("an empty message set".to_string());
    }
    let records: Vec<NewRecord> = messages
        .iter()
        .map(|m| NewRecord { key: m.key.clone(), value: m.value.clone(), headers: Vec::new() })
        .collect();
    encode_batch_timed(&records, |i| {
        let m = &messages[i];
        let kind = if m.log_append_time { TimestampType::LogAppend } else { TimestampType::Creation };
        (m.timestamp.filter(|t| *t >= 0 && !m.log_append_time).unwrap_or(now_ms), kind)
    })
}

/// Reads the messages of `set` into `out`. A compressed message is opened only in an outer
/// set (`opened`: the bytes opened so far; Kafka nests one level).
fn read_set(mut set: Bytes, mut opened: Option<&mut usize>, out: &mut Vec<Message>) -> Result<(), String> {
    while !set.is_empty() {
        let head = set.get(..12).ok_or("a message cut short")?;
        let offset = i64::from_be_bytes(head[..8].try_into().map_err(|_| "offset")?);
        let size = i32::from_be_bytes(head[8..12].try_into().map_err(|_| "size")?);
        let size = usize::try_from(size).ok().filter(|s| *s >= MESSAGE_BYTES_MIN).ok_or("a bad message size")?;
        if set.len() < 12 + size {
            return Err("a message cut short".to_string());
        }
        let message = set.slice(12..12 + size);
        set = set.slice(12 + size..);
        let crc = u32::from_be_bytes(message[..4].try_into().map_err(|_| "crc")?);
        if crc32fast::hash(&message[4..]) != crc {
            return Err("a message fails its CRC".to_string());
        }
        let (magic, attributes) = (message[4] as i8, message[5] as i8);
        let mut rest = message.slice(6..);
        let timestamp = match magic {
            0 => None,
            1 => Some(i64::from_be_bytes(take(&mut rest, 8)?[..].try_into().map_err(|_| "timestamp")?)),
            other => return Err(format!("magic {other} in a message set")),
        };
        let key = bytes_field(&mut rest)?;
        let value = bytes_field(&mut rest)?;
        let log_append_time = attributes & LOG_APPEND_TIME != 0;
        match (attributes & 0x07, opened.as_deref_mut()) {
            (0, _) => out.push(Message { offset, timestamp, log_append_time, key, value }),
            (codec, Some(total)) => {
                let inner = decompress(codec, value.ok_or("a compressed message without a value")?)?;
                *total += inner.len();
                if *total > DECOMPRESSED_BYTES_MAX {
                    return Err(format!("a message set opens up to more than {DECOMPRESSED_BYTES_MAX} bytes"));
                }
                read_set(inner, None, out)?;
            }
            (_, None) => return Err("a compressed message inside a compressed message".to_string()),
        }
    }
    Ok(())
}

fn decompress(codec: i8, value: Bytes) -> Result<Bytes, String> {
    // zstd came with v2 batches; a message set never carries it.
    if !(1..=3).contains(&codec) {
        return Err(format!("compression codec {codec} in a message set"));
    }
    crate::codec::decompress(i16::from(codec), value).map_err(|e| format!("a message set: {e}"))
}

fn take(rest: &mut Bytes, n: usize) -> Result<Bytes, String> {
    if rest.len() < n {
        return Err("a message field cut short".to_string());
    }
    Ok(rest.split_to(n))
}

fn bytes_field(rest: &mut Bytes) -> Result<Option<Bytes>, String> {
    let length = i32::from_be_bytes(take(rest, 4)?[..].try_into().map_err(|_| "length")?);
    match usize::try_from(length) {
        Ok(n) => take(rest, n).map(Some),
        Err(_) => Ok(None),
    }
}

/// The records of `batches` (whole v2 batches) as uncompressed messages of `magic`: all
/// of them, or whole batches until about `batches`' size (at least 1 MiB); the client
/// asks again from where they end. A batch is never cut: the client's next fetch would
/// land inside it, get it whole again and never move on.
pub(super) fn from_batches(batches: &[u8], magic: i8) -> Result<Vec<u8>, String> {
    let limit = batches.len().max(DOWN_CONVERTED_BYTES_MIN);
    let mut bytes = Bytes::copy_from_slice(batches);
    let mut out = BytesMut::new();
    let mut message = BytesMut::new();
    while !bytes.is_empty() && out.len() < limit {
        let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| format!("a stored batch does not decode: {e}"))?;
        for record in set.records.iter().filter(|r| !r.control) {
            message.clear();
            message.put_i8(magic);
            let log_append = record.timestamp_type == TimestampType::LogAppend;
            message.put_i8(if magic == 1 && log_append { LOG_APPEND_TIME } else { 0 });
            if magic == 1 {
                message.put_i64(record.timestamp);
            }
            put_bytes(&mut message, record.key.as_deref());
            put_bytes(&mut message, record.value.as_deref());
            out.put_i64(record.offset);
            out.put_i32(message.len() as i32 + 4);
            out.put_u32(crc32fast::hash(&message));
            out.put_slice(&message);
        }
    }
    Ok(out.to_vec())
}

fn put_bytes(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            out.put_i32(b.len() as i32);
            out.put_slice(b);
        }
        None => out.put_i32(-1),
    }
}

/// A message read back: offset, timestamp (magic 1), key and value.
#[cfg(test)]
pub(super) type Read = (i64, Option<i64>, Option<Bytes>, Option<Bytes>);

/// The messages of an uncompressed `set`.
#[cfg(test)]
pub(super) fn read_messages(set: Bytes) -> Result<Vec<Read>, String> {
    let mut messages = Vec::new();
    read_set(set, None, &mut messages)?;
    Ok(messages.into_iter().map(|m| (m.offset, m.timestamp, m.key, m.value)).collect())
}
