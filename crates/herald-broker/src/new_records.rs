//! Record batches the broker's process writes itself — the committed-offsets log's, the
//! schema registry's, and the in-process gateway's produces: one uncompressed v2 batch
//! without a producer id — and [`replay`], which reads an internal log's records back at
//! open.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// A record to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Bytes)>,
}

/// One uncompressed v2 batch of `records` (offsets from 0: the log assigns the real
/// ones), all stamped `now_ms`.
pub fn encode_batch(records: &[NewRecord], now_ms: i64) -> Result<Vec<u8>, String> {
    encode_batch_timed(records, |_| (now_ms, TimestampType::Creation))
}

/// [`encode_batch`] with each record's time (and its type) from `time_of(index)`.
pub(crate) fn encode_batch_timed(
    records: &[NewRecord],
    time_of: impl Fn(usize) -> (i64, TimestampType),
) -> Result<Vec<u8>, String> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (timestamp, timestamp_type) = time_of(i);
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type,
                offset: i as i64,
                // The encoder starts a new batch whenever offset - sequence changes.
                sequence: i as i32,
                timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.iter().map(|(k, v)| (StrBytes::from_string(k.clone()), Some(v.clone()))).collect(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).map_err(|e| format!("encoding a batch: {e}"))?;
    Ok(buf.to_vec())
}

/// Reads every record of `log` from its start, handing each value to `each` in order. A
/// batch that does not decode ends the read of what follows it in that chunk, with a
/// warning (never a panic on bad bytes); `name` says which log in the warning.
pub fn replay(
    log: &herald_log::Log,
    name: &str,
    mut each: impl FnMut(i64, Option<&[u8]>),
) -> Result<(), herald_log::LogError> {
    use bytes::Buf as _;
    let mut next = log.log_start_offset();
    while next < log.high_watermark() {
        let read = log.read(next, 1 << 20)?;
        if read.bytes.is_empty() {
            break;
        }
        let before = next;
        let mut bytes = Bytes::from(read.bytes);
        while bytes.has_remaining() {
            let remaining = bytes.remaining();
            let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) else {
                tracing::warn!(log = name, offset = next, "undecodable batch; skipping the rest of this read");
                break;
            };
            for record in set.records {
                next = next.max(record.offset as u64 + 1);
                each(record.offset, record.value.as_deref());
            }
            if bytes.remaining() == remaining {
                break;
            }
        }
        if next == before {
            break;
        }
    }
    Ok(())
}
