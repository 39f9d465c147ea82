//! The SQLite outbox against real files and a real broker: the seeds' user.created flow
//! end to end, ids never reused after cleanup (with the negative control showing SQLite
//! does reuse them without AUTOINCREMENT), and a 10 s broker outage under load.

mod outbox_common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::Envelope;
use herald::consumer::{Consumer, ConsumerConfig};
use herald::outbox::{RelayConfig, SqliteOutbox};
use herald::testkit::TestBroker;
use outbox_common::{Relaying, Written, check_arrivals, log_if_asked, quick, read_back, sqlite_pool};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserCreated {
    user_id: String,
    email: String,
}
herald::event!(UserCreated, type = "user.created", version = 1, key = user_id);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_row_and_its_event_commit_together_and_a_consumer_receives_the_event() {
    log_if_asked();
    let dir = tempfile::tempdir().expect("dir");
    let broker = TestBroker::start().await;
    let pool = sqlite_pool(dir.path()).await;
    sqlx::query("CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL)").execute(&pool).await.expect("users");
    let outbox = SqliteOutbox::new(pool.clone()).await.expect("outbox").source("auth-service");
    let relay = Relaying::start(outbox.clone(), &broker.bootstrap(), RelayConfig::default());

    // The auth service: the user row and user.created in one transaction.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO users (id, email) VALUES ('u-1', 'ada@example.com')")
        .execute(&mut *tx)
        .await
        .expect("user");
    let created = UserCreated { user_id: "u-1".into(), email: "ada@example.com".into() };
    let event_id = outbox.enqueue(&mut tx, created.clone()).await.expect("enqueue");
    tx.commit().await.expect("commit");
    // A transaction that rolls back takes its event with it.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO users (id, email) VALUES ('u-2', 'bob@example.com')")
        .execute(&mut *tx)
        .await
        .expect("user");
    let dropped = UserCreated { user_id: "u-2".into(), email: "bob@example.com".into() };
    outbox.enqueue(&mut tx, dropped).await.expect("enqueue");
    tx.rollback().await.expect("rollback");

    // The notification service.
    let received: Arc<Mutex<Vec<Envelope<UserCreated>>>> = Arc::default();
    let seen = Arc::clone(&received);
    let consumer = Consumer::new(ConsumerConfig::new(broker.bootstrap(), "notification-service", &["user.created"]))
        .on(move |event: Envelope<UserCreated>, _ctx| {
            seen.lock().expect("lock").push(event);
            async { Ok(()) }
        });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while received.lock().expect("lock").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the consumer never received user.created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Time for the rolled-back event to show up, were it (wrongly) published.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(());
    running.await.expect("consumer task").expect("consumer");
    relay.stop().await;
    let received = received.lock().expect("lock");
    assert_eq!(received.len(), 1, "exactly the committed event: {received:?}");
    assert_eq!((received[0].event_id, &received[0].data), (event_id, &created));
    assert_eq!(received[0].source, "auth-service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_not_reused_after_published_rows_are_deleted() {
    log_if_asked();
    let dir = tempfile::tempdir().expect("dir");
    let broker = TestBroker::start().await;
    let pool = sqlite_pool(dir.path()).await;

    // The control: without AUTOINCREMENT, SQLite hands out the deleted largest id again,
    // so a relay whose cursor sits at that id would skip the new row.
    sqlx::query("CREATE TABLE plain (id INTEGER PRIMARY KEY, v TEXT)").execute(&pool).await.expect("plain");
    sqlx::query("INSERT INTO plain (v) VALUES ('a'), ('b'), ('c')").execute(&pool).await.expect("insert");
    sqlx::query("DELETE FROM plain").execute(&pool).await.expect("delete");
    let (reused,): (i64,) =
        sqlx::query_as("INSERT INTO plain (v) VALUES ('d') RETURNING id").fetch_one(&pool).await.expect("insert");
    assert_eq!(reused, 1, "SQLite reuses ids without AUTOINCREMENT (the pitfall this test guards)");

    let outbox = SqliteOutbox::new(pool.clone()).await.expect("outbox");
    let config = RelayConfig {
        retention: Duration::ZERO,
        cleanup_interval: Duration::from_millis(50),
        stats_interval: Duration::from_millis(50),
        ..quick(Duration::from_secs(5))
    };
    let mut relay = Relaying::start(outbox.clone(), &broker.bootstrap(), config);
    let mut committed = HashSet::new();
    let mut acked = HashSet::new();
    for round in 0..2u32 {
        let mut wanted = HashSet::new();
        for seq in 0..100 {
            let mut tx = pool.begin().await.expect("begin");
            let event = Written { key: format!("k{}", seq % 3), writer: 0, seq: round * 100 + seq };
            wanted.insert(outbox.enqueue(&mut tx, event).await.expect("enqueue"));
            tx.commit().await.expect("commit");
        }
        relay.wait_for(&wanted, &mut acked, Duration::from_secs(30)).await;
        committed.extend(wanted);
        // Every published row is deleted (retention 0) before the next round writes.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (left,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM herald_outbox").fetch_one(&pool).await.expect("count");
            if left == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{left} published rows never cleaned up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    relay.stop().await;
    let arrived = read_back(&broker.bootstrap(), &committed).await;
    let (distinct, repeats) = check_arrivals(&arrived, &committed);
    assert_eq!((distinct, repeats), (200, 0));
    let (next,): (i64,) = sqlx::query_as("SELECT seq FROM sqlite_sequence WHERE name = 'herald_outbox'")
        .fetch_one(&pool)
        .await
        .expect("sequence");
    assert_eq!(next, 200, "ids kept counting up across the cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_broker_outage_under_load_delays_but_loses_nothing() {
    log_if_asked();
    let dir = tempfile::tempdir().expect("dir");
    let mut broker = TestBroker::start().await;
    let pool = sqlite_pool(dir.path()).await;
    let outbox = SqliteOutbox::new(pool.clone()).await.expect("outbox");
    let mut relay = Relaying::start(outbox.clone(), &broker.bootstrap(), quick(Duration::from_secs(5)));
    let writer = {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        tokio::spawn(async move {
            let mut committed = HashSet::new();
            // About 14 s of writes at ~200 transactions/s, over 8 keys.
            for seq in 0..2800u32 {
                let mut tx = pool.begin().await.expect("begin");
                let event = Written { key: format!("k{}", seq % 8), writer: 0, seq };
                committed.insert(outbox.enqueue(&mut tx, event).await.expect("enqueue"));
                tx.commit().await.expect("commit");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            committed
        })
    };
    let mut acked = HashSet::new();
    let mut collect = |batch: herald::outbox::Acked| acked.extend(batch.events.iter().map(|(id, _)| *id));
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.stop().await;
    let down = std::time::Instant::now();
    let mut acked_while_down = 0;
    while down.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(100), relay.acked.recv()).await {
            acked_while_down += batch.events.len();
            collect(batch);
        }
    }
    let (backlog,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM herald_outbox WHERE id > (SELECT cursor_id FROM herald_outbox_relay WHERE name = 'default')",
    )
    .fetch_one(&pool)
    .await
    .expect("backlog");
    broker.resume().await;
    let committed = writer.await.expect("writer");
    while let Ok(batch) = relay.acked.try_recv() {
        collect(batch);
    }
    relay.wait_for(&committed, &mut acked, Duration::from_secs(60)).await;
    relay.stop().await;
    let arrived = read_back(&broker.bootstrap(), &committed).await;
    let (distinct, repeats) = check_arrivals(&arrived, &committed);
    println!(
        "outage 10 s: backlog {backlog} rows when the broker came back, {acked_while_down} acknowledged while down \
         (queued before the stop), then all {distinct} arrived, {repeats} repeats"
    );
    assert!(backlog > 500, "the outage should have built a backlog, got {backlog}");
}
