//! The cleaner against real logs: a model of what a pass keeps, a power cut at every file
//! operation of a pass, idempotent producers across a pass and a restart, and appends
//! while passes run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use herald_log::{CrashMode, FaultStorage, Log, LogConfig, Storage, SyncPolicy};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

use super::*;
use crate::producer_state::ProducerStateConfig;

const T0: i64 = 1_700_000_000_000;

/// (offset, key, value) of every record a log serves, in order.
type Served = Vec<(u64, Option<Bytes>, Option<Bytes>)>;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 256,
        retention_ms: None,
        segment_ms: None,
        sync: SyncPolicy::Always,
        ..LogConfig::default()
    }
}

fn open(storage: &Arc<dyn Storage>, dir: &Path, now: i64) -> Partition {
    Partition::open(Arc::clone(storage), dir.to_path_buf(), config(), ProducerStateConfig::default(), now)
        .expect("open partition")
}

/// One batch of `records` (key byte, value or tombstone) stamped `timestamp`, from
/// `producer` (id, epoch, first sequence) or from none.
fn batch(records: &[(Option<u8>, Option<&str>)], timestamp: i64, producer: Option<(i64, i16, i32)>) -> Vec<u8> {
    batch_compressed(records, timestamp, producer, Compression::None)
}

fn batch_compressed(
    records: &[(Option<u8>, Option<&str>)],
    timestamp: i64,
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
) -> Vec<u8> {
    let (id, epoch, first_sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            let sequence = first_sequence.wrapping_add(i as i32);
            record(i as i64, sequence, (id, epoch), *key, *value, timestamp)
        })
        .collect();
    encode(&records, compression)
}

/// One record at `offset` (relative to its batch) from producer `(id, epoch)`.
fn record(
    offset: i64,
    sequence: i32,
    (id, epoch): (i64, i16),
    key: Option<u8>,
    value: Option<&str>,
    timestamp: i64,
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: id,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence,
        timestamp,
        key: key.map(|k| Bytes::from(vec![b'k', k])),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: Default::default(),
    }
}

fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.to_vec()
}

fn append(partition: &Partition, mut bytes: Vec<u8>, now: i64) -> u64 {
    let appended = partition.append(&mut bytes, 1 << 20, now).expect("append");
    partition.log().sync_through(appended.durable_at).expect("sync");
    appended.base_offset
}

fn served(log: &Log) -> Served {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read(offset, 1 << 20).expect("read");
        if read.bytes.is_empty() {
            break;
        }
        let mut bytes = Bytes::from(read.bytes);
        while !bytes.is_empty() {
            let set = RecordBatchDecoder::decode(&mut bytes).expect("decode");
            for r in set.records {
                offset = offset.max(r.offset as u64 + 1);
                out.push((r.offset as u64, r.key, r.value));
            }
        }
    }
    out
}

fn policy(delete_retention_ms: i64, min_compaction_lag_ms: i64) -> CompactionPolicy {
    CompactionPolicy {
        delete_retention_ms,
        min_compaction_lag_ms,
        min_cleanable_dirty_ratio: 0.0,
        ..CompactionPolicy::default()
    }
}

fn pass(partition: &Partition, policy: &CompactionPolicy, now: i64) -> Option<PassOutcome> {
    clean_partition(partition, policy, 0, now, 1 << 20, &|| false).expect("pass")
}

type Written = Vec<Vec<(Option<u8>, bool)>>;

