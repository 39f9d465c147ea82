//! Sagas in PostgreSQL.

use sqlx::{AssertSqlSafe, PgPool, Postgres};

/// Saga instances, their history and deadlines in PostgreSQL, with the inbox and outbox
/// tables their decisions write to (a [`Relay`](crate::outbox::Relay) over a
/// [`PostgresOutbox`](crate::outbox::PostgresOutbox) on the same database publishes the
/// messages).
#[derive(Debug, Clone)]
pub struct PostgresSagas {
    pool: PgPool,
}

impl PostgresSagas {
    /// Applies herald's inbox, outbox and saga migrations if missing.
    pub async fn new(pool: PgPool) -> Result<Self, super::SagaError> {
        use crate::schema::postgres::{INBOX, OUTBOX, SAGAS};
        crate::schema::migrate!(pool, postgres, INBOX.iter().chain(&OUTBOX).chain(&SAGAS).copied(), super::database);
        Ok(Self { pool })
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn same(pg: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(pg.to_string())
}

super::db::saga_db!(
    PostgresSagas,
    Postgres,
    same,
    "BEGIN",
    "INSERT INTO herald_outbox (event_id, topic, key, headers, payload, created_ms) \
     VALUES ($1::uuid, $2, $3, $4, $5, $6)"
);
