//! Typed errors of the log. Every variant carries enough context to act on without a debugger.

use std::io;
use std::path::PathBuf;

/// Why one record batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// No bytes at all.
    #[error("no record batches")]
    Empty,
    /// The batch claims more bytes than there are.
    #[error("truncated batch: needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the header says the batch spans.
        needed: u64,
        /// Bytes actually there.
        available: u64,
    },
    /// `batchLength` is smaller than a v2 header.
    #[error("batch length {batch_length} is smaller than a v2 batch header")]
    BadLength {
        /// The length field as read.
        batch_length: i32,
    },
    /// Only RecordBatch v2 (magic 2) is stored.
    #[error("unsupported record batch magic {magic} (only v2 is stored)")]
    BadMagic {
        /// The magic byte as read.
        magic: i8,
    },
    /// `recordCount` must be `lastOffsetDelta + 1` and at least 1.
    #[error("record count {record_count} does not match lastOffsetDelta {last_offset_delta}")]
    BadRecordCount {
        /// The count field.
        record_count: i32,
        /// The lastOffsetDelta field.
        last_offset_delta: i32,
    },
    /// The batch exceeds the topic's `max.message.bytes`.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Batch size.
        size: u32,
        /// The configured limit.
        max: u32,
    },
    /// The CRC-32C over attributes..end does not match.
    #[error("CRC-32C mismatch")]
    CrcMismatch,
    /// A stored batch does not continue the offsets of the one before it.
    #[error("batch starts at offset {found}, expected {expected}")]
    UnexpectedOffset {
        /// The offset the previous batch ends at.
        expected: u64,
        /// The batch's base offset.
        found: u64,
    },
}

/// A batch in an append request was invalid; nothing of that request was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid record batch at byte {position} of the request: {reason}")]
pub struct InvalidBatch {
    /// Byte position of the bad batch within the request.
    pub position: u64,
    /// What was wrong.
    pub reason: BatchError,
}

/// Errors from [`crate::Log`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// An appended batch was invalid; the log is unchanged.
    #[error(transparent)]
    InvalidBatch(#[from] InvalidBatch),
    /// The requested offset is outside `[log_start_offset, high_watermark]`.
    #[error("offset {offset} out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// First readable offset.
        log_start_offset: u64,
        /// One past the last readable offset.
        high_watermark: u64,
    },
    /// Stored data failed its CRC or framing check when read back (media corruption).
    #[error("corrupt batch in segment {segment} at byte {position}: {reason}")]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte position within the segment.
        position: u64,
        /// What was wrong.
        reason: BatchError,
    },
    /// The disk is full. Nothing of the failed append is visible; the log keeps working
    /// once space returns.
    #[error("no space left writing {path}")]
    StorageFull {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A storage operation failed.
    #[error("{op} {path}")]
    Io {
        /// The operation, e.g. "fsync".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An earlier write or fsync failed, so the log refuses writes until it is reopened and
    /// recovered from what is durable. Retrying an fsync could report success for data
    /// the kernel already dropped.
    #[error("log {dir} refuses writes after an earlier IO error ({cause}); reopen it")]
    Failed {
        /// The partition directory.
        dir: PathBuf,
        /// The first error, as text.
        cause: String,
    },
    /// The log's files contradict each other in a way recovery must not guess about.
    #[error("inconsistent log {dir}: {detail}")]
    Inconsistent {
        /// The partition directory.
        dir: PathBuf,
        /// What contradicts what.
        detail: String,
    },
    /// A setting or argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io { op, path: path.into(), source }
    }
}
