//! A model check of compaction's decisions over random logs.

use proptest::prelude::*;

use super::*;

/// A random log: (key index or none, tombstone, age in ms), in offset order.
fn logs() -> impl Strategy<Value = Vec<(Option<u8>, bool, i64)>> {
    prop::collection::vec((prop::option::weighted(0.9, 0u8..6), prop::bool::weighted(0.2), 0i64..10_000), 0..80)
}

const NOW: i64 = 1_000_000;

proptest! {
    #[test]
    fn a_pass_keeps_each_keys_latest_and_drops_only_what_it_may(
        log in logs(),
        active in 0usize..90,
        lag in 0i64..5_000,
        retention in 0i64..5_000,
    ) {
        let policy = CompactionPolicy { delete_retention_ms: retention, min_compaction_lag_ms: lag, ..CompactionPolicy::default() };
        let keys: Vec<Vec<u8>> = (0..6u8).map(|k| vec![b'k', k]).collect();
        // Ages fall as offsets rise: a log is written in time order.
        let mut ages: Vec<i64> = log.iter().map(|(_, _, age)| *age).collect();
        ages.sort_unstable_by(|a, b| b.cmp(a));
        let records: Vec<Seen<'_>> = log
            .iter()
            .zip(&ages)
            .enumerate()
            .map(|(offset, ((key, tombstone, _), age))| Seen {
                offset: offset as u64,
                timestamp: NOW - age,
                key: key.map(|k| keys[k as usize].as_slice()),
                tombstone: *tombstone,
            })
            .collect();
        let cutoff = Horizon::lag_cutoff_ms(NOW, &policy);
        let too_young = records.iter().find(|r| r.timestamp > cutoff).map(|r| r.offset);
        let horizon = Horizon::at(NOW, &policy, active as u64, too_young);
        let mut latest = LatestOffsets::default();
        records.iter().for_each(|r| latest.note(r));
        let kept: Vec<&Seen<'_>> = records.iter().filter(|r| keeps(r, &latest, &horizon)).collect();

        for r in &records {
            let newest = r.key.is_none_or(|k| records.iter().filter(|o| o.key == Some(k)).all(|o| o.offset <= r.offset));
            let cleanable = r.offset < horizon.cleanable_end;
            let is_kept = kept.iter().any(|k| k.offset == r.offset);
            if !cleanable || r.key.is_none() {
                prop_assert!(is_kept, "offset {}: outside the cleanable range or keyless, kept", r.offset);
            } else if !newest {
                prop_assert!(!is_kept, "offset {}: an older value of its key goes", r.offset);
            } else if r.tombstone {
                let expired = r.timestamp < NOW - retention;
                prop_assert_eq!(is_kept, !expired, "offset {}: a tombstone goes only after delete.retention.ms", r.offset);
            } else {
                prop_assert!(is_kept, "offset {}: each key's latest value stays", r.offset);
            }
            // Nothing younger than the lag is ever cleaned.
            if r.timestamp > cutoff {
                prop_assert!(!cleanable, "offset {}: younger than min.compaction.lag.ms yet cleanable", r.offset);
            }
        }
        // Offsets never change: what stays is a subsequence, in order.
        prop_assert!(kept.windows(2).all(|w| w[0].offset < w[1].offset));
    }
}

#[test]
fn a_partition_is_due_by_dirty_share_or_by_age() {
    let policy = CompactionPolicy { max_compaction_lag_ms: 60_000, ..CompactionPolicy::default() };
    assert!(!due(&policy, NOW, 0, 100, Some(0)), "nothing dirty");
    assert!(due(&policy, NOW, 50, 100, Some(NOW)), "half dirty");
    assert!(!due(&policy, NOW, 10, 100, Some(NOW - 1_000)), "a little dirty, recently");
    assert!(due(&policy, NOW, 10, 100, Some(NOW - 61_000)), "a little dirty, for too long");
}

#[test]
fn a_newer_value_past_the_cleanable_end_still_supersedes() {
    let key = b"k".as_slice();
    let old = Seen { offset: 0, timestamp: 0, key: Some(key), tombstone: false };
    let new = Seen { offset: 5, timestamp: 10, key: Some(key), tombstone: false };
    let mut latest = LatestOffsets::default();
    latest.note(&old);
    latest.note(&new);
    assert_eq!(latest.len(), 1);
    let horizon = Horizon { cleanable_end: 3, tombstones_before_ms: 0 };
    assert!(!keeps(&old, &latest, &horizon));
    assert!(keeps(&new, &latest, &horizon));
}
