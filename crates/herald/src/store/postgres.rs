//! The event store in PostgreSQL: an append locks the stream's row (an upsert that also
//! returns its version and the ids already stored), plain code decides, and one statement
//! moves the version and inserts the events.

use std::sync::Arc;

use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    AppendCheck, AppendDecision, Appended, Deletion, Direction, EventStore, ExpectedVersion, NewEvent, Position,
    Snapshot, StoreError, StoreErrorKind, StoreStats, StoredEvent, StreamInfo, StreamMetadata, Topics, database,
    decide, upcast_events, validate,
};
use crate::outbox::{Backlog, OutboxError, OutboxRecord, OutboxStore, Wakeups, read_record, relay_table};
use crate::upcast::Upcasters;

/// The event store relays' lease and cursor table.
const RELAY_TABLE: &str = "herald_events_relay";

/// How often `append` starts over in a fresh transaction when it is older than the
/// stream's last writer (a race of a few microseconds between appends to one stream).
const TOO_OLD_RETRIES: usize = 8;

/// The columns of a stored event, in the order [`read_event`] reads them.
const EVENT_COLUMNS: &str = "e.id, e.txid::text::bigint AS txid_number, e.stream_id, e.stream_version, \
     uuid_send(e.event_id) AS event_uuid, e.event_type, e.event_version, e.payload, e.created_ms";

/// A stream read's conditions beyond the version range: its metadata ($4 is now in ms).
const METADATA_FILTER: &str = "e.stream_version >= s.truncate_before \
     AND (s.max_count IS NULL OR e.stream_version > s.version - s.max_count) \
     AND (s.max_age_ms IS NULL OR e.created_ms >= $4 - s.max_age_ms)";

/// An event store in a PostgreSQL database; cheap to clone (clones share the append signal).
#[derive(Debug, Clone)]
pub struct PostgresEventStore {
    pool: PgPool,
    topics: Topics,
    upcasters: Option<Arc<Upcasters>>,
    appended: Arc<Notify>,
}

impl PostgresEventStore {
    /// Applies herald's event store migrations (`herald_events`, `herald_streams`,
    /// `herald_events_relay`) if missing.
    pub async fn new(pool: PgPool) -> Result<Self, StoreError> {
        crate::schema::migrate!(pool, postgres, crate::schema::postgres::EVENT_STORE, super::database);
        Ok(Self { pool, topics: Topics::default(), upcasters: None, appended: Arc::default() })
    }

    /// Publishes the streams of aggregate type `aggregate` (`order` for `order-42`) to
    /// `topic` instead of `<aggregate>.events`. Applies to events appended from now on.
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
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends inside the caller's transaction, so business rows and events commit
    /// together. The stream's row stays locked until the transaction ends. A
    /// [`StoreError::TransactionTooOld`] asks the caller to retry the whole transaction.
    pub async fn append_in(
        &self,
        connection: &mut PgConnection,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        validate(stream, &events)?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let topic = self.topics.of(stream);
        if let ExpectedVersion::Exact(version) = expected {
            // The common case in one statement; anything unusual takes the full path.
            let first = version.saturating_add(1);
            let written = write(connection, stream, first, &topic, &events, Some(version)).await;
            if written.map_err(|e| duplicate(e, &ids))? == events.len() as u64 {
                self.appended.notify_waiters();
                let last = first + events.len() as u64 - 1;
                return Ok(Appended { first_version: first, last_version: last, already_stored: false });
            }
        }
        let mut check = lock_and_check(connection, stream, &ids).await?;
        let mut decision = decide(stream, expected, &ids, &check);
        if matches!(decision, AppendDecision::Refuse(StoreErrorKind::WrongExpectedVersion(_))) {
            // Rows a concurrent retry committed while the lock was awaited are not in the
            // locking statement's snapshot: look again before refusing.
            check.stored = stored_ids(connection, &ids).await?;
            decision = decide(stream, expected, &ids, &check);
        }
        let first = match decision {
            AppendDecision::Write { first } => first,
            AppendDecision::AlreadyStored(appended) => return Ok(appended),
            AppendDecision::Refuse(refusal) => return Err(refusal.into_error(stream, expected)),
        };
        write(connection, stream, first, &topic, &events, None).await.map_err(|e| duplicate(e, &ids))?;
        self.appended.notify_waiters();
        let last = first + events.len() as u64 - 1;
        Ok(Appended { first_version: first, last_version: last, already_stored: false })
    }

