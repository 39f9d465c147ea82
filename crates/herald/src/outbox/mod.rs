//! The transactional outbox: a service writes its business rows and the events they cause
//! in one database transaction ([`PostgresOutbox::enqueue`], [`SqliteOutbox::enqueue`]),
//! and a [`Relay`] publishes the committed events to the broker, in order, at least once.
//!
//! The relay keeps a cursor (the last published position) per relay name and moves it only
//! after the broker acknowledged everything up to it, so a crash repeats events (same event
//! id; an [`Inbox`](crate::inbox::Inbox) drops the repeat) and never loses one. Order:
//! - PostgreSQL: rows are read in (transaction id, id) order and only below
//!   `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still running. Every
//!   transaction with a smaller id has ended, so no row can commit behind the cursor later
//!   (an `id > cursor` relay skips rows whose transactions commit out of order). Events of
//!   one key keep the order of their transactions' ids, which is their commit order when
//!   the transactions lock the key's row (the aggregate) before their first write, as
//!   aggregate updates do. A transaction left open stalls the relay at its id: visible as
//!   `herald_outbox_fenced_rows` and `herald_outbox_oldest_write_transaction_seconds`.
//! - SQLite: one writer at a time, so ids are in commit order; `AUTOINCREMENT` keeps an id
//!   from being reused after the rows before it were cleaned up.
//!
//! One relay per relay name is active at a time: each holds a lease in
//! `herald_outbox_relay` and renews it; another takes over once it lapses. Published rows
//! are deleted after a retention period, once every relay name has published them (remove
//! the row of a relay name you no longer run, or cleanup waits for it).
//!
//! The relay never skips a row: one the broker refuses for good (a topic it may not write,
//! a record over the broker's size limit) is retried with backoff and holds the relay at
//! that row, visible as `herald_outbox_errors_total{stage="publish"}` and a growing
//! backlog, until the cause is fixed.

mod lease;
#[cfg(feature = "postgres")]
mod postgres;
mod relay;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod relay_table;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::future::Future;
use std::time::Duration;

use uuid::Uuid;

use crate::envelope::EnvelopeError;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::publisher::envelope_headers;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::{Envelope, Event};

#[cfg(feature = "postgres")]
pub use postgres::PostgresOutbox;
pub use relay::{Acked, Relay, RelayConfig, RelayError};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOutbox, sqlite_options};

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The event could not be encoded, or is larger than the limit.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The database refused or could not be reached.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error("outbox {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row could not be read back (written by something other than herald).
    #[error("outbox row {id}: {problem}")]
    BadRow {
        /// The row's id.
        id: i64,
        /// What is wrong with it.
        problem: String,
    },
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> OutboxError {
    move |source| OutboxError::Database { operation, source }
}

/// A place in the publish order: PostgreSQL's (transaction id, id); SQLite's (0, id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The writing transaction's id (`xid8`); 0 on SQLite.
    pub txid: i64,
    /// The row id.
    pub id: i64,
}

/// A committed outbox row, ready to send.
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    /// Where it is in the publish order.
    pub position: Position,
    /// The envelope's event id (also the `event-id` header).
    pub event_id: Uuid,
    /// The topic.
    pub topic: String,
    /// The record key.
    pub key: Option<String>,
    /// The record headers, in order.
    pub headers: Vec<(String, String)>,
    /// The envelope JSON.
    pub payload: Vec<u8>,
    /// When it was enqueued (ms since the epoch, the writer's clock).
    pub created_ms: i64,
}

/// An event encoded for an outbox row: what the publisher would send, computed once in
/// the writer's transaction.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug)]
#[doc(hidden)]
pub struct Encoded {
    pub(crate) event_id: Uuid,
    pub(crate) topic: String,
    pub(crate) key: Option<String>,
    /// JSON array of `[name, value]` pairs (headers may repeat, so not an object).
    pub(crate) headers: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) created_ms: i64,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Encoded {
    pub(crate) fn new<E: Event>(envelope: &Envelope<E>, topic: &str, max_bytes: usize) -> Result<Self, OutboxError> {
        Self::of(envelope, E::TYPE, E::VERSION, topic, envelope.data.key(), max_bytes)
    }

    /// Any envelope, with its event type and version given (an aggregate's events).
    pub(crate) fn of<T: serde::Serialize>(
        envelope: &Envelope<T>,
        event_type: &str,
        version: u32,
        topic: &str,
        key: Option<String>,
        max_bytes: usize,
    ) -> Result<Self, OutboxError> {
        let payload = envelope.to_json(max_bytes)?;
        let named = envelope_headers(envelope, event_type, version);
        let headers: Vec<(&str, &str)> = named.iter().flatten().map(|(name, value)| (*name, value.as_ref())).collect();
        let headers = serde_json::to_string(&headers).map_err(|source| EnvelopeError::Json {
            context: format!("encoding the headers of {}", envelope.event_type),
            source,
        })?;
        Ok(Self {
            event_id: envelope.event_id,
            topic: topic.to_string(),
            key,
            headers,
            payload,
            created_ms: crate::time::now_ms(),
        })
    }
}

