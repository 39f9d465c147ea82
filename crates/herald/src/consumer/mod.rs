//! The consumer runtime's decision logic, as plain code driven by the caller (no IO, no
//! clock): which message may run next without breaking per-key order ([`scheduler`]),
//! which offset may be committed ([`progress`]), and when to retry or dead-letter
//! ([`retry`]). The rdkafka-driven loop that uses them comes next (issue 5).

pub mod progress;
pub mod retry;
pub mod scheduler;

pub use progress::PartitionProgress;
pub use retry::{HandlerError, RetryDecision, RetryPolicy};
pub use scheduler::KeyedScheduler;
