//! How one message is handled, from the first attempt to the end: routing by the
//! `event-type` header, the inbox check, the handler in its span (panics caught), retries
//! with backoff, the inbox record, and the dead-letter topic. `first_attempt` runs on the
//! dispatch loop up to the handler's first wait; `handle` carries on from there on the
//! message's own task.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use tracing::Instrument as _;
use uuid::Uuid;

use super::context::{CatchPanic, ErasedHandler, HandlerFuture, Ready, catch_poll, start};
use super::dead_letter::{Failure, dead_letter};
use super::partitions::{FastMap, Outcome};
use super::record::Record;
use super::runtime::UnknownTypes;
use super::{ConsumerConfig, Context, HandlerError, RetryDecision};
use crate::Publisher;
use crate::inbox::Inbox;
use crate::registry::Schemas;
use crate::time::now_ms;
use crate::upcast::Upcasters;

/// What the handler tasks share.
pub(crate) struct Shared {
    pub(crate) config: ConsumerConfig,
    pub(crate) group: Arc<str>,
    pub(crate) handlers: FastMap<&'static str, Route>,
    pub(crate) inbox: Option<Arc<dyn Inbox>>,
    pub(crate) publisher: Arc<Publisher>,
    /// Set once the shutdown deadline passes: messages still running on their tasks are
    /// cancelled (their futures dropped) and left uncommitted.
    pub(crate) cancel: tokio::sync::watch::Sender<bool>,
    /// Schemas records are checked against, when the consumer has a registry.
    pub(crate) schemas: Option<Arc<Schemas>>,
}

/// One event type's handler and its metric handles (registered once, not per message).
pub(crate) struct Route {
    handler: ErasedHandler,
    /// The registry, if it has upcasters for this route's event type.
    upcasters: Option<Arc<Upcasters>>,
    consumed: metrics::Counter,
    duplicates: metrics::Counter,
    retries: metrics::Counter,
    handler_seconds: metrics::Histogram,
}

impl Route {
    pub(crate) fn new(event_type: &'static str, handler: ErasedHandler, upcasters: Option<&Arc<Upcasters>>) -> Self {
        Self {
            handler,
            upcasters: upcasters.filter(|u| u.covers(event_type)).cloned(),
            consumed: metrics::counter!("herald_consumed_total", "event_type" => event_type),
            duplicates: metrics::counter!("herald_duplicates_skipped_total", "event_type" => event_type),
            retries: metrics::counter!("herald_retries_total", "event_type" => event_type),
            handler_seconds: metrics::histogram!("herald_handler_seconds", "event_type" => event_type),
        }
    }
}

impl Route {
    /// The record's envelope at the newest version of its event type.
    fn payload<'a>(&self, record: &'a Record) -> Result<Cow<'a, [u8]>, HandlerError> {
        let Some(upcasters) = &self.upcasters else { return Ok(Cow::Borrowed(record.envelope_bytes())) };
        let event_type = record.header("event-type").unwrap_or_default();
        match upcasters.upcast(event_type, record.envelope_bytes()) {
            Ok(Some((upcast, _))) => Ok(Cow::Owned(upcast)),
            Ok(None) => Ok(Cow::Borrowed(record.envelope_bytes())),
            Err(error) => Err(HandlerError::Undecodable(error.to_string())),
        }
    }

    /// Decodes (after upcasting) and prepares the handler's future.
    fn start(&self, record: &Record, context: Context) -> Result<Ready, HandlerError> {
        start(&self.handler, &self.payload(record)?, context)
    }
}

/// How one attempt ended well.
enum Attempt {
    Handled,
    Duplicate,
}

/// How far a message's first attempt got on the dispatch loop (see `first_attempt`).
pub(crate) enum First {
    /// Not begun: the runtime's full path (`handle`) does everything.
    NotStarted,
    /// Not begun, and its key is parked: `handle` dead-letters it.
    Parked,
    /// The runtime's own path panicked before the handler ran (see `Outcome::Abandoned`).
    Abandoned,
    /// Handled or skipped as a duplicate; nothing left to do.
    Finished,
    /// Begun and not finished: `handle` takes it from here.
    Started(Started),
}

