//! [`Relay`]: publishes committed outbox rows in order, moving the cursor only past what
//! the broker acknowledged, while holding the relay name's lease.
//!
//! Each round: renew the lease when due; read a batch after the cursor; hand every row to
//! the idempotent producer in order (it keeps their order per partition, hence per key)
//! while reading the next batch; wait for every acknowledgement; move the cursor. A failed
//! batch is sent again from the cursor after a backoff with jitter, on a fresh producer:
//! the producer never times messages out and guarantees no gaps, so a batch either lands
//! whole and in order or fails as a whole, and a resend can only repeat events (same ids).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use uuid::Uuid;

use super::lease::Lease;
use super::{OutboxRecord, OutboxStore, Position, Wakeups};
use crate::PublisherConfig;
use crate::backoff::{Backoff, jitter};
use crate::publisher::producer_config;
use crate::time::now_ms;

/// Settings of a [`Relay`].
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The relay name: relays of one name share a cursor and a lease (one is active).
    pub name: String,
    /// Rows read and sent at a time.
    pub batch_size: usize,
    /// How often an idle relay looks for rows without a wakeup (and a follower for a
    /// lapsed lease).
    pub poll_interval: Duration,
    /// How long a lease lasts without renewal: the longest a dead relay's rows wait for
    /// another one.
    pub lease_ttl: Duration,
    /// Published rows are deleted this long after they were enqueued.
    pub retention: Duration,
    /// How often published rows past the retention are deleted.
    pub cleanup_interval: Duration,
    /// How often the backlog gauges are refreshed.
    pub stats_interval: Duration,
    /// Backoff after a failure (database or broker); the relay never gives up.
    pub backoff: Backoff,
    /// How often the cursor is written back while batches keep coming (always when the
    /// relay goes idle or stops). A crash repeats at most this much (same event ids);
    /// fewer writes leave the database to the service (SQLite has one writer at a time).
    pub cursor_interval: Duration,
    /// On shutdown, how long to wait for a batch in flight before leaving it to the next
    /// relay (which then sends it again).
    pub shutdown_grace: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            batch_size: 1000,
            poll_interval: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(10),
            retention: Duration::from_secs(3600),
            cleanup_interval: Duration::from_secs(10),
            stats_interval: Duration::from_secs(5),
            backoff: Backoff::default().max_delay(Duration::from_secs(10)),
            cursor_interval: Duration::from_millis(100),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl RelayConfig {
    setters! {
        /// Sets the relay name.
        name: impl Into<String>,
        /// Sets the rows read and sent at a time.
        batch_size: usize,
        /// Sets how often an idle relay looks for rows.
        poll_interval: Duration,
        /// Sets how long a lease lasts without renewal.
        lease_ttl: Duration,
        /// Sets how long published rows are kept.
        retention: Duration,
        /// Sets how often published rows past the retention are deleted.
        cleanup_interval: Duration,
        /// Sets how often the backlog gauges are refreshed.
        stats_interval: Duration,
        /// Sets the backoff after a failure.
        backoff: Backoff,
        /// Sets how often the cursor is written back while batches keep coming.
        cursor_interval: Duration,
        /// Sets how long a shutdown waits for a batch in flight.
        shutdown_grace: Duration,
    }
}

/// Why a relay did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The producer could not be created (bad settings).
    #[error("outbox relay {relay}: cannot create a producer for {brokers}: {source}")]
    Producer {
        /// The relay name.
        relay: String,
        /// The brokers.
        brokers: String,
        /// What librdkafka said.
        #[source]
        source: Box<KafkaError>,
    },
}

/// A batch the broker acknowledged and the cursor moved past (see [`Relay::observe`]).
#[derive(Debug, Clone)]
pub struct Acked {
    /// The new cursor.
    pub through: Position,
    /// Each event's id and enqueue time (ms since the epoch).
    pub events: Vec<(Uuid, i64)>,
    /// When the cursor moved (ms since the epoch).
    pub acked_ms: i64,
}

/// Publishes a store's committed outbox rows; run one or more per database (one is
/// active per relay name).
pub struct Relay<S: OutboxStore> {
    store: S,
    publisher: PublisherConfig,
    config: RelayConfig,
    owner: String,
    observer: Option<tokio::sync::mpsc::UnboundedSender<Acked>>,
}

