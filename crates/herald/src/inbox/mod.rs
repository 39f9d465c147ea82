//! Idempotent consumers: an [`Inbox`] remembers which events a consumer group has handled
//! (keyed by group and eventId), so a redelivered event is skipped instead of handled
//! twice. Kafka delivers at least once (a crash between handling and committing, a
//! rebalance, a rewound offset); the inbox turns that into at most one effect.
//!
//! Two ways to use it:
//! - give the consumer an inbox ([`Consumer::inbox`](crate::consumer::Consumer::inbox)): it
//!   skips events already recorded and records each one after its handler succeeds. A
//!   crash between the handler's effect and the record still repeats the effect once;
//! - for exactly-once effects, the handler claims the event inside its own database
//!   transaction ([`SqliteInbox::claim_in`], [`PostgresInbox::claim_in`]) together with
//!   its writes: either both commit or neither does.
//!
//! Entries live for the inbox's dedup window and are pruned after it; the consumer refuses
//! to start when the window is shorter than its retry horizon, since a retried event must
//! still be remembered when its redelivery arrives.

mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use uuid::Uuid;

pub use memory::MemoryInbox;
#[cfg(feature = "postgres")]
pub use sql::PostgresInbox;
#[cfg(feature = "sqlite")]
pub use sql::SqliteInbox;

/// A boxed future, so [`Inbox`] works as a trait object.
pub type InboxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, InboxError>> + Send + 'a>>;

/// Why an inbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The database refused or could not be reached.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error("inbox {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
}

/// Remembers handled events per consumer group. Times are milliseconds since the Unix
/// epoch, passed in by the caller.
pub trait Inbox: Send + Sync + std::fmt::Debug {
    /// Whether `event_id` was recorded for `group` (and not yet pruned).
    fn contains<'a>(&'a self, group: &'a str, event_id: Uuid) -> InboxFuture<'a, bool>;

    /// Records `event_id` for `group` at `now_ms`; `false` if it was already there.
    fn record<'a>(&'a self, group: &'a str, event_id: Uuid, now_ms: i64) -> InboxFuture<'a, bool>;

    /// Forgets entries recorded before `now_ms` minus the window; returns how many.
    fn prune(&self, now_ms: i64) -> InboxFuture<'_, u64>;

    /// How long an entry is kept.
    fn window(&self) -> Duration;

    /// The same inbox answering without waiting, if it can (one in memory can, one in a
    /// database cannot): the consumer then checks and records on its dispatch loop, with
    /// no future per event.
    fn immediate(&self) -> Option<&dyn ImmediateInbox> {
        None
    }
}

/// An inbox whose answers never wait (see [`Inbox::immediate`]); same meaning as the
/// [`Inbox`] methods of the same names.
pub trait ImmediateInbox {
    /// Whether `event_id` is recorded for `group`.
    fn contains_now(&self, group: &str, event_id: Uuid) -> bool;

    /// Records `event_id` for `group`; `false` if it already was.
    fn record_now(&self, group: &str, event_id: Uuid, now_ms: i64) -> bool;
}

/// The default dedup window of the durable inboxes: 7 days (Kafka's default retention).
pub const DURABLE_WINDOW_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);

fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
}
