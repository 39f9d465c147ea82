//! IO errors from the disk (reliability scenarios D7 fsyncgate and D8 ENOSPC).

use std::path::PathBuf;

use herald_log::testing::batch_bytes;
use herald_log::{CrashMode, FaultStorage, Log, LogError, SyncPolicy};

use crate::common::{assert_batches_eq, fault_storage, open_fault, placed, read_all, small_config};

type Batches = Vec<(u64, Vec<u8>)>;

fn append_ok(log: &Log, acked: &mut Batches, i: i64) {
    let batch = batch_bytes(2, 60, i);
    let info = log.append(&mut batch.clone(), 0).expect("append");
    acked.push((info.base_offset, placed(&batch, info.base_offset)));
}

fn active_segment(storage: &FaultStorage) -> PathBuf {
    storage.files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")).max().expect("a segment")
}

#[test]
fn after_an_fsync_error_no_append_succeeds_until_reopen() {
    for nth in 1..=4 {
        let storage = fault_storage(nth);
        let log = open_fault(&storage, small_config(SyncPolicy::Always)).expect("open");
        let mut acked = Vec::new();
        for i in 0..5 {
            append_ok(&log, &mut acked, i);
        }
        storage.fail_nth_sync(nth);
        let mut failed_at = None;
        for i in 0..40 {
            let batch = batch_bytes(1, 60, 100 + i);
            match log.append(&mut batch.clone(), 0) {
                Ok(info) if failed_at.is_none() => acked.push((info.base_offset, placed(&batch, info.base_offset))),
                Ok(info) => panic!(
                    "append #{i} returned Ok (offset {}) after the fsync error at #{failed_at:?}",
                    info.base_offset
                ),
                Err(e) => {
                    if failed_at.is_some() {
                        assert!(matches!(e, LogError::Failed { .. }), "later errors say the log failed: {e}");
                    }
                    failed_at.get_or_insert(i);
                }
            }
        }
        assert!(failed_at.is_some(), "the injected fsync error must surface");
        assert!(matches!(log.sync(), Err(LogError::Failed { .. })));
        assert!(matches!(log.roll(), Err(LogError::Failed { .. })));
        assert!(matches!(log.truncate_to(0), Err(LogError::Failed { .. })));
        assert!(log.close().is_err(), "a failed log is not marked clean");
        // Reopened, the log recovers from what is durable and works again.
        storage.crash(CrashMode::DropUnsynced);
        let log = open_fault(&storage, small_config(SyncPolicy::Always)).expect("reopen");
        assert_batches_eq(&read_all(&log).expect("read")[..acked.len()], &acked);
        append_ok(&log, &mut acked, 999);
    }
}

#[test]
fn after_a_write_error_the_log_refuses_writes() {
    let storage = fault_storage(11);
    let log =
        open_fault(&storage, small_config(SyncPolicy::Interval { interval_ms: 10, bytes: 1 << 20 })).expect("open");
    let mut acked = Vec::new();
    append_ok(&log, &mut acked, 0);
    storage.fail_nth_write(1);
    assert!(matches!(log.append(&mut batch_bytes(1, 10, 0), 0), Err(LogError::Io { .. })));
    assert!(matches!(log.append(&mut batch_bytes(1, 10, 0), 0), Err(LogError::Failed { .. })));
    assert_batches_eq(&read_all(&log).expect("reads still work"), &acked);
}

#[test]
fn enospc_is_a_clean_error_and_the_log_works_again_when_space_returns() {
    let storage = fault_storage(5);
    let config = small_config(SyncPolicy::Always);
    let log = open_fault(&storage, config).expect("open");
    let mut acked = Vec::new();
    for i in 0..3 {
        append_ok(&log, &mut acked, i);
    }
    let segment = active_segment(&storage);
    let segment_len = storage.read_file(&segment).expect("segment").len();
    let used: u64 = storage.files().iter().map(|p| storage.read_file(p).map_or(0, |b| b.len() as u64)).sum();
    storage.set_space_limit(Some(used + 100));
    let end = log.log_end_offset();
    for _ in 0..3 {
        let err = log.append(&mut batch_bytes(4, 200, 50), 0).expect_err("disk is full");
        assert!(matches!(err, LogError::StorageFull { .. }), "{err}");
        assert_eq!(log.log_end_offset(), end, "nothing partial is visible");
        assert_eq!(storage.read_file(&segment).expect("segment").len(), segment_len, "the partial write is cut off");
    }
    assert_batches_eq(&read_all(&log).expect("read"), &acked);
    storage.set_space_limit(None);
    append_ok(&log, &mut acked, 60);
    assert_eq!(acked.last().expect("acked").0, end, "offsets continue without a gap");
    drop(log);
    storage.crash(CrashMode::TearUnsynced);
    let log = open_fault(&storage, config).expect("reopen");
    assert_batches_eq(&read_all(&log).expect("read"), &acked);
}
