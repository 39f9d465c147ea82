//! Projections whose read models live in PostgreSQL.

use sqlx::{AssertSqlSafe, PgPool, Postgres};

use super::{Command, ProjectionDb, ProjectionError, ProjectionState, database, sql, state_from};
use crate::store::{Position, StoredEvent};

/// The read models' database (PostgreSQL); apply the projections' tables yourself, or in
/// `apply` with `CREATE TABLE IF NOT EXISTS`.
#[derive(Debug, Clone)]
pub struct PostgresProjections {
    pool: PgPool,
}

impl PostgresProjections {
    /// Applies herald's projection migrations if missing.
    pub async fn new(pool: PgPool) -> Result<Self, ProjectionError> {
        crate::schema::migrate!(pool, postgres, crate::schema::postgres::PROJECTIONS, super::database);
        Ok(Self { pool })
    }

    /// The pool (to query the read models).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The shared SQL as it is.
fn lite(pg: &'static str) -> AssertSqlSafe<&'static str> {
    AssertSqlSafe(pg)
}

super::projection_db!(PostgresProjections, Postgres, lite);
