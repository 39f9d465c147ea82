//! [`SagaRunner`]: feeds a saga its events through the consumer runtime and fires its due
//! deadlines, writing each decision in one transaction with the event's inbox claim, the
//! outgoing messages (outbox rows) and the deadlines.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::plan::{Input, Instance, Plan, Write, plan};
use super::{Incoming, Saga, SagaDb, SagaError};
use crate::consumer::{Consumer, ConsumerConfig, Context, HandlerError};
use crate::envelope::ENVELOPE_BYTES_MAX_DEFAULT;

/// Settings of a [`SagaRunner`].
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// How often due deadlines are looked for.
    pub deadline_poll: Duration,
    /// How long a leased deadline is this runner's to fire before another may take it.
    pub deadline_lease: Duration,
    /// Deadlines leased at once.
    pub deadline_batch: i64,
    /// This runner's name in deadline leases (a fresh one by default).
    pub owner: String,
    /// Largest outgoing envelope.
    pub envelope_max_bytes: usize,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            deadline_poll: Duration::from_millis(200),
            deadline_lease: Duration::from_secs(30),
            deadline_batch: 100,
            owner: uuid::Uuid::now_v7().to_string(),
            envelope_max_bytes: ENVELOPE_BYTES_MAX_DEFAULT,
        }
    }
}

impl SagaConfig {
    setters! {
        /// Sets how often due deadlines are looked for.
        deadline_poll: Duration,
        /// Sets the deadline lease.
        deadline_lease: Duration,
        /// Sets the deadlines leased at once.
        deadline_batch: i64,
        /// Sets this runner's lease owner name.
        owner: impl Into<String>,
        /// Sets the largest outgoing envelope.
        envelope_max_bytes: usize,
    }
}

/// What became of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The decision was written.
    Applied,
    /// The event was handled before (inbox).
    Duplicate,
    /// No instance, and the event does not start one (it may have overtaken the event
    /// that does: the consumer retries it).
    NotStarted,
    /// The instance has ended; nothing changes.
    Ended,
    /// The event names no instance.
    NotOurs,
    /// Another writer moved the instance first (the consumer retries it).
    Conflict,
    /// The saga is not ready for the event yet (the consumer retries it).
    NotYet,
}

/// Runs one saga against its database.
#[derive(Debug)]
pub struct SagaRunner<D, S> {
    db: D,
    saga: Arc<S>,
    config: SagaConfig,
    group: String,
}

impl<D: SagaDb, S: Saga> SagaRunner<D, S> {
    /// A runner of `saga` with its instances in `db` (which also holds the inbox and the
    /// outbox its messages go through).
    pub fn new(db: D, saga: S, config: SagaConfig) -> Self {
        let group = format!("herald.saga.{}", saga.name());
        Self { db, saga: Arc::new(saga), config, group }
    }

    /// The consumer group (and inbox group) of the saga: `herald.saga.<name>`.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Consumes the saga's events (`config`'s topics and brokers; the group is the
    /// saga's) and fires its deadlines until `shutdown` resolves.
    pub async fn run(self, config: ConsumerConfig, shutdown: impl Future<Output = ()>) -> Result<(), SagaError>
    where
        D: Clone,
    {
        self.db.define(self.saga.name(), self.saga.steps()).await?;
        let this = Arc::new(self);
        let consumer = Arc::clone(&this).consumer(config);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let (consumed, deadlines, ()) =
            tokio::join!(consumer.run(wait(stopped.clone())), this.run_deadlines(wait(stopped)), async {
                shutdown.await;
                let _ = stop.send(true);
            });
        consumed.map_err(|e| SagaError::Consumer(e.to_string()))?;
        deadlines
    }

    /// The consumer that feeds the saga its events: group `herald.saga.<name>`, a handler
    /// per event type it handles. An event whose instance does not exist yet, or that
    /// lost a race for its instance, is retried (the retry policy of `config`).
    pub fn consumer(self: Arc<Self>, mut config: ConsumerConfig) -> Consumer {
        config.group_id.clone_from(&self.group);
        let types: Vec<&'static str> =
            self.saga.handles().iter().map(|t| &*Box::leak(t.to_string().into_boxed_str())).collect();
        let mut consumer = Consumer::new(config);
        for event_type in types {
            let this = Arc::clone(&self);
            consumer = consumer.on_record(event_type, move |context: Context| {
                let this = Arc::clone(&this);
                async move { this.on_record(event_type, &context).await }
            });
        }
        consumer
    }

    async fn on_record(&self, event_type: &str, context: &Context) -> Result<(), HandlerError> {
        let envelope: crate::Envelope<serde_json::Value> = serde_json::from_slice(context.record().payload())
            .map_err(|e| HandlerError::permanent(format!("reading a {event_type} envelope: {e}")))?;
        let incoming = Incoming {
            event_id: envelope.event_id,
            event_type: event_type.to_string(),
            correlation_id: envelope.correlation_id,
            data: envelope.data,
        };
        match self.handle(&incoming).await.map_err(HandlerError::retryable)? {
            Handled::NotStarted => Err(HandlerError::retryable("its saga instance has not started yet")),
            Handled::Conflict => Err(HandlerError::retryable("its saga instance moved meanwhile")),
            Handled::NotYet => Err(HandlerError::retryable("its saga instance is not ready for it yet")),
            _ => Ok(()),
        }
    }

