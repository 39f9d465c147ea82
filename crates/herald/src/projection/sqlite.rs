//! Projections whose read models live in SQLite.

use sqlx::{AssertSqlSafe, Sqlite, SqlitePool};

use super::{Command, ProjectionDb, ProjectionError, ProjectionState, database, sql, state_from};
use crate::store::{Position, StoredEvent};

/// The read models' database (SQLite); apply the projections' tables yourself, or in
/// `apply` with `CREATE TABLE IF NOT EXISTS`.
#[derive(Debug, Clone)]
pub struct SqliteProjections {
    pool: SqlitePool,
}

impl SqliteProjections {
    /// Applies herald's projection migrations if missing.
    pub async fn new(pool: SqlitePool) -> Result<Self, ProjectionError> {
        crate::schema::migrate!(pool, sqlite, crate::schema::sqlite::PROJECTIONS, super::database);
        Ok(Self { pool })
    }

    /// The pool (to query the read models).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The shared SQL with SQLite's placeholders.
fn lite(pg: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(pg.replace('$', "?"))
}

super::projection_db!(SqliteProjections, Sqlite, lite);
