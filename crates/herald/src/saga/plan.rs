//! From a saga's decision to the rows that carry it out: plain code that takes `now`. The
//! runner (and the test kit) load the instance, call [`plan`], and write what it returns
//! in one transaction.

use uuid::Uuid;

use super::{Decision, End, Incoming, Saga, SagaError};
use crate::Envelope;
use crate::outbox::Encoded;

/// A stored instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[doc(hidden)]
pub struct Instance {
    pub(crate) id: String,
    /// 1 after the first write; the next write expects it.
    pub(crate) version: i64,
    pub(crate) status: String,
    pub(crate) step: Option<String>,
    /// The state as JSON.
    pub(crate) state: String,
    pub(crate) started_ms: i64,
    /// When it was last written (ms).
    pub(crate) updated_ms: i64,
}

/// What a decision was made on.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub enum Input<'a> {
    Event(&'a Incoming),
    Deadline(&'a str),
}

/// One line of an instance's history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[doc(hidden)]
pub struct HistoryRow {
    /// `in`, `deadline`, `note`, `out`, `undo` (a compensation) or `end`.
    pub(crate) kind: &'static str,
    /// The event type, deadline name, note or end.
    pub(crate) what: String,
    pub(crate) event_id: Option<Uuid>,
}

/// The rows that carry out one decision.
#[derive(Debug)]
#[doc(hidden)]
pub struct Write {
    /// The instance as it will be stored (`version` one past the stored one).
    pub(crate) instance: Instance,
    /// Set when the instance ends.
    pub(crate) ended_ms: Option<i64>,
    pub(crate) history: Vec<HistoryRow>,
    pub(crate) outbox: Vec<Encoded>,
    /// Deadlines to set (name, due ms) and to cancel; an ended instance cancels them all.
    pub(crate) set: Vec<(String, i64)>,
    pub(crate) cancel: Vec<String>,
    pub(crate) cancel_all: bool,
}

/// What to do with an input.
#[derive(Debug)]
#[doc(hidden)]
pub enum Plan {
    /// Write this.
    Write(Box<Write>),
    /// An event for an instance that does not exist and that does not start one (yet:
    /// it may have overtaken the event that starts it).
    NotStarted,
    /// The instance has ended: the input changes nothing.
    Ended,
    /// The saga is not ready for this event yet: retry it later.
    NotYet,
}

pub(crate) const RUNNING: &str = "running";

fn status_of(end: Option<End>) -> &'static str {
    match end {
        None => RUNNING,
        Some(End::Completed) => "completed",
        Some(End::Compensated) => "compensated",
    }
}

/// Plans `input` for the instance `id` (stored as `stored`, if at all) of `saga`, at
/// `now_ms`; outgoing envelopes are at most `max_bytes`.
pub(crate) fn plan<S: Saga>(
    saga: &S,
    id: &str,
    stored: Option<Instance>,
    input: Input<'_>,
    now_ms: i64,
    max_bytes: usize,
) -> Result<Plan, SagaError> {
    let encoding = |problem: String| SagaError::Encoding { saga: saga.name().to_string(), id: id.to_string(), problem };
    let stored = match (stored, input) {
        (Some(stored), _) if stored.status != RUNNING => return Ok(Plan::Ended),
        (Some(stored), _) => stored,
        (None, Input::Event(event)) if saga.starts().contains(&event.event_type.as_str()) => Instance {
            id: id.to_string(),
            version: 0,
            status: RUNNING.to_string(),
            step: None,
            state: serde_json::to_string(&S::State::default()).map_err(|e| encoding(e.to_string()))?,
            started_ms: now_ms,
            updated_ms: now_ms,
        },
        (None, _) => return Ok(Plan::NotStarted),
    };
    let state: S::State = serde_json::from_str(&stored.state).map_err(|e| encoding(format!("stored state: {e}")))?;
    let (decision, received) = match input {
        Input::Event(event) => (
            saga.on_event(&state, event, now_ms),
            HistoryRow { kind: "in", what: event.event_type.clone(), event_id: Some(event.event_id) },
        ),
        Input::Deadline(name) => (
            saga.on_deadline(&state, name, now_ms),
            HistoryRow { kind: "deadline", what: name.to_string(), event_id: None },
        ),
    };
    if decision.not_yet {
        return Ok(Plan::NotYet);
    }
    let causation = match input {
        Input::Event(event) => Some(event.event_id),
        Input::Deadline(_) => None,
    };
    write(saga.name(), stored, decision, received, causation, now_ms, max_bytes).map_err(|e| match e {
        SagaError::Encoding { problem, .. } => encoding(problem),
        other => other,
    })
}

fn write<T: serde::Serialize>(
    saga: &str,
    stored: Instance,
    decision: Decision<T>,
    received: HistoryRow,
    causation: Option<Uuid>,
    now_ms: i64,
    max_bytes: usize,
) -> Result<Plan, SagaError> {
    let encoding = |problem: String| SagaError::Encoding { saga: saga.to_string(), id: stored.id.clone(), problem };
    let mut history = vec![received];
    if let Some(note) = &decision.note {
        history.push(HistoryRow { kind: "note", what: note.clone(), event_id: None });
    }
    let mut outbox = Vec::with_capacity(decision.send.len() + decision.undo.len());
    // Compensations first: a step is undone before what follows from its failure is sent.
    let sends = decision.undo.iter().map(|m| ("undo", m)).chain(decision.send.iter().map(|m| ("out", m)));
    for (kind, message) in sends {
        let envelope = Envelope {
            event_id: Uuid::now_v7(),
            event_type: message.event_type.clone(),
            event_version: format!("{}.0.0", message.version),
            timestamp: crate::time::rfc3339_from_millis(now_ms),
            source: saga.to_string(),
            correlation_id: Some(stored.id.clone()),
            causation_id: causation.map(|id| id.to_string()),
            trace_id: None,
            data: &message.data,
        };
        let row = Encoded::of(
            &envelope,
            &message.event_type,
            message.version,
            &message.topic,
            message.key.clone(),
            max_bytes,
        )?;
        history.push(HistoryRow { kind, what: message.event_type.clone(), event_id: Some(row.event_id) });
        outbox.push(row);
    }
    if let Some(end) = decision.end {
        history.push(HistoryRow { kind: "end", what: status_of(Some(end)).to_string(), event_id: None });
    }
    let state = serde_json::to_string(&decision.state).map_err(|e| encoding(e.to_string()))?;
    let instance = Instance {
        version: stored.version + 1,
        status: status_of(decision.end).to_string(),
        step: decision.step.or(stored.step),
        state,
        updated_ms: now_ms,
        ..stored
    };
    Ok(Plan::Write(Box::new(Write {
        instance,
        ended_ms: decision.end.map(|_| now_ms),
        history,
        outbox,
        set: decision.set,
        cancel: decision.cancel,
        cancel_all: decision.end.is_some(),
    })))
}
