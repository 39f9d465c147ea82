//! [`ProjectionRunner`]: reads the store's global order after the projection's checkpoint,
//! a batch at a time, and folds each batch into the read model in one transaction with the
//! checkpoint; parks at a failing event and carries out commands; builds a new version
//! beside the live one and switches to it once caught up.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::{Command, Projection, ProjectionDb, ProjectionError, ProjectionState};
use crate::outbox::OutboxStore;
use crate::store::{EventStore, Position, StoredEvent};

/// Settings of a [`ProjectionRunner`].
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events folded in per transaction.
    pub batch: usize,
    /// How often a caught-up runner looks for events appended by other processes (this
    /// process's appends wake it at once), and a parked one for a command.
    pub poll_interval: Duration,
    /// A building version switches live once at most this many events are left.
    pub switch_lag: i64,
    /// How long a retired version's tables are kept after the switch (for readers still
    /// on them, and to switch back by hand).
    pub retire_grace: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch: 100,
            poll_interval: Duration::from_millis(100),
            switch_lag: 100,
            retire_grace: Duration::from_secs(600),
        }
    }
}

impl RunnerConfig {
    setters! {
        /// Sets the events folded in per transaction.
        batch: usize,
        /// Sets how often a caught-up or parked runner looks again.
        poll_interval: Duration,
        /// Sets how close to the head a building version switches live.
        switch_lag: i64,
        /// Sets how long a retired version's tables are kept.
        retire_grace: Duration,
    }
}

/// Feeds one projection from an event store.
#[derive(Debug)]
pub struct ProjectionRunner<S, D, P> {
    store: S,
    db: D,
    projection: Arc<P>,
    config: RunnerConfig,
    /// When retired versions were last looked for, progress last logged and the lag last
    /// measured (ms).
    last_sweep_ms: AtomicI64,
    last_progress_ms: AtomicI64,
    last_lag_ms: AtomicI64,
    /// The state after this runner's last clean fold: the next round starts from it
    /// without reading it back (the fold's checkpoint update re-checks it in the database).
    folded: std::sync::Mutex<Option<ProjectionState>>,
}

/// What a runner does next, from its stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A newer version is live, or this one was retired: stop.
    Superseded,
    /// Carry out a command.
    Resolve(Command),
    /// Parked, no command yet.
    Wait,
    /// Fold the next batch.
    Fold,
}

fn next(state: &ProjectionState, version: u32) -> Next {
    if state.retired_ms.is_some() || state.live_version.is_some_and(|live| live > version) {
        return Next::Superseded;
    }
    match (state.command, &state.parked) {
        (Some(Command::Reset), _) => Next::Resolve(Command::Reset),
        (Some(command), Some(_)) => Next::Resolve(command),
        (_, Some(_)) => Next::Wait,
        (_, None) => Next::Fold,
    }
}

/// How a round went.
enum Round {
    /// Folded a batch or carried out a command: go on.
    Busy,
    /// Nothing left to fold.
    CaughtUp,
    /// Parked, waiting for a command.
    Parked,
    /// A newer version is live.
    Superseded,
}

