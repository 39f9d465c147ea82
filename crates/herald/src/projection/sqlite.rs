//! Projections whose read models live in SQLite.

use sqlx::{AssertSqlSafe, Sqlite, SqlitePool};

/// The read models' database (SQLite): projection versions' tables, their views, and the
/// checkpoints.
#[derive(Debug, Clone)]
pub struct SqliteProjections {
    pool: SqlitePool,
}

impl SqliteProjections {
    /// Applies herald's projection migrations if missing.
    pub async fn new(pool: SqlitePool) -> Result<Self, super::ProjectionError> {
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

super::db::projection_db!(SqliteProjections, Sqlite, lite, "BEGIN IMMEDIATE");
