//! Projections fed by the event store, on SQLite files and PostgreSQL: runners cancelled
//! at random points mid-batch (30 cycles) leave a read model equal to the fold of every
//! event, each applied once; a poison event parks the projection until `retry` (after a
//! fix) or `skip` (recorded).

mod outbox_common;
mod store_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald::projection::{
    ApplyFuture, PostgresProjections, Projection, ProjectionControl, ProjectionDb, ProjectionRunner, RunnerConfig,
    SqliteProjections,
};
use herald::store::{EventStore, ExpectedVersion, NewEvent, PostgresEventStore, SqliteEventStore, StoredEvent};
use store_common::OrderPlaced;

/// Totals per stream, plus how often each event was applied; `poison` fails event `n`
/// while set.
struct Totals {
    poison: Option<(u64, Arc<AtomicBool>)>,
}

impl Totals {
    fn check(&self, event: &StoredEvent) -> Result<OrderPlaced, String> {
        let data = event.decode::<OrderPlaced>(1 << 20).map_err(|e| e.to_string())?.data;
        match &self.poison {
            Some((n, armed)) if *n == data.n && armed.load(Ordering::SeqCst) => Err(format!("event {n} is poison")),
            _ => Ok(data),
        }
    }
}

macro_rules! totals_projection {
    ($db:ty, $sql_total:literal, $sql_applied:literal) => {
        impl Projection<$db> for Totals {
            fn name(&self) -> &str {
                "totals"
            }
            fn event_types(&self) -> &[&str] {
                &["order.placed"]
            }
            fn apply<'a>(&'a self, event: &'a StoredEvent, tx: &'a mut <$db as ProjectionDb>::Tx) -> ApplyFuture<'a> {
                Box::pin(async move {
                    let data = self.check(event)?;
                    sqlx::query($sql_total)
                        .bind(&event.stream_id)
                        .bind(data.n as i64)
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| e.to_string())?;
                    sqlx::query($sql_applied)
                        .bind(event.event_id.to_string())
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(())
                })
            }
        }
    };
}
totals_projection!(
    SqliteProjections,
    "INSERT INTO totals (stream, events, sum) VALUES (?1, 1, ?2) \
     ON CONFLICT (stream) DO UPDATE SET events = events + 1, sum = sum + ?2",
    "INSERT INTO applied (event_id, times) VALUES (?1, 1) ON CONFLICT (event_id) DO UPDATE SET times = times + 1"
);
totals_projection!(
    PostgresProjections,
    "INSERT INTO totals (stream, events, sum) VALUES ($1, 1, $2) \
     ON CONFLICT (stream) DO UPDATE SET events = totals.events + 1, sum = totals.sum + $2",
    "INSERT INTO applied (event_id, times) VALUES ($1, 1) ON CONFLICT (event_id) DO UPDATE SET times = applied.times + 1"
);

const TABLES: [&str; 2] = [
    "CREATE TABLE totals (stream TEXT PRIMARY KEY, events BIGINT NOT NULL, sum BIGINT NOT NULL)",
    "CREATE TABLE applied (event_id TEXT PRIMARY KEY, times BIGINT NOT NULL)",
];

fn config() -> RunnerConfig {
    RunnerConfig::default().batch(7).poll_interval(Duration::from_millis(10))
}

/// Appends `count` events round-robin over five streams; returns the expected totals.
async fn append<S: EventStore>(store: &S, from: u64, count: u64) {
    for n in from..from + count {
        let stream = format!("order-{}", n % 5);
        let event =
            NewEvent::new(&herald::Envelope::new("shop", OrderPlaced { order_id: stream.clone(), n })).expect("encode");
        store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
    }
}

