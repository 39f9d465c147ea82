//! `herald serve --database-url`: the console's view of a service's sagas and
//! projections, read through herald's own stores (the gateway links no database driver).
//! Opening the stores runs herald's migrations, as every command that takes
//! `--database-url` does.

use herald::outbox::OutboxStore;
use herald::projection::{PostgresProjections, ProjectionControl, SqliteProjections};
use herald::saga::{PostgresSagas, SagaControl, SagaView, SqliteSagas};
use herald::store::{PostgresEventStore, SqliteEventStore};
use herald_gateway::workflows::{Pending, ProjectionRow, SagaCount, SagaInstance, SagaTimeline, Workflows};

use crate::database::{Pool, connect};

/// A service's database, opened once.
pub(crate) enum ServiceDb {
    Postgres {
        sagas: SagaControl<PostgresSagas>,
        projections: ProjectionControl<PostgresProjections>,
        events: PostgresEventStore,
        pool: sqlx::PgPool,
    },
    Sqlite {
        sagas: SagaControl<SqliteSagas>,
        projections: ProjectionControl<SqliteProjections>,
        events: SqliteEventStore,
        pool: sqlx::SqlitePool,
    },
}

impl std::fmt::Debug for ServiceDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Postgres { .. } => "ServiceDb(postgres)",
            Self::Sqlite { .. } => "ServiceDb(sqlite)",
        })
    }
}

/// Runs `$body` with the backend's parts, whichever it is.
macro_rules! with_db {
    ($db:expr, |$sagas:ident, $projections:ident, $events:ident| $body:expr) => {
        match $db {
            ServiceDb::Postgres { sagas: $sagas, projections: $projections, events: $events, .. } => $body,
            ServiceDb::Sqlite { sagas: $sagas, projections: $projections, events: $events, .. } => $body,
        }
    };
}

/// The saga names with instances (no store call lists them across sagas).
const SAGA_NAMES: &str = "SELECT DISTINCT saga FROM herald_sagas ORDER BY saga";

impl ServiceDb {
    /// Connects to `url` and opens herald's saga, projection and event stores in it.
    pub(crate) async fn open(url: &str) -> anyhow::Result<Self> {
        Ok(match connect(url).await? {
            Pool::Postgres(pool) => Self::Postgres {
                sagas: SagaControl::new(PostgresSagas::new(pool.clone()).await?),
                projections: ProjectionControl::new(PostgresProjections::new(pool.clone()).await?),
                events: PostgresEventStore::new(pool.clone()).await?,
                pool,
            },
            Pool::Sqlite(pool) => Self::Sqlite {
                sagas: SagaControl::new(SqliteSagas::new(pool.clone()).await?),
                projections: ProjectionControl::new(SqliteProjections::new(pool.clone()).await?),
                events: SqliteEventStore::new(pool.clone()).await?,
                pool,
            },
        })
    }

    async fn saga_names(&self) -> Result<Vec<String>, String> {
        let names = match self {
            Self::Postgres { pool, .. } => sqlx::query_scalar(SAGA_NAMES).fetch_all(pool).await,
            Self::Sqlite { pool, .. } => sqlx::query_scalar(SAGA_NAMES).fetch_all(pool).await,
        };
        names.map_err(|e| e.to_string())
    }
}

fn instance(view: &SagaView) -> SagaInstance {
    SagaInstance {
        saga: view.saga.clone(),
        id: view.id.clone(),
        status: view.status.clone(),
        step: view.step.clone(),
        started_ms: view.started_ms,
        updated_ms: view.updated_ms,
    }
}

impl Workflows for ServiceDb {
    fn saga_counts(&self) -> Pending<'_, Vec<SagaCount>> {
        Box::pin(async move {
            let mut counts = Vec::new();
            for saga in self.saga_names().await? {
                let by_status = with_db!(self, |s, _p, _e| s.counts(&saga).await).map_err(|e| e.to_string())?;
                counts.extend(by_status.into_iter().map(|(status, count)| SagaCount {
                    saga: saga.clone(),
                    status,
                    count,
                }));
            }
            Ok(counts)
        })
    }

    fn sagas<'a>(&'a self, saga: &'a str, status: &'a str, limit: i64) -> Pending<'a, Vec<SagaInstance>> {
        Box::pin(async move {
            let found = with_db!(self, |s, _p, _e| s.list(saga, status, limit).await).map_err(|e| e.to_string())?;
            Ok(found.iter().map(instance).collect())
        })
    }

    fn saga<'a>(&'a self, saga: &'a str, id: &'a str) -> Pending<'a, Option<SagaTimeline>> {
        Box::pin(async move {
            let found = with_db!(self, |s, _p, _e| s.show(saga, id).await).map_err(|e| e.to_string())?;
            Ok(found.map(|view| SagaTimeline {
                instance: instance(&view),
                state: view.state.clone(),
                history: view.history.iter().map(|h| (h.at_ms, h.kind.clone(), h.what.clone())).collect(),
            }))
        })
    }

    fn projections(&self) -> Pending<'_, Vec<ProjectionRow>> {
        Box::pin(async move {
            let all = with_db!(self, |_s, p, _e| p.list().await).map_err(|e| e.to_string())?;
            let mut rows = Vec::new();
            for (name, version, state) in all {
                let backlog = with_db!(self, |_s, _p, e| e.backlog(state.position).await).map_err(|e| e.to_string())?;
                rows.push(ProjectionRow {
                    live: state.live_version == Some(version),
                    lag: Some(backlog.rows),
                    last_event_ms: state.last_event_ms,
                    parked: state.parked.as_ref().map(|p| format!("at event {}: {}", p.event_id, p.error)),
                    command: state.command.map(|c| format!("{c:?}").to_lowercase()),
                    name,
                    version,
                });
            }
            Ok(rows)
        })
    }

    fn rebuild<'a>(&'a self, name: &'a str, version: u32) -> Pending<'a, ()> {
        Box::pin(async move { with_db!(self, |_s, p, _e| p.reset(name, version).await).map_err(|e| e.to_string()) })
    }
}
