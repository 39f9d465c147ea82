//! Committed offsets, durable in an internal herald-log log (`<data dir>/@group-offsets`).
//!
//! Every change (commit, offset delete, group delete) is appended as one RecordBatch of
//! small binary records and applied to an in-memory map; opening replays the log. The
//! log gets the broker's fsync policy, and a commit is acknowledged only once the log is
//! durable past it, so after a crash a committed offset is never older than the last one
//! acknowledged. When the log outgrows `compact_bytes`, the live map is written again as
//! a snapshot and everything before it is dropped (`delete_records_before`), all under the
//! store's lock so no commit can interleave with the snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use herald_log::{Log, LogConfig, LogError, Storage};

use crate::new_records::NewRecord;

/// Directory of the offsets log inside the data directory ('@' never appears in a topic
/// name, so it cannot collide with a partition directory).
pub(crate) const OFFSETS_DIR: &str = "@group-offsets";

const COMMIT: u8 = 1;
const DELETE_OFFSET: u8 = 2;
const DELETE_GROUP: u8 = 3;
const RECORDS_PER_BATCH: usize = 1000;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch the client saw (-1 if none).
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When it was committed.
    pub commit_ms: i64,
}

type Key = (String, String, i32);

/// The store.
#[derive(Debug)]
pub struct OffsetStore {
    log: Log,
    offsets: Mutex<BTreeMap<Key, Committed>>,
    compact_bytes: u64,
}

/// One change, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Commit(Key, Committed),
    DeleteOffset(Key),
    DeleteGroup(String),
}

impl OffsetStore {
    /// Opens (or creates) the offsets log in `dir` and replays it.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        config: LogConfig,
        compact_bytes: u64,
    ) -> Result<Self, LogError> {
        let config = LogConfig {
            segment_bytes: config.segment_bytes.min(16 << 20),
            retention_ms: None,
            retention_bytes: None,
            ..config
        };
        let log = Log::open(storage, dir, config)?;
        let mut offsets = BTreeMap::new();
        crate::new_records::replay(&log, OFFSETS_DIR, |offset, value| match value.and_then(decode_change) {
            Some(change) => apply(&mut offsets, change),
            None => tracing::warn!(offset, "unreadable group offsets record skipped"),
        })?;
        Ok(Self { log, offsets: Mutex::new(offsets), compact_bytes })
    }

    /// The log (to fsync, or to close it).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Consumes the store, returning its log.
    pub fn into_log(self) -> Log {
        self.log
    }

    /// Records commits; returns the offset the log must be durable to before they may be
    /// acknowledged.
    pub fn commit(&self, group: &str, entries: Vec<(String, i32, Committed)>, now_ms: i64) -> Result<u64, LogError> {
        let changes =
            entries.into_iter().map(|(topic, p, committed)| Change::Commit((group.to_string(), topic, p), committed));
        self.write(changes.collect(), now_ms)
    }

    /// Deletes committed offsets of some partitions.
    pub fn delete_offsets(&self, group: &str, partitions: &[(String, i32)], now_ms: i64) -> Result<u64, LogError> {
        let changes = partitions.iter().map(|(t, p)| Change::DeleteOffset((group.to_string(), t.clone(), *p)));
        self.write(changes.collect(), now_ms)
    }

    /// Deletes every committed offset of a group.
    pub fn delete_group(&self, group: &str, now_ms: i64) -> Result<u64, LogError> {
        self.write(vec![Change::DeleteGroup(group.to_string())], now_ms)
    }

    /// One committed offset.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        self.map().get(&(group.to_string(), topic.to_string(), partition)).cloned()
    }

    /// Every committed offset of a group, by (topic, partition).
    pub fn group(&self, group: &str) -> BTreeMap<(String, i32), Committed> {
        self.map()
            .range((group.to_string(), String::new(), i32::MIN)..)
            .take_while(|((g, _, _), _)| g == group)
            .map(|((_, t, p), c)| ((t.clone(), *p), c.clone()))
            .collect()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.map().keys().map(|(g, _, _)| g.clone()).collect();
        groups.dedup();
        groups
    }

    /// Rewrites the live offsets and drops the history before them, when the log has
    /// grown past `compact_bytes`.
    pub fn compact_if_needed(&self, now_ms: i64) -> Result<(), LogError> {
        let map = self.map();
        // A snapshot costs about 64 bytes per offset; compacting a log that is mostly live
        // offsets would only rewrite it again and again.
        let live_estimate = map.len() as u64 * 64;
        if self.log.size_bytes() < self.compact_bytes.max(4 * live_estimate) {
            return Ok(());
        }
        // The snapshot starts a fresh segment, so every older segment lies wholly below it.
        self.log.roll()?;
        let start = self.log.log_end_offset();
        let changes: Vec<Change> = map.iter().map(|(k, c)| Change::Commit(k.clone(), c.clone())).collect();
        for chunk in changes.chunks(RECORDS_PER_BATCH) {
            let mut batch = encode_batch(chunk, now_ms);
            self.log.append_unsynced(&mut batch, now_ms)?;
        }
        self.log.sync()?;
        self.log.delete_records_before(start)?;
        drop(map);
        tracing::info!(offsets = changes.len(), "compacted the group offsets log");
        Ok(())
    }

    fn write(&self, changes: Vec<Change>, now_ms: i64) -> Result<u64, LogError> {
        let mut map = self.map();
        for chunk in changes.chunks(RECORDS_PER_BATCH) {
            let mut batch = encode_batch(chunk, now_ms);
            self.log.append_unsynced(&mut batch, now_ms)?;
        }
        for change in changes {
            apply(&mut map, change);
        }
        Ok(self.log.log_end_offset())
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<Key, Committed>> {
        herald_log::sync::lock(&self.offsets)
    }
}

