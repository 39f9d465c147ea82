//! [`ProjectionControl`]: reads projection state and leaves commands for runners, from any
//! process (the CLI, an admin endpoint); [`RebuildProgress`]: how far a building version is.

use std::time::Duration;

use super::{Command, ProjectionDb, ProjectionError, ProjectionState};
use crate::outbox::OutboxStore;
use crate::store::Position;

/// Commands for a projection's runner, from any process.
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

    /// Every projection version with a checkpoint.
    pub async fn list(&self) -> Result<Vec<(String, u32, ProjectionState)>, ProjectionError> {
        self.db.list().await
    }

    /// Has a parked projection try its event again.
    pub async fn retry(&self, name: &str, version: u32) -> Result<(), ProjectionError> {
        self.leave(name, version, Command::Retry, "is not parked").await
    }

    /// Has a parked projection skip its event (recorded in `herald_projection_skips`).
    pub async fn skip(&self, name: &str, version: u32) -> Result<(), ProjectionError> {
        self.leave(name, version, Command::Skip, "is not parked").await
    }

    /// Has the version's runner empty its tables and fold every event again, in place.
    /// Refused for a projection that declares no tables (herald cannot empty them).
    pub async fn reset(&self, name: &str, version: u32) -> Result<(), ProjectionError> {
        let state = self.db.state(name, version).await?;
        if state.exists && state.tables.is_empty() {
            let reason = "declares no tables, so herald cannot empty its read model";
            return Err(ProjectionError::Refused { name: name.to_string(), version, reason });
        }
        self.leave(name, version, Command::Reset, "has no checkpoint").await
    }

    async fn leave(
        &self,
        name: &str,
        version: u32,
        command: Command,
        reason: &'static str,
    ) -> Result<(), ProjectionError> {
        if self.db.command(name, version, command).await? {
            return Ok(());
        }
        Err(ProjectionError::Refused { name: name.to_string(), version, reason })
    }

    /// How far `version` has come through `store`'s events, its rate since it started and
    /// the time left at that rate.
    pub async fn progress<S: OutboxStore>(
        &self,
        store: &S,
        name: &str,
        version: u32,
    ) -> Result<RebuildProgress, ProjectionError> {
        let state = self.db.state(name, version).await?;
        let total = store.backlog(Position::default()).await?.rows;
        let behind = store.backlog(state.position).await?.rows;
        let started = state.created_ms.unwrap_or_else(crate::time::now_ms);
        Ok(RebuildProgress::new(total - behind, total, started, crate::time::now_ms()))
    }
}

/// How far a version has folded the store, and when it will be done at its rate so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebuildProgress {
    /// Events folded in (or passed over).
    pub done: i64,
    /// Events stored.
    pub total: i64,
    /// Events per second since the version started.
    pub per_second: f64,
    /// The time left at that rate (none before any progress).
    pub eta: Option<Duration>,
}

impl RebuildProgress {
    /// Progress of `done` of `total` events, started at `started_ms`, as of `now_ms`.
    pub fn new(done: i64, total: i64, started_ms: i64, now_ms: i64) -> Self {
        let elapsed = (now_ms - started_ms).max(1) as f64 / 1000.0;
        let per_second = done.max(0) as f64 / elapsed;
        let left = (total - done).max(0) as f64;
        let eta = (per_second > 0.0).then(|| Duration::from_secs_f64(left / per_second));
        Self { done, total, per_second, eta }
    }

    /// Percent done (100 when there is nothing to fold).
    pub fn percent(&self) -> f64 {
        if self.total <= 0 { 100.0 } else { 100.0 * self.done as f64 / self.total as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::RebuildProgress;

    #[test]
    fn eta_follows_the_rate_so_far() {
        let progress = RebuildProgress::new(250, 1000, 0, 5_000);
        assert_eq!(progress.per_second, 50.0);
        assert_eq!(progress.eta.map(|eta| eta.as_secs()), Some(15));
        assert_eq!(progress.percent(), 25.0);
        assert_eq!(RebuildProgress::new(0, 10, 0, 1000).eta, None);
        assert_eq!(RebuildProgress::new(0, 0, 0, 0).percent(), 100.0);
    }
}
