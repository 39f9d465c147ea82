//! The event store: each aggregate's events in a stream (`order-42`), appended with
//! optimistic concurrency and idempotent by event id, read back by stream or in one
//! gap-free global order, and published to Kafka from the same table — the events table
//! is the outbox, so there is no second copy to drift ([`PostgresEventStore`],
//! [`SqliteEventStore`], features `postgres` and `sqlite`).
//!
//! - **Append** ([`EventStore::append`], and `append_in` inside the caller's transaction):
//!   the stream's row in `herald_streams` is locked first; then plain code
//!   ([`decide`]) compares the expected version with the actual one and the events' ids
//!   with those already stored. Of concurrent writers with the same expectation exactly
//!   one wins; the others get [`StoreError::WrongExpectedVersion`]. Retrying events that
//!   are already stored at the same place returns the first result; the same ids anywhere
//!   else are [`StoreError::DuplicateEventId`] (a unique constraint backs this, not a cache).
//! - **Order**: PostgreSQL rows sort by (transaction id, id) and are read only below the
//!   oldest running transaction, exactly as the outbox relay reads them, so a reader never
//!   skips a row that commits late. A stream's versions follow that order: a transaction
//!   whose id is below the one that wrote the stream's last version may not append to it
//!   ([`StoreError::TransactionTooOld`]; `append` retries in a fresh transaction). SQLite
//!   has one writer at a time, and its ids are the order.
//! - **Publishing**: each store is an [`OutboxStore`](crate::outbox::OutboxStore) over its
//!   events table, so the outbox [`Relay`](crate::outbox::Relay) publishes appended events,
//!   keyed by stream id, to the topic chosen at append (by default `<aggregate>.events`,
//!   the aggregate being the stream id up to its first `-`), in the global order.

mod aggregate;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod subscription;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;

use crate::envelope::{ENVELOPE_BYTES_MAX_DEFAULT, EnvelopeError};
pub use crate::outbox::Position;
use crate::{Envelope, Event};

pub use aggregate::{
    Aggregate, AggregateOutcome, AggregateTest, EventSet, Executed, Loaded, Repository, RepositoryError,
};
#[cfg(feature = "postgres")]
pub use postgres::PostgresEventStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteEventStore;
pub use subscription::{Subscription, SubscriptionFilter};

/// What the writer believes about the stream before appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream has no events.
    NoStream,
    /// The stream has at least one event.
    StreamExists,
    /// The stream's last event has this version (versions count from 0).
    Exact(u64),
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer got there first (or the stream is not where the writer thought).
    #[error("stream {stream}: expected {expected:?}, but its last version is {actual:?}")]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The stream's last version (`None`: no events).
        actual: Option<u64>,
    },
    /// An event id is already stored somewhere else than this append would put it.
    #[error("event {event_id} is already stored as {stream}@{version}")]
    DuplicateEventId {
        /// The id.
        event_id: Uuid,
        /// Where it is stored.
        stream: String,
        /// At which version.
        version: u64,
    },
    /// PostgreSQL: the transaction began before the one that wrote the stream's last
    /// version, so its events would sort before that version in the global order. Retry
    /// in a new transaction (`append` does).
    #[error("stream {stream}: this transaction is older than the one that wrote its last version; retry it")]
    TransactionTooOld {
        /// The stream.
        stream: String,
    },
    /// The stream was deleted for good: it takes no more events.
    #[error("stream {stream} was hard-deleted")]
    StreamDeleted {
        /// The stream.
        stream: String,
    },
    /// Nothing to append, or a stream id that is empty or too long.
    #[error("{0}")]
    Invalid(String),
    /// An event could not be encoded or decoded.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The database refused or could not be reached.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error("event store {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// A stored event could not be brought to its newest version.
    #[error(transparent)]
    Upcast(#[from] crate::upcast::UpcastError),
    /// A stored row could not be read back.
    #[error("event store row {id}: {problem}")]
    BadRow {
        /// The row's id.
        id: i64,
        /// What is wrong with it.
        problem: String,
    },
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { operation, source }
}

