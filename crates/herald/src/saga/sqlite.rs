//! Sagas in SQLite.

use sqlx::{AssertSqlSafe, Sqlite, SqlitePool};

/// Saga instances, their history and deadlines in SQLite, with the inbox and outbox
/// tables their decisions write to (a [`Relay`](crate::outbox::Relay) over a
/// [`SqliteOutbox`](crate::outbox::SqliteOutbox) on the same pool publishes the messages).
#[derive(Debug, Clone)]
pub struct SqliteSagas {
    pool: SqlitePool,
}

impl SqliteSagas {
    /// Applies herald's inbox, outbox and saga migrations if missing.
    pub async fn new(pool: SqlitePool) -> Result<Self, super::SagaError> {
        use crate::schema::sqlite::{INBOX, OUTBOX, SAGAS};
        crate::schema::migrate!(pool, sqlite, INBOX.iter().chain(&OUTBOX).chain(&SAGAS).copied(), super::database);
        Ok(Self { pool })
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn lite(pg: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(pg.replace('$', "?"))
}

super::db::saga_db!(
    SqliteSagas,
    Sqlite,
    lite,
    "BEGIN IMMEDIATE",
    "INSERT INTO herald_outbox (event_id, topic, key, headers, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
    None::<&str>
);
