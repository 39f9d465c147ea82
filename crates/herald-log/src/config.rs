//! Per-log settings. Names carry their unit last (`segment_bytes`, `retention_ms`).

use crate::error::LogError;

/// When appended bytes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `append` returns only after an fsync covers it. Concurrent appends share fsyncs
    /// (group commit). An acknowledged write survives power loss.
    Always,
    /// The owner calls [`crate::Log::sync`] when [`crate::Log::sync_due`] says so: after
    /// `interval_ms` or once `bytes` are unsynced. A power loss may drop a suffix of at
    /// most that window; a process crash loses nothing (the page cache survives it).
    Interval {
        /// Longest time unsynced data may wait.
        interval_ms: u64,
        /// Most unsynced bytes before a sync is due.
        bytes: u64,
    },
    /// Never fsync appends (segments are still synced when they roll and on close).
    Never,
}

/// Settings of one partition log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before the active one would exceed this (Kafka `segment.bytes`).
    pub segment_bytes: u64,
    /// Roll when the active segment's first batch is older than this (`segment.ms`).
    pub segment_ms: Option<u64>,
    /// Delete old segments while the log would still hold this much (`retention.bytes`).
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this (`retention.ms`).
    pub retention_ms: Option<u64>,
    /// Largest batch accepted by `append` (`max.message.bytes`).
    pub batch_bytes_max: u32,
    /// Bytes between sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// When appends are fsynced.
    pub sync: SyncPolicy,
    /// Write a recovery checkpoint after this many newly synced bytes, bounding how much
    /// a crash recovery must re-scan.
    pub checkpoint_interval_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3_600_000),
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 3_600_000),
            batch_bytes_max: 1_048_588,
            index_interval_bytes: 4096,
            sync: SyncPolicy::Always,
            checkpoint_interval_bytes: 64 << 20,
        }
    }
}

impl LogConfig {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), LogError> {
        let bad = |what: &str| Err(LogError::InvalidArgument(what.to_string()));
        if self.segment_bytes < 1024 || self.segment_bytes > u64::from(u32::MAX) {
            return bad("segment_bytes must be between 1 KiB and 4 GiB");
        }
        if self.batch_bytes_max < 64 {
            return bad("batch_bytes_max must be at least 64");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be positive");
        }
        if self.checkpoint_interval_bytes == 0 {
            return bad("checkpoint_interval_bytes must be positive");
        }
        Ok(())
    }
}