/// How a batch went.
enum Folded {
    /// All of it, checkpoint moved; the append time of the last event applied.
    All(Option<i64>),
    /// Event `index` failed with the error; nothing committed.
    FailedAt(usize, String),
    /// Another runner moved the checkpoint, or the version was retired: nothing committed.
    Raced,
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
        let projection = Arc::new(projection);
        let (last_sweep_ms, last_progress_ms, last_lag_ms) = (AtomicI64::new(0), AtomicI64::new(0), AtomicI64::new(0));
        let folded = std::sync::Mutex::new(None);
        Self { store, db, projection, config, last_sweep_ms, last_progress_ms, last_lag_ms, folded }
    }

    /// Creates the version's tables if new, then runs until `shutdown` resolves or a newer
    /// version takes over. A batch in progress when it stops is dropped uncommitted (its
    /// events are folded in by the next run).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ProjectionError> {
        let (name, version) = (self.projection.name(), self.projection.version());
        self.db.prepare(name, version, self.projection.tables()).await?;
        tokio::pin!(shutdown);
        loop {
            let appended = self.store.appended();
            let woken = appended.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let round = tokio::select! {
                () = &mut shutdown => return Ok(()),
                round = self.step() => round?,
            };
            match round {
                Round::Busy => continue,
                Round::Superseded => {
                    tracing::warn!(
                        projection = name,
                        version,
                        "a newer version of this projection is live; this runner stops"
                    );
                    return Ok(());
                }
                Round::CaughtUp | Round::Parked => {}
            }
            // Caught up: until an append here wakes it, or the poll interval (appends by
            // other processes). Parked: the poll interval, to look for a command.
            let wake = matches!(round, Round::CaughtUp);
            let pause = tokio::time::timeout(self.config.poll_interval, async {
                if wake { woken.await } else { std::future::pending().await }
            });
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                _ = pause => {}
            }
        }
    }

    /// Creates the version's tables if new, then folds until there is nothing left (or it
    /// parks, or a newer version is live), and returns where it stands: for batch jobs,
    /// tests and examples.
    pub async fn catch_up(&self) -> Result<ProjectionState, ProjectionError> {
        let (name, version) = (self.projection.name(), self.projection.version());
        self.db.prepare(name, version, self.projection.tables()).await?;
        while let Round::Busy = self.step().await? {}
        self.db.state(name, version).await
    }

    /// One round: carry out a command, or fold the next batch.
    async fn step(&self) -> Result<Round, ProjectionError> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let cached = crate::sync::lock(&self.folded).take();
        let state = match cached {
            Some(state) => state,
            None => self.db.state(name, version).await?,
        };
        Ok(match next(&state, version) {
            Next::Superseded => Round::Superseded,
            Next::Resolve(command) => {
                self.db.resolve(name, version, command).await?;
                Round::Busy
            }
            Next::Wait => Round::Parked,
            Next::Fold => self.fold_next(state).await?,
        })
    }

    /// Folds the next batch (parking at a failing event), then switches live if this
    /// version is building and close enough.
    async fn fold_next(&self, mut state: ProjectionState) -> Result<Round, ProjectionError> {
        let events = self.store.read_all(state.position, self.config.batch).await?;
        let round = match events.last() {
            None => Round::CaughtUp,
            Some(last) => match self.fold(&events, &state).await? {
                Folded::All(last_event_ms) => {
                    (state.position, state.last_event_ms) = (last.position, last_event_ms);
                    if events.len() == self.config.batch {
                        *crate::sync::lock(&self.folded) = Some(state.clone());
                    }
                    Round::Busy
                }
                Folded::Raced => return Ok(Round::Busy),
                Folded::FailedAt(index, error) => {
                    self.park_at(&events, index, &error, &state).await?;
                    return Ok(Round::Busy);
                }
            },
        };
        // A full batch means more is waiting: measure the lag only near the head, or once
        // a second while far behind (the count costs a scan of what is left).
        let now = crate::time::now_ms();
        let near_head = events.len() < self.config.batch;
        if near_head || now - self.last_lag_ms.load(Ordering::Relaxed) >= 1000 {
            self.last_lag_ms.store(now, Ordering::Relaxed);
            let behind = self.report_lag(&state).await;
            self.after_catch_up(&state, behind).await?;
        }
        Ok(round)
    }

    /// Folds what came before the failing event, then parks at it.
    async fn park_at(
        &self,
        events: &[StoredEvent],
        index: usize,
        error: &str,
        state: &ProjectionState,
    ) -> Result<(), ProjectionError> {
        if index > 0 && !matches!(self.fold(&events[..index], state).await?, Folded::All(_)) {
            return Ok(());
        }
        let (name, version, event) = (self.projection.name(), self.projection.version(), &events[index]);
        tracing::error!(
            projection = name, version, event_id = %event.event_id, stream = %event.stream_id, %error,
            "projection parked at a failing event; retry after a fix, or skip it"
        );
        self.db.park(name, version, event, error).await
    }

    /// Folds `events` into the read model and moves the checkpoint past them, in one
    /// transaction that moves (and so locks) the checkpoint first; on the first failing
    /// `apply`, nothing of it commits.
    async fn fold(&self, events: &[StoredEvent], state: &ProjectionState) -> Result<Folded, ProjectionError> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let Some(last) = events.last() else { return Ok(Folded::All(state.last_event_ms)) };
        let last_event_ms = self.last_handled_ms(events).or(state.last_event_ms);
        let mut tx = self.db.begin().await?;
        if !D::advance_in(&mut tx, name, version, state.position, last.position, last_event_ms).await? {
            return D::rollback(tx).await.map(|()| Folded::Raced);
        }
        if let Err((index, error)) = self.apply_all(&mut tx, events).await {
            return D::rollback(tx).await.map(|()| Folded::FailedAt(index, error));
        }
        D::commit(tx).await?;
        Ok(Folded::All(last_event_ms))
    }

    /// Whether this projection folds `event` (the others only move the checkpoint).
    fn handles(&self, event: &StoredEvent) -> bool {
        let types = self.projection.event_types();
        types.is_empty() || types.contains(&event.event_type.as_str())
    }

    /// The append time of the last of `events` this projection handles.
    fn last_handled_ms(&self, events: &[StoredEvent]) -> Option<i64> {
        events.iter().rev().find(|e| self.handles(e)).map(|e| e.created_ms)
    }

    /// Applies the events this projection handles; the index and error of the first that
    /// fails.
    async fn apply_all(&self, tx: &mut D::Tx, events: &[StoredEvent]) -> Result<(), (usize, String)> {
        for (index, event) in events.iter().enumerate().filter(|(_, e)| self.handles(e)) {
            self.projection.apply(event, tx).await.map_err(|error| (index, error))?;
        }
        Ok(())
    }

    /// A building version close to the head switches live; the live one drops retired
    /// versions past their grace (looked for at most once a second).
    async fn after_catch_up(&self, state: &ProjectionState, behind: i64) -> Result<(), ProjectionError> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let now = crate::time::now_ms();
        if state.live_version != Some(version) {
            self.log_progress(state, behind, now);
            if behind <= self.config.switch_lag {
                self.switch(state).await?;
            }
            return Ok(());
        }
        if now - self.last_sweep_ms.load(Ordering::Relaxed) >= 1000 {
            self.last_sweep_ms.store(now, Ordering::Relaxed);
            let cutoff = now - i64::try_from(self.config.retire_grace.as_millis()).unwrap_or(i64::MAX);
            let dropped = self.db.drop_retired(name, cutoff).await?;
            if dropped > 0 {
                tracing::info!(projection = name, version, dropped, "dropped retired versions' tables");
            }
        }
        Ok(())
    }

    /// In one transaction: retires the live version (locking its checkpoint), folds this
    /// version up to where the live one stands, and points the views here. Leaves things
    /// as they were if anything is off (another runner moved, an event fails: the next
    /// batch parks at it).
    async fn switch(&self, state: &ProjectionState) -> Result<(), ProjectionError> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let mut tx = self.db.begin().await?;
        match D::claim(&mut tx, name, version).await? {
            Some((position, None)) if position == state.position => {}
            _ => return D::rollback(tx).await,
        }
        let target = match state.live_version {
            Some(live) => D::retire_in(&mut tx, name, live).await?.unwrap_or_default(),
            None => Position::default(),
        };
        let (mut position, mut last_event_ms) = (state.position, state.last_event_ms);
        while position < target {
            let events = self.store.read_all(position, self.config.batch).await?;
            let Some(last) = events.last() else { return D::rollback(tx).await };
            if self.apply_all(&mut tx, &events).await.is_err() {
                return D::rollback(tx).await;
            }
            (position, last_event_ms) = (last.position, self.last_handled_ms(&events).or(last_event_ms));
        }
        D::save_in(&mut tx, name, version, position, last_event_ms).await?;
        D::go_live_in(&mut tx, name, version, &state.tables).await?;
        D::commit(tx).await?;
        tracing::info!(projection = name, version, retired = ?state.live_version, "projection version is live");
        Ok(())
    }

    /// While building, logs how far behind the version is, at most every ten seconds.
    fn log_progress(&self, state: &ProjectionState, behind: i64, now: i64) {
        if now - self.last_progress_ms.load(Ordering::Relaxed) < 10_000 {
            return;
        }
        self.last_progress_ms.store(now, Ordering::Relaxed);
        let (name, version) = (self.projection.name(), self.projection.version());
        tracing::info!(projection = name, version, behind, live = ?state.live_version, "building a projection version");
    }

    /// Sets the lag gauges; returns the events behind.
    async fn report_lag(&self, state: &ProjectionState) -> i64 {
        let behind = self.store.backlog(state.position).await.map(|b| b.rows).unwrap_or(0);
        let seconds = match (behind, state.last_event_ms) {
            (0, _) | (_, None) => 0.0,
            (_, Some(ms)) => (crate::time::now_ms() - ms).max(0) as f64 / 1000.0,
        };
        let name = self.projection.name().to_string();
        let version = self.projection.version().to_string();
        let labels = [("projection", name), ("version", version)];
        metrics::gauge!("herald_projection_lag_events", &labels).set(behind as f64);
        metrics::gauge!("herald_projection_lag_seconds", &labels).set(seconds);
        behind
    }
}

