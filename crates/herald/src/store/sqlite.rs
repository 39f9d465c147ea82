//! The event store in SQLite: an append's first statement writes the stream's row, which
//! takes SQLite's single write lock before anything is read; ids (`AUTOINCREMENT`) are then
//! in commit order and are the global order.

use std::sync::Arc;

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Row, SqliteConnection};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    AppendCheck, AppendDecision, Appended, Deletion, Direction, EventStore, ExpectedVersion, NewEvent, Position,
    Snapshot, StoreError, StoreStats, StoredEvent, StreamInfo, StreamMetadata, Topics, database, decide, upcast_events,
    validate,
};
use crate::outbox::{Backlog, OutboxError, OutboxRecord, OutboxStore, Wakeups, read_record, relay_table};
use crate::upcast::Upcasters;

/// The event store relays' lease and cursor table.
const RELAY_TABLE: &str = "herald_events_relay";

/// The columns of a stored event, in the order [`read_event`] reads them.
const EVENT_COLUMNS: &str = "e.id, 0 AS txid_number, e.stream_id, e.stream_version, e.event_id, e.event_type, \
     e.event_version, e.payload, e.created_ms";

/// A stream read's conditions beyond the version range: its metadata (?4 is now in ms).
const METADATA_FILTER: &str = "e.stream_version >= s.truncate_before \
     AND (s.max_count IS NULL OR e.stream_version > s.version - s.max_count) \
     AND (s.max_age_ms IS NULL OR e.created_ms >= ?4 - s.max_age_ms)";

/// An event store in a SQLite database; cheap to clone (clones share the append signal).
/// Open the pool with [`sqlite_options`](crate::outbox::sqlite_options) (WAL,
/// `synchronous=FULL`, a busy timeout).
#[derive(Debug, Clone)]
pub struct SqliteEventStore {
    pool: SqlitePool,
    topics: Topics,
    upcasters: Option<Arc<Upcasters>>,
    appended: Arc<Notify>,
}

impl SqliteEventStore {
    /// Applies herald's event store migrations if missing.
    pub async fn new(pool: SqlitePool) -> Result<Self, StoreError> {
        crate::schema::migrate!(pool, sqlite, crate::schema::sqlite::EVENT_STORE, super::database);
        Ok(Self { pool, topics: Topics::default(), upcasters: None, appended: Arc::default() })
    }

    /// Publishes the streams of aggregate type `aggregate` to `topic` instead of
    /// `<aggregate>.events`.
    pub fn topic(mut self, aggregate: &str, topic: &str) -> Self {
        self.topics.set(aggregate, topic);
        self
    }

