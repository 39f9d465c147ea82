//! The relay's lease and cursor rows, one per relay name, in a table of the outbox's shape
//! (`herald_outbox_relay` for the outbox, `herald_events_relay` for the event store): the
//! same SQL for every store, with the table named by the store (a constant, never input).

use sqlx::{AssertSqlSafe, Row};

use super::{OutboxError, Position, database};

/// PostgreSQL: cursors are (xid8, id).
#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    use super::*;

    /// See [`OutboxStore::acquire`](crate::outbox::OutboxStore::acquire).
    pub(crate) async fn acquire(
        pool: &sqlx::PgPool,
        table: &str,
        relay: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Position>, OutboxError> {
        let sql = format!(
            "INSERT INTO {table} AS r (name, owner, lease_until_ms) VALUES ($1, $2, $3 + $4) \
             ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, lease_until_ms = EXCLUDED.lease_until_ms \
             WHERE r.owner = EXCLUDED.owner OR r.owner IS NULL OR r.lease_until_ms < $3 \
             RETURNING r.cursor_txid::text::bigint, r.cursor_id"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(relay)
            .bind(owner)
            .bind(now_ms)
            .bind(ttl_ms)
            .fetch_optional(pool)
            .await
            .map_err(database("acquire the relay lease"))?;
        row.map(|row| Ok(Position { txid: row.try_get(0)?, id: row.try_get(1)? }))
            .transpose()
            .map_err(database("read the relay cursor"))
    }

    /// See [`OutboxStore::release`](crate::outbox::OutboxStore::release).
    pub(crate) async fn release(pool: &sqlx::PgPool, table: &str, relay: &str, owner: &str) -> Result<(), OutboxError> {
        let sql = format!("UPDATE {table} SET owner = NULL, lease_until_ms = 0 WHERE name = $1 AND owner = $2");
        sqlx::query(AssertSqlSafe(sql))
            .bind(relay)
            .bind(owner)
            .execute(pool)
            .await
            .map_err(database("release the relay lease"))?;
        Ok(())
    }

    /// See [`OutboxStore::advance`](crate::outbox::OutboxStore::advance).
    pub(crate) async fn advance(
        pool: &sqlx::PgPool,
        table: &str,
        relay: &str,
        owner: &str,
        to: Position,
    ) -> Result<bool, OutboxError> {
        let mut tx = pool.begin().await.map_err(database("begin cursor update"))?;
        // The cursor may lag after a crash (its events are then published again, with the
        // same ids), never lead: so the commit need not wait for its WAL flush.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(database("set synchronous_commit"))?;
        // Only forward: a relay that resumed after an unnoticed lapse must not move a newer
        // cursor back (that would only repeat events, but needlessly).
        let sql = format!(
            "UPDATE {table} SET cursor_txid = $3::text::xid8, cursor_id = $4 \
             WHERE name = $1 AND owner = $2 AND (cursor_txid, cursor_id) <= ($3::text::xid8, $4)"
        );
        let updated = sqlx::query(AssertSqlSafe(sql))
            .bind(relay)
            .bind(owner)
            .bind(to.txid.to_string())
            .bind(to.id)
            .execute(&mut *tx)
            .await
            .map_err(database("update the cursor"))?;
        tx.commit().await.map_err(database("commit the cursor"))?;
        Ok(updated.rows_affected() == 1)
    }
}

/// SQLite: cursors are ids (txid 0).
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    use super::*;

    /// See [`OutboxStore::acquire`](crate::outbox::OutboxStore::acquire).
    pub(crate) async fn acquire(
        pool: &sqlx::SqlitePool,
        table: &str,
        relay: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Position>, OutboxError> {
        let sql = format!(
            "INSERT INTO {table} AS r (name, owner, lease_until_ms) VALUES (?1, ?2, ?3 + ?4) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until_ms = excluded.lease_until_ms \
             WHERE r.owner = excluded.owner OR r.owner IS NULL OR r.lease_until_ms < ?3 \
             RETURNING cursor_id"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(relay)
            .bind(owner)
            .bind(now_ms)
            .bind(ttl_ms)
            .fetch_optional(pool)
            .await
            .map_err(database("acquire the relay lease"))?;
        row.map(|row| Ok(Position { txid: 0, id: row.try_get(0)? }))
            .transpose()
            .map_err(database("read the relay cursor"))
    }

    /// See [`OutboxStore::release`](crate::outbox::OutboxStore::release).
    pub(crate) async fn release(
        pool: &sqlx::SqlitePool,
        table: &str,
        relay: &str,
        owner: &str,
    ) -> Result<(), OutboxError> {
        let sql = format!("UPDATE {table} SET owner = NULL, lease_until_ms = 0 WHERE name = ? AND owner = ?");
        sqlx::query(AssertSqlSafe(sql))
            .bind(relay)
            .bind(owner)
            .execute(pool)
            .await
            .map_err(database("release the relay lease"))?;
        Ok(())
    }

    /// See [`OutboxStore::advance`](crate::outbox::OutboxStore::advance).
    pub(crate) async fn advance(
        pool: &sqlx::SqlitePool,
        table: &str,
        relay: &str,
        owner: &str,
        to: Position,
    ) -> Result<bool, OutboxError> {
        let sql = format!("UPDATE {table} SET cursor_id = ?1 WHERE name = ?2 AND owner = ?3 AND cursor_id <= ?1");
        let updated = sqlx::query(AssertSqlSafe(sql))
            .bind(to.id)
            .bind(relay)
            .bind(owner)
            .execute(pool)
            .await
            .map_err(database("update the cursor"))?;
        Ok(updated.rows_affected() == 1)
    }
}
