//! The outbox against its database's own ceilings, in the same run, on this machine:
//!
//! - relay throughput: N rows already committed, one relay publishing them all to an
//!   in-process broker (page-cache durability), against draining the same rows with
//!   `FOR UPDATE SKIP LOCKED` batches of 100 (pgbench, 1 and 4 clients) — the fastest a
//!   client can take rows out of the database;
//! - the write side: a one-row business transaction with and without an outbox row
//!   (1 and 16 clients), beside pgbench's plain 1-row and 100-row insert rates;
//! - commit-to-ack latency at 1,000 events/s: from just before the writer's COMMIT to the
//!   relay's acknowledgement reaching the bench.
//!
//! The same shapes on SQLite (WAL, synchronous=FULL) measured with sqlx. PostgreSQL runs when
//! HERALD_TEST_DATABASE_URL is set (scripts/postgres-test-db prints one) and pgbench is on
//! the PATH. `cargo bench -p herald --bench outbox`; HERALD_BENCH_OUTBOX_ROWS (default
//! 300,000) sets N.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::outbox::{Acked, OutboxStore, PostgresOutbox, Relay, RelayConfig, SqliteOutbox, sqlite_options};
use herald::testkit::TestBroker;
use herald::{Event, PublisherConfig};
use herald_broker::{BrokerConfig, Durability, ServerConfig};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    customer_id: String,
    amount_cents: u64,
}
herald::event!(OrderPlaced, type = "order.placed", version = 1, topic = "bench.outbox", key = order_id);

fn order(n: u64) -> OrderPlaced {
    OrderPlaced {
        order_id: format!("order-{}", n % 1000),
        customer_id: format!("customer-{}", n % 97),
        amount_cents: n,
    }
}

/// A row as the SQLite drain baseline reads it: id, event id, topic, key, headers, payload.
type DrainedRow = (i64, String, String, Option<String>, String, Vec<u8>);

/// One measured line of the summary.
struct Row {
    what: String,
    value: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `clients` loops of `transaction` for `duration`; transactions per second.
async fn rate<F, Fut>(clients: usize, duration: Duration, transaction: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (transaction, done) = (transaction.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut n = client as u64 * 1_000_000_000;
            while Instant::now() < deadline {
                transaction(n).await;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn relay_config() -> RelayConfig {
    RelayConfig { poll_interval: Duration::from_millis(20), ..RelayConfig::default() }
}

/// Starts a relay reporting acknowledgements; returns its stop handle and task.
fn start_relay<S: OutboxStore>(
    store: S,
    bootstrap: &str,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>, tokio::sync::mpsc::UnboundedReceiver<Acked>) {
    let (tx, acked) = tokio::sync::mpsc::unbounded_channel();
    let publisher = PublisherConfig::default().brokers(bootstrap).client_id("bench-relay");
    let relay = Relay::new(store, publisher, relay_config()).observe(tx);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        relay
            .run(async move {
                let _ = stopped.await;
            })
            .await
            .expect("relay");
    });
    (stop, task, acked)
}

/// Publishes `rows` committed rows with one relay; events/s from start to the last ack.
async fn relay_throughput<S: OutboxStore>(store: S, bootstrap: &str, rows: u64) -> f64 {
    let started = Instant::now();
    let (stop, task, mut acked) = start_relay(store, bootstrap);
    let mut published = 0u64;
    while published < rows {
        let batch = acked.recv().await.expect("relay running");
        published += batch.events.len() as u64;
    }
    let rate = published as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(());
    task.await.expect("relay task");
    rate
}

/// Writes one event per transaction at `per_second` (4 writers) for `duration` with a
/// relay running; commit-to-ack latencies in ms (p50, p99, max) and the achieved rate.
/// The report row of a `latency` measurement.
fn latency_row(backend: &str, [p50, p99, max, achieved]: [f64; 4]) -> Row {
    Row {
        what: format!("{backend} commit-to-ack at 1k events/s (achieved {achieved:.0}/s)"),
        value: format!("p50 {p50:.1} ms, **p99 {p99:.1} ms**, max {max:.1} ms"),
    }
}

async fn latency<S, F, Fut>(store: S, bootstrap: &str, per_second: u64, duration: Duration, write: F) -> [f64; 4]
where
    S: OutboxStore,
    F: Fn(u64, Arc<Mutex<HashMap<Uuid, Instant>>>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (stop, task, mut acked) = start_relay(store, bootstrap);
    let started_at: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let writers = 4;
    let mut tasks = Vec::new();
    let total = per_second * duration.as_secs();
    for w in 0..writers {
        let (write, started_at) = (write.clone(), Arc::clone(&started_at));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) * writers as u32 / per_second as u32);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0..total / writers {
                tick.tick().await;
                write(n * writers + w, Arc::clone(&started_at)).await;
            }
        }));
    }
    let began = Instant::now();
    let mut latencies = Vec::new();
    while (latencies.len() as u64) < total {
        let batch = tokio::time::timeout(Duration::from_secs(60), acked.recv()).await.expect("acks").expect("relay");
        let now = Instant::now();
        let started_at = started_at.lock().expect("map");
        for (id, _) in &batch.events {
            if let Some(at) = started_at.get(id) {
                latencies.push(now.duration_since(*at).as_secs_f64() * 1000.0);
            }
        }
    }
    let achieved = latencies.len() as f64 / began.elapsed().as_secs_f64();
    for t in tasks {
        t.await.expect("writer");
    }
    let _ = stop.send(());
    task.await.expect("relay task");
    latencies.sort_by(f64::total_cmp);
    [percentile(&latencies, 0.5), percentile(&latencies, 0.99), *latencies.last().unwrap_or(&f64::NAN), achieved]
}

