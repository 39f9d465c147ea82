//! A real process killed with SIGKILL mid-append (reliability scenario D1, log level).
//!
//! The test binary re-runs itself as a child (the ignored test below, selected by an
//! environment variable). The child appends with `always` to a log on real files and
//! prints `ACK <offset> <cycle> <index>` after each append returns. The parent kills it
//! at a random moment, reopens the log, and checks that every acknowledged batch is
//! there byte for byte. The log carries over from cycle to cycle, so recovery runs on
//! top of earlier recoveries. SIGKILL keeps the page cache, so this checks process-crash
//! recovery; power loss is the fault-storage simulation's job.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use herald_log::testing::batch_with_values;
use herald_log::{FsStorage, Log, LogConfig, SyncPolicy};

use crate::common::{Rng, count_from_env, placed, read_all_with, seed_from_env};

const CHILD_DIR_VAR: &str = "HERALD_CRASH_CHILD_DIR";
const CHILD_CYCLE_VAR: &str = "HERALD_CRASH_CHILD_CYCLE";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        checkpoint_interval_bytes: 16 * 1024,
        index_interval_bytes: 1024,
        sync: SyncPolicy::Always,
        ..LogConfig::default()
    }
}

/// The batch a child writes as its `index`-th append of `cycle`: the parent rebuilds it.
fn batch(cycle: u64, index: u64) -> Vec<u8> {
    let records = 1 + index % 4;
    let values: Vec<Vec<u8>> = (0..records)
        .map(|r| {
            format!("cycle {cycle} append {index} record {r} {}", "p".repeat(((index * 37 + r * 11) % 700) as usize))
                .into_bytes()
        })
        .collect();
    batch_with_values(&values, (cycle * 1_000_000 + index) as i64)
}

#[test]
#[ignore = "run by the crash test as its child process"]
fn child_process_appends_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR_VAR) else { return };
    let cycle: u64 = std::env::var(CHILD_CYCLE_VAR).expect("cycle").parse().expect("number");
    let log = Log::open(Arc::new(FsStorage), Path::new(&dir), config()).expect("child opens the log");
    let mut out = std::io::stdout().lock();
    for index in 0.. {
        let mut request = batch(cycle, index);
        let info = log.append(&mut request, 0).expect("child append");
        writeln!(out, "ACK {} {cycle} {index}", info.base_offset).expect("report");
        out.flush().expect("flush");
    }
}

#[test]
fn acknowledged_appends_survive_sigkill_at_random_moments() {
    let cycles = count_from_env("HERALD_PROCESS_CRASH_CYCLES", 20);
    let mut rng = Rng(seed_from_env("HERALD_PROCESS_CRASH_SEED", 0x0c0ffee));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("events-0");
    let exe = std::env::current_exe().expect("test binary");
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "process_crash::child_process_appends_until_killed",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_VAR, &dir)
            .env(CHILD_CYCLE_VAR, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout).lines().map_while(Result::ok).filter(|l| l.starts_with("ACK ")).collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(30 + rng.below(250)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let lines = reader.join().expect("reader");
        for line in &lines {
            let mut fields = line.split(' ').skip(1).map(|f| f.parse::<u64>().expect("number"));
            let (offset, c, index) =
                (fields.next().expect("offset"), fields.next().expect("cycle"), fields.next().expect("index"));
            acked.push((offset, placed(&batch(c, index), offset)));
        }
        let log = Log::open(Arc::new(FsStorage), &dir, config()).expect("reopen after SIGKILL");
        let served = read_all_with(&log, 1 << 20).expect("read");
        let mut served_iter = served.iter().peekable();
        for (offset, expected) in &acked {
            while served_iter.peek().is_some_and(|(o, _)| o < offset) {
                served_iter.next();
            }
            let found = served_iter.next();
            assert!(
                found.is_some_and(|(o, b)| o == offset && b == expected),
                "cycle {cycle}: acknowledged batch at offset {offset} is missing or different after SIGKILL"
            );
        }
        eprintln!("cycle {cycle}: {} acknowledged so far, log end {}", acked.len(), log.log_end_offset());
        // Alternate clean and unclean handovers to the next child.
        if cycle % 2 == 1 {
            log.close().expect("close");
        }
    }
    assert!(acked.len() > cycles as usize, "the children must have acknowledged appends");
}
