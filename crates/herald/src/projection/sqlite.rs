//! Projections whose read models live in SQLite.

use sqlx::{AssertSqlSafe, Sqlite, SqlitePool, Transaction};

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

impl ProjectionDb for SqliteProjections {
    type Tx = Transaction<'static, Sqlite>;

    async fn begin(&self) -> Result<Self::Tx, ProjectionError> {
        self.pool.begin().await.map_err(database("begin"))
    }

    async fn commit(tx: Self::Tx) -> Result<(), ProjectionError> {
        tx.commit().await.map_err(database("commit"))
    }

    async fn state(&self, name: &str, version: u32) -> Result<ProjectionState, ProjectionError> {
        let row: Option<super::StateRow> = sqlx::query_as(lite(sql::STATE))
            .bind(name)
            .bind(i64::from(version))
            .fetch_optional(&self.pool)
            .await
            .map_err(database("read the checkpoint"))?;
        Ok(state_from(row))
    }

    async fn save_in(
        tx: &mut Self::Tx,
        name: &str,
        version: u32,
        position: Position,
        last_event_ms: Option<i64>,
    ) -> Result<(), ProjectionError> {
        sqlx::query(lite(sql::SAVE))
            .bind(name)
            .bind(i64::from(version))
            .bind(position.txid)
            .bind(position.id)
            .bind(last_event_ms)
            .bind(crate::time::now_ms())
            .execute(&mut **tx)
            .await
            .map_err(database("write the checkpoint"))?;
        Ok(())
    }

    async fn park(&self, name: &str, version: u32, event: &StoredEvent, error: &str) -> Result<(), ProjectionError> {
        sqlx::query(lite(sql::PARK))
            .bind(name)
            .bind(i64::from(version))
            .bind(event.position.txid)
            .bind(event.position.id)
            .bind(event.event_id.to_string())
            .bind(error)
            .bind(crate::time::now_ms())
            .execute(&self.pool)
            .await
            .map_err(database("park"))?;
        Ok(())
    }

    async fn resolve(&self, name: &str, version: u32, command: Command) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await.map_err(database("begin"))?;
        if command == Command::Skip {
            for statement in [sql::RECORD_SKIP, sql::PAST_SKIPPED] {
                sqlx::query(lite(statement))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind(crate::time::now_ms())
                    .execute(&mut *tx)
                    .await
                    .map_err(database("skip the parked event"))?;
            }
        }
        sqlx::query(lite(sql::UNPARK))
            .bind(name)
            .bind(i64::from(version))
            .execute(&mut *tx)
            .await
            .map_err(database("unpark"))?;
        tx.commit().await.map_err(database("commit"))
    }

    async fn list(&self) -> Result<Vec<(String, u32, ProjectionState)>, ProjectionError> {
        let rows: Vec<super::ListRow> =
            sqlx::query_as(lite(sql::LIST)).fetch_all(&self.pool).await.map_err(database("list projections"))?;
        Ok(rows.into_iter().map(super::listed).collect())
    }

    async fn command(&self, name: &str, version: u32, command: Command) -> Result<(), ProjectionError> {
        sqlx::query(lite(sql::COMMAND))
            .bind(name)
            .bind(i64::from(version))
            .bind(command.as_str())
            .execute(&self.pool)
            .await
            .map_err(database("leave a command"))?;
        Ok(())
    }
}