/// Longest stream id (bytes).
pub const STREAM_ID_MAX_BYTES: usize = 512;

/// An event ready to append: the envelope as the publisher would send it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) event_version: u32,
    /// JSON array of `[name, value]` header pairs.
    pub(crate) headers: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) created_ms: i64,
}

impl NewEvent {
    /// Encodes `envelope` (at most the default envelope size).
    pub fn new<E: Event>(envelope: &Envelope<E>) -> Result<Self, StoreError> {
        Self::with_max_bytes(envelope, ENVELOPE_BYTES_MAX_DEFAULT)
    }

    /// Encodes `envelope`, refusing more than `max_bytes`.
    pub fn with_max_bytes<E: Event>(envelope: &Envelope<E>, max_bytes: usize) -> Result<Self, StoreError> {
        Self::of(envelope, E::TYPE, E::VERSION, max_bytes)
    }

    /// Encodes any envelope with its event type and version given (an aggregate's events,
    /// through [`EventSet`]). The record key is the stream id, set when it is published.
    pub(crate) fn of<T: serde::Serialize>(
        envelope: &Envelope<T>,
        event_type: &str,
        version: u32,
        max_bytes: usize,
    ) -> Result<Self, StoreError> {
        let encoded = crate::outbox::Encoded::of(envelope, event_type, version, "", None, max_bytes).map_err(
            |error| match error {
                crate::outbox::OutboxError::Envelope(error) => StoreError::Envelope(error),
                other => StoreError::Invalid(other.to_string()),
            },
        )?;
        Ok(Self {
            event_id: envelope.event_id,
            event_type: event_type.to_string(),
            event_version: version,
            headers: encoded.headers,
            payload: encoded.payload,
            created_ms: encoded.created_ms,
        })
    }

    /// The event's id.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// The encoded envelope.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its place in the global order.
    pub position: Position,
    /// Its stream.
    pub stream_id: String,
    /// Its version in the stream (from 0).
    pub stream_version: u64,
    /// The envelope's event id.
    pub event_id: Uuid,
    /// The envelope's event type.
    pub event_type: String,
    /// The schema version of `payload` (after upcasting, the newest).
    pub event_version: u32,
    /// The envelope JSON.
    pub payload: Vec<u8>,
    /// When it was appended (ms since the epoch, the writer's clock).
    pub created_ms: i64,
}

impl StoredEvent {
    /// Decodes the envelope as `E` (at most `max_bytes`).
    pub fn decode<E: Event>(&self, max_bytes: usize) -> Result<Envelope<E>, EnvelopeError> {
        Envelope::from_json(&self.payload, max_bytes)
    }
}

/// An aggregate's state after a stream version, as the repository stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last stream version folded into `state`.
    pub version: u64,
    /// The aggregate's snapshot schema version.
    pub schema_version: u32,
    /// The serialized state (JSON).
    pub state: Vec<u8>,
}

/// Brings `events` to their newest versions with `upcasters`, if any.
fn upcast_events(upcasters: Option<&crate::upcast::Upcasters>, events: &mut [StoredEvent]) -> Result<(), StoreError> {
    let Some(upcasters) = upcasters else { return Ok(()) };
    for event in events {
        if let Some((payload, version)) = upcasters.upcast(&event.event_type, &event.payload)? {
            (event.payload, event.event_version) = (payload, version);
        }
    }
    Ok(())
}

/// Where an append put its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The first event's version.
    pub first_version: u64,
    /// The last event's version: expect `Exact(last_version)` next.
    pub last_version: u64,
    /// Whether these events were stored by an earlier attempt (an idempotent retry).
    pub already_stored: bool,
}

/// What reads of a stream return (appends are not limited by it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamMetadata {
    /// Only the last this many events.
    pub max_count: Option<u64>,
    /// Only events appended within this long.
    pub max_age: Option<std::time::Duration>,
    /// Only events from this version on.
    pub truncate_before: u64,
}