impl<S: OutboxStore> std::fmt::Debug for Relay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("backend", &self.store.backend())
            .field("config", &self.config)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Why a batch did not complete.
enum BatchError {
    /// The producer refused a row or the broker failed it.
    Kafka(KafkaError),
    /// The lease was lost (or could not be renewed in time) while waiting.
    LeaseLost,
    /// Shutdown, and the batch did not finish within the grace period.
    Abandoned,
}

/// Whether the cursor was written back.
enum Persisted {
    Yes,
    /// Another relay holds the lease now.
    LeaseLost,
    /// The database failed; tried again later.
    Failed,
}

/// The shutdown signal, remembered once it fired.
struct Stop<'a> {
    signal: Pin<&'a mut (dyn Future<Output = ()> + Send + 'a)>,
    stopped: bool,
}

impl Stop<'_> {
    /// Resolves when shutdown is asked for; pending forever after it was seen.
    async fn requested(&mut self) {
        if self.stopped {
            return std::future::pending().await;
        }
        self.signal.as_mut().await;
        self.stopped = true;
    }

    /// Sleeps for `duration` unless shutdown comes first.
    async fn sleep(&mut self, duration: Duration) {
        tokio::select! {
            () = self.requested() => {}
            () = tokio::time::sleep(duration) => {}
        }
    }
}

/// Metric handles, registered once.
struct Metrics {
    published: metrics::Counter,
    commit_to_ack: metrics::Histogram,
    leader: metrics::Gauge,
    backlog: metrics::Gauge,
    oldest_unpublished: metrics::Gauge,
    fenced: metrics::Gauge,
    oldest_write_transaction: metrics::Gauge,
    cleaned: metrics::Counter,
    backend: &'static str,
}

impl Metrics {
    fn new(backend: &'static str) -> Self {
        Self {
            published: metrics::counter!("herald_outbox_published_total", "backend" => backend),
            commit_to_ack: metrics::histogram!("herald_outbox_commit_to_ack_seconds", "backend" => backend),
            leader: metrics::gauge!("herald_outbox_leader", "backend" => backend),
            backlog: metrics::gauge!("herald_outbox_backlog", "backend" => backend),
            oldest_unpublished: metrics::gauge!("herald_outbox_oldest_unpublished_seconds", "backend" => backend),
            fenced: metrics::gauge!("herald_outbox_fenced_rows", "backend" => backend),
            oldest_write_transaction: metrics::gauge!(
                "herald_outbox_oldest_write_transaction_seconds",
                "backend" => backend
            ),
            cleaned: metrics::counter!("herald_outbox_cleaned_total", "backend" => backend),
            backend,
        }
    }

    fn error(&self, stage: &'static str) {
        metrics::counter!("herald_outbox_errors_total", "backend" => self.backend, "stage" => stage).increment(1);
    }
}

impl<S: OutboxStore> Relay<S> {
    /// A relay publishing `store`'s rows with every setting of `publisher` (brokers,
    /// client id, compression, linger, librdkafka overrides) but two it needs for its
    /// order: `message.timeout.ms` is 0 (a broker outage only delays) and
    /// `enable.gapless.guarantee` is on. A batch is handed to the producer whole, so a
    /// short linger (1 ms) serves it best.
    pub fn new(store: S, publisher: PublisherConfig, config: RelayConfig) -> Self {
        let owner = format!("{}-{}", std::process::id(), Uuid::now_v7().simple());
        Self { store, publisher, config, owner, observer: None }
    }

    /// Reports every acknowledged batch on `observer` (for tests and benchmarks).
    pub fn observe(mut self, observer: tokio::sync::mpsc::UnboundedSender<Acked>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// This relay's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn producer(&self) -> Result<FutureProducer, RelayError> {
        let mut client = producer_config(&self.publisher);
        // Set after the overrides: the relay's order depends on both.
        client
            // Never time a message out: a broker outage keeps the batch queued (bounded by
            // the batch size) until the broker is back, in order.
            .set("message.timeout.ms", "0")
            // Any failure that could leave a gap in what was sent fails the producer, so a
            // batch lands whole or is sent again whole.
            .set("enable.gapless.guarantee", "true");
        client.create().map_err(|source| RelayError::Producer {
            relay: self.config.name.clone(),
            brokers: self.publisher.brokers.clone(),
            source: Box::new(source),
        })
    }

