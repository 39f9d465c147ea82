//! The consumer runtime: an rdkafka group consumer feeding the decision logic of this
//! module's siblings. Messages are routed by the `event-type` header to typed handlers,
//! run in parallel across keys and in order within a key (at most `in_flight_per_partition`
//! per partition), checked against an optional inbox, retried with backoff, dead-lettered
//! to `<topic>.dlq` after the last attempt, and committed only up to the first unfinished
//! offset of each partition. Revoked partitions commit what is finished and forget the
//! rest (the next owner gets it again).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_core::Stream as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::context::{ErasedHandler, erase};
use super::dispatch::{Dispatcher, SharedProgress, Slot};
use super::handling::{Route, Shared};
use super::partitions::Progress;
use super::progress::PartitionProgress;
use super::{Context, HandlerError, RetryPolicy};
use crate::envelope::ENVELOPE_BYTES_MAX_DEFAULT;
use crate::inbox::Inbox;
use crate::publisher::apply_overrides;
use crate::registry::{RegistrySettings, Schemas};
use crate::sync::lock;
use crate::time::now_ms;
use crate::upcast::Upcasters;
use crate::{Envelope, Event, Publisher, PublisherConfig};

/// Messages taken from librdkafka's queue in one go, without a trip through the select
/// loop (which costs a timer check and waker registrations per message).
const DRAIN_MAX: usize = 256;

/// What to do with a message whose `event-type` has no handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTypes {
    /// Commit past it and count it (`herald_unknown_event_types_total`).
    Skip,
    /// Send it to the dead-letter topic.
    DeadLetter,
}

/// Settings of a [`Consumer`]: [`ConsumerConfig::new`] or [`ConsumerConfig::from_env`],
/// then builder methods. Times are [`Duration`]s; sizes end in their unit.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// `bootstrap.servers` (`KAFKA_BROKERS`).
    pub brokers: String,
    /// `group.id` (`KAFKA_CONSUMER_GROUP_ID`).
    pub group_id: String,
    /// `client.id` (`KAFKA_CLIENT_ID`); the group id when empty. Also the client id and
    /// envelope source of the default publisher (dead letters, [`Context::publish`]).
    pub client_id: String,
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
    /// How long a stop waits for messages in flight to finish; then those still running
    /// are cancelled (their handler futures dropped) and left uncommitted, so the group's
    /// next owner gets them again.
    pub shutdown_grace: Duration,
    /// Largest envelope read.
    pub envelope_max_bytes: usize,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// Further librdkafka settings (`security.protocol`, `sasl.*`, `ssl.*`, ...), applied
    /// last (so they override herald's choices) to the consumer and to the default
    /// publisher it creates for dead letters and follow-up events.
    pub rdkafka: Vec<(String, String)>,
    /// A schema registry: a record that names its schema (a `schema-id` header or
    /// Confluent's framing) is checked against it before its handler runs, and one that
    /// does not follow it is dead-lettered as `undecodable`.
    pub schema_registry: Option<RegistrySettings>,
}

