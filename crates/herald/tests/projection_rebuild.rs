//! Zero-downtime rebuilds on SQLite and PostgreSQL: while writers keep appending and a
//! reader keeps querying the live view, version 2 of a projection builds beside version 1
//! and takes over; the reader never sees a partial or inconsistent model, the old runner
//! stops, the old tables are dropped after the grace period, and the new model is
//! complete. A reset then starts the live version over in place.

mod outbox_common;
mod projection_common;
mod store_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald::projection::{
    ApplyFuture, PostgresProjections, Projection, ProjectionControl, ProjectionDb, ProjectionRunner, RunnerConfig,
    SqliteProjections, Table, versioned,
};
use herald::store::{EventStore, StoredEvent};
use projection_common::{append, postgres, sqlite, wait_until};
use store_common::OrderPlaced;

/// Orders and totals per stream, and the same over all streams in the row `*`; version 2
/// also keeps the biggest order.
struct Summary {
    version: u32,
    upsert: String,
}

const V1: [Table; 1] = [Table {
    name: "summary",
    create: "CREATE TABLE {table} (stream TEXT PRIMARY KEY, orders BIGINT NOT NULL, total BIGINT NOT NULL)",
}];
const V2: [Table; 1] = [Table {
    name: "summary",
    create: "CREATE TABLE {table} (stream TEXT PRIMARY KEY, orders BIGINT NOT NULL, total BIGINT NOT NULL, \
             biggest BIGINT NOT NULL)",
}];

impl Summary {
    fn new(version: u32) -> Self {
        let t = versioned("summary", version);
        let upsert = if version == 1 {
            format!(
                "INSERT INTO {t} (stream, orders, total) VALUES ($1, 1, $2) ON CONFLICT (stream) DO UPDATE \
                 SET orders = {t}.orders + 1, total = {t}.total + excluded.total"
            )
        } else {
            format!(
                "INSERT INTO {t} (stream, orders, total, biggest) VALUES ($1, 1, $2, $2) ON CONFLICT (stream) \
                 DO UPDATE SET orders = {t}.orders + 1, total = {t}.total + excluded.total, biggest = CASE \
                 WHEN excluded.biggest > {t}.biggest THEN excluded.biggest ELSE {t}.biggest END"
            )
        };
        Self { version, upsert }
    }
}

macro_rules! summary_projection {
    ($db:ty) => {
        impl Projection<$db> for Summary {
            fn name(&self) -> &str {
                "summary"
            }
            fn version(&self) -> u32 {
                self.version
            }
            fn tables(&self) -> &[Table] {
                if self.version == 1 { &V1 } else { &V2 }
            }
            fn apply<'a>(&'a self, event: &'a StoredEvent, tx: &'a mut <$db as ProjectionDb>::Tx) -> ApplyFuture<'a> {
                Box::pin(async move {
                    let n = event.decode::<OrderPlaced>(1 << 20).map_err(|e| e.to_string())?.data.n as i64;
                    for stream in [event.stream_id.as_str(), "*"] {
                        sqlx::query(sqlx::AssertSqlSafe(self.upsert.clone()))
                            .bind(stream)
                            .bind(n)
                            .execute(&mut **tx)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            }
        }
    };
}
summary_projection!(SqliteProjections);
summary_projection!(PostgresProjections);

/// The model as a reader sees it through the view, in one statement (one snapshot):
/// orders and total of `*`, and the sums over the streams.
const READ: &str = "SELECT (SELECT orders FROM summary WHERE stream = '*'), \
     (SELECT CAST(sum(orders) AS BIGINT) FROM summary WHERE stream <> '*'), \
     (SELECT total FROM summary WHERE stream = '*'), \
     (SELECT CAST(sum(total) AS BIGINT) FROM summary WHERE stream <> '*')";

type Row = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// Checks one reading: consistent (the `*` row matches the streams) and never behind an
/// earlier reading. Returns the orders seen.
fn check(row: Row, at_least: i64) -> i64 {
    let (orders, summed, total, total_summed) = row;
    let (orders, total) = (orders.unwrap_or(0), total.unwrap_or(0));
    assert_eq!((orders, total), (summed.unwrap_or(0), total_summed.unwrap_or(0)), "consistent");
    assert!(orders >= at_least, "the live model went back from {at_least} to {orders} orders");
    orders
}

fn config() -> RunnerConfig {
    RunnerConfig::default()
        .batch(10)
        .poll_interval(Duration::from_millis(10))
        .switch_lag(30)
        .retire_grace(Duration::from_millis(300))
}

fn start<S, D>(store: &S, db: &D, version: u32) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)
where
    S: EventStore + herald::outbox::OutboxStore + Clone,
    D: ProjectionDb,
    Summary: Projection<D>,
{
    let runner = ProjectionRunner::new(store.clone(), db.clone(), Summary::new(version), config());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        runner
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("runs");
    });
    (stop, task)
}

