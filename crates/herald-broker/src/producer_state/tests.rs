use proptest::prelude::*;

use super::*;

fn batch(pid: i64, epoch: i16, first_sequence: i32, record_count: i32) -> ProducerBatch {
    ProducerBatch { producer_id: pid, epoch, first_sequence, record_count }
}

fn at(offset: u64) -> Placement {
    Placement { base_offset: offset, timestamp_ms: 0 }
}

#[test]
fn a_retry_within_the_window_returns_its_original_offset() {
    let mut state = ProducerState::default();
    for i in 0..5 {
        let b = batch(7, 0, i * 10, 10);
        assert_eq!(state.check(&b), Verdict::Append);
        state.record(&b, at(100 + i as u64 * 10), 0);
    }
    assert_eq!(state.check(&batch(7, 0, 20, 10)), Verdict::Duplicate(at(120)));
    assert_eq!(state.check(&batch(7, 0, 50, 3)), Verdict::Append);
}

#[test]
fn a_retry_older_than_the_window_is_duplicate_sequence_and_a_gap_is_out_of_order() {
    let mut state = ProducerState::default();
    for i in 0..8 {
        state.record(&batch(7, 0, i * 2, 2), at(i as u64 * 2), 0);
    }
    assert_eq!(state.check(&batch(7, 0, 0, 2)), Verdict::DuplicateSequence);
    assert_eq!(state.check(&batch(7, 0, 18, 2)), Verdict::OutOfOrderSequence { expected: 16 });
    assert_eq!(state.check(&batch(7, 0, 7, 2)), Verdict::OutOfOrderSequence { expected: 16 }, "overlap");
}

#[test]
fn epochs_fence_old_producers_and_restart_sequences() {
    let mut state = ProducerState::default();
    state.record(&batch(7, 3, 0, 5), at(0), 0);
    assert_eq!(state.check(&batch(7, 2, 5, 1)), Verdict::InvalidEpoch { current: 3 });
    assert_eq!(state.check(&batch(7, 4, 5, 1)), Verdict::OutOfOrderSequence { expected: 0 });
    assert_eq!(state.check(&batch(7, 4, 0, 1)), Verdict::Append);
    state.record(&batch(7, 4, 0, 1), at(5), 0);
    assert_eq!(state.check(&batch(7, 3, 5, 1)), Verdict::InvalidEpoch { current: 4 });
}

#[test]
fn unknown_producers_start_at_zero_and_non_idempotent_batches_always_append() {
    let state = ProducerState::default();
    assert_eq!(state.check(&batch(9, 0, 0, 1)), Verdict::Append);
    assert_eq!(state.check(&batch(9, 0, 40, 1)), Verdict::UnknownProducer);
    assert_eq!(state.check(&batch(-1, -1, -1, 3)), Verdict::Append);
}

#[test]
fn sequences_wrap_after_i32_max() {
    let mut state = ProducerState::default();
    state.record(&batch(7, 0, i32::MAX - 1, 2), at(0), 0);
    assert_eq!(state.check(&batch(7, 0, 0, 3)), Verdict::Append);
    state.record(&batch(7, 0, 0, 3), at(2), 0);
    assert_eq!(state.check(&batch(7, 0, 3, 1)), Verdict::Append);
    assert_eq!(state.check(&batch(7, 0, i32::MAX - 1, 2)), Verdict::Duplicate(at(0)));
}

#[test]
fn idle_producers_expire_and_memory_is_bounded() {
    let config = ProducerStateConfig { expiration_ms: 1_000, producers_max: 3 };
    let mut state = ProducerState::new(config);
    for pid in 0..5 {
        state.record(&batch(pid, 0, 0, 1), at(pid as u64), pid * 100);
    }
    assert_eq!(state.len(), 3, "the least recently active producers were evicted");
    assert_eq!(state.check(&batch(0, 0, 1, 1)), Verdict::UnknownProducer);
    assert_eq!(state.check(&batch(4, 0, 1, 1)), Verdict::Append);
    assert_eq!(state.expire(1_250), 1, "producer 2 (last write at 200) expired");
    assert_eq!(state.expire(10_000), 2);
    assert!(state.is_empty());
}

/// What an idempotent producer does: send the next batch, or retry one it sent before.
#[derive(Debug, Clone)]
enum Send {
    Next { records: i32 },
    Retry { back: usize },
    Skip { records: i32 },
}

fn send() -> impl Strategy<Value = Send> {
    prop_oneof![
        6 => (1i32..20).prop_map(|records| Send::Next { records }),
        3 => (0usize..12).prop_map(|back| Send::Retry { back }),
        1 => (1i32..5).prop_map(|records| Send::Skip { records }),
    ]
}

proptest! {
    /// Against a reference model: a retry of one of the last five appended batches answers
    /// its original offset, an older retry is DUPLICATE_SEQUENCE, the next sequence appends,
    /// anything else is OUT_OF_ORDER; so the log holds every batch once, in sequence order.
    #[test]
    fn retries_never_duplicate_and_gaps_are_refused(sends in prop::collection::vec(send(), 1..80), start in 0i32..i32::MAX) {
        let mut state = ProducerState::default();
        let mut log: Vec<(i32, i32, u64)> = Vec::new(); // (first, count, offset): appended batches
        let mut sent: Vec<(i32, i32)> = Vec::new();
        let mut next_seq = start;
        let mut next_offset = 0u64;
        if start != 0 {
            // Seed the state as a restart would, from the log.
            state.record(&batch(1, 0, add_sequence(start, -1), 1), at(0), 0);
            log.push((add_sequence(start, -1), 1, 0));
            next_offset = 1;
        }
        for s in &sends {
            let (first, count) = match s {
                Send::Next { records } => (next_seq, *records),
                Send::Retry { back } if !sent.is_empty() => sent[sent.len() - 1 - back % sent.len()],
                Send::Retry { .. } => continue,
                Send::Skip { records } => (add_sequence(next_seq, *records), 1),
            };
            let b = batch(1, 0, first, count);
            let expected = match log.iter().rposition(|(f, c, _)| *f == first && *c == count) {
                Some(i) if log.len() - i <= CACHED_BATCHES => Verdict::Duplicate(at(log[i].2)),
                Some(_) => Verdict::DuplicateSequence,
                None if first == next_seq => Verdict::Append,
                None => Verdict::OutOfOrderSequence { expected: next_seq },
            };
            prop_assert_eq!(state.check(&b), expected, "send {:?} of ({}, {})", s, first, count);
            if expected == Verdict::Append {
                state.record(&b, at(next_offset), 0);
                log.push((first, count, next_offset));
                next_offset += count as u64;
                next_seq = add_sequence(first, count);
                sent.push((first, count));
            }
        }
        for pair in log.windows(2) {
            prop_assert_eq!(add_sequence(pair[0].0, pair[0].1), pair[1].0, "sequences in the log are contiguous");
        }
    }
}