async fn sqlite(bootstrap: &str, rows: u64, out: &mut Vec<Row>) {
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(sqlite_options(dir.path().join("bench.db")))
        .await
        .expect("sqlite");
    let outbox = SqliteOutbox::new(pool.clone()).await.expect("outbox").source("bench");
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount INTEGER NOT NULL)")
        .execute(&pool)
        .await
        .expect("orders");
    let run = Duration::from_secs(5);
    let p = pool.clone();
    let plain = rate(1, run, move |n| {
        let p = p.clone();
        async move {
            let mut tx = p.begin().await.expect("begin");
            sqlx::query("INSERT INTO orders (customer, amount) VALUES ('c', ?)")
                .bind(n as i64)
                .execute(&mut *tx)
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
        }
    })
    .await;
    let p = pool.clone();
    let second = rate(1, run, move |n| {
        let p = p.clone();
        async move {
            let mut tx = p.begin().await.expect("begin");
            for _ in 0..2 {
                sqlx::query("INSERT INTO orders (customer, amount) VALUES ('c', ?)")
                    .bind(n as i64)
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
            }
            tx.commit().await.expect("commit");
        }
    })
    .await;
    let (p, o) = (pool.clone(), outbox.clone());
    let with_outbox = rate(1, run, move |n| {
        let (p, o) = (p.clone(), o.clone());
        async move {
            let mut tx = p.begin().await.expect("begin");
            sqlx::query("INSERT INTO orders (customer, amount) VALUES ('c', ?)")
                .bind(n as i64)
                .execute(&mut *tx)
                .await
                .expect("insert");
            o.enqueue(&mut tx, order(n)).await.expect("enqueue");
            tx.commit().await.expect("commit");
        }
    })
    .await;
    let p = pool.clone();
    let hundred = 100.0
        * rate(1, run, move |n| {
            let p = p.clone();
            async move {
                let mut tx = p.begin().await.expect("begin");
                for i in 0..100 {
                    sqlx::query("INSERT INTO orders (customer, amount) VALUES ('c', ?)")
                        .bind((n * 100 + i) as i64)
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                }
                tx.commit().await.expect("commit");
            }
        })
        .await;
    out.push(Row {
        what: "SQLite 1-row business transaction, 1 client (baseline)".into(),
        value: format!("{plain:.0} tx/s"),
    });
    out.push(Row {
        what: "  + a second 1-row business insert (the floor for any added statement), 1 client".into(),
        value: format!("{second:.0} tx/s = **{:.2}** (costs {:.0} %)", second / plain, (1.0 - second / plain) * 100.0),
    });
    out.push(Row {
        what: "  + `enqueue`, 1 client".into(),
        value: format!(
            "{with_outbox:.0} tx/s = **{:.2}** (costs {:.0} %)",
            with_outbox / plain,
            (1.0 - with_outbox / plain) * 100.0
        ),
    });
    out.push(Row { what: "SQLite 100-row insert transactions".into(), value: format!("{hundred:.0} rows/s") });

    // N committed rows copied from a real one (what enqueue writes), then drained two ways.
    sqlx::query("DELETE FROM herald_outbox").execute(&pool).await.expect("empty");
    let mut tx = pool.begin().await.expect("begin");
    outbox.enqueue(&mut tx, order(0)).await.expect("template");
    tx.commit().await.expect("commit");
    let fill = "INSERT INTO herald_outbox (event_id, topic, key, headers, payload, created_ms) \
                WITH RECURSIVE g(n) AS (SELECT 2 UNION ALL SELECT n + 1 FROM g WHERE n < ?) \
                SELECT lower(hex(randomblob(16))), t.topic, 'order-' || (g.n % 1000), t.headers, t.payload, t.created_ms \
                FROM g, (SELECT * FROM herald_outbox ORDER BY id DESC LIMIT 1) t";
    sqlx::query(fill).bind(rows as i64).execute(&pool).await.expect("fill");
    sqlx::query(
        "CREATE TABLE drain (id INTEGER PRIMARY KEY, event_id TEXT, topic TEXT, key TEXT, headers TEXT, payload BLOB, created_ms INTEGER)",
    )
    .execute(&pool)
    .await
    .expect("drain table");
    sqlx::query("INSERT INTO drain SELECT * FROM herald_outbox").execute(&pool).await.expect("copy");
    let started = Instant::now();
    let mut drained = 0u64;
    loop {
        let mut tx = pool.begin().await.expect("begin");
        let batch: Vec<DrainedRow> =
            sqlx::query_as("SELECT id, event_id, topic, key, headers, payload FROM drain ORDER BY id LIMIT 100")
                .fetch_all(&mut *tx)
                .await
                .expect("select");
        let Some(last) = batch.last().map(|r| r.0) else { break };
        sqlx::query("DELETE FROM drain WHERE id <= ?").bind(last).execute(&mut *tx).await.expect("delete");
        tx.commit().await.expect("commit");
        drained += batch.len() as u64;
    }
    let drain = drained as f64 / started.elapsed().as_secs_f64();
    let relay = relay_throughput(outbox.clone(), bootstrap, rows).await;
    out.push(Row {
        what: format!("SQLite drain ceiling: SELECT 100 + DELETE per transaction, {drained} rows"),
        value: format!("{drain:.0} rows/s"),
    });
    out.push(Row {
        what: format!("SQLite relay: {rows} committed rows to the broker"),
        value: format!("{relay:.0} events/s = **{:.2}** of the drain", relay / drain),
    });
    let (p, o) = (pool.clone(), outbox.clone());
    let latencies = latency(outbox, bootstrap, 1000, Duration::from_secs(10), move |n, started| {
        let (p, o) = (p.clone(), o.clone());
        async move {
            let mut tx = p.begin().await.expect("begin");
            let id = o.enqueue(&mut tx, order(n)).await.expect("enqueue");
            started.lock().expect("map").insert(id, Instant::now());
            tx.commit().await.expect("commit");
        }
    })
    .await;
    out.push(latency_row("SQLite", latencies));
}