    async fn append_once(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<Appended, StoreError> {
        let mut tx = self.pool.begin().await.map_err(database("begin an append"))?;
        let appended = self.append_in(&mut tx, stream, expected, events.to_vec()).await?;
        tx.commit().await.map_err(database("commit an append"))?;
        Ok(appended)
    }
}

/// Locks the stream's row (creating it at version -1 if missing) and reads, in the same
/// statement, its version, whether this transaction is older than its last writer, and
/// which of `ids` are already stored.
async fn lock_and_check(connection: &mut PgConnection, stream: &str, ids: &[Uuid]) -> Result<AppendCheck, StoreError> {
    let ids: Vec<String> = ids.iter().map(|id| id.hyphenated().to_string()).collect();
    let rows = sqlx::query(
        "WITH s AS (INSERT INTO herald_streams (stream_id, version) VALUES ($1, -1) \
           ON CONFLICT (stream_id) DO UPDATE SET version = herald_streams.version \
           RETURNING version, pg_current_xact_id() < last_txid AS older, deleted) \
         SELECT s.version, s.older, e.event_id::text, e.stream_id, e.stream_version, s.deleted \
         FROM s LEFT JOIN herald_events e ON e.event_id = ANY($2::text[]::uuid[])",
    )
    .bind(stream)
    .bind(&ids)
    .fetch_all(&mut *connection)
    .await
    .map_err(database("lock the stream"))?;
    let mut check =
        AppendCheck { actual: None, stored: Vec::new(), older_than_last_writer: false, hard_deleted: false };
    for row in &rows {
        let version: i64 = row.try_get(0).map_err(database("read the stream"))?;
        check.actual = u64::try_from(version).ok();
        check.older_than_last_writer = row.try_get(1).map_err(database("read the stream"))?;
        let deleted: i16 = row.try_get(5).map_err(database("read the stream"))?;
        check.hard_deleted = deleted == 2;
        let stored: Option<String> = row.try_get(2).map_err(database("read the stream"))?;
        if let Some(id) = stored {
            let id = Uuid::parse_str(&id).map_err(|e| StoreError::BadRow { id: 0, problem: e.to_string() })?;
            let version: i64 = row.try_get(4).map_err(database("read the stream"))?;
            check.stored.push((id, row.try_get(3).map_err(database("read the stream"))?, version as u64));
        }
    }
    Ok(check)
}

/// Which of `ids` are stored, and where.
async fn stored_ids(connection: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<(Uuid, String, u64)>, StoreError> {
    let ids: Vec<String> = ids.iter().map(|id| id.hyphenated().to_string()).collect();
    let rows = sqlx::query(
        "SELECT event_id::text, stream_id, stream_version FROM herald_events WHERE event_id = ANY($1::text[]::uuid[])",
    )
    .bind(&ids)
    .fetch_all(&mut *connection)
    .await
    .map_err(database("look up event ids"))?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get(0).map_err(database("read event ids"))?;
            let id = Uuid::parse_str(&id).map_err(|e| StoreError::BadRow { id: 0, problem: e.to_string() })?;
            let version: i64 = row.try_get(2).map_err(database("read event ids"))?;
            Ok((id, row.try_get(1).map_err(database("read event ids"))?, version as u64))
        })
        .collect()
}

/// The write of an append whose decision was made (`WRITE`), and the whole of one
/// expecting `Exact(n)` in a single statement (`FAST`): it writes only if the stream is
/// still at `n` ($11), not hard-deleted, last written by an older transaction, and none of
/// the ids is stored; otherwise it writes nothing and the append takes the full path,
/// which then says why (or reports the earlier identical append).
const WRITE: &str = "WITH s AS (UPDATE herald_streams SET version = $2, last_txid = pg_current_xact_id(), \
       deleted = CASE WHEN deleted = 1 THEN 0 ELSE deleted END WHERE stream_id = $1 RETURNING version) \
     INSERT INTO herald_events \
       (stream_id, stream_version, event_id, event_type, event_version, topic, headers, payload, created_ms) \
     SELECT $1, v, e::uuid, t, ev, $3, h, p, c \
     FROM UNNEST($4::bigint[], $5::text[], $6::text[], $7::int[], $8::text[], $9::bytea[], $10::bigint[]) \
       AS x(v, e, t, ev, h, p, c) WHERE EXISTS (SELECT 1 FROM s)";