    /// Brings old versions of events to the newest on every read (stream reads,
    /// `read_all`, subscriptions).
    pub fn upcasters(mut self, upcasters: Arc<Upcasters>) -> Self {
        self.upcasters = Some(upcasters);
        self
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Appends inside the caller's transaction, so business rows and events commit
    /// together. Append before the transaction's first read, or begin it with
    /// `BEGIN IMMEDIATE`: a SQLite transaction that read before it writes cannot take the
    /// write lock once another writer committed.
    pub async fn append_in(
        &self,
        connection: &mut SqliteConnection,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        validate(stream, &events)?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let check = lock_and_check(connection, stream, &ids).await?;
        let first = match decide(stream, expected, &ids, &check) {
            AppendDecision::Write { first } => first,
            AppendDecision::AlreadyStored(appended) => return Ok(appended),
            AppendDecision::Refuse(refusal) => return Err(refusal.into_error(stream, expected)),
        };
        write(connection, stream, first, &self.topics.of(stream), &events).await?;
        self.appended.notify_waiters();
        let last = first + events.len() as u64 - 1;
        Ok(Appended { first_version: first, last_version: last, already_stored: false })
    }
}

/// Writes the stream's row (taking the write lock), then reads its version and which of
/// `ids` are already stored.
async fn lock_and_check(
    connection: &mut SqliteConnection,
    stream: &str,
    ids: &[Uuid],
) -> Result<AppendCheck, StoreError> {
    let (version, deleted): (i64, i64) = sqlx::query_as(
        "INSERT INTO herald_streams (stream_id, version) VALUES (?, -1) \
         ON CONFLICT (stream_id) DO UPDATE SET version = version RETURNING version, deleted",
    )
    .bind(stream)
    .fetch_one(&mut *connection)
    .await
    .map_err(database("lock the stream"))?;
    let placeholders = vec!["?"; ids.len()].join(", ");
    let sql =
        format!("SELECT event_id, stream_id, stream_version FROM herald_events WHERE event_id IN ({placeholders})");
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id.hyphenated().to_string());
    }
    let rows = query.fetch_all(&mut *connection).await.map_err(database("look up event ids"))?;
    let stored = rows
        .iter()
        .map(|row| {
            let id: String = row.try_get(0).map_err(database("read event ids"))?;
            let id = Uuid::parse_str(&id).map_err(|e| StoreError::BadRow { id: 0, problem: e.to_string() })?;
            let version: i64 = row.try_get(2).map_err(database("read event ids"))?;
            Ok((id, row.try_get(1).map_err(database("read event ids"))?, version as u64))
        })
        .collect::<Result<_, StoreError>>()?;
    let actual = u64::try_from(version).ok();
    Ok(AppendCheck { actual, stored, older_than_last_writer: false, hard_deleted: deleted == 2 })
}