/// How a stream is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Reads return nothing of it; a later append starts after its last version (the old
    /// events stay out of stream reads, and stay in `read_all`).
    Soft,
    /// Its events are removed and appends are refused for good ([`StoreError::StreamDeleted`]).
    /// Events not yet published by a relay are not published.
    Hard,
}

/// A stream as listed by [`EventStore::streams`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream id.
    pub stream_id: String,
    /// Its last version (`None`: no events).
    pub version: Option<u64>,
    /// 0 live, 1 soft-deleted, 2 hard-deleted.
    pub deleted: u8,
}

/// What a store holds, for `herald store stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Streams (deleted ones included).
    pub streams: u64,
    /// Events stored.
    pub events: u64,
    /// When the first and the last stored event were appended (ms since the epoch).
    pub first_ms: Option<i64>,
    /// See `first_ms`.
    pub last_ms: Option<i64>,
    /// Events per event type, most first.
    pub by_type: Vec<(String, u64)>,
}

/// Which way a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a version up.
    Forward,
    /// From a version down.
    Backward,
}

/// What an append found when it held the stream's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendCheck {
    /// The stream's last version (`None`: no events).
    pub actual: Option<u64>,
    /// Of the events' ids, those already stored: (event id, stream, version).
    pub stored: Vec<(Uuid, String, u64)>,
    /// PostgreSQL: whether this transaction is older than the one that wrote the last
    /// version.
    pub older_than_last_writer: bool,
    /// The stream was hard-deleted.
    pub hard_deleted: bool,
}

/// What an append does, decided by [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub enum AppendDecision {
    /// Write the events at versions `first..`.
    Write {
        /// The first event's version.
        first: u64,
    },
    /// They are already stored where this append would put them: report that.
    AlreadyStored(Appended),
    /// Refuse.
    Refuse(StoreErrorKind),
}

/// A refusal, without the sqlx part ([`StoreError`] is not `Clone`).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreErrorKind {
    /// See [`StoreError::WrongExpectedVersion`].
    WrongExpectedVersion(Option<u64>),
    /// See [`StoreError::DuplicateEventId`].
    DuplicateEventId(Uuid, String, u64),
    /// See [`StoreError::TransactionTooOld`].
    TransactionTooOld,
    /// See [`StoreError::StreamDeleted`].
    StreamDeleted,
}

impl StoreErrorKind {
    fn into_error(self, stream: &str, expected: ExpectedVersion) -> StoreError {
        match self {
            StoreErrorKind::WrongExpectedVersion(actual) => {
                StoreError::WrongExpectedVersion { stream: stream.to_string(), expected, actual }
            }
            StoreErrorKind::DuplicateEventId(event_id, stream, version) => {
                StoreError::DuplicateEventId { event_id, stream, version }
            }
            StoreErrorKind::TransactionTooOld => StoreError::TransactionTooOld { stream: stream.to_string() },
            StoreErrorKind::StreamDeleted => StoreError::StreamDeleted { stream: stream.to_string() },
        }
    }
}

/// The append rules as plain code: given what the append found under the stream's lock,
/// whether it writes, reports an earlier identical append, or refuses. `ids` are the new
/// events' ids in order.
pub fn decide(stream: &str, expected: ExpectedVersion, ids: &[Uuid], check: &AppendCheck) -> AppendDecision {
    if check.hard_deleted {
        return AppendDecision::Refuse(StoreErrorKind::StreamDeleted);
    }
    let next = check.actual.map_or(0, |v| v + 1);
    if let Some(first) = earlier_append(stream, ids, &check.stored) {
        let matches = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => first == 0,
            ExpectedVersion::StreamExists => first > 0,
            ExpectedVersion::Exact(version) => first == version + 1,
        };
        if matches {
            let last = first + ids.len() as u64 - 1;
            return AppendDecision::AlreadyStored(Appended {
                first_version: first,
                last_version: last,
                already_stored: true,
            });
        }
    }
    if let Some((id, stream, version)) = check.stored.first() {
        return AppendDecision::Refuse(StoreErrorKind::DuplicateEventId(*id, stream.clone(), *version));
    }
    let fits = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => check.actual.is_none(),
        ExpectedVersion::StreamExists => check.actual.is_some(),
        ExpectedVersion::Exact(version) => check.actual == Some(version),
    };
    if !fits {
        return AppendDecision::Refuse(StoreErrorKind::WrongExpectedVersion(check.actual));
    }
    if check.older_than_last_writer {
        return AppendDecision::Refuse(StoreErrorKind::TransactionTooOld);
    }
    AppendDecision::Write { first: next }
}