fn apply(map: &mut BTreeMap<Key, Committed>, change: Change) {
    match change {
        Change::Commit(key, committed) => {
            map.insert(key, committed);
        }
        Change::DeleteOffset(key) => {
            map.remove(&key);
        }
        Change::DeleteGroup(group) => map.retain(|(g, _, _), _| *g != group),
    }
}

fn encode_batch(changes: &[Change], now_ms: i64) -> Vec<u8> {
    let records: Vec<NewRecord> =
        changes.iter().map(|change| NewRecord { value: Some(encode_change(change)), ..NewRecord::default() }).collect();
    crate::new_records::encode_batch(&records, now_ms).expect("an uncompressed batch of small records encodes")
}

fn put_str(out: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

fn encode_change(change: &Change) -> Bytes {
    let mut out = BytesMut::new();
    match change {
        Change::Commit((group, topic, partition), c) => {
            out.put_u8(COMMIT);
            put_str(&mut out, group);
            put_str(&mut out, topic);
            out.put_i32(*partition);
            out.put_i64(c.offset);
            out.put_i32(c.leader_epoch);
            put_str(&mut out, &c.metadata);
            out.put_i64(c.commit_ms);
        }
        Change::DeleteOffset((group, topic, partition)) => {
            out.put_u8(DELETE_OFFSET);
            put_str(&mut out, group);
            put_str(&mut out, topic);
            out.put_i32(*partition);
        }
        Change::DeleteGroup(group) => {
            out.put_u8(DELETE_GROUP);
            put_str(&mut out, group);
        }
    }
    out.freeze()
}

/// Reads a change back; `None` for anything malformed (never a panic on bad bytes).
fn decode_change(bytes: &[u8]) -> Option<Change> {
    let mut buf = bytes;
    fn take_str(buf: &mut &[u8]) -> Option<String> {
        if buf.remaining() < 2 {
            return None;
        }
        let len = buf.get_u16() as usize;
        if buf.remaining() < len {
            return None;
        }
        let s = std::str::from_utf8(&buf[..len]).ok()?.to_string();
        buf.advance(len);
        Some(s)
    }
    fn take<const N: usize>(buf: &mut &[u8]) -> Option<[u8; N]> {
        if buf.remaining() < N {
            return None;
        }
        let mut out = [0u8; N];
        buf.copy_to_slice(&mut out);
        Some(out)
    }
    let kind = take::<1>(&mut buf)?[0];
    let change = match kind {
        COMMIT => {
            let group = take_str(&mut buf)?;
            let topic = take_str(&mut buf)?;
            let partition = i32::from_be_bytes(take(&mut buf)?);
            let offset = i64::from_be_bytes(take(&mut buf)?);
            let leader_epoch = i32::from_be_bytes(take(&mut buf)?);
            let metadata = take_str(&mut buf)?;
            let commit_ms = i64::from_be_bytes(take(&mut buf)?);
            Change::Commit((group, topic, partition), Committed { offset, leader_epoch, metadata, commit_ms })
        }
        DELETE_OFFSET => {
            let group = take_str(&mut buf)?;
            let topic = take_str(&mut buf)?;
            let partition = i32::from_be_bytes(take(&mut buf)?);
            Change::DeleteOffset((group, topic, partition))
        }
        DELETE_GROUP => Change::DeleteGroup(take_str(&mut buf)?),
        _ => return None,
    };
    Some(change)
}

#[cfg(test)]
mod tests {
    use herald_log::FsStorage;

    use super::*;

    fn committed(offset: i64) -> Committed {
        Committed { offset, leader_epoch: -1, metadata: format!("m{offset}"), commit_ms: 1 }
    }

    fn open(dir: &std::path::Path, compact_bytes: u64) -> OffsetStore {
        OffsetStore::open(Arc::new(FsStorage), dir.join(OFFSETS_DIR), LogConfig::default(), compact_bytes)
            .expect("open")
    }

    #[test]
    fn commits_and_deletes_survive_a_reopen() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path(), 64 << 20);
        store.commit("g", vec![("t".into(), 0, committed(5)), ("t".into(), 1, committed(7))], 1).expect("commit");
        store.commit("g", vec![("t".into(), 0, committed(9))], 2).expect("commit");
        store.commit("h", vec![("t".into(), 0, committed(3))], 3).expect("commit");
        store.delete_offsets("g", &[("t".into(), 1)], 4).expect("delete");
        store.commit("dead", vec![("t".into(), 0, committed(1))], 5).expect("commit");
        store.delete_group("dead", 6).expect("delete group");
        store.into_log().close().expect("close");
        let reopened = open(tmp.path(), 64 << 20);
        assert_eq!(reopened.get("g", "t", 0), Some(committed(9)));
        assert_eq!(reopened.get("g", "t", 1), None);
        assert_eq!(reopened.get("h", "t", 0), Some(committed(3)));
        assert_eq!(reopened.groups(), ["g", "h"]);
    }

    #[test]
    fn compaction_keeps_the_latest_offsets_and_drops_history() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path(), 64 * 1024);
        for round in 0..2_000i64 {
            store.commit("g", vec![("t".into(), (round % 4) as i32, committed(round))], round).expect("commit");
            store.compact_if_needed(round).expect("compact");
        }
        assert!(store.log().log_start_offset() > 0, "history was dropped");
        store.into_log().close().expect("close");
        let reopened = open(tmp.path(), 64 * 1024);
        for p in 0..4 {
            assert_eq!(reopened.get("g", "t", p).map(|c| c.offset), Some(1996 + i64::from(p)));
        }
    }

    /// Power loss at every mutating operation of a commit sequence (D11): after reboot
    /// the committed offset is at least the last acknowledged one and at most the last
    /// attempted, and the store opens.
    #[test]
    fn a_power_loss_never_regresses_an_acknowledged_commit() {
        use herald_log::{CrashMode, FaultStorage};
        let run = |crash_at: Option<u64>, mode: CrashMode| -> (u64, i64, i64) {
            let storage = Arc::new(FaultStorage::new(crash_at.unwrap_or(0)));
            let shared: Arc<dyn Storage> = storage.clone();
            if let Some(op) = crash_at {
                storage.crash_at_op(op);
            }
            let mut acknowledged = -1;
            let mut attempted = -1;
            if let Ok(store) = OffsetStore::open(Arc::clone(&shared), PathBuf::from("/o"), LogConfig::default(), 4096) {
                for offset in 0..40i64 {
                    attempted = offset;
                    let committed = store
                        .commit("g", vec![("t".into(), 0, committed(offset))], offset)
                        .and_then(|at| store.log().sync_through(at))
                        .and_then(|()| store.compact_if_needed(offset));
                    if committed.is_err() {
                        break;
                    }
                    acknowledged = offset;
                }
            }
            let ops = storage.mutating_ops();
            storage.crash(mode);
            let reopened = OffsetStore::open(shared, PathBuf::from("/o"), LogConfig::default(), 4096)
                .unwrap_or_else(|e| panic!("crash at {crash_at:?} ({mode:?}): reopen failed: {e}"));
            let now = reopened.get("g", "t", 0).map_or(-1, |c| c.offset);
            assert!(
                now >= acknowledged && now <= attempted,
                "crash at {crash_at:?} ({mode:?}): offset {now}, acknowledged {acknowledged}, attempted {attempted}"
            );
            (ops, acknowledged, now)
        };
        let (total_ops, acknowledged, _) = run(None, CrashMode::DropUnsynced);
        assert_eq!(acknowledged, 39);
        for op in 1..=total_ops {
            for mode in [CrashMode::DropUnsynced, CrashMode::TearUnsynced] {
                run(Some(op), mode);
            }
        }
    }

    #[test]
    fn malformed_records_are_refused_not_panicked_on() {
        for bytes in [&[][..], &[1], &[1, 0, 5, b'a'], &[9, 0, 0], &[3, 0xff, 0xff]] {
            assert_eq!(decode_change(bytes), None);
        }
        let change = Change::Commit(("g".into(), "t".into(), 2), committed(4));
        assert_eq!(decode_change(&encode_change(&change)), Some(change));
    }
}
