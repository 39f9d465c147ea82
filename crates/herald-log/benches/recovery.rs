//! Time to open a 1 GiB log: after a clean shutdown, after a crash with a recent
//! checkpoint (the normal case: just under `checkpoint_interval_bytes` to re-scan), and
//! after a crash with no checkpoint at all (every byte re-read and CRC-checked).
//!
//! Prints one `recovery ...` line per case with the median of 3 runs in milliseconds.
//! The data is in the page cache (warm), as it is right after a process crash.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use herald_log::testing::batch_bytes;
use herald_log::{FsStorage, Log, LogConfig, SyncPolicy};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 30,
        retention_ms: None,
        segment_ms: None,
        sync: SyncPolicy::Never,
        ..Default::default()
    }
}

fn open(dir: &Path, sync: SyncPolicy) -> (Log, f64) {
    let start = Instant::now();
    let log = Log::open(Arc::new(FsStorage), dir, LogConfig { sync, ..config() }).expect("open");
    (log, start.elapsed().as_secs_f64() * 1e3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tmp = match std::env::var_os("HERALD_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("bench dir"),
        None => tempfile::tempdir().expect("temp dir"),
    };
    let dir = tmp.path().join("recovery-0");
    let (log, _) = open(&dir, SyncPolicy::Never);
    let mut batch = batch_bytes(1000, 1024, 0);
    while log.size_bytes() + batch.len() as u64 <= 1 << 30 {
        log.append(&mut batch, 0).expect("append");
    }
    let gib = log.size_bytes() as f64 / f64::from(1 << 30);
    log.close().expect("close");

    let clean: Vec<f64> = (0..3)
        .map(|_| {
            let (log, ms) = open(&dir, SyncPolicy::Never);
            log.close().expect("close");
            ms
        })
        .collect();
    println!(
        "recovery case=clean_shutdown log_gib={gib:.2} median_ms={:.1} runs_ms={clean:.1?}",
        median(clean.clone())
    );

    let crash: Vec<f64> = (0..3)
        .map(|_| {
            // Up to just below the next checkpoint: the most a normal crash re-scans.
            let (log, _) = open(&dir, SyncPolicy::Always);
            let batches = log.config().checkpoint_interval_bytes / batch.len() as u64 - 1;
            for _ in 0..batches {
                log.append(&mut batch, 0).expect("append");
            }
            drop(log); // no close: the next open recovers
            let (log, ms) = open(&dir, SyncPolicy::Always);
            log.close().expect("close");
            ms
        })
        .collect();
    println!(
        "recovery case=crash_recent_checkpoint log_gib={gib:.2} median_ms={:.1} runs_ms={crash:.1?}",
        median(crash.clone())
    );

    let full: Vec<f64> = (0..3)
        .map(|_| {
            std::fs::remove_file(dir.join("checkpoint")).expect("remove checkpoint");
            let (log, ms) = open(&dir, SyncPolicy::Never);
            log.close().expect("close");
            ms
        })
        .collect();
    println!(
        "recovery case=crash_no_checkpoint log_gib={gib:.2} median_ms={:.1} runs_ms={full:.1?}",
        median(full.clone())
    );
}
