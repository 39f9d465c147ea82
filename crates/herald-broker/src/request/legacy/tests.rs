//! The legacy codecs against request frames kafka-python 3.0.12 sent (captured by
//! `crates/compat-tests/tests/legacy_clients.py` with a capture directory): each decodes
//! as its version, the broker answers it, and the answers read back in the old shapes.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use super::message_set;
use super::*;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::request::{Decoded, Reply, decode_request, handle_frame};

/// The frame kafka-python sent for `api` at `version`.
pub(crate) fn fixture(api: ApiKey, version: i16) -> Bytes {
    macro_rules! fixtures {
        ($(($key:literal, $v:literal)),*) => {
            match (api as i16, version) {
                $(($key, $v) => Bytes::from_static(include_bytes!(concat!("fixtures/", $key, "-v", $v, ".bin"))),)*
                _ => panic!("no fixture for {api:?} v{version}"),
            }
        };
    }
    fixtures!(
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 0),
        (8, 0),
        (8, 1),
        (9, 0),
        (19, 0),
        (19, 1),
        (20, 0),
        (23, 0),
        (23, 1),
        (32, 0),
        (35, 0)
    )
}

/// The topics the fixtures name (the capture run made them as it went).
const TOPICS: &[&str] = &["legacy-0-8-2-none", "legacy-0-9-gzip", "legacy-0-10-0-none", "legacy-0-10-1-snappy"];

/// A broker with the fixtures' topics, and in the last one (which the capture run filled
/// with a Produce v2 that is not among the fixtures) the same three records.
fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let config = BrokerConfig { data_dir: dir.to_path_buf(), ..BrokerConfig::default() };
    let broker = Arc::new(Broker::open(config, Arc::new(herald_log::FsStorage)).expect("broker"));
    for topic in TOPICS {
        broker.create_topic(topic, Some(1), Default::default(), false).expect("topic");
    }
    let records: Vec<crate::new_records::NewRecord> = (0..3)
        .map(|i| crate::new_records::NewRecord {
            key: Some(format!("k{i}").into()),
            value: Some(format!("v{i}").into()),
            headers: Vec::new(),
        })
        .collect();
    let partition = broker.partition("legacy-0-10-1-snappy", 0).expect("partition");
    let mut batch = crate::new_records::encode_batch(&records, crate::broker::now_ms()).expect("batch");
    let appended = partition.append(&mut batch, 1 << 20, crate::broker::now_ms()).expect("append");
    partition.log().sync_through(appended.durable_at).expect("sync");
    broker
}

