//! The event store against its database's own ceilings, in the same run, on this machine:
//!
//! - append: one event per transaction with an expected version (each client on its own
//!   streams), and ten events per transaction, against a bare one-row (ten-row) INSERT
//!   transaction of the same payload — by pgbench and by sqlx, the store's own client;
//! - aggregate load: 10,000 events with a snapshot every 100 (snapshot plus tail) against
//!   reading 100 rows raw; a full replay against a raw SELECT of the 10,000 rows plus JSON
//!   decoding of each envelope;
//! - `Subscription` catch-up over all events against a raw keyset-paged SELECT of the
//!   same rows in pages of the same size.
//!
//! PostgreSQL runs when HERALD_TEST_DATABASE_URL is set (pgbench on the PATH for its
//! rows); SQLite (WAL, synchronous=FULL) always. `cargo bench -p herald --bench store`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::store::{
    Aggregate, EventStore, ExpectedVersion, NewEvent, PostgresEventStore, Repository, SqliteEventStore, Subscription,
    SubscriptionFilter,
};
use herald::{Envelope, event, events};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Incremented {
    counter_id: String,
    by: u64,
    note: String,
}
event!(Incremented, type = "counter.incremented", version = 1, key = counter_id);

#[derive(Debug, Clone, PartialEq)]
enum CounterEvent {
    Incremented(Incremented),
}
events!(CounterEvent { Incremented(Incremented) });

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
    events: u64,
}

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Command = u64;
    type Event = CounterEvent;
    type Error = std::convert::Infallible;
    fn handle(&self, by: &u64) -> Result<Vec<CounterEvent>, Self::Error> {
        Ok(vec![CounterEvent::Incremented(Incremented { counter_id: "c".into(), by: *by, note: note() })])
    }
    fn apply(&mut self, CounterEvent::Incremented(e): &CounterEvent) {
        self.total += e.by;
        self.events += 1;
    }
}

/// ~100 bytes of text, so an envelope is ~300 bytes, as the seeds' events are.
fn note() -> String {
    "x".repeat(100)
}

fn new_event(stream: &str, n: u64) -> NewEvent {
    NewEvent::new(&Envelope::new("bench", Incremented { counter_id: stream.into(), by: n, note: note() }))
        .expect("encode")
}

