//! Records out of the log for HTTP (decoded batches, values shown as JSON, text or
//! base64) and into it (an uncompressed batch built from a produce request).

use base64::Engine as _;
use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use serde::Serialize;

/// One record as the gateway shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Message {
    /// The partition.
    pub(crate) partition: i32,
    /// The offset.
    pub(crate) offset: i64,
    /// The record's timestamp (ms since the epoch).
    pub(crate) timestamp: i64,
    /// The key, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    /// Headers; values as text (base64 when not UTF-8).
    pub(crate) headers: serde_json::Map<String, serde_json::Value>,
    /// The value: JSON when it parses, else text, else base64.
    pub(crate) value: serde_json::Value,
    /// `json`, `text`, `base64` or `null`.
    pub(crate) value_encoding: &'static str,
}

impl Message {
    /// The `event-type` header, if any.
    pub(crate) fn event_type(&self) -> Option<&str> {
        self.headers.get("event-type").and_then(|v| v.as_str())
    }
}

/// Decodes the batches of a log read, keeping records at or after `from` (control
/// records left out); also returns the offset after the last record read.
pub(crate) fn decode(partition: i32, bytes: Vec<u8>, from: i64) -> Result<(Vec<Message>, i64), String> {
    let (records, next) = decode_raw(bytes, from)?;
    Ok((records.into_iter().map(|r| message(partition, r)).collect(), next))
}

/// [`decode`] with the records' bytes as stored (for sending them on unchanged).
pub(crate) fn decode_raw(bytes: Vec<u8>, from: i64) -> Result<(Vec<Record>, i64), String> {
    let mut bytes = Bytes::from(bytes);
    let (mut records, mut next) = (Vec::new(), from);
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| format!("an undecodable batch: {e}"))?;
        for record in set.records.into_iter().filter(|r| r.offset >= from) {
            next = next.max(record.offset + 1);
            if !record.control {
                records.push(record);
            }
        }
    }
    Ok((records, next))
}

/// A record as the gateway shows it.
pub(crate) fn message(partition: i32, record: Record) -> Message {
    let headers = record
        .headers
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.map_or(serde_json::Value::Null, |v| text_or_base64(&v))))
        .collect();
    let key = record.key.map(|k| match text_or_base64(&k) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    });
    let (value, value_encoding) = match record.value {
        None => (serde_json::Value::Null, "null"),
        Some(v) => match serde_json::from_slice::<serde_json::Value>(&v) {
            Ok(json) => (json, "json"),
            Err(_) => match std::str::from_utf8(&v) {
                Ok(text) => (serde_json::Value::String(text.to_string()), "text"),
                Err(_) => (base64::engine::general_purpose::STANDARD.encode(&v).into(), "base64"),
            },
        },
    };
    Message { partition, offset: record.offset, timestamp: record.timestamp, key, headers, value, value_encoding }
}

fn text_or_base64(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.into(),
        Err(_) => base64::engine::general_purpose::STANDARD.encode(bytes).into(),
    }
}

/// A record to produce.
pub use herald_broker::internals::NewRecord as Outgoing;

/// One uncompressed batch of `records`, as the broker's own writes are built.
pub use herald_broker::internals::encode_batch as encode;

/// Kafka's default partitioner for keyed records: murmur2 of the key, made positive,
/// modulo the partition count (what librdkafka's `murmur2_random` and the Java client
/// do), so a key lands where Kafka clients put it.
pub(crate) fn partition_for_key(key: &[u8], partitions: u32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1)) as i32
}

fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if let Some(first) = rest.first() {
        h ^= u32::from(*first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_published_values() {
        // From the Java client's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 3] =
            [(b"21", -973_932_308), (b"foobar", -790_332_482), (b"a-little-bit-long-string", -985_981_536)];
        for (key, want) in cases {
            assert_eq!(murmur2(key) as i32, want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn an_encoded_batch_decodes_to_its_records() {
        let out = Outgoing {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"{\"a\":1}")),
            headers: vec![("event-type".into(), Bytes::from_static(b"x.y"))],
        };
        let bytes =
            encode(&[out.clone(), Outgoing { value: Some(Bytes::from_static(b"plain")), ..out }], 7).expect("encode");
        let (messages, next) = decode(2, bytes, 0).expect("decode");
        assert_eq!(next, 2);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].value, serde_json::json!({"a": 1}));
        assert_eq!(messages[1].value_encoding, "text");
        assert_eq!(messages[0].event_type(), Some("x.y"));
        assert_eq!((messages[1].partition, messages[1].offset, messages[1].timestamp), (2, 1, 7));
    }
}