/// If every id is stored, in order, at consecutive versions of `stream`: the first version.
fn earlier_append(stream: &str, ids: &[Uuid], stored: &[(Uuid, String, u64)]) -> Option<u64> {
    if stored.len() != ids.len() || ids.is_empty() {
        return None;
    }
    let by_id: BTreeMap<Uuid, (&str, u64)> = stored.iter().map(|(id, s, v)| (*id, (s.as_str(), *v))).collect();
    let (first_stream, first) = *by_id.get(&ids[0])?;
    let consecutive = ids.iter().enumerate().all(|(i, id)| by_id.get(id) == Some(&(first_stream, first + i as u64)));
    (first_stream == stream && consecutive).then_some(first)
}

/// The aggregate type of a stream id: up to its first `-` (`order-42` → `order`).
pub fn aggregate_type(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(kind, _)| kind)
}

/// Checks a stream id and a batch before anything touches the database.
fn validate(stream: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    if stream.is_empty() || stream.len() > STREAM_ID_MAX_BYTES {
        return Err(StoreError::Invalid(format!(
            "a stream id is 1 to {STREAM_ID_MAX_BYTES} bytes, not {}",
            stream.len()
        )));
    }
    if events.is_empty() {
        return Err(StoreError::Invalid(format!("nothing to append to {stream}")));
    }
    Ok(())
}

/// Which topic a stream's events are published to: `<aggregate>.events` unless set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Topics {
    by_aggregate: Arc<BTreeMap<String, String>>,
}

impl Topics {
    pub(crate) fn set(&mut self, aggregate: &str, topic: &str) {
        Arc::make_mut(&mut self.by_aggregate).insert(aggregate.to_string(), topic.to_string());
    }

    pub(crate) fn of(&self, stream: &str) -> String {
        let aggregate = aggregate_type(stream);
        self.by_aggregate.get(aggregate).cloned().unwrap_or_else(|| format!("{aggregate}.events"))
    }
}

