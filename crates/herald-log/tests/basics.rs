//! The log's contract on real files, one behaviour per test.

use std::sync::Arc;

use herald_log::testing::{batch_bytes, batch_with_values};
use herald_log::{BatchError, CrashMode, FsStorage, Log, LogConfig, LogError, SyncPolicy};

use crate::common::{assert_batches_eq, fault_storage, open_fault, placed, read_all, small_config, split_batches};

fn open_fs(dir: &std::path::Path, config: LogConfig) -> Log {
    Log::open(Arc::new(FsStorage), dir.join("orders-0"), config).expect("open")
}

#[test]
fn appended_batches_come_back_verbatim_with_assigned_offsets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    let a = batch_bytes(3, 20, 1_000);
    let b = batch_bytes(2, 20, 2_000);
    let mut request = [a.clone(), b.clone()].concat();
    let info = log.append(&mut request, 0).expect("append");
    assert_eq!((info.base_offset, info.last_offset, info.batches), (0, 4, 2));
    let mut c = batch_bytes(1, 5, 3_000);
    assert_eq!(log.append(&mut c, 0).expect("append").base_offset, 5);
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.high_watermark(), 6);
    let all = read_all(&log).expect("read");
    assert_eq!(all, vec![(0, placed(&a, 0)), (3, placed(&b, 3)), (5, c.clone())]);
    // A read at an offset inside a batch starts at that batch.
    let mid = log.read(4, 1 << 20).expect("read");
    assert_eq!(split_batches(&mid.bytes)[0].0, 3);
}

#[test]
fn a_read_returns_at_least_one_batch_and_otherwise_respects_max_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open_fs(tmp.path(), LogConfig::default());
    let big = batch_bytes(10, 1000, 0);
    for _ in 0..3 {
        log.append(&mut big.clone(), 0).expect("append");
    }
    assert_eq!(split_batches(&log.read(0, 10).expect("read").bytes).len(), 1);
    let two = (big.len() * 2 + 10) as u32;
    assert_eq!(split_batches(&log.read(0, two).expect("read").bytes).len(), 2);
    assert_eq!(log.read(30, 100).expect("read at end").bytes, Vec::<u8>::new());
    assert!(matches!(log.read(31, 100), Err(LogError::OffsetOutOfRange { offset: 31, .. })));
}

#[test]
fn an_invalid_batch_anywhere_in_a_request_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    let good = batch_bytes(2, 10, 0);
    let mut bad = batch_bytes(2, 10, 0);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut request = [good.clone(), bad].concat();
    let err = log.append(&mut request, 0).expect_err("must reject");
    assert!(matches!(err, LogError::InvalidBatch(ref e) if e.reason == BatchError::CrcMismatch), "{err}");
    assert_eq!(log.log_end_offset(), 0);
    let mut too_big = batch_bytes(1, 70_000, 0);
    assert!(matches!(log.append(&mut too_big, 0), Err(LogError::InvalidBatch(_))));
    log.append(&mut good.clone(), 0).expect("log still works");
    assert_eq!(read_all(&log).expect("read"), vec![(0, good)]);
}

#[test]
fn segments_roll_on_size_and_on_age() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = LogConfig { segment_ms: Some(1_000), ..small_config(SyncPolicy::Never) };
    let log = open_fs(tmp.path(), config);
    let batch = batch_bytes(4, 100, 10_000);
    for _ in 0..10 {
        log.append(&mut batch.clone(), 10_000).expect("append");
    }
    let by_size = log.segment_count();
    assert!(by_size >= 2, "4 KiB segments must roll after ~4.7 KiB of batches");
    // The active segment's first batch has maxTimestamp 10_003.
    log.append(&mut batch.clone(), 11_002).expect("append");
    assert_eq!(log.segment_count(), by_size, "not yet 1 s old");
    log.append(&mut batch.clone(), 11_003).expect("append");
    assert_eq!(log.segment_count(), by_size + 1, "segment_ms must roll the active segment");
    let bases = log.segment_base_offsets();
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("orders-0"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for base in bases {
        for suffix in ["log", "index", "timeindex"] {
            assert!(names.contains(&format!("{base:020}.{suffix}")), "missing {base:020}.{suffix}");
        }
    }
}

#[test]
fn reopening_after_clean_close_or_after_a_drop_keeps_everything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut expected = Vec::new();
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Interval { interval_ms: 10, bytes: 1000 }));
    for i in 0..40 {
        let batch = batch_bytes(1 + i % 3, 50, i64::from(i));
        let info = log.append(&mut batch.clone(), 0).expect("append");
        expected.push((info.base_offset, placed(&batch, info.base_offset)));
    }
    log.close().expect("close");
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    assert_batches_eq(&read_all(&log).expect("read"), &expected);
    let batch = batch_bytes(2, 50, 99);
    let info = log.append(&mut batch.clone(), 0).expect("append");
    expected.push((info.base_offset, placed(&batch, info.base_offset)));
    drop(log); // no close: the next open recovers
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    assert_batches_eq(&read_all(&log).expect("read"), &expected);
}

