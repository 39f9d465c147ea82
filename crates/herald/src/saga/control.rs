//! [`SagaControl`]: where each saga instance stands — state, step, the remaining steps,
//! history (events in, messages out, compensations, deadlines fired) and pending
//! deadlines — for `herald sagas` and admin tools.

use super::{SagaDb, SagaError};

/// One instance as stored, with (from [`SagaControl::show`]) its history and deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaView {
    /// The saga.
    pub saga: String,
    /// The instance id.
    pub id: String,
    /// `running`, `completed` or `compensated`.
    pub status: String,
    /// The step it is at.
    pub step: Option<String>,
    /// Writes so far.
    pub version: i64,
    /// Its state as JSON.
    pub state: String,
    /// When it started, was last written and ended (ms since the epoch).
    pub started_ms: i64,
    /// See `started_ms`.
    pub updated_ms: i64,
    /// See `started_ms`.
    pub ended_ms: Option<i64>,
    /// What happened, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Deadlines not fired yet.
    pub deadlines: Vec<PendingDeadline>,
}

/// One line of an instance's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// `in` (an event), `deadline` (fired), `note`, `out` (a message sent), `undo` (a
    /// compensation sent) or `end`.
    pub kind: String,
    /// The event type, deadline name, note or end.
    pub what: String,
    /// The event's id, for `in`, `out` and `undo`.
    pub event_id: Option<String>,
}

/// A deadline not fired yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDeadline {
    /// Its name.
    pub name: String,
    /// When it is due (ms since the epoch).
    pub due_ms: i64,
    /// The runner holding its lease, if one is firing it.
    pub leased_to: Option<String>,
}

impl SagaView {
    /// The steps after the one it is at, from `steps` (the saga's, in order); none once
    /// it ended.
    pub fn remaining<'a, T: AsRef<str>>(&self, steps: &'a [T]) -> Vec<&'a str> {
        if self.ended_ms.is_some() {
            return Vec::new();
        }
        let at = self.step.as_deref().and_then(|step| steps.iter().position(|s| s.as_ref() == step));
        steps.iter().skip(at.map_or(0, |i| i + 1)).map(AsRef::as_ref).collect()
    }
}

/// Reads saga instances from any process.
#[derive(Debug, Clone)]
pub struct SagaControl<D> {
    db: D,
}

impl<D: SagaDb> SagaControl<D> {
    /// Over the sagas in `db`.
    pub fn new(db: D) -> Self {
        Self { db }
    }

    /// Up to `limit` instances, newest first, of `saga` and `status` (empty: any), without
    /// history.
    pub async fn list(&self, saga: &str, status: &str, limit: i64) -> Result<Vec<SagaView>, SagaError> {
        let rows = self.db.list(saga, status, limit).await?;
        Ok(rows.into_iter().map(|(saga, i, ended_ms)| view(saga, i, ended_ms)).collect())
    }

    /// Instance `id` of `saga` (empty: whichever saga has it), with its history and
    /// pending deadlines.
    pub async fn show(&self, saga: &str, id: &str) -> Result<Option<SagaView>, SagaError> {
        let Some(((saga, instance, ended_ms), history, deadlines)) = self.db.show(saga, id).await? else {
            return Ok(None);
        };
        let mut found = view(saga, instance, ended_ms);
        found.history = history
            .into_iter()
            .map(|(_, _, at_ms, kind, what, event_id)| HistoryEntry { at_ms, kind, what, event_id })
            .collect();
        found.deadlines = deadlines
            .into_iter()
            .map(|(name, due_ms, leased_to)| PendingDeadline { name, due_ms, leased_to })
            .collect();
        Ok(Some(found))
    }

    /// `saga`'s steps, in order, as its runner recorded them.
    pub async fn steps(&self, saga: &str) -> Result<Vec<String>, SagaError> {
        self.db.steps(saga).await
    }

    /// Instances of `saga` by status.
    pub async fn counts(&self, saga: &str) -> Result<Vec<(String, i64)>, SagaError> {
        self.db.counts(saga).await
    }
}

fn view(saga: String, i: super::plan::Instance, ended_ms: Option<i64>) -> SagaView {
    SagaView {
        saga,
        id: i.id,
        status: i.status,
        step: i.step,
        version: i.version,
        state: i.state,
        started_ms: i.started_ms,
        updated_ms: i.updated_ms,
        ended_ms,
        history: Vec::new(),
        deadlines: Vec::new(),
    }
}
