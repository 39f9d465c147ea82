//! Projections whose read models live in PostgreSQL.

use sqlx::{AssertSqlSafe, PgPool, Postgres};

/// The read models' database (PostgreSQL): projection versions' tables, their views, and
/// the checkpoints.
#[derive(Debug, Clone)]
pub struct PostgresProjections {
    pool: PgPool,
}

impl PostgresProjections {
    /// Applies herald's projection migrations if missing.
    pub async fn new(pool: PgPool) -> Result<Self, super::ProjectionError> {
        crate::schema::migrate!(pool, postgres, crate::schema::postgres::PROJECTIONS, super::database);
        Ok(Self { pool })
    }

    /// The pool (to query the read models).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The shared SQL as it is.
fn same(pg: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(pg.to_string())
}

super::db::projection_db!(PostgresProjections, Postgres, same, "BEGIN");
