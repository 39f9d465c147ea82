//! herald-log is the storage engine under every Herald topic partition: a directory of
//! segment files holding Kafka RecordBatch v2 bytes exactly as producers sent them, with
//! sparse offset and time indexes, CRC-32C checks, crash recovery, retention and an
//! explicit fsync policy.
//!
//! It refuses to do three things. It never decodes or decompresses records (the broker
//! owns the Kafka protocol; the log sees only batch headers). It never reads a clock
//! (`now_ms` is an argument, so tests drive time). And it never touches the disk except
//! through the [`Storage`] trait, so the same code runs on real files ([`FsStorage`])
//! and on [`FaultStorage`], which simulates power loss, torn writes, EIO and ENOSPC.
//!
//! The key choice is fail-stop durability: with [`SyncPolicy::Always`] an append returns
//! only after an fsync covers it (concurrent appends share fsyncs), and after any write
//! or fsync error the log refuses writes until it is reopened and recovered from what is
//! durable, because a retried fsync can report success for data the kernel dropped.
//! See `ARCHITECTURE.md` for what is durable when and what recovery guarantees.

mod batch;
mod checkpoint;
mod config;
mod error;
mod index;
mod log;
mod read;
mod recovery;
mod rewrite;
mod scan;
mod segment;
mod storage;
pub mod sync;
#[doc(hidden)]
pub mod testing;

pub use batch::{BATCH_HEADER_BYTES, BatchHeader, read_varint, validate_batches};
pub use config::{LogConfig, SyncPolicy};
pub use error::{BatchError, InvalidBatch, LogError};
pub use log::{AppendInfo, Log, ReadBatches, RetentionOutcome, TimestampOffset};
pub use rewrite::{Rewritten, SealedSegment, SegmentRewrite};
pub use storage::{CrashMode, FaultStorage, FsStorage, Storage, StorageFile};
