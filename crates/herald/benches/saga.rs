//! Saga steps per second against a raw transaction, in the same run, on this machine:
//! `SagaRunner::handle` of one event per step (inbox claim, instance load, version-checked
//! state update, history, one outbox row, in one transaction), four clients on their own
//! instances; against a raw transaction with the same three writes — inbox claim,
//! version-checked state update, outbox row — by the same four clients through sqlx.
//!
//! PostgreSQL runs when HERALD_TEST_DATABASE_URL is set; SQLite (WAL, synchronous=FULL)
//! always. `cargo bench -p herald --bench saga`.

use std::sync::Arc;
use std::time::Instant;

use herald::event;
use herald::saga::{Decision, Incoming, PostgresSagas, Saga, SagaConfig, SagaDb, SagaRunner, SqliteSagas};
use serde::{Deserialize, Serialize};

const CLIENTS: usize = 4;
const STEPS: usize = 500;
const RUNS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tick {
    id: String,
    n: u64,
}
event!(Tick, type = "bench.tick", version = 1, key = id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ack {
    id: String,
    n: u64,
    note: String,
}
event!(Ack, type = "bench.ack", version = 1, key = id);

/// Counts ticks and acknowledges each.
struct Counter;

impl Saga for Counter {
    type State = u64;
    fn name(&self) -> &str {
        "counter"
    }
    fn steps(&self) -> &[&str] {
        &["count"]
    }
    fn starts(&self) -> &[&str] {
        &["bench.tick"]
    }
    fn handles(&self) -> &[&str] {
        &["bench.tick"]
    }
    fn instance_of(&self, event: &Incoming) -> Option<String> {
        event.field("id")
    }
    fn on_event(&self, count: &u64, event: &Incoming, _now_ms: i64) -> Decision<u64> {
        let n = event.data::<Tick>().map(|t| t.n).unwrap_or(0);
        let ack = Ack { id: event.field("id").unwrap_or_default(), n, note: "x".repeat(100) };
        Decision::to(count + 1).send(ack).step("count")
    }
    fn on_deadline(&self, count: &u64, _name: &str, _now_ms: i64) -> Decision<u64> {
        Decision::to(*count)
    }
}

fn tick(id: &str, n: u64) -> Incoming {
    Incoming::new(&Tick { id: id.to_string(), n }, None).expect("encode")
}

/// Steps per second through the runner, on `run`'s own instances.
async fn through_runner<D: SagaDb>(db: D, run: usize) -> f64 {
    let runner = Arc::new(SagaRunner::new(db, Counter, SagaConfig::default()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let runner = Arc::clone(&runner);
            tokio::spawn(async move {
                let id = format!("r{run}-c{client}");
                for n in 0..STEPS as u64 {
                    runner.handle(&tick(&id, n)).await.expect("handled");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
    (CLIENTS * STEPS) as f64 / started.elapsed().as_secs_f64()
}

/// The raw transaction's statements, with `$n` placeholders and the backend's outbox
/// insert.
struct Raw {
    claim: &'static str,
    update: &'static str,
    insert: &'static str,
    enqueue: &'static str,
}

const RAW: Raw = Raw {
    claim: "INSERT INTO herald_inbox (group_id, event_id, recorded_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    update: "UPDATE raw_sagas SET version = version + 1, state = $3 WHERE saga = $1 AND id = $2 AND version = $4",
    insert: "INSERT INTO raw_sagas (saga, id, version, state) VALUES ($1, $2, 0, '0')",
    enqueue: "INSERT INTO herald_outbox (event_id, topic, key, headers, payload, created_ms) \
              VALUES ($1, $2, $3, $4, $5, $6)",
};

/// A payload the size of the runner's outbox rows.
fn payload() -> Vec<u8> {
    let ack = Ack { id: "r0-c0".into(), n: 1, note: "x".repeat(100) };
    herald::Envelope::new("counter", ack).to_json(1 << 20).expect("encode")
}

macro_rules! raw_steps {
    ($pool:expr, $sql:expr, $run:expr) => {{
        let (pool, run) = ($pool, $run);
        let started = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let (id, body) = (format!("raw{run}-c{client}"), payload());
                    sqlx::query($sql(RAW.insert)).bind("counter").bind(&id).execute(&pool).await.expect("insert");
                    for n in 0..STEPS as i64 {
                        let mut tx = pool.begin().await.expect("begin");
                        let event_id = uuid::Uuid::now_v7().hyphenated().to_string();
                        sqlx::query($sql(RAW.claim))
                            .bind("herald.saga.counter")
                            .bind(&event_id)
                            .bind(n)
                            .execute(&mut *tx)
                            .await
                            .expect("claim");
                        let done = sqlx::query($sql(RAW.update))
                            .bind("counter")
                            .bind(&id)
                            .bind((n + 1).to_string())
                            .bind(n)
                            .execute(&mut *tx)
                            .await
                            .expect("update");
                        assert_eq!(done.rows_affected(), 1);
                        sqlx::query($sql(RAW.enqueue))
                            .bind(uuid::Uuid::now_v7().hyphenated().to_string())
                            .bind("bench.ack")
                            .bind(&id)
                            .bind("[]")
                            .bind(&body)
                            .bind(n)
                            .execute(&mut *tx)
                            .await
                            .expect("enqueue");
                        tx.commit().await.expect("commit");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("client");
        }
        (CLIENTS * STEPS) as f64 / started.elapsed().as_secs_f64()
    }};
}

const RAW_TABLE: &str =
    "CREATE TABLE raw_sagas (saga TEXT, id TEXT, version BIGINT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (saga, id))";

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn report(backend: &str, runner: Vec<f64>, raw: Vec<f64>) {
    eprintln!("{backend}: runner {runner:.0?} raw {raw:.0?} steps/s");
    let (runner, raw) = (median(runner), median(raw));
    println!(
        "| {backend} saga steps, {CLIENTS} clients | {runner:.0} vs raw transaction {raw:.0} steps/s: {:.2}x |",
        runner / raw
    );
}

fn lite(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.replace('$', "?"))
}

fn pg(sql: &str) -> sqlx::AssertSqlSafe<String> {
    // The outbox's event id column is a uuid on PostgreSQL.
    sqlx::AssertSqlSafe(sql.replace("VALUES ($1, $2, $3, $4, $5, $6)", "VALUES ($1::uuid, $2, $3, $4, $5, $6)"))
}

async fn sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let options = herald::outbox::sqlite_options(dir.path().join("bench.db"));
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(4).connect_with(options).await.expect("sqlite");
    let db = SqliteSagas::new(pool.clone()).await.expect("sagas");
    sqlx::query(RAW_TABLE).execute(&pool).await.expect("raw table");
    let (mut runner, mut raw) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        runner.push(through_runner(db.clone(), run).await);
        raw.push(raw_steps!(pool.clone(), lite, run));
    }
    report("SQLite", runner, raw);
}

async fn postgres(url: &str) {
    let admin = sqlx::PgPool::connect(url).await.expect("postgres");
    let schema = format!("bench_saga_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.expect("schema");
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .expect("pool");
    let db = PostgresSagas::new(pool.clone()).await.expect("sagas");
    sqlx::query(RAW_TABLE).execute(&pool).await.expect("raw table");
    let (mut runner, mut raw) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        runner.push(through_runner(db.clone(), run).await);
        raw.push(raw_steps!(pool.clone(), pg, run));
    }
    report("PostgreSQL", runner, raw);
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