/// Runs `clients` loops of `transaction(client, n)` for `duration`; transactions per second.
async fn rate<F, Fut>(clients: usize, duration: Duration, transaction: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let (deadline, started) = (Instant::now() + duration, Instant::now());
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (transaction, done) = (transaction.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    transaction(client, n).await;
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Median of `runs` timings of `f`, in seconds.
async fn median_secs<F, Fut>(runs: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        f().await;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

struct Report(Vec<(String, String)>);

impl Report {
    fn row(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let (what, value) = (what.into(), value.into());
        println!("{what}: {value}");
        self.0.push((what, value));
    }
}

/// The append, load and catch-up measurements common to both backends; `raw_*` are the
/// backend's baselines.
#[allow(clippy::too_many_arguments)]
async fn measure<S: EventStore + Clone>(
    backend: &str,
    store: S,
    clients: &[usize],
    report: &mut Report,
    raw_insert: impl Fn(usize, usize) -> std::pin::Pin<Box<dyn Future<Output = f64>>>,
    raw_tail: impl Fn(String, u64) -> std::pin::Pin<Box<dyn Future<Output = ()>>>,
    raw_replay: impl Fn(String) -> std::pin::Pin<Box<dyn Future<Output = ()>>>,
    raw_scan: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = usize>>>,
) {
    let seconds = Duration::from_secs(5);
    for &c in clients {
        for events in [1usize, 10] {
            let baseline = raw_insert(c, events).await;
            let s = store.clone();
            let appended = rate(c, seconds, move |client, n| {
                let s = s.clone();
                async move {
                    let stream = format!("append{events}x{c}-{client}");
                    let expected =
                        if n == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(n * events as u64 - 1) };
                    let batch = (0..events).map(|i| new_event(&stream, i as u64)).collect();
                    s.append(&stream, expected, batch).await.expect("append");
                }
            })
            .await;
            report.row(
                format!("{backend} append of {events} event(s) per transaction, {c} client(s)"),
                format!(
                    "{appended:.0} tx/s vs {baseline:.0} bare {events}-row INSERT tx/s: {:.2}x",
                    appended / baseline
                ),
            );
        }
    }
    // One aggregate of 10,000 events, a snapshot every 100.
    let counters: Repository<S, Counter> = Repository::new(store.clone()).snapshot_every(100);
    let stream = "counter-big".to_string();
    for chunk in 0..100u64 {
        let batch: Vec<NewEvent> = (0..100).map(|i| new_event(&stream, chunk * 100 + i)).collect();
        let expected = if chunk == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(chunk * 100 - 1) };
        store.append(&stream, expected, batch).await.expect("append");
    }
    counters.snapshot("big").await.expect("a snapshot at 9,999, as every 100 would have taken");
    counters.execute("big", &1).await.expect("one more event after it");
    let loaded = counters.load("big").await.expect("load");
    assert_eq!(loaded.state.events, 10_001);
    let load = median_secs(21, || async { counters.load("big").await.map(drop).expect("load") }).await;
    let tail = median_secs(21, || raw_tail(stream.clone(), 9_900)).await;
    report.row(
        format!("{backend} aggregate load, 10,001 events, snapshot every 100"),
        format!("{:.2} ms vs raw read of 100 rows {:.2} ms: {:.2}x the time", load * 1e3, tail * 1e3, load / tail),
    );
    let replay =
        median_secs(5, || async { counters.load_at_version("big", 10_000).await.map(drop).expect("replay") }).await;
    let raw = median_secs(5, || raw_replay(stream.clone())).await;
    report.row(
        format!("{backend} full replay of 10,001 events"),
        format!(
            "{:.1} ms vs raw SELECT + envelope decode {:.1} ms: {:.2}x the speed",
            replay * 1e3,
            raw * 1e3,
            raw / replay
        ),
    );
    // Catch-up over everything stored so far.
    let total = raw_scan().await;
    let catch_up = median_secs(3, || {
        let store = store.clone();
        async move {
            let mut subscription = Subscription::new(store, Default::default(), SubscriptionFilter::all()).batch(1_000);
            for _ in 0..total {
                subscription.try_next().await.expect("read").expect("an event");
            }
        }
    })
    .await;
    let scan = median_secs(3, || async { assert_eq!(raw_scan().await, total) }).await;
    report.row(
        format!("{backend} subscription catch-up of {total} events"),
        format!(
            "{:.0} events/s vs raw keyset SELECT {:.0} rows/s: {:.2}x",
            total as f64 / catch_up,
            total as f64 / scan,
            scan / catch_up
        ),
    );
}

async fn sqlite(report: &mut Report) {
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(herald::outbox::sqlite_options(dir.path().join("bench.db")))
        .await
        .expect("sqlite");
    sqlx::query("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT, payload BLOB)")
        .execute(&pool)
        .await
        .expect("table");
    let store = SqliteEventStore::new(pool.clone()).await.expect("store");
    let bytes = Arc::new(new_event("s", 0).payload().to_vec());
    let insert_pool = pool.clone();
    let raw_insert = move |clients: usize, events: usize| {
        let (pool, bytes) = (insert_pool.clone(), Arc::clone(&bytes));
        Box::pin(async move {
            rate(clients, Duration::from_secs(5), move |_, _| {
                let (pool, bytes) = (pool.clone(), Arc::clone(&bytes));
                async move {
                    let mut tx = pool.begin().await.expect("begin");
                    for _ in 0..events {
                        sqlx::query("INSERT INTO bench_rows (stream_id, payload) VALUES ('s', ?)")
                            .bind(bytes.as_slice())
                            .execute(&mut *tx)
                            .await
                            .expect("insert");
                    }
                    tx.commit().await.expect("commit");
                }
            })
            .await
        }) as std::pin::Pin<Box<dyn Future<Output = f64>>>
    };
    let (p1, p2, p3) = (pool.clone(), pool.clone(), pool.clone());
    measure(
        "SQLite",
        store,
        &[1],
        report,
        raw_insert,
        move |stream, from| {
            let pool = p1.clone();
            Box::pin(async move {
                let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT payload FROM herald_events WHERE stream_id = ? AND stream_version >= ? ORDER BY stream_version LIMIT 100",
                )
                .bind(stream)
                .bind(from as i64)
                .fetch_all(&pool)
                .await
                .expect("tail");
                assert_eq!(rows.len(), 100);
            })
        },
        move |stream| {
            let pool = p2.clone();
            Box::pin(async move {
                let rows: Vec<(Vec<u8>,)> =
                    sqlx::query_as("SELECT payload FROM herald_events WHERE stream_id = ? ORDER BY stream_version")
                        .bind(stream)
                        .fetch_all(&pool)
                        .await
                        .expect("replay");
                for (payload,) in rows {
                    let _: Envelope<serde_json::Value> = serde_json::from_slice(&payload).expect("envelope");
                }
            })
        },
        move || {
            let pool = p3.clone();
            Box::pin(async move {
                let (mut after, mut count) = (0i64, 0usize);
                loop {
                    let rows: Vec<(i64, Vec<u8>)> =
                        sqlx::query_as("SELECT id, payload FROM herald_events WHERE id > ? ORDER BY id LIMIT 1000")
                            .bind(after)
                            .fetch_all(&pool)
                            .await
                            .expect("scan");
                    let Some((last, _)) = rows.last() else { return count };
                    (after, count) = (*last, count + rows.len());
                }
            })
        },
    )
    .await;
}