fn pgbench(url: &str, script: &str, args: &[&str]) -> f64 {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("script.sql");
    std::fs::write(&path, script).expect("script");
    let output = std::process::Command::new("pgbench")
        // Prepared statements, as sqlx uses them.
        .args(["-n", "-j", "2", "-M", "prepared"])
        .args(args)
        .arg("-f")
        .arg(&path)
        .arg(url)
        .output()
        .expect("pgbench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pgbench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("tps = ").and_then(|rest| rest.split_whitespace().next()).and_then(|v| v.parse().ok())
        })
        .expect("a tps line")
}

async fn postgres(url: &str, bootstrap: &str, rows: u64, out: &mut Vec<Row>) {
    let admin = sqlx::PgPool::connect(url).await.expect("postgres");
    sqlx::query("DROP SCHEMA IF EXISTS herald_bench CASCADE").execute(&admin).await.expect("drop");
    sqlx::query("CREATE SCHEMA herald_bench").execute(&admin).await.expect("schema");
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .connect_with(options.options([("search_path", "herald_bench")]))
        .await
        .expect("pool");
    let outbox = PostgresOutbox::new(pool.clone()).await.expect("outbox").source("bench");
    sqlx::query("CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, customer TEXT NOT NULL, amount BIGINT NOT NULL)")
        .execute(&pool)
        .await
        .expect("orders");
    let run = Duration::from_secs(5);
    // The outbox row as pgbench writes it: the same sizes as what `enqueue` writes.
    let envelope = herald::Envelope::new("bench", order(1));
    let payload = String::from_utf8(envelope.to_json(1 << 20).expect("json")).expect("utf-8");
    let headers = format!(
        r#"[["event-type","order.placed"],["event-version","1"],["content-type","application/json"],["event-id","{}"]]"#,
        envelope.event_id
    );
    let outbox_insert = format!(
        "INSERT INTO herald_bench.herald_outbox (event_id, topic, key, headers, payload, created_ms) \
         VALUES (gen_random_uuid(), 'bench.outbox', 'order-1', '{headers}', convert_to('{payload}', 'UTF8'), 0);\n"
    );
    let business = "INSERT INTO herald_bench.orders (customer, amount) VALUES ('c', 1);\n";
    for clients in [1usize, 16] {
        let c = clients.to_string();
        let pgbench_args = ["-T", "5", "-c", c.as_str()];
        let ins1 = pgbench(url, business, &pgbench_args);
        let db_plain = pgbench(url, &format!("BEGIN;\n{business}COMMIT;\n"), &pgbench_args);
        let db_second = pgbench(url, &format!("BEGIN;\n{business}{business}COMMIT;\n"), &pgbench_args);
        let db_outbox = pgbench(url, &format!("BEGIN;\n{business}{outbox_insert}COMMIT;\n"), &pgbench_args);
        let db_notify = pgbench(
            url,
            &format!("BEGIN;\n{business}{outbox_insert}SELECT pg_notify('herald_outbox', '');\nCOMMIT;\n"),
            &pgbench_args,
        );
        let p = pool.clone();
        let plain = rate(clients, run, move |n| {
            let p = p.clone();
            async move {
                let mut tx = p.begin().await.expect("begin");
                sqlx::query("INSERT INTO orders (customer, amount) VALUES ('c', $1)")
                    .bind(n as i64)
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        })
        .await;
        let mut with = Vec::new();
        for notify in [true, false] {
            let (p, o) = (pool.clone(), outbox.clone().notify(notify));
            with.push(
                rate(clients, run, move |n| {
                    let (p, o) = (p.clone(), o.clone());
                    async move {
                        let mut tx = p.begin().await.expect("begin");
                        sqlx::query("INSERT INTO orders (customer, amount) VALUES ('c', $1)")
                            .bind(n as i64)
                            .execute(&mut *tx)
                            .await
                            .expect("insert");
                        o.enqueue(&mut tx, order(n)).await.expect("enqueue");
                        tx.commit().await.expect("commit");
                    }
                })
                .await,
            );
        }
        let cost = |with: f64, without: f64| {
            format!("{with:.0} tx/s = **{:.2}** (costs {:.0} %)", with / without, (1.0 - with / without) * 100.0)
        };
        out.push(Row {
            what: format!("PostgreSQL pgbench 1-row insert (autocommit), {clients} client(s)"),
            value: format!("{ins1:.0} tx/s"),
        });
        out.push(Row {
            what: format!("pgbench BEGIN / 1-row insert / COMMIT, {clients} client(s) (database baseline)"),
            value: format!("{db_plain:.0} tx/s"),
        });
        out.push(Row {
            what: format!(
                "  + a second 1-row business insert (the floor for any added statement), {clients} client(s)"
            ),
            value: cost(db_second, db_plain),
        });
        out.push(Row { what: format!("  + the outbox row, {clients} client(s)"), value: cost(db_outbox, db_plain) });
        out.push(Row {
            what: format!("  + the outbox row and NOTIFY, {clients} client(s)"),
            value: cost(db_notify, db_plain),
        });
        out.push(Row {
            what: format!("sqlx BEGIN / 1-row insert / COMMIT, {clients} client(s) (application baseline)"),
            value: format!("{plain:.0} tx/s"),
        });
        out.push(Row {
            what: format!("  + `enqueue` (default: no NOTIFY), {clients} client(s)"),
            value: cost(with[1], plain),
        });
        out.push(Row {
            what: format!("  + `enqueue` with `.notify(true)`, {clients} client(s)"),
            value: cost(with[0], plain),
        });
    }
    let ins100 = 100.0
        * pgbench(
            url,
            "INSERT INTO herald_bench.orders (customer, amount) SELECT 'c', g FROM generate_series(1, 100) g;\n",
            &["-T", "5", "-c", "4"],
        );
    out.push(Row { what: "PostgreSQL pgbench 100-row insert, 4 clients".into(), value: format!("{ins100:.0} rows/s") });

    // N committed rows copied from a real one, the relay's cursor at the start of them.
    sqlx::query("TRUNCATE herald_outbox").execute(&pool).await.expect("truncate");
    let mut tx = pool.begin().await.expect("begin");
    outbox.enqueue(&mut tx, order(0)).await.expect("template");
    tx.commit().await.expect("commit");
    sqlx::query(
        "INSERT INTO herald_outbox (event_id, topic, key, headers, payload, created_ms) \
         SELECT gen_random_uuid(), t.topic, 'order-' || (g % 1000), t.headers, t.payload, t.created_ms \
         FROM generate_series(2, $1) g, (SELECT * FROM herald_outbox LIMIT 1) t",
    )
    .bind(rows as i64)
    .execute(&pool)
    .await
    .expect("fill");
    sqlx::query("UPDATE herald_outbox_relay SET cursor_txid = '0', cursor_id = 0")
        .execute(&pool)
        .await
        .expect("cursor");
    sqlx::query(
        "CREATE TABLE drain (id BIGINT PRIMARY KEY, txid XID8, event_id UUID, topic TEXT, key TEXT, headers TEXT, \
         payload BYTEA, created_ms BIGINT)",
    )
    .execute(&pool)
    .await
    .expect("drain");
    let drain_script = "WITH c AS (SELECT id FROM herald_bench.drain ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) \
                        DELETE FROM herald_bench.drain o USING c WHERE o.id = c.id \
                        RETURNING o.id, o.event_id, o.topic, o.key, o.headers, o.payload;\n";
    let mut drains = Vec::new();
    for clients in [1u64, 4] {
        sqlx::query(
            "INSERT INTO drain SELECT id, txid, event_id, topic, key, headers, payload, created_ms FROM herald_outbox",
        )
        .execute(&pool)
        .await
        .expect("copy");
        sqlx::query("VACUUM ANALYZE herald_bench.drain").execute(&admin).await.expect("vacuum");
        let per_client = (rows / 100 / clients).to_string();
        drains.push(100.0 * pgbench(url, drain_script, &["-c", &clients.to_string(), "-t", &per_client]));
        sqlx::query("TRUNCATE drain").execute(&pool).await.expect("truncate");
    }
    sqlx::query("VACUUM ANALYZE herald_bench.herald_outbox").execute(&admin).await.expect("vacuum");
    let relay = relay_throughput(outbox.clone(), bootstrap, rows).await;
    out.push(Row {
        what: format!("PostgreSQL drain ceiling: pgbench SKIP LOCKED batch 100, {rows} rows, 1 / 4 clients"),
        value: format!("{:.0} / {:.0} rows/s", drains[0], drains[1]),
    });
    out.push(Row {
        what: format!("PostgreSQL relay: {rows} committed rows to the broker"),
        value: format!(
            "{relay:.0} events/s = **{:.2}** of the 4-client drain ({:.2} of the 1-client)",
            relay / drains[1],
            relay / drains[0]
        ),
    });
    let (p, o) = (pool.clone(), outbox.clone());
    let latencies = latency(outbox, bootstrap, 1000, Duration::from_secs(10), move |n, started| {
        let (p, o) = (p.clone(), o.clone());
        async move {
            let mut tx = p.begin().await.expect("begin");
            let id = o.enqueue(&mut tx, order(n)).await.expect("enqueue");
            started.lock().expect("map").insert(id, Instant::now());
            tx.commit().await.expect("commit");
        }
    })
    .await;
    out.push(latency_row("PostgreSQL", latencies));
    pool.close().await;
    sqlx::query("DROP SCHEMA herald_bench CASCADE").execute(&admin).await.expect("drop");
}

fn main() {
    let rows: u64 = std::env::var("HERALD_BENCH_OUTBOX_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(300_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let mut config = BrokerConfig::default();
        config.groups.initial_rebalance_delay_ms = 0;
        config.durability = Durability::Interval(Duration::from_secs(1));
        let broker = TestBroker::start_with(config, ServerConfig::default()).await;
        let bootstrap = broker.bootstrap();
        println!("outbox bench: {rows} rows, topic {}, broker in-process (page-cache durability)", OrderPlaced::TOPIC);
        let mut out = Vec::new();
        sqlite(&bootstrap, rows, &mut out).await;
        match std::env::var("HERALD_TEST_DATABASE_URL") {
            Ok(url) => postgres(&url, &bootstrap, rows, &mut out).await,
            Err(_) => println!("SKIPPED PostgreSQL: HERALD_TEST_DATABASE_URL is not set"),
        }
        println!("\n| measurement | result |\n|---|---|");
        for row in out {
            println!("| {} | {} |", row.what, row.value);
        }
    });
}
