//! The consumer runtime: [`Consumer`] with typed handlers, its [`ConsumerConfig`], what a
//! handler gets ([`Context`]) and returns ([`HandlerError`]), and the [`RetryPolicy`].
//!
//! Inside, the decision logic is plain code driven by the caller (no IO, no clock): which
//! message may run next without breaking per-key order (`scheduler`), which offset may be
//! committed (`progress`), each assigned partition's bookkeeping (`partitions`), and when
//! to retry or dead-letter (`retry`); the rdkafka-driven loop (`runtime`) and the dispatch
//! of messages to handlers (`dispatch`) are the IO edge around them.

mod context;
mod dead_letter;
mod dispatch;
mod handling;
mod headers;
mod partitions;
mod progress;
mod record;
mod retry;
mod runtime;
mod scheduler;

pub use context::Context;
pub use dead_letter::DLQ_HEADERS;
pub use headers::raw_headers;
pub use record::Record;
pub use retry::{HandlerError, RetryDecision, RetryPolicy};
pub use runtime::{Consumer, ConsumerConfig, ConsumerError, UnknownTypes};
