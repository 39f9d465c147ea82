//! The consumer runtime: an rdkafka group consumer feeding the decision logic of this
//! module's siblings. Messages are routed by the `event-type` header to typed handlers,
//! run in parallel across keys and in order within a key (at most `in_flight_per_partition`
//! per partition), checked against an optional inbox, retried with backoff, dead-lettered
//! to `<topic>.dlq` after the last attempt, and committed only up to the first unfinished
//! offset of each partition. Revoked partitions commit what is finished and forget the
//! rest (the next owner gets it again).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::Instrument as _;
use uuid::Uuid;

use super::context::{ErasedHandler, Ready, erase};
use super::dead_letter::{Failure, dead_letter};
use super::{Context, HandlerError, KeyedScheduler, PartitionProgress, RetryDecision, RetryPolicy};
use crate::envelope::ENVELOPE_BYTES_MAX_DEFAULT;
use crate::inbox::{Inbox, now_ms};
use crate::{Envelope, Event, Publisher, PublisherConfig};

/// What to do with a message whose `event-type` has no handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTypes {
    /// Commit past it and count it (`herald_unknown_event_types_total`).
    Skip,
    /// Send it to the dead-letter topic.
    DeadLetter,
}

/// Settings of a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `group.id`.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Messages of one partition handled at once (different keys only).
    pub in_flight_per_partition: usize,
    /// Messages fetched but not finished, across partitions, before fetching pauses.
    pub buffered_max: usize,
    /// Retries and dead letters.
    pub retry: RetryPolicy,
    /// Messages without a handler.
    pub unknown_types: UnknownTypes,
    /// While a key has a dead letter, dead-letter its later messages too (class `parked`)
    /// instead of handling them, so the key's order survives a redrive. Lasts while this
    /// consumer owns the partition.
    pub park_keys_after_dead_letter: bool,
    /// How often finished offsets are committed.
    pub commit_interval: Duration,
    /// Largest envelope read.
    pub envelope_bytes_max: usize,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
}

impl ConsumerConfig {
    /// Defaults for `group_id` on `brokers`, reading `topics`.
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>, topics: &[&str]) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            in_flight_per_partition: 8,
            buffered_max: 10_000,
            retry: RetryPolicy::default(),
            unknown_types: UnknownTypes::Skip,
            park_keys_after_dead_letter: false,
            commit_interval: Duration::from_millis(100),
            envelope_bytes_max: ENVELOPE_BYTES_MAX_DEFAULT,
            session_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the consumer did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The rdkafka consumer or producer could not be created or subscribed.
    #[error("consumer setup for group {group}: {source}")]
    Setup {
        /// The group.
        group: String,
        /// What librdkafka said.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The publisher for dead letters and follow-up events could not be created.
    #[error("consumer setup for group {group}: {source}")]
    Publisher {
        /// The group.
        group: String,
        /// Why.
        #[source]
        source: Box<crate::PublishError>,
    },
    /// The inbox would forget events that retries may still redeliver.
    #[error(
        "group {group}: the inbox keeps events for {window:?}, shorter than the retry horizon {horizon:?}; \
         lengthen the window or shorten the retry policy"
    )]
    InboxWindow {
        /// The group.
        group: String,
        /// The inbox's dedup window.
        window: Duration,
        /// The longest a message can spend in retries.
        horizon: Duration,
    },
}

/// A group consumer with typed handlers.
pub struct Consumer {
    config: ConsumerConfig,
    handlers: HashMap<&'static str, ErasedHandler>,
    inbox: Option<Arc<dyn Inbox>>,
    publisher: Option<Publisher>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("handlers", &self.handlers.keys())
            .field("inbox", &self.inbox)
            .finish_non_exhaustive()
    }
}

type Slot = (String, i32);

/// What the spawned handler tasks share.
struct Shared {
    config: ConsumerConfig,
    group: Arc<str>,
    handlers: HashMap<&'static str, ErasedHandler>,
    inbox: Option<Arc<dyn Inbox>>,
    publisher: Arc<Publisher>,
}

/// One message in flight.
struct Work {
    message: OwnedMessage,
    /// The partition's assignment epoch when it was fetched.
    epoch: u64,
    /// Its key is parked: dead-letter it without handling.
    parked: bool,
}

/// A finished message.
struct Done {
    slot: Slot,
    offset: i64,
    key: Option<Vec<u8>>,
    epoch: u64,
    dead_lettered: bool,
}

/// Progress per partition, shared with the rebalance callback so a revoke can commit
/// what is finished before the partition goes.
type SharedProgress = Arc<Mutex<HashMap<Slot, PartitionProgress>>>;

