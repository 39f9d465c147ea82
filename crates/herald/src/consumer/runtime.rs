//! The consumer runtime: an rdkafka group consumer feeding the decision logic of this
//! module's siblings. Messages are routed by the `event-type` header to typed handlers,
//! run in parallel across keys and in order within a key (at most `in_flight_per_partition`
//! per partition), retried with backoff, dead-lettered to `<topic>.dlq` after the last
//! attempt, and committed only up to the first unfinished offset of each partition.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::{HandlerError, KeyedScheduler, PartitionProgress, RetryDecision, RetryPolicy};
use crate::envelope::{ENVELOPE_BYTES_MAX_DEFAULT, rfc3339_now};
use crate::{Envelope, Event};

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
            commit_interval: Duration::from_millis(100),
            envelope_bytes_max: ENVELOPE_BYTES_MAX_DEFAULT,
            session_timeout: Duration::from_secs(10),
        }
    }
}

/// What a handler learns about the message besides the event.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where the message came from.
    pub topic: String,
    /// See `topic`.
    pub partition: i32,
    /// See `topic`.
    pub offset: i64,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// Why the consumer stopped.
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
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;
type Handler = Arc<dyn Fn(&[u8], Context) -> HandlerFuture + Send + Sync>;

/// A group consumer with typed handlers.
pub struct Consumer {
    config: ConsumerConfig,
    handlers: HashMap<&'static str, Handler>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("config", &self.config).field("handlers", &self.handlers.keys()).finish()
    }
}

/// One message in flight.
struct Work {
    message: OwnedMessage,
}

/// A finished message.
struct Done {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
}

impl Consumer {
    /// A consumer with no handlers yet.
    pub fn new(config: ConsumerConfig) -> Self {
        Self { config, handlers: HashMap::new() }
    }

    /// Handles events of type `E` (routed by the `event-type` header) with `handler`.
    pub fn on<E, F, Fut>(mut self, handler: F) -> Self
    where
        E: Event,
        F: Fn(Envelope<E>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let max = self.config.envelope_bytes_max;
        let erased: Handler =
            Arc::new(move |payload: &[u8], context: Context| match Envelope::<E>::from_json(payload, max) {
                Ok(envelope) => Box::pin(handler(envelope, context)) as HandlerFuture,
                Err(error) => {
                    let error = HandlerError::Undecodable(error.to_string());
                    Box::pin(async move { Err(error) })
                }
            });
        self.handlers.insert(E::TYPE, erased);
        self
    }

    /// Consumes until `shutdown` resolves; then stops fetching, finishes what is in
    /// flight, commits it and leaves the group.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumerError> {
        let config = Arc::new(self.config);
        let setup = |source| ConsumerError::Setup { group: config.group_id.clone(), source: Box::new(source) };
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout.as_millis().to_string())
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create()
            .map_err(setup)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(setup)?;
        let dlq: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(setup)?;
        let handlers = Arc::new(self.handlers);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut schedulers: HashMap<(String, i32), KeyedScheduler<Work>> = HashMap::new();
        let mut progress: HashMap<(String, i32), PartitionProgress> = HashMap::new();
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
                received = consumer.recv(), if !stopping && buffered < config.buffered_max => {
                    let message = match received {
                        Ok(message) => message.detach(),
                        Err(error) => {
                            tracing::warn!(group = %config.group_id, %error, "consume error");
                            continue;
                        }
                    };
                    let slot = (message.topic().to_string(), message.partition());
                    tracing::trace!(topic = %slot.0, partition = slot.1, offset = message.offset(), "received");
                    progress.entry(slot.clone()).or_default().received(message.offset());
                    let key = message.key().map(<[u8]>::to_vec);
                    let offset = message.offset();
                    schedulers
                        .entry(slot.clone())
                        .or_insert_with(|| KeyedScheduler::new(config.in_flight_per_partition))
                        .push(offset, key, Work { message });
                    buffered += 1;
                    start_ready(&slot, &mut schedulers, &handlers, &config, &dlq, &done_tx);
                }
                Some(done) = done_rx.recv() => {
                    buffered = buffered.saturating_sub(1);
                    let slot = (done.topic, done.partition);
                    if let Some(p) = progress.get_mut(&slot) {
                        p.finished(done.offset);
                    }
                    if let Some(s) = schedulers.get_mut(&slot) {
                        s.finished(done.key.as_deref());
                    }
                    start_ready(&slot, &mut schedulers, &handlers, &config, &dlq, &done_tx);
                }
                _ = commit_tick.tick() => {
                    commit(&consumer, &mut progress, CommitMode::Async);
                    if stopping {
                        tracing::trace!(group = %config.group_id, buffered, "stopping");
                    }
                    if stopping && buffered == 0 {
                        break;
                    }
                }
            }
        }
        commit(&consumer, &mut progress, CommitMode::Async);
        // Once more, synchronously, so the last positions are stored before leaving.
        let mut list = TopicPartitionList::new();
        for ((topic, partition), p) in &progress {
            if let Some(offset) = p.last_committable() {
                let _ = list.add_partition_offset(topic, *partition, Offset::Offset(offset));
            }
        }
        // An asynchronous commit, then a moment of polling so librdkafka sends it and serves
        // its result (a synchronous commit from inside the runtime can block forever).
        // Messages that arrive meanwhile are not handled and not committed: redelivered.
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