#[test]
fn retention_deletes_whole_old_segments_by_size_and_by_age() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = LogConfig { retention_bytes: Some(8192), ..small_config(SyncPolicy::Never) };
    let log = open_fs(tmp.path(), config);
    for i in 0..60 {
        log.append(&mut batch_bytes(2, 200, i), 0).expect("append");
    }
    let before = log.segment_count();
    let outcome = log.enforce_retention(0).expect("retention");
    assert!(outcome.segments_deleted > 0);
    assert_eq!(log.segment_count(), before - outcome.segments_deleted);
    assert!(log.size_bytes() <= 8192 + 4096, "kept {} bytes", log.size_bytes());
    let start = log.log_start_offset();
    assert_eq!(start, outcome.log_start_offset);
    assert_eq!(start, log.segment_base_offsets()[0]);
    assert!(matches!(log.read(start - 1, 100), Err(LogError::OffsetOutOfRange { .. })));
    drop(log);

    let aged = LogConfig { retention_ms: Some(1_000), retention_bytes: None, ..config };
    let log = open_fs(tmp.path(), aged);
    assert_eq!(log.log_start_offset(), start, "log start survives reopen");
    // Record timestamps run from 0 to 60.
    let outcome = log.enforce_retention(999).expect("retention");
    assert_eq!(outcome.segments_deleted, 0, "nothing is older than 1 s yet");
    let outcome = log.enforce_retention(2_061).expect("retention");
    assert_eq!(log.segment_count(), 1, "all sealed segments expired");
    assert!(outcome.segments_deleted > 0);
}

#[test]
fn delete_records_moves_the_log_start_durably() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    for i in 0..50 {
        log.append(&mut batch_bytes(2, 100, i), 0).expect("append");
    }
    assert!(matches!(log.delete_records_before(101), Err(LogError::OffsetOutOfRange { .. })));
    assert_eq!(log.delete_records_before(41).expect("delete"), 41);
    // The batch holding offset 41 starts at 40 and is served whole.
    assert_eq!(split_batches(&log.read(41, 1).expect("read").bytes)[0].0, 40);
    assert!(log.segment_base_offsets()[0] <= 40);
    drop(log);
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    assert_eq!(log.log_start_offset(), 41);
}

#[test]
fn truncation_removes_the_tail_and_offsets_continue_from_there() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    let mut expected = Vec::new();
    for i in 0..40 {
        let batch = batch_bytes(3, 100, i);
        let info = log.append(&mut batch.clone(), 0).expect("append");
        expected.push((info.base_offset, placed(&batch, info.base_offset)));
    }
    let segments = log.segment_count();
    assert_eq!(log.truncate_to(31).expect("truncate"), 30, "cut at the batch holding 31");
    assert!(log.segment_count() < segments);
    expected.truncate(10);
    assert_batches_eq(&read_all(&log).expect("read"), &expected);
    let batch = batch_with_values(&[b"after".to_vec()], 5);
    assert_eq!(log.append(&mut batch.clone(), 0).expect("append").base_offset, 30);
    expected.push((30, placed(&batch, 30)));
    drop(log);
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    assert_batches_eq(&read_all(&log).expect("read"), &expected);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    for i in 0..30 {
        // Batch i holds 4 records with timestamps 1000*i + 0..4.
        log.append(&mut batch_bytes(4, 150, 1_000 * i), 0).expect("append");
    }
    let hit = log.offset_for_timestamp(7_002).expect("lookup").expect("found");
    assert_eq!((hit.offset, hit.timestamp), (7 * 4 + 2, 7_002));
    let hit = log.offset_for_timestamp(7_004).expect("lookup").expect("found");
    assert_eq!((hit.offset, hit.timestamp), (8 * 4, 8_000));
    assert_eq!(log.offset_for_timestamp(i64::MIN).expect("lookup").map(|h| h.offset), Some(0));
    assert_eq!(log.offset_for_timestamp(29_004).expect("lookup"), None);
    drop(log);
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    let hit = log.offset_for_timestamp(20_001).expect("lookup").expect("found");
    assert_eq!(hit.offset, 81, "the time index survives recovery");
}