fn lock(progress: &SharedProgress) -> MutexGuard<'_, HashMap<Slot, PartitionProgress>> {
    progress.lock().unwrap_or_else(PoisonError::into_inner)
}

/// librdkafka's rebalance hooks (run on the thread that polls, i.e. inside `recv`).
struct Rebalancer {
    progress: SharedProgress,
    revoked: mpsc::UnboundedSender<Vec<Slot>>,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else { return };
        let mut slots = Vec::new();
        let mut list = TopicPartitionList::new();
        {
            let mut progress = lock(&self.progress);
            for element in partitions.elements() {
                let slot = (element.topic().to_string(), element.partition());
                if let Some(offset) = progress.remove(&slot).and_then(|mut p| p.committable()) {
                    let _ = list.add_partition_offset(&slot.0, slot.1, Offset::Offset(offset));
                }
                slots.push(slot);
            }
        }
        if list.count() > 0
            && let Err(error) = consumer.commit(&list, CommitMode::Async)
        {
            tracing::debug!(%error, "commit on revoke failed; the next owner redelivers from the last commit");
        }
        tracing::debug!(partitions = slots.len(), "partitions revoked");
        let _ = self.revoked.send(slots);
    }
}

impl Consumer {
    /// A consumer with no handlers yet.
    pub fn new(config: ConsumerConfig) -> Self {
        Self { config, handlers: HashMap::new(), inbox: None, publisher: None }
    }

    /// Handles events of type `E` (routed by the `event-type` header) with `handler`, an
    /// async function of the typed envelope and a [`Context`].
    pub fn on<E, F, Fut>(mut self, handler: F) -> Self
    where
        E: Event,
        F: Fn(Envelope<E>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handlers.insert(E::TYPE, erase(handler, self.config.envelope_bytes_max));
        self
    }

