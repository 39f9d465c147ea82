//! The consumer's dispatch state, owned by the run loop: per assigned partition, a keyed
//! scheduler and parked keys; shared with the rebalance callback, each partition's commit
//! progress. It turns received messages into handler runs and finished runs into
//! committable offsets. Handlers that finish without waiting run inline (no task, no
//! channel); the others move to their own task and report back through a channel.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::BuildHasher;

use foldhash::fast::{FixedState, RandomState};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::sync::lock;
use std::task::{Poll, Waker};
use std::time::Instant;

use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use tokio::sync::mpsc;
use tracing::Instrument as _;
use uuid::Uuid;

use super::context::{CatchPanic, ErasedHandler, HandlerFuture, Ready, catch_poll, start};
use super::dead_letter::{Failure, dead_letter};
use super::progress::PartitionProgress;
use super::record::Record;
use super::runtime::UnknownTypes;
use super::scheduler::KeyedScheduler;
use super::{ConsumerConfig, Context, HandlerError, RetryDecision};
use crate::Publisher;
use crate::inbox::Inbox;
use crate::time::now_ms;

/// A partition: its topic (interned, so lookups do not allocate) and number.
pub(crate) type Slot = (Arc<str>, i32);

/// One partition's commit progress: updated by the run loop per message (its own lock,
/// so no map lookup on that path), read by the commit tick and the rebalance callback.
pub(crate) type Progress = Arc<Mutex<PartitionProgress>>;

/// Progress per partition, shared with the rebalance callback so a revoke can commit
/// what is finished before the partition goes.
pub(crate) type SharedProgress = Arc<Mutex<FastMap<Slot, Progress>>>;

/// Hash maps on the per-message path use foldhash: SipHash showed up in profiles.
pub(crate) type FastMap<K, V> = HashMap<K, V, RandomState>;

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
}

/// One event type's handler and its metric handles (registered once, not per message).
pub(crate) struct Route {
    handler: ErasedHandler,
    consumed: metrics::Counter,
    duplicates: metrics::Counter,
    retries: metrics::Counter,
    handler_seconds: metrics::Histogram,
}

impl Route {
    pub(crate) fn new(event_type: &'static str, handler: ErasedHandler) -> Self {
        Self {
            handler,
            consumed: metrics::counter!("herald_consumed_total", "event_type" => event_type),
            duplicates: metrics::counter!("herald_duplicates_skipped_total", "event_type" => event_type),
            retries: metrics::counter!("herald_retries_total", "event_type" => event_type),
            handler_seconds: metrics::histogram!("herald_handler_seconds", "event_type" => event_type),
        }
    }
}

/// A message finished on its own task.
pub(crate) struct Done {
    partition: PartitionId,
    record: Arc<Record>,
    epoch: u64,
    /// How it ended; `None`: the runtime's own path panicked (see `PartitionState::abandon`).
    dead_lettered: Option<bool>,
}

/// Reports a message's end from its task, also when the task panics: tokio drops a
/// panicked task's future, and with it this guard, so the run loop always hears back (a
/// message that never reported would hold its key, its partition's commits and shutdown).
struct Report {
    done: mpsc::UnboundedSender<Done>,
    message: Option<(PartitionId, Arc<Record>, u64)>,
}

impl Report {
    fn send(&mut self, dead_lettered: Option<bool>) {
        if let Some((partition, record, epoch)) = self.message.take() {
            let _ = self.done.send(Done { partition, record, epoch, dead_lettered });
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.send(None);
    }
}

/// A partition as the run loop numbers it: its topic's index among the topics seen, and
/// the partition number (cheap to hash, unlike the topic name).
type PartitionId = (u32, i32);

/// The run loop's state.
pub(crate) struct Dispatcher {
    shared: Arc<Shared>,
    progress: SharedProgress,
    partitions: FastMap<PartitionId, PartitionState>,
    /// Topic names seen, with their index; and the last one, compared before hashing
    /// (messages mostly come in runs of one topic).
    topics: FastMap<Arc<str>, u32>,
    last_topic: Option<(Arc<str>, u32)>,
    epoch: u64,
    /// Messages received and not finished.
    pub(crate) buffered: usize,
    done: mpsc::UnboundedSender<Done>,
}

impl Dispatcher {
    pub(crate) fn new(shared: Arc<Shared>, progress: SharedProgress) -> (Self, mpsc::UnboundedReceiver<Done>) {
        let (done, done_rx) = mpsc::unbounded_channel();
        let dispatcher = Self {
            shared,
            progress,
            partitions: FastMap::default(),
            topics: FastMap::default(),
            last_topic: None,
            epoch: 0,
            buffered: 0,
            done,
        };
        (dispatcher, done_rx)
    }