impl ConsumerConfig {
    /// Defaults for `group_id` on `brokers`, reading `topics`.
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>, topics: &[&str]) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            client_id: String::new(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            in_flight_per_partition: 8,
            buffered_max: 10_000,
            retry: RetryPolicy::default(),
            unknown_types: UnknownTypes::Skip,
            park_keys_after_dead_letter: false,
            commit_interval: Duration::from_millis(100),
            shutdown_grace: Duration::from_secs(30),
            envelope_max_bytes: ENVELOPE_BYTES_MAX_DEFAULT,
            session_timeout: Duration::from_secs(10),
            rdkafka: Vec::new(),
            schema_registry: None,
        }
    }

    /// Defaults reading `topics`, with the brokers, group id and client id from
    /// `KAFKA_BROKERS` (else 127.0.0.1:9092), `KAFKA_CONSUMER_GROUP_ID` (else `herald`) and
    /// `KAFKA_CLIENT_ID`.
    pub fn from_env(topics: &[&str]) -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        let mut config =
            Self::new(var("KAFKA_BROKERS", "127.0.0.1:9092"), var("KAFKA_CONSUMER_GROUP_ID", "herald"), topics);
        config.client_id = var("KAFKA_CLIENT_ID", "");
        config
    }

    setters! {
        /// Sets the brokers.
        brokers: impl Into<String>,
        /// Sets the group id.
        group_id: impl Into<String>,
        /// Sets the client id.
        client_id: impl Into<String>,
        /// Sets the messages of one partition handled at once.
        in_flight_per_partition: usize,
        /// Sets the messages fetched but not finished before fetching pauses.
        buffered_max: usize,
        /// Sets the retry policy.
        retry: RetryPolicy,
        /// Sets what happens to messages without a handler.
        unknown_types: UnknownTypes,
        /// Sets whether a key's later messages follow its dead letter.
        park_keys_after_dead_letter: bool,
        /// Sets how often finished offsets are committed.
        commit_interval: Duration,
        /// Sets how long a stop waits for messages in flight.
        shutdown_grace: Duration,
        /// Sets the largest envelope read.
        envelope_max_bytes: usize,
        /// Sets `session.timeout.ms`.
        session_timeout: Duration,
    }

    /// Checks records that name a schema against it in the registry at `url`.
    pub fn schema_registry(mut self, url: impl Into<String>) -> Self {
        self.schema_registry = Some(RegistrySettings::new(url));
        self
    }

    /// Adds a librdkafka setting, applied after herald's own to the consumer and its
    /// default publisher (for example `.rdkafka("security.protocol", "SASL_SSL")`).
    pub fn rdkafka(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.rdkafka.push((name.into(), value.into()));
        self
    }

    /// The client id used: `client_id`, or the group id when that is empty.
    fn effective_client_id(&self) -> &str {
        if self.client_id.is_empty() { &self.group_id } else { &self.client_id }
    }

    /// The publisher a consumer makes when it is given none: the consumer's brokers,
    /// client id and librdkafka overrides.
    fn default_publisher(&self) -> PublisherConfig {
        let mut publisher = PublisherConfig::default().brokers(&self.brokers).client_id(self.effective_client_id());
        publisher.rdkafka = self.rdkafka.clone();
        publisher
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

/// How often a stopping consumer looks whether its in-flight messages are done.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// A group consumer with typed handlers.
pub struct Consumer {
    config: ConsumerConfig,
    handlers: HashMap<&'static str, ErasedHandler>,
    inbox: Option<Arc<dyn Inbox>>,
    publisher: Option<Publisher>,
    upcasters: Option<Arc<Upcasters>>,
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

/// librdkafka's rebalance hooks (run on the thread that polls, i.e. inside `recv`).
struct Rebalancer {
    progress: SharedProgress,
    revoked: mpsc::UnboundedSender<Vec<Slot>>,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else { return };
        let slots: Vec<Slot> = partitions.elements().iter().map(|e| (Arc::from(e.topic()), e.partition())).collect();
        let revoked: Vec<(Slot, Progress)> = {
            let mut progress = lock(&self.progress);
            slots.iter().filter_map(|slot| progress.remove(slot).map(|p| (slot.clone(), p))).collect()
        };
        let list = commit_list(revoked.iter().map(|(slot, p)| (slot, p)), PartitionProgress::committable);
        if let Err(error) = send_commit(consumer, &list) {
            tracing::debug!(%error, "commit on revoke failed; the next owner redelivers from the last commit");
        }
        tracing::debug!(partitions = slots.len(), "partitions revoked");
        let _ = self.revoked.send(slots);
    }
}

impl Consumer {
    /// A consumer with no handlers yet.
    pub fn new(config: ConsumerConfig) -> Self {
        Self { config, handlers: HashMap::new(), inbox: None, publisher: None, upcasters: None }
    }

    /// Handles events of type `E` (routed by the `event-type` header) with `handler`, an
    /// async function of the typed envelope and a [`Context`].
    pub fn on<E, F, Fut>(mut self, handler: F) -> Self
    where
        E: Event,
        F: Fn(Envelope<E>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handlers.insert(E::TYPE, erase(handler, self.config.envelope_max_bytes));
        self
    }

    /// Handles events of `event_type` whatever their data (a projection's, which declares
    /// types by name): `handler` reads the record from its [`Context`]; the envelope's ids
    /// are in the context as for typed handlers.
    pub fn on_record<F, Fut>(mut self, event_type: &'static str, handler: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handlers
            .insert(event_type, super::context::erase_record(event_type, handler, self.config.envelope_max_bytes));
        self
    }

    /// Skips events the inbox already recorded for this group and records each event after
    /// its handler succeeds.
    pub fn inbox(mut self, inbox: Arc<dyn Inbox>) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// Brings old versions of events to the newest before their handlers decode them (the
    /// same registry the event store reads with), so a handler sees one shape only.
    pub fn upcasters(mut self, upcasters: Arc<Upcasters>) -> Self {
        self.upcasters = Some(upcasters);
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
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("client.id", config.effective_client_id())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout.as_millis().to_string())
            .set("partition.assignment.strategy", "cooperative-sticky")
            // librdkafka pauses fetching for this long whenever its local queue is full
            // (default 1 s); a consumer that drains the queue in less time then sits idle.
            // Measured: a 1M-event consume ran at 0.2-0.24M events/s with the default and
            // 0.52-0.6M with 10 ms (benches/runtime.rs).
            .set("fetch.queue.backoff.ms", "10")
            // A subscribed topic created after the consumer started is only found at the
            // next metadata refresh: librdkafka's default is 5 minutes.
            .set("topic.metadata.refresh.interval.ms", "10000");
        apply_overrides(&mut client, &config.rdkafka);
        let consumer = Closing(Some(client.create_with_context(rebalancer).map_err(setup)?));
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(setup)?;
        let publisher = match self.publisher {
            Some(publisher) => publisher,
            None => Publisher::new(config.default_publisher()).map_err(|source| ConsumerError::Publisher {
                group: config.group_id.clone(),
                source: Box::new(source),
            })?,
        };
        let _pruner = self.inbox.as_ref().map(|inbox| Pruner::start(Arc::clone(inbox)));
        let schemas = config.schema_registry.clone().map(|settings| Arc::new(Schemas::new(settings)));
        let shared = Arc::new(Shared {
            config,
            group,
            handlers: self.handlers.into_iter().map(|(t, h)| (t, Route::new(t, h, self.upcasters.as_ref()))).collect(),
            inbox: self.inbox,
            publisher: Arc::new(publisher),
            cancel: tokio::sync::watch::channel(false).0,
            schemas,
        });
        let _cancel_on_drop = CancelOnDrop(Arc::clone(&shared));
        let config = &shared.config;
        let (mut dispatcher, mut done_rx) = Dispatcher::new(Arc::clone(&shared), Arc::clone(&progress));
        let mut commit_tick = tokio::time::interval(config.commit_interval);
        // One stream for the whole run: `recv()` registers and unregisters a waker slot
        // (two lock round trips) per message.
        let mut messages = consumer.stream();
        tokio::pin!(shutdown);
        let mut stopping = false;
        let mut deadline = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = &mut shutdown, if !stopping => {
                    tracing::debug!(group = %config.group_id, buffered = dispatcher.buffered(), "stopping: finishing in-flight messages");
                    stopping = true;
                    deadline = tokio::time::Instant::now() + config.shutdown_grace;
                    // The stop is checked on this tick: no slower than STOP_CHECK, whatever
                    // the commit interval (an hour's would hold the stop for an hour).
                    commit_tick = tokio::time::interval(config.commit_interval.min(STOP_CHECK));
                }
                Some(slots) = revoked_rx.recv() => dispatcher.revoke(slots),
                received = std::future::poll_fn(|cx| std::pin::Pin::new(&mut messages).poll_next(cx)), if !stopping && dispatcher.has_room() => {
                    // A revoke runs inside a stream poll; apply it before accepting anything
                    // that poll returned, so no message lands in a revoked partition's queue.
                    apply_revokes(&mut dispatcher, &mut revoked_rx);
                    match received {
                        Some(Ok(message)) => dispatcher.accept(&message),
                        Some(Err(error)) => tracing::warn!(group = %config.group_id, %error, "consume error"),
                        None => {} // the stream never ends
                    }
                    // Take what librdkafka already holds before going round the loop again.
                    let mut cx = std::task::Context::from_waker(Waker::noop());
                    for _ in 0..DRAIN_MAX {
                        if !dispatcher.has_room() {
                            break;
                        }
                        let polled = std::pin::Pin::new(&mut messages).poll_next(&mut cx);
                        apply_revokes(&mut dispatcher, &mut revoked_rx);
                        match polled {
                            Poll::Ready(Some(Ok(message))) => dispatcher.accept(&message),
                            Poll::Ready(Some(Err(error))) => tracing::warn!(group = %config.group_id, %error, "consume error"),
                            Poll::Ready(None) | Poll::Pending => break,
                        }
                    }
                }
                Some(done) = done_rx.recv() => {
                    // A revoke from a stream poll earlier in this round (one that returned
                    // no message) must land first, or the finished message's partition,
                    // no longer ours, would start its next queued message.
                    apply_revokes(&mut dispatcher, &mut revoked_rx);
                    dispatcher.finish(done);
                }
                _ = commit_tick.tick() => {
                    commit(&consumer, &progress);
                    metrics::gauge!("herald_in_flight", "group" => config.group_id.clone()).set(dispatcher.buffered() as f64);
                    if stopping && dispatcher.buffered() == 0 {
                        break;
                    }
                    if stopping && tokio::time::Instant::now() >= deadline {
                        tracing::warn!(
                            group = %config.group_id,
                            in_flight = dispatcher.buffered(),
                            grace = ?config.shutdown_grace,
                            "shutdown grace over: cancelling the messages still in flight; they stay uncommitted"
                        );
                        shared.cancel.send_replace(true);
                        break;
                    }
                }
            }
        }
        drop(messages);
        commit(&consumer, &progress);
        // Once more with everything committable so far, then a moment of polling so
        // librdkafka sends it and serves its result (a synchronous commit from inside the
        // async runtime can block forever). Messages that arrive meanwhile are neither
        // handled nor committed: they are redelivered.
        let list = commit_list(lock(&progress).iter(), |p| p.last_committable());
        if let Err(error) = send_commit(&*consumer, &list) {
            tracing::warn!(group = %config.group_id, %error, "final offset commit failed; the last messages will be redelivered");
        }
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                let _ = consumer.recv().await;
            }
        })
        .await;
        tracing::debug!(group = %config.group_id, "offsets committed; leaving the group");
        if close(consumer).await {
            tracing::debug!(group = %config.group_id, "left the group");
        } else {
            tracing::warn!(group = %config.group_id, limit = ?CLOSE_LIMIT, "leaving the group did not finish in time; it goes on in the background");
        }
        Ok(())
    }
}

