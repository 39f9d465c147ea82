//! Model-based property test: random operation sequences against a reference model.
//!
//! The model is a plain list of batches plus a log start offset. After every operation
//! the log must agree with it: reads return a non-empty run of the model's batches
//! starting at the one holding the offset, timestamp lookups find the model's answer,
//! and reopening (cleanly, uncleanly, or after a simulated power loss with everything
//! acknowledged under `always`) changes nothing.
//!
//! The seed is printed first; replay with `HERALD_PROPTEST_SEED=<seed>`.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

use herald_log::testing::batch_with_values;
use herald_log::{BatchHeader, CrashMode, FaultStorage, Log, LogConfig, LogError, SyncPolicy};

use crate::common::{
    assert_batches_eq, count_from_env, fault_storage, open_fault, placed, read_all, small_config, split_batches,
};

#[derive(Debug, Clone)]
enum Op {
    /// One request of batches: (record count, value bytes, first timestamp) each.
    Append(Vec<(u8, u16, i64)>),
    Read {
        pick: u64,
        max_bytes: u32,
    },
    Roll,
    Retention {
        now_ms: i64,
    },
    Truncate {
        pick: u64,
    },
    DeleteRecords {
        pick: u64,
    },
    OffsetForTimestamp {
        timestamp: i64,
    },
    Reopen {
        clean: bool,
    },
    PowerLoss {
        tear: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let batch = (1u8..5, 0u16..300, 0i64..5_000);
    prop_oneof![
        12 => prop::collection::vec(batch, 1..4).prop_map(Op::Append),
        4 => (any::<u64>(), 1u32..3_000).prop_map(|(pick, max_bytes)| Op::Read { pick, max_bytes }),
        1 => Just(Op::Roll),
        1 => (0i64..20_000).prop_map(|now_ms| Op::Retention { now_ms }),
        1 => any::<u64>().prop_map(|pick| Op::Truncate { pick }),
        1 => any::<u64>().prop_map(|pick| Op::DeleteRecords { pick }),
        2 => (0i64..6_000).prop_map(|timestamp| Op::OffsetForTimestamp { timestamp }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => any::<bool>().prop_map(|tear| Op::PowerLoss { tear }),
    ]
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<(u64, Vec<u8>)>,
    log_start: u64,
}

impl Model {
    fn end(&self) -> u64 {
        self.batches.last().map_or(self.log_start, |(_, b)| header(b).next_offset())
    }

    /// Index of the batch holding `offset`.
    fn holding(&self, offset: u64) -> Option<usize> {
        self.batches.iter().position(|(_, b)| header(b).last_offset() >= offset)
    }

    fn drop_below_log_start(&mut self) {
        self.batches.retain(|(_, b)| header(b).last_offset() >= self.log_start);
    }
}

fn header(batch: &[u8]) -> BatchHeader {
    BatchHeader::parse(batch, batch.len() as u64).expect("model batches frame")
}

fn config() -> LogConfig {
    LogConfig { retention_bytes: Some(3_000), retention_ms: Some(10_000), ..small_config(SyncPolicy::Always) }
}

#[test]
fn the_log_behaves_like_its_model() {
    let seed = std::env::var("HERALD_PROPTEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("HERALD_PROPTEST_SEED={seed}");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let cases = count_from_env("HERALD_PROPTEST_CASES", 200) as u32;
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| run(&ops).map_err(TestCaseError::fail));
    if let Err(err) = result {
        match err {
            TestError::Fail(reason, ops) => {
                panic!("model test failed with HERALD_PROPTEST_SEED={seed}: {reason}\nminimal ops: {ops:#?}")
            }
            TestError::Abort(reason) => panic!("model test aborted (seed {seed}): {reason}"),
        }
    }
}

fn run(ops: &[Op]) -> Result<(), String> {
    let storage = fault_storage(9);
    let mut log = Some(open_fault(&storage, config()).map_err(|e| e.to_string())?);
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        step(&storage, &mut model, op, &mut log).map_err(|e| format!("op #{i} {op:?}: {e}"))?;
        let current = log.as_ref().expect("log is open");
        compare(current, &model).map_err(|e| format!("after op #{i} {op:?}: {e}"))?;
    }
    Ok(())
}

fn step(storage: &FaultStorage, model: &mut Model, op: &Op, slot: &mut Option<Log>) -> Result<(), String> {
    let err = |e: LogError| e.to_string();
    if let Op::Reopen { clean } = op {
        let old = slot.take().expect("open");
        if *clean {
            old.close().map_err(err)?;
        } else {
            drop(old);
        }
        *slot = Some(open_fault(storage, config()).map_err(err)?);
        return Ok(());
    }
    if let Op::PowerLoss { tear } = op {
        drop(slot.take());
        storage.crash(if *tear { CrashMode::TearUnsynced } else { CrashMode::DropUnsynced });
        *slot = Some(open_fault(storage, config()).map_err(err)?);
        return Ok(());
    }
    let log = slot.as_ref().expect("open");
    match op {
        Op::Append(batches) => {
            let mut request = Vec::new();
            let mut offset = model.end();
            for (n, (records, value_bytes, ts)) in batches.iter().enumerate() {
                let values: Vec<Vec<u8>> =
                    (0..*records).map(|r| vec![n as u8 ^ r; usize::from(*value_bytes)]).collect();
                let batch = batch_with_values(&values, *ts);
                model.batches.push((offset, placed(&batch, offset)));
                offset += u64::from(*records);
                request.extend_from_slice(&batch);
            }
            let info = log.append(&mut request, 0).map_err(err)?;
            if info.last_offset + 1 != model.end() {
                return Err(format!("append ended at {}, model at {}", info.last_offset + 1, model.end()));
            }
        }
        Op::Read { pick, max_bytes } => {
            let offset = model.log_start + pick % (model.end() - model.log_start + 1);
            let read = log.read(offset, *max_bytes).map_err(err)?;
            let got = split_batches(&read.bytes);
            match model.holding(offset) {
                None if got.is_empty() => {}
                None => return Err(format!("read at the end {offset} returned data")),
                Some(first) => {
                    let want = &model.batches[first..(first + got.len()).min(model.batches.len())];
                    if got.is_empty() || got != want {
                        return Err(format!(
                            "read at {offset} returned {} batches that are not the model's run",
                            got.len()
                        ));
                    }
                    if got.len() > 1 && read.bytes.len() > *max_bytes as usize {
                        return Err(format!("read returned {} bytes over max {max_bytes}", read.bytes.len()));
                    }
                }
            }
        }
        Op::Roll => log.roll().map_err(err)?,
        Op::Retention { now_ms } => {
            let before = model.log_start;
            let outcome = log.enforce_retention(*now_ms).map_err(err)?;
            let start = outcome.log_start_offset;
            let on_boundary = start == model.end() || model.batches.iter().any(|(o, _)| *o == start);
            if start < before || (start != before && !on_boundary) {
                return Err(format!("retention moved the log start from {before} to {start}"));
            }
            model.log_start = start;
            model.drop_below_log_start();
        }
        Op::Truncate { pick } => {
            let offset = model.log_start + pick % (model.end() - model.log_start + 1);
            let new_end = log.truncate_to(offset).map_err(err)?;
            let expected = model.holding(offset).map_or(model.end(), |i| model.batches[i].0);
            if new_end != expected {
                return Err(format!("truncate_to({offset}) ended at {new_end}, model says {expected}"));
            }
            model.batches.retain(|(o, _)| *o < new_end);
            model.log_start = model.log_start.min(new_end);
        }
        Op::DeleteRecords { pick } => {
            let offset = model.log_start + pick % (model.end() - model.log_start + 1);
            let start = log.delete_records_before(offset).map_err(err)?;
            model.log_start = model.log_start.max(offset);
            if start != model.log_start {
                return Err(format!("delete_records_before({offset}) left the start at {start}"));
            }
            model.drop_below_log_start();
        }
        Op::OffsetForTimestamp { timestamp } => {
            let got = log.offset_for_timestamp(*timestamp).map_err(err)?.map(|hit| hit.offset);
            let want = model.batches.iter().find_map(|(base, batch)| {
                let h = header(batch);
                let first = (0..=h.last_offset_delta).find(|d| h.base_timestamp + i64::from(*d) >= *timestamp)?;
                Some((base + u64::from(first)).max(model.log_start))
            });
            if got != want {
                return Err(format!("offset_for_timestamp({timestamp}) = {got:?}, model says {want:?}"));
            }
        }
        Op::Reopen { .. } | Op::PowerLoss { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn compare(log: &Log, model: &Model) -> Result<(), String> {
    if log.log_start_offset() != model.log_start || log.log_end_offset() != model.end() {
        return Err(format!(
            "log spans {}..{}, model {}..{}",
            log.log_start_offset(),
            log.log_end_offset(),
            model.log_start,
            model.end()
        ));
    }
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_all(log)))
        .map_err(|_| "read_all panicked".to_string())?
        .map_err(|e| e.to_string())?;
    std::panic::catch_unwind(|| assert_batches_eq(&served, &model.batches))
        .map_err(|_| "served batches differ from the model".to_string())
}
