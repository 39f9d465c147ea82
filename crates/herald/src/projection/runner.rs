//! [`ProjectionRunner`]: reads the store's global order after the projection's checkpoint,
//! a batch at a time, and folds each batch into the read model in one transaction with the
//! checkpoint; parks at a failing event and carries out `retry` and `skip`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Projection, ProjectionDb, ProjectionError, ProjectionState};
use crate::outbox::OutboxStore;
use crate::store::{EventStore, StoredEvent};

/// Settings of a [`ProjectionRunner`].
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events folded in per transaction.
    pub batch: usize,
    /// How often a caught-up runner looks for events appended by other processes (this
    /// process's appends wake it at once), and a parked one for a command.
    pub poll_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self { batch: 100, poll_interval: Duration::from_millis(100) }
    }
}

impl RunnerConfig {
    setters! {
        /// Sets the events folded in per transaction.
        batch: usize,
        /// Sets how often a caught-up or parked runner looks again.
        poll_interval: Duration,
    }
}

/// Feeds one projection from an event store.
#[derive(Debug)]
pub struct ProjectionRunner<S, D, P> {
    store: S,
    db: D,
    projection: Arc<P>,
    config: RunnerConfig,
}

/// How a batch went.
enum Folded {
    /// All of it, checkpoint moved.
    All,
    /// Event `index` failed with the error; those before it were folded in.
    FailedAt(usize, String),
}

impl<S, D, P> ProjectionRunner<S, D, P>
where
    S: EventStore + OutboxStore,
    D: ProjectionDb,
    P: Projection<D>,
{
    /// A runner folding `store`'s events into `projection`, with its read model and
    /// checkpoints in `db`.
    pub fn new(store: S, db: D, projection: P, config: RunnerConfig) -> Self {
        Self { store, db, projection: Arc::new(projection), config }
    }

    /// Runs until `shutdown` resolves. A batch in progress when it does is dropped
    /// uncommitted (its events are folded in by the next run).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ProjectionError> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                step = self.step() => step?,
            }
        }
    }

    /// One round: carry out a command if parked, else fold in the next batch, or wait.
    async fn step(&self) -> Result<(), ProjectionError> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let state = self.db.state(name, version).await?;
        if state.parked.is_some() {
            match state.command {
                Some(command) => self.db.resolve(name, version, command).await?,
                None => tokio::time::sleep(self.config.poll_interval).await,
            }
            return Ok(());
        }
        let appended = self.store.appended();
        let woken = appended.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let events = self.store.read_all(state.position, self.config.batch).await?;
        if events.is_empty() {
            self.report_lag(&state).await;
            let _ = tokio::time::timeout(self.config.poll_interval, woken).await;
            return Ok(());
        }
        if let Folded::FailedAt(index, error) = self.fold(&events, &state).await? {
            // Fold in what came before the failing event, then park at it.
            if index > 0 {
                self.fold(&events[..index], &state).await?;
            }
            tracing::error!(
                projection = name,
                version,
                event_id = %events[index].event_id,
                stream = %events[index].stream_id,
                %error,
                "projection parked at a failing event; retry after a fix, or skip it"
            );
            self.db.park(name, version, &events[index], &error).await?;
        }
        let state = self.db.state(name, version).await?;
        self.report_lag(&state).await;
        Ok(())
    }

    /// Folds `events` into the read model and moves the checkpoint past them, in one
    /// transaction; on the first failing `apply`, nothing of it commits.
    async fn fold(&self, events: &[StoredEvent], state: &ProjectionState) -> Result<Folded, ProjectionError> {
        let mut tx = self.db.begin().await?;
        let types = self.projection.event_types();
        let mut last_event_ms = state.last_event_ms;
        for (index, event) in events.iter().enumerate() {
            if !types.is_empty() && !types.contains(&event.event_type.as_str()) {
                continue;
            }
            if let Err(error) = self.projection.apply(event, &mut tx).await {
                return Ok(Folded::FailedAt(index, error));
            }
            last_event_ms = Some(event.created_ms);
        }
        let Some(last) = events.last() else { return Ok(Folded::All) };
        let (name, version) = (self.projection.name(), self.projection.version());
        D::save_in(&mut tx, name, version, last.position, last_event_ms).await?;
        D::commit(tx).await?;
        Ok(Folded::All)
    }

    async fn report_lag(&self, state: &ProjectionState) {
        let behind = self.store.backlog(state.position).await.map(|b| b.rows).unwrap_or(0);
        let seconds = match (behind, state.last_event_ms) {
            (0, _) | (_, None) => 0.0,
            (_, Some(ms)) => (crate::time::now_ms() - ms).max(0) as f64 / 1000.0,
        };
        let name = self.projection.name().to_string();
        metrics::gauge!("herald_projection_lag_events", "projection" => name.clone()).set(behind as f64);
        metrics::gauge!("herald_projection_lag_seconds", "projection" => name).set(seconds);
    }
}
