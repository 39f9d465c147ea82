//! Sparse offset and time indexes of one segment.
//!
//! Both live in memory (one entry per `index_interval_bytes`, so about 2 MiB per GiB of
//! log) and are appended to their files (`.index`, `.timeindex`) when the log
//! checkpoints, rolls or closes. The files are a cache: on open an index is trusted only
//! as far as it is monotonic, points inside the segment, and its last entry lands on a
//! batch with the expected offset; anything else is rebuilt from the segment itself.

use std::io;
use std::sync::Arc;

use crate::storage::StorageFile;

/// `(offset relative to the segment base, byte position)`: 8 bytes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// `(largest timestamp so far, relative offset of the batch that first reached it)`: 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

pub(crate) trait Entry: Copy {
    const BYTES: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
    /// True when `self` may follow `prev` in a well-formed index.
    fn follows(&self, prev: &Self) -> bool;
}

impl Entry for OffsetEntry {
    const BYTES: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes(b[0..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")),
        }
    }
    fn follows(&self, prev: &Self) -> bool {
        self.relative_offset > prev.relative_offset && self.position > prev.position
    }
}

impl Entry for TimeEntry {
    const BYTES: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            timestamp: i64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
        }
    }
    fn follows(&self, prev: &Self) -> bool {
        self.timestamp > prev.timestamp && self.relative_offset >= prev.relative_offset
    }
}

/// One index: the entries in memory and how many of them the file already holds.
#[derive(Debug)]
pub(crate) struct SparseIndex<E: Entry> {
    file: Arc<dyn StorageFile>,
    entries: Vec<E>,
    persisted: usize,
    /// The file changed since its last fsync.
    unsynced: bool,
}

impl<E: Entry> SparseIndex<E> {
    pub(crate) fn empty(file: Arc<dyn StorageFile>) -> Self {
        Self { file, entries: Vec::new(), persisted: 0, unsynced: false }
    }

    /// Loads the well-formed prefix of the file. The caller decides how much of it to trust.
    pub(crate) fn load(file: Arc<dyn StorageFile>) -> io::Result<Self> {
        let len = file.len()? as usize;
        let mut bytes = vec![0u8; len - len % E::BYTES];
        file.read_exact_at(0, &mut bytes)?;
        let mut entries: Vec<E> = Vec::with_capacity(bytes.len() / E::BYTES);
        for chunk in bytes.chunks_exact(E::BYTES) {
            let entry = E::decode(chunk);
            if entries.last().is_some_and(|prev| !entry.follows(prev)) {
                break;
            }
            entries.push(entry);
        }
        let persisted = entries.len();
        Ok(Self { file, entries, persisted, unsynced: false })
    }

    pub(crate) fn file(&self) -> &Arc<dyn StorageFile> {
        &self.file
    }

    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub(crate) fn push(&mut self, entry: E) {
        debug_assert!(self.entries.last().is_none_or(|prev| entry.follows(prev)));
        self.entries.push(entry);
    }

    /// Keeps only the first `len` entries (in memory; the file follows at the next flush).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    /// Writes entries the file lacks, trimming entries the file has but memory dropped.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let valid = self.persisted.min(self.entries.len());
        let valid_bytes = (valid * E::BYTES) as u64;
        let mut changed = false;
        if self.file.len()? > valid_bytes {
            self.file.set_len(valid_bytes)?;
            changed = true;
        }
        self.persisted = valid;
        if valid < self.entries.len() {
            let mut out = Vec::with_capacity((self.entries.len() - valid) * E::BYTES);
            for entry in &self.entries[valid..] {
                entry.encode(&mut out);
            }
            self.file.write_all_at(valid_bytes, &out)?;
            self.persisted = self.entries.len();
            changed = true;
        }
        self.unsynced |= changed;
        Ok(())
    }

    /// Fsyncs the file if it changed since the last fsync.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }
}

impl SparseIndex<OffsetEntry> {
    /// The last entry at or before `relative_offset`.
    pub(crate) fn floor(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let n = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        n.checked_sub(1).map(|i| self.entries[i])
    }
}

impl SparseIndex<TimeEntry> {
    /// The last entry whose timestamp is strictly below `timestamp`: every batch before
    /// its offset is older than `timestamp`, so a search may start there.
    pub(crate) fn below(&self, timestamp: i64) -> Option<TimeEntry> {
        let n = self.entries.partition_point(|e| e.timestamp < timestamp);
        n.checked_sub(1).map(|i| self.entries[i])
    }
}
