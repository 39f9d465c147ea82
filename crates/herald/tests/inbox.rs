//! Idempotent consumers against a real broker and real databases: events redelivered by a
//! rewound group run their handler once with an inbox (memory, SQLite, PostgreSQL), and
//! twice without one (the control that proves the rewind really redelivers); a handler
//! that claims the event in its own transaction applies each effect exactly once; and a
//! dedup window shorter than the retry horizon is refused at startup.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Running, UserCreated, publish, rewind, wait};
use herald::backoff::Backoff;
use herald::consumer::{Consumer, ConsumerConfig, ConsumerError, RetryPolicy};
use herald::inbox::{Inbox, MemoryInbox, PostgresInbox, SqliteInbox};
use herald::testkit::TestBroker;
use herald::time::now_ms;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const EVENTS: u32 = 60;

type Calls = Arc<Mutex<HashMap<u32, u32>>>;

fn counting_consumer(bootstrap: &str, group: &str, calls: &Calls, inbox: Option<Arc<dyn Inbox>>) -> Consumer {
    let calls = Arc::clone(calls);
    let consumer = Consumer::new(ConsumerConfig::new(bootstrap, group, &["user.created"])).on(
        move |event: herald::Envelope<UserCreated>, _ctx| {
            let calls = Arc::clone(&calls);
            async move {
                *calls.lock().expect("lock").entry(event.data.n).or_default() += 1;
                Ok(())
            }
        },
    );
    match inbox {
        Some(inbox) => consumer.inbox(inbox),
        None => consumer,
    }
}

/// Consumes everything, rewinds the group, consumes everything again; returns how often
/// each event's handler ran.
async fn consume_twice(broker: &TestBroker, group: &str, inbox: Option<Arc<dyn Inbox>>) -> HashMap<u32, u32> {
    let b = broker.bootstrap();
    let calls: Calls = Arc::default();
    for round in 1..=2 {
        let running = Running::start(counting_consumer(&b, group, &calls, inbox.clone()));
        let calls_now = Arc::clone(&calls);
        let lag_zero = || broker.running().broker().group_lag(group).iter().map(|l| l.lag).sum::<i64>() == 0;
        wait(&format!("round {round}: every event handled and committed"), || {
            calls_now.lock().expect("lock").len() == EVENTS as usize && lag_zero()
        })
        .await;
        running.stop().await;
        if round == 1 {
            rewind(&b, group, "user.created", 3);
            assert!(!lag_zero(), "the rewind took effect");
        }
    }
    Arc::try_unwrap(calls).expect("consumers stopped").into_inner().expect("lock")
}

async fn sqlite_pool(path: &std::path::Path) -> sqlx::SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new().max_connections(4).connect_with(options).await.expect("sqlite pool")
}