/// A first attempt that `handle` continues.
pub(crate) enum Started {
    /// The handler failed, or the envelope could not be decoded: retry or dead-letter.
    Failed(HandlerError),
    /// The handler is waiting for something.
    Waiting(Running),
}

/// A handler future that was polled and is not done.
pub(crate) struct Running {
    future: HandlerFuture,
    span: tracing::Span,
    event_id: Uuid,
    started: Instant,
}

/// Runs the first attempt of a message inline, up to the handler's first wait, when
/// nothing else has to wait first: the event type has a handler and the inbox (if any)
/// answers immediately. The common case, a handler that finishes at once, ends here.
pub(crate) fn first_attempt(record: &Arc<Record>, shared: &Shared) -> First {
    // The handler's own panics are caught inside (dead-lettered); anything else that
    // panics here is user code too (an `ImmediateInbox`), and abandons the message.
    std::panic::catch_unwind(AssertUnwindSafe(|| try_first_attempt(record, shared))).unwrap_or(First::Abandoned)
}

fn try_first_attempt(record: &Arc<Record>, shared: &Shared) -> First {
    let Some(route) = record.header("event-type").and_then(|t| shared.handlers.get(t)) else {
        return First::NotStarted; // unknown types are skipped or dead-lettered by `handle`
    };
    if shared.schemas.is_some() && schema_id(record).is_some() {
        return First::NotStarted; // its schema is checked first, by `handle`
    }
    let inbox = match &shared.inbox {
        Some(inbox) => match inbox.immediate() {
            Some(immediate) => Some(immediate),
            None => return First::NotStarted,
        },
        None => None,
    };
    let Ready { event_id, span, mut future } = match route.start(record, context(record, shared, 1)) {
        Ok(ready) => ready,
        Err(error) => return First::Started(Started::Failed(error)),
    };
    if inbox.is_some_and(|inbox| inbox.contains_now(&shared.group, event_id)) {
        route.duplicates.increment(1);
        return First::Finished;
    }
    let started = Instant::now();
    let polled = {
        let _entered = span.enter();
        // As in `start_ready`: a pending handler is polled again by its task at once.
        catch_poll(&mut future, &mut std::task::Context::from_waker(Waker::noop()))
    };
    match polled {
        Poll::Ready(Ok(())) => {
            route.handler_seconds.record(started.elapsed().as_secs_f64());
            if let Some(inbox) = inbox {
                inbox.record_now(&shared.group, event_id, now_ms());
            }
            route.consumed.increment(1);
            First::Finished
        }
        Poll::Ready(Err(error)) => {
            route.handler_seconds.record(started.elapsed().as_secs_f64());
            First::Started(Started::Failed(error))
        }
        Poll::Pending => First::Started(Started::Waiting(Running { future, span, event_id, started })),
    }
}

/// The context of an attempt. The ids are filled in from the envelope when it is decoded.
fn context(record: &Arc<Record>, shared: &Shared, attempt: u32) -> Context {
    Context {
        group: Arc::clone(&shared.group),
        partition: record.partition(),
        offset: record.offset(),
        record: Arc::clone(record),
        attempt,
        event_id: Uuid::nil(),
        correlation_id: None,
        causation_id: None,
        trace_id: None,
        publisher: Arc::clone(&shared.publisher),
    }
}

