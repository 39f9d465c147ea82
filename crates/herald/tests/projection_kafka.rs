//! A projection fed from a Kafka topic through the consumer runtime, on a real broker and
//! a SQLite file: consumers crashed (their tasks aborted, nothing committed on the way
//! out) five times while they fold leave each record applied once, because each record's
//! transaction first moves its partition's checkpoint; a poison record parks its
//! partition, shows in the projection's state, and a `skip` passes exactly it.

mod common;
mod outbox_common;
mod projection_common;
mod store_common;

use std::time::Duration;

use common::UserCreated;
use herald::consumer::ConsumerConfig;
use herald::projection::{
    ApplyFuture, Projection, ProjectionControl, ProjectionDb, SqliteProjections, projection_consumer,
};
use herald::store::StoredEvent;
use herald::testkit::TestBroker;
use projection_common::wait_until;

/// Records each user's `n` and how often it was applied; fails `poison` every time.
struct Signups {
    name: &'static str,
    poison: u32,
}

impl Projection<SqliteProjections> for Signups {
    fn name(&self) -> &str {
        self.name
    }
    fn event_types(&self) -> &[&str] {
        &["user.created"]
    }
    fn apply<'a>(
        &'a self,
        event: &'a StoredEvent,
        tx: &'a mut <SqliteProjections as ProjectionDb>::Tx,
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            let n = event.decode::<UserCreated>(1 << 20).map_err(|e| e.to_string())?.data.n;
            if n == self.poison {
                return Err(format!("user {n} is poison"));
            }
            sqlx::query("INSERT INTO seen (n, times) VALUES (?1, 1) ON CONFLICT (n) DO UPDATE SET times = times + 1")
                .bind(i64::from(n))
                .execute(&mut **tx)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_consumers_apply_each_record_once_and_a_poison_one_parks() {
    common::log_if_asked();
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    common::publish(&bootstrap, 300, 40).await;
    let (_dir, _store, db) =
        projection_common::sqlite(&["CREATE TABLE seen (n BIGINT PRIMARY KEY, times BIGINT NOT NULL)"]).await;
    let pool = db.pool().clone();
    let counts = || async {
        let (rows, most): (i64, Option<i64>) =
            sqlx::query_as("SELECT count(*), max(times) FROM seen").fetch_one(&pool).await.expect("seen");
        (rows, most.unwrap_or(0))
    };
    let config = || {
        ConsumerConfig::new(bootstrap.clone(), "ignored", &["user.created"])
            .commit_interval(Duration::from_secs(3600))
            .retry(herald::consumer::RetryPolicy {
                backoff: herald::backoff::Backoff::default().max_delay(Duration::from_millis(50)),
                max_attempts: 1,
            })
    };
    for crash in 0..5u64 {
        let consumer = projection_consumer(config(), db.clone(), Signups { name: "signups", poison: 1_000 })
            .await
            .expect("consumer");
        let task = tokio::spawn(consumer.run(std::future::pending()));
        let before = counts().await.0;
        wait_until("some progress", async || counts().await.0 > before || before == 300).await;
        tokio::time::sleep(Duration::from_millis(20 * crash)).await;
        task.abort();
        let _ = task.await;
    }
    assert_eq!(counts().await.1, 1, "no record applied twice across the crashes");

    // Another projection (so another group, from the start) with a poison record: it parks
    // until skipped.
    sqlx::query("DELETE FROM seen").execute(&pool).await.expect("empty");
    let control = ProjectionControl::new(db.clone());
    let consumer =
        projection_consumer(config(), db.clone(), Signups { name: "poisoned", poison: 150 }).await.expect("consumer");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(async {
        let _ = stopped.await;
    }));
    wait_until("parked at user 150", async || control.state("poisoned", 1).await.expect("state").parked.is_some())
        .await;
    let parked = control.state("poisoned", 1).await.expect("state").parked.expect("parked");
    assert!(parked.error.contains("user 150 is poison"), "{parked:?}");
    control.skip("poisoned", 1).await.expect("skip");
    wait_until("all but the poison", async || counts().await.0 == 299).await;
    assert_eq!(counts().await, (299, 1));
    let missing: Option<i64> =
        sqlx::query_scalar("SELECT n FROM seen WHERE n = 150").fetch_optional(&pool).await.expect("query");
    assert_eq!(missing, None, "exactly the poison record was skipped");
    let skipped: i64 =
        sqlx::query_scalar("SELECT count(*) FROM herald_projection_skips").fetch_one(&pool).await.expect("skips");
    assert_eq!(skipped, 1, "the skip is recorded");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(40), task).await.expect("stops").expect("task").expect("consumer ran");
}
