//! CQRS projections fed by the event store: a [`Projection`] folds events into read-model
//! tables inside a transaction the [`ProjectionRunner`] gives it, and the runner writes the
//! projection's checkpoint (the global position of the last event folded in) in that same
//! transaction, many events per transaction. A crash therefore repeats nothing and skips
//! nothing: the read model and its checkpoint commit together or not at all. The runner
//! locks its checkpoint row in each transaction, so two runners of one projection never
//! fold the same batch twice.
//!
//! **Versions and rebuilds.** Each version of a projection owns its tables
//! (`<table>_v<version>`, see [`versioned`]); readers query the view `<table>`, which
//! points at the live version. A runner of a newer version builds its copy from the first
//! event while the old one keeps serving; once it is within
//! [`switch_lag`](RunnerConfig::switch_lag) events of the head it catches up with the live
//! version and takes over in one transaction (retiring the old version, repointing the
//! views), so a reader never sees a partial model. The retired version's runner stops;
//! its tables are dropped after [`retire_grace`](RunnerConfig::retire_grace).
//!
//! An event whose `apply` fails **parks** the projection at that event: it stops, records
//! the event and the error in `herald_projection_checkpoints`, and waits for a command —
//! [`retry`](ProjectionControl::retry) (after a fix) or [`skip`](ProjectionControl::skip),
//! which records the skipped event in `herald_projection_skips`. It never skips silently.
//!
//! Lag is reported as metrics after every batch: `herald_projection_lag_events` (events
//! stored after the checkpoint) and `herald_projection_lag_seconds` (now minus the append
//! time of the last event folded in, 0 when caught up), labelled by projection and version.

mod control;
pub(crate) mod db;
mod kafka;
#[cfg(feature = "postgres")]
mod postgres;
mod runner;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::future::Future;
use std::pin::Pin;

pub use control::{ProjectionControl, RebuildProgress};
pub use db::ProjectionDb;
pub use kafka::projection_consumer;
#[cfg(feature = "postgres")]
pub use postgres::PostgresProjections;
pub use runner::{ProjectionRunner, RunnerConfig};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteProjections;

use crate::store::{Position, StoreError, StoredEvent};

/// A boxed future for [`Projection::apply`].
pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A read-model table a projection owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The name readers query (a view over the live version's table): letters, digits
    /// and `_`, starting with a letter.
    pub name: &'static str,
    /// Its `CREATE TABLE` (and any `CREATE INDEX`), with `{table}` where the versioned
    /// name goes: `CREATE TABLE {table} (id TEXT PRIMARY KEY, ...)`.
    pub create: &'static str,
}

/// The table a projection at `version` writes `table` to: `<table>_v<version>`.
pub fn versioned(table: &str, version: u32) -> String {
    format!("{table}_v{version}")
}

/// A read model built from events.
pub trait Projection<D: ProjectionDb>: Send + Sync + 'static {
    /// Its name (the checkpoint's key, with the version).
    fn name(&self) -> &str;
    /// Its version: a new version is a new read model, built from the first event beside
    /// the live one, which it replaces once caught up.
    fn version(&self) -> u32 {
        1
    }
    /// The event types it folds in (others only move the checkpoint); empty: all.
    fn event_types(&self) -> &[&str] {
        &[]
    }
    /// The tables it writes, created per version by the runner (writes go to
    /// [`versioned`] names). Empty: it manages its own tables, and has no live switch.
    fn tables(&self) -> &[Table] {
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
    /// The store's backlog could not be measured.
    #[error(transparent)]
    Backlog(#[from] crate::outbox::OutboxError),
    /// The database refused or could not be reached.
    #[error("projection {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// A table name herald will not put into SQL.
    #[error("projection table name {0:?}: use letters, digits and _, starting with a letter")]
    TableName(String),
    /// A command that does not apply to this projection version.
    #[error("projection {name} v{version}: {reason}")]
    Refused {
        /// The projection.
        name: String,
        /// Its version.
        version: u32,
        /// Why.
        reason: &'static str,
    },
}

pub(crate) fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> ProjectionError {
    move |source| ProjectionError::Database { operation, source }
}

/// Refuses table names that are not plain identifiers (they go into SQL unquoted).
pub(crate) fn check_tables(tables: &[Table]) -> Result<(), ProjectionError> {
    for table in tables {
        let mut chars = table.name.chars();
        let starts = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !starts || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || table.name.len() > 48 {
            return Err(ProjectionError::TableName(table.name.to_string()));
        }
    }
    Ok(())
}

/// Where a projection version stands, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionState {
    /// Whether the version has a checkpoint at all.
    pub exists: bool,
    /// The last event folded in (or skipped over).
    pub position: Position,
    /// When the last event folded in was appended (ms since the epoch).
    pub last_event_ms: Option<i64>,
    /// Parked at this event, with this error.
    pub parked: Option<Parked>,
    /// A command waiting to be carried out.
    pub command: Option<Command>,
    /// When the version started building (ms since the epoch).
    pub created_ms: Option<i64>,
    /// The tables it owns (their names as readers query them).
    pub tables: Vec<String>,
    /// When a newer version replaced it.
    pub retired_ms: Option<i64>,
    /// The live version of this projection, if any has gone live.
    pub live_version: Option<u32>,
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

/// What a projection's runner is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Try the parked event again.
    Retry,
    /// Record the parked event as skipped and go on after it.
    Skip,
    /// Empty the version's tables and fold from the first event again, in place (its
    /// readers see it rebuild; bump the version for a rebuild without downtime).
    Reset,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Retry => "retry",
            Command::Skip => "skip",
            Command::Reset => "reset",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "retry" => Some(Command::Retry),
            "skip" => Some(Command::Skip),
            "reset" => Some(Command::Reset),
            _ => None,
        }
    }
}