    /// Handles one event: claims it in the inbox, loads its instance, decides, and writes
    /// the decision with its messages and deadlines, in one transaction.
    pub async fn handle(&self, event: &Incoming) -> Result<Handled, SagaError> {
        let Some(id) = self.saga.instance_of(event) else { return Ok(Handled::NotOurs) };
        let mut tx = self.db.begin().await?;
        let Some(stored) = D::claim_load_in(&mut tx, &self.group, event.event_id, self.saga.name(), &id).await? else {
            D::rollback(tx).await?;
            return Ok(Handled::Duplicate);
        };
        self.carry_out(tx, &id, stored, Input::Event(event)).await
    }

    /// Plans `input` and writes it in `tx` (rolled back if there is nothing to write, but
    /// committed for an ended instance, so the event's claim stands).
    async fn carry_out(
        &self,
        mut tx: D::Tx,
        id: &str,
        stored: Option<Instance>,
        input: Input<'_>,
    ) -> Result<Handled, SagaError> {
        let now = crate::time::now_ms();
        let before = stored.clone();
        match plan(&*self.saga, id, stored, input, now, self.config.envelope_max_bytes)? {
            // An event may come back once its instance exists; a deadline whose instance
            // is gone is dropped for good.
            Plan::NotStarted if matches!(input, Input::Event(_)) => D::rollback(tx).await.map(|()| Handled::NotStarted),
            Plan::NotStarted => D::commit(tx).await.map(|()| Handled::NotStarted),
            Plan::NotYet => D::rollback(tx).await.map(|()| Handled::NotYet),
            Plan::Ended => D::commit(tx).await.map(|()| Handled::Ended),
            Plan::Write(write) => {
                if !D::write_in(&mut tx, self.saga.name(), &write).await? {
                    return D::rollback(tx).await.map(|()| Handled::Conflict);
                }
                D::commit(tx).await?;
                self.observe(before.as_ref(), &write, now);
                Ok(Handled::Applied)
            }
        }
    }

    /// Step and total durations.
    fn observe(&self, before: Option<&Instance>, write: &Write, now: i64) {
        let saga = self.saga.name().to_string();
        let after = &write.instance;
        if let Some(before) = before
            && before.step.is_some()
            && before.step != after.step
        {
            let seconds = (now - before.updated_ms).max(0) as f64 / 1000.0;
            let step = before.step.clone().unwrap_or_default();
            metrics::histogram!("herald_saga_step_seconds", "saga" => saga.clone(), "step" => step).record(seconds);
        }
        if write.ended_ms.is_some() {
            let seconds = (now - after.started_ms).max(0) as f64 / 1000.0;
            let end = after.status.clone();
            metrics::histogram!("herald_saga_duration_seconds", "saga" => saga, "end" => end).record(seconds);
        }
    }

    /// Fires due deadlines until `shutdown` resolves; publishes instance counts by state.
    pub async fn run_deadlines(&self, shutdown: impl Future<Output = ()>) -> Result<(), SagaError> {
        tokio::pin!(shutdown);
        let mut counted = tokio::time::Instant::now() - Duration::from_secs(60);
        loop {
            let fired = self.fire_due().await?;
            if counted.elapsed() >= Duration::from_secs(5) {
                counted = tokio::time::Instant::now();
                self.count().await?;
            }
            if fired > 0 {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(self.config.deadline_poll) => {}
            }
        }
    }

    /// Leases the deadlines due now and fires each in a transaction that deletes it (if
    /// it is still the one leased: not cancelled, set again or taken over meanwhile);
    /// returns how many fired.
    pub async fn fire_due(&self) -> Result<usize, SagaError> {
        let (name, owner) = (self.saga.name(), self.config.owner.as_str());
        let now = crate::time::now_ms();
        let lease = i64::try_from(self.config.deadline_lease.as_millis()).unwrap_or(i64::MAX);
        let due = self.db.lease_due(name, owner, now, now.saturating_add(lease), self.config.deadline_batch).await?;
        let mut fired = 0;
        for (id, deadline, set_version) in &due {
            let mut tx = self.db.begin().await?;
            if !D::take_deadline_in(&mut tx, name, (id, deadline, *set_version), owner).await? {
                D::rollback(tx).await?;
                continue;
            }
            let stored = D::load_in(&mut tx, name, id).await?;
            if self.carry_out(tx, id, stored, Input::Deadline(deadline)).await? == Handled::Applied {
                fired += 1;
            }
        }
        Ok(fired)
    }

    async fn count(&self) -> Result<(), SagaError> {
        for (state, count) in self.db.counts(self.saga.name()).await? {
            metrics::gauge!("herald_saga_instances", "saga" => self.saga.name().to_string(), "state" => state)
                .set(count as f64);
        }
        Ok(())
    }
}