/// Cancels the run's message tasks when the run ends or is dropped (its task aborted):
/// a handler never outlives its consumer, as none outlives a crashed process. What they
/// did is uncommitted, so it is redelivered.
struct CancelOnDrop(Arc<Shared>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel.send_replace(true);
    }
}

/// How long a stopping consumer waits for librdkafka to leave the group.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// The consumer, closed on a thread of its own when dropped. Closing blocks while
/// librdkafka leaves the group (rdkafka's drop loops until librdkafka says it is closed),
/// and that must never hold an async thread — a run aborted with its task drops the
/// consumer on one — nor the runtime's shutdown, as a blocking-pool task would.
struct Closing(Option<StreamConsumer<Rebalancer>>);

impl Closing {
    /// Closes in the background; `done` hears when it has.
    fn close_in_background(&mut self, done: Option<tokio::sync::oneshot::Sender<()>>) {
        let Some(consumer) = self.0.take() else { return };
        let spawned = std::thread::Builder::new().name("herald-consumer-close".into()).spawn(move || {
            drop(consumer);
            if let Some(done) = done {
                let _ = done.send(());
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no thread to close the consumer on; it closed where it was dropped");
        }
    }
}

impl std::ops::Deref for Closing {
    type Target = StreamConsumer<Rebalancer>;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("the consumer is taken only when closing") // never: taken only by close
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.close_in_background(None);
    }
}

/// Closes `consumer` and waits at most [`CLOSE_LIMIT`] for it; true if it closed in time.
async fn close(mut consumer: Closing) -> bool {
    let (closed, done) = tokio::sync::oneshot::channel();
    consumer.close_in_background(Some(closed));
    tokio::time::timeout(CLOSE_LIMIT, done).await.is_ok_and(|r| r.is_ok())
}

/// Forgets the partitions the rebalance callback revoked since the last call.
fn apply_revokes(dispatcher: &mut Dispatcher, revoked: &mut mpsc::UnboundedReceiver<Vec<Slot>>) {
    while let Ok(slots) = revoked.try_recv() {
        dispatcher.revoke(slots);
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

/// Commits each partition's finished prefix, if it moved.
fn commit(consumer: &StreamConsumer<Rebalancer>, progress: &SharedProgress) {
    let list = commit_list(lock(progress).iter(), PartitionProgress::committable);
    if let Err(error) = send_commit(consumer, &list) {
        tracing::debug!(%error, "offset commit failed (a rebalance moves partitions; they are redelivered)");
    }
}

/// The offsets to commit: `offset` of each partition's progress, where it has one.
fn commit_list<'a>(
    partitions: impl Iterator<Item = (&'a Slot, &'a Progress)>,
    offset: impl Fn(&mut PartitionProgress) -> Option<i64>,
) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), progress) in partitions {
        if let Some(offset) = offset(&mut lock(progress)) {
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(offset));
        }
    }
    list
}

/// Sends `list`, if not empty, as an asynchronous commit (a synchronous one from inside
/// the async runtime can block forever). What a failed commit leaves out is redelivered.
fn send_commit<C: ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    list: &TopicPartitionList,
) -> KafkaResult<()> {
    if list.count() == 0 { Ok(()) } else { consumer.commit(list, CommitMode::Async) }
}
