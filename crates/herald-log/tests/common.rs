//! Shared helpers: opening logs on either storage and walking what a log serves.

use std::path::Path;
use std::sync::Arc;

use herald_log::{BatchHeader, FaultStorage, Log, LogConfig, LogError, Storage, SyncPolicy};

/// A config with tiny segments and indexes, so tests cross every boundary quickly.
pub(crate) fn small_config(sync: SyncPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_ms: None,
        retention_bytes: None,
        retention_ms: None,
        batch_bytes_max: 64 * 1024,
        index_interval_bytes: 256,
        sync,
        checkpoint_interval_bytes: 2048,
    }
}

/// A fault storage whose `/data` exists durably, as a broker's data directory would.
pub(crate) fn fault_storage(seed: u64) -> FaultStorage {
    let storage = FaultStorage::new(seed);
    storage.create_dir_all(Path::new("/data")).expect("create /data");
    storage.sync_dir(Path::new("/")).expect("sync /");
    storage
}

/// Opens the log `/data/topic-0` on `storage`.
pub(crate) fn open_fault(storage: &FaultStorage, config: LogConfig) -> Result<Log, LogError> {
    let storage: Arc<dyn Storage> = Arc::new(storage.clone());
    Log::open(storage, Path::new("/data/topic-0"), config)
}

/// Compares batch lists without dumping megabytes: reports the first difference.
#[track_caller]
pub(crate) fn assert_batches_eq(actual: &[(u64, Vec<u8>)], expected: &[(u64, Vec<u8>)]) {
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            a == e,
            "batch #{i} differs: got offset {} ({} bytes), expected offset {} ({} bytes)",
            a.0,
            a.1.len(),
            e.0,
            e.1.len()
        );
    }
    assert_eq!(actual.len(), expected.len(), "batch counts differ");
}

/// Every batch the log serves from its start to its high watermark, as
/// `(base_offset, bytes)`, read with a small `max_bytes` so reads cross segments and
/// return one batch at a time.
pub(crate) fn read_all(log: &Log) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
    read_all_with(log, 1)
}

/// Like [`read_all`], with reads of up to `max_bytes`.
pub(crate) fn read_all_with(log: &Log, max_bytes: u32) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.high_watermark();
    while offset < end {
        let read = log.read(offset, max_bytes)?;
        assert!(!read.bytes.is_empty(), "read at {offset} below the high watermark {end} returned nothing");
        for (base, batch) in split_batches(&read.bytes) {
            let header = BatchHeader::parse(&batch, batch.len() as u64).expect("served batch frames");
            assert!(header.crc_matches(&batch), "served a CRC-invalid batch at {base}");
            offset = header.next_offset();
            out.push((base, batch));
        }
    }
    Ok(out)
}

/// Splits back-to-back batches.
pub(crate) fn split_batches(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let header = BatchHeader::parse(&bytes[pos..], (bytes.len() - pos) as u64).expect("frames");
        out.push((header.base_offset, bytes[pos..pos + header.size as usize].to_vec()));
        pos += header.size as usize;
    }
    out
}

/// `batch` with its base offset set to `offset`, as the log stores it.
pub(crate) fn placed(batch: &[u8], offset: u64) -> Vec<u8> {
    let mut b = batch.to_vec();
    b[..8].copy_from_slice(&offset.to_be_bytes());
    b
}

/// A seed from `var` if set, otherwise `default`; printed so a failure can be replayed.
pub(crate) fn seed_from_env(var: &str, default: u64) -> u64 {
    let seed = std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    eprintln!("{var}={seed}");
    seed
}

/// A count from `var` if set, otherwise `default`.
pub(crate) fn count_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// SplitMix64: a small deterministic generator, so randomized tests replay from a seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// Uniform in `0..n` (`0` when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}