    /// Whether another message may be received.
    pub(crate) fn has_room(&self) -> bool {
        self.buffered < self.shared.config.buffered_max
    }

    /// The interned name and index of topic `name`.
    fn topic(&mut self, name: &str) -> (Arc<str>, u32) {
        if let Some((topic, index)) = &self.last_topic
            && **topic == *name
        {
            return (Arc::clone(topic), *index);
        }
        let (topic, index) = match self.topics.get_key_value(name) {
            Some((topic, index)) => (Arc::clone(topic), *index),
            None => {
                let (topic, index): (Arc<str>, u32) = (Arc::from(name), self.topics.len() as u32);
                self.topics.insert(Arc::clone(&topic), index);
                (topic, index)
            }
        };
        self.last_topic = Some((Arc::clone(&topic), index));
        (topic, index)
    }

    /// Copies a received message and runs or queues it.
    pub(crate) fn accept(&mut self, message: &BorrowedMessage<'_>) {
        let (topic, topic_index) = self.topic(message.topic());
        let id: PartitionId = (topic_index, message.partition());
        let record = Arc::new(Record::copy(message, topic));
        self.accept_record(id, record);
    }

    /// Runs or queues a copied message of partition `id`.
    fn accept_record(&mut self, id: PartitionId, record: Arc<Record>) {
        let offset = record.offset();
        let state = match self.partitions.get_mut(&id) {
            Some(state) if !state.revoked => state,
            lingering => {
                // Assigned (again): fresh progress under a new epoch. A state revoked while
                // some of its messages still ran lingers with their keys marked running, so
                // the redelivered messages of those keys wait for them.
                self.epoch += 1;
                let progress = Progress::default();
                let slot: Slot = (Arc::from(record.topic()), id.1);
                lock(&self.progress).insert(slot, Arc::clone(&progress));
                match lingering {
                    Some(state) => {
                        (state.epoch, state.progress, state.revoked) = (self.epoch, progress, false);
                        state
                    }
                    None => {
                        let in_flight = self.shared.config.in_flight_per_partition;
                        self.partitions.entry(id).or_insert(PartitionState::new(self.epoch, progress, in_flight))
                    }
                }
            }
        };
        let key = record.key().map(key_hash);
        if state.scheduler.is_idle() && state.parked.is_empty() {
            // Nothing of this partition queued or running, no parked keys: the message may
            // start now, and usually finishes inline, which then costs one progress update
            // and no scheduler work.
            match first_attempt(&record, &self.shared) {
                First::Finished => lock(&state.progress).passed(offset),
                first => {
                    lock(&state.progress).received(offset);
                    state.scheduler.start_now(key);
                    self.buffered += 1;
                    self.buffered -= state.launch(id, record, first, &self.shared, &self.done);
                }
            }
            return;
        }
        lock(&state.progress).received(offset);
        state.scheduler.push(offset, key, record);
        self.buffered += 1;
        self.buffered -= state.start_ready(id, &self.shared, &self.done);
    }

    /// Records a message finished on its own task and starts whatever may run now.
    pub(crate) fn finish(&mut self, done: Done) {
        self.buffered = self.buffered.saturating_sub(1);
        let Some(state) = self.partitions.get_mut(&done.partition) else {
            return; // cannot happen: a state lingers while its messages run
        };
        match done.dead_lettered {
            None => state.abandon(&done.record),
            // From an assignment that is over: its offset is not ours to commit, but its
            // key may run again.
            Some(_) if state.epoch != done.epoch || state.revoked => {
                state.scheduler.finished(done.record.key().map(key_hash).as_ref());
            }
            Some(dead_lettered) => state.finished(&done.record, dead_lettered, &self.shared.config),
        }
        if state.revoked && state.scheduler.running() == 0 {
            self.partitions.remove(&done.partition);
            return;
        }
        if !state.revoked {
            self.buffered -= state.start_ready(done.partition, &self.shared, &self.done);
        }
    }

