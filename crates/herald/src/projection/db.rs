//! [`ProjectionDb`]: the database side of projections, written once as SQL both backends
//! run (`sql`) and one macro-generated impl per backend, so the runner is written once.

use std::future::Future;

use super::{Command, ProjectionError, ProjectionState, Table};
use crate::store::{Position, StoredEvent};

/// The database side of projections: checkpoints, parking, versioned tables and the live
/// switch. One implementation per backend.
pub trait ProjectionDb: Send + Sync + Clone + 'static {
    /// The transaction a projection writes through.
    type Tx: Send;
    /// Opens a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, ProjectionError>> + Send;
    /// Commits it.
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// Rolls it back now (a dropped transaction rolls back only when its connection is next
    /// used, and on SQLite would hold the write lock until then).
    fn rollback(tx: Self::Tx) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// The stored state of projection `name` at `version` (a fresh one if none).
    fn state(&self, name: &str, version: u32) -> impl Future<Output = Result<ProjectionState, ProjectionError>> + Send;
    /// Creates the version's checkpoint and its tables (`<table>_v<version>`) unless they
    /// exist, in one transaction; the first version of a name goes live at once.
    fn prepare(
        &self,
        name: &str,
        version: u32,
        tables: &[Table],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// Locks the version's checkpoint inside `tx` (so one runner at a time folds it) and
    /// returns its position and whether it is retired.
    fn claim(
        tx: &mut Self::Tx,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<Option<(Position, Option<i64>)>, ProjectionError>> + Send;
    /// Moves the checkpoint from `from` to `to` inside `tx`, first thing (so it also locks
    /// it), if it is still at `from` and the version is neither retired, parked nor told to
    /// do something; false otherwise (the caller rolls back).
    fn advance_in(
        tx: &mut Self::Tx,
        name: &str,
        version: u32,
        from: Position,
        to: Position,
        last_event_ms: Option<i64>,
    ) -> impl Future<Output = Result<bool, ProjectionError>> + Send;
    /// Moves a Kafka-fed version's checkpoint for `topic`/`partition` past `offset` inside
    /// `tx`, first thing; false if it already is past it (a redelivery: roll back).
    fn advance_offset_in(
        tx: &mut Self::Tx,
        name: &str,
        version: u32,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = Result<bool, ProjectionError>> + Send;
    /// Moves the checkpoint inside `tx`, with the read model's writes.
    fn save_in(
        tx: &mut Self::Tx,
        name: &str,
        version: u32,
        position: Position,
        last_event_ms: Option<i64>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// Marks `version` retired inside `tx` (locking its checkpoint) and returns its position.
    fn retire_in(
        tx: &mut Self::Tx,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<Option<Position>, ProjectionError>> + Send;
    /// Makes `version` the live one inside `tx`: the live row, and each table's view.
    fn go_live_in(
        tx: &mut Self::Tx,
        name: &str,
        version: u32,
        tables: &[String],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// Drops the tables and checkpoints of `name`'s versions retired at or before
    /// `cutoff_ms`; returns how many versions went.
    fn drop_retired(&self, name: &str, cutoff_ms: i64) -> impl Future<Output = Result<u64, ProjectionError>> + Send;
    /// Parks the projection at `event` with `error`.
    fn park(
        &self,
        name: &str,
        version: u32,
        event: &StoredEvent,
        error: &str,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// Carries out `command` in one transaction: clears the parked event (retry), records
    /// it as skipped and moves past it (skip), or empties the version's tables and starts
    /// it over from the first event (reset).
    fn resolve(
        &self,
        name: &str,
        version: u32,
        command: Command,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// Every projection version with a checkpoint: name, version and state.
    fn list(&self) -> impl Future<Output = Result<Vec<(String, u32, ProjectionState)>, ProjectionError>> + Send;
    /// Leaves `command` for the projection's runner; false if there is no such version
    /// (or, for retry and skip, it is not parked).
    fn command(
        &self,
        name: &str,
        version: u32,
        command: Command,
    ) -> impl Future<Output = Result<bool, ProjectionError>> + Send;
}

/// The SQL both backends run, written with `$n` placeholders (SQLite reads them as `?n`).
pub(crate) mod sql {
    const COLUMNS: &str = "c.txid, c.id, c.last_event_ms, c.parked_txid, c.parked_id, c.parked_event_id, \
         c.parked_error, c.command, c.created_ms, c.tables, c.retired_ms, CAST(l.version AS BIGINT)";
    const FROM: &str = "FROM herald_projection_checkpoints c LEFT JOIN herald_projection_live l ON l.name = c.name";
    pub(crate) fn state() -> String {
        format!("SELECT {COLUMNS} {FROM} WHERE c.name = $1 AND c.version = $2")
    }
    pub(crate) fn list() -> String {
        format!("SELECT c.name, CAST(c.version AS BIGINT), {COLUMNS} {FROM} ORDER BY c.name, c.version")
    }
    pub(crate) const LIVE: &str = "SELECT CAST(version AS BIGINT) FROM herald_projection_live WHERE name = $1";
    pub(crate) const CREATE: &str = "INSERT INTO herald_projection_checkpoints \
         (name, version, created_ms, updated_ms, tables) VALUES ($1, $2, $3, $3, $4) \
         ON CONFLICT (name, version) DO NOTHING";
    pub(crate) const CLAIM: &str = "UPDATE herald_projection_checkpoints SET updated_ms = $3 \
         WHERE name = $1 AND version = $2 RETURNING txid, id, retired_ms";
    pub(crate) const SAVE: &str = "UPDATE herald_projection_checkpoints SET txid = $3, id = $4, \
         last_event_ms = $5, updated_ms = $6 WHERE name = $1 AND version = $2";
    pub(crate) const ADVANCE: &str = "UPDATE herald_projection_checkpoints SET txid = $3, id = $4, \
         last_event_ms = $5, updated_ms = $6 WHERE name = $1 AND version = $2 AND txid = $7 AND id = $8 \
         AND retired_ms IS NULL AND parked_id IS NULL AND command IS NULL";
    pub(crate) const ADVANCE_OFFSET: &str = "INSERT INTO herald_projection_offsets \
         (name, version, topic, partition, next_offset) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name, version, topic, partition) DO UPDATE SET next_offset = excluded.next_offset \
         WHERE herald_projection_offsets.next_offset < excluded.next_offset";
    pub(crate) const RETIRE: &str = "UPDATE herald_projection_checkpoints SET retired_ms = $3 \
         WHERE name = $1 AND version = $2 RETURNING txid, id";
    pub(crate) const GO_LIVE: &str = "INSERT INTO herald_projection_live (name, version, switched_ms) \
         VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
         switched_ms = excluded.switched_ms";
    pub(crate) const RETIRED: &str = "SELECT CAST(version AS BIGINT), tables FROM herald_projection_checkpoints \
         WHERE name = $1 AND retired_ms <= $2";
    pub(crate) const FORGET: &str = "DELETE FROM herald_projection_checkpoints WHERE name = $1 AND version = $2";
    pub(crate) const PARK: &str = "UPDATE herald_projection_checkpoints SET parked_txid = $3, parked_id = $4, \
         parked_event_id = $5, parked_error = $6, command = NULL, updated_ms = $7 \
         WHERE name = $1 AND version = $2";
    pub(crate) const COMMAND_PARKED: &str = "UPDATE herald_projection_checkpoints SET command = $3 \
         WHERE name = $1 AND version = $2 AND parked_id IS NOT NULL";
    pub(crate) const COMMAND_ANY: &str =
        "UPDATE herald_projection_checkpoints SET command = $3 WHERE name = $1 AND version = $2";
    pub(crate) const RECORD_SKIP: &str = "INSERT INTO herald_projection_skips \
         (name, version, txid, id, event_id, error, skipped_ms) \
         SELECT name, version, parked_txid, parked_id, parked_event_id, parked_error, $3 \
         FROM herald_projection_checkpoints WHERE name = $1 AND version = $2 AND parked_id IS NOT NULL \
         ON CONFLICT DO NOTHING";
    pub(crate) const PAST_SKIPPED: &str = "UPDATE herald_projection_checkpoints SET txid = parked_txid, \
         id = parked_id, updated_ms = $3 WHERE name = $1 AND version = $2 AND parked_id IS NOT NULL";
    pub(crate) const START_OVER: &str = "UPDATE herald_projection_checkpoints SET txid = 0, id = 0, \
         last_event_ms = NULL, updated_ms = $3 WHERE name = $1 AND version = $2";
    pub(crate) const UNPARK: &str = "UPDATE herald_projection_checkpoints SET parked_txid = NULL, \
         parked_id = NULL, parked_event_id = NULL, parked_error = NULL, command = NULL, \
         updated_ms = $3 WHERE name = $1 AND version = $2";
}

/// A [`sql::state`] row: position, last event time, parked position, event id, error,
/// command, created, tables, retired, live version.
pub(crate) type StateRow = (
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// A [`sql::list`] row: name and version, then a [`StateRow`]'s columns.
pub(crate) type ListRow = (
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// A listed projection version.
pub(crate) fn listed(row: ListRow) -> (String, u32, ProjectionState) {
    let (name, version, a, b, c, d, e, f, g, h, i, j, k, l) = row;
    (name, to_version(version), state_from(Some((a, b, c, d, e, f, g, h, i, j, k, l))))
}

fn to_version(version: i64) -> u32 {
    u32::try_from(version).unwrap_or(0)
}

/// The stored state from a [`sql::state`] row.
pub(crate) fn state_from(row: Option<StateRow>) -> ProjectionState {
    let Some((
        txid,
        id,
        last_event_ms,
        parked_txid,
        parked_id,
        event_id,
        error,
        command,
        created,
        tables,
        retired,
        live,
    )) = row
    else {
        return ProjectionState::default();
    };
    let parked = match (parked_txid, parked_id) {
        (Some(txid), Some(id)) => Some(super::Parked {
            position: Position { txid, id },
            event_id: event_id.unwrap_or_default(),
            error: error.unwrap_or_default(),
        }),
        _ => None,
    };
    ProjectionState {
        exists: true,
        position: Position { txid, id },
        last_event_ms,
        parked,
        command: command.as_deref().and_then(Command::parse),
        created_ms: created,
        tables: split_tables(tables.as_deref()),
        retired_ms: retired,
        live_version: live.map(to_version),
    }
}

/// The `tables` column: base names, comma-separated.
pub(crate) fn split_tables(tables: Option<&str>) -> Vec<String> {
    tables.unwrap_or("").split(',').filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// DDL for one table of a version: its `create` with the versioned name put in.
pub(crate) fn create_table(table: &Table, version: u32) -> String {
    table.create.replace("{table}", &super::versioned(table.name, version))
}

/// The view `base` over `base` at `version`.
pub(crate) fn view_statements(base: &str, version: u32) -> [String; 2] {
    [
        format!("DROP VIEW IF EXISTS {base}"),
        format!("CREATE VIEW {base} AS SELECT * FROM {}", super::versioned(base, version)),
    ]
}

/// The [`ProjectionDb`] impl of one backend: the same statements (`sql`), with `$sql`
/// turning each into the backend's placeholder style, and transactions opened with
/// `$begin` (SQLite's `BEGIN IMMEDIATE`: every projection transaction writes, and one
/// that read first could not take the write lock after another writer).
macro_rules! projection_db {
    ($name:ident, $db:ty, $sql:path, $begin:literal) => {
        use $crate::projection::db::{self as db_sql, sql, state_from};
        use $crate::projection::{Command, ProjectionDb, ProjectionError, ProjectionState, Table, database};
        use $crate::store::{Position, StoredEvent};

        impl $name {
            async fn run_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                statement: &str,
                name: &str,
                version: u32,
                operation: &'static str,
            ) -> Result<u64, ProjectionError> {
                let done = sqlx::query($sql(statement))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind($crate::time::now_ms())
                    .execute(&mut **tx)
                    .await
                    .map_err(database(operation))?;
                Ok(done.rows_affected())
            }

            async fn ddl(
                tx: &mut sqlx::Transaction<'static, $db>,
                statement: String,
                operation: &'static str,
            ) -> Result<(), ProjectionError> {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut **tx).await.map_err(database(operation))?;
                Ok(())
            }
        }

        impl ProjectionDb for $name {
            type Tx = sqlx::Transaction<'static, $db>;

            async fn begin(&self) -> Result<Self::Tx, ProjectionError> {
                self.pool.begin_with($begin).await.map_err(database("begin"))
            }

            async fn commit(tx: Self::Tx) -> Result<(), ProjectionError> {
                tx.commit().await.map_err(database("commit"))
            }

            async fn rollback(tx: Self::Tx) -> Result<(), ProjectionError> {
                tx.rollback().await.map_err(database("roll back"))
            }

            async fn state(&self, name: &str, version: u32) -> Result<ProjectionState, ProjectionError> {
                let row: Option<db_sql::StateRow> = sqlx::query_as($sql(&sql::state()))
                    .bind(name)
                    .bind(i64::from(version))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database("read the checkpoint"))?;
                Ok(state_from(row))
            }

            async fn prepare(&self, name: &str, version: u32, tables: &[Table]) -> Result<(), ProjectionError> {
                $crate::projection::check_tables(tables)?;
                let mut tx = self.begin().await?;
                let live: Option<(i64,)> = sqlx::query_as($sql(sql::LIVE))
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(database("read the live version"))?;
                let names: Vec<String> = tables.iter().map(|t| t.name.to_string()).collect();
                let created = sqlx::query($sql(sql::CREATE))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind($crate::time::now_ms())
                    .bind(names.join(","))
                    .execute(&mut *tx)
                    .await
                    .map_err(database("create the checkpoint"))?;
                if created.rows_affected() == 1 {
                    for table in tables {
                        Self::ddl(&mut tx, db_sql::create_table(table, version), "create a read-model table").await?;
                    }
                    if live.is_none() {
                        Self::go_live_in(&mut tx, name, version, &names).await?;
                    }
                }
                Self::commit(tx).await
            }

            async fn claim(
                tx: &mut Self::Tx,
                name: &str,
                version: u32,
            ) -> Result<Option<(Position, Option<i64>)>, ProjectionError> {
                let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as($sql(sql::CLAIM))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind($crate::time::now_ms())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(database("claim the checkpoint"))?;
                Ok(row.map(|(txid, id, retired)| (Position { txid, id }, retired)))
            }

            async fn advance_in(
                tx: &mut Self::Tx,
                name: &str,
                version: u32,
                from: Position,
                to: Position,
                last_event_ms: Option<i64>,
            ) -> Result<bool, ProjectionError> {
                let done = sqlx::query($sql(sql::ADVANCE))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind(to.txid)
                    .bind(to.id)
                    .bind(last_event_ms)
                    .bind($crate::time::now_ms())
                    .bind(from.txid)
                    .bind(from.id)
                    .execute(&mut **tx)
                    .await
                    .map_err(database("move the checkpoint"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn advance_offset_in(
                tx: &mut Self::Tx,
                name: &str,
                version: u32,
                topic: &str,
                partition: i32,
                offset: i64,
            ) -> Result<bool, ProjectionError> {
                let done = sqlx::query($sql(sql::ADVANCE_OFFSET))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind(topic)
                    .bind(partition)
                    .bind(offset.saturating_add(1))
                    .execute(&mut **tx)
                    .await
                    .map_err(database("move the partition checkpoint"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn save_in(
                tx: &mut Self::Tx,
                name: &str,
                version: u32,
                position: Position,
                last_event_ms: Option<i64>,
            ) -> Result<(), ProjectionError> {
                sqlx::query($sql(sql::SAVE))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind(position.txid)
                    .bind(position.id)
                    .bind(last_event_ms)
                    .bind($crate::time::now_ms())
                    .execute(&mut **tx)
                    .await
                    .map_err(database("write the checkpoint"))?;
                Ok(())
            }

            async fn retire_in(
                tx: &mut Self::Tx,
                name: &str,
                version: u32,
            ) -> Result<Option<Position>, ProjectionError> {
                let row: Option<(i64, i64)> = sqlx::query_as($sql(sql::RETIRE))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind($crate::time::now_ms())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(database("retire the old version"))?;
                Ok(row.map(|(txid, id)| Position { txid, id }))
            }

            async fn go_live_in(
                tx: &mut Self::Tx,
                name: &str,
                version: u32,
                tables: &[String],
            ) -> Result<(), ProjectionError> {
                Self::run_in(tx, sql::GO_LIVE, name, version, "switch the live version").await?;
                for base in tables {
                    for statement in db_sql::view_statements(base, version) {
                        Self::ddl(tx, statement, "point the view at the live version").await?;
                    }
                }
                Ok(())
            }

            async fn drop_retired(&self, name: &str, cutoff_ms: i64) -> Result<u64, ProjectionError> {
                let mut tx = self.begin().await?;
                let retired: Vec<(i64, Option<String>)> = sqlx::query_as($sql(sql::RETIRED))
                    .bind(name)
                    .bind(cutoff_ms)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(database("list retired versions"))?;
                for (version, tables) in &retired {
                    let version = u32::try_from(*version).unwrap_or(0);
                    for base in db_sql::split_tables(tables.as_deref()) {
                        let table = $crate::projection::versioned(&base, version);
                        Self::ddl(&mut tx, format!("DROP TABLE IF EXISTS {table}"), "drop a retired table").await?;
                    }
                    sqlx::query($sql(sql::FORGET))
                        .bind(name)
                        .bind(i64::from(version))
                        .execute(&mut *tx)
                        .await
                        .map_err(database("forget a retired version"))?;
                }
                Self::commit(tx).await?;
                Ok(retired.len() as u64)
            }

            async fn park(
                &self,
                name: &str,
                version: u32,
                event: &StoredEvent,
                error: &str,
            ) -> Result<(), ProjectionError> {
                sqlx::query($sql(sql::PARK))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind(event.position.txid)
                    .bind(event.position.id)
                    .bind(event.event_id.to_string())
                    .bind(error)
                    .bind($crate::time::now_ms())
                    .execute(&self.pool)
                    .await
                    .map_err(database("park"))?;
                Ok(())
            }

            async fn resolve(&self, name: &str, version: u32, command: Command) -> Result<(), ProjectionError> {
                let state = self.state(name, version).await?;
                let mut tx = self.begin().await?;
                if Self::claim(&mut tx, name, version).await?.is_none() {
                    return Self::rollback(tx).await;
                }
                match command {
                    Command::Retry => {}
                    Command::Skip => {
                        Self::run_in(&mut tx, sql::RECORD_SKIP, name, version, "record the skip").await?;
                        Self::run_in(&mut tx, sql::PAST_SKIPPED, name, version, "skip the parked event").await?;
                    }
                    Command::Reset => {
                        for base in &state.tables {
                            let table = $crate::projection::versioned(base, version);
                            Self::ddl(&mut tx, format!("DELETE FROM {table}"), "empty a read-model table").await?;
                        }
                        Self::run_in(&mut tx, sql::START_OVER, name, version, "start over").await?;
                    }
                }
                Self::run_in(&mut tx, sql::UNPARK, name, version, "unpark").await?;
                Self::commit(tx).await
            }

            async fn list(&self) -> Result<Vec<(String, u32, ProjectionState)>, ProjectionError> {
                let rows: Vec<db_sql::ListRow> = sqlx::query_as($sql(&sql::list()))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database("list projections"))?;
                Ok(rows.into_iter().map(db_sql::listed).collect())
            }

            async fn command(&self, name: &str, version: u32, command: Command) -> Result<bool, ProjectionError> {
                let statement = match command {
                    Command::Retry | Command::Skip => sql::COMMAND_PARKED,
                    Command::Reset => sql::COMMAND_ANY,
                };
                let done = sqlx::query($sql(statement))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind(command.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(database("leave a command"))?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
pub(crate) use projection_db;