/// The body of the broker's answer to `frame`, after checking the correlation id.
pub(crate) async fn answer(broker: &Arc<Broker>, frame: Bytes) -> Option<Bytes> {
    let correlation_id = i32::from_be_bytes(frame[4..8].try_into().expect("4 bytes"));
    let bytes = match handle_frame(broker, frame).expect("handled") {
        Reply::Ready(bytes) => bytes,
        Reply::Pending(future) => future.await.expect("pending reply"),
    }?;
    assert_eq!(i32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")), correlation_id);
    Some(bytes.slice(4..))
}

#[test]
fn every_fixture_decodes_as_its_version_and_is_handled_as_the_next() {
    for &(api, oldest, handled) in LEGACY_APIS {
        for version in oldest..handled {
            let Decoded::Request(call, _, client_id) = decode_request(fixture(api, version)).expect("decodes") else {
                panic!("{api:?} v{version}: not a request");
            };
            assert_eq!((call.api, call.version, call.legacy), (api, handled, Some(version)));
            assert!(client_id.is_some_and(|id| id.starts_with("kafka-python")));
        }
    }
}

/// (error code, base offset) of each partition of a Produce v0-2 answer.
fn produce_answer(body: Bytes, version: i16) -> Vec<(i16, i64)> {
    let mut r = Reader(body);
    let topics = r
        .array(|r| {
            r.string()?;
            r.array(|r| {
                r.i32()?;
                let answer = (r.i16()?, r.i64()?);
                if version >= 2 {
                    r.i64()?;
                }
                Ok(answer)
            })
        })
        .expect("a produce answer");
    if version >= 1 {
        r.i32().expect("throttle time");
    }
    assert!(r.0.is_empty());
    topics.into_iter().flatten().collect()
}

/// The messages of the one partition of a Fetch v0-3 answer.
fn fetch_answer(body: Bytes, version: i16) -> Vec<message_set::Read> {
    let mut r = Reader(body);
    if version >= 1 {
        r.i32().expect("throttle time");
    }
    let sets = r
        .array(|r| {
            r.string()?;
            r.array(|r| {
                r.i32()?;
                assert_eq!(r.i16()?, 0, "error code");
                r.i64()?;
                let length = r.i32()?;
                r.take(length as usize)
            })
        })
        .expect("a fetch answer");
    let set = sets.into_iter().flatten().next().expect("one partition");
    message_set::read_messages(set).expect("messages")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_produces_and_fetches_convert_message_sets_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    // Produce v0 (plain), v1 (gzip), v2 (magic 1, plain), each three records k0..k2.
    for version in 0..=2 {
        let body = answer(&broker, fixture(ApiKey::Produce, version)).await.expect("acks=1 answers");
        assert_eq!(produce_answer(body, version), vec![(0, 0)], "v{version}");
    }
    let expected = |i: i64| (i, Some(Bytes::from(format!("k{i}"))), Some(Bytes::from(format!("v{i}"))));
    // Fetch v0 and v1 get magic 0 (no time), v2 and v3 magic 1 (the producer's time).
    for version in 0..=3 {
        let messages = fetch_answer(answer(&broker, fixture(ApiKey::Fetch, version)).await.expect("answer"), version);
        let plain: Vec<_> = messages.iter().map(|(o, _, k, v)| (*o, k.clone(), v.clone())).collect();
        assert_eq!(plain, (0..3).map(expected).collect::<Vec<_>>(), "v{version}");
        assert!(messages.iter().all(|m| m.1.is_some() == (version >= 2)), "v{version}: {messages:?}");
    }
    // The produce v2 fixture's messages kept their producer's time.
    let log = broker.partition("legacy-0-10-0-none", 0).expect("partition");
    let batch = log.log().read(0, 1 << 20).expect("read").bytes;
    let records = kafka_protocol::records::RecordBatchDecoder::decode(&mut Bytes::from(batch)).expect("v2").records;
    assert!(records.iter().all(|r| r.timestamp > 1_700_000_000_000), "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_offset_and_config_requests_get_old_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    answer(&broker, fixture(ApiKey::Produce, 0)).await;
    // ListOffsets v0: a list of offsets per partition.
    let mut r = Reader(answer(&broker, fixture(ApiKey::ListOffsets, 0)).await.expect("answer"));
    let offsets = r
        .array(|r| {
            r.string()?;
            r.array(|r| Ok((r.i32()?, r.i16()?, r.array(Reader::i64)?)))
        })
        .expect("list offsets v0");
    let [partitions] = offsets.as_slice() else { panic!("{offsets:?}") };
    assert!(matches!(partitions.as_slice(), [(0, 0, o)] if o == &[0] || o == &[3]), "{partitions:?}");

    // OffsetCommit v0 (outside any group generation) and v1, then OffsetFetch v0.
    for version in 0..=1 {
        let mut r = Reader(answer(&broker, fixture(ApiKey::OffsetCommit, version)).await.expect("answer"));
        let codes = r.array(|r| Ok((r.string()?, r.array(|r| Ok((r.i32()?, r.i16()?)))?))).expect("commit");
        assert!(codes.iter().all(|(_, ps)| ps.iter().all(|p| p.1 == 0)), "v{version}: {codes:?}");
    }
    let mut r = Reader(answer(&broker, fixture(ApiKey::OffsetFetch, 0)).await.expect("answer"));
    let fetched = r
        .array(|r| Ok((r.string()?, r.array(|r| Ok((r.i32()?, r.i64()?, r.nullable_string()?, r.i16()?)))?)))
        .expect("offset fetch v0");
    assert!(fetched.iter().flat_map(|t| &t.1).all(|p| p.1 == 2 && p.3 == 0), "{fetched:?}");

    // DescribeConfigs v0 of a topic with one override: that one is not a default.
    broker
        .create_topic("legacy-configured", Some(1), [("retention.ms".into(), "60000".into())].into(), false)
        .expect("topic");
    let mut r = Reader(answer(&broker, fixture(ApiKey::DescribeConfigs, 0)).await.expect("answer"));
    r.i32().expect("throttle");
    let results = r
        .array(|r| {
            let head = (r.i16()?, r.nullable_string()?, r.take(1)?, r.string()?);
            let configs = r.array(|r| Ok((r.string()?, r.nullable_string()?, r.take(3)?)))?;
            Ok((head, configs))
        })
        .expect("describe configs v0");
    let [(head, configs)] = results.as_slice() else { panic!("{results:?}") };
    assert_eq!((head.0, head.3.as_str()), (0, "legacy-configured"));
    for (name, value, flags) in configs {
        let is_default = flags[1] == 1;
        assert_eq!(is_default, name.as_str() != "retention.ms", "{name}: {value:?} {flags:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_admin_requests_get_old_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    // CreateTopics v0 (name and code) and v1 (and a message); DeleteTopics v0.
    for version in 0..=1 {
        let mut r = Reader(answer(&broker, fixture(ApiKey::CreateTopics, version)).await.expect("answer"));
        let topics = r
            .array(|r| {
                let (name, code) = (r.string()?, r.i16()?);
                if version >= 1 {
                    r.nullable_string()?;
                }
                Ok((name, code))
            })
            .expect("create topics");
        assert!(r.0.is_empty() && topics.iter().all(|t| t.1 == 0), "v{version}: {topics:?}");
    }
    assert!(broker.topic("legacy-admin").is_some() && broker.topic("legacy-configured").is_some());
    let mut r = Reader(answer(&broker, fixture(ApiKey::DeleteTopics, 0)).await.expect("answer"));
    let deleted = r.array(|r| Ok((r.string()?, r.i16()?))).expect("delete topics v0");
    assert_eq!(deleted.iter().map(|t| (t.0.as_str(), t.1)).collect::<Vec<_>>(), [("legacy-admin", 0)]);
    assert!(r.0.is_empty() && broker.topic("legacy-admin").is_none());

    // OffsetForLeaderEpoch v0 (no epoch in the answer) and v1: epoch 0 ends at the log end.
    for version in 0..=1 {
        let mut r = Reader(answer(&broker, fixture(ApiKey::OffsetForLeaderEpoch, version)).await.expect("answer"));
        let ends = r
            .array(|r| {
                r.string()?;
                r.array(|r| {
                    let (code, partition) = (r.i16()?, r.i32()?);
                    if version >= 1 {
                        r.i32()?;
                    }
                    Ok((code, partition, r.i64()?))
                })
            })
            .expect("offset for leader epoch");
        assert!(r.0.is_empty() && ends == [vec![(0, 0, 3)]], "v{version}: {ends:?}");
    }
    // DescribeLogDirs v0 is v1's shape.
    let body = answer(&broker, fixture(ApiKey::DescribeLogDirs, 0)).await.expect("answer");
    let mut b = body.clone();
    let dirs = kafka_protocol::messages::DescribeLogDirsResponse::decode(&mut b, 1).expect("v1 shape");
    assert!(b.is_empty() && dirs.results.len() == 1);
}

#[test]
fn bad_legacy_bodies_are_errors_not_panics() {
    for &(api, oldest, handled) in LEGACY_APIS {
        for version in oldest..handled {
            let whole = fixture(api, version);
            // Every cut of the body after the header, and a count claiming 2^31 items.
            for cut in (8..whole.len()).step_by(3) {
                let _ = decode_request(whole.slice(..cut));
            }
            let mut huge = whole.to_vec();
            let at = huge.len().min(40);
            huge[at - 4..at].copy_from_slice(&i32::MAX.to_be_bytes());
            let _ = decode_request(Bytes::from(huge));
        }
    }
    assert!(message_set::to_batch(&[0; 11], 0).is_err());
    let mut corrupt = fixture(ApiKey::Produce, 0).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    // The set fails its CRC: the request decodes, and the produce answers CORRUPT_MESSAGE.
    assert!(decode_request(Bytes::from(corrupt)).is_ok());
}

/// One message of `magic` 1 (`codec` in its attributes) at `offset`.
fn message(offset: i64, codec: i8, value: &[u8]) -> Vec<u8> {
    let mut body = vec![1u8, codec as u8];
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&(-1i32).to_be_bytes());
    body.extend_from_slice(&(value.len() as i32).to_be_bytes());
    body.extend_from_slice(value);
    let mut out = offset.to_be_bytes().to_vec();
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use kafka_protocol::compression::{Compressor, Gzip};
    let mut out = bytes::BytesMut::new();
    Gzip::compress(&mut out, |b: &mut bytes::BytesMut| {
        b.extend_from_slice(bytes);
        Ok(())
    })
    .expect("gzip");
    out.to_vec()
}

#[test]
fn compressed_message_sets_are_bounded_as_a_whole() {
    let inner = message(0, 0, &vec![0u8; 1 << 20]);
    let wrapper = message(0, 1, &gzip(&inner));
    // 64 wrappers open up to just over 64 MiB: refused. Fewer convert.
    let many: Vec<u8> = (0..64).flat_map(|_| wrapper.clone()).collect();
    let error = message_set::to_batch(&many, 0).expect_err("too much");
    assert!(error.contains("more than"), "{error}");
    let few: Vec<u8> = (0..3).flat_map(|_| wrapper.clone()).collect();
    let batch = message_set::to_batch(&few, 0).expect("three");
    assert_eq!(herald_log::BatchHeader::parse(&batch, batch.len() as u64).expect("a batch").record_count, 3);
}

#[test]
fn down_conversion_stops_between_batches_near_the_size_it_was_given() {
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
    // 64 records of 64 KiB of zeros: 4 MiB that gzip makes tiny.
    let records: Vec<crate::new_records::NewRecord> = (0..64)
        .map(|_| crate::new_records::NewRecord { value: Some(vec![0u8; 64 << 10].into()), ..Default::default() })
        .collect();
    let plain = crate::new_records::encode_batch(&records, 0).expect("batch");
    let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut Bytes::from(plain)).expect("decode");
    let mut compressed = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::Gzip };
    RecordBatchEncoder::encode(&mut compressed, decoded.records.iter(), &options).expect("gzip batch");
    assert!(compressed.len() < 64 << 10);
    // Three such batches: the first is converted whole (4 MiB), then it stops.
    let mut three = compressed.to_vec();
    for base in [64i64, 128] {
        let mut next = compressed.to_vec();
        next[..8].copy_from_slice(&base.to_be_bytes());
        three.extend_from_slice(&next);
    }
    let set = message_set::from_batches(&three, 1).expect("converted");
    let read = message_set::read_messages(set.clone().into()).expect("messages");
    assert_eq!(read.iter().map(|m| m.0).collect::<Vec<_>>(), (0..64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_batch_that_does_not_convert_fails_its_partition_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    // A batch whose frame and CRC are right but whose record is garbage: the log takes
    // it (it never reads records), down-conversion cannot.
    let mut batch = herald_log::testing::batch_bytes(1, 8, 1_700_000_000_000);
    let body = herald_log::BATCH_HEADER_BYTES;
    batch[body..].fill(0xff);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    let partition = broker.partition("legacy-0-8-2-none", 0).expect("partition");
    let appended = partition.append(&mut batch, 1 << 20, crate::broker::now_ms()).expect("append");
    partition.log().sync_through(appended.durable_at).expect("sync");
    let mut r = Reader(answer(&broker, fixture(ApiKey::Fetch, 0)).await.expect("answered"));
    let partitions = r
        .array(|r| {
            r.string()?;
            r.array(|r| {
                let (partition, code, _high_watermark, length) = (r.i32()?, r.i16()?, r.i64()?, r.i32()?);
                r.take(length as usize)?;
                Ok((partition, code, length))
            })
        })
        .expect("a fetch v0 answer");
    assert_eq!(partitions, vec![vec![(0, 2, 0)]]);
}