/// 30 cycles of: append some events, run a runner for a random moment, cancel it wherever
/// it is (a crash: its open transaction is rolled back). Then one runner catches up.
async fn crash_cycles<S, D>(
    store: S,
    db: D,
    count_applied: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = (i64, i64, i64, i64)>>>,
) where
    S: EventStore + herald::outbox::OutboxStore + Clone,
    D: ProjectionDb,
    Totals: Projection<D>,
{
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut appended = 0;
    for _ in 0..30 {
        let count = 5 + random(20);
        append(&store, appended, count).await;
        appended += count;
        let runner = ProjectionRunner::new(store.clone(), db.clone(), Totals { poison: None }, config());
        let task = tokio::spawn(runner.run(std::future::pending()));
        tokio::time::sleep(Duration::from_millis(random(15))).await;
        task.abort();
        let _ = task.await;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = ProjectionRunner::new(store.clone(), db.clone(), Totals { poison: None }, config());
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    let want_sum: i64 = (0..appended as i64).sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (events, sum, applied, most) = count_applied().await;
        if events >= appended as i64 {
            assert_eq!(events, appended as i64, "no event folded in twice");
            assert_eq!(sum, want_sum, "the read model is the fold of every event");
            assert_eq!((applied, most), (appended as i64, 1), "each event applied exactly once");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "caught up {events} of {appended} in 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    task.await.expect("runner").expect("ran");
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A poison event parks the runner; retry while still poison parks it again; a fix plus
/// retry resumes; a second poison is skipped, recorded, and only it is missing.
async fn parking<S, D>(
    store: S,
    db: D,
    totals: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = (i64, i64)>>>,
) where
    S: EventStore + herald::outbox::OutboxStore + Clone,
    D: ProjectionDb,
    Totals: Projection<D>,
{
    let armed = Arc::new(AtomicBool::new(true));
    let control = ProjectionControl::new(db.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner =
        ProjectionRunner::new(store.clone(), db.clone(), Totals { poison: Some((7, Arc::clone(&armed))) }, config());
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    append(&store, 0, 20).await;
    wait_until("parked at event 7", async || control.state("totals", 1).await.expect("state").parked.is_some()).await;
    let parked = control.state("totals", 1).await.expect("state").parked.expect("parked");
    assert!(parked.error.contains("event 7 is poison"), "{parked:?}");
    assert_eq!(totals().await, (7, (0..7).sum()), "everything before it, nothing after");
    control.retry("totals", 1).await.expect("retry");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(control.state("totals", 1).await.expect("state").parked.is_some(), "still poison: parked again");
    armed.store(false, Ordering::SeqCst);
    control.retry("totals", 1).await.expect("retry");
    wait_until("caught up after the fix", async || totals().await.0 == 20).await;
    assert_eq!(totals().await, (20, (0..20).sum()));
    let _ = stop.send(());
    task.await.expect("runner").expect("ran");

    // A second poison, this time skipped.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    armed.store(true, Ordering::SeqCst);
    let runner =
        ProjectionRunner::new(store.clone(), db.clone(), Totals { poison: Some((23, Arc::clone(&armed))) }, config());
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    append(&store, 20, 10).await;
    wait_until("parked at event 23", async || control.state("totals", 1).await.expect("state").parked.is_some()).await;
    control.skip("totals", 1).await.expect("skip");
    wait_until("caught up after the skip", async || totals().await.0 == 29).await;
    assert_eq!(totals().await, (29, (0..30).sum::<i64>() - 23), "exactly event 23 is missing");
    assert!(control.state("totals", 1).await.expect("state").parked.is_none());
    let _ = stop.send(());
    task.await.expect("runner").expect("ran");
}

async fn sqlite() -> (tempfile::TempDir, SqliteEventStore, SqliteProjections) {
    let dir = tempfile::tempdir().expect("dir");
    let pool = outbox_common::sqlite_pool(dir.path()).await;
    for table in TABLES {
        sqlx::query(table).execute(&pool).await.expect("table");
    }
    let store = SqliteEventStore::new(pool.clone()).await.expect("store");
    (dir, store, SqliteProjections::new(pool).await.expect("projections"))
}

async fn postgres(test: &str) -> Option<(PostgresEventStore, PostgresProjections)> {
    let pool = outbox_common::postgres_pool(test, 8).await?;
    for table in TABLES {
        sqlx::query(table).execute(&pool).await.expect("table");
    }
    let store = PostgresEventStore::new(pool.clone()).await.expect("store");
    Some((store, PostgresProjections::new(pool).await.expect("projections")))
}

macro_rules! counts {
    ($pool:expr) => {{
        let pool = $pool.clone();
        move || {
            let pool = pool.clone();
            Box::pin(async move {
                let (events, sum): (Option<i64>, Option<i64>) =
                    sqlx::query_as("SELECT CAST(sum(events) AS BIGINT), CAST(sum(sum) AS BIGINT) FROM totals")
                        .fetch_one(&pool)
                        .await
                        .expect("totals");
                let (applied, most): (i64, Option<i64>) =
                    sqlx::query_as("SELECT count(*), CAST(max(times) AS BIGINT) FROM applied")
                        .fetch_one(&pool)
                        .await
                        .expect("applied");
                (events.unwrap_or(0), sum.unwrap_or(0), applied, most.unwrap_or(0))
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = (i64, i64, i64, i64)>>>
        }
    }};
}

macro_rules! totals {
    ($pool:expr) => {{
        let counts = counts!($pool);
        move || {
            let counts = counts();
            Box::pin(async move {
                let (events, sum, _, _) = counts.await;
                (events, sum)
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = (i64, i64)>>>
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runners_cancelled_mid_batch_apply_every_event_once() {
    let (_dir, store, db) = sqlite().await;
    let pool = db.pool().clone();
    crash_cycles(store, db, counts!(pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_poison_event_parks_until_retry_or_skip() {
    let (_dir, store, db) = sqlite().await;
    let pool = db.pool().clone();
    parking(store, db, totals!(pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runners_cancelled_mid_batch_apply_every_event_once() {
    let Some((store, db)) = postgres("projection_crash").await else { return };
    let pool = db.pool().clone();
    crash_cycles(store, db, counts!(pool)).await;
    outbox_common::drop_schema(pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_poison_event_parks_until_retry_or_skip() {
    let Some((store, db)) = postgres("projection_parking").await else { return };
    let pool = db.pool().clone();
    parking(store, db, totals!(pool)).await;
    outbox_common::drop_schema(pool).await;
}