/// The PostgreSQL pool from HERALD_TEST_DATABASE_URL, or None (with a note) when unset.
async fn postgres_pool(test: &str) -> Option<sqlx::PgPool> {
    let Ok(url) = std::env::var("HERALD_TEST_DATABASE_URL") else {
        assert!(
            std::env::var_os("HERALD_REQUIRE_POSTGRES").is_none(),
            "HERALD_REQUIRE_POSTGRES is set but HERALD_TEST_DATABASE_URL is not"
        );
        eprintln!("SKIPPED {test}: HERALD_TEST_DATABASE_URL is not set (scripts/postgres-test-db prints one)");
        return None;
    };
    Some(sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&url).await.expect("postgres pool"))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_inbox_a_rewind_runs_every_handler_again() {
    common::log_if_asked();
    let broker = TestBroker::start().await;
    publish(&broker.bootstrap(), EVENTS, 7).await;
    let calls = consume_twice(&broker, "no-inbox", None).await;
    assert!(calls.values().all(|c| *c == 2), "the control: each event handled twice: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_memory_inbox_redelivered_events_run_once() {
    let broker = TestBroker::start().await;
    publish(&broker.bootstrap(), EVENTS, 7).await;
    let inbox: Arc<dyn Inbox> = Arc::new(MemoryInbox::default());
    let calls = consume_twice(&broker, "memory-inbox", Some(inbox)).await;
    assert!(calls.values().all(|c| *c == 1), "each event handled once: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_sqlite_inbox_redelivered_events_run_once_even_after_reopening() {
    let broker = TestBroker::start().await;
    publish(&broker.bootstrap(), EVENTS, 7).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("inbox.db");
    let b = broker.bootstrap();
    let calls: Calls = Arc::default();
    // Round 1 with one pool; round 2 with a fresh pool on the same file (a restart).
    for round in 1..=2 {
        let pool = sqlite_pool(&path).await;
        let inbox: Arc<dyn Inbox> = Arc::new(SqliteInbox::new(pool.clone()).await.expect("inbox"));
        let running = Running::start(counting_consumer(&b, "sqlite-inbox", &calls, Some(inbox)));
        let lag_zero = || broker.running().broker().group_lag("sqlite-inbox").iter().map(|l| l.lag).sum::<i64>() == 0;
        let calls_now = Arc::clone(&calls);
        wait("every event handled and committed", || {
            calls_now.lock().expect("lock").len() == EVENTS as usize && lag_zero()
        })
        .await;
        running.stop().await;
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM herald_inbox WHERE group_id = 'sqlite-inbox'")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(rows, i64::from(EVENTS), "one inbox row per event");
        // The table came from the inbox migration, recorded once however often it opens.
        let applied: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM herald_schema").fetch_all(&pool).await.expect("herald_schema");
        assert_eq!(applied, vec![("20261130000001_inbox".to_string(),)]);
        pool.close().await;
        if round == 1 {
            rewind(&b, "sqlite-inbox", "user.created", 3);
        }
    }
    let calls = calls.lock().expect("lock");
    assert!(calls.values().all(|c| *c == 1), "each event handled once: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_postgres_inbox_redelivered_events_run_once() {
    let Some(pool) = postgres_pool("with_a_postgres_inbox_redelivered_events_run_once").await else { return };
    let broker = TestBroker::start().await;
    publish(&broker.bootstrap(), EVENTS, 7).await;
    let inbox: Arc<dyn Inbox> = Arc::new(PostgresInbox::new(pool.clone()).await.expect("inbox"));
    // Group names are unique per run: the database outlives the test.
    let group = unique("pg-inbox");
    let calls = consume_twice(&broker, &group, Some(inbox)).await;
    assert!(calls.values().all(|c| *c == 1), "each event handled once: {calls:?}");
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM herald_inbox WHERE group_id = $1")
        .bind(&group)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, i64::from(EVENTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_in_the_handlers_transaction_make_effects_exactly_once_on_postgres() {
    let test = "claims_in_the_handlers_transaction_make_effects_exactly_once_on_postgres";
    let Some(pool) = postgres_pool(test).await else { return };
    PostgresInbox::new(pool.clone()).await.expect("inbox table");
    let table = format!("welcome_mails_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE {table} (user_id TEXT PRIMARY KEY, mails BIGINT NOT NULL)")))
        .execute(&pool)
        .await
        .expect("effect table");
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    publish(&b, EVENTS, 7).await;
    let group = unique("pg-tx");
    let calls: Calls = Arc::default();
    for round in 1..=2 {
        let (pool, table, handler_calls) = (pool.clone(), table.clone(), Arc::clone(&calls));
        let consumer = Consumer::new(ConsumerConfig::new(&b, &group, &["user.created"])).on(
            move |event: herald::Envelope<UserCreated>, ctx: herald::consumer::Context| {
                let (pool, table, calls) = (pool.clone(), table.clone(), Arc::clone(&handler_calls));
                async move {
                    *calls.lock().expect("lock").entry(event.data.n).or_default() += 1;
                    let mut tx = pool.begin().await?;
                    let first = PostgresInbox::claim_in(&mut tx, &ctx.group, ctx.event_id, now_ms()).await?;
                    if first {
                        // Not idempotent on its own: a second run would send a second mail.
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "INSERT INTO {table} (user_id, mails) VALUES ($1, 1) \
                             ON CONFLICT (user_id) DO UPDATE SET mails = {table}.mails + 1"
                        )))
                        .bind(format!("{}#{}", event.data.user_id, event.data.n))
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }
            },
        );
        let running = Running::start(consumer);
        let lag_zero = || broker.running().broker().group_lag(&group).iter().map(|l| l.lag).sum::<i64>() == 0;
        let calls_now = Arc::clone(&calls);
        wait("everything handled and committed", || {
            calls_now.lock().expect("lock").len() == EVENTS as usize && lag_zero()
        })
        .await;
        running.stop().await;
        if round == 1 {
            rewind(&b, &group, "user.created", 3);
        }
    }
    let (rows, mails): (i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*), COALESCE(sum(mails), 0)::BIGINT FROM {table}")))
            .fetch_one(&pool)
            .await
            .expect("effects");
    assert_eq!((rows, mails), (i64::from(EVENTS), i64::from(EVENTS)), "one mail per user, redelivery or not");
    let calls = calls.lock().expect("lock");
    assert!(calls.values().all(|c| *c == 2), "the handler did run twice per event (no runtime inbox): {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedup_window_shorter_than_the_retry_horizon_is_refused() {
    let backoff = Backoff::default().initial_delay(Duration::from_secs(1)).max_delay(Duration::from_secs(60));
    let config = ConsumerConfig::new("127.0.0.1:1", "short-window", &["user.created"])
        .retry(RetryPolicy::default().backoff(backoff).max_attempts(5));
    let inbox: Arc<dyn Inbox> = Arc::new(MemoryInbox::new(10, Duration::from_secs(10)));
    let result = Running::start(Consumer::new(config).inbox(inbox)).into_task().await;
    match result {
        Err(ConsumerError::InboxWindow { window, horizon, .. }) => {
            assert_eq!(window, Duration::from_secs(10));
            assert_eq!(horizon, Duration::from_secs(1 + 2 + 4 + 8));
        }
        other => panic!("expected the window to be refused, got {other:?}"),
    }
}

/// An inbox (user code) whose `record` panics on its 10th call at once and on its 20th after
/// waiting.
#[derive(Debug, Default)]
struct PanickyInbox {
    inner: MemoryInbox,
    records: std::sync::atomic::AtomicU32,
}

impl Inbox for PanickyInbox {
    fn contains<'a>(&'a self, group: &'a str, event_id: uuid::Uuid) -> herald::inbox::InboxFuture<'a, bool> {
        self.inner.contains(group, event_id)
    }

    fn record<'a>(&'a self, group: &'a str, event_id: uuid::Uuid, now_ms: i64) -> herald::inbox::InboxFuture<'a, bool> {
        let n = self.records.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n == 10 {
            panic!("inbox record {n} panics at once");
        }
        if n == 20 {
            return Box::pin(async move {
                tokio::task::yield_now().await;
                panic!("inbox record {n} panics after waiting")
            });
        }
        self.inner.record(group, event_id, now_ms)
    }

    fn prune(&self, now_ms: i64) -> herald::inbox::InboxFuture<'_, u64> {
        self.inner.prune(now_ms)
    }

    fn window(&self) -> Duration {
        self.inner.window()
    }
}

/// A panic in the consumer's own path (here a user-supplied inbox, on the run loop and on a
/// message's task) abandons that message: the consumer handles the rest and still stops
/// cleanly, and the abandoned offsets stay uncommitted (redelivered after a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_inbox_abandons_its_message_without_stopping_the_consumer() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    publish(&b, EVENTS, 7).await;
    let calls: Calls = Arc::default();
    let inbox: Arc<dyn Inbox> = Arc::new(PanickyInbox::default());
    let running = Running::start(counting_consumer(&b, "panicky-inbox", &calls, Some(inbox)));
    let c = Arc::clone(&calls);
    wait("every event handled", move || c.lock().expect("lock").len() == EVENTS as usize).await;
    // Stopping waits for every message to report back, the abandoned ones included.
    let stopped = tokio::time::timeout(Duration::from_secs(60), running.stop()).await;
    assert!(stopped.is_ok(), "the consumer did not stop: a message never reported back");
    let lag: i64 = broker.running().broker().group_lag("panicky-inbox").iter().map(|l| l.lag).sum();
    assert!(lag >= 2, "the two abandoned offsets (and what follows them) stay uncommitted: lag {lag}");
}
