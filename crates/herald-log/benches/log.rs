//! Append and read throughput of the partition log on real files.
//!
//! Append: 100 B and 1 KiB records in batches of 1, 100 and 1,000 records, one batch per
//! `append`, under each sync policy (`always`: an fdatasync per append; `interval`: the
//! loop syncs when `sync_due` says so, 100 ms or 4 MiB; `never`). The baseline for each
//! row is `physbench logappend` at the same batch bytes and sync setting, run by
//! `bench/log.sh` in the same run.
//!
//! Read: sequential 1 MiB reads over a 256 MiB log, against a raw `pread` loop over the
//! same segment files in the same process (the page-cache copy the log cannot beat).
//! The log's reads allocate a fresh buffer and check every batch's CRC.
//!
//! Set `HERALD_BENCH_DIR` to put the data somewhere other than the system temp dir.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald_log::testing::batch_bytes;
use herald_log::{FsStorage, Log, LogConfig, SyncPolicy};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("HERALD_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("bench dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn config(sync: SyncPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 20,
        retention_bytes: Some(1 << 30),
        retention_ms: None,
        segment_ms: None,
        batch_bytes_max: 16 << 20,
        sync,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let policies = [
        ("never", SyncPolicy::Never),
        ("interval", SyncPolicy::Interval { interval_ms: 100, bytes: 4 << 20 }),
        ("always", SyncPolicy::Always),
    ];
    for (name, policy) in policies {
        let mut group = c.benchmark_group(format!("append/{name}"));
        group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(10);
        for value_bytes in [100usize, 1024] {
            for records in [1u32, 100, 1000] {
                let mut batch = batch_bytes(records, value_bytes, 0);
                group.throughput(Throughput::Bytes(batch.len() as u64));
                let id = BenchmarkId::from_parameter(format!("{value_bytes}B-x{records}-{}B", batch.len()));
                let tmp = bench_dir();
                let log = Log::open(Arc::new(FsStorage), tmp.path().join("bench-0"), config(policy)).expect("open");
                let start = Instant::now();
                let mut appends = 0u64;
                group.bench_function(id, |b| {
                    b.iter(|| {
                        let now_ms = start.elapsed().as_millis() as i64;
                        log.append(&mut batch, now_ms).expect("append");
                        if log.sync_due(now_ms) {
                            log.sync().expect("sync");
                        }
                        appends += 1;
                        if appends.is_multiple_of(1024) {
                            log.enforce_retention(now_ms).expect("retention");
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

/// A 256 MiB log of 1 KiB records, built on first use (so a filtered run skips it).
struct ReadFixture {
    _tmp: tempfile::TempDir,
    log: Log,
    segments: Vec<PathBuf>,
}

fn read_fixture() -> ReadFixture {
    let tmp = bench_dir();
    let dir = tmp.path().join("read-0");
    let log = Log::open(Arc::new(FsStorage), &dir, config(SyncPolicy::Never)).expect("open");
    let mut batch = batch_bytes(1000, 1024, 0);
    while log.size_bytes() < 256 << 20 {
        log.append(&mut batch, 0).expect("append");
    }
    log.sync().expect("sync");
    let segments = log.segment_base_offsets().iter().map(|base| dir.join(format!("{base:020}.log"))).collect();
    ReadFixture { _tmp: tmp, log, segments }
}

fn read(c: &mut Criterion) {
    let fixture = OnceLock::new();
    let mut group = c.benchmark_group("read");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(10);
    group.bench_function("log-1MiB-reads", |b| {
        let ReadFixture { log, .. } = fixture.get_or_init(read_fixture);
        let (end, total) = (log.log_end_offset(), log.size_bytes());
        b.iter(|| {
            let mut offset = 0;
            let mut bytes = 0usize;
            while offset < end {
                let read = log.read(offset, 1 << 20).expect("read");
                bytes += read.bytes.len();
                offset = last_next_offset(&read.bytes);
            }
            assert_eq!(bytes as u64, total);
        })
    });
    let mut buf = vec![0u8; 1 << 20];
    group.bench_function("raw-pread-1MiB", |b| {
        let ReadFixture { log, segments, .. } = fixture.get_or_init(read_fixture);
        let total = log.size_bytes();
        b.iter(|| {
            let mut bytes = 0u64;
            for path in segments {
                let file = File::open(path).expect("open");
                let len = file.metadata().expect("stat").len();
                let mut pos = 0;
                while pos < len {
                    let n = file.read_at(&mut buf, pos).expect("pread");
                    pos += n as u64;
                    bytes += n as u64;
                }
            }
            assert_eq!(bytes, total);
        })
    });
    group.finish();
}

/// The offset after the last batch in `bytes`.
fn last_next_offset(bytes: &[u8]) -> u64 {
    let mut pos = 0;
    let mut next = 0;
    while pos < bytes.len() {
        let header = herald_log::BatchHeader::parse(&bytes[pos..], (bytes.len() - pos) as u64).expect("batch");
        next = header.next_offset();
        pos += header.size as usize;
    }
    next
}

criterion_group!(benches, append, read);
criterion_main!(benches);