/// Starts every message of `slot` that may run now.
fn start_ready(
    slot: &(String, i32),
    schedulers: &mut HashMap<(String, i32), KeyedScheduler<Work>>,
    handlers: &Arc<HashMap<&'static str, Handler>>,
    config: &Arc<ConsumerConfig>,
    dlq: &FutureProducer,
    done: &mpsc::UnboundedSender<Done>,
) {
    let Some(scheduler) = schedulers.get_mut(slot) else { return };
    while let Some(queued) = scheduler.start_next() {
        let (handlers, config, dlq, done) = (Arc::clone(handlers), Arc::clone(config), dlq.clone(), done.clone());
        tokio::spawn(async move {
            let message = queued.item.message;
            handle(&message, &handlers, &config, &dlq).await;
            let _ = done.send(Done {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                key: queued.key,
            });
        });
    }
}

fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
}

/// Runs one message to the end: handled, skipped, or acknowledged by the dead-letter topic.
async fn handle(
    message: &OwnedMessage,
    handlers: &HashMap<&'static str, Handler>,
    config: &ConsumerConfig,
    dlq: &FutureProducer,
) {
    let event_type = header(message, "event-type").unwrap_or_default();
    let Some(handler) = handlers.get(event_type) else {
        tracing::debug!(event_type, offset = message.offset(), "no handler for this event type");
        metrics::counter!("herald_unknown_event_types_total", "event_type" => event_type.to_string()).increment(1);
        if config.unknown_types == UnknownTypes::DeadLetter {
            let error = HandlerError::Permanent(format!("no handler for event type {event_type:?}"));
            dead_letter(message, &error, 0, config, dlq).await;
        }
        return;
    };
    let payload = message.payload().unwrap_or_default();
    tracing::trace!(event_type, offset = message.offset(), "handling");
    let mut attempt = 1;
    loop {
        let context = Context {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            attempt,
        };
        let started = std::time::Instant::now();
        let result = handler(payload, context).await;
        metrics::histogram!("herald_handler_seconds", "event_type" => event_type.to_string())
            .record(started.elapsed().as_secs_f64());
        tracing::trace!(event_type, offset = message.offset(), ok = result.is_ok(), "handled");
        let Err(error) = result else {
            metrics::counter!("herald_consumed_total", "event_type" => event_type.to_string()).increment(1);
            return;
        };
        let jitter = f64::from(uuid::Uuid::now_v7().as_bytes()[15]) / 256.0;
        match config.retry.decide(attempt, &error, jitter) {
            RetryDecision::RetryAfter(delay) => {
                metrics::counter!("herald_retries_total", "event_type" => event_type.to_string()).increment(1);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            RetryDecision::DeadLetter => {
                dead_letter(message, &error, attempt, config, dlq).await;
                return;
            }
        }
    }
}

/// Copies the message to `<topic>.dlq` with headers saying why, and returns only once the
/// broker acknowledged it (retrying forever with backoff: the source offset must not be
/// committed before).
async fn dead_letter(
    message: &OwnedMessage,
    error: &HandlerError,
    attempts: u32,
    config: &ConsumerConfig,
    dlq: &FutureProducer,
) {
    let topic = format!("{}.dlq", message.topic());
    let (partition, offset, attempts) =
        (message.partition().to_string(), message.offset().to_string(), attempts.to_string());
    let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
    let failed_at = rfc3339_now();
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter().filter(|h| !h.key.starts_with("dlq-")) {
            headers = headers.insert(Header { key: h.key, value: h.value });
        }
    }
    let message_text = error.to_string();
    for (name, value) in [
        ("dlq-original-topic", message.topic()),
        ("dlq-original-partition", partition.as_str()),
        ("dlq-original-offset", offset.as_str()),
        ("dlq-original-key", key.as_str()),
        ("dlq-error-class", error.class()),
        ("dlq-error-message", message_text.as_str()),
        ("dlq-attempts", attempts.as_str()),
        ("dlq-failed-at", failed_at.as_str()),
        ("dlq-consumer-group", config.group_id.as_str()),
    ] {
        headers = headers.insert(Header { key: name, value: Some(value) });
    }
    let mut delay = config.retry.initial_delay;
    loop {
        let mut record = FutureRecord::to(&topic).headers(headers.clone());
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match dlq.send(record, Duration::from_secs(30)).await {
            Ok(_) => {
                metrics::counter!("herald_dead_lettered_total", "topic" => message.topic().to_string()).increment(1);
                return;
            }
            Err((error, _)) => {
                tracing::error!(%topic, %error, "dead-letter publish failed; retrying before committing past it");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(config.retry.max_delay);
            }
        }
    }
}

/// Commits each partition's finished prefix, if it moved.
fn commit(consumer: &StreamConsumer, progress: &mut HashMap<(String, i32), PartitionProgress>, mode: CommitMode) {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), p) in progress.iter_mut() {
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
