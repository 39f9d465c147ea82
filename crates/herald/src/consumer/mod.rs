//! The consumer runtime's decision logic, as plain code driven by the caller (no IO, no
//! clock): which message may run next without breaking per-key order ([`scheduler`]),
//! which offset may be committed ([`progress`]), and when to retry or dead-letter
//! ([`retry`]); and the rdkafka-driven loop that uses them ([`runtime`]), with the
//! handler's [`Context`] and the dead-letter writer.

mod context;
mod dead_letter;
mod dispatch;
mod headers;
pub mod progress;
mod record;
pub mod retry;
pub mod runtime;
pub mod scheduler;

pub use context::Context;
pub use dead_letter::DLQ_HEADERS;
pub use headers::raw_headers;
pub use progress::PartitionProgress;
pub use record::Record;
pub use retry::{HandlerError, RetryDecision, RetryPolicy};
pub use runtime::{Consumer, ConsumerConfig, ConsumerError, UnknownTypes};
pub use scheduler::KeyedScheduler;
