//! Batches as real producers build them, in every codec, stored and served byte for byte.
//!
//! The batches come from the `kafka-protocol` crate's encoder (the codec the broker
//! uses), with keys, headers, idempotent-producer fields and compression, so the log is
//! checked against the bytes a Kafka client really sends, not just our own builder.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use herald_log::{FsStorage, Log, LogConfig, SyncPolicy};

use crate::common::{assert_batches_eq, placed, read_all};

/// A producer-style batch: idempotent (producer id, epoch, sequences), keyed, with headers.
fn producer_batch(compression: Compression, first_sequence: i32, count: i32) -> Vec<u8> {
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let mut headers = IndexMap::new();
            headers.insert(StrBytes::from_static_str("event-type"), Some(Bytes::from_static(b"user.created")));
            headers.insert(StrBytes::from_static_str("correlation-id"), Some(Bytes::from(format!("c-{i}"))));
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 4242,
                producer_epoch: 3,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                sequence: first_sequence + i,
                timestamp: 1_700_000_000_000 + i64::from(i),
                key: Some(Bytes::from(format!("user-{}", i % 7))),
                value: Some(Bytes::from(format!(
                    "{{\"userId\":\"user-{i}\",\"email\":\"u{i}@example.com\",\"pad\":\"{}\"}}",
                    "x".repeat(100)
                ))),
                headers,
            }
        })
        .collect();
    let mut buf = Vec::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode");
    buf
}

#[test]
fn every_codec_is_stored_and_served_byte_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config =
        LogConfig { segment_bytes: 16 * 1024, ..LogConfig { sync: SyncPolicy::Always, ..LogConfig::default() } };
    let log = Log::open(Arc::new(FsStorage), tmp.path().join("users-0"), config).expect("open");
    let mut expected = Vec::new();
    let mut sequence = 0;
    for round in 0..4 {
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let count = 1 + (round * 17) % 50;
            let batch = producer_batch(compression, sequence, count);
            sequence += count;
            let batches = RecordBatchDecoder::decode_batch_info(&mut Bytes::from(batch.clone())).expect("info");
            assert_eq!(batches.len(), 1, "{compression:?}: one batch per request");
            let info = log.append(&mut batch.clone(), 0).unwrap_or_else(|e| panic!("{compression:?}: {e}"));
            assert_eq!(info.last_offset - info.base_offset + 1, count as u64);
            expected.push((info.base_offset, placed(&batch, info.base_offset)));
        }
    }
    assert_batches_eq(&read_all(&log).expect("read"), &expected);
    drop(log);
    let log = Log::open(Arc::new(FsStorage), tmp.path().join("users-0"), config).expect("reopen");
    let served = read_all(&log).expect("read");
    assert_batches_eq(&served, &expected);
    // And the client-side decoder reads back the records with their offsets.
    for (base, batch) in &served {
        let set = RecordBatchDecoder::decode(&mut Bytes::from(batch.clone())).expect("decode");
        assert_eq!(set.records[0].offset as u64, *base);
        assert_eq!(set.records[0].producer_id, 4242);
        assert!(set.records.iter().all(|r| r.headers.contains_key(&StrBytes::from_static_str("event-type"))));
    }
}