    /// Skips events the inbox already recorded for this group and records each event after
    /// its handler succeeds.
    pub fn inbox(mut self, inbox: Arc<dyn Inbox>) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// The publisher for dead letters and for [`Context::publish`]; by default one on the
    /// consumer's brokers with the group as client id.
    pub fn publisher(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// Consumes until `shutdown` resolves; then stops fetching, finishes what is in
    /// flight, commits it and leaves the group.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumerError> {
        let config = self.config;
        let group: Arc<str> = Arc::from(config.group_id.as_str());
        if let Some(inbox) = &self.inbox
            && inbox.window() < config.retry.horizon()
        {
            return Err(ConsumerError::InboxWindow {
                group: config.group_id.clone(),
                window: inbox.window(),
                horizon: config.retry.horizon(),
            });
        }
        let setup = |source| ConsumerError::Setup { group: config.group_id.clone(), source: Box::new(source) };
        let progress: SharedProgress = Arc::default();
        let (revoked_tx, mut revoked_rx) = mpsc::unbounded_channel();
        let rebalancer = Rebalancer { progress: Arc::clone(&progress), revoked: revoked_tx };
        let consumer: StreamConsumer<Rebalancer> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout.as_millis().to_string())
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create_with_context(rebalancer)
            .map_err(setup)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(setup)?;
        let publisher = match self.publisher {
            Some(publisher) => publisher,
            None => Publisher::new(PublisherConfig::default().brokers(&config.brokers).client_id(&config.group_id))
                .map_err(|source| ConsumerError::Publisher {
                    group: config.group_id.clone(),
                    source: Box::new(source),
                })?,
        };
        let _pruner = self.inbox.as_ref().map(|inbox| Pruner::start(Arc::clone(inbox)));
        let shared = Arc::new(Shared {
            config,
            group,
            handlers: self.handlers,
            inbox: self.inbox,
            publisher: Arc::new(publisher),
        });
        let config = &shared.config;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut partitions: HashMap<Slot, PartitionState> = HashMap::new();
        let mut epoch = 0u64;
        let mut buffered = 0usize;
        let mut commit_tick = tokio::time::interval(config.commit_interval);
        tokio::pin!(shutdown);
        let mut stopping = false;
        loop {
            tokio::select! {
                () = &mut shutdown, if !stopping => {
                    tracing::debug!(group = %config.group_id, buffered, "stopping: finishing in-flight messages");
                    stopping = true;
                }
                Some(slots) = revoked_rx.recv() => {
                    for slot in slots {
                        if let Some(state) = partitions.remove(&slot) {
                            // Queued messages are dropped; running ones still report (and are ignored).
                            buffered = buffered.saturating_sub(state.scheduler.queued());
                        }
                    }
                }
                received = consumer.recv(), if !stopping && buffered < config.buffered_max => {
                    let message = match received {
                        Ok(message) => message.detach(),
                        Err(error) => {
                            tracing::warn!(group = %config.group_id, %error, "consume error");
                            continue;
                        }
                    };
                    let slot = (message.topic().to_string(), message.partition());
                    let offset = message.offset();
                    lock(&progress).entry(slot.clone()).or_default().received(offset);
                    let state = partitions.entry(slot.clone()).or_insert_with(|| {
                        epoch += 1;
                        PartitionState::new(epoch, config.in_flight_per_partition)
                    });
                    let key = message.key().map(<[u8]>::to_vec);
                    state.scheduler.push(offset, key, message);
                    buffered += 1;
                    state.start_ready(&slot, &shared, &done_tx);
                }
                Some(done) = done_rx.recv() => {
                    buffered = buffered.saturating_sub(1);
                    let Some(state) = partitions.get_mut(&done.slot).filter(|s| s.epoch == done.epoch) else {
                        continue; // from an earlier assignment of this partition
                    };
                    if let Some(p) = lock(&progress).get_mut(&done.slot) {
                        p.finished(done.offset);
                    }
                    state.scheduler.finished(done.key.as_deref());
                    if done.dead_lettered && config.park_keys_after_dead_letter && let Some(key) = done.key {
                        state.parked.insert(key);
                    }
                    state.start_ready(&done.slot, &shared, &done_tx);
                }
                _ = commit_tick.tick() => {
                    commit(&consumer, &progress, CommitMode::Async);
                    metrics::gauge!("herald_in_flight", "group" => config.group_id.clone()).set(buffered as f64);
                    if stopping && buffered == 0 {
                        break;
                    }
                }
            }
        }
        commit(&consumer, &progress, CommitMode::Async);
        // Once more with everything committable so far, then a moment of polling so
        // librdkafka sends it and serves its result (a synchronous commit from inside the
        // async runtime can block forever). Messages that arrive meanwhile are neither
        // handled nor committed: they are redelivered.
        let mut list = TopicPartitionList::new();
        for ((topic, partition), p) in lock(&progress).iter() {
            if let Some(offset) = p.last_committable() {
                let _ = list.add_partition_offset(topic, *partition, Offset::Offset(offset));
            }
        }
        if list.count() > 0
            && let Err(error) = consumer.commit(&list, CommitMode::Async)
        {
            tracing::warn!(group = %config.group_id, %error, "final offset commit failed; the last messages will be redelivered");
        }
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                let _ = consumer.recv().await;
            }
        })
        .await;
        tracing::debug!(group = %config.group_id, "offsets committed; leaving the group");
        // Closing blocks while it leaves the group; keep it off the async threads.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        tracing::debug!(group = %config.group_id, "left the group");
        Ok(())
    }
}

/// One assigned partition's queue and parked keys.
struct PartitionState {
    epoch: u64,
    scheduler: KeyedScheduler<OwnedMessage>,
    parked: HashSet<Vec<u8>>,
}

impl PartitionState {
    fn new(epoch: u64, in_flight: usize) -> Self {
        Self { epoch, scheduler: KeyedScheduler::new(in_flight), parked: HashSet::new() }
    }

    /// Starts every message that may run now.
    fn start_ready(&mut self, slot: &Slot, shared: &Arc<Shared>, done: &mpsc::UnboundedSender<Done>) {
        while let Some(queued) = self.scheduler.start_next() {
            let parked = queued.key.as_ref().is_some_and(|k| self.parked.contains(k));
            let work = Work { message: queued.item, epoch: self.epoch, parked };
            let (shared, done, slot, key) = (Arc::clone(shared), done.clone(), slot.clone(), queued.key);
            tokio::spawn(async move {
                let dead_lettered = handle(&work.message, work.parked, &shared).await;
                let _ = done.send(Done { slot, offset: work.message.offset(), key, epoch: work.epoch, dead_lettered });
            });
        }
    }
}

/// Prunes the inbox now and then, in the background, while the consumer runs.
struct Pruner(tokio::task::JoinHandle<()>);

impl Pruner {
    fn start(inbox: Arc<dyn Inbox>) -> Self {
        let every = (inbox.window() / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match inbox.prune(now_ms()).await {
                    Ok(pruned) => tracing::debug!(pruned, "inbox pruned"),
                    Err(error) => tracing::warn!(%error, "inbox prune failed; retrying later"),
                }
            }
        }))
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
}

/// How one attempt ended well.
enum Outcome {
    Handled,
    Duplicate,
}

