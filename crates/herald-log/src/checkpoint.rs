//! The partition's checkpoint file: log start offset, recovery point, clean-shutdown flag.
//!
//! Replaced atomically (write `checkpoint.tmp`, fsync, rename, fsync the directory), so
//! after any crash it is the old or the new version, never a mix; a CRC-32C guards
//! against a torn or garbage file, which recovery treats as absent.

use std::path::Path;

use crate::error::LogError;
use crate::storage::Storage;

pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
pub(crate) const CHECKPOINT_TMP_FILE: &str = "checkpoint.tmp";
const MAGIC: &[u8; 4] = b"HLCP";
const VERSION: u8 = 1;
const BYTES: usize = 4 + 1 + 8 * 4 + 1 + 4;

/// What recovery may take for granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Checkpoint {
    /// First offset readers may see (raised by retention and `delete_records_before`).
    pub(crate) log_start_offset: u64,
    /// Everything before this point is durable and valid: the segment with this base...
    pub(crate) recovery_segment: u64,
    /// ...up to this offset...
    pub(crate) recovery_offset: u64,
    /// ...which starts at this byte of that segment.
    pub(crate) recovery_position: u64,
    /// The log was closed cleanly and everything on disk is synced and indexed.
    pub(crate) clean_shutdown: bool,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BYTES);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        for v in [self.log_start_offset, self.recovery_segment, self.recovery_offset, self.recovery_position] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.push(u8::from(self.clean_shutdown));
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != BYTES || &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return None;
        }
        let crc = u32::from_be_bytes(bytes[BYTES - 4..].try_into().ok()?);
        if crc32c::crc32c(&bytes[..BYTES - 4]) != crc {
            return None;
        }
        let u64_at = |i: usize| u64::from_be_bytes(bytes[5 + 8 * i..13 + 8 * i].try_into().expect("8 bytes"));
        Some(Self {
            log_start_offset: u64_at(0),
            recovery_segment: u64_at(1),
            recovery_offset: u64_at(2),
            recovery_position: u64_at(3),
            clean_shutdown: bytes[BYTES - 5] == 1,
        })
    }

    /// Reads the checkpoint; `None` when it is missing or not intact.
    pub(crate) fn read(storage: &dyn Storage, dir: &Path) -> Result<Option<Self>, LogError> {
        let path = dir.join(CHECKPOINT_FILE);
        let file = match storage.open(&path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("open", path, e)),
        };
        let len = file.len().map_err(|e| LogError::io("stat", &path, e))?;
        if len != BYTES as u64 {
            tracing::warn!(path = %path.display(), len, "checkpoint has the wrong size; ignoring it");
            return Ok(None);
        }
        let mut bytes = vec![0u8; BYTES];
        file.read_exact_at(0, &mut bytes).map_err(|e| LogError::io("read", &path, e))?;
        let checkpoint = Self::decode(&bytes);
        if checkpoint.is_none() {
            tracing::warn!(path = %path.display(), "checkpoint fails its CRC; ignoring it");
        }
        Ok(checkpoint)
    }

    /// Durably replaces the checkpoint.
    pub(crate) fn write(&self, storage: &dyn Storage, dir: &Path) -> Result<(), LogError> {
        let tmp = dir.join(CHECKPOINT_TMP_FILE);
        let path = dir.join(CHECKPOINT_FILE);
        let file = storage.open(&tmp, true).map_err(|e| LogError::io("create", &tmp, e))?;
        file.set_len(0).map_err(|e| LogError::io("truncate", &tmp, e))?;
        file.write_all_at(0, &self.encode()).map_err(|e| LogError::io("write", &tmp, e))?;
        file.sync_data().map_err(|e| LogError::io("fsync", &tmp, e))?;
        storage.rename(&tmp, &path).map_err(|e| LogError::io("rename", &tmp, e))?;
        storage.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_any_flipped_byte() {
        let cp = Checkpoint {
            log_start_offset: 5,
            recovery_segment: 100,
            recovery_offset: 150,
            recovery_position: 4096,
            clean_shutdown: true,
        };
        let bytes = cp.encode();
        assert_eq!(Checkpoint::decode(&bytes), Some(cp));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert_eq!(Checkpoint::decode(&bad), None, "flip at byte {i} accepted");
        }
    }
}
