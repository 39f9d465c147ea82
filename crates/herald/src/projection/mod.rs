//! CQRS projections fed by the event store: a [`Projection`] folds events into read-model
//! tables inside a transaction the [`ProjectionRunner`] gives it, and the runner writes the
//! projection's checkpoint (the global position of the last event folded in) in that same
//! transaction, many events per transaction. A crash therefore repeats nothing and skips
//! nothing: the read model and its checkpoint commit together or not at all.
//!
//! An event whose `apply` fails **parks** the projection at that event: it stops, records
//! the event and the error in `herald_projection_checkpoints`, and waits for a command —
//! [`retry`](ProjectionControl::retry) (after a fix) or [`skip`](ProjectionControl::skip),
//! which records the skipped event in `herald_projection_skips`. It never skips silently.
//!
//! Lag is reported as metrics after every batch: `herald_projection_lag_events` (events
//! stored after the checkpoint) and `herald_projection_lag_seconds` (now minus the append
//! time of the last event folded in, 0 when caught up).

#[cfg(feature = "postgres")]
mod postgres;
mod runner;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "postgres")]
pub use postgres::PostgresProjections;
pub use runner::{ProjectionRunner, RunnerConfig};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteProjections;

use crate::store::{Position, StoreError, StoredEvent};

/// A boxed future for [`Projection::apply`].
pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A read model built from events.
pub trait Projection<D: ProjectionDb>: Send + Sync + 'static {
    /// Its name (the checkpoint's key, with the version).
    fn name(&self) -> &str;
    /// Its version: a new version is a new read model, built from the first event.
    fn version(&self) -> u32 {
        1
    }
    /// The event types it folds in (others only move the checkpoint); empty: all.
    fn event_types(&self) -> &[&str] {
        &[]
    }
    /// Folds `event` into the read model, writing through `tx`. An error parks the
    /// projection at this event.
    fn apply<'a>(&'a self, event: &'a StoredEvent, tx: &'a mut D::Tx) -> ApplyFuture<'a>;
}

/// Why a projection operation failed (database trouble; an `apply` failure parks instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database refused or could not be reached.
    #[error("projection {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
}

pub(crate) fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> ProjectionError {
    move |source| ProjectionError::Database { operation, source }
}

/// Where a projection stands, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionState {
    /// The last event folded in (or skipped over).
    pub position: Position,
    /// When the last event folded in was appended (ms since the epoch).
    pub last_event_ms: Option<i64>,
    /// Parked at this event, with this error.
    pub parked: Option<Parked>,
    /// A command waiting to be carried out.
    pub command: Option<Command>,
}

/// The event a projection is parked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// Its position.
    pub position: Position,
    /// Its event id.
    pub event_id: String,
    /// What `apply` said.
    pub error: String,
}

/// What a parked projection is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Try the parked event again.
    Retry,
    /// Record the parked event as skipped and go on after it.
    Skip,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Retry => "retry",
            Command::Skip => "skip",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "retry" => Some(Command::Retry),
            "skip" => Some(Command::Skip),
            _ => None,
        }
    }
}

