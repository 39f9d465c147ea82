//! Projections fed by the event store, on SQLite files and PostgreSQL: runners SIGKILLed
//! at random points (child processes, 30 cycles) while events flow leave a read model
//! equal to the fold of every event, each applied once; a poison event parks the
//! projection until `retry` (after a fix) or `skip` (recorded); the lag gauges move while
//! a runner is stopped and started again.

mod outbox_common;
mod projection_common;
mod store_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald::projection::{
    ApplyFuture, PostgresProjections, Projection, ProjectionControl, ProjectionDb, ProjectionRunner, RunnerConfig,
    SqliteProjections,
};
use herald::store::{EventStore, PostgresEventStore, SqliteEventStore, StoredEvent};
use projection_common::{append, postgres, sqlite, wait_until};
use store_common::OrderPlaced;

/// Totals per stream, plus how often each event was applied; `poison` fails event `n`
/// while set.
struct Totals {
    name: &'static str,
    poison: Option<(u64, Arc<AtomicBool>)>,
}

impl Totals {
    fn new(name: &'static str) -> Self {
        Self { name, poison: None }
    }

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
                self.name
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

/// Where a child runner's database is: `sqlite:<file>` or `postgres:<schema>`.
const CHILD: &str = "HERALD_PROJECTION_CHILD";

/// Not a test by itself: the runner that `killed_runners_apply_every_event_once` starts
/// as a child process (this test binary, `--ignored --exact projection_child`) and
/// SIGKILLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the SIGKILL tests"]
async fn projection_child() {
    let spec = std::env::var(CHILD).expect("started by a SIGKILL test");
    if let Some(path) = spec.strip_prefix("sqlite:") {
        let pool = sqlx::SqlitePool::connect_with(herald::outbox::sqlite_options(path)).await.expect("sqlite");
        let store = SqliteEventStore::new(pool.clone()).await.expect("store");
        run_forever(store, SqliteProjections::new(pool).await.expect("projections")).await;
    } else if let Some(schema) = spec.strip_prefix("postgres:") {
        let url = std::env::var("HERALD_TEST_DATABASE_URL").expect("database url");
        let options: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
        let pool = sqlx::PgPool::connect_with(options.options([("search_path", schema)])).await.expect("postgres");
        let store = PostgresEventStore::new(pool.clone()).await.expect("store");
        run_forever(store, PostgresProjections::new(pool).await.expect("projections")).await;
    }
}

async fn run_forever<S, D>(store: S, db: D)
where
    S: EventStore + herald::outbox::OutboxStore,
    D: ProjectionDb,
    Totals: Projection<D>,
{
    let runner = ProjectionRunner::new(store, db, Totals::new("totals"), config());
    runner.run(std::future::pending()).await.expect("runs until killed");
}

/// 30 cycles of: start the runner as a child process, let it fold for a random moment
/// while a writer keeps appending, SIGKILL it wherever it is. Then one runner catches up:
/// the read model is the fold of every event, each applied once.
async fn killed_runners<S, D>(
    store: S,
    db: D,
    spec: String,
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
    let writing = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let (store, writing) = (store.clone(), Arc::clone(&writing));
        async move {
            let mut appended = 0;
            while writing.load(Ordering::SeqCst) {
                append(&store, appended, 3).await;
                appended += 3;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            appended
        }
    });
    let exe = std::env::current_exe().expect("this test binary");
    let mut folded_while_killed = 0;
    for _ in 0..30 {
        let mut child = std::process::Command::new(&exe)
            .args(["--ignored", "--exact", "projection_child", "--quiet"])
            .env(CHILD, &spec)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start a runner");
        tokio::time::sleep(Duration::from_millis(50 + random(250))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        folded_while_killed = count_applied().await.0;
    }
    writing.store(false, Ordering::SeqCst);
    let appended = writer.await.expect("writer");
    assert!(folded_while_killed > 0, "the children folded something before the last kill");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = ProjectionRunner::new(store.clone(), db.clone(), Totals::new("totals"), config());
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
    outbox_common::log_if_asked();
    let armed = Arc::new(AtomicBool::new(true));
    let control = ProjectionControl::new(db.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = ProjectionRunner::new(
        store.clone(),
        db.clone(),
        Totals { name: "totals", poison: Some((7, Arc::clone(&armed))) },
        config(),
    );
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
    let runner = ProjectionRunner::new(
        store.clone(),
        db.clone(),
        Totals { name: "totals", poison: Some((23, Arc::clone(&armed))) },
        config(),
    );
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
async fn sqlite_killed_runners_apply_every_event_once() {
    let (dir, store, db) = sqlite(&TABLES).await;
    let pool = db.pool().clone();
    let spec = format!("sqlite:{}", dir.path().join("service.db").display());
    killed_runners(store, db, spec, counts!(pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_poison_event_parks_until_retry_or_skip() {
    let (_dir, store, db) = sqlite(&TABLES).await;
    let pool = db.pool().clone();
    parking(store, db, totals!(pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_runners_apply_every_event_once() {
    let Some((store, db)) = postgres("projection_crash", &TABLES).await else { return };
    let pool = db.pool().clone();
    let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.expect("schema");
    killed_runners(store, db, format!("postgres:{schema}"), counts!(pool)).await;
    outbox_common::drop_schema(pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_poison_event_parks_until_retry_or_skip() {
    let Some((store, db)) = postgres("projection_parking", &TABLES).await else { return };
    let pool = db.pool().clone();
    parking(store, db, totals!(pool)).await;
    outbox_common::drop_schema(pool).await;
}

/// Every value each gauge was set to, by name and `projection` label.
#[derive(Default)]
struct Gauges(std::sync::Mutex<std::collections::HashMap<(String, String), Vec<f64>>>);

struct Gauge(Arc<Gauges>, (String, String));

impl metrics::GaugeFn for Gauge {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, value: f64) {
        self.0.0.lock().expect("gauges").entry(self.1.clone()).or_default().push(value);
    }
}

struct Recorder(Arc<Gauges>);

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        let projection = key.labels().find(|l| l.key() == "projection").map(|l| l.value().to_string());
        let id = (key.name().to_string(), projection.unwrap_or_default());
        metrics::Gauge::from_arc(Arc::new(Gauge(Arc::clone(&self.0), id)))
    }
}

/// Caught up: both gauges 0. Stopped while 50 events arrive over a second, then started
/// with batches of 10: the first batch reports 40 events behind and over a second of lag,
/// and catching up brings both back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_gauges_move_while_a_runner_is_stopped_and_started() {
    let gauges = Arc::new(Gauges::default());
    metrics::set_global_recorder(Recorder(Arc::clone(&gauges))).expect("the only recorder in this binary");
    let seen = |name: &str| -> Vec<f64> {
        let all = gauges.0.lock().expect("gauges");
        all.get(&(name.to_string(), "lagged".to_string())).cloned().unwrap_or_default()
    };
    let (_dir, store, db) = sqlite(&TABLES).await;
    let config = RunnerConfig::default().batch(10).poll_interval(Duration::from_millis(10));
    let start = || {
        let runner = ProjectionRunner::new(store.clone(), db.clone(), Totals::new("lagged"), config.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(runner.run(async {
            let _ = stopped.await;
        }));
        (stop, task)
    };
    append(&store, 0, 5).await;
    let (stop, task) = start();
    wait_until("caught up", async || seen("herald_projection_lag_events").last() == Some(&0.0)).await;
    let _ = stop.send(());
    task.await.expect("runner").expect("ran");

    append(&store, 5, 50).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    gauges.0.lock().expect("gauges").clear();
    let (stop, task) = start();
    wait_until("caught up again", async || {
        let events = seen("herald_projection_lag_events");
        events.len() > 1 && events.last() == Some(&0.0)
    })
    .await;
    let _ = stop.send(());
    task.await.expect("runner").expect("ran");
    let (events, seconds) = (seen("herald_projection_lag_events"), seen("herald_projection_lag_seconds"));
    assert_eq!(events.first(), Some(&40.0), "after the first batch of 10: {events:?}");
    assert!(events.windows(2).all(|w| w[1] <= w[0]), "falls as it catches up: {events:?}");
    assert!(seconds.first().is_some_and(|s| *s >= 1.0), "over a second behind: {seconds:?}");
    assert_eq!(seconds.last(), Some(&0.0), "none once caught up: {seconds:?}");
}