async fn write(
    connection: &mut SqliteConnection,
    stream: &str,
    first: u64,
    topic: &str,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    let last = first + events.len() as u64 - 1;
    sqlx::query(
        "UPDATE herald_streams SET version = ?, deleted = CASE WHEN deleted = 1 THEN 0 ELSE deleted END \
         WHERE stream_id = ?",
    )
    .bind(last as i64)
    .bind(stream)
    .execute(&mut *connection)
    .await
    .map_err(database("move the stream's version"))?;
    for (i, event) in events.iter().enumerate() {
        sqlx::query(
            "INSERT INTO herald_events \
               (stream_id, stream_version, event_id, event_type, event_version, topic, headers, payload, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(stream)
        .bind((first + i as u64) as i64)
        .bind(event.event_id.hyphenated().to_string())
        .bind(&event.event_type)
        .bind(i64::from(event.event_version))
        .bind(topic)
        .bind(&event.headers)
        .bind(&event.payload)
        .bind(event.created_ms)
        .execute(&mut *connection)
        .await
        .map_err(database("append an event"))?;
    }
    Ok(())
}

fn read_event(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let read = || database("read an event");
    let id: i64 = row.try_get(0).map_err(read())?;
    let event_id: String = row.try_get(4).map_err(read())?;
    let version: i64 = row.try_get(3).map_err(read())?;
    let schema: i64 = row.try_get(6).map_err(read())?;
    Ok(StoredEvent {
        position: Position { txid: 0, id },
        stream_id: row.try_get(2).map_err(read())?,
        stream_version: u64::try_from(version).map_err(|e| StoreError::BadRow { id, problem: e.to_string() })?,
        event_id: Uuid::parse_str(&event_id).map_err(|e| StoreError::BadRow { id, problem: e.to_string() })?,
        event_type: row.try_get(5).map_err(read())?,
        event_version: u32::try_from(schema).map_err(|e| StoreError::BadRow { id, problem: e.to_string() })?,
        payload: row.try_get(7).map_err(read())?,
        created_ms: row.try_get(8).map_err(read())?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database("begin an append"))?;
        let appended = self.append_in(&mut tx, stream, expected, events).await?;
        tx.commit().await.map_err(database("commit an append"))?;
        Ok(appended)
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = match direction {
            Direction::Forward => format!(
                "SELECT {EVENT_COLUMNS} FROM herald_events e JOIN herald_streams s ON s.stream_id = e.stream_id \
                 WHERE e.stream_id = ?1 AND e.stream_version >= ?2 AND {METADATA_FILTER} \
                 ORDER BY e.stream_version LIMIT ?3"
            ),
            Direction::Backward => format!(
                "SELECT {EVENT_COLUMNS} FROM herald_events e JOIN herald_streams s ON s.stream_id = e.stream_id \
                 WHERE e.stream_id = ?1 AND e.stream_version <= ?2 AND {METADATA_FILTER} \
                 ORDER BY e.stream_version DESC LIMIT ?3"
            ),
        };
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(stream)
            .bind(i64::try_from(from).unwrap_or(i64::MAX))
            .bind(limit(max))
            .bind(crate::time::now_ms())
            .fetch_all(&self.pool)
            .await
            .map_err(database("read a stream"))?;
        let mut events = rows.iter().map(read_event).collect::<Result<Vec<_>, _>>()?;
        upcast_events(self.upcasters.as_deref(), &mut events)?;
        Ok(events)
    }

    async fn read_all(&self, after: Position, max: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM herald_events e WHERE e.id > ? ORDER BY e.id LIMIT ?");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after.id)
            .bind(limit(max))
            .fetch_all(&self.pool)
            .await
            .map_err(database("read all streams"))?;
        let mut events = rows.iter().map(read_event).collect::<Result<Vec<_>, _>>()?;
        upcast_events(self.upcasters.as_deref(), &mut events)?;
        Ok(events)
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let version: Option<(i64,)> = sqlx::query_as("SELECT version FROM herald_streams WHERE stream_id = ?")
            .bind(stream)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("read a stream's version"))?;
        Ok(version.and_then(|(v,)| u64::try_from(v).ok()))
    }

    async fn set_metadata(&self, stream: &str, metadata: StreamMetadata) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO herald_streams (stream_id, version, max_count, max_age_ms, truncate_before) \
             VALUES (?, -1, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET max_count = excluded.max_count, \
             max_age_ms = excluded.max_age_ms, truncate_before = excluded.truncate_before",
        )
        .bind(stream)
        .bind(metadata.max_count.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .bind(metadata.max_age.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        .bind(i64::try_from(metadata.truncate_before).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(database("set stream metadata"))?;
        Ok(())
    }

    async fn delete_stream(&self, stream: &str, deletion: Deletion) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(database("begin a delete"))?;
        match deletion {
            Deletion::Soft => sqlx::query(
                "UPDATE herald_streams SET deleted = 1, truncate_before = version + 1 WHERE stream_id = ? AND deleted = 0",
            ),
            Deletion::Hard => sqlx::query("UPDATE herald_streams SET deleted = 2 WHERE stream_id = ?"),
        }
        .bind(stream)
        .execute(&mut *tx)
        .await
        .map_err(database("mark a stream deleted"))?;
        if deletion == Deletion::Hard {
            for table in ["herald_events", "herald_snapshots"] {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE stream_id = ?")))
                    .bind(stream)
                    .execute(&mut *tx)
                    .await
                    .map_err(database("remove a deleted stream's events"))?;
            }
        }
        tx.commit().await.map_err(database("commit a delete"))
    }

    async fn streams(&self, prefix: &str, after: &str, max: usize) -> Result<Vec<StreamInfo>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT stream_id, version, CAST(deleted AS BIGINT) FROM herald_streams \
             WHERE substr(stream_id, 1, length(?1)) = ?1 AND stream_id > ?2 ORDER BY stream_id LIMIT ?3",
        )
        .bind(prefix)
        .bind(after)
        .bind(limit(max))
        .fetch_all(&self.pool)
        .await
        .map_err(database("list streams"))?;
        Ok(rows
            .into_iter()
            .map(|(stream_id, version, deleted)| StreamInfo {
                stream_id,
                version: u64::try_from(version).ok(),
                deleted: u8::try_from(deleted).unwrap_or(0),
            })
            .collect())
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let (streams,): (i64,) = sqlx::query_as("SELECT count(*) FROM herald_streams")
            .fetch_one(&self.pool)
            .await
            .map_err(database("count streams"))?;
        let (events, first_ms, last_ms): (i64, Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT count(*), min(created_ms), max(created_ms) FROM herald_events")
                .fetch_one(&self.pool)
                .await
                .map_err(database("count events"))?;
        let by_type: Vec<(String, i64)> = sqlx::query_as(
            "SELECT event_type, count(*) AS n FROM herald_events GROUP BY event_type ORDER BY n DESC, event_type",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(database("count event types"))?;
        Ok(StoreStats {
            streams: streams as u64,
            events: events as u64,
            first_ms,
            last_ms,
            by_type: by_type.into_iter().map(|(t, n)| (t, n as u64)).collect(),
        })
    }

    async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, schema_version, state FROM herald_snapshots WHERE stream_id = ?1")
                .bind(stream)
                .fetch_optional(&self.pool)
                .await
                .map_err(database("load a snapshot"))?;
        Ok(row.map(|(version, schema, state)| Snapshot {
            version: u64::try_from(version).unwrap_or(0),
            schema_version: u32::try_from(schema).unwrap_or(0),
            state,
        }))
    }

    async fn save_snapshot(&self, stream: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO herald_snapshots (stream_id, version, schema_version, state, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
             schema_version = excluded.schema_version, state = excluded.state, created_ms = excluded.created_ms \
             WHERE herald_snapshots.version <= excluded.version",
        )
        .bind(stream)
        .bind(i64::try_from(snapshot.version).unwrap_or(i64::MAX))
        .bind(i64::from(snapshot.schema_version))
        .bind(&snapshot.state)
        .bind(crate::time::now_ms())
        .execute(&self.pool)
        .await
        .map_err(database("save a snapshot"))?;
        Ok(())
    }

    fn appended(&self) -> Arc<Notify> {
        Arc::clone(&self.appended)
    }
}