/// Runs one message to the end: handled, skipped, or acknowledged by the dead-letter
/// topic. Returns whether it was dead-lettered.
async fn handle(message: &OwnedMessage, parked: bool, shared: &Shared) -> bool {
    let config = &shared.config;
    let named_type = header(message, "event-type").unwrap_or_default();
    let dead = |class: &'static str, text: String, attempts: u32| Failure { class, message: text, attempts };
    let Some((&event_type, handler)) = shared.handlers.get_key_value(named_type) else {
        tracing::debug!(event_type = named_type, offset = message.offset(), "no handler for this event type");
        metrics::counter!("herald_unknown_event_types_total", "event_type" => named_type.to_string()).increment(1);
        if config.unknown_types == UnknownTypes::DeadLetter {
            let failure = dead("unknown-type", format!("no handler for event type {named_type:?}"), 0);
            dead_letter(message, &failure, &shared.group, &config.retry, shared.publisher.producer()).await;
            return true;
        }
        return false;
    };
    if parked {
        let failure = dead("parked", "an earlier event with this key was dead-lettered".into(), 0);
        dead_letter(message, &failure, &shared.group, &config.retry, shared.publisher.producer()).await;
        return true;
    }
    let payload = message.payload().unwrap_or_default();
    let base = Context {
        group: Arc::clone(&shared.group),
        topic: Arc::from(message.topic()),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(Arc::from),
        attempt: 1,
        event_id: Uuid::nil(),
        correlation_id: None,
        causation_id: None,
        trace_id: None,
        publisher: Arc::clone(&shared.publisher),
    };
    let mut attempt = 1;
    loop {
        let context = Context { attempt, ..base.clone() };
        let result = match handler(payload, context) {
            Ok(ready) => run_once(ready, shared, event_type).await,
            Err(error) => Err(error),
        };
        let error = match result {
            Ok(Outcome::Handled) => {
                metrics::counter!("herald_consumed_total", "event_type" => event_type).increment(1);
                return false;
            }
            Ok(Outcome::Duplicate) => {
                metrics::counter!("herald_duplicates_skipped_total", "event_type" => event_type).increment(1);
                return false;
            }
            Err(error) => error,
        };
        let jitter = f64::from(Uuid::now_v7().as_bytes()[15]) / 256.0;
        match config.retry.decide(attempt, &error, jitter) {
            RetryDecision::RetryAfter(delay) => {
                tracing::debug!(event_type, offset = message.offset(), attempt, %error, ?delay, "retrying");
                metrics::counter!("herald_retries_total", "event_type" => event_type).increment(1);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            RetryDecision::DeadLetter => {
                let failure = dead(error.class(), error.to_string(), attempt);
                dead_letter(message, &failure, &shared.group, &config.retry, shared.publisher.producer()).await;
                return true;
            }
        }
    }
}

/// One attempt: the inbox check, the handler inside its span, the inbox record.
async fn run_once(ready: Ready, shared: &Shared, event_type: &'static str) -> Result<Outcome, HandlerError> {
    let Ready { context, future } = ready;
    let event_id = context.event_id.to_string();
    let inbox_error = |error: crate::inbox::InboxError| HandlerError::Retryable(error.to_string());
    if let Some(inbox) = &shared.inbox
        && inbox.contains(&shared.group, &event_id).await.map_err(inbox_error)?
    {
        return Ok(Outcome::Duplicate);
    }
    let span = tracing::info_span!(
        "herald.handle",
        event_type,
        event_id = %context.event_id,
        correlation_id = context.correlation_id.as_deref(),
        causation_id = context.causation_id.as_deref(),
        trace_id = context.trace_id.as_deref(),
        topic = %context.topic,
        partition = context.partition,
        offset = context.offset,
        attempt = context.attempt,
    );
    let started = Instant::now();
    let result = future.instrument(span).await;
    metrics::histogram!("herald_handler_seconds", "event_type" => event_type).record(started.elapsed().as_secs_f64());
    result?;
    if let Some(inbox) = &shared.inbox {
        inbox.record(&shared.group, &event_id, now_ms()).await.map_err(inbox_error)?;
    }
    Ok(Outcome::Handled)
}

/// Commits each partition's finished prefix, if it moved.
fn commit(consumer: &StreamConsumer<Rebalancer>, progress: &SharedProgress, mode: CommitMode) {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), p) in lock(progress).iter_mut() {
        if let Some(offset) = p.committable() {
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(offset));
        }
    }
    if list.count() > 0
        && let Err(error) = consumer.commit(&list, mode)
    {
        tracing::debug!(%error, "offset commit failed (a rebalance moves partitions; they are redelivered)");
    }
}
