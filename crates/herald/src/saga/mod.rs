//! Orchestrated sagas (process managers): a [`Saga`] is plain code that takes `now` — on
//! an event, or when a deadline it set comes due, it gets the instance's state and returns
//! a [`Decision`]: the new state, the commands or events to send, deadlines to set or
//! cancel, the step it is at, and whether it ended. It declares the event types that start
//! an instance, how an event finds its instance, and its steps (so the remaining ones can
//! be shown).
//!
//! The [`SagaRunner`] carries decisions out exactly once: the incoming event's inbox claim,
//! the instance's new state (guarded by its version), the outgoing messages (outbox rows,
//! published by a [`Relay`](crate::outbox::Relay)), the history and the deadlines commit in
//! one transaction, so a redelivery or a crash never sends a step twice. Deadlines are
//! rows, fired under a lease by one service instance, in a transaction that deletes them:
//! each fires once, also across restarts; one whose instance ended or was set again is
//! ignored. [`Compensations`] records the undo of each completed step and sends them in
//! reverse order. [`SagaControl`] reads instances with their history, deadlines and
//! remaining steps (`herald sagas list | show`); [`SagaTest`] runs a saga in memory with a
//! manual clock.

mod control;
pub(crate) mod db;
#[doc(hidden)]
pub mod plan;
#[cfg(feature = "postgres")]
mod postgres;
mod runner;
#[cfg(feature = "sqlite")]
mod sqlite;
mod testkit;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use control::{HistoryEntry, PendingDeadline, SagaControl, SagaView};
pub use db::SagaDb;
#[cfg(feature = "postgres")]
pub use postgres::PostgresSagas;
pub use runner::{Handled, SagaConfig, SagaRunner};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteSagas;
pub use testkit::SagaTest;

use crate::Event;

/// A process manager: pure decisions from state, input and `now` (ms since the epoch).
pub trait Saga: Send + Sync + 'static {
    /// The instance's state, stored as JSON.
    type State: Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + Send + Sync;
    /// Its name (instances are keyed by it and their id).
    fn name(&self) -> &str;
    /// Its steps in order, for the view's "remaining steps".
    fn steps(&self) -> &[&str];
    /// Event types that start an instance.
    fn starts(&self) -> &[&str];
    /// Every event type it reacts to (those that start one included).
    fn handles(&self) -> &[&str];
    /// The instance `event` belongs to; by default its correlation id.
    fn instance_of(&self, event: &Incoming) -> Option<String> {
        event.correlation_id.clone()
    }
    /// What to do on `event`, in `state`.
    fn on_event(&self, state: &Self::State, event: &Incoming, now_ms: i64) -> Decision<Self::State>;
    /// What to do when deadline `name` comes due, in `state`.
    fn on_deadline(&self, state: &Self::State, name: &str, now_ms: i64) -> Decision<Self::State>;
}

/// An event as a saga sees it: the envelope's ids and type, its data as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The envelope's event id (the inbox key).
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its correlation id.
    pub correlation_id: Option<String>,
    /// Its data.
    pub data: serde_json::Value,
}

impl Incoming {
    /// An incoming `event` with a fresh id, correlated to `correlation_id` (tests, tools).
    pub fn new<E: Event>(event: &E, correlation_id: Option<&str>) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_id: Uuid::now_v7(),
            event_type: E::TYPE.to_string(),
            correlation_id: correlation_id.map(str::to_string),
            data: serde_json::to_value(event)?,
        })
    }

    /// The data as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// A top-level string field of the data (`orderId`, say), to find the instance.
    pub fn field(&self, name: &str) -> Option<String> {
        self.data.get(name).and_then(|v| v.as_str()).map(str::to_string)
    }

    /// Whether it is of type `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.event_type == E::TYPE
    }
}

/// A message a decision sends: an event of a known type, encoded when the decision is
/// made, put in the outbox when it commits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Its event type.
    pub event_type: String,
    /// Its schema version.
    pub version: u32,
    /// The topic it goes to.
    pub topic: String,
    /// Its record key.
    pub key: Option<String>,
    /// Its data.
    pub data: serde_json::Value,
}