/// Reads a fetched row: `id, txid_number, event_id (text), topic, key, headers, payload,
/// created_ms`, the column order both backends select.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn read_record<'r, R>(row: &'r R) -> Result<OutboxRecord, OutboxError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let read = || database("read a row");
    let id: i64 = row.try_get(0).map_err(read())?;
    let event_id: String = row.try_get(2).map_err(read())?;
    let headers: String = row.try_get(5).map_err(read())?;
    Ok(OutboxRecord {
        position: Position { txid: row.try_get(1).map_err(read())?, id },
        event_id: Uuid::parse_str(&event_id)
            .map_err(|e| OutboxError::BadRow { id, problem: format!("event id: {e}") })?,
        topic: row.try_get(3).map_err(read())?,
        key: row.try_get(4).map_err(read())?,
        headers: decode_headers(id, &headers)?,
        payload: row.try_get(6).map_err(read())?,
        created_ms: row.try_get(7).map_err(read())?,
    })
}

/// Reads a stored header list back.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn decode_headers(id: i64, json: &str) -> Result<Vec<(String, String)>, OutboxError> {
    serde_json::from_str(json).map_err(|error| OutboxError::BadRow { id, problem: format!("headers: {error}") })
}

/// What is waiting, for the backlog metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    /// Committed rows after the cursor.
    pub rows: i64,
    /// When the oldest of them was enqueued.
    pub oldest_created_ms: Option<i64>,
    /// Of those, rows the relay may not read yet because an older transaction is still
    /// open (PostgreSQL; always 0 on SQLite).
    pub fenced_rows: i64,
    /// How long the oldest open writing transaction has been running (PostgreSQL).
    pub oldest_write_transaction: Option<Duration>,
}

/// What wakes an idle relay: PostgreSQL's `LISTEN`, or an in-process signal from
/// `enqueue` (SQLite). The relay polls as well, so a missed wakeup costs latency only.
pub enum Wakeups {
    /// Signalled by `enqueue` in this process (before the writer commits).
    Local(std::sync::Arc<tokio::sync::Notify>),
    /// `LISTEN herald_outbox` on its own connection (notified at commit), and the
    /// in-process signal.
    #[cfg(feature = "postgres")]
    Listen(Box<sqlx::postgres::PgListener>, std::sync::Arc<tokio::sync::Notify>),
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wakeups::Local(_) => f.write_str("Wakeups::Local"),
            #[cfg(feature = "postgres")]
            Wakeups::Listen(..) => f.write_str("Wakeups::Listen"),
        }
    }
}

impl Wakeups {
    /// Resolves at the next signal. A broken listener resolves at once with an error (the
    /// relay then falls back to polling and reconnects).
    pub(crate) async fn next(&mut self) -> Result<(), OutboxError> {
        match self {
            Wakeups::Local(notify) => {
                notify.notified().await;
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Wakeups::Listen(listener, local) => {
                tokio::select! {
                    received = listener.recv() => {
                        received.map_err(database("wait for a notification"))?;
                    }
                    () = local.notified() => {}
                }
                Ok(())
            }
        }
    }
}

/// The database side of the relay: one narrow trait per backend, so the relay's logic is
/// written once.
pub trait OutboxStore: Send + Sync + 'static {
    /// `postgres` or `sqlite`, for metric labels.
    fn backend(&self) -> &'static str;

    /// Takes or renews relay `relay`'s lease for `owner` until `now_ms + ttl_ms` if it is
    /// free, lapsed or already `owner`'s; returns the cursor if `owner` holds the lease.
    fn acquire(
        &self,
        relay: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> impl Future<Output = Result<Option<Position>, OutboxError>> + Send;

    /// Gives the lease up (clean shutdown), so another relay takes over at once.
    fn release(&self, relay: &str, owner: &str) -> impl Future<Output = Result<(), OutboxError>> + Send;

    /// Up to `limit` committed rows after `after`, in publish order.
    fn fetch(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, OutboxError>> + Send;

    /// Moves the cursor to `to` if `owner` still holds the lease; whether it did.
    fn advance(&self, relay: &str, owner: &str, to: Position)
    -> impl Future<Output = Result<bool, OutboxError>> + Send;

    /// Deletes up to `limit` rows at or before relay `relay`'s cursor enqueued before
    /// `created_before_ms`; how many.
    fn cleanup(
        &self,
        relay: &str,
        created_before_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<u64, OutboxError>> + Send;

    /// What waits after `after`.
    fn backlog(&self, after: Position) -> impl Future<Output = Result<Backlog, OutboxError>> + Send;

    /// A fresh source of wakeups.
    fn wakeups(&self) -> impl Future<Output = Result<Wakeups, OutboxError>> + Send;
}
