//! The outbox in PostgreSQL: rows carry their transaction's id (`xid8`), and the relay
//! reads below the oldest running transaction (see the module above for why).

use std::sync::Arc;

use sqlx::postgres::{PgListener, PgPool};
use sqlx::{PgConnection, Row};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    Backlog, Encoded, OutboxError, OutboxRecord, OutboxStore, Position, Wakeups, database, read_record, relay_table,
};
use crate::envelope::ENVELOPE_BYTES_MAX_DEFAULT;
use crate::{Envelope, Event};

/// The outbox relays' lease and cursor table.
const RELAY_TABLE: &str = "herald_outbox_relay";

/// The channel `enqueue` notifies and the relay listens on.
const CHANNEL: &str = "herald_outbox";

/// An outbox in a PostgreSQL database; cheap to clone.
#[derive(Debug, Clone)]
pub struct PostgresOutbox {
    pool: PgPool,
    source: String,
    envelope_max_bytes: usize,
    notify: bool,
    enqueued: Arc<Notify>,
}

impl PostgresOutbox {
    /// Applies herald's outbox migrations (`herald_outbox`, `herald_outbox_relay`) if
    /// missing. Envelopes get `herald` as their source until [`source`](Self::source).
    pub async fn new(pool: PgPool) -> Result<Self, OutboxError> {
        crate::schema::migrate!(pool, postgres, crate::schema::postgres::OUTBOX, crate::outbox::database);
        Ok(Self {
            pool,
            source: "herald".into(),
            envelope_max_bytes: ENVELOPE_BYTES_MAX_DEFAULT,
            notify: false,
            enqueued: Arc::default(),
        })
    }

    /// The envelopes' `source` (the service's name).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Whether `enqueue` also sends `NOTIFY herald_outbox`, waking a relay in another
    /// process at commit (default off). A relay in this process is woken without it; one
    /// elsewhere otherwise finds rows on its next poll (`RelayConfig::poll_interval`).
    /// The cost: PostgreSQL serializes the commits of notifying transactions, which
    /// measured 34 % (1 client) to 51 % (16 clients) of a one-row transaction's throughput
    /// (docs/BENCHMARKS.md).
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes `event` in a fresh envelope to the outbox, on `connection` — normally the
    /// caller's open transaction, so the event commits (or rolls back) with the business
    /// rows. Returns the event id.
    pub async fn enqueue<E: Event>(&self, connection: &mut PgConnection, event: E) -> Result<Uuid, OutboxError> {
        self.enqueue_envelope(connection, &Envelope::new(self.source.clone(), event)).await
    }

    /// Like [`enqueue`](Self::enqueue) with a prepared envelope (correlation and causation
    /// ids, e.g. from [`Context::follow_up`](crate::consumer::Context::follow_up)), to its
    /// event's topic.
    pub async fn enqueue_envelope<E: Event>(
        &self,
        connection: &mut PgConnection,
        envelope: &Envelope<E>,
    ) -> Result<Uuid, OutboxError> {
        let row = Encoded::new(envelope, E::TOPIC, self.envelope_max_bytes)?;
        let sql = if self.notify {
            // One round trip; the notification is delivered when the transaction commits.
            "WITH row AS (INSERT INTO herald_outbox (event_id, topic, key, headers, payload, created_ms) \
             VALUES ($1::uuid, $2, $3, $4, $5, $6) RETURNING id) SELECT pg_notify('herald_outbox', '') FROM row"
        } else {
            "INSERT INTO herald_outbox (event_id, topic, key, headers, payload, created_ms) \
             VALUES ($1::uuid, $2, $3, $4, $5, $6)"
        };
        sqlx::query(sql)
            .bind(row.event_id.hyphenated().to_string())
            .bind(&row.topic)
            .bind(&row.key)
            .bind(&row.headers)
            .bind(&row.payload)
            .bind(row.created_ms)
            .execute(connection)
            .await
            .map_err(database("enqueue"))?;
        // A relay in this process: woken before the commit, it looks again shortly after.
        self.enqueued.notify_one();
        Ok(row.event_id)
    }
}

impl OutboxStore for PostgresOutbox {
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

    async fn fetch(&self, after: Position, limit: usize) -> Result<Vec<OutboxRecord>, OutboxError> {
        // `pg_current_snapshot()` is this statement's snapshot: every transaction below its
        // xmin has ended, so the rows read here are all there will ever be below the fence.
        let rows = sqlx::query(
            // The aliases matter: an output column named `txid` would make ORDER BY sort by
            // the converted number instead of walking the (txid, id) index.
            "SELECT id, txid::text::bigint AS txid_number, event_id::text AS event_uuid, topic, key, headers, \
             payload, created_ms FROM herald_outbox \
             WHERE (txid, id) > ($1::text::xid8, $2) AND txid < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY txid, id LIMIT $3",
        )
        .bind(after.txid.to_string())
        .bind(after.id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(database("fetch rows"))?;
        rows.iter().map(read_record).collect()
    }

    async fn advance(&self, relay: &str, owner: &str, to: Position) -> Result<bool, OutboxError> {
        relay_table::postgres::advance(&self.pool, RELAY_TABLE, relay, owner, to).await
    }

    async fn cleanup(&self, _relay: &str, created_before_ms: i64, limit: i64) -> Result<u64, OutboxError> {
        // Only rows every relay name has published.
        let deleted = sqlx::query(
            "DELETE FROM herald_outbox WHERE (txid, id) IN (\
               SELECT o.txid, o.id FROM herald_outbox o WHERE o.created_ms < $1 AND NOT EXISTS (\
                 SELECT 1 FROM herald_outbox_relay r WHERE (o.txid, o.id) > (r.cursor_txid, r.cursor_id)) \
               ORDER BY o.txid, o.id LIMIT $2)",
        )
        .bind(created_before_ms)
        .bind(limit)
        .execute(&self.pool)
        .await
        .map_err(database("clean up published rows"))?;
        Ok(deleted.rows_affected())
    }

    async fn backlog(&self, after: Position) -> Result<Backlog, OutboxError> {
        let row = sqlx::query(
            "SELECT count(*), min(created_ms), \
               count(*) FILTER (WHERE txid >= pg_snapshot_xmin(pg_current_snapshot())), \
               (SELECT extract(epoch FROM max(clock_timestamp() - xact_start))::float8 \
                  FROM pg_stat_activity WHERE backend_xid IS NOT NULL) \
             FROM herald_outbox WHERE (txid, id) > ($1::text::xid8, $2)",
        )
        .bind(after.txid.to_string())
        .bind(after.id)
        .fetch_one(&self.pool)
        .await
        .map_err(database("measure the backlog"))?;
        let oldest: Option<f64> = row.try_get(3).map_err(database("read the backlog"))?;
        Ok(Backlog {
            rows: row.try_get(0).map_err(database("read the backlog"))?,
            oldest_created_ms: row.try_get(1).map_err(database("read the backlog"))?,
            fenced_rows: row.try_get(2).map_err(database("read the backlog"))?,
            oldest_write_transaction: oldest
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(std::time::Duration::from_secs_f64),
        })
    }

    async fn wakeups(&self) -> Result<Wakeups, OutboxError> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(database("connect a listener"))?;
        listener.listen(CHANNEL).await.map_err(database("listen"))?;
        Ok(Wakeups::Listen(Box::new(listener), Arc::clone(&self.enqueued)))
    }
}