#[test]
fn interval_policy_says_when_a_sync_is_due() {
    let storage = fault_storage(1);
    let config = small_config(SyncPolicy::Interval { interval_ms: 100, bytes: 1_000 });
    let log = open_fault(&storage, config).expect("open");
    assert!(!log.sync_due(0));
    log.append(&mut batch_bytes(1, 10, 0), 1_000).expect("append");
    assert!(!log.sync_due(1_050));
    assert!(log.sync_due(1_100), "interval elapsed");
    assert_eq!(log.sync().expect("sync"), 1);
    assert!(!log.sync_due(5_000));
    log.append(&mut batch_bytes(5, 300, 0), 6_000).expect("append");
    assert!(log.sync_due(6_000), "byte threshold reached");
    assert_eq!(log.high_watermark(), 6, "interval serves unsynced appends");
    assert_eq!(log.durable_end_offset(), 1);
}

#[test]
fn concurrent_always_appends_are_all_durable_when_acknowledged() {
    let storage = fault_storage(7);
    let log = Arc::new(open_fault(&storage, small_config(SyncPolicy::Always)).expect("open"));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let batch = batch_bytes(1 + (i % 2), 40, t * 1000 + i64::from(i));
                        let info = log.append(&mut batch.clone(), 0).expect("append");
                        (info.base_offset, placed(&batch, info.base_offset))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<_> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
    acked.sort();
    drop(log);
    storage.crash(CrashMode::DropUnsynced);
    let log = open_fault(&storage, small_config(SyncPolicy::Always)).expect("reopen");
    assert_batches_eq(&read_all(&log).expect("read"), &acked);
}

#[test]
fn corruption_in_a_sealed_segment_is_reported_on_read_and_nothing_is_cut() {
    let storage = fault_storage(3);
    let log = open_fault(&storage, small_config(SyncPolicy::Always)).expect("open");
    let mut expected = Vec::new();
    for i in 0..30 {
        let batch = batch_bytes(2, 120, i);
        let info = log.append(&mut batch.clone(), 0).expect("append");
        expected.push((info.base_offset, placed(&batch, info.base_offset)));
    }
    let first_segment =
        storage.files().into_iter().find(|p| p.extension().is_some_and(|e| e == "log")).expect("segment");
    // Flip a payload byte of the third batch, inside the sealed first segment.
    let third = expected[0].1.len() + expected[1].1.len();
    storage.corrupt(&first_segment, (third + 70) as u64, 0x40);
    let check = |log: &Log| {
        assert!(matches!(log.read(4, 1 << 20), Err(LogError::Corrupt { .. })), "corrupt batch must be reported");
        let last = expected.last().expect("batches").0;
        assert_eq!(log.log_end_offset(), last + 2, "nothing after the corruption is cut");
        let tail = log.read(6, 1 << 20).expect("later batches stay readable");
        assert_eq!(split_batches(&tail.bytes)[0], expected[3]);
        // A read that starts before the corrupt batch stops just before it.
        assert_eq!(split_batches(&log.read(0, 1 << 20).expect("read").bytes), expected[..2].to_vec());
    };
    check(&log);
    drop(log);
    check(&open_fault(&storage, small_config(SyncPolicy::Always)).expect("reopen"));
}

#[test]
fn missing_or_damaged_index_files_are_rebuilt_or_bypassed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("orders-0");
    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    let mut expected = Vec::new();
    for i in 0..60 {
        let batch = batch_bytes(2, 100, 1_000 * i);
        let info = log.append(&mut batch.clone(), 0).expect("append");
        expected.push((info.base_offset, placed(&batch, info.base_offset)));
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3);
    log.close().expect("close");
    // Sealed segment 0 loses both indexes; segment 1 gets a middle index entry that points
    // at the wrong byte (its last entry, which recovery checks, stays right).
    std::fs::remove_file(dir.join(format!("{:020}.index", bases[0]))).expect("rm");
    std::fs::remove_file(dir.join(format!("{:020}.timeindex", bases[0]))).expect("rm");
    let index = dir.join(format!("{:020}.index", bases[1]));
    let mut bytes = std::fs::read(&index).expect("index");
    assert!(bytes.len() >= 16, "segment 1 has at least two index entries");
    let position = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
    bytes[4..8].copy_from_slice(&(position + 3).to_be_bytes());
    std::fs::write(&index, bytes).expect("write");

    let log = open_fs(tmp.path(), small_config(SyncPolicy::Always));
    assert_batches_eq(&read_all(&log).expect("read"), &expected);
    assert!(std::fs::metadata(dir.join(format!("{:020}.index", bases[0]))).expect("rebuilt").len() > 0);
    let hit = log.offset_for_timestamp(30_001).expect("lookup").expect("found");
    assert_eq!(hit.offset, 61);
    for (offset, batch) in &expected {
        let read = log.read(*offset + 1, 1).expect("read");
        assert_eq!(&split_batches(&read.bytes)[0].1, batch, "read at {}", offset + 1);
    }
}
