//! What a handler receives besides its event ([`Context`]), and how typed handlers are
//! erased so one consumer can route many event types.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use uuid::Uuid;

use super::HandlerError;
use super::record::Record;
use crate::{Envelope, Event, PublishError, Published, Publisher};

/// Where the message came from, which attempt this is, the envelope's ids, and a
/// publisher that carries those ids into the events the handler publishes.
#[derive(Debug, Clone)]
pub struct Context {
    /// The consumer group.
    pub group: Arc<str>,
    /// Where the message came from (see also [`topic`](Self::topic)).
    pub partition: i32,
    /// See `partition`.
    pub offset: i64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The handled event's id (the inbox key).
    pub event_id: Uuid,
    /// Its correlation id, if it had one.
    pub correlation_id: Option<String>,
    /// Its causation id, if it had one.
    pub causation_id: Option<String>,
    /// Its trace id, if it had one.
    pub trace_id: Option<String>,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) record: Arc<Record>,
}

impl Context {
    /// Publishes `event` as a consequence of the handled one: the new envelope's
    /// correlation id is the handled event's (or, if it had none, its event id), its
    /// causation id is the handled event's id, and the trace id carries over.
    pub async fn publish<E: Event>(&self, event: E) -> Result<Published, PublishError> {
        self.publisher.publish_envelope(&self.follow_up(event)).await
    }

    /// An envelope for `event` carrying this context's ids (see [`publish`](Self::publish)),
    /// e.g. to write it to an outbox instead.
    pub fn follow_up<E: Event>(&self, event: E) -> Envelope<E> {
        let mut envelope = Envelope::new(self.publisher.config().client_id.clone(), event);
        envelope.correlation_id = Some(self.correlation_id.clone().unwrap_or_else(|| self.event_id.to_string()));
        envelope.causation_id = Some(self.event_id.to_string());
        envelope.trace_id.clone_from(&self.trace_id);
        envelope
    }

    /// The topic the message came from.
    pub fn topic(&self) -> &str {
        self.record.topic()
    }

    /// The record key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.record.key()
    }

    /// The consumed record: payload, key and headers as they arrived.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The publisher, for events that do not follow from the handled one.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }
}

/// A handler's result future.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

/// Polls a handler's future, turning a panic into [`HandlerError::Panicked`]: one bad
/// message must not unwind through the run loop (stopping the consumer) or kill its task
/// (which would never report, holding its partition's commits and the shutdown).
pub(crate) fn catch_poll(
    future: &mut HandlerFuture,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<(), HandlerError>> {
    std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)))
        .unwrap_or_else(|panic| Poll::Ready(Err(HandlerError::Panicked(panic_message(panic.as_ref())))))
}

/// A handler's future whose panic becomes an error (see [`catch_poll`]).
pub(crate) struct CatchPanic(pub(crate) HandlerFuture);

impl Future for CatchPanic {
    type Output = Result<(), HandlerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        catch_poll(&mut self.get_mut().0, cx)
    }
}

/// Calls an erased handler (decode, then the typed handler up to its future), turning a
/// panic into [`HandlerError::Panicked`].
pub(crate) fn start(handler: &ErasedHandler, payload: &[u8], context: Context) -> Result<Ready, HandlerError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| handler(payload, context)))
        .unwrap_or_else(|panic| Err(HandlerError::Panicked(panic_message(panic.as_ref()))))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_string(),
    }
}

/// A decoded message, ready to run: its event id, the tracing span carrying its ids, and
/// the handler's future, which does nothing until polled (so the runtime can consult the
/// inbox first).
pub(crate) struct Ready {
    pub(crate) event_id: Uuid,
    pub(crate) span: tracing::Span,
    pub(crate) future: HandlerFuture,
}

/// Decodes the payload and prepares the typed handler's future.
pub(crate) type ErasedHandler = Arc<dyn Fn(&[u8], Context) -> Result<Ready, HandlerError> + Send + Sync>;

/// Wraps a typed handler: decode the envelope (at most `envelope_max_bytes`), copy its ids
/// into the context, and hand back the handler's future.
pub(crate) fn erase<E, F, Fut>(handler: F, envelope_max_bytes: usize) -> ErasedHandler
where
    E: Event,
    F: Fn(Envelope<E>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(move |payload: &[u8], mut context: Context| {
        let envelope = Envelope::<E>::from_json(payload, envelope_max_bytes)
            .map_err(|error| HandlerError::Undecodable(error.to_string()))?;
        let span = take_ids(&mut context, &envelope, E::TYPE);
        let event_id = context.event_id;
        let future = Box::pin(handler(envelope, context));
        Ok(Ready { event_id, span, future })
    })
}

/// Wraps a handler of records of `event_type` whatever their data: only the envelope's ids
/// are decoded (into the context); the handler reads the record itself.
pub(crate) fn erase_record<F, Fut>(event_type: &'static str, handler: F, envelope_max_bytes: usize) -> ErasedHandler
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(move |payload: &[u8], mut context: Context| {
        if payload.len() > envelope_max_bytes {
            let error = format!("a {event_type} envelope of {} bytes (max {envelope_max_bytes})", payload.len());
            return Err(HandlerError::Undecodable(error));
        }
        let envelope: Envelope<serde::de::IgnoredAny> = serde_json::from_slice(payload)
            .map_err(|error| HandlerError::Undecodable(format!("reading a {event_type} envelope: {error}")))?;
        let span = take_ids(&mut context, &envelope, event_type);
        let event_id = context.event_id;
        let future = Box::pin(handler(context));
        Ok(Ready { event_id, span, future })
    })
}

/// Copies the envelope's ids into the context; returns the handling span carrying them.
fn take_ids<T>(context: &mut Context, envelope: &Envelope<T>, event_type: &str) -> tracing::Span {
    context.event_id = envelope.event_id;
    context.correlation_id.clone_from(&envelope.correlation_id);
    context.causation_id.clone_from(&envelope.causation_id);
    context.trace_id.clone_from(&envelope.trace_id);
    tracing::info_span!(
        "herald.handle",
        event_type,
        event_id = %context.event_id,
        correlation_id = context.correlation_id.as_deref(),
        causation_id = context.causation_id.as_deref(),
        trace_id = context.trace_id.as_deref(),
        topic = context.topic(),
        partition = context.partition,
        offset = context.offset,
        attempt = context.attempt,
    )
}