    /// Forgets revoked partitions: queued messages are dropped (the next owner gets them),
    /// running ones finish and are not committed; until they do, the partition's state
    /// lingers with their keys marked running, in case it is assigned back.
    pub(crate) fn revoke(&mut self, slots: Vec<Slot>) {
        for (topic, partition) in slots {
            let Some(&index) = self.topics.get(&topic) else { continue };
            let id = (index, partition);
            let Some(state) = self.partitions.get_mut(&id) else { continue };
            self.buffered = self.buffered.saturating_sub(state.scheduler.clear_queued());
            if state.scheduler.running() == 0 {
                self.partitions.remove(&id);
            } else {
                state.revoked = true;
                state.parked.clear();
            }
        }
    }
}

/// The scheduler's key: a 64-bit hash of the record key, so running keys are tracked
/// without copying them. Two keys with the same hash merely take turns (order is kept,
/// a little parallelism lost); parking compares the keys themselves.
fn key_hash(key: &[u8]) -> u64 {
    FixedState::with_seed(0).hash_one(key)
}

/// One assigned partition's queue, parked keys and commit progress.
struct PartitionState {
    epoch: u64,
    progress: Progress,
    scheduler: KeyedScheduler<Arc<Record>, u64>,
    parked: HashSet<Vec<u8>>,
    /// Revoked, with messages still running (see `Dispatcher::revoke`).
    revoked: bool,
}

impl PartitionState {
    fn new(epoch: u64, progress: Progress, in_flight: usize) -> Self {
        Self { epoch, progress, scheduler: KeyedScheduler::new(in_flight), parked: HashSet::new(), revoked: false }
    }

    /// Starts every queued message that may run now (see `launch`). Returns how many
    /// finished inline.
    fn start_ready(&mut self, id: PartitionId, shared: &Arc<Shared>, done: &mpsc::UnboundedSender<Done>) -> usize {
        let mut finished_inline = 0;
        while let Some(queued) = self.scheduler.start_next() {
            let record = queued.item;
            let parked = !self.parked.is_empty() && record.key().is_some_and(|k| self.parked.contains(k));
            let first = if parked { First::Parked } else { first_attempt(&record, shared) };
            finished_inline += self.launch(id, record, first, shared, done);
        }
        finished_inline
    }

    /// Carries on with a started message whose first attempt got as far as `first`. Each
    /// message's first attempt runs right here, up to its first wait: one that finishes
    /// without waiting costs no task, no channel round trip and no boxed future of the
    /// runtime's own; one that waits (or fails, or needs the dead-letter topic or a
    /// database inbox) moves to its own task and reports through `done`. Returns 1 if it
    /// finished inline, else 0.
    fn launch(
        &mut self,
        id: PartitionId,
        record: Arc<Record>,
        first: First,
        shared: &Arc<Shared>,
        done: &mpsc::UnboundedSender<Done>,
    ) -> usize {
        let mut handling: Pin<Box<dyn Future<Output = bool> + Send>> = match first {
            First::Finished => {
                self.finished(&record, false, &shared.config);
                return 1;
            }
            First::Abandoned => {
                self.abandon(&record);
                return 1;
            }
            First::NotStarted | First::Parked => {
                let parked = matches!(first, First::Parked);
                let (task_record, task_shared) = (Arc::clone(&record), Arc::clone(shared));
                let mut handling: Pin<Box<dyn Future<Output = bool> + Send>> =
                    Box::pin(async move { handle(task_record, parked, &task_shared, None).await });
                // A no-op waker is enough for this first poll: if the future is pending, the
                // task below polls it again at once and registers its own waker.
                let mut cx = std::task::Context::from_waker(Waker::noop());
                match std::panic::catch_unwind(AssertUnwindSafe(|| handling.as_mut().poll(&mut cx))) {
                    Ok(Poll::Ready(dead_lettered)) => {
                        self.finished(&record, dead_lettered, &shared.config);
                        return 1;
                    }
                    Ok(Poll::Pending) => handling,
                    Err(_) => {
                        self.abandon(&record);
                        return 1;
                    }
                }
            }
            First::Started(started) => {
                let (task_record, task_shared) = (Arc::clone(&record), Arc::clone(shared));
                Box::pin(async move { handle(task_record, false, &task_shared, Some(started)).await })
            }
        };
        let mut report = Report { done: done.clone(), message: Some((id, record, self.epoch)) };
        let mut cancel = shared.cancel.subscribe();
        tokio::spawn(async move {
            let cancelled = async move {
                if cancel.wait_for(|cancelled| *cancelled).await.is_err() {
                    std::future::pending::<()>().await; // the consumer is gone: run to the end
                }
            };
            tokio::select! {
                dead_lettered = &mut handling => report.send(Some(dead_lettered)),
                () = cancelled => {} // past the shutdown deadline: dropped, left uncommitted
            }
        });
        0
    }