fn written() -> impl Strategy<Value = Written> {
    let record = (prop::option::weighted(0.9, 0u8..6), prop::bool::weighted(0.2));
    prop::collection::vec(prop::collection::vec(record, 1..5), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// After a pass, what the log serves is exactly the model's: below the cleanable end
    /// each key's latest record (a tombstone only while younger than
    /// `delete.retention.ms`) and keyless records, at their offsets; everything from the
    /// cleanable end on. A second pass changes nothing, and a reopened log (gaps and all)
    /// serves the same. Batches are uncompressed (rewritten in place) or compressed
    /// (decoded and encoded again), as `compressed` picks.
    #[test]
    fn a_pass_leaves_what_the_model_says(
        batches in written(),
        lag in 0i64..3_000,
        retention in 0i64..3_000,
        compressed in prop::collection::vec(prop::bool::ANY, 40),
    ) {
        let storage: Arc<dyn Storage> = Arc::new(FaultStorage::new(1));
        let dir = PathBuf::from("/t-0");
        let partition = open(&storage, &dir, T0);
        let mut model = Vec::new();
        for (i, records) in batches.iter().enumerate() {
            let timestamp = T0 + 100 * i as i64;
            let values: Vec<(Option<u8>, Option<String>)> =
                records.iter().map(|(k, tomb)| (*k, (!tomb).then(|| format!("v{}", model.len())))).collect();
            let refs: Vec<(Option<u8>, Option<&str>)> = values.iter().map(|(k, v)| (*k, v.as_deref())).collect();
            let compression = if compressed[i] { Compression::Lz4 } else { Compression::None };
            let base = append(&partition, batch_compressed(&refs, timestamp, None, compression), timestamp);
            for (j, (key, value)) in values.into_iter().enumerate() {
                model.push((base + j as u64, key, value, timestamp));
            }
        }
        let now = T0 + 100 * batches.len() as i64 + 500;
        let bases = partition.log().segment_base_offsets();
        let segment_max = |i: usize| {
            let end = bases.get(i + 1).copied().unwrap_or(u64::MAX);
            model.iter().filter(|r| r.0 >= bases[i] && r.0 < end).map(|r| r.3).max().unwrap_or(i64::MIN)
        };
        let cleanable_end = (0..bases.len() - 1)
            .find(|&i| segment_max(i) > now - lag)
            .map_or(bases[bases.len() - 1], |i| bases[i]);
        let latest = |key: u8| model.iter().filter(|r| r.1 == Some(key) && r.0 < cleanable_end).map(|r| r.0).max();
        let expected: Served = model
            .iter()
            .filter(|(offset, key, value, timestamp)| {
                *offset >= cleanable_end
                    || key.is_none_or(|k| latest(k) == Some(*offset) && (value.is_some() || *timestamp >= now - retention))
            })
            .map(|(offset, key, value, _)| {
                (*offset, key.map(|k| Bytes::from(vec![b'k', k])), value.as_ref().map(|v| Bytes::from(v.clone())))
            })
            .collect();
        let policy = policy(retention, lag);
        pass(&partition, &policy, now);
        prop_assert_eq!(&served(partition.log()), &expected);
        pass(&partition, &policy, now);
        prop_assert_eq!(&served(partition.log()), &expected);
        partition.into_log().close().expect("close");
        let reopened = open(&storage, &dir, now);
        prop_assert_eq!(&served(reopened.log()), &expected);
        // An emptied first segment stays, so the log start does not move.
        prop_assert_eq!(reopened.log().log_start_offset(), 0);
    }
}

/// Sixty batches of three records over six keys, in segments of about ten batches.
fn keyed_log(storage: &Arc<dyn Storage>, dir: &Path) -> Partition {
    let partition = open(storage, dir, T0);
    for i in 0..60u8 {
        let values = [format!("a{i}"), format!("b{i}"), format!("c{i}")];
        let records: Vec<(Option<u8>, Option<&str>)> =
            values.iter().enumerate().map(|(j, v)| (Some((i * 3 + j as u8) % 6), Some(v.as_str()))).collect();
        append(&partition, batch(&records, T0 + i64::from(i), None), T0 + i64::from(i));
    }
    partition
}

/// The records of `served` in each of the segments that started at `bases`.
fn by_segment(served: &Served, bases: &[u64]) -> Vec<Served> {
    (0..bases.len())
        .map(|i| {
            let end = bases.get(i + 1).copied().unwrap_or(u64::MAX);
            served.iter().filter(|r| r.0 >= bases[i] && r.0 < end).cloned().collect()
        })
        .collect()
}

#[test]
fn a_power_cut_at_any_operation_of_a_pass_leaves_each_segment_old_or_new() {
    let dir = PathBuf::from("/t-0");
    let now = T0 + 10_000;
    // A run without a crash: what a pass costs in operations, and what it leaves.
    let storage = Arc::new(FaultStorage::new(0));
    let shared: Arc<dyn Storage> = storage.clone();
    let partition = keyed_log(&shared, &dir);
    let bases = partition.log().segment_base_offsets();
    assert!(bases.len() >= 5, "segments: {bases:?}");
    let before = by_segment(&served(partition.log()), &bases);
    let (first, cleaned) = (storage.mutating_ops() + 1, pass(&partition, &policy(0, 0), now));
    let last = storage.mutating_ops();
    assert!(cleaned.is_some_and(|p| p.segments_rewritten >= 3), "{cleaned:?}");
    let after = by_segment(&served(partition.log()), &bases);
    assert_ne!(before, after);
    // What the log serves once a later append and another pass followed.
    append(&partition, batch(&[(Some(9), Some("later"))], now, None), now);
    pass(&partition, &policy(0, 0), now);
    let settled = served(partition.log());
    let mut outcomes = std::collections::BTreeSet::new();
    for op in first..=last {
        for mode in [CrashMode::DropUnsynced, CrashMode::TearUnsynced] {
            let storage = Arc::new(FaultStorage::new(op));
            let shared: Arc<dyn Storage> = storage.clone();
            let partition = keyed_log(&shared, &dir);
            storage.crash_at_op(op);
            let _ = clean_partition(&partition, &policy(0, 0), 0, now, 1 << 20, &|| false);
            drop(partition);
            storage.crash(mode);
            let reopened = open(&shared, &dir, now);
            let found = by_segment(&served(reopened.log()), &bases);
            let mut new_segments = 0;
            for (i, segment) in found.iter().enumerate() {
                assert!(
                    segment == &before[i] || segment == &after[i],
                    "crash at op {op} ({mode:?}): segment {} is neither old nor new: {segment:?}",
                    bases[i]
                );
                new_segments += usize::from(segment == &after[i] && after[i] != before[i]);
            }
            outcomes.insert(new_segments);
            let leftovers: Vec<PathBuf> = storage
                .files()
                .into_iter()
                .filter(|p| {
                    let name = p.to_string_lossy();
                    name.ends_with(".cleaned") || name.ends_with(".swap")
                })
                .collect();
            assert!(leftovers.is_empty(), "crash at op {op}: {leftovers:?}");
            // The recovered log takes appends and a pass finishes the job.
            append(&reopened, batch(&[(Some(9), Some("later"))], now, None), now);
            pass(&reopened, &policy(0, 0), now);
            assert_eq!(served(reopened.log()), settled, "crash at op {op} ({mode:?})");
        }
    }
    // The cuts fell before, between and after the segments' swaps.
    assert!(outcomes.len() >= 3, "{outcomes:?}");
}

#[test]
fn the_batches_a_producer_state_remembers_survive_so_a_restart_still_knows_them() {
    let storage: Arc<dyn Storage> = Arc::new(FaultStorage::new(0));
    let dir = PathBuf::from("/t-0");
    let partition = open(&storage, &dir, T0);
    let producer = |sequence: i32| Some((7, 0, sequence));
    let mut bases = Vec::new();
    for i in 0..10 {
        let records = [(Some(0), Some("p")), (Some(1), Some("p"))];
        bases.push(append(&partition, batch(&records, T0 + i, producer(2 * i as i32)), T0 + i));
    }
    // Others overwrite both keys, so every batch of producer 7 is superseded.
    for i in 0..10 {
        append(&partition, batch(&[(Some(0), Some("q")), (Some(1), Some("q"))], T0 + 20 + i, None), T0 + 20 + i);
    }
    partition.log().roll().expect("roll");
    let outcome = pass(&partition, &policy(0, 0), T0 + 1_000).expect("due");
    // The state remembers producer 7's last five batches: those stay whole, the rest go.
    assert_eq!(outcome.records_removed, 5 * 2 + 9 * 2, "{outcome:?}");
    let offsets: Vec<u64> = served(partition.log()).iter().map(|r| r.0).collect();
    assert!(bases[5..].iter().all(|b| offsets.contains(b)) && !offsets.contains(&bases[4]), "{offsets:?}");
    partition.into_log().close().expect("close");

    let reopened = open(&storage, &dir, T0 + 2_000);
    let end = reopened.log().log_end_offset();
    // A retry of the last batch, and of an older one still in flight, get their offsets.
    for i in [9, 6] {
        let mut retried = batch(&[(Some(0), Some("p")), (Some(1), Some("p"))], T0 + i, producer(2 * i as i32));
        let retry = reopened.append(&mut retried, 1 << 20, T0 + 2_000).expect("a retried duplicate");
        assert_eq!((retry.base_offset, reopened.log().log_end_offset()), (bases[i as usize], end));
    }
    let mut next = batch(&[(Some(2), Some("p"))], T0 + 2_000, producer(20));
    assert_eq!(reopened.append(&mut next, 1 << 20, T0 + 2_000).expect("the next in line").base_offset, end);
}

#[test]
fn appends_go_on_while_passes_run() {
    let storage: Arc<dyn Storage> = Arc::new(herald_log::FsStorage);
    let tmp = tempfile::tempdir().expect("tempdir");
    let partition = Arc::new(keyed_log(&storage, &tmp.path().join("t-0")));
    let writer = {
        let partition = Arc::clone(&partition);
        std::thread::spawn(move || {
            (0..300u32)
                .map(|i| {
                    let value = format!("live{i}");
                    let key = [b'L', (i % 250) as u8, (i / 250) as u8];
                    let mut record = batch(&[(Some(0), Some(&value))], T0 + 100, None);
                    // A key of its own, so no pass may drop it.
                    let records = RecordBatchDecoder::decode(&mut Bytes::from(record.clone())).expect("decode").records;
                    let mut r = records[0].clone();
                    r.key = Some(Bytes::copy_from_slice(&key));
                    let mut buf = BytesMut::new();
                    RecordBatchEncoder::encode(
                        &mut buf,
                        [&r],
                        &RecordEncodeOptions { version: 2, compression: Compression::None },
                    )
                    .expect("encode");
                    record = buf.to_vec();
                    (append(&partition, record, T0 + 100), key.to_vec(), value)
                })
                .collect::<Vec<_>>()
        })
    };
    let mut removed = 0;
    while !writer.is_finished() {
        if let Some(p) = clean_partition(&partition, &policy(0, 0), 0, T0 + 10_000, 1 << 20, &|| false).expect("pass") {
            removed += p.records_removed;
        }
    }
    let writes = writer.join().expect("writer");
    removed += pass(&partition, &policy(0, 0), T0 + 10_000).map_or(0, |p| p.records_removed);
    assert!(removed > 0);
    let served = served(partition.log());
    for (offset, key, value) in writes {
        let found = served.iter().find(|r| r.0 == offset).unwrap_or_else(|| panic!("offset {offset} is gone"));
        assert_eq!((found.1.as_deref(), found.2.as_deref()), (Some(key.as_slice()), Some(value.as_bytes())));
    }
}

#[test]
fn a_batch_whose_record_offsets_do_not_rise_is_kept_and_the_pass_goes_on() {
    let storage: Arc<dyn Storage> = Arc::new(FaultStorage::new(0));
    let partition = open(&storage, &PathBuf::from("/t-0"), T0);
    // Offset deltas 0, 2, 1: the log takes it (3 records, lastOffsetDelta 2); a cleaner
    // that dropped the first record would write batches that go backwards.
    let records: Vec<Record> = [(0i64, 0u8), (2, 1), (1, 0)]
        .iter()
        .map(|&(offset, key)| record(offset, offset as i32 - 1, (-1, -1), Some(key), Some("v"), T0))
        .collect();
    append(&partition, encode(&records, Compression::None), T0);
    for i in 0..40 {
        append(&partition, batch(&[(Some(2), Some("x")), (Some(3), Some("y"))], T0 + i, None), T0 + i);
    }
    let before = served(partition.log());
    let outcome = pass(&partition, &policy(0, 0), T0 + 1_000).expect("due");
    assert!(outcome.records_removed > 0, "{outcome:?}");
    let after = served(partition.log());
    assert_eq!(after[..3], before[..3], "the odd batch is as it was");
}

#[test]
fn a_deleted_key_stays_deleted_while_an_older_value_sits_in_a_protected_batch() {
    let storage: Arc<dyn Storage> = Arc::new(FaultStorage::new(0));
    let partition = open(&storage, &PathBuf::from("/t-0"), T0);
    // Producer 7's only batch holds k0=old; then k0 is deleted and others write on.
    append(&partition, batch(&[(Some(0), Some("old"))], T0, Some((7, 0, 0))), T0);
    append(&partition, batch(&[(Some(0), None)], T0 + 1, None), T0 + 1);
    for i in 0..40 {
        append(&partition, batch(&[(Some(2), Some("x")), (Some(3), Some("y"))], T0 + 2 + i, None), T0 + 2 + i);
    }
    partition.log().roll().expect("roll");
    let key0 =
        |served: &Served| served.iter().filter(|r| r.1.as_deref() == Some(b"k\0")).map(|r| r.0).collect::<Vec<_>>();
    let now = T0 + 10_000;
    // The old value stays (its batch is protected), so the tombstone must stay too, even
    // past delete.retention.ms, and the next pass maps from the protected batch again.
    let first = clean_partition(&partition, &policy(0, 0), 0, now, 1 << 20, &|| false).expect("pass").expect("due");
    assert_eq!(key0(&served(partition.log())), vec![0, 1]);
    assert_eq!(first.cleaned_through, 0);
    // The producer is forgotten: both go, and the key stays deleted.
    partition.expire_producers(now + 10 * 86_400_000);
    append(&partition, batch(&[(Some(4), Some("z"))], now, None), now);
    partition.log().roll().expect("roll");
    clean_partition(&partition, &policy(0, 0), first.cleaned_through, now, 1 << 20, &|| false).expect("pass");
    assert_eq!(key0(&served(partition.log())), Vec::<u64>::new());
}

#[test]
fn a_compacted_log_recovers_whole_without_its_checkpoint() {
    let storage: Arc<dyn Storage> = Arc::new(FaultStorage::new(0));
    let dir = PathBuf::from("/t-0");
    let partition = keyed_log(&storage, &dir);
    pass(&partition, &policy(0, 0), T0 + 10_000).expect("due");
    let cleaned = served(partition.log());
    partition.into_log().close().expect("close");
    // Without a checkpoint, recovery checks every segment with CRCs; a compacted one's
    // gaps must not read as a torn tail.
    storage.remove_file(&dir.join("checkpoint")).expect("remove the checkpoint");
    let reopened = open(&storage, &dir, T0 + 10_000);
    assert_eq!(served(reopened.log()), cleaned);
}