/// Runs one message to the end: handled, skipped, or acknowledged by the dead-letter
/// topic, continuing from `first` if its first attempt began on the dispatch loop.
pub(crate) async fn handle(record: Arc<Record>, parked: bool, shared: &Shared, mut first: Option<Started>) -> Outcome {
    let config = &shared.config;
    let named_type = record.header("event-type").unwrap_or_default();
    let dead = |class: &'static str, text: String, attempts: u32| Failure { class, message: text, attempts };
    let producer = shared.publisher.producer();
    let Some((&event_type, route)) = shared.handlers.get_key_value(named_type) else {
        tracing::debug!(event_type = named_type, offset = record.offset(), "no handler for this event type");
        metrics::counter!("herald_unknown_event_types_total", "event_type" => named_type.to_string()).increment(1);
        if config.unknown_types == UnknownTypes::DeadLetter {
            let failure = dead("unknown-type", format!("no handler for event type {named_type:?}"), 0);
            Box::pin(dead_letter(&record, &failure, &shared.group, &config.retry, producer)).await;
            return Outcome::DeadLettered;
        }
        return Outcome::Handled;
    };
    if parked {
        let failure = dead("parked", "an earlier event with this key was dead-lettered".into(), 0);
        Box::pin(dead_letter(&record, &failure, &shared.group, &config.retry, producer)).await;
        return Outcome::DeadLettered;
    }
    let mut attempt = 1;
    loop {
        let result = match first.take() {
            Some(Started::Failed(error)) => Err(error),
            Some(Started::Waiting(running)) => finish_running(running, shared, &route.handler_seconds).await,
            None => match check_schema(&record, shared, event_type).await {
                Err(error) => Err(error),
                Ok(()) => match route.start(&record, context(&record, shared, attempt)) {
                    Ok(ready) => run_once(ready, shared, &route.handler_seconds).await,
                    Err(error) => Err(error),
                },
            },
        };
        let error = match result {
            Ok(Attempt::Handled) => {
                route.consumed.increment(1);
                return Outcome::Handled;
            }
            Ok(Attempt::Duplicate) => {
                route.duplicates.increment(1);
                return Outcome::Handled;
            }
            Err(error) => error,
        };
        match config.retry.decide(attempt, &error, crate::backoff::jitter()) {
            RetryDecision::RetryAfter(delay) => {
                tracing::debug!(event_type, offset = record.offset(), attempt, %error, ?delay, "retrying");
                route.retries.increment(1);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            RetryDecision::DeadLetter => {
                let failure = dead(error.class(), error.to_string(), attempt);
                Box::pin(dead_letter(&record, &failure, &shared.group, &config.retry, producer)).await;
                return Outcome::DeadLettered;
            }
        }
    }
}

/// The schema id a record names: its `schema-id` header, or Confluent's framing.
fn schema_id(record: &Record) -> Option<u32> {
    if let Some(id) = record.header("schema-id").and_then(|v| v.parse().ok()) {
        return Some(id);
    }
    match record.payload() {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Checks a record that names a schema against it: `Undecodable` when it does not follow
/// it (dead-lettered at once), retryable when the registry cannot be asked.
async fn check_schema(record: &Record, shared: &Shared, event_type: &str) -> Result<(), HandlerError> {
    let (Some(schemas), Some(id)) = (&shared.schemas, schema_id(record)) else { return Ok(()) };
    let known = schemas.for_id(id, event_type).await.map_err(|e| HandlerError::Retryable(e.to_string()))?;
    let envelope: serde_json::Value = serde_json::from_slice(record.envelope_bytes())
        .map_err(|e| HandlerError::Undecodable(format!("not JSON: {e}")))?;
    let checked = if known.data_only { &envelope["data"] } else { &envelope };
    known.validate(event_type, checked).map_err(|e| HandlerError::Undecodable(e.to_string()))
}

fn inbox_error(error: crate::inbox::InboxError) -> HandlerError {
    HandlerError::Retryable(error.to_string())
}

/// One attempt: the inbox check, the handler inside its span, the inbox record.
async fn run_once(
    ready: Ready,
    shared: &Shared,
    handler_seconds: &metrics::Histogram,
) -> Result<Attempt, HandlerError> {
    let Ready { event_id, span, future } = ready;
    if let Some(inbox) = &shared.inbox
        && inbox.contains(&shared.group, event_id).await.map_err(inbox_error)?
    {
        return Ok(Attempt::Duplicate);
    }
    finish_running(Running { future, span, event_id, started: Instant::now() }, shared, handler_seconds).await
}

/// The rest of an attempt whose handler has started: its end, then the inbox record.
async fn finish_running(
    running: Running,
    shared: &Shared,
    handler_seconds: &metrics::Histogram,
) -> Result<Attempt, HandlerError> {
    let Running { future, span, event_id, started } = running;
    let result = CatchPanic(future).instrument(span).await;
    handler_seconds.record(started.elapsed().as_secs_f64());
    result?;
    if let Some(inbox) = &shared.inbox {
        inbox.record(&shared.group, event_id, now_ms()).await.map_err(inbox_error)?;
    }
    Ok(Attempt::Handled)
}