    /// Publishes until `shutdown` resolves; then finishes the batch in flight (up to the
    /// grace period) and gives the lease up. Database and broker failures are logged,
    /// counted (`herald_outbox_errors_total`) and retried with backoff, never returned.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), RelayError> {
        let mut producer = self.producer()?;
        let shutdown = std::pin::pin!(shutdown);
        let mut stop = Stop { signal: shutdown, stopped: false };
        let metrics = Metrics::new(self.store.backend());
        let config = &self.config;
        let ttl_ms = i64::try_from(config.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut lease = Lease::new(config.lease_ttl);
        let mut cursor: Option<Position> = None;
        // What the database holds, and when it was written.
        let mut persisted: Option<Position> = None;
        let mut persisted_at = Instant::now();
        let mut next_batch: Option<Vec<OutboxRecord>> = None;
        let mut wakeups: Option<Wakeups> = None;
        let mut failures = 0u32;
        // Empty reads since the last wakeup or rows: the first few retry quickly (an
        // in-process wakeup comes before its commit), then the poll interval.
        let mut quick_polls = QUICK_POLLS;
        let mut housekeeping = Instant::now();
        let mut next_cleanup = Instant::now() + config.cleanup_interval;
        metrics.leader.set(0.0);
        while !stop.stopped {
            let now = Instant::now();
            if lease.renew_due(now) {
                match self.store.acquire(&config.name, &self.owner, now_ms(), ttl_ms).await {
                    Ok(Some(stored)) => {
                        // Held before but lapsed here unnoticed (a pause): another relay may
                        // have moved the cursor meanwhile, so start again from the stored one.
                        if cursor.is_none() || !lease.valid(now) {
                            tracing::info!(relay = %config.name, owner = %self.owner, cursor = ?stored, "outbox relay active");
                            cursor = Some(stored);
                            persisted = Some(stored);
                            next_batch = None;
                            metrics.leader.set(1.0);
                        }
                        lease.renewed(now);
                    }
                    Ok(None) => {
                        if cursor.take().is_some() {
                            tracing::warn!(relay = %config.name, "outbox relay lease taken by another relay");
                            metrics.leader.set(0.0);
                        }
                        lease.lost();
                    }
                    Err(error) => {
                        tracing::warn!(relay = %config.name, %error, "outbox relay lease renewal failed");
                        metrics.error("lease");
                    }
                }
            }
            let Some(at) = cursor.filter(|_| lease.valid(Instant::now())) else {
                if cursor.take().is_some() {
                    tracing::warn!(relay = %config.name, "outbox relay lease lapsed; standing by");
                    metrics.leader.set(0.0);
                }
                next_batch = None;
                stop.sleep(config.poll_interval.min(config.lease_ttl / 10)).await;
                continue;
            };
            if wakeups.is_none() && housekeeping <= Instant::now() {
                match self.store.wakeups().await {
                    Ok(w) => wakeups = Some(w),
                    Err(error) => {
                        tracing::warn!(relay = %config.name, %error, "outbox relay cannot listen; polling only");
                        metrics.error("listen");
                    }
                }
            }
            if housekeeping <= Instant::now() {
                housekeeping = Instant::now() + config.stats_interval;
                self.refresh_backlog(at, &metrics).await;
                if next_cleanup <= Instant::now() {
                    next_cleanup = Instant::now() + config.cleanup_interval;
                    self.cleanup(&metrics).await;
                }
            }
            let batch = match next_batch.take() {
                Some(batch) => batch,
                None => match self.store.fetch(at, config.batch_size).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(relay = %config.name, %error, failures, "outbox read failed; backing off");
                        metrics.error("fetch");
                        stop.sleep(config.backoff.delay(failures, jitter())).await;
                        continue;
                    }
                },
            };
            let Some(last) = batch.last().map(|r| r.position) else {
                if cursor != persisted {
                    match self.persist(at, &metrics).await {
                        Persisted::Yes => (persisted, persisted_at) = (Some(at), Instant::now()),
                        Persisted::LeaseLost => {
                            (cursor, next_batch) = (None, None);
                            metrics.leader.set(0.0);
                            lease.lost();
                            continue;
                        }
                        Persisted::Failed => {}
                    }
                }
                let wait = if quick_polls < QUICK_POLLS {
                    Duration::from_millis(1 << quick_polls)
                } else {
                    config.poll_interval
                };
                quick_polls = quick_polls.saturating_add(1);
                let woken = async {
                    match wakeups.as_mut() {
                        Some(w) => w.next().await,
                        None => std::future::pending().await,
                    }
                };
                let woke = tokio::select! {
                    () = stop.requested() => None,
                    () = tokio::time::sleep(wait) => None,
                    woke = woken => Some(woke),
                };
                match woke {
                    Some(Ok(())) => quick_polls = 0,
                    Some(Err(error)) => {
                        tracing::warn!(relay = %config.name, %error, "outbox wakeups lost; polling until they are back");
                        metrics.error("listen");
                        wakeups = None;
                    }
                    None => {}
                }
                continue;
            };
            quick_polls = 0;
            // Housekeeping and the read took time: only send while the lease still holds.
            if !lease.valid(Instant::now()) {
                next_batch = None;
                continue;
            }
            // Read the next batch while this one is on its way.
            let (sent, next) = tokio::join!(
                self.send_batch(&producer, &batch, &mut lease, &mut stop),
                self.store.fetch(last, config.batch_size)
            );
            if let Err(error) = sent {
                next_batch = None;
                match error {
                    BatchError::Kafka(error) => {
                        failures += 1;
                        tracing::warn!(relay = %config.name, %error, failures, "outbox batch failed; sending it again on a fresh producer");
                        metrics.error("publish");
                        let old = std::mem::replace(&mut producer, self.producer()?);
                        // Dropping a producer purges and flushes it, which blocks briefly.
                        tokio::task::spawn_blocking(move || drop(old));
                        stop.sleep(config.backoff.delay(failures, jitter())).await;
                    }
                    BatchError::LeaseLost => {
                        tracing::warn!(relay = %config.name, "outbox relay lost its lease during a batch");
                        cursor = None;
                        metrics.leader.set(0.0);
                        lease.lost();
                    }
                    BatchError::Abandoned => {
                        tracing::warn!(relay = %config.name, "outbox batch unfinished at shutdown; the next relay sends it again");
                    }
                }
                continue;
            }
            next_batch = next.ok();
            let acked_ms = now_ms();
            for record in &batch {
                metrics.commit_to_ack.record((acked_ms - record.created_ms).max(0) as f64 / 1000.0);
            }
            metrics.published.increment(batch.len() as u64);
            cursor = Some(last);
            failures = 0;
            if persisted_at.elapsed() >= config.cursor_interval {
                match self.persist(last, &metrics).await {
                    Persisted::Yes => (persisted, persisted_at) = (Some(last), Instant::now()),
                    Persisted::LeaseLost => {
                        (cursor, next_batch) = (None, None);
                        metrics.leader.set(0.0);
                        lease.lost();
                    }
                    Persisted::Failed => {}
                }
            }
            if let Some(observer) = &self.observer {
                let events = batch.iter().map(|r| (r.event_id, r.created_ms)).collect();
                let _ = observer.send(Acked { through: last, events, acked_ms });
            }
        }
        if let Some(at) = cursor
            && cursor != persisted
            && lease.valid(Instant::now())
        {
            self.persist(at, &metrics).await;
        }
        if cursor.is_some()
            && let Err(error) = self.store.release(&config.name, &self.owner).await
        {
            tracing::warn!(relay = %config.name, %error, "outbox relay could not release its lease; it lapses");
        }
        metrics.leader.set(0.0);
        tokio::task::spawn_blocking(move || drop(producer));
        Ok(())
    }

    /// Hands the batch to the producer in order and waits for every acknowledgement,
    /// renewing the lease meanwhile (a broker outage can last longer than a lease).
    async fn send_batch(
        &self,
        producer: &FutureProducer,
        batch: &[OutboxRecord],
        lease: &mut Lease,
        stop: &mut Stop<'_>,
    ) -> Result<(), BatchError> {
        let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(batch.len());
        for record in batch {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header { key: name, value: Some(value) });
            }
            let mut message = FutureRecord::to(&record.topic).payload(&record.payload).headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key);
            }
            loop {
                match producer.send_result(message) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full (a batch larger than its queue, or a
                        // broker outage): it drains as the broker acknowledges.
                        message = back;
                        tokio::select! {
                            () = stop.requested() => return Err(BatchError::Abandoned),
                            () = tokio::time::sleep(Duration::from_millis(1)) => {}
                        }
                        if !lease.valid(Instant::now()) {
                            return Err(BatchError::LeaseLost);
                        }
                    }
                    Err((error, _)) => return Err(BatchError::Kafka(error)),
                }
            }
        }
        let ttl_ms = i64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut deadline: Option<Instant> = None;
        for delivery in &mut deliveries {
            loop {
                let renew_at = lease.renew_at(Instant::now());
                tokio::select! {
                    delivered = &mut *delivery => match delivered {
                        Ok(Ok(_)) => break,
                        Ok(Err((error, _))) => return Err(BatchError::Kafka(error)),
                        Err(_canceled) => return Err(BatchError::Kafka(KafkaError::Canceled)),
                    },
                    () = tokio::time::sleep_until(renew_at.into()) => {
                        let now = Instant::now();
                        match self.store.acquire(&self.config.name, &self.owner, now_ms(), ttl_ms).await {
                            Ok(Some(_)) => lease.renewed(now),
                            Ok(None) => return Err(BatchError::LeaseLost),
                            Err(error) => {
                                tracing::warn!(relay = %self.config.name, %error, "outbox relay lease renewal failed");
                                if !lease.valid(Instant::now()) {
                                    return Err(BatchError::LeaseLost);
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    () = stop.requested() => {
                        deadline = Some(Instant::now() + self.config.shutdown_grace);
                    }
                    () = tokio::time::sleep_until(deadline.unwrap_or_else(far_future).into()), if deadline.is_some() => {
                        return Err(BatchError::Abandoned);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the cursor back (only while this relay holds the lease).
    async fn persist(&self, at: Position, metrics: &Metrics) -> Persisted {
        match self.store.advance(&self.config.name, &self.owner, at).await {
            Ok(true) => Persisted::Yes,
            Ok(false) => {
                tracing::warn!(relay = %self.config.name, "outbox relay lease taken over; its new owner sends from the stored cursor");
                Persisted::LeaseLost
            }
            Err(error) => {
                // Published, so go on from here; the stored cursor catches up with the
                // next write (a crash before then repeats these events).
                tracing::warn!(relay = %self.config.name, %error, "outbox cursor update failed");
                metrics.error("advance");
                Persisted::Failed
            }
        }
    }

    async fn refresh_backlog(&self, cursor: Position, metrics: &Metrics) {
        match self.store.backlog(cursor).await {
            Ok(backlog) => {
                metrics.backlog.set(backlog.rows as f64);
                let age = backlog.oldest_created_ms.map_or(0.0, |ms| (now_ms() - ms).max(0) as f64 / 1000.0);
                metrics.oldest_unpublished.set(age);
                metrics.fenced.set(backlog.fenced_rows as f64);
                metrics.oldest_write_transaction.set(backlog.oldest_write_transaction.map_or(0.0, |d| d.as_secs_f64()));
                if backlog.fenced_rows > 0 {
                    tracing::info!(
                        relay = %self.config.name,
                        fenced = backlog.fenced_rows,
                        oldest_write_transaction = ?backlog.oldest_write_transaction,
                        "committed outbox rows wait behind an older transaction that is still open"
                    );
                }
            }
            Err(error) => {
                tracing::debug!(relay = %self.config.name, %error, "outbox backlog query failed");
                metrics.error("stats");
            }
        }
    }

    async fn cleanup(&self, metrics: &Metrics) {
        let retention_ms = i64::try_from(self.config.retention.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(retention_ms);
        // In slices, so a large backlog of published rows never holds one long transaction,
        // and a few per round, so cleanup never delays publishing by much (and the lease
        // is checked again before the next send).
        for _ in 0..10 {
            match self.store.cleanup(&self.config.name, before, 10_000).await {
                Ok(0) => break,
                Ok(deleted) => metrics.cleaned.increment(deleted),
                Err(error) => {
                    tracing::warn!(relay = %self.config.name, %error, "outbox cleanup failed");
                    metrics.error("cleanup");
                    break;
                }
            }
        }
    }
}

/// Empty reads retried quickly (1, 2, 4, 8, 16 ms) before falling back to the poll interval.
const QUICK_POLLS: u32 = 5;

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}