/// The database side of projections: one implementation per backend, so the runner is
/// written once.
pub trait ProjectionDb: Send + Sync + Clone + 'static {
    /// The transaction a projection writes through.
    type Tx: Send;
    /// Opens a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, ProjectionError>> + Send;
    /// Commits it.
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// The stored state of projection `name` at `version` (a fresh one if none).
    fn state(&self, name: &str, version: u32) -> impl Future<Output = Result<ProjectionState, ProjectionError>> + Send;
    /// Moves the checkpoint inside `tx`, with the read model's writes.
    fn save_in(
        tx: &mut Self::Tx,
        name: &str,
        version: u32,
        position: Position,
        last_event_ms: Option<i64>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// Parks the projection at `event` with `error`.
    fn park(
        &self,
        name: &str,
        version: u32,
        event: &StoredEvent,
        error: &str,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// Clears the parked event and the command (after a retry), or records the parked
    /// event as skipped and moves the checkpoint past it (after a skip), in one transaction.
    fn resolve(
        &self,
        name: &str,
        version: u32,
        command: Command,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
    /// Every projection with a checkpoint: name, version and state.
    fn list(&self) -> impl Future<Output = Result<Vec<(String, u32, ProjectionState)>, ProjectionError>> + Send;
    /// Leaves `command` for the projection's runner.
    fn command(
        &self,
        name: &str,
        version: u32,
        command: Command,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
}

/// The SQL both backends run, written with `$n` placeholders (SQLite reads them as `?n`).
pub(crate) mod sql {
    pub(crate) const STATE: &str = "SELECT txid, id, last_event_ms, parked_txid, parked_id, parked_event_id, \
         parked_error, command FROM herald_projection_checkpoints WHERE name = $1 AND version = $2";
    pub(crate) const LIST: &str = "SELECT name, CAST(version AS BIGINT), txid, id, last_event_ms, parked_txid, \
         parked_id, parked_event_id, parked_error, command FROM herald_projection_checkpoints ORDER BY name, version";
    pub(crate) const SAVE: &str = "INSERT INTO herald_projection_checkpoints \
         (name, version, txid, id, last_event_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (name, version) DO UPDATE SET txid = excluded.txid, id = excluded.id, \
         last_event_ms = excluded.last_event_ms, updated_ms = excluded.updated_ms";
    pub(crate) const PARK: &str = "INSERT INTO herald_projection_checkpoints \
         (name, version, parked_txid, parked_id, parked_event_id, parked_error, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO UPDATE SET \
         parked_txid = excluded.parked_txid, parked_id = excluded.parked_id, \
         parked_event_id = excluded.parked_event_id, parked_error = excluded.parked_error, command = NULL, \
         updated_ms = excluded.updated_ms";
    pub(crate) const COMMAND: &str = "UPDATE herald_projection_checkpoints SET command = $3 \
         WHERE name = $1 AND version = $2 AND parked_id IS NOT NULL";
    pub(crate) const RECORD_SKIP: &str = "INSERT INTO herald_projection_skips \
         (name, version, txid, id, event_id, error, skipped_ms) \
         SELECT name, version, parked_txid, parked_id, parked_event_id, parked_error, $3 \
         FROM herald_projection_checkpoints WHERE name = $1 AND version = $2 AND parked_id IS NOT NULL \
         ON CONFLICT DO NOTHING";
    pub(crate) const PAST_SKIPPED: &str = "UPDATE herald_projection_checkpoints SET txid = parked_txid, \
         id = parked_id WHERE name = $1 AND version = $2 AND parked_id IS NOT NULL";
    pub(crate) const UNPARK: &str = "UPDATE herald_projection_checkpoints SET parked_txid = NULL, \
         parked_id = NULL, parked_event_id = NULL, parked_error = NULL, command = NULL \
         WHERE name = $1 AND version = $2";
}

/// A [`sql::STATE`] row: position, last event time, parked position, event id, error, command.
pub(crate) type StateRow =
    (i64, i64, Option<i64>, Option<i64>, Option<i64>, Option<String>, Option<String>, Option<String>);

/// A [`sql::LIST`] row: name and version, then a [`StateRow`].
pub(crate) type ListRow =
    (String, i64, i64, i64, Option<i64>, Option<i64>, Option<i64>, Option<String>, Option<String>, Option<String>);

/// A listed projection.
pub(crate) fn listed(row: ListRow) -> (String, u32, ProjectionState) {
    let (name, version, txid, id, last, parked_txid, parked_id, event_id, error, command) = row;
    let state = state_from(Some((txid, id, last, parked_txid, parked_id, event_id, error, command)));
    (name, u32::try_from(version).unwrap_or(0), state)
}

/// The stored state from a [`sql::STATE`] row.
pub(crate) fn state_from(row: Option<StateRow>) -> ProjectionState {
    let Some((txid, id, last_event_ms, parked_txid, parked_id, event_id, error, command)) = row else {
        return ProjectionState::default();
    };
    let parked = match (parked_txid, parked_id) {
        (Some(txid), Some(id)) => Some(Parked {
            position: Position { txid, id },
            event_id: event_id.unwrap_or_default(),
            error: error.unwrap_or_default(),
        }),
        _ => None,
    };
    ProjectionState {
        position: Position { txid, id },
        last_event_ms,
        parked,
        command: command.as_deref().and_then(Command::parse),
    }
}

/// Commands for a projection's runner, from any process (the CLI, an admin endpoint).
#[derive(Debug, Clone)]
pub struct ProjectionControl<D> {
    db: D,
}

impl<D: ProjectionDb> ProjectionControl<D> {
    /// Control over the projections in `db`.
    pub fn new(db: D) -> Self {
        Self { db }
    }

    /// Where projection `name` at `version` stands.
    pub async fn state(&self, name: &str, version: u32) -> Result<ProjectionState, ProjectionError> {
        self.db.state(name, version).await
    }

    /// Every projection with a checkpoint.
    pub async fn list(&self) -> Result<Vec<(String, u32, ProjectionState)>, ProjectionError> {
        self.db.list().await
    }

    /// Has a parked projection try its event again.
    pub async fn retry(&self, name: &str, version: u32) -> Result<(), ProjectionError> {
        self.db.command(name, version, Command::Retry).await
    }

    /// Has a parked projection skip its event (recorded in `herald_projection_skips`).
    pub async fn skip(&self, name: &str, version: u32) -> Result<(), ProjectionError> {
        self.db.command(name, version, Command::Skip).await
    }
}

/// The [`ProjectionDb`] impl of one backend: the same statements (`sql`), with `$sql`
/// turning each into the backend's placeholder style.
macro_rules! projection_db {
    ($name:ident, $db:ty, $sql:path) => {
        impl ProjectionDb for $name {
            type Tx = sqlx::Transaction<'static, $db>;

            async fn begin(&self) -> Result<Self::Tx, ProjectionError> {
                self.pool.begin().await.map_err(database("begin"))
            }

            async fn commit(tx: Self::Tx) -> Result<(), ProjectionError> {
                tx.commit().await.map_err(database("commit"))
            }

            async fn state(&self, name: &str, version: u32) -> Result<ProjectionState, ProjectionError> {
                let row: Option<super::StateRow> = sqlx::query_as($sql(sql::STATE))
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
                sqlx::query($sql(sql::SAVE))
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
                        sqlx::query($sql(statement))
                            .bind(name)
                            .bind(i64::from(version))
                            .bind(crate::time::now_ms())
                            .execute(&mut *tx)
                            .await
                            .map_err(database("skip the parked event"))?;
                    }
                }
                sqlx::query($sql(sql::UNPARK))
                    .bind(name)
                    .bind(i64::from(version))
                    .execute(&mut *tx)
                    .await
                    .map_err(database("unpark"))?;
                tx.commit().await.map_err(database("commit"))
            }

            async fn list(&self) -> Result<Vec<(String, u32, ProjectionState)>, ProjectionError> {
                let rows: Vec<super::ListRow> = sqlx::query_as($sql(sql::LIST))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database("list projections"))?;
                Ok(rows.into_iter().map(super::listed).collect())
            }

            async fn command(&self, name: &str, version: u32, command: Command) -> Result<(), ProjectionError> {
                sqlx::query($sql(sql::COMMAND))
                    .bind(name)
                    .bind(i64::from(version))
                    .bind(command.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(database("leave a command"))?;
                Ok(())
            }
        }
    };
}
pub(crate) use projection_db;