/// The operations every backend offers; `append_in` (inside the caller's transaction) is
/// on each backend, since the transaction's type is the backend's.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if `expected` holds (see the module docs).
    fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Up to `limit` events of `stream` from version `from` on, in `direction`.
    fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Up to `limit` events after `after` in the global order, only those no later commit
    /// can precede (so a reader that moves its checkpoint past them never skips one).
    fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// The stream's last version (`None`: no events).
    fn stream_version(&self, stream: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Sets what reads of `stream` return (creating the stream's row if needed).
    fn set_metadata(
        &self,
        stream: &str,
        metadata: StreamMetadata,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes `stream` (see [`Deletion`]).
    fn delete_stream(&self, stream: &str, deletion: Deletion) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` streams whose id starts with `prefix`, after `after` in id order.
    fn streams(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StreamInfo>, StoreError>> + Send;

    /// Counts of what is stored.
    fn stats(&self) -> impl Future<Output = Result<StoreStats, StoreError>> + Send;

    /// The stream's latest snapshot, if any.
    fn load_snapshot(&self, stream: &str) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// Stores `snapshot` as the stream's latest (an older one never replaces a newer one).
    fn save_snapshot(&self, stream: &str, snapshot: Snapshot) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Signalled after every append by this process (subscriptions wake on it; they also
    /// poll, for appends by other processes).
    fn appended(&self) -> Arc<tokio::sync::Notify>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    fn check(actual: Option<u64>) -> AppendCheck {
        AppendCheck { actual, stored: Vec::new(), older_than_last_writer: false, hard_deleted: false }
    }

    #[test]
    fn expectations_against_the_actual_version() {
        let new = ids(2);
        let write = |first| AppendDecision::Write { first };
        let wrong = |actual| AppendDecision::Refuse(StoreErrorKind::WrongExpectedVersion(actual));
        let cases = [
            (ExpectedVersion::Any, None, write(0)),
            (ExpectedVersion::Any, Some(4), write(5)),
            (ExpectedVersion::NoStream, None, write(0)),
            (ExpectedVersion::NoStream, Some(0), wrong(Some(0))),
            (ExpectedVersion::StreamExists, None, wrong(None)),
            (ExpectedVersion::StreamExists, Some(2), write(3)),
            (ExpectedVersion::Exact(2), Some(2), write(3)),
            (ExpectedVersion::Exact(2), Some(3), wrong(Some(3))),
            (ExpectedVersion::Exact(0), None, wrong(None)),
        ];
        for (expected, actual, want) in cases {
            assert_eq!(decide("order-1", expected, &new, &check(actual)), want, "{expected:?} with {actual:?}");
        }
    }

    #[test]
    fn a_retry_of_stored_events_reports_the_first_result_and_other_places_are_refused() {
        let new = ids(2);
        let stored = vec![(new[0], "order-1".to_string(), 3), (new[1], "order-1".to_string(), 4)];
        let found =
            AppendCheck { actual: Some(4), stored: stored.clone(), older_than_last_writer: false, hard_deleted: false };
        let again = Appended { first_version: 3, last_version: 4, already_stored: true };
        assert_eq!(decide("order-1", ExpectedVersion::Exact(2), &new, &found), AppendDecision::AlreadyStored(again));
        assert_eq!(decide("order-1", ExpectedVersion::Any, &new, &found), AppendDecision::AlreadyStored(again));
        let elsewhere = AppendDecision::Refuse(StoreErrorKind::DuplicateEventId(new[0], "order-1".into(), 3));
        assert_eq!(decide("order-1", ExpectedVersion::Exact(4), &new, &found), elsewhere, "same ids, later position");
        assert_eq!(decide("order-2", ExpectedVersion::Any, &new, &found), elsewhere, "same ids, other stream");
        let partly = AppendCheck { stored: stored[..1].to_vec(), ..found };
        assert_eq!(decide("order-1", ExpectedVersion::Exact(4), &new, &partly), elsewhere, "some of them stored");
    }

    #[test]
    fn an_old_transaction_is_sent_to_retry_after_the_version_check() {
        let old =
            AppendCheck { actual: Some(1), stored: Vec::new(), older_than_last_writer: true, hard_deleted: false };
        let new = ids(1);
        assert_eq!(
            decide("order-1", ExpectedVersion::Exact(1), &new, &old),
            AppendDecision::Refuse(StoreErrorKind::TransactionTooOld)
        );
        assert_eq!(
            decide("order-1", ExpectedVersion::Exact(0), &new, &old),
            AppendDecision::Refuse(StoreErrorKind::WrongExpectedVersion(Some(1))),
            "a writer that lost the race learns that first"
        );
    }

    #[test]
    fn a_hard_deleted_stream_takes_nothing_not_even_a_retry() {
        let gone = AppendCheck { hard_deleted: true, ..check(Some(3)) };
        for expected in [ExpectedVersion::Any, ExpectedVersion::Exact(3), ExpectedVersion::NoStream] {
            assert_eq!(
                decide("order-1", expected, &ids(1), &gone),
                AppendDecision::Refuse(StoreErrorKind::StreamDeleted)
            );
        }
    }

    #[test]
    fn aggregate_types_and_topics_come_from_the_stream_id() {
        assert_eq!(aggregate_type("order-42"), "order");
        assert_eq!(aggregate_type("order-4-2"), "order");
        assert_eq!(aggregate_type("singleton"), "singleton");
        let mut topics = Topics::default();
        assert_eq!(topics.of("order-42"), "order.events");
        topics.set("order", "orders.v1");
        assert_eq!(topics.of("order-7"), "orders.v1");
    }
}
