//! Shared by the outbox tests: the event they write, a relay on its own task, databases
//! (a fresh PostgreSQL schema per test, a SQLite file), and reading a topic back to check
//! that every committed event arrived, nothing else did, and each key kept its order.

#![allow(dead_code, unreachable_pub)] // each test file uses part of it

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use herald::outbox::{Acked, OutboxStore, Relay, RelayConfig, RelayError};
use herald::{Envelope, PublisherConfig};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What the writers enqueue: `seq` counts up per writer, so per key it is the write order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Written {
    pub key: String,
    pub writer: u32,
    pub seq: u32,
}
herald::event!(Written, type = "outbox.written", version = 1, topic = "outbox.written", key = key);

pub const TOPIC: &str = "outbox.written";

pub fn log_if_asked() {
    if let Ok(filter) = std::env::var("HERALD_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// A relay running on its own task, reporting acknowledged batches.
pub struct Relaying {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), RelayError>>,
    pub acked: mpsc::UnboundedReceiver<Acked>,
}

impl Relaying {
    pub fn start<S: OutboxStore>(store: S, bootstrap: &str, config: RelayConfig) -> Self {
        Self::start_with(store, PublisherConfig::default().brokers(bootstrap).client_id("outbox-relay"), config)
    }

    pub fn start_with<S: OutboxStore>(store: S, publisher: PublisherConfig, config: RelayConfig) -> Self {
        let (tx, acked) = mpsc::unbounded_channel();
        let relay = Relay::new(store, publisher, config).observe(tx);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async move {
            let _ = stopped.await;
        }));
        Self { stop, task, acked }
    }

    /// Graceful: finishes the batch in flight, gives the lease up.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("relay task").expect("relay ran");
    }

    /// A crash: the task is dropped wherever it is.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Collects acknowledged event ids into `seen` until it holds all of `want`.
    pub async fn wait_for(&mut self, want: &HashSet<Uuid>, seen: &mut HashSet<Uuid>, within: Duration) {
        let deadline = Instant::now() + within;
        while !want.is_subset(seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.acked.recv()).await {
                Ok(Some(acked)) => seen.extend(acked.events.iter().map(|(id, _)| *id)),
                Ok(None) => panic!("the relay stopped"),
                Err(_) => panic!(
                    "relay acknowledged {} of {} events in {within:?}",
                    want.intersection(seen).count(),
                    want.len()
                ),
            }
        }
    }
}

/// A pool on a fresh schema of HERALD_TEST_DATABASE_URL's database (so tests running at
/// once do not share outbox tables), or None with a note when the variable is unset.
pub async fn postgres_pool(test: &str, connections: u32) -> Option<sqlx::PgPool> {
    let Ok(url) = std::env::var("HERALD_TEST_DATABASE_URL") else {
        assert!(
            std::env::var_os("HERALD_REQUIRE_POSTGRES").is_none(),
            "HERALD_REQUIRE_POSTGRES is set but HERALD_TEST_DATABASE_URL is not"
        );
        eprintln!("SKIPPED {test}: HERALD_TEST_DATABASE_URL is not set (scripts/postgres-test-db prints one)");
        return None;
    };
    let schema = format!("outbox_test_{}", Uuid::now_v7().simple());
    let admin = sqlx::PgPool::connect(&url).await.expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.expect("create schema");
    admin.close().await;
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("database url");
    let options = options.options([("search_path", schema.as_str())]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await
        .expect("postgres pool");
    Some(pool)
}

/// Drops the schema `postgres_pool` made (at the end of a test that passed; a failed one
/// leaves its tables for a look).
pub async fn drop_schema(pool: sqlx::PgPool) {
    let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.expect("schema");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .expect("drop schema");
    pool.close().await;
}

/// A SQLite pool on a new file in `dir`, with the outbox's recommended options.
pub async fn sqlite_pool(dir: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(herald::outbox::sqlite_options(dir.join("service.db")))
        .await
        .expect("sqlite pool")
}

/// One event as read back from the broker.
#[derive(Debug, Clone)]
pub struct Arrived {
    pub event_id: Uuid,
    pub data: Written,
    pub partition: i32,
    pub offset: i64,
}

/// Reads `TOPIC` from the beginning until every id in `want` has arrived (and for a short
/// while after, to catch stragglers that should not be there).
pub async fn read_back(bootstrap: &str, want: &HashSet<Uuid>) -> Vec<Arrived> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("check-{}", Uuid::now_v7().simple()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut arrived = Vec::new();
    let mut ids = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut quiet_until: Option<Instant> = None;
    loop {
        if want.is_subset(&ids) {
            let until = *quiet_until.get_or_insert_with(|| Instant::now() + Duration::from_millis(500));
            if Instant::now() >= until {
                break;
            }
        }
        assert!(Instant::now() < deadline, "read {} of {} events back", want.intersection(&ids).count(), want.len());
        let Ok(received) = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await else { continue };
        let message = received.expect("message");
        let envelope: Envelope<Written> =
            Envelope::from_json(message.payload().expect("payload"), 1 << 20).expect("envelope");
        ids.insert(envelope.event_id);
        arrived.push(Arrived {
            event_id: envelope.event_id,
            data: envelope.data,
            partition: message.partition(),
            offset: message.offset(),
        });
    }
    tokio::task::spawn_blocking(move || drop(consumer)).await.expect("close");
    arrived
}

/// Checks what arrived against what committed: every committed event arrived, nothing
/// else did, repeats carry an id that arrived before, and per key the first arrivals are
/// in write order. Returns (distinct events, repeats).
pub fn check_arrivals(arrived: &[Arrived], committed: &HashSet<Uuid>) -> (usize, usize) {
    let mut sorted = arrived.to_vec();
    sorted.sort_by_key(|a| (a.partition, a.offset));
    let mut first_seen = HashSet::new();
    let mut last_seq: HashMap<&str, u32> = HashMap::new();
    let mut repeats = 0;
    for a in &sorted {
        assert!(committed.contains(&a.event_id), "event {} arrived but was never committed: {:?}", a.event_id, a.data);
        if !first_seen.insert(a.event_id) {
            repeats += 1;
            continue;
        }
        if let Some(previous) = last_seq.insert(&a.data.key, a.data.seq) {
            assert!(
                previous < a.data.seq,
                "key {} out of order: seq {} arrived after seq {previous}",
                a.data.key,
                a.data.seq
            );
        }
    }
    let missing: Vec<_> = committed.difference(&first_seen).collect();
    assert!(
        missing.is_empty(),
        "{} committed events never arrived: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    (first_seen.len(), repeats)
}

/// Four random bytes (the random tail of a v7 UUID; no rand crate needed).
pub fn random_bytes() -> [u8; 4] {
    let id = Uuid::now_v7();
    let b = id.as_bytes();
    [b[12], b[13], b[14], b[15]]
}

/// Fast settings for tests: short polls and leases.
pub fn quick(lease_ttl: Duration) -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(20),
        lease_ttl,
        stats_interval: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}