impl Outgoing {
    /// `event`, to its type's topic.
    pub fn of<E: Event>(event: &E) -> Self {
        Self {
            event_type: E::TYPE.to_string(),
            version: E::VERSION,
            topic: E::TOPIC.to_string(),
            key: event.key(),
            data: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// How an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum End {
    /// Every step done.
    Completed,
    /// Undone after a step failed or timed out.
    Compensated,
}

/// What a saga decided: its new state and what follows from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<S> {
    /// The new state.
    pub state: S,
    /// Messages to send, in order.
    pub send: Vec<Outgoing>,
    /// Deadlines to set (or move): name and due time (ms since the epoch).
    pub set: Vec<(String, i64)>,
    /// Deadlines to cancel.
    pub cancel: Vec<String>,
    /// The step the instance is at now, if it moved.
    pub step: Option<String>,
    /// Set when the instance ends.
    pub end: Option<End>,
    /// A line for the history (why, say "payment declined").
    pub note: Option<String>,
    /// Compensations to send (before `send`), shown as such in the history.
    pub undo: Vec<Outgoing>,
    /// The event came before the saga was ready for it (it overtook another): nothing is
    /// written, and the event is retried later.
    pub not_yet: bool,
}

impl<S> Decision<S> {
    /// Moves to `state`, nothing else yet.
    pub fn to(state: S) -> Self {
        Self {
            state,
            send: Vec::new(),
            set: Vec::new(),
            cancel: Vec::new(),
            step: None,
            end: None,
            note: None,
            undo: Vec::new(),
            not_yet: false,
        }
    }

    /// The event came too early (it overtook one the saga waits for first): retry it
    /// later, change nothing now.
    pub fn not_yet(state: S) -> Self {
        Self { not_yet: true, ..Self::to(state) }
    }

    /// Also sends `event`.
    pub fn send<E: Event>(mut self, event: E) -> Self {
        self.send.push(Outgoing::of(&event));
        self
    }

    /// Also sends these compensations (from [`Compensations::unwind`]), in this order.
    pub fn compensate(mut self, messages: impl IntoIterator<Item = Outgoing>) -> Self {
        self.undo.extend(messages);
        self
    }

    /// Sets deadline `name` at `due_ms`.
    pub fn deadline(mut self, name: impl Into<String>, due_ms: i64) -> Self {
        self.set.push((name.into(), due_ms));
        self
    }

    /// Cancels deadline `name`.
    pub fn cancel(mut self, name: impl Into<String>) -> Self {
        self.cancel.push(name.into());
        self
    }

    /// Records that the instance is at `step`.
    pub fn step(mut self, step: impl Into<String>) -> Self {
        self.step = Some(step.into());
        self
    }

    /// Ends the instance.
    pub fn end(mut self, end: End) -> Self {
        self.end = Some(end);
        self
    }

    /// Adds a line to the history.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// The undo of each completed step, kept in the saga's state: [`done`](Self::done) when a
/// step completes, [`unwind`](Self::unwind) when a later one fails or times out, which
/// sends the compensations in reverse order of the steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compensations {
    done: Vec<(String, Outgoing)>,
}

impl Compensations {
    /// Step `step` completed; `undo` reverses it.
    pub fn done<E: Event>(&mut self, step: &str, undo: E) {
        self.done.push((step.to_string(), Outgoing::of(&undo)));
    }

    /// The completed steps, in order.
    pub fn steps(&self) -> Vec<&str> {
        self.done.iter().map(|(step, _)| step.as_str()).collect()
    }

    /// Takes the compensations, last completed step first.
    pub fn unwind(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.done).into_iter().rev().map(|(_, undo)| undo).collect()
    }
}

/// Why a saga operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// The database refused or could not be reached.
    #[error("saga {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// A stored state or message could not be encoded or decoded.
    #[error("saga {saga} instance {id}: {problem}")]
    Encoding {
        /// The saga.
        saga: String,
        /// The instance.
        id: String,
        /// What is wrong.
        problem: String,
    },
    /// An outgoing message could not be put in the outbox.
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    /// The consumer feeding the saga failed.
    #[error("saga consumer: {0}")]
    Consumer(String),
}

pub(crate) fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> SagaError {
    move |source| SagaError::Database { operation, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Released {
        order_id: String,
    }
    crate::event!(Released, type = "inventory.release", version = 1, key = order_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Refunded {
        order_id: String,
    }
    crate::event!(Refunded, type = "payment.refund", version = 1, key = order_id);

    #[test]
    fn compensations_unwind_last_step_first() {
        let mut undo = Compensations::default();
        undo.done("reserve", Released { order_id: "o1".into() });
        undo.done("pay", Refunded { order_id: "o1".into() });
        assert_eq!(undo.steps(), ["reserve", "pay"]);
        let sent: Vec<String> = undo.unwind().into_iter().map(|o| o.event_type).collect();
        assert_eq!(sent, ["payment.refund", "inventory.release"]);
        assert!(undo.unwind().is_empty(), "each compensation is sent once");
    }
}