macro_rules! rebuild_while_writing {
    ($store:expr, $db:expr) => {{
        let (store, db) = ($store, $db);
        let pool = db.pool().clone();
        let control = ProjectionControl::new(db.clone());
        let orders = {
            let pool = pool.clone();
            move || {
                let pool = pool.clone();
                async move { check(sqlx::query_as::<_, Row>(READ).fetch_one(&pool).await.expect("read"), 0) }
            }
        };
        append(&store, 0, 300).await;
        let (_stop_v1, v1) = start(&store, &db, 1);
        wait_until("v1 live", async || control.state("summary", 1).await.expect("state").live_version == Some(1)).await;
        wait_until("v1 caught up", async || orders().await == 300).await;

        let (writing, reading) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(true)));
        let writer = tokio::spawn({
            let (store, writing) = (store.clone(), Arc::clone(&writing));
            async move {
                let mut appended = 300;
                while writing.load(Ordering::SeqCst) {
                    append(&store, appended, 2).await;
                    appended += 2;
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                appended
            }
        });
        let reader = tokio::spawn({
            let (pool, reading) = (pool.clone(), Arc::clone(&reading));
            async move {
                let (mut seen, mut reads) = (0, 0);
                while reading.load(Ordering::SeqCst) {
                    let row = sqlx::query_as::<_, Row>(READ).fetch_one(&pool).await.expect("the view answers");
                    seen = check(row, seen);
                    reads += 1;
                }
                reads
            }
        });
        let (stop_v2, v2) = start(&store, &db, 2);
        wait_until("v2 live", async || control.state("summary", 2).await.expect("state").live_version == Some(2)).await;
        tokio::time::timeout(Duration::from_secs(10), v1).await.expect("v1 stops once retired").expect("v1");
        writing.store(false, Ordering::SeqCst);
        let appended = writer.await.expect("writer") as i64;
        wait_until("v2 complete", async || orders().await == appended).await;
        reading.store(false, Ordering::SeqCst);
        let reads = reader.await.expect("reader");
        assert!(reads > 20, "the reader kept reading through the switch ({reads} reads)");
        let biggest: i64 = sqlx::query_scalar("SELECT biggest FROM summary WHERE stream = '*'")
            .fetch_one(&pool)
            .await
            .expect("the view shows version 2's columns");
        assert_eq!(biggest, appended - 1);
        wait_until("v1's tables dropped", async || {
            control.list().await.expect("list").iter().all(|(_, version, _)| *version == 2)
        })
        .await;
        assert!(sqlx::query("SELECT 1 FROM summary_v1").fetch_optional(&pool).await.is_err(), "summary_v1 is gone");

        control.reset("summary", 2).await.expect("reset");
        wait_until("reset carried out", async || control.state("summary", 2).await.expect("state").command.is_none())
            .await;
        wait_until("v2 rebuilt in place", async || orders().await == appended).await;
        let _ = stop_v2.send(());
        v2.await.expect("v2");
        pool
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_new_version_takes_over_without_downtime() {
    let (_dir, store, db) = sqlite(&[]).await;
    rebuild_while_writing!(store, db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_new_version_takes_over_without_downtime() {
    let Some((store, db)) = postgres("projection_rebuild", &[]).await else { return };
    let pool = rebuild_while_writing!(store, db);
    outbox_common::drop_schema(pool).await;
}
