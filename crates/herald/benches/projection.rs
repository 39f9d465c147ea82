//! Projection throughput against a raw loop, in the same run, on this machine: a runner
//! folding 5,000 stored events (~300-byte envelopes over 50 streams) into a read model in
//! batches of 100, one upsert per event, with its checkpoint in each batch's transaction;
//! against a loop that reads the same batches from the store and applies the same upserts
//! in the same batched transactions, with no checkpoint, no lag and no parking.
//!
//! PostgreSQL runs when HERALD_TEST_DATABASE_URL is set; SQLite (WAL, synchronous=FULL)
//! always. `cargo bench -p herald --bench projection`.

use std::time::Instant;

use herald::outbox::OutboxStore;
use herald::projection::{
    ApplyFuture, PostgresProjections, Projection, ProjectionDb, ProjectionRunner, RunnerConfig, SqliteProjections,
    Table, versioned,
};
use herald::store::{
    EventStore, ExpectedVersion, NewEvent, Position, PostgresEventStore, SqliteEventStore, StoredEvent,
};
use herald::{Envelope, event};
use serde::{Deserialize, Serialize};

const EVENTS: u64 = 5_000;
const BATCH: usize = 100;
const RUNS: usize = 7;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Incremented {
    counter_id: String,
    by: i64,
    note: String,
}
event!(Incremented, type = "counter.incremented", version = 1, key = counter_id);

/// Count and sum per stream.
struct Tally {
    name: String,
    tables: [Table; 1],
    upsert: String,
}

const CREATE: &str = "CREATE TABLE {table} (stream TEXT PRIMARY KEY, events BIGINT NOT NULL, total BIGINT NOT NULL)";

/// The upsert into `table`, with `$n` placeholders (both backends take them in order).
fn upsert(table: &str) -> String {
    format!(
        "INSERT INTO {table} (stream, events, total) VALUES ($1, 1, $2) ON CONFLICT (stream) DO UPDATE \
         SET events = {table}.events + 1, total = {table}.total + excluded.total"
    )
}

fn amount(event: &StoredEvent) -> Result<i64, String> {
    Ok(event.decode::<Incremented>(1 << 20).map_err(|e| e.to_string())?.data.by)
}

macro_rules! tally_projection {
    ($db:ty) => {
        impl Projection<$db> for Tally {
            fn name(&self) -> &str {
                &self.name
            }
            fn tables(&self) -> &[Table] {
                &self.tables
            }
            fn apply<'a>(&'a self, event: &'a StoredEvent, tx: &'a mut <$db as ProjectionDb>::Tx) -> ApplyFuture<'a> {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(self.upsert.as_str()))
                        .bind(&event.stream_id)
                        .bind(amount(event)?)
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(())
                })
            }
        }
    };
}
tally_projection!(SqliteProjections);
tally_projection!(PostgresProjections);

async fn fill<S: EventStore>(store: &S) {
    for chunk in 0..EVENTS / 10 {
        let stream = format!("counter-{}", chunk % 50);
        let events = (0..10)
            .map(|n| {
                let data =
                    Incremented { counter_id: stream.clone(), by: (chunk * 10 + n) as i64, note: "x".repeat(100) };
                NewEvent::new(&Envelope::new("bench", data)).expect("encode")
            })
            .collect();
        store.append(&stream, ExpectedVersion::Any, events).await.expect("append");
    }
}

/// Seconds for a runner to fold every event into a fresh projection `name`.
async fn projected<S, D>(store: &S, db: &D, name: String) -> f64
where
    S: EventStore + OutboxStore + Clone,
    D: ProjectionDb,
    Tally: Projection<D>,
{
    // Each run's projection owns its own table (names are static: leak one per run).
    let table: &'static str = Box::leak(name.clone().into_boxed_str());
    let upsert = upsert(&versioned(table, 1));
    let tally = Tally { name, tables: [Table { name: table, create: CREATE }], upsert };
    let runner = ProjectionRunner::new(store.clone(), db.clone(), tally, RunnerConfig::default().batch(BATCH));
    let started = Instant::now();
    let state = runner.catch_up().await.expect("caught up");
    assert!(state.parked.is_none());
    started.elapsed().as_secs_f64()
}