impl OutboxStore for SqliteEventStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn acquire(
        &self,
        relay: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Position>, OutboxError> {
        relay_table::sqlite::acquire(&self.pool, RELAY_TABLE, relay, owner, now_ms, ttl_ms).await
    }

    async fn release(&self, relay: &str, owner: &str) -> Result<(), OutboxError> {
        relay_table::sqlite::release(&self.pool, RELAY_TABLE, relay, owner).await
    }

    async fn fetch(&self, after: Position, max: usize) -> Result<Vec<OutboxRecord>, OutboxError> {
        let rows = sqlx::query(
            "SELECT id, 0 AS txid_number, event_id, topic, stream_id AS key, headers, payload, created_ms \
             FROM herald_events WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after.id)
        .bind(limit(max))
        .fetch_all(&self.pool)
        .await
        .map_err(crate::outbox::database("fetch events"))?;
        rows.iter().map(read_record).collect()
    }

    async fn advance(&self, relay: &str, owner: &str, to: Position) -> Result<bool, OutboxError> {
        relay_table::sqlite::advance(&self.pool, RELAY_TABLE, relay, owner, to).await
    }

    async fn cleanup(&self, _relay: &str, _created_before_ms: i64, _limit: i64) -> Result<u64, OutboxError> {
        Ok(0) // the events are the store: published ones stay
    }

    async fn backlog(&self, after: Position) -> Result<Backlog, OutboxError> {
        let row = sqlx::query("SELECT count(*), min(created_ms) FROM herald_events WHERE id > ?")
            .bind(after.id)
            .fetch_one(&self.pool)
            .await
            .map_err(crate::outbox::database("measure the backlog"))?;
        let read = || crate::outbox::database("read the backlog");
        Ok(Backlog {
            rows: row.try_get(0).map_err(read())?,
            oldest_created_ms: row.try_get(1).map_err(read())?,
            fenced_rows: 0,
            oldest_write_transaction: None,
        })
    }

    async fn wakeups(&self) -> Result<Wakeups, OutboxError> {
        Ok(Wakeups::Local(Arc::clone(&self.appended)))
    }
}
