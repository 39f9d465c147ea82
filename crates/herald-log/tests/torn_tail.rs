//! Torn and corrupt tails on real files (reliability scenario D5).
//!
//! The active segment is cut at every byte of its last three batches, and separately has
//! random bits flipped there. Recovery must end exactly at the last valid batch before
//! the damage, cut the file there, and never serve a batch that fails its CRC.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald_log::testing::batch_with_values;
use herald_log::{BatchHeader, FsStorage, Log, LogConfig, SyncPolicy};

use crate::common::{Rng, assert_batches_eq, placed, read_all, seed_from_env, small_config};

/// Recovery point at the segment start, so the whole active segment is "tail".
fn config() -> LogConfig {
    LogConfig { segment_bytes: 1 << 20, checkpoint_interval_bytes: 1 << 20, ..small_config(SyncPolicy::Always) }
}

struct Pristine {
    files: Vec<(PathBuf, Vec<u8>)>,
    segment: PathBuf,
    batches: Vec<(u64, Vec<u8>)>,
    tail_start: usize,
}

/// Writes 12 batches of varied sizes, drops the log without a clean close, and keeps a
/// copy of every file.
fn pristine(dir: &Path) -> Pristine {
    let log = Log::open(Arc::new(FsStorage), dir, config()).expect("open");
    let mut batches = Vec::new();
    for i in 0..12u32 {
        let values: Vec<Vec<u8>> =
            (0..1 + i % 3).map(|r| format!("b{i} r{r} {}", "v".repeat(40 + 37 * i as usize)).into_bytes()).collect();
        let batch = batch_with_values(&values, i64::from(i));
        let info = log.append(&mut batch.clone(), 0).expect("append");
        batches.push((info.base_offset, placed(&batch, info.base_offset)));
    }
    drop(log);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        files.push((path.clone(), std::fs::read(&path).expect("read")));
    }
    let segment = dir.join(format!("{:020}.log", 0));
    let total: usize = batches.iter().map(|(_, b)| b.len()).sum();
    let tail: usize = batches[batches.len() - 3..].iter().map(|(_, b)| b.len()).sum();
    Pristine { files, segment, batches, tail_start: total - tail }
}

fn restore(p: &Pristine, dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("dir") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    for (path, bytes) in &p.files {
        std::fs::write(path, bytes).expect("write");
    }
}

/// The batches that lie wholly before byte `limit`.
fn batches_before(batches: &[(u64, Vec<u8>)], limit: usize) -> Vec<(u64, Vec<u8>)> {
    let mut end = 0;
    batches
        .iter()
        .take_while(|(_, b)| {
            end += b.len();
            end <= limit
        })
        .cloned()
        .collect()
}

#[test]
fn cutting_the_active_segment_at_every_byte_of_its_last_three_batches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("t-0");
    let p = pristine(&dir);
    let total = p.batches.iter().map(|(_, b)| b.len()).sum::<usize>();
    for cut in p.tail_start..=total {
        restore(&p, &dir);
        std::fs::OpenOptions::new().write(true).open(&p.segment).expect("open").set_len(cut as u64).expect("cut");
        let log = Log::open(Arc::new(FsStorage), &dir, config()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let expected = batches_before(&p.batches, cut);
        let served = read_all(&log).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_batches_eq(&served, &expected);
        let kept: usize = expected.iter().map(|(_, b)| b.len()).sum();
        let len = std::fs::metadata(&p.segment).expect("stat").len();
        assert_eq!(len, kept as u64, "cut at {cut}: the torn tail must be cut off the file");
        let next =
            expected.last().map_or(0, |(_, b)| BatchHeader::parse(b, b.len() as u64).expect("frames").next_offset());
        assert_eq!(log.log_end_offset(), next, "cut at {cut}");
    }
}

#[test]
fn flipping_random_bits_in_the_last_three_batches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("t-0");
    let p = pristine(&dir);
    let seed = seed_from_env("HERALD_TORN_TAIL_SEED", 42);
    let mut rng = Rng(seed);
    let mut next = move |n: u64| rng.below(n);
    let total = p.batches.iter().map(|(_, b)| b.len()).sum::<usize>();
    let segment_bytes: Vec<u8> = p.batches.iter().flat_map(|(_, b)| b.clone()).collect();
    for trial in 0..300 {
        restore(&p, &dir);
        let mut damaged = segment_bytes.clone();
        let mut flipped = Vec::new();
        for _ in 0..1 + next(8) {
            let byte = p.tail_start + next((total - p.tail_start) as u64) as usize;
            damaged[byte] ^= 1 << next(8);
            flipped.push(byte);
        }
        std::fs::write(&p.segment, &damaged).expect("write");
        // A batch is broken when a flip lands anywhere but its partitionLeaderEpoch
        // (bytes 12..16), the one field neither the CRC nor the framing covers.
        let mut expected = Vec::new();
        let mut start = 0;
        for (offset, batch) in &p.batches {
            let end = start + batch.len();
            let hits: Vec<usize> = flipped.iter().filter(|&&b| b >= start && b < end).map(|b| b - start).collect();
            if hits.iter().any(|&at| !(12..16).contains(&at)) {
                break;
            }
            expected.push((*offset, damaged[start..end].to_vec()));
            start = end;
        }
        let context = format!("trial {trial} (seed {seed}), flipped bytes {flipped:?}");
        let log = Log::open(Arc::new(FsStorage), &dir, config()).unwrap_or_else(|e| panic!("{context}: {e}"));
        let served = read_all(&log).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(served.len(), expected.len(), "{context}");
        assert_batches_eq(&served, &expected);
    }
}