/// The same with a raw loop into `table`: create it, then read a batch, upsert each event,
/// commit.
macro_rules! raw_loop {
    ($store:expr, $pool:expr, $table:expr) => {{
        let (store, pool, table) = ($store, $pool, $table);
        let started = Instant::now();
        sqlx::raw_sql(sqlx::AssertSqlSafe(CREATE.replace("{table}", &table))).execute(&pool).await.expect("table");
        let upsert = upsert(&table);
        let mut after = Position::default();
        loop {
            let events = store.read_all(after, BATCH).await.expect("read");
            let Some(last) = events.last() else { break };
            let mut tx = pool.begin().await.expect("begin");
            for event in &events {
                sqlx::query(sqlx::AssertSqlSafe(upsert.as_str()))
                    .bind(&event.stream_id)
                    .bind(amount(event).expect("decode"))
                    .execute(&mut *tx)
                    .await
                    .expect("upsert");
            }
            tx.commit().await.expect("commit");
            after = last.position;
        }
        started.elapsed().as_secs_f64()
    }};
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn report(backend: &str, projected: Vec<f64>, raw: Vec<f64>) {
    eprintln!("{backend}: projected {projected:.3?} raw {raw:.3?}");
    let (projected, raw) = (median(projected), median(raw));
    let rate = |secs: f64| EVENTS as f64 / secs;
    println!(
        "| {backend} projection, {EVENTS} events in batches of {BATCH} | {:.0} vs raw loop {:.0} events/s: {:.2}x |",
        rate(projected),
        rate(raw),
        raw / projected
    );
}

async fn sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let options = herald::outbox::sqlite_options(dir.path().join("bench.db"));
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(4).connect_with(options).await.expect("sqlite");
    let store = SqliteEventStore::new(pool.clone()).await.expect("store");
    let db = SqliteProjections::new(pool.clone()).await.expect("projections");
    fill(&store).await;
    let (mut p, mut r) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        // Alternate which goes first, so drift in the disk's speed falls on both.
        if run % 2 == 1 {
            r.push(raw_loop!(store.clone(), pool.clone(), format!("raw{run}")));
        }
        p.push(projected(&store, &db, format!("tally{run}")).await);
        let sql = format!("SELECT CAST(sum(events) AS BIGINT) FROM tally{run}");
        let folded: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.expect("count");
        assert_eq!(folded, EVENTS as i64, "every event folded in once");
        if run % 2 == 0 {
            r.push(raw_loop!(store.clone(), pool.clone(), format!("raw{run}")));
        }
    }
    report("SQLite", p, r);
}

async fn postgres(url: &str) {
    let admin = sqlx::PgPool::connect(url).await.expect("postgres");
    let schema = format!("bench_projection_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.expect("schema");
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .expect("pool");
    let store = PostgresEventStore::new(pool.clone()).await.expect("store");
    let db = PostgresProjections::new(pool.clone()).await.expect("projections");
    fill(&store).await;
    let (mut p, mut r) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        // Alternate which goes first, so drift in the disk's speed falls on both.
        if run % 2 == 1 {
            r.push(raw_loop!(store.clone(), pool.clone(), format!("raw{run}")));
        }
        p.push(projected(&store, &db, format!("tally{run}")).await);
        let sql = format!("SELECT CAST(sum(events) AS BIGINT) FROM tally{run}");
        let folded: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.expect("count");
        assert_eq!(folded, EVENTS as i64, "every event folded in once");
        if run % 2 == 0 {
            r.push(raw_loop!(store.clone(), pool.clone(), format!("raw{run}")));
        }
    }
    report("PostgreSQL", p, r);
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&admin).await.expect("drop");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("| measurement | result |\n|---|---|");
        sqlite().await;
        match std::env::var("HERALD_TEST_DATABASE_URL") {
            Ok(url) => postgres(&url).await,
            Err(_) => println!("SKIPPED PostgreSQL: HERALD_TEST_DATABASE_URL is not set"),
        }
    });
}