    /// A message whose runtime path panicked: not its handler (a handler's panic is
    /// dead-lettered) but, say, a user-supplied inbox. Nothing says whether it took effect,
    /// so its offset stays unfinished, holding the partition's commits there (a restart or
    /// rebalance redelivers it and what follows), while its key is released so the
    /// partition goes on. Logged and counted (`herald_abandoned_total`).
    fn abandon(&mut self, record: &Record) {
        tracing::error!(
            topic = record.topic(),
            partition = record.partition(),
            offset = record.offset(),
            "the consumer's own path panicked on this message (inbox or dead-letter writer); \
             it stays uncommitted and is redelivered after a restart or rebalance"
        );
        metrics::counter!("herald_abandoned_total").increment(1);
        self.scheduler.finished(record.key().map(key_hash).as_ref());
    }

    /// Records a finished message: its offset may now be committed past, its key may run
    /// again (or is parked after a dead letter).
    fn finished(&mut self, record: &Record, dead_lettered: bool, config: &ConsumerConfig) {
        lock(&self.progress).finished(record.offset());
        let key = record.key();
        self.scheduler.finished(key.map(key_hash).as_ref());
        if dead_lettered
            && config.park_keys_after_dead_letter
            && let Some(key) = key
        {
            self.parked.insert(key.to_vec());
        }
    }
}

/// How one attempt ended well.
enum Outcome {
    Handled,
    Duplicate,
}

/// How far a message's first attempt got on the dispatch loop (see `first_attempt`).
enum First {
    /// Not begun: the runtime's full path (`handle`) does everything.
    NotStarted,
    /// Not begun, and its key is parked: `handle` dead-letters it.
    Parked,
    /// The runtime's own path panicked before the handler ran (see `PartitionState::abandon`).
    Abandoned,
    /// Handled or skipped as a duplicate; nothing left to do.
    Finished,
    /// Begun and not finished: `handle` takes it from here.
    Started(Started),
}

/// A first attempt that `handle` continues.
enum Started {
    /// The handler failed, or the envelope could not be decoded: retry or dead-letter.
    Failed(HandlerError),
    /// The handler is waiting for something.
    Waiting(Running),
}

/// A handler future that was polled and is not done.
struct Running {
    future: HandlerFuture,
    span: tracing::Span,
    event_id: Uuid,
    started: Instant,
}

/// Runs the first attempt of a message inline, up to the handler's first wait, when
/// nothing else has to wait first: the event type has a handler and the inbox (if any)
/// answers immediately. The common case, a handler that finishes at once, ends here.
fn first_attempt(record: &Arc<Record>, shared: &Shared) -> First {
    // The handler's own panics are caught inside (dead-lettered); anything else that
    // panics here is user code too (an `ImmediateInbox`), and abandons the message.
    std::panic::catch_unwind(AssertUnwindSafe(|| try_first_attempt(record, shared))).unwrap_or(First::Abandoned)
}

fn try_first_attempt(record: &Arc<Record>, shared: &Shared) -> First {
    let Some(route) = record.header("event-type").and_then(|t| shared.handlers.get(t)) else {
        return First::NotStarted; // unknown types are skipped or dead-lettered by `handle`
    };
    let inbox = match &shared.inbox {
        Some(inbox) => match inbox.immediate() {
            Some(immediate) => Some(immediate),
            None => return First::NotStarted,
        },
        None => None,
    };
    let Ready { event_id, span, mut future } = match start(&route.handler, record.payload(), context(record, shared, 1))
    {
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
/// Returns whether it was dead-lettered.
async fn handle(record: Arc<Record>, parked: bool, shared: &Shared, mut first: Option<Started>) -> bool {
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
            return true;
        }
        return false;
    };
    if parked {
        let failure = dead("parked", "an earlier event with this key was dead-lettered".into(), 0);
        Box::pin(dead_letter(&record, &failure, &shared.group, &config.retry, producer)).await;
        return true;
    }
    let mut attempt = 1;
    loop {
        let result = match first.take() {
            Some(Started::Failed(error)) => Err(error),
            Some(Started::Waiting(running)) => finish_running(running, shared, &route.handler_seconds).await,
            None => match start(&route.handler, record.payload(), context(&record, shared, attempt)) {
                Ok(ready) => run_once(ready, shared, &route.handler_seconds).await,
                Err(error) => Err(error),
            },
        };
        let error = match result {
            Ok(Outcome::Handled) => {
                route.consumed.increment(1);
                return false;
            }
            Ok(Outcome::Duplicate) => {
                route.duplicates.increment(1);
                return false;
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
                return true;
            }
        }
    }
}

fn inbox_error(error: crate::inbox::InboxError) -> HandlerError {
    HandlerError::Retryable(error.to_string())
}

/// One attempt: the inbox check, the handler inside its span, the inbox record.
async fn run_once(
    ready: Ready,
    shared: &Shared,
    handler_seconds: &metrics::Histogram,
) -> Result<Outcome, HandlerError> {
    let Ready { event_id, span, future } = ready;
    if let Some(inbox) = &shared.inbox
        && inbox.contains(&shared.group, event_id).await.map_err(inbox_error)?
    {
        return Ok(Outcome::Duplicate);
    }
    finish_running(Running { future, span, event_id, started: Instant::now() }, shared, handler_seconds).await
}

/// The rest of an attempt whose handler has started: its end, then the inbox record.
async fn finish_running(
    running: Running,
    shared: &Shared,
    handler_seconds: &metrics::Histogram,
) -> Result<Outcome, HandlerError> {
    let Running { future, span, event_id, started } = running;
    let result = CatchPanic(future).instrument(span).await;
    handler_seconds.record(started.elapsed().as_secs_f64());
    result?;
    if let Some(inbox) = &shared.inbox {
        inbox.record(&shared.group, event_id, now_ms()).await.map_err(inbox_error)?;
    }
    Ok(Outcome::Handled)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::consumer::context::erase;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Ping {
        id: String,
    }
    crate::event!(Ping, type = "ping.sent", version = 1, key = id);

    fn record(offset: i64, key: &str) -> Arc<Record> {
        let payload = crate::Envelope::new("test", Ping { id: key.into() }).to_json(1 << 20).expect("json");
        let headers = [(&b"event-type"[..], Some(&b"ping.sent"[..]))];
        let at = (0, offset);
        Arc::new(Record::from_parts(Arc::from("pings"), at, Some(&payload), Some(key.as_bytes()), headers.into_iter()))
    }

    /// A partition revoked while one of its keys still runs, then assigned back: the
    /// redelivered message of that key waits for the old run (one key never runs twice at
    /// once in a consumer), other keys do not, and only the new assignment's offsets count.
    #[tokio::test]
    async fn a_key_still_running_from_a_revoked_assignment_holds_its_redelivery() {
        let calls = Arc::new(AtomicU32::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (c, r) = (Arc::clone(&calls), Arc::clone(&release));
        let handler = erase(
            move |_event: crate::Envelope<Ping>, _ctx| {
                let first = c.fetch_add(1, Ordering::SeqCst) == 0;
                let release = Arc::clone(&r);
                async move {
                    if first {
                        release.notified().await;
                    }
                    Ok(())
                }
            },
            1 << 20,
        );
        let publisher = Publisher::new(crate::PublisherConfig::default().brokers("127.0.0.1:1")).expect("publisher");
        let shared = Arc::new(Shared {
            config: ConsumerConfig::new("127.0.0.1:1", "g", &["pings"]),
            group: Arc::from("g"),
            handlers: [("ping.sent", Route::new("ping.sent", handler))].into_iter().collect(),
            inbox: None,
            publisher: Arc::new(publisher),
            cancel: tokio::sync::watch::channel(false).0,
        });
        let progress = SharedProgress::default();
        let (mut dispatcher, mut done_rx) = Dispatcher::new(shared, Arc::clone(&progress));
        let (_, topic) = dispatcher.topic("pings");
        let (id, slot): (PartitionId, Slot) = ((topic, 0), (Arc::from("pings"), 0));

        dispatcher.accept_record(id, record(10, "k"));
        assert_eq!((calls.load(Ordering::SeqCst), dispatcher.buffered), (1, 1), "k@10 waits on its task");
        lock(&progress).remove(&slot); // what the rebalance callback does
        dispatcher.revoke(vec![slot.clone()]);

        dispatcher.accept_record(id, record(10, "k")); // assigned back: redelivered
        dispatcher.accept_record(id, record(11, "other"));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "another key runs; k's redelivery waits");
        release.notify_one();
        let done = done_rx.recv().await.expect("the first run reports");
        dispatcher.finish(done);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "k's redelivery ran once its first run was done");
        assert_eq!(dispatcher.buffered, 0);
        let partition = Arc::clone(&lock(&progress)[&slot]);
        assert_eq!(lock(&partition).committable(), Some(12), "both offsets of the new assignment");
    }
}