#[cfg(test)]
mod tests {
    use super::{Command, Next, next};
    use crate::projection::{Parked, ProjectionState};

    #[test]
    fn what_comes_next() {
        let fresh = ProjectionState { live_version: Some(2), ..Default::default() };
        assert_eq!(next(&fresh, 2), Next::Fold);
        assert_eq!(next(&fresh, 3), Next::Fold, "a newer version builds");
        assert_eq!(next(&fresh, 1), Next::Superseded, "an older one stops");
        let retired = ProjectionState { retired_ms: Some(1), ..fresh.clone() };
        assert_eq!(next(&retired, 2), Next::Superseded);
        let parked = Parked { position: Default::default(), event_id: "e".into(), error: "boom".into() };
        let parked = ProjectionState { parked: Some(parked), ..fresh.clone() };
        assert_eq!(next(&parked, 2), Next::Wait);
        let told = ProjectionState { command: Some(Command::Skip), ..parked };
        assert_eq!(next(&told, 2), Next::Resolve(Command::Skip));
        let stale = ProjectionState { command: Some(Command::Retry), ..fresh.clone() };
        assert_eq!(next(&stale, 2), Next::Fold, "retry without a parked event is moot");
        let reset = ProjectionState { command: Some(Command::Reset), ..fresh };
        assert_eq!(next(&reset, 2), Next::Resolve(Command::Reset));
    }
}