const FAST: &str = "WITH s AS (UPDATE herald_streams SET version = $2, last_txid = pg_current_xact_id(), \
       deleted = CASE WHEN deleted = 1 THEN 0 ELSE deleted END \
       WHERE stream_id = $1 AND version = $11 AND deleted <> 2 AND last_txid <= pg_current_xact_id() \
         AND NOT EXISTS (SELECT 1 FROM herald_events WHERE event_id = ANY($5::text[]::uuid[])) RETURNING version) \
     INSERT INTO herald_events \
       (stream_id, stream_version, event_id, event_type, event_version, topic, headers, payload, created_ms) \
     SELECT $1, v, e::uuid, t, ev, $3, h, p, c \
     FROM UNNEST($4::bigint[], $5::text[], $6::text[], $7::int[], $8::text[], $9::bytea[], $10::bigint[]) \
       AS x(v, e, t, ev, h, p, c) WHERE EXISTS (SELECT 1 FROM s)";

/// Moves the stream's version to `first + events - 1` and inserts the events, in one
/// statement; with `expected`, only if the fast path's conditions hold. Returns the rows
/// inserted.
async fn write(
    connection: &mut PgConnection,
    stream: &str,
    first: u64,
    topic: &str,
    events: &[NewEvent],
    expected: Option<u64>,
) -> Result<u64, sqlx::Error> {
    let versions: Vec<i64> = (0..events.len()).map(|i| (first + i as u64) as i64).collect();
    let ids: Vec<String> = events.iter().map(|e| e.event_id.hyphenated().to_string()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let schema_versions: Vec<i32> = events.iter().map(|e| e.event_version as i32).collect();
    let headers: Vec<&str> = events.iter().map(|e| e.headers.as_str()).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let created: Vec<i64> = events.iter().map(|e| e.created_ms).collect();
    let last = versions.last().copied().unwrap_or(-1);
    let query = sqlx::query(if expected.is_some() { FAST } else { WRITE })
        .bind(stream)
        .bind(last)
        .bind(topic)
        .bind(&versions)
        .bind(&ids)
        .bind(&types)
        .bind(&schema_versions)
        .bind(&headers)
        .bind(&payloads)
        .bind(&created);
    let query = match expected {
        Some(version) => query.bind(i64::try_from(version).unwrap_or(i64::MAX)),
        None => query,
    };
    query.execute(connection).await.map(|done| done.rows_affected())
}

/// A unique violation on the event id (a concurrent append of the same ids to another
/// stream) is a [`StoreError::DuplicateEventId`]; other failures stay database errors.
fn duplicate(error: sqlx::Error, ids: &[Uuid]) -> StoreError {
    let is_duplicate_id = error.as_database_error().is_some_and(|e| e.constraint() == Some("herald_events_event_id"));
    match (is_duplicate_id, ids.first()) {
        (true, Some(id)) => StoreError::DuplicateEventId {
            event_id: *id,
            stream: "(another stream, appended concurrently)".into(),
            version: 0,
        },
        _ => StoreError::Database { operation: "append events", source: error },
    }
}

fn read_event(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, StoreError> {
    let read = || database("read an event");
    let id: i64 = row.try_get(0).map_err(read())?;
    let event_id: Vec<u8> = row.try_get(4).map_err(read())?;
    let version: i64 = row.try_get(3).map_err(read())?;
    let schema: i32 = row.try_get(6).map_err(read())?;
    Ok(StoredEvent {
        position: Position { txid: row.try_get(1).map_err(read())?, id },
        stream_id: row.try_get(2).map_err(read())?,
        stream_version: u64::try_from(version).map_err(|e| StoreError::BadRow { id, problem: e.to_string() })?,
        event_id: Uuid::from_slice(&event_id).map_err(|e| StoreError::BadRow { id, problem: e.to_string() })?,
        event_type: row.try_get(5).map_err(read())?,
        event_version: u32::try_from(schema).map_err(|e| StoreError::BadRow { id, problem: e.to_string() })?,
        payload: row.try_get(7).map_err(read())?,
        created_ms: row.try_get(8).map_err(read())?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let mut attempt = 0;
        loop {
            match self.append_once(stream, expected, &events).await {
                Err(StoreError::TransactionTooOld { .. }) if attempt < TOO_OLD_RETRIES => attempt += 1,
                result => return result,
            }
        }
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
                 WHERE e.stream_id = $1 AND e.stream_version >= $2 AND {METADATA_FILTER} \
                 ORDER BY e.stream_version LIMIT $3"
            ),
            Direction::Backward => format!(
                "SELECT {EVENT_COLUMNS} FROM herald_events e JOIN herald_streams s ON s.stream_id = e.stream_id \
                 WHERE e.stream_id = $1 AND e.stream_version <= $2 AND {METADATA_FILTER} \
                 ORDER BY e.stream_version DESC LIMIT $3"
            ),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
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
        // Below the oldest running transaction only: see the module docs.
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM herald_events e \
             WHERE (e.txid, e.id) > ($1::text::xid8, $2) AND e.txid < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY e.txid, e.id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.txid.to_string())
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
        let version: Option<(i64,)> = sqlx::query_as("SELECT version FROM herald_streams WHERE stream_id = $1")
            .bind(stream)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("read a stream's version"))?;
        Ok(version.and_then(|(v,)| u64::try_from(v).ok()))
    }

    async fn set_metadata(&self, stream: &str, metadata: StreamMetadata) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO herald_streams (stream_id, version, max_count, max_age_ms, truncate_before) \
             VALUES ($1, -1, $2, $3, $4) ON CONFLICT (stream_id) DO UPDATE SET max_count = excluded.max_count, \
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
                "UPDATE herald_streams SET deleted = 1, truncate_before = version + 1 WHERE stream_id = $1 AND deleted = 0",
            ),
            Deletion::Hard => sqlx::query("UPDATE herald_streams SET deleted = 2 WHERE stream_id = $1"),
        }
        .bind(stream)
        .execute(&mut *tx)
        .await
        .map_err(database("mark a stream deleted"))?;
        if deletion == Deletion::Hard {
            for table in ["herald_events", "herald_snapshots"] {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE stream_id = $1")))
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
             WHERE substr(stream_id, 1, length($1::text)) = $1::text AND stream_id > $2 ORDER BY stream_id LIMIT $3",
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
            sqlx::query_as("SELECT version, schema_version::bigint, state FROM herald_snapshots WHERE stream_id = $1")
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
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
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

impl OutboxStore for PostgresEventStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn acquire(
        &self,
        relay: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Position>, OutboxError> {
        relay_table::postgres::acquire(&self.pool, RELAY_TABLE, relay, owner, now_ms, ttl_ms).await
    }

    async fn release(&self, relay: &str, owner: &str) -> Result<(), OutboxError> {
        relay_table::postgres::release(&self.pool, RELAY_TABLE, relay, owner).await
    }

    async fn fetch(&self, after: Position, max: usize) -> Result<Vec<OutboxRecord>, OutboxError> {
        let rows = sqlx::query(
            "SELECT id, txid::text::bigint AS txid_number, event_id::text AS event_uuid, topic, stream_id AS key, \
             headers, payload, created_ms FROM herald_events \
             WHERE (txid, id) > ($1::text::xid8, $2) AND txid < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY txid, id LIMIT $3",
        )
        .bind(after.txid.to_string())
        .bind(after.id)
        .bind(limit(max))
        .fetch_all(&self.pool)
        .await
        .map_err(crate::outbox::database("fetch events"))?;
        rows.iter().map(read_record).collect()
    }

    async fn advance(&self, relay: &str, owner: &str, to: Position) -> Result<bool, OutboxError> {
        relay_table::postgres::advance(&self.pool, RELAY_TABLE, relay, owner, to).await
    }

    async fn cleanup(&self, _relay: &str, _created_before_ms: i64, _limit: i64) -> Result<u64, OutboxError> {
        Ok(0) // the events are the store: published ones stay
    }

    async fn backlog(&self, after: Position) -> Result<Backlog, OutboxError> {
        let row = sqlx::query(
            "SELECT count(*), min(created_ms), \
               count(*) FILTER (WHERE txid >= pg_snapshot_xmin(pg_current_snapshot())) \
             FROM herald_events WHERE (txid, id) > ($1::text::xid8, $2)",
        )
        .bind(after.txid.to_string())
        .bind(after.id)
        .fetch_one(&self.pool)
        .await
        .map_err(crate::outbox::database("measure the backlog"))?;
        let read = || crate::outbox::database("read the backlog");
        Ok(Backlog {
            rows: row.try_get(0).map_err(read())?,
            oldest_created_ms: row.try_get(1).map_err(read())?,
            fenced_rows: row.try_get(2).map_err(read())?,
            oldest_write_transaction: None,
        })
    }

    async fn wakeups(&self) -> Result<Wakeups, OutboxError> {
        Ok(Wakeups::Local(Arc::clone(&self.appended)))
    }
}
