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
     VALUES ($1::uuid, $2, $3, $4, $5, $6)",
    Some(CLAIM_LOAD)
);

/// The inbox claim and the instance's load in one statement (the claim's row comes back
/// from the CTE; a missing instance is a row of NULLs).
const CLAIM_LOAD: &str = "WITH claim AS (INSERT INTO herald_inbox (group_id, event_id, recorded_at_ms) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1) \
     SELECT EXISTS (SELECT 1 FROM claim), s.id, s.version, s.status, s.step, s.state, s.started_ms, s.updated_ms \
     FROM (SELECT 1) AS one LEFT JOIN herald_sagas s ON s.saga = $4 AND s.id = $5";
