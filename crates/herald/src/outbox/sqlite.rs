//! The outbox in SQLite: ids from `AUTOINCREMENT` in commit order (one writer at a time),
//! and an in-process signal from `enqueue` to a relay in the same process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{Row, SqliteConnection};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    Backlog, Encoded, OutboxError, OutboxRecord, OutboxStore, Position, Wakeups, database, read_record, relay_table,
};
use crate::envelope::ENVELOPE_BYTES_MAX_DEFAULT;
use crate::{Envelope, Event};

/// The outbox relays' lease and cursor table.
const RELAY_TABLE: &str = "herald_outbox_relay";

/// Connection options for an outbox database at `path`: created if missing, WAL, and
/// `synchronous=FULL`, so a committed transaction (and its events) survives power loss;
/// with `NORMAL`, WAL mode may lose the last commits on power loss. A 5 s busy timeout
/// lets the relay and the writers take turns.
pub fn sqlite_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
}

/// An outbox in a SQLite database; cheap to clone (clones share the wakeup signal).
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pool: SqlitePool,
    source: String,
    envelope_max_bytes: usize,
    enqueued: Arc<Notify>,
}

impl SqliteOutbox {
    /// Applies herald's outbox migrations if missing. Open `pool` with
    /// [`sqlite_options`] (WAL, `synchronous=FULL`) unless you know why not.
    pub async fn new(pool: SqlitePool) -> Result<Self, OutboxError> {
        crate::schema::migrate!(pool, sqlite, crate::schema::sqlite::OUTBOX, crate::outbox::database);
        Ok(Self {
            pool,
            source: "herald".into(),
            envelope_max_bytes: ENVELOPE_BYTES_MAX_DEFAULT,
            enqueued: Arc::default(),
        })
    }

    /// The envelopes' `source` (the service's name).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Writes `event` in a fresh envelope to the outbox on `connection`, normally the
    /// caller's open transaction. Returns the event id.
    pub async fn enqueue<E: Event>(&self, connection: &mut SqliteConnection, event: E) -> Result<Uuid, OutboxError> {
        self.enqueue_envelope(connection, &Envelope::new(self.source.clone(), event)).await
    }

    /// Like [`enqueue`](Self::enqueue) with a prepared envelope.
    pub async fn enqueue_envelope<E: Event>(
        &self,
        connection: &mut SqliteConnection,
        envelope: &Envelope<E>,
    ) -> Result<Uuid, OutboxError> {
        let row = Encoded::new(envelope, E::TOPIC, self.envelope_max_bytes)?;
        sqlx::query(
            "INSERT INTO herald_outbox (event_id, topic, key, headers, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(row.event_id.hyphenated().to_string())
        .bind(&row.topic)
        .bind(&row.key)
        .bind(&row.headers)
        .bind(&row.payload)
        .bind(row.created_ms)
        .execute(connection)
        .await
        .map_err(database("enqueue"))?;
        // Before the commit: a relay woken now may find nothing yet, and looks again shortly.
        self.enqueued.notify_one();
        Ok(row.event_id)
    }
}

impl OutboxStore for SqliteOutbox {
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

    async fn fetch(&self, after: Position, limit: usize) -> Result<Vec<OutboxRecord>, OutboxError> {
        let rows = sqlx::query(
            "SELECT id, 0 AS txid_number, event_id, topic, key, headers, payload, created_ms FROM herald_outbox \
             WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after.id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(database("fetch rows"))?;
        rows.iter().map(read_record).collect()
    }

    async fn advance(&self, relay: &str, owner: &str, to: Position) -> Result<bool, OutboxError> {
        relay_table::sqlite::advance(&self.pool, RELAY_TABLE, relay, owner, to).await
    }

    async fn cleanup(&self, _relay: &str, created_before_ms: i64, limit: i64) -> Result<u64, OutboxError> {
        // Only rows every relay name has published. AUTOINCREMENT keeps later ids above
        // the deleted ones.
        let deleted = sqlx::query(
            "DELETE FROM herald_outbox WHERE id IN (\
               SELECT id FROM herald_outbox WHERE created_ms < ? \
                 AND id <= (SELECT coalesce(min(cursor_id), 0) FROM herald_outbox_relay) \
               ORDER BY id LIMIT ?)",
        )
        .bind(created_before_ms)
        .bind(limit)
        .execute(&self.pool)
        .await
        .map_err(database("clean up published rows"))?;
        Ok(deleted.rows_affected())
    }

    async fn backlog(&self, after: Position) -> Result<Backlog, OutboxError> {
        let row = sqlx::query("SELECT count(*), min(created_ms) FROM herald_outbox WHERE id > ?")
            .bind(after.id)
            .fetch_one(&self.pool)
            .await
            .map_err(database("measure the backlog"))?;
        Ok(Backlog {
            rows: row.try_get(0).map_err(database("read the backlog"))?,
            oldest_created_ms: row.try_get(1).map_err(database("read the backlog"))?,
            fenced_rows: 0,
            oldest_write_transaction: None,
        })
    }

    async fn wakeups(&self) -> Result<Wakeups, OutboxError> {
        Ok(Wakeups::Local(Arc::clone(&self.enqueued)))
    }
}