fn pgbench(url: &str, script: &str, clients: usize) -> f64 {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("script.sql");
    std::fs::write(&path, script).expect("script");
    let output = std::process::Command::new("pgbench")
        .args(["-n", "-j", "2", "-M", "prepared", "-T", "5", "-c", &clients.to_string(), "-f"])
        .arg(&path)
        .arg(url)
        .output()
        .expect("pgbench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pgbench failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = ").and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()))
        .expect("a tps line")
}

async fn postgres(url: &str, report: &mut Report) {
    let admin = sqlx::PgPool::connect(url).await.expect("postgres");
    sqlx::query("DROP SCHEMA IF EXISTS herald_store_bench CASCADE").execute(&admin).await.expect("drop");
    sqlx::query("CREATE SCHEMA herald_store_bench").execute(&admin).await.expect("schema");
    admin.close().await;
    let schema_url = format!("{url}?options=-c%20search_path%3Dherald_store_bench");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(&schema_url).await.expect("pool");
    sqlx::query(
        "CREATE TABLE bench_rows (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, stream_id TEXT, payload BYTEA)",
    )
    .execute(&pool)
    .await
    .expect("table");
    let store = PostgresEventStore::new(pool.clone()).await.expect("store");
    let payload_len = new_event("s", 0).payload().len();
    let url = schema_url.clone();
    let raw_insert = move |clients: usize, events: usize| {
        let url = url.clone();
        Box::pin(async move {
            let rows = if events == 1 {
                format!(
                    "INSERT INTO bench_rows (stream_id, payload) VALUES ('s', convert_to(repeat('x', {payload_len}), 'UTF8'));\n"
                )
            } else {
                format!(
                    "INSERT INTO bench_rows (stream_id, payload) SELECT 's', convert_to(repeat('x', {payload_len}), 'UTF8') FROM generate_series(1, {events});\n"
                )
            };
            tokio::task::spawn_blocking(move || pgbench(&url, &format!("BEGIN;\n{rows}COMMIT;\n"), clients))
                .await
                .expect("pgbench")
        }) as std::pin::Pin<Box<dyn Future<Output = f64>>>
    };
    for clients in [1usize, 8] {
        let (pool, bytes) = (pool.clone(), Arc::new(new_event("s", 0).payload().to_vec()));
        let sqlx_rate = rate(clients, Duration::from_secs(5), move |_, _| {
            let (pool, bytes) = (pool.clone(), Arc::clone(&bytes));
            async move {
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query("INSERT INTO bench_rows (stream_id, payload) VALUES ('s', $1)")
                    .bind(bytes.as_slice())
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        })
        .await;
        report.row(
            format!("PostgreSQL bare 1-row INSERT transaction through sqlx (the store's client), {clients} client(s)"),
            format!("{sqlx_rate:.0} tx/s"),
        );
    }
    let (p1, p2, p3) = (pool.clone(), pool.clone(), pool.clone());
    measure(
        "PostgreSQL",
        store,
        &[1, 8],
        report,
        raw_insert,
        move |stream, from| {
            let pool = p1.clone();
            Box::pin(async move {
                let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT payload FROM herald_events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT 100",
                )
                .bind(stream)
                .bind(from as i64)
                .fetch_all(&pool)
                .await
                .expect("tail");
                assert_eq!(rows.len(), 100);
            })
        },
        move |stream| {
            let pool = p2.clone();
            Box::pin(async move {
                let rows: Vec<(Vec<u8>,)> =
                    sqlx::query_as("SELECT payload FROM herald_events WHERE stream_id = $1 ORDER BY stream_version")
                        .bind(stream)
                        .fetch_all(&pool)
                        .await
                        .expect("replay");
                for (payload,) in rows {
                    let _: Envelope<serde_json::Value> = serde_json::from_slice(&payload).expect("envelope");
                }
            })
        },
        move || {
            let pool = p3.clone();
            Box::pin(async move {
                let (mut after, mut count) = ((0i64, 0i64), 0usize);
                loop {
                    let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
                        "SELECT txid::text::bigint AS t, id, payload FROM herald_events \
                         WHERE (txid, id) > ($1::text::xid8, $2) ORDER BY txid, id LIMIT 1000",
                    )
                    .bind(after.0.to_string())
                    .bind(after.1)
                    .fetch_all(&pool)
                    .await
                    .expect("scan");
                    let Some((t, id, _)) = rows.last() else { return count };
                    (after, count) = ((*t, *id), count + rows.len());
                }
            })
        },
    )
    .await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut report = Report(Vec::new());
        sqlite(&mut report).await;
        match std::env::var("HERALD_TEST_DATABASE_URL") {
            Ok(url) => postgres(&url, &mut report).await,
            Err(_) => println!("SKIPPED PostgreSQL: HERALD_TEST_DATABASE_URL is not set"),
        }
        println!("\n| measurement | result |\n|---|---|");
        for (what, value) in report.0 {
            println!("| {what} | {value} |");
        }
    });
}
