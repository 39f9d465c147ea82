//! Log compaction against same-run baselines (`cargo bench -p herald-broker --bench
//! compaction`; rows go to docs/BENCHMARKS.md).
//!
//! - **Cleaning throughput**: one pass of the cleaner over `HERALD_BENCH_MB` (default 1024)
//!   MiB of sealed segments, keyed records of 100 bytes over 100,000 keys (each key written
//!   about ten times), in MB of the log cleaned per second. Baseline: copying the same
//!   segment files with `pread`/`pwrite` in 1 MiB chunks and one `fdatasync` per file
//!   (physbench's sequential read-plus-write, in this process), measured before and after.
//! - **Produce while cleaning**: one writer appends batches of 100 records, each waited for
//!   with an fsync as an `acks=all` produce is, to a compacted topic while the cleaner
//!   works through a backlog of the same size, against the same writer on a delete-policy
//!   topic for the same time (measured before and after).
//!
//! `HERALD_BENCH_DIR` puts the data on another file system than the system temp dir.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use herald_broker::BrokerConfig;
use herald_broker::internals::{Broker, Cleaner, NewRecord, encode_batch, now_ms};
use herald_log::FsStorage;

const KEYS: u64 = 100_000;
const RECORDS_PER_BATCH: u64 = 100;

fn main() {
    let mb: u64 = std::env::var("HERALD_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let tmp = match std::env::var_os("HERALD_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("bench dir");
    let config = BrokerConfig { data_dir: tmp.path().join("data"), ..BrokerConfig::default() };
    let broker = Arc::new(Broker::open(config, Arc::new(FsStorage)).expect("broker"));
    let compacted = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), (16 << 20).to_string()),
        ("min.cleanable.dirty.ratio".to_string(), "0.01".to_string()),
    ]);
    broker.create_topic("compacted", Some(1), compacted.clone(), false).expect("topic");

    fill(&broker, "compacted", mb << 20, 0);
    let (first_copy, second_copy) = (tmp.path().join("copy-1"), tmp.path().join("copy-2"));
    let copy_before = copy_mbps(&segment_files(&tmp.path().join("data/compacted-0")), &first_copy);
    let bytes = broker.partition("compacted", 0).expect("partition").log().size_bytes();
    let started = Instant::now();
    let pass = Cleaner::default().run(&broker, now_ms(), &|| false);
    let clean = bytes as f64 / 1e6 / started.elapsed().as_secs_f64();
    // The same bytes again (the segments themselves have been rewritten by now).
    let copy_after = copy_mbps(&segment_files(&first_copy), &second_copy);
    for dir in [first_copy, second_copy] {
        std::fs::remove_dir_all(dir).expect("remove copies");
    }
    let copy = (copy_before + copy_after) / 2.0;
    println!("cleaning: {bytes} bytes in {:.2} s, {pass:?}", started.elapsed().as_secs_f64());
    println!(
        "| cleaning {mb} MiB | {clean:.0} MB/s | raw copy {copy_before:.0} / {copy_after:.0} MB/s | {:.2} |",
        clean / copy
    );

    broker.create_topic("plain", Some(1), BTreeMap::new(), false).expect("topic");
    broker.create_topic("backlog", Some(1), compacted, false).expect("topic");
    fill(&broker, "backlog", mb << 20, 1);
    let cleaning = Arc::new(AtomicBool::new(true));
    let cleaner = {
        let (broker, cleaning) = (Arc::clone(&broker), Arc::clone(&cleaning));
        std::thread::spawn(move || {
            let started = Instant::now();
            let pass = Cleaner::default().run(&broker, now_ms(), &|| false);
            cleaning.store(false, Ordering::SeqCst);
            (started.elapsed(), pass)
        })
    };
    let (during, window) = produce_while(&broker, "backlog", &cleaning);
    let (spent, pass) = cleaner.join().expect("cleaner");
    let before = produce_for(&broker, "plain", window);
    let after = produce_for(&broker, "plain", window);
    let plain = (before + after) / 2.0;
    println!("produce while cleaning: {window:?} of a {spent:?} pass ({} segments rewritten)", pass.segments_rewritten);
    println!(
        "| produce while cleaning | {during:.0} batches/s | delete policy {before:.0} / {after:.0} batches/s | {:.2} |",
        during / plain
    );
}

/// Appends keyed records to `topic` until it holds `bytes`, then seals its segment.
fn fill(broker: &Broker, topic: &str, bytes: u64, salt: u64) {
    let partition = broker.partition(topic, 0).expect("partition");
    let mut i = 0u64;
    while partition.log().size_bytes() < bytes {
        let records: Vec<NewRecord> = (0..RECORDS_PER_BATCH)
            .map(|j| {
                let n = i * RECORDS_PER_BATCH + j;
                NewRecord {
                    key: Some(format!("key-{}-{salt}", n.wrapping_mul(2_654_435_761) % KEYS).into()),
                    value: Some(vec![b'v'; 100].into()),
                    headers: Vec::new(),
                }
            })
            .collect();
        let mut batch = encode_batch(&records, now_ms()).expect("encode");
        partition.append(&mut batch, 1 << 20, now_ms()).expect("append");
        i += 1;
    }
    partition.log().sync().expect("sync");
    partition.log().roll().expect("roll");
}

/// Batches per second one writer appends (each fsynced) while `running` holds, and for how long.
fn produce_while(broker: &Broker, topic: &str, running: &AtomicBool) -> (f64, Duration) {
    let started = Instant::now();
    let mut n = 0u64;
    while running.load(Ordering::SeqCst) {
        produce_one(broker, topic, n);
        n += 1;
    }
    let spent = started.elapsed();
    (n as f64 / spent.as_secs_f64(), spent)
}

fn produce_for(broker: &Broker, topic: &str, window: Duration) -> f64 {
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < window {
        produce_one(broker, topic, n);
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn produce_one(broker: &Broker, topic: &str, n: u64) {
    let partition = broker.partition(topic, 0).expect("partition");
    let records: Vec<NewRecord> = (0..RECORDS_PER_BATCH)
        .map(|j| NewRecord {
            key: Some(format!("live-{n}-{j}").into()),
            value: Some(vec![b'w'; 100].into()),
            headers: Vec::new(),
        })
        .collect();
    let mut batch = encode_batch(&records, now_ms()).expect("encode");
    let appended = partition.append(&mut batch, 1 << 20, now_ms()).expect("append");
    partition.log().sync_through(appended.durable_at).expect("sync");
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// MB/s of copying `files` (1 MiB reads and writes, one fdatasync per file) into `into`.
fn copy_mbps(files: &[PathBuf], into: &Path) -> f64 {
    std::fs::create_dir_all(into).expect("copy dir");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let started = Instant::now();
    for file in files {
        let mut from = std::fs::File::open(file).expect("open");
        let mut to = std::fs::File::create(into.join(file.file_name().expect("a file"))).expect("create");
        loop {
            let n = from.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n]).expect("write");
            total += n as u64;
        }
        to.sync_data().expect("fdatasync");
    }
    total as f64 / 1e6 / started.elapsed().as_secs_f64()
}
